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
 * forward order. */
dfa_status dfa_attn_layer(dfa_ctx *ctx, int layer, const dfa_attn_layout *layout, const dfa_tensor *q,
                          const dfa_tensor *k, const dfa_tensor *v, dfa_tensor *out);

#ifdef __cplusplus
}
#endif
#endif
