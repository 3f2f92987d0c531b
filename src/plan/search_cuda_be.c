/* search_cuda_be.c - the CUDA backend of the plan searches (search.h): bf16 device buffers owned
 * by the context; attention by the fused kernel of src/attn/cuda/attn_cuda.h with one work list
 * per (layout, heads, window) built on first use and kept (building one uploads it synchronously);
 * compose and metric kernels in src/plan/cuda/search_cuda.cu, V2's batched rse_multi / compose
 * included (one metric pass and one transfer per layer, one compose launch). Without CUDA in the
 * build it reports DFA_ERR_UNSUPPORTED. */
#include <string.h>

#include "core/ctx.h"
#include "plan/metrics.h"
#include "plan/search.h"

#ifdef DFA_HAVE_CUDA
#include "attn/cuda/attn_cuda.h"
#include "plan/cuda/search_cuda.h"

#define DFA_SEARCH_CUDA_MAXH 256

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

static int same_layout(const dfa_attn_layout *a, const dfa_attn_layout *b) {
    return a->n_vis == b->n_vis && a->n_text == b->n_text && a->text_first == b->text_first && a->block == b->block &&
           a->band == b->band;
}

/* The work list of (layout, heads, window), built and uploaded on first use only. */
static dfa_status cu_list(dfa_search_cuda *s, const dfa_attn_layout *l, int n_heads, int window,
                          dfa_attn_cuda_plan **out) {
    for (int i = 0; i < s->n_lists; i++)
        if (s->list_heads[i] == n_heads && s->list_window[i] == window && same_layout(&s->list_layout[i], l)) {
            *out = s->list[i];
            return DFA_OK;
        }
    int method[DFA_SEARCH_CUDA_MAXH], win[DFA_SEARCH_CUDA_MAXH];
    for (int h = 0; h < n_heads; h++) method[h] = window < 0 ? DFA_ATTN_FULL : DFA_ATTN_ARROW, win[h] = window;
    dfa_attn_cuda_plan *cp = NULL;
    DFA_TRY(dfa_attn_cuda_plan_build(&cp, l, n_heads, method, win, DFA_ATTN_CUDA_V_DEFAULT, dfa_cuda_stream(s->ctx->cuda),
                                     &s->ctx->err));
    int i = s->n_lists;
    if (i == DFA_SEARCH_CUDA_LISTS) { /* full: replace round robin (the stream is in order, so the
                                         launches that used the old list were enqueued before it is
                                         freed; cudaFree waits for them) */
        i = s->next_evict;
        s->next_evict = (s->next_evict + 1) % DFA_SEARCH_CUDA_LISTS;
        dfa_attn_cuda_plan_free(s->list[i]);
    } else {
        s->n_lists++;
    }
    s->list[i] = cp, s->list_layout[i] = *l, s->list_heads[i] = n_heads, s->list_window[i] = window;
    *out = cp;
    return DFA_OK;
}

static dfa_status cu_attn(void *user, const dfa_attn_layout *l, int n_rows, int n_heads, int head_dim, int window,
                          const void *q, const void *k, const void *v, void *out) {
    dfa_search_cuda *s = user;
    if (n_heads < 1 || n_heads > DFA_SEARCH_CUDA_MAXH || n_rows < 1)
        DFA_CTX_FAIL(s->ctx, DFA_ERR_INVALID_ARG, "search attention: %d heads (1 to %d), %d rows", n_heads,
                     DFA_SEARCH_CUDA_MAXH, n_rows);
    if (dfa_layout_valid(l))
        DFA_CTX_FAIL(s->ctx, DFA_ERR_INVALID_ARG, "search attention: invalid layout (n_vis=%d n_text=%d block=%d)",
                     l->n_vis, l->n_text, l->block);
    dfa_attn_cuda_plan *cp;
    DFA_TRY(cu_list(s, l, n_heads, window < 0 ? -1 : window, &cp));
    dfa_attn_cuda_args a = {DFA_ATTN_CUDA_BF16, n_rows, head_dim, q, k, v, out, NULL, NULL, 0.0f,
                            dfa_cuda_stream(s->ctx->cuda)};
    return dfa_attn_cuda_run(cp, &a, &s->ctx->err);
}

