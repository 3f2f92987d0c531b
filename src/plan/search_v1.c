/* search_v1.c - DiTFastAttn's greedy plan search (sec. 3.5, Alg. 1, appendix A.2).
 *
 * Per step: one trial pass with every layer FULL gives O; then for layer i = 1 .. n_layers the
 * strategies in ascending modelled cost, each a trial pass with the layers before i on their
 * chosen strategies, layer i on the trial one and the layers after i FULL; the first strategy
 * whose mean relative absolute error against O is < (i / n_layers) * delta is kept (the cheapest
 * passing one: Alg. 1's "last passing in ascending compression" order). Then one committing pass
 * under the step's strategies advances the engine and updates the caches. Trials never touch
 * the caches. */
#include <math.h>
#include <string.h>

#include "plan/metrics.h"
#include "plan/search_state.h"

typedef struct v1_run {
    search_state st;
    uint8_t *strat; /* [L] the strategies of the pass being run */
    int commit;
    int window;
} v1_run;

static int is_asc(int s) {
    return s == DFA_V1_ASC || s == DFA_V1_WARS_ASC;
}

/* Rows a strategy computes: all, or under ASC the conditional half. */
static void computed_rows(const search_state *st, int sg, int *r0, int *r1) {
    int half = st->R / 2;
    *r0 = is_asc(sg) ? st->eng->cond_half * half : 0;
    *r1 = is_asc(sg) ? *r0 + half : st->R;
}

static dfa_status v1_hook(void *user, int layer, const void *q, const void *k, const void *v, void *out) {
    v1_run *run = user;
    search_state *st = &run->st;
    DFA_TRY(search_hook_enter(st, layer));
    const int R = st->R, H = st->H, sg = run->strat[layer], half = R / 2;
    int r0, r1;
    computed_rows(st, sg, &r0, &r1);
    const int o0 = r0 ? 0 : half; /* under ASC: the first row of the other half */
    void *res = st->resid[layer * st->n_rs];
    switch (sg) {
    case DFA_V1_NONE:
    case DFA_V1_ASC:
        DFA_TRY(search_compute(st, q, k, v, -1, r0, r1, st->full));
        DFA_TRY(search_copy_rows(st, out, st->full, r0, r1));
        if (run->commit) { /* a FULL step refreshes the WA-RS residual of the rows it computed */
            DFA_TRY(search_compute(st, q, k, v, run->window, r0, r1, st->arrow[0]));
            for (int h = 0; h < H; h++) DFA_TRY(search_refresh_resid(st, layer, 0, h, r0, r1));
            if (is_asc(sg)) { /* ... and under ASC the other half gets a copy (attn.h) */
                DFA_TRY(st->be.copy(st->be.user, search_at(st, res, (size_t)o0 * st->row_elems),
                                    search_at(st, res, (size_t)r0 * st->row_elems), (size_t)half * st->row_elems));
                for (int r = 0; r < R; r++)
                    for (int h = 0; h < H; h++) *search_resid_valid(st, layer, 0, r, h) = 1;
            }
        }
        break;
    case DFA_V1_AST: DFA_TRY(search_copy_rows(st, out, st->cache[layer], 0, R)); break;
    default: /* WA-RS, WA-RS + ASC */
        DFA_TRY(search_compute(st, q, k, v, run->window, r0, r1, st->arrow[0]));
        for (int h = 0; h < H; h++) DFA_TRY(search_head_op(st, h, r0, r1, out, st->arrow[0], res, 1));
    }
    if (is_asc(sg))
        DFA_TRY(st->be.copy(st->be.user, search_at(st, out, (size_t)o0 * st->row_elems),
                            search_at(st, out, (size_t)r0 * st->row_elems), (size_t)half * st->row_elems));
    if (run->commit) {
        DFA_TRY(search_copy_rows(st, st->cache[layer], out, 0, R));
        st->cache_valid[layer] = 1;
    }
    return DFA_OK;
}

static int available(v1_run *run, int layer, int sg) {
    search_state *st = &run->st;
    if (is_asc(sg) && !st->eng->cfg) return 0;
    if (sg == DFA_V1_AST) return st->cache_valid[layer];
    if (sg == DFA_V1_WARS || sg == DFA_V1_WARS_ASC) {
        int r0, r1;
        computed_rows(st, sg, &r0, &r1);
        for (int r = r0; r < r1; r++)
            for (int h = 0; h < st->H; h++)
                if (!*search_resid_valid(st, layer, 0, r, h)) return 0;
    }
    return 1;
}

/* Modelled time of one layer (all rows) under a strategy. */
static double strategy_cost(search_state *st, int sg, int window) {
    double full = search_head_cost(st, DFA_ATTN_FULL, -1), copy = search_head_cost(st, DFA_ATTN_CACHE, -1);
    double rs = search_head_cost(st, DFA_ATTN_ARROW_RS, window), half = st->R / 2, R = st->R;
    switch (sg) {
    case DFA_V1_AST: return R * st->H * copy;
    case DFA_V1_WARS: return R * st->H * rs;
    case DFA_V1_WARS_ASC: return half * st->H * (rs + copy);
    case DFA_V1_ASC: return half * st->H * (full + copy);
    default: return R * st->H * full;
    }
}

