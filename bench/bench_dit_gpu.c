/* bench_dit_gpu.c - DiT-XL-2 (512^2) and PixArt-Sigma-XL (1024^2, 2048^2) on the GPU, dense (no
 * plan): one transformer forward of the CFG batch 2 and a 50-step DPM-Solver++ loop with CFG,
 * against diffusers' times for the same calls on the same random weights (bench/dit_gpu.py,
 * same run), plus dfa's attention share of the forward (its attention timer) and the relative L2
 * distance of dfa's forward output and final latents from diffusers' (both bf16).
 * usage: build/bench_dit_gpu DIR [out.md]   (after python3 bench/dit_gpu.py DIR); see dit_gpu.sh */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/ctx.h"
#include "io/safetensors.h"
#include "models/dit.h"
#include "models/dit_pipe.h"
#include "models/pixart.h"
#include "sample/sampler.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static float *get(dfa_safetensors *st, const char *name, int64_t *shape, size_t *n) {
    const dfa_st_tensor *t = dfa_st_find(st, name);
    if (!t) return NULL;
    size_t k = 1;
    for (int i = 0; i < t->ndim; i++) {
        k *= (size_t)t->shape[i];
        if (shape) shape[i] = t->shape[i];
    }
    float *x = malloc(k * sizeof(float));
    dfa_error err = {0};
    if (x && dfa_st_load(st, name, DFA_F32, -1, NULL, x, DFA_DEV_CPU, NULL, &err) != DFA_OK) {
        free(x);
        return NULL;
    }
    if (n) *n = k;
    return x;
}

static double rel_l2(const float *a, const float *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
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
        const double t0 = now();
        s = f(user, out); /* returns after the output is back on the host: synchronised */
        ts[i] = now() - t0;
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
    if (dfa_st_open(&io, path, &ctx->err) != DFA_OK) goto fail;
    x = get(io, "x", xs, NULL), t = get(io, "t", NULL, NULL), y = get(io, "y", NULL, NULL);
    ref = get(io, "out", NULL, &n), fin = get(io, "final", NULL, NULL), sec = get(io, "seconds", NULL, NULL);
    if (!x || !t || !y || !ref || !fin || !sec) {
        snprintf(r->msg, sizeof r->msg, "%s: missing tensors", path);
        goto done;
    }
    r->step_ref = sec[0], r->loop_ref = sec[1], r->steps = (int)sec[2];
    snprintf(path, sizeof path, "%s/dit/transformer", dir);
    if (dfa_dit_load(ctx, path, &m) != DFA_OK) goto fail;
    const int B = (int)xs[0], H = (int)xs[2], W = (int)xs[3], lab[2] = {(int)y[0], (int)y[1]};
    const int p = dfa_dit_get_config(m)->patch_size;
    r->tokens = (H / p) * (W / p);
    out = malloc(n * sizeof(float));
    dit_call c = {ctx, m, B, H, W, x, t, lab};
    if (time_forward(dit_fwd, &c, dit_times, dit_timer, m, 5, out, r) != DFA_OK) goto fail;
    r->err_out = rel_l2(out, ref, n);
    const size_t nl = (size_t)4 * H * W;
    lat = malloc(nl * sizeof(float));
    snprintf(path, sizeof path, "%s/dit", dir);
    if (dfa_dit_open_sampler(ctx, path, 0, r->steps, nl, 0, &sch) != DFA_OK) goto fail;
    have_sch = 1;
    memcpy(lat, x, nl * sizeof(float));
    double t0 = now();
    if (dfa_dit_sample(ctx, m, &sch, lab[1], 4.0f, H, W, lat, NULL, NULL) != DFA_OK) goto fail;
    r->loop = now() - t0;
    r->err_final = rel_l2(lat, fin, nl);
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
    if (dfa_st_open(&io, path, &ctx->err) != DFA_OK) goto fail;
    x = get(io, "x", xs, NULL), t = get(io, "t", NULL, NULL), enc = get(io, "enc", es, NULL);
    mask = get(io, "mask", NULL, NULL), ref = get(io, "out", NULL, &n), fin = get(io, "final", NULL, NULL);
    sec = get(io, "seconds", NULL, NULL);
    if (!x || !t || !enc || !mask || !ref || !fin || !sec) {
        snprintf(r->msg, sizeof r->msg, "%s: missing tensors", path);
        goto done;
    }
    r->step_ref = sec[0], r->loop_ref = sec[1], r->steps = (int)sec[2];
    const int B = (int)xs[0], H = (int)xs[2], W = (int)xs[3], L = (int)es[1];
    const int p = dfa_pixart_get_config(m)->patch_size;
    r->tokens = (H / p) * (W / p);
    out = malloc(n * sizeof(float));
    pix_call c = {ctx, m, B, H, W, L, x, t, enc, mask};
    if (time_forward(pix_fwd, &c, pix_times, pix_timer, m, res <= 1024 ? 3 : 2, out, r) != DFA_OK) goto fail;
    r->err_out = rel_l2(out, ref, n);
    const size_t nl = (size_t)4 * H * W, tw = (size_t)L * es[2];
    lat = malloc(nl * sizeof(float));
    snprintf(path, sizeof path, "%s/pixart", dir);
    if (dfa_dit_open_sampler(ctx, path, 1, r->steps, nl, 0, &sch) != DFA_OK) goto fail;
    have_sch = 1;
    memcpy(lat, x, nl * sizeof(float));
    double t0 = now();
    if (dfa_pixart_sample(ctx, m, &sch, 4.5f, H, W, L, enc + tw, mask + L, enc, mask, lat, NULL, NULL) != DFA_OK)
        goto fail;
    r->loop = now() - t0;
    r->err_final = rel_l2(lat, fin, nl);
    r->ok = 1;
    goto done;
fail:
    snprintf(r->msg, sizeof r->msg, "%s", dfa_ctx_error(ctx));
done:
    if (have_sch) dfa_sampler_free(ctx, &sch);
    dfa_st_close(io);
    free(x), free(t), free(enc), free(mask), free(ref), free(fin), free(sec), free(out), free(lat);
}

static void print_table(FILE *f, const row *rows, int n) {
    fprintf(f, "| case (CFG batch 2) | tokens | dfa step ms | diffusers step ms | dfa/diffusers | dfa attn %% (timed"
               " step ms) | dfa loop s | diffusers loop s | dfa/diffusers | rel L2 out | rel L2 final |\n");
    fprintf(f, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < n; i++) {
        const row *r = &rows[i];
        if (!r->ok) {
            fprintf(f, "| %s | %d | failed: %s | %.1f | | | | %.2f | | | |\n", r->name, r->tokens, r->msg,
                    1e3 * r->step_ref, r->loop_ref);
            continue;
        }
        fprintf(f, "| %s | %d | %.1f | %.1f | %.2f | %.1f (%.1f) | %.2f (%d steps) | %.2f | %.2f | %.2e | %.2e |\n",
                r->name, r->tokens, 1e3 * r->step, 1e3 * r->step_ref, r->step / r->step_ref, 100 * r->attn_share,
                1e3 * r->step_timed, r->loop, r->steps, r->loop_ref, r->loop / r->loop_ref, r->err_out, r->err_final);
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
