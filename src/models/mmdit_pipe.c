/* mmdit_pipe.c - FLUX.1 / SD3 text-to-latents loops and the prompt-embeddings file (mmdit_pipe.h). */
#include "models/mmdit_pipe.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "io/safetensors.h"
#include "models/flux_int.h"
#include "models/sd3_int.h"
#include "text/prompt.h"

/* ---- prompt embeddings ---- */

/* Load `name` with rank rank_full ([1, ...]) or rank_full - 1 (no batch dim) into context memory. */
static dfa_status pe_load_one(dfa_ctx *ctx, const dfa_safetensors *st, const char *path, const char *name,
                              int rank_full, int required, float **out, int64_t dims[2]) {
    *out = NULL;
    const dfa_st_tensor *t = dfa_st_find(st, name);
    if (!t) {
        if (required) DFA_CTX_FAIL(ctx, DFA_ERR_NOT_FOUND, "%s: tensor '%s' missing (docs/PROMPT_EMBEDS.md)", path, name);
        return DFA_OK;
    }
    const int off = t->ndim == rank_full ? 1 : 0;
    char sb[96];
    if ((t->ndim != rank_full && t->ndim != rank_full - 1) || (off && t->shape[0] != 1) || !dfa_dtype_is_float(t->dtype))
        DFA_CTX_FAIL(ctx, DFA_ERR_SHAPE, "%s: tensor '%s' is %s %s; expected a float tensor of rank %d with batch 1 "
                     "(or rank %d)", path, name, dfa_dtype_name(t->dtype), dfa_shape_str(t->ndim, t->shape, sb, sizeof sb),
                     rank_full, rank_full - 1);
    size_t n = 1;
    for (int i = off; i < t->ndim; i++) {
        dims[i - off] = t->shape[i];
        n *= (size_t)t->shape[i];
    }
    if (n == 0) DFA_CTX_FAIL(ctx, DFA_ERR_SHAPE, "%s: tensor '%s' is empty", path, name);
    DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, n * sizeof(float), name, (void **)out));
    dfa_status s = dfa_st_load(st, name, DFA_F32, t->ndim, t->shape, *out, DFA_DEV_CPU, NULL, &ctx->err);
    if (s != DFA_OK) {
        dfa_ctx_mem_release(ctx, *out);
        *out = NULL;
    }
    return s;
}

dfa_status dfa_prompt_embeds_load(dfa_ctx *ctx, const char *path, dfa_prompt_embeds *pe) {
    memset(pe, 0, sizeof *pe);
    dfa_safetensors *st = NULL;
    DFA_TRY(dfa_st_open(&st, path, &ctx->err));
    int64_t d_e[2] = {0, 0}, d_p[2] = {0, 0}, d_ne[2] = {0, 0}, d_np[2] = {0, 0};
    dfa_status s = pe_load_one(ctx, st, path, "prompt_embeds", 3, 1, &pe->embeds, d_e);
    if (s == DFA_OK) s = pe_load_one(ctx, st, path, "pooled_prompt_embeds", 2, 1, &pe->pooled, d_p);
    if (s == DFA_OK) s = pe_load_one(ctx, st, path, "negative_prompt_embeds", 3, 0, &pe->neg_embeds, d_ne);
    if (s == DFA_OK) s = pe_load_one(ctx, st, path, "negative_pooled_prompt_embeds", 2, 0, &pe->neg_pooled, d_np);
    dfa_st_close(st);
    if (s == DFA_OK) {
        pe->n_txt = (int)d_e[0];
        pe->dim = (int)d_e[1];
        pe->pooled_dim = (int)d_p[0];
        if (!!pe->neg_embeds != !!pe->neg_pooled)
            s = dfa_error_set(&ctx->err, DFA_ERR_NOT_FOUND, __FILE__, __LINE__, "%s: '%s' given without '%s'", path,
                              pe->neg_embeds ? "negative_prompt_embeds" : "negative_pooled_prompt_embeds",
                              pe->neg_embeds ? "negative_pooled_prompt_embeds" : "negative_prompt_embeds");
        else if (pe->neg_embeds && (d_ne[0] != d_e[0] || d_ne[1] != d_e[1] || d_np[0] != d_p[0]))
            s = dfa_error_set(&ctx->err, DFA_ERR_SHAPE, __FILE__, __LINE__, "%s: negative embeddings [%lld, %lld] / "
                              "[%lld] differ from the positive ones [%lld, %lld] / [%lld]", path, (long long)d_ne[0],
                              (long long)d_ne[1], (long long)d_np[0], (long long)d_e[0], (long long)d_e[1],
                              (long long)d_p[0]);
    }
    if (s != DFA_OK) dfa_prompt_embeds_free(ctx, pe);
    return s;
}

