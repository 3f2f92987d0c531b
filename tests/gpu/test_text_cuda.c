/* test_text_cuda.c (GPU) - CLIP and T5 encoders on the CUDA backend (bf16 weights and
 * activations) against transformers' outputs (tests/fixtures/text/enc_cases.safetensors, the
 * same references the CPU tests use: tiny random models, 77 / 32 tokens), and against the CPU
 * path on a longer T5 sequence (300 tokens, more than one attention block of threads, key mask
 * with padding). Outputs poisoned first. Bound: relative L2 3e-2 (bf16 through 2 layers). */
#include "../test.h"

#include <stdint.h>

#include "core/ctx.h"
#include "io/safetensors.h"
#include "models/clip.h"
#include "models/t5.h"

#define FIX DFA_SOURCE_DIR "/tests/fixtures/text/"
#define TOL 3e-2

static dfa_safetensors *ref;

static double rel_l2(const float *a, const float *r, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i])) return INFINITY;
        double d = (double)a[i] - r[i];
        num += d * d;
        den += (double)r[i] * r[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

static float *load_ref(const char *name, size_t n) {
    float *p = malloc(n * sizeof(float));
    dfa_error err = {0};
    const dfa_st_tensor *t = dfa_st_find(ref, name);
    if (!t || dfa_st_load(ref, name, DFA_F32, -1, NULL, p, DFA_DEV_CPU, NULL, &err) != DFA_OK) {
        CHECKF(0, "reference %s: %s", name, err.msg);
        free(p);
        return NULL;
    }
    return p;
}

static int load_ids(const char *name, int32_t *ids, int max) {
    const dfa_st_tensor *t = dfa_st_find(ref, name);
    dfa_error err = {0};
    if (!t || t->shape[0] > max || dfa_st_load(ref, name, DFA_I32, -1, NULL, ids, DFA_DEV_CPU, NULL, &err)) return -1;
    return (int)t->shape[0];
}

static float *poisoned(size_t n) {
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = NAN;
    return p;
}

static dfa_ctx *new_ctx(dfa_backend be) {
    dfa_ctx_params p = dfa_ctx_default_params();
    p.backend = be;
    p.log_level = DFA_LOG_WARN;
    dfa_ctx *ctx = NULL;
    char msg[256];
    if (dfa_ctx_init(&ctx, &p, msg, sizeof msg) != DFA_OK) fprintf(stderr, "ctx: %s\n", msg);
    return ctx;
}

static void cmp(const char *what, const float *got, const char *refname, size_t n) {
    float *r = load_ref(refname, n);
    if (!r) return;
    double e = rel_l2(got, r, n);
    CHECKF(e < TOL, "%s vs %s: relative L2 %.3g", what, refname, e);
    printf("  %-28s rel L2 %.2e\n", refname, e);
    free(r);
}

static void test_clip(dfa_ctx *gpu, const char *dir, int proj_model) {
    dfa_clip *m = NULL;
    CHECKF(dfa_clip_load_cuda(gpu, dir, &m) == DFA_OK, "%s", dfa_ctx_error(gpu));
    if (!m) return;
    int D = dfa_clip_get_config(m)->hidden, P = dfa_clip_get_config(m)->projection_dim;
    for (int p = 0; p < 3; p++) {
        int32_t ids[77];
        char n1[64], n2[64];
        snprintf(n1, sizeof n1, "clip.%d.ids", p);
        if (load_ids(n1, ids, 77) != 77) {
            CHECK(0);
            continue;
        }
        float *hid = poisoned(77 * (size_t)D), *last = poisoned(77 * (size_t)D), *pooled = poisoned((size_t)D);
        float *pr = poisoned(P ? (size_t)P : 1);
        CHECKF(dfa_clip_encode(m, ids, 77, -2, hid, pooled, P ? pr : NULL) == DFA_OK, "%s", dfa_ctx_error(gpu));
        CHECKF(dfa_clip_encode(m, ids, 77, DFA_TEXT_LAST_HIDDEN, last, NULL, NULL) == DFA_OK, "%s", dfa_ctx_error(gpu));
        snprintf(n2, sizeof n2, "%s.%d.hidden_m2", proj_model ? "clip_proj" : "clip", p);
        cmp("hidden[-2]", hid, n2, 77 * (size_t)D);
        if (proj_model) {
            snprintf(n2, sizeof n2, "clip_proj.%d.text_embeds", p);
            cmp("text_embeds", pr, n2, (size_t)P);
        } else {
            snprintf(n2, sizeof n2, "clip.%d.last", p);
            cmp("last", last, n2, 77 * (size_t)D);
            snprintf(n2, sizeof n2, "clip.%d.pooled", p);
            cmp("pooled", pooled, n2, (size_t)D);
        }
        free(hid), free(last), free(pooled), free(pr);
    }
    dfa_clip_free(m);
}

static void test_t5(dfa_ctx *gpu, dfa_ctx *cpu) {
    dfa_t5 *m = NULL, *mc = NULL;
    CHECKF(dfa_t5_load_cuda(gpu, FIX "t5", &m) == DFA_OK, "%s", dfa_ctx_error(gpu));
    CHECKF(dfa_t5_load(cpu, FIX "t5", &mc) == DFA_OK, "%s", dfa_ctx_error(cpu));
    if (!m || !mc) return;
    int D = dfa_t5_get_config(m)->d_model;
    for (int p = 0; p < 3; p++) {
        int32_t ids[64], mask[64];
        char n[64];
        snprintf(n, sizeof n, "t5.%d.ids", p);
        int T = load_ids(n, ids, 64);
        snprintf(n, sizeof n, "t5.%d.mask", p);
        CHECK(load_ids(n, mask, 64) == T && T > 0);
        if (T <= 0) continue;
        float *o = poisoned((size_t)T * D);
        CHECKF(dfa_t5_encode(m, ids, NULL, T, o) == DFA_OK, "%s", dfa_ctx_error(gpu));
        snprintf(n, sizeof n, "t5.%d.out", p);
        cmp("t5", o, n, (size_t)T * D);
        for (size_t i = 0; i < (size_t)T * D; i++) o[i] = NAN;
        CHECKF(dfa_t5_encode(m, ids, mask, T, o) == DFA_OK, "%s", dfa_ctx_error(gpu));
        snprintf(n, sizeof n, "t5.%d.out_masked", p);
        cmp("t5 masked", o, n, (size_t)T * D);
        free(o);
    }
    /* 300 tokens, the last 100 padding: GPU vs CPU */
    enum { T = 300 };
    int32_t ids[T], mask[T];
    unsigned long long rng = 99;
    int V = dfa_t5_get_config(m)->vocab_size;
    for (int t = 0; t < T; t++) ids[t] = (int)(test_rng_next(&rng) % (unsigned)V), mask[t] = t < 200;
    float *g = poisoned((size_t)T * D), *c = poisoned((size_t)T * D);
    CHECKF(dfa_t5_encode(m, ids, mask, T, g) == DFA_OK, "%s", dfa_ctx_error(gpu));
    CHECKF(dfa_t5_encode(mc, ids, mask, T, c) == DFA_OK, "%s", dfa_ctx_error(cpu));
    double e = rel_l2(g, c, (size_t)T * D);
    printf("  t5 300 tokens GPU vs CPU   rel L2 %.2e\n", e);
    CHECKF(e < TOL, "T5 300 tokens: GPU vs CPU relative L2 %.3g", e);
    free(g), free(c);
    dfa_t5_free(m);
    dfa_t5_free(mc);
}

int main(void) {
    dfa_ctx *gpu = new_ctx(DFA_BACKEND_CUDA), *cpu = new_ctx(DFA_BACKEND_CPU);
    CHECK(gpu && cpu);
    dfa_error err = {0};
    CHECKF(dfa_st_open(&ref, FIX "enc_cases.safetensors", &err) == DFA_OK, "%s", err.msg);
    if (gpu && cpu && ref) {
        test_clip(gpu, FIX "clip", 0);
        test_clip(gpu, FIX "clip_proj", 1);
        test_t5(gpu, cpu);
    }
    if (ref) dfa_st_close(ref);
    dfa_ctx_free(gpu);
    dfa_ctx_free(cpu);
    return test_summary();
}
