/* calibrate.c - plan search on a loaded model (calibrate.h) and the public dfa_calibrate(). */
#include "api/calibrate.h"
#include "core/log.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api_int.h"
#include "models/dit_pipe.h"
#include "models/mmdit_pipe.h"
#include "models/pipe_prompts.h"
#include "plan/engine_dit.h"
#include "plan/engine_mmdit.h"
#include "plan/search.h"
#include "plan/search_progress.h"

#define CAL_MAX_ROWS 256
#define CAL_MAX_CANDS 32

/* V2 candidates from "arrow,cache,rs": ARROW at every window of the list (default: band widths
 * of 1/8, 1/4, 1/2 of the visual tiles, below the full band), ARROW_RS at V1's window. */
static dfa_status make_cands(dfa_ctx *ctx, const dfa_calib_opts *o, const dfa_attn_layout *L, dfa_search_cand *c,
                             int max, int *n_out) {
    int arrow = 0, cache = 0, rs = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", o->methods ? o->methods : "arrow,cache");
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (!strcmp(t, "arrow"))
            arrow = 1;
        else if (!strcmp(t, "cache"))
            cache = 1;
        else if (!strcmp(t, "rs") || !strcmp(t, "arrow_rs"))
            rs = 1;
        else if (strcmp(t, "full") != 0)
            DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "calibrate: methods: unknown method '%s' (expected arrow, cache, rs)",
                         t);
    }
    const int full_w = dfa_mask_full_window(L);
    int wins[CAL_MAX_CANDS], nw = 0;
    if (o->windows) {
        snprintf(buf, sizeof buf, "%s", o->windows);
        for (char *save = NULL, *t = strtok_r(buf, ",", &save); t && nw < CAL_MAX_CANDS - 4; t = strtok_r(NULL, ",", &save)) {
            char *end;
            long w = strtol(t, &end, 10);
            if (*end || w < 0 || w > full_w)
                DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG,
                             "calibrate: windows: '%s' is not a window in tiles between 0 and %d (the full band)", t,
                             full_w);
            wins[nw++] = (int)w;
        }
    } else {
        dfa_attn_tiles tl;
        dfa_layout_tiles(L, &tl);
        static const int denom[3] = {16, 8, 4}; /* half-width = tiles / denom: full widths 1/8, 1/4, 1/2 */
        for (int i = 0; i < 3; i++) {
            int w = (tl.n_vis_tiles + denom[i] - 1) / denom[i];
            if (w >= full_w) continue;
            if (nw && wins[nw - 1] == w) continue;
            wins[nw++] = w;
        }
    }
    int n = 0;
    c[n++] = (dfa_search_cand){DFA_ATTN_FULL, -1};
    if (arrow)
        for (int i = 0; i < nw && n < max; i++) c[n++] = (dfa_search_cand){DFA_ATTN_ARROW, wins[i]};
    if (rs && n < max) c[n++] = (dfa_search_cand){DFA_ATTN_ARROW_RS, dfa_search_v1_default_window(L)};
    if (cache && n < max) c[n++] = (dfa_search_cand){DFA_ATTN_CACHE, -1};
    *n_out = n;
    return DFA_OK;
}

typedef struct cal_run {
    dfa_prompt_embeds pe[CAL_MAX_ROWS];
    dfa_pixart_embeds xe[CAL_MAX_ROWS];
    int labels[CAL_MAX_ROWS];
    int n_pe, n_xe, n_labels;
    dfa_engine_mmdit *eng;
    dfa_engine_dit *deng;
    dfa_search_cuda cuda_state;
    dfa_search_plan sp;
    int have_sp;
} cal_run;

