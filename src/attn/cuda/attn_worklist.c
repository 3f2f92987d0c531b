/* attn_worklist.c - the CUDA attention kernel's work list (see attn_worklist.h). */
#include "attn/cuda/attn_worklist.h"

#include "attn/attn.h"

#include <stdlib.h>
#include <string.h>

typedef struct host_item {
    dfa_acu_item it;
    int64_t cost; /* keys visited, then the cost bucket; -1 for copies */
} host_item;

/* Launch order: longest first by cost bucket (8 buckets of the longest item's cost, so that
 * short items and the copies of CACHE heads fill the tail), and inside a bucket by head, then
 * query tile, so that the CTAs running at one time read the same keys and values (L2 reuse).
 * Measured on an H100 (bench/RESULTS.md): exact longest-first interleaves heads and ran
 * arrow plans at 16k tokens 15-30 % slower; pure head order left long text-row items for the
 * tail and ran short arrow plans up to 40 % slower. */
static int cmp_items(const void *a, const void *b) {
    const host_item *x = (const host_item *)a, *y = (const host_item *)b;
    if (x->cost != y->cost) return x->cost > y->cost ? -1 : 1;
    if (x->it.head != y->it.head) return x->it.head - y->it.head;
    return x->it.q0 - y->it.q0;
}

static dfa_acu_range range(int k0, int k1) {
    dfa_acu_range r = {k0, k1};
    return r;
}

/* Key ranges of query tile qt under window w (w < 0: full), in token order, adjacent ones
 * merged. At most 2 (PLAIN: always 1, the tiles qt - w .. qt + w). Returns the count. */
static int tile_ranges(const dfa_attn_layout *l, int w, int qt, dfa_acu_range *r) {
    const int N = dfa_layout_tokens(l);
    dfa_attn_tiles t;
    dfa_layout_tiles(l, &t);
    int qi;
    if (l->band == DFA_BAND_PLAIN && w >= 0) {
        int s0, n0, s1, n1;
        dfa_tile_span(l, qt - w < 0 ? 0 : qt - w, &s0, &n0);
        dfa_tile_span(l, qt + w > t.n_tiles - 1 ? t.n_tiles - 1 : qt + w, &s1, &n1);
        r[0] = range(s0, s1 + n1);
        return 1;
    }
    if (w < 0 || w >= dfa_mask_full_window(l) || !dfa_tile_is_visual(l, qt, &qi)) {
        r[0] = range(0, N);
        return 1;
    }
    const int vs = dfa_layout_vis_start(l), ts = dfa_layout_text_start(l);
    const int j0 = qi - w < 0 ? 0 : qi - w;
    const int j1 = qi + w > t.n_vis_tiles - 1 ? t.n_vis_tiles - 1 : qi + w;
    int b1 = vs + (j1 + 1) * l->block;
    if (b1 > vs + l->n_vis) b1 = vs + l->n_vis;
    const dfa_acu_range band = range(vs + j0 * l->block, b1);
    if (l->n_text == 0) {
        r[0] = band;
        return 1;
    }
    const dfa_acu_range text = range(ts, ts + l->n_text);
    const dfa_acu_range first = l->text_first ? text : band, second = l->text_first ? band : text;
    if (first.k1 == second.k0) {
        r[0] = range(first.k0, second.k1);
        return 1;
    }
    r[0] = first;
    r[1] = second;
    return 2;
}

/* Bucket the costs, sort for launch, hand items and ranges to wl (frees items). */
static void finish(dfa_acu_worklist *wl, host_item *items, int ni, dfa_acu_range *ranges, int nr) {
    int64_t max_cost = 1;
    for (int i = 0; i < ni; i++)
        if (items[i].cost > max_cost) max_cost = items[i].cost;
    for (int i = 0; i < ni; i++)
        if (items[i].cost >= 0) items[i].cost = items[i].cost * 8 / max_cost;
    qsort(items, (size_t)ni, sizeof *items, cmp_items);
    for (int i = 0; i < ni; i++) wl->items[i] = items[i].it;
    free(items);
    wl->ranges = ranges;
    wl->n_items = ni;
    wl->n_ranges = nr;
    wl->info.n_items = ni;
}

void dfa_acu_worklist_free(dfa_acu_worklist *wl) {
    if (!wl) return;
    free(wl->items);
    free(wl->ranges);
    memset(wl, 0, sizeof *wl);
}

dfa_status dfa_acu_worklist_build(dfa_acu_worklist *wl, const dfa_attn_layout *layout, int n_heads,
                                  const int *method, const int *window, dfa_error *err) {
    return dfa_acu_worklist_build_rows(wl, layout, n_heads, method, window, DFA_ACU_BM, err);
}

