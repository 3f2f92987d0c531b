/* test_dit.c - DiTTransformer2DModel against diffusers (tests/fixtures/dit from
 * tests/fixtures/gen_vae_dit.py): one forward at two timesteps / labels (one of them the
 * null class), and a 3-step DDIM loop with CFG batched [cond, uncond] as DiTPipeline does. */
#include "core/ctx.h"
#include "fixture.h"
#include "models/dit.h"
#include "models/dit_pipe.h"
#include "sample/sampler.h"
#include "test.h"
#include "tmpdir.h"

static dfa_ctx *new_ctx(void) {
    dfa_ctx_params p = dfa_ctx_default_params();
    p.n_threads = 2;
    dfa_ctx *ctx = NULL;
    char e[256];
    if (dfa_ctx_init(&ctx, &p, e, sizeof e) != DFA_OK) fprintf(stderr, "ctx: %s\n", e);
    return ctx;
}

static dfa_dit *load(dfa_ctx *ctx) {
    char dir[1024];
    fixture_path("dit/transformer", dir, sizeof dir);
    dfa_dit *m = NULL;
    dfa_status s = dfa_dit_load(ctx, dir, &m);
    CHECKF(s == DFA_OK, "load: %s", dfa_ctx_error(ctx));
    return m;
}

static void test_forward(void) {
    dfa_ctx *ctx = new_ctx();
    dfa_dit *m = load(ctx);
    dfa_safetensors *io = fixture_open("dit/io.safetensors");
    if (!m || !io) goto out;
    int64_t xs[8], os[8];
    float *x = fixture_f32(io, "x", NULL, xs), *t = fixture_f32(io, "t", NULL, NULL);
    float *yf = fixture_f32(io, "y", NULL, NULL), *ref = fixture_f32(io, "out", NULL, os);
    const int B = (int)xs[0], H = (int)xs[2], W = (int)xs[3];
    int labels[8];
    for (int i = 0; i < B; i++) labels[i] = (int)yf[i];
    CHECK(dfa_dit_get_config(m)->out_channels == (int)os[1]);
    const dfa_attn_layout lay = dfa_dit_attn_layout(m, H, W);
    CHECK(lay.n_vis == (H / 2) * (W / 2) && lay.n_text == 0 && lay.block == 128);
    const size_t n = (size_t)B * os[1] * H * W;
    float *out = malloc(n * sizeof(float));
    fixture_poison(out, n);
    dfa_status s = dfa_dit_forward(ctx, m, B, H, W, x, t, labels, out);
    CHECKF(s == DFA_OK, "forward: %s", dfa_ctx_error(ctx));
    double e = fixture_rel_err(out, ref, n);
    printf("     dit forward rel err %.3g (bound 1e-4)\n", e);
    CHECKF(e <= 1e-4, "rel err %g", e);
    /* bad label: clear error, no crash */
    labels[0] = 11;
    CHECK(dfa_dit_forward(ctx, m, B, H, W, x, t, labels, out) == DFA_ERR_INVALID_ARG);
    CHECK(strstr(dfa_ctx_error(ctx), "label 11") != NULL);
    free(x), free(t), free(yf), free(ref), free(out);
out:
    dfa_st_close(io);
    dfa_dit_free(ctx, m);
    dfa_ctx_free(ctx);
}

static void test_ddim_loop(void) {
    dfa_ctx *ctx = new_ctx();
    dfa_dit *m = load(ctx);
    dfa_safetensors *io = fixture_open("dit/io.safetensors");
    char cfg[1024];
    fixture_path("dit/scheduler/scheduler_config.json", cfg, sizeof cfg);
    dfa_sampler sch;
    dfa_status s = dfa_sampler_init_file(ctx, &sch, cfg, DFA_SAMPLER_DPM);
    CHECKF(s == DFA_OK && sch.kind == DFA_SAMPLER_DDIM, "%s", dfa_ctx_error(ctx));
    if (!m || !io || s != DFA_OK) goto out;
    int64_t ns[8], ts[8];
    float *noise = fixture_f32(io, "noise", NULL, ns), *ref = fixture_f32(io, "final", NULL, NULL);
    float *tref = fixture_f32(io, "timesteps", NULL, ts), *par = fixture_f32(io, "params", NULL, NULL);
    const int h = (int)ns[2], w = (int)ns[3], steps = (int)ts[0];
    const size_t n = (size_t)ns[1] * h * w;
    s = dfa_sampler_set_timesteps(ctx, &sch, steps, n, 0);
    CHECK(s == DFA_OK);
    s = dfa_dit_sample(ctx, m, &sch, (int)par[0], par[2], h, w, noise, NULL, NULL);
    CHECKF(s == DFA_OK, "sample: %s", dfa_ctx_error(ctx));
    CHECKF((int)par[1] == dfa_dit_get_config(m)->num_classes, "fixture null class %d", (int)par[1]);
    for (int i = 0; i < steps; i++) CHECK(dfa_sampler_timestep(&sch, i) == (int)tref[i]);
    double e = fixture_rel_err(noise, ref, n);
    printf("     dit %d-step DDIM + CFG %.1f: rel err %.3g (bound 1e-4)\n", steps, par[2], e);
    CHECKF(e <= 1e-4, "rel err %g", e);
    free(noise), free(ref), free(tref), free(par);
out:
    dfa_st_close(io);
    dfa_dit_free(ctx, m);
    dfa_ctx_free(ctx);
}

