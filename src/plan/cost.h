/* cost.h - modelled latency of one attention head under each method, for the plan search.
 *
 * The knapsack minimises time, not FLOPs: a head's time is a linear model over the work the
 * kernel really does, counted exactly from src/attn/mask.h:
 *     FULL, ARROW(w): head_ns + tiles(w) * tile_ns           (tiles: kept block x block tiles)
 *     ARROW_RS(w), a reuse step: ARROW(w) + N * add_ns_per_token   (add the cached residual)
 *     CACHE:          N * copy_ns_per_token                    (copy the cached output)
 * A short edge tile costs a whole tile (the kernel pays for it masked). The residual refresh
 * of ARROW_RS (an extra ARROW at a FULL step) is not charged to the reuse step.
 *
 * The numbers come from a table per head dim and tile size, measured on the device by the CUDA
 * benchmark or modelled (dfa_cost_table_default). File format (text, one record per line,
 * '#' starts a comment, written by dfa_cost_table_write):
 *     dfa-cost-table 1
 *     device NVIDIA H100 80GB HBM3
 *     entry head_dim=128 block=128 tile_ns=21.0 head_ns=50 copy_ns_per_token=0.17 add_ns_per_token=0.26
 * Every entry needs all six keys; times are nanoseconds for ONE head of ONE batch row, as the
 * whole-device time of a kernel over many heads divided by their count (amortised). A head dim
 * or tile size without an entry uses the nearest head dim, scaled linearly in head_dim and by
 * (block / entry block)^2 for tiles. */
#ifndef DFA_PLAN_COST_H
#define DFA_PLAN_COST_H

#include <stdint.h>

#include "attn/attn.h"
#include "attn/mask.h"
#include "core/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DFA_COST_MAX_ENTRIES 16

typedef struct dfa_cost_entry {
    int head_dim, block;
    double tile_ns, head_ns, copy_ns_per_token, add_ns_per_token;
} dfa_cost_entry;

typedef struct dfa_cost_table {
    char device[128];
    int n;
    dfa_cost_entry e[DFA_COST_MAX_ENTRIES];
} dfa_cost_table;

/* A modelled H100 bf16 table (head dims 64 and 128, block 128): stands in until measured. */
void dfa_cost_table_default(dfa_cost_table *t);
/* A FLOP-count table: tile_ns = 4 * block^2 * head_dim ("ns" = FLOPs), no fixed or copy cost.
 * With it the search minimises dense-tile attention FLOPs. */
void dfa_cost_table_flops(dfa_cost_table *t, int block);

dfa_status dfa_cost_table_read(const char *path, dfa_cost_table *t, dfa_error *err);
dfa_status dfa_cost_table_parse(const char *text, const char *what, dfa_cost_table *t, dfa_error *err);
dfa_status dfa_cost_table_write(const char *path, const dfa_cost_table *t, dfa_error *err);

/* Number of kept block x block tiles of one head under window (< 0: FULL), counted exactly
 * with the tile predicate of mask.h (closed form, O(tiles)). */
int64_t dfa_cost_tiles(const dfa_attn_layout *l, int window);

/* Modelled time of one head (one batch row) under method m with window (ignored for FULL and
 * CACHE). Returns a negative value for an unknown method or an empty table. */
double dfa_cost_head_ns(const dfa_cost_table *t, const dfa_attn_layout *l, int head_dim, dfa_attn_method m,
                        int window);

#ifdef __cplusplus
}
#endif
#endif
