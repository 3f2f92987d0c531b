/* eval_run.c - the fidelity harness (eval_run.h): same seeds, uncompressed vs each plan;
 * SSIM / PSNR of the decoded images, relative L2 of the final latents, attention FLOPs
 * fraction, wall time; markdown report, SSIM-vs-attention plot and contact sheet. */
#include "cli/eval_run.h"
#include "core/log.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "attn/attn_state.h"
#include "api/model_defaults.h"
#include "api/run_target.h"
#include "io/json.h"
#include "models/mmdit.h"
#include "eval/fidelity.h"
#include "models/mmdit_pipe.h"
#include "models/vae.h"
#include "plan/plan.h"
#include "text/prompt.h"

typedef struct eval_state {
    int is_flux;
    dfa_flux *fm;
    dfa_sd3 *sm;
    dfa_vae *vae;
    dfa_flow_config fc;
    dfa_prompt_embeds *pe;
    int n_pe;
    dfa_plan *plans;
    int n_plans_loaded;
    float *lat_ref, *lat, *img;
    uint8_t **tiles; /* rgb images: [n_images][1 + n_plans] with an outdir, else [1 + n_plans] */
    int n_tiles;
    double *mse_sum, *ssim_sum, *err_sum, *secs; /* [1 + n_plans]; 0 = uncompressed */
} eval_state;

/* Text prompts through the model's text encoders (loaded once, freed before the transformer),
 * embeddings files loaded as they are. */
static dfa_status load_prompts(dfa_ctx *ctx, const dfa_eval_opts *o, int want_negative, const char *negative,
                               eval_state *st) {
    DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, sizeof(dfa_prompt_embeds) * (size_t)o->n_prompts, "prompt embeds",
                              (void **)&st->pe));
    memset(st->pe, 0, sizeof(dfa_prompt_embeds) * (size_t)o->n_prompts);
    dfa_prompt_encoder *enc = NULL;
    dfa_status s = DFA_OK;
    for (int i = 0; s == DFA_OK && i < o->n_prompts; i++) {
        if (!o->prompts[i].text) {
            s = dfa_prompt_embeds_load(ctx, o->prompts[i].embeds, &st->pe[i]);
        } else {
            if (!enc) {
                dfa_prompt_opts po = {.layout = DFA_LAYOUT_AUTO, .max_sequence_length = o->max_len};
                s = dfa_prompt_encoder_load(ctx, o->model, &po, &enc);
                if (s != DFA_OK) break;
            }
            dfa_text_embeds pos = {0}, neg = {0};
            s = dfa_prompt_encode(enc, o->prompts[i].text, &pos);
            if (s == DFA_OK && want_negative) s = dfa_prompt_encode(enc, negative ? negative : "", &neg);
            if (s == DFA_OK) s = dfa_prompt_embeds_from_text(ctx, &pos, want_negative ? &neg : NULL, &st->pe[i]);
            dfa_text_embeds_free(&pos);
            dfa_text_embeds_free(&neg);
        }
        if (s == DFA_OK) st->n_pe++;
    }
    dfa_prompt_encoder_free(enc);
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

/* MODEL/scheduler, else the released pipelines' schedulers (as dfa generate / the API). */
static dfa_status flow_config(dfa_ctx *ctx, const char *model, const dfa_flux *fm, dfa_flow_config *fc) {
    return dfa_flow_config_read_or_default(ctx, model, fm != NULL, fm && dfa_flux_get_config(fm)->guidance_embeds, fc);
}

static int is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static dfa_status generate(dfa_ctx *ctx, eval_state *st, const dfa_prompt_embeds *pe, const dfa_mmdit_gen_params *gp,
                           float *out, double *secs) {
    const double t0 = dfa_now_s();
    dfa_status s = st->is_flux ? dfa_flux_generate(ctx, st->fm, &st->fc, pe, gp, out)
                               : dfa_sd3_generate(ctx, st->sm, &st->fc, pe, gp, out);
    *secs = dfa_now_s() - t0;
    return s;
}

static dfa_status decode(dfa_ctx *ctx, eval_state *st, const float *lat, int h, int w, uint8_t *rgb) {
    const int up = dfa_vae_upscale(st->vae);
    DFA_TRY(dfa_vae_decode(ctx, st->vae, lat, h, w, st->img));
    dfa_vae_to_rgb8(st->img, h * up, w * up, rgb);
    return DFA_OK;
}

