/* test_attn_worklist.c - the CUDA kernel's work lists (built on the host) against the mask
 * definition: for random layouts (text first / last / none, odd sizes, blocks smaller and
 * larger than the kernel tile) and random per-head methods, every query row of every head is in
 * exactly one item, and the keys an item's row computes (its item's key steps minus the steps its
 * 64-row chunk skips, union items of 192-row lists) are exactly those dfa_mask_keep() keeps for
 * it. Runs without a GPU. */
#include <stdlib.h>
#include <string.h>

#include "attn/attn.h"
#include "attn/cuda/attn_sched.h"
#include "attn/cuda/attn_worklist.h"
#include "attn/mask.h"
#include "test.h"

static unsigned long long g_seed = 0x9e3779b97f4a7c15ULL;

static int rnd(int n) { return (int)(test_rng_next(&g_seed) % (unsigned long long)n); }

/* The keys chunk `c` of `it` computes, as the kernel enumerates them: key steps of 128 from each
 * range's start (clipped to its end), minus the chunk's skipped steps. keep[k] = 1 for those.
 * Returns 0 if the skip field is malformed (count > DFA_ACU_MAX_SKIP, past the last step, or no
 * step left), else 1. */
static int chunk_keys(const dfa_acu_worklist *wl, const dfa_acu_item *it, int c, int N, unsigned char *keep) {
    memset(keep, 0, (size_t)N);
    int n_steps = 0;
    for (int j = 0; j < it->n_r; j++) {
        const dfa_acu_range *rg = &wl->ranges[it->r_off + j];
        n_steps += (rg->k1 - rg->k0 + 127) / 128;
    }
    const int first = it->skip[c] & 0xffff, count = it->skip[c] >> 16;
    if (count < 0 || count > DFA_ACU_MAX_SKIP || first + count > n_steps || n_steps - count < 1) return 0;
    if (count == 0 && first != 0) return 0; /* 0 = no skip, nothing else */
    int step = 0;
    for (int j = 0; j < it->n_r; j++) {
        const dfa_acu_range *rg = &wl->ranges[it->r_off + j];
        for (int k = rg->k0; k < rg->k1; k += 128, step++) {
            if (step >= first && step < first + count) continue;
            for (int x = k; x < k + 128 && x < rg->k1; x++)
                if (x >= 0 && x < N) keep[x] = 1;
        }
    }
    return 1;
}

/* rows: DFA_ACU_BM (items inside one mask tile) or DFA_ACU_BM3 (items may span tiles; union items
 * skip whole key steps per 64-row chunk; the per-row key check below, which honours skip, is what
 * makes that exact). items / n_items: the launch order checked (wl's own, or a tail-balanced one
 * over wl's ranges). The wl's own list (items == wl_->items) also has its info.computed_entries
 * checked against 64 (128) rows x the mask keys of each 64-row chunk (128-row item). */
