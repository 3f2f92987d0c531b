/* attn_int.h - internal to src/attn: the CUDA side of dfa_attn_run_heads (attn_gpu.c). */
#ifndef DFA_ATTN_ATTN_INT_H
#define DFA_ATTN_ATTN_INT_H

#include "attn/attn.h"

/* Arguments already checked by dfa_attn_run_heads (shapes, methods, cache buffers). */
dfa_status dfa_attn_run_heads_cuda(dfa_ctx *ctx, const dfa_attn_layout *layout, const dfa_tensor *q,
                                   const dfa_tensor *k, const dfa_tensor *v, dfa_tensor *out,
                                   const dfa_attn_head_exec *heads, void *out_cache, void *res_cache, int asc,
                                   int cond_half);

#endif
