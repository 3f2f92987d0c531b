/* attn_sched.h - a host-side model of the persistent attention kernels' schedule (plain C, no
 * GPU), and the tail balancing of work lists that it drives.
 *
 * The persistent kernels (variants 2 and 5: one CTA per SM) take items from a global counter:
 * item i of the launch is list item i / B for batch element i % B (every list item repeated B
 * times in a row). A CTA's producer claims its next item when it has issued the last K/V loads
 * of its current one (about `lookahead` key steps before the current item ends; never before the
 * current item starts: two Q buffers). dfa_acu_sched_sim replays that with a cost per item
 *     item_us + share[n_act] * steps * step_us            (computed items)
 *     q_len * copy_row_us                                 (CACHE copies)
 * steps = 128-key steps of the item's ranges, n_act = the item's active 64-row consumer
 * warpgroups (ceil(q_len / 64) on the 3-consumer kernel; on the 2-consumer kernel always 2
 * unless it skips idle warpgroups). The makespan is launch_us + the last CTA's end.
 *
 * Tail balancing (dfa_acu_worklist_balance): when items are few per CTA, the last wave is
 * partly empty (dense 4096+512 at D=64: 576 items of 192 rows on 132 CTAs = 4.36 waves). It
 * re-cuts the last k items of the launch order (192 -> 128 + 64 or 3 x 64 rows, or adjacent
 * items of one run into 128-row pieces; 128 -> 2 x 64) and moves the pieces to the end (longest
 * first, copies still last), choosing k and the cut by simulation at the batch size B the list
 * is for; a new order only if the simulated makespan drops by more than DFA_ACU_BAL_MIN_GAIN.
 * A piece keeps its item's head, flags and key ranges (and pieces of one run share them) and the
 * skips of its 64-row chunks (a union item is cut on its chunk edges and never merged), so every
 * row still sees exactly its mask's keys. */
#ifndef DFA_ATTN_CUDA_SCHED_H
#define DFA_ATTN_CUDA_SCHED_H

#include "attn/cuda/attn_worklist.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Calibrated on the H100 measurements of session 4 (bench/runs/s4-attn-h100-summary.txt) by
 * bench/bench_attn_sched.c --fit (it prints the fit and its residuals; bench/RESULTS.md
 * "Version 10"). 2-consumer kernel: the D=128 fit (the 128-row list also serves D=64 under
 * variant 2; its own fit is printed there too). Times in microseconds. */
typedef struct dfa_acu_cost {
    double step_us;     /* one 128-key step of an item with every consumer warpgroup active */
    double item_us;     /* per item: pipeline fill and drain, epilogue, claim */
    double share[4];    /* [n]: an item with n active consumer warpgroups relative to all active */
    double copy_row_us; /* a CACHE copy item, per query row */
    double launch_us;   /* once per launch: counter reset, launch, first loads */
    int n_cons;         /* consumer warpgroups: 2 (128-row list) or 3 (192-row list) */
    int lookahead;      /* K/V stages the producer runs ahead (claims the next item that early) */
} dfa_acu_cost;

/* Shares of a step: a 128-row item (2 active) on the 3-consumer CTA against a 192-row one is
 * fitted, indirectly (the arrow plans' 128-row visual items, bench_attn_sched --fit: 0.73); a
 * 64-row item (1 active) on it is NOT measured (an estimate, attn_sched.c says how), nor is a
 * 64-row item on a 2-consumer CTA that skips its idle warpgroup (the kernel does since session
 * 4; before, a 64-row item cost a 128-row one). The session-4 runs never saw the model split a
 * 128-row item (DFA_ATTN_CUDA_BALANCE_SPLIT128), so that share is still unmeasured. */
#define DFA_ACU_SHARE3_2 0.73
#define DFA_ACU_SHARE3_1 0.48
#define DFA_ACU_SHARE2_1_SKIP 0.62
/* the smallest relative makespan gain for which a list is rebalanced */
#define DFA_ACU_BAL_MIN_GAIN 0.01

/* The default model of the kernel that runs a list of `rows` rows (DFA_ACU_BM: 2 consumers;
 * DFA_ACU_BM3: 3). skip_idle (2-consumer only): assume the kernel skips an idle warpgroup. */
void dfa_acu_cost_default(dfa_acu_cost *m, int rows, int skip_idle);

/* Key steps (128 keys) of item it of wl: sum over its ranges of ceil(len / 128); 0 for copies. */
int dfa_acu_item_steps(const dfa_acu_worklist *wl, const dfa_acu_item *it);
/* Modelled time of one item. */
double dfa_acu_item_cost(const dfa_acu_cost *m, const dfa_acu_worklist *wl, const dfa_acu_item *it);

typedef struct dfa_acu_sim {
    double makespan_us; /* launch_us + when the last CTA finishes */
    double busy_us;     /* sum of the item times (x batch) */
    double idle_frac;   /* 1 - busy / (ctas * (makespan - launch)): CTA time spent waiting at the end */
    int ctas;           /* min(n_ctas, items x batch) */
} dfa_acu_sim;

/* Replay wl's launch on n_ctas persistent CTAs with `batch` batch elements. */
void dfa_acu_sched_sim(const dfa_acu_worklist *wl, const dfa_acu_cost *m, int n_ctas, int batch, dfa_acu_sim *out);

typedef struct dfa_acu_balance {
    int n_ctas;                /* persistent CTAs the list runs on (the SM count); 0 = off */
    int batch;                 /* the B it will run with (< 1: 1); the kernel runs item i / B for batch
                                  element i % B, so a list balanced for one B may be worse at another */
    int split128;              /* 128-row lists: allow 128 -> 2 x 64 (uses the 2-consumer kernel's
                                  idle-warpgroup skip; off by default: never chosen on the bench plans) */
    const dfa_acu_cost *model; /* NULL: dfa_acu_cost_default(rows, split128) */
} dfa_acu_balance;

typedef struct dfa_acu_balance_report {
    dfa_acu_sim before, after; /* at b->batch; after == before if unchanged */
    int changed;               /* 1 if a new order was returned */
    int k, mode;               /* the last k items re-cut; mode 0: q_len - 64 + 64, 1: 64-row pieces,
                                  2: runs of one head and ranges re-cut into 128-row pieces */
    int n_pieces;              /* items added */
} dfa_acu_balance_report;

/* Tail balancing of wl (a list of `rows` rows from dfa_acu_worklist_build_rows; not changed) for
 * b: *items = a new launch order (malloc'ed, *n_items entries, referring to wl's ranges) if the
 * simulated makespan at b->batch drops by more than DFA_ACU_BAL_MIN_GAIN, else NULL (keep wl's
 * items). b == NULL or b->n_ctas == 0: NULL. rep may be NULL. */
dfa_status dfa_acu_worklist_balance(const dfa_acu_worklist *wl, int rows, const dfa_acu_balance *b,
                                    dfa_acu_item **items, int *n_items, dfa_acu_balance_report *rep,
                                    dfa_error *err);

/* What a plan's balancing option (attn_cuda.h DFA_ATTN_CUDA_BALANCE_*) means for a resolved
 * variant: *on = 1 if its lists get tail-balanced orders (ON or SPLIT128, on the persistent
 * variants 2 and 5; never on variants 1 and 3, one CTA per item), *split128 = 1 for SPLIT128
 * (with *on). Any other option value: DFA_ERR_INVALID_ARG, whatever the variant. */
dfa_status dfa_acu_balance_mode(int balance, int variant, int *on, int *split128, dfa_error *err);

#ifdef __cplusplus
}
#endif
#endif
