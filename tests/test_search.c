/* test_search.c - the V1 and V2 plan searches on a synthetic "model": a few layers of
 * attention over slowly drifting latents, some heads local (a positional term in q and k),
 * optional CFG rows. Checks: deterministic; delta = 0 gives all FULL; a larger delta never
 * gives a costlier optimum for any layer's knapsack instance (re-solved through the observer);
 * the first layer at step 0 (same inputs in every run) never gets costlier with delta; a plan
 * replayed from scratch under the documented cache semantics reproduces the search's own
 * trajectory bit for bit; V1 thresholds and availability; engine-contract violations. */
#include "test.h"
#include "tmpdir.h"

#include "core/ctx.h"
#include "plan/metrics.h"
#include "attn/attn_state.h"
#include "plan/search.h"
#include "plan/search_progress.h"

enum { NV = 32, NT = 4, BLK = 4, HH = 4, DD = 8, CC = HH * DD, NN = NV + NT, LL = 3, PP = 2, MAXR = 4 };

typedef struct fake {
    int steps, cfg, cond_half, R, cur_step, skip_layer, fail_step, calls;
    dfa_attn_layout lay;
    float w[LL][4][CC * CC]; /* q, k, v, o */
    float pos[NN * CC], cond[PP * NN * CC], loc[HH], drift[HH];
    float x[PP * NN * CC];
    float *log; /* model output of every committed step: [steps][R * NN * CC] */
} fake;

static void fake_init(fake *f, unsigned long long seed, int steps, int cfg) {
    memset(f, 0, sizeof *f);
    f->steps = steps, f->cfg = cfg, f->R = cfg ? 2 * PP : PP, f->skip_layer = -1, f->fail_step = -1;
    f->lay = (dfa_attn_layout){NV, NT, 1, BLK, DFA_BAND_ARROW};
    unsigned long long s = seed;
    for (int l = 0; l < LL; l++)
        for (int m = 0; m < 4; m++)
            for (int i = 0; i < CC * CC; i++) f->w[l][m][i] = test_rng_uniform(&s) * 0.35f;
    for (int n = 0; n < NN; n++) /* text (first NT tokens) has no position; visual: sinusoids of the index */
        for (int c = 0; c < CC; c++) {
            int vis = n - NT, fr = (c / 2) % 4;
            f->pos[n * CC + c] = vis < 0 ? 0.f : (float)(c % 2 ? sin(vis * 0.15 * (fr + 1)) : cos(vis * 0.15 * (fr + 1)));
        }
    f->loc[0] = 0, f->loc[1] = 1.0f, f->loc[2] = 2.0f, f->loc[3] = 3.0f;
    f->drift[0] = 0, f->drift[1] = 0.1f, f->drift[2] = 0.3f, f->drift[3] = 1.0f;
    for (int i = 0; i < PP * NN * CC; i++) f->x[i] = test_rng_uniform(&s), f->cond[i] = 0.3f * test_rng_uniform(&s);
    f->log = calloc((size_t)steps * f->R * NN * CC, sizeof(float));
}

static void matmul(const float *a, const float *w, float *out, int rows) { /* out = a [rows, CC] x w [CC, CC] */
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < CC; j++) {
            double acc = 0;
            for (int i = 0; i < CC; i++) acc += (double)a[r * CC + i] * w[i * CC + j];
            out[r * CC + j] = (float)acc;
        }
}

static dfa_status fake_run_step(void *user, int step, int commit, dfa_search_hook_fn hook, void *hu, void *model_out) {
    fake *f = user;
    f->calls++;
    if (step != f->cur_step || step == f->fail_step) return DFA_ERR_INVALID_ARG;
    static float h[MAXR * NN * CC], q[MAXR * NN * CC], k[MAXR * NN * CC], v[MAXR * NN * CC], o[MAXR * NN * CC],
        t[MAXR * NN * CC];
    const int R = f->R, rows = R * NN;
    for (int r = 0; r < R; r++) {
        int p = r % PP, is_cond = !f->cfg || r / PP == f->cond_half;
        for (int i = 0; i < NN * CC; i++)
            h[r * NN * CC + i] = f->x[p * NN * CC + i] + (is_cond ? f->cond[p * NN * CC + i] : 0.f) +
                                 0.02f * (float)cos(0.3 * step + i % CC);
    }
    for (int l = 0; l < LL; l++) {
        if (l == f->skip_layer) continue;
        matmul(h, f->w[l][0], q, rows);
        matmul(h, f->w[l][1], k, rows);
        matmul(h, f->w[l][2], v, rows);
        for (int r = 0; r < rows; r++) /* a per-head drift over the steps: head 3 changes fastest */
            for (int c = 0; c < CC; c++) v[r * CC + c] += f->drift[c / DD] * (float)cos(1.3 * step + 0.7 * c + 0.05 * r);
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < CC; c++) {
                float pe = f->loc[c / DD] * f->pos[(r % NN) * CC + c];
                q[r * CC + c] += pe, k[r * CC + c] += pe;
            }
        for (int i = 0; i < rows * CC; i++) o[i] = NAN; /* poison: the hook must fill it */
        dfa_status s = hook(hu, l, q, k, v, o);
        if (s) return s;
        matmul(o, f->w[l][3], t, rows);
        for (int i = 0; i < rows * CC; i++) h[i] += 0.5f * t[i];
    }
    if (model_out) memcpy(model_out, h, sizeof(float) * rows * CC);
    if (commit) {
        memcpy(f->log + (size_t)step * rows * CC, h, sizeof(float) * rows * CC);
        for (int p = 0; p < PP; p++)
            for (int i = 0; i < NN * CC; i++) {
                float e = h[p * NN * CC + i];
                if (f->cfg) {
                    float c = h[(f->cond_half * PP + p) * NN * CC + i], u = h[((1 - f->cond_half) * PP + p) * NN * CC + i];
                    e = u + 2.f * (c - u);
                }
                f->x[p * NN * CC + i] = 0.95f * f->x[p * NN * CC + i] + 0.05f * tanhf(e);
            }
        f->cur_step++;
    }
    return DFA_OK;
}