void dfa_prompt_embeds_free(dfa_ctx *ctx, dfa_prompt_embeds *pe) {
    float *all[4] = {pe->embeds, pe->pooled, pe->neg_embeds, pe->neg_pooled};
    for (int i = 0; i < 4; i++)
        if (all[i]) dfa_ctx_mem_release(ctx, all[i]);
    memset(pe, 0, sizeof *pe);
}

static dfa_status copy_floats(dfa_ctx *ctx, const float *src, size_t n, const char *what, float **dst) {
    DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, (n ? n : 1) * sizeof(float), what, (void **)dst));
    memcpy(*dst, src, n * sizeof(float));
    return DFA_OK;
}

dfa_status dfa_prompt_embeds_from_text(dfa_ctx *ctx, const struct dfa_text_embeds *pos,
                                       const struct dfa_text_embeds *neg, dfa_prompt_embeds *pe) {
    memset(pe, 0, sizeof *pe);
    if (!pos || !pos->embeds || !pos->pooled || pos->pooled_dim < 1)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "prompt embeddings: the text encoders gave no pooled embedding "
                     "(FLUX and SD3 need one)");
    if (neg && (neg->T != pos->T || neg->D != pos->D || neg->pooled_dim != pos->pooled_dim))
        DFA_CTX_FAIL(ctx, DFA_ERR_SHAPE, "prompt embeddings: negative [%d, %d] / [%d] differ from positive [%d, %d] / [%d]",
                     neg->T, neg->D, neg->pooled_dim, pos->T, pos->D, pos->pooled_dim);
    pe->n_txt = pos->T;
    pe->dim = pos->D;
    pe->pooled_dim = pos->pooled_dim;
    dfa_status s = copy_floats(ctx, pos->embeds, (size_t)pos->T * pos->D, "prompt_embeds", &pe->embeds);
    if (s == DFA_OK) s = copy_floats(ctx, pos->pooled, (size_t)pos->pooled_dim, "pooled_prompt_embeds", &pe->pooled);
    if (s == DFA_OK && neg)
        s = copy_floats(ctx, neg->embeds, (size_t)neg->T * neg->D, "negative_prompt_embeds", &pe->neg_embeds);
    if (s == DFA_OK && neg)
        s = copy_floats(ctx, neg->pooled, (size_t)neg->pooled_dim, "negative_pooled_prompt_embeds", &pe->neg_pooled);
    if (s != DFA_OK) dfa_prompt_embeds_free(ctx, pe);
    return s;
}

/* ---- shared ---- */

static dfa_status pe_check(dfa_ctx *ctx, const dfa_prompt_embeds *pe, int joint_dim, int pooled_dim, const char *model) {
    if (!pe || !pe->embeds || !pe->pooled) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "%s: no prompt embeddings", model);
    if (pe->dim != joint_dim)
        DFA_CTX_FAIL(ctx, DFA_ERR_SHAPE, "%s: prompt_embeds have %d channels, the checkpoint's joint_attention_dim is %d",
                     model, pe->dim, joint_dim);
    if (pe->pooled_dim != pooled_dim)
        DFA_CTX_FAIL(ctx, DFA_ERR_SHAPE, "%s: pooled_prompt_embeds have %d channels, the checkpoint's "
                     "pooled_projection_dim is %d", model, pe->pooled_dim, pooled_dim);
    return DFA_OK;
}

static void init_noise(const dfa_mmdit_gen_params *p, float *x, size_t n) {
    if (p->init_latents) {
        memcpy(x, p->init_latents, n * sizeof(float));
    } else {
        dfa_rng r;
        dfa_rng_seed(&r, p->seed);
        dfa_rng_normal(&r, x, n);
    }
}

