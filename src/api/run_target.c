/* run_target.c - see run_target.h. */
#include "api/run_target.h"

#include "plan/engine_dit.h"
#include "plan/engine_mmdit.h"
#include "plan/plan_target.h"

dfa_status dfa_run_check_plan(dfa_ctx *ctx, const dfa_plan *plan, const char *what, const dfa_flux *fm,
                              const dfa_sd3 *sm, const dfa_dit *dm, const dfa_pixart *pm, int n_txt, int h, int w,
                              int vae_up, int steps, int cfg) {
    char cid[128];
    dfa_attn_layout lls[2 * DFA_SD3_MAX_LAYERS];
    dfa_plan_target t = {.config_id = cid, .n_steps = steps, .cfg = cfg};
    if (fm) {
        const dfa_flux_config *c = dfa_flux_get_config(fm);
        dfa_engine_flux_config_id(fm, cid, sizeof cid);
        t.family = "flux", t.grid_h = h / 2, t.grid_w = w / 2, t.px_per_token = 2 * vae_up;
        t.n_layers = dfa_flux_attn_layers(fm), t.n_heads = c->n_heads;
        t.layout = (dfa_attn_layout){.n_vis = t.grid_h * t.grid_w, .n_text = n_txt, .text_first = 1,
                                     .block = DFA_PLAN_DEFAULT_BLOCK};
    } else if (sm) {
        const dfa_sd3_config *c = dfa_sd3_get_config(sm);
        const int ps = c->patch_size;
        dfa_engine_sd3_config_id(sm, cid, sizeof cid);
        t.family = "sd3", t.grid_h = h / ps, t.grid_w = w / ps, t.px_per_token = vae_up * ps;
        t.n_layers = dfa_sd3_attn_layers(sm), t.n_heads = c->n_heads;
        t.layout = (dfa_attn_layout){.n_vis = t.grid_h * t.grid_w, .n_text = n_txt, .text_first = 0,
                                     .block = DFA_PLAN_DEFAULT_BLOCK};
        if (c->n_dual) { /* SD3.5: the dual blocks' attn2 layers are image only */
            for (int l = 0; l < t.n_layers && l < 2 * DFA_SD3_MAX_LAYERS; l++) {
                lls[l] = t.layout;
                if (dfa_sd3_attn_image_only(sm, l)) lls[l].n_text = 0;
            }
            t.layer_layout = lls;
        }
    } else if (dm) {
        const dfa_dit_config *c = dfa_dit_get_config(dm);
        dfa_engine_dit_config_id(dm, cid, sizeof cid);
        t.family = "dit", t.grid_h = h / c->patch_size, t.grid_w = w / c->patch_size;
        t.px_per_token = vae_up * c->patch_size;
        t.layout = dfa_dit_attn_layout(dm, h, w);
        t.n_layers = c->layers, t.n_heads = c->heads;
    } else if (pm) {
        const dfa_pixart_config *c = dfa_pixart_get_config(pm);
        dfa_engine_pixart_config_id(pm, cid, sizeof cid);
        t.family = "pixart", t.grid_h = h / c->patch_size, t.grid_w = w / c->patch_size;
        t.px_per_token = vae_up * c->patch_size;
        t.layout = dfa_pixart_attn_layout(pm, h, w);
        t.n_layers = c->layers, t.n_heads = c->heads;
    } else {
        DFA_CTX_FAIL(ctx, DFA_ERR_INTERNAL, "plan check: no model");
    }
    return dfa_plan_check_target(plan, &t, what, &ctx->err);
}
