/* attn_cuda_int.h - internals shared by the attention kernels (.cu files only). */
#ifndef DFA_ATTN_CUDA_INT_H
#define DFA_ATTN_CUDA_INT_H

#include <cuda_runtime.h>
#include <stdint.h>

#include "attn/cuda/attn_cuda.h"

/* Work items (attn_worklist.h): one head, up to ACU_BM query rows inside one mask tile, the
 * key ranges [k0, k1) it visits (read as int2 on the device), or a copy from the cache. */
#include "attn/cuda/attn_worklist.h"
enum { ACU_ITEM_COPY = DFA_ACU_ITEM_COPY, ACU_ITEM_RESID = DFA_ACU_ITEM_RESID };
#define ACU_BM DFA_ACU_BM
typedef dfa_acu_item acu_item;

struct acu_params {
    const void *q, *k, *v;
    void *o;
    const void *cache, *resid; /* [B, N, H, D] like o: CACHE source, ARROW_RS residual */
    const acu_item *items;
    const int2 *ranges;
    int *counter; /* variant 2's work counter (persistent CTAs), zeroed before each launch */
    int n_items, batch, n_tokens, n_heads;
    int head_dim; /* read by variant 1's padded kernels (D other than 64, 128) */
    float scale_log2; /* softmax scale * log2(e) */
};

dfa_status acu_check_common(int dtype, int batch, int head_dim, dfa_error *err);

/* Launchers (one per variant), called by dfa_attn_cuda_run after checks. Variant 1 takes any
 * head dim that acu_check_common accepts; variants 2 and 3 only 64 and 128. */
cudaError_t acu_launch_mma(const acu_params &p, int head_dim, int dtype, cudaStream_t st);
/* persistent: one CTA per SM taking items from the counter; else one CTA per item */
cudaError_t acu_launch_wgmma(const acu_params &p, int head_dim, int dtype, bool persistent, cudaStream_t st);
/* variants 4/5: head_dim 64, items from the 192-row list; pingpong: variant 4's turn ring */
cudaError_t acu_launch_wgmma3(const acu_params &p, int dtype, bool pingpong, cudaStream_t st);

#endif
