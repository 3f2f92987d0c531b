/* test_attn_methods.c - every attention method of dfa_attn_run_heads() against a plain float64
 * loop on fresh random inputs, over several layouts; masks against brute-force counts; mixed
 * per-head runs against each head alone; ASC. */
#include <math.h>

#include "attn_ref.h"
#include "core/ctx.h"
#include "dfa.h"

#define TOL 2e-5

typedef struct shape_case {
    int n_vis, n_text, text_first, block, B, H, D;
} shape_case;

static const shape_case cases[] = {
    {37, 11, 1, 8, 1, 1, 64},   /* odd lengths, text first, one head */
    {50, 9, 0, 16, 2, 3, 64},   /* text after the image (SD3), batch 2 */
    {45, 0, 1, 4, 1, 2, 128},   /* no text (DiT / PixArt), head dim 128 */
    {64, 13, 0, 64, 1, 2, 64},  /* one visual tile: every window >= length */
    {29, 7, 1, 1, 1, 2, 64},    /* block 1 */
    {70, 5, 1, 9, 1, 4, 128},   /* many heads, tiles that do not divide */
    {200, 40, 1, 32, 1, 1, 64}, /* chunks beyond KC keys */
};

static dfa_ctx *make_ctx(void) {
    dfa_ctx *ctx = NULL;
    dfa_ctx_params p = dfa_ctx_default_params();
    p.n_threads = 2;
    if (dfa_ctx_init(&ctx, &p, NULL, 0) != DFA_OK) {
        fprintf(stderr, "cannot create a context\n");
        exit(1);
    }
    return ctx;
}

static dfa_attn_layout case_layout(const shape_case *c) {
    dfa_attn_layout L = {c->n_vis, c->n_text, c->text_first, c->block, DFA_BAND_ARROW};
    return L;
}

static float *rand_buf(size_t n, unsigned long long *rng) {
    float *b = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) b[i] = test_rng_uniform(rng);
    return b;
}

static int slice_equal(const qkv_set *s, const float *x, const float *y, int b, int h) {
    for (int n = 0; n < s->N; n++)
        if (memcmp(x + qkv_at(s, b, n, h), y + qkv_at(s, b, n, h), (size_t)s->D * sizeof(float)) != 0) return 0;
    return 1;
}

