/* test_attn_cuda.c - the fused multi-strategy attention kernel against a float64 loop over
 * the same mask (dfa_mask_keep), on the GPU. Fresh random inputs for every case, the output
 * poisoned with NaN before each run, every element checked. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attn/attn.h"
#include "attn/cuda/attn_cuda.h"
#include "attn/cuda/attn_worklist.h"
#include "attn/mask.h"
#include "core/cuda_rt.h"
#include "core/tensor.h"
#include "../test.h"

static dfa_cuda *g_cu;
static unsigned long long g_seed;

typedef struct {
    const char *name;
    dfa_attn_layout l;
    int batch, n_heads;
    int method[8], window[8];
} tcase;

static uint16_t to_h(float x, int dtype) {
    return dtype == DFA_ATTN_CUDA_BF16 ? dfa_f32_to_bf16(x) : dfa_f32_to_f16(x);
}
static double from_h(uint16_t x, int dtype) {
    return dtype == DFA_ATTN_CUDA_BF16 ? dfa_bf16_to_f32(x) : dfa_f16_to_f32(x);
}

/* float64 reference of one (b, h): out[N][D] */
static void reference(const tcase *tc, int D, int dtype, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                      const uint16_t *cache, const uint16_t *resid, int b, int h, double *out) {
    const int N = dfa_layout_tokens(&tc->l), H = tc->n_heads;
    const int m = tc->method[h];
    const size_t tok = (size_t)H * D;
    const size_t base = (size_t)b * N * tok + (size_t)h * D;
    if (m == DFA_ATTN_CACHE) {
        for (int i = 0; i < N; i++)
            for (int d = 0; d < D; d++) out[(size_t)i * D + d] = from_h(cache[base + i * tok + d], dtype);
        return;
    }
    const int w = (m == DFA_ATTN_ARROW || m == DFA_ATTN_ARROW_RS) ? tc->window[h] : -1;
    const double scale = 1.0 / sqrt((double)D);
    double *s = malloc((size_t)N * sizeof *s);
    double *kf = malloc((size_t)N * D * sizeof *kf), *vf = malloc((size_t)N * D * sizeof *vf);
    for (int j = 0; j < N; j++)
        for (int d = 0; d < D; d++) {
            kf[(size_t)j * D + d] = from_h(k[base + j * tok + d], dtype);
            vf[(size_t)j * D + d] = from_h(v[base + j * tok + d], dtype);
        }
    for (int i = 0; i < N; i++) {
        double qi[256];
        for (int d = 0; d < D; d++) qi[d] = from_h(q[base + i * tok + d], dtype);
        double mx = -INFINITY;
        for (int j = 0; j < N; j++) {
            if (!dfa_mask_keep(&tc->l, w, i, j)) {
                s[j] = -INFINITY;
                continue;
            }
            double acc = 0;
            for (int d = 0; d < D; d++) acc += qi[d] * kf[(size_t)j * D + d];
            s[j] = acc * scale;
            if (s[j] > mx) mx = s[j];
        }
        double sum = 0;
        for (int j = 0; j < N; j++) {
            s[j] = s[j] == -INFINITY ? 0 : exp(s[j] - mx);
            sum += s[j];
        }
        double *o = out + (size_t)i * D;
        for (int d = 0; d < D; d++) o[d] = 0;
        for (int j = 0; j < N; j++)
            if (s[j] != 0)
                for (int d = 0; d < D; d++) o[d] += s[j] * vf[(size_t)j * D + d];
        for (int d = 0; d < D; d++) {
            o[d] /= sum;
            if (m == DFA_ATTN_ARROW_RS) o[d] += from_h(resid[base + i * tok + d], dtype);
        }
    }
    free(s);
    free(kf);
    free(vf);
}

static void fill(uint16_t *x, size_t n, int dtype, float amp) {
    for (size_t i = 0; i < n; i++) x[i] = to_h(amp * test_rng_uniform(&g_seed), dtype);
}

/* k_gain > 0: every key token's K scaled by 1 + k_gain * u (u uniform in [0, 1), per token), so
 * that a row's max jumps by more than 2^8 at random steps, for some rows of a warp and not
 * others (the online softmax's rescale of O and l late in a row) */
