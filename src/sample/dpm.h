/* dpm.h - DPM-Solver++ multistep (orders 1 and 2, "midpoint" solver type), matching diffusers'
 * DPMSolverMultistepScheduler with algorithm_type "dpmsolver++" (PixArt-Sigma's scheduler).
 * Formulas in docs/DESIGN.md "Samplers". Karras / exponential / beta / flow sigmas, SDE
 * variants, order 3, thresholding and learned variance are refused with a clear error. */
#ifndef DFA_SAMPLE_DPM_H
#define DFA_SAMPLE_DPM_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "core/ctx.h"
#include "sample/ddpm.h"

typedef struct dfa_dpm {
    dfa_noise_schedule ns;
    dfa_pred_type pred;
    dfa_spacing spacing;
    int steps_offset, order, lower_order_final, euler_at_final, final_sigma_zero;
    double lambda_min_clipped;
    /* after set_timesteps */
    int n_steps;
    int timesteps[DFA_SCHED_MAX_STEPS];
    float sigmas[DFA_SCHED_MAX_STEPS + 1]; /* sqrt((1 - a) / a) at each timestep, then the final sigma */
    int step_index, lower_order_nums;
    float *prev_x0; /* the previous step's data prediction (n floats, context-owned) */
    size_t n;
} dfa_dpm;

dfa_status dfa_dpm_init_json(dfa_dpm *s, const cJSON *cfg, const char *what, dfa_error *err);
dfa_status dfa_dpm_init_file(dfa_dpm *s, const char *path, dfa_error *err);
/* n_steps inference steps over samples of n floats (allocates the history from ctx). */
dfa_status dfa_dpm_set_timesteps(dfa_ctx *ctx, dfa_dpm *s, int n_steps, size_t n);
/* One step at timesteps[step_index] (then step_index advances): sample is replaced by the next
 * sample. model_out: eps / v / x0 by prediction_type, n floats. */
dfa_status dfa_dpm_step(dfa_ctx *ctx, dfa_dpm *s, const float *model_out, float *sample);
void dfa_dpm_free(dfa_ctx *ctx, dfa_dpm *s);

#endif
