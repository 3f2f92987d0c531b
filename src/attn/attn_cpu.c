/* attn_cpu.c - dfa_attn_run_heads(): every attention method on the CPU (f32, the reference
 * the CUDA kernel must match), plus the dispatch point for CUDA tensors.
 *
 * Work is cut into tasks (batch element, head, query chunk, destination); OpenMP runs them
 * with ctx->n_threads. A query chunk lies inside one mask tile, so every query row of it sees
 * the same key tiles (dfa_mask_tile_keep): those merge into contiguous key runs, which are
 * processed in chunks of KC keys with two BLAS products and an online softmax (f32). */
#if defined(__GNUC__) && !defined(__clang__)
/* Lets GCC if-convert the clamp in exp_nonpos() so that the softmax loop vectorises; the
 * results are the same (no code here relies on floating-point traps). */
#pragma GCC optimize("no-trapping-math")
#endif
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attn/attn.h"
#include "attn/attn_int.h"
#include "core/ctx.h"

enum { QC = 64, KC = 256 }; /* query rows per task (at most), keys per BLAS product */

/* e^x for x <= 0 (a score minus its row maximum), vectorisable: Cody-Waite reduction by ln 2
 * and a degree-6 polynomial (Cephes expf coefficients); relative error ~2e-7 over the range,
 * which the float64 tests bound. x below -87 gives e^-87 (~1.6e-38) instead of 0. */
static inline float exp_nonpos(float x) {
    x = x < -87.0f ? -87.0f : x;
    const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round(x / ln 2) */
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const float y = p * r * r + r + 1.0f;
    const int32_t bits = ((int32_t)n + 127) << 23; /* 2^n, n in [-126, 0] */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return y * scale;
}

/* One row's update of the online softmax: s[c] = e^(s[c] - mx), returns the sum; *mx becomes
 * max(*mx, s). Compiled twice on x86-64 GCC/Clang (baseline SSE2 and AVX2+FMA), picked at run
 * time, so that the build needs no -march flags. */
#if defined(__GNUC__)
#define DFA_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define DFA_ALWAYS_INLINE inline
#endif
static DFA_ALWAYS_INLINE float row_softmax_body(float *s, int kn, float *mx_io) {
    float mx = *mx_io;
#pragma omp simd reduction(max : mx)
    for (int c = 0; c < kn; c++) mx = s[c] > mx ? s[c] : mx;
    *mx_io = mx;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int c = 0; c < kn; c++) {
        s[c] = exp_nonpos(s[c] - mx);
        sum += s[c];
    }
    return sum;
}

static float row_softmax_base(float *s, int kn, float *mx) {
    return row_softmax_body(s, kn, mx);
}

#if defined(__GNUC__) && defined(__x86_64__)
#define DFA_HAVE_AVX2_PATH 1
__attribute__((target("avx2,fma"))) static float row_softmax_avx2(float *s, int kn, float *mx) {
    return row_softmax_body(s, kn, mx);
}
#endif

typedef float (*row_softmax_fn)(float *s, int kn, float *mx);

static row_softmax_fn pick_row_softmax(void) {
#ifdef DFA_HAVE_AVX2_PATH
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return row_softmax_avx2;
#endif
    return row_softmax_base;
}

typedef struct attn_task {
    int b, h, tile, row0, rows; /* query rows [row0, row0 + rows) lie in `tile` */
    int window;                 /* < 0: full */
    int to_res;                 /* 1: write into res_cache (then turned into the residual); 0: into out */
} attn_task;

typedef struct attn_job {
    const dfa_attn_layout *L;
    int B, N, H, D;
    const float *Q, *K, *V;
    float *O;
    const dfa_attn_head_exec *heads;
    float *res_cache;
    float scale;
    row_softmax_fn row_softmax;
} attn_job;

typedef struct attn_scratch {
    float *S, *acc, *m, *l;
    int *runs; /* key runs: start, end pairs */
} attn_scratch;

/* Key runs for query tile qt under window: maximal ranges of consecutive kept tiles. Tiles are
 * numbered in token order, so consecutive tiles are contiguous tokens. Returns the count. */
static int key_runs(const dfa_attn_layout *L, int n_tiles, int window, int qt, int *runs) {
    int n = 0, open = 0;
    for (int kt = 0; kt < n_tiles; kt++) {
        int s, len;
        if (!dfa_mask_tile_keep(L, window, qt, kt)) {
            open = 0;
            continue;
        }
        dfa_tile_span(L, kt, &s, &len);
        if (len <= 0) continue;
        if (open) {
            runs[2 * n - 1] = s + len;
        } else {
            runs[2 * n] = s;
            runs[2 * n + 1] = s + len;
            n++;
            open = 1;
        }
    }
    return n;
}

