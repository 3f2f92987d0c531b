/* attn_cuda_wgmma.cu - variant 2 (placeholder until the Hopper path lands). */
#include "attn/cuda/attn_cuda_dev.cuh"

cudaError_t acu_launch_wgmma(const acu_params &p, int head_dim, int dtype, cudaStream_t st) {
    (void)p; (void)head_dim; (void)dtype; (void)st;
    return cudaErrorNotSupported;
}