/* The search engine over the calibration rows, with dfa generate's defaults filled in. */
static dfa_status open_engine(dfa_ctx *ctx, dfa_model *m, const dfa_calib_opts *o, cal_run *r,
                              dfa_search_engine *eng, char *cid, size_t cid_len, int *W, int *H) {
    const dfa_model_defaults *d = &m->defaults;
    const int is_dit = m->dit != NULL, mmdit = m->flux || m->sd3;
    if (o->n_embeds && o->n_texts)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "calibrate: prompt-embeddings files or text prompts, not both");
    if (is_dit && (o->n_embeds || o->n_texts))
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "calibrate: DiT is class-conditional: it takes class labels, not prompts");
    if (!is_dit && o->n_labels)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "calibrate: class labels are for DiT; this model takes prompts");
    if (!is_dit && o->n_embeds + o->n_texts < 1)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "calibrate: needs at least one prompt-embeddings file or text prompt");
    if (o->n_embeds > CAL_MAX_ROWS || o->n_texts > CAL_MAX_ROWS || o->n_labels > CAL_MAX_ROWS || o->n_default_labels > CAL_MAX_ROWS)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "calibrate: at most %d calibration prompts / labels", CAL_MAX_ROWS);
    int ss = 0;
    if (m->dit) ss = dfa_dit_get_config(m->dit)->sample_size;
    if (m->pixart) ss = dfa_pixart_get_config(m->pixart)->sample_size;
    *W = o->width > 0 ? o->width : d->width > 0 ? d->width : mmdit ? 1024 : 8 * ss;
    *H = o->height > 0 ? o->height : d->height > 0 ? d->height : mmdit ? 1024 : 8 * ss;
    int steps = o->steps > 0 ? o->steps : d->steps;
    if (steps <= 0) {
        if (m->flux) steps = dfa_flux_get_config(m->flux)->guidance_embeds ? 28 : 4;
        else steps = m->sd3 ? 28 : m->dit ? 50 : 20;
    }
    const double cfg_in = o->cfg >= 0 ? o->cfg : d->true_cfg_scale;
    const int up = 8; /* pixels per latent (every released VAE) */
    if (*W % up || *H % up || *W < up || *H < up)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "calibrate: width/height must be positive multiples of %d pixels (got %dx%d)",
                     up, *W, *H);
    if (!is_dit && o->n_texts) { /* as dfa_generate with prompt text: the negative when CFG is on */
        const int want_neg = m->pixart ? (cfg_in < 0 || cfg_in > 1.0)
                             : m->sd3  ? (cfg_in < 0 || (cfg_in != 0.0 && cfg_in != 1.0))
                                       : cfg_in > 1.0;
        DFA_TRY(dfa_pipe_encode_prompts(ctx, m->dir, o->max_len > 0 ? o->max_len : d->max_len, m->pixart != NULL,
                                        o->texts, o->n_texts, want_neg ? (d->has_negative ? d->negative : "") : NULL,
                                        r->pe, r->xe));
        *(m->pixart ? &r->n_xe : &r->n_pe) = o->n_texts;
    }
    if (!mmdit) {
        dfa_engine_dit_params ep = {.steps = steps, .latent_h = *H / up, .latent_w = *W / up, .seed = o->seed};
        if (m->pixart) {
            for (int i = 0; i < o->n_embeds; i++) {
                DFA_TRY(dfa_pixart_embeds_load(ctx, o->embeds[i], &r->xe[i]));
                r->n_xe++;
            }
            ep.cfg_scale = cfg_in >= 0 ? (float)cfg_in : r->xe[0].neg_embeds ? 4.5f : 1.0f;
            DFA_TRY(dfa_engine_pixart_init(ctx, m->pixart, m->dir, r->xe, r->n_xe, &ep, &r->deng, eng));
            dfa_engine_pixart_config_id(m->pixart, cid, cid_len);
            return DFA_OK;
        }
        const int nc = dfa_dit_get_config(m->dit)->num_classes;
        if (o->n_labels) {
            r->n_labels = o->n_labels;
            memcpy(r->labels, o->labels, (size_t)o->n_labels * sizeof(int));
        } else { /* spread over the classes */
            r->n_labels = o->n_default_labels > 0 ? o->n_default_labels : 8;
            for (int i = 0; i < r->n_labels; i++) r->labels[i] = (int)((long long)i * nc / r->n_labels);
        }
        ep.cfg_scale = cfg_in >= 0 ? (float)cfg_in : 4.0f;
        DFA_TRY(dfa_engine_dit_init(ctx, m->dit, m->dir, r->labels, r->n_labels, &ep, &r->deng, eng));
        dfa_engine_dit_config_id(m->dit, cid, cid_len);
        return DFA_OK;
    }
    for (int i = 0; i < o->n_embeds; i++) {
        DFA_TRY(dfa_prompt_embeds_load(ctx, o->embeds[i], &r->pe[i]));
        r->n_pe++;
    }
    float cfg = (float)cfg_in;
    if (m->sd3 && cfg_in < 0) cfg = r->pe[0].neg_embeds ? 7.0f : 1.0f;
    if (m->flux && cfg_in < 0) cfg = 1.0f;
    dfa_engine_mmdit_params ep = {.steps = steps, .latent_h = *H / up, .latent_w = *W / up, .cfg_scale = cfg,
                                  .guidance = (float)o->guidance, .seed = o->seed};
    if (m->flux) {
        DFA_TRY(dfa_engine_flux_init(ctx, m->flux, &m->flow, r->pe, r->n_pe, &ep, &r->eng, eng));
        dfa_engine_flux_config_id(m->flux, cid, cid_len);
    } else {
        DFA_TRY(dfa_engine_sd3_init(ctx, m->sd3, &m->flow, r->pe, r->n_pe, &ep, &r->eng, eng));
        dfa_engine_sd3_config_id(m->sd3, cid, cid_len);
    }
    return DFA_OK;
}