/* ---- FLUX ---- */

int dfa_flux_latent_channels(const dfa_flux *m) { return dfa_flux_get_config(m)->in_channels / 4; }

/* Every run struct starts with the params pointer: gen_progress reads it through the same
 * `user` pointer the velocity callback gets. */
typedef struct flux_run {
    const dfa_mmdit_gen_params *p;
    dfa_ctx *ctx;
    dfa_flux *m;
    const dfa_prompt_embeds *pe;
    const float *txt_ids, *img_ids;
    int n_img;
    float guidance;
    /* true CFG (FluxPipeline's true_cfg_scale): batch [negative, positive] */
    const float *txt2, *pooled2; /* [2, T, J], [2, P] */
    float *xin, *vout;           /* [2, n] */
    size_t n;
} flux_run;

static dfa_status flux_velocity(void *user, int step, float timestep, const float *x, float *v) {
    flux_run *r = user;
    (void)step;
    const int guided = dfa_flux_get_config(r->m)->guidance_embeds;
    if (!r->txt2) {
        const float t = timestep / 1000.0f;
        return dfa_flux_forward(r->ctx, r->m, 1, r->n_img, r->pe->n_txt, x, r->pe->embeds, r->pe->pooled, &t,
                                guided ? &r->guidance : NULL, r->txt_ids, r->img_ids, v);
    }
    const float t[2] = {timestep / 1000.0f, timestep / 1000.0f}, g[2] = {r->guidance, r->guidance};
    memcpy(r->xin, x, r->n * sizeof(float));
    memcpy(r->xin + r->n, x, r->n * sizeof(float));
    DFA_TRY(dfa_flux_forward(r->ctx, r->m, 2, r->n_img, r->pe->n_txt, r->xin, r->txt2, r->pooled2, t,
                             guided ? g : NULL, r->txt_ids, r->img_ids, r->vout));
    /* noise = neg + scale * (pos - neg), as FluxPipeline with true_cfg_scale > 1 */
    dfa_flow_cfg_combine(v, r->vout, r->vout + r->n, r->n, r->p->cfg_scale);
    return DFA_OK;
}

static void gen_progress(void *user, int step, int n, double secs) {
    const dfa_mmdit_gen_params *p = *(const dfa_mmdit_gen_params **)user;
    if (p->progress) p->progress(p->progress_user, step, n, secs);
}

