/* bench_dit_real.c - DiT-XL-2, PixArt-Sigma-XL and SD-VAE at their real sizes (random weights
 * from bench/dit_real.py), CPU: one forward / decode each, timed after a warm-up, against
 * diffusers' time for the same call measured by dit_real.py (ratio dfa / diffusers), plus
 * dfa's max relative error against diffusers' output and the attention share of the forward.
 * usage: python3 bench/dit_real.py DIR [threads]; build/bench_dit_real DIR [threads] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/ctx.h"
#include "io/safetensors.h"
#include "models/dit.h"
#include "models/pixart.h"
#include "models/vae.h"

#include "bench_util.h"

static double max_rel(const float *a, const float *b, size_t n) {
    double md = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        md = d > md || d != d ? d : md;
        mb = fabs((double)b[i]) > mb ? fabs((double)b[i]) : mb;
    }
    return mb > 0 ? md / mb : md;
}

static dfa_safetensors *open_io(const char *dir, const char *name) {
    char p[2048];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    dfa_safetensors *st = NULL;
    dfa_error err = {0};
    if (dfa_st_open(&st, p, &err) != DFA_OK) fprintf(stderr, "%s\n", err.msg);
    return st;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/tmp/dfa_real";
    dfa_ctx_params pp = dfa_ctx_default_params();
    if (argc > 2) pp.n_threads = atoi(argv[2]);
    dfa_ctx *ctx = NULL;
    char e[256], path[2048];
    if (dfa_ctx_init(&ctx, &pp, e, sizeof e) != DFA_OK) return fprintf(stderr, "%s\n", e), 1;
    printf("%-22s %10s %10s %8s %10s %9s\n", "model", "dfa s", "diffusers", "ratio", "max rel", "attn %");
    int rc = 0;
    dfa_safetensors *io = open_io(dir, "dit_io.safetensors");
    dfa_dit *dm = NULL;
    snprintf(path, sizeof path, "%s/dit/transformer", dir);
    if (io && dfa_dit_load(ctx, path, &dm) == DFA_OK) {
        int64_t xs[8];
        size_t n = 0;
        float *x = bench_st_f32(io, "x", xs, NULL), *t = bench_st_f32(io, "t", NULL, NULL),
            *y = bench_st_f32(io, "y", NULL, NULL);
        float *ref = bench_st_f32(io, "out", NULL, &n), *sec = bench_st_f32(io, "seconds", NULL, NULL);
        int lab[2] = {(int)y[0], (int)y[1]};
        float *out = malloc(n * sizeof(float));
        dfa_dit_forward(ctx, dm, (int)xs[0], (int)xs[2], (int)xs[3], x, t, lab, out); /* warm-up */
        dfa_dit_reset_times(dm);
        double t0 = bench_now();
        rc |= dfa_dit_forward(ctx, dm, (int)xs[0], (int)xs[2], (int)xs[3], x, t, lab, out) != DFA_OK;
        double dt = bench_now() - t0, attn = 0, tot = 0;
        dfa_dit_times(dm, &attn, &tot);
        printf("%-22s %10.3f %10.3f %8.2f %10.2e %8.1f%%\n", "DiT-XL-2 (B=2, 16x16)", dt, sec[0], dt / sec[0],
               max_rel(out, ref, n), 100 * attn / tot);
        free(x), free(t), free(y), free(ref), free(sec), free(out);
    } else {
        fprintf(stderr, "dit: %s\n", dfa_ctx_error(ctx));
        rc = 1;
    }
    dfa_dit_free(ctx, dm);
    dfa_st_close(io);
    io = open_io(dir, "pixart_io.safetensors");
    dfa_pixart *pm = NULL;
    snprintf(path, sizeof path, "%s/pixart/transformer", dir);
    if (io && dfa_pixart_load(ctx, path, &pm) == DFA_OK) {
        int64_t xs[8], es[8];
        size_t n = 0;
        float *x = bench_st_f32(io, "x", xs, NULL), *t = bench_st_f32(io, "t", NULL, NULL),
            *enc = bench_st_f32(io, "enc", es, NULL);
        float *mask = bench_st_f32(io, "mask", NULL, NULL), *ref = bench_st_f32(io, "out", NULL, &n),
            *sec = bench_st_f32(io, "seconds", NULL, NULL);
        float *out = malloc(n * sizeof(float));
        dfa_pixart_forward(ctx, pm, (int)xs[0], (int)xs[2], (int)xs[3], x, t, (int)es[1], enc, mask, out);
        dfa_pixart_reset_times(pm);
        double t0 = bench_now();
        rc |= dfa_pixart_forward(ctx, pm, (int)xs[0], (int)xs[2], (int)xs[3], x, t, (int)es[1], enc, mask, out) !=
              DFA_OK;
        double dt = bench_now() - t0, attn = 0, tot = 0;
        dfa_pixart_times(pm, &attn, &tot);
        printf("%-22s %10.3f %10.3f %8.2f %10.2e %8.1f%%\n", "PixArt-Sigma-XL (16x24)", dt, sec[0], dt / sec[0],
               max_rel(out, ref, n), 100 * attn / tot);
        free(x), free(t), free(enc), free(mask), free(ref), free(sec), free(out);
    } else {
        fprintf(stderr, "pixart: %s\n", dfa_ctx_error(ctx));
        rc = 1;
    }
    dfa_pixart_free(ctx, pm);
    dfa_st_close(io);
    io = open_io(dir, "vae_io.safetensors");
    dfa_vae *vae = NULL;
    snprintf(path, sizeof path, "%s/vae", dir);
    if (io && dfa_vae_load(ctx, path, &vae) == DFA_OK) {
        int64_t zs[8];
        size_t n = 0;
        float *z = bench_st_f32(io, "latents", zs, NULL), *ref = bench_st_f32(io, "image", NULL, &n),
            *sec = bench_st_f32(io, "seconds", NULL, NULL);
        float *img = malloc(n * sizeof(float));
        dfa_vae_decode(ctx, vae, z, (int)zs[2], (int)zs[3], img);
        double t0 = bench_now();
        rc |= dfa_vae_decode(ctx, vae, z, (int)zs[2], (int)zs[3], img) != DFA_OK;
        double dt = bench_now() - t0;
        printf("%-22s %10.3f %10.3f %8.2f %10.2e %9s\n", "SD VAE decode (16x12)", dt, sec[0], dt / sec[0],
               max_rel(img, ref, n), "-");
        free(z), free(ref), free(sec), free(img);
    } else {
        fprintf(stderr, "vae: %s\n", dfa_ctx_error(ctx));
        rc = 1;
    }
    dfa_vae_free(ctx, vae);
    dfa_st_close(io);
    dfa_ctx_free(ctx);
    return rc;
}
