/* attn_cuda_int.h - internals shared by the attention kernels (.cu files only). */
#ifndef DFA_ATTN_CUDA_INT_H
#define DFA_ATTN_CUDA_INT_H

#include <cuda_runtime.h>
#include <stdint.h>

#include "attn/cuda/attn_cuda.h"

/* One work item: one head, up to ATTN_BM query rows inside one mask tile, the key ranges
 * [k0, k1) it visits (ranges[r_off .. r_off + n_r)), or a copy from the cache. */
enum { ACU_ITEM_COPY = 1, ACU_ITEM_RESID = 2 };
#define ACU_BM 128 /* query rows per item (both variants) */

struct acu_item {
    int head, q0, q_len, flags, r_off, n_r;
};

struct acu_params {
    const void *q, *k, *v;
    void *o;
    const void *cache, *resid;
    const acu_item *items;
    const int2 *ranges;
    int *counter; /* variant 2's work counter (persistent CTAs), zeroed before each launch */
    int n_items, batch, n_tokens, n_heads;
    float scale_log2; /* softmax scale * log2(e) */
};

/* Launchers (one per variant), called by dfa_attn_cuda_run after checks. */
cudaError_t acu_launch_mma(const acu_params &p, int head_dim, int dtype, cudaStream_t st);
/* persistent: one CTA per SM taking items from the counter; else one CTA per item */
cudaError_t acu_launch_wgmma(const acu_params &p, int head_dim, int dtype, bool persistent, cudaStream_t st);

#endif
