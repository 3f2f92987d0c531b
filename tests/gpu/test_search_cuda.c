/* test_search_cuda.c - the plan searches' CUDA backend: its kernels against the CPU backend on
 * the same bf16-rounded data (compose bit for bit, metrics to double rounding - also the batched
 * rse_multi / compose, on the 8-element and the scalar load path -, attention to
 * bf16 accuracy), then V2 and V1 searches with every buffer on the device over a small synthetic
 * engine (host f32 model, bf16 device attention inputs): delta = 0 gives all FULL, a budget
 * compresses, runs are deterministic, plans export and validate, and step 0's first layer
 * (identical inputs) mostly agrees with the CPU search; V2 with the backend's ring pass
 * (attn_multi, the default) against V2 without it: the same knapsack influences to bf16 noise. */
#include "../test.h"

#include "core/ctx.h"
#include "core/tensor.h"
#include "models/ops.h"
#include "plan/metrics.h"
#include "plan/search.h"

enum { H = 4, D = 64, C = H * D, NV = 512, NT = 32, N = NV + NT, L = 3, P = 2 };

static void to_bf16(const float *x, uint16_t *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = dfa_f32_to_bf16(x[i]);
}
static void from_bf16(const uint16_t *x, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = dfa_bf16_to_f32(x[i]);
}
static void round_bf16(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = dfa_bf16_to_f32(dfa_f32_to_bf16(x[i]));
}

