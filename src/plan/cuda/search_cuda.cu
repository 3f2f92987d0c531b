// search_cuda.cu - compose and metric kernels of the plan searches' CUDA backend.
#include <cuda_bf16.h>
#include <math.h>

#include "core/cuda_check.h"
#include "plan/cuda/search_cuda.h"

namespace {

__global__ void head_op_kernel(int tokens, int heads, int D, int head, int r0, int r1, __nv_bfloat16 *dst,
                               const __nv_bfloat16 *a, const __nv_bfloat16 *b, int sign) {
    const size_t n = (size_t)(r1 - r0) * tokens * D;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        size_t d = i % D, t = (i / D) % tokens, r = r0 + i / ((size_t)D * tokens);
        size_t o = ((r * tokens + t) * heads + head) * D + d;
        float x = __bfloat162float(a[o]);
        if (sign > 0) x += __bfloat162float(b[o]);
        else if (sign < 0) x -= __bfloat162float(b[o]);
        dst[o] = __float2bfloat16(x);
    }
}

__device__ double block_sum(double v, double *sh) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    double s = 0;
    if (threadIdx.x == 0)
        for (int w = 0; w < nw; w++) s += sh[w];
    __syncthreads();
    if (threadIdx.x == 0) sh[0] = s;
    __syncthreads();
    return sh[0];
}

// One block per (row, head): mean of ref, then sum (approx - ref)^2 and sum (ref - mean)^2.
__global__ void rse_kernel(int tokens, int heads, int D, const __nv_bfloat16 *ref, const __nv_bfloat16 *approx,
                           double *out) {
    __shared__ double sh[32];
    const int r = blockIdx.x / heads, h = blockIdx.x % heads;
    const size_t n = (size_t)tokens * D;
    double s = 0;
    for (size_t i = threadIdx.x; i < n; i += blockDim.x) {
        size_t o = (((size_t)r * tokens + i / D) * heads + h) * D + i % D;
        s += __bfloat162float(ref[o]);
    }
    const double mean = block_sum(s, sh) / (double)n;
    double num = 0, den = 0;
    for (size_t i = threadIdx.x; i < n; i += blockDim.x) {
        size_t o = (((size_t)r * tokens + i / D) * heads + h) * D + i % D;
        double x = __bfloat162float(ref[o]), y = __bfloat162float(approx[o]);
        num += (y - x) * (y - x);
        den += (x - mean) * (x - mean);
    }
    num = block_sum(num, sh);
    den = block_sum(den, sh);
    if (threadIdx.x == 0) {
        double v;
        if (isnan(num) || isnan(den)) v = INFINITY;
        else if (den == 0) v = num == 0 ? 0.0 : INFINITY;
        else v = num / den;
        out[blockIdx.x] = v;
    }
}

__global__ void mrae_kernel(const __nv_bfloat16 *ref, const __nv_bfloat16 *approx, size_t n, double eps,
                            double *partial) {
    __shared__ double sh[32];
    double s = 0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        double o = __bfloat162float(ref[i]), m = __bfloat162float(approx[i]);
        double a = fabs(o), b = fabs(m);
        double t = fabs(o - m) / ((a > b ? a : b) + eps);
        if (!isfinite(t) || t > 10.0) t = 10.0;
        s += t;
    }
    s = block_sum(s, sh);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

}  // namespace

extern "C" dfa_status dfa_search_cuda_head_op(void *stream, int tokens, int heads, int head_dim, int head, int r0,
                                              int r1, void *dst, const void *a, const void *b, int sign,
                                              dfa_error *err) {
    size_t n = (size_t)(r1 - r0) * tokens * head_dim;
    if (n == 0) return DFA_OK;
    int blocks = (int)((n + 255) / 256 < 4096 ? (n + 255) / 256 : 4096);
    head_op_kernel<<<blocks, 256, 0, (cudaStream_t)stream>>>(tokens, heads, head_dim, head, r0, r1,
                                                              (__nv_bfloat16 *)dst, (const __nv_bfloat16 *)a,
                                                              (const __nv_bfloat16 *)b, sign);
    DFA_CUDA_LAUNCH_TRY(err);
    return DFA_OK;
}

extern "C" dfa_status dfa_search_cuda_rse(void *stream, int rows, int tokens, int heads, int head_dim,
                                          const void *ref, const void *approx, double *out, dfa_error *err) {
    rse_kernel<<<rows * heads, 256, 0, (cudaStream_t)stream>>>(tokens, heads, head_dim, (const __nv_bfloat16 *)ref,
                                                                (const __nv_bfloat16 *)approx, out);
    DFA_CUDA_LAUNCH_TRY(err);
    return DFA_OK;
}

extern "C" dfa_status dfa_search_cuda_mrae(void *stream, const void *ref, const void *approx, size_t n, double eps,
                                           double *partial, int n_blocks, dfa_error *err) {
    mrae_kernel<<<n_blocks, 256, 0, (cudaStream_t)stream>>>((const __nv_bfloat16 *)ref,
                                                             (const __nv_bfloat16 *)approx, n, eps, partial);
    DFA_CUDA_LAUNCH_TRY(err);
    return DFA_OK;
}
