/* gen_dit.c - DiT / PixArt generation for the CLI (see gen_dit.h). */
#include "cli/gen_dit.h"

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/run_target.h"
#include "attn/attn_state.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "models/dit_pipe.h"
#include "models/vae.h"
#include "plan/plan.h"

typedef struct progress_state {
    FILE *log;
    int tty;
} progress_state;

static void on_step(void *user, int step, int n, double secs) {
    progress_state *p = user;
    if (!p->log) return;
    if (p->tty)
        fprintf(p->log, "\rstep %d/%d  %.3f s%s", step + 1, n, secs, step + 1 == n ? "\n" : "");
    else
        fprintf(p->log, "step %d/%d  %.3f s\n", step + 1, n, secs);
    fflush(p->log);
}

int dfa_gen_dit_handles(const char *class_name) {
    return strcmp(class_name, "DiTTransformer2DModel") == 0 || strcmp(class_name, "PixArtTransformer2DModel") == 0;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

static dfa_status load_init(dfa_ctx *ctx, const char *path, int C, int h, int w, float *buf) {
    dfa_safetensors *st = NULL;
    DFA_TRY(dfa_st_open(&st, path, &ctx->err));
    const dfa_st_tensor *t = dfa_st_find(st, "latents");
    dfa_status s;
    if (!t) {
        s = DFA_SET(&ctx->err, DFA_ERR_NOT_FOUND, "%s: no tensor 'latents'", path);
    } else {
        const int64_t s4[4] = {1, C, h, w};
        const int four = t->ndim == 4;
        s = dfa_st_load(st, "latents", DFA_F32, four ? 4 : 3, four ? s4 : s4 + 1, buf, DFA_DEV_CPU, NULL, &ctx->err);
    }
    dfa_st_close(st);
    return s;
}

/* Pixels per latent from vae/config.json (2^(blocks-1)) without loading the weights; 8 when
 * the folder has no readable VAE config. */
static int vae_upscale_from_config(const char *vdir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", vdir);
    cJSON *root = NULL;
    if (dfa_json_read_file(path, &root, NULL) != DFA_OK) return 8;
    const cJSON *bo = cJSON_GetObjectItemCaseSensitive(root, "block_out_channels");
    const int nb = cJSON_IsArray(bo) ? cJSON_GetArraySize(bo) : 4;
    cJSON_Delete(root);
    return nb >= 1 && nb <= 8 ? 1 << (nb - 1) : 8;
}

dfa_status dfa_gen_dit_run(dfa_ctx *ctx, const char *class_name, const dfa_gen_dit_opts *o, FILE *log) {
    const int is_dit = strcmp(class_name, "DiTTransformer2DModel") == 0;
    if (!dfa_gen_dit_handles(class_name))
        DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED, "generate: model class %s is not a DiT / PixArt model", class_name);
    const int png = ends_with(o->out, ".png");
    if (!png && !ends_with(o->out, ".safetensors"))
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "generate: output %s must end in .png or .safetensors", o->out);
    if (!is_dit && !o->embeds) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "generate: PixArt needs --prompt-embeds FILE");
    char tdir[4096], vdir[4096];
    snprintf(tdir, sizeof tdir, "%s/transformer", o->model);
    snprintf(vdir, sizeof vdir, "%s/vae", o->model);
    dfa_dit *dm = NULL;
    dfa_pixart *pm = NULL;
    dfa_vae *vae = NULL;
    dfa_pixart_embeds pe = {0};
    dfa_plan plan = {0};
    int have_plan = 0;
    float *lat = NULL, *init = NULL;
    dfa_status s = is_dit ? dfa_dit_load(ctx, tdir, &dm) : dfa_pixart_load(ctx, tdir, &pm);
    if (s == DFA_OK && !is_dit) s = dfa_pixart_embeds_load(ctx, o->embeds, &pe);
    struct stat sb;
    if (s == DFA_OK && png) {
        if (stat(vdir, &sb) != 0)
            s = DFA_SET(&ctx->err, DFA_ERR_NOT_FOUND, "generate: PNG output needs %s (or write .safetensors latents)",
                        vdir);
        else
            s = dfa_vae_load(ctx, vdir, &vae);
    }
    const int C =
        is_dit ? (dm ? dfa_dit_get_config(dm)->in_channels : 0) : (pm ? dfa_pixart_get_config(pm)->in_channels : 0);
    const int ss =
        is_dit ? (dm ? dfa_dit_get_config(dm)->sample_size : 0) : (pm ? dfa_pixart_get_config(pm)->sample_size : 0);
    int up = vae ? dfa_vae_upscale(vae) : vae_upscale_from_config(vdir);
    const int W = o->width > 0 ? o->width : ss * up, H = o->height > 0 ? o->height : ss * up;
    const int w = W / up, h = H / up;
    if (s == DFA_OK && vae && dfa_vae_get_config(vae)->latent_channels != C)
        s = DFA_SET(&ctx->err, DFA_ERR_SHAPE, "generate: vae has %d latent channels, the transformer %d",
                    dfa_vae_get_config(vae)->latent_channels, C);
    if (s == DFA_OK && (W % up || H % up || w < 1 || h < 1))
        s = DFA_SET(&ctx->err, DFA_ERR_INVALID_ARG, "generate: %dx%d pixels is not a positive multiple of %d", W, H,
                    up);
    const size_t n = (size_t)C * h * w;
    if (s == DFA_OK) s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, (n ? n : 1) * sizeof(float), "latents", (void **)&lat);
    if (s == DFA_OK && o->init) {
        s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, (n ? n : 1) * sizeof(float), "initial latents", (void **)&init);
        if (s == DFA_OK) s = load_init(ctx, o->init, C, h, w, init);
    }
    const int steps = o->steps > 0 ? o->steps : (is_dit ? 50 : 20);
    const float cfg_scale = (float)(o->cfg >= 0 ? o->cfg : (is_dit ? 4.0 : 4.5));
    if (s == DFA_OK && o->plan) {
        s = dfa_plan_load(o->plan, &plan, &ctx->err);
        if (s == DFA_OK) {
            have_plan = 1;
            s = dfa_run_check_plan(ctx, &plan, o->plan, NULL, NULL, dm, pm, 0, h, w, up, steps, cfg_scale > 1.0f);
        }
        if (s == DFA_OK) s = dfa_attn_set_plan(ctx, &plan);
    }
    if (s == DFA_OK) {
        progress_state ps = {log, log ? isatty(fileno(log)) : 0};
        dfa_dit_gen_params gp = {.steps = steps,
                                 .latent_h = h,
                                 .latent_w = w,
                                 .cfg_scale = cfg_scale,
                                 .class_label = o->class_label,
                                 .seed = (uint64_t)o->seed,
                                 .init_latents = init,
                                 .progress = on_step,
                                 .progress_user = &ps};
        s = is_dit ? dfa_dit_generate(ctx, dm, o->model, &gp, lat)
                   : dfa_pixart_generate(ctx, pm, o->model, &pe, &gp, lat);
        if (s == DFA_OK && log) {
            double attn = 0, total = 0;
            if (is_dit)
                dfa_dit_times(dm, &attn, &total);
            else
                dfa_pixart_times(pm, &attn, &total);
            fprintf(log, "transformer %.2f s: attention %.2f s (%.1f%%), rest %.2f s\n", total, attn,
                    total > 0 ? 100.0 * attn / total : 0.0, total - attn);
        }
    }
    const int64_t shape[4] = {1, C, h, w};
    const dfa_st_item it = {"latents", DFA_F32, 4, shape, lat};
    if (s == DFA_OK && o->latents_out) s = dfa_st_write(o->latents_out, &it, 1, NULL, NULL, 0, &ctx->err);
    if (s == DFA_OK)
        s = png ? dfa_vae_decode_png(ctx, vae, lat, h, w, o->out)
                : dfa_st_write(o->out, &it, 1, NULL, NULL, 0, &ctx->err);
    if (have_plan) {
        dfa_attn_clear_plan(ctx);
        dfa_plan_free(&plan);
    }
    dfa_ctx_mem_release(ctx, init);
    dfa_ctx_mem_release(ctx, lat);
    if (pe.embeds) dfa_pixart_embeds_free(ctx, &pe);
    dfa_vae_free(ctx, vae);
    dfa_dit_free(ctx, dm);
    dfa_pixart_free(ctx, pm);
    return s;
}
