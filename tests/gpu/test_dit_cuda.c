/* test_dit_cuda.c (GPU) - the CUDA DiT and PixArt forwards (bf16 weights and activations, f32
 * inside kernels) against
 *   (a) the CPU forward (f32, itself checked against diffusers in tests/test_dit.c and
 *       test_pixart.c) on random bf16 checkpoints written here, so both engines read identical
 *       weights and bf16-representable inputs: head dims 64 and 72 (DiT-XL / PixArt-XL use 72),
 *       192 image tokens (one full and one partial 128-token tile), batch 2 (CFG layout), PixArt
 *       with 37 T5 tokens under a padding mask, and a 3-step generate on both engines;
 *   (b) diffusers' golden outputs (tests/fixtures/dit, pixart, pixart_alpha; head dims 16 / 24):
 *       one forward each and the fixtures' 3-step CFG loops (DDIM, DPM-Solver++);
 *   (c) plans on the CUDA path (fixture models at 192 tokens): a random plan (every method, ASC)
 *       over a 4-step loop on both engines, and a forward under ARROW(0) whose effect must be
 *       more than twice the CUDA-CPU difference;
 *   (d) the public API on a pipeline folder (random DiT transformer + the vae4 fixture VAE):
 *       dfa_generate on a CUDA context (sampler on the host, VAE decode on the GPU) against the
 *       same call on a CPU context, latents and image.
 * Outputs are poisoned (NaN) before every run.
 *
 * Bounds (relative L2, ||gpu - ref|| / ||ref||): bf16 keeps 8 mantissa bits (unit roundoff
 * 2^-9 = 2e-3); every GEMM output, norm output and residual update is rounded once, so one
 * block adds a few 1e-3 of relative error and two blocks plus the final projection stay near
 * 1e-2. Forward vs CPU (identical bf16 weights): 3e-2, as the FLUX / SD3 CUDA tests. Against
 * diffusers the fixture weights are f32 and are rounded to bf16 on upload (another 2^-9 per
 * weight): 4e-2. Sampling loops: CFG multiplies the cond - uncond difference (and its error) by
 * the guidance scale 4-4.5, so the final latents get 6e-2. (Observed on a host emulation of the
 * ops with bf16 storage: 5e-3 - 1e-2 forward, 1e-2 - 2e-2 loops. Dropping PixArt's text mask
 * gives 0.1 on the fixture; a wrong index or a missing term gives order 1.) */
#include "../fixture.h"
#include "../test.h"
#include "gpu_test_util.h"
#include "../tmpdir.h"

#include <stdint.h>

#include "core/ctx.h"
#include "core/tensor.h"
#include "dfa.h"
#include "models/dit.h"
#include "models/dit_pipe.h"
#include "models/pixart.h"
#include "models/pixart_int.h"
#include "plan/plan.h"
#include "attn/attn_state.h"
#include "sample/sampler.h"

#define FWD_BOUND 3e-2
#define FIX_BOUND 4e-2
#define LOOP_BOUND 6e-2

/* ---- (a) random checkpoints, CUDA vs CPU ---- */

