/* test_attn_steps.c - the plan-driven entry point over a sequence of denoising steps:
 * caching (AST / head-wise), residual sharing and ASC equal their definitions computed in
 * float64 (also with a layer of its own layout, SD3.5 attn2); cache bytes; misuse errors; FLOP
 * accounting against brute-force counts. */
#include <unistd.h>

#include "attn/attn_state.h"
#include "attn_ref.h"
#include "core/ctx.h"
#include "dfa.h"
#include "plan/plan.h"

static dfa_ctx *make_ctx(void) {
    dfa_ctx *ctx = NULL;
    dfa_ctx_params p = dfa_ctx_default_params();
    p.n_threads = 2;
    if (dfa_ctx_init(&ctx, &p, NULL, 0) != DFA_OK) exit(1);
    return ctx;
}

/* L1: layer 1's own layout (SD3.5 attn2: no text), or NULL */
static void make_random_plan(dfa_plan *p, const dfa_attn_layout *L, const dfa_attn_layout *L1, int S, int Ly, int H,
                             unsigned long long seed) {
    dfa_error err;
    CHECK(dfa_plan_init(p, L, S, Ly, H, &err) == DFA_OK);
    if (L1) CHECK(dfa_plan_set_layer_layout(p, 1, L1, &err) == DFA_OK);
    p->grid_h = 1;
    p->grid_w = L->n_vis;
    p->cfg = 1;
    p->cond_half = 1;
    dfa_plan_make_opts o = {DFA_PLAN_PAT_RANDOM, dfa_mask_full_window(L), 1, 0, 0, seed};
    CHECKF(dfa_plan_make(p, &o, &err) == DFA_OK, "%s", err.msg);
    unsigned long long r = seed * 31 + 7;
    for (int s = 1; s < S; s++)
        for (int l = 0; l < Ly; l++) p->asc[(size_t)s * Ly + l] = test_rng_next(&r) % 3 == 0;
    p->method_set |= DFA_PLAN_SET_ASC;
    CHECKF(dfa_plan_validate(p, "test", &err) == DFA_OK, "%s", err.msg);
}

