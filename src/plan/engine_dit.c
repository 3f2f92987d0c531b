/* engine_dit.c - DiT / PixArt-Sigma plan-search engines (engine_dit.h). */
#include "plan/engine_dit.h"

#include <stdio.h>
#include <string.h>

#include "plan/engine_hook.h"
#include "sample/sampler.h"

struct dfa_engine_dit {
    dfa_ctx *ctx;
    dfa_dit *dit;
    dfa_pixart *pixart;
    int P, R, cfg;         /* rows of prompts / labels, batch rows, CFG */
    int C, h, w;           /* latent channels and grid */
    size_t n, n_out;       /* latent floats, model output floats per row */
    float cfg_scale;
    int learned_var_guided; /* PixArt guides the variance channels too; DiT takes the cond's */
    int step;
    dfa_search_engine eng;
    dfa_sampler *samplers; /* [P] */
    int n_samplers;        /* initialised so far */
    /* one block: */
    float *x, *xin, *out, *comb; /* [P, n], [R, n], [R, n_out], [n_out] */
    float *tvec;                 /* [R] */
    int *labels;                 /* DiT: [R] */
    float *txt, *mask;           /* PixArt: [R, L, D], [R, L] */
    int L;
    void *block;
};

static dfa_status dit_run_step(void *user, int step, int commit, dfa_search_hook_fn hook, void *hook_user,
                               void *model_out) {
    dfa_engine_dit *e = user;
    dfa_ctx *ctx = e->ctx;
    dfa_engine_hook hk;
    DFA_TRY(dfa_engine_hook_begin(&hk, ctx, &e->eng, step, e->step, hook, hook_user));
    const float ts = (float)dfa_sampler_timestep(&e->samplers[0], step);
    for (int r = 0; r < e->R; r++) {
        e->tvec[r] = ts;
        memcpy(e->xin + (size_t)r * e->n, e->x + (size_t)(r % e->P) * e->n, e->n * sizeof(float));
    }
    dfa_status s = e->dit ? dfa_dit_forward(ctx, e->dit, e->R, e->h, e->w, e->xin, e->tvec, e->labels, e->out)
                          : dfa_pixart_forward(ctx, e->pixart, e->R, e->h, e->w, e->xin, e->tvec, e->L, e->txt,
                                               e->mask, e->out);
    DFA_TRY(dfa_engine_hook_end(&hk, s, step));
    if (model_out) memcpy(model_out, e->out, (size_t)e->R * e->n_out * sizeof(float));
    if (!commit) return DFA_OK;
    for (int p = 0; p < e->P; p++) {
        const float *o = e->out + (size_t)p * e->n_out, *var = o + e->n;
        if (e->cfg) { /* [uncond, cond]: as dfa_dit_sample / dfa_pixart_sample combine them */
            const float *oc = e->out + (size_t)(e->P + p) * e->n_out;
            const int var_n = dfa_sampler_needs_var(&e->samplers[p]);
            const size_t m = e->learned_var_guided && var_n ? 2 * e->n : e->n;
            for (size_t j = 0; j < m; j++) e->comb[j] = o[j] + e->cfg_scale * (oc[j] - o[j]);
            var = e->learned_var_guided ? e->comb + e->n : oc + e->n;
            o = e->comb;
        }
        DFA_TRY(dfa_sampler_step(ctx, &e->samplers[p], step, o, var, e->x + (size_t)p * e->n));
    }
    e->step++;
    return DFA_OK;
}

