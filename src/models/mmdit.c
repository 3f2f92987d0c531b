/* mmdit.c - shared MMDiT pieces: weight table loading into one block, arena sizing, fused
 * elementwise steps (see mmdit.h). */
#include "models/mmdit.h"
#include "core/log.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/cuda_rt.h"
#include "io/safetensors.h"
#include "models/ops.h"

static void wtab_addv(dfa_wtab *t, float **dst, int ndim, const int64_t *shape, const char *fmt, va_list ap) {
    if (t->e && t->n < t->cap) {
        dfa_wtab_entry *e = &t->e[t->n];
        int k = vsnprintf(e->name, sizeof e->name, fmt, ap);
        if (k < 0 || (size_t)k >= sizeof e->name) t->overflow = 1;
        e->ndim = ndim;
        for (int i = 0; i < ndim && i < 4; i++) e->shape[i] = shape[i];
        e->dst = dst;
    }
    t->n++;
}

void dfa_wtab_add(dfa_wtab *t, float **dst, int ndim, const int64_t *shape, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    wtab_addv(t, dst, ndim, shape, fmt, ap);
    va_end(ap);
}

void dfa_wtab_linear(dfa_wtab *t, dfa_lin *l, int in, int out, int bias, const char *fmt, ...) {
    char prefix[140], name[160];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= sizeof prefix) t->overflow = 1;
    l->in = in;
    l->out = out;
    l->b = NULL;
    int64_t ws[2] = {out, in}, bs[1] = {out};
    snprintf(name, sizeof name, "%s.weight", prefix);
    dfa_wtab_add(t, &l->w, 2, ws, "%s", name);
    if (bias) {
        snprintf(name, sizeof name, "%s.bias", prefix);
        dfa_wtab_add(t, &l->b, 1, bs, "%s", name);
    }
}

void dfa_wtab_linear_split(dfa_wtab *t, dfa_lin *l, int in, int out, int split, const char *fmt, ...) {
    char prefix[140];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= sizeof prefix) t->overflow = 1;
    int first = t->n;
    dfa_wtab_linear(t, l, in, out, 1, "%s", prefix);
    if (t->e && first < t->cap) t->e[first].split_cols = split;
}

static size_t entry_floats(const dfa_wtab_entry *e) {
    size_t n = 1;
    for (int i = 0; i < e->ndim; i++) n *= (size_t)e->shape[i];
    return n;
}

/* [rows, cols] -> [rows, :split] then [rows, split:], element size es, via tmp (same size) */
static void split_columns(unsigned char *w, unsigned char *tmp, int64_t rows, int64_t cols, int64_t split, size_t es) {
    const size_t a = (size_t)split * es, b = (size_t)(cols - split) * es;
    for (int64_t r = 0; r < rows; r++) {
        memcpy(tmp + (size_t)r * a, w + (size_t)r * (a + b), a);
        memcpy(tmp + (size_t)rows * a + (size_t)r * b, w + (size_t)r * (a + b) + a, b);
    }
    memcpy(w, tmp, (size_t)rows * (a + b));
}

static dfa_status wtab_load_entries(dfa_ctx *ctx, const dfa_wtab *t, const char *st_path, dfa_device dev,
                                    dfa_dtype dtype) {
    dfa_safetensors *sf = NULL;
    DFA_TRY(dfa_st_open(&sf, st_path, &ctx->err));
    const size_t es = dfa_dtype_size(dtype);
    size_t stage_bytes = 0; /* host staging for split weights (and their device upload) */
    for (int i = 0; i < t->n; i++)
        if (t->e[i].split_cols > 0 && entry_floats(&t->e[i]) * es > stage_bytes) stage_bytes = entry_floats(&t->e[i]) * es;
    unsigned char *stage = NULL;
    dfa_status st = DFA_OK;
    if (stage_bytes) st = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, 2 * stage_bytes, "weight staging", (void **)&stage);
    for (int i = 0; i < t->n && st == DFA_OK; i++) {
        const dfa_wtab_entry *e = &t->e[i];
        if (e->split_cols <= 0) {
            st = dfa_st_load(sf, e->name, dtype, e->ndim, e->shape, *e->dst, dev, ctx->cuda, &ctx->err);
            continue;
        }
        const size_t bytes = entry_floats(e) * es;
        st = dfa_st_load(sf, e->name, dtype, e->ndim, e->shape, stage, DFA_DEV_CPU, NULL, &ctx->err);
        if (st != DFA_OK) break;
        split_columns(stage, stage + stage_bytes, e->shape[0], e->shape[1], e->split_cols, es);
        if (dev == DFA_DEV_CPU)
            memcpy(*e->dst, stage, bytes);
        else
            st = dfa_cuda_h2d(ctx->cuda, *e->dst, stage, bytes, &ctx->err);
    }
    if (stage) dfa_ctx_mem_release(ctx, stage);
    dfa_st_close(sf);
    return st;
}

