/* test_attn_ring_cuda.c - the CUDA search backend's attn_multi (FULL and every ARROW window of a
 * V2 layer from one ring launch + combine, attn_cuda.h) against the float64 reference
 * (dfa_search_attn_ref) per candidate: fresh bf16-exact random inputs, every output poisoned
 * (NaN) before the run, rel L2 < 1e-2; ARROW of the smallest window equals the plain ARROW
 * launch bit for bit; a window at the full band is FULL (a copy). Layouts: text first / last /
 * none, odd token counts, head dims 64, 128 and 72 (padded), 1 to 4 windows. On a GPU without
 * the wgmma kernel attn_multi falls back to one launch per window (checked the same way). */
#include <string.h>

#include "attn/cuda/attn_cuda.h"
#include "gpu_test_util.h"
#include "plan/search.h"

typedef struct ring_case {
    dfa_attn_layout l;
    int rows, heads, head_dim, n_win, win[5];
} ring_case;

static void run_case(dfa_ctx *ctx, const ring_case *c, unsigned long long *rng) {
    dfa_search_cuda cs;
    dfa_search_backend be;
    CHECKF(dfa_search_backend_cuda(ctx, &cs, &be) == DFA_OK, "%s", dfa_ctx_error(ctx));
    CHECK(be.attn_multi != NULL);
    const int N = dfa_layout_tokens(&c->l), W = c->n_win;
    const size_t n = (size_t)c->rows * N * c->heads * c->head_dim;
    float *q = malloc(n * 4), *k = malloc(n * 4), *v = malloc(n * 4), *ref = malloc(n * 4), *got = malloc(n * 4);
    uint16_t *hb = malloc(n * 2), *nan16 = malloc(n * 2), *b0 = malloc(n * 2), *b1 = malloc(n * 2);
    gpu_fill_bf16(q, n, rng, 2.0f), gpu_fill_bf16(k, n, rng, 2.0f), gpu_fill_bf16(v, n, rng, 1.0f);
    for (size_t i = 0; i < n; i++) nan16[i] = 0x7fc0; /* bf16 NaN */
    void *dq, *dk, *dv, *dfull, *darrow[5], *dplain;
    dfa_error *e = &ctx->err;
    CHECK(be.alloc(be.user, n * 2, "q", &dq) == DFA_OK && be.alloc(be.user, n * 2, "k", &dk) == DFA_OK);
    CHECK(be.alloc(be.user, n * 2, "v", &dv) == DFA_OK && be.alloc(be.user, n * 2, "full", &dfull) == DFA_OK);
    CHECK(be.alloc(be.user, n * 2, "plain", &dplain) == DFA_OK);
    for (int i = 0; i < W; i++) CHECK(be.alloc(be.user, n * 2, "arrow", &darrow[i]) == DFA_OK);
    for (size_t i = 0; i < n; i++) hb[i] = dfa_f32_to_bf16(q[i]);
    CHECK(dfa_cuda_h2d(ctx->cuda, dq, hb, n * 2, e) == DFA_OK);
    for (size_t i = 0; i < n; i++) hb[i] = dfa_f32_to_bf16(k[i]);
    CHECK(dfa_cuda_h2d(ctx->cuda, dk, hb, n * 2, e) == DFA_OK);
    for (size_t i = 0; i < n; i++) hb[i] = dfa_f32_to_bf16(v[i]);
    CHECK(dfa_cuda_h2d(ctx->cuda, dv, hb, n * 2, e) == DFA_OK);
    CHECK(dfa_cuda_h2d(ctx->cuda, dfull, nan16, n * 2, e) == DFA_OK);
    CHECK(dfa_cuda_h2d(ctx->cuda, dplain, nan16, n * 2, e) == DFA_OK);
    for (int i = 0; i < W; i++) CHECK(dfa_cuda_h2d(ctx->cuda, darrow[i], nan16, n * 2, e) == DFA_OK);
    dfa_status st = be.attn_multi(be.user, &c->l, c->rows, c->heads, c->head_dim, W, c->win, dq, dk, dv, dfull,
                                  darrow);
    CHECKF(st == DFA_OK, "%s", dfa_ctx_error(ctx));
    const int ring = cs.n_rings > 0;
    CHECKF(ring == dfa_attn_cuda_variant_ok(DFA_ATTN_CUDA_V_WGMMA), "ring path %s on a GPU %s the wgmma kernel",
           ring ? "ran" : "did not run", ring ? "without" : "with");
    const int fw = dfa_mask_full_window(&c->l);
    for (int s = 0; s <= W; s++) {
        const int w = s < W ? c->win[s] : -1;
        CHECK(dfa_cuda_d2h(ctx->cuda, hb, s < W ? darrow[s] : dfull, n * 2, e) == DFA_OK);
        for (size_t i = 0; i < n; i++) got[i] = dfa_bf16_to_f32(hb[i]);
        dfa_search_attn_ref(NULL, &c->l, c->rows, c->heads, c->head_dim, w, q, k, v, ref);
        const double err = gpu_rel_l2(got, ref, n);
        printf("  n_vis %d n_text %d text_first %d block %d D %d: %s window %d (full band %d): rel L2 %.2e\n",
               c->l.n_vis, c->l.n_text, c->l.text_first, c->l.block, c->head_dim, ring ? "ring" : "plain", w, fw, err);
        CHECKF(err < 1e-2, "window %d: rel L2 %g", w, err);
    }
    /* the smallest window below the full band: segment 0 itself, the plain ARROW launch's bits */
    int w0 = -1, i0 = -1;
    for (int i = 0; i < W; i++)
        if (c->win[i] < fw && (w0 < 0 || c->win[i] < w0)) w0 = c->win[i], i0 = i;
    if (i0 >= 0) {
        CHECK(be.attn(be.user, &c->l, c->rows, c->heads, c->head_dim, w0, dq, dk, dv, dplain) == DFA_OK);
        CHECK(dfa_cuda_d2h(ctx->cuda, b0, dplain, n * 2, e) == DFA_OK);
        CHECK(dfa_cuda_d2h(ctx->cuda, b1, darrow[i0], n * 2, e) == DFA_OK);
        CHECKF(!memcmp(b0, b1, n * 2), "ARROW(%d) from the ring pass differs from the plain launch", w0);
    }
    be.release(be.user, dq), be.release(be.user, dk), be.release(be.user, dv), be.release(be.user, dfull);
    be.release(be.user, dplain);
    for (int i = 0; i < W; i++) be.release(be.user, darrow[i]);
    dfa_search_cuda_free(&cs);
    free(q), free(k), free(v), free(ref), free(got), free(hb), free(nan16), free(b0), free(b1);
}

