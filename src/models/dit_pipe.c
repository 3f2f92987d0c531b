/* dit_pipe.c - DiT / PixArt generation from a pipeline folder (see dit_pipe.h). */
#include "models/dit_pipe.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "io/json.h"
#include "io/safetensors.h"
#include "sample/sampler.h"
#include "text/prompt.h"

/* The sampler of model_dir/scheduler/scheduler_config.json, or the hub default (`dflt_json`,
 * kind dflt) when the folder has none; timesteps set for n values. */
static dfa_status open_sampler(dfa_ctx *ctx, const char *model_dir, dfa_sampler_kind dflt, const char *dflt_json,
                               int steps, size_t n, uint64_t seed, dfa_sampler *s);

dfa_status dfa_dit_open_sampler(dfa_ctx *ctx, const char *model_dir, int pixart, int steps, size_t n, uint64_t seed,
                                dfa_sampler *s) {
    if (pixart) return open_sampler(ctx, model_dir, DFA_SAMPLER_DPM, "{}", steps > 0 ? steps : 20, n, seed, s);
    return open_sampler(ctx, model_dir, DFA_SAMPLER_DDIM, "{\"clip_sample\": false}", steps > 0 ? steps : 250, n, seed,
                        s);
}

static dfa_status open_sampler(dfa_ctx *ctx, const char *model_dir, dfa_sampler_kind dflt, const char *dflt_json,
                               int steps, size_t n, uint64_t seed, dfa_sampler *s) {
    char path[4200];
    snprintf(path, sizeof path, "%s/scheduler/scheduler_config.json", model_dir);
    struct stat sb;
    if (stat(path, &sb) == 0) {
        DFA_TRY(dfa_sampler_init_file(ctx, s, path, dflt));
    } else {
        cJSON *d = cJSON_Parse(dflt_json);
        if (!d) DFA_CTX_FAIL(ctx, DFA_ERR_OOM, "no memory for the default scheduler");
        dfa_status st = dfa_sampler_init_json(ctx, s, d, "default scheduler", dflt);
        cJSON_Delete(d);
        DFA_TRY(st);
    }
    /* DDPM's per-step noise: a stream of its own, derived from the seed */
    dfa_status st = dfa_sampler_set_timesteps(ctx, s, steps, n, seed ^ 0x9e3779b97f4a7c15ULL);
    if (st != DFA_OK) dfa_sampler_free(ctx, s);
    return st;
}

static void init_latents(const dfa_dit_gen_params *p, int C, float *lat) {
    const size_t n = (size_t)C * p->latent_h * p->latent_w;
    if (p->init_latents) {
        memcpy(lat, p->init_latents, n * sizeof(float));
    } else {
        dfa_rng r;
        dfa_rng_seed(&r, p->seed);
        dfa_rng_normal(&r, lat, n);
    }
}

dfa_status dfa_dit_generate(dfa_ctx *ctx, dfa_dit *m, const char *model_dir, const dfa_dit_gen_params *p,
                            float *latents_out) {
    const dfa_dit_config *c = dfa_dit_get_config(m);
    if (p->class_label < 0 || p->class_label >= c->num_classes)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dit: class label %d out of range 0..%d", p->class_label,
                     c->num_classes - 1);
    if (p->latent_h < 1 || p->latent_w < 1)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dit: latent size %dx%d", p->latent_h, p->latent_w);
    const size_t n = (size_t)c->in_channels * p->latent_h * p->latent_w;
    dfa_sampler s;
    /* facebook/DiT-XL-2-*: DDIM, linear betas 1e-4..0.02, no clipping */
    DFA_TRY(open_sampler(ctx, model_dir, DFA_SAMPLER_DDIM, "{\"clip_sample\": false}", p->steps > 0 ? p->steps : 50,
                         n, p->seed, &s));
    init_latents(p, c->in_channels, latents_out);
    dfa_status st = dfa_dit_sample(ctx, m, &s, p->class_label, p->cfg_scale, p->latent_h, p->latent_w, latents_out,
                                   p->progress, p->progress_user);
    dfa_sampler_free(ctx, &s);
    return st;
}

