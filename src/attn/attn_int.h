/* attn_int.h - internal to src/attn: the CUDA side of dfa_attn_run_heads (attn_gpu.c). */
#ifndef DFA_ATTN_ATTN_INT_H
#define DFA_ATTN_ATTN_INT_H

#include "attn/attn.h"

/* dfa_attn_run_heads with a place for the CUDA work lists of this layer's methods:
 * gpu_lists[0] (main launch) and gpu_lists[1] (refresh launch) are built on first use and kept
 * there (the plan-driven path keeps one pair per (step, layer) and frees them with
 * dfa_attn_gpu_list_free); gpu_lists NULL builds and frees them per call. CPU tensors ignore it. */
dfa_status dfa_attn_run_heads_ex(dfa_ctx *ctx, const dfa_attn_layout *layout, const dfa_tensor *q,
                                 const dfa_tensor *k, const dfa_tensor *v, dfa_tensor *out,
                                 const dfa_attn_head_exec *heads, void *out_cache, void *res_cache, int asc,
                                 int cond_half, void **gpu_lists);

/* Arguments already checked by dfa_attn_run_heads_ex (shapes, methods, cache buffers). */
dfa_status dfa_attn_run_heads_cuda(dfa_ctx *ctx, const dfa_attn_layout *layout, const dfa_tensor *q,
                                   const dfa_tensor *k, const dfa_tensor *v, dfa_tensor *out,
                                   const dfa_attn_head_exec *heads, void *out_cache, void *res_cache, int asc,
                                   int cond_half, void **gpu_lists);
/* Free one work list (NULL is fine; a member of a prepared set is left to its set). */
void dfa_attn_gpu_list_free(void *list);

/* Build and upload the pp->n_lists distinct work lists of a plan (attn_prep.h) in ONE device
 * allocation with one copy: *set receives the owner (dfa_attn_gpu_set_free), lists[i] list i
 * (usable in gpu_lists), *bytes the device bytes. */
struct dfa_attn_prep;
dfa_status dfa_attn_gpu_lists_prepare(dfa_ctx *ctx, const struct dfa_attn_prep *pp, void **set, void **lists,
                                      size_t *bytes);
void dfa_attn_gpu_set_free(void *set);

#endif
