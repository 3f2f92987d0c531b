/* attn_cuda_heads.cu - dfa_attn_run_heads() semantics (attn.h) on the GPU: the layer launch,
 * the residual refresh (store_res), ASC and store_out, plus the memo of work lists. */
#include <stdlib.h>
#include <string.h>

#include "attn/cuda/attn_cuda_dev.cuh"
#include "core/cuda_check.h"

namespace {

/* A per-head view of a [.., N, .., D] tensor: element (b, n, d) of head h at
 * ptr[h] + b * bstride + n * tstride + d (elements); ptr[h] NULL = head not selected. */
struct hview {
    const void *ptr[ACU_MAX_HEADS];
    long long bstride, tstride;
};

/* dst = a (sub == 0) or a - b, heads selected by dst.ptr, batch elements [0, nb), 8 elements
 * (16 bytes) a thread. grid.y = head. */
template <typename T>
__global__ void head_op_kernel(const __grid_constant__ hview dst, const __grid_constant__ hview a,
                               const __grid_constant__ hview b, int sub, int nb, int n_tok, int dvec) {
    const int h = blockIdx.y;
    if (!dst.ptr[h]) return;
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)nb * n_tok * dvec) return;
    const int c = (int)(i % dvec);
    const long long t = i / dvec;
    const int n = (int)(t % n_tok), bb = (int)(t / n_tok);
    auto at = [&](const hview &v) { return (long long)bb * v.bstride + (long long)n * v.tstride + c * 8; };
    uint4 x = *reinterpret_cast<const uint4 *>(reinterpret_cast<const T *>(a.ptr[h]) + at(a));
    if (sub) {
        const uint4 y = *reinterpret_cast<const uint4 *>(reinterpret_cast<const T *>(b.ptr[h]) + at(b));
        uint32_t *px = reinterpret_cast<uint32_t *>(&x);
        const uint32_t *py = reinterpret_cast<const uint32_t *>(&y);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            float2 u = acu_pack<T>::unpack(px[j]), w = acu_pack<T>::unpack(py[j]);
            px[j] = acu_pack<T>::two(u.x - w.x, u.y - w.y);
        }
    }
    *reinterpret_cast<uint4 *>(const_cast<T *>(reinterpret_cast<const T *>(dst.ptr[h])) + at(dst)) = x;
}

dfa_status head_op(const hview &dst, const hview &a, const hview *b, int dtype, int nb, int n_tok, int n_heads,
                   int head_dim, cudaStream_t st, dfa_error *err) {
    int any = 0;
    for (int h = 0; h < n_heads; h++) any |= dst.ptr[h] != NULL;
    if (!any || nb < 1) return DFA_OK;
    const int dvec = head_dim / 8;
    const long long n = (long long)nb * n_tok * dvec;
    const dim3 grid((unsigned)((n + 255) / 256), (unsigned)n_heads);
    hview none;
    memset(&none, 0, sizeof none);
    const hview &bb = b ? *b : none;
    if (dtype == DFA_ATTN_CUDA_BF16)
        head_op_kernel<__nv_bfloat16><<<grid, 256, 0, st>>>(dst, a, bb, b != NULL, nb, n_tok, dvec);
    else
        head_op_kernel<__half><<<grid, 256, 0, st>>>(dst, a, bb, b != NULL, nb, n_tok, dvec);
    DFA_CUDA_LAUNCH_TRY(err);
    return DFA_OK;
}

/* view of head h of a [B, N, H, D] tensor, from batch element b0 */
hview view_bnhd(const void *base, int b0, int n_tok, int n_heads, int D, const unsigned char *sel) {
    hview v;
    memset(&v, 0, sizeof v);
    v.bstride = (long long)n_tok * n_heads * D;
    v.tstride = (long long)n_heads * D;
    for (int h = 0; h < n_heads; h++)
        if (!sel || sel[h]) v.ptr[h] = static_cast<const uint16_t *>(base) + b0 * v.bstride + (long long)h * D;
    return v;
}
/* view of per-head [B, N, D] buffers, from batch element b0 */
hview view_bnd(void *const *bufs, int b0, int n_tok, int n_heads, int D, const unsigned char *sel) {
    hview v;
    memset(&v, 0, sizeof v);
    v.bstride = (long long)n_tok * D;
    v.tstride = D;
    for (int h = 0; h < n_heads; h++)
        if ((!sel || sel[h]) && bufs[h]) v.ptr[h] = static_cast<const uint16_t *>(bufs[h]) + b0 * v.bstride;
    return v;
}

} // namespace

/* ---- the memo of work lists ---- */

enum { MEMO_SLOTS = 64 };

struct memo_entry {
    dfa_attn_layout layout;
    int n_heads;
    int method[ACU_MAX_HEADS], window[ACU_MAX_HEADS];
    dfa_attn_cuda_plan *plan;
};