dfa_status dfa_wtab_load(dfa_ctx *ctx, void *model, dfa_wtab_register_fn reg, const char *st_path, dfa_device dev,
                         dfa_dtype dtype, void **block_out, size_t *bytes_out) {
    dfa_wtab t = {0};
    reg(model, &t); /* count */
    if (t.n <= 0) DFA_CTX_FAIL(ctx, DFA_ERR_INTERNAL, "weight table for %s is empty", st_path);
    t.cap = t.n;
    t.n = 0;
    DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, (size_t)t.cap * sizeof(dfa_wtab_entry), "weight table",
                              (void **)&t.e));
    memset(t.e, 0, (size_t)t.cap * sizeof(dfa_wtab_entry));
    reg(model, &t);
    dfa_status st = DFA_OK;
    unsigned char *block = NULL;
    const size_t es = dfa_dtype_size(dtype);
    if (t.overflow || t.n != t.cap) {
        st = dfa_error_set(&ctx->err, DFA_ERR_INTERNAL, __FILE__, __LINE__,
                           "weight table for %s: %d entries registered, %d counted%s", st_path, t.n, t.cap,
                           t.overflow ? " (a tensor name was too long)" : "");
        goto done;
    }
    size_t total = 0;
    for (int i = 0; i < t.n; i++) total += (entry_floats(&t.e[i]) * es + 255u) & ~(size_t)255u;
    st = dfa_ctx_mem_alloc(ctx, dev, total, dev == DFA_DEV_CPU ? "model weights" : "model weights (device)",
                           (void **)&block);
    if (st != DFA_OK) goto done;
    size_t off = 0;
    for (int i = 0; i < t.n; i++) {
        *t.e[i].dst = (float *)(void *)(block + off);
        off += (entry_floats(&t.e[i]) * es + 255u) & ~(size_t)255u;
    }
    st = wtab_load_entries(ctx, &t, st_path, dev, dtype);
    if (st != DFA_OK) {
        dfa_ctx_mem_release(ctx, block);
        goto done;
    }
    *block_out = block;
    if (bytes_out) *bytes_out = total;
done:
    dfa_ctx_mem_release(ctx, t.e);
    return st;
}

dfa_status dfa_mmdit_arena_ensure(dfa_ctx *ctx, dfa_arena *a, dfa_device dev, size_t bytes, const char *name) {
    if (a->base && a->size >= bytes && a->dev == dev) {
        dfa_arena_reset(a);
        return DFA_OK;
    }
    if (a->base) dfa_arena_release(ctx, a);
    return dfa_arena_init(ctx, a, dev, bytes, name);
}

dfa_status dfa_mmdit_spans_end(dfa_ctx *ctx, dfa_status st) {
    if (!ctx->cuda) return st;
    if (st != DFA_OK) {
        dfa_cuda_spans_drop(ctx->cuda);
        return st;
    }
    return dfa_cuda_spans_collect(ctx->cuda, &ctx->err);
}

