/* run_target.h - the dfa_plan_target (plan/plan_target.h) of one generation run, per family:
 * what a plan must have been made for to run on this model at this latent size, step count,
 * prompt length and CFG setting. Shared by the public API (api.c) and `dfa generate`. */
#ifndef DFA_API_RUN_TARGET_H
#define DFA_API_RUN_TARGET_H

#include "core/ctx.h"
#include "models/dit.h"
#include "models/flux.h"
#include "models/pixart.h"
#include "models/sd3.h"
#include "plan/plan.h"

/* Exactly one model pointer is non-NULL. h, w: latent grid; vae_up: pixels per latent; n_txt:
 * text tokens (FLUX / SD3). Errors name `what` (the plan file). */
dfa_status dfa_run_check_plan(dfa_ctx *ctx, const dfa_plan *plan, const char *what, const dfa_flux *fm,
                              const dfa_sd3 *sm, const dfa_dit *dm, const dfa_pixart *pm, int n_txt, int h, int w,
                              int vae_up, int steps, int cfg);

#endif
