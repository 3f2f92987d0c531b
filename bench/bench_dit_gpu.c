/* bench_dit_gpu.c - DiT-XL-2 (512^2) and PixArt-Sigma-XL (1024^2, 2048^2) on the GPU, dense (no
 * plan): one transformer forward of the CFG batch 2 and a 50-step DPM-Solver++ loop with CFG,
 * against diffusers' times for the same calls on the same random weights (bench/dit_gpu.py,
 * same run), plus dfa's attention share of the forward (its attention timer) and the relative L2
 * distance of dfa's forward output and final latents from diffusers' (both bf16).
 * usage: build/bench_dit_gpu DIR [out.md]   (after python3 bench/dit_gpu.py DIR); see dit_gpu.sh.
 * A case whose DIR/<case>_io.safetensors is missing (diffusers not available) runs dfa alone on
 * random weights and inputs it writes itself (dfa_*_write_random), diffusers' columns empty. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/ctx.h"
#include "io/safetensors.h"
#include "models/dit.h"
#include "models/dit_pipe.h"
#include "models/pixart.h"
#include "sample/sampler.h"

#include "bench_util.h"

static double rel_l2(const float *a, const float *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

/* ---- dfa-only fallback: a random checkpoint, the DPM scheduler and inputs written here ---- */

static const char *DPM_JSON = "{\"_class_name\": \"DPMSolverMultistepScheduler\", \"num_train_timesteps\": 1000,"
                              " \"beta_schedule\": \"linear\", \"beta_start\": 0.0001, \"beta_end\": 0.02,"
                              " \"algorithm_type\": \"dpmsolver++\", \"solver_order\": 2,"
                              " \"timestep_spacing\": \"linspace\", \"prediction_type\": \"epsilon\"}";

static int write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    const int ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* DIR/<name>/{transformer/config.json + random weights, scheduler/scheduler_config.json} */
static dfa_status make_folder(dfa_ctx *ctx, const char *dir, const char *name, const char *config, int pixart) {
    char p[2048];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    mkdir(dir, 0755), mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/%s/scheduler", dir, name);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/%s/scheduler/scheduler_config.json", dir, name);
    if (write_text(p, DPM_JSON) != 0) DFA_CTX_FAIL(ctx, DFA_ERR_IO, "cannot write %s", p);
    snprintf(p, sizeof p, "%s/%s/transformer", dir, name);
    mkdir(p, 0755);
    char cp[2100];
    snprintf(cp, sizeof cp, "%s/config.json", p);
    if (write_text(cp, config) != 0) DFA_CTX_FAIL(ctx, DFA_ERR_IO, "cannot write %s", cp);
    fprintf(stderr, "writing random weights under %s\n", p);
    return pixart ? dfa_pixart_write_random(ctx, p, 7) : dfa_dit_write_random(ctx, p, 7);
}

static float *rand_buf(size_t n, unsigned long long *s, float scale) {
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; x && i < n; i++) {
        *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
        x[i] = scale * (float)((double)(*s >> 11) * (2.0 / 9007199254740992.0) - 1.0);
    }
    return x;
}

typedef struct row {
    char name[64];
    int tokens;
    double step, step_ref, attn_share, step_timed, loop, loop_ref, err_out, err_final;
    int steps, ok;
    char msg[200];
} row;

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* forward: warm-up; one forward with dfa's attention timer on (synchronised around each attention
 * call) for the attention share; then the median of reps forwards with the timer off */
typedef dfa_status (*fwd_fn)(void *user, float *out);
typedef void (*times_fn)(void *model, double *attn, double *total, int reset);
typedef void (*timer_fn)(void *model, int on);

