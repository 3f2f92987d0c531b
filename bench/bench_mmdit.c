/* bench_mmdit.c - time MMDiT transformer forwards (FLUX.1 or SD3) and a sampling loop, with
 * attention's share, on random bf16 weights in a diffusers-layout folder shared with
 * bench/bench_mmdit_diffusers.py, so both sides time the same weights, shapes and inputs.
 *
 *   bench_mmdit --preset flux-dev --dir DIR --res 1024,2048 --steps 50,10 [--cuda] [--reps 3] [--check]
 *   bench_mmdit --preset sd3-medium --dir DIR --res 1024 --steps 50 --cuda --check
 *   presets: flux-dev (19 + 38 blocks, 24 x 128, T5 512 tokens), sd3-medium (24 blocks, 24 x 64,
 *   CFG batch 2, 333 tokens), flux-small, sd3-small (2-4 blocks, for a quick CPU run).
 * Weights: DIR/transformer/{config.json, diffusion_pytorch_model.safetensors}; written here with
 * random bf16 values when absent (the device script lets the diffusers side write them).
 * Per resolution: the median of --reps forwards after one warm-up and attention's share of them
 * (the model's attention timer; papers: V2 Fig. 8, V1 Fig. 1), the same forwards with the
 * conditioning held (text uploaded once, as dfa_*_generate runs them); with --steps N > 0 a whole N-step
 * sampling loop (dfa_flux_generate / dfa_sd3_generate: FLUX-dev guidance 3.5, SD3 CFG 7 on the
 * batch [uncond, cond]) and its attention share. --check: inputs from DIR/io_<res>.safetensors
 * (bench_mmdit_diffusers.py --save-io) and the relative error of the forward against diffusers'
 * output saved there; without it, seeded random inputs. The loop overhead line: loop ms/step minus
 * forward ms (what the sampler adds per step; negative where the loop's held text upload saves
 * more than the sampler costs) and minus the held forward. --graph (SD3, CUDA): the loop again with
 * its forward as a CUDA Graph (dfa_sd3_set_cuda_graph): ms/step and whether the latents are
 * bit-equal to the eager loop's. On CUDA, one more held forward with the GEMM timer on is split
 * into attention / GEMMs / the rest (CUDA events; printed once per resolution).
 * --plan-mix (CUDA, with --steps): after the dense loop, the same loop under a synthetic V2-like
 * plan (make_mix_plan: the first 2 steps FULL, then per layer and step half the heads ARROW with a
 * band of 1/8 of the visual tiles, a quarter CACHE, a quarter FULL, heads shuffled per layer and
 * step: nearly every entry its own work list, the prepare's worst case), prepared before the timed
 * loop (dfa_attn_prepare: its time, work lists and cache bytes printed): the end-to-end speedup over the dense loop of the
 * same run, the attention share of both and the attention-time ratio (the number the papers
 * report: V2 ~1.5x end to end at 2K on FLUX), and that the planned loop made no device allocation
 * and built no work list. Its RESULT line has "kind": "plan".
 * Besides the human lines, one `RESULT {json}` line per resolution (bench/engines_table.py). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "attn/attn_state.h"
#include "core/ctx.h"
#include "core/log.h"
#include "io/safetensors.h"
#include "models/flux.h"
#include "models/mmdit.h"
#include "models/mmdit_pipe.h"
#include "models/sd3.h"
#include "plan/plan.h"
#include "sample/flow.h"

#define MAX_RES 8

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

typedef struct bench {
    dfa_ctx *ctx;
    dfa_flux *fm;
    dfa_sd3 *sm;
    const char *dir, *pname;
    int flux, batch, txt, reps, cuda, check, graph, plan_mix;
} bench;

static double now(void) { return dfa_now_s(); }

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ||a - ref|| / ||ref|| in double; optionally max |a - ref| / max |ref| and the non-finite count of a */
static double rel_l2(const float *a, const float *ref, size_t n, double *max_rel, size_t *nonfinite) {
    double md = 0, mr = 0, num = 0, den = 0;
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i])) bad++;
        double d = fabs((double)a[i] - ref[i]);
        if (!(d <= md)) md = d;
        if (fabs(ref[i]) > mr) mr = fabs(ref[i]);
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    if (max_rel) *max_rel = md / (mr > 0 ? mr : 1);
    if (nonfinite) *nonfinite = bad;
    return sqrt(num / (den > 0 ? den : 1));
}