/* ---- kernels against the CPU backend ---- */
static void test_backend_ops(dfa_ctx *ctx) {
    dfa_search_cuda cs;
    dfa_search_backend g, c;
    CHECKF(dfa_search_backend_cuda(ctx, &cs, &g) == DFA_OK, "%s", dfa_ctx_error(ctx));
    dfa_search_backend_cpu(ctx, &c);
    const int R = 2;
    const size_t n = (size_t)R * N * C;
    dfa_search_shape sh = {R, N, H, D};
    dfa_attn_layout lay = {NV, NT, 1, 64, DFA_BAND_ARROW};
    float *a = malloc(n * 4), *b = malloc(n * 4), *q = malloc(n * 4), *r1 = malloc(n * 4), *r2 = malloc(n * 4);
    uint16_t *hb = malloc(n * 2);
    unsigned long long s = 5;
    for (size_t i = 0; i < n; i++) a[i] = test_rng_uniform(&s), b[i] = test_rng_uniform(&s), q[i] = test_rng_uniform(&s);
    round_bf16(a, n), round_bf16(b, n), round_bf16(q, n);
    void *da, *db, *dq, *dd;
    CHECK(g.alloc(g.user, n * 2, "a", &da) == DFA_OK && g.alloc(g.user, n * 2, "b", &db) == DFA_OK);
    CHECK(g.alloc(g.user, n * 2, "q", &dq) == DFA_OK && g.alloc(g.user, n * 2, "d", &dd) == DFA_OK);
    to_bf16(a, hb, n), dfa_cuda_h2d(ctx->cuda, da, hb, n * 2, &ctx->err);
    to_bf16(b, hb, n), dfa_cuda_h2d(ctx->cuda, db, hb, n * 2, &ctx->err);
    to_bf16(q, hb, n), dfa_cuda_h2d(ctx->cuda, dq, hb, n * 2, &ctx->err);
    /* compose: dst = a + b on head 2, rows 0..1; a - b on head 1 row 1; copy head 0 */
    memcpy(r1, q, n * 4);
    CHECK(g.copy(g.user, dd, dq, n) == DFA_OK);
    CHECK(g.head_op(g.user, &sh, 2, 0, 2, dd, da, db, 1) == DFA_OK);
    CHECK(g.head_op(g.user, &sh, 1, 1, 2, dd, da, db, -1) == DFA_OK);
    CHECK(g.head_op(g.user, &sh, 0, 0, 2, dd, db, NULL, 0) == DFA_OK);
    c.head_op(c.user, &sh, 2, 0, 2, r1, a, b, 1);
    c.head_op(c.user, &sh, 1, 1, 2, r1, a, b, -1);
    c.head_op(c.user, &sh, 0, 0, 2, r1, b, NULL, 0);
    round_bf16(r1, n);
    CHECK(dfa_cuda_d2h(ctx->cuda, hb, dd, n * 2, &ctx->err) == DFA_OK);
    from_bf16(hb, r2, n);
    CHECK(!memcmp(r1, r2, n * 4));
    /* metrics */
    double gr[R * H], cr[R * H], gm, cm;
    CHECK(g.rse(g.user, &sh, da, db, gr) == DFA_OK && c.rse(c.user, &sh, a, b, cr) == DFA_OK);
    for (int i = 0; i < R * H; i++) CHECK_NEAR(gr[i], cr[i], 1e-9 * cr[i]);
    CHECK(g.mrae(g.user, da, db, n, &gm) == DFA_OK && c.mrae(c.user, a, b, n, &cm) == DFA_OK);
    CHECK_NEAR(gm, cm, 1e-9 * cm);
    /* batched metric and compose: D = 64 (8-element loads) and a reinterpretation with D = 60
     * (scalar path); 544 tokens = 8.5 chunks of 64 */
    float *qb = malloc(n * 4);
    for (size_t i = 0; i < n; i++) qb[i] = q[i] + b[i];
    round_bf16(qb, n); /* what the device forms for a candidate a + b */
    const dfa_search_shape shapes[2] = {{R, N, H, D}, {1, N, H, 60}};
    for (int si = 0; si < 2; si++) {
        const dfa_search_shape *s2 = &shapes[si];
        const void *ga[3] = {db, dq, da}, *gb[3] = {NULL, db, NULL};
        double gx[3 * R * H], want[R * H];
        for (size_t i = 0; i < sizeof gx / sizeof gx[0]; i++) gx[i] = -1;
        CHECKF(g.rse_multi(g.user, s2, da, 3, ga, gb, gx) == DFA_OK, "%s", dfa_ctx_error(ctx));
        const int rh = s2->rows * s2->heads;
        CHECK(c.rse(c.user, s2, a, b, want) == DFA_OK);
        for (int i = 0; i < rh; i++) CHECKF(fabs(gx[i] - want[i]) <= 1e-9 * want[i], "D %d: %g vs %g", s2->head_dim, gx[i], want[i]);
        CHECK(c.rse(c.user, s2, a, qb, want) == DFA_OK);
        for (int i = 0; i < rh; i++) CHECKF(fabs(gx[rh + i] - want[i]) <= 1e-9 * want[i], "D %d: %g vs %g", s2->head_dim, gx[rh + i], want[i]);
        for (int i = 0; i < rh; i++) CHECK(gx[2 * rh + i] == 0.0);
        /* compose: head 0 = b, head 1 = a + b, head 2 untouched, head 3 = q - b */
        dfa_search_head_src gs[H] = {{db, NULL, 0}, {da, db, 1}, {NULL, NULL, 0}, {dq, db, -1}};
        dfa_search_head_src cs2[H] = {{b, NULL, 0}, {a, b, 1}, {NULL, NULL, 0}, {q, b, -1}};
        memcpy(r1, a, n * 4);
        CHECK(g.copy(g.user, dd, da, n) == DFA_OK);
        CHECKF(g.compose(g.user, s2, dd, gs) == DFA_OK, "%s", dfa_ctx_error(ctx));
        CHECK(c.compose(c.user, s2, r1, cs2) == DFA_OK);
        round_bf16(r1, n);
        CHECK(dfa_cuda_d2h(ctx->cuda, hb, dd, n * 2, &ctx->err) == DFA_OK);
        from_bf16(hb, r2, n);
        CHECKF(!memcmp(r1, r2, n * 4), "compose D %d", s2->head_dim);
    }
    free(qb);
    /* attention: FULL and two bands, arrow then plain (the cached work lists must tell the band
     * kinds apart: same geometry and window, another mask) */
    for (int band = DFA_BAND_ARROW; band <= DFA_BAND_PLAIN; band++)
        for (int w = -1; w < 4; w += 2) {
            lay.band = band;
            CHECKF(g.attn(g.user, &lay, R, H, D, w, dq, da, db, dd) == DFA_OK, "%s", dfa_ctx_error(ctx));
            CHECK(c.attn(c.user, &lay, R, H, D, w, q, a, b, r1) == DFA_OK);
            CHECK(dfa_cuda_d2h(ctx->cuda, hb, dd, n * 2, &ctx->err) == DFA_OK);
            from_bf16(hb, r2, n);
            double md = 0;
            for (size_t i = 0; i < n; i++) md = fmax(md, fabs((double)r1[i] - r2[i]));
            CHECKF(md < 2e-2, "%s window %d: max diff %g", dfa_band_name(band), w, md);
        }
    g.release(g.user, da), g.release(g.user, db), g.release(g.user, dq), g.release(g.user, dd);
    dfa_search_cuda_free(&cs);
    free(a), free(b), free(q), free(r1), free(r2), free(hb);
}

