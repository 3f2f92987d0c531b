/* ddpm.h - the discrete DDPM noise schedule (what DiT, PixArt and SD were trained with), the
 * DDIM sampler (eta = 0) over it (diffusers' DDIMScheduler: DiT's hub default) and ancestral
 * DDPM (diffusers' DDPMScheduler, e.g. learned_range: the DiT paper's 250-step sampler).
 * See docs/DESIGN.md "Samplers"; sample/sampler.h puts them behind one interface. */
#ifndef DFA_SAMPLE_DDPM_H
#define DFA_SAMPLE_DDPM_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "core/error.h"

#define DFA_SCHED_MAX_T 4096     /* num_train_timesteps */
#define DFA_SCHED_MAX_STEPS 1024 /* inference steps */

typedef enum dfa_pred_type { DFA_PRED_EPSILON = 0, DFA_PRED_V = 1, DFA_PRED_SAMPLE = 2 } dfa_pred_type;
typedef enum dfa_spacing { DFA_SPACING_LINSPACE = 0, DFA_SPACING_LEADING = 1, DFA_SPACING_TRAILING = 2 } dfa_spacing;

/* betas from beta_start / beta_end / beta_schedule ("linear", "scaled_linear",
 * "squaredcos_cap_v2"), computed in float32 as diffusers does; alphas_cumprod in float32. */
typedef struct dfa_noise_schedule {
    int T;
    float alphas_cumprod[DFA_SCHED_MAX_T];
} dfa_noise_schedule;

/* Read the schedule keys of a scheduler_config.json object (`what` names it in errors). */
dfa_status dfa_noise_schedule_from_json(dfa_noise_schedule *ns, const cJSON *cfg, const char *what, dfa_error *err);
/* Common keys: prediction_type, timestep_spacing (default `dflt`), steps_offset; thresholding
 * is refused. */
dfa_status dfa_sched_common_from_json(const cJSON *cfg, const char *what, dfa_spacing dflt, dfa_pred_type *pred,
                                      dfa_spacing *spacing, int *steps_offset, dfa_error *err);

/* Read a scheduler_config.json: like dfa_json_read_file, but accepts the -Infinity /
 * Infinity tokens Python's json writes (diffusers' lambda_min_clipped). */
dfa_status dfa_sched_json_read(const char *path, cJSON **out, dfa_error *err);

typedef struct dfa_ddim {
    dfa_noise_schedule ns;
    dfa_pred_type pred;
    dfa_spacing spacing;
    int steps_offset, set_alpha_to_one, clip_sample;
    double clip_range;
    int n_steps;
    int timesteps[DFA_SCHED_MAX_STEPS];
} dfa_ddim;

dfa_status dfa_ddim_init_json(dfa_ddim *s, const cJSON *cfg, const char *what, dfa_error *err);
dfa_status dfa_ddim_init_file(dfa_ddim *s, const char *path, dfa_error *err);
dfa_status dfa_ddim_set_timesteps(dfa_ddim *s, int n, dfa_error *err);
/* One step from timesteps[i]: sample (n floats) is replaced by the previous sample, given the
 * model output (eps / v / x0 by prediction_type) at that step. */
void dfa_ddim_step(const dfa_ddim *s, int i, const float *model_out, float *sample, size_t n);

/* Ancestral DDPM sampling as diffusers' DDPMScheduler (the DiT paper's 250-step sampler with
 * variance_type "learned_range": the model's second output half sets the variance). */
typedef enum dfa_ddpm_variance {
    DFA_VAR_FIXED_SMALL = 0,
    DFA_VAR_FIXED_SMALL_LOG,
    DFA_VAR_FIXED_LARGE,
    DFA_VAR_FIXED_LARGE_LOG,
    DFA_VAR_LEARNED,
    DFA_VAR_LEARNED_RANGE
} dfa_ddpm_variance;

typedef struct dfa_ddpm {
    dfa_noise_schedule ns;
    dfa_pred_type pred;
    dfa_spacing spacing;
    dfa_ddpm_variance variance;
    int steps_offset, clip_sample;
    double clip_range;
    int n_steps;
    int timesteps[DFA_SCHED_MAX_STEPS];
} dfa_ddpm;

dfa_status dfa_ddpm_init_json(dfa_ddpm *s, const cJSON *cfg, const char *what, dfa_error *err);
dfa_status dfa_ddpm_set_timesteps(dfa_ddpm *s, int n, dfa_error *err);
/* 1 when the variance comes from the model (learned, learned_range). */
int dfa_ddpm_needs_model_var(const dfa_ddpm *s);
/* Step from timesteps[i]. model_var: the model's variance output (n floats) for learned types,
 * else NULL. noise: n standard normals, used when timesteps[i] > 0 (may be NULL otherwise). */
void dfa_ddpm_step(const dfa_ddpm *s, int i, const float *model_out, const float *model_var, const float *noise,
                   float *sample, size_t n);

#endif
