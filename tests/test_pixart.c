/* test_pixart.c - PixArtTransformer2DModel against diffusers (tests/fixtures/pixart from
 * tests/fixtures/gen_vae_dit.py): one forward at a latent size other than sample_size (so
 * the interpolated position embedding is exercised) with a padded text mask, and a 3-step
 * DPM-Solver++ loop with CFG batched [uncond, cond]. */
#include "core/ctx.h"
#include "fixture.h"
#include "models/pixart.h"
#include "models/dit_pipe.h"
#include "sample/sampler.h"
#include "attn/attn_state.h"
#include "plan/plan.h"
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

static dfa_pixart *load(dfa_ctx *ctx) {
    char dir[1024];
    fixture_path("pixart/transformer", dir, sizeof dir);
    dfa_pixart *m = NULL;
    dfa_status s = dfa_pixart_load(ctx, dir, &m);
    CHECKF(s == DFA_OK, "load: %s", dfa_ctx_error(ctx));
    return m;
}

static void test_forward(void) {
    dfa_ctx *ctx = new_ctx();
    dfa_pixart *m = load(ctx);
    dfa_safetensors *io = fixture_open("pixart/io.safetensors");
    if (!m || !io) goto out;
    int64_t xs[8], os[8], es[8];
    float *x = fixture_f32(io, "x", NULL, xs), *t = fixture_f32(io, "t", NULL, NULL);
    float *enc = fixture_f32(io, "enc", NULL, es), *mask = fixture_f32(io, "mask", NULL, NULL);
    float *ref = fixture_f32(io, "out", NULL, os);
    const int B = (int)xs[0], H = (int)xs[2], W = (int)xs[3], L = (int)es[1];
    CHECK(H != dfa_pixart_get_config(m)->sample_size || W != dfa_pixart_get_config(m)->sample_size);
    const size_t n = (size_t)B * os[1] * H * W;
    float *out = malloc(n * sizeof(float));
    fixture_poison(out, n);
    dfa_status s = dfa_pixart_forward(ctx, m, B, H, W, x, t, L, enc, mask, out);
    CHECKF(s == DFA_OK, "forward: %s", dfa_ctx_error(ctx));
    double e = fixture_rel_err(out, ref, n);
    printf("     pixart forward rel err %.3g (bound 1e-4)\n", e);
    CHECKF(e <= 1e-4, "rel err %g", e);
    /* the mask matters: without it the result must differ */
    s = dfa_pixart_forward(ctx, m, B, H, W, x, t, L, enc, NULL, out);
    CHECK(s == DFA_OK && fixture_rel_err(out, ref, n) > 1e-3);
    free(x), free(t), free(enc), free(mask), free(ref), free(out);
out:
    dfa_st_close(io);
    dfa_pixart_free(ctx, m);
    dfa_ctx_free(ctx);
}

static void test_dpm_loop(void) {
    dfa_ctx *ctx = new_ctx();
    dfa_pixart *m = load(ctx);
    dfa_safetensors *io = fixture_open("pixart/io.safetensors");
    char cfg[1024];
    fixture_path("pixart/scheduler/scheduler_config.json", cfg, sizeof cfg);
    dfa_sampler sch;
    dfa_status s = dfa_sampler_init_file(ctx, &sch, cfg, DFA_SAMPLER_DDIM);
    CHECKF(s == DFA_OK && sch.kind == DFA_SAMPLER_DPM, "%s", dfa_ctx_error(ctx));
    if (!m || !io || s != DFA_OK) goto out;
    int64_t ns[8], ts[8], es[8];
    float *noise = fixture_f32(io, "noise", NULL, ns), *ref = fixture_f32(io, "final", NULL, NULL);
    float *tref = fixture_f32(io, "timesteps", NULL, ts), *par = fixture_f32(io, "params", NULL, NULL);
    float *enc = fixture_f32(io, "enc", NULL, es), *mask = fixture_f32(io, "mask", NULL, NULL);
    const int h = (int)ns[2], w = (int)ns[3], steps = (int)ts[0], L = (int)es[1];
    const size_t n = (size_t)ns[1] * h * w, tw = (size_t)L * es[2];
    /* fixture batch rows: [uncond, cond] */
    CHECK(dfa_sampler_set_timesteps(ctx, &sch, steps, n, 0) == DFA_OK);
    s = dfa_pixart_sample(ctx, m, &sch, par[0], h, w, L, enc + tw, mask + L, enc, mask, noise, NULL, NULL);
    CHECKF(s == DFA_OK, "sample: %s", dfa_ctx_error(ctx));
    for (int i = 0; i < steps; i++) CHECK(dfa_sampler_timestep(&sch, i) == (int)tref[i]);
    double e = fixture_rel_err(noise, ref, n);
    printf("     pixart %d-step DPM-Solver++ + CFG %.1f: rel err %.3g (bound 1e-4)\n", steps, par[0], e);
    CHECKF(e <= 1e-4, "rel err %g", e);
    free(noise), free(ref), free(tref), free(par), free(enc), free(mask);
out:
    dfa_sampler_free(ctx, &sch);
    dfa_st_close(io);
    dfa_pixart_free(ctx, m);
    dfa_ctx_free(ctx);
}

