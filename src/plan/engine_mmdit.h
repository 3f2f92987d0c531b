/* engine_mmdit.h - FLUX.1 and SD3 as plan-search engines (search.h dfa_search_engine): the
 * calibration prompts run in lock step as one batch, one denoising step per run_step, with the
 * attention override (attn_state.h) handing every attention layer's q, k, v, out to the
 * search's hook.
 *
 * Rows (the batch every attention layer sees): without CFG the prompts, in order; with CFG
 * (cfg_scale > 1: SD3's CFG, FLUX's true CFG) [uncond of every prompt, cond of every prompt]
 * (cfg = 1, cond_half = 1), each prompt's latents duplicated as the pipelines do.
 * Noise: prompt p starts from dfa_rng_normal seeded with seed + p over [C, h, w], so prompt 0 has
 * the noise of `dfa generate --seed seed`. Schedules, timesteps, guidance and the Euler update
 * are those of dfa_flux_generate / dfa_sd3_generate (mmdit_pipe.h), so with every layer FULL the
 * engine reproduces their latents.
 * Model output (V1's metric): the transformer outputs of every row of the step (FLUX: packed
 * [P, n_img, 4C]; SD3: [R, C, h, w]), before the CFG combination and the scheduler update.
 * Memory: on a CPU context the hook gets f32 host buffers (the default search backend); on a
 * CUDA context (models on the GPU) it gets the model's bf16 device buffers, for the CUDA search
 * backend (dfa_search_backend_cuda), and V1's model output is converted to bf16 and uploaded.
 * SD3.5 dual-attention blocks: their image-only attn2 layers (n_text 0) are listed in
 * eng->layer_layout, and the searched plan records them as layer layouts (plan.h). */
#ifndef DFA_PLAN_ENGINE_MMDIT_H
#define DFA_PLAN_ENGINE_MMDIT_H

#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"
#include "models/mmdit_pipe.h"
#include "plan/search.h"

typedef struct dfa_engine_mmdit_params {
    int steps;
    int latent_h, latent_w; /* latent grid (pixels / 8) */
    float cfg_scale;        /* CFG when > 1 (SD3; FLUX true CFG): needs every prompt's negative embeds */
    float guidance;         /* FLUX-dev distilled guidance */
    uint64_t seed;          /* prompt p: seed + p */
} dfa_engine_mmdit_params;

typedef struct dfa_engine_mmdit dfa_engine_mmdit;

/* Build the engine over n_prompts prompt embeddings (same text length each; copied) and fill
 * *eng (eng->user = the engine). The model, schedule config and ctx must outlive the engine. */
dfa_status dfa_engine_flux_init(dfa_ctx *ctx, dfa_flux *m, const dfa_flow_config *sched, const dfa_prompt_embeds *pes,
                                int n_prompts, const dfa_engine_mmdit_params *p, dfa_engine_mmdit **out,
                                dfa_search_engine *eng);
dfa_status dfa_engine_sd3_init(dfa_ctx *ctx, dfa_sd3 *m, const dfa_flow_config *sched, const dfa_prompt_embeds *pes,
                               int n_prompts, const dfa_engine_mmdit_params *p, dfa_engine_mmdit **out,
                               dfa_search_engine *eng);
void dfa_engine_mmdit_free(dfa_ctx *ctx, dfa_engine_mmdit *e);

/* The current latents of prompt p, unpacked [C, h, w] as dfa_*_generate returns them. */
dfa_status dfa_engine_mmdit_latents(dfa_ctx *ctx, const dfa_engine_mmdit *e, int prompt, float *out);
/* Steps committed so far. */
int dfa_engine_mmdit_step(const dfa_engine_mmdit *e);

/* What a plan records as config_id for these models: class, block counts, heads x head dim,
 * channels (e.g. "flux:L2+2:H2x16:in16:J24:g1"). Plans made for one checkpoint architecture
 * are refused by another (plan_target.h). */
void dfa_engine_flux_config_id(const dfa_flux *m, char *buf, size_t n);
void dfa_engine_sd3_config_id(const dfa_sd3 *m, char *buf, size_t n);

#endif
