/* test_attn_balance.c - tail-balanced work lists (attn_sched.h) on the GPU: plans of the default
 * variant at the paper's 4096+512 shape, where the schedule model re-cuts the tail (checked here
 * on the host first, so that the case cannot pass without a balanced list), built with each
 * balancing option of dfa_attn_cuda_plan_build_opt (OFF, ON = dfa_attn_cuda_plan_build, SPLIT128):
 * the plans' balanced orders (plan info n_bal_items) are the host model's for this GPU's SM
 * count (none with OFF); outputs NaN-poisoned first, bit-equal between the three (a row's
 * arithmetic does not depend on the item it is in), sampled rows against a float64 reference,
 * and B=2 bit-equal per batch element to B=1. Also: an unknown option is refused. */
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

static dfa_attn_cuda_plan *plan_with(const dfa_attn_layout *l, int H, const int *m, const int *w, int balance) {
    dfa_error err = {0};
    dfa_attn_cuda_plan *p = NULL;
    dfa_status st = balance == DFA_ATTN_CUDA_BALANCE_ON
                        ? dfa_attn_cuda_plan_build(&p, l, H, m, w, DFA_ATTN_CUDA_V_DEFAULT, dfa_cuda_stream(g_cu), &err)
                        : dfa_attn_cuda_plan_build_opt(&p, l, H, m, w, DFA_ATTN_CUDA_V_DEFAULT, balance,
                                                       dfa_cuda_stream(g_cu), &err);
    CHECKF(st == DFA_OK, "%s", err.msg);
    return st == DFA_OK ? p : NULL;
}

/* The plan's balanced orders (info.n_bal_items) against the host model run here: for each list
 * the plan has (128 rows; 192 rows under variant 5) and B = 1, 2, the model's item count where it
 * balances, else 0; OFF: none. Returns the mismatches. */