static uint64_t wr_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int ends_with_str(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

dfa_status dfa_wtab_write_random(dfa_ctx *ctx, void *model, dfa_wtab_register_fn reg, const char *path, uint64_t seed) {
    dfa_wtab t = {0};
    reg(model, &t);
    if (t.n <= 0) DFA_CTX_FAIL(ctx, DFA_ERR_INTERNAL, "weight table for %s is empty", path);
    t.cap = t.n;
    t.n = 0;
    DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, (size_t)t.cap * (sizeof(dfa_wtab_entry) + sizeof(dfa_st_item) +
                                                                 sizeof(void *)), "random weight table", (void **)&t.e));
    memset(t.e, 0, (size_t)t.cap * sizeof(dfa_wtab_entry));
    reg(model, &t);
    dfa_st_item *items = (dfa_st_item *)(void *)(t.e + t.cap);
    uint16_t **data = (uint16_t **)(void *)(items + t.cap);
    dfa_status st = DFA_OK;
    int made = 0;
    uint64_t rs = seed;
    for (int i = 0; i < t.n && st == DFA_OK; i++, made++) {
        const dfa_wtab_entry *e = &t.e[i];
        const size_t n = entry_floats(e);
        st = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, n * 2 + 2, e->name, (void **)&data[i]);
        if (st != DFA_OK) break;
        const int norm = ends_with_str(e->name, "norm_q.weight") || ends_with_str(e->name, "norm_k.weight") ||
                         ends_with_str(e->name, "norm_added_q.weight") || ends_with_str(e->name, "norm_added_k.weight");
        const float sc = e->ndim >= 2 ? 1.0f / sqrtf((float)(n / (size_t)e->shape[0])) : 0.05f;
        for (size_t j = 0; j < n; j++) {
            float u = (float)((double)(wr_next(&rs) >> 11) * (2.0 / 9007199254740992.0) - 1.0);
            data[i][j] = dfa_f32_to_bf16(norm ? 1.0f + 0.1f * u : sc * u);
        }
        items[i] = (dfa_st_item){.name = e->name, .dtype = DFA_BF16, .ndim = e->ndim, .shape = e->shape,
                                 .data = data[i]};
    }
    if (st == DFA_OK) st = dfa_st_write(path, items, t.n, NULL, NULL, 0, &ctx->err);
    for (int i = 0; i < made; i++)
        if (data[i]) dfa_ctx_mem_release(ctx, data[i]);
    dfa_ctx_mem_release(ctx, t.e);
    return st;
}

float *dfa_mmdit_falloc(dfa_ctx *ctx, dfa_arena *a, size_t n_floats, dfa_status *st) {
    void *p = NULL;
    if (*st != DFA_OK) return NULL;
    *st = dfa_arena_alloc(ctx, a, n_floats * sizeof(float), &p);
    return p;
}

void dfa_mmdit_ln_modulate(const dfa_ctx *ctx, const float *x, int T, int N, const float *shift, const float *scale,
                           float eps, float *y) {
    dfa_op_layernorm(ctx, x, T, N, NULL, NULL, eps, y);
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static)
    for (int t = 0; t < T; t++) {
        float *r = y + (size_t)t * N;
        for (int j = 0; j < N; j++) r[j] = r[j] * (1.0f + scale[j]) + shift[j];
    }
}

void dfa_mmdit_gate_add(const dfa_ctx *ctx, float *resid, int T, int N, const float *gate, const float *x) {
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static)
    for (int t = 0; t < T; t++) {
        float *r = resid + (size_t)t * N;
        const float *xr = x + (size_t)t * N;
        if (gate)
            for (int j = 0; j < N; j++) r[j] += gate[j] * xr[j];
        else
            for (int j = 0; j < N; j++) r[j] += xr[j];
    }
}

void dfa_mmdit_head_rmsnorm(const dfa_ctx *ctx, float *x, int T, int H, int D, const float *w, float eps) {
    dfa_op_rmsnorm(ctx, x, T * H, D, w, eps, x);
}

void dfa_mmdit_linear(const dfa_ctx *ctx, const dfa_lin *l, const float *x, int M, float *y) {
    dfa_op_linear(ctx, x, M, l->in, l->w, l->b, l->out, y);
}

