// search_cuda.cu - compose and metric kernels of the plan searches' CUDA backend.
#include <cuda_bf16.h>
#include <math.h>
#include <stdint.h>

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
/* RSE = sum of squared errors / sum of squared deviations; NaN anywhere or a zero reference
 * variance with a nonzero error: INFINITY (the candidate is never chosen), 0/0: 0 */
__device__ __forceinline__ double rse_ratio(double num, double den) {
    if (isnan(num) || isnan(den)) return INFINITY;
    if (den == 0) return num == 0 ? 0.0 : INFINITY;
    return num / den;
}

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
    if (threadIdx.x == 0) out[blockIdx.x] = rse_ratio(num, den);
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

// ---- batched V2 metric (dfa_search_cuda_rse_multi) ----
// Grid of (chunk of RSE_CHUNK tokens, row * heads + head); VEC bf16 per load (8 when D % 8 == 0
// and every pointer is 16-byte aligned, else 1). Scratch: sums [RH * nch], mean [RH],
// part [(n + 1) * RH * nch] (k = 0: sum (x - mean)^2, k = 1 + c: candidate c's sum (y - x)^2).
constexpr int RSE_CHUNK = 64;
constexpr int RSE_THREADS = 256;

struct CandPtrs {
    const __nv_bfloat16 *a[DFA_SEARCH_CUDA_MAX_CANDS];
    const __nv_bfloat16 *b[DFA_SEARCH_CUDA_MAX_CANDS];
};

template <int VEC>
__device__ __forceinline__ void load_vec(const __nv_bfloat16 *p, float *x) {
    if constexpr (VEC == 8) {
        union {
            uint4 u;
            __nv_bfloat16 h[8];
        } t;
        t.u = *reinterpret_cast<const uint4 *>(p);
#pragma unroll
        for (int i = 0; i < 8; i++) x[i] = __bfloat162float(t.h[i]);
    } else {
#pragma unroll
        for (int i = 0; i < VEC; i++) x[i] = __bfloat162float(p[i]);
    }
}

template <int VEC>
__device__ __forceinline__ void store_vec(__nv_bfloat16 *p, const float *x) {
    if constexpr (VEC == 8) {
        union {
            uint4 u;
            __nv_bfloat16 h[8];
        } t;
#pragma unroll
        for (int i = 0; i < 8; i++) t.h[i] = __float2bfloat16(x[i]);
        *reinterpret_cast<uint4 *>(p) = t.u;
    } else {
#pragma unroll
        for (int i = 0; i < VEC; i++) p[i] = __float2bfloat16(x[i]);
    }
}

// element offset of vector j (of VEC_ elements) of chunk `chunk` of (row r, head h)
__device__ __forceinline__ size_t chunk_off(int tokens, int heads, int D, int DV, int VEC_, int r, int h, int chunk,
                                            int j) {
    const int t = chunk * RSE_CHUNK + j / DV, dv = j % DV;
    return (((size_t)r * tokens + t) * heads + h) * D + (size_t)dv * VEC_;
}

template <int VEC>
__global__ void rse_sum_kernel(int tokens, int heads, int D, const __nv_bfloat16 *ref, double *sums) {
    __shared__ double sh[32];
    const int chunk = blockIdx.x, nch = gridDim.x, rh = blockIdx.y, r = rh / heads, h = rh % heads;
    const int DV = D / VEC, nt = min(RSE_CHUNK, tokens - chunk * RSE_CHUNK), nv = nt * DV;
    double s = 0;
    for (int j = threadIdx.x; j < nv; j += blockDim.x) {
        float x[VEC];
        load_vec<VEC>(ref + chunk_off(tokens, heads, D, DV, VEC, r, h, chunk, j), x);
#pragma unroll
        for (int i = 0; i < VEC; i++) s += (double)x[i];
    }
    s = block_sum(s, sh);
    if (threadIdx.x == 0) sums[(size_t)rh * nch + chunk] = s;
}

// one warp per (row, head): the chunks' sums in a fixed order, over tokens * D
__global__ void rse_mean_kernel(int nch, double n, const double *sums, double *mean) {
    const int rh = blockIdx.x;
    double s = 0;
    for (int i = threadIdx.x; i < nch; i += 32) s += sums[(size_t)rh * nch + i];
    for (int o = 16; o > 0; o >>= 1) s += __shfl_down_sync(0xffffffffu, s, o);
    if (threadIdx.x == 0) mean[rh] = s / n;
}

