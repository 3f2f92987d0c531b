/* test_encode.c - `dfa encode` on FLUX, SD3 and PixArt folders assembled (symlinks) from the tiny
 * fixtures: the written tensors equal transformers' outputs composed the way diffusers'
 * encode_prompt composes them; usage and load errors give exit codes 2 and 1. */
#include "test.h"

#include "tmpdir.h"

#include "cli/commands.h"
#include "io/safetensors.h"

#define FIX DFA_SOURCE_DIR "/tests/fixtures/text/"

static test_tmpdir tmp;
static dfa_safetensors *ref;

static int run_encode(int argc, const char *const *args) {
    char *argv[24];
    for (int i = 0; i < argc && i < 24; i++) argv[i] = (char *)args[i];
    fflush(stdout);
    int rc = cmd_encode(argc, argv);
    fflush(stdout);
    return rc;
}
#define ENCODE(...) \
    run_encode((int)(sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *)), (const char *const[]){__VA_ARGS__})

/* model folder `name` with sub-folders linked to fixtures: pairs (link, target) */
static void make_model(const char *name, const char *const *pairs, int n, char *dir, size_t len) {
    tmpdir_file(&tmp, name, dir, len);
    CHECK(mkdir(dir, 0700) == 0);
    for (int i = 0; i < n; i++) {
        char l[512], t[512];
        snprintf(l, sizeof l, "%s/%s", dir, pairs[2 * i]);
        snprintf(t, sizeof t, "%s%s", FIX, pairs[2 * i + 1]);
        CHECK(symlink(t, l) == 0);
    }
}

static float *load(const dfa_safetensors *st, const char *name, int ndim, const int64_t *shape, size_t n) {
    float *p = malloc(n * sizeof(float));
    dfa_error err = {0};
    dfa_status s = dfa_st_load(st, name, DFA_F32, ndim, shape, p, DFA_DEV_CPU, NULL, &err);
    CHECKF(s == DFA_OK, "%s", err.msg);
    if (s) {
        free(p);
        return NULL;
    }
    return p;
}

static double maxdiff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m)) m = d;
    }
    return m;
}

static const char *P0 = "a photo of an astronaut riding a horse on the moon"; /* enc_cases prompt 0 */

static void test_flux(void) {
    const char *pairs[] = {"text_encoder", "clip", "tokenizer", "clip_tok", "text_encoder_2", "t5", "tokenizer_2", "t5_tok"};
    char dir[256], out[300];
    make_model("flux", pairs, 4, dir, sizeof dir);
    tmpdir_file(&tmp, "flux.safetensors", out, sizeof out);
    CHECK(ENCODE("encode", "-m", dir, "-p", P0, "-n", "", "-o", out, "--max-sequence-length", "32", "-t", "2") == 0);
    dfa_safetensors *st = NULL;
    dfa_error err = {0};
    CHECKF(dfa_st_open(&st, out, &err) == DFA_OK, "%s", err.msg);
    if (!st) return;
    const int64_t se[3] = {1, 32, 48}, sp[2] = {1, 32}, r1[2] = {32, 48}, r2[1] = {32};
    const char *names[4][2] = {{"prompt_embeds", "t5.0.out"}, {"pooled_prompt_embeds", "clip.0.pooled"},
                               {"negative_prompt_embeds", "t5.1.out"}, {"negative_pooled_prompt_embeds", "clip.1.pooled"}};
    for (int k = 0; k < 4; k++) {
        int emb = k % 2 == 0;
        size_t n = emb ? 32 * 48 : 32;
        float *got = load(st, names[k][0], emb ? 3 : 2, emb ? se : sp, n);
        float *want = load(ref, names[k][1], emb ? 2 : 1, emb ? r1 : r2, n);
        if (got && want) CHECKF(maxdiff(got, want, n) < 1e-4, "%s differs from %s by %g", names[k][0], names[k][1], maxdiff(got, want, n));
        free(got), free(want);
    }
    CHECK(dfa_st_find(st, "prompt_attention_mask") == NULL);
    dfa_st_close(st);
}