struct dfa_attn_cuda_ctx {
    int variant;
    memo_entry memo[MEMO_SLOTS];
    int n_memo, next_evict;
    void *scratch; /* [B, N, H, D] for the ARROW pass of store_res heads */
    size_t scratch_bytes;
};

extern "C" dfa_status dfa_attn_cuda_ctx_new(dfa_attn_cuda_ctx **out, int variant, dfa_error *err) {
    *out = NULL;
    if (variant == DFA_ATTN_CUDA_V_DEFAULT)
        variant = dfa_attn_cuda_variant_ok(DFA_ATTN_CUDA_V_WGMMA) ? DFA_ATTN_CUDA_V_WGMMA : DFA_ATTN_CUDA_V_MMA;
    if (!dfa_attn_cuda_variant_ok(variant))
        DFA_FAIL(err, DFA_ERR_UNSUPPORTED, "attn_cuda: variant %d not available on this device", variant);
    dfa_attn_cuda_ctx *c = (dfa_attn_cuda_ctx *)calloc(1, sizeof *c);
    if (!c) DFA_FAIL(err, DFA_ERR_OOM, "attn_cuda: out of host memory");
    c->variant = variant;
    *out = c;
    return DFA_OK;
}

extern "C" void dfa_attn_cuda_ctx_free(dfa_attn_cuda_ctx *c) {
    if (!c) return;
    for (int i = 0; i < c->n_memo; i++) dfa_attn_cuda_plan_free(c->memo[i].plan);
    if (c->scratch) cudaFree(c->scratch);
    free(c);
}

static dfa_status memo_get(dfa_attn_cuda_ctx *c, const dfa_attn_layout *l, int H, const int *method,
                           const int *window, void *stream, const dfa_attn_cuda_plan **out, dfa_error *err) {
    for (int i = 0; i < c->n_memo; i++) {
        memo_entry *e = &c->memo[i];
        if (e->n_heads == H && !memcmp(&e->layout, l, sizeof *l) && !memcmp(e->method, method, H * sizeof(int)) &&
            !memcmp(e->window, window, H * sizeof(int))) {
            *out = e->plan;
            return DFA_OK;
        }
    }
    dfa_attn_cuda_plan *p;
    DFA_TRY(dfa_attn_cuda_plan_build(&p, l, H, method, window, c->variant, stream, err));
    int slot = c->n_memo < MEMO_SLOTS ? c->n_memo++ : c->next_evict++ % MEMO_SLOTS;
    memo_entry *e = &c->memo[slot];
    if (e->plan) {
        /* the evicted plan may still be read by queued launches on this stream */
        cudaError_t ce = cudaStreamSynchronize((cudaStream_t)stream);
        dfa_attn_cuda_plan_free(e->plan);
        if (ce != cudaSuccess) {
            e->plan = NULL;
            dfa_attn_cuda_plan_free(p);
            DFA_FAIL(err, DFA_ERR_CUDA, "attn_cuda: stream sync before evicting a work list: %s",
                     cudaGetErrorString(ce));
        }
    }
    e->layout = *l;
    e->n_heads = H;
    memcpy(e->method, method, H * sizeof(int));
    memcpy(e->window, window, H * sizeof(int));
    e->plan = p;
    *out = p;
    return DFA_OK;
}

