/* bench_calibrate.c - `dfa calibrate`'s search time on a real FLUX engine against its floor,
 * measured in the same run (issue 8). Per resolution:
 *   floor: the calibration prompts generated uncompressed through the search's batched engine
 *     (every layer FULL by the search backend's attention: on --cuda the bf16 device backend
 *     dfa_search_backend_cuda, as `dfa calibrate` on a CUDA context), timed per step; and, as a
 *     second floor, prompt 0 alone through dfa_flux_generate (the plain dense sampler) x prompts.
 *     The ratio is taken against the smaller of the two.
 *   V2: dfa_search_v2 with `dfa calibrate`'s default candidates (ARROW at 1/8, 1/4, 1/2 of the
 *     visual tiles, CACHE), timed per step (the on_layer callback at each step's last layer); on
 *     --cuda the backend computes FULL and the ARROW windows in one ring pass (attn_multi), and
 *     unless --no-plain V2 runs again without it ("v2-plain": one launch per window) as its
 *     baseline, with the number of plan choices on which the two differ.
 *   V1 (--v1): dfa_search_v1 at --v1-res over the first --v1-steps steps (it runs the whole model
 *     once per layer and strategy tried, so it is far slower), against the floor of those steps.
 * Extrapolation to --target-prompts x --target-steps (the 8 x 50): times scale with the
 * prompt count (one batch, GEMM-bound) and with the steps as step 0 + (n - 1) x the mean later
 * step (step 0 has no CACHE candidate); printed as such, with the search buffers that size needs.
 * Random prompt embeddings (T5 length), FLUX-dev guidance 3.5, no CFG.
 *
 *   bench_calibrate --dir DIR [--res 1024[,2048]] [--prompts 8] [--steps 50] [--txt 512] [--delta 0.05]
 *                   [--cuda] [--v1] [--v1-res PX] [--v1-steps N] [--target-prompts 8] [--target-steps 50]
 *                   [--threads T] [--no-plain]
 * DIR: a FLUX folder with transformer/ (e.g. written by bench_mmdit or bench_mmdit_diffusers.py).
 * Besides the human lines, `RESULT {json}` lines (bench/engines_table.py). */
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

#define MAX_STEPS 1000

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

/* step boundaries of a search: the time of each step's last layer decision */
typedef struct step_clock {
    const char *name;
    int n_layers, n_steps;
    double t0, t_end[MAX_STEPS];
} step_clock;

static void on_layer(void *user, int step, int layer, const dfa_mckp_problem *p, const int *choice) {
    step_clock *c = user;
    (void)p, (void)choice;
    if (layer != c->n_layers - 1 || step < 0 || step >= MAX_STEPS) return;
    c->t_end[step] = now_s();
    fprintf(stderr, "  %s step %d/%d done at %.1f s\n", c->name, step + 1, c->n_steps, c->t_end[step] - c->t0);
}

/* (t_step0 + (n - 1) * mean(later steps)) * prompt scale, from per-step durations d[0..m) */
static double extrapolate(const double *d, int m, int n, double prompt_scale) {
    double later = 0;
    for (int i = 1; i < m; i++) later += d[i];
    later = m > 1 ? later / (m - 1) : d[0];
    return prompt_scale * (d[0] + (n - 1) * later);
}

typedef struct bench {
    dfa_ctx *ctx;
    dfa_flux *m;
    dfa_flow_config fc;
    dfa_prompt_embeds *pe;
    dfa_search_backend be;
    int P, steps, cuda, v1, v1_res, v1_steps, tP, tS;
    int plain; /* also V2 without the backend's attn_multi (the ring pass), as its baseline */
    double delta;
    double v1_fd[MAX_STEPS], v1_floor_scale, v1_fl_target; /* the floor at v1_res */
    int v1_have;
} bench;

static int fail(dfa_ctx *ctx, const char *what) {
    fprintf(stderr, "bench_calibrate: %s: %s\n", what, dfa_ctx_error(ctx));
    return 1;
}

