/* attn_gpu.c - dfa_attn_run_heads() for CUDA tensors: the per-head methods, refreshes, ASC and
 * cache stores mapped onto the fused kernel of src/attn/cuda/attn_cuda.h, with exactly the
 * semantics of the CPU reference (attn_cpu.c):
 *   1. one launch over the computed batch (under ASC: the conditional half, by pointer offset):
 *      FULL / ARROW / ARROW_RS (+ res_cache) / CACHE (from out_cache) per head;
 *   2. refresh heads (FULL with store_res): a second launch computes ARROW(res_window) for them
 *      straight into their res_cache slices (every other head is a CACHE item copying its own
 *      res_cache slice onto itself, i.e. nothing changes), then res = out - res in place;
 *   3. ASC: the computed half of out is copied to the other half (one device copy), refreshed
 *      residual slices likewise;
 *   4. store_out heads: their slices of out go to out_cache.
 * Everything is enqueued on the context's stream; nothing synchronises except building a work
 * list (dfa_attn_cuda_plan_build uploads it) and freeing one: the plan-driven path prepares every
 * distinct list of the plan at once before its loop (dfa_attn_gpu_lists_prepare: one allocation,
 * one copy) and passes them in gpu_lists, so that its launches only look them up. */
#include <stdlib.h>

#include "attn/attn.h"
#include "attn/attn_int.h"
#include "attn/attn_prep.h"
#include "core/ctx.h"

#ifdef DFA_HAVE_CUDA
#include "attn/cuda/attn_cuda.h"

void dfa_attn_gpu_list_free(void *list) {
    dfa_attn_cuda_plan_free(list);
}

dfa_status dfa_attn_gpu_lists_prepare(dfa_ctx *ctx, const dfa_attn_prep *pp, void **set, void **lists,
                                      size_t *bytes) {
    *set = NULL;
    *bytes = 0;
    if (!ctx->cuda) DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED, "attention prepare: a context without CUDA");
    if (pp->n_lists == 0) return DFA_OK;
    dfa_attn_cuda_plan_set *ps = NULL;
    DFA_TRY(dfa_attn_cuda_plan_set_build(&ps, pp->n_lists, pp->layout, pp->n_heads, pp->method, pp->window,
                                         DFA_ATTN_CUDA_V_DEFAULT, dfa_cuda_stream(ctx->cuda), &ctx->err));
    for (int i = 0; i < pp->n_lists; i++) lists[i] = dfa_attn_cuda_plan_set_get(ps, i);
    *set = ps;
    *bytes = dfa_attn_cuda_plan_set_bytes(ps);
    return DFA_OK;
}

void dfa_attn_gpu_set_free(void *set) {
    dfa_attn_cuda_plan_set_free(set);
}

/* Build the work list (or take it from *slot), launch, keep it in *slot or free it. */
static dfa_status launch(dfa_ctx *ctx, const dfa_attn_layout *layout, int H, const int *method, const int *window,
                         const dfa_attn_cuda_args *a, void **slot) {
    dfa_attn_cuda_plan *cp = slot ? *slot : NULL;
    if (!cp) {
        DFA_TRY(dfa_attn_cuda_plan_build(&cp, layout, H, method, window, DFA_ATTN_CUDA_V_DEFAULT, a->stream,
                                         &ctx->err));
        if (slot) *slot = cp;
    }
    dfa_status s = dfa_attn_cuda_run(cp, a, &ctx->err);
    if (!slot) dfa_attn_cuda_plan_free(cp);
    return s;
}