static dfa_search_engine fake_engine(fake *f) {
    dfa_search_engine e = {.user = f, .n_steps = f->steps, .n_layers = LL, .n_heads = HH, .head_dim = DD,
                           .n_rows = f->R, .cfg = f->cfg, .cond_half = f->cond_half, .layout = f->lay,
                           .grid_h = 4, .grid_w = NV / 4, .out_numel = (size_t)f->R * NN * CC,
                           .run_step = fake_run_step};
    return e;
}

static const dfa_search_cand CANDS[] = {
    {DFA_ATTN_ARROW, 1}, {DFA_ATTN_ARROW, 3}, {DFA_ATTN_ARROW_RS, 1}, {DFA_ATTN_CACHE, -1}, {DFA_ATTN_ARROW, 7},
};

/* Tiny layers: thread start-up would dominate (and over-subscribe CI's 2 cores). */
static dfa_ctx_params ONE_THREAD;
static dfa_cost_table FLOPS; /* set in main: a FLOP-count table (the default's fixed costs swamp toy sizes) */

static dfa_search_opts v2_opts(double delta, double c) {
    dfa_search_opts o;
    memset(&o, 0, sizeof o);
    o.delta = delta, o.c = c, o.cands = CANDS, o.n_cands = 5, o.v1_window = -1, o.cost = &FLOPS;
    return o;
}

static dfa_status run_v2(dfa_ctx *ctx, unsigned long long seed, int steps, dfa_search_opts *o, dfa_search_plan *p,
                         fake *f) {
    fake_init(f, seed, steps, 0);
    dfa_search_engine e = fake_engine(f);
    return dfa_search_v2(ctx, &e, o, p);
}

static int plans_equal(const dfa_search_plan *a, const dfa_search_plan *b) {
    size_t sl = (size_t)a->n_steps * a->n_layers, slh = sl * a->n_heads;
    return a->n_steps == b->n_steps && !memcmp(a->method, b->method, slh) &&
           !memcmp(a->window, b->window, slh * sizeof(int32_t)) && !memcmp(a->asc, b->asc, sl) &&
           !memcmp(a->influence, b->influence, sl * sizeof(double)) && !memcmp(a->cost_ns, b->cost_ns, sl * sizeof(double));
}

static void test_v2_deterministic_and_delta0(void) {
    dfa_ctx *ctx = NULL;
    CHECK(dfa_ctx_init(&ctx, &ONE_THREAD, NULL, 0) == DFA_OK);
    dfa_search_plan a, b, z;
    fake f;
    dfa_search_opts o = v2_opts(0.3, 1.5);
    CHECKF(run_v2(ctx, 5, 5, &o, &a, &f) == DFA_OK, "%s", dfa_ctx_error(ctx));
    free(f.log);
    CHECK(run_v2(ctx, 5, 5, &o, &b, &f) == DFA_OK);
    free(f.log);
    CHECK(plans_equal(&a, &b));
    double frac = dfa_search_plan_cost_fraction(&a);
    CHECKF(frac < 0.9, "fraction %g", frac);
    int seen[DFA_ATTN_METHOD_COUNT] = {0};
    for (size_t i = 0; i < (size_t)5 * LL * HH; i++) seen[a.method[i]]++;
    CHECKF(seen[DFA_ATTN_FULL] && seen[DFA_ATTN_ARROW] && seen[DFA_ATTN_CACHE] && seen[DFA_ATTN_ARROW_RS],
           "full %d arrow %d rs %d cache %d", seen[0], seen[1], seen[2], seen[3]);
    for (int h = 0; h < LL * HH; h++) /* step 0 has no cache and no residual */
        CHECK(a.method[h] != DFA_ATTN_CACHE && a.method[h] != DFA_ATTN_ARROW_RS);
    o.delta = 0;
    CHECK(run_v2(ctx, 5, 5, &o, &z, &f) == DFA_OK);
    free(f.log);
    for (size_t i = 0; i < (size_t)5 * LL * HH; i++) CHECK(z.method[i] == DFA_ATTN_FULL && z.window[i] == -1);
    CHECK_NEAR(dfa_search_plan_cost_fraction(&z), 1.0, 1e-12);
    dfa_search_plan_free(ctx, &a);
    dfa_search_plan_free(ctx, &b);
    dfa_search_plan_free(ctx, &z);
    dfa_ctx_free(ctx);
}

