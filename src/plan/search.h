/* search.h - the compression-plan searches of both papers over a model engine.
 *
 *   dfa_search_v2: DiTFastAttnV2 (sec. 3.4, Alg. 1). Progressive: step by step, layer by layer;
 *     at each layer, on the calibration rows, the full attention output and every candidate's
 *     output per head (ARROW(w), head-wise output CACHE, ARROW_RS(w)); influence = relative
 *     squared error per head averaged over rows (metrics.h); one method per head by the exact
 *     knapsack (mckp.h) minimising modelled latency (cost.h) subject to sum influence <= delta
 *     and per-head influence <= c * delta / H; the chosen outputs are what the engine continues
 *     with, so later layers and steps are calibrated under the plan chosen so far.
 *   dfa_search_v1: DiTFastAttn (sec. 3.5, Alg. 1, app. A.2). Per step, per layer i (1-based),
 *     strategies in ascending modelled cost (AST, WA-RS+ASC, WA-RS, ASC; only AST and WA-RS
 *     without CFG); the first whose model output at this step, with the earlier layers' choices
 *     applied, has mean relative absolute error < (i / n_layers) * delta against the
 *     uncompressed output of this step is kept; none: FULL.
 *
 * ENGINE CONTRACT (what a model engine implements to be searched; see docs/DESIGN.md):
 *   run_step(user, step, commit, hook, hook_user, model_out)
 *     - runs denoising step `step` (0 .. n_steps-1, called in order) for all n_rows calibration
 *       rows from the engine's current latents;
 *     - at every attention layer l = 0 .. n_layers-1, in forward order, exactly once, it calls
 *       hook(hook_user, l, q, k, v, out) with that layer's attention inputs q, k, v
 *       [n_rows, N, n_heads, head_dim], contiguous, in the backend's memory and element type
 *       (f32 host with the default CPU backend), exactly as the attention would consume them
 *       (after norms and RoPE), and uses `out` (same shape, filled completely by the hook) as
 *       the attention output; it runs no attention of its own for that layer;
 *     - writes the step's model output (out_numel elements over all rows, before the scheduler
 *       update, in the backend's memory) to model_out when model_out is not NULL;
 *     - commit = 1: advances the latents to step + 1 (scheduler update). commit = 0: a trial,
 *       the engine state must be left as it was (the same step comes again).
 *     - any non-OK status aborts the search and is returned (message in the context).
 *   Rows: with cfg = 1 the rows are two halves of the same prompts in the same order, the
 *   conditional half given by cond_half (as in attn.h).
 *
 * BACKEND: dfa_search_backend (buffers, attention under one window, head-wise compose, metrics);
 * the default is f32 host memory with the CPU reference of src/attn (dfa_attn_run_heads); a CUDA
 * engine supplies a device backend so that the search runs where the model runs.
 *
 * CACHE SEMANTICS: those of src/plan/plan.h and dfa_attn_run_heads (attn.h), which execute the
 * plan; a test replays every searched plan through them and gets the search's trajectory bit for
 * bit:
 *   - CACHE returns the head's output of the previous step (= of the last step that computed
 *     it); at step 0 it is not available.
 *   - ARROW_RS(w) returns ARROW(w) + R, R = FULL - ARROW(w) taken at the latest step at which
 *     the head ran FULL; until such a step it is not available, and all ARROW_RS steps after
 *     one refresh use one window (the search locks it at the first use).
 *   - V1 ASC: the conditional half's rows are computed and copied to the other half (output,
 *     and at a FULL step the refreshed residual too). */
#ifndef DFA_PLAN_SEARCH_H
#define DFA_PLAN_SEARCH_H

#include <stddef.h>
#include <stdint.h>

#include "attn/attn.h"
#include "attn/mask.h"
#include "core/ctx.h"
#include "plan/cost.h"
#include "plan/mckp.h"
#include "plan/plan.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Attention of every head of n_rows rows under window (< 0: FULL; >= 0: the ARROW/WINDOW band
 * of mask.h). q, k, v, out: [n_rows, N, n_heads, head_dim], contiguous, in the backend's memory
 * and element type (f32 host for the CPU backend). */
typedef dfa_status (*dfa_search_attn_fn)(void *user, const dfa_attn_layout *layout, int n_rows, int n_heads,
                                         int head_dim, int window, const void *q, const void *k, const void *v,
                                         void *out);

