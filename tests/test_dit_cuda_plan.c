/* test_dit_cuda_plan.c - the CPU-visible parts of the CUDA DiT / PixArt engines (tx_cuda.h):
 * the device activation plan (every buffer big enough, none overlapping, carved from an arena of
 * exactly dfa_txg_bufs_bytes), the staging size, weight relocation, and the random checkpoint
 * writer (dfa_dit_write_random / dfa_pixart_write_random, used by the GPU test and benches):
 * deterministic per seed, loadable, a finite forward on the CPU engine. */
#include "core/ctx.h"
#include "models/dit.h"
#include "models/pixart.h"
#include "models/tx_cuda.h"
#include "test.h"
#include "tmpdir.h"

typedef struct need {
    const void *p;
    size_t bytes;
} need;

static int cmp_need(const void *a, const void *b) {
    const need *x = a, *y = b;
    return (uintptr_t)x->p < (uintptr_t)y->p ? -1 : (uintptr_t)x->p > (uintptr_t)y->p;
}

static void plan_case(const dfa_txg_dims *d) {
    dfa_ctx_params pp = dfa_ctx_default_params();
    dfa_ctx *ctx = NULL;
    char e[256];
    if (dfa_ctx_init(&ctx, &pp, e, sizeof e) != DFA_OK) {
        CHECKF(0, "ctx: %s", e);
        return;
    }
    const size_t bytes = dfa_txg_bufs_bytes(d);
    dfa_arena a;
    CHECK(dfa_arena_init(ctx, &a, DFA_DEV_CPU, bytes, "plan test") == DFA_OK);
    dfa_txg_bufs b;
    CHECKF(dfa_txg_bufs_carve(ctx, &a, d, &b) == DFA_OK, "%s", dfa_ctx_error(ctx));
    /* what each buffer must hold, from the forward's use (independent of tx_cuda.c's list) */
    const size_t BN = (size_t)d->B * d->N, D = (size_t)d->D, BL = (size_t)d->B * d->L, Lp = (size_t)((d->L + 7) / 8 * 8);
    const size_t pc = (size_t)(d->patch_cols > d->out_cols ? d->patch_cols : d->out_cols);
    need n[32];
    int k = 0;
    const void *act[] = {b.hs, b.nh, b.q, b.k, b.v, b.o, b.tmp};
    for (int i = 0; i < 7; i++) n[k++] = (need){act[i], BN * D * 2};
    n[k++] = (need){b.mid, BN * (size_t)d->ff_inner * 2};
    n[k++] = (need){b.cols, BN * pc * 2};
    n[k++] = (need){b.tproj, (size_t)(d->B + 3) * 256 * 2};
    n[k++] = (need){b.emb, (size_t)d->B * D * 2};
    n[k++] = (need){b.emb2, (size_t)d->B * D * 2};
    n[k++] = (need){b.mod, (size_t)d->B * 6 * D * 2};
    n[k++] = (need){b.mod2, (size_t)d->B * 6 * D * 2};
    if (d->L > 0) {
        CHECK(b.Lp == (int)Lp && b.Lp % 8 == 0 && b.Lp >= d->L);
        n[k++] = (need){b.txt_in, BL * (size_t)d->caption * 2};
        const void *txt[] = {b.txt_mid, b.ck, b.cv, b.kh, b.vh};
        for (int i = 0; i < 5; i++) n[k++] = (need){txt[i], BL * D * 2};
        n[k++] = (need){b.qh, BN * D * 2};
        n[k++] = (need){b.oh, BN * D * 2};
        const int G = dfa_txg_cross_group(d->N, d->L, d->heads, d->cross_budget);
        CHECK(G >= 1 && G <= d->heads);
        n[k++] = (need){b.pr, (size_t)G * d->N * Lp * 2};
        n[k++] = (need){b.sc, (size_t)G * d->N * Lp * 4};
    } else {
        CHECK(b.txt_in == NULL && b.sc == NULL && b.pr == NULL && b.qh == NULL);
    }
    for (int i = 0; i < k; i++) CHECKF(n[i].p != NULL, "buffer %d not carved", i);
    qsort(n, (size_t)k, sizeof n[0], cmp_need);
    const unsigned char *end = a.base + a.size;
    for (int i = 0; i < k; i++) {
        const unsigned char *p = n[i].p, *next = i + 1 < k ? (const unsigned char *)n[i + 1].p : end;
        CHECKF(p + n[i].bytes <= next, "buffer at +%td (%zu bytes) overlaps the next at +%td", p - a.base, n[i].bytes,
               next - a.base);
        CHECKF(((size_t)(p - a.base) & 255u) == 0, "buffer at +%td not 256-byte aligned in the arena", p - a.base);
    }
    const size_t st = dfa_txg_stage_floats(d);
    CHECK(st >= BN * (size_t)d->patch_cols && st >= BN * (size_t)d->out_cols && st >= (size_t)(d->B + 3) * 256);
    CHECK(st >= BL * (size_t)d->caption && st >= BL); /* text upload, key bias */
    CHECK(b.txt == NULL && b.bias == NULL);                /* not carved: PixArt's text cache */
    dfa_arena_release(ctx, &a);
    dfa_ctx_free(ctx);
}

