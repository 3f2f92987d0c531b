/* api.c - the public model / plan / generate API of include/dfa.h over the engine's internals:
 * a dfa_model is one of the four family models plus the folder's scheduler config, dfa.json
 * defaults and (lazily) its VAE; dfa_generate runs the family's pipeline function. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "api/api_int.h"
#include "api/run_target.h"
#include "attn/attn_state.h"
#include "api/model_defaults.h"
#include "core/ctx.h"
#include "io/json.h"
#include "io/png.h"
#include "io/safetensors.h"
#include "models/dit_pipe.h"
#include "models/mmdit.h"
#include "models/mmdit_pipe.h"
#include "models/pipe_prompts.h"
#include "models/vae.h"
#include "plan/plan.h"
#include "text/prompt.h"

static int is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

const char *dfa_family_name(dfa_family f) {
    switch (f) {
    case DFA_FAMILY_FLUX: return "flux";
    case DFA_FAMILY_SD3: return "sd3";
    case DFA_FAMILY_DIT: return "dit";
    case DFA_FAMILY_PIXART: return "pixart";
    }
    return "?";
}

/* Pixels per latent from vae/config.json (2^(blocks-1)) without loading weights; 8 without one. */
static int vae_upscale_from_config(const char *model_dir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/vae/config.json", model_dir);
    cJSON *root = NULL;
    if (dfa_json_read_file(path, &root, NULL) != DFA_OK) return 8;
    const cJSON *bo = cJSON_GetObjectItemCaseSensitive(root, "block_out_channels");
    const int nb = cJSON_IsArray(bo) ? cJSON_GetArraySize(bo) : 4;
    cJSON_Delete(root);
    return nb >= 1 && nb <= 8 ? 1 << (nb - 1) : 8;
}

static dfa_status read_family(dfa_ctx *ctx, const char *dir, dfa_family *fam) {
    char tdir[1024], cfg[1100];
    cJSON *j = NULL;
    DFA_TRY(dfa_mmdit_read_config(ctx, dir, &j, tdir, sizeof tdir, cfg, sizeof cfg));
    const char *name = NULL;
    dfa_status s = dfa_json_string(j, "_class_name", cfg, &name, &ctx->err);
    if (s == DFA_OK) {
        if (strcmp(name, "FluxTransformer2DModel") == 0)
            *fam = DFA_FAMILY_FLUX;
        else if (strcmp(name, "SD3Transformer2DModel") == 0)
            *fam = DFA_FAMILY_SD3;
        else if (strcmp(name, "DiTTransformer2DModel") == 0)
            *fam = DFA_FAMILY_DIT;
        else if (strcmp(name, "PixArtTransformer2DModel") == 0)
            *fam = DFA_FAMILY_PIXART;
        else
            s = DFA_SET(&ctx->err, DFA_ERR_UNSUPPORTED,
                        "%s: _class_name %s is not a supported family (FLUX, SD3, DiT, PixArt)", cfg, name);
    }
    cJSON_Delete(j);
    return s;
}

/* The folder's flow-matching scheduler, else the released pipelines' (as `dfa generate`). */
static dfa_status read_flow(dfa_ctx *ctx, dfa_model *m) {
    const int flux = m->family == DFA_FAMILY_FLUX;
    return dfa_flow_config_read_or_default(ctx, m->dir, flux, flux && dfa_flux_get_config(m->flux)->guidance_embeds,
                                           &m->flow);
}

