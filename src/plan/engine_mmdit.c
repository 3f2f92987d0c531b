/* engine_mmdit.c - FLUX.1 / SD3 plan-search engines (engine_mmdit.h). */
#include "plan/engine_mmdit.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/cuda_rt.h"
#include "plan/engine_hook.h"

enum { ENG_FLUX = 1, ENG_SD3 = 2 };

struct dfa_engine_mmdit {
    dfa_ctx *ctx;
    int kind;
    dfa_flux *flux;
    dfa_sd3 *sd3;
    int P, R, cfg;          /* prompts, rows, CFG batch */
    int C, h, w, n_txt;     /* latent channels and grid, text tokens */
    int n_img;              /* visual tokens */
    size_t n;               /* latent floats per prompt (FLUX: packed, same count) */
    size_t out_row;         /* model output floats per row */
    float cfg_scale;
    int step;               /* next step to run */
    dfa_search_engine eng;  /* a copy of what init handed out (shapes for the override's checks) */
    /* one block: */
    float *x;               /* [P, n] current latents (FLUX: packed) */
    float *xin;             /* SD3 CFG: [R, n] the model input; else NULL (x is passed) */
    float *vout;            /* [R, out_row] transformer output */
    float *v;               /* [P, n] velocity (CFG combined) */
    float *txt, *pooled;    /* [R, T, J], [R, Pd] */
    float *tvec, *gvec;     /* [R] timestep / guidance of the current step */
    float *txt_ids, *img_ids; /* FLUX RoPE ids */
    float *sig, *ts;        /* [steps + 1], [steps] */
    void *block;
    uint16_t *stage; /* CUDA: [R, out_row] bf16 */
    dfa_attn_layout layer_layout[2 * DFA_SD3_MAX_LAYERS]; /* SD3.5: per attention layer (eng.layer_layout) */
};

static dfa_status eng_run_step(void *user, int step, int commit, dfa_search_hook_fn hook, void *hook_user,
                               void *model_out) {
    dfa_engine_mmdit *e = user;
    dfa_ctx *ctx = e->ctx;
    dfa_engine_hook hk;
    DFA_TRY(dfa_engine_hook_begin(&hk, ctx, &e->eng, step, e->step, hook, hook_user));
    const int R = e->R;
    for (int r = 0; r < R; r++) e->tvec[r] = e->kind == ENG_FLUX ? e->ts[step] / 1000.0f : e->ts[step];
    if (e->cfg) { /* latent_model_input = cat([latents] * 2) */
        memcpy(e->xin, e->x, (size_t)e->P * e->n * sizeof(float));
        memcpy(e->xin + (size_t)e->P * e->n, e->x, (size_t)e->P * e->n * sizeof(float));
    }
    const float *xin = e->cfg ? e->xin : e->x;
    dfa_status s;
    if (e->kind == ENG_FLUX)
        s = dfa_flux_forward(ctx, e->flux, R, e->n_img, e->n_txt, xin, e->txt, e->pooled, e->tvec,
                             dfa_flux_get_config(e->flux)->guidance_embeds ? e->gvec : NULL, e->txt_ids, e->img_ids,
                             e->vout);
    else
        s = dfa_sd3_forward(ctx, e->sd3, R, e->h, e->w, e->n_txt, xin, e->txt, e->pooled, e->tvec, e->vout);
    DFA_TRY(dfa_engine_hook_end(&hk, s, step));
    if (model_out) {
        const size_t no = (size_t)R * e->out_row;
        if (!ctx->cuda) {
            memcpy(model_out, e->vout, no * sizeof(float));
        } else { /* the CUDA search backend keeps V1's outputs on the device in bf16 */
            DFA_TRY(dfa_convert(e->stage, DFA_BF16, e->vout, DFA_F32, no, &ctx->err));
            DFA_TRY(dfa_cuda_h2d(ctx->cuda, model_out, e->stage, no * 2, &ctx->err));
        }
    }
    if (commit) {
        const size_t pn = (size_t)e->P * e->n;
        const float *v = e->vout;
        if (e->cfg) {
            for (int p = 0; p < e->P; p++)
                dfa_flow_cfg_combine(e->v + (size_t)p * e->n, e->vout + (size_t)p * e->n,
                                     e->vout + (size_t)(e->P + p) * e->n, e->n, e->cfg_scale);
            v = e->v;
        }
        dfa_flow_euler_step(e->x, v, pn, e->sig[step], e->sig[step + 1]);
        e->step++;
    }
    return DFA_OK;
}