static void log_run(FILE *log, const dfa_ctx *ctx, const dfa_model *m, const dfa_calib_opts *o,
                    const dfa_search_engine *eng, const dfa_search_opts *so, const char *cid, int W, int H) {
    if (!log) return;
    const size_t bytes = dfa_search_host_bytes(eng, so, o->v1);
    const int prompts = eng->n_rows / (eng->cfg ? 2 : 1);
    fprintf(log, "dfa calibrate: %s (%s), %dx%d px: %d visual + %d text tokens, %d layers x %d heads; %d steps, "
            "%d prompt%s (%d rows%s); search %s, delta %g", dfa_family_name(m->family), cid, W, H,
            eng->layout.n_vis, eng->layout.n_text, eng->n_layers, eng->n_heads, eng->n_steps, prompts,
            prompts == 1 ? "" : "s", eng->n_rows, eng->cfg ? ", CFG" : "", o->v1 ? "V1" : "V2", o->delta);
    if (o->v1) {
        dfa_attn_layout bl = eng->layout;
        bl.band = so->band;
        fprintf(log, ", WA-RS window %d tiles (%s band)",
                o->v1_window >= 0 ? o->v1_window : dfa_search_v1_default_window(&bl), dfa_band_name(bl.band));
    } else {
        fprintf(log, ", c %g; candidates", o->c);
        for (int i = 0; i < so->n_cands; i++) {
            char code[16];
            const dfa_search_cand *c = &so->cands[i];
            fprintf(log, " %s", dfa_plan_code(c->method, c->window < 0 ? 0 : c->window, code, sizeof code));
        }
    }
    fprintf(log, "; %.1f MiB of search buffers%s\n", (ctx->cuda ? 0.5 : 1.0) * bytes / 1048576.0,
            ctx->cuda ? " (bf16, on the GPU)" : "");
}

