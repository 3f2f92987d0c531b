/* ctx.h - the context: backend, threads, logger, last error, and every allocation.
 * Internal layout; the public header keeps dfa_ctx opaque. */
#ifndef DFA_CORE_CTX_H
#define DFA_CORE_CTX_H

#include <stddef.h>

#include "core/cuda_rt.h"
#include "core/error.h"
#include "core/tensor.h"
#include "dfa.h"

typedef struct dfa_alloc_node dfa_alloc_node; /* one owned allocation (host or device) */
struct dfa_attn_state;                        /* attention plan, step, caches (attn/attn_state.h) */

struct dfa_ctx {
    dfa_ctx_params params;
    int n_threads;         /* resolved CPU thread count */
    dfa_error err;         /* last error raised through this context */
    dfa_cuda *cuda;        /* NULL on the CPU backend */
    dfa_alloc_node *allocs;
    size_t host_bytes, host_peak;     /* live bytes owned by the context */
    size_t device_bytes, device_peak;
    size_t device_allocs;  /* device allocations made so far (tests: none inside a prepared loop) */
    struct dfa_attn_state *attn; /* NULL until a plan is set; freed by dfa_ctx_free */
};

/* Allocate memory owned by the context (64-byte aligned on the host). Freed by
 * dfa_ctx_mem_release() or with the context. Errors name `what`. */
dfa_status dfa_ctx_mem_alloc(dfa_ctx *ctx, dfa_device dev, size_t bytes, const char *what, void **out);
void dfa_ctx_mem_release(dfa_ctx *ctx, void *ptr);

/* A bump arena over one context-owned block: weights go in one, activations in another
 * that is reset and reused (the llm.c / ggml-alloc pattern). */
typedef struct dfa_arena {
    dfa_device dev;
    unsigned char *base;
    size_t size, used, peak;
    const char *name;
} dfa_arena;

dfa_status dfa_arena_init(dfa_ctx *ctx, dfa_arena *a, dfa_device dev, size_t bytes, const char *name);
/* 256-byte aligned; fails with DFA_ERR_OOM naming the arena, the request and what is left. */
dfa_status dfa_arena_alloc(dfa_ctx *ctx, dfa_arena *a, size_t bytes, void **out);
/* Allocate a tensor's storage from the arena. */
dfa_status dfa_arena_tensor(dfa_ctx *ctx, dfa_arena *a, dfa_tensor *t, dfa_dtype dtype, int ndim,
                            const int64_t *shape);
void dfa_arena_reset(dfa_arena *a);
void dfa_arena_release(dfa_ctx *ctx, dfa_arena *a);

/* Record an error on the context (for code that reports through ctx->err). */
#define DFA_CTX_FAIL(ctx, code, ...) return dfa_error_set(&(ctx)->err, (code), __FILE__, __LINE__, __VA_ARGS__)

#endif
