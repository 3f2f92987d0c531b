/* mckp.h - the exact multiple-choice knapsack of DiTFastAttnV2 (eq. 2), one layer at one step.
 *
 * H heads (groups), each with M candidate methods; head h with method m costs L(h,m) >= 0
 * and has influence I(h,m) >= 0 (+inf allowed: never chosen). Choose exactly one method per
 * head, minimising sum_h L(h, m_h) subject to
 *     sum_h I(h, m_h) <= delta                       (layer budget)
 *     I(h, m_h)       <= cap = c * delta / H         (per head, only when c > 0)
 * The per-head cap only removes candidates. FULL (influence 0) keeps every instance with
 * delta >= 0 feasible, but the solver does not assume it: an instance with no feasible choice
 * is reported (feasible = 0), not an error.
 *
 * Exact: a DP over the Pareto frontier of (cost, influence) per prefix of heads, with no
 * discretisation of the real influences. States are dropped only when another state is at
 * least as good in both coordinates (dominance), when their influence already exceeds delta,
 * or (branch and bound, on by default) when a lower bound on their completed cost (the remaining
 * heads' least costs, or a Lagrangian bound sum_h min_m (L + lam I) - lam * remaining budget)
 * exceeds a feasible incumbent. Sums are accumulated head 0, 1, 2, ... in double, exactly as a brute force
 * over assignments accumulates them, so the comparisons against delta agree bit for bit.
 *
 * Tie-breaking (deterministic): among feasible assignments the solver returns the one with the
 * smallest total cost; among equal total costs the smallest total influence; among equal
 * (cost, influence) the lexicographically smallest vector of method indices (head 0 first, i.e.
 * lower method indices on earlier heads). See docs/DESIGN.md "Plan search". */
#ifndef DFA_PLAN_MCKP_H
#define DFA_PLAN_MCKP_H

#include <stdint.h>

#include "core/ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dfa_mckp_problem {
    int n_heads, n_methods;
    const double *cost;           /* [n_heads * n_methods], row h = head h; finite, >= 0 */
    const double *influence;      /* [n_heads * n_methods]; >= 0 or +inf; NaN rejected */
    const unsigned char *allowed; /* optional [n_heads * n_methods]: 0 = candidate unavailable */
    double delta;                 /* layer budget, >= 0 */
    double c;                     /* per-head cap coefficient; <= 0: no cap */
} dfa_mckp_problem;

typedef struct dfa_mckp_opts {
    int no_bound;       /* 1: no branch-and-bound pruning (dominance + feasibility only) */
    int64_t max_states; /* cap on states held at once; 0: 1 << 24 */
} dfa_mckp_opts;

typedef struct dfa_mckp_stats {
    int64_t generated;    /* states created over all heads */
    int64_t max_frontier; /* largest frontier kept after one head */
    int64_t pruned_bound; /* states dropped by the branch-and-bound test */
} dfa_mckp_stats;

typedef struct dfa_mckp_solution {
    int feasible;     /* 0: no assignment meets the constraints (choice untouched) */
    double cost;      /* sum of the chosen costs (head order) */
    double influence; /* sum of the chosen influences (head order) */
    dfa_mckp_stats stats;
} dfa_mckp_solution;

/* The per-head cap c * delta / n_heads, or +inf when c <= 0. */
double dfa_mckp_head_cap(const dfa_mckp_problem *p);

/* Solve exactly. choice: [n_heads] method indices, written when feasible. opts may be NULL.
 * Errors (bad sizes, negative/NaN values, state cap exceeded, OOM) go to the context. */
dfa_status dfa_mckp_solve(dfa_ctx *ctx, const dfa_mckp_problem *p, const dfa_mckp_opts *opts, int *choice,
                          dfa_mckp_solution *sol);

#ifdef __cplusplus
}
#endif
#endif
