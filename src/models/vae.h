/* vae.h - AutoencoderKL decoder (diffusers layout: vae/config.json + safetensors), CPU f32.
 *
 * Sized from config.json: latent_channels (4: SD/DiT/PixArt, 16: SD3/FLUX), block_out_channels,
 * layers_per_block, norm_num_groups (GroupNorm eps 1e-6), out_channels, scaling_factor,
 * shift_factor (null -> 0), use_post_quant_conv, mid_block_add_attention.
 * The latents a sampler produces are scaled: decode takes them as they are and applies
 * z / scaling_factor + shift_factor itself (docs/DESIGN.md "VAE"). */
#ifndef DFA_MODELS_VAE_H
#define DFA_MODELS_VAE_H

#include <stdint.h>

#include "core/ctx.h"

#define DFA_VAE_MAX_BLOCKS 8

typedef struct dfa_vae_config {
    int latent_channels, out_channels, norm_groups, layers_per_block, n_blocks;
    int block_out[DFA_VAE_MAX_BLOCKS];
    int post_quant_conv, mid_attention;
    double scaling_factor, shift_factor;
} dfa_vae_config;

typedef struct dfa_vae dfa_vae;

/* dir: the vae folder (config.json + diffusion_pytorch_model.safetensors[.index.json]). */
dfa_status dfa_vae_load(dfa_ctx *ctx, const char *dir, dfa_vae **out);
void dfa_vae_free(dfa_ctx *ctx, dfa_vae *vae);
const dfa_vae_config *dfa_vae_get_config(const dfa_vae *vae);
/* Pixels per latent along each axis (2^(n_blocks-1); 8 for every released VAE). */
int dfa_vae_upscale(const dfa_vae *vae);

/* latents [latent_channels, h, w] (scaled, as sampled) -> image [out_channels, h*s, w*s], s =
 * dfa_vae_upscale, values nominally in [-1, 1]. Activations come from an arena owned by the VAE,
 * grown on the first call at a new size and reused after. */
dfa_status dfa_vae_decode(dfa_ctx *ctx, dfa_vae *vae, const float *latents, int h, int w, float *image);

/* image [3, H, W] in [-1, 1] -> interleaved 8-bit RGB [H, W, 3] as diffusers' postprocess:
 * round(clamp(x / 2 + 0.5, 0, 1) * 255). */
void dfa_vae_to_rgb8(const float *image, int H, int W, uint8_t *rgb);
/* Decode and write a PNG (image channels must be 3). */
dfa_status dfa_vae_decode_png(dfa_ctx *ctx, dfa_vae *vae, const float *latents, int h, int w, const char *path);

#endif
