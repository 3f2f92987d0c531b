/* search_v2.c - DiTFastAttnV2's progressive head-wise plan search (sec. 3.4, Alg. 1).
 *
 * One engine pass per step (commit = 1). At each attention layer the hook computes, for every
 * row and head, the FULL output and the ARROW output of every candidate window, forms each
 * candidate's output (CACHE: the layer's output at the previous step; ARROW_RS: ARROW + the
 * residual of the head's latest FULL step), takes its RSE against FULL per head averaged over
 * the rows, solves the knapsack, hands the chosen per-head outputs to the engine and updates the
 * caches with them. */
#include <string.h>

#include "plan/search_state.h"

#define V2_MAX_CANDS 32

typedef struct v2_run {
    search_state st;
    dfa_search_cand cands[V2_MAX_CANDS];
    int n_cands;
    double *cost, *infl; /* [H * C] */
    uint8_t *allowed;    /* [H * C] */
    int *choice;         /* [H] */
    double *rse_all;     /* [C * R * H] rse_multi's results */
    dfa_search_head_src *src; /* [H] compose's sources */
} v2_run;

/* Candidate c's output for head h of every row into dst (which may be the engine's out). */
static dfa_status cand_output(v2_run *run, int layer, int c, int h, void *dst) {
    search_state *st = &run->st;
    const dfa_search_cand *cd = &run->cands[c];
    switch (cd->method) {
    case DFA_ATTN_FULL: return search_head_op(st, h, 0, st->R, dst, st->full, NULL, 0);
    case DFA_ATTN_ARROW: return search_head_op(st, h, 0, st->R, dst, st->arrow[search_win_index(st, cd->window)], NULL, 0);
    case DFA_ATTN_CACHE: return search_head_op(st, h, 0, st->R, dst, st->cache[layer], NULL, 0);
    default: /* ARROW_RS */
        return search_head_op(st, h, 0, st->R, dst, st->arrow[search_win_index(st, cd->window)],
                              st->resid[layer * st->n_rs + search_rs_index(st, cd->window)], 1);
    }
}

static int cand_available(v2_run *run, int layer, int c, int h) {
    search_state *st = &run->st;
    const dfa_search_cand *cd = &run->cands[c];
    if (cd->method == DFA_ATTN_CACHE) return st->cache_valid[layer];
    if (cd->method == DFA_ATTN_ARROW_RS) {
        int lock = st->rs_lock[layer * st->H + h];
        if (lock >= 0 && lock != cd->window) return 0; /* one window per refresh (plan.h) */
        int i = search_rs_index(st, cd->window);
        for (int r = 0; r < st->R; r++)
            if (!*search_resid_valid(st, layer, i, r, h)) return 0;
    }
    return 1;
}

/* Influence of every non-FULL candidate allowed on some head: per (row, head) RSE against FULL
 * averaged over the rows. With the backend's rse_multi: one call for all of them (one pass,
 * one transfer); else one rse per candidate (ARROW_RS composed into tmp first). */
static dfa_status v2_influence(v2_run *run, int layer, const int *need, int n_need) {
    search_state *st = &run->st;
    const int H = st->H, C = run->n_cands, R = st->R;
    const void *a[V2_MAX_CANDS], *b[V2_MAX_CANDS];
    for (int j = 0; j < n_need; j++) {
        const dfa_search_cand *cd = &run->cands[need[j]];
        b[j] = NULL;
        if (cd->method == DFA_ATTN_CACHE) a[j] = st->cache[layer];
        else a[j] = st->arrow[search_win_index(st, cd->window)];
        if (cd->method == DFA_ATTN_ARROW_RS) b[j] = st->resid[layer * st->n_rs + search_rs_index(st, cd->window)];
    }
    for (int j = 0; j < n_need; j++) {
        const int c = need[j];
        const double *rse = st->rse;
        if (st->be.rse_multi) {
            if (j == 0) {
                dfa_status s = st->be.rse_multi(st->be.user, &st->shape, st->full, n_need, a, b, run->rse_all);
                if (s) {
                    dfa_error_wrap(&st->ctx->err, "search step %d: metrics", st->step);
                    return s;
                }
            }
            rse = run->rse_all + (size_t)j * R * H;
        } else {
            const void *approx = a[j];
            if (b[j]) {
                for (int h = 0; h < H; h++)
                    if (run->allowed[(size_t)h * C + c]) DFA_TRY(search_head_op(st, h, 0, R, st->tmp, a[j], b[j], 1));
                approx = st->tmp;
            }
            DFA_TRY(search_rse(st, st->full, approx));
        }
        for (int h = 0; h < H; h++) {
            size_t x = (size_t)h * C + c;
            if (!run->allowed[x]) continue;
            double sum = 0;
            for (int r = 0; r < R; r++) sum += rse[(size_t)r * H + h];
            run->infl[x] = sum / R;
        }
    }
    return DFA_OK;
}

/* The chosen per-head outputs into out; residual refresh of the heads that chose FULL. With the
 * backend's compose: one call each; else one head_op per head. */
