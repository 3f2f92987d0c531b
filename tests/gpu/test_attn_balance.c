/* test_attn_balance.c - tail-balanced work lists (attn_sched.h) on the GPU: plans of the default
 * variant at the paper's 4096+512 shape, where the schedule model re-cuts the tail (checked here
 * on the host first, so that the case cannot pass without a balanced list), run with and without
 * balancing (DFA_ATTN_BALANCE=0 while building): outputs NaN-poisoned first, bit-equal between the
 * two (a row's arithmetic does not depend on the item it is in), sampled rows against a float64
 * reference, and B=2 (the list's own order) bit-equal per batch element to B=1. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attn/attn.h"
#include "attn/cuda/attn_cuda.h"
#include "attn/cuda/attn_sched.h"
#include "attn/mask.h"
#include "core/cuda_rt.h"
#include "core/tensor.h"
#include "../test.h"

static dfa_cuda *g_cu;
static unsigned long long g_seed;

static dfa_attn_cuda_plan *plan_with(const dfa_attn_layout *l, int H, const int *m, const int *w, int balanced) {
    dfa_error err = {0};
    if (balanced) unsetenv("DFA_ATTN_BALANCE");
    else setenv("DFA_ATTN_BALANCE", "0", 1);
    dfa_attn_cuda_plan *p = NULL;
    dfa_status st = dfa_attn_cuda_plan_build(&p, l, H, m, w, DFA_ATTN_CUDA_V_DEFAULT, dfa_cuda_stream(g_cu), &err);
    unsetenv("DFA_ATTN_BALANCE");
    CHECKF(st == DFA_OK, "%s", err.msg);
    return st == DFA_OK ? p : NULL;
}

/* One plan kind at 4096+512, H heads of D, all heads method m / window w. */
static void run_shape(int D, int m0, int w0, const char *name) {
    const int H = 24, B = 2;
    dfa_attn_layout l = {4096, 512, 1, 128, DFA_BAND_ARROW};
    const int N = dfa_layout_tokens(&l);
    int m[24], w[24];
    for (int h = 0; h < H; h++) m[h] = m0, w[h] = w0;
    /* the host model must balance this list for B=1 on this GPU, else the case tests nothing */
    const int rows = D == 64 ? DFA_ACU_BM3 : DFA_ACU_BM;
    dfa_error err = {0};
    dfa_acu_worklist wl;
    CHECK(dfa_acu_worklist_build_rows(&wl, &l, H, m, w, rows, &err) == DFA_OK);
    dfa_acu_balance b = {dfa_cuda_sm_count(g_cu), 1, 0, NULL};
    dfa_acu_item *items = NULL;
    int n_items = 0;
    dfa_acu_balance_report rep;
    CHECK(dfa_acu_worklist_balance(&wl, rows, &b, &items, &n_items, &rep, &err) == DFA_OK);
    CHECKF(items != NULL, "%s D=%d: the model does not balance it on %d SMs", name, D, b.n_ctas);
    free(items);
    dfa_acu_worklist_free(&wl);
    const size_t n1 = (size_t)N * H * D, bytes1 = n1 * 2;
    uint16_t *hq = malloc(bytes1 * B), *hk = malloc(bytes1 * B), *hv = malloc(bytes1 * B);
    uint16_t *o_u = malloc(bytes1), *o_b = malloc(bytes1), *o_2 = malloc(bytes1 * B);
    for (size_t i = 0; i < n1; i++) {
        hq[i] = dfa_f32_to_bf16((float)(test_rng_next(&g_seed) % 2001) / 500.0f - 2.0f);
        hk[i] = dfa_f32_to_bf16((float)(test_rng_next(&g_seed) % 2001) / 500.0f - 2.0f);
        hv[i] = dfa_f32_to_bf16((float)(test_rng_next(&g_seed) % 2001) / 1000.0f - 1.0f);
    }
    memcpy(hq + n1, hq, bytes1); /* batch element 1 = element 0 */
    memcpy(hk + n1, hk, bytes1);
    memcpy(hv + n1, hv, bytes1);
    void *d[4];
    for (int i = 0; i < 4; i++) CHECK(dfa_cuda_malloc(g_cu, &d[i], bytes1 * B, &err) == DFA_OK);
    CHECK(dfa_cuda_h2d(g_cu, d[0], hq, bytes1 * B, &err) == DFA_OK);
    CHECK(dfa_cuda_h2d(g_cu, d[1], hk, bytes1 * B, &err) == DFA_OK);
    CHECK(dfa_cuda_h2d(g_cu, d[2], hv, bytes1 * B, &err) == DFA_OK);
    dfa_attn_cuda_plan *pu = plan_with(&l, H, m, w, 0), *pb = plan_with(&l, H, m, w, 1);
    dfa_attn_cuda_args a = {DFA_ATTN_CUDA_BF16, 1, D, d[0], d[1], d[2], d[3], NULL, NULL, 0.f, dfa_cuda_stream(g_cu)};
    uint16_t *outs[2] = {o_u, o_b};
    dfa_attn_cuda_plan *plans[2] = {pu, pb};
    for (int i = 0; i < 2 && pu && pb; i++) {
        CHECK(dfa_cuda_memset(g_cu, d[3], 0xff, bytes1 * B, &err) == DFA_OK); /* NaN */
        CHECKF(dfa_attn_cuda_run(plans[i], &a, &err) == DFA_OK, "%s", err.msg);
        CHECK(dfa_cuda_d2h(g_cu, outs[i], d[3], bytes1, &err) == DFA_OK);
    }
    /* B=2 on the balanced plan: it runs the order made for B=2 (or the list's own) */
    a.batch = 2;
    CHECK(dfa_cuda_memset(g_cu, d[3], 0xff, bytes1 * B, &err) == DFA_OK);
    if (pb) CHECKF(dfa_attn_cuda_run(pb, &a, &err) == DFA_OK, "%s", err.msg);
    CHECK(dfa_cuda_d2h(g_cu, o_2, d[3], bytes1 * B, &err) == DFA_OK);
    size_t differ = 0, nonfinite = 0, differ2 = 0;
    for (size_t i = 0; i < n1; i++) {
        differ += o_u[i] != o_b[i];
        nonfinite += (o_b[i] & 0x7f80) == 0x7f80;
        differ2 += o_2[i] != o_b[i] || o_2[n1 + i] != o_b[i];
    }
    CHECKF(nonfinite == 0, "%s D=%d: %zu outputs not written or not finite", name, D, nonfinite);
    CHECKF(differ == 0, "%s D=%d: balanced and unbalanced outputs differ in %zu elements", name, D, differ);
    CHECKF(differ2 == 0, "%s D=%d: B=2 differs from B=1 in %zu elements", name, D, differ2);
    /* 96 sampled rows (the last tiles included, where the tail's pieces are) of 3 heads against a
     * float64 loop over dfa_mask_keep */
    const int wh = (m0 == DFA_ATTN_ARROW) ? w0 : -1;
    double worst = 0;
    double *s = malloc((size_t)N * sizeof *s);
    for (int hs = 0; hs < 3; hs++) {
        const int h = hs == 0 ? 0 : hs == 1 ? H / 2 : H - 1;
        double num = 0, den = 0;
        for (int r = 0; r < 32; r++) {
            const int i = r < 16 ? N - 1 - (int)(test_rng_next(&g_seed) % 384) : (int)(test_rng_next(&g_seed) % N);
            const size_t qi = ((size_t)i * H + h) * D;
            double mx = -INFINITY;
            for (int j = 0; j < N; j++) {
                s[j] = -INFINITY;
                if (!dfa_mask_keep(&l, wh, i, j)) continue;
                const size_t kj = ((size_t)j * H + h) * D;
                double acc = 0;
                for (int e = 0; e < D; e++) acc += (double)dfa_bf16_to_f32(hq[qi + e]) * dfa_bf16_to_f32(hk[kj + e]);
                s[j] = acc / sqrt((double)D);
                if (s[j] > mx) mx = s[j];
            }
            double sum = 0;
            for (int j = 0; j < N; j++) sum += s[j] == -INFINITY ? 0 : (s[j] = exp(s[j] - mx));
            for (int e = 0; e < D; e++) {
                double ref = 0;
                for (int j = 0; j < N; j++)
                    if (s[j] != -INFINITY) ref += s[j] * dfa_bf16_to_f32(hv[((size_t)j * H + h) * D + e]);
                ref /= sum;
                const double got = dfa_bf16_to_f32(o_b[qi + e]);
                num += (got - ref) * (got - ref);
                den += ref * ref;
            }
        }
        const double rel = sqrt(num / (den > 0 ? den : 1));
        if (rel > worst) worst = rel;
    }
    CHECKF(worst < 1e-2, "%s D=%d: sampled rows vs float64: %.3g", name, D, worst);
    printf("%-10s D=%3d: %d-row list, model %.1f -> %.1f us (%.3fx, %d pieces); outputs bit-equal %s, B=2 %s, "
           "sampled rows vs float64 %.2e\n",
           name, D, rows, rep.before.makespan_us, rep.after.makespan_us,
           rep.before.makespan_us / rep.after.makespan_us, rep.n_pieces, differ ? "NO" : "yes", differ2 ? "NO" : "ok",
           worst);
    free(s);
    dfa_attn_cuda_plan_free(pu);
    dfa_attn_cuda_plan_free(pb);
    for (int i = 0; i < 4; i++) dfa_cuda_dealloc(g_cu, d[i]);
    free(hq), free(hk), free(hv), free(o_u), free(o_b), free(o_2);
}

