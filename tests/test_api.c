/* test_api.c - the public C API (include/dfa.h) end to end on the tiny fixtures, through that
 * header alone: a model loads and reports its family and sizes; dfa_generate gives what
 * diffusers gives (FLUX: the fixture's smp_final from its smp_latents0; DiT: final from noise);
 * plans load, report their attention fraction, are checked against the run, change it when
 * compressed and leave it alone when all FULL; dfa_calibrate makes plans that fit their run;
 * bad calls fail with a status and a message. */
#include "dfa.h"
#include "test.h"
#include "tmpdir.h"

#define FLUX_DIR DFA_SOURCE_DIR "/tests/fixtures/flux_tiny"
#define FLUX_IO FLUX_DIR "/io.safetensors"
#define DIT_DIR DFA_SOURCE_DIR "/tests/fixtures/dit"

static dfa_ctx *new_ctx(void) {
    dfa_ctx *ctx = NULL;
    dfa_ctx_params p = dfa_ctx_default_params();
    p.n_threads = 2;
    p.log_level = DFA_LOG_WARN;
    char err[256];
    if (dfa_ctx_init(&ctx, &p, err, sizeof err) != DFA_OK) fprintf(stderr, "ctx: %s\n", err);
    return ctx;
}

static double rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return isfinite(num) ? sqrt(num / (den > 0 ? den : 1)) : INFINITY;
}

static void poison(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = NAN;
}

static int has(const dfa_ctx *ctx, const char *text) { return strstr(dfa_ctx_error(ctx), text) != NULL; }

static void count_steps(void *user, int step, int n, double secs) {
    int *c = user;
    if (step == *c && n == 3 && secs >= 0) (*c)++;
}

/* A FLUX-tiny plan (4 attention layers x 2 heads, grid 6 x 8, 7 text tokens first); cache: step 1
 * reuses step 0's outputs. */
static const char *write_plan(const test_tmpdir *t, const char *name, int steps, int cache, char *buf, size_t n) {
    char text[4096];
    int k = snprintf(text, sizeof text,
                     "{\"format\": \"dfa-plan\", \"version\": 1, \"model\": {\"family\": \"flux\", \"config\": \"\"},\n"
                     " \"layout\": {\"n_text\": 7, \"text_first\": true, \"n_vis\": 48, \"grid_h\": 6, \"grid_w\": 8, "
                     "\"block\": 128},\n \"steps\": %d, \"layers\": 4, \"heads\": 2, \"cfg\": false, "
                     "\"cfg_cond_index\": 1,\n \"method_set\": [\"full\", \"cache\"], \"search\": {\"method\": "
                     "\"manual\", \"delta\": 0, \"c\": 0},\n \"entries\": [",
                     steps);
    for (int s = 0; s < steps; s++)
        for (int l = 0; l < 4; l++)
            k += snprintf(text + k, sizeof text - (size_t)k, "%s{\"step\": %d, \"layer\": %d, \"asc\": false, \"heads\": \"%s\"}",
                          s || l ? ",\n" : "\n", s, l, cache && s == 1 ? "C C" : "F F");
    k += snprintf(text + k, sizeof text - (size_t)k, "]}\n");
    return tmpdir_write(t, name, text, (size_t)k, buf, n);
}

static void test_model_errors(void) {
    dfa_ctx *ctx = new_ctx();
    dfa_model *m = (dfa_model *)&m; /* must be reset to NULL on failure */
    CHECK(dfa_model_load(ctx, "/nonexistent/model", &m) == DFA_ERR_NOT_FOUND && m == NULL);
    CHECKF(has(ctx, "/nonexistent/model") && has(ctx, "no such model folder"), "%s", dfa_ctx_error(ctx));
    CHECK(dfa_model_load(ctx, NULL, &m) == DFA_ERR_INVALID_ARG);
    test_tmpdir t;
    if (tmpdir_make(&t, "api") == 0) {
        char p[256], sub[256];
        tmpdir_file(&t, "transformer", sub, sizeof sub);
        CHECK(mkdir(sub, 0755) == 0);
        const char *cfg = "{\"_class_name\": \"UNet2DConditionModel\"}";
        CHECK(tmpdir_write(&t, "transformer/config.json", cfg, strlen(cfg), p, sizeof p) != NULL);
        CHECK(dfa_model_load(ctx, t.path, &m) == DFA_ERR_UNSUPPORTED && m == NULL);
        CHECKF(has(ctx, "UNet2DConditionModel") && has(ctx, "not a supported family"), "%s", dfa_ctx_error(ctx));
        /* no transformer/config.json at all */
        CHECK(unlink(p) == 0);
        CHECK(dfa_model_load(ctx, t.path, &m) != DFA_OK && m == NULL);
        CHECKF(has(ctx, "config.json"), "%s", dfa_ctx_error(ctx));
        tmpdir_remove(&t);
    }
    CHECK(strcmp(dfa_family_name(DFA_FAMILY_PIXART), "pixart") == 0 && strcmp(dfa_family_name((dfa_family)0), "?") == 0);
    dfa_ctx_free(ctx);
}

