/* sampler.h - one interface over the discrete-time samplers DiT and PixArt use: DDIM, DPM-Solver++
 * and ancestral DDPM, picked from a diffusers scheduler_config.json by its _class_name
 * (DDIMScheduler, DPMSolverMultistepScheduler, DDPMScheduler). The model loop asks for the
 * timestep of step i, then hands the guided eps (and, for DDPM with learned variance, the
 * variance channels) to dfa_sampler_step. DDPM's noise comes from the sampler's own seeded
 * dfa_rng (not torch's), so only its deterministic part is golden-testable end to end. */
#ifndef DFA_SAMPLE_SAMPLER_H
#define DFA_SAMPLE_SAMPLER_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"
#include "sample/ddpm.h"
#include "sample/dpm.h"
#include "sample/flow.h"

typedef enum dfa_sampler_kind { DFA_SAMPLER_DDIM = 0, DFA_SAMPLER_DPM = 1, DFA_SAMPLER_DDPM = 2 } dfa_sampler_kind;

typedef struct dfa_sampler {
    dfa_sampler_kind kind;
    dfa_ddim ddim;
    dfa_dpm dpm;
    dfa_ddpm ddpm;
    dfa_rng rng;  /* DDPM noise */
    float *noise; /* DDPM: n floats (context-owned) */
    const float *noise_seq; /* DDPM: [n_steps, n] given noise instead of the RNG's (NULL: RNG) */
    size_t n;
} dfa_sampler;

/* From a scheduler config object: kind from _class_name (absent: `dflt`). */
dfa_status dfa_sampler_init_json(dfa_ctx *ctx, dfa_sampler *s, const cJSON *cfg, const char *what,
                                 dfa_sampler_kind dflt);
/* From a scheduler_config.json file (Python's -Infinity accepted). */
dfa_status dfa_sampler_init_file(dfa_ctx *ctx, dfa_sampler *s, const char *path, dfa_sampler_kind dflt);
/* DDPM: use noise_seq[i * n ...] at step i instead of drawing from the RNG (reproducing an
 * external run, e.g. diffusers' with its torch generator). NULL: back to the RNG. */
void dfa_sampler_set_noise(dfa_sampler *s, const float *noise_seq);
/* n_steps inference steps over samples of n floats; seed: DDPM's noise. */
dfa_status dfa_sampler_set_timesteps(dfa_ctx *ctx, dfa_sampler *s, int n_steps, size_t n, uint64_t seed);
int dfa_sampler_n_steps(const dfa_sampler *s);
int dfa_sampler_timestep(const dfa_sampler *s, int i);
/* 1 when step() needs the model's variance channels (DDPM learned / learned_range). */
int dfa_sampler_needs_var(const dfa_sampler *s);
/* Step i (in order from 0): sample (n floats) becomes the next sample. */
dfa_status dfa_sampler_step(dfa_ctx *ctx, dfa_sampler *s, int i, const float *model_out, const float *model_var,
                            float *sample);
void dfa_sampler_free(dfa_ctx *ctx, dfa_sampler *s);

#endif