/* Records every knapsack instance's influences (all candidates, all heads). */
typedef struct infl_log {
    double v[16 * LL * 6 * HH];
    int n, over;
} infl_log;

static void on_layer_log(void *user, int step, int layer, const dfa_mckp_problem *p, const int *choice) {
    infl_log *g = user;
    (void)step, (void)layer, (void)choice;
    int m = p->n_heads * p->n_methods;
    if (g->n + m > (int)(sizeof g->v / sizeof g->v[0])) {
        g->over = 1;
        return;
    }
    memcpy(g->v + g->n, p->influence, sizeof(double) * (size_t)m);
    g->n += m;
}

/* The batched backend functions (rse_multi: every candidate's metric in one call; compose: the
 * chosen heads in one call) against the per-candidate / per-head fallback (both NULL): the same
 * influences of every candidate, plans and model outputs, bit for bit (CPU backend). */
static void test_v2_batched_backend(void) {
    dfa_ctx *ctx = NULL;
    CHECK(dfa_ctx_init(&ctx, &ONE_THREAD, NULL, 0) == DFA_OK);
    dfa_search_backend be[2];
    dfa_search_backend_cpu(ctx, &be[0]);
    CHECK(be[0].rse_multi && be[0].compose);
    be[1] = be[0];
    be[1].rse_multi = NULL, be[1].compose = NULL;
    static infl_log lg[2];
    dfa_search_plan p[2];
    fake f[2];
    for (int i = 0; i < 2; i++) {
        dfa_search_opts o = v2_opts(0.3, 1.5);
        o.backend = &be[i], o.on_layer = on_layer_log, o.on_layer_user = &lg[i];
        lg[i].n = lg[i].over = 0;
        CHECKF(run_v2(ctx, 11, 6, &o, &p[i], &f[i]) == DFA_OK, "%s", dfa_ctx_error(ctx));
    }
    CHECK(plans_equal(&p[0], &p[1]));
    CHECK(!lg[0].over && lg[0].n == 6 * LL * 6 * HH && lg[1].n == lg[0].n);
    CHECK(!memcmp(lg[0].v, lg[1].v, sizeof(double) * (size_t)lg[0].n));
    const size_t n = (size_t)6 * f[0].R * NN * CC;
    CHECK(!memcmp(f[0].log, f[1].log, n * sizeof(float)));
    int seen[DFA_ATTN_METHOD_COUNT] = {0}, pos = 0;
    for (size_t i = 0; i < (size_t)6 * LL * HH; i++) seen[p[0].method[i]]++;
    for (int i = 0; i < lg[0].n; i++) pos += lg[0].v[i] > 0;
    CHECKF(seen[DFA_ATTN_ARROW] && seen[DFA_ATTN_CACHE] && seen[DFA_ATTN_ARROW_RS] && pos > lg[0].n / 2,
           "arrow %d rs %d cache %d; %d of %d influences > 0", seen[DFA_ATTN_ARROW], seen[DFA_ATTN_ARROW_RS],
           seen[DFA_ATTN_CACHE], pos, lg[0].n);
    for (int i = 0; i < 2; i++) free(f[i].log), dfa_search_plan_free(ctx, &p[i]);
    dfa_ctx_free(ctx);
}

/* Observer: re-solve every instance with larger and smaller deltas; check the choice. */
typedef struct mono {
    dfa_ctx *ctx;
    int instances, violations, bad_choice;
} mono;

static void on_layer_mono(void *user, int step, int layer, const dfa_mckp_problem *p, const int *choice) {
    mono *m = user;
    m->instances++;
    double infl = 0, cap = dfa_mckp_head_cap(p);
    for (int h = 0; h < p->n_heads; h++) {
        double v = p->influence[h * p->n_methods + choice[h]];
        infl += v;
        if (v > cap || !p->allowed[h * p->n_methods + choice[h]]) m->bad_choice++;
    }
    if (infl > p->delta) m->bad_choice++;
    double prev = INFINITY;
    for (int k = 0; k < 6; k++) {
        dfa_mckp_problem q = *p;
        q.delta = p->delta * (0.25 * (1 << k)) / 2;
        int ch[HH];
        dfa_mckp_solution sol;
        if (dfa_mckp_solve(m->ctx, &q, NULL, ch, &sol) != DFA_OK || !sol.feasible || sol.cost > prev) m->violations++;
        prev = sol.cost;
    }
    if (getenv("DFA_TEST_VERBOSE") && p->delta > 0.2 && p->delta < 0.4) {
        printf("step %d layer %d:", step, layer);
        for (int h = 0; h < p->n_heads; h++) {
            printf(" [");
            for (int c = 0; c < p->n_methods; c++) printf(" %.3g", p->influence[h * p->n_methods + c]);
            printf(" -> %d]", choice[h]);
        }
        printf("\n");
    }
}

