/* ops_cuda.cu - cuBLASLt GEMMs and fused elementwise kernels for the model engines. */
#include "models/cuda/ops_cuda.h"

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cuda_check.h"

#define WORKSPACE_BYTES (32u << 20)

/* Heuristic results by problem (shape, layout, pointer alignment): the query costs tens of
 * microseconds of host time per call, more than many of the model's small GEMMs take. */
#define ALGO_CACHE 128
#define ALGO_KEY 16
typedef struct algo_entry {
    long long key[ALGO_KEY];
    cublasLtMatmulAlgo_t algo;
    int valid;
} algo_entry;

struct dfa_cuops {
    dfa_cuda *cu;
    cudaStream_t stream;
    cublasLtHandle_t lt;
    void *workspace;
    algo_entry cache[ALGO_CACHE];
    int next;          /* round-robin replacement */
    double *gemm_secs; /* dfa_cuops_set_gemm_timer: GPU seconds of every GEMM (CUDA event spans) */
};

/* the GEMM timer around one cublasLtMatmul: begin (when on and s is OK), then end with its status */
static dfa_status gemm_timer_begin(dfa_cuops *ops, dfa_status s, dfa_error *err) {
    return s == DFA_OK && ops->gemm_secs ? dfa_cuda_span_begin(ops->cu, err) : s;
}
static dfa_status gemm_timer_end(dfa_cuops *ops, dfa_status s, dfa_error *err) {
    if (!ops->gemm_secs) return s;
    if (s == DFA_OK) return dfa_cuda_span_end(ops->cu, ops->gemm_secs, err);
    dfa_cuda_spans_drop(ops->cu);
    return s;
}

/* largest power of two <= 256 dividing the address (and the batch stride in bytes, when given) */
static uint32_t align_of(const void *p, long long stride_bytes) {
    uintptr_t a = (uintptr_t)p | (uintptr_t)stride_bytes;
    uint32_t al = 256;
    while (al > 1 && (a % al)) al >>= 1;
    return al;
}

static const cublasLtMatmulAlgo_t *cache_find(const dfa_cuops *ops, const long long *key) {
    for (int i = 0; i < ALGO_CACHE; i++)
        if (ops->cache[i].valid && memcmp(ops->cache[i].key, key, sizeof ops->cache[i].key) == 0)
            return &ops->cache[i].algo;
    return NULL;
}

static void cache_put(dfa_cuops *ops, const long long *key, const cublasLtMatmulAlgo_t *algo) {
    algo_entry *e = &ops->cache[ops->next];
    ops->next = (ops->next + 1) % ALGO_CACHE;
    memcpy(e->key, key, sizeof e->key);
    e->algo = *algo;
    e->valid = 1;
}

/* The heuristic's best algorithm for desc and layouts, told the operands' real alignment
 * (its default assumes 256-byte aligned pointers), cached under key. */
static dfa_status pick_algo(dfa_cuops *ops, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t la,
                            cublasLtMatrixLayout_t lb, cublasLtMatrixLayout_t lc, uint32_t al_a, uint32_t al_b,
                            uint32_t al_c, const long long *key, cublasLtMatmulAlgo_t *algo, dfa_error *err) {
    const cublasLtMatmulAlgo_t *hit = cache_find(ops, key);
    if (hit) {
        *algo = *hit;
        return DFA_OK;
    }
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t heur;
    int found = 0;
    size_t ws = WORKSPACE_BYTES;
    dfa_status s = DFA_OK;
    cublasStatus_t st;
#define PSTEP(call)                                                                                            \
    do {                                                                                                       \
        if (s == DFA_OK && (st = (call)) != CUBLAS_STATUS_SUCCESS)                                             \
            s = dfa_error_set(err, DFA_ERR_CUDA, __FILE__, __LINE__, "%s failed: cublas status %d", #call, (int)st); \
    } while (0)
    PSTEP(cublasLtMatmulPreferenceCreate(&pref));
    PSTEP(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    PSTEP(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof al_a));
    PSTEP(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof al_b));
    PSTEP(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof al_c));
    PSTEP(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c, sizeof al_c));
    PSTEP(cublasLtMatmulAlgoGetHeuristic(ops->lt, desc, la, lb, lc, lc, pref, 1, &heur, &found));
