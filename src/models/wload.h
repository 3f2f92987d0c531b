/* wload.h - load a model's f32 weights from a safetensors checkpoint into ONE context-owned
 * block. A model writes one `bind` function that asks for each tensor by name and shape; it
 * runs twice: a dry pass that only sums sizes, then the pass that copies (and converts) the
 * data. Missing or misshapen tensors fail with a message naming the tensor, the file and
 * expected vs got shape (dfa_st_load's message), prefixed with the model's name. Every tensor
 * starts at a multiple of 128 floats in the block, so a bf16 copy of the block with the same
 * element offsets (the CUDA DiT / PixArt / VAE weights) has 256-byte aligned tensors, as
 * cuBLASLt's fastest kernels want. */
#ifndef DFA_MODELS_WLOAD_H
#define DFA_MODELS_WLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"
#include "io/safetensors.h"

/* Called for every tensor the dry pass asks for (dfa_wload_write_random). */
typedef void (*dfa_wload_visit_fn)(void *user, const char *name, int ndim, const int64_t *shape);

typedef struct dfa_wload {
    dfa_ctx *ctx;
    const dfa_safetensors *st;
    float *base; /* NULL during the dry pass */
    size_t used; /* floats handed out so far */
    int dry;
    dfa_wload_visit_fn visit; /* NULL except when writing a random checkpoint */
    void *visit_user;
} dfa_wload;

/* Ask for tensor `name` (printf-style) of exactly `ndim` dims `shape`; *out points into the
 * block (NULL during the dry pass). */
dfa_status dfa_wload_tensor(dfa_wload *wl, float **out, int ndim, const int64_t *shape, const char *fmt, ...)
    DFA_PRINTF(5, 6);
/* Same, but if `name` is absent use `alt` (older checkpoint spellings). Both are plain names. */
dfa_status dfa_wload_tensor_alt(dfa_wload *wl, float **out, int ndim, const int64_t *shape, const char *name,
                                const char *alt);
/* Shorthands for common shapes. */
dfa_status dfa_wload_vec(dfa_wload *wl, float **out, int64_t n, const char *fmt, ...) DFA_PRINTF(4, 5);
/* nn.Linear: weight [n_out, n_in] and (if b != NULL) bias [n_out], under prefix. */
dfa_status dfa_wload_linear(dfa_wload *wl, float **w, float **b, int64_t n_out, int64_t n_in, const char *prefix);
/* nn.Conv2d: weight [n_out, n_in, k, k], bias [n_out], under prefix. */
dfa_status dfa_wload_conv(dfa_wload *wl, float **w, float **b, int64_t n_out, int64_t n_in, int k,
                          const char *prefix);

/* Run bind twice (dry, then load) and return the block in *block (owned by the context;
 * release with dfa_ctx_mem_release). `what` names the model in messages. */
typedef dfa_status (*dfa_wload_bind_fn)(dfa_wload *wl, void *model);
dfa_status dfa_wload_run(dfa_ctx *ctx, const dfa_safetensors *st, dfa_wload_bind_fn bind, void *model,
                         const char *what, float **block, size_t *n_floats);

/* Write a random bf16 checkpoint to `path` (.safetensors) with every tensor `bind` asks for
 * (matrices uniform / sqrt(fan_in), vectors 0.05 * uniform; splitmix64 from seed): tests and
 * benchmarks at real sizes without real weights. */
dfa_status dfa_wload_write_random(dfa_ctx *ctx, dfa_wload_bind_fn bind, void *model, const char *path, uint64_t seed,
                                  const char *what);

/* A flat weight list (the text encoders): each entry's slot, name and shape (rank 1 or 2). */
typedef struct dfa_wspec {
    float **dst;
    char name[128];
    int ndim;
    int64_t shape[2];
} dfa_wspec;

/* Allocate one context-owned block for all of ws (f32 on the host, or bf16 on the device when
 * gpu), load every tensor into it with its shape checked, and point each *dst at its slice. */
dfa_status dfa_wspec_place(dfa_ctx *ctx, const dfa_safetensors *st, dfa_wspec *ws, int n, int gpu, const char *what,
                           void **block);

#endif