static void test_v2_monotone(void) {
    dfa_ctx *ctx = NULL;
    CHECK(dfa_ctx_init(&ctx, &ONE_THREAD, NULL, 0) == DFA_OK);
    mono m = {ctx, 0, 0, 0};
    double prev00 = INFINITY;
    const double deltas[] = {0, 0.02, 0.1, 0.3, 1.0, 4.0};
    for (int i = 0; i < 6; i++) {
        dfa_search_opts o = v2_opts(deltas[i], i % 2 ? 1.5 : 0);
        o.on_layer = on_layer_mono, o.on_layer_user = &m;
        dfa_search_plan p;
        fake f;
        CHECKF(run_v2(ctx, 11, 3, &o, &p, &f) == DFA_OK, "%s", dfa_ctx_error(ctx));
        free(f.log);
        CHECKF(p.cost_ns[0] <= prev00, "delta %g: step 0 layer 0 cost %g > %g", deltas[i], p.cost_ns[0], prev00);
        prev00 = p.cost_ns[0];
        dfa_search_plan_free(ctx, &p);
    }
    CHECK(m.instances == 6 * 3 * LL);
    fake f;
    fake_init(&f, 1, 2, 0);
    dfa_search_engine e = fake_engine(&f);
    dfa_search_opts o = v2_opts(0.1, 0); /* windows 1, 3, 7 (1 also ARROW_RS): 3 arrow buffers, 1 residual */
    size_t layer = (size_t)PP * NN * HH * DD * 4;
    CHECK(dfa_search_host_bytes(&e, &o, 0) == layer * (LL * 2 + 2 + 3));
    CHECK(dfa_search_host_bytes(&e, &o, 1) == layer * (LL * 2 + 2 + 1));
    free(f.log);
    CHECK(m.violations == 0 && m.bad_choice == 0);
    dfa_ctx_free(ctx);
}

/* Replay a finished V2 plan from scratch with an independent implementation of the cache
 * semantics (search.h) and compare the model outputs with the search's own trajectory. */
typedef struct replay {
    const dfa_search_plan *p;
    int step, bad;
    float cache[LL][PP * NN * CC];
    float resid[LL][PP * NN * CC]; /* one ARROW_RS window in CANDS: 1 */
} replay;

static dfa_status replay_hook(void *user, int layer, const void *qv, const void *kv, const void *vv, void *outv) {
    replay *rp = user;
    const float *q = qv, *k = kv, *v = vv;
    float *out = outv;
    static float full[NN * CC], arr[NN * CC];
    for (int r = 0; r < PP; r++) {
        size_t off = (size_t)r * NN * CC;
        for (int h = 0; h < HH; h++) {
            size_t x = ((size_t)rp->step * LL + layer) * HH + h;
            int m = rp->p->method[x], w = rp->p->window[x];
            dfa_attn_layout lay = {NV, NT, 1, BLK, DFA_BAND_ARROW};
            dfa_search_attn_ref(NULL, &lay, 1, HH, DD, -1, q + off, k + off, v + off, full);
            dfa_search_attn_ref(NULL, &lay, 1, HH, DD, m == DFA_ATTN_FULL ? 1 : w, q + off, k + off, v + off, arr);
            for (int t = 0; t < NN; t++)
                for (int d = 0; d < DD; d++) {
                    size_t i = (size_t)t * CC + h * DD + d;
                    float val = m == DFA_ATTN_FULL ? full[i] : m == DFA_ATTN_ARROW ? arr[i]
                                : m == DFA_ATTN_CACHE ? rp->cache[layer][off + i] : arr[i] + rp->resid[layer][off + i];
                    if (m == DFA_ATTN_FULL) rp->resid[layer][off + i] = full[i] - arr[i];
                    out[off + i] = val;
                }
        }
    }
    memcpy(rp->cache[layer], out, sizeof(float) * PP * NN * CC);
    return DFA_OK;
}