/* The CPU reference, dfa_attn_run_heads() on f32 host tensors (user: the dfa_ctx *). */
dfa_status dfa_search_attn_cpu(void *user, const dfa_attn_layout *layout, int n_rows, int n_heads, int head_dim,
                               int window, const void *q, const void *k, const void *v, void *out);
/* An independent float64 reference: plain loops over dfa_mask_keep (user: a dfa_ctx * or NULL). */
dfa_status dfa_search_attn_ref(void *user, const dfa_attn_layout *layout, int n_rows, int n_heads, int head_dim,
                               int window, const void *q, const void *k, const void *v, void *out);

typedef dfa_status (*dfa_search_hook_fn)(void *hook_user, int layer, const void *q, const void *k, const void *v,
                                         void *out);

/* Shape of a layer buffer: [rows, tokens, heads, head_dim], contiguous. */
typedef struct dfa_search_shape {
    int rows, tokens, heads, head_dim;
} dfa_search_shape;

/* One head's source for dfa_search_backend.compose. */
typedef struct dfa_search_head_src {
    const void *a, *b; /* a NULL: head untouched; b NULL: copy a */
    int sign;          /* with b: +1 a + b, -1 a - b */
} dfa_search_head_src;

/* BACKEND: where the search keeps its buffers and how it computes on them. Everything the
 * searches touch (q, k, v, out from the engine, caches, residuals, scratch, V1's model outputs)
 * lives in the backend's memory with elements of elem_size bytes; only per-head metric values
 * come back to the host. dfa_search_backend_cpu() is f32 host memory; a CUDA backend keeps
 * everything on the device (the search then never copies a layer to the host). */
typedef struct dfa_search_backend {
    void *user;
    size_t elem_size;
    /* zero-filled buffer of `bytes`; `what` names it in errors */
    dfa_status (*alloc)(void *user, size_t bytes, const char *what, void **out);
    void (*release)(void *user, void *p); /* NULL p: no-op */
    dfa_search_attn_fn attn;
    /* head `head` of rows [r0, r1) of [rows, tokens, heads, head_dim] buffers:
     * sign 0: dst = a;  +1: dst = a + b;  -1: dst = a - b */
    dfa_status (*head_op)(void *user, const dfa_search_shape *s, int head, int r0, int r1, void *dst, const void *a,
                          const void *b, int sign);
    /* dst = src over n elements (element offsets are applied by the caller: p + i * elem_size) */
    dfa_status (*copy)(void *user, void *dst, const void *src, size_t n);
    /* out[r * heads + h] = V2 RSE (metrics.h) of head h of row r, approx against ref, every row and head */
    dfa_status (*rse)(void *user, const dfa_search_shape *s, const void *ref, const void *approx, double *out);
    /* V1 mean relative absolute error (metrics.h, eps 1e-6) over n elements */
    dfa_status (*mrae)(void *user, const void *ref, const void *approx, size_t n, double *out);
    /* OPTIONAL batched forms (NULL: V2 falls back to one rse per candidate and one head_op per
     * head; the results must be the same as that fallback's, metric values up to the order of
     * the double sums):
     * rse_multi: out[(c * rows + r) * heads + h] = RSE of head h of row r of candidate c against
     *   ref, for c < n; candidate c is a[c] when b[c] is NULL, else a[c] + b[c] rounded to the
     *   element type exactly as head_op's sign +1 would store it. */
    dfa_status (*rse_multi)(void *user, const dfa_search_shape *s, const void *ref, int n, const void *const *a,
                            const void *const *b, double *out);
    /* compose: for every head h with src[h].a != NULL, head h of every row of dst = src[h].a
     *   (+ or - src[h].b by src[h].sign, as head_op); heads with a NULL are left untouched. */
    dfa_status (*compose)(void *user, const dfa_search_shape *s, void *dst, const dfa_search_head_src *src);
    /* attn_multi: FULL into full and ARROW(win[i]) into arrow[i] for i < n_win (distinct windows
     *   >= 0), tensors as attn's; the same outputs as one attn call each up to the element type's
     *   rounding (the CUDA backend: one ring launch, attn_cuda.h). */
    dfa_status (*attn_multi)(void *user, const dfa_attn_layout *layout, int n_rows, int n_heads, int head_dim,
                             int n_win, const int *win, const void *q, const void *k, const void *v, void *full,
                             void *const *arrow);
} dfa_search_backend;

