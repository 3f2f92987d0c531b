/* test_t5.c - the C T5 encoder against transformers' T5EncoderModel on a tiny random-weight
 * gated-GELU model with BF16 weights (tests/fixtures/gen_text.py), with and without the
 * padding mask; relative position buckets against transformers for T5-XXL's scheme. */
#include "core/ctx.h"
#include "io/safetensors.h"
#include "models/t5.h"
#include "test.h"

#define FIX DFA_SOURCE_DIR "/tests/fixtures/text/"
#define N_PROMPTS 3

static dfa_ctx *ctx;
static dfa_safetensors *ref;

static int load_i32(const char *name, int32_t *dst, int max) {
    const dfa_st_tensor *t = dfa_st_find(ref, name);
    dfa_error err = {0};
    if (!t || t->ndim != 1 || t->shape[0] > max) return -1;
    if (dfa_st_load(ref, name, DFA_I32, -1, NULL, dst, DFA_DEV_CPU, NULL, &err) != DFA_OK) return -1;
    return (int)t->shape[0];
}

static double max_err(const char *name, const float *out, size_t n) {
    float *r = malloc(n * sizeof(float));
    dfa_error err = {0};
    const dfa_st_tensor *t = dfa_st_find(ref, name);
    CHECKF(t && (size_t)(t->shape[0] * t->shape[1]) == n, "reference %s missing or of another size", name);
    if (!t || dfa_st_load(ref, name, DFA_F32, -1, NULL, r, DFA_DEV_CPU, NULL, &err) != DFA_OK) {
        free(r);
        return 1e9;
    }
    double mx = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)out[i] - r[i]);
        if (!(d <= mx)) mx = d;
    }
    free(r);
    return mx;
}

static void test_buckets(void) {
    int32_t b[1201];
    int n = load_i32("t5.buckets_32_128", b, 1201);
    CHECK(n == 1201);
    int bad = 0;
    for (int i = 0; i < n; i++)
        if (dfa_t5_bucket(i - 600, 32, 128) != b[i]) {
            if (!bad) fprintf(stderr, "rel %d: bucket %d, transformers %d\n", i - 600, dfa_t5_bucket(i - 600, 32, 128), b[i]);
            bad++;
        }
    CHECKF(bad == 0, "%d of %d buckets differ", bad, n);
}

static void test_t5_encoder(void) {
    dfa_t5 *m = NULL;
    dfa_status st = dfa_t5_load(ctx, FIX "t5", &m);
    CHECKF(st == DFA_OK, "%s", dfa_ctx_error(ctx));
    if (st) return;
    const dfa_t5_config *c = dfa_t5_get_config(m);
    CHECK(c->d_model == 48 && c->heads * c->d_kv == 32 && c->gated == 1 && c->num_buckets == 8 && c->max_distance == 20 && c->layers == 2);
    int D = c->d_model;
    for (int p = 0; p < N_PROMPTS; p++) {
        int32_t ids[64], mask[64];
        char name[64];
        snprintf(name, sizeof name, "t5.%d.ids", p);
        int T = load_i32(name, ids, 64);
        snprintf(name, sizeof name, "t5.%d.mask", p);
        CHECK(load_i32(name, mask, 64) == T && T > 0);
        if (T <= 0) continue;
        float *out = malloc((size_t)T * D * sizeof(float));
        for (int i = 0; i < T * D; i++) out[i] = NAN;
        CHECK(dfa_t5_encode(m, ids, NULL, T, out) == DFA_OK);
        snprintf(name, sizeof name, "t5.%d.out", p);
        double e1 = max_err(name, out, (size_t)T * D);
        for (int i = 0; i < T * D; i++) out[i] = NAN;
        CHECK(dfa_t5_encode(m, ids, mask, T, out) == DFA_OK);
        snprintf(name, sizeof name, "t5.%d.out_masked", p);
        double e2 = max_err(name, out, (size_t)T * D);
        CHECKF(e1 < 1e-4 && e2 < 1e-4, "prompt %d: max err unmasked %.3g, masked %.3g", p, e1, e2);
        free(out);
    }
    /* a shorter sequence after a longer one reuses the arena; a longer one grows it */
    int32_t ids[40] = {5, 6, 7};
    float out[40 * 48];
    CHECK(dfa_t5_encode(m, ids, NULL, 3, out) == DFA_OK);
    CHECK(dfa_t5_encode(m, ids, NULL, 40, out) == DFA_OK);
    ids[1] = -1;
    CHECK(dfa_t5_encode(m, ids, NULL, 3, out) == DFA_ERR_INVALID_ARG);
    CHECK(strstr(dfa_ctx_error(ctx), "position 1") != NULL);
    CHECK(dfa_t5_encode(m, ids, NULL, 0, out) == DFA_ERR_INVALID_ARG);
    dfa_t5_free(m);
    CHECK(dfa_t5_load(ctx, FIX "clip", &m) != DFA_OK); /* a CLIP folder: config keys missing */
    CHECK(strstr(dfa_ctx_error(ctx), "d_model") != NULL);
}

int main(void) {
    dfa_ctx_params p = dfa_ctx_default_params();
    p.n_threads = 2;
    p.log_level = DFA_LOG_WARN;
    if (dfa_ctx_init(&ctx, &p, NULL, 0) != DFA_OK) return 1;
    dfa_error err = {0};
    CHECKF(dfa_st_open(&ref, FIX "enc_cases.safetensors", &err) == DFA_OK, "%s", err.msg);
    if (ref) {
        RUN(test_buckets);
        RUN(test_t5_encoder);
        dfa_st_close(ref);
    }
    dfa_ctx_free(ctx);
    return test_summary();
}
