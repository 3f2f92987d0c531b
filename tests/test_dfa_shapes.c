/* test_dfa_shapes.c - the bundled trained model (models/dfa-shapes) through the public API
 * (include/dfa.h) against diffusers' FluxPipeline on the same model: prompts from text (CLIP and
 * T5 tokenizers and encoders, the "" negative for true CFG), the transformer, the FLUX Euler
 * schedule and the VAE decode.
 *
 * Golden: tests/fixtures/dfa-shapes/golden.safetensors, written by
 *     python3 tools/train/golden.py --model models/dfa-shapes --out tests/fixtures/dfa-shapes/golden.safetensors
 * (tests/fixtures/gen_dfa_shapes.sh runs that): per prompt i the initial packed noise noise_i, the final
 * packed latents latents_i and the decoded image image_i in [0, 1], float32 on the CPU; the
 * metadata holds the prompts, size, steps, CFG scale, T5 length and seed.
 *
 * The run passes only prompt, size, steps and the initial noise: T5 length, CFG scale and negative
 * prompt come from the folder's dfa.json (the golden was made with the same values: checked), so a
 * lost dfa.json default fails here too.
 *
 * Bounds (float32 on both sides, different summation orders): final latents ||dfa - ref|| / ||ref||
 * <= 2e-5 per prompt (measured 2e-6 .. 3.2e-6); image: every 8-bit value within 0.75 levels of
 * 255 * golden (0.5 rounding + 0.125 for the golden's float16 storage; measured 0.56) and relative
 * L2 <= 4e-3 (8-bit rounding alone gives 1.2e-3 .. 1.7e-3). Local perturbations that this test
 * caught: T5 RMS-norm eps 1e-6 -> 1e-4 (latents 2.5e-5), CFG scale +1% (6e-3), dfa.json's T5
 * length not applied (0.85), VAE shift_factor +20% (image 5.3 levels off, latents exact). */
#include <cjson/cJSON.h>

#include "dfa.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "test.h"
#include "tmpdir.h"

#define MODEL_DIR DFA_SOURCE_DIR "/models/dfa-shapes"
#define GOLDEN DFA_SOURCE_DIR "/tests/fixtures/dfa-shapes/golden.safetensors"
#define LATENT_TOL 2e-5 /* relative L2 of the final latents (measured 2e-6 .. 3.2e-6) */
#define IMG_TOL 4e-3 /* relative L2 of the 8-bit image vs 255 * golden (8-bit rounding alone: about 2e-3) */
#define IMG_MAX_LEVELS 0.75 /* 0.5 rounding + 0.125 float16 storage of the golden + engine */

static double rel_err(const double *a, const double *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = a[i] - b[i];
        num += d * d;
        den += b[i] * b[i];
    }
    return isfinite(num) ? sqrt(num / (den > 0 ? den : 1)) : INFINITY;
}

/* The golden's metadata value for `key` ("" when absent). */
static const char *meta(const dfa_safetensors *st, const char *key) {
    for (int i = 0; i < dfa_st_meta_count(st); i++) {
        const char *k, *v;
        dfa_st_meta_at(st, i, &k, &v);
        if (strcmp(k, key) == 0) return v;
    }
    return "";
}

/* FluxPipeline._pack_latents' inverse: packed [(h/2)(w/2), C*4] -> [C, h, w]. */
static void unpack(const float *packed, int C, int h, int w, float *out) {
    for (int i = 0; i < h / 2; i++)
        for (int j = 0; j < w / 2; j++)
            for (int c = 0; c < C; c++)
                for (int dy = 0; dy < 2; dy++)
                    for (int dx = 0; dx < 2; dx++)
                        out[((size_t)c * h + 2 * i + dy) * w + 2 * j + dx] =
                            packed[((size_t)i * (w / 2) + j) * C * 4 + c * 4 + dy * 2 + dx];
}

