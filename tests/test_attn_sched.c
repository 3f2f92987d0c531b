/* test_attn_sched.c - the schedule model of the persistent attention kernels (attn_sched.h) and
 * the tail balancing it drives, on the CPU. The balanced lists' exactness against the mask is
 * checked in test_attn_worklist.c (every row once, every key of its mask); here: the replay on
 * hand-made lists with makespans worked out by hand, the claimed gain at the paper's dense shape
 * derived from the model's own fields, and that balancing off leaves the list alone. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn/attn.h"
#include "attn/cuda/attn_sched.h"
#include "test.h"

/* A hand-made 128-row list: item i visits steps[i] x 128 keys. */
static void hand_list(dfa_acu_worklist *wl, const int *steps, int n, dfa_acu_item *items, dfa_acu_range *ranges) {
    memset(wl, 0, sizeof *wl);
    for (int i = 0; i < n; i++) {
        ranges[i].k0 = 0;
        ranges[i].k1 = 128 * steps[i];
        items[i] = (dfa_acu_item){0, 128 * i, 128, 0, i, 1, {0, 0, 0}};
    }
    wl->items = items;
    wl->ranges = ranges;
    wl->n_items = wl->info.n_items = n;
}

static void unit_model(dfa_acu_cost *m, int lookahead) {
    dfa_acu_cost_default(m, DFA_ACU_BM, 0);
    m->step_us = 1;
    m->item_us = 0;
    m->launch_us = 0;
    m->lookahead = lookahead;
}

static void test_sim_by_hand(void) {
    dfa_acu_item items[8];
    dfa_acu_range ranges[8];
    dfa_acu_worklist wl;
    dfa_acu_cost m;
    dfa_acu_sim s;
    /* greedy on 2 CTAs, no lookahead: 4 | 3, then 3 -> CTA 1 (free at 3) ends 6, 2 -> CTA 0 (4) ends
     * 6, 2 -> 8 */
    const int a[5] = {4, 3, 3, 2, 2};
    hand_list(&wl, a, 5, items, ranges);
    unit_model(&m, 0);
    dfa_acu_sched_sim(&wl, &m, 2, 1, &s);
    CHECK_NEAR(s.makespan_us, 8, 1e-9);
    CHECK_NEAR(s.busy_us, 14, 1e-9);
    CHECK_NEAR(s.idle_frac, 1 - 14.0 / 16, 1e-9);
    CHECK(s.ctas == 2);
    /* batch 2 repeats every item in place: 4,4,3,3,3,3,2,2,2,2 on 2 CTAs, in lockstep: 14 */
    dfa_acu_sched_sim(&wl, &m, 2, 2, &s);
    CHECK_NEAR(s.makespan_us, 14, 1e-9);
    CHECK_NEAR(s.busy_us, 28, 1e-9);
    /* more CTAs than items: the grid is the item count */
    dfa_acu_sched_sim(&wl, &m, 100, 1, &s);
    CHECK(s.ctas == 5);
    CHECK_NEAR(s.makespan_us, 4, 1e-9);
    /* lookahead: a CTA claims its next item `lookahead` steps before its current one ends. Items
     * 3, 1, 1, 1 on 2 CTAs: without it CTA 1 runs the three 1s while CTA 0 runs the 3 (makespan 3);
     * with 3 steps CTA 0 claims its second item at once and runs it after the 3 (makespan 4) */
    const int b[4] = {3, 1, 1, 1};
    hand_list(&wl, b, 4, items, ranges);
    dfa_acu_sched_sim(&wl, &m, 2, 1, &s);
    CHECK_NEAR(s.makespan_us, 3, 1e-9);
    unit_model(&m, 3);
    dfa_acu_sched_sim(&wl, &m, 2, 1, &s);
    CHECK_NEAR(s.makespan_us, 4, 1e-9);
    /* the per-item and per-launch times add as stated */
    unit_model(&m, 0);
    m.item_us = 0.5;
    m.launch_us = 10;
    hand_list(&wl, a, 5, items, ranges);
    dfa_acu_sched_sim(&wl, &m, 1, 1, &s);
    CHECK_NEAR(s.makespan_us, 10 + 14 + 5 * 0.5, 1e-9);
}

/* Dense 4096 + 512 tokens, 24 heads, the 192-row list on 132 CTAs (an H100) at B = 1: 24 x 24 =
 * 576 items of 36 steps = 4.36 waves, so 5 x T unbalanced (T = one item). Balanced: 4 waves of T,
 * then 128- and 64-row pieces, at most one per CTA: 4 T + the 128-row piece. The gain claimed in
 * bench/RESULTS.md (Version 10) follows from the default model's fields. */
