/* search_state.h - internal: the state both plan searches share (caches under the plan chosen
 * so far, scratch outputs, the hook-order check), kept in the backend's memory. Not part of the
 * public API. */
#ifndef DFA_PLAN_SEARCH_STATE_H
#define DFA_PLAN_SEARCH_STATE_H

#include "plan/search.h"

#define SEARCH_MAX_WIN 16

typedef struct search_state {
    dfa_ctx *ctx;
    const dfa_search_engine *eng;
    const dfa_search_opts *o;
    dfa_search_plan *plan;
    dfa_cost_table cost;
    dfa_search_backend be;
    /* the current layer's geometry (search_hook_enter sets it: layers may have their own layout,
     * engine layer_layout); every buffer holds max_layer_elems, the largest layer's */
    const dfa_attn_layout *lay; /* = &lay_own: the engine's layer layout with the band kind o->band */
    dfa_attn_layout lay_own;
    dfa_search_shape shape;
    int R, N, H, D, L;
    size_t row_elems, layer_elems, max_layer_elems;
    int n_win, win[SEARCH_MAX_WIN]; /* distinct windows whose ARROW output a layer needs */
    int n_rs, rs_win[SEARCH_MAX_WIN]; /* windows that keep a residual (ARROW_RS) */
    void **cache;           /* [L] last committed output of each layer */
    uint8_t *cache_valid;   /* [L] */
    void **resid;           /* [L * n_rs] */
    uint8_t *resid_valid;   /* [(l * n_rs + i) * R * H + r * H + h] */
    void *full;             /* scratch: the layer's FULL output */
    void *arrow[SEARCH_MAX_WIN]; /* scratch: ARROW(win[i]) output */
    void *tmp;              /* scratch: one candidate's output */
    double *rse;            /* host [R * H] */
    int32_t *rs_lock;       /* [L * H] V2: window of the ARROW_RS steps since the last refresh, -1 none */
    int step, next_layer;   /* the hook-order check */
} search_state;

dfa_status search_state_init(search_state *st, dfa_ctx *ctx, const dfa_search_engine *eng, const dfa_search_opts *o,
                             dfa_search_plan *plan, const int *wins, int n_wins, const int *rs, int n_rs,
                             int need_out_numel);
void search_state_free(search_state *st);

/* Enter the hook for `layer`: checks the engine calls the layers in order, once each, and sets
 * the layer's geometry (lay, N, row_elems, layer_elems, shape). */
dfa_status search_hook_enter(search_state *st, int layer);
/* Set the geometry (lay, N, row_elems, layer_elems, shape) to `layer`'s layout, e.g. for its
 * modelled cost outside the hook. */
void search_use_layer(search_state *st, int layer);
/* After run_step: every layer was called. */
dfa_status search_step_check(search_state *st, int step);

/* Element offset into a backend buffer. */
static inline void *search_at(const search_state *st, const void *buf, size_t elems) {
    return (char *)buf + elems * st->be.elem_size;
}
/* Compute window (< 0: FULL) for rows [r0, r1), every head, into rows [r0, r1) of dst. */
dfa_status search_compute(search_state *st, const void *q, const void *k, const void *v, int window, int r0, int r1,
                          void *dst);
/* Head h of rows [r0, r1): dst = a (sign 0), a + b (+1), a - b (-1). */
dfa_status search_head_op(search_state *st, int h, int r0, int r1, void *dst, const void *a, const void *b, int sign);
/* Rows [r0, r1) of dst = the same rows of src (all heads). */
dfa_status search_copy_rows(search_state *st, void *dst, const void *src, int r0, int r1);
/* R(l, i) = full - arrow(rs_win[i]) for head h, rows [r0, r1); marks them valid. */
dfa_status search_refresh_resid(search_state *st, int layer, int i, int h, int r0, int r1);
/* st->rse[r * H + h] = RSE of every (row, head): approx against ref. */
dfa_status search_rse(search_state *st, const void *ref, const void *approx);
int search_win_index(const search_state *st, int window);
int search_rs_index(const search_state *st, int window);
/* Modelled time of one head of one row. */
double search_head_cost(const search_state *st, dfa_attn_method m, int window);
uint8_t *search_resid_valid(search_state *st, int layer, int i, int r, int h);

#endif