dfa_status dfa_model_load(dfa_ctx *ctx, const char *dir, dfa_model **out) {
    if (!out) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dfa_model_load: out is NULL");
    *out = NULL;
    if (!dir || !*dir) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dfa_model_load: no model folder given");
    if (!is_dir(dir)) DFA_CTX_FAIL(ctx, DFA_ERR_NOT_FOUND, "%s: no such model folder", dir);
    if (strlen(dir) >= sizeof((dfa_model *)0)->dir) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "%s: path too long", dir);
    dfa_family fam = DFA_FAMILY_FLUX;
    DFA_TRY(read_family(ctx, dir, &fam));
    dfa_model *m = calloc(1, sizeof *m);
    if (!m) DFA_CTX_FAIL(ctx, DFA_ERR_OOM, "dfa_model_load: out of memory");
    m->ctx = ctx;
    m->family = fam;
    snprintf(m->dir, sizeof m->dir, "%s", dir);
    char tdir[4200];
    snprintf(tdir, sizeof tdir, "%s/transformer", dir);
    if (!is_dir(tdir)) snprintf(tdir, sizeof tdir, "%s", dir); /* DiT / PixArt: a bare transformer folder */
    dfa_status s = dfa_model_defaults_read(ctx, dir, &m->defaults);
    if (s == DFA_OK) {
        switch (fam) {
        case DFA_FAMILY_FLUX: s = dfa_flux_load(ctx, dir, &m->flux); break;
        case DFA_FAMILY_SD3: s = dfa_sd3_load(ctx, dir, &m->sd3); break;
        case DFA_FAMILY_DIT: s = dfa_dit_load(ctx, tdir, &m->dit); break;
        case DFA_FAMILY_PIXART: s = dfa_pixart_load(ctx, tdir, &m->pixart); break;
        }
    }
    if (s == DFA_OK && (fam == DFA_FAMILY_FLUX || fam == DFA_FAMILY_SD3)) s = read_flow(ctx, m);
    m->vae_up = vae_upscale_from_config(dir);
    if (s != DFA_OK) {
        dfa_model_free(m);
        return s;
    }
    *out = m;
    return DFA_OK;
}

void dfa_model_free(dfa_model *m) {
    if (!m) return;
    dfa_flux_free(m->ctx, m->flux);
    dfa_sd3_free(m->ctx, m->sd3);
    dfa_dit_free(m->ctx, m->dit);
    dfa_pixart_free(m->ctx, m->pixart);
    dfa_vae_free(m->ctx, m->vae);
    free(m);
}

dfa_family dfa_model_family(const dfa_model *m) { return m ? m->family : (dfa_family)0; }

int dfa_model_n_layers(const dfa_model *m) {
    if (!m) return 0;
    if (m->flux) return dfa_flux_attn_layers(m->flux);
    if (m->sd3) return dfa_sd3_attn_layers(m->sd3);
    if (m->dit) return dfa_dit_get_config(m->dit)->layers;
    return m->pixart ? dfa_pixart_get_config(m->pixart)->layers : 0;
}

int dfa_model_n_heads(const dfa_model *m) {
    if (!m) return 0;
    if (m->flux) return dfa_flux_get_config(m->flux)->n_heads;
    if (m->sd3) return dfa_sd3_get_config(m->sd3)->n_heads;
    if (m->dit) return dfa_dit_get_config(m->dit)->heads;
    return m->pixart ? dfa_pixart_get_config(m->pixart)->heads : 0;
}

int dfa_model_head_dim(const dfa_model *m) {
    if (!m) return 0;
    if (m->flux) return dfa_flux_get_config(m->flux)->head_dim;
    if (m->sd3) return dfa_sd3_get_config(m->sd3)->head_dim;
    if (m->dit) return dfa_dit_get_config(m->dit)->head_dim;
    return m->pixart ? dfa_pixart_get_config(m->pixart)->head_dim : 0;
}

int dfa_model_latent_channels(const dfa_model *m) {
    if (!m) return 0;
    if (m->flux) return dfa_flux_latent_channels(m->flux);
    if (m->sd3) return dfa_sd3_latent_channels(m->sd3);
    if (m->dit) return dfa_dit_get_config(m->dit)->in_channels;
    return m->pixart ? dfa_pixart_get_config(m->pixart)->in_channels : 0;
}