/* The sampling loop under an attention plan: all-FULL equals the plain run; a plan with CACHE
 * and ASC entries runs through the same calls (steps begun in order) and changes the result. */
static void test_plan_driven(void) {
    dfa_ctx *ctx = new_ctx();
    dfa_pixart *m = load(ctx);
    dfa_safetensors *io = fixture_open("pixart/io.safetensors");
    char cfg[1024];
    fixture_path("pixart/scheduler/scheduler_config.json", cfg, sizeof cfg);
    dfa_sampler sch;
    dfa_error err = {0};
    CHECK(dfa_sampler_init_file(ctx, &sch, cfg, DFA_SAMPLER_DPM) == DFA_OK);
    if (!m || !io) goto out;
    int64_t ns[8], es[8];
    float *noise = fixture_f32(io, "noise", NULL, ns), *enc = fixture_f32(io, "enc", NULL, es);
    float *mask = fixture_f32(io, "mask", NULL, NULL);
    const int h = (int)ns[2], w = (int)ns[3], L = (int)es[1], steps = 3;
    const size_t n = (size_t)ns[1] * h * w, tw = (size_t)L * es[2];
    const dfa_pixart_config *c = dfa_pixart_get_config(m);
    float *plain = malloc(n * sizeof(float)), *x = malloc(n * sizeof(float));
    memcpy(plain, noise, n * sizeof(float));
    CHECK(dfa_sampler_set_timesteps(ctx, &sch, steps, n, 0) == DFA_OK &&
          dfa_pixart_sample(ctx, m, &sch, 4.5f, h, w, L, enc + tw, mask + L, enc, mask, plain, NULL, NULL) == DFA_OK);
    const int p = c->patch_size;
    dfa_attn_layout lay = dfa_pixart_attn_layout(m, h, w);
    CHECK(lay.n_vis == (h / p) * (w / p) && lay.n_text == 0 && lay.block == 128);
    dfa_plan plan;
    CHECK(dfa_plan_init(&plan, &lay, steps, c->layers, c->heads, &err) == DFA_OK);
    plan.cfg = 1;
    plan.cond_half = 1;
    plan.grid_h = h / p;
    plan.grid_w = w / p;
    CHECK(dfa_plan_validate(&plan, "plan", &err) == DFA_OK);
    CHECKF(dfa_attn_set_plan(ctx, &plan) == DFA_OK, "%s", dfa_ctx_error(ctx));
    memcpy(x, noise, n * sizeof(float));
    dfa_status s = dfa_sampler_set_timesteps(ctx, &sch, steps, n, 0);
    if (s == DFA_OK) s = dfa_pixart_sample(ctx, m, &sch, 4.5f, h, w, L, enc + tw, mask + L, enc, mask, x, NULL, NULL);
    CHECKF(s == DFA_OK, "%s", dfa_ctx_error(ctx));
    CHECKF(fixture_rel_err(x, plain, n) <= 1e-6, "all-FULL plan: rel err %g", fixture_rel_err(x, plain, n));
    /* step 2: layer 0 heads CACHE (reuse step 1), layer 1 ASC */
    for (int hd = 0; hd < c->heads; hd++) plan.method[dfa_plan_index(&plan, 2, 0, hd)] = DFA_ATTN_CACHE;
    plan.asc[2 * plan.n_layers + 1] = 1;
    plan.method_set = DFA_PLAN_SET_CACHE | DFA_PLAN_SET_ASC;
    CHECKF(dfa_plan_validate(&plan, "plan", &err) == DFA_OK, "%s", err.msg);
    CHECKF(dfa_attn_set_plan(ctx, &plan) == DFA_OK, "%s", dfa_ctx_error(ctx));
    memcpy(x, noise, n * sizeof(float));
    s = dfa_sampler_set_timesteps(ctx, &sch, steps, n, 0);
    if (s == DFA_OK) s = dfa_pixart_sample(ctx, m, &sch, 4.5f, h, w, L, enc + tw, mask + L, enc, mask, x, NULL, NULL);
    CHECKF(s == DFA_OK, "%s", dfa_ctx_error(ctx));
    double e = fixture_rel_err(x, plain, n);
    CHECKF(e > 1e-6 && e < 1e30, "compressed plan: rel err %g (expected a finite change)", e);
    /* a plan for other steps: a clear error from the first begin_step past its end */
    memcpy(x, noise, n * sizeof(float));
    CHECK(dfa_sampler_set_timesteps(ctx, &sch, steps + 1, n, 0) == DFA_OK &&
          dfa_pixart_sample(ctx, m, &sch, 4.5f, h, w, L, enc + tw, mask + L, enc, mask, x, NULL, NULL) ==
          DFA_ERR_INVALID_ARG);
    dfa_attn_clear_plan(ctx);
    dfa_plan_free(&plan);
    free(noise), free(enc), free(mask), free(plain), free(x);
out:
    dfa_sampler_free(ctx, &sch);
    dfa_st_close(io);
    dfa_pixart_free(ctx, m);
    dfa_ctx_free(ctx);
}

