/* bench_threads.c - the CPU thread policy (docs/DESIGN.md "CPU threads"), every configuration in
 * one run against the same baseline: a plain multi-threaded cblas_sgemm with no OpenMP around it.
 *   old: OpenBLAS with its own n pthreads next to our OpenMP loops (the policy before)
 *   new: OpenBLAS single-threaded (dfa_ctx_init), GEMMs split over the OpenMP pool (dfa_op_gemm)
 * Workload: a CLIP-L-shaped encoder layer stack (77 tokens, width 768, MLP 3072, 12 heads) built
 * from the shared ops with random weights, and a 1024 x 768 x 3072 GEMM alone. The results of the
 * two policies are compared (max |diff| / max |y|); the split GEMM against one single-threaded call
 * too. OMP_WAIT_POLICY / GOMP_SPINCOUNT are read by libgomp at load: run it with them set to see
 * their effect on each policy. usage: bench_threads [threads] [layers] */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/ctx.h"
#include "models/ops.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static float *rnd(size_t n, unsigned *seed, float s) {
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; p && i < n; i++) p[i] = s * ((float)rand_r(seed) / RAND_MAX - 0.5f);
    return p;
}

enum { T = 77, C = 768, F = 3072, H = 12 };

typedef struct {
    float *wqkv, *wo, *w1, *w2, *x, *h, *qkv, *a, *m, *scr;
} net;

static void layers(const dfa_ctx *ctx, net *n, int L, float *out) {
    memcpy(n->h, n->x, sizeof(float) * T * C);
    for (int l = 0; l < L; l++) {
        dfa_op_layernorm(ctx, n->h, T, C, NULL, NULL, 1e-5f, n->a);
        dfa_op_linear(ctx, n->a, T, C, n->wqkv, NULL, 3 * C, n->qkv);
        /* attention output has the inputs' row stride 3C: into m ([T, F], F >= 3C) */
        dfa_op_attention(ctx, n->qkv, n->qkv + C, n->qkv + 2 * C, T, T, H, C / H, 3 * C, 0.125f, 1, NULL, NULL,
                         n->scr, n->m);
        dfa_op_gemm(ctx, 1, T, C, C, 1.0f, n->m, 3 * C, n->wo, C, 0.0f, n->a, C);
        memcpy(n->m, n->a, sizeof(float) * T * C);
        dfa_op_add(n->h, n->m, (size_t)T * C);
        dfa_op_layernorm(ctx, n->h, T, C, NULL, NULL, 1e-5f, n->a);
        dfa_op_linear(ctx, n->a, T, C, n->w1, NULL, F, n->m);
        dfa_op_gelu_tanh(n->m, (size_t)T * F);
        dfa_op_linear(ctx, n->m, T, F, n->w2, NULL, C, n->a);
        dfa_op_add(n->h, n->a, (size_t)T * C);
    }
    memcpy(out, n->h, sizeof(float) * T * C);
}

static double rel(const float *a, const float *b, size_t n) {
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        if (fabs((double)a[i] - b[i]) > d) d = fabs((double)a[i] - b[i]);
        if (fabs((double)b[i]) > m) m = fabs((double)b[i]);
    }
    return m > 0 ? d / m : d;
}