static int same_ranges(const dfa_acu_range *a, int na, const dfa_acu_range *b, int nb) {
    if (na != nb) return 0;
    for (int i = 0; i < na; i++)
        if (a[i].k0 != b[i].k0 || a[i].k1 != b[i].k1) return 0;
    return 1;
}

static int64_t range_keys(const dfa_acu_range *r, int n) {
    int64_t keys = 0;
    for (int i = 0; i < n; i++) keys += r[i].k1 - r[i].k0;
    return keys;
}

/* One item of head h (method m) over rows [q0, q0 + len) with ranges[r_off .. r_off + n_r) and the
 * chunk skips `skip` (NULL: none); chunk_keys = keys computed summed over its 64-row chunks (for
 * 128-row lists: the item's keys). Returns the new item count. */
static int push_item(host_item *items, int ni, dfa_acu_worklist *wl, int h, int m, int q0, int len, int r_off,
                     int n_r, const int *skip, int64_t chunk_keys, int rows) {
    dfa_attn_cuda_plan_info *info = &wl->info;
    host_item *hi = &items[ni++];
    memset(&hi->it, 0, sizeof hi->it);
    hi->it.head = h;
    hi->it.q0 = q0;
    hi->it.q_len = len;
    hi->it.r_off = r_off;
    hi->it.n_r = n_r;
    if (skip)
        for (int c = 0; c < 3; c++) hi->it.skip[c] = skip[c];
    if (m == DFA_ATTN_CACHE) {
        hi->it.flags = DFA_ACU_ITEM_COPY;
        hi->cost = -1; /* copies last: they fill the tail */
        wl->has_copy = 1;
        info->n_copy_items++;
        info->copied_tokens += len;
        return ni;
    }
    if (m == DFA_ATTN_ARROW_RS) {
        hi->it.flags = DFA_ACU_ITEM_RESID;
        wl->has_resid = 1;
    }
    /* 128-row lists: every item costs its keys (one CTA shape); 192-row lists: the keys each
     * active 64-row warpgroup computes, summed */
    hi->cost = chunk_keys;
    info->computed_entries += (rows == DFA_ACU_BM ? (int64_t)DFA_ACU_BM : 64) * chunk_keys;
    return ni;
}

/* Items of up to `rows` rows over query rows [q0, q0 + len) of head h, all with the key ranges
 * ranges[r_off .. r_off + n_r) (n_r = 0: a CACHE copy). Returns the new item count. */
static int add_items(host_item *items, int ni, dfa_acu_worklist *wl, int h, int m, int q0, int len, int r_off,
                     int n_r, const dfa_acu_range *ranges, int rows) {
    const int64_t keys = range_keys(ranges + r_off, n_r);
    for (int c = 0; c < len; c += rows) {
        const int ql = len - c < rows ? len - c : rows;
        const int64_t chunks = rows == DFA_ACU_BM ? 1 : (ql + 63) / 64;
        ni = push_item(items, ni, wl, h, m, q0 + c, ql, r_off, n_r, NULL, keys * chunks, rows);
    }
    return ni;
}

/* ---- union items (192-row lists) ---- */

/* A run: tiles of one head with identical key ranges, rows [q0, q0 + len), ranges[r_off ..). */
typedef struct run {
    int q0, len, r_off, n_r;
} run;

static int cmp_range(const void *a, const void *b) {
    const dfa_acu_range *x = (const dfa_acu_range *)a, *y = (const dfa_acu_range *)b;
    return x->k0 != y->k0 ? (x->k0 < y->k0 ? -1 : 1) : (x->k1 > y->k1) - (x->k1 < y->k1);
}

/* Can chunks 0 .. nc-1 (chunk c in run ch[c]) form one item? The union of the runs' ranges must
 * be <= 2 ranges after merging (u, *nu); every key step of the union (DFA_ACU_STEP keys from each
 * range start, clipped to its end) lies wholly inside or wholly outside each chunk's ranges; the
 * steps outside are one contiguous run of 1 .. DFA_ACU_MAX_SKIP (or none) and at least one is
 * inside; skip[c] encodes them; keys[c] = the keys chunk c computes. */
