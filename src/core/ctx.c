#include "core/ctx.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attn/attn_state.h"
#include "core/log.h"

struct dfa_alloc_node {
    void *ptr;
    size_t bytes;
    dfa_device dev;
    dfa_alloc_node *next;
};

dfa_ctx_params dfa_ctx_default_params(void) {
    dfa_ctx_params p;
    memset(&p, 0, sizeof p);
    p.backend = DFA_BACKEND_CPU;
    p.n_threads = 0;
    p.cuda_device = 0;
    p.log_level = DFA_LOG_INFO;
    return p;
}

const char *dfa_version(void) {
    return "0.1.0";
}

int dfa_has_cuda(void) {
#ifdef DFA_HAVE_CUDA
    return 1;
#else
    return 0;
#endif
}

dfa_status dfa_ctx_init(dfa_ctx **out, const dfa_ctx_params *params, char *err_buf, size_t err_len) {
    dfa_error err;
    dfa_error_clear(&err);
    *out = NULL;
    dfa_ctx_params p = params ? *params : dfa_ctx_default_params();
    dfa_status s = DFA_OK;
    if (p.backend != DFA_BACKEND_CPU && p.backend != DFA_BACKEND_CUDA) {
        s = DFA_SET(&err, DFA_ERR_INVALID_ARG, "unknown backend %d", (int)p.backend);
    } else if (p.log_level < DFA_LOG_ERROR || p.log_level > DFA_LOG_DEBUG) {
        s = DFA_SET(&err, DFA_ERR_INVALID_ARG, "log level %d outside [0, 3]", (int)p.log_level);
    }
    dfa_ctx *ctx = NULL;
    if (s == DFA_OK) {
        ctx = calloc(1, sizeof *ctx);
        if (!ctx) s = DFA_SET(&err, DFA_ERR_OOM, "out of host memory creating the context");
    }
    if (s == DFA_OK) {
        ctx->params = p;
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        ctx->n_threads = p.n_threads > 0 ? p.n_threads : (ncpu > 0 ? (int)ncpu : 1);
        /* CPU thread policy: OpenBLAS runs single-threaded and dfa parallelises every loop, GEMMs
         * included (models/ops.c dfa_op_gemm), in one OpenMP pool of n_threads. OpenBLAS's setting is
         * process-wide; it is set here once, never per call. */
#ifdef OPENBLAS_VERSION
        openblas_set_num_threads(1);
#endif
        if (p.backend == DFA_BACKEND_CUDA) s = dfa_cuda_init(&ctx->cuda, p.cuda_device, &err);
    }
    if (s != DFA_OK) {
        if (err_buf && err_len) snprintf(err_buf, err_len, "%s", err.msg);
        free(ctx);
        return s;
    }
    *out = ctx;
    return DFA_OK;
}

void dfa_ctx_free(dfa_ctx *ctx) {
    if (!ctx) return;
    dfa_attn_state_free(ctx); /* releases its caches through the list below */
    dfa_alloc_node *n = ctx->allocs;
    while (n) {
        dfa_alloc_node *next = n->next;
        if (n->dev == DFA_DEV_CUDA)
            dfa_cuda_dealloc(ctx->cuda, n->ptr);
        else
            free(n->ptr);
        free(n);
        n = next;
    }
    dfa_cuda_free(ctx->cuda);
    free(ctx);
}

const char *dfa_ctx_error(const dfa_ctx *ctx) {
    return ctx ? ctx->err.msg : "no context";
}

dfa_backend dfa_ctx_backend(const dfa_ctx *ctx) {
    return ctx->params.backend;
}