static void run_case_gain(const tcase *tc, int D, int dtype, int variant, float k_gain) {
    dfa_error err = {0};
    const int N = dfa_layout_tokens(&tc->l), H = tc->n_heads, B = tc->batch;
    const size_t n = (size_t)B * N * H * D, bytes = n * 2;
    uint16_t *hq = malloc(bytes), *hk = malloc(bytes), *hv = malloc(bytes), *hc = malloc(bytes), *hr = malloc(bytes),
             *ho = malloc(bytes);
    CHECK(hq && hk && hv && hc && hr && ho);
    /* q scaled up so that softmax is peaked enough for a wrong mask to show */
    fill(hq, n, dtype, 2.0f);
    fill(hk, n, dtype, 2.0f);
    if (k_gain > 0)
        for (size_t t = 0; t < (size_t)B * N; t++) {
            const float g = 1.f + k_gain * 0.5f * (test_rng_uniform(&g_seed) + 1.f);
            for (size_t i = 0; i < (size_t)H * D; i++)
                hk[t * H * D + i] = to_h(g * (float)from_h(hk[t * H * D + i], dtype), dtype);
        }
    fill(hv, n, dtype, 1.0f);
    fill(hc, n, dtype, 1.0f);
    fill(hr, n, dtype, 0.5f);
    void *d[6] = {0};
    for (int i = 0; i < 6; i++) CHECK(dfa_cuda_malloc(g_cu, &d[i], bytes, &err) == DFA_OK);
    CHECK(dfa_cuda_h2d(g_cu, d[0], hq, bytes, &err) == DFA_OK);
    CHECK(dfa_cuda_h2d(g_cu, d[1], hk, bytes, &err) == DFA_OK);
    CHECK(dfa_cuda_h2d(g_cu, d[2], hv, bytes, &err) == DFA_OK);
    CHECK(dfa_cuda_h2d(g_cu, d[4], hc, bytes, &err) == DFA_OK);
    CHECK(dfa_cuda_h2d(g_cu, d[5], hr, bytes, &err) == DFA_OK);
    CHECK(dfa_cuda_memset(g_cu, d[3], 0xff, bytes, &err) == DFA_OK); /* NaN in bf16 and fp16 */
    dfa_attn_cuda_plan *plan = NULL;
    dfa_status st = dfa_attn_cuda_plan_build(&plan, &tc->l, H, tc->method, tc->window, variant,
                                             dfa_cuda_stream(g_cu), &err);
    CHECKF(st == DFA_OK, "%s", err.msg);
    dfa_attn_cuda_args a = {dtype, B, D, d[0], d[1], d[2], d[3], d[4], d[5], 0.f, dfa_cuda_stream(g_cu)};
    if (st == DFA_OK) {
        st = dfa_attn_cuda_run(plan, &a, &err);
        CHECKF(st == DFA_OK, "%s", err.msg);
    }
    CHECKF(dfa_cuda_sync(g_cu, &err) == DFA_OK, "%s", err.msg);
    CHECK(dfa_cuda_d2h(g_cu, ho, d[3], bytes, &err) == DFA_OK);
    /* the float64 reference per (b, h) in parallel (it dominates the test's time; the device has
     * 16 cores); the checks run afterwards, in order, on one thread */
    const int BH = B * H;
    double *rels = malloc((size_t)BH * sizeof *rels);
    int *exacts = malloc((size_t)BH * sizeof *exacts), *nfs = malloc((size_t)BH * sizeof *nfs);
    CHECK(rels && exacts && nfs);
#pragma omp parallel
    {
        double *ref_t = malloc((size_t)N * D * sizeof *ref_t);
#pragma omp for schedule(dynamic)
        for (int bh = 0; bh < BH; bh++) {
            const int b = bh / H, h = bh % H;
            double e2 = 0, r2 = 0;
            int exact = 1, nf = 0;
            if (!ref_t) {
                rels[bh] = NAN, exacts[bh] = 0, nfs[bh] = 0;
                continue;
            }
            reference(tc, D, dtype, hq, hk, hv, hc, hr, b, h, ref_t);
            for (int i = 0; i < N; i++)
                for (int dd = 0; dd < D; dd++) {
                    size_t gi = (((size_t)b * N + i) * H + h) * D + dd;
                    double o = from_h(ho[gi], dtype), rr = ref_t[(size_t)i * D + dd];
                    if (!isfinite(o)) nf++;
                    e2 += (o - rr) * (o - rr);
                    r2 += rr * rr;
                    if (ho[gi] != hc[gi]) exact = 0;
                }
            rels[bh] = sqrt(e2 / (r2 > 0 ? r2 : 1));
            exacts[bh] = exact;
            nfs[bh] = nf;
        }
        free(ref_t);
    }
    double worst = 0;
    int nonfinite = 0;
    for (int bh = 0; bh < BH; bh++) {
        const int b = bh / H, h = bh % H;
        const double rel = rels[bh];
        nonfinite += nfs[bh];
        if (rel > worst || rel != rel) worst = rel;
        CHECKF(rel < 1e-2, "%s D=%d %s v%d b=%d head %d (method %d window %d): rel err %.3g", tc->name, D,
               dtype ? "f16" : "bf16", variant, b, h, tc->method[h], tc->window[h], rel);
        if (tc->method[h] == DFA_ATTN_CACHE) CHECKF(exacts[bh], "%s head %d: CACHE copy not bit-exact", tc->name, h);
    }
    free(rels), free(exacts), free(nfs);
    CHECKF(nonfinite == 0, "%s: %d outputs not written / not finite", tc->name, nonfinite);
    printf("  %-28s D=%3d %-4s v%d N=%4d: worst head rel err %.2e\n", tc->name, D, dtype ? "f16" : "bf16", variant, N,
           worst);

    /* second launch of the same plan on fresh poison: the work list is reusable */
    CHECK(dfa_cuda_memset(g_cu, d[3], 0xff, bytes, &err) == DFA_OK);
    if (st == DFA_OK) CHECK(dfa_attn_cuda_run(plan, &a, &err) == DFA_OK);
    CHECK(dfa_cuda_sync(g_cu, &err) == DFA_OK);
    uint16_t *ho2 = malloc(bytes);
    CHECK(dfa_cuda_d2h(g_cu, ho2, d[3], bytes, &err) == DFA_OK);
    CHECKF(memcmp(ho, ho2, bytes) == 0, "%s: second launch differs (race?)", tc->name);
    free(ho2);
    dfa_attn_cuda_plan_free(plan);
    for (int i = 0; i < 6; i++) dfa_cuda_dealloc(g_cu, d[i]);
    free(hq), free(hk), free(hv), free(hc), free(hr), free(ho);
}

static void run_case(const tcase *tc, int D, int dtype, int variant) { run_case_gain(tc, D, dtype, variant, 0.f); }

