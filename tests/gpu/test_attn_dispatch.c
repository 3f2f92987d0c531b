/* test_attn_dispatch.c - dfa_attn_run_heads and the plan-driven dfa_attn_layer on CUDA tensors
 * (bf16, the fused kernel through attn_gpu.c) against the CPU reference (f32 on the same
 * bf16-rounded inputs): mixed per-head methods with refreshes, stores and ASC; a random plan
 * with caches over several steps. Needs a GPU (ctest label gpu). */
#include <stdint.h>

#include "../test.h"
#include "attn/attn.h"
#include "attn/attn_state.h"
#include "core/ctx.h"
#include "core/cuda_rt.h"
#include "plan/plan.h"

static dfa_ctx *g_gpu, *g_cpu;
static unsigned long long g_seed = 0xabcdef12345ULL;

typedef struct buf {
    size_t n;
    float *h;    /* host f32 (bf16-exact values) */
    uint16_t *b; /* host bf16 */
    void *d;     /* device bf16 */
} buf;

static void buf_init(buf *x, size_t n, float amp) {
    x->n = n;
    x->h = malloc(n * sizeof(float));
    x->b = malloc(n * 2);
    for (size_t i = 0; i < n; i++) {
        x->b[i] = dfa_f32_to_bf16(amp * test_rng_uniform(&g_seed));
        x->h[i] = dfa_bf16_to_f32(x->b[i]);
    }
    x->d = NULL;
    dfa_status s = dfa_ctx_mem_alloc(g_gpu, DFA_DEV_CUDA, n * 2, "test buffer", &x->d);
    CHECKF(s == DFA_OK, "%s", dfa_ctx_error(g_gpu));
    if (s == DFA_OK) CHECK(dfa_cuda_h2d(g_gpu->cuda, x->d, x->b, n * 2, &g_gpu->err) == DFA_OK);
}

static void buf_refill(buf *x, float amp) {
    for (size_t i = 0; i < x->n; i++) {
        x->b[i] = dfa_f32_to_bf16(amp * test_rng_uniform(&g_seed));
        x->h[i] = dfa_bf16_to_f32(x->b[i]);
    }
    CHECK(dfa_cuda_h2d(g_gpu->cuda, x->d, x->b, x->n * 2, &g_gpu->err) == DFA_OK);
}

static void buf_download(buf *x, float *dst) {
    CHECK(dfa_cuda_sync(g_gpu->cuda, &g_gpu->err) == DFA_OK);
    CHECK(dfa_cuda_d2h(g_gpu->cuda, x->b, x->d, x->n * 2, &g_gpu->err) == DFA_OK);
    for (size_t i = 0; i < x->n; i++) dst[i] = dfa_bf16_to_f32(x->b[i]);
}

static void buf_free(buf *x) {
    free(x->h);
    free(x->b);
    dfa_ctx_mem_release(g_gpu, x->d);
}

/* relative L2 error of head h's slice */
static double head_rel(const float *got, const float *ref, int B, int N, int H, int D, int h) {
    double e = 0, r = 0;
    for (int b = 0; b < B; b++)
        for (int n = 0; n < N; n++)
            for (int d = 0; d < D; d++) {
                size_t i = (((size_t)b * N + n) * H + h) * D + d;
                double x = got[i], y = ref[i];
                e += (x - y) * (x - y);
                r += y * y;
                if (isnan(x)) e = INFINITY;
            }
    return r > 0 ? sqrt(e / r) : sqrt(e);
}

static void tensors(dfa_tensor t[4], void *q, void *k, void *v, void *o, dfa_dtype dt, dfa_device dev, int B, int N,
                    int H, int D) {
    int64_t shape[4] = {B, N, H, D};
    void *p[4] = {q, k, v, o};
    for (int i = 0; i < 4; i++) dfa_tensor_init(&t[i], dt, dev, 4, shape, p[i], NULL);
}