static void dit_random(dfa_ctx *cpu, dfa_ctx *gpu, int hd) {
    test_tmpdir d;
    if (tmpdir_make(&d, "dit_cuda") != 0) return;
    char cfg[512], path[256];
    snprintf(cfg, sizeof cfg,
             "{\"_class_name\": \"DiTTransformer2DModel\", \"num_attention_heads\": 2, \"attention_head_dim\": %d,"
             " \"in_channels\": 4, \"out_channels\": 8, \"num_layers\": 2, \"sample_size\": 16, \"patch_size\": 2,"
             " \"num_embeds_ada_norm\": 10, \"norm_type\": \"ada_norm_zero\"}",
             hd);
    CHECK(tmpdir_write(&d, "config.json", cfg, strlen(cfg), path, sizeof path) != NULL);
    CHECKF(dfa_dit_write_random(cpu, d.path, 100 + hd) == DFA_OK, "%s", dfa_ctx_error(cpu));
    dfa_dit *mc = NULL, *mg = NULL;
    CHECKF(dfa_dit_load(cpu, d.path, &mc) == DFA_OK, "%s", dfa_ctx_error(cpu));
    CHECKF(dfa_dit_load(gpu, d.path, &mg) == DFA_OK, "%s", dfa_ctx_error(gpu));
    if (mc && mg) {
        unsigned long long rng = 0x5eed0000ULL + (unsigned)hd;
        const int B = 2, H = 32, W = 24; /* 16 x 12 = 192 tokens */
        const size_t nx = (size_t)B * 4 * H * W, no = (size_t)B * 8 * H * W;
        float *x = malloc(nx * 4), *oc = malloc(no * 4), *og = malloc(no * 4);
        gpu_fill_bf16(x, nx, &rng, 1.0f);
        const float t[2] = {999.0f, 37.0f};
        const int labels[2] = {10, 3}; /* [null, class] */
        fixture_poison(oc, no), fixture_poison(og, no);
        CHECKF(dfa_dit_forward(cpu, mc, B, H, W, x, t, labels, oc) == DFA_OK, "%s", dfa_ctx_error(cpu));
        CHECKF(dfa_dit_forward(gpu, mg, B, H, W, x, t, labels, og) == DFA_OK, "%s", dfa_ctx_error(gpu));
        double e = gpu_rel_l2(og, oc, no);
        printf("     dit (head dim %d) CUDA vs CPU forward, batch 2, 192 tokens: rel L2 %.3g (bound %.0e)\n", hd, e,
               FWD_BOUND);
        CHECKF(e <= FWD_BOUND, "dit hd %d: rel L2 %.3g", hd, e);
        /* attention timer off: same output, no attention time recorded */
        float *o2 = malloc(no * 4);
        fixture_poison(o2, no);
        dfa_dit_set_attn_timer(mg, 0);
        dfa_dit_reset_times(mg);
        CHECKF(dfa_dit_forward(gpu, mg, B, H, W, x, t, labels, o2) == DFA_OK, "%s", dfa_ctx_error(gpu));
        double a0 = -1, t0 = -1;
        dfa_dit_times(mg, &a0, &t0);
        CHECKF(a0 == 0 && t0 > 0 && gpu_rel_l2(o2, og, no) <= 1e-3, "timer off: attn %g total %g, rel L2 %.3g", a0, t0,
               gpu_rel_l2(o2, og, no));
        dfa_dit_set_attn_timer(mg, 1);
        free(o2);
        /* 3-step generate (default DDIM, CFG 4) from the same seeded noise */
        dfa_dit_gen_params gp = {.steps = 3, .latent_h = 16, .latent_w = 16, .cfg_scale = 4.0f, .class_label = 7,
                                 .seed = 9};
        const size_t nl = (size_t)4 * 16 * 16;
        float *lc = malloc(nl * 4), *lg = malloc(nl * 4);
        fixture_poison(lc, nl), fixture_poison(lg, nl);
        CHECKF(dfa_dit_generate(cpu, mc, d.path, &gp, lc) == DFA_OK, "%s", dfa_ctx_error(cpu));
        CHECKF(dfa_dit_generate(gpu, mg, d.path, &gp, lg) == DFA_OK, "%s", dfa_ctx_error(gpu));
        e = gpu_rel_l2(lg, lc, nl);
        printf("     dit (head dim %d) CUDA vs CPU 3-step generate + CFG 4: rel L2 %.3g (bound %.0e)\n", hd, e,
               LOOP_BOUND);
        CHECKF(e <= LOOP_BOUND, "dit generate hd %d: rel L2 %.3g", hd, e);
        double attn = 0, total = 0;
        dfa_dit_times(mg, &attn, &total);
        printf("     dit CUDA forward time %.3f s, attention %.3f s\n", total, attn);
        CHECK(total > 0 && attn > 0 && attn < total);
        free(x), free(oc), free(og), free(lc), free(lg);
    }
    dfa_dit_free(cpu, mc);
    dfa_dit_free(gpu, mg);
    tmpdir_remove(&d);
}