static void test_plan(void) {
    const dfa_txg_dims dit = {.B = 2, .N = 192, .D = 144, .ff_inner = 576, .patch_cols = 16, .out_cols = 32,
                              .heads = 2};
    plan_case(&dit);
    const dfa_txg_dims pix = {.B = 2, .N = 192, .D = 144, .ff_inner = 576, .patch_cols = 16, .out_cols = 32,
                              .heads = 2, .L = 37, .caption = 64};
    plan_case(&pix);
    const dfa_txg_dims one = {.B = 1, .N = 4, .D = 48, .ff_inner = 192, .patch_cols = 300, .out_cols = 32,
                              .heads = 2, .L = 5, .caption = 1000};
    plan_case(&one);
    /* real size: PixArt-Sigma-XL at 2048^2 fits a GPU (about 1.5 GB of activations) */
    const dfa_txg_dims xl = {.B = 2, .N = 16384, .D = 1152, .ff_inner = 4608, .patch_cols = 16, .out_cols = 32,
                             .heads = 16, .L = 300, .caption = 4096};
    const double gb = dfa_txg_bufs_bytes(&xl) / 1e9;
    printf("     PixArt-Sigma-XL 2048^2 CFG batch: %.2f GB of device activations\n", gb);
    CHECK(gb > 1.0 && gb < 2.5);
    /* head groups: scores + probabilities of a group within 24 MB, whole heads, all heads at small sizes */
    CHECK(dfa_txg_cross_group(16384, 300, 16, 0) == 1);
    CHECK(dfa_txg_cross_group(4096, 300, 16, 0) == 3); /* 4096 * 304 * 6 = 7.5 MB per head */
    CHECK(dfa_txg_cross_group(192, 37, 2, 0) == 2);
    CHECK(dfa_txg_cross_group(1 << 20, 300, 16, 0) == 1);
    CHECK(dfa_txg_cross_group(192, 37, 3, 1) == 1);
    const dfa_txg_dims small = {.B = 2, .N = 192, .D = 216, .ff_inner = 864, .patch_cols = 16, .out_cols = 32,
                                .heads = 3, .L = 37, .caption = 64, .cross_budget = 1};
    plan_case(&small); /* one head per group: smaller score buffers */
}

static void test_reloc(void) {
    float host[64] = {0};
    uint16_t dev[64] = {0};
    float *p = host + 48, *q = NULL;
    dfa_txg_reloc(&p, host, dev);
    CHECK((const void *)p == (const void *)(dev + 48));
    dfa_txg_reloc(&q, host, dev);
    CHECK(q == NULL);
    dfa_tx_attn at = {host, NULL, host + 16, NULL, host + 32, NULL, host + 40, host + 56};
    dfa_txg_reloc_attn(&at, host, dev);
    CHECK((void *)at.qw == (void *)dev && at.qb == NULL && (void *)at.ob == (void *)(dev + 56));
}

static size_t file_bytes(const char *path, unsigned char **out) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *out = malloc((size_t)n);
    size_t r = *out ? fread(*out, 1, (size_t)n, f) : 0;
    fclose(f);
    return r;
}