#undef PSTEP
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (s != DFA_OK) return s;
    if (found == 0)
        return dfa_error_set(err, DFA_ERR_CUDA, __FILE__, __LINE__,
                             "cuBLASLt found no algorithm (key %lld %lld %lld %lld %lld, alignment %u %u %u)", key[0],
                             key[1], key[2], key[3], key[4], al_a, al_b, al_c);
    *algo = heur.algo;
    cache_put(ops, key, algo);
    return DFA_OK;
}

#define LT_TRY(err, call)                                                                              \
    do {                                                                                               \
        cublasStatus_t st_ = (call);                                                                   \
        if (st_ != CUBLAS_STATUS_SUCCESS)                                                              \
            return dfa_error_set((err), DFA_ERR_CUDA, __FILE__, __LINE__, "%s failed: cublas status %d", \
                                 #call, (int)st_);                                                     \
    } while (0)

extern "C" dfa_status dfa_cuops_init(dfa_cuops **out, dfa_cuda *cu, dfa_error *err) {
    *out = NULL;
    dfa_cuops *ops = (dfa_cuops *)calloc(1, sizeof *ops);
    if (!ops) DFA_FAIL(err, DFA_ERR_OOM, "out of host memory");
    ops->cu = cu;
    ops->stream = (cudaStream_t)dfa_cuda_stream(cu);
    cublasStatus_t st = cublasLtCreate(&ops->lt);
    if (st != CUBLAS_STATUS_SUCCESS) {
        free(ops);
        DFA_FAIL(err, DFA_ERR_CUDA, "cublasLtCreate failed: status %d", (int)st);
    }
    cudaError_t e = cudaMalloc(&ops->workspace, WORKSPACE_BYTES);
    if (e != cudaSuccess) {
        cublasLtDestroy(ops->lt);
        free(ops);
        DFA_FAIL(err, DFA_ERR_OOM, "cudaMalloc of the cuBLASLt workspace (%u bytes): %s", WORKSPACE_BYTES,
                 cudaGetErrorString(e));
    }
    *out = ops;
    return DFA_OK;
}

extern "C" void dfa_cuops_free(dfa_cuops *ops) {
    if (!ops) return;
    cudaFree(ops->workspace);
    cublasLtDestroy(ops->lt);
    free(ops);
}

/* The common tail of both GEMMs: pick (or reuse) the algorithm for `key`, run the timed
 * cublasLtMatmul C = alpha op(a) op(b) + beta C with cuBLAS's a = la, b = lb, C = lc, then destroy
 * the descriptors (always, also after an earlier failure: s is the status so far). */
static dfa_status lt_matmul_finish(dfa_cuops *ops, dfa_status s, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t la,
                                   cublasLtMatrixLayout_t lb, cublasLtMatrixLayout_t lc, const uint32_t *al,
                                   const long long *key, float alpha, const void *a, const void *b, float beta, void *c,
                                   const char *what, dfa_error *err) {
    cublasLtMatmulAlgo_t algo;
    if (s == DFA_OK) s = pick_algo(ops, desc, la, lb, lc, al[0], al[1], al[2], key, &algo, err);
    s = gemm_timer_begin(ops, s, err);
    if (s == DFA_OK) {
        const cublasStatus_t st = cublasLtMatmul(ops->lt, desc, &alpha, a, la, b, lb, &beta, c, lc, c, lc, &algo,
                                                 ops->workspace, WORKSPACE_BYTES, ops->stream);
        if (st != CUBLAS_STATUS_SUCCESS)
            s = dfa_error_set(err, DFA_ERR_CUDA, __FILE__, __LINE__, "cublasLtMatmul failed: cublas status %d (%s)",
                              (int)st, what);
    }
    s = gemm_timer_end(ops, s, err);
    if (lc) cublasLtMatrixLayoutDestroy(lc);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (desc) cublasLtMatmulDescDestroy(desc);
    return s;
}

/* Row-major y[M,N] = x[M,K] W[N,K]^T is column-major y'(N x M) = W'(K x N)^T x'(K x M). */
static dfa_status linear_impl(dfa_cuops *ops, const uint16_t *x, int M, int K, const uint16_t *W,
                              const uint16_t *bias, int N, int accumulate, uint16_t *y, dfa_error *err) {
    cublasLtMatmulDesc_t desc = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, lc = NULL;
    dfa_status s = DFA_OK;
    cublasStatus_t st;
    cublasOperation_t opT = CUBLAS_OP_T, opN = CUBLAS_OP_N;
    cublasLtEpilogue_t epi = bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
#define STEP(call)                                                                                       \
    do {                                                                                                 \
        if (s == DFA_OK && (st = (call)) != CUBLAS_STATUS_SUCCESS)                                       \
            s = dfa_error_set(err, DFA_ERR_CUDA, __FILE__, __LINE__, "%s failed: cublas status %d (M=%d N=%d K=%d)", \
                              #call, (int)st, M, N, K);                                                  \
    } while (0)
    STEP(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    STEP(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &opT, sizeof opT));
    STEP(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &opN, sizeof opN));
    STEP(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    if (bias) STEP(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    STEP(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, K, N, K));
    STEP(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, K, M, K));
    STEP(cublasLtMatrixLayoutCreate(&lc, CUDA_R_16BF, N, M, N));
#undef STEP
    const uint32_t al[3] = {align_of(W, 0), align_of(x, 0), align_of(y, 0)};
    const long long key[ALGO_KEY] = {0, M, N, K, bias != NULL, accumulate, al[0], al[1], al[2],
                                     bias ? (long long)align_of(bias, 0) : 0};
    char what[96];
    snprintf(what, sizeof what, "linear M=%d N=%d K=%d", M, N, K);
    return lt_matmul_finish(ops, s, desc, la, lb, lc, al, key, alpha, W, x, beta, y, what, err);
}

extern "C" dfa_status dfa_cuops_linear(dfa_cuops *ops, const uint16_t *x, int M, int K, const uint16_t *W,
                                       const uint16_t *bias, int N, int accumulate, uint16_t *y, dfa_error *err) {
    if (M <= 0 || N <= 0 || K <= 0) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "linear: bad sizes M=%d N=%d K=%d", M, N, K);
    return linear_impl(ops, x, M, K, W, bias, N, accumulate, y, err);
}