static dfa_status time_forward(fwd_fn f, void *user, times_fn tf, timer_fn tm, void *model, int reps, float *out,
                               row *r) {
    double ts[8];
    tm(model, 1);
    dfa_status s = f(user, out);
    if (s != DFA_OK) return s;
    tf(model, NULL, NULL, 1);
    s = f(user, out);
    if (s != DFA_OK) return s;
    double attn = 0, total = 0;
    tf(model, &attn, &total, 0);
    r->attn_share = total > 0 ? attn / total : 0;
    r->step_timed = total;
    tm(model, 0);
    for (int i = 0; i < reps && s == DFA_OK; i++) {
        const double t0 = bench_now();
        s = f(user, out); /* returns after the output is back on the host: synchronised */
        ts[i] = bench_now() - t0;
    }
    if (s != DFA_OK) return s;
    qsort(ts, (size_t)reps, sizeof ts[0], cmp_d);
    r->step = ts[reps / 2];
    return DFA_OK;
}

typedef struct dit_call {
    dfa_ctx *ctx;
    dfa_dit *m;
    int B, H, W;
    const float *x, *t;
    const int *lab;
} dit_call;
static dfa_status dit_fwd(void *u, float *out) {
    dit_call *c = u;
    return dfa_dit_forward(c->ctx, c->m, c->B, c->H, c->W, c->x, c->t, c->lab, out);
}
static void dit_times(void *m, double *a, double *t, int reset) {
    if (reset)
        dfa_dit_reset_times(m);
    else
        dfa_dit_times(m, a, t);
}
static void dit_timer(void *m, int on) { dfa_dit_set_attn_timer(m, on); }

typedef struct pix_call {
    dfa_ctx *ctx;
    dfa_pixart *m;
    int B, H, W, L;
    const float *x, *t, *enc, *mask;
} pix_call;
static dfa_status pix_fwd(void *u, float *out) {
    pix_call *c = u;
    return dfa_pixart_forward(c->ctx, c->m, c->B, c->H, c->W, c->x, c->t, c->L, c->enc, c->mask, out);
}
static void pix_times(void *m, double *a, double *t, int reset) {
    if (reset)
        dfa_pixart_reset_times(m);
    else
        dfa_pixart_times(m, a, t);
}
static void pix_timer(void *m, int on) { dfa_pixart_set_attn_timer(m, on); }