static void times(const bench *b, double *attn, double *tot) {
    if (b->flux) dfa_flux_times(b->fm, attn, tot);
    else dfa_sd3_times(b->sm, attn, tot);
}

static void hold(const bench *b, int on) {
    if (b->flux) dfa_flux_hold_cond(b->fm, on);
    else dfa_sd3_hold_cond(b->sm, on);
}

static void gemm_timer(const bench *b, double *secs) {
    if (b->flux) dfa_flux_set_gemm_timer(b->fm, secs);
    else dfa_sd3_set_gemm_timer(b->sm, secs);
}

static int parse_list(const char *s, int *out, int max) {
    int n = 0;
    for (const char *p = s; *p && n < max;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p) return -1;
        out[n++] = (int)v;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return n;
}

static int fail(bench *b, const char *what) {
    fprintf(stderr, "bench_mmdit: %s: %s\n", what, dfa_ctx_error(b->ctx));
    return 1;
}

/* The synthetic plan of --plan-mix for this model at n_img image + txt text tokens (see the top). */
static dfa_status make_mix_plan(const bench *b, int n_img, int txt, int steps, dfa_plan *p, dfa_error *err) {
    dfa_attn_layout lay = {.n_vis = n_img, .n_text = txt, .text_first = b->flux, .block = DFA_PLAN_DEFAULT_BLOCK};
    int L, H;
    if (b->flux) L = dfa_flux_attn_layers(b->fm), H = dfa_flux_get_config(b->fm)->n_heads;
    else L = dfa_sd3_attn_layers(b->sm), H = dfa_sd3_get_config(b->sm)->n_heads;
    DFA_TRY(dfa_plan_init(p, &lay, steps, L, H, err));
    for (int l = 0; !b->flux && l < L; l++)
        if (dfa_sd3_attn_image_only(b->sm, l)) {
            dfa_attn_layout l2 = lay;
            l2.n_text = 0;
            DFA_TRY(dfa_plan_set_layer_layout(p, l, &l2, err));
        }
    const int vis_tiles = (n_img + lay.block - 1) / lay.block, win = vis_tiles / 16 > 1 ? vis_tiles / 16 : 1;
    int perm[256];
    if (H > 256) return DFA_SET(err, DFA_ERR_UNSUPPORTED, "--plan-mix: %d heads", H);
    for (int st = 2; st < steps; st++)
        for (int l = 0; l < L; l++) {
            /* heads shuffled per (step, layer), as a V2 search picks them: exact shares, and (nearly)
             * every entry its own work list, the prepare's worst case */
            unsigned long long r = 0x9e3779b97f4a7c15ULL * (unsigned long long)(st * L + l + 1);
            for (int h = 0; h < H; h++) perm[h] = h;
            for (int h = H - 1; h > 0; h--) {
                r ^= r << 13, r ^= r >> 7, r ^= r << 17;
                const int j = (int)(r % (unsigned long long)(h + 1)), t = perm[h];
                perm[h] = perm[j], perm[j] = t;
            }
            for (int k = 0; k < H; k++) { /* first half ARROW, next quarter CACHE, the rest FULL */
                const size_t i = dfa_plan_index(p, st, l, perm[k]);
                p->method[i] = 2 * k < H ? DFA_ATTN_ARROW : 4 * k < 3 * H ? DFA_ATTN_CACHE : DFA_ATTN_FULL;
                p->window[i] = 2 * k < H ? win : 0;
            }
        }
    p->grid_h = p->grid_w = (int)lround(sqrt((double)n_img)); /* square images */
    p->cfg = b->batch == 2, p->cond_half = 1;
    p->method_set = DFA_PLAN_SET_ARROW | DFA_PLAN_SET_CACHE;
    snprintf(p->search, sizeof p->search, "manual");
    return dfa_plan_validate(p, "bench --plan-mix plan", err);
}