/* ---- elementwise kernels: one block per row for the norms ---- */

__device__ __forceinline__ float ld(const uint16_t *p, size_t i) {
    return __bfloat162float(reinterpret_cast<const __nv_bfloat16 *>(p)[i]);
}
__device__ __forceinline__ void st(uint16_t *p, size_t i, float v) {
    reinterpret_cast<__nv_bfloat16 *>(p)[i] = __float2bfloat16(v);
}

__device__ float block_sum(float v, float *shared) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    float t = 0.0f;
    int nw = (blockDim.x + 31) >> 5;
    for (int i = 0; i < nw; i++) t += shared[i];
    return t;
}

/* mode 0: layernorm (affine optional); 1: rmsnorm; 2: layernorm without affine + modulation */
__global__ void norm_kernel(const uint16_t *x, int N, int T, const uint16_t *g, const uint16_t *b, float eps,
                            int mode, size_t mod_stride, uint16_t *y) {
    __shared__ float red[32];
    size_t row = blockIdx.x;
    const uint16_t *xr = x + row * N;
    uint16_t *yr = y + row * N;
    float mean = 0.0f;
    if (mode != 1) {
        float s = 0.0f;
        for (int j = threadIdx.x; j < N; j += blockDim.x) s += ld(xr, j);
        mean = block_sum(s, red) / N;
    }
    float s2 = 0.0f;
    for (int j = threadIdx.x; j < N; j += blockDim.x) {
        float d = ld(xr, j) - mean;
        s2 += d * d;
    }
    float inv = rsqrtf(block_sum(s2, red) / N + eps);
    size_t bidx = row / (size_t)T; /* batch index for modulation */
    for (int j = threadIdx.x; j < N; j += blockDim.x) {
        float v = (ld(xr, j) - mean) * inv;
        if (mode == 2) {
            v = v * (1.0f + ld(b, bidx * mod_stride + j)) + ld(g, bidx * mod_stride + j); /* g = shift, b = scale */
        } else {
            if (g) v *= ld(g, j);
            if (b && mode == 0) v += ld(b, j);
        }
        st(yr, j, v);
    }
}

