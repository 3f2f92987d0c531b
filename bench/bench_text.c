/* bench_text.c - CLIP-L-shaped and T5-shaped encoders on the CPU (tools/gen_text_realsize.py
 * makes them): load and encode times, achieved GFLOP/s against a plain cblas_sgemm of the same
 * FLOPs measured in the same run (the baseline), and the error against transformers.
 * usage: bench_text DIR [threads] */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/ctx.h"
#include "io/safetensors.h"
#include "models/clip.h"
#include "models/t5.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static double err_vs(dfa_safetensors *ref, const char *name, const float *a, size_t n) {
    float *r = malloc(n * sizeof(float));
    dfa_error e = {0};
    double num = 0, den = 0;
    if (!r || dfa_st_load(ref, name, DFA_F32, -1, NULL, r, DFA_DEV_CPU, NULL, &e)) {
        free(r);
        return NAN;
    }
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - r[i];
        num += d * d;
        den += (double)r[i] * r[i];
    }
    free(r);
    return sqrt(num / den);
}

/* seconds of cblas_sgemm for M x K x N with OpenBLAS's own `threads` threads (no OpenMP around
 * it: the speed of light), best of 3; OpenBLAS goes back to one thread (dfa's policy, ctx.c) */
static double gemm_time(int M, int K, int N, int threads) {
    float *a = calloc((size_t)M * K, 4), *b = calloc((size_t)K * N, 4), *c = calloc((size_t)M * N, 4);
    double best = 1e9;
    openblas_set_num_threads(threads);
    for (int r = 0; r < 3; r++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
        double dt = now() - t0;
        if (dt < best) best = dt;
    }
    openblas_set_num_threads(1);
    free(a), free(b), free(c);
    return best;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_text DIR [threads]   (DIR from tools/gen_text_realsize.py)\n");
        return 2;
    }
    char p[1024];
    dfa_ctx_params cp = dfa_ctx_default_params();
    cp.n_threads = argc > 2 ? atoi(argv[2]) : 0;
    dfa_ctx *ctx = NULL;
    if (dfa_ctx_init(&ctx, &cp, NULL, 0)) return 1;
    dfa_safetensors *ref = NULL;
    dfa_error e = {0};
    snprintf(p, sizeof p, "%s/ref.safetensors", argv[1]);
    if (dfa_st_open(&ref, p, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    int32_t ids[512], mask[512];
    dfa_clip *c = NULL;
    dfa_t5 *t = NULL;
    snprintf(p, sizeof p, "%s/clip", argv[1]);
    double t0 = now();
    if (dfa_clip_load(ctx, p, &c)) return fprintf(stderr, "%s\n", dfa_ctx_error(ctx)), 1;
    double tl = now() - t0;
    dfa_st_load(ref, "clip.ids", DFA_I32, -1, NULL, ids, DFA_DEV_CPU, NULL, &e);
    float *h = malloc(77 * 768 * sizeof(float)), te[768];
    dfa_clip_encode(c, ids, 77, -2, h, NULL, te); /* warm-up */
    t0 = now();
    dfa_clip_encode(c, ids, 77, -2, h, NULL, te);
    double tc = now() - t0;
    double flops = 2.0 * 77 * 12 * (4.0 * 768 * 768 + 2.0 * 768 * 3072);
    double base = gemm_time(77, 768, 3072, ctx->n_threads) * flops / (2.0 * 77 * 768 * 3072);
    printf("clip  77 tokens: load %.2f s, encode %.3f s = %.1f GFLOP/s; sgemm baseline %.1f GFLOP/s (ratio %.2f); "
           "rel L2 hidden[-2] %.2g, text_embeds %.2g\n", tl, tc, flops / tc / 1e9, flops / base / 1e9, base / tc,
           err_vs(ref, "clip.hm2", h, 77 * 768), err_vs(ref, "clip.te", te, 768));
    dfa_clip_free(c);
    snprintf(p, sizeof p, "%s/t5", argv[1]);
    t0 = now();
    if (dfa_t5_load(ctx, p, &t)) return fprintf(stderr, "%s\n", dfa_ctx_error(ctx)), 1;
    tl = now() - t0;
    dfa_st_load(ref, "t5.ids", DFA_I32, -1, NULL, ids, DFA_DEV_CPU, NULL, &e);
    dfa_st_load(ref, "t5.mask", DFA_I32, -1, NULL, mask, DFA_DEV_CPU, NULL, &e);
    float *o = malloc(512 * 768 * sizeof(float));
    t0 = now();
    dfa_t5_encode(t, ids, NULL, 512, o);
    double tt = now() - t0;
    flops = 2.0 * 512 * 8 * (4.0 * 768 * 768 + 3.0 * 768 * 2048) + 8 * 12 * 4.0 * 512 * 512 * 64;
    base = gemm_time(512, 768, 2048, ctx->n_threads) * flops / (2.0 * 512 * 768 * 2048);
    double e1 = err_vs(ref, "t5.out", o, 512 * 768);
    dfa_t5_encode(t, ids, mask, 512, o);
    printf("t5   512 tokens: load %.2f s, encode %.3f s = %.1f GFLOP/s; sgemm baseline %.1f GFLOP/s (ratio %.2f); "
           "rel L2 %.2g, masked %.2g\n", tl, tt, flops / tt / 1e9, flops / base / 1e9, base / tt, e1,
           err_vs(ref, "t5.outm", o, 512 * 768));
    dfa_t5_free(t);
    free(h), free(o);
    dfa_st_close(ref);
    dfa_ctx_free(ctx);
    return 0;
}
