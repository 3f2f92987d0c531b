/* mckp.c - exact multiple-choice knapsack by a DP over Pareto frontiers (see mckp.h).
 *
 * Level h holds the Pareto-optimal (cost, influence) states of heads 0..h-1, stored in the
 * lexicographic order of their method vectors. Expanding parent states in that order, each
 * with its methods in ascending index, generates the children again in lexicographic order, so
 * a child's position k is its lexicographic rank. Children are sorted by (cost, influence, k)
 * and swept: a child survives when its influence is strictly below every cheaper-or-equal
 * child's, which keeps exactly one state per Pareto point, the lexicographically smallest. */
#include "plan/mckp.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MCKP_LAMBDAS 16

typedef struct mckp_state {
    double cost, infl;
    int64_t parent; /* index into the pool of the previous level, -1 at level 1 */
    int32_t method;
} mckp_state;

typedef struct mckp_key {
    double cost, infl;
    int64_t k; /* lexicographic rank among this level's children */
} mckp_key;

/* A growable array owned by the context. */
typedef struct mckp_buf {
    void *p;
    size_t cap, elem;
} mckp_buf;

static dfa_status buf_reserve(dfa_ctx *ctx, mckp_buf *b, size_t n, const char *what) {
    if (n <= b->cap) return DFA_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < n) cap *= 2;
    void *np = NULL;
    DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, cap * b->elem, what, &np));
    if (b->p) {
        memcpy(np, b->p, b->cap * b->elem);
        dfa_ctx_mem_release(ctx, b->p);
    }
    b->p = np;
    b->cap = cap;
    return DFA_OK;
}

static int key_cmp(const void *a, const void *b) {
    const mckp_key *x = a, *y = b;
    if (x->cost != y->cost) return x->cost < y->cost ? -1 : 1;
    if (x->infl != y->infl) return x->infl < y->infl ? -1 : 1;
    return (x->k > y->k) - (x->k < y->k);
}

double dfa_mckp_head_cap(const dfa_mckp_problem *p) {
    if (!(p->c > 0)) return INFINITY;
    return p->c * p->delta / (double)p->n_heads;
}

/* Is method m of head h a candidate at all (allowed, under the caps)? */
static int usable(const dfa_mckp_problem *p, double cap, int h, int m) {
    size_t i = (size_t)h * p->n_methods + m;
    if (p->allowed && !p->allowed[i]) return 0;
    double v = p->influence[i];
    return v <= cap && v <= p->delta;
}

static dfa_status validate(dfa_ctx *ctx, const dfa_mckp_problem *p) {
    if (p->n_heads < 1 || p->n_methods < 1 || p->n_methods > (1 << 20))
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "mckp: need n_heads >= 1 and 1 <= n_methods <= 2^20, got %d x %d",
                     p->n_heads, p->n_methods);
    if (!p->cost || !p->influence) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "mckp: cost and influence arrays required");
    if (!(p->delta >= 0)) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "mckp: delta must be >= 0, got %g", p->delta);
    if (isnan(p->c)) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "mckp: c is NaN");
    for (int h = 0; h < p->n_heads; h++)
        for (int m = 0; m < p->n_methods; m++) {
            size_t i = (size_t)h * p->n_methods + m;
            if (!(p->cost[i] >= 0) || !isfinite(p->cost[i]))
                DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "mckp: cost of head %d method %d must be finite and >= 0, got %g",
                             h, m, p->cost[i]);
            if (!(p->influence[i] >= 0))
                DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "mckp: influence of head %d method %d must be >= 0, got %g", h,
                             m, p->influence[i]);
        }
    return DFA_OK;
}

/* A feasible incumbent for the bound: the least-influence choice per head, then greedy moves to
 * cheaper candidates (best cost saved per influence added) while the budget allows.
 * Returns 0 when even the least-influence choice breaks the budget (then nothing is feasible:
 * double addition is monotone, so no other choice has a smaller head-order sum). */
static int incumbent(const dfa_mckp_problem *p, double cap, int *ch, double *out_cost) {
    const int H = p->n_heads, M = p->n_methods;
    for (int h = 0; h < H; h++) {
        int best = -1;
        for (int m = 0; m < M; m++) {
            if (!usable(p, cap, h, m)) continue;
            size_t i = (size_t)h * M + m;
            if (best < 0 || p->influence[i] < p->influence[(size_t)h * M + best] ||
                (p->influence[i] == p->influence[(size_t)h * M + best] && p->cost[i] < p->cost[(size_t)h * M + best]))
                best = m;
        }
        if (best < 0) return 0;
        ch[h] = best;
    }
    double infl = 0;
    for (int h = 0; h < H; h++) infl += p->influence[(size_t)h * M + ch[h]];
    if (infl > p->delta) return 0;
    for (int iter = 0; iter < H * M; iter++) {
        int bh = -1, bm = -1;
        double bscore = -1;
        for (int h = 0; h < H; h++) {
            size_t cur = (size_t)h * M + ch[h];
            for (int m = 0; m < M; m++) {
                size_t i = (size_t)h * M + m;
                if (!usable(p, cap, h, m) || p->cost[i] >= p->cost[cur]) continue;
                double add = p->influence[i] - p->influence[cur];
                if (infl + add > p->delta) continue; /* cheap screen; exact check below */
                double score = (p->cost[cur] - p->cost[i]) / (add > 0 ? add : DBL_MIN);
                if (score > bscore) bscore = score, bh = h, bm = m;
            }
        }
        if (bh < 0) break;
        int old = ch[bh];
        ch[bh] = bm;
        double s = 0;
        for (int h = 0; h < H; h++) s += p->influence[(size_t)h * M + ch[h]];
        if (s > p->delta) {
            ch[bh] = old;
            break;
        }
        infl = s;
    }
    double c = 0;
    for (int h = 0; h < H; h++) c += p->cost[(size_t)h * M + ch[h]];
    *out_cost = c;
    return 1;
}

