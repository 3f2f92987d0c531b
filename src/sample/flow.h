/* flow.h - flow-matching Euler sampling as diffusers' FlowMatchEulerDiscreteScheduler and the
 * SD3 / FLUX pipelines compute it: sigma schedules (SD3's fixed shift, FLUX's resolution-
 * dependent exponential shift with mu from the image sequence length), the Euler step, CFG,
 * and a seeded Gaussian RNG for the initial noise.
 *
 * Sigma formulas (docs/DESIGN.md "MMDiT: sigmas"):
 *   fixed shift s:        sigma' = s * sigma / (1 + (s - 1) * sigma)
 *   dynamic (exponential): sigma' = e^mu / (e^mu + (1 / sigma - 1))
 *   mu = calculate_shift(seq) = seq * m + b,  m = (max_shift - base_shift) / (max_seq - base_seq),
 *                                              b = base_shift - m * base_seq
 * The RNG (dfa_rng) is ours (xoshiro256** seeded by splitmix64, Box-Muller in double): the same
 * seed gives the same noise on every run and machine, but not torch's noise; golden fixtures
 * pass the initial latents in instead. */
#ifndef DFA_SAMPLE_FLOW_H
#define DFA_SAMPLE_FLOW_H

#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"

typedef struct dfa_flow_config {
    int num_train_timesteps;  /* 1000 */
    double shift;             /* fixed shift (SD3: 3.0) */
    int use_dynamic_shifting; /* FLUX-dev: 1 (mu from the image sequence length) */
    double base_shift, max_shift;
    int base_image_seq_len, max_image_seq_len;
    int time_shift_linear; /* time_shift_type "linear" (default "exponential") */
} dfa_flow_config;

/* diffusers' defaults (shift 1, no dynamic shifting, 0.5 / 1.15, 256 / 4096). */
dfa_flow_config dfa_flow_config_default(void);
/* Read a scheduler_config.json (path to the file, to its folder, or to a pipeline folder holding
 * scheduler/). Options this sampler does not implement (karras / exponential / beta sigmas,
 * shift_terminal, invert_sigmas, stochastic_sampling) give DFA_ERR_UNSUPPORTED naming the key. */
dfa_status dfa_flow_config_read(dfa_ctx *ctx, const char *path, dfa_flow_config *cfg);
/* As dfa_flow_config_read on a pipeline folder, but a folder without a scheduler config gets the
 * released pipelines' scheduler: FLUX-dev (flux && guidance_embeds) dynamic shift, FLUX-schnell
 * shift 1, SD3 shift 3. Other errors (a broken config) are returned. */
dfa_status dfa_flow_config_read_or_default(dfa_ctx *ctx, const char *model_dir, int flux, int guidance_embeds,
                                           dfa_flow_config *cfg);

/* FLUX's calculate_shift (also the SD3 pipeline's when the scheduler shifts dynamically). */
double dfa_flow_calculate_shift(const dfa_flow_config *cfg, int image_seq_len);
/* FluxPipeline's custom sigmas: linspace(1, 1/n, n). */
void dfa_flow_flux_sigmas(int n, double *sigmas);

/* set_timesteps(n, sigmas=sigmas_in, mu=mu): sigmas_in NULL = diffusers' default
 * (linspace between the trained sigma_max and sigma_min, SD3 pipeline); otherwise n custom
 * sigmas (FLUX pipeline). mu is used iff cfg->use_dynamic_shifting. Writes sigmas[n + 1]
 * (the last is 0) and timesteps[n] (= sigma * num_train_timesteps), f32 as diffusers keeps them. */
dfa_status dfa_flow_set_timesteps(dfa_ctx *ctx, const dfa_flow_config *cfg, int n, const double *sigmas_in, double mu,
                                  float *sigmas, float *timesteps);

/* x += (sigma_next - sigma) * v */
void dfa_flow_euler_step(float *x, const float *v, size_t n, float sigma, float sigma_next);
/* out = uncond + scale * (cond - uncond) (out may alias uncond) */
void dfa_flow_cfg_combine(float *out, const float *uncond, const float *cond, size_t n, float scale);

/* The denoising loop. velocity(user, i, timestep[i], x, v) fills v (n floats) for the current
 * x; then x takes one Euler step. progress (may be NULL) is called after each step. With an
 * attention plan set on ctx (attn_state.h), each step starts with dfa_attn_begin_step(ctx, i)
 * and the run ends with dfa_attn_end_run(ctx); the plan's step count must cover n_steps. */
typedef dfa_status (*dfa_flow_velocity_fn)(void *user, int step, float timestep, const float *x, float *v);
typedef void (*dfa_flow_progress_fn)(void *user, int step, int n_steps, double step_seconds);
dfa_status dfa_flow_sample(dfa_ctx *ctx, int n_steps, const float *sigmas, const float *timesteps, float *x, float *v,
                           size_t n, dfa_flow_velocity_fn velocity, dfa_flow_progress_fn progress, void *user);

/* Seeded Gaussian noise. */
typedef struct dfa_rng {
    uint64_t s[4];
} dfa_rng;
void dfa_rng_seed(dfa_rng *r, uint64_t seed);
uint64_t dfa_rng_next(dfa_rng *r);
/* n standard normal samples (Box-Muller, pairs; an odd tail draws a fresh pair). */
void dfa_rng_normal(dfa_rng *r, float *out, size_t n);

#endif
