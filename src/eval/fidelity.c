/* fidelity.c - SSIM / PSNR / relative L2 and the harness's two figures (fidelity.h). */
#include "eval/fidelity.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <stdio.h>

#include "io/png.h"

double dfa_ssim_u8(const uint8_t *a, const uint8_t *b, int w, int h, int channels, dfa_error *err) {
    const int K = DFA_SSIM_WIN, R = K / 2;
    if (w < K || h < K || channels < 1 || channels > 4) return NAN;
    double g[DFA_SSIM_WIN], gs = 0;
    for (int i = 0; i < K; i++) gs += g[i] = exp(-(double)((i - R) * (i - R)) / (2.0 * DFA_SSIM_SIGMA * DFA_SSIM_SIGMA));
    for (int i = 0; i < K; i++) g[i] /= gs;
    const int ow = w - K + 1, oh = h - K + 1;
    /* horizontal pass of the five quantities x, y, x^2, y^2, xy -> hp[5][h][ow] */
    double *hp = malloc(sizeof(double) * 5 * (size_t)h * ow);
    if (!hp) {
        dfa_error_set(err, DFA_ERR_OOM, __FILE__, __LINE__, "SSIM: out of host memory for a %d x %d image", w, h);
        return NAN;
    }
    const size_t plane = (size_t)h * ow;
    double total = 0;
    for (int c = 0; c < channels; c++) {
        for (int y = 0; y < h; y++)
            for (int x = 0; x < ow; x++) {
                double s[5] = {0, 0, 0, 0, 0};
                for (int k = 0; k < K; k++) {
                    const size_t i = ((size_t)y * w + x + k) * channels + c;
                    const double va = a[i], vb = b[i], gk = g[k];
                    s[0] += gk * va, s[1] += gk * vb, s[2] += gk * va * va, s[3] += gk * vb * vb, s[4] += gk * va * vb;
                }
                for (int q = 0; q < 5; q++) hp[q * plane + (size_t)y * ow + x] = s[q];
            }
        double sum = 0;
        for (int y = 0; y < oh; y++)
            for (int x = 0; x < ow; x++) {
                double s[5] = {0, 0, 0, 0, 0};
                for (int k = 0; k < K; k++)
                    for (int q = 0; q < 5; q++) s[q] += g[k] * hp[q * plane + (size_t)(y + k) * ow + x];
                const double mx = s[0], my = s[1];
                const double vx = s[2] - mx * mx, vy = s[3] - my * my, cxy = s[4] - mx * my;
                sum += (2 * mx * my + DFA_SSIM_C1) * (2 * cxy + DFA_SSIM_C2) /
                       ((mx * mx + my * my + DFA_SSIM_C1) * (vx + vy + DFA_SSIM_C2));
            }
        total += sum / ((double)ow * oh);
    }
    free(hp);
    return total / channels;
}

double dfa_mse_u8(const uint8_t *a, const uint8_t *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = (double)a[i] - (double)b[i];
        s += d * d;
    }
    return n ? s / (double)n : 0.0;
}

double dfa_psnr_from_mse(double mse) { return mse <= 0 ? INFINITY : 10.0 * log10(255.0 * 255.0 / mse); }

double dfa_rel_l2(const float *ref, const float *x, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = (double)x[i] - (double)ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    if (den == 0) return num == 0 ? 0.0 : INFINITY;
    return sqrt(num / den);
}

/* ---- drawing into an RGB buffer ---- */

typedef struct canvas {
    uint8_t *px;
    int w, h;
} canvas;

static void put(canvas *c, int x, int y, const uint8_t rgb[3]) {
    if (x < 0 || y < 0 || x >= c->w || y >= c->h) return;
    memcpy(c->px + ((size_t)y * c->w + x) * 3, rgb, 3);
}

static void rect(canvas *c, int x0, int y0, int x1, int y1, const uint8_t rgb[3]) {
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) put(c, x, y, rgb);
}

/* 3 x 5 glyphs, rows top to bottom, bit 2 = left column: digits, '.', '-' */
static const uint8_t glyph_bits[12][5] = {
    {7, 5, 5, 5, 7}, {2, 6, 2, 2, 7}, {7, 1, 7, 4, 7}, {7, 1, 7, 1, 7}, {5, 5, 7, 1, 1}, {7, 4, 7, 1, 7},
    {7, 4, 7, 5, 7}, {7, 1, 1, 1, 1}, {7, 5, 7, 5, 7}, {7, 5, 7, 1, 7}, {0, 0, 0, 0, 2}, {0, 0, 7, 0, 0}};

/* text of digits, '.' and '-' at (x, y) top-left, `scale` pixels per glyph pixel; returns width */
static int text(canvas *c, int x, int y, const char *s, int scale, const uint8_t rgb[3]) {
    int cx = x;
    for (; *s; s++) {
        int g = *s >= '0' && *s <= '9' ? *s - '0' : *s == '.' ? 10 : *s == '-' ? 11 : -1;
        if (g >= 0)
            for (int r = 0; r < 5; r++)
                for (int q = 0; q < 3; q++)
                    if (glyph_bits[g][r] & (4 >> q)) rect(c, cx + q * scale, y + r * scale, cx + q * scale + scale - 1,
                                                          y + r * scale + scale - 1, rgb);
        cx += 4 * scale;
    }
    return cx - x;
}