static void test_flux(void) {
    dfa_ctx *ctx = new_ctx();
    dfa_model *m = NULL;
    CHECKF(dfa_model_load(ctx, FLUX_DIR, &m) == DFA_OK, "%s", dfa_ctx_error(ctx));
    float *x0 = NULL, *ref = NULL;
    int64_t shp[8];
    int nd = 0;
    CHECKF(dfa_tensor_read_f32(ctx, FLUX_IO, "smp_latents0", &x0, shp, &nd) == DFA_OK, "%s", dfa_ctx_error(ctx));
    CHECK(nd == 4 && shp[0] == 1 && shp[1] == 4 && shp[2] == 12 && shp[3] == 16);
    CHECK(dfa_tensor_read_f32(ctx, FLUX_IO, "smp_final", &ref, NULL, NULL) == DFA_OK);
    float *none = (float *)&none;
    CHECK(dfa_tensor_read_f32(ctx, FLUX_IO, "no_such", &none, NULL, NULL) == DFA_ERR_NOT_FOUND && none == NULL);
    CHECKF(has(ctx, "no_such") && has(ctx, "io.safetensors"), "%s", dfa_ctx_error(ctx));
    if (!m || !x0 || !ref) goto out;
    CHECK(dfa_model_family(m) == DFA_FAMILY_FLUX);
    CHECK(dfa_model_n_layers(m) == 4 && dfa_model_n_heads(m) == 2 && dfa_model_head_dim(m) == 16);
    CHECK(dfa_model_latent_channels(m) == 4);

    dfa_generate_params p = dfa_generate_default_params();
    CHECK(p.cfg_scale < 0 && p.guidance == 3.5f && p.prompt == NULL && p.init_latents == NULL);
    p.prompt_embeds = FLUX_IO;
    p.steps = 3, p.width = 128, p.height = 96;
    p.init_latents = x0;
    int calls = 0;
    p.progress = count_steps, p.progress_user = &calls;
    int c = 0, h = 0, w = 0;
    CHECKF(dfa_generate_latent_shape(ctx, m, &p, &c, &h, &w) == DFA_OK, "%s", dfa_ctx_error(ctx));
    CHECK(c == 4 && h == 12 && w == 16);
    const size_t n = 4 * 12 * 16;
    float out[4 * 12 * 16], out2[4 * 12 * 16];
    poison(out, n);
    CHECKF(dfa_generate(ctx, m, &p, NULL, out, n) == DFA_OK, "%s", dfa_ctx_error(ctx));
    CHECK(calls == 3);
    CHECKF(rel_err(out, ref, n) <= 1e-5, "generate vs diffusers: rel err %.3g", rel_err(out, ref, n));
    p.progress = NULL;

    /* seeded noise: reproducible, seed-dependent */
    p.init_latents = NULL;
    p.seed = 7;
    poison(out, n), poison(out2, n);
    CHECK(dfa_generate(ctx, m, &p, NULL, out, n) == DFA_OK && dfa_generate(ctx, m, &p, NULL, out2, n) == DFA_OK);
    CHECK(memcmp(out, out2, sizeof out) == 0);
    p.seed = 8;
    CHECK(dfa_generate(ctx, m, &p, NULL, out2, n) == DFA_OK);
    CHECK(memcmp(out, out2, sizeof out) != 0);
    p.init_latents = x0;

    /* bad calls: status + message, outputs untouched by the failure path */
    dfa_image im = {0};
    CHECK(dfa_generate(ctx, m, &p, &im, NULL, 0) == DFA_ERR_NOT_FOUND && im.data == NULL);
    CHECKF(has(ctx, "needs a VAE") && has(ctx, "flux_tiny/vae"), "%s", dfa_ctx_error(ctx));
    CHECK(dfa_generate(ctx, m, &p, NULL, NULL, 0) == DFA_ERR_INVALID_ARG);
    CHECKF(has(ctx, "neither out_image nor out_latents"), "%s", dfa_ctx_error(ctx));
    CHECK(dfa_generate(ctx, m, &p, NULL, out, n - 1) == DFA_ERR_INVALID_ARG);
    CHECKF(has(ctx, "767") && has(ctx, "768"), "%s", dfa_ctx_error(ctx));
    dfa_generate_params q = p;
    q.width = 100;
    CHECK(dfa_generate(ctx, m, &q, NULL, out, n) == DFA_ERR_INVALID_ARG);
    CHECKF(has(ctx, "100x96") && has(ctx, "multiple of 8"), "%s", dfa_ctx_error(ctx));
    q = p, q.prompt_embeds = NULL;
    CHECK(dfa_generate(ctx, m, &q, NULL, out, n) == DFA_ERR_INVALID_ARG);
    CHECKF(has(ctx, "exactly one of prompt / prompt_embeds"), "%s", dfa_ctx_error(ctx));
    q = p, q.prompt = "a cat";
    CHECK(dfa_generate(ctx, m, &q, NULL, out, n) == DFA_ERR_INVALID_ARG);
    q = p, q.guidance = -1.0f;
    CHECK(dfa_generate(ctx, m, &q, NULL, out, n) == DFA_ERR_INVALID_ARG);
    CHECKF(has(ctx, "guidance"), "%s", dfa_ctx_error(ctx));
    q = p, q.prompt_embeds = "/nonexistent/embeds.safetensors";
    CHECK(dfa_generate(ctx, m, &q, NULL, out, n) != DFA_OK);
    CHECKF(has(ctx, "/nonexistent/embeds.safetensors"), "%s", dfa_ctx_error(ctx));
    CHECK(dfa_generate(ctx, NULL, &p, NULL, out, n) == DFA_ERR_INVALID_ARG);
    CHECK(dfa_generate(ctx, m, NULL, NULL, out, n) == DFA_ERR_INVALID_ARG);

    /* plans */
    test_tmpdir t;
    if (tmpdir_make(&t, "api_plan") == 0) {
        char full[256], cache[256], four[256], saved[256];
        dfa_plan_file *pf = NULL, *pc = NULL, *p4 = NULL, *ps = NULL;
        CHECK(write_plan(&t, "full.json", 3, 0, full, sizeof full) && write_plan(&t, "cache.json", 3, 1, cache, sizeof cache) &&
              write_plan(&t, "four.json", 4, 0, four, sizeof four));
        CHECKF(dfa_plan_file_load(ctx, full, &pf) == DFA_OK, "%s", dfa_ctx_error(ctx));
        CHECKF(dfa_plan_file_load(ctx, cache, &pc) == DFA_OK, "%s", dfa_ctx_error(ctx));
        CHECK(dfa_plan_file_load(ctx, four, &p4) == DFA_OK);
        if (pf && pc && p4) {
            CHECK_NEAR(dfa_plan_file_attn_fraction(pf), 1.0, 1e-12);
            CHECK_NEAR(dfa_plan_file_attn_fraction(pc), 2.0 / 3.0, 1e-12);
            /* all FULL: the plain run */
            CHECK(dfa_ctx_set_plan(ctx, pf) == DFA_OK);
            poison(out2, n);
            CHECKF(dfa_generate(ctx, m, &p, NULL, out2, n) == DFA_OK, "%s", dfa_ctx_error(ctx));
            CHECKF(rel_err(out2, ref, n) <= 1e-5, "all-FULL plan: rel err %.3g", rel_err(out2, ref, n));
            /* compressed: a finite change */
            CHECK(dfa_ctx_set_plan(ctx, pc) == DFA_OK);
            poison(out2, n);
            CHECKF(dfa_generate(ctx, m, &p, NULL, out2, n) == DFA_OK, "%s", dfa_ctx_error(ctx));
            const double e = rel_err(out2, ref, n);
            CHECKF(e > 1e-6 && e < 1.0, "cache plan: rel err %.3g (expected a finite change)", e);
            /* a plan for 4 steps refused on a 3-step run, naming both */
            CHECK(dfa_ctx_set_plan(ctx, p4) == DFA_OK);
            CHECK(dfa_generate(ctx, m, &p, NULL, out2, n) == DFA_ERR_INVALID_ARG);
            CHECKF(has(ctx, "made for 4 denoising steps, this run has 3"), "%s", dfa_ctx_error(ctx));
            /* cleared: the plain run again */
            dfa_ctx_clear_plan(ctx);
            poison(out2, n);
            CHECK(dfa_generate(ctx, m, &p, NULL, out2, n) == DFA_OK);
            CHECK(rel_err(out2, ref, n) <= 1e-5);
            /* save / load round trip */
            tmpdir_file(&t, "saved.json", saved, sizeof saved);
            CHECKF(dfa_plan_file_save(ctx, pc, saved) == DFA_OK, "%s", dfa_ctx_error(ctx));
            CHECKF(dfa_plan_file_load(ctx, saved, &ps) == DFA_OK, "%s", dfa_ctx_error(ctx));
            CHECK(ps && fabs(dfa_plan_file_attn_fraction(ps) - 2.0 / 3.0) < 1e-12);
        }
        dfa_plan_file *bad = (dfa_plan_file *)&bad;
        CHECK(dfa_plan_file_load(ctx, "/nonexistent/plan.json", &bad) == DFA_ERR_IO && bad == NULL);
        CHECKF(has(ctx, "/nonexistent/plan.json"), "%s", dfa_ctx_error(ctx));
        CHECK(dfa_ctx_set_plan(ctx, NULL) == DFA_ERR_INVALID_ARG);
        dfa_plan_file_free(pf), dfa_plan_file_free(pc), dfa_plan_file_free(p4), dfa_plan_file_free(ps);
        tmpdir_remove(&t);
    }
out:
    dfa_free(x0), dfa_free(ref);
    dfa_model_free(m);
    dfa_ctx_free(ctx);
}

