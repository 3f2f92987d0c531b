/* attn_state.h - the context's attention state: the loaded plan (a copy), the current
 * denoising step, and the output / residual caches: per layer one output buffer and/or one
 * residual buffer, [B, N, H, D] in the dtype of `out` on its device (the layout the CUDA kernel
 * reads), allocated on the first step that stores them and only for layers where the plan's
 * look-ahead store flags say a later step reuses something. Each (layer, head) slice records
 * the step it holds.
 *
 * Use (models and the engine):
 *     dfa_attn_set_plan(ctx, &plan);          // once per run (copies the plan)
 *     dfa_attn_prepare(ctx, DFA_DEV_CUDA, DFA_BF16, B, D); // CUDA: work lists + caches up front
 *     for (s = 0; s < steps; s++) {
 *         dfa_attn_begin_step(ctx, s);        // steps in order from 0; 0 starts a new run
 *         ... dfa_attn_layer(ctx, layer, &layout, q, k, v, out) for every attention layer ...
 *     }
 *     dfa_attn_end_run(ctx);                  // frees the caches (the plan stays set)
 * Without a plan, dfa_attn_layer() runs every head FULL. dfa_ctx_free() frees everything. */
#ifndef DFA_ATTN_ATTN_STATE_H
#define DFA_ATTN_ATTN_STATE_H

#include <stddef.h>

#include "dfa.h"
#include "plan/plan.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Validate and copy `plan` into the context (replacing any plan and its caches). On failure
 * the plan in use before stays. */
dfa_status dfa_attn_set_plan(dfa_ctx *ctx, const dfa_plan *plan);
/* Load a plan file (dfa_plan_load) and set it; errors name the file and entry. */
dfa_status dfa_attn_load_plan(dfa_ctx *ctx, const char *path);
/* Drop the plan and the caches: back to every head FULL. */
void dfa_attn_clear_plan(dfa_ctx *ctx);
/* The plan in use (NULL if none). */
const dfa_plan *dfa_attn_plan(const dfa_ctx *ctx);
/* Start denoising step `step` (0 <= step < plan steps). Step 0 starts a new run (cached
 * outputs of a previous run are invalidated); otherwise steps must follow one another. */
dfa_status dfa_attn_begin_step(dfa_ctx *ctx, int step);
/* The current step (-1 before the first begin_step). */
int dfa_attn_step(const dfa_ctx *ctx);
/* Free the caches (end of a run); the plan stays. */
void dfa_attn_end_run(dfa_ctx *ctx);
/* Bytes the caches hold now, and the most they held during this context's life. */
size_t dfa_attn_cache_bytes(const dfa_ctx *ctx);
size_t dfa_attn_cache_peak_bytes(const dfa_ctx *ctx);
/* Bytes a run of `plan` will hold in caches at most for batch B, head dim D, element size. */
size_t dfa_plan_cache_bytes(const dfa_plan *plan, int batch, int head_dim, size_t elem_size);

/* Prepare a run of the plan on CUDA tensors (dev DFA_DEV_CUDA; batch, head dim, dtype as the
 * attention layers will see them): (1) once per plan, every distinct work list the plan needs
 * (attn_prep.h: many (step, layer) entries share one) is built on the host and uploaded in ONE
 * device allocation with one copy and one synchronisation; (2) once per run, the caches the plan
 * stores (dfa_plan_cache_bytes) are allocated as one block. Afterwards a planned loop allocates
 * nothing and builds no work list: every launch looks its list up. The CUDA engines call it before
 * their sampling loop; dfa_attn_layer calls it itself at the first CUDA attention of a run that was
 * not prepared (CPU tensors: nothing changes, caches stay allocated at first use). A second call
 * in the same run is a no-op; a different geometry than the run's caches is refused. */
dfa_status dfa_attn_prepare(dfa_ctx *ctx, dfa_device dev, dfa_dtype dtype, int batch, int head_dim);

typedef struct dfa_attn_prep_stats {
    int n_lists;         /* distinct work lists prepared for the plan (0 before its first prepare) */
    int n_entries;       /* (step, layer, launch) entries they serve */
    size_t list_bytes;   /* device bytes of their one allocation */
    size_t cache_bytes;  /* the run's prepared cache block (0 when none or allocated at first use) */
    int64_t prepares;    /* prepare calls that did work (lists and/or caches) */
    int64_t lazy_builds; /* work lists built at launch time instead (each: cudaMalloc + blocking copy) */
    int64_t lazy_caches; /* cache buffers allocated at first use instead (CUDA: one cudaMalloc each) */
} dfa_attn_prep_stats;
/* Counters since the context was made (list fields: the current plan). */
void dfa_attn_get_prep_stats(const dfa_ctx *ctx, dfa_attn_prep_stats *out);

/* ---- attention override (plan searches) ----
 * While an override is set, dfa_attn_layer() calls fn(user, layer, layout, q, k, v, out) instead
 * of running any attention itself (plan or not): fn must fill `out` completely. The tensors are
 * the layer's own [B, N, H, D] buffers, contiguous, after norms and RoPE, exactly as the attention
 * would consume them. Used by the search engines (src/plan/engine_mmdit.h) to hand each layer to
 * the search hook. The override takes precedence over a plan (no begin_step is needed); a plan
 * set meanwhile stays and applies again once the override is cleared. */
typedef dfa_status (*dfa_attn_override_fn)(void *user, int layer, const dfa_attn_layout *layout, const dfa_tensor *q,
                                           const dfa_tensor *k, const dfa_tensor *v, dfa_tensor *out);
/* fn NULL clears the override. Fails only when the state cannot be allocated. */
dfa_status dfa_attn_set_override(dfa_ctx *ctx, dfa_attn_override_fn fn, void *user);
/* The override in use (NULL if none); *user receives its user pointer when user is not NULL. */
dfa_attn_override_fn dfa_attn_get_override(const dfa_ctx *ctx, void **user);

/* Called by dfa_ctx_free(). */
void dfa_attn_state_free(dfa_ctx *ctx);

#ifdef __cplusplus
}
#endif
#endif