static void free_state(dfa_ctx *ctx, eval_state *st, int n_plans) {
    (void)n_plans;
    if (dfa_attn_plan(ctx)) dfa_attn_clear_plan(ctx);
    for (int i = 0; i < st->n_plans_loaded; i++) dfa_plan_free(&st->plans[i]);
    if (st->plans) dfa_ctx_mem_release(ctx, st->plans);
    for (int i = 0; i < st->n_pe; i++) dfa_prompt_embeds_free(ctx, &st->pe[i]);
    if (st->pe) dfa_ctx_mem_release(ctx, st->pe);
    for (int i = 0; st->tiles && i < st->n_tiles; i++)
        if (st->tiles[i]) dfa_ctx_mem_release(ctx, st->tiles[i]);
    void *bufs[] = {st->tiles, st->lat_ref, st->lat, st->img, st->mse_sum, st->ssim_sum, st->err_sum, st->secs};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        if (bufs[i]) dfa_ctx_mem_release(ctx, bufs[i]);
    if (st->vae) dfa_vae_free(ctx, st->vae);
    dfa_flux_free(ctx, st->fm);
    dfa_sd3_free(ctx, st->sm);
}

static dfa_status write_outputs(dfa_ctx *ctx, const dfa_eval_opts *o, const dfa_eval_result *res, eval_state *st,
                                FILE *log) {
    if (mkdir(o->outdir, 0755) != 0 && errno != EEXIST)
        DFA_CTX_FAIL(ctx, DFA_ERR_IO, "%s: cannot create the output folder (%s)", o->outdir, strerror(errno));
    char path[1200];
    snprintf(path, sizeof path, "%s/report.md", o->outdir);
    FILE *f = fopen(path, "w");
    if (!f) DFA_CTX_FAIL(ctx, DFA_ERR_IO, "%s: cannot write (%s)", path, strerror(errno));
    dfa_eval_write_markdown(res, o->model, f);
    if (fclose(f) != 0) DFA_CTX_FAIL(ctx, DFA_ERR_IO, "%s: write failed", path);
    if (log) fprintf(log, "wrote %s\n", path);
    if (!res->has_images) return DFA_OK;
    double x[256], y[256], ymin = 1.0;
    const int n = res->n_plans < 256 ? res->n_plans : 256;
    for (int i = 0; i < n; i++) {
        x[i] = res->rows[i].fraction, y[i] = res->rows[i].ssim;
        if (isfinite(y[i]) && y[i] < ymin) ymin = y[i];
    }
    ymin = floor(ymin * 10.0 - 1e-9) / 10.0; /* a tenth below the worst plan */
    if (ymin > 0.9) ymin = 0.9;
    if (ymin < -1.0) ymin = -1.0;
    snprintf(path, sizeof path, "%s/ssim_vs_attn.png", o->outdir);
    DFA_TRY(dfa_plot_ssim_png(path, x, y, n, ymin, &ctx->err));
    if (log) fprintf(log, "wrote %s\n", path);
    snprintf(path, sizeof path, "%s/contact_sheet.png", o->outdir);
    const int up = dfa_vae_upscale(st->vae);
    (void)up;
    DFA_TRY(dfa_contact_sheet_png(path, (const uint8_t *const *)st->tiles, res->n_images, 1 + res->n_plans,
                                  res->width, res->height, &ctx->err));
    if (log) fprintf(log, "wrote %s\n", path);
    return DFA_OK;
}