static void run_task(const attn_job *j, const attn_task *t, int n_tiles, attn_scratch *sc) {
    const int D = j->D, rows = t->rows;
    const size_t ld = (size_t)j->H * D; /* token stride of q, k, v, out */
    const float *Qb = j->Q + ((size_t)t->b * j->N + t->row0) * ld + (size_t)t->h * D;
    const float *Kb = j->K + (size_t)t->b * j->N * ld + (size_t)t->h * D;
    const float *Vb = j->V + (size_t)t->b * j->N * ld + (size_t)t->h * D;
    float *S = sc->S, *acc = sc->acc, *m = sc->m, *l = sc->l;
    for (int i = 0; i < rows; i++) {
        m[i] = -INFINITY;
        l[i] = 0.0f;
    }
    memset(acc, 0, (size_t)rows * D * sizeof(float));
    int nr = key_runs(j->L, n_tiles, t->window, t->tile, sc->runs);
    for (int r = 0; r < nr; r++) {
        for (int k0 = sc->runs[2 * r]; k0 < sc->runs[2 * r + 1]; k0 += KC) {
            int kn = sc->runs[2 * r + 1] - k0;
            if (kn > KC) kn = KC;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, kn, D, j->scale, Qb, (int)ld,
                        Kb + (size_t)k0 * ld, (int)ld, 0.0f, S, KC);
            for (int i = 0; i < rows; i++) {
                float *s = S + (size_t)i * KC;
                float mx = m[i];
                float sum = j->row_softmax(s, kn, &mx);
                float corr = expf(m[i] - mx); /* m[i] = -inf at the first chunk: corr = 0 */
                l[i] = l[i] * corr + sum;
                m[i] = mx;
                if (corr != 1.0f) {
                    float *a = acc + (size_t)i * D;
                    for (int d = 0; d < D; d++) a[d] *= corr;
                }
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, D, kn, 1.0f, S, KC, Vb + (size_t)k0 * ld,
                        (int)ld, 1.0f, acc, D);
        }
    }
    float *dst = (t->to_res ? j->res_cache : j->O) + ((size_t)t->b * j->N + t->row0) * ld + (size_t)t->h * D;
    for (int i = 0; i < rows; i++) {
        float inv = 1.0f / l[i]; /* every row sees at least its own tile: l > 0 */
        const float *a = acc + (size_t)i * D;
        float *o = dst + (size_t)i * ld;
        for (int d = 0; d < D; d++) o[d] = a[d] * inv;
    }
}

