/* test_mckp.c - the exact multiple-choice knapsack against brute force on random small
 * instances (ties, zero costs, infinite influences, unavailable candidates, caps that empty a
 * head, delta = 0), both with and without branch and bound; monotonicity in delta; bad input. */
#include "test.h"

#include "core/ctx.h"
#include "plan/mckp.h"

#define MAXH 10
#define MAXM 5

typedef struct bf_result {
    int feasible;
    double cost, infl;
    int choice[MAXH];
} bf_result;

/* Every assignment in lexicographic order (head 0 most significant), sums in head order;
 * replace only on a strictly better (cost, influence): the lexicographically first wins ties. */
static bf_result brute_force(const dfa_mckp_problem *p) {
    bf_result r = {0, 0, 0, {0}};
    const int H = p->n_heads, M = p->n_methods;
    double cap = p->c > 0 ? p->c * p->delta / H : INFINITY;
    int ch[MAXH] = {0};
    for (;;) {
        int ok = 1;
        double c = 0, v = 0;
        for (int h = 0; h < H && ok; h++) {
            size_t i = (size_t)h * M + ch[h];
            if (p->allowed && !p->allowed[i]) ok = 0;
            if (!(p->influence[i] <= cap)) ok = 0;
            c += p->cost[i];
            v += p->influence[i];
        }
        if (ok && v <= p->delta && (!r.feasible || c < r.cost || (c == r.cost && v < r.infl))) {
            r.feasible = 1, r.cost = c, r.infl = v;
            memcpy(r.choice, ch, sizeof ch);
        }
        int h = H - 1;
        while (h >= 0 && ++ch[h] == M) ch[h--] = 0;
        if (h < 0) break;
    }
    return r;
}

typedef struct inst {
    int H, M;
    double cost[MAXH * MAXM], infl[MAXH * MAXM];
    unsigned char allowed[MAXH * MAXM];
    dfa_mckp_problem p;
} inst;