dfa_status dfa_mckp_solve(dfa_ctx *ctx, const dfa_mckp_problem *p, const dfa_mckp_opts *opts, int *choice,
                          dfa_mckp_solution *sol) {
    memset(sol, 0, sizeof *sol);
    DFA_TRY(validate(ctx, p));
    const int H = p->n_heads, M = p->n_methods;
    const double cap = dfa_mckp_head_cap(p);
    const int use_bound = !(opts && opts->no_bound);
    const int64_t max_states = opts && opts->max_states > 0 ? opts->max_states : ((int64_t)1 << 24);

    dfa_status st = DFA_OK;
    mckp_buf pool = {NULL, 0, sizeof(mckp_state)}, gen = {NULL, 0, sizeof(mckp_state)},
             keys = {NULL, 0, sizeof(mckp_key)}, keep = {NULL, 0, 1}, suf = {NULL, 0, sizeof(double)},
             inc = {NULL, 0, sizeof(int)}, lag = {NULL, 0, sizeof(double)};
    /* suffix lower bounds: suf[2h] = min cost of heads h.., suf[2h+1] = min influence of heads h.. */
    if ((st = buf_reserve(ctx, &suf, 2 * (size_t)H + 2, "mckp suffix bounds")) != DFA_OK) goto done;
    if ((st = buf_reserve(ctx, &inc, (size_t)H, "mckp incumbent")) != DFA_OK) goto done;
    double *sb = suf.p;
    sb[2 * H] = sb[2 * H + 1] = 0;
    for (int h = H - 1; h >= 0; h--) {
        double mc = INFINITY, mi = INFINITY;
        for (int m = 0; m < M; m++) {
            if (!usable(p, cap, h, m)) continue;
            size_t i = (size_t)h * M + m;
            if (p->cost[i] < mc) mc = p->cost[i];
            if (p->influence[i] < mi) mi = p->influence[i];
        }
        if (mc == INFINITY) goto done; /* a head without candidates: infeasible */
        sb[2 * h] = sb[2 * h + 2] + mc;
        sb[2 * h + 1] = sb[2 * h + 3] + mi;
    }
    double ub = INFINITY;
    if (!incumbent(p, cap, inc.p, &ub)) goto done; /* infeasible */
    if (!use_bound) ub = INFINITY;
    /* Lagrangian bounds: for any lam >= 0 a completion of heads h.. within the remaining budget b
     * costs at least S_lam[h] - lam * b, S_lam[h] = sum over heads h.. of min_m (L + lam * I).
     * A geometric grid of lam around the instance's cost-per-influence scale. */
    double *lam = NULL, *sl = NULL;
    int n_lam = 0;
    if (use_bound && p->delta > 0) {
        if ((st = buf_reserve(ctx, &lag, (size_t)MCKP_LAMBDAS * (H + 2), "mckp lagrangian bounds")) != DFA_OK) goto done;
        lam = lag.p;
        sl = lam + MCKP_LAMBDAS;
        double range = 0;
        for (int h = 0; h < H; h++) {
            double lo = INFINITY, hi = 0;
            for (int m = 0; m < M; m++)
                if (usable(p, cap, h, m)) {
                    double c = p->cost[(size_t)h * M + m];
                    lo = c < lo ? c : lo, hi = c > hi ? c : hi;
                }
            range += hi - lo;
        }
        double scale = range / p->delta;
        if (scale > 0 && isfinite(scale)) {
            n_lam = MCKP_LAMBDAS;
            for (int k = 0; k < n_lam; k++) {
                lam[k] = scale * ldexp(1.0, k - n_lam / 2);
                double *S = sl + (size_t)k * (H + 1);
                S[H] = 0;
                for (int h = H - 1; h >= 0; h--) {
                    double mn = INFINITY;
                    for (int m = 0; m < M; m++)
                        if (usable(p, cap, h, m)) {
                            size_t i = (size_t)h * M + m;
                            double t = p->cost[i] + lam[k] * p->influence[i];
                            mn = t < mn ? t : mn;
                        }
                    S[h] = S[h + 1] + mn;
                }
            }
        }
    }
    /* Slack so that rounding in the bound sums never prunes an optimal or tied state: the bound
     * sums are grouped differently from the head-order sums they estimate. */
    const double ub_slack = ub * 1e-9, infl_lim = p->delta * (1 + 1e-9);

    /* level 0: one empty state, lexicographic rank 0 */
    size_t lvl_begin = 0, lvl_n = 1;
    if ((st = buf_reserve(ctx, &pool, 1, "mckp states")) != DFA_OK) goto done;
    ((mckp_state *)pool.p)[0] = (mckp_state){0.0, 0.0, -1, -1};
    for (int h = 0; h < H; h++) {
        size_t need = lvl_n * (size_t)M;
        if ((int64_t)need > max_states) {
            st = DFA_SET(&ctx->err, DFA_ERR_OOM, "mckp: head %d would hold %zu states, over the cap of %lld", h, need,
                         (long long)max_states);
            goto done;
        }
        if ((st = buf_reserve(ctx, &gen, need, "mckp children")) != DFA_OK) goto done;
        if ((st = buf_reserve(ctx, &keys, need, "mckp sort keys")) != DFA_OK) goto done;
        mckp_state *g = gen.p;
        mckp_key *ky = keys.p;
        size_t n = 0;
        for (size_t s = 0; s < lvl_n; s++) {
            const mckp_state *par = (const mckp_state *)pool.p + lvl_begin + s;
            for (int m = 0; m < M; m++) {
                if (!usable(p, cap, h, m)) continue;
                size_t i = (size_t)h * M + m;
                double c = par->cost + p->cost[i], v = par->infl + p->influence[i];
                sol->stats.generated++;
                if (v > p->delta || v + sb[2 * h + 3] > infl_lim) continue;
                if (c + sb[2 * h + 2] > ub + ub_slack) {
                    sol->stats.pruned_bound++;
                    continue;
                }
                int cut = 0;
                for (int k = 0; k < n_lam && !cut; k++) {
                    double S = sl[(size_t)k * (H + 1) + h + 1], rest = lam[k] * (p->delta - v);
                    /* rounding of the bound's own terms: never prune on them */
                    cut = c + S - rest - 1e-12 * (fabs(S) + fabs(rest) + c) > ub + ub_slack;
                }
                if (cut) {
                    sol->stats.pruned_bound++;
                    continue;
                }
                g[n] = (mckp_state){c, v, (int64_t)(lvl_begin + s), m};
                ky[n] = (mckp_key){c, v, (int64_t)n};
                n++;
            }
        }
        if (n == 0) goto done; /* cannot happen with a feasible incumbent; stay safe */
        qsort(ky, n, sizeof *ky, key_cmp);
        if ((st = buf_reserve(ctx, &keep, n, "mckp keep flags")) != DFA_OK) goto done;
        unsigned char *kf = keep.p;
        memset(kf, 0, n);
        double best = INFINITY;
        size_t kept = 0;
        for (size_t j = 0; j < n; j++)
            if (ky[j].infl < best) {
                best = ky[j].infl;
                kf[ky[j].k] = 1;
                kept++;
            }
        size_t nb = lvl_begin + lvl_n;
        if ((st = buf_reserve(ctx, &pool, nb + kept, "mckp states")) != DFA_OK) goto done;
        mckp_state *pl = pool.p;
        g = gen.p;
        size_t w = nb;
        for (size_t j = 0; j < n; j++)
            if (kf[j]) pl[w++] = g[j];
        lvl_begin = nb;
        lvl_n = kept;
        if ((int64_t)kept > sol->stats.max_frontier) sol->stats.max_frontier = (int64_t)kept;
    }
    /* The final frontier: least cost, then least influence, then least lexicographic rank
     * (states are in rank order, so the first strict improvement wins). */
    const mckp_state *pl = pool.p;
    size_t bi = lvl_begin;
    for (size_t s = lvl_begin + 1; s < lvl_begin + lvl_n; s++)
        if (pl[s].cost < pl[bi].cost || (pl[s].cost == pl[bi].cost && pl[s].infl < pl[bi].infl)) bi = s;
    sol->feasible = 1;
    sol->cost = pl[bi].cost;
    sol->influence = pl[bi].infl;
    for (int h = H - 1; h >= 0; h--) {
        choice[h] = pl[bi].method;
        bi = (size_t)pl[bi].parent;
    }
done:
    dfa_ctx_mem_release(ctx, pool.p);
    dfa_ctx_mem_release(ctx, gen.p);
    dfa_ctx_mem_release(ctx, keys.p);
    dfa_ctx_mem_release(ctx, keep.p);
    dfa_ctx_mem_release(ctx, suf.p);
    dfa_ctx_mem_release(ctx, inc.p);
    dfa_ctx_mem_release(ctx, lag.p);
    return st;
}