static void bench_dit(dfa_ctx *ctx, const char *dir, row *r) {
    char path[2048];
    snprintf(r->name, sizeof r->name, "DiT-XL-2 512^2");
    snprintf(path, sizeof path, "%s/dit512_io.safetensors", dir);
    dfa_safetensors *io = NULL;
    dfa_dit *m = NULL;
    float *x = NULL, *t = NULL, *y = NULL, *ref = NULL, *fin = NULL, *sec = NULL, *out = NULL, *lat = NULL;
    dfa_sampler sch;
    int have_sch = 0;
    int64_t xs[4];
    size_t n = 0;
    struct stat sb;
    if (stat(path, &sb) != 0) { /* dfa alone */
        const char *cfg = "{\"_class_name\": \"DiTTransformer2DModel\", \"num_attention_heads\": 16,"
                          " \"attention_head_dim\": 72, \"in_channels\": 4, \"out_channels\": 8, \"num_layers\": 28,"
                          " \"sample_size\": 64, \"patch_size\": 2, \"num_embeds_ada_norm\": 1000}";
        if (make_folder(ctx, dir, "dit", cfg, 0) != DFA_OK) goto fail;
        unsigned long long rs = 99;
        xs[0] = 2, xs[1] = 4, xs[2] = 64, xs[3] = 64;
        n = (size_t)2 * 8 * 64 * 64;
        x = rand_buf((size_t)2 * 4 * 64 * 64, &rs, 1.7f);
        memcpy(x + 4 * 64 * 64, x, (size_t)4 * 64 * 64 * sizeof(float));
        t = malloc(2 * sizeof(float)), y = malloc(2 * sizeof(float));
        t[0] = t[1] = 500.0f, y[0] = 1000.0f, y[1] = 207.0f;
        r->steps = 50;
    } else {
        if (dfa_st_open(&io, path, &ctx->err) != DFA_OK) goto fail;
        x = bench_st_f32(io, "x", xs, NULL), t = bench_st_f32(io, "t", NULL, NULL),
            y = bench_st_f32(io, "y", NULL, NULL);
        ref = bench_st_f32(io, "out", NULL, &n), fin = bench_st_f32(io, "final", NULL, NULL),
            sec = bench_st_f32(io, "seconds", NULL, NULL);
        if (!x || !t || !y || !ref || !fin || !sec) {
            snprintf(r->msg, sizeof r->msg, "%s: missing tensors", path);
            goto done;
        }
        r->step_ref = sec[0], r->loop_ref = sec[1], r->steps = (int)sec[2];
    }
    snprintf(path, sizeof path, "%s/dit/transformer", dir);
    if (dfa_dit_load(ctx, path, &m) != DFA_OK) goto fail;
    const int B = (int)xs[0], H = (int)xs[2], W = (int)xs[3], lab[2] = {(int)y[0], (int)y[1]};
    const int p = dfa_dit_get_config(m)->patch_size;
    r->tokens = (H / p) * (W / p);
    out = malloc(n * sizeof(float));
    dit_call c = {ctx, m, B, H, W, x, t, lab};
    if (time_forward(dit_fwd, &c, dit_times, dit_timer, m, 5, out, r) != DFA_OK) goto fail;
    r->err_out = ref ? rel_l2(out, ref, n) : -1;
    const size_t nl = (size_t)4 * H * W;
    lat = malloc(nl * sizeof(float));
    snprintf(path, sizeof path, "%s/dit", dir);
    if (dfa_dit_open_sampler(ctx, path, 0, r->steps, nl, 0, &sch) != DFA_OK) goto fail;
    have_sch = 1;
    memcpy(lat, x, nl * sizeof(float));
    double t0 = bench_now();
    if (dfa_dit_sample(ctx, m, &sch, lab[1], 4.0f, H, W, lat, NULL, NULL) != DFA_OK) goto fail;
    r->loop = bench_now() - t0;
    r->err_final = fin ? rel_l2(lat, fin, nl) : -1;
    r->ok = 1;
    goto done;
fail:
    snprintf(r->msg, sizeof r->msg, "%s", dfa_ctx_error(ctx));
done:
    if (have_sch) dfa_sampler_free(ctx, &sch);
    dfa_dit_free(ctx, m);
    dfa_st_close(io);
    free(x), free(t), free(y), free(ref), free(fin), free(sec), free(out), free(lat);
}

