/* plan_make.c - hand-made plans: uniform ARROW, layer caching every N steps, V1 residual
 * sharing with a refresh period, and random valid mixes (for tests and benchmarks). */
#include <stdio.h>
#include <string.h>

#include "plan/plan.h"

static unsigned long long rng_next(unsigned long long *s) {
    unsigned long long x = *s ? *s : 0x9e3779b97f4a7c15ULL;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

dfa_status dfa_plan_make(dfa_plan *p, const dfa_plan_make_opts *o, dfa_error *err) {
    const int wmax = dfa_mask_full_window(&p->layout);
    if (o->pattern < DFA_PLAN_PAT_FULL || o->pattern > DFA_PLAN_PAT_RANDOM)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "plan make: unknown pattern %d", (int)o->pattern);
    if ((o->pattern == DFA_PLAN_PAT_ARROW || o->pattern == DFA_PLAN_PAT_RS || o->pattern == DFA_PLAN_PAT_RANDOM) &&
        (o->window < 0 || o->window > wmax))
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "plan make: window %d tiles out of range [0, %d] for %d %s tokens in tiles of %d",
                 o->window, wmax, p->layout.band == DFA_BAND_PLAIN ? dfa_layout_tokens(&p->layout) : p->layout.n_vis,
                 p->layout.band == DFA_BAND_PLAIN ? "sequence (plain band)" : "visual", p->layout.block);
    if ((o->pattern == DFA_PLAN_PAT_CACHE || o->pattern == DFA_PLAN_PAT_RS) && o->every < 1)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "plan make: period %d must be >= 1", o->every);
    if (o->asc && !p->cfg) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "plan make: ASC needs a CFG plan (--cfg)");
    if (o->full_steps < 0) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "plan make: full steps %d < 0", o->full_steps);
    const int S = p->n_steps, Ly = p->n_layers, H = p->n_heads;
    size_t n = (size_t)S * Ly * H;
    memset(p->method, DFA_ATTN_FULL, n);
    memset(p->window, 0, n * sizeof(int32_t));
    memset(p->asc, 0, (size_t)S * Ly);
    unsigned long long rng = o->seed;
    unsigned set = 0;
    for (int s = o->full_steps; s < S; s++) {
        int k = s - o->full_steps;
        for (int l = 0; l < Ly; l++) {
            if (o->asc) {
                p->asc[(size_t)s * Ly + l] = 1;
                set |= DFA_PLAN_SET_ASC;
            }
            for (int h = 0; h < H; h++) {
                size_t i = dfa_plan_index(p, s, l, h);
                int m = DFA_ATTN_FULL, w = 0;
                switch (o->pattern) {
                case DFA_PLAN_PAT_FULL: break;
                case DFA_PLAN_PAT_ARROW: m = DFA_ATTN_ARROW, w = o->window; break;
                case DFA_PLAN_PAT_CACHE: m = (k % o->every == 0 || s == 0) ? DFA_ATTN_FULL : DFA_ATTN_CACHE; break;
                case DFA_PLAN_PAT_RS:
                    if (k % o->every != 0 && s > 0) m = DFA_ATTN_ARROW_RS, w = o->window;
                    break;
                case DFA_PLAN_PAT_RANDOM: {
                    m = (int)(rng_next(&rng) % DFA_ATTN_METHOD_COUNT);
                    w = (int)(rng_next(&rng) % (unsigned)(o->window + 1));
                    /* keep it valid: CACHE needs an earlier computed step, ARROW_RS an earlier FULL with the
                     * same residual window */
                    int last_computed = -1, last_full = -1, rs_w = -1;
                    for (int t = 0; t < s; t++) {
                        size_t j = dfa_plan_index(p, t, l, h);
                        if (p->method[j] != DFA_ATTN_CACHE) last_computed = t;
                        if (p->method[j] == DFA_ATTN_FULL) last_full = t, rs_w = -1;
                        if (p->method[j] == DFA_ATTN_ARROW_RS) rs_w = p->window[j];
                    }
                    if (m == DFA_ATTN_CACHE && last_computed < 0) m = DFA_ATTN_FULL;
                    if (m == DFA_ATTN_ARROW_RS) {
                        if (last_full < 0) m = DFA_ATTN_FULL;
                        else if (rs_w >= 0) w = rs_w;
                    }
                    if (m == DFA_ATTN_FULL || m == DFA_ATTN_CACHE) w = 0;
                    break;
                }
                }
                p->method[i] = (uint8_t)m;
                p->window[i] = w;
                if (m != DFA_ATTN_FULL) set |= 1u << m;
            }
        }
    }
    p->method_set = set;
    snprintf(p->search, sizeof p->search, "manual");
    return dfa_plan_validate(p, "plan make", err);
}