static void test_golden(void) {
    dfa_error err = {0};
    dfa_safetensors *st = NULL;
    CHECKF(dfa_st_open(&st, GOLDEN, &err) == DFA_OK, "%s (python3 tools/train/golden.py writes it)", err.msg);
    cJSON *dj = NULL;
    CHECKF(dfa_json_read_file(MODEL_DIR "/dfa.json", &dj, &err) == DFA_OK, "%s", err.msg);
    if (!st || !dj) goto out_files;
    const int size = atoi(meta(st, "size")), steps = atoi(meta(st, "steps")), msl = atoi(meta(st, "max_sequence_length"));
    const double cfg = atof(meta(st, "true_cfg_scale"));
    const uint64_t seed = strtoull(meta(st, "seed"), NULL, 10);
    /* the golden used dfa.json's T5 length and CFG scale (this run takes them from there) */
    int dj_msl = 0;
    double dj_cfg = 0;
    CHECK(dfa_json_int(dj, "max_sequence_length", "dfa.json", &dj_msl, &err) == DFA_OK && dj_msl == msl);
    CHECK(dfa_json_double(dj, "true_cfg_scale", "dfa.json", &dj_cfg, &err) == DFA_OK && dj_cfg == cfg);
    CHECKF(size >= 16 && size % 16 == 0 && steps >= 1 && cfg > 1, "golden metadata: size %d steps %d cfg %g", size,
           steps, cfg);
    cJSON *prompts = cJSON_Parse(meta(st, "prompts"));
    CHECKF(cJSON_IsArray(prompts) && cJSON_GetArraySize(prompts) >= 1, "golden metadata prompts: %s", meta(st, "prompts"));
    if (!cJSON_IsArray(prompts) || size < 16 || size % 16 || steps < 1) {
        cJSON_Delete(prompts);
        goto out_files;
    }

    dfa_ctx *ctx = NULL;
    dfa_ctx_params cp = dfa_ctx_default_params();
    cp.n_threads = 2;
    cp.log_level = DFA_LOG_WARN;
    char emsg[256];
    CHECKF(dfa_ctx_init(&ctx, &cp, emsg, sizeof emsg) == DFA_OK, "%s", emsg);
    dfa_model *m = NULL;
    if (ctx) CHECKF(dfa_model_load(ctx, MODEL_DIR, &m) == DFA_OK, "%s", dfa_ctx_error(ctx));
    if (m) CHECK(dfa_model_family(m) == DFA_FAMILY_FLUX && dfa_model_latent_channels(m) == 16);
    const int C = 16, h = size / 8, w = size / 8;
    const size_t n = (size_t)C * h * w, npx = (size_t)3 * size * size;
    float *x0 = malloc(n * sizeof *x0), *lat = malloc(n * sizeof *lat), *ref = malloc(n * sizeof *ref);
    double *a = malloc(npx * sizeof *a), *b = malloc(npx * sizeof *b);
    for (int i = 0; m && x0 && lat && ref && a && b && i < cJSON_GetArraySize(prompts); i++) {
        const char *prompt = cJSON_GetStringValue(cJSON_GetArrayItem(prompts, i));
        char name[64];
        float *t = NULL, *img = NULL;
        int64_t shape[8];
        int nd = 0;
        snprintf(name, sizeof name, "noise_%d", i);
        CHECKF(dfa_tensor_read_f32(ctx, GOLDEN, name, &t, shape, &nd) == DFA_OK, "%s", dfa_ctx_error(ctx));
        if (!t || nd != 3 || shape[1] * shape[2] != (int64_t)n) {
            CHECKF(0, "%s: shape", name);
            dfa_free(t);
            break;
        }
        unpack(t, C, h, w, x0);
        dfa_free(t);
        snprintf(name, sizeof name, "latents_%d", i);
        CHECK(dfa_tensor_read_f32(ctx, GOLDEN, name, &t, shape, &nd) == DFA_OK && nd == 3 && shape[1] * shape[2] == (int64_t)n);
        if (t) unpack(t, C, h, w, ref);
        dfa_free(t);
        snprintf(name, sizeof name, "image_%d", i);
        CHECK(dfa_tensor_read_f32(ctx, GOLDEN, name, &img, shape, &nd) == DFA_OK && nd == 3 && shape[0] == 3 &&
              shape[1] == size && shape[2] == size);

        dfa_generate_params p = dfa_generate_default_params();
        p.prompt = prompt;
        p.width = p.height = size;
        p.steps = steps;
        p.seed = seed + (uint64_t)i; /* unused: the noise is given */
        p.init_latents = x0;
        for (size_t k = 0; k < n; k++) lat[k] = NAN;
        dfa_image im = {0};
        CHECKF(dfa_generate(ctx, m, &p, &im, lat, n) == DFA_OK, "%s", dfa_ctx_error(ctx));
        for (size_t k = 0; k < n; k++) a[k] = lat[k], b[k] = ref[k];
        const double el = rel_err(a, b, n);
        CHECKF(el <= LATENT_TOL, "prompt %d latents vs diffusers: rel err %.3g > %.1g", i, el, LATENT_TOL);
        if (im.data && img && im.width == size && im.height == size && im.channels == 3) {
            double worst = 0; /* |dfa's 8-bit value - 255 * golden| in 8-bit levels */
            for (int c = 0; c < 3; c++)
                for (int y = 0; y < size; y++)
                    for (int x = 0; x < size; x++) {
                        const size_t k = ((size_t)c * size + y) * size + x;
                        const double u = im.data[((size_t)y * size + x) * 3 + c], r = 255.0 * img[k];
                        worst = fabs(u - r) > worst ? fabs(u - r) : worst;
                        a[k] = u, b[k] = r;
                    }
            const double ei = rel_err(a, b, npx);
            CHECKF(worst <= IMG_MAX_LEVELS && ei <= IMG_TOL,
                   "prompt %d image vs diffusers: worst %.3f levels (bound %.2f), rel err %.3g (bound %.1g)", i, worst,
                   IMG_MAX_LEVELS, ei, IMG_TOL);
            printf("prompt %d %s: latents rel err %.3g, image worst %.3f/255, rel err %.3g\n", i, prompt, el, worst, ei);
        } else {
            CHECKF(0, "prompt %d: no %dx%d RGB image", i, size, size);
        }
        dfa_image_free(&im);
        dfa_free(img);
    }
    free(x0), free(lat), free(ref), free(a), free(b);
    cJSON_Delete(prompts);
    dfa_model_free(m);
    dfa_ctx_free(ctx);
out_files:
    cJSON_Delete(dj);
    dfa_st_close(st);
}