static dfa_status check_args(dfa_ctx *ctx, const dfa_attn_layout *layout, const dfa_tensor *q,
                             const dfa_tensor *k, const dfa_tensor *v, const dfa_tensor *out,
                             const dfa_attn_head_exec *heads, const void *out_cache, const void *res_cache,
                             int asc, int cond_half) {
    if (!layout || !q || !k || !v || !out || !heads)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "attention: NULL layout, tensor or head list");
    if (dfa_layout_valid(layout))
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "attention layout invalid: n_vis=%d n_text=%d block=%d", layout->n_vis,
                     layout->n_text, layout->block);
    const dfa_tensor *all[4] = {q, k, v, out};
    static const char *const names[4] = {"q", "k", "v", "out"};
    for (int i = 0; i < 4; i++) {
        if (!all[i]->data || all[i]->ndim != 4 || !dfa_tensor_same_shape(all[i], q) || all[i]->dtype != q->dtype ||
            all[i]->dev != q->dev) {
            char a[96], b[96];
            DFA_CTX_FAIL(ctx, DFA_ERR_SHAPE,
                         "attention tensor %s: %s %s vs q %s %s (need [B, N, H, D], one dtype and device, data)",
                         names[i], dfa_dtype_name(all[i]->dtype),
                         dfa_shape_str(all[i]->ndim, all[i]->shape, a, sizeof a), dfa_dtype_name(q->dtype),
                         dfa_shape_str(q->ndim, q->shape, b, sizeof b));
        }
    }
    if (q->shape[1] != dfa_layout_tokens(layout))
        DFA_CTX_FAIL(ctx, DFA_ERR_SHAPE, "attention: q has %lld tokens, layout has %d (n_text %d + n_vis %d)",
                     (long long)q->shape[1], dfa_layout_tokens(layout), layout->n_text, layout->n_vis);
    if (q->shape[0] < 1 || q->shape[2] < 1 || q->shape[3] < 1)
        DFA_CTX_FAIL(ctx, DFA_ERR_SHAPE, "attention: empty q [%lld, %lld, %lld, %lld]", (long long)q->shape[0],
                     (long long)q->shape[1], (long long)q->shape[2], (long long)q->shape[3]);
    if (asc && (q->shape[0] % 2 != 0 || (cond_half != 0 && cond_half != 1)))
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG,
                     "attention: ASC needs an even CFG batch and cond_half 0 or 1, got B=%lld cond_half=%d",
                     (long long)q->shape[0], cond_half);
    const int H = (int)q->shape[2];
    for (int h = 0; h < H; h++) {
        const dfa_attn_head_exec *e = &heads[h];
        if (e->method < 0 || e->method >= DFA_ATTN_METHOD_COUNT)
            DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "attention head %d: unknown method %d", h, e->method);
        if (e->method == DFA_ATTN_CACHE && !out_cache)
            DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "attention head %d: CACHE without an output cache", h);
        if (e->method == DFA_ATTN_ARROW_RS && !res_cache)
            DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "attention head %d: ARROW_RS without a residual cache", h);
        if (e->store_out && (e->method == DFA_ATTN_CACHE || !out_cache))
            DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "attention head %d: store_out with method %s / no cache buffer", h,
                         dfa_attn_method_name(e->method));
        if (e->store_res && (e->method != DFA_ATTN_FULL || !res_cache))
            DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG,
                         "attention head %d: store_res needs method full and a residual buffer (got %s)", h,
                         dfa_attn_method_name(e->method));
    }
    return DFA_OK;
}

dfa_status dfa_attn_run_heads(dfa_ctx *ctx, const dfa_attn_layout *layout, const dfa_tensor *q,
                              const dfa_tensor *k, const dfa_tensor *v, dfa_tensor *out,
                              const dfa_attn_head_exec *heads, void *out_cache, void *res_cache, int asc,
                              int cond_half) {
    return dfa_attn_run_heads_ex(ctx, layout, q, k, v, out, heads, out_cache, res_cache, asc, cond_half, NULL);
}

dfa_status dfa_attn_run_heads_ex(dfa_ctx *ctx, const dfa_attn_layout *layout, const dfa_tensor *q,
                                 const dfa_tensor *k, const dfa_tensor *v, dfa_tensor *out,
                                 const dfa_attn_head_exec *heads, void *out_cache, void *res_cache, int asc,
                                 int cond_half, void **gpu_lists) {
    DFA_TRY(check_args(ctx, layout, q, k, v, out, heads, out_cache, res_cache, asc, cond_half));
    if (q->dev == DFA_DEV_CUDA) /* the fused kernel (src/attn/cuda/), same arguments: attn_gpu.c */
        return dfa_attn_run_heads_cuda(ctx, layout, q, k, v, out, heads, out_cache, res_cache, asc, cond_half,
                                       gpu_lists);
    if (q->dtype != DFA_F32)
        DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED, "attention on the CPU takes f32 tensors, got %s",
                     dfa_dtype_name(q->dtype));

    attn_job j = {layout, (int)q->shape[0], (int)q->shape[1], (int)q->shape[2], (int)q->shape[3],
                  q->data,  k->data,         v->data,          out->data,        heads, res_cache, 0.0f, NULL};
    j.scale = 1.0f / sqrtf((float)j.D);
    j.row_softmax = pick_row_softmax();
    const int B = j.B, N = j.N, H = j.H, D = j.D;
    const size_t ld = (size_t)H * D;
    dfa_attn_tiles tl;
    dfa_layout_tiles(layout, &tl);

    /* the batch elements computed: all, or under ASC the conditional half */
    const int half = B / 2;
    const int b0 = asc ? cond_half * half : 0, nb = asc ? half : B;

    /* tasks */
    size_t n_tasks = 0;
    for (int t = 0; t < tl.n_tiles; t++) {
        int s, len;
        dfa_tile_span(layout, t, &s, &len);
        n_tasks += (size_t)(len + QC - 1) / QC;
    }
    size_t per_bh = n_tasks;
    int n_passes = 0;
    for (int h = 0; h < H; h++)
        n_passes += heads[h].method == DFA_ATTN_CACHE ? 0 : (heads[h].store_res ? 2 : 1);
    attn_task *tasks = malloc(per_bh * (size_t)nb * (size_t)(n_passes ? n_passes : 1) * sizeof *tasks);
    if (!tasks) DFA_CTX_FAIL(ctx, DFA_ERR_OOM, "attention: out of host memory for the task list");
    size_t nt = 0;
    for (int h = 0; h < H; h++) {
        const dfa_attn_head_exec *e = &heads[h];
        if (e->method == DFA_ATTN_CACHE) continue;
        for (int pass = 0; pass < (e->store_res ? 2 : 1); pass++) {
            int window = pass == 1 ? e->res_window : (e->method == DFA_ATTN_FULL ? -1 : e->window);
            for (int b = b0; b < b0 + nb; b++)
                for (int t = 0; t < tl.n_tiles; t++) {
                    int s, len;
                    dfa_tile_span(layout, t, &s, &len);
                    for (int r = 0; r < len; r += QC)
                        tasks[nt++] = (attn_task){b, h, t, s + r, len - r < QC ? len - r : QC, window, pass};
                }
        }
    }

    int failed = 0;
    /* The tile products are small and run inside our own OpenMP threads, one single-threaded
     * sgemm each: dfa_ctx_init made OpenBLAS single-threaded (the CPU thread policy, models/ops.c). */
