/* emu.c - host emulation of the CUDA runtime, ops_cuda and the attention launcher (see build.sh):
 * device memory is host memory; every op follows the .cu kernels' semantics with bf16 storage.
 * A development aid for machines without a GPU; it does not test the .cu kernels themselves. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attn/attn.h"
#include "attn/attn_int.h"
#include "attn/attn_prep.h"
#include "core/ctx.h"
#include "core/cuda_rt.h"
#include "core/log.h"
#include "models/cuda/ops_cuda.h"

struct dfa_cuda { double t0; int open; };
struct dfa_cuops { double *gemm_secs; };
void dfa_cuops_set_gemm_timer(dfa_cuops *ops, double *secs) { ops->gemm_secs = secs; }
static float L16(const uint16_t *p, size_t i) { return dfa_bf16_to_f32(p[i]); }
static void S16(uint16_t *p, size_t i, float v) { p[i] = dfa_f32_to_bf16(v); }

dfa_status dfa_cuda_init(dfa_cuda **out, int device, dfa_error *err) { (void)device; (void)err; *out = calloc(1, sizeof **out); return DFA_OK; }
void dfa_cuda_free(dfa_cuda *cu) { free(cu); }
const char *dfa_cuda_device_name(const dfa_cuda *cu) { (void)cu; return "emu"; }
int dfa_cuda_sm_count(const dfa_cuda *cu) { (void)cu; return 1; }
void *dfa_cuda_stream(const dfa_cuda *cu) { (void)cu; return NULL; }
dfa_status dfa_cuda_malloc(dfa_cuda *cu, void **ptr, size_t bytes, dfa_error *err) {
    (void)cu; *ptr = malloc(bytes ? bytes : 1);
    if (!*ptr) DFA_FAIL(err, DFA_ERR_OOM, "emu malloc");
    memset(*ptr, 0xff, bytes); /* NaN-ish garbage */
    return DFA_OK;
}
void dfa_cuda_dealloc(dfa_cuda *cu, void *ptr) { (void)cu; free(ptr); }
dfa_status dfa_cuda_h2d(dfa_cuda *cu, void *d, const void *s, size_t n, dfa_error *err) { (void)cu; (void)err; memcpy(d, s, n); return DFA_OK; }
dfa_status dfa_cuda_d2h(dfa_cuda *cu, void *d, const void *s, size_t n, dfa_error *err) { (void)cu; (void)err; memcpy(d, s, n); return DFA_OK; }
dfa_status dfa_cuda_d2d(dfa_cuda *cu, void *d, const void *s, size_t n, dfa_error *err) { (void)cu; (void)err; memmove(d, s, n); return DFA_OK; }
dfa_status dfa_cuda_memset(dfa_cuda *cu, void *d, int v, size_t n, dfa_error *err) { (void)cu; (void)err; memset(d, v, n); return DFA_OK; }
dfa_status dfa_cuda_sync(dfa_cuda *cu, dfa_error *err) { (void)cu; (void)err; return DFA_OK; }
/* spans: the emulated work is synchronous, so a span is host wall time, added at its end */
dfa_status dfa_cuda_span_begin(dfa_cuda *cu, dfa_error *err) {
    if (cu->open) DFA_FAIL(err, DFA_ERR_INTERNAL, "emu span begun twice");
    cu->open = 1, cu->t0 = dfa_now_s();
    return DFA_OK;
}
dfa_status dfa_cuda_span_end(dfa_cuda *cu, double *acc, dfa_error *err) {
    if (!cu->open) DFA_FAIL(err, DFA_ERR_INTERNAL, "emu span ended without a begin");
    cu->open = 0;
    if (acc) *acc += dfa_now_s() - cu->t0;
    return DFA_OK;
}
dfa_status dfa_cuda_spans_collect(dfa_cuda *cu, dfa_error *err) {
    if (cu->open) DFA_FAIL(err, DFA_ERR_INTERNAL, "emu spans collected inside an open span");
    return DFA_OK;
}
void dfa_cuda_spans_drop(dfa_cuda *cu) { if (cu) cu->open = 0; }
/* no CUDA Graphs in the emulation: capture is refused */
dfa_status dfa_cuda_capture_begin(dfa_cuda *cu, dfa_error *err) { (void)cu; DFA_FAIL(err, DFA_ERR_UNSUPPORTED, "emu: no CUDA Graphs"); }
dfa_status dfa_cuda_capture_end(dfa_cuda *cu, dfa_cuda_graph **out, dfa_error *err) { (void)cu; *out = NULL; DFA_FAIL(err, DFA_ERR_UNSUPPORTED, "emu: no CUDA Graphs"); }
void dfa_cuda_capture_abort(dfa_cuda *cu) { (void)cu; }
dfa_status dfa_cuda_graph_launch(dfa_cuda *cu, dfa_cuda_graph *g, dfa_error *err) { (void)cu; (void)g; DFA_FAIL(err, DFA_ERR_UNSUPPORTED, "emu: no CUDA Graphs"); }
void dfa_cuda_graph_free(dfa_cuda_graph *g) { (void)g; }
dfa_status dfa_cuda_mem_info(dfa_cuda *cu, size_t *f, size_t *t, dfa_error *err) { (void)cu; (void)err; *f = *t = (size_t)1 << 34; return DFA_OK; }

