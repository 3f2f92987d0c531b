/* plan_target.h - is a plan made for this run? A plan records the model family, its config id,
 * the token layout and grid (the resolution), the step count, the layer and head counts and
 * whether the batch is a CFG pair; running it on anything else would either fail deep inside
 * dfa_attn_layer or, worse, silently apply decisions calibrated for another trajectory. The
 * generate paths call dfa_plan_check_target() before dfa_attn_set_plan(). */
#ifndef DFA_PLAN_PLAN_TARGET_H
#define DFA_PLAN_PLAN_TARGET_H

#include "core/error.h"
#include "plan/plan.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dfa_plan_target {
    const char *family;    /* "flux", "sd3", ...; NULL or "": not checked */
    const char *config_id; /* NULL or "": not checked; a plan with an empty config_id matches any */
    dfa_attn_layout layout;
    const dfa_attn_layout *layer_layout; /* [n_layers] per-layer layouts (SD3.5 attn2), or NULL: all `layout` */
    int grid_h, grid_w;    /* visual token grid of the run */
    int px_per_token;      /* pixels per token side, for the message (0: tokens only) */
    int n_steps, n_layers, n_heads;
    int cfg;               /* 1: the run's batch is a CFG pair */
} dfa_plan_target;

/* DFA_ERR_INVALID_ARG naming `what` (the plan file), the plan's value and the run's, for the
 * first mismatch: family, config id, resolution (grid), steps, layers / heads, text tokens and
 * layout, each layer's own layout (plan layer_layouts vs the model's), CFG. A plan with an empty family is checked on everything else. */
dfa_status dfa_plan_check_target(const dfa_plan *p, const dfa_plan_target *t, const char *what, dfa_error *err);

#ifdef __cplusplus
}
#endif
#endif