static void check_items(const dfa_attn_layout *l, int H, const int *method, const int *window, int rows,
                        const dfa_acu_worklist *wl_, const dfa_acu_item *items, int n_items) {
    dfa_acu_worklist wl = *wl_;
    wl.items = (dfa_acu_item *)items;
    wl.n_items = n_items;
    const int N = dfa_layout_tokens(l);
    int *seen = calloc((size_t)H * N, sizeof *seen);
    unsigned char *keep = malloc((size_t)N * 3);
    int bad_keys = 0, bad_rows = 0, bad_flags = 0, bad_order = 0, bad_skip = 0;
    int64_t entries = 0, computed = 0;
    int last_bucket_copy = 0;
    for (int i = 0; i < wl.n_items; i++) {
        const dfa_acu_item *it = &wl.items[i];
        const int m = method[it->head];
        const int w = (m == DFA_ATTN_ARROW || m == DFA_ATTN_ARROW_RS) ? window[it->head] : -1;
        if (it->q_len < 1 || it->q_len > rows || it->q0 < 0 || it->q0 + it->q_len > N) bad_rows++;
        /* rows of one item lie in one mask tile (128-row lists) */
        int vs = dfa_layout_vis_start(l);
        int a_vis = it->q0 >= vs && it->q0 < vs + l->n_vis, b_vis = it->q0 + it->q_len - 1 >= vs &&
                                                                   it->q0 + it->q_len - 1 < vs + l->n_vis;
        if (rows == DFA_ACU_BM && a_vis != b_vis) bad_rows++;
        if (rows == DFA_ACU_BM && a_vis && (it->q0 - vs) / l->block != (it->q0 + it->q_len - 1 - vs) / l->block)
            bad_rows++;
        for (int r = it->q0; r < it->q0 + it->q_len && r < N && r >= 0; r++) seen[(size_t)it->head * N + r]++;
        /* skips: 192-row lists only, and only for the item's chunks */
        for (int c = 0; c < 3; c++)
            if (it->skip[c] && (rows == DFA_ACU_BM || 64 * c >= it->q_len || m == DFA_ATTN_CACHE)) bad_skip++;
        if (m == DFA_ATTN_CACHE) {
            if (it->flags != DFA_ACU_ITEM_COPY || it->n_r != 0) bad_flags++;
            last_bucket_copy = 1;
            continue;
        }
        if (last_bucket_copy) bad_order++; /* copies come last */
        if (it->flags != (m == DFA_ATTN_ARROW_RS ? DFA_ACU_ITEM_RESID : 0)) bad_flags++;
        if (it->n_r < 1 || it->n_r > (l->band == DFA_BAND_PLAIN ? 1 : 2)) { /* plain: one range */
            bad_keys++;
            continue;
        }
        int prev_end = -1;
        for (int j = 0; j < it->n_r; j++) {
            const dfa_acu_range *rg = &wl.ranges[it->r_off + j];
            if (rg->k0 < 0 || rg->k1 > N || rg->k0 >= rg->k1 || rg->k0 <= prev_end) bad_keys++;
            prev_end = rg->k1;
        }
        const int n_ch = rows == DFA_ACU_BM ? 1 : (it->q_len + 63) / 64;
        for (int c = 0; c < n_ch && c < 3; c++)
            if (!chunk_keys(&wl, it, rows == DFA_ACU_BM ? 0 : c, N, keep + (size_t)c * N)) bad_skip++;
        for (int r = it->q0; r < it->q0 + it->q_len && r < N; r++) {
            const int c = rows == DFA_ACU_BM ? 0 : (r - it->q0) / 64;
            const unsigned char *kc = keep + (size_t)(c < 3 ? c : 2) * N;
            int64_t row_keys = 0;
            for (int k = 0; k < N; k++) {
                int want = dfa_mask_keep(l, w, r, k);
                if (want != kc[k]) bad_keys++;
                entries += want;
                row_keys += want;
            }
            /* info's convention: 128 rows x keys per 128-row item, 64 rows x keys per 64-row chunk */
            if (r == it->q0 && rows == DFA_ACU_BM) computed += DFA_ACU_BM * row_keys;
            if ((r - it->q0) % 64 == 0 && rows == DFA_ACU_BM3) computed += 64 * row_keys;
        }
    }
    int64_t want_entries = 0;
    for (int h = 0; h < H; h++) {
        const int m = method[h];
        for (int r = 0; r < N; r++) {
            int expect = m == DFA_ATTN_CUDA_NONE ? 0 : 1;
            if (seen[(size_t)h * N + r] != expect) bad_rows++;
        }
        if (m != DFA_ATTN_CUDA_NONE && m != DFA_ATTN_CACHE)
            want_entries += dfa_mask_entries(l, (m == DFA_ATTN_ARROW || m == DFA_ATTN_ARROW_RS) ? window[h] : -1);
    }
    CHECKF(bad_rows == 0, "layout vis=%d text=%d first=%d block=%d: %d row errors", l->n_vis, l->n_text, l->text_first,
           l->block, bad_rows);
    CHECKF(bad_keys == 0, "layout vis=%d text=%d first=%d block=%d rows=%d: %d key errors", l->n_vis, l->n_text,
           l->text_first, l->block, rows, bad_keys);
    CHECKF(bad_skip == 0, "layout vis=%d text=%d first=%d block=%d rows=%d: %d skip errors", l->n_vis, l->n_text,
           l->text_first, l->block, rows, bad_skip);
    CHECKF(bad_flags == 0, "%d flag errors", bad_flags);
    CHECKF(bad_order == 0, "%d copy items before computing items", bad_order);
    CHECKF(entries == want_entries && wl.info.mask_entries == want_entries, "entries %lld / info %lld vs mask %lld",
           (long long)entries, (long long)wl.info.mask_entries, (long long)want_entries);
    if (items == wl_->items)
        CHECKF(wl.info.computed_entries == computed, "computed entries: info %lld, counted %lld",
               (long long)wl.info.computed_entries, (long long)computed);
    free(seen);
    free(keep);
}