/* ---- a small engine: host f32 model, attention inputs handed over as bf16 on the device ---- */
typedef struct synth {
    dfa_ctx *ctx;
    int steps, cfg, R, cur, on_gpu;
    float *w, *pos, *x, *h, *q, *k, *v, *o, *t;
    uint16_t *hb;
    void *dq, *dk, *dv, *dout;
} synth;

static void synth_init(synth *S, dfa_ctx *ctx, int steps, int cfg, int on_gpu) {
    memset(S, 0, sizeof *S);
    S->ctx = ctx, S->steps = steps, S->cfg = cfg, S->R = cfg ? 2 * P : P, S->on_gpu = on_gpu;
    size_t rows = (size_t)S->R * N;
    S->w = malloc(sizeof(float) * L * 4 * C * C), S->pos = malloc(sizeof(float) * N * C);
    S->x = malloc(sizeof(float) * P * N * C);
    float **bufs[] = {&S->h, &S->q, &S->k, &S->v, &S->o, &S->t};
    for (int i = 0; i < 6; i++) *bufs[i] = malloc(sizeof(float) * rows * C);
    S->hb = malloc(2 * rows * C);
    unsigned long long s = 77;
    for (size_t i = 0; i < (size_t)L * 4 * C * C; i++) S->w[i] = test_rng_uniform(&s) * 0.12f;
    for (size_t i = 0; i < (size_t)P * N * C; i++) S->x[i] = test_rng_uniform(&s);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) { /* visual tokens: sinusoids of the index; heads 1..3 increasingly local */
            int vis = n - NT, fr = (c / 2) % 8;
            double loc = (double)(c / D) * 1.0;
            S->pos[n * C + c] = vis < 0 ? 0.f : (float)(loc * (c % 2 ? sin(vis * 0.02 * (fr + 1)) : cos(vis * 0.02 * (fr + 1))));
        }
    if (on_gpu) {
        dfa_ctx_mem_alloc(ctx, DFA_DEV_CUDA, 2 * rows * C, "q", &S->dq);
        dfa_ctx_mem_alloc(ctx, DFA_DEV_CUDA, 2 * rows * C, "k", &S->dk);
        dfa_ctx_mem_alloc(ctx, DFA_DEV_CUDA, 2 * rows * C, "v", &S->dv);
        dfa_ctx_mem_alloc(ctx, DFA_DEV_CUDA, 2 * rows * C, "out", &S->dout);
    }
}

static void synth_free(synth *S) {
    free(S->w), free(S->pos), free(S->x), free(S->h), free(S->q), free(S->k), free(S->v), free(S->o), free(S->t);
    free(S->hb);
    dfa_ctx_mem_release(S->ctx, S->dq), dfa_ctx_mem_release(S->ctx, S->dk);
    dfa_ctx_mem_release(S->ctx, S->dv), dfa_ctx_mem_release(S->ctx, S->dout);
}

static dfa_status up(synth *S, const float *x, void *d, size_t n) {
    to_bf16(x, S->hb, n);
    return dfa_cuda_h2d(S->ctx->cuda, d, S->hb, n * 2, &S->ctx->err);
}

static dfa_status synth_step(void *user, int step, int commit, dfa_search_hook_fn hook, void *hu, void *model_out) {
    synth *S = user;
    if (step != S->cur) return DFA_ERR_INVALID_ARG;
    const int M = S->R * N;
    const size_t n = (size_t)M * C;
    for (int r = 0; r < S->R; r++)
        for (size_t i = 0; i < (size_t)N * C; i++)
            S->h[(size_t)r * N * C + i] = S->x[(size_t)(r % P) * N * C + i] + (S->cfg && r >= P ? 0.f : 0.1f) +
                                          0.03f * (float)cos(0.4 * step + (double)(i % C));
    for (int l = 0; l < L; l++) {
        const float *W = S->w + (size_t)l * 4 * C * C;
        dfa_op_linear(S->ctx, S->h, M, C, W, NULL, C, S->q);
        dfa_op_linear(S->ctx, S->h, M, C, W + C * C, NULL, C, S->k);
        dfa_op_linear(S->ctx, S->h, M, C, W + 2 * C * C, NULL, C, S->v);
        for (size_t i = 0; i < n; i++) {
            float pe = S->pos[(i / C) % N * C + i % C];
            S->q[i] += pe, S->k[i] += pe;
            S->v[i] += 0.2f * (float)(i % C / D) * (float)cos(1.1 * step + (double)(i % C));
        }
        if (S->on_gpu) {
            DFA_TRY(up(S, S->q, S->dq, n));
            DFA_TRY(up(S, S->k, S->dk, n));
            DFA_TRY(up(S, S->v, S->dv, n));
            DFA_TRY(hook(hu, l, S->dq, S->dk, S->dv, S->dout));
            DFA_TRY(dfa_cuda_d2h(S->ctx->cuda, S->hb, S->dout, n * 2, &S->ctx->err));
            from_bf16(S->hb, S->o, n);
        } else {
            round_bf16(S->q, n), round_bf16(S->k, n), round_bf16(S->v, n); /* same inputs as the device run */
            DFA_TRY(hook(hu, l, S->q, S->k, S->v, S->o));
            round_bf16(S->o, n);
        }
        dfa_op_linear(S->ctx, S->o, M, C, W + 3 * C * C, NULL, C, S->t);
        for (size_t i = 0; i < n; i++) S->h[i] += 0.5f * S->t[i];
    }
    if (model_out) {
        if (S->on_gpu) DFA_TRY(up(S, S->h, model_out, n));
        else memcpy(model_out, S->h, n * 4);
    }
    if (commit) {
        for (size_t i = 0; i < (size_t)P * N * C; i++) S->x[i] = 0.95f * S->x[i] + 0.05f * tanhf(S->h[i]);
        S->cur++;
    }
    return DFA_OK;
}