static void test_v2_replay(void) {
    dfa_ctx *ctx = NULL;
    CHECK(dfa_ctx_init(&ctx, &ONE_THREAD, NULL, 0) == DFA_OK);
    enum { S = 8 };
    static const dfa_search_cand few[] = {{DFA_ATTN_ARROW_RS, 1}, {DFA_ATTN_CACHE, -1}};
    int cache_after_computed = 0, rs_after_refresh = 0, compressed = 0;
    for (int set = 0; set < 3; set++) {
        dfa_search_opts o = v2_opts(set == 2 ? 0.5 : 0.4, set == 2 ? 2.0 : 0);
        dfa_search_backend be; /* the hand replay computes with the float64 reference */
        dfa_search_backend_cpu(ctx, &be);
        be.attn = dfa_search_attn_ref;
        o.backend = &be;
        if (set < 2) o.cands = few + 1 - set, o.n_cands = 1 + set; /* {CACHE}, {ARROW_RS(1), CACHE} */
        dfa_search_plan p;
        fake f, g;
        CHECK(run_v2(ctx, 23, S, &o, &p, &f) == DFA_OK);
        fake_init(&g, 23, S, 0);
        static replay rp;
        memset(&rp, 0, sizeof rp);
        rp.p = &p;
        for (int s = 0; s < S; s++) {
            rp.step = s;
            CHECK(fake_run_step(&g, s, 1, replay_hook, &rp, NULL) == DFA_OK);
        }
        size_t n = (size_t)S * PP * NN * CC;
        int diff = 0;
        for (size_t i = 0; i < n; i++) diff += f.log[i] != g.log[i];
        CHECKF(diff == 0, "set %d: %d of %zu model outputs differ", set, diff, n);
        /* coverage: the plan exercises what the semantics distinguish */
        for (int lh = 0; lh < LL * HH; lh++) {
            int last_full = -1;
            for (int s = 0; s < S; s++) {
                int m = p.method[s * LL * HH + lh];
                compressed += m != DFA_ATTN_FULL;
                if (m == DFA_ATTN_CACHE && s >= 2 && p.method[(s - 1) * LL * HH + lh] != DFA_ATTN_CACHE) cache_after_computed++;
                if (m == DFA_ATTN_ARROW_RS && last_full >= 1) rs_after_refresh++;
                if (m == DFA_ATTN_FULL) last_full = s;
            }
        }
        if (getenv("DFA_TEST_VERBOSE"))
            for (int s = 0; s < S; s++) {
                for (int i = 0; i < LL * HH; i++) printf("%d", p.method[s * LL * HH + i]);
                printf("\n");
            }
        free(f.log), free(g.log);
        dfa_search_plan_free(ctx, &p);
    }
    CHECKF(cache_after_computed > 0 && rs_after_refresh > 0 && compressed > 20, "coverage %d %d %d",
           cache_after_computed, rs_after_refresh, compressed);
    dfa_ctx_free(ctx);
}

static void test_v1(void) {
    dfa_ctx *ctx = NULL;
    CHECK(dfa_ctx_init(&ctx, &ONE_THREAD, NULL, 0) == DFA_OK);
    for (int cfg = 0; cfg < 2; cfg++) {
        dfa_search_opts o = v2_opts(0, 0);
        o.v1_window = 1;
        dfa_search_plan a, b, z;
        fake f;
        fake_init(&f, 3, 4, cfg);
        dfa_search_engine e = fake_engine(&f);
        CHECK(dfa_search_v1(ctx, &e, &o, &z) == DFA_OK);
        CHECKF(f.calls == 4, "delta 0 needs no trials: %d passes", f.calls);
        for (size_t i = 0; i < (size_t)4 * LL; i++) CHECK(z.v1[i] == DFA_V1_NONE && !z.asc[i]);
        for (size_t i = 0; i < (size_t)4 * LL * HH; i++) CHECK(z.method[i] == DFA_ATTN_FULL);
        free(f.log);
        o.delta = 0.6;
        for (int run = 0; run < 2; run++) {
            fake_init(&f, 3, 4, cfg);
            e = fake_engine(&f);
            CHECKF(dfa_search_v1(ctx, &e, &o, run ? &b : &a) == DFA_OK, "%s", dfa_ctx_error(ctx));
            free(f.log);
        }
        CHECK(plans_equal(&a, &b));
        int seen[DFA_V1_STRATEGY_COUNT] = {0};
        for (int s = 0; s < 4; s++)
            for (int l = 0; l < LL; l++) {
                int sg = a.v1[s * LL + l];
                seen[sg]++;
                if (s == 0) CHECK(sg != DFA_V1_AST && sg != DFA_V1_WARS && sg != DFA_V1_WARS_ASC);
                if (!cfg) CHECK(sg != DFA_V1_ASC && sg != DFA_V1_WARS_ASC);
                if (sg != DFA_V1_NONE)
                    CHECKF(a.influence[s * LL + l] < (l + 1.0) / LL * o.delta, "step %d layer %d: %g", s, l,
                           a.influence[s * LL + l]);
                CHECK(a.asc[s * LL + l] == (sg == DFA_V1_ASC || sg == DFA_V1_WARS_ASC));
                for (int h = 0; h < HH; h++) {
                    int m = a.method[(s * LL + l) * HH + h];
                    CHECK(m == (sg == DFA_V1_AST ? DFA_ATTN_CACHE : sg == DFA_V1_WARS || sg == DFA_V1_WARS_ASC ? DFA_ATTN_ARROW_RS : DFA_ATTN_FULL));
                }
            }
        CHECKF(seen[DFA_V1_NONE] < 4 * LL, "cfg %d: nothing compressed", cfg);
        if (cfg) CHECKF(seen[DFA_V1_ASC] + seen[DFA_V1_WARS_ASC] > 0, "no ASC with cfg");
        CHECK(dfa_search_plan_cost_fraction(&a) < 1.0);
        dfa_search_plan_free(ctx, &a);
        dfa_search_plan_free(ctx, &b);
        dfa_search_plan_free(ctx, &z);
    }
    dfa_ctx_free(ctx);
}