dfa_status dfa_cuops_init(dfa_cuops **out, dfa_cuda *cu, dfa_error *err) { (void)cu; (void)err; *out = calloc(1, sizeof **out); return DFA_OK; }
void dfa_cuops_free(dfa_cuops *ops) { free(ops); }
dfa_status dfa_cuops_linear(dfa_cuops *ops, const uint16_t *x, int M, int K, const uint16_t *W, const uint16_t *bias,
                            int N, int accumulate, uint16_t *y, dfa_error *err) {
    if (M <= 0 || N <= 0 || K <= 0) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "linear: bad sizes M=%d N=%d K=%d", M, N, K);
    const double t0 = dfa_now_s();
    /* f32 GEMM (OpenBLAS) on the bf16 operands, bias / accumulate in f32, one bf16 rounding */
    float *xf = malloc((size_t)M * K * 4), *wf = malloc((size_t)N * K * 4), *yf = malloc((size_t)M * N * 4);
    if (!xf || !wf || !yf) { free(xf), free(wf), free(yf); DFA_FAIL(err, DFA_ERR_OOM, "emu linear"); }
    for (size_t i = 0; i < (size_t)M * K; i++) xf[i] = L16(x, i);
    for (size_t i = 0; i < (size_t)N * K; i++) wf[i] = L16(W, i);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, xf, K, wf, K, 0.0f, yf, N);
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            float s = yf[(size_t)m * N + n];
            if (bias) s += L16(bias, n);
            if (accumulate) s += L16(y, (size_t)m * N + n);
            S16(y, (size_t)m * N + n, s);
        }
    free(xf), free(wf), free(yf);
    if (ops->gemm_secs) *ops->gemm_secs += dfa_now_s() - t0; /* the GEMM timer: host time here */
    return DFA_OK;
}
static void norm(const uint16_t *x, int rows, int N, int T, const uint16_t *g, const uint16_t *b, float eps, int mode, uint16_t *y) {
    for (int r = 0; r < rows; r++) {
        const uint16_t *xr = x + (size_t)r * N;
        uint16_t *yr = y + (size_t)r * N;
        float mean = 0, s2 = 0;
        if (mode != 1) { for (int j = 0; j < N; j++) mean += L16(xr, j); mean /= N; }
        for (int j = 0; j < N; j++) { float d = L16(xr, j) - mean; s2 += d * d; }
        float inv = 1.0f / sqrtf(s2 / N + eps);
        size_t bi = (size_t)r / T;
        for (int j = 0; j < N; j++) {
            float v = (L16(xr, j) - mean) * inv;
            if (mode == 2) v = v * (1.0f + L16(b, bi * N + j)) + L16(g, bi * N + j);
            else { if (g) v *= L16(g, j); if (b && mode == 0) v += L16(b, j); }
            S16(yr, j, v);
        }
    }
}
dfa_status dfa_cuops_layernorm(dfa_cuops *ops, const uint16_t *x, int M, int N, const uint16_t *gamma, const uint16_t *beta, float eps, uint16_t *y, dfa_error *err) {
    (void)ops; (void)err; norm(x, M, N, 1, gamma, beta, eps, 0, y); return DFA_OK;
}
dfa_status dfa_cuops_rmsnorm(dfa_cuops *ops, const uint16_t *x, int M, int N, const uint16_t *gamma, float eps, uint16_t *y, dfa_error *err) {
    (void)ops; (void)err; norm(x, M, N, 1, gamma, NULL, eps, 1, y); return DFA_OK;
}
dfa_status dfa_cuops_ln_modulate(dfa_cuops *ops, const uint16_t *x, int B, int T, int N, const uint16_t *shift, const uint16_t *scale, float eps, uint16_t *y, dfa_error *err) {
    (void)ops; (void)err; norm(x, B * T, N, T, shift, scale, eps, 2, y); return DFA_OK;
}
dfa_status dfa_cuops_gate_add(dfa_cuops *ops, uint16_t *resid, int B, int T, int N, const uint16_t *gate, const uint16_t *x, dfa_error *err) {
    (void)ops; (void)err;
    size_t total = (size_t)B * T * N;
    for (size_t i = 0; i < total; i++) {
        size_t col = i % N, b = i / ((size_t)N * T);
        float gv = gate ? L16(gate, b * N + col) : 1.0f;
        S16(resid, i, L16(resid, i) + gv * L16(x, i));
    }
    return DFA_OK;
}
static void norm_strided(const uint16_t *x, int rows, int N, int T, const uint16_t *g, const uint16_t *b, size_t ms,
                         float eps, uint16_t *y) {
    for (int r = 0; r < rows; r++) {
        const uint16_t *xr = x + (size_t)r * N;
        float mean = 0, s2 = 0;
        for (int j = 0; j < N; j++) mean += L16(xr, j);
        mean /= N;
        for (int j = 0; j < N; j++) { float d = L16(xr, j) - mean; s2 += d * d; }
        float inv = 1.0f / sqrtf(s2 / N + eps);
        size_t bi = (size_t)r / T;
        for (int j = 0; j < N; j++)
            S16(y + (size_t)r * N, j, (L16(xr, j) - mean) * inv * (1.0f + L16(b, bi * ms + j)) + L16(g, bi * ms + j));
    }
}
dfa_status dfa_cuops_ln_modulate_strided(dfa_cuops *ops, const uint16_t *x, int B, int T, int N, const uint16_t *shift,
                                         const uint16_t *scale, size_t mod_stride, float eps, uint16_t *y, dfa_error *err) {
    (void)ops;
    if (mod_stride < (size_t)N) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "stride");
    norm_strided(x, B * T, N, T, shift, scale, mod_stride, eps, y);
    return DFA_OK;
}
dfa_status dfa_cuops_gate_add_strided(dfa_cuops *ops, uint16_t *resid, int B, int T, int N, const uint16_t *gate,
                                      size_t gate_stride, const uint16_t *x, dfa_error *err) {
    (void)ops; (void)err;
    size_t total = (size_t)B * T * N;
    for (size_t i = 0; i < total; i++) {
        size_t col = i % N, b = i / ((size_t)N * T);
        float gv = gate ? L16(gate, b * gate_stride + col) : 1.0f;
        S16(resid, i, L16(resid, i) + gv * L16(x, i));
    }
    return DFA_OK;
}
dfa_status dfa_cuops_act(dfa_cuops *ops, uint16_t *x, size_t n, dfa_act_kind act, dfa_error *err) {
    (void)ops; (void)err;
    for (size_t i = 0; i < n; i++) {
        float v = L16(x, i);
        if (act == DFA_ACT_SILU) v = v / (1.0f + expf(-v));
        else if (act == DFA_ACT_GELU_TANH) v = 0.5f * v * (1.0f + tanhf(0.79788456080286536f * (v + 0.044715f * v * v * v)));
        else v = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
        S16(x, i, v);
    }
    return DFA_OK;
}
dfa_status dfa_cuops_rope(dfa_cuops *ops, uint16_t *x, int B, int T, int H, int D, const float *cos_t, const float *sin_t, dfa_error *err) {
    (void)ops;
    if (D % 2) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "rope: head dim %d is odd", D);
    const int half = D / 2;
    const size_t pairs = (size_t)B * T * H * half;
    for (size_t p = 0; p < pairs; p++) {
        const int i = (int)(p % half), t = (int)((p / ((size_t)half * H)) % T);
        const float c = cos_t[(size_t)t * half + i], sn = sin_t[(size_t)t * half + i];
        const float a = L16(x, 2 * p), b = L16(x, 2 * p + 1);
        S16(x, 2 * p, a * c - b * sn);
        S16(x, 2 * p + 1, b * c + a * sn);
    }
    return DFA_OK;
}
dfa_status dfa_cuops_f32_to_bf16(dfa_cuops *ops, const float *src, uint16_t *dst, size_t n, dfa_error *err) {
    (void)ops; (void)err; for (size_t i = 0; i < n; i++) dst[i] = dfa_f32_to_bf16(src[i]); return DFA_OK;
}
dfa_status dfa_cuops_bf16_to_f32(dfa_cuops *ops, const uint16_t *src, float *dst, size_t n, dfa_error *err) {
    (void)ops; (void)err; for (size_t i = 0; i < n; i++) dst[i] = dfa_bf16_to_f32(src[i]); return DFA_OK;
}
dfa_status dfa_cuops_gemm_batched(dfa_cuops *ops, int trans_b, int M, int N, int K, float alpha, const uint16_t *A,
                                  int lda, long long sA, const uint16_t *B, int ldb, long long sB, void *C, int ldc,
                                  long long sC, int c_f32, int batch, dfa_error *err) {
    (void)ops;
    if (M <= 0 || N <= 0 || K <= 0 || batch <= 0 || lda < K || ldc < N || ldb < (trans_b ? K : N))
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "gemm_batched: bad sizes");
    for (int bi = 0; bi < batch; bi++)
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) {
                float s = 0;
                for (int k = 0; k < K; k++) {
                    float a = L16(A, bi * sA + (size_t)m * lda + k);
                    float b = trans_b ? L16(B, bi * sB + (size_t)n * ldb + k) : L16(B, bi * sB + (size_t)k * ldb + n);
                    s += a * b;
                }
                s *= alpha;
                size_t o = bi * sC + (size_t)m * ldc + n;
                if (c_f32) ((float *)C)[o] = s; else S16(C, o, s);
            }
    return DFA_OK;
}
dfa_status dfa_cuops_softmax_bias(dfa_cuops *ops, const float *s, int rows, int L, int ld, const float *bias, uint16_t *p, dfa_error *err) {
    (void)ops;
    if (L <= 0 || ld < L) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "softmax_bias");
    for (int r = 0; r < rows; r++) {
        const float *sr = s + (size_t)r * ld;
        float mx = -INFINITY, sum = 0;
        for (int j = 0; j < L; j++) mx = fmaxf(mx, sr[j] + (bias ? bias[j] : 0));
        for (int j = 0; j < L; j++) sum += expf(sr[j] + (bias ? bias[j] : 0) - mx);
        for (int j = 0; j < L; j++) S16(p, (size_t)r * ld + j, expf(sr[j] + (bias ? bias[j] : 0) - mx) / sum);
    }
    return DFA_OK;
}
dfa_status dfa_cuops_heads_permute(dfa_cuops *ops, const uint16_t *x, int B, int T, int H, int D, int to_heads, uint16_t *y, dfa_error *err) {
    (void)ops; (void)err;
    for (int b = 0; b < B; b++) for (int t = 0; t < T; t++) for (int h = 0; h < H; h++) for (int d = 0; d < D; d++) {
        size_t bthd = (((size_t)b * T + t) * H + h) * D + d, bhtd = (((size_t)b * H + h) * T + t) * D + d;
        if (to_heads) y[bhtd] = x[bthd]; else y[bthd] = x[bhtd];
    }
    return DFA_OK;
}
dfa_status dfa_cuops_add_row(dfa_cuops *ops, const uint16_t *a, int B, int N, const uint16_t *row, uint16_t *y, dfa_error *err) {
    (void)ops; (void)err;
    for (size_t i = 0; i < (size_t)B * N; i++) S16(y, i, L16(a, i) + L16(row, i % N));
    return DFA_OK;
}

