/* search_common.c - state shared by the V1 and V2 plan searches (buffers in the backend's
 * memory), the plan result and its export to a dfa_plan. */
#include "plan/search_state.h"

#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>


dfa_status dfa_search_plan_alloc(dfa_ctx *ctx, dfa_search_plan *p, int n_steps, int n_layers, int n_heads) {
    memset(p, 0, sizeof *p);
    if (n_steps < 1 || n_layers < 1 || n_heads < 1)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "search plan: need steps, layers, heads >= 1, got %d, %d, %d", n_steps,
                     n_layers, n_heads);
    size_t slh = (size_t)n_steps * n_layers * n_heads, sl = (size_t)n_steps * n_layers;
    p->n_steps = n_steps, p->n_layers = n_layers, p->n_heads = n_heads;
    dfa_status s;
    if ((s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, slh, "search plan methods", (void **)&p->method)) ||
        (s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, slh * sizeof(int32_t), "search plan windows", (void **)&p->window)) ||
        (s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, sl, "search plan asc", (void **)&p->asc)) ||
        (s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, sl, "search plan v1", (void **)&p->v1)) ||
        (s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, sl * sizeof(double), "search plan influence", (void **)&p->influence)) ||
        (s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, sl * sizeof(double), "search plan cost", (void **)&p->cost_ns))) {
        dfa_search_plan_free(ctx, p);
        return s;
    }
    memset(p->method, DFA_ATTN_FULL, slh);
    for (size_t i = 0; i < slh; i++) p->window[i] = -1;
    memset(p->asc, 0, sl);
    memset(p->v1, 0, sl);
    for (size_t i = 0; i < sl; i++) p->influence[i] = 0, p->cost_ns[i] = 0;
    return DFA_OK;
}

void dfa_search_plan_free(dfa_ctx *ctx, dfa_search_plan *p) {
    dfa_ctx_mem_release(ctx, p->method);
    dfa_ctx_mem_release(ctx, p->window);
    dfa_ctx_mem_release(ctx, p->asc);
    dfa_ctx_mem_release(ctx, p->v1);
    dfa_ctx_mem_release(ctx, p->influence);
    dfa_ctx_mem_release(ctx, p->cost_ns);
    memset(p, 0, sizeof *p);
}

double dfa_search_plan_cost_fraction(const dfa_search_plan *p) {
    double c = 0;
    for (size_t i = 0; i < (size_t)p->n_steps * p->n_layers; i++) c += p->cost_ns[i];
    double f = p->full_cost_ns * p->n_steps * p->n_layers;
    return f > 0 ? c / f : 1.0;
}

int dfa_search_v1_default_window(const dfa_attn_layout *l) {
    if (l->block < 1) return 0;
    const int n = l->band == DFA_BAND_PLAIN ? dfa_layout_tokens(l) : l->n_vis; /* plain: 1/8 of all tokens */
    int tokens = (n + 15) / 16, w = (tokens + l->block - 1) / l->block, full = dfa_mask_full_window(l);
    return w < full ? w : full;
}

/* ---- state ---- */

int search_win_index(const search_state *st, int window) {
    for (int i = 0; i < st->n_win; i++)
        if (st->win[i] == window) return i;
    return -1;
}

int search_rs_index(const search_state *st, int window) {
    for (int i = 0; i < st->n_rs; i++)
        if (st->rs_win[i] == window) return i;
    return -1;
}

static void search_set_layout(search_state *st, const dfa_attn_layout *l) {
    st->lay_own = *l;
    st->lay_own.band = st->o->band;
    st->lay = &st->lay_own;
    st->N = dfa_layout_tokens(l);
    st->shape = (dfa_search_shape){st->R, st->N, st->H, st->D};
    st->row_elems = (size_t)st->N * st->H * st->D;
    st->layer_elems = st->row_elems * st->R;
}

static dfa_status check_engine(dfa_ctx *ctx, const dfa_search_engine *e, int need_out_numel) {
    if (!e->run_step) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "search engine: run_step is NULL");
    if (e->n_steps < 1 || e->n_layers < 1 || e->n_heads < 1 || e->head_dim < 1 || e->n_rows < 1)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG,
                     "search engine: need steps, layers, heads, head_dim, rows >= 1, got %d, %d, %d, %d, %d",
                     e->n_steps, e->n_layers, e->n_heads, e->head_dim, e->n_rows);
    if (e->cfg && e->n_rows % 2)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "search engine: cfg needs an even number of rows, got %d", e->n_rows);
    if (dfa_layout_valid(&e->layout) || e->layout.band != DFA_BAND_ARROW)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "search engine: layout invalid or banded (the band kind is the search "
                     "option's) (n_vis=%d n_text=%d block=%d)",
                     e->layout.n_vis, e->layout.n_text, e->layout.block);
    for (int l = 0; e->layer_layout && l < e->n_layers; l++) {
        const dfa_attn_layout *L = &e->layer_layout[l];
        if (dfa_layout_valid(L) || L->n_vis != e->layout.n_vis)
            DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG,
                         "search engine: layer %d: layout invalid or another visual grid (n_vis=%d n_text=%d "
                         "block=%d; main n_vis=%d)",
                         l, L->n_vis, L->n_text, L->block, e->layout.n_vis);
    }
    if (e->cfg && e->cond_half != 0 && e->cond_half != 1)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "search engine: cond_half must be 0 or 1, got %d", e->cond_half);
    if (need_out_numel && e->out_numel == 0)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "search engine: V1 needs the model output size (out_numel = 0)");
    return DFA_OK;
}