enum { F = DFA_ATTN_FULL, A = DFA_ATTN_ARROW, RS = DFA_ATTN_ARROW_RS, C = DFA_ATTN_CACHE };

static const tcase CASES[] = {
    /* FLUX-like: text first, odd N */
    {"text-first mixed", {300, 77, 1, 128, DFA_BAND_ARROW}, 2, 6, {F, A, A, C, RS, A}, {0, 0, 1, 0, 1, 9}},
    /* SD3-like: text last */
    {"text-last mixed", {517, 45, 0, 128, DFA_BAND_ARROW}, 1, 6, {A, F, C, A, RS, A}, {1, 0, 0, 0, 2, 3}},
    /* DiT/PixArt: no text */
    {"no-text mixed", {389, 0, 1, 128, DFA_BAND_ARROW}, 1, 5, {A, F, A, C, RS}, {0, 0, 2, 0, 1}},
    /* blocks other than the kernel tile: smaller (64) and larger (200, two items a tile) */
    {"block 64 text-first", {333, 31, 1, 64, DFA_BAND_ARROW}, 1, 4, {A, A, F, RS}, {0, 2, 0, 1}},
    {"block 200 text-last", {611, 250, 0, 200, DFA_BAND_ARROW}, 1, 4, {A, RS, C, F}, {0, 1, 0, 0}},
    /* tiny: fewer tokens than one tile */
    {"tiny", {7, 5, 1, 128, DFA_BAND_ARROW}, 1, 3, {F, A, C}, {0, 0, 0}},
    /* more items (156) than an H100 has SMs: persistent CTAs take several items each */
    {"many items", {1500, 77, 1, 128, DFA_BAND_ARROW}, 2, 6, {F, A, C, RS, A, F}, {0, 2, 0, 1, 5, 0}},
};

enum { PL = DFA_BAND_PLAIN };

/* V1's plain window over the whole sequence (mask.h DFA_BAND_PLAIN): one key range per query
 * tile, text rows and columns banded like the image; windows in sequence tiles. */
static const tcase PLAIN_CASES[] = {
    {"plain text-first", {300, 77, 1, 128, PL}, 2, 6, {F, A, A, C, RS, A}, {0, 0, 1, 0, 1, 3}},
    {"plain text-last", {517, 45, 0, 128, PL}, 1, 6, {A, F, C, A, RS, A}, {1, 0, 0, 0, 2, 5}},
    {"plain no-text", {389, 0, 1, 128, PL}, 1, 5, {A, F, A, C, RS}, {0, 0, 2, 0, 1}},
    {"plain block 64 text-first", {333, 31, 1, 64, PL}, 1, 4, {A, A, F, RS}, {0, 2, 0, 1}},
    {"plain block 200 text-last", {611, 250, 0, 200, PL}, 1, 4, {A, RS, C, F}, {0, 1, 0, 0}},
    {"plain tiny", {7, 5, 1, 128, PL}, 1, 3, {F, A, C}, {0, 0, 0}},
    {"plain many items", {1500, 77, 1, 128, PL}, 2, 6, {F, A, C, RS, A, F}, {0, 2, 0, 1, 4, 0}},
};

static void test_plain(void) {
    static const int variants[4] = {DFA_ATTN_CUDA_V_MMA, DFA_ATTN_CUDA_V_WGMMA, DFA_ATTN_CUDA_V_WGMMA_GRID,
                                    DFA_ATTN_CUDA_V_WGMMA3_NOPP};
    for (int vi = 0; vi < 4; vi++) {
        if (!dfa_attn_cuda_variant_ok(variants[vi])) {
            printf("  variant %d not supported on this GPU: skipped\n", variants[vi]);
            continue;
        }
        /* every case at D=64 (variant 5: 192-row lists); D=128 and the padded 72 on 1 and 2 */
        const int wide = variants[vi] == DFA_ATTN_CUDA_V_MMA || variants[vi] == DFA_ATTN_CUDA_V_WGMMA;
        for (size_t c = 0; c < sizeof PLAIN_CASES / sizeof PLAIN_CASES[0]; c++) {
            run_case(&PLAIN_CASES[c], 64, DFA_ATTN_CUDA_BF16, variants[vi]);
            if (wide) run_case(&PLAIN_CASES[c], 128, DFA_ATTN_CUDA_BF16, variants[vi]);
        }
        run_case(&PLAIN_CASES[0], 64, DFA_ATTN_CUDA_F16, variants[vi]);
        if (wide) run_case(&PLAIN_CASES[1], 72, DFA_ATTN_CUDA_BF16, variants[vi]);
    }
}

static void test_variant(int variant) {
    if (!dfa_attn_cuda_variant_ok(variant)) {
        printf("  variant %d not supported on this GPU: skipped\n", variant);
        return;
    }
    for (size_t c = 0; c < sizeof CASES / sizeof CASES[0]; c++)
        for (int D = 64; D <= 128; D += 64)
            for (int dt = 0; dt < 2; dt++) {
                /* keep it quick: fp16 on the first three cases only */
                if (dt == DFA_ATTN_CUDA_F16 && c >= 3) continue;
                run_case(&CASES[c], D, dt, variant);
            }
}

/* Head dims other than 64 and 128 (variant 1's padded kernels, and wgmma's padded D=128 kernel
 * for 72..120): DiT-XL-2 / PixArt (72), the tiny diffusers fixtures (16, 24) and the rest of
 * 8..256. On variant 1 the listed ones run every case but "many items" (72 that one too), the
 * others text-first in bf16 and no-text in fp16. */