void dfa_api_model_times(const dfa_model *m, double *attn_s, double *total_s) {
    *attn_s = *total_s = 0;
    if (m && m->flux) dfa_flux_times(m->flux, attn_s, total_s);
    if (m && m->sd3) dfa_sd3_times(m->sd3, attn_s, total_s);
    if (m && m->dit) dfa_dit_times(m->dit, attn_s, total_s);
    if (m && m->pixart) dfa_pixart_times(m->pixart, attn_s, total_s);
}

/* ---- plans ---- */

dfa_status dfa_plan_file_load(dfa_ctx *ctx, const char *path, dfa_plan_file **out) {
    if (!out || !path) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dfa_plan_file_load: path and out must be given");
    *out = NULL;
    dfa_plan_file *p = calloc(1, sizeof *p);
    if (!p) DFA_CTX_FAIL(ctx, DFA_ERR_OOM, "dfa_plan_file_load: out of memory");
    dfa_status s = dfa_plan_load(path, &p->plan, &ctx->err);
    if (s != DFA_OK) {
        free(p);
        return s;
    }
    *out = p;
    return DFA_OK;
}

void dfa_plan_file_free(dfa_plan_file *p) {
    if (!p) return;
    dfa_plan_free(&p->plan);
    free(p);
}

dfa_status dfa_plan_file_save(dfa_ctx *ctx, const dfa_plan_file *p, const char *path) {
    if (!p || !path) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dfa_plan_file_save: plan and path must be given");
    return dfa_plan_save(path, &p->plan, &ctx->err);
}

double dfa_plan_file_attn_fraction(const dfa_plan_file *p) {
    if (!p) return 1.0;
    dfa_plan_cost c;
    dfa_plan_cost_compute(&p->plan, 64, &c, NULL); /* FLOPs are linear in D: the ratio is not */
    return c.fraction;
}

dfa_status dfa_ctx_set_plan(dfa_ctx *ctx, const dfa_plan_file *p) {
    if (!p) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dfa_ctx_set_plan: plan is NULL (dfa_ctx_clear_plan drops one)");
    return dfa_attn_set_plan(ctx, &p->plan);
}

void dfa_ctx_clear_plan(dfa_ctx *ctx) {
    if (ctx) dfa_attn_clear_plan(ctx);
}

/* ---- generation ---- */

dfa_generate_params dfa_generate_default_params(void) {
    dfa_generate_params p;
    memset(&p, 0, sizeof p);
    p.cfg_scale = -1.0f;
    p.guidance = 3.5f;
    return p;
}

void dfa_image_free(dfa_image *im) {
    if (!im) return;
    free(im->data);
    memset(im, 0, sizeof *im);
}

dfa_status dfa_image_save_png(dfa_ctx *ctx, const dfa_image *im, const char *path) {
    if (!im || !im->data || !path) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dfa_image_save_png: no image or path");
    return dfa_png_write(path, im->width, im->height, im->channels, im->data, &ctx->err);
}

/* The run's settings with every default filled (flags > dfa.json > the pipeline's). */
typedef struct run_cfg {
    int steps, width, height, h, w, C, max_len;
    float cfg;
    const char *negative;
} run_cfg;