static dfa_search_engine synth_engine(synth *S) {
    dfa_search_engine e = {.user = S, .n_steps = S->steps, .n_layers = L, .n_heads = H, .head_dim = D,
                           .n_rows = S->R, .cfg = S->cfg, .cond_half = 0, .layout = {NV, NT, 1, 64, DFA_BAND_ARROW},
                           .grid_h = 16, .grid_w = 32, .out_numel = (size_t)S->R * N * C, .run_step = synth_step};
    return e;
}

static const dfa_search_cand CANDS[] = {{DFA_ATTN_ARROW, 1}, {DFA_ATTN_ARROW, 3}, {DFA_ATTN_ARROW_RS, 1}, {DFA_ATTN_CACHE, -1}};

/* every V2 layer's knapsack influences [step][layer][H * 5] (FULL + the 4 candidates) */
typedef struct infl_log {
    double v[8 * L * H * 5];
} infl_log;

static void log_layer(void *user, int step, int layer, const dfa_mckp_problem *p, const int *choice) {
    infl_log *g = user;
    (void)choice;
    if (step < 8 && p->n_heads == H && p->n_methods == 5)
        memcpy(g->v + ((size_t)step * L + layer) * H * 5, p->influence, sizeof(double) * H * 5);
}

/* ring = 0: the CUDA backend without attn_multi (FULL and each ARROW window one launch each) */
static dfa_status search_ring(dfa_ctx *ctx, int v1, int on_gpu, int cfg, double delta, int ring, dfa_search_plan *p,
                              infl_log *log) {
    synth S;
    synth_init(&S, ctx, 4, cfg, on_gpu);
    dfa_search_engine e = synth_engine(&S);
    dfa_search_opts o;
    memset(&o, 0, sizeof o);
    o.delta = delta, o.c = 1.5, o.cands = CANDS, o.n_cands = 4, o.v1_window = 1;
    if (log) o.on_layer = log_layer, o.on_layer_user = log;
    dfa_search_cuda cs;
    dfa_search_backend be;
    if (on_gpu) {
        DFA_TRY(dfa_search_backend_cuda(ctx, &cs, &be));
        if (!ring) be.attn_multi = NULL;
        o.backend = &be;
    }
    dfa_status s = v1 ? dfa_search_v1(ctx, &e, &o, p) : dfa_search_v2(ctx, &e, &o, p);
    if (!s) {
        dfa_plan plan;
        dfa_error err;
        s = dfa_search_plan_export(p, &e, &o, v1, "synth", "gpu test", &plan, &err);
        CHECKF(s == DFA_OK, "%s", err.msg);
        if (!s) dfa_plan_free(&plan);
    }
    if (on_gpu) dfa_search_cuda_free(&cs);
    synth_free(&S);
    return s;
}

static dfa_status search(dfa_ctx *ctx, int v1, int on_gpu, int cfg, double delta, dfa_search_plan *p) {
    return search_ring(ctx, v1, on_gpu, cfg, delta, 1, p, NULL);
}

/* V2 with the ring pass (one launch for FULL and ARROW 1, 3) and without it: ARROW(1) is the same
 * bits, FULL and ARROW(3) differ by the combine's bf16 rounding only, so the knapsack's
 * influences must agree closely up to and including the first layer whose choices differ (later
 * layers see different inputs); a differing choice is then a near tie of the budget. */
