/* attn_cuda.h - the fused head-wise multi-strategy attention kernel (DiTFastAttnV2 sec. 3.3)
 * for NVIDIA Hopper, behind a plain C interface.
 *
 * One launch computes one attention layer in which every head picks its own method:
 *   FULL      softmax(Q K^T * scale) V over all N keys;
 *   ARROW(w)  the band mask of src/attn/mask.h (visual query tile i sees visual key tiles
 *             |i-j| <= w plus every text key; text rows full), computed tile by tile, every
 *             computed tile dense apart from the short tile at a segment's end;
 *   ARROW_RS  ARROW(w) + R, R a cached residual buffer (V1's window attention with residual
 *             sharing; R = FULL - ARROW stored at the last refresh, see
 *             dfa_attn_cuda_residual());
 *   CACHE     no attention: the head's slice of a cached output buffer is copied in.
 * Methods are dfa_attn_method values (attn/attn.h).
 *
 * Tensors q, k, v, out, cache, resid: [B, N, H, D] row-major, bf16 or fp16 (one dtype for
 * all), token stride H*D; f32 accumulation; D any multiple of 8 from 8 to 256; non-causal;
 * any N; text before, after, or absent (the layout). Variant 1 runs every D (64 and 128 on
 * exact kernels, others on kernels zero-padded to 32/64/80/128/256 columns); variants 2 and 3
 * (wgmma) run D = 64 and 128, and 72..120 on the D=128 kernel (TMA zero-fills the columns past
 * D); a plan built for them runs any other D on variant 1's kernel. Variant 5 runs D = 64 on
 * the same kernel with 3 consumer warpgroups (192-row items) and every other D as variant 2.
 *
 * The work list (for each head and query tile: the key ranges it visits, CACHE heads as copy
 * items) is built on the host once per plan entry by dfa_attn_cuda_plan_build(), uploaded to
 * one device buffer, ordered longest-first, and reused by every launch.
 * Plans of the persistent variants also keep the list's order re-cut at its tail for B = 1 and
 * B = 2 on this device's SM count, where attn_sched.h's model says it pays; the run picks by its B
 * (dfa_attn_cuda_plan_build_opt with DFA_ATTN_CUDA_BALANCE_OFF: off).
 *
 * Tile sizes: the kernels' query tile is 128 rows and their key step 64 (variant 1) or 128
 * (variant 2) keys; work items never cross a mask tile, so any mask block >= 1 gives the
 * exact mask, and block = 128 (the plan default) makes every item one full query tile with
 * whole key steps. Other blocks are exact but pad partial tiles. Variant 5 at D=64: query
 * tile 192 rows; its items span tiles only where the tiles' key ranges are identical. */
#ifndef DFA_ATTN_CUDA_H
#define DFA_ATTN_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "attn/mask.h"
#include "core/error.h"

