/* engine_dit.h - DiT and PixArt-Sigma as plan-search engines (search.h dfa_search_engine), the
 * counterpart of engine_mmdit.h for the discrete-time samplers (DDIM, DPM-Solver++, DDPM):
 * the calibration rows run in lock step as one batch, one denoising step per run_step, with the
 * attention override (attn_state.h) handing every self-attention layer to the search's hook.
 *
 * Rows: DiT: one per class label; PixArt: one per prompt. With CFG (guidance > 1): [uncond of
 * every row, cond of every row] (cfg = 1, cond_half = 1; DiT's uncond = the null class).
 * Prompt / label p: initial noise from dfa_rng seeded with seed + p, its own sampler (multistep
 * history) from dfa_dit_open_sampler with seed + p, so row p equals dfa_dit_generate /
 * dfa_pixart_generate with seed + p when every layer runs FULL. The sampler only steps on
 * commit. Model output (V1's metric): the raw transformer output of every row (eps and, with
 * learned sigma, the variance channels). Layout: visual tokens only, tiles of 128. CPU only. */
#ifndef DFA_PLAN_ENGINE_DIT_H
#define DFA_PLAN_ENGINE_DIT_H

#include <stdint.h>

#include "core/ctx.h"
#include "models/dit_pipe.h"
#include "plan/search.h"

typedef struct dfa_engine_dit_params {
    int steps;              /* <= 0: the generate defaults (DiT 250, PixArt 20) */
    int latent_h, latent_w; /* multiples of patch_size */
    float cfg_scale;        /* CFG when > 1 */
    uint64_t seed;          /* row p: seed + p */
} dfa_engine_dit_params;

typedef struct dfa_engine_dit dfa_engine_dit;

/* DiT over n class labels; model_dir: the pipeline folder (its scheduler/, as dfa_dit_generate). */
dfa_status dfa_engine_dit_init(dfa_ctx *ctx, dfa_dit *m, const char *model_dir, const int *labels, int n,
                               const dfa_engine_dit_params *p, dfa_engine_dit **out, dfa_search_engine *eng);
/* PixArt over n prompt embeddings (one text length; copied). */
dfa_status dfa_engine_pixart_init(dfa_ctx *ctx, dfa_pixart *m, const char *model_dir, const dfa_pixart_embeds *pes,
                                  int n, const dfa_engine_dit_params *p, dfa_engine_dit **out, dfa_search_engine *eng);
void dfa_engine_dit_free(dfa_ctx *ctx, dfa_engine_dit *e);
/* The current latents of row p, [C, h, w]. */
dfa_status dfa_engine_dit_latents(dfa_ctx *ctx, const dfa_engine_dit *e, int p, float *out);

/* config ids for plans (plan_target.h), e.g. "dit:L28:H16x72:in4:p2". */
void dfa_engine_dit_config_id(const dfa_dit *m, char *buf, size_t n);
void dfa_engine_pixart_config_id(const dfa_pixart *m, char *buf, size_t n);

#endif