static void test_sd3(void) {
    const char *pairs[] = {"text_encoder", "clip_proj", "tokenizer", "clip_tok", "text_encoder_2", "clip_proj",
                           "tokenizer_2", "clip_tok", "text_encoder_3", "t5", "tokenizer_3", "t5_tok"};
    char dir[256], out[300];
    make_model("sd3", pairs, 6, dir, sizeof dir);
    tmpdir_file(&tmp, "sd3.safetensors", out, sizeof out);
    CHECK(ENCODE("encode", "-m", dir, "-p", P0, "-o", out, "--max-sequence-length", "32") == 0);
    dfa_safetensors *st = NULL;
    dfa_error err = {0};
    CHECKF(dfa_st_open(&st, out, &err) == DFA_OK, "%s", err.msg);
    if (!st) return;
    const int64_t se[3] = {1, 77 + 32, 48}, sp[2] = {1, 48}, rh[2] = {77, 16}, rt[2] = {32, 48}, rp[1] = {24};
    float *e = load(st, "prompt_embeds", 3, se, 109 * 48), *p = load(st, "pooled_prompt_embeds", 2, sp, 48);
    float *h = load(ref, "clip_proj.0.hidden_m2", 2, rh, 77 * 16), *t = load(ref, "t5.0.out", 2, rt, 32 * 48);
    float *te = load(ref, "clip_proj.0.text_embeds", 1, rp, 24);
    if (e && p && h && t && te) {
        double m = 0;
        for (int r = 0; r < 77; r++) {
            m = fmax(m, maxdiff(e + r * 48, h + r * 16, 16));      /* CLIP-L */
            m = fmax(m, maxdiff(e + r * 48 + 16, h + r * 16, 16)); /* CLIP-G */
            for (int c = 32; c < 48; c++) m = fmax(m, fabs(e[r * 48 + c])); /* zero padding */
        }
        m = fmax(m, maxdiff(e + 77 * 48, t, 32 * 48));
        CHECKF(m < 1e-4, "SD3 prompt_embeds off by %g", m);
        CHECKF(maxdiff(p, te, 24) < 1e-4 && maxdiff(p + 24, te, 24) < 1e-4, "SD3 pooled differs");
    }
    free(e), free(p), free(h), free(t), free(te);
    dfa_st_close(st);
}

/* SD3 without text_encoder_3: the T5 rows are zeros of the transformer's joint_attention_dim */
static void test_sd3_without_t5(void) {
    const char *pairs[] = {"text_encoder", "clip_proj", "tokenizer", "clip_tok", "text_encoder_2", "clip_proj",
                           "tokenizer_2", "clip_tok"};
    char dir[256], out[300], p[400];
    make_model("sd3_no_t5", pairs, 4, dir, sizeof dir);
    snprintf(p, sizeof p, "%s/transformer", dir);
    CHECK(mkdir(p, 0700) == 0);
    const char *cfg = "{\"joint_attention_dim\": 40}", *idx = "{\"_class_name\": \"StableDiffusion3Pipeline\"}";
    CHECK(tmpdir_write(&tmp, "sd3_no_t5/transformer/config.json", cfg, strlen(cfg), p, sizeof p) != NULL);
    CHECK(tmpdir_write(&tmp, "sd3_no_t5/model_index.json", idx, strlen(idx), p, sizeof p) != NULL);
    tmpdir_file(&tmp, "sd3_no_t5.safetensors", out, sizeof out);
    CHECK(ENCODE("encode", "-m", dir, "-p", P0, "-o", out, "--max-sequence-length", "20") == 0);
    dfa_safetensors *st = NULL;
    dfa_error err = {0};
    CHECKF(dfa_st_open(&st, out, &err) == DFA_OK, "%s", err.msg);
    if (!st) return;
    const int64_t se[3] = {1, 97, 40}, rh[2] = {77, 16};
    float *e = load(st, "prompt_embeds", 3, se, 97 * 40), *h = load(ref, "clip_proj.0.hidden_m2", 2, rh, 77 * 16);
    if (e && h) {
        double m = 0;
        for (int r = 0; r < 97; r++)
            for (int c = 0; c < 40; c++) {
                double want = (r < 77 && c < 32) ? h[r * 16 + c % 16] : 0.0;
                m = fmax(m, fabs(e[r * 40 + c] - want));
            }
        CHECKF(m < 1e-4, "SD3 without T5: prompt_embeds off by %g", m);
    }
    free(e), free(h);
    dfa_st_close(st);
}

