/* bench_calibrate.c - `dfa calibrate`'s search time on a real FLUX engine against its floor,
 * measured in the same run (issue 8): the floor is generating the calibration prompts
 * uncompressed through the same batched engine (every layer FULL by the search backend's
 * attention), then the V2 search (ARROW at 1/8, 1/4, 1/2 of the visual tiles, CACHE) and, with
 * --v1, the V1 search, each from the same start. Random prompt embeddings (T5-length text).
 *
 *   bench_calibrate --dir DIR [--res 1024] [--prompts 8] [--steps 50] [--txt 512] [--delta 0.05]
 *                   [--cuda] [--v1] [--threads T]
 * DIR: a FLUX folder with transformer/ (e.g. written by `bench_mmdit --preset flux-dev --dir DIR`). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/ctx.h"
#include "models/mmdit.h"
#include "models/mmdit_pipe.h"
#include "plan/engine_mmdit.h"
#include "plan/plan.h"
#include "plan/search.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct full_hook {
    const dfa_search_backend *be;
    const dfa_search_engine *e;
} full_hook;

static dfa_status hook_full(void *user, int layer, const void *q, const void *k, const void *v, void *out) {
    full_hook *h = user;
    (void)layer;
    return h->be->attn(h->be->user, &h->e->layout, h->e->n_rows, h->e->n_heads, h->e->head_dim, -1, q, k, v, out);
}

static int fail(dfa_ctx *ctx, const char *what) {
    fprintf(stderr, "bench_calibrate: %s: %s\n", what, dfa_ctx_error(ctx));
    return 1;
}

int main(int argc, char **argv) {
    const char *dir = NULL;
    int res = 1024, P = 8, steps = 50, txt = 512, cuda = 0, v1 = 0, threads = 0;
    double delta = 0.05;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const int more = i + 1 < argc;
        if (!strcmp(a, "--dir") && more) dir = argv[++i];
        else if (!strcmp(a, "--res") && more) res = atoi(argv[++i]);
        else if (!strcmp(a, "--prompts") && more) P = atoi(argv[++i]);
        else if (!strcmp(a, "--steps") && more) steps = atoi(argv[++i]);
        else if (!strcmp(a, "--txt") && more) txt = atoi(argv[++i]);
        else if (!strcmp(a, "--delta") && more) delta = atof(argv[++i]);
        else if (!strcmp(a, "--threads") && more) threads = atoi(argv[++i]);
        else if (!strcmp(a, "--cuda")) cuda = 1;
        else if (!strcmp(a, "--v1")) v1 = 1;
        else {
            fprintf(stderr, "usage: bench_calibrate --dir DIR [--res PX] [--prompts N] [--steps N] [--txt T] "
                            "[--delta X] [--cuda] [--v1] [--threads T]\n");
            return 2;
        }
    }
    if (!dir || res < 16 || res % 16 || P < 1 || steps < 1 || txt < 1) {
        fprintf(stderr, "bench_calibrate: needs --dir DIR; --res a multiple of 16, positive counts\n");
        return 2;
    }
    dfa_ctx_params cp = dfa_ctx_default_params();
    cp.n_threads = threads;
    cp.log_level = DFA_LOG_WARN;
    if (cuda) cp.backend = DFA_BACKEND_CUDA;
    dfa_ctx *ctx = NULL;
    char err[256];
    if (dfa_ctx_init(&ctx, &cp, err, sizeof err) != DFA_OK) return fprintf(stderr, "%s\n", err), 1;
    dfa_flux *m = NULL;
    double t0 = now_s();
    if (dfa_flux_load(ctx, dir, &m) != DFA_OK) return fail(ctx, "load");
    fprintf(stderr, "loaded %s in %.1f s\n", dir, now_s() - t0);
    const dfa_flux_config *c = dfa_flux_get_config(m);
    dfa_flow_config fc;
    if (dfa_flow_config_read(ctx, dir, &fc) != DFA_OK) { /* FLUX-dev's scheduler */
        fc = dfa_flow_config_default();
        fc.use_dynamic_shifting = 1;
        fc.base_shift = 0.5, fc.max_shift = 1.15;
    }
    /* random prompts */
    dfa_prompt_embeds *pe = calloc((size_t)P, sizeof *pe);
    unsigned long long r = 0x243f6a8885a308d3ull;
    for (int p = 0; p < P; p++) {
        pe[p].n_txt = txt, pe[p].dim = c->joint_attention_dim, pe[p].pooled_dim = c->pooled_projection_dim;
        pe[p].embeds = malloc((size_t)txt * pe[p].dim * sizeof(float));
        pe[p].pooled = malloc((size_t)pe[p].pooled_dim * sizeof(float));
        if (!pe[p].embeds || !pe[p].pooled) return fprintf(stderr, "out of memory\n"), 1;
        for (size_t i = 0; i < (size_t)txt * pe[p].dim; i++)
            r ^= r << 13, r ^= r >> 7, r ^= r << 17, pe[p].embeds[i] = (float)((r >> 11) * 0x1p-53 * 2 - 1);
        for (int i = 0; i < pe[p].pooled_dim; i++) pe[p].pooled[i] = 0.1f * (float)((i + p) % 7);
    }
    dfa_engine_mmdit_params ep = {.steps = steps, .latent_h = res / 8, .latent_w = res / 8, .cfg_scale = 1.0f,
                                  .guidance = 3.5f, .seed = 1};
    dfa_search_backend be;
    dfa_search_cuda cst = {0};
    if (cuda) {
        if (dfa_search_backend_cuda(ctx, &cst, &be) != DFA_OK) return fail(ctx, "cuda backend");
    } else {
        dfa_search_backend_cpu(ctx, &be);
    }
    /* floor: the calibration prompts generated uncompressed, same engine, same batch */
    dfa_engine_mmdit *em = NULL;
    dfa_search_engine e;
    if (dfa_engine_flux_init(ctx, m, &fc, pe, P, &ep, &em, &e) != DFA_OK) return fail(ctx, "engine");
    fprintf(stderr, "FLUX %d+%d blocks, %d heads x %d; %dx%d px: %d visual + %d text tokens; %d prompts, %d steps; %s\n",
            c->num_layers, c->num_single_layers, c->n_heads, c->head_dim, res, res, e.layout.n_vis, e.layout.n_text, P,
            steps, cuda ? "CUDA (bf16)" : "CPU (f32)");
    full_hook fh = {&be, &e};
    t0 = now_s();
    for (int s = 0; s < steps; s++)
        if (e.run_step(e.user, s, 1, hook_full, &fh, NULL) != DFA_OK) return fail(ctx, "floor step");
    const double floor_s = now_s() - t0;
    dfa_engine_mmdit_free(ctx, em);
    printf("floor (uncompressed generation of the calibration prompts): %.2f s (%.3f s per step)\n", floor_s,
           floor_s / steps);
    fflush(stdout);
    /* V2 */
    dfa_attn_tiles tl;
    dfa_layout_tiles(&e.layout, &tl);
    dfa_search_cand cands[8];
    int nc = 0, last = -1;
    cands[nc++] = (dfa_search_cand){DFA_ATTN_FULL, -1};
    static const int denom[3] = {16, 8, 4};
    for (int i = 0; i < 3; i++) {
        int w = (tl.n_vis_tiles + denom[i] - 1) / denom[i];
        if (w < dfa_mask_full_window(&e.layout) && w != last) cands[nc++] = (dfa_search_cand){DFA_ATTN_ARROW, w};
        last = w;
    }
    cands[nc++] = (dfa_search_cand){DFA_ATTN_CACHE, -1};
    for (int pass = 0; pass < (v1 ? 2 : 1); pass++) {
        if (dfa_engine_flux_init(ctx, m, &fc, pe, P, &ep, &em, &e) != DFA_OK) return fail(ctx, "engine");
        dfa_search_opts o = {.delta = delta, .c = 1.5, .cands = cands, .n_cands = nc, .v1_window = -1, .backend = &be};
        dfa_search_plan sp;
        t0 = now_s();
        dfa_status s = pass ? dfa_search_v1(ctx, &e, &o, &sp) : dfa_search_v2(ctx, &e, &o, &sp);
        const double secs = now_s() - t0;
        if (s != DFA_OK) return fail(ctx, pass ? "v1" : "v2");
        dfa_plan plan;
        if (dfa_search_plan_export(&sp, &e, &o, pass, "flux", "bench", &plan, &ctx->err) != DFA_OK)
            return fail(ctx, "export");
        dfa_plan_cost pc;
        dfa_plan_cost_compute(&plan, e.head_dim, &pc, NULL);
        printf("%s search (delta %g): %.2f s = %.2fx the floor; plan attention FLOPs %.1f%% of full, modelled "
               "attention time %.1f%%\n", pass ? "V1" : "V2", delta, secs, secs / floor_s, 100.0 * pc.fraction,
               100.0 * dfa_search_plan_cost_fraction(&sp));
        fflush(stdout);
        dfa_plan_free(&plan);
        dfa_search_plan_free(ctx, &sp);
        dfa_engine_mmdit_free(ctx, em);
    }
    if (cuda) dfa_search_cuda_free(&cst);
    for (int p = 0; p < P; p++) free(pe[p].embeds), free(pe[p].pooled);
    free(pe);
    dfa_flux_free(ctx, m);
    dfa_ctx_free(ctx);
    return 0;
}