static void test_dit(void) {
    dfa_ctx *ctx = new_ctx();
    dfa_model *m = NULL;
    CHECKF(dfa_model_load(ctx, DIT_DIR, &m) == DFA_OK, "%s", dfa_ctx_error(ctx));
    float *noise = NULL, *ref = NULL, *par = NULL;
    CHECK(dfa_tensor_read_f32(ctx, DIT_DIR "/io.safetensors", "noise", &noise, NULL, NULL) == DFA_OK);
    CHECK(dfa_tensor_read_f32(ctx, DIT_DIR "/io.safetensors", "final", &ref, NULL, NULL) == DFA_OK);
    CHECK(dfa_tensor_read_f32(ctx, DIT_DIR "/io.safetensors", "params", &par, NULL, NULL) == DFA_OK);
    if (!m || !noise || !ref || !par) goto out;
    CHECK(dfa_model_family(m) == DFA_FAMILY_DIT);
    CHECK(dfa_model_n_layers(m) == 2 && dfa_model_n_heads(m) == 2 && dfa_model_head_dim(m) == 16);
    dfa_generate_params p = dfa_generate_default_params();
    p.steps = 3; /* the fixture's timesteps 666 333 0 */
    p.class_label = (int)par[0];
    p.cfg_scale = par[2];
    p.init_latents = noise;
    int c = 0, h = 0, w = 0;
    CHECK(dfa_generate_latent_shape(ctx, m, &p, &c, &h, &w) == DFA_OK && c == 4 && h == 8 && w == 8);
    float out[4 * 8 * 8];
    poison(out, 256);
    CHECKF(dfa_generate(ctx, m, &p, NULL, out, 256) == DFA_OK, "%s", dfa_ctx_error(ctx));
    CHECKF(rel_err(out, ref, 256) <= 1e-4, "DiT generate vs diffusers: %.3g", rel_err(out, ref, 256));
    p.prompt_embeds = DFA_SOURCE_DIR "/tests/fixtures/flux_tiny/io.safetensors";
    CHECK(dfa_generate(ctx, m, &p, NULL, out, 256) == DFA_ERR_INVALID_ARG);
    CHECKF(has(ctx, "class-conditional"), "%s", dfa_ctx_error(ctx));
    p.prompt_embeds = NULL;
    p.class_label = 10; /* num_classes: the null class is not a class */
    CHECK(dfa_generate(ctx, m, &p, NULL, out, 256) == DFA_ERR_INVALID_ARG);
out:
    dfa_free(noise), dfa_free(ref), dfa_free(par);
    dfa_model_free(m);
    dfa_ctx_free(ctx);
}