static void bench_pixart(dfa_ctx *ctx, dfa_pixart *m, const char *dir, int res, row *r) {
    char path[2048];
    snprintf(r->name, sizeof r->name, "PixArt-Sigma-XL %d^2", res);
    snprintf(path, sizeof path, "%s/pixart%d_io.safetensors", dir, res);
    dfa_safetensors *io = NULL;
    float *x = NULL, *t = NULL, *enc = NULL, *mask = NULL, *ref = NULL, *fin = NULL, *sec = NULL, *out = NULL;
    float *lat = NULL;
    dfa_sampler sch;
    int have_sch = 0;
    int64_t xs[4], es[4];
    size_t n = 0;
    if (!m) {
        snprintf(r->msg, sizeof r->msg, "model not loaded");
        return;
    }
    struct stat sb;
    if (stat(path, &sb) != 0) { /* dfa alone: random inputs (the model came from make_folder) */
        unsigned long long rs = 1234 + (unsigned)res;
        const int h = res / 8, L = 300;
        xs[0] = 2, xs[1] = 4, xs[2] = h, xs[3] = h;
        es[0] = 2, es[1] = L, es[2] = 4096;
        n = (size_t)2 * 8 * h * h;
        x = rand_buf((size_t)2 * 4 * h * h, &rs, 1.7f);
        memcpy(x + (size_t)4 * h * h, x, (size_t)4 * h * h * sizeof(float));
        enc = rand_buf((size_t)2 * L * 4096, &rs, 0.35f);
        mask = malloc((size_t)2 * L * sizeof(float)), t = malloc(2 * sizeof(float));
        for (int i = 0; i < 2 * L; i++) mask[i] = (i < L ? i < 8 : i - L < 120) ? 1.0f : 0.0f;
        t[0] = t[1] = 500.0f;
        r->steps = 50;
    } else {
        if (dfa_st_open(&io, path, &ctx->err) != DFA_OK) goto fail;
        x = bench_st_f32(io, "x", xs, NULL), t = bench_st_f32(io, "t", NULL, NULL),
            enc = bench_st_f32(io, "enc", es, NULL);
        mask = bench_st_f32(io, "mask", NULL, NULL), ref = bench_st_f32(io, "out", NULL, &n),
            fin = bench_st_f32(io, "final", NULL, NULL);
        sec = bench_st_f32(io, "seconds", NULL, NULL);
        if (!x || !t || !enc || !mask || !ref || !fin || !sec) {
            snprintf(r->msg, sizeof r->msg, "%s: missing tensors", path);
            goto done;
        }
        r->step_ref = sec[0], r->loop_ref = sec[1], r->steps = (int)sec[2];
    }
    const int B = (int)xs[0], H = (int)xs[2], W = (int)xs[3], L = (int)es[1];
    const int p = dfa_pixart_get_config(m)->patch_size;
    r->tokens = (H / p) * (W / p);
    out = malloc(n * sizeof(float));
    pix_call c = {ctx, m, B, H, W, L, x, t, enc, mask};
    if (time_forward(pix_fwd, &c, pix_times, pix_timer, m, res <= 1024 ? 3 : 2, out, r) != DFA_OK) goto fail;
    r->err_out = ref ? rel_l2(out, ref, n) : -1;
    const size_t nl = (size_t)4 * H * W, tw = (size_t)L * es[2];
    lat = malloc(nl * sizeof(float));
    snprintf(path, sizeof path, "%s/pixart", dir);
    if (dfa_dit_open_sampler(ctx, path, 1, r->steps, nl, 0, &sch) != DFA_OK) goto fail;
    have_sch = 1;
    memcpy(lat, x, nl * sizeof(float));
    double t0 = bench_now();
    if (dfa_pixart_sample(ctx, m, &sch, 4.5f, H, W, L, enc + tw, mask + L, enc, mask, lat, NULL, NULL) != DFA_OK)
        goto fail;
    r->loop = bench_now() - t0;
    r->err_final = fin ? rel_l2(lat, fin, nl) : -1;
    r->ok = 1;
    goto done;
fail:
    snprintf(r->msg, sizeof r->msg, "%s", dfa_ctx_error(ctx));
done:
    if (have_sch) dfa_sampler_free(ctx, &sch);
    dfa_st_close(io);
    free(x), free(t), free(enc), free(mask), free(ref), free(fin), free(sec), free(out), free(lat);
}

static void fmt_ratio(char *buf, size_t n, double a, double b) {
    if (b > 0)
        snprintf(buf, n, "%.2f", a / b);
    else
        snprintf(buf, n, "-");
}

