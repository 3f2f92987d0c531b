/* vae_cuda.cu - VAE decoder kernels: im2col, GroupNorm(+SiLU), nearest upsampling, row softmax,
 * transpose. bf16 storage, f32 math (GroupNorm statistics in f64). */
#include "models/cuda/vae_cuda.h"

#include <cuda_bf16.h>

#include "core/cuda_check.h"

typedef __nv_bfloat16 bf16;

static unsigned grid_for(size_t n) {
    size_t g = (n + 255) / 256;
    return (unsigned)(g > 65535u * 16 ? 65535u * 16 : (g ? g : 1));
}

__global__ void im2col3_kernel(const bf16 *x, int H, int W, int C, int row0, int nrows, bf16 *col) {
    const size_t K = (size_t)C * 9, total = (size_t)nrows * W * K;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const size_t p = i / K;
        const int k = (int)(i % K);
        const int c = k / 9, ky = (k / 3) % 3, kx = k % 3;
        const int r = (int)(p / W) + row0, j = (int)(p % W);
        const int iy = r - 1 + ky, ix = j - 1 + kx;
        col[i] = (iy >= 0 && iy < H && ix >= 0 && ix < W) ? x[((size_t)iy * W + ix) * C + c] : __float2bfloat16(0.0f);
    }
}

extern "C" dfa_status dfa_vaecu_im2col3(void *stream, const uint16_t *x, int H, int W, int C, int row0, int nrows,
                                        uint16_t *col, dfa_error *err) {
    const size_t total = (size_t)nrows * W * C * 9;
    im2col3_kernel<<<grid_for(total), 256, 0, (cudaStream_t)stream>>>((const bf16 *)x, H, W, C, row0, nrows,
                                                                       (bf16 *)col);
    DFA_CUDA_LAUNCH_TRY(err);
    return DFA_OK;
}

/* grid (G, S): block (g, s) sums slice s of group g's HW x cpg values into stats[g] (sum, sumsq). */
__global__ void gn_stats_kernel(const bf16 *x, int HW, int C, int cpg, double *stats) {
    const int g = blockIdx.x, S = gridDim.y;
    const size_t n = (size_t)HW * cpg;
    const size_t per = (n + S - 1) / S, b0 = blockIdx.y * per, b1 = b0 + per < n ? b0 + per : n;
    float s = 0.0f, ss = 0.0f;
    for (size_t i = b0 + threadIdx.x; i < b1; i += blockDim.x) {
        const size_t p = i / cpg;
        const int c = g * cpg + (int)(i % cpg);
        const float v = __bfloat162float(x[p * C + c]);
        s += v;
        ss += v * v;
    }
    __shared__ float sh[2][32];
    for (int o = 16; o > 0; o >>= 1) {
        s += __shfl_down_sync(0xffffffffu, s, o);
        ss += __shfl_down_sync(0xffffffffu, ss, o);
    }
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    if (lane == 0) {
        sh[0][wid] = s;
        sh[1][wid] = ss;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        double ts = 0, tss = 0;
        for (int w = 0; w < (int)(blockDim.x >> 5); w++) {
            ts += sh[0][w];
            tss += sh[1][w];
        }
        atomicAdd(&stats[2 * g], ts);
        atomicAdd(&stats[2 * g + 1], tss);
    }
}

__global__ void gn_apply_kernel(const bf16 *x, int HW, int C, int cpg, const bf16 *gamma, const bf16 *beta,
                                float eps, int silu, const double *stats, bf16 *y) {
    const size_t total = (size_t)HW * C;
    const double n = (double)HW * cpg;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const int c = (int)(i % C), g = c / cpg;
        const double mean = stats[2 * g] / n;
        double var = stats[2 * g + 1] / n - mean * mean;
        var = var > 0 ? var : 0;
        const float inv = (float)rsqrt(var + (double)eps);
        float v = (__bfloat162float(x[i]) - (float)mean) * inv * __bfloat162float(gamma[c]) + __bfloat162float(beta[c]);
        if (silu) v = v / (1.0f + __expf(-v));
        y[i] = __float2bfloat16(v);
    }
}

