/* flux.h - FLUX.1 transformer (diffusers FluxTransformer2DModel) on the CPU, f32.
 *
 * Sized entirely from the checkpoint's config.json; weights from the diffusers-layout
 * safetensors next to it, in one context-owned block; activations from one reused arena.
 * Every attention goes through dfa_attn_layer() with layout [text, image] (text_first = 1);
 * attention layer index = double block i -> i, single block j -> num_layers + j.
 * Details (token order, AdaLN chunk orders, RoPE pairing, packing): docs/DESIGN.md "MMDiT". */
#ifndef DFA_MODELS_FLUX_H
#define DFA_MODELS_FLUX_H

#include <stdint.h>

#include "core/ctx.h"

#define DFA_FLUX_MAX_AXES 4

typedef struct dfa_flux_config {
    int patch_size;        /* 1 for every released FLUX.1: the pipeline packs 2x2 */
    int in_channels;       /* packed channels (64 = 16 latent channels x 2 x 2) */
    int out_channels;
    int num_layers;        /* double-stream blocks */
    int num_single_layers; /* single-stream blocks */
    int head_dim, n_heads, inner_dim;
    int joint_attention_dim, pooled_projection_dim;
    int guidance_embeds;
    int n_axes, axes_dims_rope[DFA_FLUX_MAX_AXES];
    double rope_theta; /* 10000 (FluxPosEmbed) */
    int mlp_hidden;    /* 4 * inner_dim */
} dfa_flux_config;

typedef struct dfa_flux dfa_flux;

/* model_dir: a diffusers pipeline folder (uses transformer/) or the transformer folder itself.
 * The context's backend picks the engine: CPU (f32 weights, OpenBLAS) or CUDA (bf16 weights
 * loaded once to the GPU, cuBLASLt GEMMs, fused kernels, activations from a device arena). */
dfa_status dfa_flux_load(dfa_ctx *ctx, const char *model_dir, dfa_flux **out);
void dfa_flux_free(dfa_ctx *ctx, dfa_flux *m);
/* Write random bf16 weights for the config in model_dir (config.json there or in transformer/)
 * next to it: tests and benchmarks at real sizes without the real checkpoint. */
dfa_status dfa_flux_write_random(dfa_ctx *ctx, const char *model_dir, uint64_t seed);
const dfa_flux_config *dfa_flux_get_config(const dfa_flux *m);
/* Number of attention layers (num_layers + num_single_layers). */
int dfa_flux_attn_layers(const dfa_flux *m);
/* Seconds spent inside dfa_attn_layer and in the whole forward since load (or the last reset). */
void dfa_flux_times(const dfa_flux *m, double *attn_s, double *total_s);
void dfa_flux_reset_times(dfa_flux *m);
/* on: the caller keeps the text, pooled and id inputs of the following forwards fixed (a sampling
 * loop), so the CUDA engine uploads the text once and reuses it, the pooled-text embedding and the
 * RoPE tables while B, n_img and n_txt stay the same; off (the default) forgets them. No effect on
 * the CPU engine. */
void dfa_flux_hold_cond(dfa_flux *m, int on);
/* CUDA profiling: with secs non-NULL, the GPU time of every GEMM of the following forwards
 * (CUDA events) is added to *secs at the end of each forward; NULL: off. No effect on CPU. */
void dfa_flux_set_gemm_timer(dfa_flux *m, double *secs);

/* One transformer forward, as FluxTransformer2DModel.forward:
 *   x        [B, n_img, in_channels]   packed latents
 *   txt      [B, n_txt, joint_attention_dim]
 *   pooled   [B, pooled_projection_dim]
 *   timestep [B]   the pipeline's t / 1000 (sigma scale; multiplied by 1000 inside)
 *   guidance [B]   guidance scale (required iff guidance_embeds), NULL otherwise
 *   txt_ids  [n_txt, n_axes], img_ids [n_img, n_axes]   RoPE positions
 *   out      [B, n_img, out_channels * patch_size^2] */
dfa_status dfa_flux_forward(dfa_ctx *ctx, dfa_flux *m, int B, int n_img, int n_txt, const float *x, const float *txt,
                            const float *pooled, const float *timestep, const float *guidance, const float *txt_ids,
                            const float *img_ids, float *out);

/* Pipeline helpers (FluxPipeline): ids of a packed h x w grid: [h*w, 3] = (0, row, col);
 * text ids are all zero. pack: [B, C, H, W] -> [B, (H/2)(W/2), 4C]; unpack the inverse. */
void dfa_flux_image_ids(int h, int w, float *ids);
void dfa_flux_pack_latents(const float *lat, int B, int C, int H, int W, float *packed);
void dfa_flux_unpack_latents(const float *packed, int B, int C, int H, int W, float *lat);

#endif
