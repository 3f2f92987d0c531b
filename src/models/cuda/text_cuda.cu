/* text_cuda.cu - kernels of text_cuda.h. */
#include "models/cuda/text_cuda.h"

#include <cfloat>
#include <cuda_bf16.h>

#include "core/cuda_check.h"

static __device__ __forceinline__ float ld16(const uint16_t *p, size_t i) {
    return __bfloat162float(reinterpret_cast<const __nv_bfloat16 *>(p)[i]);
}
static __device__ __forceinline__ void st16(uint16_t *p, size_t i, float v) {
    reinterpret_cast<__nv_bfloat16 *>(p)[i] = __float2bfloat16(v);
}

static __global__ void textk_embed_kernel(const int32_t *ids, const uint16_t *tok, const uint16_t *pos, int D, float *out) {
    int t = blockIdx.x;
    size_t row = (size_t)ids[t] * D;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float v = ld16(tok, row + d);
        if (pos) v += ld16(pos, (size_t)t * D + d);
        out[(size_t)t * D + d] = v;
    }
}

extern "C" dfa_status dfa_textk_embed(dfa_cuda *cu, const int32_t *ids, int T, const uint16_t *tok,
                                      const uint16_t *pos, int D, float *out, dfa_error *err) {
    if (T <= 0 || D <= 0) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "text embed: T %d, D %d", T, D);
    cudaStream_t s = (cudaStream_t)dfa_cuda_stream(cu);
    textk_embed_kernel<<<T, 256, 0, s>>>(ids, tok, pos, D, out);
    DFA_CUDA_LAUNCH_TRY(err);
    return DFA_OK;
}

#define ATT_THREADS 256

static __device__ float block_reduce(float v, float *red, int is_max) {
    for (int o = 16; o > 0; o >>= 1) {
        float w = __shfl_xor_sync(0xffffffffu, v, o);
        v = is_max ? fmaxf(v, w) : v + w;
    }
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < (int)(blockDim.x >> 5) ? red[lane] : (is_max ? -FLT_MAX : 0.0f);
        for (int o = 16; o > 0; o >>= 1) {
            float w = __shfl_xor_sync(0xffffffffu, v, o);
            v = is_max ? fmaxf(v, w) : v + w;
        }
        if (lane == 0) red[0] = v;
    }
    __syncthreads();
    return red[0];
}

/* one block per (query t, head h): scores in shared memory, then p.v */
static __global__ void textk_attention_kernel(const uint16_t *q, const uint16_t *k, const uint16_t *v, int T, int H, int Dh,
                                 int ld, float scale, int causal, const float *bias, const int32_t *key_mask,
                                 uint16_t *out) {
    extern __shared__ float sm[];
    float *qs = sm, *p = sm + Dh, *red = p + T;
    const int t = blockIdx.x, h = blockIdx.y;
    const size_t qoff = (size_t)t * ld + (size_t)h * Dh;
    for (int d = threadIdx.x; d < Dh; d += blockDim.x) qs[d] = ld16(q, qoff + d);
    __syncthreads();
    float mx = -FLT_MAX;
    for (int s = threadIdx.x; s < T; s += blockDim.x) {
        float sc;
        if ((causal && s > t) || (key_mask && key_mask[s] == 0)) {
            sc = -FLT_MAX;
        } else {
            const size_t koff = (size_t)s * ld + (size_t)h * Dh;
            float acc = 0.0f;
            for (int d = 0; d < Dh; d++) acc += qs[d] * ld16(k, koff + d);
            sc = acc * scale;
            if (bias) sc += bias[((size_t)h * T + t) * T + s];
        }
        p[s] = sc;
        mx = fmaxf(mx, sc);
    }
    mx = block_reduce(mx, red, 1);
    float sum = 0.0f;
    for (int s = threadIdx.x; s < T; s += blockDim.x) {
        float e = expf(p[s] - mx);
        p[s] = e;
        sum += e;
    }
    sum = block_reduce(sum, red, 0);
    const float inv = 1.0f / sum;
    for (int d = threadIdx.x; d < Dh; d += blockDim.x) {
        float acc = 0.0f;
        for (int s = 0; s < T; s++) acc += p[s] * ld16(v, (size_t)s * ld + (size_t)h * Dh + d);
        st16(out, qoff + d, acc * inv);
    }
}

