/* tx_cuda.h - the GPU pieces DiT and PixArt share (models/dit_common.h's blocks on CUDA): bf16
 * weights and activations on the device, f32 inside every kernel, cuBLASLt GEMMs and the fused
 * kernels of models/cuda/ops_cuda.h. Weight structs are the CPU ones (dit_common.h) whose float
 * pointers hold device addresses of bf16 data after dfa_txg_upload_weights + dfa_txg_reloc.
 * C only (builds with the CUDA stubs, where every call fails with DFA_ERR_UNSUPPORTED). */
#ifndef DFA_MODELS_TX_CUDA_H
#define DFA_MODELS_TX_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"
#include "models/dit_common.h"

struct dfa_cuops;

/* Copy the host f32 weight block (n floats) to a new context-owned device block of n bf16
 * values (same element offsets: the wload slices are 128-float aligned, so every device tensor
 * starts 256-byte aligned). */
dfa_status dfa_txg_upload_weights(dfa_ctx *ctx, const float *host, size_t n, uint16_t **dev);
/* *p: a pointer into the host block -> the same element of the device block (NULL stays NULL). */
void dfa_txg_reloc(float **p, const float *host, const uint16_t *dev);
void dfa_txg_reloc_attn(dfa_tx_attn *a, const float *host, const uint16_t *dev);
void dfa_txg_reloc_ff(dfa_tx_ff *f, const float *host, const uint16_t *dev);
void dfa_txg_reloc_temb(dfa_tx_temb *t, const float *host, const uint16_t *dev);

/* The CUDA state a DiT / PixArt model keeps (dfa_dit, dfa_pixart): the ops, the device
 * activation and host staging arenas, the cached position embedding. */
typedef struct dfa_txg_model {
    struct dfa_cuops *ops;
    dfa_arena dact, hst; /* device activations, host staging */
    uint16_t *dpos;      /* cached position embedding [pos_h * pos_w, D] (device bf16) */
    int pos_h, pos_w;
    int no_attn_timer; /* 1 = no attention timer (no CUDA events around the attention calls) */
} dfa_txg_model;

/* Create s->ops and copy the host weight block (n floats) to the device (dfa_txg_upload_weights);
 * the caller relocates its weight pointers into *dev, then calls dfa_txg_model_commit. */
dfa_status dfa_txg_model_upload(dfa_ctx *ctx, dfa_txg_model *s, const float *host, size_t n, uint16_t **dev);
/* Release the host weight block *weights, put the device block dev in its place, *devp = CUDA. */
void dfa_txg_model_commit(dfa_ctx *ctx, float **weights, uint16_t *dev, dfa_device *devp);
/* Free everything in s (safe on a zeroed or partly set up state). */
void dfa_txg_model_release(dfa_ctx *ctx, dfa_txg_model *s);

/* One forward's GPU context: the ops, a device f32 staging buffer and a host staging buffer
 * (each stage_n floats). */
typedef struct dfa_txg {
    dfa_ctx *ctx;
    struct dfa_cuops *ops;
    float *dstage, *hstage;
    size_t stage_n;
} dfa_txg;

/* Activations a DiT / PixArt block needs on the device (bf16) for B x N tokens of width D,
 * and (PixArt) B x L text tokens. */
typedef struct dfa_txg_bufs {
    uint16_t *hs, *nh, *q, *k, *v, *o, *tmp, *mid; /* [B*N, D] ([B*N, ff_inner] for mid) */
    uint16_t *cols;                                /* [B*N, C*p*p] patches, then [B*N, p*p*out_C] */
    uint16_t *tproj, *emb, *emb2, *mod, *mod2;     /* [B, 256], [B, D] x 2, [B, 6D] x 2 */
    /* cross-attention (PixArt; NULL for DiT) */
    uint16_t *txt_in, *txt_mid, *ck, *cv, *kh, *vh, *qh, *oh, *pr;
    float *sc;        /* scores [G, N, Lp] (one head group of one batch item) */
    uint16_t *txt;    /* projected text [B*L, Dkv]: not carved, set by the caller (PixArt's text cache) */
    float *bias;      /* key bias [B, L]: not carved, set by the caller */
    int Lp;           /* L rounded up to 8 (row stride of sc / pr) */
} dfa_txg_bufs;

typedef struct dfa_txg_dims {
    int B, N, D, ff_inner, patch_cols, out_cols; /* patch_cols = C*p*p, out_cols = p*p*out_C */
    int heads, L, caption;                       /* L = 0: no cross-attention; caption = text width in */
    size_t cross_budget;                         /* dfa_txg_cross_group's budget (0: default) */
} dfa_txg_dims;