#ifdef __cplusplus
extern "C" {
#endif

enum {
    DFA_ATTN_CUDA_BF16 = 0,
    DFA_ATTN_CUDA_F16 = 1
};

/* Kernel variants. Numbers 4 and 6-12 were variants that measured slower than their bases
 * (bench/RESULTS.md, session 4), 14 an A/B control of session 5, 15 and 16 the A/B sides of
 * session 6 (15: the storer-warp epilogue, now the 2-consumer kernels' own; 16: four experiments
 * in turn, two kept); they are removed: a plan asking for one fails with DFA_ERR_INVALID_ARG. The
 * other numbers stay as they were. */
enum {
    DFA_ATTN_CUDA_V_MMA = 1,   /* FA2-style mma.sync m16n8k16, cp.async double buffering */
    DFA_ATTN_CUDA_V_WGMMA = 2, /* Hopper: wgmma + TMA + warp-specialised producer, FA3 design,
                                  persistent CTAs (one per SM) */
    DFA_ATTN_CUDA_V_WGMMA_GRID = 3,  /* the same kernel launched with one CTA per work item */
    DFA_ATTN_CUDA_V_WGMMA3_NOPP = 5, /* D=64: 3 consumer warpgroups, 192-row items (no ping-pong);
                                        other D as variant 2 */
    DFA_ATTN_CUDA_V_DEFAULT = 0      /* variant 5 on sm_90, else 1 */
};

typedef struct dfa_attn_cuda_plan dfa_attn_cuda_plan;

/* Build the work list for one layer's per-head methods (host arrays of n_heads entries;
 * window[h] is read for ARROW / ARROW_RS heads, in tiles as in mask.h, < 0 means full;
 * method DFA_ATTN_CUDA_NONE leaves the head's output untouched) and upload it to the device
 * (synchronously, on `stream`, a cudaStream_t or NULL). A plan must not run on two streams
 * at once (variants 2 and 3 keep a work counter in it). */
#define DFA_ATTN_CUDA_NONE (-1)
dfa_status dfa_attn_cuda_plan_build(dfa_attn_cuda_plan **out, const dfa_attn_layout *layout, int n_heads,
                                    const int *method, const int *window, int variant, void *stream,
                                    dfa_error *err);
void dfa_attn_cuda_plan_free(dfa_attn_cuda_plan *p);

/* Tail balancing of a plan's work lists (attn_sched.h), chosen at build:
 *   ON        the persistent variants (2, 5) get launch orders re-cut at the tail for B = 1
 *             and 2 where the schedule model says they pay (the default of every builder);
 *   OFF       the lists' own order only (as before Version 10; A/B timing);
 *   SPLIT128  as ON, and 128-row items may also be cut into 2 x 64 rows (needs the 2-consumer
 *             kernel's idle-warpgroup skip; an experiment).
 * Variants 1 and 3 (one CTA per item) never get balanced orders. Outputs are bit-equal in all
 * three (a row's arithmetic does not depend on the item it is in). */
enum {
    DFA_ATTN_CUDA_BALANCE_ON = 0,
    DFA_ATTN_CUDA_BALANCE_OFF = 1,
    DFA_ATTN_CUDA_BALANCE_SPLIT128 = 2
};

/* dfa_attn_cuda_plan_build with an explicit balancing option (DFA_ATTN_CUDA_BALANCE_*; another
 * value: DFA_ERR_INVALID_ARG). dfa_attn_cuda_plan_build == this with DFA_ATTN_CUDA_BALANCE_ON. */
dfa_status dfa_attn_cuda_plan_build_opt(dfa_attn_cuda_plan **out, const dfa_attn_layout *layout, int n_heads,
                                        const int *method, const int *window, int variant, int balance,
                                        void *stream, dfa_error *err);

/* A set of n plans (plan i: layouts[i], method / window [i * n_heads ..]; balancing ON) whose
 * work lists share ONE device allocation, uploaded by one copy and one synchronisation: what a run
 * prepares before its loop (attn_layer.c dfa_attn_prepare). set_get(i) gives plan i for
 * dfa_attn_cuda_run; dfa_attn_cuda_plan_free on it does nothing (the set owns it). bytes: the
 * device block. */
typedef struct dfa_attn_cuda_plan_set dfa_attn_cuda_plan_set;
dfa_status dfa_attn_cuda_plan_set_build(dfa_attn_cuda_plan_set **out, int n, const dfa_attn_layout *layouts,
                                        int n_heads, const int *method, const int *window, int variant,
                                        void *stream, dfa_error *err);
dfa_attn_cuda_plan *dfa_attn_cuda_plan_set_get(dfa_attn_cuda_plan_set *ps, int i);
size_t dfa_attn_cuda_plan_set_bytes(const dfa_attn_cuda_plan_set *ps);
void dfa_attn_cuda_plan_set_free(dfa_attn_cuda_plan_set *ps);

/* Statistics of a plan: items (query tiles x heads, copy items included), score entries the
 * kernel computes (padding of short tiles included) and the mask's exact entries (of the
 * 128-row work list; variant 5 keeps a 192-row one beside it for D=64). */
typedef struct dfa_attn_cuda_plan_info {
    int n_items, n_copy_items, variant;
    int64_t computed_entries; /* what the kernel's tiles cover */
    int64_t mask_entries;     /* sum over computing heads of dfa_mask_entries() */
    int64_t copied_tokens;    /* token rows copied for CACHE heads */
    int n_bal_items[2][2];    /* items of the tail-balanced launch orders of [the 128-row list, the
                                 192-row list][B = 1, B = 2]; 0: none, that list's own order runs */
} dfa_attn_cuda_plan_info;
void dfa_attn_cuda_plan_get_info(const dfa_attn_cuda_plan *p, dfa_attn_cuda_plan_info *info);

typedef struct dfa_attn_cuda_args {
    int dtype;      /* DFA_ATTN_CUDA_BF16 / _F16 */
    int batch;      /* B */
    int head_dim;   /* D: a multiple of 8, 8..256 */
    const void *q, *k, *v;
    void *out;
    const void *cache; /* [B, N, H, D]: read for CACHE heads (may be NULL if the plan has none) */
    const void *resid; /* [B, N, H, D]: added for ARROW_RS heads (may be NULL if none) */
    float scale;       /* softmax scale; 0 means 1/sqrt(D) */
    void *stream;      /* cudaStream_t, NULL = default stream */
} dfa_attn_cuda_args;

/* One launch: every head of every batch element, as the plan says. Asynchronous. */
dfa_status dfa_attn_cuda_run(const dfa_attn_cuda_plan *p, const dfa_attn_cuda_args *a, dfa_error *err);

/* RING plans: for every head, the FULL output and the ARROW(win[i]) outputs of n_win windows
 * (0 <= win[0] < .. < win[n_win-1] < dfa_mask_full_window, n_win <= DFA_ATTN_CUDA_RING_MAX_WIN) from one attention
 * launch over disjoint key segments (attn_worklist.h) that also stores each row's
 * log-sum-exp, then one combine kernel that merges the segments in f32 (ARROW(win[0]) is
 * segment 0 itself, bit for bit the plain ARROW plan's output). Needs variant 2 (sm_90, D 64..
 * 128): dfa_attn_cuda_ring_run says DFA_ERR_UNSUPPORTED otherwise. scratch: a device buffer of
 * dfa_attn_cuda_ring_scratch_bytes (16-byte aligned); a->out, cache, resid are not read. The
 * list runs in its own order (never tail-balanced). */
#define DFA_ATTN_CUDA_RING_MAX_WIN 7
dfa_status dfa_attn_cuda_ring_plan_build(dfa_attn_cuda_plan **out, const dfa_attn_layout *layout, int n_heads,
                                         int n_win, const int *win, void *stream, dfa_error *err);
size_t dfa_attn_cuda_ring_scratch_bytes(const dfa_attn_cuda_plan *p, int batch, int head_dim);
dfa_status dfa_attn_cuda_ring_run(const dfa_attn_cuda_plan *p, const dfa_attn_cuda_args *a, void *scratch,
                                  void *full, void *const *arrow, dfa_error *err);

/* Per-head helpers for the caches of V1/V2 (heads[h] != 0 selects head h; host array, n_heads
 * <= 256). Same layout and dtype as above; asynchronous on `stream`.
 *   copy_heads: dst[.., h, :] = src[.., h, :]           (store an output for later CACHE)
 *   residual:   dst[.., h, :] = full[.., h, :] - arrow[.., h, :]   (refresh of ARROW_RS) */
dfa_status dfa_attn_cuda_copy_heads(void *dst, const void *src, int dtype, int batch, int n_tokens, int n_heads,
                                    int head_dim, const unsigned char *heads, void *stream, dfa_error *err);
dfa_status dfa_attn_cuda_residual(void *dst, const void *full, const void *arrow, int dtype, int batch, int n_tokens,
                                  int n_heads, int head_dim, const unsigned char *heads, void *stream,
                                  dfa_error *err);

/* 1 if the current device can run `variant` (variants 2, 3 and 5 need compute capability 9.0;
 * removed and unknown numbers give 0). */
int dfa_attn_cuda_variant_ok(int variant);

#ifdef __cplusplus
}
#endif
#endif