/* checks, samplers, noise, block; the model-specific rows are filled by the callers */
static dfa_status dit_common(dfa_engine_dit *e, const char *model_dir, const dfa_engine_dit_params *p, int in_ch,
                             int out_ch, int patch, int layers, int heads, int head_dim, size_t text_floats,
                             const char *model) {
    dfa_ctx *ctx = e->ctx;
    if (ctx->cuda)
        DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED, "%s search engine: CPU models only for now (the context is on CUDA)",
                     model);
    if (e->P < 1) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "%s search engine: no calibration rows", model);
    const int h = p->latent_h, w = p->latent_w;
    if (h < patch || w < patch || h % patch || w % patch)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "%s search engine: latent %dx%d must be a multiple of patch_size %d",
                     model, h, w, patch);
    e->C = in_ch, e->h = h, e->w = w;
    e->n = (size_t)in_ch * h * w, e->n_out = (size_t)out_ch * h * w;
    const int R = e->R, P = e->P;
    const size_t floats = (size_t)P * e->n + (size_t)R * e->n + (size_t)R * e->n_out + e->n_out + R + text_floats;
    DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, floats * sizeof(float) + (size_t)R * sizeof(int),
                              "search engine buffers", &e->block));
    float *f = e->block;
    e->x = f, f += (size_t)P * e->n;
    e->xin = f, f += (size_t)R * e->n;
    e->out = f, f += (size_t)R * e->n_out;
    e->comb = f, f += e->n_out;
    e->tvec = f, f += R;
    if (text_floats) {
        e->txt = f, f += text_floats - (size_t)R * e->L;
        e->mask = f, f += (size_t)R * e->L;
    }
    e->labels = (int *)f;
    DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, (size_t)P * sizeof(dfa_sampler), "search engine samplers",
                              (void **)&e->samplers));
    for (int i = 0; i < P; i++) {
        DFA_TRY(dfa_dit_open_sampler(ctx, model_dir, e->pixart != NULL, p->steps, e->n, p->seed + (uint64_t)i,
                                     &e->samplers[i]));
        e->n_samplers++;
        if (dfa_sampler_needs_var(&e->samplers[i]) && out_ch != 2 * in_ch)
            DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "%s search engine: learned variance needs out_channels = 2 * "
                         "in_channels", model);
        dfa_rng rng;
        dfa_rng_seed(&rng, p->seed + (uint64_t)i);
        dfa_rng_normal(&rng, e->x + (size_t)i * e->n, e->n);
    }
    dfa_search_engine *g = &e->eng;
    memset(g, 0, sizeof *g);
    g->user = e;
    g->n_steps = dfa_sampler_n_steps(&e->samplers[0]);
    g->n_layers = layers, g->n_heads = heads, g->head_dim = head_dim;
    g->n_rows = R, g->cfg = e->cfg, g->cond_half = e->cfg ? 1 : 0;
    g->grid_h = h / patch, g->grid_w = w / patch;
    g->layout = (dfa_attn_layout){.n_vis = g->grid_h * g->grid_w, .n_text = 0, .text_first = 0,
                                  .block = DFA_PLAN_DEFAULT_BLOCK};
    g->out_numel = (size_t)R * e->n_out;
    g->run_step = dit_run_step;
    return DFA_OK;
}

static dfa_status dit_alloc(dfa_ctx *ctx, int n, float cfg_scale, dfa_engine_dit **out) {
    *out = NULL;
    DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, sizeof **out, "search engine", (void **)out));
    memset(*out, 0, sizeof **out);
    dfa_engine_dit *e = *out;
    e->ctx = ctx;
    e->cfg = cfg_scale > 1.0f, e->cfg_scale = cfg_scale;
    e->P = n, e->R = n * (e->cfg ? 2 : 1);
    return DFA_OK;
}

static dfa_status dit_finish(dfa_ctx *ctx, dfa_engine_dit **out, dfa_status s, dfa_search_engine *eng) {
    if (s != DFA_OK) {
        dfa_engine_dit_free(ctx, *out);
        *out = NULL;
        return s;
    }
    *eng = (*out)->eng;
    return DFA_OK;
}

dfa_status dfa_engine_dit_init(dfa_ctx *ctx, dfa_dit *m, const char *model_dir, const int *labels, int n,
                               const dfa_engine_dit_params *p, dfa_engine_dit **out, dfa_search_engine *eng) {
    const dfa_dit_config *c = dfa_dit_get_config(m);
    *out = NULL;
    for (int i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= c->num_classes)
            DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dit search engine: class label %d out of range 0..%d", labels[i],
                         c->num_classes - 1);
    DFA_TRY(dit_alloc(ctx, n, p->cfg_scale, out));
    dfa_engine_dit *e = *out;
    e->dit = m;
    dfa_status s = dit_common(e, model_dir, p, c->in_channels, c->out_channels, c->patch_size, c->layers, c->heads,
                              c->head_dim, 0, "dit");
    if (s == DFA_OK) /* [null class of every row, class of every row] with CFG */
        for (int r = 0; r < e->R; r++) e->labels[r] = e->cfg && r < n ? c->num_classes : labels[r % n];
    return dit_finish(ctx, out, s, eng);
}