/* The planned loop of --plan-mix beside the dense one (loop_s, loop_attn, lat_out: the dense loop's). */
static int plan_loop(bench *b, int res, int steps, int n_img, const dfa_flow_config *fc, const dfa_prompt_embeds *pe,
                     const dfa_mmdit_gen_params *gp, double loop_s, double loop_attn, const float *lat_dense,
                     size_t n_lat) {
    dfa_plan plan;
    dfa_error e = {0};
    if (make_mix_plan(b, n_img, b->txt, steps, &plan, &e) != DFA_OK)
        return fprintf(stderr, "bench_mmdit --plan-mix: %s\n", e.msg), 1;
    const int D = b->flux ? dfa_flux_get_config(b->fm)->head_dim : dfa_sd3_get_config(b->sm)->head_dim;
    dfa_plan_cost cost;
    dfa_plan_cost_compute(&plan, D, &cost, NULL);
    float *lat = malloc(n_lat * 4);
    if (!lat) return fprintf(stderr, "out of memory\n"), 1;
    for (size_t i = 0; i < n_lat; i++) lat[i] = NAN;
    if (dfa_attn_set_plan(b->ctx, &plan) != DFA_OK) return dfa_plan_free(&plan), free(lat), fail(b, "set plan");
    /* the prepare outside the timed loop, timed on its own (the loop's own prepare call is then a no-op) */
    const double p0 = now();
    dfa_status s = dfa_attn_prepare(b->ctx, DFA_DEV_CUDA, DFA_BF16, b->batch, D);
    const double prep_s = now() - p0;
    dfa_attn_prep_stats ps0, ps1;
    dfa_attn_get_prep_stats(b->ctx, &ps0);
    const size_t allocs0 = b->ctx->device_allocs;
    double a0 = 0, t0 = 0, a1 = 0, t1 = 0;
    times(b, &a0, &t0);
    const double w0 = now();
    if (s == DFA_OK)
        s = b->flux ? dfa_flux_generate(b->ctx, b->fm, fc, pe, gp, lat) : dfa_sd3_generate(b->ctx, b->sm, fc, pe, gp, lat);
    const double plan_s = now() - w0;
    times(b, &a1, &t1);
    dfa_attn_get_prep_stats(b->ctx, &ps1);
    /* the generate allocates its latents once per call (before its loop); anything more is the loop's */
    const size_t loop_allocs = b->ctx->device_allocs - allocs0;
    dfa_attn_clear_plan(b->ctx);
    dfa_plan_free(&plan);
    if (s != DFA_OK) return free(lat), fail(b, "planned sampling loop");
    size_t bad = 0;
    const double diff = rel_l2(lat, lat_dense, n_lat, NULL, &bad);
    const double plan_attn = t1 - t0 > 0 ? (a1 - a0) / (t1 - t0) : 0;
    const double attn_dense_s = loop_attn * loop_s, attn_plan_s = plan_attn * plan_s; /* shares of wall time */
    const int64_t lazy = (ps1.lazy_builds - ps0.lazy_builds) + (ps1.lazy_caches - ps0.lazy_caches);
    printf("%s CUDA %dx%d px: plan-mix (attention FLOPs %.3f of dense; %lld FULL, %lld ARROW, %lld CACHE head-steps) "
           "prepared in %.1f ms: %d distinct work lists for %d launches, %.2f MB of work lists, %.1f MB of caches\n",
           b->pname, res, res, cost.fraction, (long long)cost.n_method[DFA_ATTN_FULL],
           (long long)cost.n_method[DFA_ATTN_ARROW], (long long)cost.n_method[DFA_ATTN_CACHE], 1e3 * prep_s,
           ps0.n_lists, ps0.n_entries, ps0.list_bytes / 1e6, ps0.cache_bytes / 1e6);
    printf("%s CUDA %dx%d px: %d-step loop planned %.2f s = %.1f ms/step (attention %.1f%%) vs dense %.2f s = %.1f "
           "ms/step (attention %.1f%%): END-TO-END SPEEDUP %.3fx; attention time %.3f of dense; latents %.3g from "
           "the dense loop's%s\n",
           b->pname, res, res, steps, plan_s, 1e3 * plan_s / steps, 100.0 * plan_attn, loop_s, 1e3 * loop_s / steps,
           100.0 * loop_attn, loop_s / plan_s, attn_dense_s > 0 ? attn_plan_s / attn_dense_s : -1.0, diff,
           bad ? " (NON-FINITE LATENTS)" : "");
    printf("%s CUDA %dx%d px: planned loop %s: %zu device allocations in the call (1 expected: its latents), %lld "
           "work lists / caches built at first use (0 expected)\n",
           b->pname, res, res, loop_allocs <= 1 && lazy == 0 && !bad ? "OK" : "FAILED", loop_allocs,
           (long long)lazy);
    printf("RESULT {\"kind\": \"plan\", \"model\": \"%s\", \"res\": %d, \"steps\": %d, \"attn_fraction\": %.4f, "
           "\"dense_s\": %.4f, \"plan_s\": %.4f, \"speedup\": %.4f, \"dense_attn\": %.4f, \"plan_attn\": %.4f, "
           "\"prepare_ms\": %.3f, \"n_lists\": %d, \"n_entries\": %d, \"list_bytes\": %zu, \"cache_bytes\": %zu, "
           "\"loop_allocs\": %zu, \"lazy_builds\": %lld, \"nonfinite\": %zu}\n",
           b->pname, res, steps, cost.fraction, loop_s, plan_s, loop_s / plan_s, loop_attn, plan_attn, 1e3 * prep_s,
           ps0.n_lists, ps0.n_entries, ps0.list_bytes, ps0.cache_bytes, loop_allocs, (long long)lazy, bad);
    fflush(stdout);
    free(lat);
    return loop_allocs <= 1 && lazy == 0 && !bad ? 0 : 1;
}