/* The ring plan of (layout, heads, windows), built on first use (round-robin replacement). */
static dfa_status cu_ring(dfa_search_cuda *s, const dfa_attn_layout *l, int n_heads, int n_win, const int *win,
                          dfa_attn_cuda_plan **out) {
    for (int i = 0; i < s->n_rings; i++)
        if (s->ring_heads[i] == n_heads && s->ring_nwin[i] == n_win && same_layout(&s->ring_layout[i], l) &&
            !memcmp(s->ring_win[i], win, sizeof(int) * n_win)) {
            *out = s->ring[i];
            return DFA_OK;
        }
    dfa_attn_cuda_plan *cp = NULL;
    DFA_TRY(dfa_attn_cuda_ring_plan_build(&cp, l, n_heads, n_win, win, dfa_cuda_stream(s->ctx->cuda), &s->ctx->err));
    int i = s->n_rings;
    if (i == DFA_SEARCH_CUDA_RINGS) { /* in-order stream: cudaFree waits for the launches using it */
        i = s->ring_evict;
        s->ring_evict = (s->ring_evict + 1) % DFA_SEARCH_CUDA_RINGS;
        dfa_attn_cuda_plan_free(s->ring[i]);
    } else {
        s->n_rings++;
    }
    s->ring[i] = cp, s->ring_layout[i] = *l, s->ring_heads[i] = n_heads, s->ring_nwin[i] = n_win;
    memcpy(s->ring_win[i], win, sizeof(int) * n_win);
    *out = cp;
    return DFA_OK;
}

/* FULL and every ARROW window: one ring launch + combine (attn_cuda.h) over the distinct windows
 * below the full band, ascending (a window at or past it is FULL: a copy); where the ring path
 * cannot run (no wgmma GPU, head dim outside 64..128, too many windows, the plain band: rings
 * are arrow band distances), one cu_attn each. */
static dfa_status cu_attn_multi(void *user, const dfa_attn_layout *l, int n_rows, int n_heads, int head_dim, int n_win,
                                const int *win, const void *q, const void *k, const void *v, void *full,
                                void *const *arrow) {
    dfa_search_cuda *s = user;
    const int fw = dfa_mask_full_window(l);
    int rw[DFA_ATTN_CUDA_RING_MAX_WIN], n = 0, ok = n_win > 0 && head_dim >= 64 && head_dim <= 128 &&
                                                    l->band == DFA_BAND_ARROW &&
                                                    dfa_attn_cuda_variant_ok(DFA_ATTN_CUDA_V_WGMMA);
    void *ro[DFA_ATTN_CUDA_RING_MAX_WIN];
    for (int i = 0; ok && i < n_win; i++) {
        if (win[i] < 0) ok = 0;
        if (!ok || win[i] >= fw) continue;
        int j = n;
        while (j > 0 && rw[j - 1] > win[i]) j--;
        if (j > 0 && rw[j - 1] == win[i]) ok = 0; /* a repeated window: not the search's case */
        else if (n == DFA_ATTN_CUDA_RING_MAX_WIN) ok = 0;
        else {
            memmove(rw + j + 1, rw + j, sizeof(int) * (n - j));
            memmove(ro + j + 1, ro + j, sizeof(void *) * (n - j));
            rw[j] = win[i], ro[j] = arrow[i], n++;
        }
    }
    if (!ok || n == 0) {
        DFA_TRY(cu_attn(user, l, n_rows, n_heads, head_dim, -1, q, k, v, full));
        for (int i = 0; i < n_win; i++) DFA_TRY(cu_attn(user, l, n_rows, n_heads, head_dim, win[i], q, k, v, arrow[i]));
        return DFA_OK;
    }
    if (n_heads < 1 || n_heads > DFA_SEARCH_CUDA_MAXH || n_rows < 1 || dfa_layout_valid(l))
        DFA_CTX_FAIL(s->ctx, DFA_ERR_INVALID_ARG, "search attention: %d heads (1 to %d), %d rows, layout %s",
                     n_heads, DFA_SEARCH_CUDA_MAXH, n_rows, dfa_layout_valid(l) ? "invalid" : "ok");
    dfa_attn_cuda_plan *cp;
    DFA_TRY(cu_ring(s, l, n_heads, n, rw, &cp));
    const size_t need = dfa_attn_cuda_ring_scratch_bytes(cp, n_rows, head_dim);
    if (need > s->ring_cap) {
        dfa_ctx_mem_release(s->ctx, s->ring_scratch);
        s->ring_scratch = NULL, s->ring_cap = 0;
        DFA_TRY(dfa_ctx_mem_alloc(s->ctx, DFA_DEV_CUDA, need, "search ring scratch", &s->ring_scratch));
        s->ring_cap = need;
    }
    dfa_attn_cuda_args a = {DFA_ATTN_CUDA_BF16, n_rows, head_dim, q, k, v, NULL, NULL, NULL, 0.0f,
                            dfa_cuda_stream(s->ctx->cuda)};
    DFA_TRY(dfa_attn_cuda_ring_run(cp, &a, s->ring_scratch, full, ro, &s->ctx->err));
    const size_t bytes = (size_t)n_rows * dfa_layout_tokens(l) * n_heads * head_dim * 2;
    for (int i = 0; i < n_win; i++)
        if (win[i] >= fw) DFA_TRY(dfa_cuda_d2d(s->ctx->cuda, arrow[i], full, bytes, &s->ctx->err));
    return DFA_OK;
}

