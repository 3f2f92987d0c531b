/* search_state.h - internal: the state both plan searches share (caches under the plan chosen
 * so far, scratch outputs, the hook-order check). Not part of the public API. */
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
    dfa_search_attn_fn attn;
    void *attn_user;
    int R, N, H, D, L;
    size_t row_elems, layer_elems;
    int n_win, win[SEARCH_MAX_WIN]; /* distinct windows whose ARROW output a layer needs */
    int n_rs, rs_win[SEARCH_MAX_WIN]; /* windows that keep a residual (ARROW_RS) */
    float **cache;          /* [L] last committed output of each layer */
    uint8_t *cache_valid;   /* [L] */
    float **resid;          /* [L * n_rs] */
    uint8_t *resid_valid;   /* [(l * n_rs + i) * R * H + r * H + h] */
    float *full;            /* scratch: the layer's FULL output */
    float *arrow[SEARCH_MAX_WIN]; /* scratch: ARROW(win[i]) output */
    float *tmp;             /* scratch: one candidate's output [R, N, H, D] */
    int32_t *rs_lock;       /* [L * H] V2: window of the ARROW_RS steps since the last refresh, -1 none */
    int step, next_layer;   /* the hook-order check */
} search_state;

dfa_status search_state_init(search_state *st, dfa_ctx *ctx, const dfa_search_engine *eng, const dfa_search_opts *o,
                             dfa_search_plan *plan, const int *wins, int n_wins, const int *rs, int n_rs,
                             int need_out_numel);
void search_state_free(search_state *st);

/* Enter the hook for `layer`: checks the engine calls the layers in order, once each. */
dfa_status search_hook_enter(search_state *st, int layer);
/* After run_step: every layer was called. */
dfa_status search_step_check(search_state *st, int step);

/* Compute window (< 0: FULL) for rows [r0, r1), every head, into rows [r0, r1) of dst [R, N, H, D]. */
dfa_status search_compute(search_state *st, const float *q, const float *k, const float *v, int window, int r0,
                          int r1, float *dst);
int search_win_index(const search_state *st, int window);
int search_rs_index(const search_state *st, int window);
/* Pointers to head h of row r inside a [R, N, H, D] buffer; row stride is H * D. */
static inline float *search_head_ptr(const search_state *st, float *buf, int r, int h) {
    return buf + (size_t)r * st->row_elems + (size_t)h * st->D;
}
/* Copy head slice (r, h) from src to dst ([R, N, H, D] buffers). */
void search_copy_head(const search_state *st, float *dst, const float *src, int r, int h);
/* R(l, i)[r, h] = full - arrow(rs_win[i]) for head h of row r; marks it valid. */
void search_refresh_resid(search_state *st, int layer, int i, int r, int h);
/* RSE of head (r, h): ref vs approx buffers. */
double search_head_rse(const search_state *st, const float *ref, const float *approx, int r, int h);
/* Modelled time of one head of one row. */
double search_head_cost(const search_state *st, dfa_attn_method m, int window);
uint8_t *search_resid_valid(search_state *st, int layer, int i, int r, int h);

#endif