static int g_balanced; /* lists that tail balancing changed in check_one (a test that they occur) */

/* The list of `rows` rows for these heads, checked; then its tail-balanced orders for a few CTA
 * counts and B = 1, 2 (128-row items split too), checked the same way. */
static void check_one(const dfa_attn_layout *l, int H, const int *method, const int *window, int rows) {
    dfa_error err = {0};
    dfa_acu_worklist wl;
    dfa_status st = dfa_acu_worklist_build_rows(&wl, l, H, method, window, rows, &err);
    CHECKF(st == DFA_OK, "%s", err.msg);
    if (st != DFA_OK) return;
    check_items(l, H, method, window, rows, &wl, wl.items, wl.n_items);
    const int ctas[3] = {1, 3, 2 + rnd(20)};
    for (int c = 0; c < 3; c++) {
        dfa_acu_balance b = {ctas[c], 1 + rnd(2), 1, NULL};
        dfa_acu_item *items;
        int n;
        st = dfa_acu_worklist_balance(&wl, rows, &b, &items, &n, NULL, &err);
        CHECKF(st == DFA_OK, "%s", err.msg);
        if (!items) continue;
        g_balanced++;
        CHECK(n >= wl.n_items); /* pieces are added, nothing dropped */
        check_items(l, H, method, window, rows, &wl, items, n);
        free(items);
    }
    dfa_acu_worklist_free(&wl);
}

static void test_random_layouts(void) {
    for (int rep = 0; rep < 120; rep++) {
        dfa_attn_layout l = {0};
        l.band = rep % 2 ? DFA_BAND_PLAIN : DFA_BAND_ARROW; /* plain: V1's window over the whole sequence */
        l.n_vis = 1 + rnd(420);
        l.n_text = rnd(4) == 0 ? 0 : rnd(200);
        l.text_first = rnd(2);
        const int blocks[6] = {1, 7, 64, 128, 200, 333};
        l.block = blocks[rnd(6)];
        const int H = 1 + rnd(6);
        int method[8], window[8];
        for (int h = 0; h < H; h++) {
            method[h] = rnd(5) - 1; /* NONE, FULL, ARROW, ARROW_RS, CACHE */
            window[h] = rnd(l.band == DFA_BAND_PLAIN ? 9 : 6) - 1;
        }
        check_one(&l, H, method, window, DFA_ACU_BM);
        check_one(&l, H, method, window, DFA_ACU_BM3);
    }
    /* the balanced orders above were checked too: some must exist (few CTAs, few items) */
    CHECKF(g_balanced > 20, "only %d balanced lists in 120 random layouts", g_balanced);
}