static void pixart_random(dfa_ctx *cpu, dfa_ctx *gpu, int hd, int size_cond) {
    test_tmpdir d;
    if (tmpdir_make(&d, "pixart_cuda") != 0) return;
    char cfg[768], path[256];
    const int heads = size_cond ? 3 : 2, D = heads * hd, cap = 64;
    snprintf(cfg, sizeof cfg,
             "{\"_class_name\": \"PixArtTransformer2DModel\", \"num_attention_heads\": %d, \"attention_head_dim\": %d,"
             " \"in_channels\": 4, \"out_channels\": 8, \"num_layers\": 2, \"sample_size\": 16, \"patch_size\": 2,"
             " \"cross_attention_dim\": %d, \"caption_channels\": %d, \"interpolation_scale\": 2,"
             " \"use_additional_conditions\": %s, \"norm_type\": \"ada_norm_single\", \"norm_eps\": 1e-6}",
             heads, hd, D, cap, size_cond ? "true" : "false");
    CHECK(tmpdir_write(&d, "config.json", cfg, strlen(cfg), path, sizeof path) != NULL);
    CHECKF(dfa_pixart_write_random(cpu, d.path, 200 + hd) == DFA_OK, "%s", dfa_ctx_error(cpu));
    dfa_pixart *mc = NULL, *mg = NULL;
    CHECKF(dfa_pixart_load(cpu, d.path, &mc) == DFA_OK, "%s", dfa_ctx_error(cpu));
    CHECKF(dfa_pixart_load(gpu, d.path, &mg) == DFA_OK, "%s", dfa_ctx_error(gpu));
    if (mc && mg) {
        unsigned long long rng = 0xabc00000ULL + (unsigned)hd;
        const int B = 2, H = 24, W = 32, L = 37; /* 12 x 16 = 192 tokens */
        const size_t nx = (size_t)B * 4 * H * W, no = (size_t)B * 8 * H * W, nt = (size_t)B * L * cap;
        float *x = malloc(nx * 4), *txt = malloc(nt * 4), *mask = malloc((size_t)B * L * 4);
        float *oc = malloc(no * 4), *og = malloc(no * 4);
        gpu_fill_bf16(x, nx, &rng, 1.0f);
        gpu_fill_bf16(txt, nt, &rng, 1.0f);
        for (int i = 0; i < B * L; i++) mask[i] = (i % L) < (i < L ? 20 : L) ? 1.0f : 0.0f; /* item 0: 20 kept */
        const float t[2] = {999.0f, 250.0f};
        for (int masked = 0; masked < 2; masked++) {
            fixture_poison(oc, no), fixture_poison(og, no);
            const float *mk = masked ? mask : NULL;
            CHECKF(dfa_pixart_forward(cpu, mc, B, H, W, x, t, L, txt, mk, oc) == DFA_OK, "%s", dfa_ctx_error(cpu));
            CHECKF(dfa_pixart_forward(gpu, mg, B, H, W, x, t, L, txt, mk, og) == DFA_OK, "%s", dfa_ctx_error(gpu));
            double e = gpu_rel_l2(og, oc, no);
            printf("     pixart (head dim %d%s) CUDA vs CPU forward, batch 2, 192 tokens, %d text%s: rel L2 %.3g "
                   "(bound %.0e)\n",
                   hd, size_cond ? ", size cond" : "", L, masked ? " masked" : "", e, FWD_BOUND);
            CHECKF(e <= FWD_BOUND, "pixart hd %d masked %d: rel L2 %.3g", hd, masked, e);
        }
        /* one head per cross-attention group (the split taken at 2048^2): the same output */
        mg->cross_budget = 1;
        fixture_poison(og, no);
        CHECKF(dfa_pixart_forward(gpu, mg, B, H, W, x, t, L, txt, mask, og) == DFA_OK, "%s", dfa_ctx_error(gpu));
        double eg = gpu_rel_l2(og, oc, no);
        printf("     pixart (head dim %d) CUDA cross-attention one head per group vs CPU: rel L2 %.3g (bound %.0e)\n",
               hd, eg, FWD_BOUND);
        CHECKF(eg <= FWD_BOUND, "pixart hd %d head groups of 1: rel L2 %.3g", hd, eg);
        mg->cross_budget = 0;
        /* the mask must matter (the masked and unmasked outputs differ) */
        float *o2 = malloc(no * 4);
        fixture_poison(o2, no);
        CHECK(dfa_pixart_forward(gpu, mg, B, H, W, x, t, L, txt, NULL, o2) == DFA_OK);
        CHECKF(gpu_rel_l2(o2, og, no) > 1e-3, "mask had no effect: %.3g", gpu_rel_l2(o2, og, no));
        free(o2);
        /* 3-step generate (default DPM-Solver++, CFG 4.5) from the same seeded noise */
        dfa_pixart_embeds pe = {.n_txt = L, .dim = cap};
        pe.embeds = txt + (size_t)L * cap, pe.mask = mask + L;
        pe.neg_embeds = txt, pe.neg_mask = mask;
        dfa_dit_gen_params gp = {.steps = 3, .latent_h = 16, .latent_w = 16, .cfg_scale = 4.5f, .seed = 4};
        const size_t nl = (size_t)4 * 16 * 16;
        float *lc = malloc(nl * 4), *lg = malloc(nl * 4);
        fixture_poison(lc, nl), fixture_poison(lg, nl);
        CHECKF(dfa_pixart_generate(cpu, mc, d.path, &pe, &gp, lc) == DFA_OK, "%s", dfa_ctx_error(cpu));
        CHECKF(dfa_pixart_generate(gpu, mg, d.path, &pe, &gp, lg) == DFA_OK, "%s", dfa_ctx_error(gpu));
        double e = gpu_rel_l2(lg, lc, nl);
        printf("     pixart (head dim %d) CUDA vs CPU 3-step generate + CFG 4.5: rel L2 %.3g (bound %.0e)\n", hd, e,
               LOOP_BOUND);
        CHECKF(e <= LOOP_BOUND, "pixart generate hd %d: rel L2 %.3g", hd, e);
        /* again with the prompts swapped: the GPU's per-loop text cache must not serve the old text
         * (the text moves these random models' latents by only ~5-9%, so compare distances: the
         * swapped GPU run must be much nearer the swapped CPU run than the first CPU run) */
        pe.embeds = txt, pe.mask = mask, pe.neg_embeds = txt + (size_t)L * cap, pe.neg_mask = mask + L;
        float *l2 = malloc(nl * 4), *lc2 = malloc(nl * 4);
        fixture_poison(lc2, nl), fixture_poison(l2, nl);
        CHECKF(dfa_pixart_generate(cpu, mc, d.path, &pe, &gp, lc2) == DFA_OK, "%s", dfa_ctx_error(cpu));
        CHECKF(dfa_pixart_generate(gpu, mg, d.path, &pe, &gp, l2) == DFA_OK, "%s", dfa_ctx_error(gpu));
        e = gpu_rel_l2(l2, lc2, nl);
        const double e_old = gpu_rel_l2(l2, lc, nl);
        printf("     pixart (head dim %d) CUDA vs CPU generate, prompts swapped: rel L2 %.3g (vs the unswapped CPU "
               "run: %.3g)\n", hd, e, e_old);
        CHECKF(e <= LOOP_BOUND && 2 * e < e_old, "pixart swapped prompts: rel L2 %.3g, vs unswapped %.3g", e, e_old);
        free(lc2);
        free(l2);
        free(x), free(txt), free(mask), free(oc), free(og), free(lc), free(lg);
    }
    dfa_pixart_free(cpu, mc);
    dfa_pixart_free(gpu, mg);
    tmpdir_remove(&d);
}