dfa_status dfa_flux_generate(dfa_ctx *ctx, dfa_flux *m, const dfa_flow_config *sched, const dfa_prompt_embeds *pe,
                             const dfa_mmdit_gen_params *p, float *latents_out) {
    const dfa_flux_config *c = dfa_flux_get_config(m);
    DFA_TRY(pe_check(ctx, pe, c->joint_attention_dim, c->pooled_projection_dim, "flux"));
    if (c->patch_size != 1 || c->in_channels % 4 || c->out_channels != c->in_channels)
        DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED, "flux: generate expects patch_size 1 and packed 2x2 latents "
                     "(in_channels %d, out_channels %d, patch_size %d)", c->in_channels, c->out_channels, c->patch_size);
    const int h = p->latent_h, w = p->latent_w, C = c->in_channels / 4;
    if (h < 2 || w < 2 || h % 2 || w % 2 || p->steps < 1)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "flux: latent %dx%d must be even and >= 2 (pixels multiple of 16), "
                     "%d steps", h, w, p->steps);
    const int cfg = p->cfg_scale > 1.0f;
    if (cfg && !pe->neg_embeds)
        DFA_CTX_FAIL(ctx, DFA_ERR_NOT_FOUND, "flux: cfg scale %g (true CFG) needs a negative prompt "
                     "(negative_prompt_embeds / negative_pooled_prompt_embeds)", p->cfg_scale);
    const int n_img = (h / 2) * (w / 2), n_txt = pe->n_txt;
    const size_t n = (size_t)C * h * w;
    /* one allocation for the run: packed x, v, ids, schedule */
    const size_t J = (size_t)pe->dim, P = (size_t)pe->pooled_dim;
    const size_t cfg_floats = cfg ? 4 * n + 2 * (size_t)n_txt * J + 2 * P : 0;
    const size_t floats = 2 * n + n + (size_t)3 * (n_img + n_txt) + 2 * ((size_t)p->steps + 1) + cfg_floats;
    float *buf = NULL;
    DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, floats * sizeof(float), "flux generate buffers", (void **)&buf));
    float *x = buf, *v = x + n, *lat = v + n, *img_ids = lat + n, *txt_ids = img_ids + (size_t)3 * n_img;
    float *sig = txt_ids + (size_t)3 * n_txt, *ts = sig + p->steps + 1;
    double *sig_in = NULL;
    dfa_status s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, (size_t)p->steps * sizeof(double), "flux sigmas", (void **)&sig_in);
    if (s == DFA_OK) {
        init_noise(p, lat, n);
        dfa_flux_pack_latents(lat, 1, C, h, w, x);
        dfa_flux_image_ids(h / 2, w / 2, img_ids);
        memset(txt_ids, 0, (size_t)3 * n_txt * sizeof(float));
        dfa_flow_flux_sigmas(p->steps, sig_in);
        double mu = sched->use_dynamic_shifting ? dfa_flow_calculate_shift(sched, n_img) : NAN;
        s = dfa_flow_set_timesteps(ctx, sched, p->steps, sig_in, mu, sig, ts);
    }
    if (s == DFA_OK) {
        flux_run r = {.p = p, .ctx = ctx, .m = m, .pe = pe, .txt_ids = txt_ids, .img_ids = img_ids, .n_img = n_img,
                      .guidance = p->guidance, .n = n};
        if (cfg) { /* [negative, positive], as SD3's batch */
            float *c0 = ts + p->steps + 1;
            r.xin = c0;
            r.vout = c0 + 2 * n;
            float *txt2 = c0 + 4 * n, *pooled2 = txt2 + 2 * (size_t)n_txt * J;
            memcpy(txt2, pe->neg_embeds, (size_t)n_txt * J * sizeof(float));
            memcpy(txt2 + (size_t)n_txt * J, pe->embeds, (size_t)n_txt * J * sizeof(float));
            memcpy(pooled2, pe->neg_pooled, P * sizeof(float));
            memcpy(pooled2 + P, pe->pooled, P * sizeof(float));
            r.txt2 = txt2;
            r.pooled2 = pooled2;
        }
        dfa_flux_hold_cond(m, 1); /* text, pooled and ids stay fixed for the loop */
        if (m->dev == DFA_DEV_CUDA) /* latents, CFG and Euler on the device (same results) */
            s = dfa_flux_sample_cuda(ctx, m, cfg ? 2 : 1, n_img, n_txt, cfg ? r.txt2 : pe->embeds,
                                     cfg ? r.pooled2 : pe->pooled, p->guidance, p->cfg_scale, txt_ids, img_ids,
                                     p->steps, sig, ts, x, gen_progress, &r);
        else
            s = dfa_flow_sample(ctx, p->steps, sig, ts, x, v, n, flux_velocity, gen_progress, &r);
        dfa_flux_hold_cond(m, 0);
    }
    if (s == DFA_OK) dfa_flux_unpack_latents(x, 1, C, h, w, latents_out);
    if (sig_in) dfa_ctx_mem_release(ctx, sig_in);
    dfa_ctx_mem_release(ctx, buf);
    return s;
}

/* ---- SD3 ---- */

int dfa_sd3_latent_channels(const dfa_sd3 *m) { return dfa_sd3_get_config(m)->in_channels; }

typedef struct sd3_run {
    const dfa_mmdit_gen_params *p;
    dfa_ctx *ctx;
    dfa_sd3 *m;
    int B, h, w, n_txt;
    const float *txt, *pooled; /* [B, T, J], [B, P]: [uncond, cond] with CFG */
    float *xin, *vout;         /* [B, C, h, w] */
    size_t n;
} sd3_run;

static dfa_status sd3_velocity(void *user, int step, float timestep, const float *x, float *v) {
    sd3_run *r = user;
    (void)step;
    const float t[2] = {timestep, timestep};
    if (r->B == 1) return dfa_sd3_forward(r->ctx, r->m, 1, r->h, r->w, r->n_txt, x, r->txt, r->pooled, t, v);
    memcpy(r->xin, x, r->n * sizeof(float)); /* latent_model_input = cat([latents] * 2) */
    memcpy(r->xin + r->n, x, r->n * sizeof(float));
    DFA_TRY(dfa_sd3_forward(r->ctx, r->m, 2, r->h, r->w, r->n_txt, r->xin, r->txt, r->pooled, t, r->vout));
    dfa_flow_cfg_combine(v, r->vout, r->vout + r->n, r->n, r->p->cfg_scale);
    return DFA_OK;
}