template <int VEC>
__global__ void rse_terms_kernel(int tokens, int heads, int D, const __nv_bfloat16 *ref, int n, CandPtrs cp,
                                 const double *mean, double *part) {
    __shared__ double sh[32];
    const int chunk = blockIdx.x, nch = gridDim.x, rh = blockIdx.y, RH = gridDim.y, r = rh / heads, h = rh % heads;
    const int DV = D / VEC, nt = min(RSE_CHUNK, tokens - chunk * RSE_CHUNK), nv = nt * DV;
    const double mu = mean[rh];
    for (int k = 0; k <= n; k++) {
        const __nv_bfloat16 *a = k ? cp.a[k - 1] : nullptr, *b = k ? cp.b[k - 1] : nullptr;
        double s = 0;
        for (int j = threadIdx.x; j < nv; j += blockDim.x) {
            const size_t o = chunk_off(tokens, heads, D, DV, VEC, r, h, chunk, j);
            float x[VEC];
            load_vec<VEC>(ref + o, x);
            if (!k) {
#pragma unroll
                for (int i = 0; i < VEC; i++) s += ((double)x[i] - mu) * ((double)x[i] - mu);
                continue;
            }
            float y[VEC];
            load_vec<VEC>(a + o, y);
            if (b) {
                float z[VEC];
                load_vec<VEC>(b + o, z);
#pragma unroll
                for (int i = 0; i < VEC; i++) y[i] = __bfloat162float(__float2bfloat16(y[i] + z[i]));
            }
#pragma unroll
            for (int i = 0; i < VEC; i++) s += ((double)y[i] - (double)x[i]) * ((double)y[i] - (double)x[i]);
        }
        s = block_sum(s, sh);
        if (threadIdx.x == 0) part[((size_t)k * RH + rh) * nch + chunk] = s;
    }
}

// one warp per (candidate, row-head): out[c * RH + rh]
__global__ void rse_final_kernel(int nch, int RH, const double *part, double *out) {
    const int c = blockIdx.x / RH, rh = blockIdx.x % RH;
    double num = 0, den = 0;
    for (int i = threadIdx.x; i < nch; i += 32) {
        den += part[(size_t)rh * nch + i];
        num += part[((size_t)(1 + c) * RH + rh) * nch + i];
    }
    for (int o = 16; o > 0; o >>= 1) {
        num += __shfl_down_sync(0xffffffffu, num, o);
        den += __shfl_down_sync(0xffffffffu, den, o);
    }
    if (threadIdx.x == 0) out[blockIdx.x] = rse_ratio(num, den);
}

// ---- compose (dfa_search_cuda_compose): one block per token row, up to 64 heads per launch ----
constexpr int COMPOSE_HEADS = 64;
struct ComposeArgs {
    const __nv_bfloat16 *a[COMPOSE_HEADS];
    const __nv_bfloat16 *b[COMPOSE_HEADS];
    int sign[COMPOSE_HEADS];
};

template <int VEC>
__global__ void compose_kernel(int heads, int D, int h0, int nh, ComposeArgs ca, __nv_bfloat16 *dst) {
    const size_t rt = blockIdx.x;
    const int DV = D / VEC;
    for (int j = threadIdx.x; j < nh * DV; j += blockDim.x) {
        const int hl = j / DV, dv = j % DV;
        const __nv_bfloat16 *a = ca.a[hl];
        if (!a) continue;
        const size_t o = (rt * heads + h0 + hl) * D + (size_t)dv * VEC;
        float x[VEC];
        load_vec<VEC>(a + o, x);
        if (ca.b[hl]) { /* the host leaves b NULL for a copy */
            float y[VEC];
            load_vec<VEC>(ca.b[hl] + o, y);
            if (ca.sign[hl] > 0) {
#pragma unroll
                for (int i = 0; i < VEC; i++) x[i] += y[i];
            } else {
#pragma unroll
                for (int i = 0; i < VEC; i++) x[i] -= y[i];
            }
        }
        store_vec<VEC>(dst + o, x);
    }
}

