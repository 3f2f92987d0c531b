/* generate.c - the C API in a few lines: load a model folder, optionally a plan, generate, save.
 *   generate MODEL_DIR PROMPT_EMBEDS.safetensors OUT.png [PLAN.json]
 * (DiT: pass "-" as the embeddings; the class label is 0.) Built by CMake as example_generate. */
#include <stdio.h>
#include <string.h>

#include "dfa.h"

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL_DIR PROMPT_EMBEDS|- OUT.png [PLAN.json]\n", argv[0]);
        return 2;
    }
    dfa_ctx *ctx = NULL;
    dfa_ctx_params cp = dfa_ctx_default_params();
    char err[512];
    if (dfa_ctx_init(&ctx, &cp, err, sizeof err) != DFA_OK) return fprintf(stderr, "%s\n", err), 1;

    dfa_model *model = NULL;
    dfa_plan_file *plan = NULL;
    dfa_image image = {0};
    dfa_generate_params p = dfa_generate_default_params();
    p.prompt_embeds = strcmp(argv[2], "-") ? argv[2] : NULL;
    p.seed = 42;

    dfa_status s = dfa_model_load(ctx, argv[1], &model);
    if (s == DFA_OK && argc > 4) s = dfa_plan_file_load(ctx, argv[4], &plan);
    if (s == DFA_OK && plan) s = dfa_ctx_set_plan(ctx, plan);
    if (s == DFA_OK) s = dfa_generate(ctx, model, &p, &image, NULL, 0);
    if (s == DFA_OK) s = dfa_image_save_png(ctx, &image, argv[3]);
    if (s == DFA_OK)
        printf("%s: %s, %dx%d%s\n", argv[3], dfa_family_name(dfa_model_family(model)), image.width, image.height,
               plan ? " (compressed attention)" : "");
    else
        fprintf(stderr, "error (%s): %s\n", dfa_status_str(s), dfa_ctx_error(ctx));

    dfa_image_free(&image);
    dfa_plan_file_free(plan);
    dfa_model_free(model);
    dfa_ctx_free(ctx);
    return s == DFA_OK ? 0 : 1;
}