/* One resolution: forwards (timed, optional check) and an optional sampling loop. */
static int run_res(bench *b, int res, int steps) {
    const int lat = res / 8, B = b->batch, txt = b->txt;
    int n_img, in_ch, J, P, lat_c;
    if (b->flux) {
        const dfa_flux_config *c = dfa_flux_get_config(b->fm);
        n_img = (lat / 2) * (lat / 2), in_ch = c->in_channels, J = c->joint_attention_dim, P = c->pooled_projection_dim;
        lat_c = dfa_flux_latent_channels(b->fm);
    } else {
        const dfa_sd3_config *c = dfa_sd3_get_config(b->sm);
        n_img = (lat / c->patch_size) * (lat / c->patch_size), in_ch = c->in_channels, J = c->joint_attention_dim;
        P = c->pooled_projection_dim, lat_c = dfa_sd3_latent_channels(b->sm);
    }
    /* FLUX: packed [B, n_img, in_ch]; SD3: [B, in_ch, lat, lat] */
    const size_t nx = b->flux ? (size_t)B * n_img * in_ch : (size_t)B * in_ch * lat * lat, nt = (size_t)B * txt * J;
    float *x = malloc(nx * 4), *t = malloc(nt * 4), *pool = malloc((size_t)B * P * 4), *out = malloc(nx * 4);
    float *img_ids = malloc((size_t)n_img * 3 * 4), *txt_ids = calloc((size_t)txt * 3, 4), *ref = NULL, *ref32 = NULL;
    float *lat_out = malloc((size_t)lat_c * lat * lat * 4);
    double *tm = malloc((size_t)b->reps * sizeof(double));
    if (!x || !t || !pool || !out || !img_ids || !txt_ids || !lat_out || !tm) return fprintf(stderr, "out of memory\n"), 1;
    unsigned long long r = 88172645463325252ULL;
    for (size_t i = 0; i < nx; i++) r ^= r << 13, r ^= r >> 7, r ^= r << 17, x[i] = (float)((r >> 11) * 0x1p-53 * 2 - 1);
    for (size_t i = 0; i < nt; i++) r ^= r << 13, r ^= r >> 7, r ^= r << 17, t[i] = (float)((r >> 11) * 0x1p-53 * 2 - 1);
    for (int i = 0; i < B * P; i++) pool[i] = 0.1f * (float)(i % 7);
    if (b->flux) dfa_flux_image_ids(lat / 2, lat / 2, img_ids);
    float ts[64], gs[64];
    for (int i = 0; i < B && i < 64; i++) ts[i] = b->flux ? 0.5f : 500.0f, gs[i] = 3.5f;
    char io[1200] = "";
    if (b->check) { /* inputs and the reference output from the diffusers side; shapes must agree */
        snprintf(io, sizeof io, "%s/io_%d.safetensors", b->dir, res);
        dfa_safetensors *st = NULL;
        dfa_error e = {0};
        const int64_t sx[4] = {B, b->flux ? n_img : in_ch, b->flux ? in_ch : lat, lat}, se[3] = {B, txt, J},
                      sp[2] = {B, P}, sb[1] = {B};
        ref = malloc(nx * 4);
        if (!ref) return fprintf(stderr, "out of memory\n"), 1;
        dfa_status s = dfa_st_open(&st, io, &e);
        if (s == DFA_OK) s = dfa_st_load(st, "x", DFA_F32, b->flux ? 3 : 4, sx, x, DFA_DEV_CPU, NULL, &e);
        if (s == DFA_OK) s = dfa_st_load(st, "enc", DFA_F32, 3, se, t, DFA_DEV_CPU, NULL, &e);
        if (s == DFA_OK) s = dfa_st_load(st, "pooled", DFA_F32, 2, sp, pool, DFA_DEV_CPU, NULL, &e);
        if (s == DFA_OK) s = dfa_st_load(st, "timestep", DFA_F32, 1, sb, ts, DFA_DEV_CPU, NULL, &e);
        if (s == DFA_OK && dfa_st_find(st, "guidance"))
            s = dfa_st_load(st, "guidance", DFA_F32, 1, sb, gs, DFA_DEV_CPU, NULL, &e);
        if (s == DFA_OK) s = dfa_st_load(st, "out", DFA_F32, b->flux ? 3 : 4, sx, ref, DFA_DEV_CPU, NULL, &e);
        if (s == DFA_OK && dfa_st_find(st, "out_f32")) { /* diffusers in f32: the bf16 noise level */
            ref32 = malloc(nx * 4);
            if (!ref32) return fprintf(stderr, "out of memory\n"), 1;
            s = dfa_st_load(st, "out_f32", DFA_F32, b->flux ? 3 : 4, sx, ref32, DFA_DEV_CPU, NULL, &e);
        }
        dfa_st_close(st);
        if (s != DFA_OK) return fprintf(stderr, "bench_mmdit --check %s: %s\n", io, e.msg), 1;
    }
    const int guid = b->flux && dfa_flux_get_config(b->fm)->guidance_embeds;
    double attn_tot = 0, fwd_tot = 0;
    for (int k = -1; k < b->reps; k++) {
        double a0 = 0, t0 = 0, a1 = 0, t1 = 0;
        times(b, &a0, &t0);
        for (size_t i = 0; i < nx; i++) out[i] = NAN; /* poisoned: the forward must write every element */
        const double w0 = now();
        dfa_status s = b->flux ? dfa_flux_forward(b->ctx, b->fm, B, n_img, txt, x, t, pool, ts, guid ? gs : NULL,
                                                  txt_ids, img_ids, out)
                               : dfa_sd3_forward(b->ctx, b->sm, B, lat, lat, txt, x, t, pool, ts, out);
        const double w1 = now();
        if (s != DFA_OK) return fail(b, "forward");
        times(b, &a1, &t1);
        if (k >= 0) tm[k] = w1 - w0, attn_tot += a1 - a0, fwd_tot += t1 - t0;
        if (k == -1 && ref) { /* the first forward on the saved inputs against diffusers' outputs */
            size_t bad = 0;
            double mrel = 0;
            const double rel = rel_l2(out, ref, nx, &mrel, &bad), rel32 = ref32 ? rel_l2(out, ref32, nx, NULL, NULL) : -1;
            const double ref_noise = ref32 ? rel_l2(ref, ref32, nx, NULL, NULL) : -1;
            printf("check against %s: rel L2 %.3g vs diffusers bf16 (max abs err / max |ref| %.3g, %zu non-finite)", io,
                   rel, mrel, bad);
            if (ref32) printf("; vs diffusers f32: dfa %.3g, diffusers bf16 %.3g", rel32, ref_noise);
            printf("\n");
            printf("RESULT {\"kind\": \"check\", \"model\": \"%s\", \"res\": %d, \"rel_l2\": %.6g, \"max_rel\": %.6g, "
                   "\"nonfinite\": %zu, \"rel_l2_f32\": %.6g, \"diffusers_bf16_vs_f32\": %.6g}\n", b->pname, res,
                   isfinite(rel) ? rel : -1.0, mrel, bad, isfinite(rel32) ? rel32 : -1.0, ref_noise);
        }
    }
    qsort(tm, (size_t)b->reps, sizeof *tm, cmp_d);
    const double fwd = tm[b->reps / 2], fwd_attn = fwd_tot > 0 ? attn_tot / fwd_tot : 0;
    printf("%s %s %dx%d px: %d image + %d text tokens, batch %d: forward %.1f ms (median of %d), attention %.1f%% "
           "of the forward\n", b->pname, b->cuda ? "CUDA" : "CPU", res, res, n_img, txt, B, 1e3 * fwd, b->reps,
           100.0 * fwd_attn);
    /* the same forwards with the conditioning held (dfa_*_hold_cond), as the sampling loop runs them:
     * the CUDA engines upload the text once (first forward, not timed) instead of every forward */
    hold(b, 1);
    for (int k = -1; k < b->reps; k++) {
        const double w0 = now();
        dfa_status s = b->flux ? dfa_flux_forward(b->ctx, b->fm, B, n_img, txt, x, t, pool, ts, guid ? gs : NULL,
                                                  txt_ids, img_ids, out)
                               : dfa_sd3_forward(b->ctx, b->sm, B, lat, lat, txt, x, t, pool, ts, out);
        if (s != DFA_OK) return hold(b, 0), fail(b, "forward (held conditioning)");
        if (k >= 0) tm[k] = now() - w0;
    }
    /* one more held forward by phase (CUDA events): attention, GEMMs, the rest */
    double pa = -1, pg = -1, pw = -1;
    if (b->cuda) {
        double a0 = 0, t0 = 0, a1 = 0, t1 = 0, gsec = 0;
        times(b, &a0, &t0);
        gemm_timer(b, &gsec);
        const double w0 = now();
        dfa_status s = b->flux ? dfa_flux_forward(b->ctx, b->fm, B, n_img, txt, x, t, pool, ts, guid ? gs : NULL,
                                                  txt_ids, img_ids, out)
                               : dfa_sd3_forward(b->ctx, b->sm, B, lat, lat, txt, x, t, pool, ts, out);
        pw = now() - w0;
        gemm_timer(b, NULL);
        if (s != DFA_OK) return hold(b, 0), fail(b, "forward (profiled)");
        times(b, &a1, &t1);
        pa = a1 - a0, pg = gsec;
        printf("%s CUDA %dx%d px: one held forward by phase (CUDA events, GEMM timer on): attention %.1f ms, GEMMs "
               "%.1f ms, rest %.1f ms (elementwise kernels, uploads, launch gaps, event overhead) of %.1f ms\n",
               b->pname, res, res, 1e3 * pa, 1e3 * pg, 1e3 * (pw - pa - pg), 1e3 * pw);
    }
    hold(b, 0);
    qsort(tm, (size_t)b->reps, sizeof *tm, cmp_d);
    const double fwd_held = tm[b->reps / 2];
    printf("%s %s %dx%d px: forward with the conditioning held (text uploaded once, as in the loop) %.1f ms "
           "(median of %d)\n", b->pname, b->cuda ? "CUDA" : "CPU", res, res, 1e3 * fwd_held, b->reps);
    double loop_s = 0, loop_attn = 0, loop_graph = -1;
    int graph_equal = -1;
    if (steps > 0) {
        dfa_prompt_embeds pe = {.n_txt = txt, .dim = J, .pooled_dim = P, .embeds = t, .pooled = pool};
        if (!b->flux && B == 2) /* SD3 CFG batch [uncond, cond] */
            pe.neg_embeds = t, pe.neg_pooled = pool, pe.embeds = t + (size_t)txt * J, pe.pooled = pool + P;
        dfa_flow_config fc;
        if (dfa_flow_config_read_or_default(b->ctx, b->dir, b->flux, guid, &fc) != DFA_OK) return fail(b, "scheduler");
        dfa_mmdit_gen_params gp = {.steps = steps, .latent_h = lat, .latent_w = lat, .cfg_scale = B == 2 ? 7.0f : 1.0f,
                                   .guidance = 3.5f, .seed = 1};
        double a0 = 0, t0 = 0, a1 = 0, t1 = 0;
        times(b, &a0, &t0);
        const double w0 = now();
        dfa_status s = b->flux ? dfa_flux_generate(b->ctx, b->fm, &fc, &pe, &gp, lat_out)
                               : dfa_sd3_generate(b->ctx, b->sm, &fc, &pe, &gp, lat_out);
        loop_s = now() - w0;
        if (s != DFA_OK) return fail(b, "sampling loop");
        times(b, &a1, &t1);
        loop_attn = t1 - t0 > 0 ? (a1 - a0) / (t1 - t0) : 0;
        size_t bad = 0;
        for (size_t i = 0; i < (size_t)lat_c * lat * lat; i++) bad += !isfinite(lat_out[i]);
        printf("%s %s %dx%d px: %d-step loop %.2f s = %.1f ms/step, attention %.1f%% of the transformer time%s\n",
               b->pname, b->cuda ? "CUDA" : "CPU", res, res, steps, loop_s, 1e3 * loop_s / steps, 100.0 * loop_attn,
               bad ? " (NON-FINITE LATENTS)" : "");
        printf("%s %s %dx%d px: loop overhead %+.2f ms/step over the forward (loop ms/step - forward ms), %+.2f over "
               "the held-conditioning forward\n", b->pname, b->cuda ? "CUDA" : "CPU", res, res,
               1e3 * (loop_s / steps - fwd), 1e3 * (loop_s / steps - fwd_held));
        if (b->graph && !b->flux && b->cuda) { /* the same loop with its forward as a CUDA Graph */
            float *lat2 = malloc((size_t)lat_c * lat * lat * 4);
            if (!lat2) return fprintf(stderr, "out of memory\n"), 1;
            for (size_t i = 0; i < (size_t)lat_c * lat * lat; i++) lat2[i] = NAN;
            const int runs = dfa_sd3_set_cuda_graph(b->sm, 1);
            const double g0 = now();
            s = dfa_sd3_generate(b->ctx, b->sm, &fc, &pe, &gp, lat2);
            const double gs_ = now() - g0;
            const int used = dfa_sd3_set_cuda_graph(b->sm, 0) > runs;
            if (s != DFA_OK || !used) {
                printf("%s CUDA %dx%d px: CUDA Graph loop FAILED: %s\n", b->pname, res, res,
                       s != DFA_OK ? dfa_ctx_error(b->ctx) : "no graph was used");
            } else {
                loop_graph = gs_;
                graph_equal = memcmp(lat2, lat_out, (size_t)lat_c * lat * lat * 4) == 0;
                printf("%s CUDA %dx%d px: %d-step loop with a CUDA Graph forward %.2f s = %.1f ms/step (eager %.1f), "
                       "latents %s the eager loop's\n", b->pname, res, res, steps, gs_, 1e3 * gs_ / steps,
                       1e3 * loop_s / steps, graph_equal ? "bit-equal to" : "DIFFERENT from");
            }
            free(lat2);
        }
        if (b->plan_mix && b->cuda && plan_loop(b, res, steps, n_img, &fc, &pe, &gp, loop_s, loop_attn, lat_out,
                                                (size_t)lat_c * lat * lat))
            return 1;
    }
    printf("RESULT {\"kind\": \"engine\", \"side\": \"dfa\", \"model\": \"%s\", \"res\": %d, \"batch\": %d, "
           "\"tokens\": %d, \"fwd_ms\": %.3f, \"fwd_attn\": %.4f, \"steps\": %d, \"loop_s\": %.4f, \"loop_ms_step\": "
           "%.3f, \"loop_attn\": %.4f, \"fwd_held_ms\": %.3f, \"loop_over_ms\": %.3f, \"loop_graph_ms_step\": %.3f, "
           "\"graph_equal\": %d, \"prof_attn_ms\": %.3f, \"prof_gemm_ms\": %.3f, \"prof_fwd_ms\": %.3f}\n", b->pname, res,
           B, n_img + txt, 1e3 * fwd, fwd_attn, steps, loop_s, steps > 0 ? 1e3 * loop_s / steps : 0.0, loop_attn,
           1e3 * fwd_held, steps > 0 ? 1e3 * (loop_s / steps - fwd) : 0.0,
           loop_graph > 0 ? 1e3 * loop_graph / steps : -1.0, graph_equal, pa < 0 ? -1.0 : 1e3 * pa,
           pg < 0 ? -1.0 : 1e3 * pg, pw < 0 ? -1.0 : 1e3 * pw);
    fflush(stdout);
    free(x), free(t), free(pool), free(out), free(img_ids), free(txt_ids), free(ref), free(ref32), free(lat_out), free(tm);
    return 0;
}

