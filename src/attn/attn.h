/* attn.h - the one attention entry point. Every self-attention call of every model goes
 * through dfa_attn_layer(); the context's attention state (plan, current step, caches)
 * decides per head which method runs: FULL, ARROW(window) (V1's WINDOW is the same mask),
 * ARROW_RS (residual sharing), CACHE (reuse an earlier step's output), and per layer
 * ASC (share across the CFG batch). The backend (CPU reference or CUDA kernel) follows the
 * tensors' device; plan-driven code does not care which runs.
 *
 * Tensors q, k, v, out: [B, N, H, D], N = layout tokens (text and visual in layout
 * order), f32 on the CPU; bf16/f16 on CUDA. */
#ifndef DFA_ATTN_ATTN_H
#define DFA_ATTN_ATTN_H

#include <stdint.h>

#include "attn/mask.h"
#include "core/tensor.h"
#include "dfa.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum dfa_attn_method {
    DFA_ATTN_FULL = 0,
    DFA_ATTN_ARROW = 1,    /* band of `window` tiles over visual tokens + full text rows/cols */
    DFA_ATTN_ARROW_RS = 2, /* ARROW + the residual (FULL - ARROW) cached at the last refresh */
    DFA_ATTN_CACHE = 3,    /* no work: the output cached at the last step that computed it */
    DFA_ATTN_METHOD_COUNT
} dfa_attn_method;

/* Run one self-attention layer under the context's plan at its current step
 * (no plan loaded: every head FULL). `layer` indexes the model's attention layers in
 * forward order. With a plan: call dfa_attn_begin_step() (attn_state.h) before each
 * denoising step; the layout, head count and layer count must be the plan's. */
dfa_status dfa_attn_layer(dfa_ctx *ctx, int layer, const dfa_attn_layout *layout, const dfa_tensor *q,
                          const dfa_tensor *k, const dfa_tensor *v, dfa_tensor *out);

/* dfa_attn_layer on bf16 CUDA buffers shaped [B, N, H, D] (the engines' layout). With
 * `seconds` non-NULL, CUDA events are recorded on the stream before and after the call (no host
 * synchronisation; core/cuda_rt.h spans): the GPU time between them (the attention kernels, and
 * any launch gap the host leaves right there) is added to *seconds by the next
 * dfa_cuda_spans_collect, which the caller must make before *seconds goes away. */
dfa_status dfa_attn_layer_bf16_cuda(dfa_ctx *ctx, int layer, const dfa_attn_layout *layout, int B, int N, int H,
                                    int D, void *q, void *k, void *v, void *out, double *seconds);

/* ---- the lower level: one layer with an explicit method per head ----
 *
 * Semantics per head h (O_h = out[:, :, h, :]; the caches are layer-wide buffers shaped like
 * out, [B, N, H, D], same dtype and device, each head using its own slice):
 *   FULL      O = softmax(Q K^T / sqrt(D)) V over every key.
 *             store_res: also W = ARROW(res_window) and res_cache_h = O - W (V1 WA-RS refresh).
 *   ARROW     O = the same restricted to dfa_mask_keep(layout, window, q, k).
 *   ARROW_RS  O = ARROW(window) + res_cache_h (the residual of the last refresh).
 *   CACHE     O = out_cache_h (no attention work).
 *   store_out (any method but CACHE): out_cache_h = O after this call.
 * asc (CFG sharing, whole layer): B = 2n; the half `cond_half` is computed as above and the
 * whole layer output of that half is copied to the other half (diffusers orders CFG batches
 * [uncond, cond]: cond_half = 1), CACHE heads included; residuals refreshed under ASC are
 * copied the same way, so a later step without ASC finds both halves. Slices of heads that
 * store nothing are left untouched. */
typedef struct dfa_attn_head_exec {
    int method;     /* dfa_attn_method */
    int window;     /* ARROW / ARROW_RS: band half-width in tiles (< 0: no band = FULL) */
    int store_out;  /* keep this step's output in out_cache */
    int store_res;  /* FULL only: compute ARROW(res_window) too and keep R = O_full - O_arrow */
    int res_window; /* window of the residual (tiles) */
} dfa_attn_head_exec;

/* heads: H entries (H = q->shape[2]). out_cache / res_cache: [B, N, H, D] buffers of out's
 * dtype on out's device, or NULL when no head reads or writes them. CPU: f32 tensors. CUDA
 * tensors (q->dev == DFA_DEV_CUDA; bf16 or f16, D a multiple of 8 up to 256) take the same arguments and run
 * on the fused kernel of src/attn/cuda/ (dispatch: attn_gpu.c). */
dfa_status dfa_attn_run_heads(dfa_ctx *ctx, const dfa_attn_layout *layout, const dfa_tensor *q,
                              const dfa_tensor *k, const dfa_tensor *v, dfa_tensor *out,
                              const dfa_attn_head_exec *heads, void *out_cache, void *res_cache, int asc,
                              int cond_half);

/* Short name ("full", "arrow", "arrow_rs", "cache"); "?" when out of range. */
const char *dfa_attn_method_name(int method);

/* Exact score entries one head computes for one batch element under a method
 * (ARROW_RS refresh = FULL with store_res: FULL + ARROW(res_window); CACHE: 0).
 * Attention FLOPs of that head are 4 * entries * D. */
int64_t dfa_attn_head_entries(const dfa_attn_layout *layout, int method, int window, int store_res,
                              int res_window);

#ifdef __cplusplus
}
#endif
#endif