/* With no size / steps given, the model's dfa.json settings (512 x 512) decide the run's shape. */
static void test_defaults(void) {
    dfa_ctx *ctx = NULL;
    dfa_ctx_params cp = dfa_ctx_default_params();
    cp.n_threads = 1;
    cp.log_level = DFA_LOG_WARN;
    char emsg[256];
    CHECKF(dfa_ctx_init(&ctx, &cp, emsg, sizeof emsg) == DFA_OK, "%s", emsg);
    dfa_model *m = NULL;
    if (ctx) CHECKF(dfa_model_load(ctx, MODEL_DIR, &m) == DFA_OK, "%s", dfa_ctx_error(ctx));
    if (m) {
        dfa_generate_params p = dfa_generate_default_params();
        p.prompt = "a red circle";
        int c = 0, h = 0, w = 0;
        CHECKF(dfa_generate_latent_shape(ctx, m, &p, &c, &h, &w) == DFA_OK, "%s", dfa_ctx_error(ctx));
        CHECKF(c == 16 && h == 64 && w == 64, "default latent shape %d x %d x %d (dfa.json: 512 x 512 px)", c, h, w);
    }
    dfa_model_free(m);
    dfa_ctx_free(ctx);
}

/* A copy of the folder (symlinks) without `missing`: the first call that needs it fails with a message
 * that contains `want`. */
static void check_missing(dfa_ctx *ctx, const char *missing, const char *want) {
    static const char *const files[] = {"dfa.json", "model_index.json", "scheduler", "text_encoder", "text_encoder_2",
                                        "transformer", "vae", "tokenizer/tokenizer.json",
                                        "tokenizer/tokenizer_config.json", "tokenizer_2/tokenizer.json",
                                        "tokenizer_2/tokenizer_config.json"};
    test_tmpdir t;
    if (tmpdir_make(&t, "shapes_missing") != 0) return;
    char a[512], b[512];
    CHECK(mkdir(tmpdir_file(&t, "tokenizer", a, sizeof a), 0755) == 0);
    CHECK(mkdir(tmpdir_file(&t, "tokenizer_2", a, sizeof a), 0755) == 0);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        if (strcmp(files[i], missing) == 0) continue;
        snprintf(b, sizeof b, "%s/%s", MODEL_DIR, files[i]);
        CHECK(symlink(b, tmpdir_file(&t, files[i], a, sizeof a)) == 0);
    }
    dfa_model *m = NULL;
    dfa_status s = dfa_model_load(ctx, t.path, &m);
    if (s == DFA_OK) {
        dfa_generate_params p = dfa_generate_default_params();
        p.prompt = "a red circle";
        p.width = p.height = 32;
        p.steps = 1;
        dfa_image im = {0};
        s = dfa_generate(ctx, m, &p, &im, NULL, 0);
        dfa_image_free(&im);
    }
    CHECKF(s != DFA_OK && strstr(dfa_ctx_error(ctx), want), "without %s: status %d, message: %s", missing, (int)s,
           dfa_ctx_error(ctx));
    dfa_model_free(m);
    tmpdir_remove(&t);
}

/* A folder with a file missing fails with a message that names what is missing. */
static void test_missing_files(void) {
    dfa_ctx *ctx = NULL;
    dfa_ctx_params cp = dfa_ctx_default_params();
    cp.n_threads = 1;
    cp.log_level = DFA_LOG_ERROR;
    char emsg[256];
    CHECKF(dfa_ctx_init(&ctx, &cp, emsg, sizeof emsg) == DFA_OK, "%s", emsg);
    if (!ctx) return;
    check_missing(ctx, "transformer", "transformer");
    check_missing(ctx, "vae", "vae");
    check_missing(ctx, "text_encoder_2", "text_encoder_2");
    check_missing(ctx, "tokenizer/tokenizer.json", "tokenizer/tokenizer.json");
    check_missing(ctx, "tokenizer_2/tokenizer_config.json", "tokenizer_2': no pad token");
    dfa_ctx_free(ctx);
}

int main(void) {
    RUN(test_defaults);
    RUN(test_golden);
    RUN(test_missing_files);
    return test_summary();
}