static int norm_threads(int N) {
    int t = 32;
    while (t < N && t < 1024) t <<= 1;
    return t;
}

extern "C" dfa_status dfa_cuops_layernorm(dfa_cuops *ops, const uint16_t *x, int M, int N, const uint16_t *gamma,
                                          const uint16_t *beta, float eps, uint16_t *y, dfa_error *err) {
    if (M <= 0 || N <= 0) return DFA_OK;
    norm_kernel<<<M, norm_threads(N), 0, ops->stream>>>(x, N, 1, gamma, beta, eps, 0, 0, y);
    DFA_CUDA_LAUNCH_TRY(err);
    return DFA_OK;
}

extern "C" dfa_status dfa_cuops_rmsnorm(dfa_cuops *ops, const uint16_t *x, int M, int N, const uint16_t *gamma,
                                        float eps, uint16_t *y, dfa_error *err) {
    if (M <= 0 || N <= 0) return DFA_OK;
    norm_kernel<<<M, norm_threads(N), 0, ops->stream>>>(x, N, 1, gamma, NULL, eps, 1, 0, y);
    DFA_CUDA_LAUNCH_TRY(err);
    return DFA_OK;
}

extern "C" dfa_status dfa_cuops_ln_modulate(dfa_cuops *ops, const uint16_t *x, int B, int T, int N,
                                            const uint16_t *shift, const uint16_t *scale, float eps, uint16_t *y,
                                            dfa_error *err) {
    if (B <= 0 || T <= 0 || N <= 0) return DFA_OK;
    norm_kernel<<<B * T, norm_threads(N), 0, ops->stream>>>(x, N, T, shift, scale, eps, 2, (size_t)N, y);
    DFA_CUDA_LAUNCH_TRY(err);
    return DFA_OK;
}

__global__ void gate_add_kernel(uint16_t *resid, size_t total, int T, int N, const uint16_t *gate,
                                size_t gate_stride, const uint16_t *x) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        size_t col = i % N, b = i / ((size_t)N * T);
        float gv = gate ? ld(gate, b * gate_stride + col) : 1.0f;
        st(resid, i, ld(resid, i) + gv * ld(x, i));
    }
}

static int grid_for(size_t n) {
    size_t g = (n + 255) / 256;
    return (int)(g > 65535 ? 65535 : (g ? g : 1));
}

extern "C" dfa_status dfa_cuops_gate_add(dfa_cuops *ops, uint16_t *resid, int B, int T, int N, const uint16_t *gate,
                                         const uint16_t *x, dfa_error *err) {
    size_t total = (size_t)B * T * N;
    if (!total) return DFA_OK;
    gate_add_kernel<<<grid_for(total), 256, 0, ops->stream>>>(resid, total, T, N, gate, (size_t)N, x);
    DFA_CUDA_LAUNCH_TRY(err);
    return DFA_OK;
}