static void test_head_dims(void) {
    static const int listed[] = {16, 24, 32, 40, 48, 72, 80, 96};
    for (int D = 8; D <= 256; D += 8) {
        if (D == 64 || D == 128) continue;
        int main_dim = D == 72;
        for (size_t i = 0; i < sizeof listed / sizeof listed[0]; i++) main_dim |= listed[i] == D;
        const size_t n_cases = D == 72 ? sizeof CASES / sizeof CASES[0] : main_dim ? 6 : 1;
        for (size_t c = 0; c < n_cases; c++) run_case(&CASES[c], D, DFA_ATTN_CUDA_BF16, DFA_ATTN_CUDA_V_MMA);
        for (size_t c = main_dim ? 0 : 2; c < 3; c++) run_case(&CASES[c], D, DFA_ATTN_CUDA_F16, DFA_ATTN_CUDA_V_MMA);
    }
    if (!dfa_attn_cuda_variant_ok(DFA_ATTN_CUDA_V_WGMMA)) {
        printf("  wgmma variants not supported on this GPU: skipped\n");
        return;
    }
    /* wgmma: 72..120 on the D=128 kernel with TMA zero fill as padding */
    static const int wg_dims[5] = {72, 80, 96, 104, 120};
    for (int i = 0; i < 5; i++) {
        const int D = wg_dims[i];
        const size_t n_cases = D == 72 ? sizeof CASES / sizeof CASES[0] : 3;
        for (size_t c = 0; c < n_cases; c++) run_case(&CASES[c], D, DFA_ATTN_CUDA_BF16, DFA_ATTN_CUDA_V_WGMMA);
        run_case(&CASES[0], D, DFA_ATTN_CUDA_F16, DFA_ATTN_CUDA_V_WGMMA);
        run_case(&CASES[D == 72 ? 4 : 1], D, DFA_ATTN_CUDA_BF16, DFA_ATTN_CUDA_V_WGMMA_GRID);
    }
    /* other head dims on a plan built for the wgmma variants run variant 1's kernel */
    run_case(&CASES[1], 24, DFA_ATTN_CUDA_F16, DFA_ATTN_CUDA_V_WGMMA_GRID);
    run_case(&CASES[0], 200, DFA_ATTN_CUDA_BF16, DFA_ATTN_CUDA_V_WGMMA);
    /* variant 5 (3-consumer kernel at D=64 only): 72 on variant 2's padded kernel with the
     * 128-row list, 24 on variant 1's */
    run_case(&CASES[0], 72, DFA_ATTN_CUDA_BF16, DFA_ATTN_CUDA_V_WGMMA3_NOPP);
    run_case(&CASES[4], 72, DFA_ATTN_CUDA_BF16, DFA_ATTN_CUDA_V_WGMMA3_NOPP);
    run_case(&CASES[1], 24, DFA_ATTN_CUDA_BF16, DFA_ATTN_CUDA_V_WGMMA3_NOPP);
}

static void test_v1(void) { test_variant(DFA_ATTN_CUDA_V_MMA); }
static void test_v2(void) { test_variant(DFA_ATTN_CUDA_V_WGMMA); }
static void test_v3(void) { test_variant(DFA_ATTN_CUDA_V_WGMMA_GRID); }
/* 3 consumer warpgroups at D=64 (192-row items: FULL heads span tiles; block 64 gives 64-row
 * items on one warpgroup, block 200 items of 192 + 8 rows; copies of 192 rows), D=128 as v2 */
/* ~2.4 items per CTA on an H100, mixing 192-row (FULL), 77-row (text) and 64-row (block-64
 * visual tiles) items, so that persistent CTAs change their active warpgroups between items */
static const tcase MANY3 = {"many items, 1-3 consumers", {2400, 77, 1, 64}, 2, 6, {F, A, C, RS, A, F}, {0, 2, 0, 1, 5, 0}};
static void test_v5(void) {
    test_variant(DFA_ATTN_CUDA_V_WGMMA3_NOPP);
    if (!dfa_attn_cuda_variant_ok(DFA_ATTN_CUDA_V_WGMMA3_NOPP)) return;
    run_case(&MANY3, 64, DFA_ATTN_CUDA_F16, DFA_ATTN_CUDA_V_WGMMA3_NOPP);
    run_case(&MANY3, 64, DFA_ATTN_CUDA_BF16, DFA_ATTN_CUDA_V_WGMMA3_NOPP);
}

/* Cases with per-token key gains, so that rows' maxima move by more than 2^8 mid-row (with the
 * plain random inputs only the first step moves them): the O / l rescaling late in a row, for
 * some rows of a warp and not others, on variant 5's kernel at D=64 (variant 2's at D=128 sees
 * them through test_v2's cases only). Sizes kept small: the float64 reference dominates. */
static const tcase GAIN3[] = {
    {"key gains x7, text-first", {1100, 77, 1, 64, DFA_BAND_ARROW}, 2, 4, {F, A, RS, F}, {0, 2, 1, 0}},
    {"key gains x5, text-last", {900, 45, 0, 128, DFA_BAND_ARROW}, 1, 4, {F, A, C, RS}, {0, 3, 0, 1}},
};
static void test_gain_cases(int variant) {
    if (!dfa_attn_cuda_variant_ok(variant)) return;
    for (size_t c = 0; c < sizeof GAIN3 / sizeof GAIN3[0]; c++)
        for (int dt = 0; dt < 2; dt++) run_case_gain(&GAIN3[c], 64, dt, variant, c == 0 ? 6.f : 4.f);
}
static void test_gain(void) { test_gain_cases(DFA_ATTN_CUDA_V_WGMMA3_NOPP); }