/* Shared part of init: checks, one block, prompts copied, noise, schedule, the engine struct. */
static dfa_status eng_init(dfa_engine_mmdit *e, const dfa_flow_config *sched, const dfa_prompt_embeds *pes,
                           const dfa_engine_mmdit_params *p, int joint_dim, int pooled_dim, int n_layers, int n_heads,
                           int head_dim, const char *model) {
    dfa_ctx *ctx = e->ctx;
    if (e->P < 1 || !pes) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "%s search engine: no calibration prompts", model);
    for (int i = 0; i < e->P; i++) {
        const dfa_prompt_embeds *pe = &pes[i];
        if (!pe->embeds || !pe->pooled)
            DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "%s search engine: prompt %d has no embeddings", model, i);
        if (pe->dim != joint_dim || pe->pooled_dim != pooled_dim)
            DFA_CTX_FAIL(ctx, DFA_ERR_SHAPE, "%s search engine: prompt %d embeddings have %d / %d channels, the "
                         "checkpoint's joint_attention_dim / pooled_projection_dim are %d / %d", model, i, pe->dim,
                         pe->pooled_dim, joint_dim, pooled_dim);
        if (pe->n_txt != pes[0].n_txt)
            DFA_CTX_FAIL(ctx, DFA_ERR_SHAPE, "%s search engine: prompt %d has %d text tokens, prompt 0 has %d; "
                         "calibration prompts run as one batch and need one length (pad them alike)", model, i,
                         pe->n_txt, pes[0].n_txt);
        if (e->cfg && !pe->neg_embeds)
            DFA_CTX_FAIL(ctx, DFA_ERR_NOT_FOUND, "%s search engine: cfg scale %g needs negative_prompt_embeds in "
                         "prompt %d's embeddings", model, e->cfg_scale, i);
    }
    if (p->steps < 1) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "%s search engine: %d steps", model, p->steps);
    e->n_txt = pes[0].n_txt;
    const int P = e->P, R = e->R, S = p->steps;
    const size_t T = (size_t)e->n_txt * joint_dim, Pd = (size_t)pooled_dim, n = e->n;
    const size_t floats = (size_t)P * n                      /* x */
                          + (e->cfg ? (size_t)R * n : 0)     /* xin */
                          + (size_t)R * e->out_row           /* vout */
                          + (size_t)P * n                    /* v */
                          + (size_t)R * (T + Pd) + 2 * (size_t)R /* txt, pooled, tvec, gvec */
                          + (e->kind == ENG_FLUX ? (size_t)3 * (e->n_img + e->n_txt) : 0) + 2 * ((size_t)S + 1);
    DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, floats * sizeof(float), "search engine buffers", &e->block));
    if (ctx->cuda) /* bf16 staging of the model output (V1 on the CUDA search backend) */
        DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, (size_t)R * e->out_row * 2, "search engine bf16 staging",
                                  (void **)&e->stage));
    float *f = e->block;
    e->x = f, f += (size_t)P * n;
    if (e->cfg) e->xin = f, f += (size_t)R * n;
    e->vout = f, f += (size_t)R * e->out_row;
    e->v = f, f += (size_t)P * n;
    e->txt = f, f += (size_t)R * T;
    e->pooled = f, f += (size_t)R * Pd;
    e->tvec = f, f += R;
    e->gvec = f, f += R;
    if (e->kind == ENG_FLUX) {
        e->img_ids = f, f += (size_t)3 * e->n_img;
        e->txt_ids = f, f += (size_t)3 * e->n_txt;
    }
    e->sig = f, f += S + 1;
    e->ts = f;
    for (int r = 0; r < R; r++) { /* CFG rows: [uncond of every prompt, cond of every prompt] */
        const int pi = r % P, neg = e->cfg && r < P;
        const dfa_prompt_embeds *pe = &pes[pi];
        memcpy(e->txt + (size_t)r * T, neg ? pe->neg_embeds : pe->embeds, T * sizeof(float));
        memcpy(e->pooled + (size_t)r * Pd, neg ? pe->neg_pooled : pe->pooled, Pd * sizeof(float));
        e->gvec[r] = p->guidance;
    }
    /* noise: prompt pi from seed + pi over the unpacked [C, h, w] (FLUX packs it after) */
    float *lat = e->v; /* scratch until the first step */
    for (int pi = 0; pi < P; pi++) {
        dfa_rng rng;
        dfa_rng_seed(&rng, p->seed + (uint64_t)pi);
        dfa_rng_normal(&rng, lat, n);
        if (e->kind == ENG_FLUX)
            dfa_flux_pack_latents(lat, 1, e->C, e->h, e->w, e->x + (size_t)pi * n);
        else
            memcpy(e->x + (size_t)pi * n, lat, n * sizeof(float));
    }
    dfa_status s = DFA_OK;
    double mu = NAN;
    if (e->kind == ENG_FLUX) {
        dfa_flux_image_ids(e->h / 2, e->w / 2, e->img_ids);
        memset(e->txt_ids, 0, (size_t)3 * e->n_txt * sizeof(float));
        double *sig_in = NULL;
        s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, (size_t)S * sizeof(double), "search engine sigmas", (void **)&sig_in);
        if (s == DFA_OK) {
            dfa_flow_flux_sigmas(S, sig_in);
            if (sched->use_dynamic_shifting) mu = dfa_flow_calculate_shift(sched, e->n_img);
            s = dfa_flow_set_timesteps(ctx, sched, S, sig_in, mu, e->sig, e->ts);
            dfa_ctx_mem_release(ctx, sig_in);
        }
    } else {
        if (sched->use_dynamic_shifting) mu = dfa_flow_calculate_shift(sched, e->n_img);
        s = dfa_flow_set_timesteps(ctx, sched, S, NULL, mu, e->sig, e->ts);
    }
    if (s != DFA_OK) return s;
    dfa_search_engine *g = &e->eng;
    memset(g, 0, sizeof *g);
    g->user = e;
    g->n_steps = S, g->n_layers = n_layers, g->n_heads = n_heads, g->head_dim = head_dim;
    g->n_rows = R, g->cfg = e->cfg, g->cond_half = e->cfg ? 1 : 0;
    g->out_numel = (size_t)R * e->out_row;
    g->run_step = eng_run_step;
    return DFA_OK;
}