static void test_paper_shape_order(void) {
    /* FLUX-like 4096 + 512: buckets longest first, copies last, every item of a bucket grouped
     * by head (the launch order the kernel relies on for L2 reuse) */
    dfa_attn_layout l = {4096, 512, 1, 128, DFA_BAND_ARROW};
    int method[6] = {DFA_ATTN_FULL, DFA_ATTN_ARROW, DFA_ATTN_CACHE, DFA_ATTN_ARROW, DFA_ATTN_ARROW_RS, DFA_ATTN_FULL};
    int window[6] = {0, 0, 0, 5, 2, 0};
    check_one(&l, 6, method, window, DFA_ACU_BM);
    check_one(&l, 6, method, window, DFA_ACU_BM3);
    dfa_error err = {0};
    dfa_acu_worklist wl;
    CHECK(dfa_acu_worklist_build(&wl, &l, 6, method, window, &err) == DFA_OK);
    CHECK(wl.n_items == 6 * 36);
    int longest_first = 1;
    for (int i = 1; i < wl.n_items; i++) {
        const dfa_acu_item *a = &wl.items[i - 1], *b = &wl.items[i];
        if (a->flags & DFA_ACU_ITEM_COPY && !(b->flags & DFA_ACU_ITEM_COPY)) longest_first = 0;
    }
    CHECK(longest_first);
    /* the first items are the full-length ones (text rows and FULL heads) */
    int64_t k0 = 0;
    for (int j = 0; j < wl.items[0].n_r; j++) k0 += wl.ranges[wl.items[0].r_off + j].k1 - wl.ranges[wl.items[0].r_off + j].k0;
    CHECK(k0 == 4608);
    CHECK(wl.info.copied_tokens == 4608);
    dfa_acu_worklist_free(&wl);
    /* 192-row list: a FULL head is 24 items of 192 rows spanning tiles, an ARROW head's 512 text
     * rows are 192 + 192 + 128 (the text rows see every key: no union with visual tile 0) and its
     * 4096 visual rows 21 union items of 192 rows (tiles 1.5 at a time) + one 64-row item (the
     * last half tile), a CACHE head 24 copies of 192 rows */
    CHECK(dfa_acu_worklist_build_rows(&wl, &l, 6, method, window, DFA_ACU_BM3, &err) == DFA_OK);
    int per_head[6] = {0}, rows192 = 0;
    for (int i = 0; i < wl.n_items; i++) {
        per_head[wl.items[i].head]++;
        rows192 += wl.items[i].q_len == DFA_ACU_BM3;
    }
    CHECK(per_head[0] == 24 && per_head[5] == 24 && per_head[2] == 24);
    CHECK(per_head[1] == 25 && per_head[3] == 25 && per_head[4] == 25);
    CHECK(rows192 == 3 * 24 + 3 * (2 + 21));
    CHECK(wl.info.copied_tokens == 4608);
    dfa_acu_worklist_free(&wl);
    /* an unknown row count is refused */
    CHECK(dfa_acu_worklist_build_rows(&wl, &l, 6, method, window, 64, &err) == DFA_ERR_INVALID_ARG);
}

typedef struct union_count {
    int items, unions, rows192;
} union_count;

/* Items, union items (a skip set) and 192-row items of a 192-row list. */
static union_count count_union(const dfa_acu_worklist *wl) {
    union_count u = {wl->n_items, 0, 0};
    for (int i = 0; i < wl->n_items; i++) {
        const dfa_acu_item *it = &wl->items[i];
        u.unions += (it->skip[0] | it->skip[1] | it->skip[2]) != 0;
        u.rows192 += it->q_len == DFA_ACU_BM3;
    }
    return u;
}

/* One head of method m, window w, over l: the 192-row list's counts (checked for exactness, with
 * its balanced orders, when `check`). */
static union_count union_of(const dfa_attn_layout *l, int m, int w, int check) {
    dfa_error err = {0};
    dfa_acu_worklist wl;
    union_count u = {-1, -1, -1};
    CHECKF(dfa_acu_worklist_build_rows(&wl, l, 1, &m, &w, DFA_ACU_BM3, &err) == DFA_OK, "%s", err.msg);
    if (wl.items == NULL) return u;
    u = count_union(&wl);
    dfa_acu_worklist_free(&wl);
    if (check) check_one(l, 1, &m, &w, DFA_ACU_BM3);
    return u;
}

