/* sd3.h - Stable Diffusion 3 / 3.5 transformer (diffusers SD3Transformer2DModel) on the CPU, f32.
 *
 * Sized from config.json: joint blocks (the last one context_pre_only), QK RMSNorm when
 * qk_norm is "rms_norm" (SD3.5), SD3.5's dual attention (an extra image-only self-attention in
 * the blocks listed in dual_attention_layers), patch embedding with the pos_embed_max_size
 * grid cropped to the latent's centre.
 * Every attention goes through dfa_attn_layer(). Joint attention layout is [image, text]
 * (text_first = 0); a dual block's second attention is image only (n_text = 0). Attention
 * layer indices in forward order: block i's joint attention, then its attn2 if it has one.
 * Details: docs/DESIGN.md "MMDiT". */
#ifndef DFA_MODELS_SD3_H
#define DFA_MODELS_SD3_H

#include <stdint.h>

#include "core/ctx.h"

#define DFA_SD3_MAX_LAYERS 256

typedef struct dfa_sd3_config {
    int sample_size, patch_size, in_channels, out_channels;
    int num_layers, head_dim, n_heads, inner_dim;
    int joint_attention_dim, caption_projection_dim, pooled_projection_dim;
    int pos_embed_max_size;
    int qk_rms_norm;                        /* qk_norm == "rms_norm" */
    int n_dual, dual[DFA_SD3_MAX_LAYERS];   /* dual[i] = 1 if block i has attn2 */
    int mlp_hidden;                         /* 4 * inner_dim */
} dfa_sd3_config;

typedef struct dfa_sd3 dfa_sd3;

/* model_dir: a diffusers pipeline folder (uses transformer/) or the transformer folder itself.
 * The context's backend picks the engine: CPU (f32) or CUDA (bf16 weights on the GPU). */
dfa_status dfa_sd3_load(dfa_ctx *ctx, const char *model_dir, dfa_sd3 **out);
void dfa_sd3_free(dfa_ctx *ctx, dfa_sd3 *m);
/* Random bf16 weights for the config in model_dir, written next to it (tests, benchmarks). The
 * random pos_embed is not the sincos table: fine for timing, not for images. */
dfa_status dfa_sd3_write_random(dfa_ctx *ctx, const char *model_dir, uint64_t seed);
const dfa_sd3_config *dfa_sd3_get_config(const dfa_sd3 *m);
int dfa_sd3_attn_layers(const dfa_sd3 *m); /* num_layers + number of dual-attention blocks */
/* 1 if attention layer `layer` (forward order) is a dual block's image-only attn2 (n_text 0). */
int dfa_sd3_attn_image_only(const dfa_sd3 *m, int layer);
void dfa_sd3_times(const dfa_sd3 *m, double *attn_s, double *total_s);
void dfa_sd3_reset_times(dfa_sd3 *m);
/* on: the caller keeps the text and pooled inputs of the following forwards fixed (a sampling
 * loop), so the CUDA engine uploads them once and reuses the bf16 text and the pooled-text
 * embedding while B and n_txt stay the same; off (the default) forgets them. No effect on CPU. */
void dfa_sd3_hold_cond(dfa_sd3 *m, int on);
/* CUDA, dense runs (no attention plan) of dfa_sd3_generate: on, step 0 runs eagerly, step 1
 * captures the forward's queued part (everything after its uploads) in a CUDA Graph and later
 * steps replay it (same kernels and arguments: the same results). The attention timer does not
 * see replayed steps. Off by default. Returns the number of loops that used a graph so far. */
int dfa_sd3_set_cuda_graph(dfa_sd3 *m, int on);
/* CUDA profiling: with secs non-NULL, the GPU time of every GEMM of the following forwards
 * (CUDA events) is added to *secs at the end of each forward; NULL: off. No effect on CPU. */
void dfa_sd3_set_gemm_timer(dfa_sd3 *m, double *secs);

/* One forward, as SD3Transformer2DModel.forward:
 *   x        [B, in_channels, H, W]   latents (H, W multiples of patch_size)
 *   txt      [B, n_txt, joint_attention_dim]
 *   pooled   [B, pooled_projection_dim]
 *   timestep [B]   on the 0..num_train_timesteps scale (the scheduler's timesteps as they are)
 *   out      [B, out_channels, H, W]
 * For CFG pass B = 2 with [uncond, cond] in that order (the pipeline's order). */
dfa_status dfa_sd3_forward(dfa_ctx *ctx, dfa_sd3 *m, int B, int H, int W, int n_txt, const float *x, const float *txt,
                           const float *pooled, const float *timestep, float *out);

#endif