static dfa_status alloc_b(search_state *st, size_t elems, const char *what, void **out) {
    *out = NULL;
    dfa_status s = st->be.alloc(st->be.user, elems * st->be.elem_size, what, out);
    if (s) dfa_error_wrap(&st->ctx->err, "search: %s (%zu elements)", what, elems);
    return s;
}

dfa_status search_state_init(search_state *st, dfa_ctx *ctx, const dfa_search_engine *eng, const dfa_search_opts *o,
                             dfa_search_plan *plan, const int *wins, int n_wins, const int *rs, int n_rs,
                             int need_out_numel) {
    memset(st, 0, sizeof *st);
    st->ctx = ctx, st->eng = eng, st->o = o, st->plan = plan;
    DFA_TRY(check_engine(ctx, eng, need_out_numel));
    if (o->band != DFA_BAND_ARROW && o->band != DFA_BAND_PLAIN)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "search: unknown band kind %d (arrow 0, plain 1)", o->band);
    if (!(o->delta >= 0) || !isfinite(o->delta))
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "search: delta must be finite and >= 0, got %g", o->delta);
    if (o->cost) st->cost = *o->cost;
    else dfa_cost_table_default(&st->cost);
    if (st->cost.n < 1) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "search: the cost table has no entries");
    if (o->backend) st->be = *o->backend;
    else dfa_search_backend_cpu(ctx, &st->be);
    const dfa_search_backend *b = &st->be;
    if (!b->alloc || !b->release || !b->attn || !b->head_op || !b->copy || !b->rse || !b->mrae || b->elem_size < 1)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "search: the backend lacks a function or an element size");
    st->R = eng->n_rows, st->H = eng->n_heads, st->D = eng->head_dim;
    st->L = eng->n_layers;
    search_set_layout(st, &eng->layout);
    st->max_layer_elems = st->layer_elems;
    for (int l = 0; l < st->L; l++) {
        size_t e = (size_t)dfa_layout_tokens(dfa_search_engine_layer_layout(eng, l)) * st->H * st->D * st->R;
        if (e > st->max_layer_elems) st->max_layer_elems = e;
    }
    for (int i = 0; i < n_wins; i++)
        if (search_win_index(st, wins[i]) < 0) {
            if (st->n_win == SEARCH_MAX_WIN) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "search: over %d windows", SEARCH_MAX_WIN);
            st->win[st->n_win++] = wins[i];
        }
    for (int i = 0; i < n_rs; i++)
        if (search_rs_index(st, rs[i]) < 0) st->rs_win[st->n_rs++] = rs[i];
    DFA_TRY(dfa_search_plan_alloc(ctx, plan, eng->n_steps, st->L, st->H));
    size_t nv = (size_t)st->L * (st->n_rs ? st->n_rs : 1) * st->R * st->H;
    size_t nres = (size_t)st->L * (st->n_rs ? st->n_rs : 1);
    DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, sizeof(void *) * st->L, "search caches", (void **)&st->cache));
    memset(st->cache, 0, sizeof(void *) * st->L);
    DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, sizeof(void *) * nres, "search residuals", (void **)&st->resid));
    memset(st->resid, 0, sizeof(void *) * nres);
    DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, (size_t)st->L, "search cache flags", (void **)&st->cache_valid));
    memset(st->cache_valid, 0, (size_t)st->L);
    DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, nv, "search residual flags", (void **)&st->resid_valid));
    memset(st->resid_valid, 0, nv);
    DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, sizeof(int32_t) * st->L * st->H, "search residual windows",
                              (void **)&st->rs_lock));
    for (int i = 0; i < st->L * st->H; i++) st->rs_lock[i] = -1;
    DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, sizeof(double) * st->R * st->H, "search metrics", (void **)&st->rse));
    for (int l = 0; l < st->L; l++) {
        DFA_TRY(alloc_b(st, st->max_layer_elems, "search layer output cache", &st->cache[l]));
        for (int i = 0; i < st->n_rs; i++)
            DFA_TRY(alloc_b(st, st->max_layer_elems, "search residual cache", &st->resid[l * st->n_rs + i]));
    }
    DFA_TRY(alloc_b(st, st->max_layer_elems, "search full output", &st->full));
    for (int i = 0; i < st->n_win; i++) DFA_TRY(alloc_b(st, st->max_layer_elems, "search arrow output", &st->arrow[i]));
    DFA_TRY(alloc_b(st, st->max_layer_elems, "search candidate scratch", &st->tmp));
    double full = 0; /* layers with their own layout cost their own FULL */
    for (int l = 0; l < st->L; l++) {
        search_set_layout(st, dfa_search_engine_layer_layout(eng, l));
        full += search_head_cost(st, DFA_ATTN_FULL, -1) * st->R * st->H;
    }
    search_set_layout(st, &eng->layout);
    st->plan->full_cost_ns = full / st->L;
    return DFA_OK;
}

