/* test_text_cuda.c (GPU) - CLIP and T5 encoders on the CUDA backend (bf16 weights, bf16 GEMM
 * inputs / outputs, f32 residual stream, norms, softmax and outputs) against
 *   - transformers' f32 outputs (tests/fixtures/text/enc_cases.safetensors, the references of the
 *     CPU tests: tiny random models, 77 / 32 tokens, T5 with and without its mask),
 *   - the CPU path on fresh random token sequences (CLIP 77 tokens, EOS at a random place; T5 1..512
 *     tokens, with and without padding masked),
 *   - the CPU path on the same T5 with its embeddings x64 (exact in bf16): a residual stream far
 *     larger than the branches, as real T5s have; a bf16 residual stream rounds the branches away
 *     (replay: 3.3e-3..3.8e-3), the f32 one keeps them (replay max 1.1e-4; bound 4e-4),
 *   - the prompt encoder on a CUDA context (what dfa generate / encode --cuda run) vs a CPU one;
 * every output poisoned (NaN) first.
 * Bounds (relative L2), about 2x the largest error of an honest bf16 replay of this path on the CPU
 * (tests/fixtures/text_bf16_error.py: the same roundings in f32 torch, 20 T5 cases, 33 per CLIP):
 *   T5 output                         1.2e-2  (replay max 5.9e-3; transformers' own bf16 T5: 9.0e-3)
 *   CLIP hidden states [T, D]         2.5e-2  (replay max 1.2e-2)
 *   CLIP pooled / text_embeds (1 row) 5e-2    (replay max 2.6e-2: one 32-wide row behind a LayerNorm)
 * and pooled must be bit-identical to the last hidden state's EOS row. */
#include "../test.h"
#include "gpu_test_util.h"

#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "core/ctx.h"
#include "io/safetensors.h"
#include "models/clip.h"
#include "models/t5.h"
#include "text/prompt.h"
#include "../tmpdir.h"

#define FIX DFA_SOURCE_DIR "/tests/fixtures/text/"
#define TOL_T5 1.2e-2
#define TOL_HID 2.5e-2
#define TOL_ROW 5e-2
#define TOL_T5_LARGE 4e-4

static dfa_safetensors *ref;

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

static void bound(const char *what, const float *got, const float *want, size_t n, double tol) {
    double e = gpu_rel_l2(got, want, n);
    CHECKF(e < tol, "%s: relative L2 %.3g (bound %.3g)", what, e, tol);
    printf("  %-40s rel L2 %.2e\n", what, e);
}

static void cmp_ref(const char *what, const float *got, const char *refname, size_t n, double tol) {
    float *r = load_ref(refname, n);
    if (!r) return;
    char w[96];
    snprintf(w, sizeof w, "%s vs %s", what, refname);
    bound(w, got, r, n, tol);
    free(r);
}

/* one CLIP run: hidden[-2], last hidden, pooled, projection (P > 0), all poisoned first */
typedef struct clip_out {
    float *hid, *last, *pooled, *proj;
} clip_out;

static int clip_run(dfa_ctx *ctx, dfa_clip *m, const int32_t *ids, clip_out *o) {
    const dfa_clip_config *c = dfa_clip_get_config(m);
    size_t TD = 77 * (size_t)c->hidden;
    o->hid = gpu_poisoned(TD), o->last = gpu_poisoned(TD), o->pooled = gpu_poisoned((size_t)c->hidden);
    o->proj = gpu_poisoned(c->projection_dim ? (size_t)c->projection_dim : 1);
    int ok = dfa_clip_encode(m, ids, 77, -2, o->hid, NULL, NULL) == DFA_OK &&
             dfa_clip_encode(m, ids, 77, DFA_TEXT_LAST_HIDDEN, o->last, o->pooled, c->projection_dim ? o->proj : NULL) ==
                 DFA_OK;
    CHECKF(ok, "clip encode: %s", dfa_ctx_error(ctx));
    return ok;
}

static void clip_out_free(clip_out *o) { free(o->hid), free(o->last), free(o->pooled), free(o->proj); }

/* pooled must be the last hidden state's EOS row of the same call, bit for bit (one buffer on the GPU) */
static void check_pooled_row(const dfa_clip_config *c, const int32_t *ids, const clip_out *o) {
    int eos = 0;
    for (int t = 0; t < 77; t++)
        if (c->eos_token_id == 2 ? ids[t] > ids[eos] : ids[t] == c->eos_token_id) {
            eos = t;
            if (c->eos_token_id != 2) break;
        }
    CHECKF(memcmp(o->pooled, o->last + (size_t)eos * c->hidden, (size_t)c->hidden * sizeof(float)) == 0,
           "pooled is not the last hidden state's row %d", eos);
}

