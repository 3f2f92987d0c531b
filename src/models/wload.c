#include "models/wload.h"

#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static dfa_status take(dfa_wload *wl, float **out, int ndim, const int64_t *shape, const char *name,
                       const char *alt) {
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    if (wl->dry) {
        if (wl->visit) wl->visit(wl->visit_user, name, ndim, shape);
        *out = NULL;
        wl->used += (n + 127) & ~(size_t)127; /* 512-byte aligned tensors (256 in a bf16 copy on the GPU) */
        return DFA_OK;
    }
    const char *use = name;
    if (alt && !dfa_st_find(wl->st, name) && dfa_st_find(wl->st, alt)) use = alt;
    float *dst = wl->base + wl->used;
    DFA_TRY(dfa_st_load(wl->st, use, DFA_F32, ndim, shape, dst, DFA_DEV_CPU, NULL, &wl->ctx->err));
    wl->used += (n + 127) & ~(size_t)127;
    *out = dst;
    return DFA_OK;
}

dfa_status dfa_wload_tensor(dfa_wload *wl, float **out, int ndim, const int64_t *shape, const char *fmt, ...) {
    char name[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return take(wl, out, ndim, shape, name, NULL);
}

dfa_status dfa_wload_tensor_alt(dfa_wload *wl, float **out, int ndim, const int64_t *shape, const char *name,
                                const char *alt) {
    return take(wl, out, ndim, shape, name, alt);
}

dfa_status dfa_wload_vec(dfa_wload *wl, float **out, int64_t n, const char *fmt, ...) {
    char name[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return take(wl, out, 1, &n, name, NULL);
}

dfa_status dfa_wload_linear(dfa_wload *wl, float **w, float **b, int64_t n_out, int64_t n_in, const char *prefix) {
    int64_t shape[2] = {n_out, n_in};
    DFA_TRY(dfa_wload_tensor(wl, w, 2, shape, "%s.weight", prefix));
    if (b) DFA_TRY(dfa_wload_vec(wl, b, n_out, "%s.bias", prefix));
    return DFA_OK;
}

dfa_status dfa_wload_conv(dfa_wload *wl, float **w, float **b, int64_t n_out, int64_t n_in, int k,
                          const char *prefix) {
    int64_t shape[4] = {n_out, n_in, k, k};
    DFA_TRY(dfa_wload_tensor(wl, w, 4, shape, "%s.weight", prefix));
    if (b) DFA_TRY(dfa_wload_vec(wl, b, n_out, "%s.bias", prefix));
    return DFA_OK;
}

dfa_status dfa_wload_run(dfa_ctx *ctx, const dfa_safetensors *st, dfa_wload_bind_fn bind, void *model,
                         const char *what, float **block, size_t *n_floats) {
    dfa_wload wl = {ctx, st, NULL, 0, 1, NULL, NULL};
    *block = NULL;
    dfa_status s = bind(&wl, model);
    if (s != DFA_OK) return dfa_error_wrap(&ctx->err, "%s", what);
    size_t total = wl.used;
    void *mem = NULL;
    DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, (total ? total : 1) * sizeof(float), what, &mem));
    wl.base = mem;
    wl.used = 0;
    wl.dry = 0;
    s = bind(&wl, model);
    if (s != DFA_OK) {
        dfa_ctx_mem_release(ctx, mem);
        return dfa_error_wrap(&ctx->err, "%s", what);
    }
    *block = mem;
    if (n_floats) *n_floats = total;
    return DFA_OK;
}