/* Missing and misshapen checkpoint tensors: errors name the tensor and both shapes. */
static void test_broken_checkpoint(void) {
    const char *victim = "transformer_blocks.1.attn2.to_k.weight";
    char dir[1024];
    fixture_path("pixart/transformer", dir, sizeof dir);
    for (int mode = 0; mode < 2; mode++) {
        test_tmpdir t;
        if (tmpdir_make(&t, "pixartbad") != 0) return;
        if (fixture_broken_copy(dir, victim, mode, t.path) == 0) {
            dfa_ctx *ctx = new_ctx();
            dfa_pixart *m = NULL;
            dfa_status s = dfa_pixart_load(ctx, t.path, &m);
            const char *msg = dfa_ctx_error(ctx);
            CHECK(m == NULL);
            CHECKF(s == (mode == 0 ? DFA_ERR_NOT_FOUND : DFA_ERR_SHAPE), "status %d: %s", (int)s, msg);
            CHECKF(strstr(msg, victim) != NULL, "message does not name the tensor: %s", msg);
            if (mode == 1) CHECKF(strstr(msg, "[32, 32]") && strstr(msg, "[1024]"), "shapes: %s", msg);
            dfa_ctx_free(ctx);
        }
        tmpdir_remove(&t);
    }
}

/* Prompt-embeddings file + pipeline entry: equals diffusers' loop; missing tensors are named. */
static void test_generate(void) {
    dfa_ctx *ctx = new_ctx();
    dfa_pixart *m = load(ctx);
    dfa_safetensors *io = fixture_open("pixart/io.safetensors");
    test_tmpdir td;
    int have_tmp = tmpdir_make(&td, "pixgen") == 0;
    if (!m || !io || !have_tmp) goto out;
    int64_t ns[8], ts[8], es[8];
    float *noise = fixture_f32(io, "noise", NULL, ns), *ref = fixture_f32(io, "final", NULL, NULL);
    float *tref = fixture_f32(io, "timesteps", NULL, ts), *par = fixture_f32(io, "params", NULL, NULL);
    float *enc = fixture_f32(io, "enc", NULL, es), *mask = fixture_f32(io, "mask", NULL, NULL);
    const int h = (int)ns[2], w = (int)ns[3], L = (int)es[1], C = (int)es[2];
    const size_t n = (size_t)ns[1] * h * w, tw = (size_t)L * C;
    const int64_t e3[3] = {1, L, C}, m2[2] = {1, L};
    /* fixture rows are [uncond, cond] */
    dfa_st_item items[4] = {{"prompt_embeds", DFA_F32, 3, e3, enc + tw},
                            {"prompt_attention_mask", DFA_F32, 2, m2, mask + L},
                            {"negative_prompt_embeds", DFA_F32, 3, e3, enc},
                            {"negative_prompt_attention_mask", DFA_F32, 2, m2, mask}};
    char file[256], dir[1024];
    tmpdir_file(&td, "embeds.safetensors", file, sizeof file);
    dfa_error err = {0};
    CHECK(dfa_st_write(file, items, 4, NULL, NULL, 0, &err) == DFA_OK);
    dfa_pixart_embeds pe;
    dfa_status s = dfa_pixart_embeds_load(ctx, file, &pe);
    CHECKF(s == DFA_OK, "%s", dfa_ctx_error(ctx));
    fixture_path("pixart", dir, sizeof dir);
    float *a = malloc(n * sizeof(float));
    dfa_dit_gen_params p = {.steps = (int)ts[0], .latent_h = h, .latent_w = w, .cfg_scale = par[0],
                            .init_latents = noise};
    fixture_poison(a, n);
    s = dfa_pixart_generate(ctx, m, dir, &pe, &p, a);
    CHECKF(s == DFA_OK, "%s", dfa_ctx_error(ctx));
    CHECKF(fixture_rel_err(a, ref, n) <= 1e-4, "generate vs diffusers: %g", fixture_rel_err(a, ref, n));
    double attn = 0, total = 0;
    dfa_pixart_times(m, &attn, &total);
    CHECK(total > 0 && attn > 0 && attn < total);
    dfa_pixart_embeds_free(ctx, &pe);
    /* no negatives: CFG refused with a clear message; without CFG it runs */
    CHECK(dfa_st_write(file, items, 2, NULL, NULL, 0, &err) == DFA_OK);
    CHECK(dfa_pixart_embeds_load(ctx, file, &pe) == DFA_OK);
    CHECK(dfa_pixart_generate(ctx, m, dir, &pe, &p, a) == DFA_ERR_INVALID_ARG);
    CHECK(strstr(dfa_ctx_error(ctx), "negative_prompt_embeds") != NULL);
    p.cfg_scale = 1.0f;
    CHECK(dfa_pixart_generate(ctx, m, dir, &pe, &p, a) == DFA_OK);
    dfa_pixart_embeds_free(ctx, &pe);
    /* missing prompt_embeds / wrong width: named */
    CHECK(dfa_st_write(file, items + 1, 1, NULL, NULL, 0, &err) == DFA_OK);
    CHECK(dfa_pixart_embeds_load(ctx, file, &pe) == DFA_ERR_NOT_FOUND);
    CHECK(strstr(dfa_ctx_error(ctx), "prompt_embeds") != NULL);
    const int64_t bad[3] = {1, L / 2, 2 * C};
    dfa_st_item wrong = {"prompt_embeds", DFA_F32, 3, bad, enc};
    CHECK(dfa_st_write(file, &wrong, 1, NULL, NULL, 0, &err) == DFA_OK);
    CHECK(dfa_pixart_embeds_load(ctx, file, &pe) == DFA_OK);
    CHECK(dfa_pixart_generate(ctx, m, dir, &pe, &p, a) == DFA_ERR_SHAPE);
    dfa_pixart_embeds_free(ctx, &pe);
    free(noise), free(ref), free(tref), free(par), free(enc), free(mask), free(a);
out:
    if (have_tmp) tmpdir_remove(&td);
    dfa_st_close(io);
    dfa_pixart_free(ctx, m);
    dfa_ctx_free(ctx);
}