static void test_write_random(void) {
    dfa_ctx_params pp = dfa_ctx_default_params();
    pp.n_threads = 2;
    dfa_ctx *ctx = NULL;
    char e[256];
    if (dfa_ctx_init(&ctx, &pp, e, sizeof e) != DFA_OK) return;
    const char *dcfg = "{\"_class_name\": \"DiTTransformer2DModel\", \"num_attention_heads\": 2, \"attention_head_dim\":"
                       " 8, \"in_channels\": 4, \"out_channels\": 8, \"num_layers\": 2, \"sample_size\": 8,"
                       " \"patch_size\": 2, \"num_embeds_ada_norm\": 10}";
    test_tmpdir t[3];
    char path[256], w[3][256];
    const uint64_t seeds[3] = {1, 1, 2};
    for (int i = 0; i < 3; i++) {
        if (tmpdir_make(&t[i], "dit_rand") != 0) return;
        CHECK(tmpdir_write(&t[i], "config.json", dcfg, strlen(dcfg), path, sizeof path) != NULL);
        CHECKF(dfa_dit_write_random(ctx, t[i].path, seeds[i]) == DFA_OK, "%s", dfa_ctx_error(ctx));
        tmpdir_file(&t[i], "diffusion_pytorch_model.safetensors", w[i], sizeof w[i]);
    }
    unsigned char *a = NULL, *b = NULL, *c = NULL;
    const size_t na = file_bytes(w[0], &a), nb = file_bytes(w[1], &b), nc = file_bytes(w[2], &c);
    CHECK(na > 1000 && na == nb && na == nc);
    CHECK(a && b && c && memcmp(a, b, na) == 0); /* same seed: same bytes */
    CHECK(a && c && na == nc && memcmp(a, c, na) != 0);
    free(a), free(b), free(c);
    dfa_dit *m = NULL;
    CHECKF(dfa_dit_load(ctx, t[0].path, &m) == DFA_OK, "%s", dfa_ctx_error(ctx));
    if (m) {
        float x[2 * 4 * 8 * 8], out[2 * 8 * 8 * 8], tt[2] = {999.0f, 10.0f};
        unsigned long long rng = 77;
        for (size_t i = 0; i < sizeof x / sizeof x[0]; i++) x[i] = test_rng_uniform(&rng);
        const int lab[2] = {10, 3};
        for (size_t i = 0; i < sizeof out / sizeof out[0]; i++) out[i] = NAN;
        CHECKF(dfa_dit_forward(ctx, m, 2, 8, 8, x, tt, lab, out) == DFA_OK, "%s", dfa_ctx_error(ctx));
        double s2 = 0;
        int finite = 1;
        for (size_t i = 0; i < sizeof out / sizeof out[0]; i++) finite &= isfinite(out[i]), s2 += (double)out[i] * out[i];
        CHECK(finite && s2 > 1e-6);
    }
    dfa_dit_free(ctx, m);
    for (int i = 0; i < 3; i++) tmpdir_remove(&t[i]);
    /* PixArt with a caption projection */
    const char *pcfg = "{\"_class_name\": \"PixArtTransformer2DModel\", \"num_attention_heads\": 2, \"attention_head_dim\":"
                       " 8, \"in_channels\": 4, \"out_channels\": 8, \"num_layers\": 1, \"sample_size\": 8,"
                       " \"patch_size\": 2, \"cross_attention_dim\": 16, \"caption_channels\": 12,"
                       " \"use_additional_conditions\": false, \"norm_type\": \"ada_norm_single\"}";
    test_tmpdir pt;
    if (tmpdir_make(&pt, "pix_rand") != 0) return;
    CHECK(tmpdir_write(&pt, "config.json", pcfg, strlen(pcfg), path, sizeof path) != NULL);
    CHECKF(dfa_pixart_write_random(ctx, pt.path, 3) == DFA_OK, "%s", dfa_ctx_error(ctx));
    dfa_pixart *pm = NULL;
    CHECKF(dfa_pixart_load(ctx, pt.path, &pm) == DFA_OK, "%s", dfa_ctx_error(ctx));
    if (pm) {
        float x[4 * 8 * 8], out[8 * 8 * 8], txt[5 * 12], tt = 500.0f;
        unsigned long long rng = 78;
        for (size_t i = 0; i < sizeof x / sizeof x[0]; i++) x[i] = test_rng_uniform(&rng);
        for (size_t i = 0; i < sizeof txt / sizeof txt[0]; i++) txt[i] = test_rng_uniform(&rng);
        for (size_t i = 0; i < sizeof out / sizeof out[0]; i++) out[i] = NAN;
        CHECKF(dfa_pixart_forward(ctx, pm, 1, 8, 8, x, &tt, 5, txt, NULL, out) == DFA_OK, "%s", dfa_ctx_error(ctx));
        int finite = 1;
        for (size_t i = 0; i < sizeof out / sizeof out[0]; i++) finite &= isfinite(out[i]);
        CHECK(finite);
    }
    dfa_pixart_free(ctx, pm);
    tmpdir_remove(&pt);
    dfa_ctx_free(ctx);
}

int main(void) {
    RUN(test_plan);
    RUN(test_reloc);
    RUN(test_write_random);
    return test_summary();
}