int main(int argc, char **argv) {
    const char *pname = "flux-small", *dir = "/tmp/dfa_bench_mmdit", *res_s = "512", *steps_s = "0";
    int txt = -1, reps = 3, cuda = 0, threads = 0, batch = -1, check = 0, graph = 0, plan_mix = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--preset") && v) pname = argv[++i];
        else if (!strcmp(a, "--dir") && v) dir = argv[++i];
        else if (!strcmp(a, "--res") && v) res_s = argv[++i];
        else if (!strcmp(a, "--steps") && v) steps_s = argv[++i];
        else if (!strcmp(a, "--txt") && v) txt = atoi(argv[++i]);
        else if (!strcmp(a, "--reps") && v) reps = atoi(argv[++i]);
        else if (!strcmp(a, "--threads") && v) threads = atoi(argv[++i]);
        else if (!strcmp(a, "--batch") && v) batch = atoi(argv[++i]);
        else if (!strcmp(a, "--check")) check = 1;
        else if (!strcmp(a, "--cuda")) cuda = 1;
        else if (!strcmp(a, "--graph")) graph = 1;
        else if (!strcmp(a, "--plan-mix")) plan_mix = 1;
        else {
            fprintf(stderr, "usage: bench_mmdit [--preset flux-dev|flux-small|sd3-medium|sd3-small] [--res PX[,PX..]] "
                            "[--steps N[,N..]] [--txt T] [--reps R] [--batch B] [--dir DIR] [--cuda] [--threads T] "
                            "[--check] [--graph] [--plan-mix]\n");
            return 2;
        }
    }
    const preset *p = NULL;
    for (size_t i = 0; i < sizeof presets / sizeof *presets; i++)
        if (!strcmp(presets[i].name, pname)) p = &presets[i];
    int res[MAX_RES], steps[MAX_RES];
    const int nres = parse_list(res_s, res, MAX_RES), nsteps = parse_list(steps_s, steps, MAX_RES);
    int ok = p && nres > 0 && reps >= 1 && (nsteps == 1 || nsteps == nres);
    for (int i = 0; ok && i < nres; i++) ok = res[i] >= 16 && res[i] % 16 == 0;
    if (!ok) {
        fprintf(stderr, "bench_mmdit: unknown preset '%s', bad --res '%s' (multiples of 16), --steps '%s' (one value "
                        "or one per resolution) or --reps %d\n", pname, res_s, steps_s, reps);
        return 2;
    }
    bench b = {.dir = dir, .pname = pname, .flux = !strcmp(p->family, "flux"), .reps = reps, .cuda = cuda,
               .check = check, .graph = graph, .plan_mix = plan_mix};
    b.txt = txt > 0 ? txt : b.flux ? 512 : 333;
    b.batch = batch > 0 ? batch : b.flux ? 1 : 2; /* SD3 runs its CFG pair in one batch */
    if (b.batch > 64) return fprintf(stderr, "bench_mmdit: batch %d > 64\n", b.batch), 2;
    char path[1200], cfg_path[1300], wpath[1300];
    snprintf(path, sizeof path, "%s/transformer", dir);
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", path);
    snprintf(wpath, sizeof wpath, "%s/diffusion_pytorch_model.safetensors", path);
    dfa_ctx_params cp = dfa_ctx_default_params();
    cp.n_threads = threads;
    cp.log_level = DFA_LOG_WARN;
    dfa_ctx *cpu = NULL;
    char err[256];
    if (dfa_ctx_init(&cpu, &cp, err, sizeof err) != DFA_OK) return fprintf(stderr, "%s\n", err), 1;
    cp.backend = cuda ? DFA_BACKEND_CUDA : DFA_BACKEND_CPU;
    if (dfa_ctx_init(&b.ctx, &cp, err, sizeof err) != DFA_OK) return fprintf(stderr, "%s\n", err), 1;
    struct stat sb;
    if (stat(wpath, &sb) != 0) { /* config + random weights, once per folder */
        mkdir(dir, 0755);
        mkdir(path, 0755);
        FILE *f = fopen(cfg_path, "w");
        if (!f) return fprintf(stderr, "cannot write %s\n", cfg_path), 1;
        fputs(p->config, f);
        fclose(f);
        double t0 = now();
        dfa_status s = b.flux ? dfa_flux_write_random(cpu, dir, 1) : dfa_sd3_write_random(cpu, dir, 1);
        if (s != DFA_OK) return fprintf(stderr, "bench_mmdit: %s\n", dfa_ctx_error(cpu)), 1;
        fprintf(stderr, "wrote random weights to %s (%.1f s)\n", wpath, now() - t0);
    }
    double t0 = now();
    dfa_status s = b.flux ? dfa_flux_load(b.ctx, dir, &b.fm) : dfa_sd3_load(b.ctx, dir, &b.sm);
    if (s != DFA_OK) return fail(&b, "load");
    printf("%s: loaded %s in %.1f s\n", pname, dir, now() - t0);
    fflush(stdout);
    int rc = 0;
    for (int i = 0; i < nres && !rc; i++) rc = run_res(&b, res[i], steps[nsteps == 1 ? 0 : i]);
    dfa_flux_free(b.ctx, b.fm);
    dfa_sd3_free(b.ctx, b.sm);
    dfa_ctx_free(b.ctx);
    dfa_ctx_free(cpu);
    return rc;
}
