/* gen_mmdit.h - pieces of `dfa generate`'s FLUX / SD3 path (cmd_generate.c) that `dfa eval`
 * runs too, so that both refuse the same plans and pick the same scheduler. */
#ifndef DFA_CLI_GEN_MMDIT_H
#define DFA_CLI_GEN_MMDIT_H

#include <stdio.h>

#include "core/ctx.h"
#include "models/mmdit_pipe.h"
#include "plan/plan.h"

/* transformer/config.json's _class_name into cls. */
dfa_status dfa_gen_read_class(dfa_ctx *ctx, const char *model, char *cls, size_t len);
/* Refuse a plan made for another model, resolution, step count or prompt length (plan_target.h).
 * Exactly one of fm / sm is set; h, w: the latent grid; cfg: 1 when the batch is a CFG pair. */
dfa_status dfa_gen_check_plan(dfa_ctx *ctx, const dfa_plan *plan, const char *path, const dfa_flux *fm,
                              const dfa_sd3 *sm, const dfa_prompt_embeds *pe, int h, int w, int steps, int cfg);
/* MODEL/scheduler, or without one the released pipelines' schedulers (FLUX-dev dynamic shift,
 * schnell shift 1, SD3 shift 3; fm NULL = SD3), saying so on `log` (may be NULL). */
dfa_status dfa_gen_flow_config(dfa_ctx *ctx, const char *model, const dfa_flux *fm, dfa_flow_config *fc, FILE *log);

#endif