int vec_ok(int D, const void *const *p, int n) {
    if (D % 8) return 0;
    for (int i = 0; i < n; i++)
        if (p[i] && ((uintptr_t)p[i] & 15)) return 0;
    return 1;
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

extern "C" size_t dfa_search_cuda_rse_multi_scratch(int rows, int tokens, int heads, int n) {
    const size_t RH = (size_t)rows * heads, nch = (size_t)(tokens + RSE_CHUNK - 1) / RSE_CHUNK;
    return RH * nch * (size_t)(n + 2) + RH;
}

extern "C" dfa_status dfa_search_cuda_rse_multi(void *stream, int rows, int tokens, int heads, int head_dim,
                                                const void *ref, int n, const void *const *a, const void *const *b,
                                                double *scratch, double *out, dfa_error *err) {
    if (n < 0 || n > DFA_SEARCH_CUDA_MAX_CANDS)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "search metric: %d candidates, at most %d", n, DFA_SEARCH_CUDA_MAX_CANDS);
    if (rows < 1 || tokens < 1 || heads < 1 || head_dim < 1 || (size_t)rows * heads > 65535)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "search metric: shape %d x %d x %d x %d out of range", rows, tokens, heads,
                 head_dim);
    if ((size_t)RSE_CHUNK * head_dim > 0x7fffffff)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "search metric: head_dim %d too large", head_dim);
    if (n == 0) return DFA_OK;
    const int RH = rows * heads, nch = (tokens + RSE_CHUNK - 1) / RSE_CHUNK;
    CandPtrs cp = {};
    const void *all[2 * DFA_SEARCH_CUDA_MAX_CANDS + 1];
    for (int c = 0; c < n; c++) {
        cp.a[c] = (const __nv_bfloat16 *)a[c], cp.b[c] = (const __nv_bfloat16 *)b[c];
        all[2 * c] = a[c], all[2 * c + 1] = b[c];
    }
    all[2 * n] = ref;
    const int vec = vec_ok(head_dim, all, 2 * n + 1);
    double *sums = scratch, *mean = sums + (size_t)RH * nch, *part = mean + RH;
    cudaStream_t st = (cudaStream_t)stream;
    const dim3 grid(nch, RH);
    const __nv_bfloat16 *r = (const __nv_bfloat16 *)ref;
    if (vec) rse_sum_kernel<8><<<grid, RSE_THREADS, 0, st>>>(tokens, heads, head_dim, r, sums);
    else rse_sum_kernel<1><<<grid, RSE_THREADS, 0, st>>>(tokens, heads, head_dim, r, sums);
    DFA_CUDA_LAUNCH_TRY(err);
    rse_mean_kernel<<<RH, 32, 0, st>>>(nch, (double)tokens * head_dim, sums, mean);
    DFA_CUDA_LAUNCH_TRY(err);
    if (vec) rse_terms_kernel<8><<<grid, RSE_THREADS, 0, st>>>(tokens, heads, head_dim, r, n, cp, mean, part);
    else rse_terms_kernel<1><<<grid, RSE_THREADS, 0, st>>>(tokens, heads, head_dim, r, n, cp, mean, part);
    DFA_CUDA_LAUNCH_TRY(err);
    rse_final_kernel<<<n * RH, 32, 0, st>>>(nch, RH, part, out);
    DFA_CUDA_LAUNCH_TRY(err);
    return DFA_OK;
}

extern "C" dfa_status dfa_search_cuda_compose(void *stream, int rows, int tokens, int heads, int head_dim, void *dst,
                                              const void *const *a, const void *const *b, const int *sign,
                                              dfa_error *err) {
    const size_t RT = (size_t)rows * tokens;
    if (RT == 0) return DFA_OK;
    if (RT > 0x7fffffff) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "search compose: %zu token rows, too many", RT);
    for (int h0 = 0; h0 < heads; h0 += COMPOSE_HEADS) {
        const int nh = heads - h0 < COMPOSE_HEADS ? heads - h0 : COMPOSE_HEADS;
        ComposeArgs ca = {};
        const void *all[2 * COMPOSE_HEADS + 1];
        int any = 0;
        for (int i = 0; i < nh; i++) {
            ca.a[i] = (const __nv_bfloat16 *)a[h0 + i];
            ca.b[i] = a[h0 + i] && b[h0 + i] && sign[h0 + i] ? (const __nv_bfloat16 *)b[h0 + i] : nullptr;
            ca.sign[i] = sign[h0 + i];
            all[2 * i] = ca.a[i], all[2 * i + 1] = ca.b[i];
            any |= a[h0 + i] != nullptr;
        }
        if (!any) continue;
        all[2 * nh] = dst;
        const int threads = 128;
        if (vec_ok(head_dim, all, 2 * nh + 1))
            compose_kernel<8><<<(unsigned)RT, threads, 0, (cudaStream_t)stream>>>(heads, head_dim, h0, nh, ca,
                                                                                 (__nv_bfloat16 *)dst);
        else
            compose_kernel<1><<<(unsigned)RT, threads, 0, (cudaStream_t)stream>>>(heads, head_dim, h0, nh, ca,
                                                                                 (__nv_bfloat16 *)dst);
        DFA_CUDA_LAUNCH_TRY(err);
    }
    return DFA_OK;
}
