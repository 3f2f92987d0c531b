/* attn_cuda_int.h - internals shared by the attention kernels (.cu files only). */
#ifndef DFA_ATTN_CUDA_INT_H
#define DFA_ATTN_CUDA_INT_H

#include <cuda_runtime.h>
#include <stdint.h>

#include "attn/cuda/attn_cuda.h"

/* Work items (attn_worklist.h): one head, up to ACU_BM query rows inside one mask tile, the
 * key ranges [k0, k1) it visits (read as int2 on the device), or a copy from the cache. */
#include "attn/cuda/attn_worklist.h"
enum {
    ACU_ITEM_COPY = DFA_ACU_ITEM_COPY,
    ACU_ITEM_RESID = DFA_ACU_ITEM_RESID,
    ACU_ITEM_SLOT_SHIFT = DFA_ACU_ITEM_SLOT_SHIFT
};
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
    /* ring lists (attn_worklist.h): an item's output is o + slot * slot_stride elements, and
     * (variant 2/3 only, lse != NULL) its rows' log2-sum-exp2 of the scaled scores go to
     * lse[(slot * batch * n_tokens + row) * n_heads + head]; 0 / NULL for plain plans */
    size_t slot_stride;
    float *lse;
#ifdef DFA_ACU_TRACE
    unsigned long long *trace; /* trace builds only (bench/attn_trace.sh): DFA_ACU_TRACE_BYTES */
#endif
};

#include "attn/cuda/attn_trace.h"

dfa_status acu_check_common(int dtype, int batch, int head_dim, dfa_error *err);

/* Launchers (one per variant), called by dfa_attn_cuda_run after checks. Variant 1 takes any
 * head dim that acu_check_common accepts; variants 2 and 3 64 to 128 (72..120 zero-padded). */
cudaError_t acu_launch_mma(const acu_params &p, int head_dim, int dtype, cudaStream_t st);
/* The wgmma kernel (attn_cuda_wgmma.cu) with nc consumer warpgroups: nc = 2 (variants 2/3, ring
 * plans; head_dim 64..128, items from the 128-row list) or nc = 3 (variant 5 at head_dim 64, items
 * from the 192-row list). persistent: one CTA per SM taking items from the counter; else one CTA
 * per item. */
cudaError_t acu_launch_wgmma(const acu_params &p, int nc, int head_dim, int dtype, bool persistent, cudaStream_t st);

/* Ring combine (attn_cuda_ring.cu): seg holds n_win + 1 segment outputs [B, N, H, D] one after
 * the other, lse their rows' log2-sum-exp2 [n_win + 1][B * N][H]; out[i] (i < n_win) gets
 * ARROW(win[i]) = the softmax-weighted merge of segments 0..i, out[n_win] FULL (all of them). */
struct acu_ring_args {
    const void *seg;
    const float *lse;
    void *out[DFA_ACU_RING_MAX_WIN + 1];
    int win[DFA_ACU_RING_MAX_WIN];
    int n_win;
    dfa_attn_layout layout;
    size_t rows; /* B * N */
    int n_heads, head_dim;
};
cudaError_t acu_launch_ring_combine(const acu_ring_args &a, int dtype, cudaStream_t st);

#endif