static void disc(canvas *c, int cx, int cy, int r, const uint8_t rgb[3], int hollow) {
    for (int y = -r; y <= r; y++)
        for (int x = -r; x <= r; x++) {
            const int d2 = x * x + y * y;
            if (d2 <= r * r && (!hollow || d2 >= (r - 1) * (r - 1))) put(c, cx + x, cy + y, rgb);
        }
}

static const uint8_t palette[8][3] = {{66, 133, 244}, {219, 68, 55},  {52, 168, 83},  {251, 188, 5},
                                      {171, 71, 188}, {0, 172, 193},  {255, 112, 67}, {121, 85, 72}};

dfa_status dfa_plot_ssim_png(const char *path, const double *xs, const double *ys, int n, double ymin,
                             dfa_error *err) {
    if (!(ymin < 1.0)) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "SSIM plot %s: ymin %g must be below 1", path, ymin);
    canvas c = {malloc((size_t)480 * 360 * 3), 480, 360};
    if (!c.px) DFA_FAIL(err, DFA_ERR_OOM, "out of host memory for the plot %s", path);
    memset(c.px, 255, (size_t)c.w * c.h * 3);
    const uint8_t black[3] = {0, 0, 0}, grid[3] = {225, 225, 225}, grey[3] = {120, 120, 120};
    const int L = 60, Rr = 460, T = 20, B = 320; /* plot area [L, Rr] x [T, B] */
    /* ticks and grid: x every 0.2, y five intervals */
    char buf[32];
    for (int i = 0; i <= 5; i++) {
        const int x = L + (Rr - L) * i / 5;
        rect(&c, x, T, x, B, grid);
        rect(&c, x, B, x, B + 5, black);
        snprintf(buf, sizeof buf, "%.1f", i / 5.0);
        text(&c, x - 10, B + 10, buf, 2, black);
        const int y = B - (B - T) * i / 5;
        rect(&c, L, y, Rr, y, grid);
        rect(&c, L - 5, y, L, y, black);
        snprintf(buf, sizeof buf, "%.2f", ymin + (1.0 - ymin) * i / 5.0);
        text(&c, L - 8 - 4 * 2 * (int)strlen(buf), y - 5, buf, 2, black);
    }
    rect(&c, L, B, Rr, B + 1, black); /* x axis */
    rect(&c, L - 1, T, L, B, black);  /* y axis */
    const double sx = (Rr - L), sy = (B - T) / (1.0 - ymin);
    disc(&c, Rr, T, 6, grey, 1); /* the uncompressed reference: fraction 1, SSIM 1 */
    for (int i = 0; i < n; i++) {
        if (!isfinite(xs[i]) || !isfinite(ys[i])) continue;
        double x = xs[i] < 0 ? 0 : xs[i] > 1 ? 1 : xs[i], y = ys[i] < ymin ? ymin : ys[i] > 1 ? 1 : ys[i];
        const int px = L + (int)lround(x * sx), py = B - (int)lround((y - ymin) * sy);
        disc(&c, px, py, 4, palette[i % 8], 0);
        snprintf(buf, sizeof buf, "%d", i + 1);
        text(&c, px + 6, py - 12, buf, 2, palette[i % 8]);
    }
    dfa_status s = dfa_png_write(path, c.w, c.h, 3, c.px, err);
    free(c.px);
    return s;
}

dfa_status dfa_contact_sheet_png(const char *path, const uint8_t *const *tiles, int rows, int cols, int w, int h,
                                 dfa_error *err) {
    const int gap = 4, W = cols * w + (cols + 1) * gap, H = rows * h + (rows + 1) * gap;
    if (rows < 1 || cols < 1 || w < 1 || h < 1 || (double)W * H > 4e8)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "contact sheet %s: %d x %d tiles of %d x %d pixels is not drawable", path,
                 rows, cols, w, h);
    uint8_t *px = malloc((size_t)W * H * 3);
    if (!px) DFA_FAIL(err, DFA_ERR_OOM, "out of host memory for the contact sheet %s (%d x %d)", path, W, H);
    memset(px, 128, (size_t)W * H * 3);
    for (int r = 0; r < rows; r++)
        for (int q = 0; q < cols; q++) {
            const uint8_t *t = tiles[(size_t)r * cols + q];
            if (!t) continue;
            const int x0 = gap + q * (w + gap), y0 = gap + r * (h + gap);
            for (int y = 0; y < h; y++)
                memcpy(px + ((size_t)(y0 + y) * W + x0) * 3, t + (size_t)y * w * 3, (size_t)w * 3);
        }
    dfa_status s = dfa_png_write(path, W, H, 3, px, err);
    free(px);
    return s;
}
