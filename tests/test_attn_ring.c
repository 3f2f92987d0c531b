/* test_attn_ring.c - the ring split of the search's FULL + ARROW pass (attn_worklist.h
 * dfa_acu_worklist_build_rings, run on the GPU by dfa_attn_cuda_ring_run): the ring work list
 * executed by a plain float64 loop (per item: normalised output and log2-sum-exp2 of its rows,
 * into the item's slot; untouched slots stay NaN), then merged as the CUDA combine does
 * (segments without keys skipped through dfa_acu_ring_has_seg), equals the float64 reference
 * attention (dfa_search_attn_ref) of every window and of FULL; every (row, head) is written once
 * per segment that has keys and never otherwise. Random layouts: text first / last / none, odd
 * token counts, blocks from 1 to past the kernel tile, window sets from {0} to full - 1. And the
 * precision of the CUDA path's storage: segments rounded to bf16, merged in f32 and rounded
 * again stay within 4x (measured: 1.6x) the error of one bf16 rounding of the exact output. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attn/cuda/attn_worklist.h"
#include "core/tensor.h"
#include "attn/mask.h"
#include "plan/search.h"
#include "test.h"

static unsigned long long g_seed = 0x5851f42d4c957f2dULL;

static int rnd(int n) { return (int)(test_rng_next(&g_seed) % (unsigned long long)n); }

/* The work list by plain loops: seg [S][N][H][D], lse [S][N][H] (log2 units), cnt [S][N][H]. */
static void run_items(const dfa_acu_worklist *wl, int N, int H, int D, const float *q, const float *k,
                      const float *v, double *seg, double *lse, int *cnt, int *bad) {
    const double scale = 1.0 / sqrt((double)D);
    double *sc = malloc(sizeof(double) * N);
    for (int i = 0; i < wl->n_items; i++) {
        const dfa_acu_item *it = &wl->items[i];
        const int s = it->flags >> DFA_ACU_ITEM_SLOT_SHIFT, h = it->head;
        if ((it->flags & ((1 << DFA_ACU_ITEM_SLOT_SHIFT) - 1)) || it->n_r < 1 || it->n_r > 2) (*bad)++;
        for (int r = it->q0; r < it->q0 + it->q_len; r++) {
            double m = -INFINITY;
            int nk = 0;
            for (int j = 0; j < it->n_r; j++) {
                const dfa_acu_range *rg = &wl->ranges[it->r_off + j];
                for (int kk = rg->k0; kk < rg->k1; kk++) {
                    double d = 0;
                    for (int c = 0; c < D; c++)
                        d += (double)q[((size_t)r * H + h) * D + c] * k[((size_t)kk * H + h) * D + c];
                    sc[nk] = d * scale;
                    if (sc[nk] > m) m = sc[nk];
                    nk++;
                }
            }
            double l = 0, *o = seg + (((size_t)s * N + r) * H + h) * D;
            for (int c = 0; c < D; c++) o[c] = 0;
            nk = 0;
            for (int j = 0; j < it->n_r; j++) {
                const dfa_acu_range *rg = &wl->ranges[it->r_off + j];
                for (int kk = rg->k0; kk < rg->k1; kk++, nk++) {
                    const double p = exp(sc[nk] - m);
                    l += p;
                    for (int c = 0; c < D; c++) o[c] += p * v[((size_t)kk * H + h) * D + c];
                }
            }
            for (int c = 0; c < D; c++) o[c] /= l;
            lse[((size_t)s * N + r) * H + h] = (m + log(l)) / log(2.0);
            cnt[((size_t)s * N + r) * H + h]++;
        }
    }
    free(sc);
}