static void test_clip(dfa_ctx *gpu, dfa_ctx *cpu, const char *name, int proj_model) {
    char dir[512];
    snprintf(dir, sizeof dir, FIX "%s", name);
    dfa_clip *m = NULL, *mc = NULL;
    CHECKF(dfa_clip_load_cuda(gpu, dir, &m) == DFA_OK, "%s", dfa_ctx_error(gpu));
    CHECKF(dfa_clip_load(cpu, dir, &mc) == DFA_OK, "%s", dfa_ctx_error(cpu));
    if (!m || !mc) {
        dfa_clip_free(m);
        dfa_clip_free(mc);
        return;
    }
    const dfa_clip_config *c = dfa_clip_get_config(m);
    size_t D = (size_t)c->hidden, P = (size_t)c->projection_dim;
    printf("%s (GPU vs transformers):\n", name);
    for (int p = 0; p < 3; p++) {
        int32_t ids[77];
        char n1[64], n2[64];
        snprintf(n1, sizeof n1, "clip.%d.ids", p);
        if (load_ids(n1, ids, 77) != 77) {
            CHECK(0);
            continue;
        }
        clip_out o;
        if (clip_run(gpu, m, ids, &o)) {
            snprintf(n2, sizeof n2, "%s.%d.hidden_m2", name, p);
            cmp_ref("hidden[-2]", o.hid, n2, 77 * D, TOL_HID);
            if (proj_model) {
                snprintf(n2, sizeof n2, "%s.%d.text_embeds", name, p);
                cmp_ref("text_embeds", o.proj, n2, P, TOL_ROW);
            } else {
                snprintf(n2, sizeof n2, "%s.%d.last", name, p);
                cmp_ref("last", o.last, n2, 77 * D, TOL_HID);
                snprintf(n2, sizeof n2, "%s.%d.pooled", name, p);
                cmp_ref("pooled", o.pooled, n2, D, TOL_ROW);
            }
            check_pooled_row(c, ids, &o);
        }
        clip_out_free(&o);
    }
    printf("%s (GPU vs CPU, fresh token ids):\n", name);
    unsigned long long rng = 1234 + (unsigned long long)proj_model;
    for (int r = 0; r < 4; r++) {
        int32_t ids[77];
        for (int t = 0; t < 77; t++) ids[t] = (int)(test_rng_next(&rng) % (unsigned)(c->vocab_size - 1));
        if (c->eos_token_id != 2) {
            for (int t = 0; t < 77; t++)
                if (ids[t] == c->eos_token_id) ids[t] = 0;
            ids[1 + test_rng_next(&rng) % 76] = c->eos_token_id;
        }
        clip_out g, k;
        if (clip_run(gpu, m, ids, &g) && clip_run(cpu, mc, ids, &k)) {
            char w[64];
            snprintf(w, sizeof w, "random %d hidden[-2]", r);
            bound(w, g.hid, k.hid, 77 * D, TOL_HID);
            snprintf(w, sizeof w, "random %d last", r);
            bound(w, g.last, k.last, 77 * D, TOL_HID);
            snprintf(w, sizeof w, "random %d pooled", r);
            bound(w, g.pooled, k.pooled, D, TOL_ROW);
            if (P) {
                snprintf(w, sizeof w, "random %d text_embeds", r);
                bound(w, g.proj, k.proj, P, TOL_ROW);
            }
            check_pooled_row(c, ids, &g);
        }
        clip_out_free(&g);
        clip_out_free(&k);
    }
    dfa_clip_free(m);
    dfa_clip_free(mc);
}

/* GPU vs CPU on fresh token sequences of several lengths, without and with padding masked */
static void t5_fresh(dfa_ctx *gpu, dfa_ctx *cpu, dfa_t5 *m, dfa_t5 *mc, const char *label, double tol) {
    /* 300 and 512 tokens need several passes of the attention kernel's 256 threads; a shorter call
     * after a longer one reuses the arenas */
    static const int lens[] = {300, 1, 77, 512, 32};
    unsigned long long rng = 99;
    int V = dfa_t5_get_config(m)->vocab_size, D = dfa_t5_get_config(m)->d_model;
    printf("%s (GPU vs CPU, fresh token ids):\n", label);
    for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
        int T = lens[li];
        int32_t *ids = malloc((size_t)T * sizeof *ids), *mask = malloc((size_t)T * sizeof *mask);
        for (int t = 0; t < T; t++) ids[t] = (int)(test_rng_next(&rng) % (unsigned)V), mask[t] = t < (T * 2 + 2) / 3;
        for (int masked = 0; masked < 2; masked++) {
            float *g = gpu_poisoned((size_t)T * D), *c = gpu_poisoned((size_t)T * D);
            CHECKF(dfa_t5_encode(m, ids, masked ? mask : NULL, T, g) == DFA_OK, "%s", dfa_ctx_error(gpu));
            CHECKF(dfa_t5_encode(mc, ids, masked ? mask : NULL, T, c) == DFA_OK, "%s", dfa_ctx_error(cpu));
            char w[64];
            snprintf(w, sizeof w, "%s %d tokens%s", label, T, masked ? " masked" : "");
            bound(w, g, c, (size_t)T * D, tol);
            free(g), free(c);
        }
        free(ids), free(mask);
    }
}