/* Union items: 192-row items over ARROW visual tiles whose ranges differ by whole 128-key steps.
 * 4096 + 512 text first, block 128, w = 0, by hand: visual tile i sees the text [0, 512) and its
 * own tile; an item of tile i (128 rows) + half of tile i+1 has the union [0, 512) + tiles i, i+1
 * (one range if i = 0) = 4 text steps + 2 band steps, the tile-i chunks skip tile i+1's step, the
 * tile-(i+1) chunk tile i's. 4096 rows = 21 x 192 + 64: 21 union items, one plain 64-row item
 * (the last half tile); the text is 192 + 192 + 128 (the text rows see every key, tile 0 does not:
 * 31 steps apart). 25 items, 23 of 192 rows. */
static void test_union_items(void) {
    dfa_attn_layout l = {4096, 512, 1, 128, DFA_BAND_ARROW};
    dfa_error err = {0};
    dfa_acu_worklist wl;
    int m = DFA_ATTN_ARROW, w = 0;
    CHECK(dfa_acu_worklist_build_rows(&wl, &l, 1, &m, &w, DFA_ACU_BM3, &err) == DFA_OK);
    union_count u = count_union(&wl);
    CHECKF(u.items == 25 && u.unions == 21 && u.rows192 == 23, "4096+512 w=0: %d items, %d unions, %d of 192 rows",
           u.items, u.unions, u.rows192);
    /* the first visual item: rows 512 .. 703 = tile 0 + the first half of tile 1, keys [0, 768),
     * 6 steps; chunks 0, 1 skip step 5 (tile 1's keys), chunk 2 step 4 (tile 0's) */
    int found = 0;
    for (int i = 0; i < wl.n_items; i++) {
        const dfa_acu_item *it = &wl.items[i];
        if (it->q0 != 512) continue;
        found = 1;
        CHECK(it->q_len == 192 && it->n_r == 1);
        CHECK(wl.ranges[it->r_off].k0 == 0 && wl.ranges[it->r_off].k1 == 768);
        CHECK(dfa_acu_skip_first(it->skip[0]) == 5 && dfa_acu_skip_count(it->skip[0]) == 1);
        CHECK(it->skip[1] == it->skip[0]);
        CHECK(dfa_acu_skip_first(it->skip[2]) == 4 && dfa_acu_skip_count(it->skip[2]) == 1);
    }
    CHECK(found);
    /* the second: rows 704 .. 895 = the second half of tile 1 + tile 2, keys [0, 512) + [640, 896) */
    found = 0;
    for (int i = 0; i < wl.n_items; i++) {
        const dfa_acu_item *it = &wl.items[i];
        if (it->q0 != 704) continue;
        found = 1;
        CHECK(it->q_len == 192 && it->n_r == 2);
        CHECK(wl.ranges[it->r_off].k1 == 512 && wl.ranges[it->r_off + 1].k0 == 640 && wl.ranges[it->r_off + 1].k1 == 896);
        CHECK(it->skip[0] == dfa_acu_skip_make(5, 1) && it->skip[1] == dfa_acu_skip_make(4, 1) &&
              it->skip[2] == it->skip[1]);
    }
    CHECK(found);
    dfa_acu_worklist_free(&wl);
    /* without union items (dfa_acu_worklist_build_union, unions 0): the lists up to session 4, 3
     * text items and one 128-row item per visual tile, every item's rows see all its ranges */
    CHECK(dfa_acu_worklist_build_union(&wl, &l, 1, &m, &w, DFA_ACU_BM3, 0, &err) == DFA_OK);
    u = count_union(&wl);
    CHECKF(u.items == 35 && u.unions == 0 && u.rows192 == 2, "unions off: %d items, %d unions, %d of 192 rows",
           u.items, u.unions, u.rows192);
    check_items(&l, 1, &m, &w, DFA_ACU_BM3, &wl, wl.items, wl.n_items);
    dfa_acu_worklist_free(&wl);
    /* 16384 + 512: 16384 = 85 x 192 + 64, same pattern, at every window below the full one (127
     * tiles); 4096 + 512 at w = 34 >= 31 is FULL: one run, 24 plain items */
    const int ws[5] = {0, 6, 13, 34, 61};
    for (int i = 0; i < 5; i++) {
        l.n_vis = 16384;
        u = union_of(&l, DFA_ATTN_ARROW, ws[i], 0);
        CHECKF(u.items == 89 && u.unions == 85 && u.rows192 == 87, "16384+512 w=%d: %d items %d unions %d 192-row",
               ws[i], u.items, u.unions, u.rows192);
        l.n_vis = 4096;
        u = union_of(&l, DFA_ATTN_ARROW, ws[i], 0);
        if (ws[i] < 31)
            CHECKF(u.items == 25 && u.unions == 21 && u.rows192 == 23, "4096+512 w=%d: %d items %d unions %d 192-row",
                   ws[i], u.items, u.unions, u.rows192);
        else CHECK(u.items == 24 && u.unions == 0 && u.rows192 == 24);
    }
    /* exactness (every row computes exactly its mask keys, honouring skip; balanced orders too)
     * over text first / last / none, partial last tiles, windows 0, 1, 3, large, full, ARROW and
     * ARROW_RS; union items must occur wherever the band steps align with the tiles */
    const int texts[5] = {512, 333, 77, 0, 200};
    const int firsts[5] = {1, 1, 1, 1, 0};
    const int vis[3] = {1280, 1200, 1000}; /* 10 tiles; a partial last tile of 48 or 104 rows */
    const int wins[5] = {0, 1, 3, 8, -1};
    for (int t = 0; t < 5; t++)
        for (int v = 0; v < 3; v++)
            for (int wi = 0; wi < 5; wi++) {
                dfa_attn_layout a = {vis[v], texts[t], firsts[t], 128, DFA_BAND_ARROW};
                const int mm = wi % 2 ? DFA_ATTN_ARROW_RS : DFA_ATTN_ARROW;
                u = union_of(&a, mm, wins[wi], 1);
                /* w < full (7 to 9 tiles): 8 to 10 visual tiles, at least 3 union items; fewer
                 * where a text of 333 or 77 tokens precedes the band: tiles i <= w see text and
                 * band as one range whose steps straddle the text's end (vis 1000, text 333, w 3:
                 * tiles 0-3 alone, then tiles 4-7 as 2 union items) */
                const int want = texts[t] % 128 == 0 || !firsts[t] ? 3 : 1;
                if (wins[wi] >= 0 && wins[wi] < 7)
                    CHECKF(u.unions >= want, "vis %d text %d first %d w %d: %d union items", vis[v], texts[t],
                           firsts[t], wins[wi], u.unions);
                if (wins[wi] < 0) CHECK(u.unions == 0);
            }
    /* blocks 64 and 200: steps straddle tile edges, mostly the run-end fallback; exact either way */
    const int blocks[2] = {64, 200};
    for (int b = 0; b < 2; b++)
        for (int wi = 0; wi < 5; wi++) {
            dfa_attn_layout a = {1200, 333, 1, blocks[b], DFA_BAND_ARROW};
            union_of(&a, DFA_ATTN_ARROW, wins[wi], 1);
            a.text_first = 0;
            union_of(&a, DFA_ATTN_ARROW_RS, wins[wi], 1);
        }
    /* mixed heads: FULL, ARROW w, CACHE, NONE, ARROW_RS; balanced for 132 and 7 CTAs at B = 1, 2 */
    dfa_attn_layout a = {2048, 512, 1, 128, DFA_BAND_ARROW};
    int method[6] = {DFA_ATTN_FULL, DFA_ATTN_ARROW, DFA_ATTN_CACHE, DFA_ATTN_CUDA_NONE, DFA_ATTN_ARROW_RS,
                     DFA_ATTN_ARROW};
    int window[6] = {0, 0, 0, 0, 2, 5};
    CHECK(dfa_acu_worklist_build_rows(&wl, &a, 6, method, window, DFA_ACU_BM3, &err) == DFA_OK);
    check_items(&a, 6, method, window, DFA_ACU_BM3, &wl, wl.items, wl.n_items);
    u = count_union(&wl);
    /* 2048 = 10 x 192 + 128: 10 union items per ARROW head (+ a 128-row item of tile 15) */
    CHECKF(u.unions == 3 * 10, "mixed heads: %d union items", u.unions);
    const int ctas[2] = {132, 7};
    int n_bal = 0, n_cut = 0;
    for (int c = 0; c < 2; c++)
        for (int bb = 1; bb <= 2; bb++) {
            dfa_acu_balance bal = {ctas[c], bb, 0, NULL};
            dfa_acu_item *items;
            int n;
            CHECK(dfa_acu_worklist_balance(&wl, DFA_ACU_BM3, &bal, &items, &n, NULL, &err) == DFA_OK);
            if (!items) continue;
            n_bal++;
            check_items(&a, 6, method, window, DFA_ACU_BM3, &wl, items, n);
            for (int i = 0; i < n; i++) /* union pieces shorter than 192 rows */
                n_cut += (items[i].skip[0] | items[i].skip[1] | items[i].skip[2]) && items[i].q_len < 192;
            free(items);
        }
    CHECKF(n_bal >= 1, "no balanced order for the mixed heads (%d)", n_bal);
    dfa_acu_worklist_free(&wl);
    CHECKF(n_cut > 0, "no union item cut by the balancer (%d balanced orders)", n_bal);
}

