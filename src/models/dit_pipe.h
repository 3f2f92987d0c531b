/* dit_pipe.h - model folder in, final latents out, for DiT and PixArt-Sigma, as diffusers'
 * DiTPipeline and PixArtSigmaPipeline run them (no VAE here: models/vae.h decodes). The sampler
 * is the one the folder's scheduler/scheduler_config.json names (DDIMScheduler,
 * DPMSolverMultistepScheduler or DDPMScheduler, sample/sampler.h); without that file, the hub
 * checkpoints' settings: DiT DDIM, PixArt DPM-Solver++. DiT with the V1 paper's 50-step
 * DPM-Solver++: a folder whose scheduler config is DPMSolverMultistepScheduler.
 *
 * PixArt prompt embeddings file (safetensors, any float dtype; other tensors ignored):
 *   prompt_embeds                    [1, T, caption_channels] (or [T, caption_channels])  T5 states
 *   prompt_attention_mask            [1, T] (or [T]), 1 = token, 0 = padding; absent: all ones
 *   negative_prompt_embeds           same shape as prompt_embeds      CFG (guidance > 1) only
 *   negative_prompt_attention_mask   same shape as the mask           optional
 * = what PixArtSigmaPipeline.encode_prompt() returns (T = 300 by default). */
#ifndef DFA_MODELS_DIT_PIPE_H
#define DFA_MODELS_DIT_PIPE_H

#include <stdint.h>

#include "core/ctx.h"
#include "models/dit.h"
#include "models/pixart.h"
#include "sample/flow.h"

typedef struct dfa_pixart_embeds {
    int n_txt, dim;
    float *embeds, *mask;         /* [n_txt, dim], [n_txt] */
    float *neg_embeds, *neg_mask; /* NULL when absent */
} dfa_pixart_embeds;

dfa_status dfa_pixart_embeds_load(dfa_ctx *ctx, const char *path, dfa_pixart_embeds *pe);
void dfa_pixart_embeds_free(dfa_ctx *ctx, dfa_pixart_embeds *pe);
/* From the text encoders' output (text/prompt.h, PixArt layout: embeds + mask): pos, and neg
 * (NULL: none) for CFG; copied into context memory. */
struct dfa_text_embeds;
dfa_status dfa_pixart_embeds_from_text(dfa_ctx *ctx, const struct dfa_text_embeds *pos,
                                       const struct dfa_text_embeds *neg, dfa_pixart_embeds *pe);

typedef struct dfa_dit_gen_params {
    int steps;                 /* <= 0: the pipelines' defaults, DiT 50, PixArt 20 */
    int latent_h, latent_w;    /* latent grid = pixels / 8, multiples of patch_size */
    float cfg_scale;           /* classifier-free guidance when > 1 */
    int class_label;           /* DiT: ImageNet class 0..num_classes-1 */
    uint64_t seed;             /* initial noise: dfa_rng_normal over [C, h, w] */
    const float *init_latents; /* [C, h, w] instead of the seeded noise (NULL: seeded) */
    dfa_flow_progress_fn progress;
    void *progress_user;
} dfa_dit_gen_params;

/* model_dir: the pipeline folder (its scheduler/ is read when present). latents_out [C, h, w]
 * with C = in_channels, scaled as the pipelines hand them to the VAE. */
dfa_status dfa_dit_generate(dfa_ctx *ctx, dfa_dit *m, const char *model_dir, const dfa_dit_gen_params *p,
                            float *latents_out);
dfa_status dfa_pixart_generate(dfa_ctx *ctx, dfa_pixart *m, const char *model_dir, const dfa_pixart_embeds *pe,
                               const dfa_dit_gen_params *p, float *latents_out);

/* The sampler dfa_dit_generate (pixart 0) / dfa_pixart_generate (pixart 1) use: the folder's
 * scheduler/scheduler_config.json, else the hub default (DiT: DDIM without clipping; PixArt:
 * DPM-Solver++); timesteps set for `steps` (<= 0: 250 / 20) over n values; DDPM's noise from
 * seed ^ 0x9e3779b97f4a7c15 (the generate functions pass their noise seed). Free with
 * dfa_sampler_free. (Used by the search engines, src/plan/engine_dit.h.) */
struct dfa_sampler;
dfa_status dfa_dit_open_sampler(dfa_ctx *ctx, const char *model_dir, int pixart, int steps, size_t n, uint64_t seed,
                                struct dfa_sampler *s);

#endif
