/* mmdit.h - pieces the MMDiT engines (FLUX.1, SD3/SD3.5) share: the weight table that loads a
 * whole checkpoint into ONE context-owned block (llm.c malloc_and_point style), linear layers
 * that point into it, the activation arena sizing, and the few fused elementwise steps of an
 * MMDiT block (AdaLN modulation, gated residual, per-head RMSNorm). f32, host memory.
 * See docs/DESIGN.md "MMDiT" for the formulas and the orders that are easy to get wrong. */
#ifndef DFA_MODELS_MMDIT_H
#define DFA_MODELS_MMDIT_H

#include <stddef.h>
#include <stdint.h>

#include "attn/attn.h"
#include "core/ctx.h"
#include "io/json.h"

/* nn.Linear: w [out, in], b [out] or NULL. Pointers into the model's weight block. */
typedef struct dfa_lin {
    float *w, *b;
    int in, out;
} dfa_lin;

/* One expected checkpoint tensor and where its f32 copy goes. */
typedef struct dfa_wtab_entry {
    char name[160];
    int ndim;
    int64_t shape[4];
    int split_cols; /* > 0: a 2-D weight stored as [:, :split] then [:, split:], each contiguous */
    float **dst;
} dfa_wtab_entry;

/* Registration runs twice: first with e == NULL to count, then to fill. */
typedef struct dfa_wtab {
    dfa_wtab_entry *e;
    int n, cap;
    int overflow; /* a name did not fit: reported by dfa_wtab_load */
} dfa_wtab;

void dfa_wtab_add(dfa_wtab *t, float **dst, int ndim, const int64_t *shape, const char *fmt, ...)
    DFA_PRINTF(5, 6);
/* Registers "<prefix>.weight" [out, in] and, if bias, "<prefix>.bias" [out]. */
void dfa_wtab_linear(dfa_wtab *t, dfa_lin *l, int in, int out, int bias, const char *fmt, ...) DFA_PRINTF(6, 7);

/* Like dfa_wtab_linear, but the weight [out, in] is stored split at column `split`: W[:, :split]
 * ([out, split], contiguous) followed by W[:, split:] ([out, in - split]) -- for a linear whose
 * input is a concatenation (FLUX single block's proj_out over [attn, mlp]). */
void dfa_wtab_linear_split(dfa_wtab *t, dfa_lin *l, int in, int out, int split, const char *fmt, ...)
    DFA_PRINTF(6, 7);

/* Count with `reg(model, &t)`, allocate the table, register again, then allocate one
 * context-owned block for every tensor (64-byte aligned slices) on `dev`, point each dst into it
 * and load every tensor from the checkpoint at `st_path` (file or folder), converted to `dtype`
 * (DFA_F32 on the CPU; DFA_BF16 on CUDA, the dst pointers then hold device bf16 addresses) with
 * its shape checked. Errors (through ctx) name the tensor, the file and both shapes. */
typedef void (*dfa_wtab_register_fn)(void *model, dfa_wtab *t);
dfa_status dfa_wtab_load(dfa_ctx *ctx, void *model, dfa_wtab_register_fn reg, const char *st_path, dfa_device dev,
                         dfa_dtype dtype, void **block_out, size_t *bytes_out);

/* Write a random checkpoint for the tensors `reg` registers (bf16, uniform values scaled
 * 1/sqrt(fan_in) for matrices, 1 + 0.1u for norm weights, 0.05u for other vectors) to `path`
 * (a .safetensors file): for tests and benchmarks at real sizes without real weights. */
dfa_status dfa_wtab_write_random(dfa_ctx *ctx, void *model, dfa_wtab_register_fn reg, const char *path, uint64_t seed);

/* Activation arena: sum of 256-aligned float buffers. */
static inline size_t dfa_mmdit_fbytes(size_t n_floats) { return (n_floats * sizeof(float) + 255u) & ~(size_t)255u; }
/* (Re)size the arena on `dev` to at least `bytes` (only grows; reset either way). */
dfa_status dfa_mmdit_arena_ensure(dfa_ctx *ctx, dfa_arena *a, dfa_device dev, size_t bytes, const char *name);
/* End of a CUDA forward whose status is st: collect the attention timers' pending GPU-time spans
 * (core/cuda_rt.h; one event wait, the download already synchronised) on success, forget them on
 * failure. Returns st, or the collect's error. */
dfa_status dfa_mmdit_spans_end(dfa_ctx *ctx, dfa_status st);
float *dfa_mmdit_falloc(dfa_ctx *ctx, dfa_arena *a, size_t n_floats, dfa_status *st);

/* y = LN(x) * (1 + scale) + shift over T rows of N (LayerNorm without affine, eps). x == y ok. */
void dfa_mmdit_ln_modulate(const dfa_ctx *ctx, const float *x, int T, int N, const float *shift, const float *scale,
                           float eps, float *y);
/* resid[t, :] += gate[:] * x[t, :] over T rows of N (gate NULL: plain add). */
void dfa_mmdit_gate_add(const dfa_ctx *ctx, float *resid, int T, int N, const float *gate, const float *x);
/* Per-head RMSNorm of T tokens x H heads of D (rows of a [T, H*D] buffer), weight [D] or NULL. */
void dfa_mmdit_head_rmsnorm(const dfa_ctx *ctx, float *x, int T, int H, int D, const float *w, float eps);
/* y[M, out] = l(x[M, in]). */
void dfa_mmdit_linear(const dfa_ctx *ctx, const dfa_lin *l, const float *x, int M, float *y);

/* TimestepEmbedding(linear_1, SiLU, linear_2) of the 256-channel sinusoidal projection of t
 * (flip_sin_to_cos, shift 0), computed in f32 as diffusers does; out[dim]. tmp: 256 + dim floats. */
void dfa_mmdit_timestep_mlp(const dfa_ctx *ctx, float t, const dfa_lin *l1, const dfa_lin *l2, float *tmp,
                            float *out);
/* out[dim] = l2(SiLU(l1(x))) (PixArtAlphaTextProjection with act "silu"). tmp: l1->out floats. */
void dfa_mmdit_mlp_silu(const dfa_ctx *ctx, const dfa_lin *l1, const dfa_lin *l2, const float *x, float *tmp,
                        float *out);

/* dfa_attn_layer on [B, N, H, D] f32 host buffers; adds the seconds spent to *attn_s. */
dfa_status dfa_mmdit_attention(dfa_ctx *ctx, int layer, const dfa_attn_layout *lay, int B, int N, int H, int D,
                               float *q, float *k, float *v, float *out, double *attn_s);


/* Read "<dir>/config.json" (dir may be the model folder or its transformer/ subfolder).
 * Writes the folder that holds config.json into dir_out (for the weights). */
dfa_status dfa_mmdit_read_config(dfa_ctx *ctx, const char *dir, cJSON **out, char *dir_out, size_t dir_len,
                                 char *cfg_path, size_t cfg_len);
/* Integer-list key (e.g. axes_dims_rope): up to max entries; *n set. */
dfa_status dfa_mmdit_json_ints(dfa_ctx *ctx, const cJSON *obj, const char *key, const char *what, int *vals, int max,
                               int *n);

#endif