/* Many items per persistent CTA (270-410: 2-3 per CTA on an H100/H200, 132 SMs): short arrow items
 * (1-7 key steps) next to FULL rows, copies between them, ARROW_RS; 128-row tiles and the 64-row
 * block. On variant 5's 192-row list they mix items of 192 (FULL), 128, 77 (text) and, with the
 * 64-row block, 64 rows: warpgroups go idle and active again between items. The 192-row block
 * gives variant 2's list a 128-row and a 64-row item per tile (one consumer idle on every
 * second item; 400 items), variant 5's one 192-row item per tile. */
static const tcase MIXED_CASES[] = {
    {"mixed items: short", {2000, 77, 1, 128, DFA_BAND_ARROW}, 3, 8, {A, A, RS, C, A, F, A, RS}, {0, 1, 0, 0, 2, 0, 0, 1}},
    {"mixed items: text-last, block 64", {1200, 45, 0, 64, DFA_BAND_ARROW}, 2, 8, {A, C, RS, A, C, A, F, A},
     {0, 0, 1, 3, 0, 1, 0, 0}},
    {"mixed items: plain, no text", {2100, 0, 1, 128, PL}, 2, 8, {A, A, C, RS, A, C, A, A}, {0, 1, 0, 0, 2, 0, 0, 3}},
    {"mixed items: block 192", {2304, 77, 1, 192, DFA_BAND_ARROW}, 2, 8, {F, A, RS, A, C, F, A, A},
     {0, 0, 1, 2, 0, 0, 1, 3}},
};

/* variant 5 after the idle-warpgroup protocol fix (idle warpgroups wait for and release the
 * K/V stages of the items they skip, docs/DESIGN.md): the 64-row block gives 64-row items
 * between 192-row ones, ~300 items of 1-10 steps, so persistent CTAs run items where
 * warpgroups 1 and 2 idle followed by items where they compute (the case that could pass a
 * parity wait early before the fix); the other mixed cases in both dtypes as well. */
static void test_idle_wg(void) {
    const int v = DFA_ATTN_CUDA_V_WGMMA3_NOPP;
    if (!dfa_attn_cuda_variant_ok(v)) return;
    for (size_t c = 0; c < sizeof MIXED_CASES / sizeof MIXED_CASES[0]; c++)
        for (int dt = 0; dt < 2; dt++) run_case(&MIXED_CASES[c], 64, dt, v);
}

/* the same cases on variant 2's kernel (2-3 items per persistent CTA; items of <= 64 rows run on
 * one consumer while the other walks the stages and takes no ping-pong turns: block 64 (all
 * visual items 64 rows), block 192 (64-row items between 128-row ones), and the short last tiles
 * of the other cases), D = 128, 64 and the padded 72 */
static void test_mixed_v2(void) {
    const int v = DFA_ATTN_CUDA_V_WGMMA;
    if (!dfa_attn_cuda_variant_ok(v)) return;
    for (size_t c = 0; c < sizeof MIXED_CASES / sizeof MIXED_CASES[0]; c++) {
        run_case(&MIXED_CASES[c], 128, DFA_ATTN_CUDA_BF16, v);
        run_case(&MIXED_CASES[c], 64, DFA_ATTN_CUDA_F16, v);
    }
    run_case(&MIXED_CASES[1], 64, DFA_ATTN_CUDA_BF16, v);
    run_case(&MIXED_CASES[3], 64, DFA_ATTN_CUDA_BF16, v);
    run_case(&MIXED_CASES[0], 72, DFA_ATTN_CUDA_BF16, v);
    run_case(&MIXED_CASES[3], 72, DFA_ATTN_CUDA_F16, v);
    run_case(&MIXED_CASES[3], 128, DFA_ATTN_CUDA_F16, DFA_ATTN_CUDA_V_WGMMA_GRID); /* one CTA per item */
}

static void test_cache_helpers(void) {
    dfa_error err = {0};
    const int B = 2, N = 99, H = 5, D = 64;
    const size_t n = (size_t)B * N * H * D, bytes = n * 2;
    uint16_t *ha = malloc(bytes), *hb = malloc(bytes), *ho = malloc(bytes), *hd = malloc(bytes);
    fill(ha, n, DFA_ATTN_CUDA_BF16, 1.f);
    fill(hb, n, DFA_ATTN_CUDA_BF16, 1.f);
    fill(hd, n, DFA_ATTN_CUDA_BF16, 1.f);
    void *da, *db, *dd;
    CHECK(dfa_cuda_malloc(g_cu, &da, bytes, &err) == DFA_OK);
    CHECK(dfa_cuda_malloc(g_cu, &db, bytes, &err) == DFA_OK);
    CHECK(dfa_cuda_malloc(g_cu, &dd, bytes, &err) == DFA_OK);
    CHECK(dfa_cuda_h2d(g_cu, da, ha, bytes, &err) == DFA_OK);
    CHECK(dfa_cuda_h2d(g_cu, db, hb, bytes, &err) == DFA_OK);
    const unsigned char sel[5] = {1, 0, 1, 1, 0};
    for (int op = 0; op < 2; op++) {
        CHECK(dfa_cuda_h2d(g_cu, dd, hd, bytes, &err) == DFA_OK);
        if (op == 0)
            CHECK(dfa_attn_cuda_copy_heads(dd, da, DFA_ATTN_CUDA_BF16, B, N, H, D, sel, dfa_cuda_stream(g_cu), &err) ==
                  DFA_OK);
        else
            CHECK(dfa_attn_cuda_residual(dd, da, db, DFA_ATTN_CUDA_BF16, B, N, H, D, sel, dfa_cuda_stream(g_cu),
                                         &err) == DFA_OK);
        CHECK(dfa_cuda_sync(g_cu, &err) == DFA_OK);
        CHECK(dfa_cuda_d2h(g_cu, ho, dd, bytes, &err) == DFA_OK);
        int bad = 0;
        for (size_t i = 0; i < n; i++) {
            int h = (int)((i / D) % H);
            double want = !sel[h] ? dfa_bf16_to_f32(hd[i])
                          : op == 0 ? dfa_bf16_to_f32(ha[i])
                                    : dfa_bf16_to_f32(dfa_f32_to_bf16(dfa_bf16_to_f32(ha[i]) - dfa_bf16_to_f32(hb[i])));
            if (dfa_bf16_to_f32(ho[i]) != want) bad++;
        }
        CHECKF(bad == 0, "cache helper op %d: %d wrong elements", op, bad);
    }
    dfa_cuda_dealloc(g_cu, da), dfa_cuda_dealloc(g_cu, db), dfa_cuda_dealloc(g_cu, dd);
    free(ha), free(hb), free(ho), free(hd);
}