static void test_contract_and_options(void) {
    dfa_ctx *ctx = NULL;
    CHECK(dfa_ctx_init(&ctx, &ONE_THREAD, NULL, 0) == DFA_OK);
    dfa_search_plan p;
    fake f;
    dfa_search_opts o = v2_opts(0.3, 1.5);
    fake_init(&f, 1, 3, 0);
    f.skip_layer = 1;
    dfa_search_engine e = fake_engine(&f);
    CHECK(dfa_search_v2(ctx, &e, &o, &p) == DFA_ERR_INTERNAL);
    CHECKF(strstr(dfa_ctx_error(ctx), "layer 2, expected layer 1") != NULL, "%s", dfa_ctx_error(ctx));
    CHECK(p.method == NULL);
    free(f.log);
    fake_init(&f, 1, 3, 0);
    f.fail_step = 1;
    e = fake_engine(&f);
    dfa_ctx_error(ctx);
    CHECK(dfa_search_v1(ctx, &e, &(dfa_search_opts){.delta = 0.1, .v1_window = 1}, &p) == DFA_ERR_INVALID_ARG);
    CHECKF(strstr(dfa_ctx_error(ctx), "search v1 step 1") != NULL, "%s", dfa_ctx_error(ctx));
    free(f.log);
    fake_init(&f, 1, 3, 0);
    e = fake_engine(&f);
    dfa_search_cand bad[2] = {{DFA_ATTN_ARROW, -2}, {DFA_ATTN_CACHE, 0}};
    o.cands = bad, o.n_cands = 2;
    CHECK(dfa_search_v2(ctx, &e, &o, &p) == DFA_ERR_INVALID_ARG);
    CHECKF(strstr(dfa_ctx_error(ctx), "candidate 0 (arrow) needs a window") != NULL, "%s", dfa_ctx_error(ctx));
    o = v2_opts(-1, 0);
    CHECK(dfa_search_v2(ctx, &e, &o, &p) == DFA_ERR_INVALID_ARG);
    e.n_rows = 3, e.cfg = 1;
    o.delta = 0.1;
    CHECK(dfa_search_v2(ctx, &e, &o, &p) == DFA_ERR_INVALID_ARG);
    CHECKF(strstr(dfa_ctx_error(ctx), "even number of rows") != NULL, "%s", dfa_ctx_error(ctx));
    e = fake_engine(&f);
    dfa_search_backend be;
    dfa_search_backend_cpu(ctx, &be);
    be.rse = NULL;
    o.backend = &be;
    CHECK(dfa_search_v2(ctx, &e, &o, &p) == DFA_ERR_INVALID_ARG);
    CHECKF(strstr(dfa_ctx_error(ctx), "backend lacks") != NULL, "%s", dfa_ctx_error(ctx));
    o.backend = NULL;
    o.v1_window = 8; /* 8 visual tiles: the full band is 7 */
    CHECK(dfa_search_v1(ctx, &e, &o, &p) == DFA_ERR_INVALID_ARG);
    CHECKF(strstr(dfa_ctx_error(ctx), "WA-RS window 8 is beyond the full band 7") != NULL, "%s", dfa_ctx_error(ctx));
    dfa_attn_layout tiny = {16, 0, 0, 64, DFA_BAND_ARROW}, flux2k = {16384, 512, 1, 128, DFA_BAND_ARROW};
    CHECK(dfa_search_v1_default_window(&tiny) == 0);
    CHECK(dfa_search_v1_default_window(&flux2k) == 8); /* 1024 tokens / 128 */
    o.v1_window = -1;
    e.out_numel = 0;
    CHECK(dfa_search_v1(ctx, &e, &o, &p) == DFA_ERR_INVALID_ARG);
    free(f.log);
    dfa_ctx_free(ctx);
}

/* The two attention functions: a band covering every tile equals FULL bit for bit; the CPU
 * reference agrees with the float64 loops to rounding; a hand-computed row. */