dfa_status dfa_pixart_generate(dfa_ctx *ctx, dfa_pixart *m, const char *model_dir, const dfa_pixart_embeds *pe,
                               const dfa_dit_gen_params *p, float *latents_out) {
    const dfa_pixart_config *c = dfa_pixart_get_config(m);
    const int want = c->caption_channels ? c->caption_channels : c->cross_dim;
    if (pe->dim != want)
        DFA_CTX_FAIL(ctx, DFA_ERR_SHAPE, "pixart: prompt embeddings have %d channels, the model takes %d", pe->dim,
                     want);
    if (p->cfg_scale > 1.0f && !pe->neg_embeds)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG,
                     "pixart: guidance %g needs negative_prompt_embeds in the prompt embeddings file", p->cfg_scale);
    if (p->latent_h < 1 || p->latent_w < 1)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "pixart: latent size %dx%d", p->latent_h, p->latent_w);
    const size_t n = (size_t)c->in_channels * p->latent_h * p->latent_w;
    dfa_sampler s;
    /* PixArt-Sigma: DPM-Solver++ 2M, linear betas, linspace spacing */
    DFA_TRY(open_sampler(ctx, model_dir, DFA_SAMPLER_DPM, "{}", p->steps > 0 ? p->steps : 20, n, p->seed, &s));
    init_latents(p, c->in_channels, latents_out);
    dfa_status st = dfa_pixart_sample(ctx, m, &s, p->cfg_scale, p->latent_h, p->latent_w, pe->n_txt, pe->embeds,
                                      pe->mask, pe->neg_embeds, pe->neg_embeds ? pe->neg_mask : NULL, latents_out,
                                      p->progress, p->progress_user);
    dfa_sampler_free(ctx, &s);
    return st;
}

/* ---- prompt embeddings ---- */

/* tensor `name` with shape [1, T, D] / [T, D] (rank 3 / 2) or [1, T] / [T] (mask): loaded into
 * context memory. want_t / want_d: required sizes (<= 0: any), set from the tensor. */
static dfa_status load_rows(dfa_ctx *ctx, dfa_safetensors *st, const char *path, const char *name, int is_mask,
                            int *T, int *D, float **out) {
    *out = NULL;
    const dfa_st_tensor *t = dfa_st_find(st, name);
    if (!t) DFA_CTX_FAIL(ctx, DFA_ERR_NOT_FOUND, "%s: no tensor '%s'", path, name);
    const int base = is_mask ? 1 : 2;
    char sb[96];
    if (!(t->ndim == base || (t->ndim == base + 1 && t->shape[0] == 1)))
        DFA_CTX_FAIL(ctx, DFA_ERR_SHAPE, "%s: tensor '%s' has shape %s, expected [1, T%s] or [T%s]", path, name,
                     dfa_shape_str(t->ndim, t->shape, sb, sizeof sb), is_mask ? "" : ", D", is_mask ? "" : ", D");
    const int64_t tt = t->shape[t->ndim - base], dd = is_mask ? 1 : t->shape[t->ndim - 1];
    if (tt < 1 || tt > (1 << 20) || dd < 1 || dd > (1 << 20))
        DFA_CTX_FAIL(ctx, DFA_ERR_SHAPE, "%s: tensor '%s' has shape %s", path, name,
                     dfa_shape_str(t->ndim, t->shape, sb, sizeof sb));
    if ((*T > 0 && tt != *T) || (!is_mask && *D > 0 && dd != *D))
        DFA_CTX_FAIL(ctx, DFA_ERR_SHAPE, "%s: tensor '%s' has shape %s, expected %d tokens%s", path, name,
                     dfa_shape_str(t->ndim, t->shape, sb, sizeof sb), *T, is_mask ? "" : " of the positive's width");
    *T = (int)tt;
    if (!is_mask) *D = (int)dd;
    DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, (size_t)tt * dd * sizeof(float), name, (void **)out));
    dfa_status s = dfa_st_load(st, name, DFA_F32, -1, NULL, *out, DFA_DEV_CPU, NULL, &ctx->err);
    if (s != DFA_OK) {
        dfa_ctx_mem_release(ctx, *out);
        *out = NULL;
    }
    return s;
}