extern "C" dfa_status dfa_cuops_ln_modulate_strided(dfa_cuops *ops, const uint16_t *x, int B, int T, int N,
                                                    const uint16_t *shift, const uint16_t *scale, size_t mod_stride,
                                                    float eps, uint16_t *y, dfa_error *err) {
    if (mod_stride < (size_t)N) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "ln_modulate: stride %zu < %d", mod_stride, N);
    if (B <= 0 || T <= 0 || N <= 0) return DFA_OK;
    norm_kernel<<<B * T, norm_threads(N), 0, ops->stream>>>(x, N, T, shift, scale, eps, 2, mod_stride, y);
    DFA_CUDA_LAUNCH_TRY(err);
    return DFA_OK;
}

extern "C" dfa_status dfa_cuops_gate_add_strided(dfa_cuops *ops, uint16_t *resid, int B, int T, int N,
                                                 const uint16_t *gate, size_t gate_stride, const uint16_t *x,
                                                 dfa_error *err) {
    if (gate && gate_stride < (size_t)N) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "gate_add: stride %zu < %d", gate_stride, N);
    size_t total = (size_t)B * T * N;
    if (!total) return DFA_OK;
    gate_add_kernel<<<grid_for(total), 256, 0, ops->stream>>>(resid, total, T, N, gate, gate_stride, x);
    DFA_CUDA_LAUNCH_TRY(err);
    return DFA_OK;
}

__global__ void act_kernel(uint16_t *x, size_t n, int act) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float v = ld(x, i);
        if (act == DFA_ACT_SILU)
            v = v / (1.0f + __expf(-v));
        else if (act == DFA_ACT_GELU_TANH)
            v = 0.5f * v * (1.0f + tanhf(0.79788456080286536f * (v + 0.044715f * v * v * v)));
        else
            v = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
        st(x, i, v);
    }
}

extern "C" dfa_status dfa_cuops_act(dfa_cuops *ops, uint16_t *x, size_t n, dfa_act_kind act, dfa_error *err) {
    if (act != DFA_ACT_SILU && act != DFA_ACT_GELU_TANH && act != DFA_ACT_GELU_ERF)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "unknown activation %d", (int)act);
    if (!n) return DFA_OK;
    act_kernel<<<grid_for(n), 256, 0, ops->stream>>>(x, n, (int)act);
    DFA_CUDA_LAUNCH_TRY(err);
    return DFA_OK;
}

__global__ void rope_kernel(uint16_t *x, size_t pairs, int T, int H, int D, const float *cos_t,
                            const float *sin_t) {
    int half = D / 2;
    for (size_t p = blockIdx.x * (size_t)blockDim.x + threadIdx.x; p < pairs; p += (size_t)gridDim.x * blockDim.x) {
        int i = (int)(p % half);
        size_t tok = p / ((size_t)half * H); /* b * T + t */
        int t = (int)(tok % T);
        float c = cos_t[(size_t)t * half + i], s = sin_t[(size_t)t * half + i];
        float a = ld(x, 2 * p), b = ld(x, 2 * p + 1);
        st(x, 2 * p, a * c - b * s);
        st(x, 2 * p + 1, b * c + a * s);
    }
}

extern "C" dfa_status dfa_cuops_rope(dfa_cuops *ops, uint16_t *x, int B, int T, int H, int D, const float *cos_t,
                                     const float *sin_t, dfa_error *err) {
    if (D % 2) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "rope: head dim %d is odd", D);
    size_t pairs = (size_t)B * T * H * (D / 2);
    if (!pairs) return DFA_OK;
    rope_kernel<<<grid_for(pairs), 256, 0, ops->stream>>>(x, pairs, T, H, D, cos_t, sin_t);
    DFA_CUDA_LAUNCH_TRY(err);
    return DFA_OK;
}

__global__ void f32_to_bf16_kernel(const float *s, uint16_t *d, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        st(d, i, s[i]);
}
__global__ void bf16_to_f32_kernel(const uint16_t *s, float *d, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        d[i] = ld(s, i);
}