static int union_ok(const run *runs, const int *ch, int nc, const dfa_acu_range *ranges, dfa_acu_range *u, int *nu,
                    int *skip, int64_t *keys) {
    dfa_acu_range all[3 * 2];
    int na = 0;
    for (int c = 0; c < nc; c++) {
        const run *r = &runs[ch[c]];
        for (int i = 0; i < r->n_r; i++) all[na++] = ranges[r->r_off + i];
    }
    qsort(all, (size_t)na, sizeof *all, cmp_range);
    int n = 0;
    for (int i = 0; i < na; i++) {
        if (n > 0 && all[i].k0 <= u[n - 1].k1) {
            if (all[i].k1 > u[n - 1].k1) u[n - 1].k1 = all[i].k1;
            continue;
        }
        if (n == 2) return 0;
        u[n++] = all[i];
    }
    *nu = n;
    int n_steps = 0;
    for (int i = 0; i < n; i++) n_steps += (u[i].k1 - u[i].k0 + DFA_ACU_STEP - 1) / DFA_ACU_STEP;
    if (n_steps >= 0xffff) return 0; /* the skip encoding's 16 bits */
    for (int c = 0; c < nc; c++) {
        const run *r = &runs[ch[c]];
        const dfa_acu_range *cr = ranges + r->r_off;
        int step = 0, first = -1, count = 0, computed = 0;
        for (int i = 0; i < n; i++)
            for (int k = u[i].k0; k < u[i].k1; k += DFA_ACU_STEP, step++) {
                const int e = k + DFA_ACU_STEP < u[i].k1 ? k + DFA_ACU_STEP : u[i].k1;
                int in = 0;
                for (int j = 0; j < r->n_r; j++) {
                    const int a = k > cr[j].k0 ? k : cr[j].k0, b = e < cr[j].k1 ? e : cr[j].k1;
                    if (b > a) in += b - a;
                }
                if (in == e - k) {
                    computed++;
                    continue;
                }
                if (in != 0) return 0;               /* a partial step */
                if (count > 0 && first + count != step) return 0; /* a second skipped run */
                if (count == 0) first = step;
                count++;
            }
        /* count <= DFA_ACU_MAX_SKIP is also the cost guard: the CTA streams at most that many
         * steps more than any of its chunks computes */
        if (count > DFA_ACU_MAX_SKIP || computed < 1) return 0;
        skip[c] = dfa_acu_skip_make(first, count);
        keys[c] = range_keys(cr, r->n_r);
    }
    return 1;
}

/* The items of a computed head of a 192-row list from its runs (see attn_worklist.h): from row p,
 * chunks of 64 rows, each clipped to its run's end; a short chunk ends the item; a chunk in
 * another run than the first chunk's is taken if union_ok. Items of one run share its ranges
 * (the balancer re-cuts runs by r_off); union items get their own. Returns the new item count. */
static int add_union_items(host_item *items, int ni, dfa_acu_worklist *wl, int h, int m, const run *runs,
                           int n_runs, dfa_acu_range *ranges, int *nr) {
    int ri = 0; /* the run of row p */
    const int end = runs[n_runs - 1].q0 + runs[n_runs - 1].len;
    for (int p = runs[0].q0; p < end;) {
        int ch[3] = {0, 0, 0}, n_ch = 0, e = p, nu = 0, skip[3] = {0, 0, 0}, rc = ri, mixed = 0;
        int64_t keys[3] = {0, 0, 0};
        dfa_acu_range u[2];
        for (int c = 0; c < 3 && e < end; c++) {
            if (c > 0 && e - (p + 64 * (c - 1)) < 64) break; /* the previous chunk was short */
            while (runs[rc].q0 + runs[rc].len <= e) rc++;
            const int run_end = runs[rc].q0 + runs[rc].len;
            const int ce = e + 64 < run_end ? e + 64 : run_end;
            ch[c] = rc;
            const int mix = mixed || rc != ch[0];
            if (mix) {
                int s2[3] = {0, 0, 0}, nu2;
                int64_t k2[3] = {0, 0, 0};
                dfa_acu_range u2[2];
                if (!union_ok(runs, ch, c + 1, ranges, u2, &nu2, s2, k2)) break;
                memcpy(skip, s2, sizeof skip);
                memcpy(keys, k2, sizeof keys);
                memcpy(u, u2, sizeof u);
                nu = nu2;
            }
            mixed = mix;
            n_ch = c + 1;
            e = ce;
        }
        /* n_ch >= 1: the first chunk alone is its run's */
        if (!mixed) {
            const run *r = &runs[ch[0]];
            const int64_t k = range_keys(ranges + r->r_off, r->n_r) * n_ch;
            ni = push_item(items, ni, wl, h, m, p, e - p, r->r_off, r->n_r, NULL, k, DFA_ACU_BM3);
        } else {
            const int off = *nr;
            for (int i = 0; i < nu; i++) ranges[(*nr)++] = u[i];
            ni = push_item(items, ni, wl, h, m, p, e - p, off, nu, skip, keys[0] + keys[1] + keys[2], DFA_ACU_BM3);
        }
        p = e;
        while (ri < n_runs && runs[ri].q0 + runs[ri].len <= p) ri++;
    }
    return ni;
}