static void test_attn_fns(void) {
    dfa_ctx *ctx = NULL;
    CHECK(dfa_ctx_init(&ctx, &ONE_THREAD, NULL, 0) == DFA_OK);
    dfa_attn_layout l = {NV, NT, 0, BLK, DFA_BAND_ARROW};
    static float q[2 * NN * CC], k[2 * NN * CC], v[2 * NN * CC], a[2 * NN * CC], b[2 * NN * CC], c[2 * NN * CC];
    unsigned long long s = 8;
    for (int i = 0; i < 2 * NN * CC; i++) q[i] = test_rng_uniform(&s), k[i] = test_rng_uniform(&s), v[i] = test_rng_uniform(&s);
    for (int i = 0; i < 2 * NN * CC; i++) a[i] = b[i] = c[i] = NAN;
    CHECK(dfa_search_attn_ref(NULL, &l, 2, HH, DD, -1, q, k, v, a) == DFA_OK);
    CHECK(dfa_search_attn_ref(NULL, &l, 2, HH, DD, dfa_mask_full_window(&l), q, k, v, b) == DFA_OK);
    CHECK(!memcmp(a, b, sizeof a));
    for (int w = -1; w < 3; w++) {
        CHECK(dfa_search_attn_ref(NULL, &l, 2, HH, DD, w, q, k, v, b) == DFA_OK);
        CHECKF(dfa_search_attn_cpu(ctx, &l, 2, HH, DD, w, q, k, v, c) == DFA_OK, "%s", dfa_ctx_error(ctx));
        double md = 0;
        for (int i = 0; i < 2 * NN * CC; i++) md = fmax(md, fabs((double)b[i] - c[i]));
        CHECKF(md < 1e-5, "window %d: max diff %g", w, md);
    }
    CHECK(dfa_search_attn_ref(NULL, &l, 2, HH, DD, 0, q, k, v, b) == DFA_OK);
    CHECK(memcmp(a, b, sizeof a) != 0);
    /* hand check: row 1, head 2, one query, window 0: keys of its tile + text (after the image) */
    int qpos = 5;
    const float *q1 = q + NN * CC, *k1 = k + NN * CC, *v1 = v + NN * CC;
    double sc[NN], m = -1e300, sum = 0, want = 0;
    for (int j = 0; j < NN; j++) {
        sc[j] = NAN;
        if (!(j / BLK == qpos / BLK || j >= NV)) continue;
        double acc = 0;
        for (int d = 0; d < DD; d++) acc += (double)q1[qpos * CC + 2 * DD + d] * k1[j * CC + 2 * DD + d];
        sc[j] = acc / sqrt((double)DD);
        if (sc[j] > m) m = sc[j];
    }
    for (int j = 0; j < NN; j++)
        if (!isnan(sc[j])) sum += exp(sc[j] - m), want += exp(sc[j] - m) * v1[j * CC + 2 * DD + 3];
    CHECK_NEAR(b[NN * CC + qpos * CC + 2 * DD + 3], want / sum, 1e-6);
    dfa_ctx_free(ctx);
}

/* Execute a searched plan with the real executor (plan.h + dfa_attn_layer) on a fresh engine
 * and compare its trajectory with the search's. */
typedef struct exec_run {
    dfa_ctx *ctx;
    int step;
} exec_run;

static dfa_status exec_hook(void *user, int layer, const void *q, const void *k, const void *v, void *out) {
    exec_run *x = user;
    if (layer == 0) DFA_TRY(dfa_attn_begin_step(x->ctx, x->step));
    int R = dfa_attn_plan(x->ctx)->cfg ? 2 * PP : PP;
    dfa_tensor tq = {DFA_F32, DFA_DEV_CPU, 4, {R, NN, HH, DD}, (void *)q}, tk = tq, tv = tq, to = tq;
    tk.data = (void *)k, tv.data = (void *)v, to.data = out;
    dfa_attn_layout lay = {NV, NT, 1, BLK, DFA_BAND_ARROW};
    return dfa_attn_layer(x->ctx, layer, &lay, &tq, &tk, &tv, &to);
}

static int executes_identically(dfa_ctx *ctx, const dfa_search_plan *sp, const dfa_search_opts *o, int v1, fake *f,
                                unsigned long long seed) {
    fake g;
    fake_init(&g, seed, f->steps, f->cfg);
    g.cond_half = f->cond_half;
    dfa_search_engine e = fake_engine(&g);
    dfa_plan plan;
    dfa_error err;
    dfa_plan saved;
    dfa_status st = dfa_search_plan_export(sp, &e, o, v1, "fake", "test", &saved, &err);
    CHECKF(st == DFA_OK, "%s", err.msg);
    if (st) return 0;
    /* through a plan file: save, load (which validates), execute what was loaded */
    test_tmpdir td;
    char path[128];
    CHECK(tmpdir_make(&td, "search") == 0 && tmpdir_file(&td, "plan.json", path, sizeof path));
    CHECKF(dfa_plan_save(path, &saved, &err) == DFA_OK, "%s", err.msg);
    dfa_plan_free(&saved);
    st = dfa_plan_load(path, &plan, &err);
    CHECKF(st == DFA_OK, "%s", err.msg);
    tmpdir_remove(&td);
    if (st) return 0;
    CHECK(!strcmp(plan.search, v1 ? "v1" : "v2") && plan.cfg == f->cfg && plan.n_steps == f->steps);
    dfa_ctx *c2 = NULL;
    CHECK(dfa_ctx_init(&c2, &ONE_THREAD, NULL, 0) == DFA_OK);
    CHECKF(dfa_attn_set_plan(c2, &plan) == DFA_OK, "%s", dfa_ctx_error(c2));
    exec_run x = {c2, 0};
    for (int s = 0; s < f->steps; s++) {
        x.step = s;
        dfa_status r = fake_run_step(&g, s, 1, exec_hook, &x, NULL);
        CHECKF(r == DFA_OK, "%s", dfa_ctx_error(c2));
    }
    size_t n = (size_t)f->steps * f->R * NN * CC;
    int diff = 0;
    for (size_t i = 0; i < n; i++) diff += f->log[i] != g.log[i];
    CHECKF(diff == 0, "%s: %d of %zu model outputs differ", v1 ? "v1" : "v2", diff, n);
    dfa_ctx_free(c2);
    dfa_plan_free(&plan);
    free(g.log);
    (void)ctx;
    return diff == 0;
}

