/* attn_state.h - the context's attention state: the loaded plan (a copy), the current
 * denoising step, and the output / residual caches: per layer one output buffer and/or one
 * residual buffer, [B, N, H, D] in the dtype of `out` on its device (the layout the CUDA kernel
 * reads), allocated on the first step that stores them and only for layers where the plan's
 * look-ahead store flags say a later step reuses something. Each (layer, head) slice records
 * the step it holds.
 *
 * Use (models and the engine):
 *     dfa_attn_set_plan(ctx, &plan);          // once per run (copies the plan)
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

/* Called by dfa_ctx_free(). */
void dfa_attn_state_free(dfa_ctx *ctx);

#ifdef __cplusplus
}
#endif
#endif