dfa_status dfa_cuops_patchify(dfa_cuops *ops, const float *x, int B, int bcast, int C, int H, int W, int p, uint16_t *y, dfa_error *err) {
    (void)ops;
    if (B <= 0 || C <= 0 || p <= 0 || H % p || W % p) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "emu patchify");
    const int hp = H / p, wp = W / p, K = C * p * p;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < hp; i++)
            for (int j = 0; j < wp; j++)
                for (int k = 0; k < K; k++) {
                    const int kx = k % p, ky = (k / p) % p, c = k / (p * p);
                    S16(y, (((size_t)b * hp + i) * wp + j) * K + k, x[(((size_t)(bcast ? 0 : b) * C + c) * H + i * p + ky) * W + j * p + kx]);
                }
    return DFA_OK;
}
dfa_status dfa_cuops_unpatchify(dfa_cuops *ops, const uint16_t *y, int B, int O, int H, int W, int p, float *out, dfa_error *err) {
    (void)ops;
    if (B <= 0 || O <= 0 || p <= 0 || H % p || W % p) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "emu unpatchify");
    const int hp = H / p, wp = W / p, PO = p * p * O;
    for (int b = 0; b < B; b++)
        for (int ch = 0; ch < O; ch++)
            for (int yy = 0; yy < H; yy++)
                for (int xx = 0; xx < W; xx++)
                    out[(((size_t)b * O + ch) * H + yy) * W + xx] =
                        L16(y, (((size_t)b * hp + yy / p) * wp + xx / p) * PO + (size_t)((yy % p) * p + xx % p) * O + ch);
    return DFA_OK;
}
dfa_status dfa_cuops_flow_step(dfa_cuops *ops, float *x, const float *vel, size_t n, int cfg, float scale, float dt, dfa_error *err) {
    (void)ops; (void)err;
    for (size_t i = 0; i < n; i++) {
        float v = vel[i];
        if (cfg) v = v + scale * (vel[n + i] - v);
        x[i] = x[i] + dt * v;
    }
    return DFA_OK;
}
/* work lists: a record of what the list was built for (layout, per-head methods, windows), so
 * that a launch checks it was handed the list of its own methods (a wrong prepare index fails
 * here); a launch with an empty slot "builds" one, as attn_gpu.c does (dfa_attn_prep_stats counts) */