static dfa_status v2_apply(v2_run *run, int layer, void *out) {
    search_state *st = &run->st;
    const int H = st->H, R = st->R;
    if (!st->be.compose) {
        for (int h = 0; h < H; h++) {
            DFA_TRY(cand_output(run, layer, run->choice[h], h, out));
            if (run->cands[run->choice[h]].method == DFA_ATTN_FULL)
                for (int i = 0; i < st->n_rs; i++) DFA_TRY(search_refresh_resid(st, layer, i, h, 0, R));
        }
        return DFA_OK;
    }
    dfa_search_head_src *src = run->src;
    int any_full = 0;
    for (int h = 0; h < H; h++) {
        const dfa_search_cand *cd = &run->cands[run->choice[h]];
        src[h] = (dfa_search_head_src){NULL, NULL, 0};
        switch (cd->method) {
        case DFA_ATTN_FULL: src[h].a = st->full, any_full = 1; break;
        case DFA_ATTN_ARROW: src[h].a = st->arrow[search_win_index(st, cd->window)]; break;
        case DFA_ATTN_CACHE: src[h].a = st->cache[layer]; break;
        default: /* ARROW_RS */
            src[h].a = st->arrow[search_win_index(st, cd->window)];
            src[h].b = st->resid[layer * st->n_rs + search_rs_index(st, cd->window)];
            src[h].sign = 1;
        }
    }
    dfa_status s = st->be.compose(st->be.user, &st->shape, out, src);
    for (int i = 0; !s && any_full && i < st->n_rs; i++) {
        const void *arrow = st->arrow[search_win_index(st, st->rs_win[i])];
        for (int h = 0; h < H; h++)
            src[h] = run->cands[run->choice[h]].method == DFA_ATTN_FULL ? (dfa_search_head_src){st->full, arrow, -1}
                                                                        : (dfa_search_head_src){NULL, NULL, 0};
        s = st->be.compose(st->be.user, &st->shape, st->resid[layer * st->n_rs + i], src);
        for (int h = 0; !s && h < H; h++)
            if (src[h].a)
                for (int r = 0; r < R; r++) *search_resid_valid(st, layer, i, r, h) = 1;
    }
    if (s) dfa_error_wrap(&st->ctx->err, "search step %d: compose", st->step);
    return s;
}

static dfa_status v2_hook(void *user, int layer, const void *q, const void *k, const void *v, void *out) {
    v2_run *run = user;
    search_state *st = &run->st;
    DFA_TRY(search_hook_enter(st, layer));
    const int H = st->H, C = run->n_cands, R = st->R;
    if (st->be.attn_multi && st->n_win > 0) {
        dfa_status sa = st->be.attn_multi(st->be.user, st->lay, R, H, st->D, st->n_win, st->win, q, k, v, st->full,
                                          st->arrow);
        if (sa) {
            dfa_error_wrap(&st->ctx->err, "search step %d: FULL and %d ARROW windows", st->step, st->n_win);
            return sa;
        }
    } else {
        DFA_TRY(search_compute(st, q, k, v, -1, 0, R, st->full));
        for (int i = 0; i < st->n_win; i++) DFA_TRY(search_compute(st, q, k, v, st->win[i], 0, R, st->arrow[i]));
    }
    int need[V2_MAX_CANDS], n_need = 0;
    for (int c = 0; c < C; c++) {
        const dfa_search_cand *cd = &run->cands[c];
        int any = 0;
        for (int h = 0; h < H; h++) {
            size_t x = (size_t)h * C + c;
            run->cost[x] = search_head_cost(st, cd->method, cd->window) * R;
            run->allowed[x] = (uint8_t)cand_available(run, layer, c, h);
            run->infl[x] = 0;
            any |= run->allowed[x] && cd->method != DFA_ATTN_FULL;
        }
        if (any) need[n_need++] = c;
    }
    DFA_TRY(v2_influence(run, layer, need, n_need));
    dfa_mckp_problem p = {H, C, run->cost, run->infl, run->allowed, st->o->delta, st->o->c};
    dfa_mckp_solution sol;
    dfa_status s = dfa_mckp_solve(st->ctx, &p, &st->o->mckp, run->choice, &sol);
    if (s != DFA_OK) {
        dfa_error_wrap(&st->ctx->err, "search v2 step %d layer %d", st->step, layer);
        return s;
    }
    if (!sol.feasible) /* FULL (influence 0, always allowed) makes every instance feasible */
        DFA_CTX_FAIL(st->ctx, DFA_ERR_INTERNAL, "search v2 step %d layer %d: knapsack infeasible", st->step, layer);
    size_t sl = (size_t)st->step * st->L + layer;
    DFA_TRY(v2_apply(run, layer, out));
    for (int h = 0; h < H; h++) {
        const dfa_search_cand *cd = &run->cands[run->choice[h]];
        st->plan->method[sl * H + h] = (uint8_t)cd->method;
        st->plan->window[sl * H + h] = cd->method == DFA_ATTN_ARROW || cd->method == DFA_ATTN_ARROW_RS ? cd->window : -1;
        if (cd->method == DFA_ATTN_FULL) st->rs_lock[layer * H + h] = -1;
        else if (cd->method == DFA_ATTN_ARROW_RS) st->rs_lock[layer * H + h] = cd->window;
    }
    st->plan->influence[sl] = sol.influence;
    st->plan->cost_ns[sl] = sol.cost;
    DFA_TRY(search_copy_rows(st, st->cache[layer], out, 0, R));
    st->cache_valid[layer] = 1;
    if (st->o->on_layer) st->o->on_layer(st->o->on_layer_user, st->step, layer, &p, run->choice);
    return DFA_OK;
}