static dfa_status resolve(dfa_ctx *ctx, const dfa_model *m, const dfa_generate_params *p, run_cfg *r) {
    if (!m) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dfa_generate: model is NULL");
    if (!p) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dfa_generate: params is NULL");
    const dfa_model_defaults *d = &m->defaults;
    const int mmdit = m->flux || m->sd3;
    int ss = 0;
    if (m->dit) ss = dfa_dit_get_config(m->dit)->sample_size;
    if (m->pixart) ss = dfa_pixart_get_config(m->pixart)->sample_size;
    r->width = p->width > 0 ? p->width : d->width > 0 ? d->width : mmdit ? 1024 : ss * m->vae_up;
    r->height = p->height > 0 ? p->height : d->height > 0 ? d->height : mmdit ? 1024 : ss * m->vae_up;
    r->max_len = p->max_sequence_length > 0 ? p->max_sequence_length : d->max_len;
    r->steps = p->steps > 0 ? p->steps : d->steps;
    if (r->steps <= 0) {
        if (m->flux) r->steps = dfa_flux_get_config(m->flux)->guidance_embeds ? 28 : 4;
        else if (m->sd3) r->steps = 28;
        else r->steps = m->dit ? 50 : 20;
    }
    r->cfg = p->cfg_scale >= 0 ? p->cfg_scale : d->true_cfg_scale >= 0 ? (float)d->true_cfg_scale : -1.0f;
    r->negative = p->negative_prompt ? p->negative_prompt : d->has_negative ? d->negative : "";
    if (r->steps > 10000) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dfa_generate: steps %d out of range (1..10000)", r->steps);
    if (r->width > 65536 || r->height > 65536 || r->width % m->vae_up || r->height % m->vae_up)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dfa_generate: %dx%d pixels is not a multiple of %d up to 65536",
                     r->width, r->height, m->vae_up);
    r->h = r->height / m->vae_up, r->w = r->width / m->vae_up;
    r->C = dfa_model_latent_channels(m);
    if (p->guidance < 0) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dfa_generate: guidance %g is negative", p->guidance);
    if (m->dit && (p->prompt || p->prompt_embeds))
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dfa_generate: %s: DiT is class-conditional (class_label); it takes no prompt",
                     m->dir);
    if (!m->dit && !!p->prompt == !!p->prompt_embeds)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dfa_generate: %s needs exactly one of prompt / prompt_embeds",
                     dfa_family_name(m->family));
    return DFA_OK;
}

dfa_status dfa_generate_latent_shape(dfa_ctx *ctx, dfa_model *m, const dfa_generate_params *p, int *c, int *h,
                                     int *w) {
    run_cfg r = {0};
    DFA_TRY(resolve(ctx, m, p, &r));
    if (c) *c = r.C;
    if (h) *h = r.h;
    if (w) *w = r.w;
    return DFA_OK;
}

/* FLUX / SD3: prompt text through the folder's encoders (freed at once), or the embeddings file. */
static dfa_status mmdit_embeds(dfa_ctx *ctx, const dfa_model *m, const dfa_generate_params *p, const run_cfg *r,
                               int want_negative, dfa_prompt_embeds *pe) {
    if (!p->prompt) return dfa_prompt_embeds_load(ctx, p->prompt_embeds, pe);
    dfa_prompt_opts po = {.layout = DFA_LAYOUT_AUTO, .max_sequence_length = r->max_len};
    dfa_prompt_encoder *enc = NULL;
    DFA_TRY(dfa_prompt_encoder_load(ctx, m->dir, &po, &enc));
    dfa_text_embeds pos = {0}, neg = {0};
    dfa_status s = dfa_prompt_encode(enc, p->prompt, &pos);
    if (s == DFA_OK && want_negative) s = dfa_prompt_encode(enc, r->negative, &neg);
    dfa_prompt_encoder_free(enc);
    if (s == DFA_OK) s = dfa_prompt_embeds_from_text(ctx, &pos, want_negative ? &neg : NULL, pe);
    dfa_text_embeds_free(&pos);
    dfa_text_embeds_free(&neg);
    return s;
}

/* Load vae/ once and check it fits the transformer (called before a run that wants an image). */
static dfa_status ensure_vae(dfa_ctx *ctx, dfa_model *m) {
    if (!m->vae) {
        char vdir[4200];
        snprintf(vdir, sizeof vdir, "%s/vae", m->dir);
        if (!is_dir(vdir))
            DFA_CTX_FAIL(ctx, DFA_ERR_NOT_FOUND, "dfa_generate: an image needs a VAE in %s (or ask for latents only)",
                         vdir);
        DFA_TRY(dfa_vae_load(ctx, vdir, &m->vae));
    }
    const dfa_vae_config *vc = dfa_vae_get_config(m->vae);
    if (vc->latent_channels != dfa_model_latent_channels(m) || vc->out_channels != 3)
        DFA_CTX_FAIL(ctx, DFA_ERR_SHAPE, "%s/vae: takes %d latent channels and makes %d (need %d and 3)", m->dir,
                     vc->latent_channels, vc->out_channels, dfa_model_latent_channels(m));
    return DFA_OK;
}

