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

/* float64 reference of one (b, h): out[N][D]. q, k, v: [B, N, H, D]; cache, resid: per-head
 * [B, N, D] buffers stacked [H][B][N][D]. */
static void ref_head(const dfa_attn_layout *l, int B, int H, int D, int dtype, int method, int window,
                     const uint16_t *q, const uint16_t *k, const uint16_t *v, const uint16_t *cache,
                     const uint16_t *resid, int b, int h, double *out) {
    const int N = dfa_layout_tokens(l);
    const size_t tok = (size_t)H * D;
    const size_t base = (size_t)b * N * tok + (size_t)h * D;
    const size_t hb = ((size_t)h * B + b) * N * D; /* per-head buffer offset */
    if (method == DFA_ATTN_CACHE) {
        for (int i = 0; i < N; i++)
            for (int d = 0; d < D; d++) out[(size_t)i * D + d] = from_h(cache[hb + (size_t)i * D + d], dtype);
        return;
    }
    const int w = (method == DFA_ATTN_ARROW || method == DFA_ATTN_ARROW_RS) ? window : -1;
    const double scale = 1.0 / sqrt((double)D);
    double *s = malloc((size_t)N * sizeof *s);
    double *kf = malloc((size_t)N * D * sizeof *kf), *vf = malloc((size_t)N * D * sizeof *vf);
    for (int j = 0; j < N; j++)
        for (int d = 0; d < D; d++) {
            kf[(size_t)j * D + d] = from_h(k[base + j * tok + d], dtype);
            vf[(size_t)j * D + d] = from_h(v[base + j * tok + d], dtype);
        }
    for (int i = 0; i < N; i++) {
        double qi[128];
        for (int d = 0; d < D; d++) qi[d] = from_h(q[base + i * tok + d], dtype);
        double mx = -INFINITY;
        for (int j = 0; j < N; j++) {
            if (!dfa_mask_keep(l, w, i, j)) {
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
            if (method == DFA_ATTN_ARROW_RS) o[d] += from_h(resid[hb + (size_t)i * D + d], dtype);
        }
    }
    free(s);
    free(kf);
    free(vf);
}

static void reference(const tcase *tc, int D, int dtype, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                      const uint16_t *cache, const uint16_t *resid, int b, int h, double *out) {
    ref_head(&tc->l, tc->batch, tc->n_heads, D, dtype, tc->method[h], tc->window[h], q, k, v, cache, resid, b, h, out);
}

/* per-head pointers into a stacked [H][B][N][D] device buffer */
static void head_ptrs(const void **ptrs, void *base, int H, size_t per_head_elems) {
    for (int h = 0; h < H; h++) ptrs[h] = (const uint16_t *)base + (size_t)h * per_head_elems;
}

static void fill(uint16_t *x, size_t n, int dtype, float amp) {
    for (size_t i = 0; i < n; i++) x[i] = to_h(amp * test_rng_uniform(&g_seed), dtype);
}

static void run_case(const tcase *tc, int D, int dtype, int variant) {
    dfa_error err = {0};
    const int N = dfa_layout_tokens(&tc->l), H = tc->n_heads, B = tc->batch;
    const size_t n = (size_t)B * N * H * D, bytes = n * 2;
    uint16_t *hq = malloc(bytes), *hk = malloc(bytes), *hv = malloc(bytes), *hc = malloc(bytes), *hr = malloc(bytes),
             *ho = malloc(bytes);
    double *ref = malloc((size_t)N * D * sizeof *ref);
    CHECK(hq && hk && hv && hc && hr && ho && ref);
    /* q scaled up so that softmax is peaked enough for a wrong mask to show */
    fill(hq, n, dtype, 2.0f);
    fill(hk, n, dtype, 2.0f);
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
    const void *pc[8], *pr[8];
    head_ptrs(pc, d[4], H, (size_t)B * N * D);
    head_ptrs(pr, d[5], H, (size_t)B * N * D);
    dfa_attn_cuda_args a = {dtype, B, D, d[0], d[1], d[2], d[3], pc, pr, 0.f, dfa_cuda_stream(g_cu)};
    if (st == DFA_OK) {
        st = dfa_attn_cuda_run(plan, &a, &err);
        CHECKF(st == DFA_OK, "%s", err.msg);
    }
    CHECKF(dfa_cuda_sync(g_cu, &err) == DFA_OK, "%s", err.msg);
    CHECK(dfa_cuda_d2h(g_cu, ho, d[3], bytes, &err) == DFA_OK);
    double worst = 0;
    int nonfinite = 0;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            reference(tc, D, dtype, hq, hk, hv, hc, hr, b, h, ref);
            double e2 = 0, r2 = 0;
            int exact = 1;
            for (int i = 0; i < N; i++)
                for (int dd = 0; dd < D; dd++) {
                    size_t gi = (((size_t)b * N + i) * H + h) * D + dd;
                    double o = from_h(ho[gi], dtype), rr = ref[(size_t)i * D + dd];
                    if (!isfinite(o)) nonfinite++;
                    e2 += (o - rr) * (o - rr);
                    r2 += rr * rr;
                    if (ho[gi] != hc[(((size_t)h * B + b) * N + i) * D + dd]) exact = 0;
                }
            double rel = sqrt(e2 / (r2 > 0 ? r2 : 1));
            if (rel > worst || rel != rel) worst = rel;
            CHECKF(rel < 1e-2, "%s D=%d %s v%d b=%d head %d (method %d window %d): rel err %.3g", tc->name, D,
                   dtype ? "f16" : "bf16", variant, b, h, tc->method[h], tc->window[h], rel);
            if (tc->method[h] == DFA_ATTN_CACHE)
                CHECKF(exact, "%s head %d: CACHE copy not bit-exact", tc->name, h);
        }
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
    free(hq), free(hk), free(hv), free(hc), free(hr), free(ho), free(ref);
}

