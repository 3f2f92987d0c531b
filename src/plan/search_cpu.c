/* search_cpu.c - the CPU backend of the plan searches: f32 host buffers owned by the context,
 * attention by the CPU reference (dfa_attn_run_heads) or by plain float64 loops. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/ctx.h"
#include "plan/metrics.h"
#include "plan/search.h"

static dfa_status ref_head(dfa_ctx *ctx, const dfa_attn_layout *l, int n_heads, int head_dim, int head, int window,
                           const float *q, const float *k, const float *v, float *out, double *s) {
    const int N = dfa_layout_tokens(l), D = head_dim;
    const size_t rs = (size_t)n_heads * D;
    double *acc = s + N;
    const double scale = 1.0 / sqrt((double)D);
    for (int i = 0; i < N; i++) {
        const float *qi = q + i * rs + (size_t)head * D;
        double m = -INFINITY;
        for (int j = 0; j < N; j++) {
            s[j] = -INFINITY;
            if (!dfa_mask_keep(l, window, i, j)) continue;
            const float *kj = k + j * rs + (size_t)head * D;
            double a = 0;
            for (int d = 0; d < D; d++) a += (double)qi[d] * kj[d];
            s[j] = a * scale;
            if (s[j] > m) m = s[j];
        }
        double sum = 0;
        for (int d = 0; d < D; d++) acc[d] = 0;
        for (int j = 0; j < N; j++) {
            if (s[j] == -INFINITY) continue;
            double p = exp(s[j] - m);
            sum += p;
            const float *vj = v + j * rs + (size_t)head * D;
            for (int d = 0; d < D; d++) acc[d] += p * vj[d];
        }
        float *oi = out + i * rs + (size_t)head * D;
        for (int d = 0; d < D; d++) oi[d] = (float)(acc[d] / sum);
    }
    (void)ctx;
    return DFA_OK;
}

dfa_status dfa_search_attn_ref(void *user, const dfa_attn_layout *l, int n_rows, int n_heads, int head_dim, int window,
                               const void *q, const void *k, const void *v, void *out) {
    dfa_ctx *ctx = user;
    const int N = dfa_layout_tokens(l);
    const float *qf = q, *kf = k, *vf = v;
    float *of = out;
    double *s = malloc(sizeof(double) * ((size_t)N + head_dim));
    if (!s) {
        if (ctx) DFA_CTX_FAIL(ctx, DFA_ERR_OOM, "search reference attention: %d scores", N);
        return DFA_ERR_OOM;
    }
    const size_t row = (size_t)N * n_heads * head_dim;
    for (int r = 0; r < n_rows; r++)
        for (int h = 0; h < n_heads; h++)
            ref_head(ctx, l, n_heads, head_dim, h, window, qf + r * row, kf + r * row, vf + r * row, of + r * row, s);
    free(s);
    return DFA_OK;
}

dfa_status dfa_search_attn_cpu(void *user, const dfa_attn_layout *l, int n_rows, int n_heads, int head_dim, int window,
                               const void *q, const void *k, const void *v, void *out) {
    dfa_ctx *ctx = user;
    enum { MAXH = 512 };
    if (n_heads > MAXH) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "search attention: %d heads, at most %d", n_heads, MAXH);
    dfa_attn_head_exec heads[MAXH];
    for (int h = 0; h < n_heads; h++)
        heads[h] = (dfa_attn_head_exec){.method = window < 0 ? DFA_ATTN_FULL : DFA_ATTN_ARROW, .window = window};
    dfa_tensor tq = {DFA_F32, DFA_DEV_CPU, 4, {n_rows, dfa_layout_tokens(l), n_heads, head_dim}, (void *)q};
    dfa_tensor tk = tq, tv = tq, to = tq;
    tk.data = (void *)k, tv.data = (void *)v, to.data = out;
    return dfa_attn_run_heads(ctx, l, &tq, &tk, &tv, &to, heads, NULL, NULL, 0, 0);
}

/* ---- the backend ---- */

static dfa_status cpu_alloc(void *user, size_t bytes, const char *what, void **out) {
    DFA_TRY(dfa_ctx_mem_alloc(user, DFA_DEV_CPU, bytes, what, out));
    memset(*out, 0, bytes);
    return DFA_OK;
}

static void cpu_release(void *user, void *p) {
    dfa_ctx_mem_release(user, p);
}

