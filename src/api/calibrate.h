/* calibrate.h - plan search over calibration prompts (V1 greedy / V2 head-wise knapsack,
 * plan/search.h) on a loaded model: the one implementation behind `dfa calibrate` and the public
 * dfa_calibrate(). Unset settings take the model's dfa.json, then dfa generate's defaults, so a
 * plan calibrated with defaults matches a generation with defaults. */
#ifndef DFA_API_CALIBRATE_H
#define DFA_API_CALIBRATE_H

#include <stdio.h>

#include "dfa.h"
#include "plan/plan.h"

typedef struct dfa_calib_opts {
    int v1;                    /* 1: V1 greedy (WA-RS + AST + ASC); 0: V2 */
    double delta, c;           /* threshold; V2 per-head coefficient */
    const char *methods;       /* V2 candidates "arrow,cache,rs" (NULL: "arrow,cache") */
    const char *windows;       /* V2 ARROW windows in tiles "1,2" (NULL: 1/8, 1/4, 1/2 of the visual tiles) */
    int v1_window;             /* V1 WA-RS window in tiles (< 0: 1/8 of the visual tokens; plain band: of all tokens) */
    int band;                  /* DFA_BAND_ARROW (0) or DFA_BAND_PLAIN (V1 only) */
    const char *const *embeds; /* FLUX / SD3 / PixArt: prompt-embeddings files */
    int n_embeds;
    const char *const *texts;  /* or text prompts, encoded by the folder's text encoders (not both) */
    int n_texts;
    int max_len;               /* T5 tokens for texts; 0: dfa.json, else the pipeline's */
    const int *labels;         /* DiT: class labels (NULL: n_default_labels spread over the classes) */
    int n_labels, n_default_labels;
    int steps, width, height;  /* <= 0: defaults */
    double cfg, guidance;      /* cfg < 0: default */
    uint64_t seed;             /* row p's noise: seed + p */
    FILE *log;                 /* the run line and a progress bar (NULL: quiet) */
} dfa_calib_opts;

typedef struct dfa_calib_result {
    double search_seconds;
    double model_time_fraction; /* the search's modelled attention time fraction */
    int head_dim;
} dfa_calib_result;

/* Search; *out is a validated plan (dfa_plan_free) recording family, config id, grid, steps. */
dfa_status dfa_calib_run(dfa_ctx *ctx, dfa_model *m, const dfa_calib_opts *o, dfa_plan *out, dfa_calib_result *res);

#endif