/* ---- (b) diffusers fixtures on the GPU ---- */

static void dit_fixture(dfa_ctx *gpu) {
    char dir[1024], cfg[1024];
    fixture_path("dit/transformer", dir, sizeof dir);
    dfa_dit *m = NULL;
    CHECKF(dfa_dit_load(gpu, dir, &m) == DFA_OK, "%s", dfa_ctx_error(gpu));
    dfa_safetensors *io = fixture_open("dit/io.safetensors");
    if (!m || !io) goto out;
    int64_t xs[8], os[8], ns[8], ts[8];
    float *x = fixture_f32(io, "x", NULL, xs), *t = fixture_f32(io, "t", NULL, NULL);
    float *yf = fixture_f32(io, "y", NULL, NULL), *ref = fixture_f32(io, "out", NULL, os);
    const int B = (int)xs[0], H = (int)xs[2], W = (int)xs[3];
    int labels[8];
    for (int i = 0; i < B; i++) labels[i] = (int)yf[i];
    const size_t n = (size_t)B * os[1] * H * W;
    float *out = malloc(n * 4);
    fixture_poison(out, n);
    CHECKF(dfa_dit_forward(gpu, m, B, H, W, x, t, labels, out) == DFA_OK, "%s", dfa_ctx_error(gpu));
    double e = gpu_rel_l2(out, ref, n);
    printf("     dit fixture (head dim 16) CUDA forward vs diffusers: rel L2 %.3g (bound %.0e)\n", e, FIX_BOUND);
    CHECKF(e <= FIX_BOUND, "dit fixture: rel L2 %.3g", e);
    /* the 3-step DDIM loop with CFG */
    fixture_path("dit/scheduler/scheduler_config.json", cfg, sizeof cfg);
    dfa_sampler sch;
    if (dfa_sampler_init_file(gpu, &sch, cfg, DFA_SAMPLER_DPM) == DFA_OK) {
        float *noise = fixture_f32(io, "noise", NULL, ns), *fin = fixture_f32(io, "final", NULL, NULL);
        float *tref = fixture_f32(io, "timesteps", NULL, ts), *par = fixture_f32(io, "params", NULL, NULL);
        const int h = (int)ns[2], w = (int)ns[3];
        const size_t nl = (size_t)ns[1] * h * w;
        CHECK(dfa_sampler_set_timesteps(gpu, &sch, (int)ts[0], nl, 0) == DFA_OK);
        CHECKF(dfa_dit_sample(gpu, m, &sch, (int)par[0], par[2], h, w, noise, NULL, NULL) == DFA_OK, "%s",
               dfa_ctx_error(gpu));
        e = gpu_rel_l2(noise, fin, nl);
        printf("     dit fixture CUDA 3-step DDIM + CFG %.1f vs diffusers: rel L2 %.3g (bound %.0e)\n", par[2], e,
               LOOP_BOUND);
        CHECKF(e <= LOOP_BOUND, "dit fixture loop: rel L2 %.3g", e);
        free(noise), free(fin), free(tref), free(par);
        dfa_sampler_free(gpu, &sch);
    } else {
        CHECKF(0, "scheduler: %s", dfa_ctx_error(gpu));
    }
    free(x), free(t), free(yf), free(ref), free(out);
out:
    dfa_st_close(io);
    dfa_dit_free(gpu, m);
}