enum { F = DFA_ATTN_FULL, A = DFA_ATTN_ARROW, RS = DFA_ATTN_ARROW_RS, C = DFA_ATTN_CACHE };

static const tcase CASES[] = {
    /* FLUX-like: text first, odd N */
    {"text-first mixed", {300, 77, 1, 128}, 2, 6, {F, A, A, C, RS, A}, {0, 0, 1, 0, 1, 9}},
    /* SD3-like: text last */
    {"text-last mixed", {517, 45, 0, 128}, 1, 6, {A, F, C, A, RS, A}, {1, 0, 0, 0, 2, 3}},
    /* DiT/PixArt: no text */
    {"no-text mixed", {389, 0, 1, 128}, 1, 5, {A, F, A, C, RS}, {0, 0, 2, 0, 1}},
    /* blocks other than the kernel tile: smaller (64) and larger (200, two items a tile) */
    {"block 64 text-first", {333, 31, 1, 64}, 1, 4, {A, A, F, RS}, {0, 2, 0, 1}},
    {"block 200 text-last", {611, 250, 0, 200}, 1, 4, {A, RS, C, F}, {0, 1, 0, 0}},
    /* tiny: fewer tokens than one tile */
    {"tiny", {7, 5, 1, 128}, 1, 3, {F, A, C}, {0, 0, 0}},
    /* more items (156) than an H100 has SMs: persistent CTAs take several items each */
    {"many items", {1500, 77, 1, 128}, 2, 6, {F, A, C, RS, A, F}, {0, 2, 0, 1, 5, 0}},
};

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

static void test_v1(void) { test_variant(DFA_ATTN_CUDA_V_MMA); }
static void test_v2(void) { test_variant(DFA_ATTN_CUDA_V_WGMMA); }
static void test_v3(void) { test_variant(DFA_ATTN_CUDA_V_WGMMA_GRID); }

