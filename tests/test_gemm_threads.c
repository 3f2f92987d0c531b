/* test_gemm_threads.c - dfa_op_gemm under the CPU thread policy (docs/DESIGN.md "CPU threads"):
 * a GEMM split over the context's OpenMP threads (row blocks, or column blocks for few rows)
 * equals a float64 loop to rounding and one single-threaded sgemm bit for bit (a split into
 * blocks small enough for OpenBLAS's small-matrix kernels was not: the split size guards it), for both B
 * layouts, with beta = 0 and 1, odd sizes and strides; and dfa_ctx_init leaves OpenBLAS on one
 * thread. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/ctx.h"
#include "models/ops.h"
#include "test.h"

static unsigned seed = 12345;

static float *rnd(size_t n) {
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; p && i < n; i++) p[i] = (float)rand_r(&seed) / RAND_MAX - 0.5f;
    return p;
}

static dfa_ctx *make_ctx(int threads) {
    dfa_ctx *ctx = NULL;
    dfa_ctx_params p = dfa_ctx_default_params();
    p.n_threads = threads;
    if (dfa_ctx_init(&ctx, &p, NULL, 0) != DFA_OK) exit(1);
    return ctx;
}

/* C = alpha A B(^T) + beta C over M x N x K with leading dimensions padded by 3 */
static void gemm_case(dfa_ctx *many, dfa_ctx *one, int trans_b, int M, int N, int K, float beta) {
    const int lda = K + 3, ldb = (trans_b ? K : N) + 3, ldc = N + 3;
    const size_t nb = (size_t)(trans_b ? N : K) * ldb, nc = (size_t)M * ldc;
    float *A = rnd((size_t)M * lda), *B = rnd(nb), *C0 = rnd(nc), *C1 = malloc(nc * sizeof(float));
    float *C2 = malloc(nc * sizeof(float));
    if (!A || !B || !C0 || !C1 || !C2) exit(1);
    memcpy(C1, C0, nc * sizeof(float));
    memcpy(C2, C0, nc * sizeof(float));
    const float alpha = 0.75f;
    dfa_op_gemm(many, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C1, ldc);
    dfa_op_gemm(one, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C2, ldc);
    double maxerr = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double acc = 0;
            for (int k = 0; k < K; k++)
                acc += (double)A[(size_t)i * lda + k] * (trans_b ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j]);
            double ref = alpha * acc + beta * C0[(size_t)i * ldc + j];
            double e = fabs(ref - C1[(size_t)i * ldc + j]);
            if (!(e <= maxerr)) maxerr = e;
        }
    int pad_ok = 1; /* the padding columns of C are never written */
    for (int i = 0; i < M; i++)
        for (int j = N; j < ldc; j++) pad_ok &= C1[(size_t)i * ldc + j] == C0[(size_t)i * ldc + j];
    CHECKF(maxerr < 1e-4 * sqrt((double)K), "gemm %dx%dx%d trans_b %d beta %g: max err %g vs float64", M, N, K, trans_b,
           beta, maxerr);
    CHECKF(memcmp(C1, C2, nc * sizeof(float)) == 0, "gemm %dx%dx%d trans_b %d: split differs from one sgemm", M, N, K,
           trans_b);
    CHECK(pad_ok);
    free(A), free(B), free(C0), free(C1), free(C2);
}

static void test_split_matches(void) {
    dfa_ctx *one = make_ctx(1);
    for (int t = 2; t <= 3; t++) {
        dfa_ctx *many = make_ctx(t);
        for (int tb = 0; tb < 2; tb++)
            for (int b = 0; b < 2; b++) {
                gemm_case(many, one, tb, 301, 256, 96, (float)b); /* row blocks */
                gemm_case(many, one, tb, 4, 2050, 768, (float)b); /* few rows: column blocks */
                gemm_case(many, one, tb, 77, 200, 64, (float)b);  /* below the split size: one call */
            }
        dfa_ctx_free(many);
    }
    dfa_ctx_free(one);
}

static void test_blas_single_threaded(void) {
    openblas_set_num_threads(2);
    dfa_ctx *ctx = make_ctx(2);
    CHECK(openblas_get_num_threads() == 1);
    dfa_ctx_free(ctx);
}

int main(void) {
    RUN(test_split_matches);
    RUN(test_blas_single_threaded);
    return test_summary();
}