/* The 2-consumer kernels' storer warp (session 6: items from the producer's slot, TMA stores of
 * full plain chunks, acu_store_tile for partial rows, residuals and ring slots) through variant
 * 2 (also at D=64) and the default (variant 5: D=128 on the 2-consumer kernel): the padded D=72 /
 * 96 kernels (TMA clips the zero columns), many items per CTA (the storer's and the producer's
 * Q-buffer hand-over over several items), plain windows and the MIXED_CASES' 64-row items (one
 * idle consumer) */
static void test_storer(void) {
    const int v5 = DFA_ATTN_CUDA_V_WGMMA3_NOPP, v2 = DFA_ATTN_CUDA_V_WGMMA;
    if (!dfa_attn_cuda_variant_ok(v2)) {
        printf("  wgmma variants not supported on this GPU: skipped\n");
        return;
    }
    for (int k = 0; k < 2; k++) {
        const int vk = k ? v2 : v5;
        run_case(&CASES[0], 72, DFA_ATTN_CUDA_BF16, vk);
        run_case(&CASES[6], 96, DFA_ATTN_CUDA_F16, vk);
        run_case(&MANY3, 128, DFA_ATTN_CUDA_BF16, vk);
        for (size_t c = 0; c < 3; c++) run_case(&PLAIN_CASES[c], 128, DFA_ATTN_CUDA_BF16, vk);
        for (size_t c = 0; c < sizeof MIXED_CASES / sizeof MIXED_CASES[0]; c++)
            run_case(&MIXED_CASES[c], 128, DFA_ATTN_CUDA_F16, vk);
    }
    run_case(&MANY3, 64, DFA_ATTN_CUDA_F16, v2);
    for (size_t c = 0; c < sizeof MIXED_CASES / sizeof MIXED_CASES[0]; c++)
        run_case(&MIXED_CASES[c], 64, DFA_ATTN_CUDA_BF16, v2);
}

static void test_bad_args(void) {
    dfa_error err = {0};
    dfa_attn_cuda_plan *p = NULL;
    dfa_attn_layout l = {100, 10, 1, 128, DFA_BAND_ARROW};
    int m[2] = {F, 7}, w[2] = {0, 0};
    CHECK(dfa_attn_cuda_plan_build(&p, &l, 2, m, w, 1, NULL, &err) == DFA_ERR_INVALID_ARG);
    CHECK(p == NULL);
    dfa_attn_layout bad = {100, 10, 1, 0, DFA_BAND_ARROW};
    m[1] = F;
    CHECK(dfa_attn_cuda_plan_build(&p, &bad, 2, m, w, 1, NULL, &err) == DFA_ERR_INVALID_ARG);
    m[1] = C;
    /* variants 1, 2, 3, 5 exist (0: the default); 13 and -1 do not, on any GPU; 4, 6-12 and 14-16 were
     * removed and say so */
    CHECK(dfa_attn_cuda_plan_build(&p, &l, 2, m, w, 13, NULL, &err) == DFA_ERR_INVALID_ARG);
    CHECKF(strstr(err.msg, "unknown variant 13") != NULL, "%s", err.msg);
    CHECK(dfa_attn_cuda_plan_build(&p, &l, 2, m, w, -1, NULL, &err) == DFA_ERR_INVALID_ARG);
    const int removed[18] = {4, 6, 7, 8, 9, 10, 11, 12, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23};
    for (int i = 0; i < 18; i++) {
        char want[64];
        snprintf(want, sizeof want, "variant %d was removed", removed[i]);
        err.msg[0] = 0;
        CHECKF(dfa_attn_cuda_plan_build(&p, &l, 2, m, w, removed[i], NULL, &err) == DFA_ERR_INVALID_ARG,
               "removed variant %d accepted", removed[i]);
        CHECKF(strstr(err.msg, want) != NULL, "variant %d: message '%s'", removed[i], err.msg);
        CHECK(!dfa_attn_cuda_variant_ok(removed[i]));
    }
    CHECK(p == NULL);
    CHECK(!dfa_attn_cuda_variant_ok(13) && !dfa_attn_cuda_variant_ok(-1));
    CHECK(dfa_attn_cuda_variant_ok(DFA_ATTN_CUDA_V_WGMMA3_NOPP) == dfa_attn_cuda_variant_ok(DFA_ATTN_CUDA_V_WGMMA));
    CHECK(dfa_attn_cuda_plan_build(&p, &l, 2, m, w, 1, NULL, &err) == DFA_OK);
    int dummy;
    dfa_attn_cuda_args a = {DFA_ATTN_CUDA_BF16, 1, 128, &dummy, &dummy, &dummy, &dummy, NULL, NULL, 0.f, NULL};
    CHECK(dfa_attn_cuda_run(p, &a, &err) == DFA_ERR_INVALID_ARG); /* CACHE head, no cache buffer */
    const int bad_d[4] = {0, 4, 100, 264}; /* not a multiple of 8, or outside 8..256 */
    for (int i = 0; i < 4; i++) {
        a.head_dim = bad_d[i];
        CHECK(dfa_attn_cuda_run(p, &a, &err) == DFA_ERR_UNSUPPORTED);
    }
    dfa_attn_cuda_plan_free(p);
}