/* dfa_attn_cuda_run_heads: store_out, store_res (residual refresh) and ASC as attn.h says */
static void run_heads_case(int D, int asc) {
    dfa_error err = {0};
    const dfa_attn_layout l = {300, 77, 1, 128};
    const int B = 2, H = 5, N = dfa_layout_tokens(&l), dtype = DFA_ATTN_CUDA_BF16;
    const size_t n = (size_t)B * N * H * D, bytes = n * 2, hn = (size_t)B * N * D; /* per head */
    uint16_t *hq = malloc(bytes), *hk = malloc(bytes), *hv = malloc(bytes), *ho = malloc(bytes);
    uint16_t *hoc = malloc(bytes), *hrc = malloc(bytes), *hoc2 = malloc(bytes), *hrc2 = malloc(bytes);
    double *ref = malloc((size_t)N * D * sizeof *ref), *ref2 = malloc((size_t)N * D * sizeof *ref2);
    fill(hq, n, dtype, 2.f), fill(hk, n, dtype, 2.f), fill(hv, n, dtype, 1.f);
    fill(hoc, n, dtype, 1.f), fill(hrc, n, dtype, 0.5f);
    void *d[6];
    for (int i = 0; i < 6; i++) CHECK(dfa_cuda_malloc(g_cu, &d[i], bytes, &err) == DFA_OK);
    CHECK(dfa_cuda_h2d(g_cu, d[0], hq, bytes, &err) == DFA_OK);
    CHECK(dfa_cuda_h2d(g_cu, d[1], hk, bytes, &err) == DFA_OK);
    CHECK(dfa_cuda_h2d(g_cu, d[2], hv, bytes, &err) == DFA_OK);
    CHECK(dfa_cuda_h2d(g_cu, d[4], hoc, bytes, &err) == DFA_OK); /* out caches [H][B][N][D] */
    CHECK(dfa_cuda_h2d(g_cu, d[5], hrc, bytes, &err) == DFA_OK); /* residual caches */
    CHECK(dfa_cuda_memset(g_cu, d[3], 0xff, bytes, &err) == DFA_OK);
    /* h0 FULL + store_out + store_res(w=1); h1 ARROW w=0 + store_out; h2 ARROW_RS w=2; h3 CACHE; h4 FULL */
    dfa_attn_head_exec he[5];
    memset(he, 0, sizeof he);
    const int meth[5] = {F, A, RS, C, F}, win[5] = {0, 0, 2, 0, 0};
    for (int h = 0; h < H; h++) {
        he[h].method = meth[h];
        he[h].window = win[h];
        he[h].out_cache = (uint16_t *)d[4] + h * hn;
        he[h].res_cache = (uint16_t *)d[5] + h * hn;
    }
    he[0].store_out = he[0].store_res = 1, he[0].res_window = 1;
    he[1].store_out = 1;
    dfa_attn_cuda_ctx *c = NULL;
    dfa_status st = dfa_attn_cuda_ctx_new(&c, DFA_ATTN_CUDA_V_DEFAULT, &err);
    CHECKF(st == DFA_OK, "%s", err.msg);
    if (st == DFA_OK) {
        for (int rep = 0; rep < 2; rep++) { /* twice: the second call reuses the memoised work lists */
            CHECK(dfa_cuda_h2d(g_cu, d[5], hrc, bytes, &err) == DFA_OK);
            CHECK(dfa_cuda_memset(g_cu, d[3], 0xff, bytes, &err) == DFA_OK);
            st = dfa_attn_cuda_run_heads(c, &l, dtype, B, H, D, d[0], d[1], d[2], d[3], he, asc, 1,
                                         dfa_cuda_stream(g_cu), &err);
            CHECKF(st == DFA_OK, "%s", err.msg);
        }
    }
    CHECK(dfa_cuda_sync(g_cu, &err) == DFA_OK);
    CHECK(dfa_cuda_d2h(g_cu, ho, d[3], bytes, &err) == DFA_OK);
    CHECK(dfa_cuda_d2h(g_cu, hoc2, d[4], bytes, &err) == DFA_OK);
    CHECK(dfa_cuda_d2h(g_cu, hrc2, d[5], bytes, &err) == DFA_OK);
    for (int b = 0; b < B; b++) {
        const int bs = asc ? 1 : b; /* the batch element whose inputs produced this one */
        for (int h = 0; h < H; h++) {
            const int cache_b = meth[h] == C ? b : bs; /* CACHE heads copy their own cache */
            ref_head(&l, B, H, D, dtype, meth[h], win[h], hq, hk, hv, hoc, hrc, cache_b, h, ref);
            double e2 = 0, r2 = 0;
            int bad_store = 0;
            for (int i = 0; i < N; i++)
                for (int dd = 0; dd < D; dd++) {
                    size_t gi = (((size_t)b * N + i) * H + h) * D + dd;
                    double o = from_h(ho[gi], dtype), rr = ref[(size_t)i * D + dd];
                    e2 += (o - rr) * (o - rr), r2 += rr * rr;
                    if (he[h].store_out && hoc2[h * hn + ((size_t)b * N + i) * D + dd] != ho[gi]) bad_store++;
                }
            double rel = sqrt(e2 / r2);
            CHECKF(rel < 1e-2, "run_heads D=%d asc=%d b=%d head %d: rel err %.3g", D, asc, b, h, rel);
            CHECKF(bad_store == 0, "run_heads D=%d asc=%d head %d: %d store_out elements differ", D, asc, h,
                   bad_store);
        }
        /* h0's residual = FULL - ARROW(1) of batch element bs */
        ref_head(&l, B, H, D, dtype, F, 0, hq, hk, hv, hoc, hrc, bs, 0, ref);
        ref_head(&l, B, H, D, dtype, A, 1, hq, hk, hv, hoc, hrc, bs, 0, ref2);
        double e2 = 0, r2 = 0;
        for (int i = 0; i < N; i++)
            for (int dd = 0; dd < D; dd++) {
                double want = ref[(size_t)i * D + dd] - ref2[(size_t)i * D + dd];
                double got = from_h(hrc2[((size_t)b * N + i) * D + dd], dtype); /* head 0's buffer */
                e2 += (got - want) * (got - want), r2 += want * want;
            }
        CHECKF(sqrt(e2 / r2) < 3e-2, "run_heads D=%d asc=%d b=%d: residual rel err %.3g", D, asc, b, sqrt(e2 / r2));
    }
    printf("  run_heads D=%d asc=%d checked\n", D, asc);
    dfa_attn_cuda_ctx_free(c);
    for (int i = 0; i < 6; i++) dfa_cuda_dealloc(g_cu, d[i]);
    free(hq), free(hk), free(hv), free(ho), free(hoc), free(hrc), free(hoc2), free(hrc2), free(ref), free(ref2);
}