static int check_orders(const dfa_attn_cuda_plan *p, const dfa_attn_layout *l, int H, const int *m, const int *w,
                        int balance, const char *name, int D) {
    dfa_attn_cuda_plan_info info;
    dfa_attn_cuda_plan_get_info(p, &info);
    int bad = 0;
    for (int li = 0; li < 2; li++)
        for (int bi = 0; bi < 2; bi++) {
            int want = 0;
            const int has_list = li == 0 || info.variant == DFA_ATTN_CUDA_V_WGMMA3_NOPP;
            if (balance != DFA_ATTN_CUDA_BALANCE_OFF && has_list) {
                const int rows = li ? DFA_ACU_BM3 : DFA_ACU_BM;
                dfa_error err = {0};
                dfa_acu_worklist wl;
                CHECK(dfa_acu_worklist_build_rows(&wl, l, H, m, w, rows, &err) == DFA_OK);
                dfa_acu_balance b = {dfa_cuda_sm_count(g_cu), bi + 1, balance == DFA_ATTN_CUDA_BALANCE_SPLIT128,
                                     NULL};
                dfa_acu_item *items = NULL;
                int n = 0;
                CHECK(dfa_acu_worklist_balance(&wl, rows, &b, &items, &n, NULL, &err) == DFA_OK);
                want = items ? n : 0;
                free(items);
                dfa_acu_worklist_free(&wl);
            }
            if (info.n_bal_items[li][bi] != want) {
                bad++;
                printf("  %s D=%d balance option %d: list %d B=%d: plan has %d balanced items, the model %d\n", name,
                       D, balance, li, bi + 1, info.n_bal_items[li][bi], want);
            }
        }
    return bad;
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
    uint16_t *o_u = malloc(bytes1), *o_b = malloc(bytes1), *o_s = malloc(bytes1), *o_2 = malloc(bytes1 * B);
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
    dfa_attn_cuda_plan *pu = plan_with(&l, H, m, w, DFA_ATTN_CUDA_BALANCE_OFF);
    dfa_attn_cuda_plan *pb = plan_with(&l, H, m, w, DFA_ATTN_CUDA_BALANCE_ON);
    dfa_attn_cuda_plan *ps = plan_with(&l, H, m, w, DFA_ATTN_CUDA_BALANCE_SPLIT128);
    int bad_orders = 0;
    if (pu && pb && ps) {
        dfa_attn_cuda_plan_info iu, ib;
        dfa_attn_cuda_plan_get_info(pu, &iu);
        dfa_attn_cuda_plan_get_info(pb, &ib);
        CHECKF(iu.n_items == ib.n_items && iu.computed_entries == ib.computed_entries && iu.variant == ib.variant,
               "%s D=%d: OFF and ON plans of one list differ in their info", name, D);
        bad_orders += check_orders(pu, &l, H, m, w, DFA_ATTN_CUDA_BALANCE_OFF, name, D);
        bad_orders += check_orders(pb, &l, H, m, w, DFA_ATTN_CUDA_BALANCE_ON, name, D);
        bad_orders += check_orders(ps, &l, H, m, w, DFA_ATTN_CUDA_BALANCE_SPLIT128, name, D);
        CHECKF(bad_orders == 0, "%s D=%d: %d balanced orders differ from the model's", name, D, bad_orders);
        /* the list this D runs is balanced for B=1 (the host check above) */
        CHECKF(ib.n_bal_items[rows == DFA_ACU_BM3][0] == n_items, "%s D=%d: the plan's B=1 order has %d items, not %d",
               name, D, ib.n_bal_items[rows == DFA_ACU_BM3][0], n_items);
    }
    dfa_attn_cuda_args a = {DFA_ATTN_CUDA_BF16, 1, D, d[0], d[1], d[2], d[3], NULL, NULL, 0.f, dfa_cuda_stream(g_cu)};
    uint16_t *outs[3] = {o_u, o_b, o_s};
    dfa_attn_cuda_plan *plans[3] = {pu, pb, ps};
    for (int i = 0; i < 3 && pu && pb && ps; i++) {
        CHECK(dfa_cuda_memset(g_cu, d[3], 0xff, bytes1 * B, &err) == DFA_OK); /* NaN */
        CHECKF(dfa_attn_cuda_run(plans[i], &a, &err) == DFA_OK, "%s", err.msg);
        CHECK(dfa_cuda_d2h(g_cu, outs[i], d[3], bytes1, &err) == DFA_OK);
    }
    /* B=2 on the balanced plans (ON, SPLIT128): each runs the order made for B=2 (or the list's own) */
    a.batch = 2;
    size_t differ = 0, differ_s = 0, nonfinite = 0, differ2 = 0;
    for (int i = 1; i < 3 && pu && pb && ps; i++) {
        CHECK(dfa_cuda_memset(g_cu, d[3], 0xff, bytes1 * B, &err) == DFA_OK);
        CHECKF(dfa_attn_cuda_run(plans[i], &a, &err) == DFA_OK, "%s", err.msg);
        CHECK(dfa_cuda_d2h(g_cu, o_2, d[3], bytes1 * B, &err) == DFA_OK);
        for (size_t j = 0; j < n1; j++) differ2 += o_2[j] != o_b[j] || o_2[n1 + j] != o_b[j];
    }
    for (size_t i = 0; i < n1; i++) {
        differ += o_u[i] != o_b[i];
        differ_s += o_s[i] != o_b[i];
        nonfinite += (o_b[i] & 0x7f80) == 0x7f80;
    }
    CHECKF(nonfinite == 0, "%s D=%d: %zu outputs not written or not finite", name, D, nonfinite);
    CHECKF(differ == 0, "%s D=%d: balanced and unbalanced outputs differ in %zu elements", name, D, differ);
    CHECKF(differ_s == 0, "%s D=%d: split128 and balanced outputs differ in %zu elements", name, D, differ_s);
    CHECKF(differ2 == 0, "%s D=%d: B=2 (ON or SPLIT128 plan) differs from B=1 in %zu elements", name, D, differ2);
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
    printf("%-10s D=%3d: %d-row list, model %.1f -> %.1f us (%.3fx, %d pieces); plans' orders %s; outputs "
           "bit-equal %s (split128 %s), B=2 %s, sampled rows vs float64 %.2e\n",
           name, D, rows, rep.before.makespan_us, rep.after.makespan_us,
           rep.before.makespan_us / rep.after.makespan_us, rep.n_pieces, bad_orders ? "DIFFER" : "as modelled",
           differ ? "NO" : "yes", differ_s ? "NO" : "yes", differ2 ? "NO" : "ok", worst);
    free(s);
    dfa_attn_cuda_plan_free(pu);
    dfa_attn_cuda_plan_free(pb);
    dfa_attn_cuda_plan_free(ps);
    for (int i = 0; i < 4; i++) dfa_cuda_dealloc(g_cu, d[i]);
    free(hq), free(hk), free(hv), free(o_u), free(o_b), free(o_s), free(o_2);
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

/* An unknown balancing option is refused before anything is built (every variant this GPU runs),
 * with the value in the message and no plan; the three known ones build. */
static void test_option_refused(void) {
    dfa_attn_layout l = {1024, 128, 1, 128, DFA_BAND_ARROW};
    int m[4] = {DFA_ATTN_FULL, DFA_ATTN_ARROW, DFA_ATTN_ARROW, DFA_ATTN_FULL}, w[4] = {-1, 0, 2, -1};
    const int variants[3] = {DFA_ATTN_CUDA_V_DEFAULT, DFA_ATTN_CUDA_V_MMA, DFA_ATTN_CUDA_V_WGMMA};
    for (int vi = 0; vi < 3; vi++) {
        if (!dfa_attn_cuda_variant_ok(variants[vi])) continue;
        const int bad[2] = {3, -1};
        for (int i = 0; i < 2; i++) {
            dfa_error err = {0};
            dfa_attn_cuda_plan *p = (dfa_attn_cuda_plan *)&err; /* must be overwritten */
            const dfa_status st =
                dfa_attn_cuda_plan_build_opt(&p, &l, 4, m, w, variants[vi], bad[i], dfa_cuda_stream(g_cu), &err);
            char want[48];
            snprintf(want, sizeof want, "balance option %d ", bad[i]);
            CHECKF(st == DFA_ERR_INVALID_ARG && p == NULL, "variant %d, option %d: status %d", variants[vi], bad[i],
                   (int)st);
            CHECKF(strstr(err.msg, want) != NULL, "variant %d, option %d: message %s", variants[vi], bad[i], err.msg);
            if (st == DFA_OK && p) dfa_attn_cuda_plan_free(p);
        }
        for (int bal = DFA_ATTN_CUDA_BALANCE_ON; bal <= DFA_ATTN_CUDA_BALANCE_SPLIT128; bal++) {
            dfa_error err = {0};
            dfa_attn_cuda_plan *p = NULL;
            CHECKF(dfa_attn_cuda_plan_build_opt(&p, &l, 4, m, w, variants[vi], bal, dfa_cuda_stream(g_cu), &err) ==
                       DFA_OK,
                   "variant %d, option %d: %s", variants[vi], bal, err.msg);
            dfa_attn_cuda_plan_info info;
            if (p) dfa_attn_cuda_plan_get_info(p, &info);
            /* variant 1 (one CTA per item) never gets balanced orders */
            if (p && variants[vi] == DFA_ATTN_CUDA_V_MMA)
                CHECK(!info.n_bal_items[0][0] && !info.n_bal_items[0][1] && !info.n_bal_items[1][0] &&
                      !info.n_bal_items[1][1]);
            dfa_attn_cuda_plan_free(p);
        }
    }
}

int main(void) {
    dfa_error err = {0};
    if (dfa_cuda_init(&g_cu, 0, &err) != DFA_OK) {
        fprintf(stderr, "no GPU: %s\n", err.msg);
        return 1;
    }
    g_seed = test_seed();
    printf("device %s (%d SMs), seed %llu\n", dfa_cuda_device_name(g_cu), dfa_cuda_sm_count(g_cu), g_seed);
    RUN(test_option_refused);
    RUN(test_balanced_lists);
    dfa_cuda_free(g_cu);
    return test_summary();
}