static void steps_case_ex(dfa_attn_layout L, const dfa_attn_layout *L1, int D, unsigned long long seed) {
    dfa_ctx *ctx = make_ctx();
    const int S = 8, Ly = 3, H = 4, B = 2;
    dfa_plan p;
    make_random_plan(&p, &L, L1, S, Ly, H, seed);
    /* the plan must exercise every method and ASC */
    dfa_plan_cost cost;
    dfa_plan_cost_compute(&p, D, &cost, NULL);
    for (int m = 0; m < DFA_ATTN_METHOD_COUNT; m++) CHECKF(cost.n_method[m] > 0, "random plan lacks %s", dfa_attn_method_name(m));
    CHECK(cost.n_refresh > 0 && cost.n_asc > 0);
    CHECKF(dfa_attn_set_plan(ctx, &p) == DFA_OK, "%s", dfa_ctx_error(ctx));
    const int Nmax = L.n_vis + L.n_text; /* layer 1's own layout (L1) has no more tokens */
    const size_t NDmax = (size_t)Nmax * D, per = (size_t)B * NDmax;
    double *last_out = calloc((size_t)Ly * H * per, sizeof(double));
    double *resid = calloc((size_t)Ly * H * per, sizeof(double));
    double *ref = malloc(NDmax * sizeof(double)), *ref2 = malloc(NDmax * sizeof(double)),
           *now = malloc(per * sizeof(double));
    unsigned long long rng = 77;
    for (int run = 0; run < 2; run++) { /* a second run reuses the context after dfa_attn_end_run */
        for (int s = 0; s < S; s++) {
            CHECK(dfa_attn_begin_step(ctx, s) == DFA_OK);
            for (int l = 0; l < Ly; l++) {
                const dfa_attn_layout *LL = l == 1 && L1 ? L1 : &L;
                const int N = LL->n_vis + LL->n_text;
                const size_t ND = (size_t)N * D;
                qkv_set q;
                qkv_alloc(&q, B, N, H, D, &rng);
                dfa_status st = dfa_attn_layer(ctx, l, LL, &q.tq, &q.tk, &q.tv, &q.to);
                CHECKF(st == DFA_OK, "step %d layer %d: %s", s, l, dfa_ctx_error(ctx));
                int asc = p.asc[(size_t)s * Ly + l];
                double worst = 0;
                for (int h = 0; h < H; h++) {
                    size_t i = dfa_plan_index(&p, s, l, h);
                    int m = p.method[i], w = p.window[i];
                    double *lo = last_out + ((size_t)l * H + h) * per, *rs = resid + ((size_t)l * H + h) * per;
                    for (int b = 0; b < B; b++) {
                        int src = asc ? 1 : b; /* cond_half 1 with B = 2: element 1 is conditional */
                        double *o = now + (size_t)b * ND;
                        if (m == DFA_ATTN_CACHE) { /* under ASC the whole layer of cond is shared */
                            memcpy(o, lo + (size_t)src * ND, ND * sizeof(double));
                            continue;
                        }
                        ref_head(&q, LL, m == DFA_ATTN_FULL ? -1 : w, src, h, ref);
                        for (size_t k = 0; k < ND; k++) o[k] = ref[k] + (m == DFA_ATTN_ARROW_RS ? rs[(size_t)src * ND + k] : 0);
                    }
                    if (p.store_res[i]) { /* the residual of this FULL step, per batch element */
                        for (int b = 0; b < B; b++) {
                            int src = asc ? 1 : b;
                            ref_head(&q, LL, -1, src, h, ref);
                            ref_head(&q, LL, p.res_window[i], src, h, ref2);
                            for (size_t k = 0; k < ND; k++) rs[(size_t)b * ND + k] = ref[k] - ref2[k];
                        }
                    }
                    if (m != DFA_ATTN_CACHE) memcpy(lo, now, per * sizeof(double));
                    for (int b = 0; b < B; b++) {
                        double e = head_err(&q, q.o, b, h, now + (size_t)b * ND);
                        if (!(e <= worst)) worst = e;
                    }
                }
                CHECKF(worst <= 3e-5, "run %d step %d layer %d: max error %g", run, s, l, worst);
                qkv_free(&q);
            }
        }
        if (L1 && run == 1) { /* each layer is checked against its own layout */
            CHECK(dfa_attn_begin_step(ctx, 0) == DFA_OK);
            qkv_set q;
            qkv_alloc(&q, B, Nmax, H, D, &rng);
            CHECK(dfa_attn_layer(ctx, 0, &L, &q.tq, &q.tk, &q.tv, &q.to) == DFA_OK);
            CHECK(dfa_attn_layer(ctx, 1, &L, &q.tq, &q.tk, &q.tv, &q.to) == DFA_ERR_INVALID_ARG);
            CHECKF(strstr(dfa_ctx_error(ctx), "layer 1: layout (n_text") != NULL, "%s", dfa_ctx_error(ctx));
            qkv_free(&q);
        }
        size_t want = dfa_plan_cache_bytes(&p, B, D, sizeof(float));
        CHECKF(dfa_attn_cache_bytes(ctx) == want && want > 0, "cache bytes %zu, plan says %zu",
               dfa_attn_cache_bytes(ctx), want);
        dfa_attn_end_run(ctx);
        CHECK(dfa_attn_cache_bytes(ctx) == 0);
    }
    free(last_out);
    free(resid);
    free(ref);
    free(ref2);
    free(now);
    dfa_plan_free(&p);
    dfa_ctx_free(ctx); /* with the plan still set: everything freed (ASan checks) */
}

static void steps_case(dfa_attn_layout L, int D, unsigned long long seed) { steps_case_ex(L, NULL, D, seed); }

static void test_steps_match_definitions(void) {
    steps_case((dfa_attn_layout){40, 7, 0, 8, DFA_BAND_ARROW}, 64, 2024);  /* text after the image (SD3) */
    steps_case((dfa_attn_layout){33, 9, 1, 5, DFA_BAND_ARROW}, 128, 77);   /* text first (FLUX), odd tiles, D = 128 */
    steps_case((dfa_attn_layout){36, 0, 1, 6, DFA_BAND_ARROW}, 64, 5);     /* no text (DiT / PixArt) */
    /* SD3.5: layer 1 is a dual block's image-only attn2 (own layout, fewer tokens: own caches) */
    const dfa_attn_layout sd35 = {40, 7, 0, 8, DFA_BAND_ARROW}, attn2 = {40, 0, 0, 8, DFA_BAND_ARROW};
    steps_case_ex(sd35, &attn2, 64, 2025);
}

