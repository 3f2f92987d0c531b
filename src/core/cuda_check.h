/* cuda_check.h - for .cu files only: turn a failed CUDA call into a dfa_status. */
#ifndef DFA_CORE_CUDA_CHECK_H
#define DFA_CORE_CUDA_CHECK_H

#include <cuda_runtime.h>

#include "core/error.h"

#define DFA_CUDA_TRY(err, call)                                                             \
    do {                                                                                    \
        cudaError_t dfa_ce_ = (call);                                                       \
        if (dfa_ce_ != cudaSuccess)                                                         \
            return dfa_error_set((err), DFA_ERR_CUDA, __FILE__, __LINE__, "%s failed: %s", \
                                 #call, cudaGetErrorString(dfa_ce_));                       \
    } while (0)

/* After a kernel launch. */
#define DFA_CUDA_LAUNCH_TRY(err) DFA_CUDA_TRY(err, cudaGetLastError())

#endif
