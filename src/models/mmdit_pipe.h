/* mmdit_pipe.h - prompt embeddings in, final latents out, for FLUX.1 and SD3 / SD3.5, as the
 * diffusers pipelines (FluxPipeline, StableDiffusion3Pipeline) run the transformer and the
 * flow-matching scheduler. No VAE here (models/vae.h decodes the latents).
 *
 * Prompt embeddings file (--prompt-embeds; docs/PROMPT_EMBEDS.md): safetensors with
 *   prompt_embeds                  [1, T, joint_attention_dim]  (or [T, joint_attention_dim])
 *   pooled_prompt_embeds           [1, pooled_projection_dim]   (or [pooled_projection_dim])
 *   negative_prompt_embeds         [1, T, joint_attention_dim]  SD3 with CFG only
 *   negative_pooled_prompt_embeds  [1, pooled_projection_dim]   SD3 with CFG only
 * any float dtype; other tensors are ignored. */
#ifndef DFA_MODELS_MMDIT_PIPE_H
#define DFA_MODELS_MMDIT_PIPE_H

#include <stdint.h>

#include "core/ctx.h"
#include "models/flux.h"
#include "models/sd3.h"
#include "sample/flow.h"

typedef struct dfa_prompt_embeds {
    int n_txt, dim, pooled_dim;
    float *embeds;     /* [n_txt, dim] */
    float *pooled;     /* [pooled_dim] */
    float *neg_embeds; /* [n_txt, dim] or NULL */
    float *neg_pooled; /* [pooled_dim] or NULL */
} dfa_prompt_embeds;

/* Load (context-owned memory). Missing prompt_embeds / pooled_prompt_embeds, a bad rank, or
 * negatives whose shapes differ from the positives give an error naming the tensor. */
dfa_status dfa_prompt_embeds_load(dfa_ctx *ctx, const char *path, dfa_prompt_embeds *pe);
/* From the text encoders' output (text/prompt.h); neg may be NULL. Copies (context memory). */
struct dfa_text_embeds;
dfa_status dfa_prompt_embeds_from_text(dfa_ctx *ctx, const struct dfa_text_embeds *pos,
                                       const struct dfa_text_embeds *neg, dfa_prompt_embeds *pe);
void dfa_prompt_embeds_free(dfa_ctx *ctx, dfa_prompt_embeds *pe);

typedef struct dfa_mmdit_gen_params {
    int steps;
    int latent_h, latent_w;    /* latent grid = pixels / 8 (FLUX: even; SD3: multiple of patch_size) */
    float cfg_scale;           /* SD3: classifier-free guidance when > 1 (needs the negative embeds) */
    float guidance;            /* FLUX-dev (guidance_embeds): the distilled guidance scale */
    uint64_t seed;             /* initial noise: dfa_rng_normal over [C, h, w] */
    const float *init_latents; /* [C, h, w] initial noise instead of the seeded one (NULL: seeded) */
    dfa_flow_progress_fn progress;
    void *progress_user;
} dfa_mmdit_gen_params;

/* Latent channels of the model's unpacked latents (FLUX: in_channels / 4; SD3: in_channels). */
int dfa_flux_latent_channels(const dfa_flux *m);
int dfa_sd3_latent_channels(const dfa_sd3 *m);

/* Run the whole denoising loop; latents_out [C, h, w] (unpacked, scaled as the pipeline hands
 * them to the VAE). FLUX: sigmas linspace(1, 1/n, n) shifted by mu(image seq len) when the
 * scheduler shifts dynamically, timestep / 1000 into the transformer, guidance for -dev.
 * SD3: default sigmas with the scheduler's shift, CFG batch [uncond, cond]. */
dfa_status dfa_flux_generate(dfa_ctx *ctx, dfa_flux *m, const dfa_flow_config *sched, const dfa_prompt_embeds *pe,
                             const dfa_mmdit_gen_params *p, float *latents_out);
dfa_status dfa_sd3_generate(dfa_ctx *ctx, dfa_sd3 *m, const dfa_flow_config *sched, const dfa_prompt_embeds *pe,
                            const dfa_mmdit_gen_params *p, float *latents_out);

#endif