/* only what a later step reuses is kept */
static void test_store_flags_lookahead(void) {
    dfa_attn_layout L = {64, 8, 1, 8, DFA_BAND_ARROW};
    dfa_plan p;
    dfa_error err;
    CHECK(dfa_plan_init(&p, &L, 6, 1, 3, &err) == DFA_OK);
    p.grid_h = p.grid_w = 8;
    p.method_set = DFA_PLAN_SET_ARROW | DFA_PLAN_SET_ARROW_RS | DFA_PLAN_SET_CACHE;
    /* head 0: F C C A C F; head 1: F R2 R2 F A1 F; head 2: A1 A1 A1 F F F */
    const char *codes[3][6] = {{"F", "C", "C", "A1", "C", "F"}, {"F", "R2", "R2", "F", "A1", "F"},
                               {"A1", "A1", "A1", "F", "F", "F"}};
    for (int h = 0; h < 3; h++)
        for (int s = 0; s < 6; s++) {
            int m, w;
            dfa_plan_parse_code(codes[h][s], &m, &w);
            p.method[dfa_plan_index(&p, s, 0, h)] = (uint8_t)m;
            p.window[dfa_plan_index(&p, s, 0, h)] = w;
        }
    CHECKF(dfa_plan_validate(&p, "t", &err) == DFA_OK, "%s", err.msg);
    int so[3][6] = {{1, 0, 0, 1, 0, 0}, {0}, {0}};
    int sr[3][6] = {{0}, {1, 0, 0, 0, 0, 0}, {0}};
    for (int h = 0; h < 3; h++)
        for (int s = 0; s < 6; s++) {
            size_t i = dfa_plan_index(&p, s, 0, h);
            CHECKF(p.store_out[i] == so[h][s] && p.store_res[i] == sr[h][s], "head %d step %d: store_out %d res %d", h,
                   s, p.store_out[i], p.store_res[i]);
        }
    CHECK(p.res_window[dfa_plan_index(&p, 0, 0, 1)] == 2);
    /* one layer-wide output cache (for head 0) + one residual buffer (for head 1), [B, N, H, D] */
    CHECK(dfa_plan_cache_bytes(&p, 2, 64, 4) == 2 * (size_t)2 * 72 * 3 * 64 * 4);
    dfa_plan_cost c;
    double sf[6];
    dfa_plan_cost_compute(&p, 64, &c, sf);
    double ef = (double)dfa_mask_entries(&L, -1), e1 = (double)dfa_mask_entries(&L, 1), e2 = (double)dfa_mask_entries(&L, 2);
    /* step 0: F, F+A2 (refresh), A1 */
    CHECK_NEAR(sf[0], (ef + ef + e2 + e1) / (3 * ef), 1e-12);
    CHECK_NEAR(sf[1], (0 + e2 + e1) / (3 * ef), 1e-12);
    CHECK(c.n_refresh == 1 && c.n_method[DFA_ATTN_CACHE] == 3);
    dfa_plan_free(&p);
}