typedef struct emu_list {
    int in_set, H;
    dfa_attn_layout layout;
    int method[256], window[256];
} emu_list;
static emu_list *emu_list_make(emu_list *l, const dfa_attn_layout *lay, int H, const int *m, const int *w) {
    l->H = H, l->layout = *lay;
    if (l->layout.n_text == 0) l->layout.text_first = 0;
    memcpy(l->method, m, (size_t)H * sizeof *m), memcpy(l->window, w, (size_t)H * sizeof *w);
    return l;
}
void dfa_attn_gpu_list_free(void *list) {
    if (list && !((emu_list *)list)->in_set) free(list);
}
dfa_status dfa_attn_gpu_lists_prepare(dfa_ctx *ctx, const dfa_attn_prep *pp, void **set, void **lists, size_t *bytes) {
    *set = NULL, *bytes = 0;
    if (pp->n_heads > 256) DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED, "emu prepare: %d heads", pp->n_heads);
    emu_list *a = calloc((size_t)pp->n_lists + 1, sizeof *a);
    if (!a) DFA_CTX_FAIL(ctx, DFA_ERR_OOM, "emu prepare");
    for (int i = 0; i < pp->n_lists; i++) {
        const size_t o = (size_t)i * pp->n_heads;
        lists[i] = emu_list_make(&a[i], &pp->layout[i], pp->n_heads, pp->method + o, pp->window + o);
        a[i].in_set = 1;
    }
    *set = a, *bytes = (size_t)pp->n_lists * sizeof *a;
    return DFA_OK;
}
void dfa_attn_gpu_set_free(void *set) { free(set); }
static dfa_status emu_list_use(dfa_ctx *ctx, void **slot, const dfa_attn_layout *layout, int H, const int *m,
                               const int *w) {
    emu_list want;
    emu_list_make(&want, layout, H, m, w);
    if (!*slot) {
        emu_list *l = malloc(sizeof *l);
        if (!l) DFA_CTX_FAIL(ctx, DFA_ERR_OOM, "emu work list");
        *l = want, l->in_set = 0, *slot = l;
        return DFA_OK;
    }
    const emu_list *l = *slot;
    const dfa_attn_layout *a = &l->layout, *b = &want.layout;
    if (l->H != H || a->n_vis != b->n_vis || a->n_text != b->n_text || a->text_first != b->text_first ||
        a->block != b->block || a->band != b->band || memcmp(l->method, m, (size_t)H * sizeof *m) ||
        memcmp(l->window, w, (size_t)H * sizeof *w))
        DFA_CTX_FAIL(ctx, DFA_ERR_INTERNAL, "emu attention: the work list handed in was built for other methods, "
                                            "windows or layout than this launch's");
    return DFA_OK;
}
static float *to_f32(const void *p, size_t n) {
    float *f = malloc(n * 4);
    for (size_t i = 0; i < n; i++) f[i] = dfa_bf16_to_f32(((const uint16_t *)p)[i]);
    return f;
}
static void to_bf16(const float *f, void *p, size_t n) {
    for (size_t i = 0; i < n; i++) ((uint16_t *)p)[i] = dfa_f32_to_bf16(f[i]);
}
/* the CPU reference on f32 copies of the bf16 "device" tensors and caches */
dfa_status dfa_attn_run_heads_cuda(dfa_ctx *ctx, const dfa_attn_layout *layout, const dfa_tensor *q,
                                   const dfa_tensor *k, const dfa_tensor *v, dfa_tensor *out,
                                   const dfa_attn_head_exec *heads, void *out_cache, void *res_cache, int asc,
                                   int cond_half, void **gpu_lists) {
    if (q->dtype != DFA_BF16) DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED, "emu attention: bf16 only");
    const int H = (int)q->shape[2];
    if (gpu_lists && H <= 256) {
        int m[256], w[256];
        for (int which = 0; which < 2; which++)
            if (dfa_attn_launch_heads(heads, H, which, m, w))
                DFA_TRY(emu_list_use(ctx, &gpu_lists[which], layout, H, m, w));
    }
    const size_t n = (size_t)q->shape[0] * q->shape[1] * q->shape[2] * q->shape[3];
    float *fq = to_f32(q->data, n), *fk = to_f32(k->data, n), *fv = to_f32(v->data, n), *fo = to_f32(out->data, n);
    float *oc = out_cache ? to_f32(out_cache, n) : NULL, *rc = res_cache ? to_f32(res_cache, n) : NULL;
    dfa_tensor tq, tk, tv, to;
    dfa_tensor_init(&tq, DFA_F32, DFA_DEV_CPU, 4, q->shape, fq, &ctx->err);
    dfa_tensor_init(&tk, DFA_F32, DFA_DEV_CPU, 4, q->shape, fk, &ctx->err);
    dfa_tensor_init(&tv, DFA_F32, DFA_DEV_CPU, 4, q->shape, fv, &ctx->err);
    dfa_tensor_init(&to, DFA_F32, DFA_DEV_CPU, 4, q->shape, fo, &ctx->err);
    dfa_status s = dfa_attn_run_heads(ctx, layout, &tq, &tk, &tv, &to, heads, oc, rc, asc, cond_half);
    to_bf16(fo, out->data, n);
    if (oc) to_bf16(oc, out_cache, n);
    if (rc) to_bf16(rc, res_cache, n);
    free(fq), free(fk), free(fv), free(fo), free(oc), free(rc);
    return s;
}