static void pixart_fixture(dfa_ctx *gpu, const char *name, int loop) {
    char dir[1024], rel[256];
    snprintf(rel, sizeof rel, "%s/transformer", name);
    fixture_path(rel, dir, sizeof dir);
    dfa_pixart *m = NULL;
    CHECKF(dfa_pixart_load(gpu, dir, &m) == DFA_OK, "%s", dfa_ctx_error(gpu));
    snprintf(rel, sizeof rel, "%s/io.safetensors", name);
    dfa_safetensors *io = fixture_open(rel);
    if (!m || !io) goto out;
    int64_t xs[8], os[8], es[8], ns[8], ts[8];
    float *x = fixture_f32(io, "x", NULL, xs), *t = fixture_f32(io, "t", NULL, NULL);
    float *enc = fixture_f32(io, "enc", NULL, es), *mask = fixture_f32(io, "mask", NULL, NULL);
    float *ref = fixture_f32(io, "out", NULL, os);
    const int B = (int)xs[0], H = (int)xs[2], W = (int)xs[3], L = (int)es[1];
    const size_t n = (size_t)B * os[1] * H * W;
    float *out = malloc(n * 4);
    fixture_poison(out, n);
    CHECKF(dfa_pixart_forward(gpu, m, B, H, W, x, t, L, enc, mask, out) == DFA_OK, "%s", dfa_ctx_error(gpu));
    double e = gpu_rel_l2(out, ref, n);
    printf("     %s fixture (head dim %d) CUDA forward vs diffusers: rel L2 %.3g (bound %.0e)\n", name,
           dfa_pixart_get_config(m)->head_dim, e, FIX_BOUND);
    CHECKF(e <= FIX_BOUND, "%s fixture: rel L2 %.3g", name, e);
    if (loop) {
        char cfg[1024];
        fixture_path("pixart/scheduler/scheduler_config.json", cfg, sizeof cfg);
        dfa_sampler sch;
        if (dfa_sampler_init_file(gpu, &sch, cfg, DFA_SAMPLER_DDIM) == DFA_OK) {
            float *noise = fixture_f32(io, "noise", NULL, ns), *fin = fixture_f32(io, "final", NULL, NULL);
            float *tref = fixture_f32(io, "timesteps", NULL, ts), *par = fixture_f32(io, "params", NULL, NULL);
            const int h = (int)ns[2], w = (int)ns[3];
            const size_t nl = (size_t)ns[1] * h * w, tw = (size_t)L * es[2];
            CHECK(dfa_sampler_set_timesteps(gpu, &sch, (int)ts[0], nl, 0) == DFA_OK);
            CHECKF(dfa_pixart_sample(gpu, m, &sch, par[0], h, w, L, enc + tw, mask + L, enc, mask, noise, NULL,
                                     NULL) == DFA_OK,
                   "%s", dfa_ctx_error(gpu));
            e = gpu_rel_l2(noise, fin, nl);
            printf("     pixart fixture CUDA 3-step DPM-Solver++ + CFG %.1f vs diffusers: rel L2 %.3g (bound %.0e)\n",
                   par[0], e, LOOP_BOUND);
            CHECKF(e <= LOOP_BOUND, "pixart fixture loop: rel L2 %.3g", e);
            free(noise), free(fin), free(tref), free(par);
            dfa_sampler_free(gpu, &sch);
        } else {
            CHECKF(0, "scheduler: %s", dfa_ctx_error(gpu));
        }
    }
    free(x), free(t), free(enc), free(mask), free(ref), free(out);
out:
    dfa_st_close(io);
    dfa_pixart_free(gpu, m);
}

/* ---- (c) a plan on both engines ---- */

