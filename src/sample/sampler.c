/* sampler.c - DDIM / DPM-Solver++ / DDPM behind one interface (sampler.h). */
#include "sample/sampler.h"

#include <string.h>

dfa_status dfa_sampler_init_json(dfa_ctx *ctx, dfa_sampler *s, const cJSON *cfg, const char *what,
                                 dfa_sampler_kind dflt) {
    memset(s, 0, sizeof *s);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(cfg, "_class_name");
    s->kind = dflt;
    if (cJSON_IsString(c)) {
        if (strcmp(c->valuestring, "DDIMScheduler") == 0)
            s->kind = DFA_SAMPLER_DDIM;
        else if (strcmp(c->valuestring, "DPMSolverMultistepScheduler") == 0)
            s->kind = DFA_SAMPLER_DPM;
        else if (strcmp(c->valuestring, "DDPMScheduler") == 0)
            s->kind = DFA_SAMPLER_DDPM;
        else
            DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED,
                         "%s: scheduler %s (DDIMScheduler, DPMSolverMultistepScheduler, DDPMScheduler supported)", what,
                         c->valuestring);
    }
    switch (s->kind) {
    case DFA_SAMPLER_DDIM:
        return dfa_ddim_init_json(&s->ddim, cfg, what, &ctx->err);
    case DFA_SAMPLER_DPM:
        return dfa_dpm_init_json(&s->dpm, cfg, what, &ctx->err);
    default:
        return dfa_ddpm_init_json(&s->ddpm, cfg, what, &ctx->err);
    }
}

dfa_status dfa_sampler_init_file(dfa_ctx *ctx, dfa_sampler *s, const char *path, dfa_sampler_kind dflt) {
    cJSON *root = NULL;
    memset(s, 0, sizeof *s);
    DFA_TRY(dfa_sched_json_read(path, &root, &ctx->err));
    dfa_status st = dfa_sampler_init_json(ctx, s, root, path, dflt);
    cJSON_Delete(root);
    return st;
}

dfa_status dfa_sampler_set_timesteps(dfa_ctx *ctx, dfa_sampler *s, int n_steps, size_t n, uint64_t seed) {
    switch (s->kind) {
    case DFA_SAMPLER_DDIM:
        DFA_TRY(dfa_ddim_set_timesteps(&s->ddim, n_steps, &ctx->err));
        break;
    case DFA_SAMPLER_DPM:
        DFA_TRY(dfa_dpm_set_timesteps(ctx, &s->dpm, n_steps, n));
        break;
    default:
        DFA_TRY(dfa_ddpm_set_timesteps(&s->ddpm, n_steps, &ctx->err));
        if (s->n != n || !s->noise) {
            dfa_ctx_mem_release(ctx, s->noise);
            s->noise = NULL;
            DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, (n ? n : 1) * sizeof(float), "ddpm noise", (void **)&s->noise));
        }
        dfa_rng_seed(&s->rng, seed);
    }
    s->n = n;
    return DFA_OK;
}

int dfa_sampler_n_steps(const dfa_sampler *s) {
    return s->kind == DFA_SAMPLER_DDIM  ? s->ddim.n_steps
           : s->kind == DFA_SAMPLER_DPM ? s->dpm.n_steps
                                        : s->ddpm.n_steps;
}

int dfa_sampler_timestep(const dfa_sampler *s, int i) {
    return s->kind == DFA_SAMPLER_DDIM  ? s->ddim.timesteps[i]
           : s->kind == DFA_SAMPLER_DPM ? s->dpm.timesteps[i]
                                        : s->ddpm.timesteps[i];
}

int dfa_sampler_needs_var(const dfa_sampler *s) {
    return s->kind == DFA_SAMPLER_DDPM && dfa_ddpm_needs_model_var(&s->ddpm);
}

dfa_status dfa_sampler_step(dfa_ctx *ctx, dfa_sampler *s, int i, const float *model_out, const float *model_var,
                            float *sample) {
    if (i < 0 || i >= dfa_sampler_n_steps(s))
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "sampler: step %d of %d", i, dfa_sampler_n_steps(s));
    switch (s->kind) {
    case DFA_SAMPLER_DDIM:
        dfa_ddim_step(&s->ddim, i, model_out, sample, s->n);
        return DFA_OK;
    case DFA_SAMPLER_DPM:
        if (s->dpm.step_index != i)
            DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "sampler: DPM-Solver++ step %d after step %d (steps run in order)",
                         i, s->dpm.step_index - 1);
        return dfa_dpm_step(ctx, &s->dpm, model_out, sample);
    default:
        if (dfa_ddpm_needs_model_var(&s->ddpm) && !model_var)
            DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "sampler: DDPM with learned variance needs the variance channels");
        const float *noise = s->noise;
        if (s->noise_seq)
            noise = s->noise_seq + (size_t)i * s->n;
        else if (s->ddpm.timesteps[i] > 0)
            dfa_rng_normal(&s->rng, s->noise, s->n);
        dfa_ddpm_step(&s->ddpm, i, model_out, model_var, noise, sample, s->n);
        return DFA_OK;
    }
}

void dfa_sampler_set_noise(dfa_sampler *s, const float *noise_seq) { s->noise_seq = noise_seq; }

void dfa_sampler_free(dfa_ctx *ctx, dfa_sampler *s) {
    if (!s) return;
    dfa_dpm_free(ctx, &s->dpm);
    dfa_ctx_mem_release(ctx, s->noise);
    s->noise = NULL;
    s->n = 0;
}
