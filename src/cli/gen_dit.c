/* gen_dit.c - DiT / PixArt generation for the CLI (see gen_dit.h): the model folder through the
 * public API (dfa_model_load, dfa_generate) and the CLI's file writer (gen_files.h). */
#include "cli/gen_dit.h"

#include <string.h>

#include "cli/gen_files.h"

int dfa_gen_dit_handles(const char *class_name) {
    return strcmp(class_name, "DiTTransformer2DModel") == 0 || strcmp(class_name, "PixArtTransformer2DModel") == 0;
}

dfa_status dfa_gen_dit_run(dfa_ctx *ctx, const char *class_name, const dfa_gen_dit_opts *o, FILE *log) {
    const int is_dit = strcmp(class_name, "DiTTransformer2DModel") == 0;
    if (!dfa_gen_dit_handles(class_name))
        DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED, "generate: model class %s is not a DiT / PixArt model", class_name);
    if (!is_dit && !o->embeds) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "generate: PixArt needs --prompt-embeds FILE");
    dfa_model *m = NULL;
    dfa_plan_file *plan = NULL;
    dfa_status s = dfa_model_load(ctx, o->model, &m);
    if (s == DFA_OK && dfa_model_family(m) != (is_dit ? DFA_FAMILY_DIT : DFA_FAMILY_PIXART))
        s = DFA_SET(&ctx->err, DFA_ERR_INVALID_ARG, "generate: %s is a %s model, not %s", o->model,
                    dfa_family_name(dfa_model_family(m)), class_name);
    if (s == DFA_OK && o->plan) s = dfa_plan_file_load(ctx, o->plan, &plan);
    if (s == DFA_OK && plan) s = dfa_ctx_set_plan(ctx, plan);
    if (s == DFA_OK) {
        dfa_generate_params p = dfa_generate_default_params();
        p.prompt_embeds = is_dit ? NULL : o->embeds;
        p.steps = o->steps, p.width = o->width, p.height = o->height;
        p.class_label = o->class_label, p.seed = (uint64_t)o->seed;
        p.cfg_scale = (float)o->cfg;
        s = dfa_gen_files(ctx, m, &p, o->out, o->latents_out, o->init, log);
    }
    if (plan) dfa_ctx_clear_plan(ctx);
    dfa_plan_file_free(plan);
    dfa_model_free(m);
    return s;
}