static void print_table(FILE *f, const row *rows, int n) {
    fprintf(f, "| case (CFG batch 2) | tokens | dfa step ms | diffusers step ms | dfa/diffusers | dfa attn %% (timed"
               " step ms) | dfa loop s | diffusers loop s | dfa/diffusers | rel L2 out | rel L2 final |\n");
    fprintf(f, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < n; i++) {
        const row *r = &rows[i];
        char sr[32], lr[32], so[32], lo[32], eo[32], ef[32];
        snprintf(so, sizeof so, r->step_ref > 0 ? "%.1f" : "-", 1e3 * r->step_ref);
        snprintf(lo, sizeof lo, r->loop_ref > 0 ? "%.2f" : "-", r->loop_ref);
        if (!r->ok) {
            fprintf(f, "| %s | %d | failed: %s | %s | | | | %s | | | |\n", r->name, r->tokens, r->msg, so, lo);
            continue;
        }
        fmt_ratio(sr, sizeof sr, r->step, r->step_ref);
        fmt_ratio(lr, sizeof lr, r->loop, r->loop_ref);
        snprintf(eo, sizeof eo, r->err_out >= 0 ? "%.2e" : "-", r->err_out);
        snprintf(ef, sizeof ef, r->err_final >= 0 ? "%.2e" : "-", r->err_final);
        fprintf(f, "| %s | %d | %.1f | %s | %s | %.1f (%.1f) | %.2f (%d steps) | %s | %s | %s | %s |\n", r->name,
                r->tokens, 1e3 * r->step, so, sr, 100 * r->attn_share, 1e3 * r->step_timed, r->loop, r->steps, lo, lr,
                eo, ef);
    }
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/tmp/dfa_dit_gpu";
    const char *md = argc > 2 ? argv[2] : NULL;
    dfa_ctx_params pp = dfa_ctx_default_params();
    pp.backend = DFA_BACKEND_CUDA;
    dfa_ctx *ctx = NULL;
    char e[256], path[2048];
    if (dfa_ctx_init(&ctx, &pp, e, sizeof e) != DFA_OK) return fprintf(stderr, "%s\n", e), 1;
    row rows[3];
    memset(rows, 0, sizeof rows);
    bench_dit(ctx, dir, &rows[0]);
    fprintf(stderr, "dit done%s%s\n", rows[0].ok ? "" : ": ", rows[0].msg);
    dfa_pixart *pm = NULL;
    snprintf(path, sizeof path, "%s/pixart/transformer/config.json", dir);
    struct stat sb;
    if (stat(path, &sb) != 0) { /* no diffusers folder: dfa alone on random weights */
        const char *cfg = "{\"_class_name\": \"PixArtTransformer2DModel\", \"num_attention_heads\": 16,"
                          " \"attention_head_dim\": 72, \"in_channels\": 4, \"out_channels\": 8, \"num_layers\": 28,"
                          " \"cross_attention_dim\": 1152, \"sample_size\": 128, \"patch_size\": 2,"
                          " \"caption_channels\": 4096, \"interpolation_scale\": 2, \"use_additional_conditions\": false,"
                          " \"norm_type\": \"ada_norm_single\", \"norm_eps\": 1e-6}";
        if (make_folder(ctx, dir, "pixart", cfg, 1) != DFA_OK) fprintf(stderr, "pixart: %s\n", dfa_ctx_error(ctx));
    }
    snprintf(path, sizeof path, "%s/pixart/transformer", dir);
    if (dfa_pixart_load(ctx, path, &pm) != DFA_OK) fprintf(stderr, "pixart: %s\n", dfa_ctx_error(ctx));
    bench_pixart(ctx, pm, dir, 1024, &rows[1]);
    fprintf(stderr, "pixart 1024 done%s%s\n", rows[1].ok ? "" : ": ", rows[1].msg);
    bench_pixart(ctx, pm, dir, 2048, &rows[2]);
    fprintf(stderr, "pixart 2048 done%s%s\n", rows[2].ok ? "" : ": ", rows[2].msg);
    dfa_pixart_free(ctx, pm);
    print_table(stdout, rows, 3);
    if (md) {
        FILE *f = fopen(md, "w");
        if (f) {
            fprintf(f, "# DiT / PixArt on the GPU, dense: dfa vs diffusers (bf16, SDPA), same random weights\n\n");
            print_table(f, rows, 3);
            fprintf(f, "\nstep = one transformer forward of the CFG batch (median); loop = DPM-Solver++ with CFG "
                       "(transformer + sampler, no text encoder / VAE); attn %% = dfa's attention timer / forward "
                       "time in one forward run with the timer on (synchronised around each attention call; its "
                       "time in parentheses), the other dfa times with it off; rel L2 = ||dfa - diffusers|| / "
                       "||diffusers|| of the forward output and of the final latents.\n");
            fclose(f);
        }
    }
    dfa_ctx_free(ctx);
    int rc = 0;
    for (int i = 0; i < 3; i++) rc |= !rows[i].ok;
    return rc;
}