static void check_case(const dfa_attn_layout *l, int H, int D, int n_win, const int *win, double *worst_b,
                       double *worst_ratio) {
    const int N = dfa_layout_tokens(l), S = n_win + 1;
    dfa_error err = {0};
    dfa_acu_worklist wl;
    dfa_status st = dfa_acu_worklist_build_rings(&wl, l, H, n_win, win, &err);
    CHECKF(st == DFA_OK, "%s", err.msg);
    if (st) return;
    const size_t n = (size_t)N * H * D;
    float *q = malloc(n * 4), *k = malloc(n * 4), *v = malloc(n * 4), *ref = malloc(n * 4);
    double *seg = malloc(sizeof(double) * n * S), *lse = malloc(sizeof(double) * N * H * S);
    double *out = malloc(sizeof(double) * n * S);
    float *outb = malloc(sizeof(float) * n * S);
    int *cnt = calloc((size_t)N * H * S, sizeof(int));
    for (size_t i = 0; i < n; i++)
        q[i] = 2 * test_rng_uniform(&g_seed), k[i] = 2 * test_rng_uniform(&g_seed), v[i] = test_rng_uniform(&g_seed);
    for (size_t i = 0; i < n * S; i++) seg[i] = NAN;
    for (size_t i = 0; i < (size_t)N * H * S; i++) lse[i] = NAN;
    int bad = 0;
    run_items(&wl, N, H, D, q, k, v, seg, lse, cnt, &bad);
    CHECK(bad == 0);
    /* coverage and the combine (as attn_cuda_ring.cu: a running merge, stored after each segment) */
    const int vs = dfa_layout_vis_start(l);
    dfa_attn_tiles t;
    dfa_layout_tiles(l, &t);
    int bad_cnt = 0;
    for (int r = 0; r < N; r++)
        for (int h = 0; h < H; h++) {
            const int qi = r >= vs && r < vs + l->n_vis ? (r - vs) / l->block : -1;
            double m = -INFINITY, den = 0, acc[64];
            float mb = -INFINITY, denb = 0, accb[64]; /* the CUDA path: bf16 segments, f32 merge */
            for (int s = 0; s < S; s++) {
                const int has = s == 0 || (qi >= 0 && dfa_acu_ring_has_seg(t.n_vis_tiles, qi, win, s));
                if (cnt[((size_t)s * N + r) * H + h] != has) bad_cnt++;
                if (has) {
                    const double ls = lse[((size_t)s * N + r) * H + h], *o = seg + (((size_t)s * N + r) * H + h) * D;
                    const double mn = m > ls ? m : ls, w0 = s ? exp2(m - mn) : 0, w1 = exp2(ls - mn);
                    for (int c = 0; c < D; c++) acc[c] = (s ? acc[c] * w0 : 0) + o[c] * w1;
                    den = den * w0 + w1, m = mn;
                    const float lb = (float)ls, mnb = mb > lb ? mb : lb, v0 = s ? exp2f(mb - mnb) : 0.f,
                                v1 = exp2f(lb - mnb);
                    for (int c = 0; c < D; c++)
                        accb[c] = (s ? accb[c] * v0 : 0.f) + dfa_bf16_to_f32(dfa_f32_to_bf16((float)o[c])) * v1;
                    denb = denb * v0 + v1, mb = mnb;
                }
                for (int c = 0; c < D; c++) {
                    out[(((size_t)s * N + r) * H + h) * D + c] = acc[c] / den;
                    outb[(((size_t)s * N + r) * H + h) * D + c] = dfa_bf16_to_f32(dfa_f32_to_bf16(accb[c] / denb));
                }
            }
        }
    CHECKF(bad_cnt == 0, "%d (segment, row, head) writes differ from dfa_acu_ring_has_seg", bad_cnt);
    for (int s = 0; s < S; s++) {
        const int w = s < n_win ? win[s] : -1;
        dfa_search_attn_ref(NULL, l, 1, H, D, w, q, k, v, ref);
        double num = 0, den = 0, numb = 0, num1 = 0;
        for (size_t i = 0; i < n; i++) {
            const double d = out[s * n + i] - ref[i], db = outb[s * n + i] - ref[i];
            const double d1 = dfa_bf16_to_f32(dfa_f32_to_bf16(ref[i])) - ref[i];
            num += isnan(d) ? INFINITY : d * d;
            numb += isnan(db) ? INFINITY : db * db;
            num1 += d1 * d1;
            den += (double)ref[i] * ref[i];
        }
        const double e = sqrt(num / (den > 0 ? den : 1));
        CHECKF(e < 1e-6, "n_vis %d n_text %d text_first %d block %d H %d: window %d, rel err %g", l->n_vis,
               l->n_text, l->text_first, l->block, H, w, e);
        /* bf16 segments merged in f32, then rounded: against one rounding of the exact output */
        const double eb = sqrt(numb / (den > 0 ? den : 1)), e1 = sqrt(num1 / (den > 0 ? den : 1));
        if (eb > *worst_b) *worst_b = eb;
        if (e1 > 0 && eb / e1 > *worst_ratio) *worst_ratio = eb / e1;
        CHECKF(eb < 4 * e1 + 1e-7, "window %d: bf16 segments merged: rel err %g, one bf16 rounding %g", w, eb, e1);
    }
    free(q), free(k), free(v), free(ref), free(seg), free(lse), free(out), free(outb), free(cnt);
    dfa_acu_worklist_free(&wl);
}