static void test_ring_vs_plain(dfa_ctx *ctx) {
    dfa_search_plan a, b;
    static infl_log la, lb;
    memset(&la, 0, sizeof la), memset(&lb, 0, sizeof lb);
    CHECKF(search_ring(ctx, 0, 1, 0, 0.5, 1, &a, &la) == DFA_OK, "%s", dfa_ctx_error(ctx));
    CHECKF(search_ring(ctx, 0, 1, 0, 0.5, 0, &b, &lb) == DFA_OK, "%s", dfa_ctx_error(ctx));
    const int sl = a.n_steps * L;
    int diff = 0, first = -1, n_cmp = 0;
    double worst = 0;
    for (int i = 0; i < sl; i++) {
        int d = 0;
        for (int h = 0; h < H; h++)
            d += a.method[i * H + h] != b.method[i * H + h] || a.window[i * H + h] != b.window[i * H + h];
        diff += d;
        if (first >= 0) continue;
        for (int j = 0; j < H * 5; j++) { /* allowed, finite influences */
            const double x = la.v[(size_t)i * H * 5 + j], y = lb.v[(size_t)i * H * 5 + j];
            if (!isfinite(x) && !isfinite(y)) continue;
            const double r = fabs(x - y) / (fabs(y) + 1e-3); /* 1e-3: below it, bf16 rounding noise */
            if (!(r <= worst)) worst = r;
            n_cmp++;
        }
        if (d) first = i;
    }
    printf("v2 ring vs plain: %d of %d (step, layer, head) choices differ (first at step %d layer %d); worst "
           "relative influence difference up to there %.2e over %d values; cost %.4f vs %.4f of FULL\n",
           diff, sl * H, first < 0 ? -1 : first / L, first < 0 ? -1 : first % L, worst, n_cmp,
           dfa_search_plan_cost_fraction(&a), dfa_search_plan_cost_fraction(&b));
    CHECK(n_cmp > 0);
    CHECKF(worst < 0.05, "influences differ by %g (relative) between the ring and the plain pass", worst);
    dfa_search_plan_free(ctx, &a), dfa_search_plan_free(ctx, &b);
}

static void test_searches(dfa_ctx *ctx) {
    dfa_search_plan a, b, z, c;
    for (int v1 = 0; v1 < 2; v1++) {
        int cfg = v1;
        CHECKF(search(ctx, v1, 1, cfg, 0, &z) == DFA_OK, "%s", dfa_ctx_error(ctx));
        size_t slh = (size_t)z.n_steps * L * H;
        for (size_t i = 0; i < slh; i++) CHECK(z.method[i] == DFA_ATTN_FULL);
        double delta = v1 ? 0.8 : 0.5;
        CHECKF(search(ctx, v1, 1, cfg, delta, &a) == DFA_OK, "%s", dfa_ctx_error(ctx));
        CHECK(search(ctx, v1, 1, cfg, delta, &b) == DFA_OK);
        CHECK(!memcmp(a.method, b.method, slh) && !memcmp(a.window, b.window, slh * 4));
        CHECK(!memcmp(a.influence, b.influence, sizeof(double) * z.n_steps * L));
        double fr = dfa_search_plan_cost_fraction(&a);
        CHECKF(fr < 0.95, "%s: plan cost fraction %g", v1 ? "v1" : "v2", fr);
        CHECK(search(ctx, v1, 0, cfg, delta, &c) == DFA_OK);
        int agree = 0;
        for (int h = 0; h < H; h++) agree += a.method[h] == c.method[h];
        printf("%s: device plan cost %.3f of FULL, CPU plan %.3f; step 0 layer 0: %d of %d heads agree\n",
               v1 ? "v1" : "v2", fr, dfa_search_plan_cost_fraction(&c), agree, H);
        CHECK(agree >= H / 2);
        dfa_search_plan_free(ctx, &a), dfa_search_plan_free(ctx, &b), dfa_search_plan_free(ctx, &c);
        dfa_search_plan_free(ctx, &z);
    }
}

int main(void) {
    dfa_ctx_params prm = dfa_ctx_default_params();
    prm.backend = DFA_BACKEND_CUDA;
    dfa_ctx *ctx = NULL;
    char msg[512];
    if (dfa_ctx_init(&ctx, &prm, msg, sizeof msg) != DFA_OK) {
        fprintf(stderr, "no CUDA context: %s\n", msg);
        return 1;
    }
    test_backend_ops(ctx);

    test_searches(ctx);
    test_ring_vs_plain(ctx);
    dfa_ctx_free(ctx);
    return test_summary();
}