/* every method, all heads alike, each head against the float64 reference */
static void test_methods_vs_reference(void) {
    dfa_ctx *ctx = make_ctx();
    unsigned long long rng = 0x1234567ULL;
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const shape_case *c = &cases[ci];
        dfa_attn_layout L = case_layout(c);
        qkv_set s;
        qkv_alloc(&s, c->B, c->n_vis + c->n_text, c->H, c->D, &rng);
        const size_t ND = (size_t)s.N * s.D, n = (size_t)c->B * s.N * c->H * c->D;
        int wfull = dfa_mask_full_window(&L);
        int windows[4] = {0, 1, wfull, wfull + 3};
        double *ref = malloc(ND * sizeof(double)), *ref2 = malloc(ND * sizeof(double));
        float *oc = rand_buf(n, &rng), *res = rand_buf(n, &rng);
        float *oc0 = malloc(n * sizeof(float)), *res0 = malloc(n * sizeof(float));
        dfa_attn_head_exec *ex = calloc((size_t)c->H, sizeof *ex);
        for (int wi = 0; wi < 4; wi++) {
            int w = windows[wi];
            for (int m = 0; m < DFA_ATTN_METHOD_COUNT; m++) {
                for (int store = 0; store < 2; store++) {
                    if (store && m == DFA_ATTN_CACHE) continue;
                    if (m != DFA_ATTN_ARROW && m != DFA_ATTN_ARROW_RS && wi > 0 && !(m == DFA_ATTN_FULL && store))
                        continue;
                    const int sres = store && m == DFA_ATTN_FULL;
                    memcpy(oc0, oc, n * sizeof(float));
                    memcpy(res0, res, n * sizeof(float));
                    for (int h = 0; h < c->H; h++) ex[h] = (dfa_attn_head_exec){m, w, store, sres, w};
                    /* what the call must write is poisoned first */
                    if (sres)
                        for (size_t i = 0; i < n; i++) res[i] = NAN;
                    if (store)
                        for (size_t i = 0; i < n; i++) oc[i] = NAN;
                    qkv_poison(&s);
                    dfa_status st = dfa_attn_run_heads(ctx, &L, &s.tq, &s.tk, &s.tv, &s.to, ex, oc, res, 0, 0);
                    CHECKF(st == DFA_OK, "case %zu method %d: %s", ci, m, dfa_ctx_error(ctx));
                    double worst = 0, worst_r = 0;
                    int cache_bad = 0;
                    for (int b = 0; b < c->B; b++)
                        for (int h = 0; h < c->H; h++) {
                            if (m == DFA_ATTN_CACHE) {
                                if (!slice_equal(&s, s.o, oc0, b, h)) worst = INFINITY;
                                continue;
                            }
                            ref_head(&s, &L, m == DFA_ATTN_FULL ? -1 : w, b, h, ref);
                            if (m == DFA_ATTN_ARROW_RS)
                                for (int t = 0; t < s.N; t++)
                                    for (int d = 0; d < s.D; d++)
                                        ref[(size_t)t * s.D + d] += res0[qkv_at(&s, b, t, h) + d];
                            double e = head_err(&s, s.o, b, h, ref);
                            worst = e > worst || isnan(e) ? e : worst;
                            if (sres) {
                                ref_head(&s, &L, w, b, h, ref2);
                                for (int t = 0; t < s.N; t++)
                                    for (int d = 0; d < s.D; d++) {
                                        double dd = fabs(res[qkv_at(&s, b, t, h) + d] -
                                                         (ref[(size_t)t * s.D + d] - ref2[(size_t)t * s.D + d]));
                                        if (!(dd <= worst_r)) worst_r = isnan(dd) ? INFINITY : dd;
                                    }
                            }
                            if (store) cache_bad |= !slice_equal(&s, s.o, oc, b, h);
                        }
                    CHECKF(worst <= TOL, "case %zu method %s window %d store %d: max error %g", ci,
                           dfa_attn_method_name(m), w, store, worst);
                    CHECKF(worst_r <= TOL, "case %zu FULL+residual window %d: residual error %g", ci, w, worst_r);
                    CHECKF(!cache_bad, "case %zu method %s: stored output differs from out", ci,
                           dfa_attn_method_name(m));
                    /* caches the call must not write are untouched */
                    if (!store) CHECK(memcmp(oc, oc0, n * sizeof(float)) == 0);
                    if (!sres) CHECK(memcmp(res, res0, n * sizeof(float)) == 0);
                    memcpy(oc, oc0, n * sizeof(float));
                    if (sres)
                        for (size_t i = 0; i < n; i++) res[i] = test_rng_uniform(&rng);
                }
            }
        }
        free(oc);
        free(res);
        free(oc0);
        free(res0);
        free(ex);
        free(ref);
        free(ref2);
        qkv_free(&s);
    }
    dfa_ctx_free(ctx);
}

/* a band that covers every visual pair computes exactly what FULL computes */
static void test_band_covering_all_is_full(void) {
    dfa_ctx *ctx = make_ctx();
    unsigned long long rng = 99;
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const shape_case *c = &cases[ci];
        dfa_attn_layout L = case_layout(c);
        qkv_set s;
        qkv_alloc(&s, c->B, c->n_vis + c->n_text, c->H, c->D, &rng);
        size_t n = (size_t)c->B * s.N * c->H * c->D;
        float *full = malloc(n * sizeof(float));
        dfa_attn_head_exec *ex = calloc((size_t)c->H, sizeof *ex);
        for (int h = 0; h < c->H; h++) ex[h].method = DFA_ATTN_FULL;
        CHECK(dfa_attn_run_heads(ctx, &L, &s.tq, &s.tk, &s.tv, &s.to, ex, NULL, NULL, 0, 0) == DFA_OK);
        memcpy(full, s.o, n * sizeof(float));
        for (int h = 0; h < c->H; h++) ex[h] = (dfa_attn_head_exec){DFA_ATTN_ARROW, dfa_mask_full_window(&L), 0, 0, 0};
        qkv_poison(&s);
        CHECK(dfa_attn_run_heads(ctx, &L, &s.tq, &s.tk, &s.tv, &s.to, ex, NULL, NULL, 0, 0) == DFA_OK);
        CHECKF(memcmp(full, s.o, n * sizeof(float)) == 0, "case %zu: ARROW(full window) != FULL", ci);
        CHECK(dfa_mask_entries(&L, dfa_mask_full_window(&L)) == dfa_mask_entries(&L, -1));
        free(full);
        free(ex);
        qkv_free(&s);
    }
    dfa_ctx_free(ctx);
}

