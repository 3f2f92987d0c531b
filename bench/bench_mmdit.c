/* bench_mmdit.c - time one MMDiT transformer forward (FLUX.1 or SD3) and its attention share,
 * on random bf16 weights written once to a folder (the same folder bench/bench_mmdit_diffusers.py
 * loads into diffusers, so both time the same weights and shapes).
 *
 *   bench_mmdit --preset flux-dev --res 1024 --dir /tmp/fluxdev [--cuda] [--reps 3] [--txt 512]
 *   bench_mmdit --preset sd3-medium --res 1024 --dir /tmp/sd3m
 *   presets: flux-dev (19 + 38 blocks, 24 x 128), sd3-medium (24 blocks, 24 x 64), flux-small,
 *   sd3-small (2-4 blocks, for a quick CPU run).
 * Prints the median forward time over --reps runs after one warm-up, and the attention share
 * (papers: V2 Fig. 8, V1 Fig. 1). --check FILE (from bench_mmdit_diffusers.py --save FILE) runs
 * on that file's inputs and prints the relative error against diffusers' output. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/ctx.h"
#include "io/safetensors.h"
#include "models/flux.h"
#include "models/mmdit.h"
#include "models/sd3.h"

typedef struct preset {
    const char *name, *family, *config;
} preset;

static const preset presets[] = {
    {"flux-dev", "flux",
     "{\"_class_name\": \"FluxTransformer2DModel\", \"in_channels\": 64, \"num_layers\": 19, \"num_single_layers\": 38,"
     " \"attention_head_dim\": 128, \"num_attention_heads\": 24, \"joint_attention_dim\": 4096,"
     " \"pooled_projection_dim\": 768, \"guidance_embeds\": true, \"axes_dims_rope\": [16, 56, 56], \"patch_size\": 1}"},
    {"flux-small", "flux",
     "{\"_class_name\": \"FluxTransformer2DModel\", \"in_channels\": 64, \"num_layers\": 2, \"num_single_layers\": 4,"
     " \"attention_head_dim\": 128, \"num_attention_heads\": 4, \"joint_attention_dim\": 512,"
     " \"pooled_projection_dim\": 128, \"guidance_embeds\": true, \"axes_dims_rope\": [16, 56, 56], \"patch_size\": 1}"},
    {"sd3-medium", "sd3",
     "{\"_class_name\": \"SD3Transformer2DModel\", \"sample_size\": 128, \"patch_size\": 2, \"in_channels\": 16,"
     " \"num_layers\": 24, \"attention_head_dim\": 64, \"num_attention_heads\": 24, \"joint_attention_dim\": 4096,"
     " \"caption_projection_dim\": 1536, \"pooled_projection_dim\": 2048, \"out_channels\": 16,"
     " \"pos_embed_max_size\": 192}"},
    {"sd3-small", "sd3",
     "{\"_class_name\": \"SD3Transformer2DModel\", \"sample_size\": 128, \"patch_size\": 2, \"in_channels\": 16,"
     " \"num_layers\": 3, \"attention_head_dim\": 64, \"num_attention_heads\": 4, \"joint_attention_dim\": 512,"
     " \"caption_projection_dim\": 256, \"pooled_projection_dim\": 256, \"out_channels\": 16,"
     " \"pos_embed_max_size\": 192}"},
};

static double now(void) { return dfa_mmdit_now(); }

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    const char *pname = "flux-small", *dir = "/tmp/dfa_bench_mmdit", *check = NULL;
    int res = 512, txt = -1, reps = 3, cuda = 0, threads = 0, batch = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--preset") && v) pname = argv[++i];
        else if (!strcmp(a, "--dir") && v) dir = argv[++i];
        else if (!strcmp(a, "--res") && v) res = atoi(argv[++i]);
        else if (!strcmp(a, "--txt") && v) txt = atoi(argv[++i]);
        else if (!strcmp(a, "--reps") && v) reps = atoi(argv[++i]);
        else if (!strcmp(a, "--threads") && v) threads = atoi(argv[++i]);
        else if (!strcmp(a, "--batch") && v) batch = atoi(argv[++i]);
        else if (!strcmp(a, "--check") && v) check = argv[++i];
        else if (!strcmp(a, "--cuda")) cuda = 1;
        else {
            fprintf(stderr, "usage: bench_mmdit [--preset flux-dev|flux-small|sd3-medium|sd3-small] [--res PX] "
                            "[--txt T] [--reps R] [--batch B] [--dir DIR] [--cuda] [--threads T] [--check FILE]\n");
            return 2;
        }
    }
    const preset *p = NULL;
    for (size_t i = 0; i < sizeof presets / sizeof *presets; i++)
        if (!strcmp(presets[i].name, pname)) p = &presets[i];
    if (!p || res < 16 || res % 16 || reps < 1) {
        fprintf(stderr, "bench_mmdit: unknown preset '%s' or bad --res %d / --reps %d\n", pname, res, reps);
        return 2;
    }
    const int flux = !strcmp(p->family, "flux");
    if (txt < 0) txt = flux ? 512 : 333;
    if (batch < 1) batch = flux ? 1 : 2; /* SD3 runs its CFG pair in one batch */
    char path[1200], cfg_path[1300];
    snprintf(path, sizeof path, "%s/transformer", dir);
    mkdir(dir, 0755);
    mkdir(path, 0755);
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", path);
    dfa_ctx_params cp = dfa_ctx_default_params();
    cp.n_threads = threads;
    cp.log_level = DFA_LOG_WARN;
    dfa_ctx *cpu = NULL, *ctx = NULL;
    char err[256];
    if (dfa_ctx_init(&cpu, &cp, err, sizeof err) != DFA_OK) return fprintf(stderr, "%s\n", err), 1;
    cp.backend = cuda ? DFA_BACKEND_CUDA : DFA_BACKEND_CPU;
    if (dfa_ctx_init(&ctx, &cp, err, sizeof err) != DFA_OK) return fprintf(stderr, "%s\n", err), 1;
    /* write config + random weights once per folder (kept for the diffusers side) */
    char wpath[1300];
    snprintf(wpath, sizeof wpath, "%s/diffusion_pytorch_model.safetensors", path);
    struct stat sb;
    if (stat(wpath, &sb) != 0) {
        FILE *f = fopen(cfg_path, "w");
        if (!f) return fprintf(stderr, "cannot write %s\n", cfg_path), 1;
        fputs(p->config, f);
        fclose(f);
        double t0 = now();
        dfa_status s = flux ? dfa_flux_write_random(cpu, dir, 1) : dfa_sd3_write_random(cpu, dir, 1);
        if (s != DFA_OK) return fprintf(stderr, "bench_mmdit: %s\n", dfa_ctx_error(cpu)), 1;
        fprintf(stderr, "wrote random weights to %s (%.1f s)\n", wpath, now() - t0);
    }
    dfa_flux *fm = NULL;
    dfa_sd3 *sm = NULL;
    dfa_status s = flux ? dfa_flux_load(ctx, dir, &fm) : dfa_sd3_load(ctx, dir, &sm);
    if (s != DFA_OK) return fprintf(stderr, "bench_mmdit: %s\n", dfa_ctx_error(ctx)), 1;
    const int lat = res / 8;
    int n_img, in_ch, J, P;
    if (flux) {
        const dfa_flux_config *c = dfa_flux_get_config(fm);
        n_img = (lat / 2) * (lat / 2), in_ch = c->in_channels, J = c->joint_attention_dim, P = c->pooled_projection_dim;
    } else {
        const dfa_sd3_config *c = dfa_sd3_get_config(sm);
        n_img = (lat / c->patch_size) * (lat / c->patch_size), in_ch = c->in_channels, J = c->joint_attention_dim;
        P = c->pooled_projection_dim;
    }
    const size_t nx = (size_t)batch * n_img * in_ch * (flux ? 1 : 4 / 4), nt = (size_t)batch * txt * J;
    const size_t nlat = flux ? nx : (size_t)batch * in_ch * lat * lat;
    float *x = malloc(nlat * 4), *t = malloc(nt * 4), *pool = malloc((size_t)batch * P * 4), *out = malloc(nlat * 4);
    float *img_ids = malloc((size_t)n_img * 3 * 4), *txt_ids = calloc((size_t)txt * 3, 4);
    if (!x || !t || !pool || !out || !img_ids || !txt_ids) return fprintf(stderr, "out of memory\n"), 1;
    unsigned long long r = 88172645463325252ULL;
    for (size_t i = 0; i < nlat; i++) r ^= r << 13, r ^= r >> 7, r ^= r << 17, x[i] = (float)((r >> 11) * 0x1p-53 * 2 - 1);
    for (size_t i = 0; i < nt; i++) r ^= r << 13, r ^= r >> 7, r ^= r << 17, t[i] = (float)((r >> 11) * 0x1p-53 * 2 - 1);
    for (int i = 0; i < batch * P; i++) pool[i] = 0.1f * (float)(i % 7);
    if (flux) dfa_flux_image_ids(lat / 2, lat / 2, img_ids);
    float ts[64], gs[64];
    for (int b = 0; b < batch && b < 64; b++) ts[b] = flux ? 0.5f : 500.0f, gs[b] = 3.5f;
    float *ref = NULL;
    if (check) { /* inputs (and the reference output) from diffusers' side; shapes must agree */
        dfa_safetensors *st = NULL;
        dfa_error e = {0};
        const int64_t sx[4] = {batch, flux ? n_img : in_ch, flux ? in_ch : lat, lat}, se[3] = {batch, txt, J},
                      sp[2] = {batch, P}, sb[1] = {batch};
        ref = malloc(nlat * 4);
        s = dfa_st_open(&st, check, &e);
        if (s == DFA_OK) s = dfa_st_load(st, "x", DFA_F32, flux ? 3 : 4, sx, x, DFA_DEV_CPU, NULL, &e);
        if (s == DFA_OK) s = dfa_st_load(st, "enc", DFA_F32, 3, se, t, DFA_DEV_CPU, NULL, &e);
        if (s == DFA_OK) s = dfa_st_load(st, "pooled", DFA_F32, 2, sp, pool, DFA_DEV_CPU, NULL, &e);
        if (s == DFA_OK) s = dfa_st_load(st, "timestep", DFA_F32, 1, sb, ts, DFA_DEV_CPU, NULL, &e);
        if (s == DFA_OK && dfa_st_find(st, "guidance")) s = dfa_st_load(st, "guidance", DFA_F32, 1, sb, gs, DFA_DEV_CPU, NULL, &e);
        if (s == DFA_OK) s = dfa_st_load(st, "out", DFA_F32, flux ? 3 : 4, sx, ref, DFA_DEV_CPU, NULL, &e);
        dfa_st_close(st);
        if (s != DFA_OK) return fprintf(stderr, "bench_mmdit --check: %s\n", e.msg), 1;
    }
    double *tm = malloc((size_t)(reps + 1) * sizeof(double)), attn_tot = 0, fwd_tot = 0;
    for (int k = -1; k < reps; k++) {
        double a0 = 0, t0 = 0;
        if (flux) dfa_flux_times(fm, &a0, &t0); else dfa_sd3_times(sm, &a0, &t0);
        double w0 = now();
        s = flux ? dfa_flux_forward(ctx, fm, batch, n_img, txt, x, t, pool, ts,
                                    dfa_flux_get_config(fm)->guidance_embeds ? gs : NULL, txt_ids, img_ids, out)
                 : dfa_sd3_forward(ctx, sm, batch, lat, lat, txt, x, t, pool, ts, out);
        double w1 = now();
        if (s != DFA_OK) return fprintf(stderr, "bench_mmdit: %s\n", dfa_ctx_error(ctx)), 1;
        double a1 = 0, t1 = 0;
        if (flux) dfa_flux_times(fm, &a1, &t1); else dfa_sd3_times(sm, &a1, &t1);
        if (k >= 0) {
            tm[k] = w1 - w0;
            attn_tot += a1 - a0;
            fwd_tot += t1 - t0;
        }
    }
    qsort(tm, (size_t)reps, sizeof *tm, cmp_d);
    if (ref) {
        double md = 0, mr = 0, num = 0, den = 0;
        for (size_t i = 0; i < nlat; i++) {
            double d = fabs((double)out[i] - ref[i]);
            if (!(d <= md)) md = d;
            if (fabs(ref[i]) > mr) mr = fabs(ref[i]);
            num += d * d;
            den += (double)ref[i] * ref[i];
        }
        printf("check against %s: max rel err %.3g, rel L2 %.3g\n", check, md / (mr > 0 ? mr : 1),
               sqrt(num / (den > 0 ? den : 1)));
        free(ref);
    }
    printf("%s %s %dx%d px: %d image + %d text tokens, batch %d: forward %.3f s (median of %d), attention %.1f%% "
           "of the forward\n", pname, cuda ? "CUDA" : "CPU", res, res, n_img, txt, batch, tm[reps / 2], reps,
           fwd_tot > 0 ? 100.0 * attn_tot / fwd_tot : 0.0);
    free(x), free(t), free(pool), free(out), free(img_ids), free(txt_ids), free(tm);
    dfa_flux_free(ctx, fm);
    dfa_sd3_free(ctx, sm);
    dfa_ctx_free(ctx);
    dfa_ctx_free(cpu);
    return 0;
}