/* The CPU backend: f32 host memory owned by ctx, attention by dfa_search_attn_cpu. */
void dfa_search_backend_cpu(dfa_ctx *ctx, dfa_search_backend *b);

/* The CUDA backend: bf16 buffers (elem_size 2) on the context's device, everything enqueued on
 * its stream; attention by the fused CUDA kernel (work lists kept in `state` per layout, heads
 * and window; FULL and the ARROW windows of a V2 layer by one ring launch, attn_multi, where the
 * GPU runs the wgmma kernel); compose and metrics by the kernels of src/plan/cuda/search_cuda.cu (metrics in
 * double; only H x rows doubles per candidate come back, one transfer per V2 layer). `state`
 * holds the metric scratch and the work lists: keep it alive while the backend is used, then
 * dfa_search_cuda_free. A build without CUDA or a CPU context: DFA_ERR_UNSUPPORTED. */
#define DFA_SEARCH_CUDA_LISTS 32
#define DFA_SEARCH_CUDA_RINGS 4
typedef struct dfa_search_cuda {
    dfa_ctx *ctx;
    double *dev, *host; /* metric scratch, cap doubles each */
    size_t cap;
    /* attention work lists (dfa_attn_cuda_plan_build uploads synchronously): built once per
     * (layout, heads, window) and kept until dfa_search_cuda_free */
    void *list[DFA_SEARCH_CUDA_LISTS];
    dfa_attn_layout list_layout[DFA_SEARCH_CUDA_LISTS];
    int list_heads[DFA_SEARCH_CUDA_LISTS], list_window[DFA_SEARCH_CUDA_LISTS];
    int n_lists, next_evict;
    /* ring plans (attn_multi: FULL + every ARROW window in one launch), per (layout, heads,
     * windows), and their scratch */
    void *ring[DFA_SEARCH_CUDA_RINGS];
    dfa_attn_layout ring_layout[DFA_SEARCH_CUDA_RINGS];
    int ring_heads[DFA_SEARCH_CUDA_RINGS], ring_nwin[DFA_SEARCH_CUDA_RINGS];
    int ring_win[DFA_SEARCH_CUDA_RINGS][8];
    int n_rings, ring_evict;
    void *ring_scratch;
    size_t ring_cap;
} dfa_search_cuda;
dfa_status dfa_search_backend_cuda(dfa_ctx *ctx, dfa_search_cuda *state, dfa_search_backend *b);
void dfa_search_cuda_free(dfa_search_cuda *state);

typedef struct dfa_search_engine {
    void *user;
    int n_steps, n_layers, n_heads, head_dim;
    int n_rows;              /* rows per attention call: calibration prompts x (cfg ? 2 : 1) */
    int cfg;                 /* 1: the rows are a CFG batch, two halves of the same prompts */
    int cond_half;           /* with cfg: which half is conditional (diffusers [uncond, cond]: 1) */
    dfa_attn_layout layout;  /* token layout of every attention layer (the main one) */
    /* [n_layers] per-layer layouts (same n_vis as `layout`), or NULL: every layer has `layout`
     * (SD3.5: the dual blocks' image-only attn2 layers have n_text 0) */
    const dfa_attn_layout *layer_layout;
    int grid_h, grid_w;      /* visual token grid (grid_h * grid_w = layout.n_vis), for the plan */
    size_t out_numel;        /* model output elements per step over all rows (V1's metric) */
    dfa_status (*run_step)(void *user, int step, int commit, dfa_search_hook_fn hook, void *hook_user,
                           void *model_out);
} dfa_search_engine;

static inline const dfa_attn_layout *dfa_search_engine_layer_layout(const dfa_search_engine *e, int layer) {
    return e->layer_layout ? &e->layer_layout[layer] : &e->layout;
}

typedef struct dfa_search_cand {
    dfa_attn_method method; /* FULL, ARROW, ARROW_RS, CACHE */
    int window;             /* tiles, for ARROW and ARROW_RS */
} dfa_search_cand;

