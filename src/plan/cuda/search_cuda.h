/* search_cuda.h - kernels of the plan searches' CUDA backend (search_cuda.cu), behind a C
 * interface. Buffers: [rows, tokens, heads, head_dim] bf16, row-major, on the device; `stream`
 * is a cudaStream_t. Metrics accumulate in double. Only compiled with CUDA. */
#ifndef DFA_PLAN_CUDA_SEARCH_CUDA_H
#define DFA_PLAN_CUDA_SEARCH_CUDA_H

#include <stddef.h>

#include "core/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Head `head` of rows [r0, r1): dst = a (sign 0), a + b (+1), a - b (-1), computed in f32. */
dfa_status dfa_search_cuda_head_op(void *stream, int tokens, int heads, int head_dim, int head, int r0, int r1,
                                   void *dst, const void *a, const void *b, int sign, dfa_error *err);
/* out[r * heads + h] (device doubles) = RSE of (row r, head h): approx against ref (metrics.h). */
dfa_status dfa_search_cuda_rse(void *stream, int rows, int tokens, int heads, int head_dim, const void *ref,
                               const void *approx, double *out, dfa_error *err);
/* partial[i] (device doubles, n_blocks of them) = sums of the V1 MRAE terms; the caller adds them
 * and divides by n. */
dfa_status dfa_search_cuda_mrae(void *stream, const void *ref, const void *approx, size_t n, double eps,
                                double *partial, int n_blocks, dfa_error *err);

/* Batched V2 metric: out[(c * rows + r) * heads + h] (device doubles) = RSE of (row r, head h)
 * of candidate c < n against ref, candidate c = a[c], or bf16(a[c] + b[c]) when b[c] is not NULL
 * (as head_op stores it). One pass over ref for the means, one over ref and every candidate for
 * the sums, in chunks of tokens over many blocks; partial sums reduced in a fixed order (the
 * result is deterministic). scratch: dfa_search_cuda_rse_multi_scratch(...) device doubles.
 * n <= DFA_SEARCH_CUDA_MAX_CANDS. */
#define DFA_SEARCH_CUDA_MAX_CANDS 32
size_t dfa_search_cuda_rse_multi_scratch(int rows, int tokens, int heads, int n);
dfa_status dfa_search_cuda_rse_multi(void *stream, int rows, int tokens, int heads, int head_dim, const void *ref,
                                     int n, const void *const *a, const void *const *b, double *scratch, double *out,
                                     dfa_error *err);
/* Per head h with a[h] != NULL, head h of every row of dst = a[h] (b[h] NULL), a[h] + b[h]
 * (sign[h] > 0) or a[h] - b[h] (sign[h] < 0), computed in f32 as head_op; other heads untouched.
 * Host arrays of `heads` entries (any count: launched in groups of 64 heads). */
dfa_status dfa_search_cuda_compose(void *stream, int rows, int tokens, int heads, int head_dim, void *dst,
                                   const void *const *a, const void *const *b, const int *sign, dfa_error *err);

#ifdef __cplusplus
}
#endif
#endif