static void random_plan(dfa_plan *p, const dfa_attn_layout *L, int gh, int gw, int S, int layers, int H,
                        int drastic, unsigned long long seed) {
    dfa_error err;
    CHECK(dfa_plan_init(p, L, S, layers, H, &err) == DFA_OK);
    p->grid_h = gh, p->grid_w = gw, p->cfg = 1, p->cond_half = 1;
    /* drastic: every head ARROW(0) after the first step (each query tile sees its own tile only) */
    dfa_plan_make_opts o = {drastic ? DFA_PLAN_PAT_ARROW : DFA_PLAN_PAT_RANDOM, drastic ? 0 : dfa_mask_full_window(L),
                            1, 1, 0, seed};
    CHECKF(dfa_plan_make(p, &o, &err) == DFA_OK, "%s", err.msg);
    unsigned long long r = seed * 31 + 7;
    for (int st = 1; st < S; st++)
        for (int l = 0; l < layers; l++) p->asc[(size_t)st * layers + l] = test_rng_next(&r) % 3 == 0;
    p->method_set |= DFA_PLAN_SET_ASC;
    CHECKF(dfa_plan_validate(p, "test", &err) == DFA_OK, "%s", err.msg);
    int64_t nm[DFA_ATTN_METHOD_COUNT] = {0};
    for (size_t i = 0; i < (size_t)S * layers * H; i++) nm[p->method[i]]++;
    printf("     plan: %lld full, %lld arrow, %lld arrow_rs, %lld cache head-steps\n", (long long)nm[0], (long long)nm[1],
           (long long)nm[2], (long long)nm[3]);
    CHECK(nm[DFA_ATTN_ARROW] + nm[DFA_ATTN_ARROW_RS] + nm[DFA_ATTN_CACHE] > 0);
}

/* the fixture models (diffusers' perturbed weights: attention moves their outputs far more than
 * it moves the random checkpoints') at 192 tokens (two query tiles), 4 steps with CFG */
