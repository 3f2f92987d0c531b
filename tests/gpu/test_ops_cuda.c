/* test_ops_cuda.c (GPU) - every model op on the GPU against the CPU op (src/models/ops.h) on
 * fresh random inputs; outputs poisoned with NaN first; bf16 bound 1e-2 relative L2. */
#include "../test.h"
#include "gpu_test_util.h"

#include <stdint.h>
#include <time.h>

#include "core/cuda_rt.h"
#include "core/tensor.h"
#include "dfa.h"
#include "core/ctx.h"
#include "models/cuda/ops_cuda.h"
#include "models/ops.h"

typedef struct gpu {
    dfa_cuda *cu;
    dfa_cuops *ops;
    dfa_error err;
    unsigned long long rng;
} gpu;

/* random host f32 rounded to bf16 (so the CPU sees exactly the GPU's inputs) + device copy */
static uint16_t *upload_rand(gpu *g, float *host, size_t n, float scale) {
    uint16_t *h16 = malloc(n * 2);
    for (size_t i = 0; i < n; i++) {
        h16[i] = dfa_f32_to_bf16(test_rng_uniform(&g->rng) * scale);
        host[i] = dfa_bf16_to_f32(h16[i]);
    }
    void *d = NULL;
    CHECK(dfa_cuda_malloc(g->cu, &d, n * 2, &g->err) == DFA_OK);
    CHECK(dfa_cuda_h2d(g->cu, d, h16, n * 2, &g->err) == DFA_OK);
    free(h16);
    return d;
}

static uint16_t *alloc_poisoned(gpu *g, size_t n) {
    void *d = NULL;
    CHECK(dfa_cuda_malloc(g->cu, &d, n * 2, &g->err) == DFA_OK);
    CHECK(dfa_cuda_memset(g->cu, d, 0xff, n * 2, &g->err) == DFA_OK); /* 0xffff = NaN in bf16 */
    return d;
}

static void download(gpu *g, const uint16_t *d, float *host, size_t n) {
    uint16_t *h16 = malloc(n * 2);
    CHECK(dfa_cuda_d2h(g->cu, h16, d, n * 2, &g->err) == DFA_OK);
    for (size_t i = 0; i < n; i++) host[i] = dfa_bf16_to_f32(h16[i]);
    free(h16);
}

static gpu G;
static dfa_ctx *CTX;

static void test_linear(void) {
    const int shapes[][3] = {{37, 64, 96}, {256, 128, 200}, {5, 3072, 64}};
    for (int s = 0; s < 3; s++) {
        int M = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
        float *x = malloc(sizeof(float) * M * K), *w = malloc(sizeof(float) * N * K), *b = malloc(sizeof(float) * N);
        float *ref = malloc(sizeof(float) * M * N), *got = malloc(sizeof(float) * M * N);
        uint16_t *dx = upload_rand(&G, x, (size_t)M * K, 1.0f), *dw = upload_rand(&G, w, (size_t)N * K, 0.1f);
        uint16_t *db = upload_rand(&G, b, N, 1.0f), *dy = alloc_poisoned(&G, (size_t)M * N);
        CHECKF(dfa_cuops_linear(G.ops, dx, M, K, dw, db, N, 0, dy, &G.err) == DFA_OK, "%s", G.err.msg);
        CHECK(dfa_cuda_sync(G.cu, &G.err) == DFA_OK);
        download(&G, dy, got, (size_t)M * N);
        dfa_op_linear(CTX, x, M, K, w, b, N, ref);
        double e = gpu_rel_l2(got, ref, (size_t)M * N);
        CHECKF(e < 1e-2, "linear %dx%dx%d rel err %g", M, K, N, e);
        /* accumulate: y += x W^T (no bias) */
        CHECK(dfa_cuops_linear(G.ops, dx, M, K, dw, NULL, N, 1, dy, &G.err) == DFA_OK);
        download(&G, dy, got, (size_t)M * N);
        float *ref2 = malloc(sizeof(float) * M * N);
        dfa_op_linear(CTX, x, M, K, w, NULL, N, ref2);
        for (int i = 0; i < M * N; i++) ref2[i] += ref[i];
        e = gpu_rel_l2(got, ref2, (size_t)M * N);
        CHECKF(e < 1e-2, "linear accumulate rel err %g", e);
        dfa_cuda_dealloc(G.cu, dx); dfa_cuda_dealloc(G.cu, dw); dfa_cuda_dealloc(G.cu, db); dfa_cuda_dealloc(G.cu, dy);
        free(x); free(w); free(b); free(ref); free(got); free(ref2);
    }
}