/* plain band, FLUX-like [text, image]: one contiguous key range per query tile, the text tile
 * banded like the image tiles (not full), and ARROW over the same layout differs */
static void test_plain_ranges(void) {
    dfa_attn_layout l = {1024, 200, 1, 128, DFA_BAND_PLAIN}; /* text tiles 0-1, visual tiles 2-9 */
    int method[3] = {DFA_ATTN_ARROW, DFA_ATTN_ARROW_RS, DFA_ATTN_FULL}, window[3] = {1, 3, 0};
    check_one(&l, 3, method, window, DFA_ACU_BM);
    check_one(&l, 3, method, window, DFA_ACU_BM3);
    dfa_error err = {0};
    dfa_acu_worklist wl;
    CHECK(dfa_acu_worklist_build(&wl, &l, 3, method, window, &err) == DFA_OK);
    int text_row_ok = 0, last_ok = 0;
    for (int i = 0; i < wl.n_items; i++) {
        const dfa_acu_item *it = &wl.items[i];
        const dfa_acu_range *r = &wl.ranges[it->r_off];
        if (it->head != 0) continue;
        CHECK(it->n_r == 1);
        /* text tile 0 (tokens 0..127) sees tiles 0..1 = the 200 text tokens only */
        if (it->q0 == 0) text_row_ok = r->k0 == 0 && r->k1 == 200;
        /* the last visual tile (tile 9, tokens 1096..1223) sees tiles 8..9 = tokens 968..1223 */
        if (it->q0 == 1096) last_ok = r->k0 == 968 && r->k1 == 1224;
    }
    CHECK(text_row_ok);
    CHECK(last_ok);
    dfa_acu_worklist_free(&wl);
}

static void test_bad_input(void) {
    dfa_error err = {0};
    dfa_acu_worklist wl;
    dfa_attn_layout l = {100, 10, 1, 0, DFA_BAND_ARROW};
    int m[1] = {DFA_ATTN_FULL}, w[1] = {0};
    CHECK(dfa_acu_worklist_build(&wl, &l, 1, m, w, &err) == DFA_ERR_INVALID_ARG);
    l.block = 128;
    m[0] = 9;
    CHECK(dfa_acu_worklist_build(&wl, &l, 1, m, w, &err) == DFA_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, "method 9") != NULL);
}

int main(void) {
    RUN(test_random_layouts);
    RUN(test_paper_shape_order);
    RUN(test_union_items);
    RUN(test_plain_ranges);
    RUN(test_bad_input);
    return test_summary();
}