dfa_status dfa_eval_run(dfa_ctx *ctx, const dfa_eval_opts *o_in, dfa_eval_result *res, FILE *log) {
    memset(res, 0, sizeof *res);
    dfa_eval_opts ov = *o_in, *o = &ov;
    if (o->n_prompts < 1 || o->n_plans < 1)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "eval needs at least one prompt and one plan (got %d and %d)",
                     o->n_prompts, o->n_plans);
    static const long long seed0 = 0;
    if (!o->seeds || o->n_seeds < 1) o->seeds = &seed0, o->n_seeds = 1;
    char cls[128];
    DFA_TRY(read_class(ctx, o->model, cls, sizeof cls));
    const int is_flux = strcmp(cls, "FluxTransformer2DModel") == 0, is_sd3 = strcmp(cls, "SD3Transformer2DModel") == 0;
    if (!is_flux && !is_sd3)
        DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED, "%s: eval handles FLUX and SD3 models; this one is %s", o->model, cls);
    dfa_model_defaults md; /* MODEL/dfa.json as dfa generate reads it */
    DFA_TRY(dfa_model_defaults_read(ctx, o->model, &md));
    if (!o->width) o->width = md.width ? md.width : 1024;
    if (!o->height) o->height = md.height ? md.height : 1024;
    if (!o->steps) o->steps = md.steps;
    if (!o->max_len) o->max_len = md.max_len;
    if (o->cfg < 0) o->cfg = md.true_cfg_scale;
    const char *negative = o->cfg > 1.0 && md.has_negative ? md.negative : NULL;

    eval_state st;
    memset(&st, 0, sizeof st);
    st.is_flux = is_flux;
    const int want_neg = (is_sd3 && o->cfg != 0.0 && o->cfg != 1.0) || (is_flux && o->cfg > 1.0);
    dfa_status s = load_prompts(ctx, o, want_neg, negative, &st);
    if (s == DFA_OK) s = is_flux ? dfa_flux_load(ctx, o->model, &st.fm) : dfa_sd3_load(ctx, o->model, &st.sm);
    if (s == DFA_OK) s = flow_config(ctx, o->model, st.fm, &st.fc);
    char vdir[1100];
    snprintf(vdir, sizeof vdir, "%s/vae", o->model);
    res->has_images = is_dir(vdir);
    if (s == DFA_OK && res->has_images) s = dfa_vae_load(ctx, vdir, &st.vae);
    if (s != DFA_OK) goto done;
    const int C = is_flux ? dfa_flux_latent_channels(st.fm) : dfa_sd3_latent_channels(st.sm);
    const int up = st.vae ? dfa_vae_upscale(st.vae) : 8;
    if (o->width % up || o->height % up) {
        s = DFA_SET(&ctx->err, DFA_ERR_INVALID_ARG, "-W/-H must be multiples of %d pixels (got %dx%d)", up, o->width,
                    o->height);
        goto done;
    }
    if (st.vae && dfa_vae_get_config(st.vae)->latent_channels != C) {
        s = DFA_SET(&ctx->err, DFA_ERR_SHAPE, "%s: the VAE takes %d latent channels, the transformer makes %d", vdir,
                    dfa_vae_get_config(st.vae)->latent_channels, C);
        goto done;
    }
    const int h = o->height / up, w = o->width / up;
    const size_t n = (size_t)C * h * w, npx = (size_t)o->width * o->height;
    if (!o->steps) o->steps = is_flux && !dfa_flux_get_config(st.fm)->guidance_embeds ? 4 : 28;
    float cfg = (float)o->cfg;
    if (is_sd3 && o->cfg < 0) cfg = st.pe[0].neg_embeds ? 7.0f : 1.0f;
    if (is_flux && o->cfg < 0) cfg = 1.0f;
    const int head_dim = is_flux ? dfa_flux_get_config(st.fm)->head_dim : dfa_sd3_get_config(st.sm)->head_dim;
    res->width = o->width, res->height = o->height, res->steps = o->steps;
    res->n_images = o->n_prompts * o->n_seeds;
    res->n_plans = o->n_plans;
    res->rows = calloc((size_t)o->n_plans, sizeof *res->rows);
    if (!res->rows) {
        s = DFA_SET(&ctx->err, DFA_ERR_OOM, "out of host memory for %d result rows", o->n_plans);
        goto done;
    }
    /* the plans: loaded, checked against every prompt's run, costed */
    s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, sizeof(dfa_plan) * (size_t)o->n_plans, "plans", (void **)&st.plans);
    for (int i = 0; s == DFA_OK && i < o->n_plans; i++) {
        s = dfa_plan_load(o->plans[i], &st.plans[i], &ctx->err);
        if (s != DFA_OK) break;
        st.n_plans_loaded++;
        for (int p = 0; s == DFA_OK && p < st.n_pe; p++)
            s = dfa_run_check_plan(ctx, &st.plans[i], o->plans[i], st.fm, st.sm, NULL, NULL, st.pe[p].n_txt, h, w, up,
                                   o->steps, cfg > 1.0f);
        dfa_plan_cost pc;
        dfa_plan_cost_compute(&st.plans[i], head_dim, &pc, NULL);
        res->rows[i].name = o->plans[i];
        res->rows[i].fraction = pc.fraction;
    }
    const int K = 1 + o->n_plans;
    st.n_tiles = st.vae ? (o->outdir ? res->n_images * K : K) : 0;
    const size_t szf = sizeof(float);
    if (s == DFA_OK) s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, n * szf, "reference latents", (void **)&st.lat_ref);
    if (s == DFA_OK) s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, n * szf, "latents", (void **)&st.lat);
    if (s == DFA_OK && st.vae) s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, 3 * npx * szf, "decoded image", (void **)&st.img);
    double **sums[4] = {&st.mse_sum, &st.ssim_sum, &st.err_sum, &st.secs};
    for (int i = 0; s == DFA_OK && i < 4; i++) {
        s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, sizeof(double) * K, "eval sums", (void **)sums[i]);
        if (s == DFA_OK) memset(*sums[i], 0, sizeof(double) * K);
    }
    if (s == DFA_OK && st.n_tiles) {
        s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, sizeof(uint8_t *) * st.n_tiles, "tiles", (void **)&st.tiles);
        if (s == DFA_OK) memset(st.tiles, 0, sizeof(uint8_t *) * st.n_tiles);
        for (int i = 0; s == DFA_OK && i < st.n_tiles; i++)
            s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, 3 * npx, "image tile", (void **)&st.tiles[i]);
    }
    if (s != DFA_OK) goto done;
    for (int i = 0; i < o->n_plans; i++) res->rows[i].ssim_min = INFINITY;
    res->base.ssim_min = 1.0;
    if (log)
        fprintf(log, "dfa eval: %s (%s), %dx%d px (latent %d x %d x %d), %d steps, cfg %.2f; %d prompt%s x %d seed%s, "
                "%d plan%s%s\n", o->model, is_flux ? "FLUX" : "SD3", o->width, o->height, C, h, w, o->steps, cfg,
                o->n_prompts, o->n_prompts == 1 ? "" : "s", o->n_seeds, o->n_seeds == 1 ? "" : "s", o->n_plans,
                o->n_plans == 1 ? "" : "s", st.vae ? "" : "; no vae/: latent metrics only");
    for (int p = 0; s == DFA_OK && p < o->n_prompts; p++)
        for (int q = 0; s == DFA_OK && q < o->n_seeds; q++) {
            const int img = p * o->n_seeds + q;
            uint8_t **tl = st.tiles ? st.tiles + (o->outdir ? (size_t)img * K : 0) : NULL;
            dfa_mmdit_gen_params gp = {.steps = o->steps, .latent_h = h, .latent_w = w, .cfg_scale = cfg,
                                       .guidance = (float)o->guidance, .seed = (uint64_t)o->seeds[q]};
            double secs = 0;
            dfa_attn_clear_plan(ctx);
            s = generate(ctx, &st, &st.pe[p], &gp, st.lat_ref, &secs);
            if (s == DFA_OK && st.vae) s = decode(ctx, &st, st.lat_ref, h, w, tl[0]);
            if (s != DFA_OK) break;
            st.secs[0] += secs;
            if (log) fprintf(log, "prompt %d seed %lld: uncompressed %.3f s\n", p + 1, o->seeds[q], secs);
            for (int k = 0; k < o->n_plans; k++) {
                s = dfa_attn_set_plan(ctx, &st.plans[k]);
                if (s == DFA_OK) s = generate(ctx, &st, &st.pe[p], &gp, st.lat, &secs);
                dfa_attn_clear_plan(ctx);
                if (s == DFA_OK && st.vae) s = decode(ctx, &st, st.lat, h, w, tl[1 + k]);
                if (s != DFA_OK) break;
                const double e = dfa_rel_l2(st.lat_ref, st.lat, n);
                st.secs[1 + k] += secs, st.err_sum[1 + k] += e;
                double ssim = NAN, mse = NAN;
                if (st.vae) {
                    mse = dfa_mse_u8(tl[0], tl[1 + k], 3 * npx);
                    ssim = dfa_ssim_u8(tl[0], tl[1 + k], o->width, o->height, 3, &ctx->err);
                    st.mse_sum[1 + k] += mse, st.ssim_sum[1 + k] += ssim;
                    if (!(ssim >= res->rows[k].ssim_min)) res->rows[k].ssim_min = ssim;
                }
                if (log && st.vae)
                    fprintf(log, "  plan %d (%s): %.3f s, latent rel err %.4g, SSIM %.4f, PSNR %.2f dB\n", k + 1,
                            o->plans[k], secs, e, ssim, dfa_psnr_from_mse(mse));
                else if (log)
                    fprintf(log, "  plan %d (%s): %.3f s, latent rel err %.4g\n", k + 1, o->plans[k], secs, e);
            }
        }
    if (s != DFA_OK) goto done;
    const double ni = res->n_images;
    res->base = (dfa_eval_row){.name = "uncompressed", .fraction = 1.0, .ssim = st.vae ? 1.0 : NAN,
                               .psnr = st.vae ? INFINITY : NAN, .ssim_min = st.vae ? 1.0 : NAN, .latent_err = 0.0,
                               .seconds = st.secs[0] / ni};
    for (int k = 0; k < o->n_plans; k++) {
        dfa_eval_row *r = &res->rows[k];
        r->latent_err = st.err_sum[1 + k] / ni;
        r->seconds = st.secs[1 + k] / ni;
        r->ssim = st.vae ? st.ssim_sum[1 + k] / ni : NAN;
        r->psnr = st.vae ? dfa_psnr_from_mse(st.mse_sum[1 + k] / ni) : NAN;
        if (!st.vae) r->ssim_min = NAN;
    }
    if (o->outdir) s = write_outputs(ctx, o, res, &st, log);