static void test_dense_4608_claim(void) {
    dfa_attn_layout l = {4096, 512, 1, 128, DFA_BAND_ARROW};
    int method[24], window[24];
    for (int h = 0; h < 24; h++) method[h] = DFA_ATTN_FULL, window[h] = -1;
    dfa_error err = {0};
    dfa_acu_worklist wl;
    CHECK(dfa_acu_worklist_build_rows(&wl, &l, 24, method, window, DFA_ACU_BM3, &err) == DFA_OK);
    CHECK(wl.n_items == 576);
    dfa_acu_cost m;
    dfa_acu_cost_default(&m, DFA_ACU_BM3, 0);
    const double T = m.item_us + 36 * m.step_us, T128 = m.item_us + m.share[2] * 36 * m.step_us;
    dfa_acu_balance b = {132, 1, 0, NULL};
    dfa_acu_balance_report r;
    dfa_acu_item *items;
    int n;
    CHECK(dfa_acu_worklist_balance(&wl, DFA_ACU_BM3, &b, &items, &n, &r, &err) == DFA_OK);
    CHECK_NEAR(r.before.makespan_us, m.launch_us + 5 * T, 1e-6);
    CHECK_NEAR(r.before.idle_frac, 1 - 576.0 / (5 * 132), 1e-9);
    CHECK(items != NULL && r.changed);
    CHECK_NEAR(r.after.makespan_us, m.launch_us + 4 * T + T128, 1e-6);
    const double gain = r.before.makespan_us / r.after.makespan_us;
    CHECKF(gain > 1.05 && gain < 1.06, "dense 4608 D=64 on 132 CTAs: %.4fx (claimed 1.054x)", gain);
    /* the report is the replay of the returned order */
    dfa_acu_worklist bw = wl;
    bw.items = items;
    bw.n_items = n;
    dfa_acu_sim s;
    dfa_acu_sched_sim(&bw, &m, 132, 1, &s);
    CHECK_NEAR(s.makespan_us, r.after.makespan_us, 1e-6);
    CHECK(n == wl.n_items + r.n_pieces);
    /* the rows of the list are all still there, once (test_attn_worklist.c checks the keys) */
    int64_t rows = 0;
    for (int i = 0; i < n; i++) rows += items[i].q_len;
    CHECK(rows == 24 * 4608);
    free(items);
    /* B = 2 (1152 items, 8.73 waves): the model finds nothing worth it; the plan runs B = 2 on the
     * list's own order (a list balanced for B = 1 would cost B = 2 ~5 %, bench_attn_sched) */
    b.batch = 2;
    CHECK(dfa_acu_worklist_balance(&wl, DFA_ACU_BM3, &b, &items, &n, &r, &err) == DFA_OK);
    CHECK(items == NULL && !r.changed);
    CHECK_NEAR(r.before.makespan_us, m.launch_us + 9 * T, 1e-6);
    CHECK_NEAR(r.after.makespan_us, r.before.makespan_us, 0);
    /* 16384 + 512: 2112 items = exactly 16 waves, nothing to gain */
    dfa_acu_worklist_free(&wl);
    l.n_vis = 16384;
    CHECK(dfa_acu_worklist_build_rows(&wl, &l, 24, method, window, DFA_ACU_BM3, &err) == DFA_OK);
    b.batch = 1;
    CHECK(dfa_acu_worklist_balance(&wl, DFA_ACU_BM3, &b, &items, &n, &r, &err) == DFA_OK);
    CHECK(items == NULL && r.before.idle_frac < 1e-9);
    dfa_acu_worklist_free(&wl);
}

/* Off (n_ctas 0 or no parameters) returns nothing and leaves the list as built; on, the list
 * itself is not touched either (the plan keeps both orders). */