/* dir/config.json and dir/model.safetensors: the T5 fixture with shared.weight * scale; 0 on success */
static int write_scaled_t5(const char *dir, float scale) {
    char p[512];
    dfa_error err = {0};
    dfa_safetensors *st = NULL;
    FILE *in = fopen(FIX "t5/config.json", "rb"), *out = NULL;
    char cfg[8192];
    size_t n = in ? fread(cfg, 1, sizeof cfg, in) : 0;
    if (in) fclose(in);
    snprintf(p, sizeof p, "%s/config.json", dir);
    int ok = n > 0 && n < sizeof cfg && (out = fopen(p, "wb")) != NULL && fwrite(cfg, 1, n, out) == n;
    if (out) ok = (fclose(out) == 0) && ok;
    ok = ok && dfa_st_open(&st, FIX "t5/model.safetensors", &err) == DFA_OK;
    int nt = st ? dfa_st_count(st) : 0, found = 0;
    dfa_st_item *items = calloc((size_t)nt + 1, sizeof *items);
    float **data = calloc((size_t)nt + 1, sizeof *data);
    ok = ok && items && data;
    for (int i = 0; ok && i < nt; i++) {
        const dfa_st_tensor *t = dfa_st_at(st, i);
        size_t numel = 1;
        for (int j = 0; j < t->ndim; j++) numel *= (size_t)t->shape[j];
        ok = (data[i] = malloc(numel * sizeof(float))) != NULL &&
             dfa_st_load(st, t->name, DFA_F32, -1, NULL, data[i], DFA_DEV_CPU, NULL, &err) == DFA_OK;
        if (ok && strcmp(t->name, "shared.weight") == 0) {
            found = 1;
            for (size_t j = 0; j < numel; j++) data[i][j] *= scale;
        }
        items[i] = (dfa_st_item){.name = t->name, .dtype = DFA_F32, .ndim = t->ndim, .shape = t->shape, .data = data[i]};
    }
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    ok = ok && found && dfa_st_write(p, items, nt, NULL, NULL, 0, &err) == DFA_OK;
    CHECKF(ok, "writing the scaled T5 in %s: %s", dir, err.msg);
    for (int i = 0; data && i < nt; i++) free(data[i]);
    free(data), free(items);
    if (st) dfa_st_close(st);
    return ok ? 0 : -1;
}

/* a residual stream 64x larger than the branches: only an f32 stream keeps the branches */
static void test_t5_large(dfa_ctx *gpu, dfa_ctx *cpu) {
    test_tmpdir d;
    if (tmpdir_make(&d, "t5large") != 0) {
        CHECK(0);
        return;
    }
    if (write_scaled_t5(d.path, 64.0f) != 0) {
        tmpdir_remove(&d);
        return;
    }
    dfa_t5 *m = NULL, *mc = NULL;
    CHECKF(dfa_t5_load_cuda(gpu, d.path, &m) == DFA_OK, "%s", dfa_ctx_error(gpu));
    CHECKF(dfa_t5_load(cpu, d.path, &mc) == DFA_OK, "%s", dfa_ctx_error(cpu));
    if (m && mc) t5_fresh(gpu, cpu, m, mc, "t5 x64", TOL_T5_LARGE);
    dfa_t5_free(m);
    dfa_t5_free(mc);
    tmpdir_remove(&d);
}

static void test_t5(dfa_ctx *gpu, dfa_ctx *cpu) {
    dfa_t5 *m = NULL, *mc = NULL;
    CHECKF(dfa_t5_load_cuda(gpu, FIX "t5", &m) == DFA_OK, "%s", dfa_ctx_error(gpu));
    CHECKF(dfa_t5_load(cpu, FIX "t5", &mc) == DFA_OK, "%s", dfa_ctx_error(cpu));
    if (!m || !mc) {
        dfa_t5_free(m);
        dfa_t5_free(mc);
        return;
    }
    int D = dfa_t5_get_config(m)->d_model;
    printf("t5 (GPU vs transformers):\n");
    for (int p = 0; p < 3; p++) {
        int32_t ids[64], mask[64];
        char n[64];
        snprintf(n, sizeof n, "t5.%d.ids", p);
        int T = load_ids(n, ids, 64);
        snprintf(n, sizeof n, "t5.%d.mask", p);
        CHECK(load_ids(n, mask, 64) == T && T > 0);
        if (T <= 0) continue;
        float *o = gpu_poisoned((size_t)T * D);
        CHECKF(dfa_t5_encode(m, ids, NULL, T, o) == DFA_OK, "%s", dfa_ctx_error(gpu));
        snprintf(n, sizeof n, "t5.%d.out", p);
        cmp_ref("t5", o, n, (size_t)T * D, TOL_T5);
        for (size_t i = 0; i < (size_t)T * D; i++) o[i] = NAN;
        CHECKF(dfa_t5_encode(m, ids, mask, T, o) == DFA_OK, "%s", dfa_ctx_error(gpu));
        snprintf(n, sizeof n, "t5.%d.out_masked", p);
        cmp_ref("t5 masked", o, n, (size_t)T * D, TOL_T5);
        free(o);
    }
    t5_fresh(gpu, cpu, m, mc, "t5", TOL_T5);
    dfa_t5_free(m);
    dfa_t5_free(mc);
}