static dfa_status eng_alloc(dfa_ctx *ctx, dfa_engine_mmdit **out) {
    *out = NULL;
    DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, sizeof **out, "search engine", (void **)out));
    memset(*out, 0, sizeof **out);
    (*out)->ctx = ctx;
    return DFA_OK;
}

static dfa_status eng_finish(dfa_ctx *ctx, dfa_engine_mmdit **out, dfa_status s, dfa_search_engine *eng) {
    if (s != DFA_OK) {
        dfa_engine_mmdit_free(ctx, *out);
        *out = NULL;
        return s;
    }
    *eng = (*out)->eng;
    return DFA_OK;
}

dfa_status dfa_engine_flux_init(dfa_ctx *ctx, dfa_flux *m, const dfa_flow_config *sched, const dfa_prompt_embeds *pes,
                                int n_prompts, const dfa_engine_mmdit_params *p, dfa_engine_mmdit **out,
                                dfa_search_engine *eng) {
    const dfa_flux_config *c = dfa_flux_get_config(m);
    *out = NULL;
    if (c->patch_size != 1 || c->in_channels % 4 || c->out_channels != c->in_channels)
        DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED, "flux search engine: expects patch_size 1 and packed 2x2 latents "
                     "(in_channels %d, out_channels %d, patch_size %d)", c->in_channels, c->out_channels, c->patch_size);
    const int h = p->latent_h, w = p->latent_w;
    if (h < 2 || w < 2 || h % 2 || w % 2)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "flux search engine: latent %dx%d must be even and >= 2 (pixels a "
                     "multiple of 16)", h, w);
    DFA_TRY(eng_alloc(ctx, out));
    dfa_engine_mmdit *e = *out;
    e->kind = ENG_FLUX, e->flux = m;
    e->cfg = p->cfg_scale > 1.0f, e->cfg_scale = p->cfg_scale; /* true CFG: rows as SD3's */
    e->P = n_prompts, e->R = n_prompts * (e->cfg ? 2 : 1);
    e->C = c->in_channels / 4, e->h = h, e->w = w;
    e->n_img = (h / 2) * (w / 2);
    e->n = (size_t)e->C * h * w;
    e->out_row = (size_t)e->n_img * c->out_channels;
    dfa_status s = eng_init(e, sched, pes, p, c->joint_attention_dim, c->pooled_projection_dim,
                            dfa_flux_attn_layers(m), c->n_heads, c->head_dim, "flux");
    if (s == DFA_OK) {
        e->eng.layout = (dfa_attn_layout){.n_vis = e->n_img, .n_text = e->n_txt, .text_first = 1,
                                          .block = DFA_PLAN_DEFAULT_BLOCK};
        e->eng.grid_h = h / 2, e->eng.grid_w = w / 2;
    }
    return eng_finish(ctx, out, s, eng);
}