static void test_off_unchanged(void) {
    dfa_attn_layout l = {4096, 512, 1, 128, DFA_BAND_ARROW};
    int method[24], window[24];
    for (int h = 0; h < 24; h++) method[h] = DFA_ATTN_FULL, window[h] = -1;
    dfa_error err = {0};
    dfa_acu_worklist wl, ref;
    CHECK(dfa_acu_worklist_build_rows(&wl, &l, 24, method, window, DFA_ACU_BM3, &err) == DFA_OK);
    CHECK(dfa_acu_worklist_build_rows(&ref, &l, 24, method, window, DFA_ACU_BM3, &err) == DFA_OK);
    dfa_acu_item *items = (dfa_acu_item *)&wl; /* must be overwritten */
    int n = -1;
    dfa_acu_balance off = {0, 1, 0, NULL};
    CHECK(dfa_acu_worklist_balance(&wl, DFA_ACU_BM3, &off, &items, &n, NULL, &err) == DFA_OK);
    CHECK(items == NULL && n == 0);
    CHECK(dfa_acu_worklist_balance(&wl, DFA_ACU_BM3, NULL, &items, &n, NULL, &err) == DFA_OK);
    CHECK(items == NULL);
    dfa_acu_balance on = {132, 1, 0, NULL};
    CHECK(dfa_acu_worklist_balance(&wl, DFA_ACU_BM3, &on, &items, &n, NULL, &err) == DFA_OK);
    CHECK(items != NULL);
    free(items);
    CHECK(wl.n_items == ref.n_items && !memcmp(wl.items, ref.items, sizeof *wl.items * (size_t)wl.n_items));
    CHECK(wl.n_ranges == ref.n_ranges && !memcmp(wl.ranges, ref.ranges, sizeof *wl.ranges * (size_t)wl.n_ranges));
    /* a model for the wrong kernel and a row count without a kernel are refused */
    dfa_acu_cost m2;
    dfa_acu_cost_default(&m2, DFA_ACU_BM, 0);
    on.model = &m2;
    CHECK(dfa_acu_worklist_balance(&wl, DFA_ACU_BM3, &on, &items, &n, NULL, &err) == DFA_ERR_INVALID_ARG);
    on.model = NULL;
    CHECK(dfa_acu_worklist_balance(&wl, 64, &on, &items, &n, NULL, &err) == DFA_ERR_INVALID_ARG);
    dfa_acu_worklist_free(&wl);
    dfa_acu_worklist_free(&ref);
}

/* The 128-row list: without an idle-warpgroup skip in the model a 64-row item costs a 128-row one,
 * so splitting never pays and the dense list (equal items) stays; split128 (the skip assumed)
 * splits 128-row items of the 4k arrow 50 % list (w = 6) and gains more than reordering alone. */
static void test_split128_switch(void) {
    dfa_attn_layout l = {4096, 512, 1, 128, DFA_BAND_ARROW};
    int method[24], window[24];
    for (int h = 0; h < 24; h++) method[h] = DFA_ATTN_FULL, window[h] = -1;
    dfa_error err = {0};
    dfa_acu_worklist wl;
    CHECK(dfa_acu_worklist_build_rows(&wl, &l, 24, method, window, DFA_ACU_BM, &err) == DFA_OK);
    dfa_acu_balance b = {132, 1, 0, NULL};
    dfa_acu_balance_report r, r2;
    dfa_acu_item *items;
    int n;
    CHECK(dfa_acu_worklist_balance(&wl, DFA_ACU_BM, &b, &items, &n, &r, &err) == DFA_OK);
    CHECK(items == NULL);
    CHECK(r.before.idle_frac > 0.05); /* 864 / (7 x 132): idle, but no cut helps without the skip */
    dfa_acu_worklist_free(&wl);
    for (int h = 0; h < 24; h++) method[h] = DFA_ATTN_ARROW, window[h] = 6;
    CHECK(dfa_acu_worklist_build_rows(&wl, &l, 24, method, window, DFA_ACU_BM, &err) == DFA_OK);
    CHECK(dfa_acu_worklist_balance(&wl, DFA_ACU_BM, &b, &items, &n, &r, &err) == DFA_OK);
    CHECK(r.n_pieces == 0); /* without split128 only the tail's order may change */
    free(items);
    b.split128 = 1;
    CHECK(dfa_acu_worklist_balance(&wl, DFA_ACU_BM, &b, &items, &n, &r2, &err) == DFA_OK);
    CHECK(items != NULL && r2.n_pieces > 0);
    CHECKF(r2.after.makespan_us < r.after.makespan_us * 0.99, "split128 %.1f us vs %.1f us", r2.after.makespan_us,
           r.after.makespan_us);
    int halves = 0;
    for (int i = 0; i < n; i++) halves += items[i].q_len == 64;
    CHECK(halves == 2 * r2.n_pieces);
    free(items);
    dfa_acu_worklist_free(&wl);
}

/* Union items (ARROW visual rows of the 192-row list, each 64-row chunk skipping whole key steps)
 * cut by the balancer: every row of every piece keeps its item's ranges and its own chunk's skip
 * (a piece starting 64 j rows into an item takes skip[j..]); every row once. 4096 + 512, 24 ARROW
 * heads at w = 0 on 132 CTAs, B = 1: 600 items (21 union items per head), the model cuts the tail
 * (tests/test_attn_worklist.c checks the keys of such orders against the mask). */