static void test_plans_execute(void) {
    dfa_ctx *ctx = NULL;
    CHECK(dfa_ctx_init(&ctx, &ONE_THREAD, NULL, 0) == DFA_OK);
    static const dfa_search_cand two_rs[] = {{DFA_ATTN_ARROW_RS, 1}, {DFA_ATTN_ARROW_RS, 2}, {DFA_ATTN_CACHE, -1}};
    for (int set = 0; set < 4; set++) { /* V2; set 3 on a CFG batch [uncond, cond] */
        dfa_search_opts o = v2_opts(set ? 0.6 : 0.3, 1.5);
        if (set == 2) o.cands = two_rs, o.n_cands = 3;
        dfa_search_plan p;
        fake f;
        fake_init(&f, 31 + set, 6, set == 3);
        f.cond_half = 1;
        dfa_search_engine e = fake_engine(&f);
        CHECKF(dfa_search_v2(ctx, &e, &o, &p) == DFA_OK, "%s", dfa_ctx_error(ctx));
        executes_identically(ctx, &p, &o, 0, &f, 31 + set);
        free(f.log);
        dfa_search_plan_free(ctx, &p);
    }
    for (int cfg = 0; cfg < 3; cfg++) { /* V1: no CFG, CFG [cond, uncond], CFG [uncond, cond] */
        dfa_search_opts o = v2_opts(0.8, 0);
        o.v1_window = 1;
        fake f;
        fake_init(&f, 41, 6, cfg > 0);
        f.cond_half = cfg == 2;
        dfa_search_engine e = fake_engine(&f);
        dfa_search_plan p;
        CHECKF(dfa_search_v1(ctx, &e, &o, &p) == DFA_OK, "%s", dfa_ctx_error(ctx));
        int kinds = 0, seen[DFA_V1_STRATEGY_COUNT] = {0};
        for (int i = 0; i < 6 * LL; i++) seen[p.v1[i]]++;
        for (int i = 0; i < DFA_V1_STRATEGY_COUNT; i++) kinds += seen[i] > 0;
        CHECKF(kinds >= (cfg ? 3 : 2), "cfg %d: strategies %d %d %d %d %d", cfg, seen[0], seen[1], seen[2], seen[3], seen[4]);
        executes_identically(ctx, &p, &o, 1, &f, 41);
        free(f.log);
        dfa_search_plan_free(ctx, &p);
    }
    dfa_ctx_free(ctx);
}

static void test_progress(void) {
    char b[192];
    dfa_search_progress_format(b, sizeof b, 8, 16, 1, 4, 3, 4, 65.0);
    CHECKF(!strcmp(b, "[##########----------]  50%  step 2/4  layer 4/4  1m05s elapsed, ETA 1m05s"), "%s", b);
    dfa_search_progress_format(b, sizeof b, 0, 16, 0, 4, 0, 4, 0.2);
    CHECKF(!strcmp(b, "[--------------------]   0%  step 1/4  layer 1/4  0s elapsed, ETA --"), "%s", b);
    dfa_search_progress_format(b, sizeof b, 1, 3000, 0, 50, 0, 60, 9.0);
    CHECKF(strstr(b, "ETA 7h29m51s") != NULL, "%s", b);
    /* as the on_layer callback of a search: one call per decision */
    dfa_ctx *ctx = NULL;
    CHECK(dfa_ctx_init(&ctx, &ONE_THREAD, NULL, 0) == DFA_OK);
    dfa_search_progress pr;
    dfa_search_progress_init(&pr, NULL, 3, LL);
    dfa_search_opts o = v2_opts(0.2, 1.5);
    o.on_layer = dfa_search_progress_on_layer, o.on_layer_user = &pr;
    dfa_search_plan p;
    fake f;
    CHECK(run_v2(ctx, 2, 3, &o, &p, &f) == DFA_OK);
    CHECK(pr.done == 3 * LL);
    free(f.log);
    dfa_search_plan_free(ctx, &p);
    dfa_ctx_free(ctx);
}

int main(void) {
    dfa_cost_table_flops(&FLOPS, BLK);
    ONE_THREAD = dfa_ctx_default_params();
    ONE_THREAD.n_threads = 1;
    RUN(test_attn_fns);
    RUN(test_v2_deterministic_and_delta0);
    RUN(test_v2_batched_backend);
    RUN(test_v2_monotone);
    RUN(test_v2_replay);
    RUN(test_v1);
    RUN(test_contract_and_options);
    RUN(test_plans_execute);
    RUN(test_progress);
    return test_summary();
}