static dfa_status run_pass(v1_run *run, int step, int commit, void *model_out) {
    const dfa_search_engine *e = run->st.eng;
    run->commit = commit;
    run->st.next_layer = 0;
    dfa_status s = e->run_step(e->user, step, commit, v1_hook, run, model_out);
    if (s) {
        dfa_error_wrap(&run->st.ctx->err, "search v1 step %d", step);
        return s;
    }
    return search_step_check(&run->st, step);
}

dfa_status dfa_search_v1(dfa_ctx *ctx, const dfa_search_engine *eng, const dfa_search_opts *o, dfa_search_plan *plan) {
    v1_run run;
    memset(&run, 0, sizeof run);
    memset(plan, 0, sizeof *plan);
    dfa_attn_layout bl = eng->layout; /* with the search's band kind */
    bl.band = o->band;
    run.window = o->v1_window >= 0 ? o->v1_window : dfa_search_v1_default_window(&bl);
    void *ref = NULL, *trial = NULL;
    if (dfa_layout_valid(&bl) == 0 && run.window > dfa_mask_full_window(&bl))
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "search v1: WA-RS window %d is beyond the full band %d (%d %s tiles)",
                     run.window, dfa_mask_full_window(&bl), dfa_mask_full_window(&bl) + 1,
                     bl.band == DFA_BAND_PLAIN ? "sequence" : "visual");
    dfa_status s = search_state_init(&run.st, ctx, eng, o, plan, &run.window, 1, &run.window, 1, 1);
    if (!s) s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, (size_t)eng->n_layers, "search v1 strategies", (void **)&run.strat);
    const dfa_search_backend *be = &run.st.be;
    if (!s) s = be->alloc(be->user, be->elem_size * eng->out_numel, "search v1 reference output", &ref);
    if (!s) s = be->alloc(be->user, be->elem_size * eng->out_numel, "search v1 trial output", &trial);
    /* strategy list S of the paper, then sorted by modelled cost (stable) */
    int order[4], n = 0;
    if (!s) {
        static const int S[4] = {DFA_V1_AST, DFA_V1_WARS_ASC, DFA_V1_WARS, DFA_V1_ASC};
        for (int i = 0; i < 4; i++)
            if (!is_asc(S[i]) || eng->cfg) order[n++] = S[i];
        for (int i = 1; i < n; i++)
            for (int j = i; j > 0 && strategy_cost(&run.st, order[j], run.window) <
                                         strategy_cost(&run.st, order[j - 1], run.window); j--) {
                int t = order[j];
                order[j] = order[j - 1];
                order[j - 1] = t;
            }
    }
    const int L = eng->n_layers, H = eng->n_heads;
    for (int step = 0; !s && step < eng->n_steps; step++) {
        run.st.step = step;
        memset(run.strat, DFA_V1_NONE, (size_t)L);
        if (o->delta > 0) s = run_pass(&run, step, 0, ref);
        for (int i = 0; !s && i < L; i++) {
            double thr = (double)(i + 1) / L * o->delta, err = 0;
            int chosen = DFA_V1_NONE;
            for (int j = 0; !s && j < n && thr > 0; j++) {
                if (!available(&run, i, order[j])) continue;
                run.strat[i] = (uint8_t)order[j];
                s = run_pass(&run, step, 0, trial);
                if (s) break;
                s = be->mrae(be->user, ref, trial, eng->out_numel, &err);
                if (s) break;
                if (err < thr) {
                    chosen = order[j];
                    break;
                }
            }
            if (s) break;
            run.strat[i] = (uint8_t)chosen;
            size_t sl = (size_t)step * L + i;
            plan->v1[sl] = (uint8_t)chosen;
            plan->asc[sl] = (uint8_t)is_asc(chosen);
            plan->influence[sl] = chosen == DFA_V1_NONE ? 0 : err;
            search_use_layer(&run.st, i); /* layer i's own layout (SD3.5 attn2) */
            plan->cost_ns[sl] = strategy_cost(&run.st, chosen, run.window);
            for (int h = 0; h < H; h++) {
                int wa = chosen == DFA_V1_WARS || chosen == DFA_V1_WARS_ASC;
                plan->method[sl * H + h] = (uint8_t)(chosen == DFA_V1_AST ? DFA_ATTN_CACHE : wa ? DFA_ATTN_ARROW_RS : DFA_ATTN_FULL);
                plan->window[sl * H + h] = wa ? run.window : -1;
            }
            if (o->on_layer) o->on_layer(o->on_layer_user, step, i, NULL, &chosen);
        }
        if (!s) s = run_pass(&run, step, 1, NULL);
    }
    dfa_ctx_mem_release(ctx, run.strat);
    if (be->release) be->release(be->user, ref), be->release(be->user, trial);
    search_state_free(&run.st);
    if (s) dfa_search_plan_free(ctx, plan);
    return s;
}