/* misuse of the plan-driven entry point gives clear errors */
static void test_plan_misuse(void) {
    dfa_ctx *ctx = make_ctx();
    dfa_attn_layout L = {24, 4, 1, 8, DFA_BAND_ARROW};
    dfa_plan p;
    dfa_error err;
    CHECK(dfa_plan_init(&p, &L, 4, 2, 2, &err) == DFA_OK);
    p.grid_h = 4;
    p.grid_w = 6;
    dfa_plan_make_opts o = {DFA_PLAN_PAT_CACHE, 0, 2, 0, 0, 0};
    CHECK(dfa_plan_make(&p, &o, &err) == DFA_OK);
    CHECK(dfa_attn_set_plan(ctx, &p) == DFA_OK);
    unsigned long long rng = 3;
    qkv_set q;
    qkv_alloc(&q, 1, 28, 2, 64, &rng);
    CHECK(dfa_attn_layer(ctx, 0, &L, &q.tq, &q.tk, &q.tv, &q.to) == DFA_ERR_INVALID_ARG);
    CHECK(strstr(dfa_ctx_error(ctx), "no step was begun") != NULL);
    CHECK(dfa_attn_begin_step(ctx, 0) == DFA_OK);
    CHECK(dfa_attn_layer(ctx, 2, &L, &q.tq, &q.tk, &q.tv, &q.to) == DFA_ERR_INVALID_ARG);
    CHECK(strstr(dfa_ctx_error(ctx), "layer 2 outside the plan's 2 layers") != NULL);
    dfa_attn_layout L2 = {24, 4, 1, 4, DFA_BAND_ARROW};
    CHECK(dfa_attn_layer(ctx, 0, &L2, &q.tq, &q.tk, &q.tv, &q.to) == DFA_ERR_INVALID_ARG);
    CHECK(strstr(dfa_ctx_error(ctx), "not the plan's") != NULL);
    CHECK(dfa_attn_layer(ctx, 0, &L, &q.tq, &q.tk, &q.tv, &q.to) == DFA_OK);
    /* layer 1 skipped at step 0: its CACHE at step 1 has nothing */
    CHECK(dfa_attn_begin_step(ctx, 1) == DFA_OK);
    CHECK(dfa_attn_layer(ctx, 0, &L, &q.tq, &q.tk, &q.tv, &q.to) == DFA_OK);
    CHECK(dfa_attn_layer(ctx, 1, &L, &q.tq, &q.tk, &q.tv, &q.to) == DFA_ERR_INVALID_ARG);
    CHECKF(strstr(dfa_ctx_error(ctx), "step 1 layer 1 head 0: cache needs the output of step 0, but the cache holds "
                                      "step -1") != NULL, "%s", dfa_ctx_error(ctx));
    CHECK(dfa_attn_begin_step(ctx, 3) == DFA_ERR_INVALID_ARG);
    CHECK(strstr(dfa_ctx_error(ctx), "step 3 after step 1") != NULL);
    CHECK(dfa_attn_begin_step(ctx, 4) == DFA_ERR_INVALID_ARG);
    /* without a plan every head is FULL */
    dfa_attn_clear_plan(ctx);
    CHECK(dfa_attn_plan(ctx) == NULL);
    CHECK(dfa_attn_layer(ctx, 0, &L, &q.tq, &q.tk, &q.tv, &q.to) == DFA_OK);
    double *ref = malloc((size_t)28 * 64 * sizeof(double));
    ref_head(&q, &L, -1, 0, 1, ref);
    CHECK(head_err(&q, q.o, 0, 1, ref) < 2e-5);
    free(ref);
    qkv_free(&q);
    dfa_plan_free(&p);
    dfa_ctx_free(ctx);
}

/* a plan file set on the context; errors name the file */
static void test_load_plan_file(void) {
    dfa_ctx *ctx = make_ctx();
    dfa_attn_layout L = {30, 5, 0, 4, DFA_BAND_ARROW};
    dfa_plan p;
    make_random_plan(&p, &L, NULL, 3, 2, 2, 9);
    char path[] = "/tmp/dfa_attn_plan_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    dfa_error err;
    CHECK(dfa_plan_save(path, &p, &err) == DFA_OK);
    CHECKF(dfa_attn_load_plan(ctx, path) == DFA_OK, "%s", dfa_ctx_error(ctx));
    const dfa_plan *q = dfa_attn_plan(ctx);
    CHECK(q && q->n_steps == 3 && memcmp(q->method, p.method, 12) == 0 && memcmp(q->store_res, p.store_res, 12) == 0);
    unlink(path);
    CHECK(dfa_attn_load_plan(ctx, path) == DFA_ERR_IO);
    CHECK(strstr(dfa_ctx_error(ctx), path) != NULL);
    CHECK(dfa_attn_plan(ctx) != NULL); /* a failed load keeps the plan in use */
    dfa_plan bad;
    CHECK(dfa_plan_copy(&bad, &p, &err) == DFA_OK);
    bad.method[0] = DFA_ATTN_CACHE; /* CACHE at step 0 */
    bad.window[0] = 0;
    bad.method_set |= DFA_PLAN_SET_CACHE;
    CHECK(dfa_attn_set_plan(ctx, &bad) == DFA_ERR_FORMAT);
    CHECKF(strstr(dfa_ctx_error(ctx), "step 0 layer 0 head 0: CACHE (C) but no earlier step") != NULL, "%s",
           dfa_ctx_error(ctx));
    CHECK(dfa_attn_plan(ctx) != NULL && dfa_attn_plan(ctx)->method[0] == p.method[0]);
    dfa_plan_free(&bad);
    dfa_plan_free(&p);
    dfa_ctx_free(ctx);
}

