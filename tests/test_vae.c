/* test_vae.c - AutoencoderKL decoder against diffusers (tests/fixtures/vae4, vae16 from
 * tests/fixtures/gen_vae_dit.py), the conv2d op against a float64 loop, PNG output, and the
 * errors for missing / misshapen checkpoint tensors. */
#include <stdint.h>

#include "core/ctx.h"
#include "fixture.h"
#include "io/png.h"
#include "models/ops.h"
#include "models/vae.h"
#include "test.h"
#include "tmpdir.h"

static dfa_ctx *new_ctx(void) {
    dfa_ctx_params p = dfa_ctx_default_params();
    p.n_threads = 2;
    dfa_ctx *ctx = NULL;
    char e[256];
    if (dfa_ctx_init(&ctx, &p, e, sizeof e) != DFA_OK) fprintf(stderr, "ctx: %s\n", e);
    return ctx;
}

/* conv2d (im2col + GEMM, banded) vs a float64 loop: odd sizes, stride 2, padding, a workspace
 * that forces several bands. */
static void test_conv2d_reference(void) {
    dfa_ctx *ctx = new_ctx();
    unsigned long long s = 0x1234567ULL;
    const int cases[][6] = {{3, 7, 9, 5, 3, 1}, {4, 8, 6, 6, 3, 2}, {5, 5, 7, 3, 1, 1}, {2, 9, 9, 4, 2, 2}};
    for (int ci = 0; ci < 4; ci++) {
        const int Cin = cases[ci][0], H = cases[ci][1], W = cases[ci][2], Cout = cases[ci][3], k = cases[ci][4],
                  stride = cases[ci][5];
        const int pad = k / 2;
        const int Ho = (H + 2 * pad - k) / stride + 1, Wo = (W + 2 * pad - k) / stride + 1;
        float *x = malloc(sizeof(float) * Cin * H * W), *w = malloc(sizeof(float) * Cout * Cin * k * k);
        float *b = malloc(sizeof(float) * Cout), *y = malloc(sizeof(float) * Cout * Ho * Wo);
        size_t wsn = dfa_op_conv2d_ws_min(Cin, k, Wo) * 2; /* two rows per band */
        float *ws = malloc(sizeof(float) * wsn);
        for (int i = 0; i < Cin * H * W; i++) x[i] = test_rng_uniform(&s);
        for (int i = 0; i < Cout * Cin * k * k; i++) w[i] = test_rng_uniform(&s);
        for (int i = 0; i < Cout; i++) b[i] = test_rng_uniform(&s);
        fixture_poison(y, (size_t)Cout * Ho * Wo);
        dfa_op_conv2d(ctx, x, Cin, H, W, w, ci == 2 ? NULL : b, Cout, k, stride, pad, y, ws, wsn);
        double maxd = 0;
        for (int co = 0; co < Cout; co++)
            for (int oy = 0; oy < Ho; oy++)
                for (int ox = 0; ox < Wo; ox++) {
                    double acc = ci == 2 ? 0 : b[co];
                    for (int c = 0; c < Cin; c++)
                        for (int ky = 0; ky < k; ky++)
                            for (int kx = 0; kx < k; kx++) {
                                int iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
                                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                                acc += (double)w[((co * Cin + c) * k + ky) * k + kx] * x[(c * H + iy) * W + ix];
                            }
                    double d = fabs(acc - y[(co * Ho + oy) * Wo + ox]);
                    if (!(d <= maxd)) maxd = d != d ? INFINITY : d;
                }
        CHECKF(maxd < 1e-5, "conv case %d: max diff %g", ci, maxd);
        free(x), free(w), free(b), free(y), free(ws);
    }
    dfa_ctx_free(ctx);
}