static void test_run_heads(void) {
    for (int D = 64; D <= 128; D += 64) {
        run_heads_case(D, 0);
        run_heads_case(D, 1);
    }
}

static void test_bad_args(void) {
    dfa_error err = {0};
    dfa_attn_cuda_plan *p = NULL;
    dfa_attn_layout l = {100, 10, 1, 128};
    int m[2] = {F, 7}, w[2] = {0, 0};
    CHECK(dfa_attn_cuda_plan_build(&p, &l, 2, m, w, 1, NULL, &err) == DFA_ERR_INVALID_ARG);
    CHECK(p == NULL);
    dfa_attn_layout bad = {100, 10, 1, 0};
    m[1] = F;
    CHECK(dfa_attn_cuda_plan_build(&p, &bad, 2, m, w, 1, NULL, &err) == DFA_ERR_INVALID_ARG);
    m[1] = C;
    CHECK(dfa_attn_cuda_plan_build(&p, &l, 2, m, w, 1, NULL, &err) == DFA_OK);
    int dummy;
    dfa_attn_cuda_args a = {DFA_ATTN_CUDA_BF16, 1, 128, &dummy, &dummy, &dummy, &dummy, NULL, NULL, 0.f, NULL};
    /* head 1 is CACHE: no cache pointers given */
    CHECK(dfa_attn_cuda_run(p, &a, &err) == DFA_ERR_INVALID_ARG); /* CACHE head, no cache buffer */
    a.head_dim = 96;
    CHECK(dfa_attn_cuda_run(p, &a, &err) == DFA_ERR_UNSUPPORTED);
    dfa_attn_cuda_plan_free(p);
}

int main(void) {
    dfa_error err = {0};
    if (dfa_cuda_init(&g_cu, 0, &err) != DFA_OK) {
        fprintf(stderr, "no GPU: %s\n", err.msg);
        return 1;
    }
    g_seed = (unsigned long long)time(NULL) * 2654435761ULL | 1ULL;
    const char *env = getenv("DFA_TEST_SEED");
    if (env) g_seed = strtoull(env, NULL, 10) | 1ULL;
    printf("device %s, seed %llu\n", dfa_cuda_device_name(g_cu), g_seed);
    const char *only = getenv("DFA_TEST_QUICK"); /* for compute-sanitizer: one small case */
    if (only) {
        run_case(&CASES[0], 64, DFA_ATTN_CUDA_BF16, DFA_ATTN_CUDA_V_MMA);
        if (dfa_attn_cuda_variant_ok(DFA_ATTN_CUDA_V_WGMMA)) {
            run_case(&CASES[0], 64, DFA_ATTN_CUDA_BF16, DFA_ATTN_CUDA_V_WGMMA);
            run_case(&CASES[1], 128, DFA_ATTN_CUDA_BF16, DFA_ATTN_CUDA_V_WGMMA);
        }
        dfa_cuda_free(g_cu);
        return test_summary();
    }
    RUN(test_bad_args);
    RUN(test_run_heads);
    RUN(test_v1);
    RUN(test_v2);
    RUN(test_v3);
    dfa_cuda_free(g_cu);
    return test_summary();
}