void search_state_free(search_state *st) {
    if (!st->ctx) return;
    if (st->be.release) {
        if (st->cache)
            for (int l = 0; l < st->L; l++) st->be.release(st->be.user, st->cache[l]);
        if (st->resid)
            for (int i = 0; i < st->L * st->n_rs; i++) st->be.release(st->be.user, st->resid[i]);
        st->be.release(st->be.user, st->full);
        for (int i = 0; i < st->n_win; i++) st->be.release(st->be.user, st->arrow[i]);
        st->be.release(st->be.user, st->tmp);
    }
    dfa_ctx_mem_release(st->ctx, st->cache);
    dfa_ctx_mem_release(st->ctx, st->cache_valid);
    dfa_ctx_mem_release(st->ctx, st->resid);
    dfa_ctx_mem_release(st->ctx, st->resid_valid);
    dfa_ctx_mem_release(st->ctx, st->rs_lock);
    dfa_ctx_mem_release(st->ctx, st->rse);
    st->ctx = NULL;
}

dfa_status search_hook_enter(search_state *st, int layer) {
    if (layer != st->next_layer)
        DFA_CTX_FAIL(st->ctx, DFA_ERR_INTERNAL,
                     "search engine contract: step %d called the attention hook for layer %d, expected layer %d (in "
                     "forward order, once each)",
                     st->step, layer, st->next_layer);
    st->next_layer++;
    search_use_layer(st, layer);
    return DFA_OK;
}

void search_use_layer(search_state *st, int layer) {
    search_set_layout(st, dfa_search_engine_layer_layout(st->eng, layer));
}

dfa_status search_step_check(search_state *st, int step) {
    if (st->next_layer != st->L)
        DFA_CTX_FAIL(st->ctx, DFA_ERR_INTERNAL,
                     "search engine contract: step %d called the attention hook for %d of %d layers", step,
                     st->next_layer, st->L);
    st->next_layer = 0;
    return DFA_OK;
}

static dfa_status be_check(search_state *st, dfa_status s, const char *what) {
    if (s != DFA_OK) dfa_error_wrap(&st->ctx->err, "search step %d: %s", st->step, what);
    return s;
}

dfa_status search_compute(search_state *st, const void *q, const void *k, const void *v, int window, int r0, int r1,
                          void *dst) {
    if (r1 <= r0) return DFA_OK;
    size_t off = (size_t)r0 * st->row_elems;
    dfa_status s = st->be.attn(st->be.user, st->lay, r1 - r0, st->H, st->D, window, search_at(st, q, off),
                               search_at(st, k, off), search_at(st, v, off), search_at(st, dst, off));
    if (s != DFA_OK) dfa_error_wrap(&st->ctx->err, "search step %d: rows %d..%d, window %d", st->step, r0, r1 - 1, window);
    return s;
}

dfa_status search_head_op(search_state *st, int h, int r0, int r1, void *dst, const void *a, const void *b, int sign) {
    if (r1 <= r0) return DFA_OK;
    return be_check(st, st->be.head_op(st->be.user, &st->shape, h, r0, r1, dst, a, b, sign), "head op");
}

dfa_status search_copy_rows(search_state *st, void *dst, const void *src, int r0, int r1) {
    if (r1 <= r0) return DFA_OK;
    size_t off = (size_t)r0 * st->row_elems;
    return be_check(st,
                    st->be.copy(st->be.user, search_at(st, dst, off), search_at(st, src, off),
                                (size_t)(r1 - r0) * st->row_elems),
                    "copy");
}

uint8_t *search_resid_valid(search_state *st, int layer, int i, int r, int h) {
    return st->resid_valid + ((size_t)(layer * st->n_rs + i) * st->R + r) * st->H + h;
}