/* The prompt encoder on a CUDA context runs the CUDA encoders (FLUX layout: CLIP pooled + T5). */
static void test_prompt_encoder(dfa_ctx *gpu, dfa_ctx *cpu) {
    test_tmpdir d;
    if (tmpdir_make(&d, "textcuda") != 0) {
        CHECK(0);
        return;
    }
    static const char *links[][2] = {{"text_encoder", "clip"}, {"tokenizer", "clip_tok"},
                                     {"text_encoder_2", "t5"}, {"tokenizer_2", "t5_tok"}};
    char p[256], target[512];
    for (int i = 0; i < 4; i++) {
        snprintf(target, sizeof target, FIX "%s", links[i][1]);
        CHECK(symlink(target, tmpdir_file(&d, links[i][0], p, sizeof p)) == 0);
    }
    dfa_prompt_opts po = {.layout = DFA_LAYOUT_FLUX, .max_sequence_length = 40};
    dfa_prompt_encoder *eg = NULL, *ec = NULL;
    CHECKF(dfa_prompt_encoder_load(gpu, d.path, &po, &eg) == DFA_OK, "%s", dfa_ctx_error(gpu));
    CHECKF(dfa_prompt_encoder_load(cpu, d.path, &po, &ec) == DFA_OK, "%s", dfa_ctx_error(cpu));
    const char *prompt = "a lighthouse on a cliff at dusk, oil painting, 1887";
    dfa_text_embeds g = {0}, c = {0};
    if (eg && ec && dfa_prompt_encode(eg, prompt, &g) == DFA_OK && dfa_prompt_encode(ec, prompt, &c) == DFA_OK) {
        printf("prompt encoder (CUDA context vs CPU context):\n");
        CHECK(g.T == c.T && g.D == c.D && g.pooled_dim == c.pooled_dim && g.T == 40);
        if (g.T == c.T && g.D == c.D && g.pooled_dim == c.pooled_dim) {
            size_t n = (size_t)g.T * g.D;
            bound("prompt_embeds (T5)", g.embeds, c.embeds, n, TOL_T5);
            bound("pooled_prompt_embeds (CLIP)", g.pooled, c.pooled, (size_t)g.pooled_dim, TOL_ROW);
            /* exactly equal would mean the CUDA context fell back to the CPU encoders */
            CHECKF(gpu_rel_l2(g.embeds, c.embeds, n) > 0 && gpu_rel_l2(g.pooled, c.pooled, (size_t)g.pooled_dim) > 0,
                   "the CUDA context's prompt encoder gave the CPU path's bits: not on the GPU");
        }
    } else {
        CHECKF(0, "prompt encode: %s / %s", dfa_ctx_error(gpu), dfa_ctx_error(cpu));
    }
    dfa_text_embeds_free(&g);
    dfa_text_embeds_free(&c);
    dfa_prompt_encoder_free(eg);
    dfa_prompt_encoder_free(ec);
    for (int i = 0; i < 4; i++) unlink(tmpdir_file(&d, links[i][0], p, sizeof p));
    tmpdir_remove(&d);
}

int main(void) {
    dfa_ctx *gpu = gpu_new_ctx(DFA_BACKEND_CUDA), *cpu = gpu_new_ctx(DFA_BACKEND_CPU);
    CHECK(gpu && cpu);
    dfa_error err = {0};
    CHECKF(dfa_st_open(&ref, FIX "enc_cases.safetensors", &err) == DFA_OK, "%s", err.msg);
    if (gpu && cpu && ref) {
        test_clip(gpu, cpu, "clip", 0);
        test_clip(gpu, cpu, "clip_proj", 1);
        test_t5(gpu, cpu);
        test_t5_large(gpu, cpu);
        test_prompt_encoder(gpu, cpu);
    }
    if (ref) dfa_st_close(ref);
    dfa_ctx_free(gpu);
    dfa_ctx_free(cpu);
    return test_summary();
}