extern "C" dfa_status dfa_cuops_f32_to_bf16(dfa_cuops *ops, const float *src, uint16_t *dst, size_t n,
                                            dfa_error *err) {
    if (!n) return DFA_OK;
    f32_to_bf16_kernel<<<grid_for(n), 256, 0, ops->stream>>>(src, dst, n);
    DFA_CUDA_LAUNCH_TRY(err);
    return DFA_OK;
}

extern "C" dfa_status dfa_cuops_bf16_to_f32(dfa_cuops *ops, const uint16_t *src, float *dst, size_t n,
                                            dfa_error *err) {
    if (!n) return DFA_OK;
    bf16_to_f32_kernel<<<grid_for(n), 256, 0, ops->stream>>>(src, dst, n);
    DFA_CUDA_LAUNCH_TRY(err);
    return DFA_OK;
}

/* ---- latents: patchify / unpatchify (SD3), the sampler's CFG + Euler step ---- */

__global__ void patchify_kernel(const float *x, int B, int bcast, int C, int H, int W, int p, uint16_t *y) {
    const int hp = H / p, wp = W / p, K = C * p * p;
    const size_t total = (size_t)B * hp * wp * K;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        const size_t r = e / K;
        const int k = (int)(e % K), kx = k % p, ky = (k / p) % p, c = k / (p * p);
        const int j = (int)(r % wp), i = (int)((r / wp) % hp), b = (int)(r / ((size_t)wp * hp));
        const size_t src = (((size_t)(bcast ? 0 : b) * C + c) * H + (size_t)i * p + ky) * W + (size_t)j * p + kx;
        st(y, e, x[src]);
    }
}

__global__ void unpatchify_kernel(const uint16_t *y, int B, int O, int H, int W, int p, float *out) {
    const int hp = H / p, wp = W / p, PO = p * p * O;
    const size_t total = (size_t)B * O * H * W;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        const int xx = (int)(e % W), yy = (int)((e / W) % H), ch = (int)((e / ((size_t)W * H)) % O);
        const size_t b = e / ((size_t)W * H * O);
        const int i = yy / p, py = yy % p, j = xx / p, px = xx % p;
        out[e] = ld(y, ((b * hp + i) * wp + j) * PO + (size_t)(py * p + px) * O + ch);
    }
}

__global__ void flow_step_kernel(float *x, const float *vel, size_t n, int cfg, float scale, float dt) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float v = vel[i];
        if (cfg) v = __fadd_rn(v, __fmul_rn(scale, __fsub_rn(vel[n + i], v)));
        x[i] = __fadd_rn(x[i], __fmul_rn(dt, v));
    }
}

extern "C" dfa_status dfa_cuops_patchify(dfa_cuops *ops, const float *x, int B, int bcast, int C, int H, int W, int p,
                                         uint16_t *y, dfa_error *err) {
    if (B <= 0 || C <= 0 || p <= 0 || H % p || W % p || H <= 0 || W <= 0)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "patchify: B %d C %d %dx%d patch %d", B, C, H, W, p);
    patchify_kernel<<<grid_for((size_t)B * C * H * W), 256, 0, ops->stream>>>(x, B, bcast, C, H, W, p, y);
    DFA_CUDA_LAUNCH_TRY(err);
    return DFA_OK;
}

extern "C" dfa_status dfa_cuops_unpatchify(dfa_cuops *ops, const uint16_t *y, int B, int O, int H, int W, int p,
                                           float *out, dfa_error *err) {
    if (B <= 0 || O <= 0 || p <= 0 || H % p || W % p || H <= 0 || W <= 0)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "unpatchify: B %d O %d %dx%d patch %d", B, O, H, W, p);
    unpatchify_kernel<<<grid_for((size_t)B * O * H * W), 256, 0, ops->stream>>>(y, B, O, H, W, p, out);
    DFA_CUDA_LAUNCH_TRY(err);
    return DFA_OK;
}

