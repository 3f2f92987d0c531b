/* test_clip.c - the C CLIP text encoders against transformers on tiny random-weight models
 * (tests/fixtures/gen_text.py): penultimate hidden state, last_hidden_state, pooled output at
 * the first EOS (CLIPTextModel, F32 weights) and at argmax(ids) (legacy eos_token_id 2,
 * CLIPTextModelWithProjection, F16 weights), text_embeds; plus argument errors. */
#include <float.h>

#include "core/ctx.h"
#include "io/safetensors.h"
#include "models/clip.h"
#include "test.h"

#define FIX DFA_SOURCE_DIR "/tests/fixtures/text/"
#define N_PROMPTS 3

static dfa_ctx *ctx;
static dfa_safetensors *ref;

/* Compare n floats of out with reference tensor `name`; returns the max abs error. */
static double cmp(const char *name, const float *out, size_t n) {
    const dfa_st_tensor *t = dfa_st_find(ref, name);
    CHECKF(t != NULL, "reference tensor %s missing", name);
    if (!t) return 1e9;
    float *r = malloc(n * sizeof(float));
    dfa_error err = {0};
    int64_t shape[1] = {(int64_t)n};
    (void)shape;
    CHECKF(dfa_st_load(ref, name, DFA_F32, -1, NULL, r, DFA_DEV_CPU, NULL, &err) == DFA_OK, "%s", err.msg);
    double mx = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)out[i] - r[i]);
        if (!(d <= mx)) mx = d; /* NaN propagates as failure */
    }
    free(r);
    return mx;
}

static int load_ids(const char *name, int32_t *ids) {
    const dfa_st_tensor *t = dfa_st_find(ref, name);
    dfa_error err = {0};
    if (!t || dfa_st_load(ref, name, DFA_I32, -1, NULL, ids, DFA_DEV_CPU, NULL, &err) != DFA_OK) return -1;
    return (int)t->shape[0];
}

static float *poisoned(size_t n) {
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = NAN;
    return p;
}

static void test_clip_text_model(void) {
    dfa_clip *m = NULL;
    dfa_status st = dfa_clip_load(ctx, FIX "clip", &m);
    CHECKF(st == DFA_OK, "%s", dfa_ctx_error(ctx));
    if (st) return;
    const dfa_clip_config *c = dfa_clip_get_config(m);
    CHECK(c->hidden == 32 && c->layers == 2 && c->heads == 2 && c->projection_dim == 0 && c->act == DFA_TEXT_ACT_QUICK_GELU);
    for (int p = 0; p < N_PROMPTS; p++) {
        int32_t ids[77];
        char name[64];
        snprintf(name, sizeof name, "clip.%d.ids", p);
        int T = load_ids(name, ids);
        CHECK(T == 77);
        if (T != 77) continue;
        float *hid = poisoned(77 * 32), *last = poisoned(77 * 32), *pooled = poisoned(32);
        CHECK(dfa_clip_encode(m, ids, T, -2, hid, pooled, NULL) == DFA_OK);
        CHECK(dfa_clip_encode(m, ids, T, DFA_TEXT_LAST_HIDDEN, last, NULL, NULL) == DFA_OK);
        snprintf(name, sizeof name, "clip.%d.hidden_m2", p);
        double e1 = cmp(name, hid, 77 * 32);
        snprintf(name, sizeof name, "clip.%d.last", p);
        double e2 = cmp(name, last, 77 * 32);
        snprintf(name, sizeof name, "clip.%d.pooled", p);
        double e3 = cmp(name, pooled, 32);
        CHECKF(e1 < 1e-4 && e2 < 1e-4 && e3 < 1e-4, "prompt %d: max err hidden[-2] %.3g, last %.3g, pooled %.3g", p, e1, e2, e3);
        free(hid), free(last), free(pooled);
    }
    dfa_clip_free(m);
}