/* Missing and misshapen checkpoint tensors: errors name the tensor and both shapes. */
static void test_broken_checkpoint(void) {
    const char *victim = "transformer_blocks.1.norm1.linear.weight";
    char dir[1024];
    fixture_path("dit/transformer", dir, sizeof dir);
    for (int mode = 0; mode < 2; mode++) {
        test_tmpdir t;
        if (tmpdir_make(&t, "ditbad") != 0) return;
        if (fixture_broken_copy(dir, victim, mode, t.path) == 0) {
            dfa_ctx *ctx = new_ctx();
            dfa_dit *m = NULL;
            dfa_status s = dfa_dit_load(ctx, t.path, &m);
            const char *msg = dfa_ctx_error(ctx);
            CHECK(m == NULL);
            CHECKF(s == (mode == 0 ? DFA_ERR_NOT_FOUND : DFA_ERR_SHAPE), "status %d: %s", (int)s, msg);
            CHECKF(strstr(msg, victim) != NULL, "message does not name the tensor: %s", msg);
            if (mode == 1) CHECKF(strstr(msg, "[192, 32]") && strstr(msg, "[6144]"), "shapes: %s", msg);
            dfa_ctx_free(ctx);
        }
        tmpdir_remove(&t);
    }
}

/* DiT with the V1 paper's DPM-Solver++ and with the DiT paper's ancestral DDPM (learned-range
 * variance from the conditional item, diffusers' noise fed in), 3 steps each, CFG 4. */
static void loop_case(const char *sched_dir, const char *final_key, int ddpm) {
    dfa_ctx *ctx = new_ctx();
    dfa_dit *m = load(ctx);
    dfa_safetensors *io = fixture_open("dit/io.safetensors");
    char cfg[1024], rel[256];
    snprintf(rel, sizeof rel, "dit/%s/scheduler_config.json", sched_dir);
    fixture_path(rel, cfg, sizeof cfg);
    dfa_sampler sch;
    dfa_status s = dfa_sampler_init_file(ctx, &sch, cfg, DFA_SAMPLER_DDIM);
    CHECKF(s == DFA_OK && (int)sch.kind == (ddpm ? DFA_SAMPLER_DDPM : DFA_SAMPLER_DPM), "%s", dfa_ctx_error(ctx));
    if (!m || !io || s != DFA_OK) goto out;
    int64_t ns[8];
    float *noise = fixture_f32(io, "noise", NULL, ns), *ref = fixture_f32(io, final_key, NULL, NULL);
    float *par = fixture_f32(io, "params", NULL, NULL);
    float *dn = ddpm ? fixture_f32(io, "ddpm_noise", NULL, NULL) : NULL;
    const int h = (int)ns[2], w = (int)ns[3];
    const size_t n = (size_t)ns[1] * h * w;
    CHECK(dfa_sampler_set_timesteps(ctx, &sch, 3, n, 0) == DFA_OK);
    if (dn) dfa_sampler_set_noise(&sch, dn);
    s = dfa_dit_sample(ctx, m, &sch, (int)par[0], par[2], h, w, noise, NULL, NULL);
    CHECKF(s == DFA_OK, "sample: %s", dfa_ctx_error(ctx));
    double e = fixture_rel_err(noise, ref, n);
    printf("     dit 3-step %s + CFG %.1f: rel err %.3g (bound 1e-4)\n", sched_dir, par[2], e);
    CHECKF(e <= 1e-4, "rel err %g", e);
    free(noise), free(ref), free(par), free(dn);
out:
    dfa_sampler_free(ctx, &sch);
    dfa_st_close(io);
    dfa_dit_free(ctx, m);
    dfa_ctx_free(ctx);
}

static void test_dpm_loop(void) { loop_case("dpm", "final_dpm", 0); }
static void test_ddpm_learned_range_loop(void) { loop_case("ddpm", "final_ddpm", 1); }