dfa_status dfa_ctx_mem_alloc(dfa_ctx *ctx, dfa_device dev, size_t bytes, const char *what, void **out) {
    *out = NULL;
    dfa_alloc_node *n = malloc(sizeof *n);
    if (!n) DFA_CTX_FAIL(ctx, DFA_ERR_OOM, "out of host memory (bookkeeping for %s)", what);
    void *p = NULL;
    if (dev == DFA_DEV_CUDA) {
        if (!ctx->cuda) {
            free(n);
            DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "%s: device memory requested on a CPU context", what);
        }
        dfa_status s = dfa_cuda_malloc(ctx->cuda, &p, bytes, &ctx->err);
        if (s != DFA_OK) {
            free(n);
            dfa_error_wrap(&ctx->err, "allocating %s", what);
            return s;
        }
        ctx->device_bytes += bytes;
        ctx->device_allocs++;
        if (ctx->device_bytes > ctx->device_peak) ctx->device_peak = ctx->device_bytes;
    } else {
        size_t rounded = (bytes + 63) / 64 * 64;
        p = aligned_alloc(64, rounded ? rounded : 64);
        if (!p) {
            free(n);
            DFA_CTX_FAIL(ctx, DFA_ERR_OOM, "out of host memory: %s needs %zu bytes", what, bytes);
        }
        ctx->host_bytes += bytes;
        if (ctx->host_bytes > ctx->host_peak) ctx->host_peak = ctx->host_bytes;
    }
    n->ptr = p;
    n->bytes = bytes;
    n->dev = dev;
    n->next = ctx->allocs;
    ctx->allocs = n;
    *out = p;
    return DFA_OK;
}

void dfa_ctx_mem_release(dfa_ctx *ctx, void *ptr) {
    if (!ptr) return;
    for (dfa_alloc_node **pp = &ctx->allocs; *pp; pp = &(*pp)->next) {
        dfa_alloc_node *n = *pp;
        if (n->ptr != ptr) continue;
        *pp = n->next;
        if (n->dev == DFA_DEV_CUDA) {
            dfa_cuda_dealloc(ctx->cuda, n->ptr);
            ctx->device_bytes -= n->bytes;
        } else {
            free(n->ptr);
            ctx->host_bytes -= n->bytes;
        }
        free(n);
        return;
    }
    DFA_LOGW(ctx, "dfa_ctx_mem_release: pointer %p is not owned by this context", ptr);
}

dfa_status dfa_arena_init(dfa_ctx *ctx, dfa_arena *a, dfa_device dev, size_t bytes, const char *name) {
    memset(a, 0, sizeof *a);
    a->dev = dev;
    a->name = name;
    void *p = NULL;
    DFA_TRY(dfa_ctx_mem_alloc(ctx, dev, bytes, name, &p));
    a->base = p;
    a->size = bytes;
    return DFA_OK;
}

dfa_status dfa_arena_alloc(dfa_ctx *ctx, dfa_arena *a, size_t bytes, void **out) {
    size_t start = (a->used + 255) / 256 * 256;
    if (start > a->size || bytes > a->size - start) {
        *out = NULL;
        DFA_CTX_FAIL(ctx, DFA_ERR_OOM, "arena '%s' is full: %zu bytes requested, %zu of %zu left",
                     a->name ? a->name : "?", bytes, a->size - (start < a->size ? start : a->size), a->size);
    }
    *out = a->base + start;
    a->used = start + bytes;
    if (a->used > a->peak) a->peak = a->used;
    return DFA_OK;
}

dfa_status dfa_arena_tensor(dfa_ctx *ctx, dfa_arena *a, dfa_tensor *t, dfa_dtype dtype, int ndim,
                            const int64_t *shape) {
    DFA_TRY(dfa_tensor_init(t, dtype, a->dev, ndim, shape, NULL, &ctx->err));
    return dfa_arena_alloc(ctx, a, dfa_tensor_nbytes(t), &t->data);
}

void dfa_arena_reset(dfa_arena *a) {
    a->used = 0;
}

void dfa_arena_release(dfa_ctx *ctx, dfa_arena *a) {
    dfa_ctx_mem_release(ctx, a->base);
    memset(a, 0, sizeof *a);
}