dfa_status dfa_attn_run_heads_cuda(dfa_ctx *ctx, const dfa_attn_layout *layout, const dfa_tensor *q,
                                   const dfa_tensor *k, const dfa_tensor *v, dfa_tensor *out,
                                   const dfa_attn_head_exec *heads, void *out_cache, void *res_cache, int asc,
                                   int cond_half, void **gpu_lists) {
    if (!ctx->cuda)
        DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED, "attention: CUDA tensors on a context without CUDA (backend CPU)");
    if (q->dtype != DFA_BF16 && q->dtype != DFA_F16)
        DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED, "attention on CUDA takes bf16 or f16 tensors, got %s",
                     dfa_dtype_name(q->dtype));
    const int B = (int)q->shape[0], N = (int)q->shape[1], H = (int)q->shape[2], D = (int)q->shape[3];
    if (H > 256) DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED, "attention on CUDA: %d heads, at most 256", H);
    const size_t es = dfa_dtype_size(q->dtype), half_bytes = (size_t)(B / 2) * N * H * D * es;
    const size_t off = asc ? (size_t)cond_half * half_bytes : 0; /* byte offset of the computed half */
    const int nb = asc ? B / 2 : B;
    void *stream = dfa_cuda_stream(ctx->cuda);
    int method[256], window[256], refresh = 0, store = 0;
    unsigned char res_mask[256], out_mask[256];
    dfa_attn_launch_heads(heads, H, 0, method, window);
    for (int h = 0; h < H; h++) {
        res_mask[h] = (unsigned char)(heads[h].store_res != 0);
        out_mask[h] = (unsigned char)(heads[h].store_out != 0);
        refresh |= res_mask[h];
        store |= out_mask[h];
    }
#define AT(p, o) ((p) ? (void *)((char *)(p) + (o)) : NULL)
    dfa_attn_cuda_args a = {q->dtype == DFA_BF16 ? DFA_ATTN_CUDA_BF16 : DFA_ATTN_CUDA_F16,
                            nb,
                            D,
                            AT(q->data, off),
                            AT(k->data, off),
                            AT(v->data, off),
                            AT(out->data, off),
                            AT(out_cache, off),
                            AT(res_cache, off),
                            0.0f,
                            stream};
    DFA_TRY(launch(ctx, layout, H, method, window, &a, gpu_lists ? &gpu_lists[0] : NULL));
    if (refresh) {
        int m2[256], w2[256];
        dfa_attn_launch_heads(heads, H, 1, m2, w2);
        dfa_attn_cuda_args r = a;
        r.out = AT(res_cache, off);   /* ARROW of refresh heads into their residual slices */
        r.cache = AT(res_cache, off); /* other heads: their own slice copied onto itself */
        r.resid = NULL;
        DFA_TRY(launch(ctx, layout, H, m2, w2, &r, gpu_lists ? &gpu_lists[1] : NULL));
        DFA_TRY(dfa_attn_cuda_residual(AT(res_cache, off), AT(out->data, off), AT(res_cache, off), a.dtype, nb, N, H,
                                       D, res_mask, stream, &ctx->err));
    }
    if (asc) {
        const size_t uoff = (size_t)(1 - cond_half) * half_bytes;
        DFA_TRY(dfa_cuda_d2d(ctx->cuda, AT(out->data, uoff), AT(out->data, off), half_bytes, &ctx->err));
        if (refresh)
            DFA_TRY(dfa_attn_cuda_copy_heads(AT(res_cache, uoff), AT(res_cache, off), a.dtype, nb, N, H, D, res_mask,
                                             stream, &ctx->err));
    }
    if (store)
        DFA_TRY(dfa_attn_cuda_copy_heads(out_cache, out->data, a.dtype, B, N, H, D, out_mask, stream, &ctx->err));
#undef AT
    return DFA_OK;
}

#else

void dfa_attn_gpu_list_free(void *list) {
    (void)list;
}

dfa_status dfa_attn_gpu_lists_prepare(dfa_ctx *ctx, const dfa_attn_prep *pp, void **set, void **lists,
                                      size_t *bytes) {
    (void)pp, (void)lists;
    *set = NULL;
    *bytes = 0;
    DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED, "attention prepare: this build has no CUDA (DFA_CUDA off or no nvcc)");
}

void dfa_attn_gpu_set_free(void *set) {
    (void)set;
}

dfa_status dfa_attn_run_heads_cuda(dfa_ctx *ctx, const dfa_attn_layout *layout, const dfa_tensor *q,
                                   const dfa_tensor *k, const dfa_tensor *v, dfa_tensor *out,
                                   const dfa_attn_head_exec *heads, void *out_cache, void *res_cache, int asc,
                                   int cond_half, void **gpu_lists) {
    (void)layout, (void)q, (void)k, (void)v, (void)out, (void)heads, (void)out_cache, (void)res_cache, (void)asc,
        (void)cond_half, (void)gpu_lists;
    DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED, "attention: CUDA tensors, but this build has no CUDA (DFA_CUDA off or no nvcc)");
}

#endif