#pragma omp parallel num_threads(ctx->n_threads)
    {
        attn_scratch sc;
        sc.S = malloc((size_t)QC * KC * sizeof(float));
        sc.acc = malloc((size_t)QC * D * sizeof(float));
        sc.m = malloc(QC * sizeof(float));
        sc.l = malloc(QC * sizeof(float));
        sc.runs = malloc((size_t)2 * (tl.n_tiles + 1) * sizeof(int));
        int ok = sc.S && sc.acc && sc.m && sc.l && sc.runs;
        if (!ok) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 4)
        for (size_t i = 0; i < nt; i++)
            if (ok) run_task(&j, &tasks[i], tl.n_tiles, &sc);
        free(sc.S);
        free(sc.acc);
        free(sc.m);
        free(sc.l);
        free(sc.runs);
    }
    free(tasks);
    if (failed) DFA_CTX_FAIL(ctx, DFA_ERR_OOM, "attention: out of host memory for per-thread scratch");

    /* post passes per head: residuals, CACHE copies; then ASC copies and output caches */
    float *O = out->data, *R = res_cache;
    const float *C = out_cache;
    const size_t row = (size_t)D * sizeof(float);
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static)
    for (int h = 0; h < H; h++) {
        const dfa_attn_head_exec *e = &heads[h];
        if (e->method == DFA_ATTN_FULL && !e->store_res) continue;
        if (e->method == DFA_ATTN_ARROW) continue;
        for (int b = b0; b < b0 + nb; b++)
            for (int n = 0; n < N; n++) {
                size_t ci = ((size_t)b * N + n) * ld + (size_t)h * D;
                float *o = O + ci;
                if (e->method == DFA_ATTN_CACHE) {
                    memcpy(o, C + ci, row);
                } else if (e->method == DFA_ATTN_ARROW_RS) {
                    for (int d = 0; d < D; d++) o[d] += R[ci + d];
                } else { /* FULL refreshing a residual: R held ARROW's output */
                    for (int d = 0; d < D; d++) R[ci + d] = o[d] - R[ci + d];
                }
            }
    }
    const size_t half_elems = (size_t)half * N * ld;
    if (asc) {
        const int bu0 = (1 - cond_half) * half;
        memcpy(O + (size_t)bu0 * N * ld, O + (size_t)b0 * N * ld, half_elems * sizeof(float));
    }
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static)
    for (int h = 0; h < H; h++) {
        const dfa_attn_head_exec *e = &heads[h];
        if (asc && e->store_res) {
            const int bu0 = (1 - cond_half) * half;
            for (size_t r = 0; r < (size_t)half * N; r++)
                memcpy(R + ((size_t)bu0 * N + r) * ld + (size_t)h * D, R + ((size_t)b0 * N + r) * ld + (size_t)h * D,
                       row);
        }
        if (e->store_out) {
            float *Cw = out_cache;
            for (size_t r = 0; r < (size_t)B * N; r++) memcpy(Cw + r * ld + (size_t)h * D, O + r * ld + (size_t)h * D, row);
        }
    }
    return DFA_OK;
}