/* FLOPs of plans against a brute-force count of computed entries */
static void test_flops_brute_force(void) {
    dfa_attn_layout L = {30, 5, 0, 4, DFA_BAND_ARROW}, L1 = {30, 0, 0, 4, DFA_BAND_ARROW}; /* seeds 3, 4: layer 1 image only (SD3.5 attn2) */
    for (int seed = 1; seed <= 4; seed++) {
        dfa_plan p;
        make_random_plan(&p, &L, seed > 2 ? &L1 : NULL, 6, 3, 5, (unsigned long long)seed);
        double brute = 0, brute_full = 0;
        for (int s = 0; s < 6; s++)
            for (int l = 0; l < 3; l++) {
                const dfa_attn_layout *LL = seed > 2 && l == 1 ? &L1 : &L;
                const int N = LL->n_vis + LL->n_text;
                brute_full += 4.0 * 64 * N * N * 2 * 5;
                for (int h = 0; h < 5; h++) {
                    size_t i = dfa_plan_index(&p, s, l, h);
                    int m = p.method[i];
                    int64_t e = 0;
                    for (int a = 0; a < N; a++)
                        for (int b = 0; b < N; b++) {
                            if (m == DFA_ATTN_FULL) e += 1 + (p.store_res[i] ? dfa_mask_keep(LL, p.res_window[i], a, b) : 0);
                            if (m == DFA_ATTN_ARROW || m == DFA_ATTN_ARROW_RS) e += dfa_mask_keep(LL, p.window[i], a, b);
                        }
                    brute += 4.0 * 64 * (double)e * (p.asc[(size_t)s * 3 + l] ? 1 : 2);
                }
            }
        dfa_plan_cost c;
        dfa_plan_cost_compute(&p, 64, &c, NULL);
        CHECK_NEAR(c.flops, brute, 1e-6 * brute);
        CHECK_NEAR(c.full_flops, brute_full, 1.0);
        dfa_plan_free(&p);
    }
    /* V2's "attention caching N=2" baseline: half the attention */
    dfa_plan p;
    dfa_error err;
    CHECK(dfa_plan_init(&p, &L, 28, 4, 2, &err) == DFA_OK);
    p.grid_h = 5;
    p.grid_w = 6;
    dfa_plan_make_opts o = {DFA_PLAN_PAT_CACHE, 0, 2, 0, 0, 0};
    CHECK(dfa_plan_make(&p, &o, &err) == DFA_OK);
    dfa_plan_cost c;
    dfa_plan_cost_compute(&p, 64, &c, NULL);
    CHECK_NEAR(c.fraction, 0.5, 1e-12);
    o = (dfa_plan_make_opts){DFA_PLAN_PAT_ARROW, 1, 0, 0, 0, 0};
    CHECK(dfa_plan_make(&p, &o, &err) == DFA_OK);
    dfa_plan_cost_compute(&p, 64, &c, NULL);
    CHECK_NEAR(c.fraction, (double)dfa_mask_entries(&L, 1) / dfa_mask_entries(&L, -1), 1e-12);
    dfa_plan_free(&p);
}

int main(void) {
    RUN(test_store_flags_lookahead);
    RUN(test_steps_match_definitions);
    RUN(test_plan_misuse);
    RUN(test_load_plan_file);
    RUN(test_flops_brute_force);
    return test_summary();
}