dfa_status dfa_calib_run(dfa_ctx *ctx, dfa_model *m, const dfa_calib_opts *o, dfa_plan *out, dfa_calib_result *res) {
    if (!m || !o || !out) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "calibrate: model, options and output needed");
    if (o->delta < 0) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "calibrate: delta %g is negative", o->delta);
    if (o->band != DFA_BAND_ARROW && (o->band != DFA_BAND_PLAIN || !o->v1))
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG,
                     "calibrate: band %s: the plain band is V1's window (--method v1); V2 searches the arrow band",
                     dfa_band_name(o->band));
    cal_run *r = calloc(1, sizeof *r);
    if (!r) DFA_CTX_FAIL(ctx, DFA_ERR_OOM, "calibrate: out of memory");
    dfa_search_engine eng;
    char cid[128] = "";
    int W = 0, H = 0, nc = 0;
    dfa_search_cand cands[CAL_MAX_CANDS];
    dfa_status s = open_engine(ctx, m, o, r, &eng, cid, sizeof cid, &W, &H);
    if (s == DFA_OK && !o->v1) s = make_cands(ctx, o, &eng.layout, cands, CAL_MAX_CANDS, &nc);
    dfa_search_progress pr;
    dfa_search_backend cuda_be;
    if (s == DFA_OK && ctx->cuda) s = dfa_search_backend_cuda(ctx, &r->cuda_state, &cuda_be);
    if (s == DFA_OK) {
        dfa_search_progress_init(&pr, o->log, eng.n_steps, eng.n_layers);
        dfa_search_opts so = {.delta = o->delta, .c = o->c, .cands = cands, .n_cands = nc, .v1_window = o->v1_window,
                              .band = o->band,
                              .backend = ctx->cuda ? &cuda_be : NULL,
                              .on_layer = o->log ? dfa_search_progress_on_layer : NULL, .on_layer_user = &pr};
        log_run(o->log, ctx, m, o, &eng, &so, cid, W, H);
        const double t0 = dfa_now_s();
        s = o->v1 ? dfa_search_v1(ctx, &eng, &so, &r->sp) : dfa_search_v2(ctx, &eng, &so, &r->sp);
        const double secs = dfa_now_s() - t0;
        if (s == DFA_OK) r->have_sp = 1;
        if (o->log) dfa_search_progress_finish(&pr);
        if (s == DFA_OK)
            s = dfa_search_plan_export(&r->sp, &eng, &so, o->v1, dfa_family_name(m->family), cid, out, &ctx->err);
        if (s == DFA_OK && res)
            *res = (dfa_calib_result){.search_seconds = secs,
                                      .model_time_fraction = dfa_search_plan_cost_fraction(&r->sp),
                                      .head_dim = eng.head_dim};
    }
    if (r->have_sp) dfa_search_plan_free(ctx, &r->sp);
    if (ctx->cuda) dfa_search_cuda_free(&r->cuda_state);
    dfa_engine_mmdit_free(ctx, r->eng);
    dfa_engine_dit_free(ctx, r->deng);
    for (int i = 0; i < r->n_pe; i++) dfa_prompt_embeds_free(ctx, &r->pe[i]);
    for (int i = 0; i < r->n_xe; i++) dfa_pixart_embeds_free(ctx, &r->xe[i]);
    free(r);
    return s;
}

/* ---- public ---- */

dfa_calibrate_params dfa_calibrate_default_params(void) {
    dfa_calibrate_params p;
    memset(&p, 0, sizeof p);
    p.method = "v2";
    p.c = 1.5;
    p.v1_window = -1;
    p.cfg_scale = -1.0f;
    p.guidance = 3.5f;
    return p;
}

dfa_status dfa_calibrate(dfa_ctx *ctx, dfa_model *m, const dfa_calibrate_params *p, dfa_plan_file **out) {
    if (!out) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dfa_calibrate: out is NULL");
    *out = NULL;
    if (!p) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dfa_calibrate: params is NULL");
    const char *meth = p->method ? p->method : "v2";
    if (strcmp(meth, "v1") != 0 && strcmp(meth, "v2") != 0)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dfa_calibrate: method must be \"v1\" or \"v2\" (got \"%s\")", meth);
    const int band = p->band ? dfa_band_parse(p->band) : DFA_BAND_ARROW;
    if (band < 0)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dfa_calibrate: band must be \"arrow\" or \"plain\" (got \"%s\")",
                     p->band);
    if (p->n_prompts < 0 || p->n_class_labels < 0 || (p->n_prompts && !p->prompt_embeds) ||
        (p->n_class_labels && !p->class_labels))
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dfa_calibrate: prompt / label counts do not match their arrays");
    dfa_calib_opts o = {.v1 = meth[1] == '1', .delta = p->delta, .c = p->c, .methods = p->methods,
                        .windows = p->windows, .v1_window = p->v1_window, .band = band, .embeds = p->prompt_embeds,
                        .n_embeds = p->n_prompts, .labels = p->class_labels, .n_labels = p->n_class_labels,
                        .n_default_labels = 8, .steps = p->steps, .width = p->width, .height = p->height,
                        .cfg = p->cfg_scale, .guidance = p->guidance, .seed = p->seed, .log = NULL};
    dfa_plan_file *pf = calloc(1, sizeof *pf);
    if (!pf) DFA_CTX_FAIL(ctx, DFA_ERR_OOM, "dfa_calibrate: out of memory");
    dfa_status s = dfa_calib_run(ctx, m, &o, &pf->plan, NULL);
    if (s != DFA_OK) {
        free(pf);
        return s;
    }
    *out = pf;
    return DFA_OK;
}
