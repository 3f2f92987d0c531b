/* cmd_generate.c - `dfa generate`: a prompt (or prompt embeddings, or a DiT class) -> latents
 * (-> PNG through the VAE) for FLUX.1, SD3 / SD3.5, PixArt and DiT, picked from the transformer
 * config's _class_name. Argument parsing only: the run is the public API (dfa_model_load,
 * dfa_generate; defaults from MODEL/dfa.json, then the pipeline's) and the files are
 * gen_files.h's, with a progress line per step and the attention / total time at the end. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/gen_files.h"
#include "dfa.h"

typedef struct gen_opts {
    const char *model, *embeds, *out, *plan, *latents_out, *init, *prompt, *negative;
    int steps, width, height, threads, max_len, cuda, class_label;
    long long seed;
    double cfg, guidance;
} gen_opts;

static int run_generate(dfa_ctx *ctx, gen_opts *o) {
    dfa_model *m = NULL;
    if (dfa_model_load(ctx, o->model, &m) != DFA_OK) {
        fprintf(stderr, "dfa generate: %s\n", dfa_ctx_error(ctx));
        return 1;
    }
    const dfa_family f = dfa_model_family(m);
    const char *usage = f == DFA_FAMILY_DIT && (o->prompt || o->embeds)
                            ? "DiT is class-conditional (--class N); it takes no prompt"
                        : f != DFA_FAMILY_DIT && !o->prompt && !o->embeds ? "needs --prompt TEXT or --prompt-embeds FILE"
                                                                          : NULL;
    if (usage) {
        fprintf(stderr, "dfa generate: %s (%s): %s\n", o->model, dfa_family_name(f), usage);
        dfa_model_free(m);
        return 2;
    }
    dfa_plan_file *plan = NULL;
    dfa_status s = DFA_OK;
    if (o->plan) s = dfa_plan_file_load(ctx, o->plan, &plan);
    if (s == DFA_OK && plan) s = dfa_ctx_set_plan(ctx, plan);
    if (s == DFA_OK) {
        dfa_generate_params p = dfa_generate_default_params();
        p.prompt = o->prompt, p.prompt_embeds = o->embeds, p.negative_prompt = o->negative;
        p.steps = o->steps, p.width = o->width, p.height = o->height, p.max_sequence_length = o->max_len;
        p.seed = (uint64_t)o->seed, p.cfg_scale = (float)o->cfg, p.guidance = (float)o->guidance;
        p.class_label = o->class_label;
        if (o->prompt) fprintf(stderr, "dfa generate: encoding the prompt with %s's text encoders\n", o->model);
        s = dfa_gen_files(ctx, m, &p, o->out, o->latents_out, o->init, stderr);
    }
    if (s == DFA_OK)
        printf("%s\n", o->out);
    else
        fprintf(stderr, "dfa generate: %s%s%s\n", plan ? o->plan : "", plan ? ": " : "", dfa_ctx_error(ctx));
    if (plan) dfa_ctx_clear_plan(ctx);
    dfa_plan_file_free(plan);
    dfa_model_free(m);
    return s == DFA_OK ? 0 : 1;
}

int cmd_generate(int argc, char **argv) {
    gen_opts o = {.steps = 0, .width = 0, .height = 0, .threads = 0, .seed = 0, .cfg = -1, .guidance = 3.5};
    dfa_arg_spec specs[] = {
        {"model", 'm', DFA_ARG_STRING, &o.model, "DIR", "diffusers pipeline folder (transformer/, scheduler/, vae/)", 1, 0},
        {"prompt-embeds", 0, DFA_ARG_STRING, &o.embeds, "FILE", "prompt embeddings (docs/PROMPT_EMBEDS.md)", 1, 0},
        {"prompt", 'p', DFA_ARG_STRING, &o.prompt, "TEXT", "encode TEXT with the folder's text encoders instead", 1, 0},
        {"negative-prompt", 'n', DFA_ARG_STRING, &o.negative, "TEXT", "negative prompt for CFG (default: dfa.json's, else \"\")", 1, 0},
        {"max-sequence-length", 0, DFA_ARG_INT, &o.max_len, "N", "T5 tokens with --prompt (default: dfa.json, else FLUX 512, SD3 256, PixArt 300)",
         1, 4096},
        {"out", 'o', DFA_ARG_STRING, &o.out, "FILE", "output: .png (decoded by vae/) or .safetensors (latents)", 1, 0},
        {"steps", 0, DFA_ARG_INT, &o.steps, "N", "denoising steps (default: dfa.json, else 28; FLUX-schnell 4)", 1, 10000},
        {"seed", 0, DFA_ARG_INT64, &o.seed, "S", "noise seed (default 0)", 0, 9.2e18},
        {"width", 'W', DFA_ARG_INT, &o.width, "PX", "width in pixels (default: the model's dfa.json, else 1024)", 8, 65536},
        {"height", 'H', DFA_ARG_INT, &o.height, "PX", "height in pixels (default: the model's dfa.json, else 1024)", 8, 65536},
        {"cfg-scale", 0, DFA_ARG_FLOAT, &o.cfg, "S", "classifier-free guidance (default: dfa.json, else SD3 7; FLUX: true CFG, off)", 0, 1000},
        {"guidance", 0, DFA_ARG_FLOAT, &o.guidance, "G", "FLUX-dev guidance scale (default 3.5)", 0, 1000},
        {"plan", 0, DFA_ARG_STRING, &o.plan, "FILE", "attention compression plan (dfa plan make / search)", 1, 0},
        {"latents", 0, DFA_ARG_STRING, &o.latents_out, "FILE", "also write the final latents (with a .png -o)", 1, 0},
        {"init-latents", 0, DFA_ARG_STRING, &o.init, "FILE", "initial noise: tensor 'latents' [1, C, H/8, W/8] (8: the VAE's scale)", 1, 0},
        {"threads", 't', DFA_ARG_INT, &o.threads, "T", "CPU threads (default all cores)", 0, 1024},
        {"cuda", 0, DFA_ARG_FLAG, &o.cuda, NULL, "run on the GPU (CUDA backend, device 0)", 0, -1},
        {"class", 0, DFA_ARG_INT, &o.class_label, "N", "DiT: ImageNet class label (default 0)", 0, 999},
    };
    const int ns = (int)(sizeof specs / sizeof specs[0]);
    const char *pos[1];
    int npos;
    char msg[256];
    int r = dfa_args_parse(argc, argv, 1, specs, ns, pos, 1, &npos, msg, sizeof msg);
    if (r == 1) {
        dfa_args_usage("generate", "-m DIR (--prompt TEXT | --prompt-embeds FILE) -o OUT [--steps N] [--seed S] [-W PX] [-H PX]",
                       "Generate with FLUX.1, SD3 / SD3.5, DiT or PixArt (family from transformer/config.json;\n"
                       "DiT is class-conditional: --class N, no prompt). Prints a\n"
                       "progress line per step and the time in attention against the rest.", specs, ns);
        return 0;
    }
    if (r == 0 && npos) {
        snprintf(msg, sizeof msg, "takes no positional arguments (got '%s')", pos[0]);
        r = -1;
    }
    if (r == 0 && (!o.model || !o.out || (o.embeds && o.prompt))) {
        snprintf(msg, sizeof msg, "needs -m DIR, -o OUT and at most one of --prompt TEXT / --prompt-embeds FILE");
        r = -1;
    }
    if (r < 0) {
        fprintf(stderr, "dfa generate: %s\n", msg);
        return 2;
    }
    dfa_ctx *ctx = NULL;
    dfa_ctx_params cp = dfa_ctx_default_params();
    cp.n_threads = o.threads;
    if (o.cuda) cp.backend = DFA_BACKEND_CUDA;
    char err[256];
    if (dfa_ctx_init(&ctx, &cp, err, sizeof err) != DFA_OK) {
        fprintf(stderr, "dfa generate: %s\n", err);
        return 1;
    }
    int rc = run_generate(ctx, &o);
    dfa_ctx_free(ctx);
    return rc;
}