static void plan_loop(dfa_ctx *cpu, dfa_ctx *gpu, int pixart) {
    char dir[1024];
    fixture_path(pixart ? "pixart/transformer" : "dit/transformer", dir, sizeof dir);
    const int h = 32, w = 24, S = 4, C = 4, L = 11, cap = 24; /* 16 x 12 = 192 tokens */
    const size_t n = (size_t)C * h * w;
    float *lat0 = malloc(n * 4), *lc = malloc(n * 4), *lg = malloc(n * 4);
    float *txt = malloc((size_t)2 * L * cap * 4), *mask = malloc((size_t)2 * L * 4);
    unsigned long long rng = 0x91a4ULL + (unsigned)pixart;
    gpu_fill_bf16(lat0, n, &rng, 1.5f);
    gpu_fill_bf16(txt, (size_t)2 * L * cap, &rng, 1.0f);
    for (int i = 0; i < 2 * L; i++) mask[i] = (i % L) < (i < L ? 4 : L) ? 1.0f : 0.0f;
    void *mc = NULL, *mg = NULL;
    dfa_status sc, sg;
    if (pixart)
        sc = dfa_pixart_load(cpu, dir, (dfa_pixart **)&mc), sg = dfa_pixart_load(gpu, dir, (dfa_pixart **)&mg);
    else
        sc = dfa_dit_load(cpu, dir, (dfa_dit **)&mc), sg = dfa_dit_load(gpu, dir, (dfa_dit **)&mg);
    CHECKF(sc == DFA_OK && sg == DFA_OK, "%s / %s", dfa_ctx_error(cpu), dfa_ctx_error(gpu));
    if (mc && mg) {
        const dfa_attn_layout lay = pixart ? dfa_pixart_attn_layout(mc, h, w) : dfa_dit_attn_layout(mc, h, w);
        const int layers = pixart ? dfa_pixart_get_config(mc)->layers : dfa_dit_get_config(mc)->layers;
        const int heads = pixart ? dfa_pixart_get_config(mc)->heads : dfa_dit_get_config(mc)->heads;
        /* (1) a random plan (every method, ASC) over a 4-step loop: same latents on both engines
         * (attention moves these latents little, so this checks the GPU path runs every method and
         * cache without error or gross mismatch) */
        dfa_plan plan;
        random_plan(&plan, &lay, 16, 12, S, layers, heads, 0, 5 + (unsigned)pixart);
        float *outs[2] = {lc, lg};
        dfa_ctx *ctxs[2] = {cpu, gpu};
        void *ms[2] = {mc, mg};
        for (int run = 0; run < 2; run++) {
            dfa_ctx *ctx = ctxs[run];
            CHECKF(dfa_attn_set_plan(ctx, &plan) == DFA_OK, "%s", dfa_ctx_error(ctx));
            dfa_sampler sch;
            CHECKF(dfa_dit_open_sampler(ctx, "/nonexistent", pixart, S, n, 3, &sch) == DFA_OK, "%s",
                   dfa_ctx_error(ctx));
            memcpy(outs[run], lat0, n * 4);
            dfa_status s = pixart ? dfa_pixart_sample(ctx, ms[run], &sch, 4.5f, h, w, L, txt + (size_t)L * cap,
                                                      mask + L, txt, mask, outs[run], NULL, NULL)
                                  : dfa_dit_sample(ctx, ms[run], &sch, 3, 4.0f, h, w, outs[run], NULL, NULL);
            CHECKF(s == DFA_OK, "run %d: %s", run, dfa_ctx_error(ctx));
            dfa_sampler_free(ctx, &sch);
            dfa_attn_clear_plan(ctx);
        }
        double e = gpu_rel_l2(lg, lc, n);
        printf("     %s fixture %d-step loop under a random plan, CUDA vs CPU: rel L2 %.3g (bound %.0e)\n",
               pixart ? "pixart" : "dit", S, e, LOOP_BOUND);
        CHECKF(e <= LOOP_BOUND, "%s random plan: rel L2 %.3g", pixart ? "pixart" : "dit", e);
        dfa_plan_free(&plan);
        /* (2) every head ARROW(0) at step 1 (each query tile sees only its own tile): the forward of
         * that step on both engines, against the GPU forward without a plan (the plan's effect) */
        random_plan(&plan, &lay, 16, 12, S, layers, heads, 1, 9);
        const size_t no = (size_t)2 * 8 * h * w;
        float *xi = malloc(2 * n * 4), *fo[3] = {malloc(no * 4), malloc(no * 4), malloc(no * 4)};
        memcpy(xi, lat0, n * 4), memcpy(xi + n, lat0, n * 4);
        const float t[2] = {500.0f, 500.0f};
        const int lab[2] = {10, 3};
        dfa_ctx *c3[3] = {cpu, gpu, gpu};
        void *m3[3] = {mc, mg, mg};
        for (int run = 0; run < 3; run++) { /* CPU with the plan, GPU with it, GPU without */
            dfa_ctx *ctx = c3[run];
            fixture_poison(fo[run], no);
            if (run < 2) CHECKF(dfa_attn_set_plan(ctx, &plan) == DFA_OK, "%s", dfa_ctx_error(ctx));
            for (int st = 0; st < 2; st++) {
                if (run < 2) CHECKF(dfa_attn_begin_step(ctx, st) == DFA_OK, "%s", dfa_ctx_error(ctx));
                dfa_status s = pixart ? dfa_pixart_forward(ctx, m3[run], 2, h, w, xi, t, L, txt, mask, fo[run])
                                      : dfa_dit_forward(ctx, m3[run], 2, h, w, xi, t, lab, fo[run]);
                CHECKF(s == DFA_OK, "run %d step %d: %s", run, st, dfa_ctx_error(ctx));
            }
            if (run < 2) dfa_attn_end_run(ctx);
            dfa_attn_clear_plan(ctx);
        }
        e = gpu_rel_l2(fo[1], fo[0], no);
        const double effect = gpu_rel_l2(fo[2], fo[0], no);
        printf("     %s fixture forward under ARROW(0), CUDA vs CPU: rel L2 %.3g (bound %.0e); without the plan: "
               "%.3g\n", pixart ? "pixart" : "dit", e, FIX_BOUND, effect);
        CHECKF(e <= FIX_BOUND && 2 * e < effect, "%s ARROW(0): rel L2 %.3g, plan effect %.3g",
               pixart ? "pixart" : "dit", e, effect);
        free(xi), free(fo[0]), free(fo[1]), free(fo[2]);
        dfa_plan_free(&plan);
    }
    if (pixart) {
        dfa_pixart_free(cpu, mc);
        dfa_pixart_free(gpu, mg);
    } else {
        dfa_dit_free(cpu, mc);
        dfa_dit_free(gpu, mg);
    }
    free(lat0), free(lc), free(lg), free(txt), free(mask);
}

/* ---- (d) dfa_model_load + dfa_generate on both backends ---- */