int main(int argc, char **argv) {
    dfa_ctx_params cp = dfa_ctx_default_params();
    cp.n_threads = argc > 1 ? atoi(argv[1]) : 0;
    int L = argc > 2 ? atoi(argv[2]) : 12, reps = 3;
    dfa_ctx *ctx = NULL, *one = NULL;
    if (dfa_ctx_init(&ctx, &cp, NULL, 0)) return 1;
    cp.n_threads = 1;
    if (dfa_ctx_init(&one, &cp, NULL, 0)) return 1;
    int nt = ctx->n_threads;
    const char *wp = getenv("OMP_WAIT_POLICY"), *sc = getenv("GOMP_SPINCOUNT");
    printf("threads %d, OMP_WAIT_POLICY=%s GOMP_SPINCOUNT=%s, %d CLIP-L-shaped layers, best of %d\n", nt,
           wp ? wp : "(unset)", sc ? sc : "(unset)", L, reps);
    unsigned seed = 1234;
    net n;
    n.wqkv = rnd((size_t)3 * C * C, &seed, 0.07f);
    n.wo = rnd((size_t)C * C, &seed, 0.07f);
    n.w1 = rnd((size_t)F * C, &seed, 0.07f);
    n.w2 = rnd((size_t)C * F, &seed, 0.035f);
    n.x = rnd((size_t)T * C, &seed, 2.0f);
    n.h = malloc(sizeof(float) * T * C);
    n.qkv = malloc(sizeof(float) * T * 3 * C);
    n.a = malloc(sizeof(float) * T * C);
    n.m = malloc(sizeof(float) * T * F);
    n.scr = malloc(sizeof(float) * T * T * H);
    float *y_old = malloc(sizeof(float) * T * C), *y_new = malloc(sizeof(float) * T * C);
    /* GEMM alone */
    const int M = 1024, K = C, N = F;
    float *A = rnd((size_t)M * K, &seed, 1.0f), *B = rnd((size_t)N * K, &seed, 1.0f);
    float *Y0 = malloc(sizeof(float) * M * N), *Y1 = malloc(sizeof(float) * M * N);
    double layer_flops = 2.0 * T * (4.0 * C * C + 2.0 * C * F) + 4.0 * T * T * C;

    double t_base = 1e9, t_gold = 1e9, t_gnew = 1e9, t_lold = 1e9, t_lnew = 1e9;
    for (int r = 0; r < reps; r++) {
        double t0;
        openblas_set_num_threads(nt); /* baseline: plain sgemm with OpenBLAS's threads, no OpenMP */
        t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, K, B, K, 0.0f, Y0, N);
        if (now() - t0 < t_base) t_base = now() - t0;
        t0 = now(); /* old policy: the same BLAS threads, our ops' OpenMP regions around them */
        layers(ctx, &n, L, y_old);
        if (now() - t0 < t_lold) t_lold = now() - t0;
        t0 = now();
        dfa_op_gemm(ctx, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, Y0, N);
        if (now() - t0 < t_gold) t_gold = now() - t0;
        openblas_set_num_threads(1); /* new policy, as dfa_ctx_init leaves it */
        t0 = now();
        layers(ctx, &n, L, y_new);
        if (now() - t0 < t_lnew) t_lnew = now() - t0;
        t0 = now();
        dfa_op_gemm(ctx, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, Y1, N);
        if (now() - t0 < t_gnew) t_gnew = now() - t0;
    }
    double gf = 2.0 * M * N * K;
    printf("baseline  plain sgemm %dx%dx%d, %d BLAS threads: %.3f s = %.1f GFLOP/s\n", M, K, N, nt, t_base,
           gf / t_base / 1e9);
    printf("gemm      old (BLAS threads)      : %.3f s = %.1f GFLOP/s  (%.2f of baseline)\n", t_gold,
           gf / t_gold / 1e9, t_base / t_gold);
    printf("gemm      new (split over OpenMP) : %.3f s = %.1f GFLOP/s  (%.2f of baseline)\n", t_gnew,
           gf / t_gnew / 1e9, t_base / t_gnew);
    printf("layers    old (BLAS threads)      : %.3f s = %.1f GFLOP/s  (%.2f of baseline)\n", t_lold,
           L * layer_flops / t_lold / 1e9, (L * layer_flops / t_lold) / (gf / t_base));
    printf("layers    new (split over OpenMP) : %.3f s = %.1f GFLOP/s  (%.2f of baseline)  new/old speed %.2fx\n",
           t_lnew, L * layer_flops / t_lnew / 1e9, (L * layer_flops / t_lnew) / (gf / t_base), t_lold / t_lnew);
    /* numerics: split GEMM against one single-threaded call; old against new policy end to end */
    dfa_op_gemm(one, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, Y0, N);
    printf("split gemm vs one single-threaded sgemm: max rel diff %.3g (%s)\n", rel(Y1, Y0, (size_t)M * N),
           memcmp(Y0, Y1, sizeof(float) * M * N) ? "differs" : "bit-identical");
    float *y_ref = malloc(sizeof(float) * T * C);
    layers(one, &n, L, y_ref); /* one thread, one sgemm per product: the reference */
    printf("layers against 1 thread: old policy max rel diff %.3g, new policy %.3g\n", rel(y_old, y_ref, (size_t)T * C),
           rel(y_new, y_ref, (size_t)T * C));
    free(y_ref);
    free(n.wqkv), free(n.wo), free(n.w1), free(n.w2), free(n.x), free(n.h), free(n.qkv), free(n.a), free(n.m);
    free(n.scr), free(y_old), free(y_new), free(A), free(B), free(Y0), free(Y1);
    dfa_ctx_free(one);
    dfa_ctx_free(ctx);
    return 0;
}