static void test_clip_with_projection(void) {
    dfa_clip *m = NULL;
    dfa_status st = dfa_clip_load(ctx, FIX "clip_proj", &m);
    CHECKF(st == DFA_OK, "%s", dfa_ctx_error(ctx));
    if (st) return;
    const dfa_clip_config *c = dfa_clip_get_config(m);
    CHECK(c->projection_dim == 24 && c->eos_token_id == 2 && c->act == DFA_TEXT_ACT_GELU && c->hidden == 16);
    for (int p = 0; p < N_PROMPTS; p++) {
        int32_t ids[77];
        char name[64];
        snprintf(name, sizeof name, "clip.%d.ids", p);
        int T = load_ids(name, ids);
        if (T != 77) continue;
        float *hid = poisoned(77 * 16), *proj = poisoned(24);
        CHECK(dfa_clip_encode(m, ids, T, -2, hid, NULL, proj) == DFA_OK);
        snprintf(name, sizeof name, "clip_proj.%d.hidden_m2", p);
        double e1 = cmp(name, hid, 77 * 16);
        snprintf(name, sizeof name, "clip_proj.%d.text_embeds", p);
        double e2 = cmp(name, proj, 24);
        CHECKF(e1 < 1e-4 && e2 < 1e-4, "prompt %d: max err hidden[-2] %.3g, text_embeds %.3g", p, e1, e2);
        /* hidden state 1 (python index) equals -2 for a 2-layer model */
        float *h1 = poisoned(77 * 16);
        CHECK(dfa_clip_encode(m, ids, T, 1, h1, NULL, NULL) == DFA_OK);
        CHECK(memcmp(h1, hid, 77 * 16 * sizeof(float)) == 0);
        free(h1), free(hid), free(proj);
    }
    dfa_clip_free(m);
}

static void test_clip_errors(void) {
    dfa_clip *m = NULL;
    if (dfa_clip_load(ctx, FIX "clip", &m) != DFA_OK) {
        CHECK(0);
        return;
    }
    int32_t ids[78] = {0};
    float out[32 * 78];
    CHECK(dfa_clip_encode(m, ids, 78, -1, out, NULL, NULL) == DFA_ERR_INVALID_ARG);
    CHECK(dfa_clip_encode(m, ids, 0, -1, out, NULL, NULL) == DFA_ERR_INVALID_ARG);
    CHECK(dfa_clip_encode(m, ids, 5, 3, out, NULL, NULL) == DFA_ERR_INVALID_ARG);  /* 2 layers: 0..2 */
    CHECK(dfa_clip_encode(m, ids, 5, -4, out, NULL, NULL) == DFA_ERR_INVALID_ARG);
    CHECK(dfa_clip_encode(m, ids, 5, -3, out, NULL, NULL) == DFA_OK); /* embeddings */
    CHECK(dfa_clip_encode(m, ids, 5, -1, NULL, NULL, out) == DFA_ERR_INVALID_ARG); /* no projection */
    ids[2] = 1 << 20;
    CHECK(dfa_clip_encode(m, ids, 5, -1, out, NULL, NULL) == DFA_ERR_INVALID_ARG);
    CHECK(strstr(dfa_ctx_error(ctx), "position 2") != NULL);
    dfa_clip_free(m);
    /* the GPU loader on a CPU context */
    CHECK(dfa_clip_load_cuda(ctx, FIX "clip", &m) == DFA_ERR_UNSUPPORTED && m == NULL);
    /* a folder without weights: the error names it */
    CHECK(dfa_clip_load(ctx, FIX "clip_tok", &m) != DFA_OK);
    CHECK(strstr(dfa_ctx_error(ctx), "clip_tok") != NULL);
    CHECK(m == NULL);
}

int main(void) {
    dfa_ctx_params p = dfa_ctx_default_params();
    p.n_threads = 2;
    p.log_level = DFA_LOG_WARN;
    if (dfa_ctx_init(&ctx, &p, NULL, 0) != DFA_OK) return 1;
    dfa_error err = {0};
    CHECKF(dfa_st_open(&ref, FIX "enc_cases.safetensors", &err) == DFA_OK, "%s", err.msg);
    if (ref) {
        RUN(test_clip_text_model);
        RUN(test_clip_with_projection);
        RUN(test_clip_errors);
        dfa_st_close(ref);
    }
    dfa_ctx_free(ctx);
    return test_summary();
}