dfa_status dfa_wspec_place(dfa_ctx *ctx, const dfa_safetensors *st, dfa_wspec *ws, int n, int gpu, const char *what,
                           void **block) {
    const dfa_device dev = gpu ? DFA_DEV_CUDA : DFA_DEV_CPU;
    const size_t esz = gpu ? 2 : 4;
    size_t total = 0;
    for (int i = 0; i < n; i++) total += (size_t)ws[i].shape[0] * (ws[i].ndim == 2 ? (size_t)ws[i].shape[1] : 1);
    DFA_TRY(dfa_ctx_mem_alloc(ctx, dev, total * esz, what, block));
    char *p = *block;
    for (int i = 0; i < n; i++) {
        *ws[i].dst = (float *)(void *)p;
        DFA_TRY(dfa_st_load(st, ws[i].name, gpu ? DFA_BF16 : DFA_F32, ws[i].ndim, ws[i].shape, p, dev, ctx->cuda,
                            &ctx->err));
        p += esz * (size_t)ws[i].shape[0] * (ws[i].ndim == 2 ? (size_t)ws[i].shape[1] : 1);
    }
    return DFA_OK;
}

typedef struct wr_entry {
    char name[160];
    int ndim;
    int64_t shape[4];
} wr_entry;

typedef struct wr_list {
    wr_entry *e; /* NULL: count only */
    int n, overflow;
} wr_list;

static void wr_visit(void *user, const char *name, int ndim, const int64_t *shape) {
    wr_list *l = user;
    if (l->e) {
        wr_entry *e = &l->e[l->n];
        if (strlen(name) >= sizeof e->name || ndim > 4 || ndim < 1) l->overflow = 1;
        snprintf(e->name, sizeof e->name, "%s", name);
        e->ndim = ndim > 4 ? 4 : ndim;
        for (int i = 0; i < e->ndim; i++) e->shape[i] = shape[i];
    }
    l->n++;
}

static uint64_t wr_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

dfa_status dfa_wload_write_random(dfa_ctx *ctx, dfa_wload_bind_fn bind, void *model, const char *path, uint64_t seed,
                                  const char *what) {
    wr_list l = {0};
    dfa_wload wl = {ctx, NULL, NULL, 0, 1, wr_visit, &l};
    if (bind(&wl, model) != DFA_OK) return dfa_error_wrap(&ctx->err, "%s", what);
    const int n = l.n;
    if (n <= 0) DFA_CTX_FAIL(ctx, DFA_ERR_INTERNAL, "%s: no tensors to write", what);
    void *mem = NULL;
    DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, (size_t)n * (sizeof(wr_entry) + sizeof(dfa_st_item) + sizeof(void *)),
                              "random weight table", &mem));
    l.e = mem;
    l.n = 0;
    dfa_st_item *items = (dfa_st_item *)(void *)(l.e + n);
    uint16_t **data = (uint16_t **)(void *)(items + n);
    memset(data, 0, (size_t)n * sizeof(void *));
    wl.used = 0;
    dfa_status st = bind(&wl, model);
    if (st == DFA_OK && (l.n != n || l.overflow))
        st = DFA_SET(&ctx->err, DFA_ERR_INTERNAL, "%s: %d tensors on the second pass, %d on the first%s", what, l.n, n,
                     l.overflow ? " (a name or rank did not fit)" : "");
    uint64_t rs = seed;
    for (int i = 0; i < n && st == DFA_OK; i++) {
        const wr_entry *e = &l.e[i];
        size_t k = 1;
        for (int j = 0; j < e->ndim; j++) k *= (size_t)e->shape[j];
        st = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, k * 2 + 2, e->name, (void **)&data[i]);
        if (st != DFA_OK) break;
        const float sc = e->ndim >= 2 ? 1.0f / sqrtf((float)(k / (size_t)e->shape[0])) : 0.05f;
        for (size_t j = 0; j < k; j++) {
            const float u = (float)((double)(wr_next(&rs) >> 11) * (2.0 / 9007199254740992.0) - 1.0);
            data[i][j] = dfa_f32_to_bf16(sc * u);
        }
        items[i] = (dfa_st_item){.name = e->name, .dtype = DFA_BF16, .ndim = e->ndim, .shape = e->shape,
                                 .data = data[i]};
    }
    if (st == DFA_OK) st = dfa_st_write(path, items, n, NULL, NULL, 0, &ctx->err);
    for (int i = 0; i < n; i++)
        if (data[i]) dfa_ctx_mem_release(ctx, data[i]);
    dfa_ctx_mem_release(ctx, mem);
    return st;
}