/* A DiT folder with a VAE (the dit fixture's transformer/scheduler + the vae4 fixture's tiny VAE,
 * 2 pixels per latent): dfa_decode equals diffusers' decode (vae4's image_u8), and an image from
 * dfa_generate is the decode of the latents it returns. */
static void test_image(void) {
    dfa_ctx *ctx = new_ctx();
    test_tmpdir t;
    if (tmpdir_make(&t, "api_img") != 0) return;
    char a[256], b[256], c2[256];
    CHECK(symlink(DIT_DIR "/transformer", tmpdir_file(&t, "transformer", a, sizeof a)) == 0);
    CHECK(symlink(DIT_DIR "/scheduler", tmpdir_file(&t, "scheduler", b, sizeof b)) == 0);
    CHECK(symlink(DFA_SOURCE_DIR "/tests/fixtures/vae4/vae", tmpdir_file(&t, "vae", c2, sizeof c2)) == 0);
    dfa_model *m = NULL;
    float *lat = NULL, *ref = NULL;
    int64_t ls[8], rs[8];
    CHECKF(dfa_model_load(ctx, t.path, &m) == DFA_OK, "%s", dfa_ctx_error(ctx));
    CHECK(dfa_tensor_read_f32(ctx, DFA_SOURCE_DIR "/tests/fixtures/vae4/io.safetensors", "latents", &lat, ls, NULL) ==
          DFA_OK);
    CHECK(dfa_tensor_read_f32(ctx, DFA_SOURCE_DIR "/tests/fixtures/vae4/io.safetensors", "image_u8", &ref, rs, NULL) ==
          DFA_OK);
    if (!m || !lat || !ref) goto out;
    dfa_image im = {0};
    const int h = (int)ls[2], w = (int)ls[3], H = (int)rs[2], W = (int)rs[3];
    CHECKF(dfa_decode(ctx, m, lat, h, w, &im) == DFA_OK, "%s", dfa_ctx_error(ctx));
    CHECK(im.width == W && im.height == H && im.channels == 3 && im.data);
    int worst = 0;
    for (int y = 0; im.data && y < H; y++)
        for (int x = 0; x < W; x++)
            for (int ch = 0; ch < 3; ch++) {
                const int d = abs((int)im.data[(y * W + x) * 3 + ch] - (int)ref[((size_t)ch * H + y) * W + x]);
                worst = d > worst ? d : worst;
            }
    CHECKF(worst <= 1, "decode vs diffusers: worst pixel difference %d", worst);
    dfa_image_free(&im);
    CHECK(im.data == NULL);
    CHECK(dfa_decode(ctx, m, lat, 0, w, &im) == DFA_ERR_INVALID_ARG);

    /* generate: image + latents in one call; defaults: sample_size 8 x 2 px = 16 x 16 */
    dfa_generate_params p = dfa_generate_default_params();
    p.steps = 3;
    p.class_label = 3;
    float out[4 * 8 * 8];
    poison(out, 256);
    dfa_image gi = {0}, di = {0};
    CHECKF(dfa_generate(ctx, m, &p, &gi, out, 256) == DFA_OK, "%s", dfa_ctx_error(ctx));
    CHECK(gi.width == 16 && gi.height == 16 && gi.channels == 3);
    CHECK(dfa_decode(ctx, m, out, 8, 8, &di) == DFA_OK);
    CHECK(gi.data && di.data && memcmp(gi.data, di.data, 16 * 16 * 3) == 0);
    char png[256];
    CHECKF(dfa_image_save_png(ctx, &gi, tmpdir_file(&t, "out.png", png, sizeof png)) == DFA_OK, "%s",
           dfa_ctx_error(ctx));
    struct stat sb;
    CHECK(stat(png, &sb) == 0 && sb.st_size > 0);
    dfa_image_free(&gi), dfa_image_free(&di);
out:
    dfa_free(lat), dfa_free(ref);
    dfa_model_free(m);
    tmpdir_remove(&t);
    dfa_ctx_free(ctx);
}