static void test_random(void) {
    int cases = 0;
    double worst_b = 0, worst_ratio = 0;
    for (int it = 0; it < 60; it++) {
        dfa_attn_layout l = {0};
        l.n_vis = 1 + rnd(300);
        l.n_text = rnd(3) == 0 ? 0 : 1 + rnd(40);
        l.text_first = rnd(2);
        l.block = it < 10 ? 1 + rnd(8) : 1 + rnd(150);
        const int fw = dfa_mask_full_window(&l);
        const int H = 1 + rnd(2), D = 8 * (1 + rnd(2));
        if (fw < 1) { /* one visual tile: no window below the full band */
            dfa_acu_worklist wl;
            dfa_error err = {0};
            const int w0 = 0;
            CHECK(dfa_acu_worklist_build_rings(&wl, &l, H, 1, &w0, &err) == DFA_ERR_INVALID_ARG);
            continue;
        }
        int win[DFA_ACU_RING_MAX_WIN], n_win = 0;
        const int want = 1 + rnd(fw < 4 ? fw : 4);
        for (int w = 0; w < fw && n_win < want; w++) /* ascending, random picks, the last ones forced */
            if (rnd(2) || fw - w <= want - n_win) win[n_win++] = w;
        if (it % 7 == 0) win[0] = 0, n_win = 1;
        if (it % 7 == 1) win[0] = fw - 1, n_win = 1;
        check_case(&l, H, D, n_win, win, &worst_b, &worst_ratio);
        cases++;
    }
    CHECKF(cases >= 30, "only %d cases ran", cases);
    printf("bf16 segments merged in f32: worst rel L2 %.2e, worst ratio to one bf16 rounding %.2f\n", worst_b,
           worst_ratio);
}

static void test_refuses(void) {
    dfa_attn_layout l = {100, 7, 1, 10, DFA_BAND_ARROW}; /* 10 visual tiles: full window 9 */
    dfa_acu_worklist wl;
    dfa_error err = {0};
    const int desc[2] = {3, 1}, dup[2] = {2, 2}, past[1] = {9}, neg[1] = {-1};
    CHECK(dfa_acu_worklist_build_rings(&wl, &l, 2, 2, desc, &err) == DFA_ERR_INVALID_ARG);
    CHECK(dfa_acu_worklist_build_rings(&wl, &l, 2, 2, dup, &err) == DFA_ERR_INVALID_ARG);
    CHECK(dfa_acu_worklist_build_rings(&wl, &l, 2, 1, past, &err) == DFA_ERR_INVALID_ARG);
    CHECK(dfa_acu_worklist_build_rings(&wl, &l, 2, 1, neg, &err) == DFA_ERR_INVALID_ARG);
    CHECK(dfa_acu_worklist_build_rings(&wl, &l, 2, 0, neg, &err) == DFA_ERR_INVALID_ARG);
    /* rings are arrow band distances: a plain-band layout is refused, naming the band */
    const int ok[2] = {1, 3};
    CHECK(dfa_acu_worklist_build_rings(&wl, &l, 2, 2, ok, &err) == DFA_OK);
    dfa_acu_worklist_free(&wl);
    l.band = DFA_BAND_PLAIN;
    CHECK(dfa_acu_worklist_build_rings(&wl, &l, 2, 2, ok, &err) == DFA_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, "plain band") != NULL);
}

int main(void) {
    RUN(test_refuses);
    RUN(test_random);
    return test_summary();
}