dfa_status dfa_engine_pixart_init(dfa_ctx *ctx, dfa_pixart *m, const char *model_dir, const dfa_pixart_embeds *pes,
                                  int n, const dfa_engine_dit_params *p, dfa_engine_dit **out, dfa_search_engine *eng) {
    const dfa_pixart_config *c = dfa_pixart_get_config(m);
    const int want = c->caption_channels ? c->caption_channels : c->cross_dim;
    const int cfg = p->cfg_scale > 1.0f;
    *out = NULL;
    for (int i = 0; i < n; i++) {
        if (pes[i].dim != want)
            DFA_CTX_FAIL(ctx, DFA_ERR_SHAPE, "pixart search engine: prompt %d embeddings have %d channels, the model "
                         "takes %d", i, pes[i].dim, want);
        if (pes[i].n_txt != pes[0].n_txt)
            DFA_CTX_FAIL(ctx, DFA_ERR_SHAPE, "pixart search engine: prompt %d has %d text tokens, prompt 0 has %d; "
                         "calibration prompts run as one batch and need one length", i, pes[i].n_txt, pes[0].n_txt);
        if (cfg && !pes[i].neg_embeds)
            DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "pixart search engine: guidance %g needs negative_prompt_embeds in "
                         "prompt %d's embeddings", p->cfg_scale, i);
    }
    if (n < 1) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "pixart search engine: no calibration prompts");
    DFA_TRY(dit_alloc(ctx, n, p->cfg_scale, out));
    dfa_engine_dit *e = *out;
    e->pixart = m, e->learned_var_guided = 1, e->L = pes[0].n_txt;
    const size_t tw = (size_t)e->L * want;
    dfa_status s = dit_common(e, model_dir, p, c->in_channels, c->out_channels, c->patch_size, c->layers, c->heads,
                              c->head_dim, (size_t)e->R * (tw + e->L), "pixart");
    for (int r = 0; s == DFA_OK && r < e->R; r++) { /* [uncond of every prompt, cond of every prompt] */
        const dfa_pixart_embeds *pe = &pes[r % n];
        const int neg = e->cfg && r < n;
        memcpy(e->txt + (size_t)r * tw, neg ? pe->neg_embeds : pe->embeds, tw * sizeof(float));
        const float *mk = neg ? pe->neg_mask : pe->mask;
        for (int j = 0; j < e->L; j++) e->mask[(size_t)r * e->L + j] = mk ? mk[j] : 1.0f;
    }
    return dit_finish(ctx, out, s, eng);
}

void dfa_engine_dit_free(dfa_ctx *ctx, dfa_engine_dit *e) {
    if (!e) return;
    for (int i = 0; i < e->n_samplers; i++) dfa_sampler_free(ctx, &e->samplers[i]);
    if (e->samplers) dfa_ctx_mem_release(ctx, e->samplers);
    if (e->block) dfa_ctx_mem_release(ctx, e->block);
    dfa_ctx_mem_release(ctx, e);
}

dfa_status dfa_engine_dit_latents(dfa_ctx *ctx, const dfa_engine_dit *e, int p, float *out) {
    if (p < 0 || p >= e->P) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "search engine: row %d of %d", p, e->P);
    memcpy(out, e->x + (size_t)p * e->n, e->n * sizeof(float));
    return DFA_OK;
}

void dfa_engine_dit_config_id(const dfa_dit *m, char *buf, size_t n) {
    const dfa_dit_config *c = dfa_dit_get_config(m);
    snprintf(buf, n, "dit:L%d:H%dx%d:in%d:out%d:p%d:cls%d", c->layers, c->heads, c->head_dim, c->in_channels,
             c->out_channels, c->patch_size, c->num_classes);
}

void dfa_engine_pixart_config_id(const dfa_pixart *m, char *buf, size_t n) {
    const dfa_pixart_config *c = dfa_pixart_get_config(m);
    snprintf(buf, n, "pixart:L%d:H%dx%d:in%d:out%d:p%d:cap%d", c->layers, c->heads, c->head_dim, c->in_channels,
             c->out_channels, c->patch_size, c->caption_channels);
}