static dfa_status build_cands(dfa_ctx *ctx, const dfa_search_opts *o, v2_run *run) {
    if (o->n_cands < 0 || o->n_cands >= V2_MAX_CANDS || (o->n_cands > 0 && !o->cands))
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "search v2: %d candidates (at most %d, array required)", o->n_cands,
                     V2_MAX_CANDS - 1);
    run->cands[0] = (dfa_search_cand){DFA_ATTN_FULL, -1};
    run->n_cands = 1;
    for (int i = 0; i < o->n_cands; i++) {
        dfa_search_cand c = o->cands[i];
        if (c.method == DFA_ATTN_FULL) continue;
        if (c.method != DFA_ATTN_ARROW && c.method != DFA_ATTN_ARROW_RS && c.method != DFA_ATTN_CACHE)
            DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "search v2: candidate %d has unknown method %d", i, (int)c.method);
        if (c.method == DFA_ATTN_CACHE) c.window = -1;
        else if (c.window < 0)
            DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "search v2: candidate %d (%s) needs a window >= 0, got %d", i,
                         c.method == DFA_ATTN_ARROW ? "arrow" : "arrow_rs", c.window);
        for (int j = 0; j < run->n_cands; j++)
            if (run->cands[j].method == c.method && run->cands[j].window == c.window)
                DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "search v2: candidate %d repeats method %d window %d", i,
                             (int)c.method, c.window);
        run->cands[run->n_cands++] = c;
    }
    return DFA_OK;
}

dfa_status dfa_search_v2(dfa_ctx *ctx, const dfa_search_engine *eng, const dfa_search_opts *o, dfa_search_plan *plan) {
    v2_run run;
    memset(&run, 0, sizeof run);
    memset(plan, 0, sizeof *plan);
    DFA_TRY(build_cands(ctx, o, &run));
    int wins[V2_MAX_CANDS], rs[V2_MAX_CANDS], nw = 0, nr = 0;
    for (int c = 1; c < run.n_cands; c++) {
        if (run.cands[c].method == DFA_ATTN_ARROW || run.cands[c].method == DFA_ATTN_ARROW_RS)
            wins[nw++] = run.cands[c].window;
        if (run.cands[c].method == DFA_ATTN_ARROW_RS) rs[nr++] = run.cands[c].window;
    }
    dfa_status s = search_state_init(&run.st, ctx, eng, o, plan, wins, nw, rs, nr, 0);
    dfa_attn_layout bl = eng->layout; /* with the search's band kind */
    bl.band = o->band;
    for (int c = 1; !s && c < run.n_cands; c++)
        if (run.cands[c].window > dfa_mask_full_window(&bl))
            s = DFA_SET(&ctx->err, DFA_ERR_INVALID_ARG,
                        "search v2: candidate %s window %d is beyond the full band %d (%d %s tiles)",
                        dfa_attn_method_name(run.cands[c].method), run.cands[c].window, dfa_mask_full_window(&bl),
                        dfa_mask_full_window(&bl) + 1, bl.band == DFA_BAND_PLAIN ? "sequence" : "visual");
    size_t hc = (size_t)eng->n_heads * run.n_cands;
    if (!s) s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, hc * sizeof(double), "search v2 costs", (void **)&run.cost);
    if (!s) s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, hc * sizeof(double), "search v2 influences", (void **)&run.infl);
    if (!s) s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, hc, "search v2 flags", (void **)&run.allowed);
    if (!s) s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, sizeof(int) * eng->n_heads, "search v2 choice", (void **)&run.choice);
    if (!s)
        s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, hc * eng->n_rows * sizeof(double), "search v2 metrics",
                              (void **)&run.rse_all);
    if (!s)
        s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, sizeof(dfa_search_head_src) * eng->n_heads, "search v2 sources",
                              (void **)&run.src);
    for (int step = 0; !s && step < eng->n_steps; step++) {
        run.st.step = step;
        run.st.next_layer = 0;
        s = eng->run_step(eng->user, step, 1, v2_hook, &run, NULL);
        if (s) dfa_error_wrap(&ctx->err, "search v2 step %d", step);
        else s = search_step_check(&run.st, step);
    }
    dfa_ctx_mem_release(ctx, run.cost);
    dfa_ctx_mem_release(ctx, run.infl);
    dfa_ctx_mem_release(ctx, run.allowed);
    dfa_ctx_mem_release(ctx, run.choice);
    dfa_ctx_mem_release(ctx, run.rse_all);
    dfa_ctx_mem_release(ctx, run.src);
    search_state_free(&run.st);
    if (s) dfa_search_plan_free(ctx, plan);
    return s;
}
