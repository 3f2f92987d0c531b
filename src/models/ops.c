#include "models/ops.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "core/ctx.h"

/* CPU threading policy (docs/DESIGN.md "CPU threads"): dfa_ctx_init makes OpenBLAS single-threaded,
 * and every parallel loop, GEMMs included, runs in the one OpenMP pool of ctx->n_threads. OpenBLAS's
 * own pthreads next to OpenMP workers that spin-wait between regions starved each other (a CLIP
 * forward at 9% of plain sgemm speed on 2 cores). A GEMM is split here into up to ctx->n_threads
 * row (or, for few rows, column) blocks, each a single-threaded sgemm of at least GEMM_SPLIT_MIN
 * multiply-adds: far above OpenBLAS's small-matrix kernels (<= 64^3), so every block takes the
 * same kernels in the same K order as one call and results do not depend on the split
 * (tests/test_gemm_threads.c). Smaller GEMMs, calls inside a parallel region, or a raised
 * OpenBLAS thread count: one sgemm call. */
#define GEMM_SPLIT_MIN 2097152.0 /* 128^3 */

static void gemm_block(int trans_b, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                       int ldb, float beta, float *C, int ldc) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb,
                beta, C, ldc);
}

void dfa_op_gemm(const dfa_ctx *ctx, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc) {
    const double work = (double)M * N * K;
    int nt = ctx ? ctx->n_threads : 1;
    if (nt > (int)(work / GEMM_SPLIT_MIN)) nt = (int)(work / GEMM_SPLIT_MIN);
#ifdef OPENBLAS_VERSION
    if (openblas_get_num_threads() > 1) nt = 1;
#endif
    if (nt <= 1 || omp_in_parallel()) {
        gemm_block(trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    /* rows when there are enough of them, else columns (multiples of 16 keep the kernels' full tiles) */
    const int by_rows = M >= 4 * nt || M >= N;
    const int len = by_rows ? M : N;
    int step = (len + nt - 1) / nt;
    if (!by_rows) step = (step + 15) / 16 * 16;
    const int nb = (len + step - 1) / step;
#pragma omp parallel for num_threads(nb) schedule(static, 1)
    for (int b = 0; b < nb; b++) {
        const int s = b * step, n = len - s < step ? len - s : step;
        if (by_rows)
            gemm_block(trans_b, n, N, K, alpha, A + (size_t)s * lda, lda, B, ldb, beta, C + (size_t)s * ldc, ldc);
        else
            gemm_block(trans_b, M, n, K, alpha, A, lda, trans_b ? B + (size_t)s * ldb : B + s, ldb, beta, C + s,
                       ldc);
    }
}

void dfa_op_linear(const dfa_ctx *ctx, const float *x, int M, int K, const float *W, const float *bias, int N,
                   float *y) {
    if (bias) {
        for (int i = 0; i < M; i++) memcpy(y + (size_t)i * N, bias, (size_t)N * sizeof(float));
    }
    dfa_op_gemm(ctx, 1, M, N, K, 1.0f, x, K, W, K, bias ? 1.0f : 0.0f, y, N);
}

void dfa_op_layernorm(const dfa_ctx *ctx, const float *x, int M, int N, const float *gamma, const float *beta,
                      float eps, float *y) {
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static)
    for (int i = 0; i < M; i++) {
        const float *xr = x + (size_t)i * N;
        float *yr = y + (size_t)i * N;
        double mean = 0, var = 0;
        for (int j = 0; j < N; j++) mean += xr[j];
        mean /= N;
        for (int j = 0; j < N; j++) {
            double d = xr[j] - mean;
            var += d * d;
        }
        var /= N;
        float inv = (float)(1.0 / sqrt(var + eps));
        for (int j = 0; j < N; j++) {
            float v = (float)(xr[j] - mean) * inv;
            if (gamma) v *= gamma[j];
            if (beta) v += beta[j];
            yr[j] = v;
        }
    }
}

void dfa_op_rmsnorm(const dfa_ctx *ctx, const float *x, int M, int N, const float *gamma, float eps, float *y) {
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static)
    for (int i = 0; i < M; i++) {
        const float *xr = x + (size_t)i * N;
        float *yr = y + (size_t)i * N;
        double ss = 0;
        for (int j = 0; j < N; j++) ss += (double)xr[j] * xr[j];
        float inv = (float)(1.0 / sqrt(ss / N + eps));
        for (int j = 0; j < N; j++) yr[j] = xr[j] * inv * (gamma ? gamma[j] : 1.0f);
    }
}

void dfa_op_groupnorm(const dfa_ctx *ctx, const float *x, int C, int HW, int G, const float *gamma,
                      const float *beta, float eps, float *y) {
    int cpg = C / G;
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static)
    for (int g = 0; g < G; g++) {
        const float *xg = x + (size_t)g * cpg * HW;
        size_t n = (size_t)cpg * HW;
        double mean = 0, var = 0;
        for (size_t i = 0; i < n; i++) mean += xg[i];
        mean /= (double)n;
        for (size_t i = 0; i < n; i++) {
            double d = xg[i] - mean;
            var += d * d;
        }
        var /= (double)n;
        float inv = (float)(1.0 / sqrt(var + eps));
        for (int c = g * cpg; c < (g + 1) * cpg; c++) {
            float ga = gamma ? gamma[c] : 1.0f, be = beta ? beta[c] : 0.0f;
            const float *xc = x + (size_t)c * HW;
            float *yc = y + (size_t)c * HW;
            for (int i = 0; i < HW; i++) yc[i] = (float)(xc[i] - mean) * inv * ga + be;
        }
    }
}