int main(void) {
    dfa_ctx *ctx = gpu_new_ctx(DFA_BACKEND_CUDA);
    if (!ctx) return 1;
    const ring_case cases[] = {
        {{512, 32, 1, 64, DFA_BAND_ARROW}, 2, 4, 64, 2, {1, 3}},              /* the search test's layout */
        {{999, 77, 0, 100, DFA_BAND_ARROW}, 2, 3, 128, 4, {5, 0, 2, 9}},      /* text last, unsorted, 9 = the full band */
        {{777, 0, 1, 128, DFA_BAND_ARROW}, 1, 2, 72, 3, {1, 2, 3}},           /* no text, padded head dim, odd tiles */
        {{1024, 128, 1, 128, DFA_BAND_ARROW}, 2, 2, 128, 3, {0, 1, 3}},       /* FLUX-like: whole 128-token tiles */
        {{300, 5, 1, 7, DFA_BAND_ARROW}, 1, 2, 64, 3, {0, 7, 20}},            /* tiny blocks: many tiles, short items */
    };
    unsigned long long rng = 0x2545f4914f6cdd1dULL;
    printf("ring path %s on this GPU\n",
           dfa_attn_cuda_variant_ok(DFA_ATTN_CUDA_V_WGMMA) ? "available" : "unavailable (attn_multi falls back)");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(ctx, &cases[i], &rng);
    dfa_ctx_free(ctx);
    return test_summary();
}