/* PixArt-Alpha style config (use_additional_conditions): resolution / aspect-ratio embedding. */
static void test_alpha_forward(void) {
    dfa_ctx *ctx = new_ctx();
    char dir[1024];
    fixture_path("pixart_alpha/transformer", dir, sizeof dir);
    dfa_pixart *m = NULL;
    dfa_status s = dfa_pixart_load(ctx, dir, &m);
    CHECKF(s == DFA_OK, "load: %s", dfa_ctx_error(ctx));
    dfa_safetensors *io = fixture_open("pixart_alpha/io.safetensors");
    if (!m || !io) goto out;
    CHECK(dfa_pixart_get_config(m)->size_cond == 1);
    int64_t xs[8], os[8], es[8];
    float *x = fixture_f32(io, "x", NULL, xs), *t = fixture_f32(io, "t", NULL, NULL);
    float *enc = fixture_f32(io, "enc", NULL, es), *mask = fixture_f32(io, "mask", NULL, NULL);
    float *ref = fixture_f32(io, "out", NULL, os);
    const int B = (int)xs[0], H = (int)xs[2], W = (int)xs[3], L = (int)es[1];
    const size_t n = (size_t)B * os[1] * H * W;
    float *out = malloc(n * sizeof(float));
    fixture_poison(out, n);
    s = dfa_pixart_forward(ctx, m, B, H, W, x, t, L, enc, mask, out);
    CHECKF(s == DFA_OK, "forward: %s", dfa_ctx_error(ctx));
    double e = fixture_rel_err(out, ref, n);
    printf("     pixart-alpha (size conditioning) forward rel err %.3g (bound 1e-4)\n", e);
    CHECKF(e <= 1e-4, "rel err %g", e);
    free(x), free(t), free(enc), free(mask), free(ref), free(out);
out:
    dfa_st_close(io);
    dfa_pixart_free(ctx, m);
    dfa_ctx_free(ctx);
}

int main(void) {
    RUN(test_alpha_forward);
    RUN(test_generate);
    RUN(test_broken_checkpoint);
    RUN(test_plan_driven);
    RUN(test_forward);
    RUN(test_dpm_loop);
    return test_summary();
}