static void test_mixed_heads(void) {
    const int B = 2, H = 6;
    const int Ds[4] = {64, 128, 72, 24}; /* 72: DiT-XL-2 / PixArt; 24: the tiny DiT fixture */
    const dfa_attn_layout Ls[3] = {{300, 77, 0, 128, DFA_BAND_ARROW}, {256, 40, 1, 64, DFA_BAND_ARROW}, {197, 0, 1, 128, DFA_BAND_ARROW}};
    const dfa_attn_head_exec ex[6] = {
        {DFA_ATTN_FULL, 0, 1, 0, 0}, {DFA_ATTN_ARROW, 1, 0, 0, 0}, {DFA_ATTN_ARROW_RS, 1, 0, 0, 0},
        {DFA_ATTN_CACHE, 0, 0, 0, 0}, {DFA_ATTN_FULL, 0, 0, 1, 0}, {DFA_ATTN_ARROW, 0, 1, 0, 0},
    };
    for (int li = 0; li < 3; li++)
        for (int di = 0; di < 4; di++)
            for (int asc = 0; asc < 2; asc++) {
                const dfa_attn_layout *L = &Ls[li];
                const int N = dfa_layout_tokens(L), D = Ds[di];
                const size_t n = (size_t)B * N * H * D;
                buf q, k, v, o, oc, rc;
                buf_init(&q, n, 2.0f);
                buf_init(&k, n, 2.0f);
                buf_init(&v, n, 1.0f);
                buf_init(&o, n, 1.0f);
                buf_init(&oc, n, 1.0f);
                buf_init(&rc, n, 0.5f);
                CHECK(dfa_cuda_memset(g_gpu->cuda, o.d, 0xff, n * 2, &g_gpu->err) == DFA_OK); /* NaN */
                float *ro = malloc(n * sizeof(float)), *roc = malloc(n * sizeof(float)), *rrc = malloc(n * sizeof(float));
                float *go = malloc(n * sizeof(float)), *goc = malloc(n * sizeof(float)), *grc = malloc(n * sizeof(float));
                memcpy(roc, oc.h, n * sizeof(float));
                memcpy(rrc, rc.h, n * sizeof(float));
                dfa_tensor tc[4], tg[4];
                tensors(tc, q.h, k.h, v.h, ro, DFA_F32, DFA_DEV_CPU, B, N, H, D);
                tensors(tg, q.d, k.d, v.d, o.d, DFA_BF16, DFA_DEV_CUDA, B, N, H, D);
                CHECKF(dfa_attn_run_heads(g_cpu, L, &tc[0], &tc[1], &tc[2], &tc[3], ex, roc, rrc, asc, 1) == DFA_OK,
                       "%s", dfa_ctx_error(g_cpu));
                dfa_status st = dfa_attn_run_heads(g_gpu, L, &tg[0], &tg[1], &tg[2], &tg[3], ex, oc.d, rc.d, asc, 1);
                CHECKF(st == DFA_OK, "%s", dfa_ctx_error(g_gpu));
                buf_download(&o, go);
                buf_download(&oc, goc);
                buf_download(&rc, grc);
                for (int h = 0; h < H; h++) {
                    double eo = head_rel(go, ro, B, N, H, D, h);
                    double ec = head_rel(goc, roc, B, N, H, D, h);
                    double er = head_rel(grc, rrc, B, N, H, D, h);
                    /* residuals are small differences of two outputs: relative error is larger */
                    CHECKF(eo < 1e-2 && ec < 1e-2 && er < (ex[h].store_res ? 5e-2 : 1e-2),
                           "layout %d D %d asc %d head %d (%s): rel err out %.2e out_cache %.2e res %.2e", li, D, asc,
                           h, dfa_attn_method_name(ex[h].method), eo, ec, er);
                }
                printf("  layout %d (N=%d) D=%d asc %d: ok\n", li, N, D, asc);
                free(ro), free(roc), free(rrc), free(go), free(goc), free(grc);
                buf_free(&q), buf_free(&k), buf_free(&v), buf_free(&o), buf_free(&oc), buf_free(&rc);
            }
}