typedef struct dfa_search_opts {
    double delta;                 /* V2: layer RSE budget; V1: the MRAE threshold scale */
    double c;                     /* V2 per-head coefficient (paper default 1.5); <= 0: no cap */
    const dfa_search_cand *cands; /* V2 candidates (FULL is always candidate 0, added if absent) */
    int n_cands;
    int v1_window;                /* V1 WA-RS window in tiles (< 0: dfa_search_v1_default_window) */
    int band;                     /* DFA_BAND_ARROW (0) or DFA_BAND_PLAIN: the band kind of every windowed
                                   * candidate (search_state applies it to the engine's layouts; the plan
                                   * records it) */
    const dfa_cost_table *cost;   /* NULL: dfa_cost_table_default */
    const dfa_search_backend *backend; /* NULL: dfa_search_backend_cpu over the search's context */
    dfa_mckp_opts mckp;
    /* optional: called after each layer decision (progress bars, tests). V2 passes the knapsack
     * instance and its choice; V1 passes problem = NULL and choice = &strategy (dfa_search_v1_strategy). */
    void (*on_layer)(void *user, int step, int layer, const dfa_mckp_problem *p, const int *choice);
    void *on_layer_user;
} dfa_search_opts;

typedef enum dfa_search_v1_strategy {
    DFA_V1_NONE = 0, /* FULL */
    DFA_V1_AST,      /* every head CACHE */
    DFA_V1_WARS_ASC, /* WA-RS on the conditional rows, the unconditional rows copy them */
    DFA_V1_WARS,     /* every head ARROW_RS(v1_window) */
    DFA_V1_ASC,      /* FULL on the conditional rows, the unconditional rows copy them */
    DFA_V1_STRATEGY_COUNT
} dfa_search_v1_strategy;

/* The search result: per step x layer x head method and window, per step x layer ASC flag,
 * influence (V2: sum of the chosen RSEs; V1: the chosen strategy's MRAE, 0 for FULL) and the
 * modelled time of the layer over all rows. Arrays owned by the context. */
typedef struct dfa_search_plan {
    int n_steps, n_layers, n_heads;
    uint8_t *method;    /* [s][l][h] dfa_attn_method */
    int32_t *window;    /* [s][l][h] tiles; -1 when the method has none */
    uint8_t *asc;       /* [s][l] */
    uint8_t *v1;        /* [s][l] dfa_search_v1_strategy (V1 only, else 0) */
    double *influence;  /* [s][l] */
    double *cost_ns;    /* [s][l] */
    double full_cost_ns; /* one layer, every head FULL, all rows (mean over layers with their own layouts) */
} dfa_search_plan;

dfa_status dfa_search_plan_alloc(dfa_ctx *ctx, dfa_search_plan *p, int n_steps, int n_layers, int n_heads);
void dfa_search_plan_free(dfa_ctx *ctx, dfa_search_plan *p);
/* Modelled attention time of the plan over that of the all-FULL plan (1 = no saving). */
double dfa_search_plan_cost_fraction(const dfa_search_plan *p);

/* V1's WA-RS window: 1/8 of the visual tokens as the band's full width, i.e. a half-width of
 * ceil(n_vis / 16 / block) tiles, at most the full band (dfa_mask_full_window); under the
 * plain band (l->band) 1/8 of all N tokens, in tiles of the whole sequence. */
int dfa_search_v1_default_window(const dfa_attn_layout *l);

/* The searched plan as a dfa_plan (plan.h) for the engine's model: layout, grid, steps, CFG,
 * method set (from the candidates / V1's methods), delta, c, search name; family and config_id
 * are copied from the arguments (may be NULL). The result is validated. */
dfa_status dfa_search_plan_export(const dfa_search_plan *sp, const dfa_search_engine *eng, const dfa_search_opts *o,
                                  int v1, const char *family, const char *config_id, dfa_plan *out, dfa_error *err);

/* Host bytes the search's caches and scratch will hold (f32): for refusing a too-large search
 * before it starts. v1: V1's single WA-RS window; else the V2 candidates of o. */
size_t dfa_search_host_bytes(const dfa_search_engine *eng, const dfa_search_opts *o, int v1);

dfa_status dfa_search_v2(dfa_ctx *ctx, const dfa_search_engine *eng, const dfa_search_opts *o, dfa_search_plan *plan);
dfa_status dfa_search_v1(dfa_ctx *ctx, const dfa_search_engine *eng, const dfa_search_opts *o, dfa_search_plan *plan);

#ifdef __cplusplus
}
#endif
#endif