dfa_status dfa_pixart_embeds_load(dfa_ctx *ctx, const char *path, dfa_pixart_embeds *pe) {
    memset(pe, 0, sizeof *pe);
    dfa_safetensors *st = NULL;
    DFA_TRY(dfa_st_open(&st, path, &ctx->err));
    int T = 0, D = 0;
    dfa_status s = load_rows(ctx, st, path, "prompt_embeds", 0, &T, &D, &pe->embeds);
    pe->n_txt = T;
    pe->dim = D;
    if (s == DFA_OK) {
        if (dfa_st_find(st, "prompt_attention_mask")) {
            s = load_rows(ctx, st, path, "prompt_attention_mask", 1, &T, &D, &pe->mask);
        } else {
            s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, (size_t)T * sizeof(float), "prompt mask", (void **)&pe->mask);
            for (int i = 0; s == DFA_OK && i < T; i++) pe->mask[i] = 1.0f;
        }
    }
    if (s == DFA_OK && dfa_st_find(st, "negative_prompt_embeds")) {
        s = load_rows(ctx, st, path, "negative_prompt_embeds", 0, &T, &D, &pe->neg_embeds);
        if (s == DFA_OK) {
            if (dfa_st_find(st, "negative_prompt_attention_mask")) {
                s = load_rows(ctx, st, path, "negative_prompt_attention_mask", 1, &T, &D, &pe->neg_mask);
            } else {
                s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, (size_t)T * sizeof(float), "negative prompt mask",
                                      (void **)&pe->neg_mask);
                for (int i = 0; s == DFA_OK && i < T; i++) pe->neg_mask[i] = 1.0f;
            }
        }
    }
    dfa_st_close(st);
    if (s != DFA_OK) dfa_pixart_embeds_free(ctx, pe);
    return s;
}

void dfa_pixart_embeds_free(dfa_ctx *ctx, dfa_pixart_embeds *pe) {
    dfa_ctx_mem_release(ctx, pe->embeds);
    dfa_ctx_mem_release(ctx, pe->mask);
    dfa_ctx_mem_release(ctx, pe->neg_embeds);
    dfa_ctx_mem_release(ctx, pe->neg_mask);
    memset(pe, 0, sizeof *pe);
}

/* embeds [T, D] and the int mask [T] (all ones when NULL) into context memory */
static dfa_status copy_text(dfa_ctx *ctx, const struct dfa_text_embeds *t, const char *what, float **emb,
                            float **mask) {
    DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, (size_t)t->T * t->D * sizeof(float), what, (void **)emb));
    memcpy(*emb, t->embeds, (size_t)t->T * t->D * sizeof(float));
    DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, (size_t)t->T * sizeof(float), what, (void **)mask));
    for (int i = 0; i < t->T; i++) (*mask)[i] = t->mask ? (float)(t->mask[i] != 0) : 1.0f;
    return DFA_OK;
}

dfa_status dfa_pixart_embeds_from_text(dfa_ctx *ctx, const struct dfa_text_embeds *pos,
                                       const struct dfa_text_embeds *neg, dfa_pixart_embeds *pe) {
    memset(pe, 0, sizeof *pe);
    if (!pos || !pos->embeds || pos->T < 1 || pos->D < 1)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "PixArt prompt embeddings: the text encoder gave no embeddings");
    if (neg && (!neg->embeds || neg->T != pos->T || neg->D != pos->D))
        DFA_CTX_FAIL(ctx, DFA_ERR_SHAPE, "PixArt prompt embeddings: negative [%d, %d] differs from positive [%d, %d]",
                     neg->T, neg->D, pos->T, pos->D);
    pe->n_txt = pos->T;
    pe->dim = pos->D;
    dfa_status s = copy_text(ctx, pos, "prompt_embeds", &pe->embeds, &pe->mask);
    if (s == DFA_OK && neg) s = copy_text(ctx, neg, "negative_prompt_embeds", &pe->neg_embeds, &pe->neg_mask);
    if (s != DFA_OK) dfa_pixart_embeds_free(ctx, pe);
    return s;
}
