/* search_cuda_be.c - the CUDA backend of the plan searches (search.h): bf16 device buffers owned
 * by the context, attention by dfa_attn_run_heads on CUDA tensors, compose and metric kernels in
 * src/plan/cuda/search_cuda.cu. Without CUDA in the build it reports DFA_ERR_UNSUPPORTED. */
#include <string.h>

#include "core/ctx.h"
#include "plan/metrics.h"
#include "plan/search.h"

#ifdef DFA_HAVE_CUDA
#include "plan/cuda/search_cuda.h"

static dfa_status scratch(dfa_search_cuda *s, size_t n) {
    if (n <= s->cap) return DFA_OK;
    dfa_ctx_mem_release(s->ctx, s->dev);
    dfa_ctx_mem_release(s->ctx, s->host);
    s->dev = s->host = NULL;
    s->cap = 0;
    DFA_TRY(dfa_ctx_mem_alloc(s->ctx, DFA_DEV_CUDA, n * sizeof(double), "search metric scratch", (void **)&s->dev));
    DFA_TRY(dfa_ctx_mem_alloc(s->ctx, DFA_DEV_CPU, n * sizeof(double), "search metric scratch", (void **)&s->host));
    s->cap = n;
    return DFA_OK;
}

static dfa_status cu_alloc(void *user, size_t bytes, const char *what, void **out) {
    dfa_search_cuda *s = user;
    DFA_TRY(dfa_ctx_mem_alloc(s->ctx, DFA_DEV_CUDA, bytes, what, out));
    return dfa_cuda_memset(s->ctx->cuda, *out, 0, bytes, &s->ctx->err);
}

static void cu_release(void *user, void *p) {
    dfa_search_cuda *s = user;
    dfa_ctx_mem_release(s->ctx, p);
}

static dfa_status cu_attn(void *user, const dfa_attn_layout *l, int n_rows, int n_heads, int head_dim, int window,
                          const void *q, const void *k, const void *v, void *out) {
    dfa_search_cuda *s = user;
    enum { MAXH = 256 };
    if (n_heads > MAXH)
        DFA_CTX_FAIL(s->ctx, DFA_ERR_INVALID_ARG, "search attention: %d heads, at most %d", n_heads, MAXH);
    dfa_attn_head_exec heads[MAXH];
    for (int h = 0; h < n_heads; h++)
        heads[h] = (dfa_attn_head_exec){.method = window < 0 ? DFA_ATTN_FULL : DFA_ATTN_ARROW, .window = window};
    dfa_tensor tq = {DFA_BF16, DFA_DEV_CUDA, 4, {n_rows, dfa_layout_tokens(l), n_heads, head_dim}, (void *)q};
    dfa_tensor tk = tq, tv = tq, to = tq;
    tk.data = (void *)k, tv.data = (void *)v, to.data = out;
    return dfa_attn_run_heads(s->ctx, l, &tq, &tk, &tv, &to, heads, NULL, NULL, 0, 0);
}

static dfa_status cu_head_op(void *user, const dfa_search_shape *sh, int head, int r0, int r1, void *dst, const void *a,
                             const void *b, int sign) {
    dfa_search_cuda *s = user;
    return dfa_search_cuda_head_op(dfa_cuda_stream(s->ctx->cuda), sh->tokens, sh->heads, sh->head_dim, head, r0, r1,
                                   dst, a, b, sign, &s->ctx->err);
}

static dfa_status cu_copy(void *user, void *dst, const void *src, size_t n) {
    dfa_search_cuda *s = user;
    return dfa_cuda_d2d(s->ctx->cuda, dst, src, n * 2, &s->ctx->err);
}

static dfa_status cu_rse(void *user, const dfa_search_shape *sh, const void *ref, const void *approx, double *out) {
    dfa_search_cuda *s = user;
    size_t n = (size_t)sh->rows * sh->heads;
    DFA_TRY(scratch(s, n));
    DFA_TRY(dfa_search_cuda_rse(dfa_cuda_stream(s->ctx->cuda), sh->rows, sh->tokens, sh->heads, sh->head_dim, ref,
                                approx, s->dev, &s->ctx->err));
    return dfa_cuda_d2h(s->ctx->cuda, out, s->dev, n * sizeof(double), &s->ctx->err);
}

static dfa_status cu_mrae(void *user, const void *ref, const void *approx, size_t n, double *out) {
    dfa_search_cuda *s = user;
    int blocks = (int)((n + 255) / 256 < 1024 ? (n + 255) / 256 : 1024);
    if (blocks < 1) blocks = 1;
    DFA_TRY(scratch(s, (size_t)blocks));
    DFA_TRY(dfa_search_cuda_mrae(dfa_cuda_stream(s->ctx->cuda), ref, approx, n, DFA_MRAE_EPS, s->dev, blocks,
                                 &s->ctx->err));
    DFA_TRY(dfa_cuda_d2h(s->ctx->cuda, s->host, s->dev, (size_t)blocks * sizeof(double), &s->ctx->err));
    double sum = 0;
    for (int i = 0; i < blocks; i++) sum += s->host[i];
    *out = n ? sum / (double)n : 0.0;
    return DFA_OK;
}

dfa_status dfa_search_backend_cuda(dfa_ctx *ctx, dfa_search_cuda *state, dfa_search_backend *b) {
    memset(state, 0, sizeof *state);
    memset(b, 0, sizeof *b);
    if (!ctx->cuda)
        DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED, "search: the CUDA backend needs a CUDA context (backend CPU here)");
    state->ctx = ctx;
    *b = (dfa_search_backend){state, 2, cu_alloc, cu_release, cu_attn, cu_head_op, cu_copy, cu_rse, cu_mrae};
    return DFA_OK;
}

void dfa_search_cuda_free(dfa_search_cuda *state) {
    if (!state->ctx) return;
    dfa_ctx_mem_release(state->ctx, state->dev);
    dfa_ctx_mem_release(state->ctx, state->host);
    memset(state, 0, sizeof *state);
}

#else

dfa_status dfa_search_backend_cuda(dfa_ctx *ctx, dfa_search_cuda *state, dfa_search_backend *b) {
    memset(state, 0, sizeof *state);
    memset(b, 0, sizeof *b);
    DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED, "search: this build has no CUDA (the CUDA backend is unavailable)");
}

void dfa_search_cuda_free(dfa_search_cuda *state) {
    memset(state, 0, sizeof *state);
}

#endif
