/* bench_mckp.c - time per exact MCKP solve at the search's sizes (H = 24 heads x M = 8
 * candidates, H = 64 x M = 12), against the same DP without branch and bound, and against brute
 * force where that is feasible (H = 7, M = 8: 2M assignments). Two instance families:
 *   "plan": one cost per method shared by all heads (what the cost model gives: same shape per
 *           head), influence growing with compression and varying per head;
 *   "rand": independent uniform costs and influences (a harder frontier).
 * Usage: bench_mckp [reps]   (prints ms per solve and the ratios; results must agree). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/ctx.h"
#include "plan/mckp.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static unsigned long long rng = 0x2545F4914F6CDD1DULL;
static double rnd01(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) * (1.0 / 9007199254740992.0);
}

static void make(int H, int M, int family, double *cost, double *infl) {
    for (int h = 0; h < H; h++) {
        double head_redundancy = 0.2 + 1.8 * rnd01();
        for (int m = 0; m < M; m++) {
            size_t i = (size_t)h * M + m;
            if (m == 0) {
                cost[i] = 1.0, infl[i] = 0.0; /* FULL */
            } else if (family == 0) {
                cost[i] = 1.0 - (double)m / M;                      /* same for every head */
                infl[i] = head_redundancy * (double)m / M * (0.5 + rnd01()) * 0.05;
            } else {
                cost[i] = rnd01();
                infl[i] = rnd01() * 0.1;
            }
        }
    }
}

static double brute(int H, int M, const double *cost, const double *infl, double delta, double cap) {
    int ch[16] = {0};
    double best = INFINITY;
    for (;;) {
        double c = 0, v = 0;
        int ok = 1;
        for (int h = 0; h < H; h++) {
            double iv = infl[(size_t)h * M + ch[h]];
            ok &= iv <= cap;
            c += cost[(size_t)h * M + ch[h]];
            v += iv;
        }
        if (ok && v <= delta && c < best) best = c;
        int h = H - 1;
        while (h >= 0 && ++ch[h] == M) ch[h--] = 0;
        if (h < 0) break;
    }
    return best;
}

static int run(dfa_ctx *ctx, int H, int M, int family, int reps, int with_brute) {
    double *cost = malloc(sizeof(double) * H * M), *infl = malloc(sizeof(double) * H * M);
    int *ch = malloc(sizeof(int) * H);
    if (!cost || !infl || !ch) return 1;
    double t_bb = 0, t_nb = 0, t_bf = 0;
    long long max_front = 0;
    int bad = 0;
    for (int r = 0; r < reps; r++) {
        make(H, M, family, cost, infl);
        dfa_mckp_problem p = {H, M, cost, infl, NULL, 0.02 * H, r % 2 ? 1.5 : 0};
        dfa_mckp_solution a, b;
        dfa_mckp_opts on = {0, 0}, off = {1, 0};
        double t0 = now_s();
        if (dfa_mckp_solve(ctx, &p, &on, ch, &a) != DFA_OK) return fprintf(stderr, "%s\n", dfa_ctx_error(ctx)), 1;
        double t1 = now_s();
        if (dfa_mckp_solve(ctx, &p, &off, ch, &b) != DFA_OK) return fprintf(stderr, "%s\n", dfa_ctx_error(ctx)), 1;
        double t2 = now_s();
        t_bb += t1 - t0;
        t_nb += t2 - t1;
        if (b.stats.max_frontier > max_front) max_front = b.stats.max_frontier;
        bad += a.cost != b.cost;
        if (with_brute && r < 2) {
            double t3 = now_s();
            double bc = brute(H, M, cost, infl, p.delta, dfa_mckp_head_cap(&p));
            t_bf += now_s() - t3;
            bad += bc != a.cost;
        }
    }
    printf("H=%2d M=%2d %-4s  bb %9.3f ms  no-bound %9.3f ms (x%.2f)  max frontier %lld", H, M,
           family ? "rand" : "plan", 1e3 * t_bb / reps, 1e3 * t_nb / reps, t_nb / t_bb, max_front);
    if (with_brute) printf("  brute %9.1f ms (x%.0f)", 1e3 * t_bf / 2, (t_bf / 2) / (t_bb / reps));
    printf("%s\n", bad ? "  DISAGREE" : "");
    free(cost), free(infl), free(ch);
    return bad != 0;
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 20;
    if (reps < 2) reps = 2;
    dfa_ctx *ctx = NULL;
    if (dfa_ctx_init(&ctx, NULL, NULL, 0) != DFA_OK) return 1;
    int bad = 0;
    for (int f = 0; f < 2; f++) {
        bad |= run(ctx, 7, 8, f, reps, 1);
        bad |= run(ctx, 24, 8, f, reps, 0);
        bad |= run(ctx, 64, 12, f, reps, 0);
    }
    dfa_ctx_free(ctx);
    return bad;
}