static double rnd01(unsigned long long *s) {
    return (double)(test_rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

/* kind 0: real values; 1: a few distinct values (many ties); 2: zero costs mixed in;
 * 3: no FULL column (caps may empty a head); 4: +inf influences and unavailable candidates. */
static void make_instance(inst *in, unsigned long long *s, int kind) {
    in->H = 1 + (int)(test_rng_next(s) % 6);
    in->M = 1 + (int)(test_rng_next(s) % 4);
    for (int h = 0; h < in->H; h++)
        for (int m = 0; m < in->M; m++) {
            int i = h * in->M + m;
            double c = rnd01(s), v = rnd01(s);
            if (kind == 1) c = (double)(test_rng_next(s) % 4), v = 0.25 * (double)(test_rng_next(s) % 4);
            if (kind == 2 && test_rng_next(s) % 3 == 0) c = 0;
            if (kind == 4 && test_rng_next(s) % 5 == 0) v = INFINITY;
            in->cost[i] = c;
            in->infl[i] = v;
            in->allowed[i] = kind == 4 ? (test_rng_next(s) % 4 != 0) : 1;
        }
    if (kind != 3)
        for (int h = 0; h < in->H; h++) { /* FULL: method 0, influence 0, the dearest */
            in->infl[h * in->M] = 0;
            in->cost[h * in->M] = kind == 1 ? 4 : 1.5;
            in->allowed[h * in->M] = 1;
        }
    in->p = (dfa_mckp_problem){in->H, in->M, in->cost, in->infl, kind == 4 ? in->allowed : NULL, 0, 0};
    double r = rnd01(s);
    in->p.delta = r < 0.1 ? 0 : r * 0.6 * in->H;
    if (kind == 1) in->p.delta = 0.25 * (double)(test_rng_next(s) % (unsigned)(2 * in->H + 1)); /* hits sums exactly */
    unsigned long long cc = test_rng_next(s) % 4;
    in->p.c = cc == 0 ? 0 : cc == 1 ? -1 : 0.5 + rnd01(s) * 2.5;
}

static void test_against_brute_force(void) {
    dfa_ctx *ctx = NULL;
    CHECK(dfa_ctx_init(&ctx, NULL, NULL, 0) == DFA_OK);
    unsigned long long s = 0x9e3779b97f4a7c15ULL;
    int n_feasible = 0, n_infeasible = 0, mismatches = 0;
    for (int t = 0; t < 4000; t++) {
        inst in;
        make_instance(&in, &s, t % 5);
        bf_result bf = brute_force(&in.p);
        for (int nb = 0; nb < 2; nb++) {
            dfa_mckp_opts o = {nb, 0};
            int ch[MAXH];
            for (int h = 0; h < MAXH; h++) ch[h] = -7; /* poison */
            dfa_mckp_solution sol;
            dfa_status st = dfa_mckp_solve(ctx, &in.p, &o, ch, &sol);
            CHECKF(st == DFA_OK, "%s", dfa_ctx_error(ctx));
            int bad = sol.feasible != bf.feasible;
            if (!bad && bf.feasible) {
                bad = sol.cost != bf.cost || sol.influence != bf.infl;
                for (int h = 0; h < in.H; h++) bad |= ch[h] != bf.choice[h];
            }
            if (bad && mismatches++ < 5)
                fprintf(stderr, "instance %d (kind %d, H=%d M=%d delta=%g c=%g, bound %d): solver %d %.17g %.17g, brute %d %.17g %.17g\n",
                        t, t % 5, in.H, in.M, in.p.delta, in.p.c, !nb, sol.feasible, sol.cost, sol.influence,
                        bf.feasible, bf.cost, bf.infl);
        }
        n_feasible += bf.feasible;
        n_infeasible += !bf.feasible;
    }
    CHECKF(mismatches == 0, "%d mismatches", mismatches);
    CHECKF(n_infeasible > 50 && n_feasible > 2000, "coverage: %d feasible, %d infeasible", n_feasible, n_infeasible);
    dfa_ctx_free(ctx);
}

/* Deeper instances (H = 10, M = 3 and H = 8, M = 4), where the bounds prune most. */
static void test_larger_against_brute_force(void) {
    dfa_ctx *ctx = NULL;
    CHECK(dfa_ctx_init(&ctx, NULL, NULL, 0) == DFA_OK);
    unsigned long long s = 4242;
    int bad = 0, feasible = 0;
    for (int t = 0; t < 24; t++) {
        inst in;
        in.H = t % 2 ? 10 : 8, in.M = t % 2 ? 3 : 4;
        for (int i = 0; i < in.H * in.M; i++) {
            in.cost[i] = i % in.M == 0 ? 1.0 : (t % 3 == 0 ? 0.25 * (double)(test_rng_next(&s) % 4) : rnd01(&s));
            in.infl[i] = i % in.M == 0 ? 0.0 : (t % 3 == 0 ? 0.125 * (double)(test_rng_next(&s) % 4) : 0.2 * rnd01(&s));
        }
        in.p = (dfa_mckp_problem){in.H, in.M, in.cost, in.infl, NULL, 0.05 * (t % 8) * in.H / 4, t % 4 ? 1.5 : 0};
        bf_result bf = brute_force(&in.p);
        int ch[MAXH];
        dfa_mckp_solution sol;
        CHECK(dfa_mckp_solve(ctx, &in.p, NULL, ch, &sol) == DFA_OK);
        int d = sol.feasible != bf.feasible || (bf.feasible && (sol.cost != bf.cost || sol.influence != bf.infl));
        for (int h = 0; bf.feasible && h < in.H; h++) d |= ch[h] != bf.choice[h];
        bad += d;
        feasible += bf.feasible;
    }
    CHECKF(bad == 0, "%d of 24 differ", bad);
    CHECK(feasible == 24);
    dfa_ctx_free(ctx);
}

/* delta = 0: only influence-0 choices; FULL unless a cheaper method has exactly 0 influence. */
static void test_delta_zero(void) {
    dfa_ctx *ctx = NULL;
    CHECK(dfa_ctx_init(&ctx, NULL, NULL, 0) == DFA_OK);
    enum { H = 6, M = 4 };
    double cost[H * M], infl[H * M];
    unsigned long long s = 77;
    for (int h = 0; h < H; h++)
        for (int m = 0; m < M; m++) {
            cost[h * M + m] = m == 0 ? 10 : 1 + rnd01(&s);
            infl[h * M + m] = m == 0 ? 0 : 1e-12 + rnd01(&s);
        }
    infl[3 * M + 2] = 0; /* head 3: method 2 is exact and cheaper than FULL */
    dfa_mckp_problem p = {H, M, cost, infl, NULL, 0.0, 1.5};
    int ch[H];
    dfa_mckp_solution sol;
    CHECK(dfa_mckp_solve(ctx, &p, NULL, ch, &sol) == DFA_OK);
    CHECK(sol.feasible && sol.influence == 0);
    for (int h = 0; h < H; h++) CHECKF(ch[h] == (h == 3 ? 2 : 0), "head %d chose %d", h, ch[h]);
    dfa_ctx_free(ctx);
}

/* A larger delta never gives a costlier optimum (the cap c*delta/H also only loosens). */
static void test_monotone_in_delta(void) {
    dfa_ctx *ctx = NULL;
    CHECK(dfa_ctx_init(&ctx, NULL, NULL, 0) == DFA_OK);
    unsigned long long s = 12345;
    enum { H = 24, M = 8 };
    static double cost[H * M], infl[H * M];
    int violations = 0, strict = 0;
    for (int t = 0; t < 20; t++) {
        for (int i = 0; i < H * M; i++) {
            cost[i] = (i % M == 0) ? 1.0 : rnd01(&s);
            infl[i] = (i % M == 0) ? 0.0 : rnd01(&s) * 0.2;
        }
        double prev = INFINITY;
        for (int k = 0; k <= 10; k++) {
            dfa_mckp_problem p = {H, M, cost, infl, NULL, 0.1 * k, t % 2 ? 1.5 : 0};
            int ch[H];
            dfa_mckp_solution sol;
            CHECKF(dfa_mckp_solve(ctx, &p, NULL, ch, &sol) == DFA_OK, "%s", dfa_ctx_error(ctx));
            CHECK(sol.feasible);
            if (sol.cost > prev) violations++;
            if (sol.cost < prev && k > 0) strict++;
            prev = sol.cost;
        }
    }
    CHECKF(violations == 0, "%d violations", violations);
    CHECKF(strict > 100, "delta changes the optimum only %d times", strict);
    dfa_ctx_free(ctx);
}

static void test_bad_input(void) {
    dfa_ctx *ctx = NULL;
    CHECK(dfa_ctx_init(&ctx, NULL, NULL, 0) == DFA_OK);
    double cost[4] = {1, 0.5, 1, 0.5}, infl[4] = {0, 0.1, 0, 0.1};
    int ch[2];
    dfa_mckp_solution sol;
    dfa_mckp_problem p = {2, 2, cost, infl, NULL, 1.0, 0};
    CHECK(dfa_mckp_solve(ctx, &p, NULL, ch, &sol) == DFA_OK && sol.feasible && sol.cost == 1.0);
    infl[1] = NAN;
    CHECK(dfa_mckp_solve(ctx, &p, NULL, ch, &sol) == DFA_ERR_INVALID_ARG);
    CHECKF(strstr(dfa_ctx_error(ctx), "head 0 method 1") != NULL, "%s", dfa_ctx_error(ctx));
    infl[1] = 0.1;
    cost[2] = -1;
    CHECK(dfa_mckp_solve(ctx, &p, NULL, ch, &sol) == DFA_ERR_INVALID_ARG);
    CHECKF(strstr(dfa_ctx_error(ctx), "head 1 method 0") != NULL, "%s", dfa_ctx_error(ctx));
    cost[2] = 1;
    p.delta = -0.5;
    CHECK(dfa_mckp_solve(ctx, &p, NULL, ch, &sol) == DFA_ERR_INVALID_ARG);
    p.delta = 1;
    p.n_heads = 0;
    CHECK(dfa_mckp_solve(ctx, &p, NULL, ch, &sol) == DFA_ERR_INVALID_ARG);
    p.n_heads = 2;
    dfa_mckp_opts o = {1, 2}; /* state cap below what head 1 needs */
    CHECK(dfa_mckp_solve(ctx, &p, &o, ch, &sol) == DFA_ERR_OOM);
    CHECKF(strstr(dfa_ctx_error(ctx), "over the cap") != NULL, "%s", dfa_ctx_error(ctx));
    dfa_ctx_free(ctx);
}

int main(void) {
    RUN(test_against_brute_force);
    RUN(test_larger_against_brute_force);
    RUN(test_delta_zero);
    RUN(test_monotone_in_delta);
    RUN(test_bad_input);
    return test_summary();
}