dfa_status dfa_sd3_generate(dfa_ctx *ctx, dfa_sd3 *m, const dfa_flow_config *sched, const dfa_prompt_embeds *pe,
                            const dfa_mmdit_gen_params *p, float *latents_out) {
    const dfa_sd3_config *c = dfa_sd3_get_config(m);
    DFA_TRY(pe_check(ctx, pe, c->joint_attention_dim, c->pooled_projection_dim, "sd3"));
    const int h = p->latent_h, w = p->latent_w, C = c->in_channels, ps = c->patch_size;
    if (h < ps || w < ps || h % ps || w % ps || p->steps < 1)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "sd3: latent %dx%d must be a multiple of patch_size %d; %d steps", h, w,
                     ps, p->steps);
    if (c->out_channels != C)
        DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED, "sd3: out_channels %d != in_channels %d", c->out_channels, C);
    const int cfg = p->cfg_scale > 1.0f, B = cfg ? 2 : 1;
    if (cfg && !pe->neg_embeds)
        DFA_CTX_FAIL(ctx, DFA_ERR_NOT_FOUND, "sd3: cfg scale %g needs negative_prompt_embeds and "
                     "negative_pooled_prompt_embeds in the prompt embeddings file", p->cfg_scale);
    const size_t n = (size_t)C * h * w, T = (size_t)pe->n_txt * pe->dim, P = (size_t)pe->pooled_dim;
    const size_t floats = n + n + (size_t)B * n * 2 + (size_t)B * (T + P) + 2 * ((size_t)p->steps + 1);
    float *buf = NULL;
    DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, floats * sizeof(float), "sd3 generate buffers", (void **)&buf));
    float *x = buf, *v = x + n, *xin = v + n, *vout = xin + (size_t)B * n, *txt = vout + (size_t)B * n;
    float *pooled = txt + (size_t)B * T, *sig = pooled + (size_t)B * P, *ts = sig + p->steps + 1;
    if (cfg) { /* the pipeline's order: [negative, positive] */
        memcpy(txt, pe->neg_embeds, T * sizeof(float));
        memcpy(txt + T, pe->embeds, T * sizeof(float));
        memcpy(pooled, pe->neg_pooled, P * sizeof(float));
        memcpy(pooled + P, pe->pooled, P * sizeof(float));
    } else {
        memcpy(txt, pe->embeds, T * sizeof(float));
        memcpy(pooled, pe->pooled, P * sizeof(float));
    }
    init_noise(p, x, n);
    double mu = sched->use_dynamic_shifting ? dfa_flow_calculate_shift(sched, (h / ps) * (w / ps)) : NAN;
    dfa_status s = dfa_flow_set_timesteps(ctx, sched, p->steps, NULL, mu, sig, ts);
    if (s == DFA_OK) {
        sd3_run r = {.p = p, .ctx = ctx, .m = m, .B = B, .h = h, .w = w, .n_txt = pe->n_txt, .txt = txt,
                     .pooled = pooled, .xin = xin, .vout = vout, .n = n};
        dfa_sd3_hold_cond(m, 1); /* txt and pooled stay fixed for the loop */
        if (m->dev == DFA_DEV_CUDA) /* latents, CFG and Euler on the device (same results) */
            s = dfa_sd3_sample_cuda(ctx, m, B, h, w, pe->n_txt, txt, pooled, p->cfg_scale, p->steps, sig, ts, x,
                                    gen_progress, &r);
        else
            s = dfa_flow_sample(ctx, p->steps, sig, ts, x, v, n, sd3_velocity, gen_progress, &r);
        dfa_sd3_hold_cond(m, 0);
    }
    if (s == DFA_OK) memcpy(latents_out, x, n * sizeof(float));
    dfa_ctx_mem_release(ctx, buf);
    return s;
}