static void test_pixart(void) {
    const char *pairs[] = {"text_encoder", "t5", "tokenizer", "t5_tok"};
    char dir[256], out[300];
    make_model("pixart", pairs, 2, dir, sizeof dir);
    tmpdir_file(&tmp, "pixart.safetensors", out, sizeof out);
    CHECK(ENCODE("encode", "-m", dir, "-p", P0, "-o", out, "--max-sequence-length", "32") == 0);
    dfa_safetensors *st = NULL;
    dfa_error err = {0};
    CHECKF(dfa_st_open(&st, out, &err) == DFA_OK, "%s", err.msg);
    if (!st) return;
    const int64_t se[3] = {1, 32, 48}, r1[2] = {32, 48}, sm[2] = {1, 32}, rm[1] = {32};
    float *e = load(st, "prompt_embeds", 3, se, 32 * 48), *w = load(ref, "t5.0.out_masked", 2, r1, 32 * 48);
    float *m = load(st, "prompt_attention_mask", 2, sm, 32), *wm = load(ref, "t5.0.mask", 1, rm, 32);
    if (e && w) CHECKF(maxdiff(e, w, 32 * 48) < 1e-4, "PixArt embeds differ by %g", maxdiff(e, w, 32 * 48));
    if (m && wm) CHECK(maxdiff(m, wm, 32) == 0);
    CHECK(dfa_st_find(st, "pooled_prompt_embeds") == NULL);
    free(e), free(w), free(m), free(wm);
    dfa_st_close(st);
}

static void test_errors(void) {
    char out[300], dir[256];
    tmpdir_file(&tmp, "x.safetensors", out, sizeof out);
    CHECK(ENCODE("encode", "-p", "x", "-o", out) == 2);             /* no -m */
    CHECK(ENCODE("encode", "-m", FIX, "-p", "x", "-o", out, "--layout", "dalle") == 2);
    CHECK(ENCODE("encode", "-m", FIX, "-p", "x", "-o", out, "--max-sequence-length", "0") == 2);
    CHECK(ENCODE("encode", "--help") == 0);
    tmpdir_file(&tmp, "empty_model", dir, sizeof dir);
    CHECK(mkdir(dir, 0700) == 0);
    CHECK(ENCODE("encode", "-m", dir, "-p", "x", "-o", out) == 1); /* no text_encoder */
    tmpdir_file(&tmp, "flux", dir, sizeof dir);
    CHECK(ENCODE("encode", "-m", dir, "-p", "x", "-o", out, "--layout", "sd3") == 1); /* no text_encoder_3 */
    CHECK(ENCODE("encode", "-m", dir, "-p", "bad \xff utf-8", "-o", out, "--max-sequence-length", "8") == 1);
}

int main(void) {
    if (tmpdir_make(&tmp, "encode") != 0) return 1;
    dfa_error err = {0};
    CHECKF(dfa_st_open(&ref, FIX "enc_cases.safetensors", &err) == DFA_OK, "%s", err.msg);
    if (ref) {
        RUN(test_flux);
        RUN(test_sd3);
        RUN(test_sd3_without_t5);
        RUN(test_pixart);
        RUN(test_errors);
        dfa_st_close(ref);
    }
    tmpdir_remove(&tmp);
    return test_summary();
}