/* dfa_calibrate on flux_tiny: a plan for this run (it passes the target check and generates),
 * compressed at a loose threshold, all FULL at delta 0, deterministic; bad parameters refused. */
static void test_calibrate(void) {
    dfa_ctx *ctx = new_ctx();
    dfa_model *m = NULL;
    CHECKF(dfa_model_load(ctx, FLUX_DIR, &m) == DFA_OK, "%s", dfa_ctx_error(ctx));
    if (!m) goto out;
    const char *pes[1] = {FLUX_IO};
    dfa_calibrate_params cp = dfa_calibrate_default_params();
    CHECK(strcmp(cp.method, "v2") == 0 && cp.c == 1.5 && cp.cfg_scale < 0 && cp.v1_window < 0);
    cp.prompt_embeds = pes, cp.n_prompts = 1;
    cp.width = 128, cp.height = 96, cp.steps = 3;
    cp.delta = 1.0;
    dfa_plan_file *a = NULL, *b = NULL, *z = NULL, *v1 = NULL;
    CHECKF(dfa_calibrate(ctx, m, &cp, &a) == DFA_OK, "%s", dfa_ctx_error(ctx));
    CHECK(dfa_calibrate(ctx, m, &cp, &b) == DFA_OK);
    const double fa = dfa_plan_file_attn_fraction(a), fb = dfa_plan_file_attn_fraction(b);
    CHECKF(a && fa < 1.0 && fa > 0.0 && fa == fb, "fraction %g / %g", fa, fb);
    cp.delta = 0.0;
    CHECK(dfa_calibrate(ctx, m, &cp, &z) == DFA_OK);
    CHECK(z && fabs(dfa_plan_file_attn_fraction(z) - 1.0) < 1e-12);
    cp.delta = 1.0, cp.method = "v1";
    CHECKF(dfa_calibrate(ctx, m, &cp, &v1) == DFA_OK, "%s", dfa_ctx_error(ctx));
    CHECK(v1 && dfa_plan_file_attn_fraction(v1) <= 1.0);
    if (a) { /* the plan fits the run it was calibrated for */
        dfa_generate_params p = dfa_generate_default_params();
        p.prompt_embeds = FLUX_IO, p.width = 128, p.height = 96, p.steps = 3;
        float out[768];
        poison(out, 768);
        CHECK(dfa_ctx_set_plan(ctx, a) == DFA_OK);
        CHECKF(dfa_generate(ctx, m, &p, NULL, out, 768) == DFA_OK, "%s", dfa_ctx_error(ctx));
        int finite = 1;
        for (int i = 0; i < 768; i++) finite &= isfinite(out[i]) != 0;
        CHECK(finite);
        p.width = 64; /* another resolution: refused, naming both */
        CHECK(dfa_generate(ctx, m, &p, NULL, out, 768) == DFA_ERR_INVALID_ARG);
        CHECKF(has(ctx, "the plan in use"), "%s", dfa_ctx_error(ctx));
        dfa_ctx_clear_plan(ctx);
    }
    dfa_plan_file *bad = (dfa_plan_file *)&bad;
    cp.method = "v3";
    CHECK(dfa_calibrate(ctx, m, &cp, &bad) == DFA_ERR_INVALID_ARG && bad == NULL);
    CHECKF(has(ctx, "v3"), "%s", dfa_ctx_error(ctx));
    cp.method = "v2", cp.methods = "arrow,bogus";
    CHECK(dfa_calibrate(ctx, m, &cp, &bad) == DFA_ERR_INVALID_ARG && bad == NULL);
    CHECKF(has(ctx, "bogus"), "%s", dfa_ctx_error(ctx));
    cp.methods = NULL, cp.n_prompts = 0;
    CHECK(dfa_calibrate(ctx, m, &cp, &bad) == DFA_ERR_INVALID_ARG);
    CHECKF(has(ctx, "prompt-embeddings"), "%s", dfa_ctx_error(ctx));
    cp.n_prompts = 1, cp.delta = -1;
    CHECK(dfa_calibrate(ctx, m, &cp, &bad) == DFA_ERR_INVALID_ARG);
    CHECKF(has(ctx, "delta"), "%s", dfa_ctx_error(ctx));
    dfa_plan_file_free(a), dfa_plan_file_free(b), dfa_plan_file_free(z), dfa_plan_file_free(v1);
out:
    dfa_model_free(m);
    dfa_ctx_free(ctx);
}

int main(void) {
    RUN(test_model_errors);
    RUN(test_flux);
    RUN(test_dit);
    RUN(test_image);
    RUN(test_calibrate);
    return test_summary();
}