static void test_norms_and_modulation(void) {
    const int B = 2, T = 33, N = 200;
    size_t n = (size_t)B * T * N;
    float *x = malloc(n * 4), *g = malloc(N * 4), *bb = malloc(N * 4), *ref = malloc(n * 4), *got = malloc(n * 4);
    float *sh = malloc(B * N * 4), *sc = malloc(B * N * 4);
    uint16_t *dx = upload_rand(&G, x, n, 2.0f), *dg = upload_rand(&G, g, N, 1.0f), *db = upload_rand(&G, bb, N, 1.0f);
    uint16_t *dsh = upload_rand(&G, sh, (size_t)B * N, 1.0f), *dsc = upload_rand(&G, sc, (size_t)B * N, 1.0f);
    uint16_t *dy = alloc_poisoned(&G, n);
    CHECK(dfa_cuops_layernorm(G.ops, dx, B * T, N, dg, db, 1e-6f, dy, &G.err) == DFA_OK);
    download(&G, dy, got, n);
    dfa_op_layernorm(CTX, x, B * T, N, g, bb, 1e-6f, ref);
    CHECKF(gpu_rel_l2(got, ref, n) < 1e-2, "layernorm %g", gpu_rel_l2(got, ref, n));
    CHECK(dfa_cuda_memset(G.cu, dy, 0xff, n * 2, &G.err) == DFA_OK);
    CHECK(dfa_cuops_rmsnorm(G.ops, dx, B * T, N, dg, 1e-6f, dy, &G.err) == DFA_OK);
    download(&G, dy, got, n);
    dfa_op_rmsnorm(CTX, x, B * T, N, g, 1e-6f, ref);
    CHECKF(gpu_rel_l2(got, ref, n) < 1e-2, "rmsnorm %g", gpu_rel_l2(got, ref, n));
    CHECK(dfa_cuda_memset(G.cu, dy, 0xff, n * 2, &G.err) == DFA_OK);
    CHECK(dfa_cuops_ln_modulate(G.ops, dx, B, T, N, dsh, dsc, 1e-6f, dy, &G.err) == DFA_OK);
    download(&G, dy, got, n);
    dfa_op_layernorm(CTX, x, B * T, N, NULL, NULL, 1e-6f, ref);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int j = 0; j < N; j++) {
                float *r = &ref[((size_t)b * T + t) * N + j];
                *r = *r * (1.0f + sc[b * N + j]) + sh[b * N + j];
            }
    CHECKF(gpu_rel_l2(got, ref, n) < 1e-2, "ln_modulate %g", gpu_rel_l2(got, ref, n));
    /* gate_add: resid (= dy's current content) += gate * x */
    float *resid = malloc(n * 4);
    memcpy(resid, got, n * 4);
    CHECK(dfa_cuops_gate_add(G.ops, dy, B, T, N, dsc, dx, &G.err) == DFA_OK);
    download(&G, dy, got, n);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int j = 0; j < N; j++) {
                size_t i = ((size_t)b * T + t) * N + j;
                ref[i] = resid[i] + sc[b * N + j] * x[i];
            }
    CHECKF(gpu_rel_l2(got, ref, n) < 1e-2, "gate_add %g", gpu_rel_l2(got, ref, n));
    dfa_cuda_dealloc(G.cu, dx); dfa_cuda_dealloc(G.cu, dg); dfa_cuda_dealloc(G.cu, db);
    dfa_cuda_dealloc(G.cu, dsh); dfa_cuda_dealloc(G.cu, dsc); dfa_cuda_dealloc(G.cu, dy);
    free(x); free(g); free(bb); free(ref); free(got); free(sh); free(sc); free(resid);
}