extern "C" dfa_status dfa_vaecu_groupnorm(void *stream, const uint16_t *x, int HW, int C, int G,
                                          const uint16_t *gamma, const uint16_t *beta, float eps, int silu,
                                          uint16_t *y, double *stats, dfa_error *err) {
    cudaStream_t st = (cudaStream_t)stream;
    if (G < 1 || C % G) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "groupnorm: %d channels in %d groups", C, G);
    DFA_CUDA_TRY(err, cudaMemsetAsync(stats, 0, 2 * (size_t)G * sizeof(double), st));
    const int cpg = C / G;
    size_t n = (size_t)HW * cpg;
    int S = (int)((n + 8191) / 8192);
    S = S < 1 ? 1 : (S > 1024 ? 1024 : S);
    gn_stats_kernel<<<dim3(G, S), 256, 0, st>>>((const bf16 *)x, HW, C, cpg, stats);
    DFA_CUDA_LAUNCH_TRY(err);
    gn_apply_kernel<<<grid_for((size_t)HW * C), 256, 0, st>>>((const bf16 *)x, HW, C, cpg, (const bf16 *)gamma,
                                                              (const bf16 *)beta, eps, silu, stats, (bf16 *)y);
    DFA_CUDA_LAUNCH_TRY(err);
    return DFA_OK;
}

__global__ void up2_kernel(const bf16 *x, int H, int W, int C, bf16 *y) {
    const size_t total = (size_t)4 * H * W * C;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const int c = (int)(i % C);
        const size_t p = i / C;
        const int j = (int)(p % (2 * W)), r = (int)(p / (2 * W));
        y[i] = x[((size_t)(r / 2) * W + j / 2) * C + c];
    }
}

extern "C" dfa_status dfa_vaecu_upsample2x(void *stream, const uint16_t *x, int H, int W, int C, uint16_t *y,
                                           dfa_error *err) {
    up2_kernel<<<grid_for((size_t)4 * H * W * C), 256, 0, (cudaStream_t)stream>>>((const bf16 *)x, H, W, C,
                                                                                   (bf16 *)y);
    DFA_CUDA_LAUNCH_TRY(err);
    return DFA_OK;
}

/* one block per row */
__global__ void softmax_kernel(bf16 *s, int N, float scale) {
    bf16 *r = s + (size_t)blockIdx.x * N;
    __shared__ float red[32];
    float m = -INFINITY;
    for (int j = threadIdx.x; j < N; j += blockDim.x) m = fmaxf(m, scale * __bfloat162float(r[j]));
    for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_down_sync(0xffffffffu, m, o));
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    if (lane == 0) red[wid] = m;
    __syncthreads();
    if (threadIdx.x == 0) {
        float t = red[0];
        for (int w = 1; w < nw; w++) t = fmaxf(t, red[w]);
        red[0] = t;
    }
    __syncthreads();
    m = red[0];
    __syncthreads();
    float sum = 0.0f;
    for (int j = threadIdx.x; j < N; j += blockDim.x) sum += __expf(scale * __bfloat162float(r[j]) - m);
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_down_sync(0xffffffffu, sum, o);
    if (lane == 0) red[wid] = sum;
    __syncthreads();
    if (threadIdx.x == 0) {
        float t = 0;
        for (int w = 0; w < nw; w++) t += red[w];
        red[0] = t;
    }
    __syncthreads();
    const float inv = 1.0f / red[0];
    for (int j = threadIdx.x; j < N; j += blockDim.x)
        r[j] = __float2bfloat16(__expf(scale * __bfloat162float(r[j]) - m) * inv);
}

extern "C" dfa_status dfa_vaecu_softmax_rows(void *stream, uint16_t *s, int M, int N, float scale, dfa_error *err) {
    if (M < 1 || M > 2147483647 || N < 1) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "softmax: %d x %d", M, N);
    softmax_kernel<<<M, 256, 0, (cudaStream_t)stream>>>((bf16 *)s, N, scale);
    DFA_CUDA_LAUNCH_TRY(err);
    return DFA_OK;
}

__global__ void transpose_kernel(const bf16 *x, int N, int C, bf16 *y) {
    __shared__ bf16 tile[32][33];
    const int n0 = blockIdx.x * 32, c0 = blockIdx.y * 32;
    for (int i = threadIdx.y; i < 32; i += 8) {
        const int n = n0 + i, c = c0 + threadIdx.x;
        if (n < N && c < C) tile[i][threadIdx.x] = x[(size_t)n * C + c];
    }
    __syncthreads();
    for (int i = threadIdx.y; i < 32; i += 8) {
        const int c = c0 + i, n = n0 + threadIdx.x;
        if (n < N && c < C) y[(size_t)c * N + n] = tile[threadIdx.x][i];
    }
}

extern "C" dfa_status dfa_vaecu_transpose(void *stream, const uint16_t *x, int N, int C, uint16_t *y,
                                          dfa_error *err) {
    dim3 grid((N + 31) / 32, (C + 31) / 32);
    transpose_kernel<<<grid, dim3(32, 8), 0, (cudaStream_t)stream>>>((const bf16 *)x, N, C, (bf16 *)y);
    DFA_CUDA_LAUNCH_TRY(err);
    return DFA_OK;
}