/* V2 candidates as `dfa calibrate` makes them by default (api/calibrate.c make_cands) */
static int make_cands(const dfa_attn_layout *L, dfa_search_cand *cands) {
    dfa_attn_tiles tl;
    dfa_layout_tiles(L, &tl);
    int nc = 0, last = -1;
    cands[nc++] = (dfa_search_cand){DFA_ATTN_FULL, -1};
    static const int denom[3] = {16, 8, 4};
    for (int i = 0; i < 3; i++) {
        int w = (tl.n_vis_tiles + denom[i] - 1) / denom[i];
        if (w < dfa_mask_full_window(L) && w != last) cands[nc++] = (dfa_search_cand){DFA_ATTN_ARROW, w};
        last = w;
    }
    cands[nc++] = (dfa_search_cand){DFA_ATTN_CACHE, -1};
    return nc;
}

/* the search (v1 = 0: V2) over `steps` steps at `res`; per-step durations into d; plan into keep
 * (caller frees) when not NULL */
static int run_search(bench *b, int res, int steps, int v1, double *secs, double *d, double *frac_flops,
                      double *frac_time, size_t *bytes_target, dfa_search_plan *keep) {
    dfa_engine_mmdit_params ep = {.steps = steps, .latent_h = res / 8, .latent_w = res / 8, .cfg_scale = 1.0f,
                                  .guidance = 3.5f, .seed = 1};
    dfa_engine_mmdit *em = NULL;
    dfa_search_engine e;
    if (dfa_engine_flux_init(b->ctx, b->m, &b->fc, b->pe, b->P, &ep, &em, &e) != DFA_OK) return fail(b->ctx, "engine");
    dfa_search_cand cands[8];
    const int nc = make_cands(&e.layout, cands);
    step_clock clk = {.name = v1 ? "V1" : "V2", .n_layers = e.n_layers, .n_steps = steps};
    dfa_search_opts o = {.delta = b->delta, .c = 1.5, .cands = cands, .n_cands = nc, .v1_window = -1,
                         .backend = &b->be, .on_layer = on_layer, .on_layer_user = &clk};
    dfa_search_engine et = e; /* the search buffers at the target prompt count */
    et.n_rows = b->tP;
    *bytes_target = dfa_search_host_bytes(&et, &o, v1);
    dfa_search_plan sp;
    clk.t0 = now_s();
    dfa_status s = v1 ? dfa_search_v1(b->ctx, &e, &o, &sp) : dfa_search_v2(b->ctx, &e, &o, &sp);
    *secs = now_s() - clk.t0;
    if (s != DFA_OK) return fail(b->ctx, v1 ? "v1" : "v2");
    for (int i = 0; i < steps; i++) d[i] = (i == steps - 1 ? clk.t0 + *secs : clk.t_end[i]) - (i ? clk.t_end[i - 1] : clk.t0);
    dfa_plan plan;
    if (dfa_search_plan_export(&sp, &e, &o, v1, "flux", "bench", &plan, &b->ctx->err) != DFA_OK)
        return fail(b->ctx, "export");
    dfa_plan_cost pc;
    dfa_plan_cost_compute(&plan, e.head_dim, &pc, NULL);
    *frac_flops = pc.fraction, *frac_time = dfa_search_plan_cost_fraction(&sp);
    dfa_plan_free(&plan);
    if (keep) *keep = sp;
    else dfa_search_plan_free(b->ctx, &sp);
    dfa_engine_mmdit_free(b->ctx, em);
    return 0;
}