static void test_balanced_lists(void) {
    if (!dfa_attn_cuda_variant_ok(DFA_ATTN_CUDA_V_WGMMA3_NOPP)) {
        printf("not an sm_90 GPU: the persistent kernels (and their balanced lists) do not run here\n");
        return;
    }
    /* D=64: the 3-consumer kernel's 192-row list (dense: 128 + 64-row pieces; arrow w=0: union
     * items, whose 64-row chunks skip key steps, cut into 128 + 64-row pieces with their skips;
     * w=6, balanced before union items, no longer is on 132 SMs); D=128: the 128-row list,
     * reordered tail (arrow 25 %) */
    run_shape(64, DFA_ATTN_FULL, -1, "dense");
    run_shape(64, DFA_ATTN_ARROW, 0, "arrow w=0");
    run_shape(128, DFA_ATTN_ARROW, 13, "arrow w=13");
}

int main(void) {
    dfa_error err = {0};
    if (dfa_cuda_init(&g_cu, 0, &err) != DFA_OK) {
        fprintf(stderr, "no GPU: %s\n", err.msg);
        return 1;
    }
    g_seed = test_seed();
    printf("device %s (%d SMs), seed %llu\n", dfa_cuda_device_name(g_cu), dfa_cuda_sm_count(g_cu), g_seed);
    RUN(test_balanced_lists);
    dfa_cuda_free(g_cu);
    return test_summary();
}
