/* cmd_generate.c - `dfa generate`: prompt embeddings -> latents (-> PNG through the VAE) for the
 * MMDiT families (FLUX.1, SD3 / SD3.5), picked from the transformer config's _class_name.
 * Progress per step (a bar on a terminal, plain lines otherwise) and a final line with the time
 * in attention against the rest. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/run_target.h"
#include "attn/attn_state.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/gen_dit.h"
#include "api/model_defaults.h"
#include "core/ctx.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "models/mmdit.h"
#include "models/mmdit_pipe.h"
#include "models/vae.h"
#include "plan/plan.h"
#include "text/prompt.h"

typedef struct gen_opts {
    const char *model, *embeds, *out, *plan, *latents_out, *init, *prompt, *negative;
    int steps, width, height, threads, max_len, cuda, class_label;
    long long seed;
    double cfg, guidance;
    char negative_buf[512]; /* negative prompt from the model's dfa.json */
} gen_opts;

typedef struct gen_progress_state {
    int tty;
    double total;
} gen_progress_state;

static void on_step(void *user, int step, int n, double secs) {
    gen_progress_state *s = user;
    s->total += secs;
    if (s->tty) {
        int filled = (int)((double)(step + 1) / n * 30.0 + 0.5);
        fprintf(stderr, "\r[%.*s%*s] %d/%d  %.2f s/step", filled, "##############################", 30 - filled, "",
                step + 1, n, s->total / (step + 1));
        if (step + 1 == n) fputc('\n', stderr);
    } else {
        fprintf(stderr, "step %d/%d  %.3f s\n", step + 1, n, secs);
    }
    fflush(stderr);
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

static int is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* "latents" [1, C, h, w] or [C, h, w] -> buf (n floats) */
static dfa_status load_init(dfa_ctx *ctx, const char *path, int C, int h, int w, float *buf) {
    dfa_safetensors *st = NULL;
    DFA_TRY(dfa_st_open(&st, path, &ctx->err));
    const dfa_st_tensor *t = dfa_st_find(st, "latents");
    dfa_status s = DFA_OK;
    if (!t) {
        s = dfa_error_set(&ctx->err, DFA_ERR_NOT_FOUND, __FILE__, __LINE__, "%s: no tensor 'latents'", path);
    } else {
        const int64_t s4[4] = {1, C, h, w};
        int four = t->ndim == 4;
        s = dfa_st_load(st, "latents", DFA_F32, four ? 4 : 3, four ? s4 : s4 + 1, buf, DFA_DEV_CPU, NULL, &ctx->err);
    }
    dfa_st_close(st);
    return s;
}

static dfa_status read_class(dfa_ctx *ctx, const char *model, char *cls, size_t len) {
    char tdir[1024], cfg[1100];
    cJSON *j = NULL;
    DFA_TRY(dfa_mmdit_read_config(ctx, model, &j, tdir, sizeof tdir, cfg, sizeof cfg));
    const char *name = NULL;
    dfa_status s = dfa_json_string(j, "_class_name", cfg, &name, &ctx->err);
    if (s == DFA_OK) snprintf(cls, len, "%s", name);
    cJSON_Delete(j);
    return s;
}

/* --prompt: run the text encoders of the model folder (text/prompt.h) as `dfa encode` does; the
 * negative prompt ("" unless given) is encoded too for SD3 with CFG. Encoders are freed before
 * the transformer loads. */
static dfa_status encode_prompts(dfa_ctx *ctx, const gen_opts *o, int want_negative, dfa_prompt_embeds *pe) {
    dfa_prompt_opts po = {.layout = DFA_LAYOUT_AUTO, .max_sequence_length = o->max_len};
    dfa_prompt_encoder *enc = NULL;
    DFA_TRY(dfa_prompt_encoder_load(ctx, o->model, &po, &enc));
    dfa_text_embeds pos = {0}, neg = {0};
    dfa_status s = dfa_prompt_encode(enc, o->prompt, &pos);
    if (s == DFA_OK && want_negative) s = dfa_prompt_encode(enc, o->negative ? o->negative : "", &neg);
    dfa_prompt_encoder_free(enc);
    if (s == DFA_OK) s = dfa_prompt_embeds_from_text(ctx, &pos, want_negative ? &neg : NULL, pe);
    dfa_text_embeds_free(&pos);
    dfa_text_embeds_free(&neg);
    return s;
}

/* MODEL/dfa.json, when the folder has one (dfa's own models ship it): the size, steps, T5 length,
 * true-CFG scale and negative prompt the model was trained for; used only where no flag was given. */
static dfa_status apply_model_defaults(dfa_ctx *ctx, gen_opts *o) {
    dfa_model_defaults d;
    DFA_TRY(dfa_model_defaults_read(ctx, o->model, &d));
    if (!o->width) o->width = d.width;
    if (!o->height) o->height = d.height;
    if (!o->steps) o->steps = d.steps;
    if (!o->max_len) o->max_len = d.max_len;
    if (o->cfg < 0) o->cfg = d.true_cfg_scale;
    if (o->cfg > 1.0 && !o->negative && d.has_negative) {
        snprintf(o->negative_buf, sizeof o->negative_buf, "%s", d.negative);
        o->negative = o->negative_buf;
    }
    return DFA_OK;
}

static int run_generate(dfa_ctx *ctx, gen_opts *o) {
    char cls[128];
    if (read_class(ctx, o->model, cls, sizeof cls) != DFA_OK) {
        fprintf(stderr, "dfa generate: %s\n", dfa_ctx_error(ctx));
        return 1;
    }
    if (apply_model_defaults(ctx, o) != DFA_OK) {
        fprintf(stderr, "dfa generate: %s\n", dfa_ctx_error(ctx));
        return 1;
    }
    if (dfa_gen_dit_handles(cls)) { /* DiT / PixArt: their own loop (DPM-Solver++, DDPM, DDIM) */
        const int is_dit = strcmp(cls, "DiTTransformer2DModel") == 0;
        if (is_dit && (o->prompt || o->embeds)) {
            fprintf(stderr, "dfa generate: %s: DiT is class-conditional (--class N); it takes no prompt\n", o->model);
            return 2;
        }
        if (o->prompt) {
            fprintf(stderr, "dfa generate: %s: --prompt is not wired for %s yet; run `dfa encode -m %s -p TEXT -o "
                            "embeds.safetensors` and pass --prompt-embeds\n", o->model, cls, o->model);
            return 2;
        }
        dfa_gen_dit_opts d = {.model = o->model, .embeds = o->embeds, .out = o->out, .latents_out = o->latents_out,
                              .plan = o->plan, .init = o->init, .steps = o->steps, .width = o->width,
                              .height = o->height, .class_label = o->class_label, .seed = o->seed, .cfg = o->cfg};
        dfa_status s = dfa_gen_dit_run(ctx, cls, &d, stderr);
        if (s != DFA_OK) fprintf(stderr, "dfa generate: %s\n", dfa_ctx_error(ctx));
        return s == DFA_OK ? 0 : 1;
    }
    if (!o->prompt && !o->embeds) {
        fprintf(stderr, "dfa generate: %s needs --prompt TEXT or --prompt-embeds FILE\n", cls);
        return 2;
    }
    if (!o->width) o->width = 1024;
    if (!o->height) o->height = 1024;
    const int is_flux = strcmp(cls, "FluxTransformer2DModel") == 0, is_sd3 = strcmp(cls, "SD3Transformer2DModel") == 0;
    if (!is_flux && !is_sd3) {
        fprintf(stderr, "dfa generate: %s: model class %s is not handled yet (FLUX and SD3 are)\n", o->model, cls);
        return 1;
    }
    dfa_flux *fm = NULL;
    dfa_sd3 *sm = NULL;
    dfa_prompt_embeds pe = {0};
    dfa_vae *vae = NULL;
    float *lat = NULL, *init = NULL;
    dfa_plan plan;
    int have_plan = 0, rc = 1;
    dfa_status s = DFA_OK;
    if (o->prompt) { /* text encoders first: they are freed before the transformer loads */
        fprintf(stderr, "dfa generate: encoding the prompt with %s's text encoders\n", o->model);
        s = encode_prompts(ctx, o, (is_sd3 && o->cfg != 0.0 && o->cfg != 1.0) || (is_flux && o->cfg > 1.0), &pe);
    } else {
        s = dfa_prompt_embeds_load(ctx, o->embeds, &pe);
    }
    if (s == DFA_OK) s = is_flux ? dfa_flux_load(ctx, o->model, &fm) : dfa_sd3_load(ctx, o->model, &sm);
    dfa_flow_config fc;
    if (s == DFA_OK) {
        s = dfa_flow_config_read(ctx, o->model, &fc);
        if (s == DFA_ERR_NOT_FOUND) { /* no scheduler/ folder: the released pipelines' schedulers */
            fc = dfa_flow_config_default();
            fc.shift = 3.0;
            fc.use_dynamic_shifting = is_flux && fm && dfa_flux_get_config(fm)->guidance_embeds;
            if (is_flux && !fc.use_dynamic_shifting) fc.shift = 1.0; /* schnell */
            fprintf(stderr, "dfa generate: no scheduler config in %s; using %s\n", o->model,
                    fc.use_dynamic_shifting ? "dynamic shift (FLUX-dev)" : is_flux ? "shift 1 (FLUX-schnell)" : "shift 3 (SD3)");
            s = DFA_OK;
        }
    }
    if (s == DFA_OK && ends_with(o->out, ".png")) {
        char vdir[1100];
        snprintf(vdir, sizeof vdir, "%s/vae", o->model);
        if (!is_dir(vdir)) {
            fprintf(stderr, "dfa generate: -o %s needs a VAE in %s (or write latents: -o FILE.safetensors)\n", o->out,
                    vdir);
            goto done;
        }
        s = dfa_vae_load(ctx, vdir, &vae);
    }
    const int C = is_flux ? (fm ? dfa_flux_latent_channels(fm) : 0) : (sm ? dfa_sd3_latent_channels(sm) : 0);
    const int up = vae ? dfa_vae_upscale(vae) : 8; /* pixels per latent */
    const int h = o->height / up, w = o->width / up;
    const size_t n = (size_t)C * h * w;
    if (s == DFA_OK && (o->height % up || o->width % up)) {
        fprintf(stderr, "dfa generate: -W/-H must be multiples of %d pixels (got %dx%d)\n", up, o->width, o->height);
        goto done;
    }
    if (s == DFA_OK && vae && dfa_vae_get_config(vae)->latent_channels != C) {
        fprintf(stderr, "dfa generate: the VAE takes %d latent channels, the transformer makes %d\n",
                dfa_vae_get_config(vae)->latent_channels, C);
        goto done;
    }
    if (s == DFA_OK) s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, (n ? n : 1) * sizeof(float), "latents", (void **)&lat);
    if (s == DFA_OK && o->init) {
        s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, (n ? n : 1) * sizeof(float), "initial latents", (void **)&init);
        if (s == DFA_OK) s = load_init(ctx, o->init, C, h, w, init);
    }
    int steps = o->steps;
    if (s == DFA_OK && steps <= 0) steps = is_flux && !dfa_flux_get_config(fm)->guidance_embeds ? 4 : 28;
    float cfg_scale = (float)o->cfg;
    if (is_sd3 && o->cfg < 0) cfg_scale = pe.neg_embeds ? 7.0f : 1.0f;
    if (is_flux && o->cfg < 0) cfg_scale = 1.0f;
    if (s == DFA_OK && o->plan) {
        s = dfa_plan_load(o->plan, &plan, &ctx->err);
        if (s == DFA_OK) {
            have_plan = 1;
            s = dfa_run_check_plan(ctx, &plan, o->plan, fm, sm, NULL, NULL, pe.n_txt, h, w, up, steps, cfg_scale > 1.0f);
        }
        if (s == DFA_OK) s = dfa_attn_set_plan(ctx, &plan);
    }
    if (s == DFA_OK) {
        gen_progress_state ps = {.tty = isatty(fileno(stderr))};
        dfa_mmdit_gen_params gp = {.steps = steps, .latent_h = h, .latent_w = w, .cfg_scale = cfg_scale,
                                   .guidance = (float)o->guidance, .seed = (uint64_t)o->seed, .init_latents = init,
                                   .progress = on_step, .progress_user = &ps};
        fprintf(stderr, "dfa generate: %s, %dx%d px (latent %d x %d x %d), %d steps, guidance %.2f, cfg %.2f, seed %lld%s\n",
                is_flux ? "FLUX" : "SD3", o->width, o->height, C, h, w, steps, gp.guidance, gp.cfg_scale, o->seed,
                o->init ? " (initial latents from file)" : "");
        s = is_flux ? dfa_flux_generate(ctx, fm, &fc, &pe, &gp, lat) : dfa_sd3_generate(ctx, sm, &fc, &pe, &gp, lat);
        if (s == DFA_OK) {
            double attn = 0, total = 0;
            if (is_flux)
                dfa_flux_times(fm, &attn, &total);
            else
                dfa_sd3_times(sm, &attn, &total);
            fprintf(stderr, "done: %d steps in %.2f s; transformer %.2f s: attention %.2f s (%.1f%%), rest %.2f s\n",
                    steps, ps.total, total, attn, total > 0 ? 100.0 * attn / total : 0.0, ps.total - attn);
        }
    }
    if (s == DFA_OK) {
        const int64_t shp[4] = {1, C, h, w};
        dfa_st_item it = {.name = "latents", .dtype = DFA_F32, .ndim = 4, .shape = shp, .data = lat};
        const char *lpath = vae ? o->latents_out : o->out;
        if (lpath) s = dfa_st_write(lpath, &it, 1, NULL, NULL, 0, &ctx->err);
        if (s == DFA_OK && vae) s = dfa_vae_decode_png(ctx, vae, lat, h, w, o->out);
        if (s == DFA_OK) {
            printf("%s\n", o->out);
            rc = 0;
        }
    }