static int run_res(bench *b, int res) {
    const int steps = b->steps, P = b->P;
    const double pscale = (double)b->tP / P;
    dfa_engine_mmdit_params ep = {.steps = steps, .latent_h = res / 8, .latent_w = res / 8, .cfg_scale = 1.0f,
                                  .guidance = 3.5f, .seed = 1};
    dfa_engine_mmdit *em = NULL;
    dfa_search_engine e;
    /* floor 1: the search's own batched engine, every layer FULL */
    if (dfa_engine_flux_init(b->ctx, b->m, &b->fc, b->pe, P, &ep, &em, &e) != DFA_OK) return fail(b->ctx, "engine");
    fprintf(stderr, "%dx%d px: %d visual + %d text tokens, %d layers x %d heads x %d; %d prompts, %d steps; %s\n", res,
            res, e.layout.n_vis, e.layout.n_text, e.n_layers, e.n_heads, e.head_dim, P, steps,
            b->cuda ? "CUDA (bf16)" : "CPU (f32)");
    full_hook fh = {&b->be, &e};
    double fd[MAX_STEPS], floor_s = 0;
    /* warm-up (GEMM heuristics, arena growth at this size): step 0 as a trial, state unchanged */
    if (e.run_step(e.user, 0, 0, hook_full, &fh, NULL) != DFA_OK) return fail(b->ctx, "floor warm-up");
    for (int s = 0; s < steps; s++) {
        const double t0 = now_s();
        if (e.run_step(e.user, s, 1, hook_full, &fh, NULL) != DFA_OK) return fail(b->ctx, "floor step");
        fd[s] = now_s() - t0;
        floor_s += fd[s];
        fprintf(stderr, "  floor step %d/%d: %.2f s\n", s + 1, steps, fd[s]);
    }
    dfa_engine_mmdit_free(b->ctx, em);
    /* floor 2: prompt 0 through the plain sampler, times the prompt count */
    float *lat = malloc((size_t)dfa_flux_latent_channels(b->m) * (res / 8) * (res / 8) * sizeof(float));
    if (!lat) return fprintf(stderr, "out of memory\n"), 1;
    dfa_mmdit_gen_params gp = {.steps = steps, .latent_h = res / 8, .latent_w = res / 8, .cfg_scale = 1.0f,
                               .guidance = 3.5f, .seed = 1};
    gp.steps = 1; /* warm-up at batch 1 */
    if (dfa_flux_generate(b->ctx, b->m, &b->fc, &b->pe[0], &gp, lat) != DFA_OK) return fail(b->ctx, "generate");
    gp.steps = steps;
    double t0 = now_s();
    if (dfa_flux_generate(b->ctx, b->m, &b->fc, &b->pe[0], &gp, lat) != DFA_OK) return fail(b->ctx, "generate");
    const double gen_s = (now_s() - t0) * P;
    free(lat);
    const double fl = gen_s < floor_s ? gen_s : floor_s;
    printf("%d px floor: batched search engine, all FULL: %.2f s (%.3f s/step); dfa_flux_generate x %d prompts: %.2f s; "
           "floor = %.2f s\n", res, floor_s, floor_s / steps, P, gen_s, fl);
    fflush(stdout);
    double fl_target = pscale * (fl / floor_s) * extrapolate(fd, steps, b->tS, 1.0);
    double sd[MAX_STEPS], secs, ff, ft;
    size_t bytes;
    dfa_search_plan p_ring;
    if (run_search(b, res, steps, 0, &secs, sd, &ff, &ft, &bytes, &p_ring)) return 1;
    double est = extrapolate(sd, steps, b->tS, pscale);
    printf("%d px V2 search (delta %g): %.2f s = %.3fx the floor; plan attention FLOPs %.1f%% of full, modelled "
           "attention time %.1f%%; step 0 %.2f s, later steps %.2f s mean\n", res, b->delta, secs, secs / fl,
           100.0 * ff, 100.0 * ft, sd[0], steps > 1 ? (secs - sd[0]) / (steps - 1) : 0.0);
    printf("%d px extrapolated to %d prompts x %d steps: V2 %.0f s, floor %.0f s, ratio %.3f; search buffers %.1f GiB "
           "(bf16) besides the weights and the engine's activations\n", res, b->tP, b->tS, est, fl_target,
           est / fl_target, bytes / 1073741824.0);
    printf("RESULT {\"kind\": \"calib\", \"search\": \"v2\", \"res\": %d, \"prompts\": %d, \"steps\": %d, \"floor_engine_s\": "
           "%.3f, \"floor_gen_s\": %.3f, \"floor_s\": %.3f, \"search_s\": %.3f, \"ratio\": %.4f, \"step0_s\": %.3f, "
           "\"flops_frac\": %.4f, \"time_frac\": %.4f, \"target_prompts\": %d, \"target_steps\": %d, \"est_search_s\": "
           "%.1f, \"est_floor_s\": %.1f, \"est_ratio\": %.4f, \"target_buf_gib\": %.2f}\n", res, P, steps, floor_s,
           gen_s, fl, secs, secs / fl, sd[0], ff, ft, b->tP, b->tS, est, fl_target, est / fl_target,
           bytes / 1073741824.0);
    fflush(stdout);
    /* the same search without the backend's attn_multi (FULL and each ARROW window one launch each):
     * the baseline of the ring pass, and whether both choose the same plan */
    if (b->plain && b->be.attn_multi) {
        dfa_search_backend keep = b->be;
        b->be.attn_multi = NULL;
        double pd[MAX_STEPS], psecs, pff, pft;
        size_t pbytes;
        dfa_search_plan p_plain;
        const int rc = run_search(b, res, steps, 0, &psecs, pd, &pff, &pft, &pbytes, &p_plain);
        b->be = keep;
        if (rc) return dfa_search_plan_free(b->ctx, &p_ring), 1;
        const size_t n = (size_t)p_ring.n_steps * p_ring.n_layers * p_ring.n_heads;
        size_t diff = 0;
        for (size_t i = 0; i < n; i++)
            diff += p_ring.method[i] != p_plain.method[i] || p_ring.window[i] != p_plain.window[i];
        const double pest = extrapolate(pd, steps, b->tS, pscale);
        printf("%d px V2 without the ring pass (FULL + one launch per ARROW window): %.2f s = %.3fx the floor; the ring "
               "pass is %.3fx faster; plans: %zu of %zu (step, layer, head) choices differ\n", res, psecs, psecs / fl,
               psecs / secs, diff, n);
        printf("RESULT {\"kind\": \"calib\", \"search\": \"v2-plain\", \"res\": %d, \"prompts\": %d, \"steps\": %d, "
               "\"floor_engine_s\": %.3f, \"floor_gen_s\": %.3f, \"floor_s\": %.3f, \"search_s\": %.3f, \"ratio\": %.4f, "
               "\"step0_s\": %.3f, \"flops_frac\": %.4f, \"time_frac\": %.4f, \"target_prompts\": %d, \"target_steps\": "
               "%d, \"est_search_s\": %.1f, \"est_floor_s\": %.1f, \"est_ratio\": %.4f, \"target_buf_gib\": %.2f, "
               "\"plan_diff\": %zu, \"plan_n\": %zu}\n", res, P, steps, floor_s, gen_s, fl, psecs, psecs / fl, pd[0], pff, pft,
               b->tP, b->tS, pest, fl_target, pest / fl_target, pbytes / 1073741824.0, diff, n);
        dfa_search_plan_free(b->ctx, &p_plain);
    }
    dfa_search_plan_free(b->ctx, &p_ring);
    fflush(stdout);
    if (b->v1 && res == b->v1_res) { /* V1 runs last (slowest): keep this floor for it */
        memcpy(b->v1_fd, fd, sizeof(double) * (size_t)steps);
        b->v1_floor_scale = fl / floor_s, b->v1_fl_target = fl_target, b->v1_have = 1;
    }
    return 0;
}