/* Plan sets (dfa_attn_cuda_plan_set_build: the prepared work lists of a run, one allocation): every
 * member's output bit-identical to the same plan built on its own (same kernel, same list), on
 * fresh poison; a member survives dfa_attn_cuda_plan_free (the set owns it). Six 6-head plans of
 * different layouts and bands, variants 1 and the default, D = 64 and 128. */
static void test_plan_set(void) {
    const tcase *tcs[6] = {&CASES[0], &CASES[1], &CASES[6], &PLAIN_CASES[0], &PLAIN_CASES[1], &PLAIN_CASES[6]};
    dfa_attn_layout lays[6];
    int meth[36], win[36];
    for (int i = 0; i < 6; i++) {
        lays[i] = tcs[i]->l;
        CHECK(tcs[i]->n_heads == 6);
        memcpy(meth + 6 * i, tcs[i]->method, 6 * sizeof(int));
        memcpy(win + 6 * i, tcs[i]->window, 6 * sizeof(int));
    }
    const int variants[2] = {DFA_ATTN_CUDA_V_MMA, DFA_ATTN_CUDA_V_DEFAULT};
    void *stream = dfa_cuda_stream(g_cu);
    for (int vi = 0; vi < 2; vi++) {
        dfa_error err = {0};
        dfa_attn_cuda_plan_set *ps = NULL;
        dfa_status st = dfa_attn_cuda_plan_set_build(&ps, 6, lays, 6, meth, win, variants[vi], stream, &err);
        CHECKF(st == DFA_OK, "set build: %s", err.msg);
        if (st != DFA_OK) continue;
        CHECK(dfa_attn_cuda_plan_set_get(ps, 6) == NULL && dfa_attn_cuda_plan_set_get(ps, -1) == NULL);
        size_t own_bytes = 0;
        int same = 0, runs = 0;
        for (int i = 0; i < 6; i++) {
            const tcase *tc = tcs[i];
            dfa_attn_cuda_plan *alone = NULL, *member = dfa_attn_cuda_plan_set_get(ps, i);
            CHECKF(dfa_attn_cuda_plan_build(&alone, &tc->l, 6, tc->method, tc->window, variants[vi], stream, &err) ==
                       DFA_OK, "%s", err.msg);
            if (!alone || !member) continue;
            dfa_attn_cuda_plan_info ia, im;
            dfa_attn_cuda_plan_get_info(alone, &ia);
            dfa_attn_cuda_plan_get_info(member, &im);
            CHECKF(ia.n_items == im.n_items && ia.n_copy_items == im.n_copy_items && ia.variant == im.variant &&
                       ia.computed_entries == im.computed_entries && ia.mask_entries == im.mask_entries &&
                       ia.copied_tokens == im.copied_tokens,
                   "%s: set member's info differs from the plan built alone", tc->name);
            own_bytes += (size_t)ia.n_items * sizeof(dfa_acu_item);
            dfa_attn_cuda_plan_free(member); /* a no-op on a set member */
            for (int D = 64; D <= 128; D += 64) {
                const int N = dfa_layout_tokens(&tc->l), B = tc->batch;
                const size_t bytes = (size_t)B * N * 6 * D * 2;
                uint16_t *h = malloc(bytes), *o1 = malloc(bytes), *o2 = malloc(bytes);
                void *d[6] = {0};
                for (int k = 0; k < 6; k++) CHECK(dfa_cuda_malloc(g_cu, &d[k], bytes, &err) == DFA_OK);
                for (int k = 0; k < 6; k++) {
                    if (k == 3) continue;
                    fill(h, bytes / 2, DFA_ATTN_CUDA_BF16, k < 2 ? 2.0f : 1.0f);
                    CHECK(dfa_cuda_h2d(g_cu, d[k], h, bytes, &err) == DFA_OK);
                }
                dfa_attn_cuda_args a = {DFA_ATTN_CUDA_BF16, B, D, d[0], d[1], d[2], d[3], d[4], d[5], 0.f, stream};
                uint16_t *outs[2] = {o1, o2};
                dfa_attn_cuda_plan *pl[2] = {alone, member};
                for (int r = 0; r < 2; r++) {
                    CHECK(dfa_cuda_memset(g_cu, d[3], 0xff, bytes, &err) == DFA_OK);
                    CHECKF(dfa_attn_cuda_run(pl[r], &a, &err) == DFA_OK, "%s", err.msg);
                    CHECK(dfa_cuda_sync(g_cu, &err) == DFA_OK);
                    CHECK(dfa_cuda_d2h(g_cu, outs[r], d[3], bytes, &err) == DFA_OK);
                }
                int finite = 1;
                for (size_t k = 0; k < bytes / 2 && finite; k++) finite = isfinite(from_h(o2[k], DFA_ATTN_CUDA_BF16));
                const int eq = !memcmp(o1, o2, bytes);
                CHECKF(eq && finite, "%s D=%d variant %d: the set member's output %s", tc->name, D, variants[vi],
                       !finite ? "is not all written" : "differs from the plan built alone");
                same += eq && finite, runs++;
                for (int k = 0; k < 6; k++) dfa_cuda_dealloc(g_cu, d[k]);
                free(h), free(o1), free(o2);
            }
            dfa_attn_cuda_plan_free(alone);
        }
        CHECKF(dfa_attn_cuda_plan_set_bytes(ps) >= own_bytes, "set of %zu bytes holds %zu bytes of items",
               dfa_attn_cuda_plan_set_bytes(ps), own_bytes);
        printf("  plan set, variant %d: 6 plans in one allocation of %zu bytes, %d/%d runs bit-equal to the plans "
               "built alone\n", variants[vi], dfa_attn_cuda_plan_set_bytes(ps), same, runs);
        dfa_attn_cuda_plan_set_free(ps);
    }
}