static void test_plan_steps(void) {
    const int S = 6, Ly = 2, H = 6, B = 2, D = 64;
    dfa_attn_layout L = {256, 77, 0, 128, DFA_BAND_ARROW};
    const int N = dfa_layout_tokens(&L);
    dfa_plan p;
    dfa_error err;
    CHECK(dfa_plan_init(&p, &L, S, Ly, H, &err) == DFA_OK);
    p.grid_h = 16;
    p.grid_w = 16;
    p.cfg = 1;
    dfa_plan_make_opts o = {DFA_PLAN_PAT_RANDOM, 1, 1, 0, 0, 11};
    CHECKF(dfa_plan_make(&p, &o, &err) == DFA_OK, "%s", err.msg);
    for (int s = 1; s < S; s++) p.asc[(size_t)s * Ly + (s % 2)] = 1;
    p.method_set |= DFA_PLAN_SET_ASC;
    CHECK(dfa_plan_validate(&p, "gpu test", &err) == DFA_OK);
    CHECK(dfa_attn_set_plan(g_cpu, &p) == DFA_OK);
    CHECK(dfa_attn_set_plan(g_gpu, &p) == DFA_OK);
    const size_t n = (size_t)B * N * H * D;
    buf q, k, v, ob;
    buf_init(&q, n, 2.0f);
    buf_init(&k, n, 2.0f);
    buf_init(&v, n, 1.0f);
    buf_init(&ob, n, 1.0f);
    float *ro = malloc(n * sizeof(float)), *go = malloc(n * sizeof(float));
    double worst = 0;
    for (int s = 0; s < S; s++) {
        CHECK(dfa_attn_begin_step(g_cpu, s) == DFA_OK && dfa_attn_begin_step(g_gpu, s) == DFA_OK);
        for (int l = 0; l < Ly; l++) {
            buf_refill(&q, 2.0f);
            buf_refill(&k, 2.0f);
            buf_refill(&v, 1.0f);
            dfa_tensor tc[4], tg[4];
            tensors(tc, q.h, k.h, v.h, ro, DFA_F32, DFA_DEV_CPU, B, N, H, D);
            tensors(tg, q.d, k.d, v.d, ob.d, DFA_BF16, DFA_DEV_CUDA, B, N, H, D);
            CHECKF(dfa_attn_layer(g_cpu, l, &L, &tc[0], &tc[1], &tc[2], &tc[3]) == DFA_OK, "%s", dfa_ctx_error(g_cpu));
            CHECKF(dfa_attn_layer(g_gpu, l, &L, &tg[0], &tg[1], &tg[2], &tg[3]) == DFA_OK, "%s", dfa_ctx_error(g_gpu));
            buf_download(&ob, go);
            for (int h = 0; h < H; h++) {
                double e = head_rel(go, ro, B, N, H, D, h);
                CHECKF(e < 2e-2, "step %d layer %d head %d (%s): rel err %.2e", s, l, h,
                       dfa_attn_method_name(p.method[dfa_plan_index(&p, s, l, h)]), e);
                worst = e > worst ? e : worst;
            }
        }
    }
    printf("  plan of %d steps x %d layers x %d heads: worst head rel err %.2e; cache bytes cpu %zu gpu %zu\n", S, Ly, H,
           worst, dfa_attn_cache_bytes(g_cpu), dfa_attn_cache_bytes(g_gpu));
    CHECK(dfa_attn_cache_bytes(g_gpu) * 2 == dfa_attn_cache_bytes(g_cpu)); /* bf16 vs f32 */
    dfa_attn_end_run(g_gpu);
    dfa_attn_end_run(g_cpu);
    free(ro), free(go);
    buf_free(&q), buf_free(&k), buf_free(&v), buf_free(&ob);
    dfa_plan_free(&p);
}

int main(void) {
    dfa_ctx_params pg = dfa_ctx_default_params(), pc = dfa_ctx_default_params();
    pg.backend = DFA_BACKEND_CUDA;
    char msg[512];
    if (dfa_ctx_init(&g_gpu, &pg, msg, sizeof msg) != DFA_OK) {
        fprintf(stderr, "no CUDA context: %s\n", msg);
        return 1;
    }
    if (dfa_ctx_init(&g_cpu, &pc, msg, sizeof msg) != DFA_OK) return 1;
    RUN(test_mixed_heads);
    RUN(test_plan_steps);
    dfa_ctx_free(g_gpu);
    dfa_ctx_free(g_cpu);
    return test_summary();
}