static dfa_status cpu_head_op(void *user, const dfa_search_shape *s, int head, int r0, int r1, void *dst, const void *a,
                              const void *b, int sign) {
    (void)user;
    const size_t ld = (size_t)s->heads * s->head_dim, D = (size_t)s->head_dim;
    float *d = dst;
    const float *x = a, *y = b;
    for (int r = r0; r < r1; r++)
        for (int t = 0; t < s->tokens; t++) {
            size_t o = ((size_t)r * s->tokens + t) * ld + (size_t)head * D;
            if (sign == 0) memcpy(d + o, x + o, D * sizeof(float));
            else if (sign > 0)
                for (size_t i = 0; i < D; i++) d[o + i] = x[o + i] + y[o + i];
            else
                for (size_t i = 0; i < D; i++) d[o + i] = x[o + i] - y[o + i];
        }
    return DFA_OK;
}

static dfa_status cpu_copy(void *user, void *dst, const void *src, size_t n) {
    (void)user;
    memmove(dst, src, n * sizeof(float));
    return DFA_OK;
}

static dfa_status cpu_rse(void *user, const dfa_search_shape *s, const void *ref, const void *approx, double *out) {
    (void)user;
    const size_t row = (size_t)s->tokens * s->heads * s->head_dim;
    for (int r = 0; r < s->rows; r++)
        dfa_metric_rse_heads((const float *)ref + r * row, (const float *)approx + r * row, s->tokens, s->heads,
                             s->head_dim, out + (size_t)r * s->heads);
    return DFA_OK;
}

static dfa_status cpu_mrae(void *user, const void *ref, const void *approx, size_t n, double *out) {
    (void)user;
    *out = dfa_metric_mrae(ref, approx, n, DFA_MRAE_EPS);
    return DFA_OK;
}

/* Every candidate's slice (row r, head h) gathered contiguously, a + b formed as cpu_head_op
 * does, then dfa_metric_rse over it: the same sums in the same order as cpu_rse on a composed
 * buffer, so the values are bit for bit those of the fallback. */
static dfa_status cpu_rse_multi(void *user, const dfa_search_shape *s, const void *ref, int n, const void *const *a,
                                const void *const *b, double *out) {
    dfa_ctx *ctx = user;
    const size_t T = (size_t)s->tokens, D = (size_t)s->head_dim, ld = (size_t)s->heads * D, row = T * ld;
    float *x = NULL, *y = NULL;
    DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, 2 * T * D * sizeof(float), "search metric slices", (void **)&x));
    y = x + T * D;
    for (int r = 0; r < s->rows; r++)
        for (int h = 0; h < s->heads; h++) {
            const float *rf = (const float *)ref + r * row + (size_t)h * D;
            for (size_t t = 0; t < T; t++) memcpy(x + t * D, rf + t * ld, D * sizeof(float));
            for (int c = 0; c < n; c++) {
                const float *af = (const float *)a[c] + r * row + (size_t)h * D;
                const float *bf = b[c] ? (const float *)b[c] + r * row + (size_t)h * D : NULL;
                for (size_t t = 0; t < T; t++) {
                    if (!bf) memcpy(y + t * D, af + t * ld, D * sizeof(float));
                    else
                        for (size_t i = 0; i < D; i++) y[t * D + i] = af[t * ld + i] + bf[t * ld + i];
                }
                out[((size_t)c * s->rows + r) * s->heads + h] = dfa_metric_rse(x, y, T, D, D);
            }
        }
    dfa_ctx_mem_release(ctx, x);
    return DFA_OK;
}

static dfa_status cpu_compose(void *user, const dfa_search_shape *s, void *dst, const dfa_search_head_src *src) {
    for (int h = 0; h < s->heads; h++)
        if (src[h].a) DFA_TRY(cpu_head_op(user, s, h, 0, s->rows, dst, src[h].a, src[h].b, src[h].b ? src[h].sign : 0));
    return DFA_OK;
}

void dfa_search_backend_cpu(dfa_ctx *ctx, dfa_search_backend *b) {
    *b = (dfa_search_backend){ctx,         sizeof(float), cpu_alloc, cpu_release,   dfa_search_attn_cpu,
                              cpu_head_op, cpu_copy,      cpu_rse,   cpu_mrae,      cpu_rse_multi,
                              cpu_compose, NULL};
}