extern "C" dfa_status dfa_attn_cuda_run_heads(dfa_attn_cuda_ctx *c, const dfa_attn_layout *layout, int dtype,
                                              int batch, int n_heads, int head_dim, const void *q, const void *k,
                                              const void *v, void *out, const dfa_attn_head_exec *heads, int asc,
                                              int cond_half, void *stream, dfa_error *err) {
    DFA_TRY(acu_check_common(dtype, batch, head_dim, err));
    if (n_heads < 1 || n_heads > ACU_MAX_HEADS)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda: n_heads %d (1..%d)", n_heads, ACU_MAX_HEADS);
    if (asc && (batch % 2 != 0 || (cond_half != 0 && cond_half != 1)))
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda: ASC needs an even batch and cond_half 0/1 (B=%d, %d)", batch,
                 cond_half);
    const int H = n_heads, D = head_dim, N = dfa_layout_tokens(layout);
    const int nb = asc ? batch / 2 : batch, b0 = asc ? cond_half * nb : 0;
    cudaStream_t st = (cudaStream_t)stream;
    int method[ACU_MAX_HEADS], window[ACU_MAX_HEADS];
    unsigned char sel_res[ACU_MAX_HEADS], sel_out[ACU_MAX_HEADS], sel_comp[ACU_MAX_HEADS], sel_cache[ACU_MAX_HEADS];
    void *out_cache[ACU_MAX_HEADS], *res_cache[ACU_MAX_HEADS];
    const void *cache_in[ACU_MAX_HEADS], *res_in[ACU_MAX_HEADS];
    int any_res = 0;
    const size_t half_bnd = (size_t)b0 * N * D; /* elements to the first computed batch element */
    for (int h = 0; h < H; h++) {
        const dfa_attn_head_exec *e = &heads[h];
        if (e->method < 0 || e->method >= DFA_ATTN_METHOD_COUNT)
            DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda: head %d method %d", h, e->method);
        if (e->store_res && (e->method != DFA_ATTN_FULL || !e->res_cache))
            DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda: head %d store_res needs FULL and a residual buffer", h);
        if (e->store_out && (e->method == DFA_ATTN_CACHE || !e->out_cache))
            DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda: head %d store_out needs a computed head and a buffer", h);
        method[h] = e->method;
        window[h] = (e->method == DFA_ATTN_ARROW || e->method == DFA_ATTN_ARROW_RS) ? e->window : -1;
        sel_res[h] = e->store_res != 0;
        sel_out[h] = e->store_out != 0;
        sel_comp[h] = e->method != DFA_ATTN_CACHE;
        sel_cache[h] = e->method == DFA_ATTN_CACHE;
        any_res |= e->store_res != 0;
        out_cache[h] = e->out_cache;
        res_cache[h] = e->res_cache;
        cache_in[h] = e->out_cache ? static_cast<const uint16_t *>(e->out_cache) + half_bnd : NULL;
        res_in[h] = e->res_cache ? static_cast<const uint16_t *>(e->res_cache) + half_bnd : NULL;
    }
    const size_t off = (size_t)b0 * N * H * D; /* elements */
    const uint16_t *q16 = static_cast<const uint16_t *>(q), *k16 = static_cast<const uint16_t *>(k),
                   *v16 = static_cast<const uint16_t *>(v);
    uint16_t *o16 = static_cast<uint16_t *>(out);

    /* 1. the layer: every head's method, on the computed batch elements */
    const dfa_attn_cuda_plan *plan;
    DFA_TRY(memo_get(c, layout, H, method, window, stream, &plan, err));
    dfa_attn_cuda_args a = {dtype, nb, D, q16 + off, k16 + off, v16 + off, o16 + off, cache_in, res_in, 0.f, stream};
    DFA_TRY(dfa_attn_cuda_run(plan, &a, err));

    /* 2. residual refresh: W = ARROW(res_window) into scratch, res_cache = O - W */
    if (any_res) {
        int m2[ACU_MAX_HEADS], w2[ACU_MAX_HEADS];
        for (int h = 0; h < H; h++) {
            m2[h] = sel_res[h] ? DFA_ATTN_ARROW : DFA_ATTN_CUDA_NONE;
            w2[h] = sel_res[h] ? heads[h].res_window : -1;
        }
        const size_t need = (size_t)batch * N * H * D * 2;
        if (c->scratch_bytes < need) {
            DFA_CUDA_TRY(err, cudaStreamSynchronize(st)); /* the old scratch may be in use */
            if (c->scratch) cudaFree(c->scratch);
            c->scratch = NULL;
            c->scratch_bytes = 0;
            DFA_CUDA_TRY(err, cudaMalloc(&c->scratch, need));
            c->scratch_bytes = need;
        }
        const dfa_attn_cuda_plan *plan2;
        DFA_TRY(memo_get(c, layout, H, m2, w2, stream, &plan2, err));
        uint16_t *w16 = static_cast<uint16_t *>(c->scratch);
        dfa_attn_cuda_args a2 = {dtype, nb, D, q16 + off, k16 + off, v16 + off, w16 + off, NULL, NULL, 0.f, stream};
        DFA_TRY(dfa_attn_cuda_run(plan2, &a2, err));
        const hview dst = view_bnd(res_cache, b0, N, H, D, sel_res);
        const hview full = view_bnhd(out, b0, N, H, D, sel_res), arrow = view_bnhd(c->scratch, b0, N, H, D, sel_res);
        DFA_TRY(head_op(dst, full, &arrow, dtype, nb, N, H, D, st, err));
    }

    /* 3. ASC: the other half copies the computed one (CACHE heads copy their own cache) */
    if (asc) {
        const int other = (1 - cond_half) * nb;
        DFA_TRY(head_op(view_bnhd(out, other, N, H, D, sel_comp), view_bnhd(out, b0, N, H, D, sel_comp), NULL, dtype,
                        nb, N, H, D, st, err));
        DFA_TRY(head_op(view_bnhd(out, other, N, H, D, sel_cache), view_bnd(out_cache, other, N, H, D, sel_cache),
                        NULL, dtype, nb, N, H, D, st, err));
        if (any_res)
            DFA_TRY(head_op(view_bnd(res_cache, other, N, H, D, sel_res), view_bnd(res_cache, b0, N, H, D, sel_res),
                            NULL, dtype, nb, N, H, D, st, err));
    }

    /* 4. store_out: the heads' outputs (every batch element) into their caches */
    DFA_TRY(head_op(view_bnd(out_cache, 0, N, H, D, sel_out), view_bnhd(out, 0, N, H, D, sel_out), NULL, dtype, batch,
                    N, H, D, st, err));
    return DFA_OK;
}
