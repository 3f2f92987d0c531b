/* pixart.h - PixArtTransformer2DModel (PixArt-Sigma: adaLN-single, caption projection,
 * cross-attention to T5 tokens under their mask, resolution-dependent sincos position
 * embedding), CPU f32, from a diffusers transformer folder. Every self-attention goes through
 * dfa_attn_layer (layer = block index); the cross-attention is computed locally (not
 * compressed). use_additional_conditions (PixArt-Alpha 1024's size / aspect-ratio embedding) is
 * applied with the pixel size = latent size * 8, as PixArtAlphaPipeline passes it; Sigma's
 * configs set it false. */
#ifndef DFA_MODELS_PIXART_H
#define DFA_MODELS_PIXART_H

#include <stdint.h>

#include "attn/mask.h"
#include "core/ctx.h"
#include "sample/flow.h"

typedef struct dfa_pixart_config {
    int heads, head_dim, dim, in_channels, out_channels, layers, sample_size, patch_size;
    int cross_dim;       /* cross_attention_dim: width of the (projected) text tokens */
    int caption_channels; /* T5 width; 0 when the config has no caption projection */
    int ff_inner;
    int size_cond; /* use_additional_conditions (PixArt-Alpha 1024): resolution / aspect-ratio embedding */
    double interpolation_scale, norm_eps;
} dfa_pixart_config;

typedef struct dfa_pixart dfa_pixart;

dfa_status dfa_pixart_load(dfa_ctx *ctx, const char *dir, dfa_pixart **out);
void dfa_pixart_free(dfa_ctx *ctx, dfa_pixart *m);
/* Write a random bf16 checkpoint (dir/diffusion_pytorch_model.safetensors) for the config in
 * dir/config.json: tests and benchmarks at real sizes without real weights. */
dfa_status dfa_pixart_write_random(dfa_ctx *ctx, const char *dir, uint64_t seed);
const dfa_pixart_config *dfa_pixart_get_config(const dfa_pixart *m);

/* x [B, in_channels, H, W], t [B], text [B, L, caption_channels] (or [B, L, cross_dim] without a
 * caption projection), mask [B, L] with 1 = keep, 0 = padding (NULL: all kept)
 * -> out [B, out_channels, H, W] (first in_channels channels: eps when sigma is learned). */
dfa_status dfa_pixart_forward(dfa_ctx *ctx, dfa_pixart *m, int B, int H, int W, const float *x, const float *t,
                              int L, const float *text, const float *mask, float *out);

/* The self-attention token layout for a latent of h x w (what dfa_attn_layer gets, and what a
 * plan for this model and size must be made for): n_vis = (h / p) * (w / p), no text, block
 * 128. Layers = num_layers, heads = num_attention_heads. */
dfa_attn_layout dfa_pixart_attn_layout(const dfa_pixart *m, int h, int w);

/* Seconds spent in dfa_attn_layer and in whole forwards since load / the last reset. */
void dfa_pixart_times(const dfa_pixart *m, double *attn_s, double *total_s);
void dfa_pixart_reset_times(dfa_pixart *m);
/* CUDA: on (the default), CUDA events are recorded around every attention call (no host
 * synchronisation; their GPU time is summed at the end of the forward); off, attention is not
 * timed (dfa_pixart_times reports 0 for it). No effect on the CPU engine. */
void dfa_pixart_set_attn_timer(dfa_pixart *m, int on);

/* Text-conditional sampling as diffusers' PixArtSigmaPipeline with the sampler `sched` (timesteps
 * set by the caller with dfa_sampler_set_timesteps over in_channels * h * w values). latents
 * [in_channels, h, w]: initial noise in, final (scaled) latents out. guidance > 1: one batch of
 * 2 in diffusers' order [uncond, cond] (text_uncond / mask_uncond are the negative prompt's T5
 * states and mask), out = uncond + guidance * (cond - uncond); the first in_channels channels
 * (eps) step the sampler (a DDPM sampler with learned variance also gets the next
 * in_channels). guidance <= 1: cond only. With an attention plan set on ctx, each step calls
 * dfa_attn_begin_step(i); the run ends with dfa_attn_end_run. progress (may be NULL) is called
 * after each step. */
struct dfa_sampler;
dfa_status dfa_pixart_sample(dfa_ctx *ctx, dfa_pixart *m, struct dfa_sampler *sched, float guidance, int h, int w,
                             int L, const float *text_cond, const float *mask_cond, const float *text_uncond,
                             const float *mask_uncond, float *latents, dfa_flow_progress_fn progress, void *user);

#endif