dfa_status dfa_acu_worklist_build_rows(dfa_acu_worklist *wl, const dfa_attn_layout *layout, int n_heads,
                                       const int *method, const int *window, int rows, dfa_error *err) {
    return dfa_acu_worklist_build_union(wl, layout, n_heads, method, window, rows, 1, err);
}

dfa_status dfa_acu_worklist_build_union(dfa_acu_worklist *wl, const dfa_attn_layout *layout, int n_heads,
                                        const int *method, const int *window, int rows, int unions, dfa_error *err) {
    memset(wl, 0, sizeof *wl);
    if (rows != DFA_ACU_BM && rows != DFA_ACU_BM3)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda work list: %d rows per item (expected %d or %d)", rows,
                 DFA_ACU_BM, DFA_ACU_BM3);
    if (dfa_layout_valid(layout))
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda work list: layout invalid (n_vis=%d n_text=%d block=%d)",
                 layout->n_vis, layout->n_text, layout->block);
    if (n_heads < 1 || n_heads > 4096) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda work list: n_heads=%d", n_heads);
    for (int h = 0; h < n_heads; h++)
        if (method[h] < DFA_ATTN_CUDA_NONE || method[h] >= DFA_ATTN_METHOD_COUNT)
            DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda work list: head %d method %d out of range", h, method[h]);
    dfa_attn_tiles t;
    dfa_layout_tiles(layout, &t);
    /* a run of tiles gives at most the sum of its tiles' ceil(len / rows) items; with union items
     * (192 rows) an item has 192 rows or ends where a run ends: at most N / 192 + runs per head */
    const int chunks_per_tile = (layout->block + rows - 1) / rows;
    const int64_t max_items =
        (int64_t)n_heads * (t.n_tiles * chunks_per_tile + (rows == DFA_ACU_BM3 ? dfa_layout_tokens(layout) / rows + 1 : 0));
    if (max_items > (1 << 30))
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda work list: %lld items", (long long)max_items);
    /* ranges: 2 per run, and per union item (each spans a run boundary of its own) 2 more */
    host_item *items = malloc((size_t)max_items * sizeof *items);
    dfa_acu_range *ranges = malloc((size_t)n_heads * t.n_tiles * 4 * sizeof *ranges);
    run *runs = malloc((size_t)t.n_tiles * sizeof *runs);
    wl->items = malloc((size_t)max_items * sizeof *wl->items);
    if (!items || !ranges || !runs || !wl->items) {
        free(items);
        free(ranges);
        free(runs);
        dfa_acu_worklist_free(wl);
        DFA_FAIL(err, DFA_ERR_OOM, "attn_cuda work list: out of host memory (%lld items)", (long long)max_items);
    }
    dfa_attn_cuda_plan_info *info = &wl->info;
    const int merge = rows != DFA_ACU_BM;
    int ni = 0, nr = 0;
    for (int h = 0; h < n_heads; h++) {
        const int m = method[h];
        if (m == DFA_ATTN_CUDA_NONE) continue;
        const int w = (m == DFA_ATTN_ARROW || m == DFA_ATTN_ARROW_RS) ? window[h] : -1;
        if (m != DFA_ATTN_CACHE) info->mask_entries += dfa_mask_entries(layout, w);
        /* the runs of this head (merged only for 192-row lists) */
        int n_runs = 0;
        for (int qt = 0; qt < t.n_tiles; qt++) {
            int qs, ql;
            dfa_tile_span(layout, qt, &qs, &ql);
            dfa_acu_range tr[2];
            const int n_r = m != DFA_ATTN_CACHE ? tile_ranges(layout, w, qt, tr) : 0;
            run *o = n_runs > 0 ? &runs[n_runs - 1] : NULL;
            if (merge && o && o->q0 + o->len == qs && same_ranges(ranges + o->r_off, o->n_r, tr, n_r)) {
                o->len += ql;
                continue;
            }
            runs[n_runs++] = (run){qs, ql, nr, n_r};
            for (int i = 0; i < n_r; i++) ranges[nr++] = tr[i];
        }
        if (merge && unions && m != DFA_ATTN_CACHE) ni = add_union_items(items, ni, wl, h, m, runs, n_runs, ranges, &nr);
        else
            for (int i = 0; i < n_runs; i++)
                ni = add_items(items, ni, wl, h, m, runs[i].q0, runs[i].len, runs[i].r_off, runs[i].n_r, ranges, rows);
    }
    free(runs);
    finish(wl, items, ni, ranges, nr);
    return DFA_OK;
}