extern "C" dfa_status dfa_cuops_flow_step(dfa_cuops *ops, float *x, const float *vel, size_t n, int cfg, float scale,
                                          float dt, dfa_error *err) {
    if (!n) return DFA_OK;
    flow_step_kernel<<<grid_for(n), 256, 0, ops->stream>>>(x, vel, n, cfg, scale, dt);
    DFA_CUDA_LAUNCH_TRY(err);
    return DFA_OK;
}

/* ---- batched GEMM (cross-attention) ----
 * Row-major C[M,N] = A[M,K] . op(B) is column-major C'(N x M) = op'(B') . A'(K x M): B' is
 * B^T stored K x N (trans_b: B [N, K], ld ldb, op T) or N x K (B [K, N], ld ldb, op N). */
extern "C" dfa_status dfa_cuops_gemm_batched(dfa_cuops *ops, int trans_b, int M, int N, int K, float alpha,
                                             const uint16_t *A, int lda, long long sA, const uint16_t *B, int ldb,
                                             long long sB, void *C, int ldc, long long sC, int c_f32, int batch,
                                             dfa_error *err) {
    if (M <= 0 || N <= 0 || K <= 0 || batch <= 0 || lda < K || ldc < N || ldb < (trans_b ? K : N))
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "gemm_batched: bad sizes M=%d N=%d K=%d batch %d (ld %d %d %d)", M, N, K,
                 batch, lda, ldb, ldc);
    cublasLtMatmulDesc_t desc = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, lc = NULL;
    dfa_status s = DFA_OK;
    cublasStatus_t st;
    cublasOperation_t opA = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, opN = CUBLAS_OP_N;
    float beta = 0.0f;
    int32_t bc = batch;
    int64_t sa = sB, sb = sA, sc = sC; /* cuBLAS's A is our B */
    const cudaDataType_t ct = c_f32 ? CUDA_R_32F : CUDA_R_16BF;
#define STEP(call)                                                                                       \
    do {                                                                                                 \
        if (s == DFA_OK && (st = (call)) != CUBLAS_STATUS_SUCCESS)                                       \
            s = dfa_error_set(err, DFA_ERR_CUDA, __FILE__, __LINE__,                                     \
                              "%s failed: cublas status %d (batched M=%d N=%d K=%d x %d)", #call, (int)st, M, N, K, \
                              batch);                                                                    \
    } while (0)
    STEP(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    STEP(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &opA, sizeof opA));
    STEP(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &opN, sizeof opN));
    if (trans_b)
        STEP(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, K, N, ldb));
    else
        STEP(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, N, K, ldb));
    STEP(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, K, M, lda));
    STEP(cublasLtMatrixLayoutCreate(&lc, ct, N, M, ldc));
    STEP(cublasLtMatrixLayoutSetAttribute(la, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof bc));
    STEP(cublasLtMatrixLayoutSetAttribute(lb, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof bc));
    STEP(cublasLtMatrixLayoutSetAttribute(lc, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof bc));
    STEP(cublasLtMatrixLayoutSetAttribute(la, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &sa, sizeof sa));
    STEP(cublasLtMatrixLayoutSetAttribute(lb, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &sb, sizeof sb));
    STEP(cublasLtMatrixLayoutSetAttribute(lc, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &sc, sizeof sc));
#undef STEP
    const size_t ce = c_f32 ? 4 : 2;
    const uint32_t al[3] = {align_of(B, sB * 2), align_of(A, sA * 2), align_of(C, sC * (long long)ce)};
    const long long key[ALGO_KEY] = {1, M, N, K, trans_b, lda, ldb, ldc, c_f32, batch, sA, sB, sC, al[0], al[1], al[2]};
    char what[96];
    snprintf(what, sizeof what, "batched M=%d N=%d K=%d x %d", M, N, K, batch);
    return lt_matmul_finish(ops, s, desc, la, lb, lc, al, key, alpha, B, A, beta, C, what, err);
}