done:
    free_state(ctx, &st, o->n_plans);
    if (s != DFA_OK) dfa_eval_result_free(res);
    return s;
}

static void fmt_metric(char *buf, size_t len, double v, const char *fmt) {
    if (isnan(v))
        snprintf(buf, len, "n/a");
    else if (isinf(v))
        snprintf(buf, len, "inf");
    else
        snprintf(buf, len, fmt, v);
}

void dfa_eval_write_markdown(const dfa_eval_result *res, const char *model, FILE *f) {
    fprintf(f, "# dfa eval: %s\n\n", model);
    fprintf(f, "%d image%s (prompts x seeds), %dx%d px, %d steps; every plan from the same noise as the "
            "uncompressed run.\n\n", res->n_images, res->n_images == 1 ? "" : "s", res->width, res->height, res->steps);
    fprintf(f, "| # | plan | attn FLOPs | SSIM | SSIM min | PSNR (dB) | latent rel L2 | s / image |\n");
    fprintf(f, "|---|------|-----------:|-----:|---------:|----------:|--------------:|----------:|\n");
    for (int i = -1; i < res->n_plans; i++) {
        const dfa_eval_row *r = i < 0 ? &res->base : &res->rows[i];
        char a[32], b[32], c[32], d[32];
        fmt_metric(a, sizeof a, r->ssim, "%.4f");
        fmt_metric(b, sizeof b, r->ssim_min, "%.4f");
        fmt_metric(c, sizeof c, r->psnr, "%.2f");
        fmt_metric(d, sizeof d, r->latent_err, "%.4g");
        char idx[16];
        snprintf(idx, sizeof idx, i < 0 ? "-" : "%d", i + 1);
        fprintf(f, "| %s | %s | %.2f%% | %s | %s | %s | %s | %.3f |\n", idx, r->name ? r->name : "?",
                100.0 * r->fraction, a, b, c, d, r->seconds);
    }
    fprintf(f, "\nattn FLOPs: the plan's attention FLOPs over every head FULL (plan.h). SSIM: Wang et al. 2004, "
            "per RGB channel on 8-bit values, 11x11 Gaussian window (sigma 1.5), C1 = (0.01*255)^2, "
            "C2 = (0.03*255)^2, valid window positions, averaged over channels and images; SSIM min: the worst "
            "image. PSNR from the mean squared error over all images. latent rel L2: mean over images of "
            "||z - z_ref|| / ||z_ref|| of the final latents. s / image: wall time of the denoising loop.\n");
    if (!res->has_images)
        fprintf(f, "\nThe model has no vae/ folder: latent metrics only (no SSIM, PSNR, plot or contact sheet).\n");
    else
        fprintf(f, "\nFigures: ssim_vs_attn.png (SSIM against attention FLOPs fraction, points numbered as the table, "
                "hollow dot = uncompressed), contact_sheet.png (one row per prompt and seed: uncompressed, then each "
                "plan in table order).\n");
}

void dfa_eval_result_free(dfa_eval_result *res) {
    free(res->rows);
    res->rows = NULL;
    res->n_plans = 0;
}