/* dfa_mask_entries and the tile predicate against brute force over dfa_mask_keep */
static void test_mask_entries_brute_force(void) {
    unsigned long long rng = 7;
    for (int it = 0; it < 60; it++) {
        dfa_attn_layout L = {(int)(test_rng_next(&rng) % 90), (int)(test_rng_next(&rng) % 20),
                             (int)(test_rng_next(&rng) % 2), 1 + (int)(test_rng_next(&rng) % 17), DFA_BAND_ARROW};
        if (L.n_vis + L.n_text == 0) L.n_vis = 1;
        if (it % 7 == 0) L.n_text = 0;
        int N = dfa_layout_tokens(&L);
        dfa_attn_tiles t;
        dfa_layout_tiles(&L, &t);
        for (int w = -1; w <= dfa_mask_full_window(&L) + 1; w++) {
            int64_t cnt = 0;
            for (int q = 0; q < N; q++)
                for (int k = 0; k < N; k++) cnt += dfa_mask_keep(&L, w, q, k);
            CHECKF(cnt == dfa_mask_entries(&L, w), "n_vis %d n_text %d block %d window %d: %lld vs %lld", L.n_vis,
                   L.n_text, L.block, w, (long long)cnt, (long long)dfa_mask_entries(&L, w));
            /* tile predicate = token predicate for every token of the tiles */
            int bad = 0;
            for (int qt = 0; qt < t.n_tiles; qt++)
                for (int kt = 0; kt < t.n_tiles; kt++) {
                    int qs, ql, ks, kl;
                    dfa_tile_span(&L, qt, &qs, &ql);
                    dfa_tile_span(&L, kt, &ks, &kl);
                    int keep = dfa_mask_tile_keep(&L, w, qt, kt);
                    for (int q = qs; q < qs + ql; q++)
                        for (int k = ks; k < ks + kl; k++) bad += dfa_mask_keep(&L, w, q, k) != keep;
                }
            CHECK(bad == 0);
        }
    }
}

static void test_window_helpers(void) {
    dfa_attn_layout L = {4096, 333, 0, 64, DFA_BAND_ARROW}; /* SD3 1024: 64 visual tiles */
    CHECK(dfa_mask_window_from_tokens(&L, 0) == 0);
    CHECK(dfa_mask_window_from_tokens(&L, 1) == 1);
    CHECK(dfa_mask_window_from_tokens(&L, 64) == 1);
    CHECK(dfa_mask_window_from_tokens(&L, 65) == 2);
    CHECK(dfa_mask_window_from_tokens(&L, 100000) == 63);
    CHECK(dfa_mask_window_from_tokens(&L, -1) == -1);
    CHECK(dfa_mask_v1_window(&L) == 4); /* 4096 / 16 = 256 tokens = 4 tiles */
    dfa_attn_layout S = {100, 0, 1, 8, DFA_BAND_ARROW};
    CHECK(dfa_mask_v1_window(&S) == 1); /* 6 tokens -> 1 tile */
    /* window for a target sparsity: nearest over every window, by brute force here */
    dfa_attn_layout F = {4096, 512, 1, 128, DFA_BAND_ARROW};
    const double nn = 4608.0 * 4608.0;
    for (double t = 0.0; t <= 1.0; t += 0.125) {
        double sp = -1;
        const int w = dfa_mask_window_for_sparsity(&F, t, &sp);
        CHECK(w >= 0 && w <= dfa_mask_full_window(&F));
        CHECK(fabs(sp - (1.0 - dfa_mask_entries(&F, w) / nn)) < 1e-12);
        for (int o = 0; o <= dfa_mask_full_window(&F); o++)
            CHECKF(fabs(1.0 - dfa_mask_entries(&F, o) / nn - t) >= fabs(sp - t), "target %.3f: window %d nearer than %d",
                   t, o, w);
    }
    CHECK(dfa_mask_window_for_sparsity(&F, 0.0, NULL) == dfa_mask_full_window(&F));
    CHECK(dfa_mask_window_for_sparsity(&F, 0.75, NULL) == 0); /* the bench's 75 % arrow: w=0, 76.5 % */
}