static void test_activations_and_rope(void) {
    size_t n = 4099;
    float *x = malloc(n * 4), *ref = malloc(n * 4), *got = malloc(n * 4);
    for (int a = 0; a < 3; a++) {
        uint16_t *dx = upload_rand(&G, x, n, 4.0f);
        CHECK(dfa_cuops_act(G.ops, dx, n, (dfa_act_kind)a, &G.err) == DFA_OK);
        download(&G, dx, got, n);
        memcpy(ref, x, n * 4);
        if (a == DFA_ACT_SILU) dfa_op_silu(ref, n);
        else if (a == DFA_ACT_GELU_TANH) dfa_op_gelu_tanh(ref, n);
        else dfa_op_gelu_erf(ref, n);
        CHECKF(gpu_rel_l2(got, ref, n) < 1e-2, "act %d %g", a, gpu_rel_l2(got, ref, n));
        dfa_cuda_dealloc(G.cu, dx);
    }
    free(x); free(ref); free(got);
    const int B = 2, T = 17, H = 3, D = 16;
    size_t m = (size_t)B * T * H * D;
    float *q = malloc(m * 4), *qr = malloc(m * 4), *qg = malloc(m * 4);
    float *cs = malloc(T * D / 2 * 4), *sn = malloc(T * D / 2 * 4);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < D / 2; i++) {
            double ang = t * pow(10000.0, -2.0 * i / D);
            cs[t * D / 2 + i] = (float)cos(ang);
            sn[t * D / 2 + i] = (float)sin(ang);
        }
    uint16_t *dq = upload_rand(&G, q, m, 1.0f);
    void *dcs, *dsn;
    CHECK(dfa_cuda_malloc(G.cu, &dcs, T * D / 2 * 4, &G.err) == DFA_OK);
    CHECK(dfa_cuda_malloc(G.cu, &dsn, T * D / 2 * 4, &G.err) == DFA_OK);
    CHECK(dfa_cuda_h2d(G.cu, dcs, cs, T * D / 2 * 4, &G.err) == DFA_OK);
    CHECK(dfa_cuda_h2d(G.cu, dsn, sn, T * D / 2 * 4, &G.err) == DFA_OK);
    CHECK(dfa_cuops_rope(G.ops, dq, B, T, H, D, dcs, dsn, &G.err) == DFA_OK);
    download(&G, dq, qg, m);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++)
                for (int i = 0; i < D / 2; i++) {
                    size_t o = (((size_t)b * T + t) * H + h) * D + 2 * i;
                    float c = cs[t * D / 2 + i], s = sn[t * D / 2 + i];
                    qr[o] = q[o] * c - q[o + 1] * s;
                    qr[o + 1] = q[o + 1] * c + q[o] * s;
                }
    CHECKF(gpu_rel_l2(qg, qr, m) < 1e-2, "rope %g", gpu_rel_l2(qg, qr, m));
    dfa_cuda_dealloc(G.cu, dq); dfa_cuda_dealloc(G.cu, dcs); dfa_cuda_dealloc(G.cu, dsn);
    free(q); free(qr); free(qg); free(cs); free(sn);
}

int main(void) {
    G.rng = 0x9e3779b97f4a7c15ull ^ (unsigned long long)time(NULL);
    char msg[256];
    dfa_ctx_params p = dfa_ctx_default_params();
    if (dfa_ctx_init(&CTX, &p, msg, sizeof msg) != DFA_OK) return 1;
    if (dfa_cuda_init(&G.cu, 0, &G.err) != DFA_OK) {
        fprintf(stderr, "no GPU: %s\n", G.err.msg);
        return 1;
    }
    if (dfa_cuops_init(&G.ops, G.cu, &G.err) != DFA_OK) {
        fprintf(stderr, "%s\n", G.err.msg);
        return 1;
    }
    RUN(test_linear);
    RUN(test_norms_and_modulation);
    RUN(test_activations_and_rope);
    dfa_cuops_free(G.ops);
    dfa_cuda_free(G.cu);
    dfa_ctx_free(CTX);
    return test_summary();
}