extern "C" dfa_status dfa_textk_attention(dfa_cuda *cu, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                                          int T, int H, int Dh, int ld, float scale, int causal, const float *bias,
                                          const int32_t *key_mask, uint16_t *out, dfa_error *err) {
    if (T <= 0 || T > 4096 || Dh <= 0 || Dh > 256 || H <= 0)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "text attention: T %d (1..4096), Dh %d (1..256), H %d", T, Dh, H);
    cudaStream_t s = (cudaStream_t)dfa_cuda_stream(cu);
    size_t shmem = (size_t)(Dh + T + 32) * sizeof(float);
    textk_attention_kernel<<<dim3(T, H), ATT_THREADS, shmem, s>>>(q, k, v, T, H, Dh, ld, scale, causal, bias, key_mask, out);
    DFA_CUDA_LAUNCH_TRY(err);
    return DFA_OK;
}

/* one block per row; blockDim a multiple of 32 (block_reduce) */
static __global__ void textk_norm_kernel(const float *x, int N, const uint16_t *g, const uint16_t *b, float eps, int rms,
                                         uint16_t *y16, float *y32) {
    __shared__ float red[32];
    const size_t row = (size_t)blockIdx.x * N;
    float mean = 0.0f;
    if (!rms) {
        float s = 0.0f;
        for (int j = threadIdx.x; j < N; j += blockDim.x) s += x[row + j];
        mean = block_reduce(s, red, 0) / (float)N;
    }
    float s2 = 0.0f;
    for (int j = threadIdx.x; j < N; j += blockDim.x) {
        float d = x[row + j] - mean;
        s2 += d * d;
    }
    const float inv = rsqrtf(block_reduce(s2, red, 0) / (float)N + eps);
    for (int j = threadIdx.x; j < N; j += blockDim.x) {
        float v = (x[row + j] - mean) * inv;
        if (g) v *= ld16(g, j);
        if (b) v += ld16(b, j);
        if (y16) st16(y16, row + j, v);
        if (y32) y32[row + j] = v; /* y32 == x: this thread read x[row + j] for the last time above */
    }
}

extern "C" dfa_status dfa_textk_norm(dfa_cuda *cu, const float *x, int M, int N, const uint16_t *gamma,
                                     const uint16_t *beta, float eps, int rms, uint16_t *y16, float *y32,
                                     dfa_error *err) {
    if (M <= 0 || N <= 0 || (!y16 && !y32))
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "text norm: M %d, N %d, no output %d", M, N, !y16 && !y32);
    int threads = 32;
    while (threads < N && threads < 1024) threads <<= 1;
    textk_norm_kernel<<<M, threads, 0, (cudaStream_t)dfa_cuda_stream(cu)>>>(x, N, gamma, rms ? NULL : beta, eps, rms,
                                                                             y16, y32);
    DFA_CUDA_LAUNCH_TRY(err);
    return DFA_OK;
}

static __global__ void textk_add_kernel(float *x, const uint16_t *b, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        x[i] += ld16(b, i);
}

static __device__ __forceinline__ float textk_actf(float v, int act) {
    switch (act) {
    case 0: return v / (1.0f + expf(-1.702f * v));
    case 1: return fmaxf(v, 0.0f);
    case 2: return 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
    default: return 0.5f * v * (1.0f + erff(v * 0.7071067811865476f));
    }
}

static __global__ void textk_act_kernel(uint16_t *x, const uint16_t *gate, size_t n, int act) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float v = textk_actf(ld16(x, i), act);
        if (gate) v *= ld16(gate, i);
        st16(x, i, v);
    }
}

static unsigned grid_for(size_t n) {
    size_t g = (n + 255) / 256;
    return (unsigned)(g > 65535 ? 65535 : (g ? g : 1));
}

extern "C" dfa_status dfa_textk_add(dfa_cuda *cu, float *x, const uint16_t *b, size_t n, dfa_error *err) {
    textk_add_kernel<<<grid_for(n), 256, 0, (cudaStream_t)dfa_cuda_stream(cu)>>>(x, b, n);
    DFA_CUDA_LAUNCH_TRY(err);
    return DFA_OK;
}

extern "C" dfa_status dfa_textk_act(dfa_cuda *cu, uint16_t *x, const uint16_t *gate, size_t n, dfa_textk_act_kind act,
                                    dfa_error *err) {
    if ((int)act < 0 || (int)act > 3) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "text activation: unknown kind %d", (int)act);
    textk_act_kernel<<<grid_for(n), 256, 0, (cudaStream_t)dfa_cuda_stream(cu)>>>(x, gate, n, (int)act);
    DFA_CUDA_LAUNCH_TRY(err);
    return DFA_OK;
}
