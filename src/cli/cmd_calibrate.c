/* cmd_calibrate.c - `dfa calibrate`: search a compression plan (V1 greedy or V2 head-wise
 * knapsack, src/plan/search.h) for FLUX.1 or SD3 over calibration prompts, with a progress bar
 * and an ETA; writes the plan (family, config id, layout, grid, steps recorded, so that
 * `dfa generate --plan` refuses it for another model, resolution or step count) and prints its
 * attention-FLOPs fraction and the search time.
 *
 * Calibration prompts: --prompts FILE lists one prompt-embeddings safetensors per line (blank
 * lines and '#' comments skipped; a relative path is taken from the working directory, else
 * from the list file's folder), the first --n-prompts are used; or one --prompt-embeds FILE.
 * They run as one batch (same text length each). Prompt p's noise: seed + p. */
#include <errno.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "api/model_defaults.h"
#include "core/ctx.h"
#include "io/json.h"
#include "models/mmdit.h"
#include "models/mmdit_pipe.h"
#include "plan/engine_dit.h"
#include "plan/engine_mmdit.h"
#include "plan/plan.h"
#include "plan/search.h"
#include "plan/search_progress.h"

#define CAL_MAX_PROMPTS 256
#define CAL_MAX_CANDS 32

typedef struct cal_opts {
    const char *model, *method, *methods, *prompts, *embeds, *out, *windows, *labels;
    int n_prompts, steps, width, height, threads, v1_window, quiet, cuda;
    long long seed;
    double delta, c, cfg, guidance;
} cal_opts;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Paths of the prompt list (malloc'ed strings into paths[], count returned; -1 on error). */
static int read_prompt_list(const char *file, char **paths, int max, char *msg, size_t msg_len) {
    FILE *f = fopen(file, "r");
    if (!f) {
        snprintf(msg, msg_len, "%s: cannot open the prompt list (%s)", file, strerror(errno));
        return -1;
    }
    const char *slash = strrchr(file, '/');
    const int dir_len = slash ? (int)(slash - file) : 0;
    char line[4096];
    int n = 0, lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *s = line, *e = line + strlen(line);
        while (e > s && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t')) *--e = 0;
        while (*s == ' ' || *s == '\t') s++;
        if (!*s || *s == '#') continue;
        if (n == max) break;
        size_t len = strlen(s) + (size_t)dir_len + 2;
        char *p = malloc(len);
        if (!p) {
            snprintf(msg, msg_len, "out of memory reading %s", file);
            while (n > 0) free(paths[--n]);
            n = -1;
            break;
        }
        if (s[0] != '/' && access(s, R_OK) != 0 && slash)
            snprintf(p, len, "%.*s/%s", dir_len, file, s);
        else
            snprintf(p, len, "%s", s);
        paths[n++] = p;
    }
    fclose(f);
    if (n == 0) snprintf(msg, msg_len, "%s: no prompt-embeddings paths in the list", file);
    return n;
}

/* V2 candidates from "arrow,cache,rs": ARROW at every window of the list (default: band widths
 * of 1/8, 1/4, 1/2 of the visual tiles, below the full band), ARROW_RS at V1's window. */
static int make_cands(const cal_opts *o, const dfa_attn_layout *L, dfa_search_cand *c, int max, char *msg,
                      size_t msg_len) {
    int arrow = 0, cache = 0, rs = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", o->methods);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (!strcmp(t, "arrow"))
            arrow = 1;
        else if (!strcmp(t, "cache"))
            cache = 1;
        else if (!strcmp(t, "rs") || !strcmp(t, "arrow_rs"))
            rs = 1;
        else if (strcmp(t, "full") != 0) {
            snprintf(msg, msg_len, "--methods: unknown method '%s' (expected arrow, cache, rs)", t);
            return -1;
        }
    }
    const int full_w = dfa_mask_full_window(L);
    int wins[CAL_MAX_CANDS], nw = 0;
    if (o->windows) {
        snprintf(buf, sizeof buf, "%s", o->windows);
        for (char *save = NULL, *t = strtok_r(buf, ",", &save); t && nw < CAL_MAX_CANDS - 4; t = strtok_r(NULL, ",", &save)) {
            char *end;
            long w = strtol(t, &end, 10);
            if (*end || w < 0 || w > full_w) {
                snprintf(msg, msg_len, "--windows: '%s' is not a window in tiles between 0 and %d (the full band)", t,
                         full_w);
                return -1;
            }
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
    return n;
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

typedef struct cal_run {
    dfa_flux *fm;
    dfa_sd3 *sm;
    dfa_dit *dm;
    dfa_pixart *pm;
    dfa_prompt_embeds pe[CAL_MAX_PROMPTS];
    dfa_pixart_embeds xe[CAL_MAX_PROMPTS];
    int labels[CAL_MAX_PROMPTS];
    int n_pe, n_xe, n_labels;
    dfa_engine_mmdit *eng;
    dfa_engine_dit *deng;
    dfa_search_cuda cuda_state;
    dfa_search_plan sp;
    int have_sp;
    dfa_plan plan;
    int have_plan;
} cal_run;

/* DiT / PixArt: the rows (class labels, or prompt embeddings), the model, the engine. */
static dfa_status dit_engine(dfa_ctx *ctx, cal_opts *o, cal_run *r, int pixart, char **paths, int n_paths,
                             dfa_search_engine *eng, char *cid, size_t cid_len) {
    char tdir[1100];
    struct stat sb;
    snprintf(tdir, sizeof tdir, "%s/transformer", o->model);
    const char *dir = stat(tdir, &sb) == 0 && S_ISDIR(sb.st_mode) ? tdir : o->model;
    if (pixart)
        DFA_TRY(dfa_pixart_load(ctx, dir, &r->pm));
    else
        DFA_TRY(dfa_dit_load(ctx, dir, &r->dm));
    /* dfa generate's defaults: the model's sample size, DiT 50 / PixArt 20 steps */
    const int ss = pixart ? dfa_pixart_get_config(r->pm)->sample_size : dfa_dit_get_config(r->dm)->sample_size;
    if (!o->width) o->width = 8 * ss;
    if (!o->height) o->height = 8 * ss;
    if (!o->steps) o->steps = pixart ? 20 : 50;
    if (o->width % 8 || o->height % 8)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "-W/-H must be multiples of 8 pixels (got %dx%d)", o->width, o->height);
    dfa_engine_dit_params ep = {.steps = o->steps, .latent_h = o->height / 8, .latent_w = o->width / 8,
                                .seed = (uint64_t)o->seed};
    if (pixart) {
        for (int i = 0; i < n_paths; i++) {
            DFA_TRY(dfa_pixart_embeds_load(ctx, paths[i], &r->xe[i]));
            r->n_xe++;
        }
        ep.cfg_scale = o->cfg >= 0 ? (float)o->cfg : r->xe[0].neg_embeds ? 4.5f : 1.0f;
        DFA_TRY(dfa_engine_pixart_init(ctx, r->pm, o->model, r->xe, r->n_xe, &ep, &r->deng, eng));
        dfa_engine_pixart_config_id(r->pm, cid, cid_len);
        return DFA_OK;
    }
    const int nc = dfa_dit_get_config(r->dm)->num_classes;
    if (!o->labels) { /* spread over the classes */
        r->n_labels = o->n_prompts;
        for (int i = 0; i < r->n_labels; i++) r->labels[i] = (int)((long long)i * nc / r->n_labels);
    } else {
        char buf[2048];
        snprintf(buf, sizeof buf, "%s", o->labels);
        for (char *save = NULL, *t = strtok_r(buf, ",", &save); t && r->n_labels < CAL_MAX_PROMPTS;
             t = strtok_r(NULL, ",", &save)) {
            char *end;
            long v = strtol(t, &end, 10);
            if (*end || v < 0 || v >= nc)
                DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "--labels: '%s' is not a class label 0..%d", t, nc - 1);
            r->labels[r->n_labels++] = (int)v;
        }
    }
    ep.cfg_scale = o->cfg >= 0 ? (float)o->cfg : 4.0f;
    DFA_TRY(dfa_engine_dit_init(ctx, r->dm, o->model, r->labels, r->n_labels, &ep, &r->deng, eng));
    dfa_engine_dit_config_id(r->dm, cid, cid_len);
    return DFA_OK;
}

static int run_calibrate(dfa_ctx *ctx, const cal_opts *o_in, char **paths, int n_paths) {
    cal_opts ov = *o_in, *o = &ov; /* defaults filled in below */
    cal_run r;
    memset(&r, 0, sizeof r);
    int rc = 1;
    char cls[128], cid[128], msg[256];
    dfa_status s = read_class(ctx, o->model, cls, sizeof cls);
    const int is_flux = s == DFA_OK && strcmp(cls, "FluxTransformer2DModel") == 0;
    const int is_sd3 = s == DFA_OK && strcmp(cls, "SD3Transformer2DModel") == 0;
    const int is_dit = s == DFA_OK && strcmp(cls, "DiTTransformer2DModel") == 0;
    const int is_pixart = s == DFA_OK && strcmp(cls, "PixArtTransformer2DModel") == 0;
    const char *family = is_flux ? "flux" : is_sd3 ? "sd3" : is_dit ? "dit" : "pixart";
    if (s == DFA_OK && !is_flux && !is_sd3 && !is_dit && !is_pixart) {
        fprintf(stderr, "dfa calibrate: %s: model class %s is not handled (FLUX, SD3, DiT and PixArt are)\n", o->model,
                cls);
        return 1;
    }
    const char *bad = s != DFA_OK ? NULL
                      : is_dit && n_paths ? "DiT is class-conditional: it takes --labels, not prompts"
                      : !is_dit && o->labels ? "--labels is for DiT; this model takes prompts"
                      : !is_dit && !n_paths ? "needs --prompts FILE or --prompt-embeds FILE"
                      : NULL;
    if (bad) {
        fprintf(stderr, "dfa calibrate: %s\n", bad);
        return 2;
    }
    dfa_search_engine eng;
    dfa_flow_config fc;
    dfa_model_defaults md; /* MODEL/dfa.json, as dfa generate uses it */
    if (s == DFA_OK) s = dfa_model_defaults_read(ctx, o->model, &md);
    if (s == DFA_OK) {
        if (!o->width) o->width = md.width;
        if (!o->height) o->height = md.height;
        if (!o->steps) o->steps = md.steps;
        if (o->cfg < 0) o->cfg = md.true_cfg_scale;
    }
    if (s == DFA_OK && (is_dit || is_pixart)) {
        s = dit_engine(ctx, o, &r, is_pixart, paths, n_paths, &eng, cid, sizeof cid);
        goto search;
    }
    if (s == DFA_OK) s = is_flux ? dfa_flux_load(ctx, o->model, &r.fm) : dfa_sd3_load(ctx, o->model, &r.sm);
    if (s == DFA_OK) { /* dfa generate's defaults: 1024 px, 28 steps (FLUX-schnell 4) */
        if (!o->width) o->width = 1024;
        if (!o->height) o->height = 1024;
        if (!o->steps) o->steps = is_flux && !dfa_flux_get_config(r.fm)->guidance_embeds ? 4 : 28;
    }
    if (s == DFA_OK) {
        s = dfa_flow_config_read(ctx, o->model, &fc);
        if (s == DFA_ERR_NOT_FOUND) { /* as dfa generate: the released pipelines' schedulers */
            fc = dfa_flow_config_default();
            fc.shift = 3.0;
            fc.use_dynamic_shifting = is_flux && dfa_flux_get_config(r.fm)->guidance_embeds;
            if (is_flux && !fc.use_dynamic_shifting) fc.shift = 1.0;
            s = DFA_OK;
        }
    }
    for (int i = 0; s == DFA_OK && i < n_paths; i++) {
        s = dfa_prompt_embeds_load(ctx, paths[i], &r.pe[i]);
        if (s == DFA_OK) r.n_pe++;
    }
    const int up = 8; /* pixels per latent (the VAEs of FLUX and SD3) */
    if (s == DFA_OK && (o->width % up || o->height % up)) {
        fprintf(stderr, "dfa calibrate: -W/-H must be multiples of %d pixels (got %dx%d)\n", up, o->width, o->height);
        goto done;
    }
    float cfg = (float)o->cfg;
    if (is_sd3 && o->cfg < 0) cfg = r.n_pe && r.pe[0].neg_embeds ? 7.0f : 1.0f;
    if (is_flux && o->cfg < 0) cfg = 1.0f;
    dfa_engine_mmdit_params ep = {.steps = o->steps, .latent_h = o->height / up, .latent_w = o->width / up,
                                  .cfg_scale = cfg, .guidance = (float)o->guidance, .seed = (uint64_t)o->seed};
    if (s == DFA_OK) {
        s = is_flux ? dfa_engine_flux_init(ctx, r.fm, &fc, r.pe, r.n_pe, &ep, &r.eng, &eng)
                    : dfa_engine_sd3_init(ctx, r.sm, &fc, r.pe, r.n_pe, &ep, &r.eng, &eng);
    }
    if (s == DFA_OK && is_flux) dfa_engine_flux_config_id(r.fm, cid, sizeof cid);
    if (s == DFA_OK && is_sd3) dfa_engine_sd3_config_id(r.sm, cid, sizeof cid);
search:
    if (s != DFA_OK) goto done;
    const int v1 = strcmp(o->method, "v1") == 0;
    dfa_search_cand cands[CAL_MAX_CANDS];
    int nc = 0;
    if (!v1 && (nc = make_cands(o, &eng.layout, cands, CAL_MAX_CANDS, msg, sizeof msg)) < 0) {
        fprintf(stderr, "dfa calibrate: %s\n", msg);
        goto done;
    }
    dfa_search_progress pr;
    dfa_search_progress_init(&pr, o->quiet ? NULL : stderr, eng.n_steps, eng.n_layers);
    dfa_search_backend cuda_be;
    if (ctx->cuda && (s = dfa_search_backend_cuda(ctx, &r.cuda_state, &cuda_be)) != DFA_OK) goto done;
    dfa_search_opts so = {.delta = o->delta, .c = o->c, .cands = cands, .n_cands = nc, .v1_window = o->v1_window,
                          .backend = ctx->cuda ? &cuda_be : NULL,
                          .on_layer = dfa_search_progress_on_layer, .on_layer_user = &pr};
    const size_t bytes = dfa_search_host_bytes(&eng, &so, v1);
    fprintf(stderr, "dfa calibrate: %s (%s), %dx%d px: %d visual + %d text tokens, %d layers x %d heads; %d steps, "
            "%d prompt%s (%d rows%s); search %s, delta %g", cls, cid, o->width, o->height,
            eng.layout.n_vis, eng.layout.n_text, eng.n_layers, eng.n_heads, eng.n_steps, eng.n_rows / (eng.cfg ? 2 : 1),
            eng.n_rows / (eng.cfg ? 2 : 1) == 1 ? "" : "s",
            eng.n_rows, eng.cfg ? ", CFG" : "", v1 ? "V1" : "V2", o->delta);
    if (v1) {
        fprintf(stderr, ", WA-RS window %d tiles",
                o->v1_window >= 0 ? o->v1_window : dfa_search_v1_default_window(&eng.layout));
    } else {
        fprintf(stderr, ", c %g; candidates", o->c);
        for (int i = 0; i < nc; i++) {
            char code[16];
            fprintf(stderr, " %s", dfa_plan_code(cands[i].method, cands[i].window < 0 ? 0 : cands[i].window, code,
                                                 sizeof code));
        }
    }
    fprintf(stderr, "; %.1f MiB of search buffers%s\n", (ctx->cuda ? 0.5 : 1.0) * bytes / 1048576.0,
            ctx->cuda ? " (bf16, on the GPU)" : "");
    const double t0 = now_s();
    s = v1 ? dfa_search_v1(ctx, &eng, &so, &r.sp) : dfa_search_v2(ctx, &eng, &so, &r.sp);
    const double secs = now_s() - t0;
    if (s == DFA_OK) r.have_sp = 1;
    if (!o->quiet) dfa_search_progress_finish(&pr);
    if (s == DFA_OK) s = dfa_search_plan_export(&r.sp, &eng, &so, v1, family, cid, &r.plan, &ctx->err);
    if (s == DFA_OK) {
        r.have_plan = 1;
        s = dfa_plan_save(o->out, &r.plan, &ctx->err);
    }
    if (s == DFA_OK) {
        dfa_plan_cost pc;
        dfa_plan_cost_compute(&r.plan, eng.head_dim, &pc, NULL);
        printf("%s\n", o->out);
        fprintf(stderr, "plan %s: attention FLOPs %.2f%% of full (modelled attention time %.2f%%); head-steps full %lld, "
                "arrow %lld, arrow_rs %lld, cache %lld; ASC %lld layer-steps; search %.2f s\n", o->out,
                100.0 * pc.fraction, 100.0 * dfa_search_plan_cost_fraction(&r.sp), (long long)pc.n_method[0],
                (long long)pc.n_method[1], (long long)pc.n_method[2], (long long)pc.n_method[3], (long long)pc.n_asc,
                secs);
        rc = 0;
    }
done:
    if (s != DFA_OK) fprintf(stderr, "dfa calibrate: %s\n", dfa_ctx_error(ctx));
    if (r.have_plan) dfa_plan_free(&r.plan);
    if (r.have_sp) dfa_search_plan_free(ctx, &r.sp);
    if (ctx->cuda) dfa_search_cuda_free(&r.cuda_state);
    dfa_engine_mmdit_free(ctx, r.eng);
    dfa_engine_dit_free(ctx, r.deng);
    for (int i = 0; i < r.n_pe; i++) dfa_prompt_embeds_free(ctx, &r.pe[i]);
    for (int i = 0; i < r.n_xe; i++) dfa_pixart_embeds_free(ctx, &r.xe[i]);
    dfa_flux_free(ctx, r.fm);
    dfa_sd3_free(ctx, r.sm);
    dfa_dit_free(ctx, r.dm);
    dfa_pixart_free(ctx, r.pm);
    return rc;
}

int cmd_calibrate(int argc, char **argv) {
    cal_opts o = {.method = "v2", .methods = "arrow,cache", .n_prompts = 8, .v1_window = -1, .delta = -1, .c = 1.5, .cfg = -1, .guidance = 3.5};
    dfa_arg_spec specs[] = {
        {"model", 'm', DFA_ARG_STRING, &o.model, "DIR", "diffusers pipeline folder (transformer/, scheduler/)", 1, 0},
        {"method", 0, DFA_ARG_STRING, &o.method, "v1|v2", "search: v1 (DiTFastAttn greedy) or v2 (head-wise knapsack, "
         "default)", 1, 0},
        {"delta", 0, DFA_ARG_FLOAT, &o.delta, "X", "threshold: V2 layer influence budget, V1 MRAE scale", 0, 1e9},
        {"c", 0, DFA_ARG_FLOAT, &o.c, "C", "V2 per-head coefficient (default 1.5; 0: no per-head cap)", 0, 1e9},
        {"methods", 0, DFA_ARG_STRING, &o.methods, "LIST", "V2 candidates: arrow,cache,rs (default arrow,cache)", 1, 0},
        {"windows", 0, DFA_ARG_STRING, &o.windows, "LIST", "V2 ARROW windows in tiles (default: 1/8, 1/4, 1/2 of the "
         "visual tiles as band width)", 1, 0},
        {"window", 0, DFA_ARG_INT, &o.v1_window, "W", "V1 WA-RS window in tiles (default 1/8 of the visual tokens)", 0,
         1e6},
        {"prompts", 0, DFA_ARG_STRING, &o.prompts, "FILE", "list of prompt-embeddings files, one per line", 1, 0},
        {"prompt-embeds", 0, DFA_ARG_STRING, &o.embeds, "FILE", "one prompt-embeddings file instead of a list", 1, 0},
        {"labels", 0, DFA_ARG_STRING, &o.labels, "LIST", "DiT: class labels, one row each (default: --n-prompts labels "
         "spread over the classes)", 1, 0},
        {"n-prompts", 0, DFA_ARG_INT, &o.n_prompts, "N", "calibration prompts used from the list (default 8)", 1,
         CAL_MAX_PROMPTS},
        {"steps", 0, DFA_ARG_INT, &o.steps, "N", "denoising steps (default: as dfa generate - MODEL/dfa.json, else FLUX-dev / SD3 28, "
         "schnell 4, DiT 50, PixArt 20)", 1, 10000},
        {"width", 'W', DFA_ARG_INT, &o.width, "PX", "width in pixels (default as dfa generate: dfa.json, 1024, DiT/PixArt sample size)", 8, 65536},
        {"height", 'H', DFA_ARG_INT, &o.height, "PX", "height in pixels (default as dfa generate)", 8, 65536},
        {"seed", 0, DFA_ARG_INT64, &o.seed, "S", "noise seed of prompt 0 (prompt p: S + p; default 0)", 0, 9.2e18},
        {"cfg-scale", 0, DFA_ARG_FLOAT, &o.cfg, "S", "classifier-free guidance (default: SD3 7 / PixArt 4.5 with "
         "negatives, DiT 4)", 0, 1000},
        {"guidance", 0, DFA_ARG_FLOAT, &o.guidance, "G", "FLUX-dev guidance scale (default 3.5)", 0, 1000},
        {"output", 'o', DFA_ARG_STRING, &o.out, "FILE", "plan file to write (JSON)", 1, 0},
        {"quiet", 'q', DFA_ARG_FLAG, &o.quiet, NULL, "no progress bar", 1, 0},
        {"cuda", 0, DFA_ARG_FLAG, &o.cuda, NULL, "FLUX / SD3 on the GPU, search on the GPU (bf16; device 0)", 0, -1},
        {"threads", 't', DFA_ARG_INT, &o.threads, "T", "CPU threads (default all cores)", 0, 1024},
    };
    const int ns = (int)(sizeof specs / sizeof specs[0]);
    const char *pos[1];
    int npos;
    char msg[512];
    int r = dfa_args_parse(argc, argv, 1, specs, ns, pos, 1, &npos, msg, sizeof msg);
    if (r == 1) {
        dfa_args_usage("calibrate", "-m DIR --method v1|v2 --delta X (--prompts FILE | --prompt-embeds FILE) -W PX "
                       "-H PX [--steps N] -o plan.json",
                       "Search an attention compression plan for FLUX.1 or SD3 over calibration prompts (V1: greedy\n"
                       "per layer under a model-output error threshold; V2: one method per head by an exact\n"
                       "knapsack under an attention-output error budget). Prints a progress bar with an ETA, then\n"
                       "the plan's attention-FLOPs fraction and the search time. Use it with dfa generate --plan.",
                       specs, ns);
        return 0;
    }
    if (r == 0 && npos) {
        snprintf(msg, sizeof msg, "takes no positional arguments (got '%s')", pos[0]);
        r = -1;
    }
    if (r == 0 && (!o.model || !o.out || o.delta < 0 || (o.prompts && o.embeds))) {
        snprintf(msg, sizeof msg, "needs -m DIR, --delta X, -o FILE and at most one of --prompts FILE / "
                 "--prompt-embeds FILE");
        r = -1;
    }
    if (r == 0 && strcmp(o.method, "v1") != 0 && strcmp(o.method, "v2") != 0) {
        snprintf(msg, sizeof msg, "--method must be v1 or v2 (got '%s')", o.method);
        r = -1;
    }
    if (r < 0) {
        fprintf(stderr, "dfa calibrate: %s\n", msg);
        return 2;
    }
    char *paths[CAL_MAX_PROMPTS];
    int n_paths = 0;
    if (o.prompts) {
        n_paths = read_prompt_list(o.prompts, paths, o.n_prompts, msg, sizeof msg);
        if (n_paths < 0 || n_paths == 0) {
            fprintf(stderr, "dfa calibrate: %s\n", msg);
            for (int i = 0; i < n_paths; i++) free(paths[i]);
            return 1;
        }
        if (n_paths < o.n_prompts && o.n_prompts != 8)
            fprintf(stderr, "dfa calibrate: %s lists %d prompts; using them (--n-prompts %d)\n", o.prompts, n_paths,
                    o.n_prompts);
    } else if (o.embeds) {
        paths[0] = strdup(o.embeds);
        if (!paths[0]) return 1;
        n_paths = 1;
    }
    dfa_ctx *ctx = NULL;
    dfa_ctx_params cp = dfa_ctx_default_params();
    cp.n_threads = o.threads;
    if (o.cuda) cp.backend = DFA_BACKEND_CUDA;
    char err[256];
    int rc = 1;
    if (dfa_ctx_init(&ctx, &cp, err, sizeof err) != DFA_OK) {
        fprintf(stderr, "dfa calibrate: %s\n", err);
    } else {
        rc = run_calibrate(ctx, &o, paths, n_paths);
        dfa_ctx_free(ctx);
    }
    for (int i = 0; i < n_paths; i++) free(paths[i]);
    return rc;
}
