/* api_int.h - the insides of the public API's handles (include/dfa.h), shared by the files of
 * src/api/ (api.c: models, plans, generation; calibrate.c: plan search). */
#ifndef DFA_API_API_INT_H
#define DFA_API_API_INT_H

#include "api/model_defaults.h"
#include "core/ctx.h"
#include "models/dit.h"
#include "models/flux.h"
#include "models/pixart.h"
#include "models/sd3.h"
#include "models/vae.h"
#include "plan/plan.h"
#include "sample/flow.h"

struct dfa_model {
    dfa_ctx *ctx;
    dfa_family family;
    char dir[4096];
    dfa_flux *flux;
    dfa_sd3 *sd3;
    dfa_dit *dit;
    dfa_pixart *pixart;
    dfa_flow_config flow; /* FLUX / SD3 */
    dfa_model_defaults defaults;
    int vae_up;           /* pixels per latent (vae/config.json, else 8) */
    dfa_vae *vae;         /* loaded by the first dfa_generate with an image */
};

struct dfa_plan_file {
    dfa_plan plan;
};

/* Seconds the model's transformer spent in attention and in all, since it was loaded. */
void dfa_api_model_times(const dfa_model *m, double *attn_s, double *total_s);

#endif