static void api_generate(dfa_ctx *cpu, dfa_ctx *gpu) {
    test_tmpdir d;
    if (tmpdir_make(&d, "dit_api") != 0) return;
    char p[256], vae[1024];
    tmpdir_file(&d, "transformer", p, sizeof p);
    mkdir(p, 0755);
    const char *cfg = "{\"_class_name\": \"DiTTransformer2DModel\", \"num_attention_heads\": 2,"
                      " \"attention_head_dim\": 64, \"in_channels\": 4, \"out_channels\": 8, \"num_layers\": 2,"
                      " \"sample_size\": 16, \"patch_size\": 2, \"num_embeds_ada_norm\": 10}";
    char path[256];
    CHECK(tmpdir_write(&d, "transformer/config.json", cfg, strlen(cfg), path, sizeof path) != NULL);
    CHECKF(dfa_dit_write_random(cpu, p, 31) == DFA_OK, "%s", dfa_ctx_error(cpu));
    fixture_path("vae4/vae", vae, sizeof vae);
    tmpdir_file(&d, "vae", p, sizeof p);
    CHECK(symlink(vae, p) == 0);
    dfa_model *mc = NULL, *mg = NULL;
    CHECKF(dfa_model_load(cpu, d.path, &mc) == DFA_OK, "%s", dfa_ctx_error(cpu));
    CHECKF(dfa_model_load(gpu, d.path, &mg) == DFA_OK, "%s", dfa_ctx_error(gpu));
    if (mc && mg) {
        dfa_generate_params gp = dfa_generate_default_params();
        gp.steps = 3, gp.class_label = 5, gp.seed = 12, gp.cfg_scale = 4.0f;
        int c = 0, h = 0, w = 0;
        CHECK(dfa_generate_latent_shape(gpu, mg, &gp, &c, &h, &w) == DFA_OK);
        const size_t nl = (size_t)c * h * w;
        float *lc = malloc((nl ? nl : 1) * 4), *lg = malloc((nl ? nl : 1) * 4);
        fixture_poison(lc, nl), fixture_poison(lg, nl);
        dfa_image ic = {0}, ig = {0};
        CHECKF(dfa_generate(cpu, mc, &gp, &ic, lc, nl) == DFA_OK, "%s", dfa_ctx_error(cpu));
        CHECKF(dfa_generate(gpu, mg, &gp, &ig, lg, nl) == DFA_OK, "%s", dfa_ctx_error(gpu));
        const double e = gpu_rel_l2(lg, lc, nl);
        printf("     dfa_generate DiT %dx%d latents, 3 steps + CFG 4, CUDA vs CPU: rel L2 %.3g (bound %.0e)\n", h, w,
               e, LOOP_BOUND);
        CHECKF(nl > 0 && e <= LOOP_BOUND, "api latents rel L2 %.3g", e);
        CHECK(ic.data && ig.data && ic.width == ig.width && ic.height == ig.height && ic.width > 0);
        if (ic.data && ig.data && ic.width == ig.width && ic.height == ig.height) {
            const size_t n = (size_t)ic.width * ic.height * 3;
            double sum = 0;
            for (size_t i = 0; i < n; i++) sum += fabs((double)ic.data[i] - (double)ig.data[i]);
            /* bf16 latents and VAE: a few levels of 255 on average; a broken decode is tens */
            printf("     dfa_generate image %dx%d, CUDA vs CPU: mean |diff| %.2f / 255 (bound 4)\n", ic.width,
                   ic.height, sum / n);
            CHECKF(sum / n <= 4.0, "api image mean diff %.2f", sum / n);
        }
        dfa_image_free(&ic);
        dfa_image_free(&ig);
        free(lc), free(lg);
    }
    dfa_model_free(mc);
    dfa_model_free(mg);
    tmpdir_remove(&d);
}

/* the two contexts every case uses (test-only state, as test.h's counters) */
static dfa_ctx *g_cpu, *g_gpu;
static void dit_hd64(void) { dit_random(g_cpu, g_gpu, 64); }
static void dit_hd72(void) { dit_random(g_cpu, g_gpu, 72); }
static void pixart_hd64(void) { pixart_random(g_cpu, g_gpu, 64, 0); }
static void pixart_hd72(void) { pixart_random(g_cpu, g_gpu, 72, 0); }
static void pixart_hd72_size_cond(void) { pixart_random(g_cpu, g_gpu, 72, 1); }
static void dit_diffusers(void) { dit_fixture(g_gpu); }
static void pixart_diffusers(void) { pixart_fixture(g_gpu, "pixart", 1); }
static void pixart_alpha_diffusers(void) { pixart_fixture(g_gpu, "pixart_alpha", 0); }
static void api_dit_generate(void) { api_generate(g_cpu, g_gpu); }
static void dit_plan(void) { plan_loop(g_cpu, g_gpu, 0); }
static void pixart_plan(void) { plan_loop(g_cpu, g_gpu, 1); }

int main(void) {
    g_cpu = gpu_new_ctx(DFA_BACKEND_CPU), g_gpu = gpu_new_ctx(DFA_BACKEND_CUDA);
    CHECK(g_cpu && g_gpu);
    if (g_cpu && g_gpu) {
        RUN(dit_hd64);
        RUN(dit_hd72);
        RUN(pixart_hd64);
        RUN(pixart_hd72);
        RUN(pixart_hd72_size_cond);
        RUN(dit_diffusers);
        RUN(pixart_diffusers);
        RUN(pixart_alpha_diffusers);
        RUN(dit_plan);
        RUN(pixart_plan);
        RUN(api_dit_generate);
    }
    dfa_ctx_free(g_cpu);
    dfa_ctx_free(g_gpu);
    return test_summary();
}