/* one call with a different method per head = each head run on its own */
static void test_mixed_heads_equal_each_alone(void) {
    dfa_ctx *ctx = make_ctx();
    unsigned long long rng = 4242;
    const shape_case c = {61, 10, 0, 8, 2, 6, 64};
    dfa_attn_layout L = case_layout(&c);
    qkv_set s;
    qkv_alloc(&s, c.B, c.n_vis + c.n_text, c.H, c.D, &rng);
    size_t n = (size_t)c.B * s.N * c.H * c.D;
    const dfa_attn_head_exec mix[6] = {
        {DFA_ATTN_FULL, 0, 1, 0, 0},     {DFA_ATTN_ARROW, 1, 0, 0, 0}, {DFA_ATTN_ARROW_RS, 2, 1, 0, 0},
        {DFA_ATTN_CACHE, 0, 0, 0, 0},    {DFA_ATTN_FULL, 0, 0, 1, 2},  {DFA_ATTN_ARROW, 0, 0, 0, 0},
    };
    float *oc = rand_buf(n, &rng), *res = rand_buf(n, &rng);
    float *pr_oc = malloc(n * sizeof(float)), *pr_res = malloc(n * sizeof(float));
    float *oc_a = malloc(n * sizeof(float)), *res_a = malloc(n * sizeof(float)), *mixed = malloc(n * sizeof(float));
    for (int asc = 0; asc < 2; asc++) {
        memcpy(pr_oc, oc, n * sizeof(float)); /* the caches as the mixed run finds them */
        memcpy(pr_res, res, n * sizeof(float));
        qkv_poison(&s);
        CHECK(dfa_attn_run_heads(ctx, &L, &s.tq, &s.tk, &s.tv, &s.to, mix, oc, res, asc, 1) == DFA_OK);
        memcpy(mixed, s.o, n * sizeof(float));
        for (int h = 0; h < 6; h++) {
            dfa_attn_head_exec alone[6];
            for (int g = 0; g < 6; g++) alone[g] = mix[h];
            memcpy(oc_a, pr_oc, n * sizeof(float));
            memcpy(res_a, pr_res, n * sizeof(float));
            qkv_poison(&s);
            CHECK(dfa_attn_run_heads(ctx, &L, &s.tq, &s.tk, &s.tv, &s.to, alone, oc_a, res_a, asc, 1) == DFA_OK);
            int same = 1, same_oc = 1, same_res = 1, kept_oc = 1, kept_res = 1;
            for (int b = 0; b < c.B; b++) {
                same &= slice_equal(&s, mixed, s.o, b, h);
                same_oc &= slice_equal(&s, oc, oc_a, b, h);
                same_res &= slice_equal(&s, res, res_a, b, h);
                kept_oc &= slice_equal(&s, oc, pr_oc, b, h);
                kept_res &= slice_equal(&s, res, pr_res, b, h);
            }
            CHECKF(same, "asc %d head %d (%s): mixed run differs from the head alone", asc, h,
                   dfa_attn_method_name(mix[h].method));
            CHECKF(same_oc && same_res, "asc %d head %d: caches differ from the head alone", asc, h);
            CHECKF(mix[h].store_out || kept_oc, "asc %d head %d: output cache slice written", asc, h);
            CHECKF(mix[h].store_res || kept_res, "asc %d head %d: residual slice written", asc, h);
        }
    }
    free(oc);
    free(res);
    free(pr_oc);
    free(pr_res);
    free(oc_a);
    free(res_a);
    free(mixed);
    qkv_free(&s);
    dfa_ctx_free(ctx);
}