/* V1 at v1_res over the first v1_steps steps, against the floor of those steps (run_res kept it) */
static int run_v1(bench *b) {
    const int res = b->v1_res, n = b->v1_steps < b->steps ? b->v1_steps : b->steps, P = b->P;
    const double pscale = (double)b->tP / P, fl_target = b->v1_fl_target;
    double f1 = 0, sd[MAX_STEPS], secs, ff, ft, est;
    size_t bytes;
    for (int i = 0; i < n; i++) f1 += b->v1_fd[i];
    f1 *= b->v1_floor_scale; /* the same floor choice, over the first n steps */
    if (run_search(b, res, n, 1, &secs, sd, &ff, &ft, &bytes, NULL)) return 1;
    est = extrapolate(sd, n, b->tS, pscale);
    printf("%d px V1 search (delta %g) over %d steps: %.2f s = %.2fx the floor of those steps (%.2f s); plan "
           "attention FLOPs %.1f%%; extrapolated to %d prompts x %d steps: %.0f s\n", res, b->delta, n, secs,
           secs / f1, f1, 100.0 * ff, b->tP, b->tS, est);
    printf("RESULT {\"kind\": \"calib\", \"search\": \"v1\", \"res\": %d, \"prompts\": %d, \"steps\": %d, "
           "\"floor_s\": %.3f, \"search_s\": %.3f, \"ratio\": %.4f, \"step0_s\": %.3f, \"flops_frac\": %.4f, "
           "\"time_frac\": %.4f, \"target_prompts\": %d, \"target_steps\": %d, \"est_search_s\": %.1f, "
           "\"est_floor_s\": %.1f, \"est_ratio\": %.4f, \"target_buf_gib\": %.2f}\n", res, P, n, f1, secs, secs / f1,
           sd[0], ff, ft, b->tP, b->tS, est, fl_target, est / fl_target, bytes / 1073741824.0);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    const char *dir = NULL, *res_s = "1024";
    int txt = 512, threads = 0;
    bench b = {.P = 8, .steps = 50, .v1_res = -1, .v1_steps = 2, .tP = 8, .tS = 50, .delta = 0.05, .plain = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const int more = i + 1 < argc;
        if (!strcmp(a, "--dir") && more) dir = argv[++i];
        else if (!strcmp(a, "--res") && more) res_s = argv[++i];
        else if (!strcmp(a, "--prompts") && more) b.P = atoi(argv[++i]);
        else if (!strcmp(a, "--steps") && more) b.steps = atoi(argv[++i]);
        else if (!strcmp(a, "--txt") && more) txt = atoi(argv[++i]);
        else if (!strcmp(a, "--delta") && more) b.delta = atof(argv[++i]);
        else if (!strcmp(a, "--threads") && more) threads = atoi(argv[++i]);
        else if (!strcmp(a, "--v1-res") && more) b.v1_res = atoi(argv[++i]);
        else if (!strcmp(a, "--v1-steps") && more) b.v1_steps = atoi(argv[++i]);
        else if (!strcmp(a, "--target-prompts") && more) b.tP = atoi(argv[++i]);
        else if (!strcmp(a, "--target-steps") && more) b.tS = atoi(argv[++i]);
        else if (!strcmp(a, "--cuda")) b.cuda = 1;
        else if (!strcmp(a, "--v1")) b.v1 = 1;
        else if (!strcmp(a, "--no-plain")) b.plain = 0;
        else {
            fprintf(stderr, "usage: bench_calibrate --dir DIR [--res PX[,PX..]] [--prompts N] [--steps N] [--txt T] "
                            "[--delta X] [--cuda] [--v1] [--v1-res PX] [--v1-steps N] [--target-prompts N] "
                            "[--target-steps N] [--threads T]\n");
            return 2;
        }
    }
    int res[8], nres = 0;
    for (char *p = (char *)res_s; *p && nres < 8;) {
        char *end;
        res[nres++] = (int)strtol(p, &end, 10);
        if (end == p || (*end && *end != ',')) nres = -99;
        if (nres < 0) break;
        p = *end ? end + 1 : end;
    }
    int ok = dir && nres > 0 && b.P >= 1 && b.steps >= 1 && b.steps <= MAX_STEPS && txt >= 1 && b.v1_steps >= 1 &&
             b.tP >= 1 && b.tS >= 1;
    for (int i = 0; ok && i < nres; i++) ok = res[i] >= 16 && res[i] % 16 == 0;
    if (!ok) {
        fprintf(stderr, "bench_calibrate: needs --dir DIR; --res multiples of 16; positive counts, --steps <= %d\n",
                MAX_STEPS);
        return 2;
    }
    if (b.v1_res < 0) b.v1_res = res[0];
    dfa_ctx_params cp = dfa_ctx_default_params();
    cp.n_threads = threads;
    cp.log_level = DFA_LOG_WARN;
    if (b.cuda) cp.backend = DFA_BACKEND_CUDA;
    char err[256];
    if (dfa_ctx_init(&b.ctx, &cp, err, sizeof err) != DFA_OK) return fprintf(stderr, "%s\n", err), 1;
    double t0 = now_s();
    if (dfa_flux_load(b.ctx, dir, &b.m) != DFA_OK) return fail(b.ctx, "load");
    const dfa_flux_config *c = dfa_flux_get_config(b.m);
    printf("calibration bench: FLUX %d+%d blocks, %d heads x %d, loaded %s in %.1f s; %s\n", c->num_layers,
           c->num_single_layers, c->n_heads, c->head_dim, dir, now_s() - t0, b.cuda ? "CUDA (bf16)" : "CPU (f32)");
    fflush(stdout);
    if (dfa_flow_config_read_or_default(b.ctx, dir, 1, c->guidance_embeds, &b.fc) != DFA_OK)
        return fail(b.ctx, "scheduler");
    /* random prompts */
    b.pe = calloc((size_t)b.P, sizeof *b.pe);
    if (!b.pe) return fprintf(stderr, "out of memory\n"), 1;
    unsigned long long r = 0x243f6a8885a308d3ull;
    for (int p = 0; p < b.P; p++) {
        dfa_prompt_embeds *pe = &b.pe[p];
        pe->n_txt = txt, pe->dim = c->joint_attention_dim, pe->pooled_dim = c->pooled_projection_dim;
        pe->embeds = malloc((size_t)txt * pe->dim * sizeof(float));
        pe->pooled = malloc((size_t)pe->pooled_dim * sizeof(float));
        if (!pe->embeds || !pe->pooled) return fprintf(stderr, "out of memory\n"), 1;
        for (size_t i = 0; i < (size_t)txt * pe->dim; i++)
            r ^= r << 13, r ^= r >> 7, r ^= r << 17, pe->embeds[i] = (float)((r >> 11) * 0x1p-53 * 2 - 1);
        for (int i = 0; i < pe->pooled_dim; i++) pe->pooled[i] = 0.1f * (float)((i + p) % 7);
    }
    dfa_search_cuda cst = {0};
    if (b.cuda) {
        if (dfa_search_backend_cuda(b.ctx, &cst, &b.be) != DFA_OK) return fail(b.ctx, "cuda backend");
    } else {
        dfa_search_backend_cpu(b.ctx, &b.be);
    }
    int rc = 0;
    for (int i = 0; i < nres && !rc; i++) rc = run_res(&b, res[i]);
    if (!rc && b.v1 && !b.v1_have)
        fprintf(stderr, "bench_calibrate: --v1-res %d is none of --res %s: V1 not run\n", b.v1_res, res_s), rc = 1;
    else if (!rc && b.v1) rc = run_v1(&b);
    if (b.cuda) dfa_search_cuda_free(&cst);
    for (int p = 0; p < b.P; p++) free(b.pe[p].embeds), free(b.pe[p].pooled);
    free(b.pe);
    dfa_flux_free(b.ctx, b.m);
    dfa_ctx_free(b.ctx);
    return rc;
}