done:
    if (s != DFA_OK) fprintf(stderr, "dfa generate: %s\n", dfa_ctx_error(ctx));
    if (have_plan) {
        dfa_attn_clear_plan(ctx);
        dfa_plan_free(&plan);
    }
    if (vae) dfa_vae_free(ctx, vae);
    if (init) dfa_ctx_mem_release(ctx, init);
    if (lat) dfa_ctx_mem_release(ctx, lat);
    if (pe.embeds) dfa_prompt_embeds_free(ctx, &pe);
    dfa_flux_free(ctx, fm);
    dfa_sd3_free(ctx, sm);
    return rc;
}

int cmd_generate(int argc, char **argv) {
    gen_opts o = {.steps = 0, .width = 0, .height = 0, .threads = 0, .seed = 0, .cfg = -1, .guidance = 3.5};
    dfa_arg_spec specs[] = {
        {"model", 'm', DFA_ARG_STRING, &o.model, "DIR", "diffusers pipeline folder (transformer/, scheduler/, vae/)", 1, 0},
        {"prompt-embeds", 0, DFA_ARG_STRING, &o.embeds, "FILE", "prompt embeddings (docs/PROMPT_EMBEDS.md)", 1, 0},
        {"prompt", 'p', DFA_ARG_STRING, &o.prompt, "TEXT", "encode TEXT with the folder's text encoders instead", 1, 0},
        {"negative-prompt", 'n', DFA_ARG_STRING, &o.negative, "TEXT", "negative prompt for CFG (default \"\")", 1, 0},
        {"max-sequence-length", 0, DFA_ARG_INT, &o.max_len, "N", "T5 tokens with --prompt (default FLUX 512, SD3 256)",
         1, 4096},
        {"out", 'o', DFA_ARG_STRING, &o.out, "FILE", "output: .png (decoded by vae/) or .safetensors (latents)", 1, 0},
        {"steps", 0, DFA_ARG_INT, &o.steps, "N", "denoising steps (default 28; FLUX-schnell 4)", 1, 10000},
        {"seed", 0, DFA_ARG_INT64, &o.seed, "S", "noise seed (default 0)", 0, 9.2e18},
        {"width", 'W', DFA_ARG_INT, &o.width, "PX", "width in pixels (default: the model's dfa.json, else 1024)", 8, 65536},
        {"height", 'H', DFA_ARG_INT, &o.height, "PX", "height in pixels (default: the model's dfa.json, else 1024)", 8, 65536},
        {"cfg-scale", 0, DFA_ARG_FLOAT, &o.cfg, "S", "classifier-free guidance (SD3 default 7; FLUX: true CFG, default off)", 0, 1000},
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