static dfa_status decode(dfa_ctx *ctx, dfa_model *m, const float *lat, int h, int w, dfa_image *im) {
    DFA_TRY(ensure_vae(ctx, m));
    const int up = dfa_vae_upscale(m->vae), H = h * up, W = w * up;
    float *img = NULL;
    DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, (size_t)3 * H * W * sizeof(float), "decoded image", (void **)&img));
    dfa_status s = dfa_vae_decode(ctx, m->vae, lat, h, w, img);
    uint8_t *rgb = NULL;
    if (s == DFA_OK) {
        rgb = malloc((size_t)3 * H * W);
        if (!rgb) s = DFA_SET(&ctx->err, DFA_ERR_OOM, "dfa_generate: %dx%d RGB image: out of memory", W, H);
    }
    if (s == DFA_OK) {
        dfa_vae_to_rgb8(img, H, W, rgb);
        *im = (dfa_image){.width = W, .height = H, .channels = 3, .data = rgb};
    }
    dfa_ctx_mem_release(ctx, img);
    return s;
}

dfa_status dfa_decode(dfa_ctx *ctx, dfa_model *m, const float *latents, int h, int w, dfa_image *out_image) {
    if (!m || !latents || !out_image) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dfa_decode: model, latents and out_image needed");
    memset(out_image, 0, sizeof *out_image);
    if (h < 1 || w < 1 || h > 8192 || w > 8192)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dfa_decode: latent grid %d x %d out of range (1..8192)", h, w);
    return decode(ctx, m, latents, h, w, out_image);
}

