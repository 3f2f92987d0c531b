/* attn_worklist.h - the CUDA attention kernel's work list, built on the host (plain C, so that
 * the CPU tests check it against the mask definition without a GPU).
 *
 * One item = one head and up to DFA_ACU_BM query rows inside one mask tile (128-row lists), or up
 * to DFA_ACU_BM3 rows (dfa_acu_worklist_build_rows) of tiles that share their key ranges or, for a
 * "union item", of adjacent tiles whose ranges differ by whole key steps (see skip below), with the
 * key ranges [k0, k1) that the item's rows visit (at most 2: the text segment and the visual band,
 * merged when adjacent; one under the PLAIN band), or a copy of the head's cache (CACHE). Items come
 * ordered for launch: 8 cost buckets longest first, inside a bucket by head then query position;
 * copies last. */
#ifndef DFA_ATTN_CUDA_WORKLIST_H
#define DFA_ATTN_CUDA_WORKLIST_H

#include "attn/cuda/attn_cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DFA_ACU_BM 128  /* query rows per item: the kernels' query tile */
#define DFA_ACU_BM3 192 /* query rows per item of variants 4/5 at D <= 64 (3 consumer warpgroups) */
/* flags: COPY, RESID, and (ring lists) the output slot in the bits from SLOT_SHIFT up */
enum { DFA_ACU_ITEM_COPY = 1, DFA_ACU_ITEM_RESID = 2, DFA_ACU_ITEM_SLOT_SHIFT = 4 };

/* Keys per key step of the kernels (the K/V tile), and the most steps a 64-row chunk may skip
 * (the D=64 K/V ring has 4 stages: a consumer must never skip as many as the ring holds). */
#define DFA_ACU_STEP 128
#define DFA_ACU_MAX_SKIP 2

typedef struct dfa_acu_item {
    int head, q0, q_len, flags, r_off, n_r; /* ranges[r_off .. r_off + n_r) */
    /* 192-row lists only (0 elsewhere): chunk c (rows q0 + 64c .. q0 + 64c + 63) does NOT compute
     * the item's key steps [first, first + count), skip[c] = first | (count << 16), 0 = none.
     * Key steps: for each range r in order, k = r.k0, r.k0 + 128, ... while k < r.k1, each step
     * the keys [k, min(k + 128, r.k1)). A step is skipped whole: a chunk computes exactly its
     * rows' mask keys = the item's steps minus its skipped ones (count <= DFA_ACU_MAX_SKIP, and
     * at least one step computed). */
    int skip[3];
} dfa_acu_item;

typedef struct dfa_acu_range {
    int k0, k1;
} dfa_acu_range;

typedef struct dfa_acu_worklist {
    dfa_acu_item *items;
    dfa_acu_range *ranges;
    int n_items, n_ranges;
    int has_copy, has_resid;
    dfa_attn_cuda_plan_info info; /* variant left 0 */
} dfa_acu_worklist;

/* method[h]: dfa_attn_method or DFA_ATTN_CUDA_NONE (no items); window[h] read for ARROW and
 * ARROW_RS (tiles, < 0 = full). */
dfa_status dfa_acu_worklist_build(dfa_acu_worklist *wl, const dfa_attn_layout *layout, int n_heads,
                                  const int *method, const int *window, dfa_error *err);
/* rows = DFA_ACU_BM: the list above. rows = DFA_ACU_BM3: runs of consecutive tiles of a head with
 * identical key ranges (every tile of a FULL head, the text tiles of an ARROW head) are merged and
 * cut into items of up to 192 rows that may span tiles. Where the ranges change (ARROW visual
 * tiles), an item may go on into the next tiles as a union item: its ranges are the union of its
 * tiles' ranges (at most 2 after merging), every 64-row chunk lies in one run of equal ranges, and
 * each chunk skips the whole key steps outside its own ranges (skip above; at most
 * DFA_ACU_MAX_SKIP, one contiguous run, never a partial step). Where that is not possible (block
 * not 128, steps straddling a tile edge) the item ends at the run's end (<= 192 rows inside it).
 * Exact either way: every row of an item computes exactly its mask's keys. Cost buckets and
 * info.computed_entries count 64 rows x the keys each chunk computes. */
dfa_status dfa_acu_worklist_build_rows(dfa_acu_worklist *wl, const dfa_attn_layout *layout, int n_heads,
                                       const int *method, const int *window, int rows, dfa_error *err);
/* As dfa_acu_worklist_build_rows; unions = 0: no union items (every item's rows see all of its
 * ranges: the 192-row lists up to session 4, for A/B runs and fits to measurements of them). */
dfa_status dfa_acu_worklist_build_union(dfa_acu_worklist *wl, const dfa_attn_layout *layout, int n_heads,
                                        const int *method, const int *window, int rows, int unions, dfa_error *err);
void dfa_acu_worklist_free(dfa_acu_worklist *wl);

/* RING lists (one pass for FULL and several ARROW windows, see attn_cuda.h "ring"): windows
 * win[0] < .. < win[n_win-1], each below dfa_mask_full_window. The keys of a visual query tile
 * i are split into n_win + 1 disjoint segments: segment 0 = the ARROW(win[0]) mask (text keys
 * and visual tiles |i - j| <= win[0]); segment s (1 .. n_win - 1) = visual tiles
 * win[s-1] < |i - j| <= win[s]; segment n_win = |i - j| > win[n_win-1]. Each is at most two
 * ranges (left and right of the band). Text query tiles: one item, every key, in segment 0.
 * An item's segment is its output slot (flags >> DFA_ACU_ITEM_SLOT_SHIFT); segments without
 * keys have no item (dfa_acu_ring_has_seg says which). */
#define DFA_ACU_RING_MAX_WIN DFA_ATTN_CUDA_RING_MAX_WIN
dfa_status dfa_acu_worklist_build_rings(dfa_acu_worklist *wl, const dfa_attn_layout *layout, int n_heads, int n_win,
                                        const int *win, dfa_error *err);

#ifdef __CUDACC__
#define DFA_ACU_HD __host__ __device__
#else
#define DFA_ACU_HD
#endif
/* The skipped key steps of a chunk: the first, and how many (0: none). */
static inline DFA_ACU_HD int dfa_acu_skip_first(int s) { return s & 0xffff; }
static inline DFA_ACU_HD int dfa_acu_skip_count(int s) { return (s >> 16) & 0xffff; }
static inline DFA_ACU_HD int dfa_acu_skip_make(int first, int count) { return count > 0 ? first | (count << 16) : 0; }

/* Does segment s (>= 1) of a visual query in visual tile qi (of nvt) have keys? win as above. */
static inline DFA_ACU_HD int dfa_acu_ring_has_seg(int nvt, int qi, const int *win, int s) {
    const int lo = win[s - 1];
    return qi - lo - 1 >= 0 || qi + lo + 1 <= nvt - 1;
}

#ifdef __cplusplus
}
#endif
#endif