static dfa_status cu_head_op(void *user, const dfa_search_shape *sh, int head, int r0, int r1, void *dst, const void *a,
                             const void *b, int sign) {
    dfa_search_cuda *s = user;
    return dfa_search_cuda_head_op(dfa_cuda_stream(s->ctx->cuda), sh->tokens, sh->heads, sh->head_dim, head, r0, r1,
                                   dst, a, b, sign, &s->ctx->err);
}

static dfa_status cu_compose(void *user, const dfa_search_shape *sh, void *dst, const dfa_search_head_src *src) {
    dfa_search_cuda *s = user;
    if (sh->heads > DFA_SEARCH_CUDA_MAXH)
        DFA_CTX_FAIL(s->ctx, DFA_ERR_INVALID_ARG, "search compose: %d heads, at most %d", sh->heads,
                     DFA_SEARCH_CUDA_MAXH);
    const void *a[DFA_SEARCH_CUDA_MAXH], *b[DFA_SEARCH_CUDA_MAXH];
    int sign[DFA_SEARCH_CUDA_MAXH];
    for (int h = 0; h < sh->heads; h++) a[h] = src[h].a, b[h] = src[h].b, sign[h] = src[h].b ? src[h].sign : 0;
    return dfa_search_cuda_compose(dfa_cuda_stream(s->ctx->cuda), sh->rows, sh->tokens, sh->heads, sh->head_dim, dst,
                                   a, b, sign, &s->ctx->err);
}

/* Every candidate's metric in one pass (search_cuda.cu) and one transfer of n x rows x heads doubles. */
static dfa_status cu_rse_multi(void *user, const dfa_search_shape *sh, const void *ref, int n, const void *const *a,
                               const void *const *b, double *out) {
    dfa_search_cuda *s = user;
    if (n <= 0) return DFA_OK;
    const size_t no = (size_t)n * sh->rows * sh->heads;
    const size_t ns = dfa_search_cuda_rse_multi_scratch(sh->rows, sh->tokens, sh->heads, n);
    DFA_TRY(scratch(s, ns + no));
    DFA_TRY(dfa_search_cuda_rse_multi(dfa_cuda_stream(s->ctx->cuda), sh->rows, sh->tokens, sh->heads, sh->head_dim,
                                      ref, n, a, b, s->dev, s->dev + ns, &s->ctx->err));
    return dfa_cuda_d2h(s->ctx->cuda, out, s->dev + ns, no * sizeof(double), &s->ctx->err);
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
    *b = (dfa_search_backend){state,  2,      cu_alloc, cu_release,   cu_attn,   cu_head_op,
                              cu_copy, cu_rse, cu_mrae,  cu_rse_multi, cu_compose, cu_attn_multi};
    return DFA_OK;
}

void dfa_search_cuda_free(dfa_search_cuda *state) {
    if (!state->ctx) return;
    for (int i = 0; i < state->n_lists; i++) dfa_attn_cuda_plan_free(state->list[i]);
    for (int i = 0; i < state->n_rings; i++) dfa_attn_cuda_plan_free(state->ring[i]);
    dfa_ctx_mem_release(state->ctx, state->ring_scratch);
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