int main(void) {
    dfa_error err = {0};
    if (dfa_cuda_init(&g_cu, 0, &err) != DFA_OK) {
        fprintf(stderr, "no GPU: %s\n", err.msg);
        return 1;
    }
    g_seed = test_seed();
    printf("device %s, seed %llu\n", dfa_cuda_device_name(g_cu), g_seed);
    const char *only = getenv("DFA_TEST_QUICK"); /* for compute-sanitizer: one small case */
    if (only) {
        run_case(&CASES[0], 64, DFA_ATTN_CUDA_BF16, DFA_ATTN_CUDA_V_MMA);
        run_case(&CASES[0], 72, DFA_ATTN_CUDA_BF16, DFA_ATTN_CUDA_V_MMA); /* padded kernels */
        run_case(&CASES[3], 24, DFA_ATTN_CUDA_F16, DFA_ATTN_CUDA_V_MMA);
        run_case(&CASES[5], 200, DFA_ATTN_CUDA_BF16, DFA_ATTN_CUDA_V_MMA);
        if (dfa_attn_cuda_variant_ok(DFA_ATTN_CUDA_V_WGMMA)) {
            run_case(&CASES[0], 64, DFA_ATTN_CUDA_BF16, DFA_ATTN_CUDA_V_WGMMA);
            run_case(&CASES[1], 128, DFA_ATTN_CUDA_BF16, DFA_ATTN_CUDA_V_WGMMA);
            run_case(&CASES[0], 72, DFA_ATTN_CUDA_BF16, DFA_ATTN_CUDA_V_WGMMA); /* padded to 128 */
            /* 2 consumers, 64-row items (one idle consumer) between 128-row ones */
            run_case(&MIXED_CASES[3], 64, DFA_ATTN_CUDA_BF16, DFA_ATTN_CUDA_V_WGMMA);
            run_case(&MIXED_CASES[1], 128, DFA_ATTN_CUDA_F16, DFA_ATTN_CUDA_V_WGMMA);
            /* 3 consumers: items of 192, 128 and 64 rows in one persistent CTA */
            run_case(&CASES[0], 64, DFA_ATTN_CUDA_BF16, DFA_ATTN_CUDA_V_WGMMA3_NOPP);
            run_case(&CASES[3], 64, DFA_ATTN_CUDA_F16, DFA_ATTN_CUDA_V_WGMMA3_NOPP);
            run_case(&CASES[4], 64, DFA_ATTN_CUDA_BF16, DFA_ATTN_CUDA_V_WGMMA3_NOPP);
            /* 64-row items between larger ones (idle warpgroups walk the stages) */
            run_case(&MIXED_CASES[1], 64, DFA_ATTN_CUDA_BF16, DFA_ATTN_CUDA_V_WGMMA3_NOPP);
            run_case(&MIXED_CASES[1], 64, DFA_ATTN_CUDA_F16, DFA_ATTN_CUDA_V_WGMMA3_NOPP);
            /* union items (block 128: 192-row items whose warpgroups skip key steps) */
            run_case(&MIXED_CASES[0], 64, DFA_ATTN_CUDA_BF16, DFA_ATTN_CUDA_V_WGMMA3_NOPP);
            /* the 2-consumer storer warp (TMA and acu_store_tile chunks, copies, idle consumers,
             * ~1-2 items a CTA) */
            run_case(&CASES[1], 128, DFA_ATTN_CUDA_BF16, DFA_ATTN_CUDA_V_WGMMA3_NOPP);
            run_case(&CASES[0], 72, DFA_ATTN_CUDA_F16, DFA_ATTN_CUDA_V_WGMMA3_NOPP);
            run_case(&MIXED_CASES[1], 128, DFA_ATTN_CUDA_BF16, DFA_ATTN_CUDA_V_WGMMA3_NOPP);
            run_case(&CASES[6], 128, DFA_ATTN_CUDA_BF16, DFA_ATTN_CUDA_V_WGMMA3_NOPP);
        }
        dfa_cuda_free(g_cu);
        return test_summary();
    }
    RUN(test_bad_args);
    RUN(test_cache_helpers);
    RUN(test_v1);
    RUN(test_head_dims);
    RUN(test_v2);
    RUN(test_v3);
    RUN(test_plain);
    RUN(test_v5);
    RUN(test_gain);
    RUN(test_storer);
    RUN(test_plan_set);
    RUN(test_idle_wg);
    RUN(test_mixed_v2);
    dfa_cuda_free(g_cu);
    return test_summary();
}
