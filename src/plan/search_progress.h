/* search_progress.h - a progress bar with an ETA for the plan searches (issue 8: `dfa calibrate`
 * shows one). Use dfa_search_progress_on_layer as dfa_search_opts.on_layer with the progress
 * object as on_layer_user; it redraws one line (at most 10 times a second) on `out`. */
#ifndef DFA_PLAN_SEARCH_PROGRESS_H
#define DFA_PLAN_SEARCH_PROGRESS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "plan/mckp.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dfa_search_progress {
    FILE *out; /* NULL: count only */
    int n_steps, n_layers;
    int64_t done;
    double t0, last_draw;
} dfa_search_progress;

void dfa_search_progress_init(dfa_search_progress *p, FILE *out, int n_steps, int n_layers);
/* The on_layer callback (user: the dfa_search_progress). */
void dfa_search_progress_on_layer(void *user, int step, int layer, const dfa_mckp_problem *prob, const int *choice);
/* Final line (100 %, total time) and a newline. */
void dfa_search_progress_finish(dfa_search_progress *p);
/* "[##########----------]  50%  step 3/4  layer 2/4  1m05s elapsed, ETA 1m05s" into buf:
 * done of total layer decisions, the decision just made (0-based step, layer), elapsed seconds.
 * The ETA is elapsed * (total - done) / done ("--" before the first decision). */
void dfa_search_progress_format(char *buf, size_t n, int64_t done, int64_t total, int step, int n_steps, int layer,
                                int n_layers, double elapsed);

#ifdef __cplusplus
}
#endif
#endif