void dfa_op_silu(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = x[i] / (1.0f + expf(-x[i]));
}

void dfa_op_gelu_erf(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

void dfa_op_gelu_tanh(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        x[i] = 0.5f * v * (1.0f + tanhf(0.79788456080286536f * (v + 0.044715f * v * v * v)));
    }
}

void dfa_op_add(float *y, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

void dfa_op_scale(float *y, float s, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] *= s;
}

void dfa_op_softmax_rows(float *x, int M, int N) {
    for (int i = 0; i < M; i++) {
        float *r = x + (size_t)i * N;
        float m = -INFINITY;
        for (int j = 0; j < N; j++) m = r[j] > m ? r[j] : m;
        double s = 0;
        for (int j = 0; j < N; j++) {
            r[j] = expf(r[j] - m);
            s += r[j];
        }
        float inv = (float)(1.0 / s);
        for (int j = 0; j < N; j++) r[j] *= inv;
    }
}

void dfa_op_timestep_embedding(float t, int dim, int flip_sin_to_cos, float shift, float scale, int max_period,
                               float *out) {
    int half = dim / 2;
    for (int i = 0; i < half; i++) {
        double expo = -log((double)max_period) * i / (half - shift);
        double arg = (double)t * exp(expo) * scale;
        float s = (float)sin(arg), c = (float)cos(arg);
        if (flip_sin_to_cos) {
            out[i] = c;
            out[half + i] = s;
        } else {
            out[i] = s;
            out[half + i] = c;
        }
    }
    if (dim % 2) out[dim - 1] = 0.0f;
}

size_t dfa_op_conv2d_ws_min(int Cin, int k, int Wo) { return (size_t)Cin * k * k * Wo; }

void dfa_op_conv2d(const dfa_ctx *ctx, const float *x, int Cin, int H, int W, const float *w, const float *bias,
                   int Cout, int k, int stride, int pad, float *y, float *ws, size_t ws_floats) {
    const int Ho = (H + 2 * pad - k) / stride + 1, Wo = (W + 2 * pad - k) / stride + 1;
    const size_t HWo = (size_t)Ho * Wo;
    const int K = Cin * k * k;
    if (bias) {
        for (int c = 0; c < Cout; c++)
            for (size_t i = 0; i < HWo; i++) y[c * HWo + i] = bias[c];
    }
    const float beta = bias ? 1.0f : 0.0f;
    if (k == 1 && stride == 1 && pad == 0) {
        dfa_op_gemm(ctx, 0, Cout, (int)HWo, Cin, 1.0f, w, Cin, x, (int)HWo, beta, y, (int)HWo);
        return;
    }
    int band = (int)(ws_floats / ((size_t)K * Wo));
    if (band < 1) band = 1; /* caller passed less than the minimum: still correct only if ws >= min */
    if (band > Ho) band = Ho;
    for (int r0 = 0; r0 < Ho; r0 += band) {
        const int nr = r0 + band <= Ho ? band : Ho - r0;
        const int ncol = nr * Wo;
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static)
        for (int row = 0; row < K; row++) {
            const int ci = row / (k * k), ky = (row / k) % k, kx = row % k;
            const float *xc = x + (size_t)ci * H * W;
            float *dst = ws + (size_t)row * ncol;
            for (int r = 0; r < nr; r++) {
                const int iy = (r0 + r) * stride - pad + ky;
                float *d = dst + (size_t)r * Wo;
                if (iy < 0 || iy >= H) {
                    for (int c = 0; c < Wo; c++) d[c] = 0.0f;
                    continue;
                }
                const float *xr = xc + (size_t)iy * W;
                for (int c = 0; c < Wo; c++) {
                    const int ix = c * stride - pad + kx;
                    d[c] = (ix >= 0 && ix < W) ? xr[ix] : 0.0f;
                }
            }
        }
        dfa_op_gemm(ctx, 0, Cout, ncol, K, 1.0f, w, K, ws, ncol, beta, y + (size_t)r0 * Wo, (int)HWo);
    }
}

void dfa_op_upsample2x_nearest(const float *x, int C, int H, int W, float *y) {
    for (int c = 0; c < C; c++) {
        const float *xc = x + (size_t)c * H * W;
        float *yc = y + (size_t)c * 4 * H * W;
        for (int i = 0; i < 2 * H; i++) {
            const float *xr = xc + (size_t)(i / 2) * W;
            float *yr = yc + (size_t)i * 2 * W;
            for (int j = 0; j < 2 * W; j++) yr[j] = xr[j / 2];
        }
    }
}

void dfa_op_attention(const dfa_ctx *ctx, const float *q, const float *k, const float *v, int T, int S, int H, int D,
                      int ld, float scale, int causal, const float *bias, const int32_t *key_mask, float *scratch,
                      float *out) {
    for (int h = 0; h < H; h++) {
        dfa_op_gemm(ctx, 1, T, S, D, scale, q + (size_t)h * D, ld, k + (size_t)h * D, ld, 0.0f, scratch, S);
        const float *bh = bias ? bias + (size_t)h * T * S : NULL;
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static)
        for (int t = 0; t < T; t++) {
            float *r = scratch + (size_t)t * S;
            if (bh)
                for (int s = 0; s < S; s++) r[s] += bh[(size_t)t * S + s];
            for (int s = 0; s < S; s++)
                if ((causal && s > t) || (key_mask && key_mask[s] == 0)) r[s] = -FLT_MAX;
            dfa_op_softmax_rows(r, 1, S);
        }
        dfa_op_gemm(ctx, 0, T, D, S, 1.0f, scratch, S, v + (size_t)h * D, ld, 0.0f, out + (size_t)h * D, ld);
    }
}