static void test_union_pieces(void) {
    dfa_attn_layout l = {4096, 512, 1, 128, DFA_BAND_ARROW};
    enum { H = 24, N = 4608 };
    int method[H], window[H];
    for (int h = 0; h < H; h++) method[h] = DFA_ATTN_ARROW, window[h] = 0;
    dfa_error err = {0};
    dfa_acu_worklist wl;
    CHECK(dfa_acu_worklist_build_rows(&wl, &l, H, method, window, DFA_ACU_BM3, &err) == DFA_OK);
    CHECK(wl.n_items == H * 25);
    int *orig = malloc(sizeof(int) * H * N), *seen = calloc(H * N, sizeof(int));
    for (int i = 0; i < wl.n_items; i++)
        for (int r = wl.items[i].q0; r < wl.items[i].q0 + wl.items[i].q_len; r++) orig[wl.items[i].head * N + r] = i;
    dfa_acu_balance b = {132, 1, 0, NULL};
    dfa_acu_balance_report rep;
    dfa_acu_item *items;
    int n, bad = 0, cut = 0;
    CHECK(dfa_acu_worklist_balance(&wl, DFA_ACU_BM3, &b, &items, &n, &rep, &err) == DFA_OK);
    CHECK(items != NULL && rep.n_pieces > 0);
    for (int i = 0; items && i < n; i++) {
        const dfa_acu_item *p = &items[i];
        const int sk = p->skip[0] | p->skip[1] | p->skip[2];
        cut += sk && p->q_len < DFA_ACU_BM3;
        for (int c = (p->q_len + 63) / 64; c < 3; c++) bad += p->skip[c] != 0; /* none past its chunks */
        for (int r = p->q0; r < p->q0 + p->q_len; r++) {
            const dfa_acu_item *o = &wl.items[orig[p->head * N + r]];
            seen[p->head * N + r]++;
            bad += o->r_off != p->r_off || o->n_r != p->n_r || o->flags != p->flags;
            bad += p->skip[(r - p->q0) / 64] != o->skip[(r - o->q0) / 64];
        }
    }
    for (int i = 0; i < H * N; i++) bad += seen[i] != 1;
    CHECKF(bad == 0, "%d mismatches between pieces and their items", bad);
    CHECKF(cut > 0, "no union item cut (k %d, mode %d, %d pieces)", rep.k, rep.mode, rep.n_pieces);
    free(items);
    free(orig);
    free(seen);
    dfa_acu_worklist_free(&wl);
}

/* A plan's balancing option (attn_cuda.h DFA_ATTN_CUDA_BALANCE_*) as dfa_attn_cuda_plan_build_opt
 * reads it: ON and SPLIT128 balance the persistent variants only, OFF none, and every value but
 * the three is refused (for every variant, before anything is built) with a message naming it;
 * outputs are set on failure too. */
static void test_balance_option(void) {
    const int variants[4] = {DFA_ATTN_CUDA_V_MMA, DFA_ATTN_CUDA_V_WGMMA, DFA_ATTN_CUDA_V_WGMMA_GRID,
                             DFA_ATTN_CUDA_V_WGMMA3_NOPP};
    const int persistent[4] = {0, 1, 0, 1};
    for (int vi = 0; vi < 4; vi++) {
        const int v = variants[vi];
        dfa_error err = {0};
        int on = -1, split = -1;
        CHECK(dfa_acu_balance_mode(DFA_ATTN_CUDA_BALANCE_ON, v, &on, &split, &err) == DFA_OK);
        CHECKF(on == persistent[vi] && split == 0, "variant %d ON: on %d split128 %d", v, on, split);
        CHECK(dfa_acu_balance_mode(DFA_ATTN_CUDA_BALANCE_SPLIT128, v, &on, &split, &err) == DFA_OK);
        CHECKF(on == persistent[vi] && split == persistent[vi], "variant %d SPLIT128: on %d split128 %d", v, on,
               split);
        on = split = -1;
        CHECK(dfa_acu_balance_mode(DFA_ATTN_CUDA_BALANCE_OFF, v, &on, &split, &err) == DFA_OK);
        CHECKF(on == 0 && split == 0, "variant %d OFF: on %d split128 %d", v, on, split);
        const int bad[3] = {3, -1, 128};
        for (int i = 0; i < 3; i++) {
            dfa_error e2 = {0};
            char want[48];
            snprintf(want, sizeof want, "balance option %d ", bad[i]); /* not a file:line digit */
            on = split = -1;
            CHECK(dfa_acu_balance_mode(bad[i], v, &on, &split, &e2) == DFA_ERR_INVALID_ARG);
            CHECK(e2.code == DFA_ERR_INVALID_ARG && on == 0 && split == 0);
            CHECKF(strstr(e2.msg, want) != NULL, "message for %d: %s", bad[i], e2.msg);
        }
    }
    CHECK(DFA_ATTN_CUDA_BALANCE_ON == 0); /* the default: a zeroed option field means ON */
}

int main(void) {
    RUN(test_sim_by_hand);
    RUN(test_dense_4608_claim);
    RUN(test_off_unchanged);
    RUN(test_split128_switch);
    RUN(test_balance_option);
    RUN(test_union_pieces);
    return test_summary();
}