dfa_status dfa_generate(dfa_ctx *ctx, dfa_model *m, const dfa_generate_params *p, dfa_image *out_image,
                        float *out_latents, size_t n_latents) {
    if (out_image) memset(out_image, 0, sizeof *out_image);
    run_cfg r = {0};
    DFA_TRY(resolve(ctx, m, p, &r));
    if (!out_image && !out_latents)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dfa_generate: neither out_image nor out_latents given");
    const size_t n = (size_t)r.C * r.h * r.w;
    if (out_latents && n_latents < n)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dfa_generate: out_latents holds %zu floats, the run makes %zu (%d x %d x %d)",
                     n_latents, n, r.C, r.h, r.w);
    if (out_image) DFA_TRY(ensure_vae(ctx, m)); /* before the run, not after it */
    float *lat = out_latents;
    if (!lat) DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, (n ? n : 1) * sizeof(float), "latents", (void **)&lat));
    dfa_status s = DFA_OK;
    const dfa_plan *plan = dfa_attn_plan(ctx);
    if (m->flux || m->sd3) {
        float cfg = r.cfg;
        const int want_neg = m->sd3 ? (r.cfg < 0 || (r.cfg != 0.0f && r.cfg != 1.0f)) : r.cfg > 1.0f;
        dfa_prompt_embeds pe = {0};
        s = mmdit_embeds(ctx, m, p, &r, want_neg, &pe);
        if (cfg < 0) cfg = m->sd3 && pe.neg_embeds ? 7.0f : 1.0f;
        if (s == DFA_OK && plan)
            s = dfa_run_check_plan(ctx, plan, "the plan in use", m->flux, m->sd3, NULL, NULL, pe.n_txt, r.h, r.w,
                                   m->vae_up, r.steps, cfg > 1.0f);
        if (s == DFA_OK) {
            dfa_mmdit_gen_params gp = {.steps = r.steps, .latent_h = r.h, .latent_w = r.w, .cfg_scale = cfg,
                                       .guidance = p->guidance, .seed = p->seed, .init_latents = p->init_latents,
                                       .progress = p->progress, .progress_user = p->progress_user};
            s = m->flux ? dfa_flux_generate(ctx, m->flux, &m->flow, &pe, &gp, lat)
                        : dfa_sd3_generate(ctx, m->sd3, &m->flow, &pe, &gp, lat);
        }
        if (pe.embeds) dfa_prompt_embeds_free(ctx, &pe);
    } else {
        const float cfg = r.cfg >= 0 ? r.cfg : (m->dit ? 4.0f : 4.5f);
        dfa_pixart_embeds pe = {0};
        if (m->pixart && p->prompt) /* T5 through the folder's encoder; the negative when CFG is on */
            s = dfa_pipe_encode_prompts(ctx, m->dir, r.max_len, 1, &p->prompt, 1, cfg > 1.0f ? r.negative : NULL,
                                        NULL, &pe);
        else if (m->pixart)
            s = dfa_pixart_embeds_load(ctx, p->prompt_embeds, &pe);
        if (s == DFA_OK && plan)
            s = dfa_run_check_plan(ctx, plan, "the plan in use", NULL, NULL, m->dit, m->pixart, 0, r.h, r.w,
                                   m->vae_up, r.steps, cfg > 1.0f);
        if (s == DFA_OK) {
            dfa_dit_gen_params gp = {.steps = r.steps, .latent_h = r.h, .latent_w = r.w, .cfg_scale = cfg,
                                     .class_label = p->class_label, .seed = p->seed, .init_latents = p->init_latents,
                                     .progress = p->progress, .progress_user = p->progress_user};
            s = m->dit ? dfa_dit_generate(ctx, m->dit, m->dir, &gp, lat)
                       : dfa_pixart_generate(ctx, m->pixart, m->dir, &pe, &gp, lat);
        }
        if (pe.embeds) dfa_pixart_embeds_free(ctx, &pe);
    }
    if (s == DFA_OK && out_image) s = decode(ctx, m, lat, r.h, r.w, out_image);
    if (lat != out_latents) dfa_ctx_mem_release(ctx, lat);
    return s;
}

/* ---- files ---- */

dfa_status dfa_tensor_read_f32(dfa_ctx *ctx, const char *path, const char *name, float **data, int64_t shape[8],
                               int *ndim) {
    if (!path || !name || !data) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dfa_tensor_read_f32: path, name, data needed");
    *data = NULL;
    dfa_safetensors *st = NULL;
    DFA_TRY(dfa_st_open(&st, path, &ctx->err));
    const dfa_st_tensor *t = dfa_st_find(st, name);
    dfa_status s = DFA_OK;
    float *buf = NULL;
    if (!t) {
        s = DFA_SET(&ctx->err, DFA_ERR_NOT_FOUND, "%s: no tensor '%s'", path, name);
    } else {
        size_t n = 1;
        for (int i = 0; i < t->ndim; i++) n *= (size_t)t->shape[i];
        buf = malloc((n ? n : 1) * sizeof(float));
        if (!buf) s = DFA_SET(&ctx->err, DFA_ERR_OOM, "%s: tensor '%s': out of memory", path, name);
        if (s == DFA_OK) s = dfa_st_load(st, name, DFA_F32, t->ndim, t->shape, buf, DFA_DEV_CPU, NULL, &ctx->err);
        if (s == DFA_OK) {
            if (shape)
                for (int i = 0; i < t->ndim && i < 8; i++) shape[i] = t->shape[i];
            if (ndim) *ndim = t->ndim;
        }
    }
    dfa_st_close(st);
    if (s != DFA_OK) {
        free(buf);
        return s;
    }
    *data = buf;
    return DFA_OK;
}

void dfa_free(void *p) { free(p); }
