/* attn_cuda_ring.cu - the combine of ring plans (attn_cuda.h dfa_attn_cuda_ring_run): per row,
 * head and 8 columns, the segments' normalised outputs merged in f32 with weights
 * exp2(lse_s - lse), the running merge stored after each segment (ARROW of each window, then
 * FULL). Segments without keys for a row (dfa_acu_ring_has_seg) are skipped unread: no item
 * wrote them. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>

#include "attn/cuda/attn_cuda_dev.cuh"

namespace {

template <typename T>
__global__ void ring_combine_kernel(const acu_ring_args a, size_t n_vec) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_vec) return;
    const int dv = a.head_dim / 8;
    const size_t rh = i / dv;                        /* (row, head) */
    const int t = (int)((rh / a.n_heads) % (size_t)(a.layout.n_vis + a.layout.n_text)); /* token */
    const int vs = a.layout.text_first ? a.layout.n_text : 0;
    const int qi = t >= vs && t < vs + a.layout.n_vis ? (t - vs) / a.layout.block : -1;
    const int nvt = (a.layout.n_vis + a.layout.block - 1) / a.layout.block;
    const size_t seg_elems = a.rows * a.n_heads * a.head_dim, lse_n = a.rows * a.n_heads;
    float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f}, m = -INFINITY, den = 0.f;
    for (int s = 0; s <= a.n_win; s++) {
        if (s == 0 || (qi >= 0 && dfa_acu_ring_has_seg(nvt, qi, a.win, s))) {
            const float ls = a.lse[s * lse_n + rh];
            const uint4 v = reinterpret_cast<const uint4 *>(reinterpret_cast<const T *>(a.seg) + s * seg_elems)[i];
            const uint32_t *pv = reinterpret_cast<const uint32_t *>(&v);
            if (s == 0) {
                for (int j = 0; j < 4; j++) {
                    const float2 x = acu_pack<T>::unpack(pv[j]);
                    acc[2 * j] = x.x, acc[2 * j + 1] = x.y;
                }
                m = ls, den = 1.f;
            } else {
                const float mn = fmaxf(m, ls), w0 = exp2f(m - mn), w1 = exp2f(ls - mn);
                for (int j = 0; j < 4; j++) {
                    const float2 x = acu_pack<T>::unpack(pv[j]);
                    acc[2 * j] = acc[2 * j] * w0 + x.x * w1;
                    acc[2 * j + 1] = acc[2 * j + 1] * w0 + x.y * w1;
                }
                den = den * w0 + w1, m = mn;
            }
        }
        uint4 o;
        uint32_t *po = reinterpret_cast<uint32_t *>(&o);
        const float inv = 1.f / den;
        for (int j = 0; j < 4; j++) po[j] = acu_pack<T>::two(acc[2 * j] * inv, acc[2 * j + 1] * inv);
        reinterpret_cast<uint4 *>(a.out[s])[i] = o;
    }
}

}  // namespace

cudaError_t acu_launch_ring_combine(const acu_ring_args &a, int dtype, cudaStream_t st) {
    const size_t n_vec = a.rows * a.n_heads * (a.head_dim / 8);
    if (n_vec == 0) return cudaSuccess;
    const int threads = 256;
    const size_t blocks = (n_vec + threads - 1) / threads;
    if (blocks > 0x7fffffff) return cudaErrorInvalidValue;
    if (dtype == DFA_ATTN_CUDA_BF16) ring_combine_kernel<__nv_bfloat16><<<(unsigned)blocks, threads, 0, st>>>(a, n_vec);
    else ring_combine_kernel<__half><<<(unsigned)blocks, threads, 0, st>>>(a, n_vec);
    return cudaGetLastError();
}