/* one warp per row: max, sum of exp, normalised bf16 out */
__global__ void softmax_bias_kernel(const float *s, int rows, int L, int ld, const float *bias, uint16_t *p) {
    const int warp = (int)((blockIdx.x * (size_t)blockDim.x + threadIdx.x) >> 5), lane = threadIdx.x & 31;
    if (warp >= rows) return;
    const float *sr = s + (size_t)warp * ld;
    uint16_t *pr = p + (size_t)warp * ld;
    float mx = -INFINITY;
    for (int j = lane; j < L; j += 32) mx = fmaxf(mx, sr[j] + (bias ? bias[j] : 0.0f));
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    float sum = 0.0f;
    for (int j = lane; j < L; j += 32) sum += __expf(sr[j] + (bias ? bias[j] : 0.0f) - mx);
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    const float inv = 1.0f / sum;
    for (int j = lane; j < L; j += 32) st(pr, j, __expf(sr[j] + (bias ? bias[j] : 0.0f) - mx) * inv);
}

extern "C" dfa_status dfa_cuops_softmax_bias(dfa_cuops *ops, const float *s, int rows, int L, int ld,
                                             const float *bias, uint16_t *p, dfa_error *err) {
    if (L <= 0 || ld < L) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "softmax_bias: L %d, ld %d", L, ld);
    if (rows <= 0) return DFA_OK;
    const unsigned blocks = (unsigned)(((size_t)rows + 7) / 8); /* 8 warps of 256 threads */
    softmax_bias_kernel<<<blocks, 256, 0, ops->stream>>>(s, rows, L, ld, bias, p);
    DFA_CUDA_LAUNCH_TRY(err);
    return DFA_OK;
}

/* i indexes the destination */
__global__ void heads_permute_kernel(const uint16_t *x, size_t total, int T, int H, int D, int to_heads, uint16_t *y) {
    const unsigned short *xs = reinterpret_cast<const unsigned short *>(x);
    unsigned short *ys = reinterpret_cast<unsigned short *>(y);
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const size_t d = i % D, r = i / D; /* r: destination row */
        size_t b, t, h;
        if (to_heads) { /* destination [B, H, T, D] */
            t = r % T;
            h = (r / T) % H;
            b = r / ((size_t)T * H);
            ys[i] = xs[((b * T + t) * H + h) * D + d];
        } else { /* destination [B, T, H, D] */
            h = r % H;
            t = (r / H) % T;
            b = r / ((size_t)T * H);
            ys[i] = xs[((b * H + h) * T + t) * D + d];
        }
    }
}

extern "C" dfa_status dfa_cuops_heads_permute(dfa_cuops *ops, const uint16_t *x, int B, int T, int H, int D,
                                              int to_heads, uint16_t *y, dfa_error *err) {
    const size_t total = (size_t)B * T * H * D;
    if (!total) return DFA_OK;
    heads_permute_kernel<<<grid_for(total), 256, 0, ops->stream>>>(x, total, T, H, D, to_heads, y);
    DFA_CUDA_LAUNCH_TRY(err);
    return DFA_OK;
}

__global__ void add_row_kernel(const uint16_t *a, size_t total, int N, const uint16_t *row, uint16_t *y) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x)
        st(y, i, ld(a, i) + ld(row, i % N));
}

extern "C" dfa_status dfa_cuops_add_row(dfa_cuops *ops, const uint16_t *a, int B, int N, const uint16_t *row,
                                        uint16_t *y, dfa_error *err) {
    const size_t total = (size_t)B * N;
    if (!total) return DFA_OK;
    add_row_kernel<<<grid_for(total), 256, 0, ops->stream>>>(a, total, N, row, y);
    DFA_CUDA_LAUNCH_TRY(err);
    return DFA_OK;
}

extern "C" void dfa_cuops_set_gemm_timer(dfa_cuops *ops, double *secs) { ops->gemm_secs = secs; }
