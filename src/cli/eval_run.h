/* eval_run.h - the fidelity harness behind `dfa eval`: for every prompt and seed, generate
 * with no compression and with each plan from the same noise, and compare (eval/fidelity.h).
 * FLUX.1 and SD3 model folders (the MMDiT generation path of `dfa generate`). */
#ifndef DFA_CLI_EVAL_RUN_H
#define DFA_CLI_EVAL_RUN_H

#include <stdio.h>

#include "core/ctx.h"

typedef struct dfa_eval_prompt {
    const char *text;   /* encoded with the model's text encoders, or */
    const char *embeds; /* a prompt-embeddings file (docs/PROMPT_EMBEDS.md) */
} dfa_eval_prompt;

typedef struct dfa_eval_opts {
    const char *model;
    const char *const *plans;
    int n_plans;
    const dfa_eval_prompt *prompts;
    int n_prompts;
    const long long *seeds; /* NULL: seed 0 only */
    int n_seeds;
    int steps, width, height, max_len; /* 0: MODEL/dfa.json, else dfa generate's defaults */
    double cfg, guidance;              /* cfg < 0: default */
    const char *outdir;                /* report.md, ssim_vs_attn.png, contact_sheet.png; NULL: none */
} dfa_eval_opts;

typedef struct dfa_eval_row {
    const char *name;  /* plan path ("uncompressed" for the reference row) */
    double fraction;   /* attention FLOPs / full (plan.h dfa_plan_cost_compute) */
    double ssim;       /* mean over images (NaN without a VAE) */
    double psnr;       /* from the mean MSE over all images (NaN without a VAE, +inf if identical) */
    double ssim_min;   /* worst image */
    double latent_err; /* mean over images of ||z - z_ref|| / ||z_ref|| of the final latents */
    double seconds;    /* wall time of the generations (transformer loop; no decoding), per image */
} dfa_eval_row;

typedef struct dfa_eval_result {
    int has_images;        /* 0: the model has no vae/; latent metrics only */
    int n_images;          /* prompts x seeds */
    int width, height, steps;
    dfa_eval_row base;     /* the uncompressed run */
    int n_plans;
    dfa_eval_row *rows;    /* [n_plans], malloc'ed */
} dfa_eval_result;

/* Run; progress lines to `log` (NULL: quiet). Writes the files when o->outdir is set (created
 * if missing). A plan made for another model / resolution / steps / text length is refused. */
dfa_status dfa_eval_run(dfa_ctx *ctx, const dfa_eval_opts *o, dfa_eval_result *res, FILE *log);
/* The markdown report (table + notes). */
void dfa_eval_write_markdown(const dfa_eval_result *res, const char *model, FILE *f);
void dfa_eval_result_free(dfa_eval_result *res);

#endif