void dfa_mmdit_timestep_mlp(const dfa_ctx *ctx, float t, const dfa_lin *l1, const dfa_lin *l2, float *tmp,
                            float *out) {
    /* get_timestep_embedding(t, 256, flip_sin_to_cos=True, downscale_freq_shift=0) in f32 */
    const int dim = l1->in, half = dim / 2;
    const float lmp = (float)(-log(10000.0));
    for (int i = 0; i < half; i++) {
        float ex = (lmp * (float)i) / (float)half;
        float arg = t * expf(ex);
        tmp[i] = cosf(arg);
        tmp[half + i] = sinf(arg);
    }
    if (dim % 2) tmp[dim - 1] = 0.0f;
    float *h = tmp + dim;
    dfa_mmdit_linear(ctx, l1, tmp, 1, h);
    dfa_op_silu(h, (size_t)l1->out);
    dfa_mmdit_linear(ctx, l2, h, 1, out);
}

void dfa_mmdit_mlp_silu(const dfa_ctx *ctx, const dfa_lin *l1, const dfa_lin *l2, const float *x, float *tmp,
                        float *out) {
    dfa_mmdit_linear(ctx, l1, x, 1, tmp);
    dfa_op_silu(tmp, (size_t)l1->out);
    dfa_mmdit_linear(ctx, l2, tmp, 1, out);
}

dfa_status dfa_mmdit_attention(dfa_ctx *ctx, int layer, const dfa_attn_layout *lay, int B, int N, int H, int D,
                               float *q, float *k, float *v, float *out, double *attn_s) {
    dfa_tensor tq, tk, tv, to;
    const int64_t shp[4] = {B, N, H, D};
    DFA_TRY(dfa_tensor_init(&tq, DFA_F32, DFA_DEV_CPU, 4, shp, q, &ctx->err));
    DFA_TRY(dfa_tensor_init(&tk, DFA_F32, DFA_DEV_CPU, 4, shp, k, &ctx->err));
    DFA_TRY(dfa_tensor_init(&tv, DFA_F32, DFA_DEV_CPU, 4, shp, v, &ctx->err));
    DFA_TRY(dfa_tensor_init(&to, DFA_F32, DFA_DEV_CPU, 4, shp, out, &ctx->err));
    double t0 = dfa_now_s();
    dfa_status st = dfa_attn_layer(ctx, layer, lay, &tq, &tk, &tv, &to);
    if (attn_s) *attn_s += dfa_now_s() - t0;
    return st;
}

static int is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

dfa_status dfa_mmdit_read_config(dfa_ctx *ctx, const char *dir, cJSON **out, char *dir_out, size_t dir_len,
                                 char *cfg_path, size_t cfg_len) {
    int k = snprintf(cfg_path, cfg_len, "%s/config.json", dir);
    if (k < 0 || (size_t)k >= cfg_len) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "model path too long: %s", dir);
    if (is_file(cfg_path)) {
        snprintf(dir_out, dir_len, "%s", dir);
    } else {
        k = snprintf(cfg_path, cfg_len, "%s/transformer/config.json", dir);
        if (k < 0 || (size_t)k >= cfg_len) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "model path too long: %s", dir);
        if (!is_file(cfg_path))
            DFA_CTX_FAIL(ctx, DFA_ERR_NOT_FOUND, "no config.json in %s nor in %s/transformer", dir, dir);
        k = snprintf(dir_out, dir_len, "%s/transformer", dir);
        if (k < 0 || (size_t)k >= dir_len) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "model path too long: %s", dir);
    }
    return dfa_json_read_file(cfg_path, out, &ctx->err);
}

dfa_status dfa_mmdit_json_ints(dfa_ctx *ctx, const cJSON *obj, const char *key, const char *what, int *vals, int max,
                               int *n) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(obj, key);
    *n = 0;
    if (!a || cJSON_IsNull(a)) return DFA_OK;
    if (!cJSON_IsArray(a)) DFA_CTX_FAIL(ctx, DFA_ERR_FORMAT, "%s: key '%s' is not a list", what, key);
    const cJSON *it;
    cJSON_ArrayForEach(it, a) {
        if (!cJSON_IsNumber(it) || it->valuedouble != (double)(int)it->valuedouble)
            DFA_CTX_FAIL(ctx, DFA_ERR_FORMAT, "%s: key '%s' holds a non-integer", what, key);
        if (*n >= max) DFA_CTX_FAIL(ctx, DFA_ERR_FORMAT, "%s: key '%s' has more than %d entries", what, key, max);
        vals[(*n)++] = (int)it->valuedouble;
    }
    return DFA_OK;
}