dfa_status search_refresh_resid(search_state *st, int layer, int i, int h, int r0, int r1) {
    int wi = search_win_index(st, st->rs_win[i]);
    DFA_TRY(search_head_op(st, h, r0, r1, st->resid[layer * st->n_rs + i], st->full, st->arrow[wi], -1));
    for (int r = r0; r < r1; r++) *search_resid_valid(st, layer, i, r, h) = 1;
    return DFA_OK;
}

dfa_status search_rse(search_state *st, const void *ref, const void *approx) {
    return be_check(st, st->be.rse(st->be.user, &st->shape, ref, approx, st->rse), "metric");
}

double search_head_cost(const search_state *st, dfa_attn_method m, int window) {
    return dfa_cost_head_ns(&st->cost, st->lay, st->D, m, window);
}

dfa_status dfa_search_plan_export(const dfa_search_plan *sp, const dfa_search_engine *eng, const dfa_search_opts *o,
                                  int v1, const char *family, const char *config_id, dfa_plan *out, dfa_error *err) {
    if (sp->n_steps != eng->n_steps || sp->n_layers != eng->n_layers || sp->n_heads != eng->n_heads)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "search plan export: plan %d x %d x %d vs engine %d x %d x %d", sp->n_steps,
                 sp->n_layers, sp->n_heads, eng->n_steps, eng->n_layers, eng->n_heads);
    DFA_TRY(dfa_plan_init(out, &eng->layout, sp->n_steps, sp->n_layers, sp->n_heads, err));
    for (int l = 0; eng->layer_layout && l < eng->n_layers; l++)
        if (!dfa_plan_layout_same(&eng->layer_layout[l], &eng->layout)) {
            dfa_status ls = dfa_plan_set_layer_layout(out, l, &eng->layer_layout[l], err);
            if (ls) {
                dfa_plan_free(out);
                return ls;
            }
        }
    dfa_plan_set_band(out, o->band);
    if (family) snprintf(out->family, sizeof out->family, "%s", family);
    if (config_id) snprintf(out->config_id, sizeof out->config_id, "%s", config_id);
    out->grid_h = eng->grid_h, out->grid_w = eng->grid_w;
    out->cfg = eng->cfg, out->cond_half = eng->cfg ? eng->cond_half : 0;
    out->delta = o->delta, out->c = v1 ? 0 : o->c;
    snprintf(out->search, sizeof out->search, "%s", v1 ? "v1" : "v2");
    unsigned set = 0;
    if (v1) {
        set = DFA_PLAN_SET_CACHE | DFA_PLAN_SET_ARROW_RS | (eng->cfg ? DFA_PLAN_SET_ASC : 0);
    } else {
        for (int i = 0; i < o->n_cands; i++)
            if (o->cands[i].method != DFA_ATTN_FULL) set |= 1u << o->cands[i].method;
    }
    out->method_set = set;
    size_t sl = (size_t)sp->n_steps * sp->n_layers, n = sl * sp->n_heads;
    for (size_t i = 0; i < sl; i++) out->asc[i] = sp->asc[i];
    for (size_t i = 0; i < n; i++) {
        out->method[i] = sp->method[i];
        int m = sp->method[i];
        out->window[i] = m == DFA_ATTN_ARROW || m == DFA_ATTN_ARROW_RS ? sp->window[i] : 0;
    }
    dfa_status s = dfa_plan_validate(out, "searched plan", err);
    if (s) dfa_plan_free(out);
    return s;
}

size_t dfa_search_host_bytes(const dfa_search_engine *eng, const dfa_search_opts *o, int v1) {
    int wins[64], n_win = 0, n_rs = 0;
    if (v1) {
        n_win = n_rs = 1;
    } else {
        for (int i = 0; i < o->n_cands && i < 64; i++) {
            int m = o->cands[i].method, seen = 0;
            if (m != DFA_ATTN_ARROW && m != DFA_ATTN_ARROW_RS) continue;
            n_rs += m == DFA_ATTN_ARROW_RS;
            for (int j = 0; j < n_win; j++) seen |= wins[j] == o->cands[i].window;
            if (!seen) wins[n_win++] = o->cands[i].window;
        }
    }
    const size_t row = (size_t)eng->n_rows * eng->n_heads * eng->head_dim *
                       (o->backend ? o->backend->elem_size : sizeof(float));
    size_t layer = row * dfa_layout_tokens(&eng->layout); /* every buffer holds the largest layer */
    for (int l = 0; l < eng->n_layers; l++) {
        size_t b = row * dfa_layout_tokens(dfa_search_engine_layer_layout(eng, l));
        if (b > layer) layer = b;
    }
    return layer * ((size_t)eng->n_layers * (1 + n_rs) + 2 + n_win);
}
