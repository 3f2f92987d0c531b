/* dit_common.h - pieces DiT and PixArt share (diffusers BasicTransformerBlock family), CPU f32.
 * Token layout everywhere: [B, N, D] row-major, N = (H/p) * (W/p) patches in raster order
 * (row-major over the patch grid), D = heads * head_dim. */
#ifndef DFA_MODELS_DIT_COMMON_H
#define DFA_MODELS_DIT_COMMON_H

#include <cjson/cJSON.h>

#include "core/ctx.h"
#include "models/wload.h"

/* diffusers Attention: to_q/to_k/to_v/to_out.0 (biases NULL when attention_bias is false,
 * to_out.0 always has one). */
typedef struct dfa_tx_attn {
    float *qw, *qb, *kw, *kb, *vw, *vb, *ow, *ob;
} dfa_tx_attn;

/* FeedForward with GELU(tanh): net.0.proj [inner, D], net.2 [D, inner]. */
typedef struct dfa_tx_ff {
    float *w1, *b1, *w2, *b2;
    int inner;
} dfa_tx_ff;

/* TimestepEmbedding: linear_1 [D, 256], SiLU, linear_2 [D, D]. */
typedef struct dfa_tx_temb {
    float *w1, *b1, *w2, *b2;
    int in_dim;
} dfa_tx_temb;

dfa_status dfa_tx_bind_attn(dfa_wload *wl, dfa_tx_attn *a, int D, int Dkv, int bias, const char *prefix);
dfa_status dfa_tx_bind_ff(dfa_wload *wl, dfa_tx_ff *f, int D, int inner, const char *prefix);
dfa_status dfa_tx_bind_temb(dfa_wload *wl, dfa_tx_temb *t, int D, int in_dim, const char *prefix);

/* Sinusoidal timestep projection (Timesteps(in_dim, flip_sin_to_cos=True, shift)) then the
 * embedder, for B timesteps: out [B, D]. scratch: in_dim + D floats. */
void dfa_tx_temb_forward(const dfa_ctx *ctx, const dfa_tx_temb *te, int B, const float *t, float shift, int D,
                         float *scratch, float *out);

/* diffusers get_2d_sincos_pos_embed for a gh x gw patch grid: out [gh*gw, D]. Positions are
 * arange(g) / (g / base_size) / interpolation_scale per axis; the first D/2 channels encode
 * the column (w) coordinate, the last D/2 the row (h) coordinate, each [sin | cos]
 * (docs/DESIGN.md "DiT / PixArt"). */
void dfa_tx_sincos_pos_embed(int D, int gh, int gw, int base_size, double interpolation_scale, float *out);

/* PatchEmbed: conv k=p stride=p on x [B, C, H, W] -> tokens [B, N, D] (+ pos [N, D]).
 * ws: at least C * p * p * (W / p) floats. tmp: D * N floats. */
void dfa_tx_patch_embed(const dfa_ctx *ctx, const float *x, int B, int C, int H, int W, int p, const float *w,
                        const float *b, int D, const float *pos, float *tmp, float *ws, size_t ws_floats,
                        float *out);
/* y [B, N, p*p*C] -> out [B, C, h*p, w*p] (einsum nhwpqc->nchpwq). */
void dfa_tx_unpatchify(const float *y, int B, int h, int w, int p, int C, float *out);

/* x[b, n, :] = x * (1 + scale[b]) + shift[b] for N tokens per batch item; shift/scale rows
 * of batch item b are at shift + b * mod_stride. */
void dfa_tx_modulate(float *x, int B, int N, int D, const float *shift, const float *scale, size_t mod_stride);
/* h[b, n, :] += gate[b] * x[b, n, :] (gate NULL: plain add). */
void dfa_tx_gated_add(float *h, const float *x, int B, int N, int D, const float *gate, size_t mod_stride);

/* Tile size of the self-attention layout (the CUDA kernel's query tile and plan make's default). */
#define DFA_TX_ATTN_BLOCK 128

/* Self-attention through dfa_attn_layer (plan-driven): in [B*N, D] -> out [B*N, D].
 * q, k, v, o: scratch [B*N, D] each. The seconds spent in dfa_attn_layer are added to *attn_s
 * (may be NULL). */
dfa_status dfa_tx_self_attn(dfa_ctx *ctx, int layer, const dfa_tx_attn *a, int B, int N, int H, int Dh,
                            const float *in, float *q, float *k, float *v, float *o, float *out, double *attn_s);

/* Cross-attention (not compressed, local GEMMs): queries from in [B*N, D], keys/values from
 * kv_in [B*L, Dkv]; bias [B, L] is added to the scaled scores (NULL: none).
 * q, o: [B*N, D]; k, v: [B*L, D]; s: N * L floats. */
void dfa_tx_cross_attn(const dfa_ctx *ctx, const dfa_tx_attn *a, int B, int N, int L, int H, int Dh, int Dkv,
                       const float *in, const float *kv_in, const float *bias, float *q, float *k, float *v,
                       float *o, float *s, float *out);
/* FeedForward: in [M, D] -> out [M, D]; mid scratch [M, inner]. */
void dfa_tx_ff_forward(const dfa_ctx *ctx, const dfa_tx_ff *f, int M, int D, const float *in, float *mid,
                       float *out);

/* Config helpers: integer key that must be present and positive. */
dfa_status dfa_tx_cfg_pos_int(dfa_ctx *ctx, const cJSON *root, const char *key, const char *path, int *out);

#endif