/* ASC: equal CFG halves give FULL; unequal halves copy the conditional half */
static void test_asc(void) {
    dfa_ctx *ctx = make_ctx();
    unsigned long long rng = 555;
    const int B = 4, Nv = 33, Nt = 6, H = 3, D = 64, N = Nv + Nt;
    dfa_attn_layout L = {Nv, Nt, 1, 8, DFA_BAND_ARROW};
    qkv_set s;
    qkv_alloc(&s, B, N, H, D, &rng);
    size_t half = (size_t)(B / 2) * N * H * D, n = 2 * half;
    dfa_attn_head_exec ex[3];
    for (int h = 0; h < H; h++) ex[h] = (dfa_attn_head_exec){h == 1 ? DFA_ATTN_ARROW : DFA_ATTN_FULL, 1, 0, 0, 0};
    for (int cond = 0; cond < 2; cond++) {
        /* equal halves */
        float *src[3] = {s.q, s.k, s.v};
        for (int t = 0; t < 3; t++) memcpy(src[t] + (1 - cond) * half, src[t] + cond * half, half * sizeof(float));
        float *plain = malloc(n * sizeof(float));
        qkv_poison(&s);
        CHECK(dfa_attn_run_heads(ctx, &L, &s.tq, &s.tk, &s.tv, &s.to, ex, NULL, NULL, 0, 0) == DFA_OK);
        memcpy(plain, s.o, n * sizeof(float));
        qkv_poison(&s);
        CHECK(dfa_attn_run_heads(ctx, &L, &s.tq, &s.tk, &s.tv, &s.to, ex, NULL, NULL, 1, cond) == DFA_OK);
        CHECKF(memcmp(plain, s.o, n * sizeof(float)) == 0, "cond_half %d: ASC with equal halves != no ASC", cond);
        /* different halves: the unconditional half gets the conditional half's output */
        for (size_t i = 0; i < half; i++) s.q[(1 - cond) * half + i] = test_rng_uniform(&rng);
        qkv_poison(&s);
        CHECK(dfa_attn_run_heads(ctx, &L, &s.tq, &s.tk, &s.tv, &s.to, ex, NULL, NULL, 1, cond) == DFA_OK);
        CHECK(memcmp(s.o + cond * half, plain + cond * half, half * sizeof(float)) == 0);
        CHECK(memcmp(s.o + (1 - cond) * half, plain + cond * half, half * sizeof(float)) == 0);
        free(plain);
    }
    /* odd batch is refused */
    s.tq.shape[0] = s.tk.shape[0] = s.tv.shape[0] = s.to.shape[0] = 3;
    CHECK(dfa_attn_run_heads(ctx, &L, &s.tq, &s.tk, &s.tv, &s.to, ex, NULL, NULL, 1, 1) == DFA_ERR_INVALID_ARG);
    CHECK(strstr(dfa_ctx_error(ctx), "even CFG batch") != NULL);
    qkv_free(&s);
    dfa_ctx_free(ctx);
}

/* bad arguments: clear errors, no crash */
static void test_bad_args(void) {
    dfa_ctx *ctx = make_ctx();
    unsigned long long rng = 1;
    dfa_attn_layout L = {16, 4, 1, 4, DFA_BAND_ARROW};
    qkv_set s;
    qkv_alloc(&s, 1, 20, 2, 64, &rng);
    dfa_attn_head_exec ex[2] = {{DFA_ATTN_CACHE, 0, 0, 0, 0}, {DFA_ATTN_FULL, 0, 0, 0, 0}};
    CHECK(dfa_attn_run_heads(ctx, &L, &s.tq, &s.tk, &s.tv, &s.to, ex, NULL, NULL, 0, 0) == DFA_ERR_INVALID_ARG);
    CHECKF(strstr(dfa_ctx_error(ctx), "head 0: CACHE without an output cache") != NULL, "%s", dfa_ctx_error(ctx));
    ex[0].method = 9;
    CHECK(dfa_attn_run_heads(ctx, &L, &s.tq, &s.tk, &s.tv, &s.to, ex, NULL, NULL, 0, 0) == DFA_ERR_INVALID_ARG);
    CHECK(strstr(dfa_ctx_error(ctx), "unknown method 9") != NULL);
    ex[0].method = DFA_ATTN_FULL;
    dfa_attn_layout L2 = {17, 4, 1, 4, DFA_BAND_ARROW};
    CHECK(dfa_attn_run_heads(ctx, &L2, &s.tq, &s.tk, &s.tv, &s.to, ex, NULL, NULL, 0, 0) == DFA_ERR_SHAPE);
    CHECK(strstr(dfa_ctx_error(ctx), "q has 20 tokens, layout has 21") != NULL);
    s.tq.dev = s.tk.dev = s.tv.dev = s.to.dev = DFA_DEV_CUDA;
    CHECK(dfa_attn_run_heads(ctx, &L, &s.tq, &s.tk, &s.tv, &s.to, ex, NULL, NULL, 0, 0) == DFA_ERR_UNSUPPORTED);
    CHECK(strstr(dfa_ctx_error(ctx), "CUDA") != NULL);
    qkv_free(&s);
    dfa_ctx_free(ctx);
}

int main(void) {
    RUN(test_mask_entries_brute_force);
    RUN(test_window_helpers);
    RUN(test_methods_vs_reference);
    RUN(test_band_covering_all_is_full);
    RUN(test_mixed_heads_equal_each_alone);
    RUN(test_asc);
    RUN(test_bad_args);
    return test_summary();
}