/* Visual key tiles [j0, j1] (clipped to the visual tiles) as a token range; 0 if empty. */
static int vis_range(const dfa_attn_layout *l, int nvt, int j0, int j1, dfa_acu_range *r) {
    if (j0 < 0) j0 = 0;
    if (j1 > nvt - 1) j1 = nvt - 1;
    if (j0 > j1) return 0;
    const int vs = dfa_layout_vis_start(l);
    int b1 = vs + (j1 + 1) * l->block;
    if (b1 > vs + l->n_vis) b1 = vs + l->n_vis;
    *r = range(vs + j0 * l->block, b1);
    return 1;
}

dfa_status dfa_acu_worklist_build_rings(dfa_acu_worklist *wl, const dfa_attn_layout *layout, int n_heads, int n_win,
                                        const int *win, dfa_error *err) {
    memset(wl, 0, sizeof *wl);
    if (dfa_layout_valid(layout))
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda ring list: layout invalid (n_vis=%d n_text=%d block=%d)",
                 layout->n_vis, layout->n_text, layout->block);
    if (layout->band != DFA_BAND_ARROW)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda ring list: rings are arrow band distances, not the %s band",
                 dfa_band_name(layout->band));
    if (n_heads < 1 || n_heads > 4096) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda ring list: n_heads=%d", n_heads);
    if (n_win < 1 || n_win > DFA_ACU_RING_MAX_WIN)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda ring list: %d windows (1 to %d)", n_win, DFA_ACU_RING_MAX_WIN);
    const int fw = dfa_mask_full_window(layout);
    for (int i = 0; i < n_win; i++)
        if (win[i] < 0 || win[i] >= fw || (i > 0 && win[i] <= win[i - 1]))
            DFA_FAIL(err, DFA_ERR_INVALID_ARG,
                     "attn_cuda ring list: windows must ascend strictly within 0..%d (window %d is %d)", fw - 1, i,
                     win[i]);
    dfa_attn_tiles t;
    dfa_layout_tiles(layout, &t);
    const int chunks_per_tile = (layout->block + DFA_ACU_BM - 1) / DFA_ACU_BM;
    const int n_seg = n_win + 1;
    const int64_t max_items = (int64_t)n_heads * t.n_tiles * chunks_per_tile * n_seg;
    if (max_items > (1 << 30))
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda ring list: %lld items", (long long)max_items);
    host_item *items = malloc((size_t)max_items * sizeof *items);
    dfa_acu_range *ranges = malloc((size_t)n_heads * t.n_tiles * n_seg * 2 * sizeof *ranges);
    wl->items = malloc((size_t)max_items * sizeof *wl->items);
    if (!items || !ranges || !wl->items) {
        free(items);
        free(ranges);
        dfa_acu_worklist_free(wl);
        DFA_FAIL(err, DFA_ERR_OOM, "attn_cuda ring list: out of host memory (%lld items)", (long long)max_items);
    }
    int ni = 0, nr = 0;
    for (int h = 0; h < n_heads; h++) {
        wl->info.mask_entries += dfa_mask_entries(layout, -1);
        for (int qt = 0; qt < t.n_tiles; qt++) {
            int qs, ql, qi;
            dfa_tile_span(layout, qt, &qs, &ql);
            const int vis = dfa_tile_is_visual(layout, qt, &qi);
            for (int s = 0; s < (vis ? n_seg : 1); s++) {
                int r_off = nr, n_r;
                if (s == 0) n_r = tile_ranges(layout, vis ? win[0] : -1, qt, ranges + nr);
                else { /* the ring lo < |qi - j| <= hi, left then right */
                    const int lo = win[s - 1], hi = s < n_win ? win[s] : t.n_vis_tiles;
                    n_r = vis_range(layout, t.n_vis_tiles, qi - hi, qi - lo - 1, ranges + nr);
                    n_r += vis_range(layout, t.n_vis_tiles, qi + lo + 1, qi + hi, ranges + nr + n_r);
                }
                if (n_r == 0) continue; /* no keys: the combine skips this segment for the tile */
                const int n0 = ni; /* the items of a computed head, then their output slot */
                ni = add_items(items, ni, wl, h, DFA_ATTN_FULL, qs, ql, r_off, n_r, ranges, DFA_ACU_BM);
                for (int i = n0; i < ni; i++) items[i].it.flags = s << DFA_ACU_ITEM_SLOT_SHIFT;
                nr += n_r;
            }
        }
    }
    finish(wl, items, ni, ranges, nr);
    return DFA_OK;
}
