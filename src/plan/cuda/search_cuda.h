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

#ifdef __cplusplus
}
#endif
#endif
