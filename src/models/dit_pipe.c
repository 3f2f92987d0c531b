/* dit_pipe.c - DiT / PixArt generation from a pipeline folder (see dit_pipe.h). */
#include "models/dit_pipe.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "io/json.h"
#include "io/safetensors.h"
#include "sample/ddpm.h"
#include "sample/dpm.h"

/* scheduler/scheduler_config.json of model_dir, or NULL (*root = NULL) when there is none. */
static dfa_status read_sched(dfa_ctx *ctx, const char *model_dir, char *path, size_t len, cJSON **root) {
    *root = NULL;
    snprintf(path, len, "%s/scheduler/scheduler_config.json", model_dir);
    struct stat sb;
    if (stat(path, &sb) != 0) return DFA_OK;
    return dfa_sched_json_read(path, root, &ctx->err);
}

static dfa_status check_class(dfa_ctx *ctx, const cJSON *root, const char *path, const char *const *ok, int n_ok) {
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(root, "_class_name");
    if (!cJSON_IsString(c)) return DFA_OK; /* no class name: trust the keys */
    for (int i = 0; i < n_ok; i++)
        if (strcmp(c->valuestring, ok[i]) == 0) return DFA_OK;
    DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED, "%s: scheduler %s is not supported for this model (%s%s%s)", path,
                 c->valuestring, ok[0], n_ok > 1 ? ", " : "", n_ok > 1 ? ok[1] : "");
}

static dfa_status init_latents(dfa_ctx *ctx, const dfa_dit_gen_params *p, int C, float *lat) {
    const size_t n = (size_t)C * p->latent_h * p->latent_w;
    if (p->init_latents) {
        memcpy(lat, p->init_latents, n * sizeof(float));
    } else {
        dfa_rng r;
        dfa_rng_seed(&r, p->seed);
        dfa_rng_normal(&r, lat, n);
    }
    (void)ctx;
    return DFA_OK;
}

dfa_status dfa_dit_generate(dfa_ctx *ctx, dfa_dit *m, const char *model_dir, const dfa_dit_gen_params *p,
                            float *latents_out) {
    const dfa_dit_config *c = dfa_dit_get_config(m);
    if (p->class_label < 0 || p->class_label >= c->num_classes)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dit: class label %d out of range 0..%d", p->class_label,
                     c->num_classes - 1);
    char path[4200];
    cJSON *root = NULL;
    DFA_TRY(read_sched(ctx, model_dir, path, sizeof path, &root));
    dfa_ddim sched;
    dfa_status s = DFA_OK;
    if (root) {
        static const char *const ok[] = {"DDIMScheduler", "DDPMScheduler"};
        s = check_class(ctx, root, path, ok, 2);
        if (s == DFA_OK) s = dfa_ddim_init_json(&sched, root, path, &ctx->err);
        cJSON_Delete(root);
    } else { /* facebook/DiT-XL-2-*: DDIM, linear betas 1e-4..0.02, no clipping */
        cJSON *d = cJSON_Parse("{\"clip_sample\": false}");
        s = d ? dfa_ddim_init_json(&sched, d, "DiT default scheduler", &ctx->err)
              : DFA_SET(&ctx->err, DFA_ERR_OOM, "no memory for the default scheduler");
        cJSON_Delete(d);
    }
    DFA_TRY(s);
    DFA_TRY(init_latents(ctx, p, c->in_channels, latents_out));
    return dfa_dit_sample(ctx, m, &sched, p->steps > 0 ? p->steps : 250, p->class_label, p->cfg_scale, p->latent_h,
                          p->latent_w, latents_out, p->progress, p->progress_user);
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
    char path[4200];
    cJSON *root = NULL;
    DFA_TRY(read_sched(ctx, model_dir, path, sizeof path, &root));
    dfa_dpm sched;
    dfa_status s = DFA_OK;
    if (root) {
        static const char *const ok[] = {"DPMSolverMultistepScheduler"};
        s = check_class(ctx, root, path, ok, 1);
        if (s == DFA_OK) s = dfa_dpm_init_json(&sched, root, path, &ctx->err);
        cJSON_Delete(root);
    } else { /* PixArt-Sigma: DPM-Solver++ 2M, linear betas, linspace spacing */
        cJSON *d = cJSON_Parse("{}");
        s = d ? dfa_dpm_init_json(&sched, d, "PixArt default scheduler", &ctx->err)
              : DFA_SET(&ctx->err, DFA_ERR_OOM, "no memory for the default scheduler");
        cJSON_Delete(d);
    }
    DFA_TRY(s);
    DFA_TRY(init_latents(ctx, p, c->in_channels, latents_out));
    s = dfa_pixart_sample(ctx, m, &sched, p->steps > 0 ? p->steps : 20, p->cfg_scale, p->latent_h, p->latent_w,
                          pe->n_txt, pe->embeds, pe->mask, pe->neg_embeds, pe->neg_embeds ? pe->neg_mask : NULL,
                          latents_out, p->progress, p->progress_user);
    dfa_dpm_free(ctx, &sched);
    return s;
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