dfa_status dfa_engine_sd3_init(dfa_ctx *ctx, dfa_sd3 *m, const dfa_flow_config *sched, const dfa_prompt_embeds *pes,
                               int n_prompts, const dfa_engine_mmdit_params *p, dfa_engine_mmdit **out,
                               dfa_search_engine *eng) {
    const dfa_sd3_config *c = dfa_sd3_get_config(m);
    *out = NULL;
    const int h = p->latent_h, w = p->latent_w, ps = c->patch_size;
    if (h < ps || w < ps || h % ps || w % ps)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "sd3 search engine: latent %dx%d must be a multiple of patch_size %d", h,
                     w, ps);
    if (c->out_channels != c->in_channels)
        DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED, "sd3 search engine: out_channels %d != in_channels %d", c->out_channels,
                     c->in_channels);
    DFA_TRY(eng_alloc(ctx, out));
    dfa_engine_mmdit *e = *out;
    e->kind = ENG_SD3, e->sd3 = m;
    e->cfg = p->cfg_scale > 1.0f, e->cfg_scale = p->cfg_scale;
    e->P = n_prompts, e->R = n_prompts * (e->cfg ? 2 : 1);
    e->C = c->in_channels, e->h = h, e->w = w;
    e->n_img = (h / ps) * (w / ps);
    e->n = (size_t)e->C * h * w;
    e->out_row = e->n;
    dfa_status s = eng_init(e, sched, pes, p, c->joint_attention_dim, c->pooled_projection_dim,
                            dfa_sd3_attn_layers(m), c->n_heads, c->head_dim, "sd3");
    if (s == DFA_OK) {
        e->eng.layout = (dfa_attn_layout){.n_vis = e->n_img, .n_text = e->n_txt, .text_first = 0,
                                          .block = DFA_PLAN_DEFAULT_BLOCK};
        e->eng.grid_h = h / ps, e->eng.grid_w = w / ps;
        if (c->n_dual) { /* SD3.5: the dual blocks' attn2 is image only */
            const int nl = dfa_sd3_attn_layers(m);
            for (int l = 0; l < nl; l++) {
                e->layer_layout[l] = e->eng.layout;
                if (dfa_sd3_attn_image_only(m, l)) e->layer_layout[l].n_text = 0;
            }
            e->eng.layer_layout = e->layer_layout;
        }
    }
    return eng_finish(ctx, out, s, eng);
}

void dfa_engine_mmdit_free(dfa_ctx *ctx, dfa_engine_mmdit *e) {
    if (!e) return;
    if (e->block) dfa_ctx_mem_release(ctx, e->block);
    if (e->stage) dfa_ctx_mem_release(ctx, e->stage);
    dfa_ctx_mem_release(ctx, e);
}

dfa_status dfa_engine_mmdit_latents(dfa_ctx *ctx, const dfa_engine_mmdit *e, int prompt, float *out) {
    if (prompt < 0 || prompt >= e->P)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "search engine: prompt %d of %d", prompt, e->P);
    const float *x = e->x + (size_t)prompt * e->n;
    if (e->kind == ENG_FLUX)
        dfa_flux_unpack_latents(x, 1, e->C, e->h, e->w, out);
    else
        memcpy(out, x, e->n * sizeof(float));
    return DFA_OK;
}

int dfa_engine_mmdit_step(const dfa_engine_mmdit *e) { return e->step; }

void dfa_engine_flux_config_id(const dfa_flux *m, char *buf, size_t n) {
    const dfa_flux_config *c = dfa_flux_get_config(m);
    snprintf(buf, n, "flux:L%d+%d:H%dx%d:in%d:J%d:P%d:g%d", c->num_layers, c->num_single_layers, c->n_heads,
             c->head_dim, c->in_channels, c->joint_attention_dim, c->pooled_projection_dim, c->guidance_embeds);
}

void dfa_engine_sd3_config_id(const dfa_sd3 *m, char *buf, size_t n) {
    const dfa_sd3_config *c = dfa_sd3_get_config(m);
    snprintf(buf, n, "sd3:L%d:dual%d:H%dx%d:in%d:p%d:J%d:P%d:qk%d", c->num_layers, c->n_dual, c->n_heads, c->head_dim,
             c->in_channels, c->patch_size, c->joint_attention_dim, c->pooled_projection_dim, c->qk_rms_norm);
}
