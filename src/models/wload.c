#include "models/wload.h"

#include <stdarg.h>
#include <stdio.h>

static dfa_status take(dfa_wload *wl, float **out, int ndim, const int64_t *shape, const char *name,
                       const char *alt) {
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    if (wl->dry) {
        *out = NULL;
        wl->used += (n + 15) & ~(size_t)15; /* 64-byte aligned tensors */
        return DFA_OK;
    }
    const char *use = name;
    if (alt && !dfa_st_find(wl->st, name) && dfa_st_find(wl->st, alt)) use = alt;
    float *dst = wl->base + wl->used;
    DFA_TRY(dfa_st_load(wl->st, use, DFA_F32, ndim, shape, dst, DFA_DEV_CPU, NULL, &wl->ctx->err));
    wl->used += (n + 15) & ~(size_t)15;
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
    dfa_wload wl = {ctx, st, NULL, 0, 1};
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