/* Heads per cross-attention GEMM batch: as many as keep the f32 scores and bf16 probabilities of
 * the group (G x N x Lp x 6 bytes) within `budget` bytes (0: 24 MB), so that they stay in L2
 * between the GEMM, the softmax and the P.V GEMM (at least 1, at most H). */
#define DFA_TXG_CROSS_BUDGET ((size_t)24 << 20)
int dfa_txg_cross_group(int N, int L, int H, size_t budget);

/* Bytes the buffers take on the device (the arena size; CPU-visible for tests) and the
 * staging floats a forward needs (host and device each). */
size_t dfa_txg_bufs_bytes(const dfa_txg_dims *d);
size_t dfa_txg_stage_floats(const dfa_txg_dims *d);
/* Carve the buffers out of arena a (already sized with dfa_txg_bufs_bytes). */
dfa_status dfa_txg_bufs_carve(dfa_ctx *ctx, dfa_arena *a, const dfa_txg_dims *d, dfa_txg_bufs *b);
/* A forward's setup: size s->dact / s->hst for d (act_name, hst_name: their allocation names,
 * kept by the arenas), carve b and set g up with its staging buffers. */
dfa_status dfa_txg_model_begin(dfa_ctx *ctx, dfa_txg_model *s, const dfa_txg_dims *d, const char *act_name,
                               const char *hst_name, dfa_txg *g, dfa_txg_bufs *b);

/* host f32 [n] -> device bf16 (through the staging buffers, in chunks) and back. */
dfa_status dfa_txg_upload(dfa_txg *g, const float *src, size_t n, uint16_t *dst);
dfa_status dfa_txg_download(dfa_txg *g, const uint16_t *src, size_t n, float *dst);
/* y[M, N] = x[M, K] W^T + b (W, b: device bf16 behind float pointers). */
dfa_status dfa_txg_linear(dfa_txg *g, const uint16_t *x, int M, int K, const float *w, const float *b, int N,
                          uint16_t *y);
/* TimestepEmbedding of the sinusoidal projection already on the device (proj [B, in_dim]):
 * out [B, D] = linear_2(SiLU(linear_1(proj))); mid: [B, D] scratch. */
dfa_status dfa_txg_temb(dfa_txg *g, const dfa_tx_temb *te, int B, const uint16_t *proj, int D, uint16_t *mid,
                        uint16_t *out);
/* Sinusoidal projections of B timesteps (256 channels, flip_sin_to_cos, shift) to the device. */
dfa_status dfa_txg_tproj(dfa_txg *g, int B, const float *t, int dim, float shift, uint16_t *out);
/* Patch embedding: x host [B, C, H, W] -> out [B*N, D] = conv_p(x) + pos (device [N, D]). */
dfa_status dfa_txg_patch_embed(dfa_txg *g, const float *x, int B, int C, int H, int W, int p, const float *w,
                               const float *b, int D, const uint16_t *pos, uint16_t *cols, uint16_t *out);
/* Final projection y [B*N, p*p*C] (device) -> host out [B, C, H, W]. */
dfa_status dfa_txg_unpatchify(dfa_txg *g, const uint16_t *y, int B, int h, int w, int p, int C, float *out);
/* Self-attention through dfa_attn_layer (layer = block index), bf16 [B, N, H, Dh] tensors;
 * out [B*N, D] = to_out(attn(in)). The attention's GPU seconds (CUDA events, dfa_attn_layer_bf16_cuda)
 * go to *attn_s at the forward's dfa_mmdit_spans_end. */
dfa_status dfa_txg_self_attn(dfa_txg *g, int layer, const dfa_tx_attn *a, int B, int N, int H, int Dh,
                             const uint16_t *in, dfa_txg_bufs *b, uint16_t *out, double *attn_s);
/* Cross-attention of B*N queries from in to B*L text tokens b->txt (width Dkv) with the key
 * bias b->bias (mask_on 0: none), heads in groups of dfa_txg_cross_group(N, L, H, budget): out
 * [B*N, D]. */
dfa_status dfa_txg_cross_attn(dfa_txg *g, const dfa_tx_attn *a, int B, int N, int L, int H, int Dh, int Dkv,
                              const uint16_t *in, int mask_on, size_t budget, dfa_txg_bufs *b, uint16_t *out);
/* FeedForward (GELU tanh): out [M, D]; mid [M, inner]. */
dfa_status dfa_txg_ff(dfa_txg *g, const dfa_tx_ff *f, int M, int D, const uint16_t *in, uint16_t *mid,
                      uint16_t *out);
/* The sincos position embedding [gh*gw, D] on the device, cached in *pos (context-owned,
 * reallocated when the grid changes: *ph, *pw hold the cached grid). */
dfa_status dfa_txg_pos_embed(dfa_txg *g, int D, int gh, int gw, int base_size, double interp, uint16_t **pos,
                             int *ph, int *pw);

#endif
