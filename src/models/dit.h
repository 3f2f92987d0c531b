/* dit.h - DiTTransformer2DModel (class-conditional DiT, adaLN-Zero, learned sigma), CPU f32,
 * from a diffusers transformer folder (config.json + safetensors). Every self-attention goes
 * through dfa_attn_layer (layer = block index). */
#ifndef DFA_MODELS_DIT_H
#define DFA_MODELS_DIT_H

#include <stdint.h>

#include "attn/mask.h"
#include "core/ctx.h"
#include "sample/flow.h"

typedef struct dfa_dit_config {
    int heads, head_dim, dim, in_channels, out_channels, layers, sample_size, patch_size;
    int num_classes; /* num_embeds_ada_norm; the class table has num_classes + 1 rows: the
                        last row (label == num_classes) is the null class used for CFG */
    int ff_inner;
    double norm_eps; /* block norm before the MLP; the adaLN-Zero norms use 1e-6 */
} dfa_dit_config;

typedef struct dfa_dit dfa_dit;

dfa_status dfa_dit_load(dfa_ctx *ctx, const char *dir, dfa_dit **out);
void dfa_dit_free(dfa_ctx *ctx, dfa_dit *m);
/* Write a random bf16 checkpoint (dir/diffusion_pytorch_model.safetensors) for the config in
 * dir/config.json: tests and benchmarks at real sizes without real weights. */
dfa_status dfa_dit_write_random(dfa_ctx *ctx, const char *dir, uint64_t seed);
const dfa_dit_config *dfa_dit_get_config(const dfa_dit *m);

/* x [B, in_channels, H, W], t [B] (float timesteps), labels [B] (0..num_classes; num_classes
 * = null class) -> out [B, out_channels, H, W]. With learned sigma (out_channels == 2 *
 * in_channels) the first in_channels channels are eps, the rest the variance values. */
dfa_status dfa_dit_forward(dfa_ctx *ctx, dfa_dit *m, int B, int H, int W, const float *x, const float *t,
                           const int *labels, float *out);

/* The self-attention token layout for a latent of h x w (what dfa_attn_layer gets, and what a
 * plan for this model and size must be made for): n_vis = (h / p) * (w / p), no text, block
 * 128. Layers = num_layers, heads = num_attention_heads. */
dfa_attn_layout dfa_dit_attn_layout(const dfa_dit *m, int h, int w);

/* Seconds spent in dfa_attn_layer and in whole forwards since load / the last reset. */
void dfa_dit_times(const dfa_dit *m, double *attn_s, double *total_s);
void dfa_dit_reset_times(dfa_dit *m);
/* CUDA: on (the default), CUDA events are recorded around every attention call (no host
 * synchronisation; their GPU time is summed at the end of the forward); off, attention is not
 * timed (dfa_dit_times reports 0 for it). No effect on the CPU engine. */
void dfa_dit_set_attn_timer(dfa_dit *m, int on);

/* Class-conditional sampling as diffusers' DiTPipeline with the sampler `sched` (timesteps set
 * by the caller with dfa_sampler_set_timesteps over in_channels * h * w values). latents
 * [in_channels, h, w]: the initial noise on entry, the final (scaled) latents on return, ready
 * for dfa_vae_decode. guidance > 1: one batch of 2, [null class, class] (dfa's [uncond, cond]
 * order; DiTPipeline's [cond, null] gives the same numbers), eps = uncond + guidance * (cond -
 * uncond) on the first in_channels output channels; a DDPM sampler with learned variance gets
 * the conditional item's variance channels, else they are dropped. With an attention plan set
 * on ctx, each step calls dfa_attn_begin_step(i) and the run ends with dfa_attn_end_run.
 * progress (may be NULL) is called after each step. */
struct dfa_sampler;
dfa_status dfa_dit_sample(dfa_ctx *ctx, dfa_dit *m, struct dfa_sampler *sched, int label, float guidance, int h,
                          int w, float *latents, dfa_flow_progress_fn progress, void *user);

#endif