/* The pipeline entry (scheduler read from the folder, given or seeded noise). */
static void test_generate(void) {
    dfa_ctx *ctx = new_ctx();
    dfa_dit *m = load(ctx);
    dfa_safetensors *io = fixture_open("dit/io.safetensors");
    if (!m || !io) goto out;
    int64_t ns[8], ts[8];
    float *noise = fixture_f32(io, "noise", NULL, ns), *ref = fixture_f32(io, "final", NULL, NULL);
    float *tref = fixture_f32(io, "timesteps", NULL, ts), *par = fixture_f32(io, "params", NULL, NULL);
    const int h = (int)ns[2], w = (int)ns[3];
    const size_t n = (size_t)ns[1] * h * w;
    char dir[1024];
    fixture_path("dit", dir, sizeof dir);
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    dfa_dit_gen_params p = {.steps = (int)ts[0], .latent_h = h, .latent_w = w, .cfg_scale = par[2],
                            .class_label = (int)par[0], .init_latents = noise};
    fixture_poison(a, n);
    dfa_status s = dfa_dit_generate(ctx, m, dir, &p, a);
    CHECKF(s == DFA_OK, "%s", dfa_ctx_error(ctx));
    CHECKF(fixture_rel_err(a, ref, n) <= 1e-4, "generate vs diffusers: %g", fixture_rel_err(a, ref, n));
    double attn = 0, total = 0;
    dfa_dit_times(m, &attn, &total);
    CHECK(total > 0 && attn > 0 && attn < total);
    p.init_latents = NULL;
    p.seed = 7;
    CHECK(dfa_dit_generate(ctx, m, dir, &p, a) == DFA_OK);
    CHECK(dfa_dit_generate(ctx, m, dir, &p, b) == DFA_OK);
    CHECK(memcmp(a, b, n * sizeof(float)) == 0);
    p.seed = 8;
    CHECK(dfa_dit_generate(ctx, m, dir, &p, b) == DFA_OK);
    CHECK(memcmp(a, b, n * sizeof(float)) != 0);
    p.class_label = dfa_dit_get_config(m)->num_classes; /* the null class is not a class */
    CHECK(dfa_dit_generate(ctx, m, dir, &p, b) == DFA_ERR_INVALID_ARG);
    free(noise), free(ref), free(tref), free(par), free(a), free(b);
out:
    dfa_st_close(io);
    dfa_dit_free(ctx, m);
    dfa_ctx_free(ctx);
}

/* Config problems: a missing key and an unsupported norm_type are named with the file. */
static void test_bad_config(void) {
    char src[1024];
    fixture_path("dit/transformer/config.json", src, sizeof src);
    FILE *f = fopen(src, "rb");
    char cfg[8192] = {0};
    size_t len = f ? fread(cfg, 1, sizeof cfg - 1, f) : 0;
    if (f) fclose(f);
    CHECK(len > 0);
    const char *cases[2][3] = {{"\"num_layers\"", "\"num_layerz\"", "num_layers"},
                               {"\"ada_norm_zero\"", "\"ada_norm_single\"", "ada_norm_single"}};
    for (int c = 0; c < 2; c++) {
        test_tmpdir t;
        if (tmpdir_make(&t, "ditcfg") != 0) return;
        char buf[8192], out[256];
        const char *hit = strstr(cfg, cases[c][0]);
        CHECK(hit != NULL);
        if (!hit) {
            tmpdir_remove(&t);
            continue;
        }
        size_t pre = (size_t)(hit - cfg);
        snprintf(buf, sizeof buf, "%.*s%s%s", (int)pre, cfg, cases[c][1], hit + strlen(cases[c][0]));
        CHECK(tmpdir_write(&t, "config.json", buf, strlen(buf), out, sizeof out) != NULL);
        dfa_ctx *ctx = new_ctx();
        dfa_dit *m = NULL;
        dfa_status s = dfa_dit_load(ctx, t.path, &m);
        CHECK(s != DFA_OK && m == NULL);
        CHECKF(strstr(dfa_ctx_error(ctx), cases[c][2]) && strstr(dfa_ctx_error(ctx), "config.json"), "%s",
               dfa_ctx_error(ctx));
        dfa_ctx_free(ctx);
        tmpdir_remove(&t);
    }
}

int main(void) {
    RUN(test_bad_config);
    RUN(test_generate);
    RUN(test_broken_checkpoint);
    RUN(test_forward);
    RUN(test_ddim_loop);
    RUN(test_dpm_loop);
    RUN(test_ddpm_learned_range_loop);
    return test_summary();
}