static void decode_case(const char *name, double tol) {
    dfa_ctx *ctx = new_ctx();
    char dir[1024], rel[256];
    snprintf(rel, sizeof rel, "%s/vae", name);
    fixture_path(rel, dir, sizeof dir);
    dfa_vae *vae = NULL;
    dfa_status s = dfa_vae_load(ctx, dir, &vae);
    CHECKF(s == DFA_OK, "load %s: %s", dir, dfa_ctx_error(ctx));
    snprintf(rel, sizeof rel, "%s/io.safetensors", name);
    dfa_safetensors *io = fixture_open(rel);
    if (s != DFA_OK || !io) {
        dfa_st_close(io);
        dfa_ctx_free(ctx);
        return;
    }
    int nd;
    int64_t zs[8], is[8];
    float *z = fixture_f32(io, "latents", &nd, zs);
    float *ref = fixture_f32(io, "image", &nd, is);
    float *ref8 = fixture_f32(io, "image_u8", NULL, NULL);
    const int h = (int)zs[2], w = (int)zs[3], H = (int)is[2], W = (int)is[3];
    CHECK(dfa_vae_upscale(vae) * h == H && dfa_vae_upscale(vae) * w == W);
    CHECK(dfa_vae_get_config(vae)->latent_channels == (int)zs[1]);
    const size_t n = (size_t)3 * H * W;
    float *img = malloc(n * sizeof(float));
    for (int rep = 0; rep < 2; rep++) { /* the second run reuses the arena */
        fixture_poison(img, n);
        s = dfa_vae_decode(ctx, vae, z, h, w, img);
        CHECKF(s == DFA_OK, "decode: %s", dfa_ctx_error(ctx));
        double e = fixture_rel_err(img, ref, n);
        CHECKF(e <= tol, "%s decode rep %d: rel err %g > %g", name, rep, e, tol);
        if (rep == 0) printf("     %s: rel err %.3g (bound %.1g)\n", name, e, tol);
    }
    uint8_t *rgb = malloc(n);
    dfa_vae_to_rgb8(img, H, W, rgb);
    int off = 0, bad = 0;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int c = 0; c < 3; c++) {
                int d = abs((int)rgb[(y * W + x) * 3 + c] - (int)ref8[(c * H + y) * W + x]);
                off += d > 0;
                bad += d > 1;
            }
    CHECKF(bad == 0 && off <= (int)n / 50, "%s rgb8: %d values off by 1, %d by more", name, off, bad);
    /* PNG round trip */
    test_tmpdir t;
    if (tmpdir_make(&t, "vae") == 0) {
        char png[256];
        tmpdir_file(&t, "out.png", png, sizeof png);
        s = dfa_vae_decode_png(ctx, vae, z, h, w, png);
        CHECKF(s == DFA_OK, "png: %s", dfa_ctx_error(ctx));
        int pw = 0, ph = 0;
        uint8_t *px = NULL;
        dfa_error err = {0};
        CHECK(dfa_png_read(png, 3, &pw, &ph, &px, &err) == DFA_OK);
        CHECK(pw == W && ph == H && px && memcmp(px, rgb, n) == 0);
        free(px);
        tmpdir_remove(&t);
    }
    free(rgb), free(img), free(z), free(ref), free(ref8);
    dfa_st_close(io);
    dfa_vae_free(ctx, vae);
    dfa_ctx_free(ctx);
}

static void test_decode_vae4(void) { decode_case("vae4", 2e-5); }
static void test_decode_vae16(void) { decode_case("vae16", 2e-5); }

/* The vae4 checkpoint with one tensor dropped or reshaped: loading must fail with a message
 * naming that tensor (and the shapes). */
static void broken_case(int mode) {
    const char *victim = "decoder.up_blocks.1.resnets.0.conv1.weight";
    char dir[1024];
    fixture_path("vae4/vae", dir, sizeof dir);
    test_tmpdir t;
    if (tmpdir_make(&t, "vaebad") != 0) return;
    if (fixture_broken_copy(dir, victim, mode, t.path) == 0) {
        dfa_ctx *ctx = new_ctx();
        dfa_vae *vae = NULL;
        dfa_status s = dfa_vae_load(ctx, t.path, &vae);
        const char *msg = dfa_ctx_error(ctx);
        CHECK(vae == NULL);
        CHECKF(s == (mode == 0 ? DFA_ERR_NOT_FOUND : DFA_ERR_SHAPE), "status %d: %s", (int)s, msg);
        CHECKF(strstr(msg, victim) != NULL, "message does not name the tensor: %s", msg);
        if (mode == 1) CHECKF(strstr(msg, "[8, 16, 3, 3]") && strstr(msg, "[8, 16, 9]"), "shapes: %s", msg);
        printf("     (expected error: %s)\n", msg);
        dfa_ctx_free(ctx);
    }
    tmpdir_remove(&t);
}

static void test_missing_tensor(void) { broken_case(0); }
static void test_misshapen_tensor(void) { broken_case(1); }

static void test_bad_config(void) {
    dfa_ctx *ctx = new_ctx();
    dfa_vae *vae = NULL;
    CHECK(dfa_vae_load(ctx, "/nonexistent/vae", &vae) != DFA_OK && vae == NULL);
    CHECK(strstr(dfa_ctx_error(ctx), "/nonexistent/vae/config.json") != NULL);
    dfa_ctx_free(ctx);
}

int main(void) {
    RUN(test_conv2d_reference);
    RUN(test_decode_vae4);
    RUN(test_decode_vae16);
    RUN(test_missing_tensor);
    RUN(test_misshapen_tensor);
    RUN(test_bad_config);
    return test_summary();
}
