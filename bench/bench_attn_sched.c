/* bench_attn_sched.c - the schedule model of the persistent attention kernels (src/attn/cuda/
 * attn_sched.h) against measurements, and its predictions for tail-balanced work lists. CPU only.
 *
 * usage: bench_attn_sched --fit       fit the model (step, per-item and per-launch time; for the
 *                                     3-consumer kernel also the 2-of-3 share) to the session 4
 *                                     H100 times below, print the fit, its residuals and the
 *                                     held-out mixed plans, and where the time of arrow 75 %/4k goes
 *        bench_attn_sched [n_ctas]    predicted unbalanced / balanced makespans of the bench plans
 *                                     (bench_attn_gpu --balance) with the default model (132 CTAs)
 *
 * The measured times are the "ms" column of bench/runs/s4-attn-h100-summary.txt (H100, B=1,
 * H=24, text 512 first, block 128; median of 20 launches, L2 flushed). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn/attn.h"
#include "attn/cuda/attn_sched.h"
#include "attn/mask.h"

enum { K_DENSE, K_ARROW, K_MIXED };

typedef struct meas {
    int kernel; /* 2: variant 2 (128-row list), 5: variant 5 (192-row list) */
    int D, NV, kind;
    double target; /* arrow: block sparsity target (window as the GPU bench picks it) */
    double ms;
} meas;

/* s4-attn-h100-summary.txt */
static const meas MEAS[] = {
    {2, 128, 4096, K_DENSE, 0, 0.422},      {2, 128, 16384, K_DENSE, 0, 5.888},
    {2, 128, 4096, K_ARROW, 0.25, 0.323},   {2, 128, 4096, K_ARROW, 0.50, 0.229},
    {2, 128, 4096, K_ARROW, 0.75, 0.123},   {2, 128, 16384, K_ARROW, 0.25, 4.410},
    {2, 128, 16384, K_ARROW, 0.50, 3.005},  {2, 128, 16384, K_ARROW, 0.75, 1.550},
    {2, 128, 4096, K_MIXED, 0, 0.203},      {2, 128, 16384, K_MIXED, 0, 1.861},
    {2, 64, 4096, K_DENSE, 0, 0.338},       {2, 64, 16384, K_DENSE, 0, 4.038},
    {2, 64, 4096, K_ARROW, 0.25, 0.252},    {2, 64, 4096, K_ARROW, 0.50, 0.179},
    {2, 64, 4096, K_ARROW, 0.75, 0.094},    {2, 64, 16384, K_ARROW, 0.25, 3.068},
    {2, 64, 16384, K_ARROW, 0.50, 2.065},   {2, 64, 16384, K_ARROW, 0.75, 1.048},
    {2, 64, 4096, K_MIXED, 0, 0.159},       {2, 64, 16384, K_MIXED, 0, 1.290},
    {5, 64, 4096, K_DENSE, 0, 0.326},       {5, 64, 16384, K_DENSE, 0, 3.883},
    {5, 64, 4096, K_ARROW, 0.25, 0.255},    {5, 64, 4096, K_ARROW, 0.50, 0.181},
    {5, 64, 4096, K_ARROW, 0.75, 0.092},    {5, 64, 16384, K_ARROW, 0.25, 3.143},
    {5, 64, 16384, K_ARROW, 0.50, 2.093},   {5, 64, 16384, K_ARROW, 0.75, 1.063},
    {5, 64, 4096, K_MIXED, 0, 0.152},       {5, 64, 16384, K_MIXED, 0, 1.162},
};
#define N_MEAS ((int)(sizeof MEAS / sizeof MEAS[0]))
#define H 24

/* the plan of the GPU bench: methods and windows of its 24 heads */
static void plan_heads(const dfa_attn_layout *l, int kind, double target, int *m, int *w, double *sp) {
    *sp = 0;
    if (kind == K_DENSE)
        for (int h = 0; h < H; h++) m[h] = DFA_ATTN_FULL, w[h] = -1;
    else if (kind == K_ARROW) {
        const int win = dfa_mask_window_for_sparsity(l, target, sp);
        for (int h = 0; h < H; h++) m[h] = DFA_ATTN_ARROW, w[h] = win;
    } else { /* bench_attn_gpu.cu's mixed plan: 6 full, 9 arrow (w 1/3/8), 3 arrow+residual (w 2), 6 cached */
        static const int mm[24] = {0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3, 3};
        static const int ww[24] = {-1, -1, -1, -1, -1, -1, 1, 1, 1, 3, 3, 3, 8, 8, 8, 2, 2, 2, 0, 0, 0, 0, 0, 0};
        for (int h = 0; h < H; h++) m[h] = mm[(h * 7) % 24], w[h] = ww[(h * 7) % 24];
    }
}

/* unions: 192-row lists with union items (session 5 on); the fit's measurements ran without */
static void build(dfa_acu_worklist *wl, int NV, int kind, double target, int rows, int unions, double *sp) {
    dfa_attn_layout l = {NV, 512, 1, 128, DFA_BAND_ARROW};
    int m[H], w[H];
    plan_heads(&l, kind, target, m, w, sp);
    dfa_error err = {0};
    if (dfa_acu_worklist_build_union(wl, &l, H, m, w, rows, unions, &err) != DFA_OK) {
        fprintf(stderr, "work list: %s\n", err.msg);
        exit(1);
    }
}

static int rows_of(int kernel, int D) {
    return kernel == 5 && D == 64 ? DFA_ACU_BM3 : DFA_ACU_BM;
}

/* ---- the fit ---- */

typedef struct fit {
    double rho, share2, step[2], launch, rms, max_err;
    int ng; /* 1: one step time; 2: one per token count (4k, 16k) */
} fit;

/* Weighted least squares (weights 1/t_i: relative errors) of t_i ~ launch + step[g_i] * M_i, with
 * one step per group g_i (ng groups: 1, or 2 = one per token count). Returns 0 if singular. */
static int lsq(const double *M, const double *t, const int *g, int n, int ng, double *step, double *launch) {
    double A[3][4] = {{0}};
    const int nu = ng + 1; /* unknowns: launch, step[0..ng) */
    for (int i = 0; i < n; i++) {
        double x[3] = {1, 0, 0};
        x[1 + g[i]] = M[i];
        const double wi = 1.0 / (t[i] * t[i]);
        for (int r = 0; r < nu; r++) {
            for (int c = 0; c < nu; c++) A[r][c] += wi * x[r] * x[c];
            A[r][nu] += wi * x[r] * t[i];
        }
    }
    for (int c = 0; c < nu; c++) { /* Gauss-Jordan, no pivoting needed for these SPD systems */
        if (fabs(A[c][c]) < 1e-300) return 0;
        for (int r = 0; r < nu; r++) {
            if (r == c) continue;
            const double f = A[r][c] / A[c][c];
            for (int k = c; k <= nu; k++) A[r][k] -= f * A[c][k];
        }
    }
    *launch = A[0][nu] / A[0][0];
    for (int j = 0; j < ng; j++) step[j] = A[1 + j][nu] / A[1 + j][1 + j];
    return 1;
}

/* Makespans in steps (step 1, item rho, launch 0) of the measurements `sel` of one kernel. */
static void unit_makespans(int kernel, int D, double rho, double share2, int n_ctas, const int *sel, int n, double *M,
                           dfa_acu_worklist *lists) {
    const int rows = rows_of(kernel, D);
    dfa_acu_cost m;
    dfa_acu_cost_default(&m, rows, 0);
    m.step_us = 1;
    m.item_us = rho;
    m.launch_us = 0;
    m.lookahead = D == 64 ? 4 : 2;
    if (rows == DFA_ACU_BM3) m.share[2] = share2;
    for (int i = 0; i < n; i++) {
        dfa_acu_sim s;
        dfa_acu_sched_sim(&lists[sel[i]], &m, n_ctas, 1, &s);
        M[i] = s.makespan_us;
    }
}

static fit fit_kernel(int kernel, int D, int n_ctas, int ng, dfa_acu_worklist *lists) {
    int sel[32], g[32], n = 0;
    for (int i = 0; i < N_MEAS; i++)
        if (MEAS[i].kernel == kernel && MEAS[i].D == D && MEAS[i].kind != K_MIXED) {
            g[n] = ng == 2 && MEAS[i].NV > 8192;
            sel[n++] = i;
        }
    double t[32], M[32];
    for (int i = 0; i < n; i++) t[i] = MEAS[sel[i]].ms * 1e3;
    fit best = {0};
    best.rms = 1e30;
    const int three = rows_of(kernel, D) == DFA_ACU_BM3;
    for (double share2 = three ? 0.60 : 1.0; share2 <= (three ? 0.801 : 1.0); share2 += 0.01)
        for (double rho = 0; rho <= 8.001; rho += 0.05) {
            unit_makespans(kernel, D, rho, share2, n_ctas, sel, n, M, lists);
            fit f = {0};
            f.rho = rho, f.share2 = share2, f.ng = ng;
            if (!lsq(M, t, g, n, ng, f.step, &f.launch) || f.launch < 0) continue; /* no negative launch */
            if (ng == 1) f.step[1] = f.step[0];
            double ss = 0;
            for (int i = 0; i < n; i++) {
                const double r = (f.launch + f.step[g[i]] * M[i]) / t[i] - 1;
                ss += r * r;
                if (fabs(r) > f.max_err) f.max_err = fabs(r);
            }
            f.rms = sqrt(ss / n);
            if (f.rms < best.rms) best = f;
        }
    return best;
}

static void model_of(const fit *f, int big, int kernel, int D, dfa_acu_cost *m) {
    dfa_acu_cost_default(m, rows_of(kernel, D), 0);
    m->step_us = f->step[big];
    m->item_us = f->rho * f->step[big];
    m->launch_us = f->launch;
    m->lookahead = D == 64 ? 4 : 2;
    if (m->n_cons == 3) m->share[2] = f->share2;
}

static void fit_table(const fit *f, int kernel, int D, int n_ctas, dfa_acu_worklist *lists, const double *sp) {
    printf("%7s %-10s %6s %8s %8s %7s %7s %7s %7s\n", "tokens", "plan", "items", "meas ms", "model ms", "err", "idle",
           "ovh", "t/ideal");
    double dense_model[2] = {0, 0}, dense_meas[2] = {0, 0};
    for (int i = 0; i < N_MEAS; i++) {
        if (MEAS[i].kernel != kernel || MEAS[i].D != D) continue;
        const int big = MEAS[i].NV > 8192;
        dfa_acu_cost m;
        model_of(f, big, kernel, D, &m);
        dfa_acu_sim s;
        dfa_acu_sched_sim(&lists[i], &m, n_ctas, 1, &s);
        /* the per-item overhead's share of the busy time */
        double ovh = 0;
        for (int j = 0; j < lists[i].n_items; j++)
            if (!(lists[i].items[j].flags & DFA_ACU_ITEM_COPY)) ovh += m.item_us;
        char name[32];
        if (MEAS[i].kind == K_DENSE) {
            snprintf(name, sizeof name, "dense");
            dense_model[big] = s.makespan_us, dense_meas[big] = MEAS[i].ms * 1e3;
        } else if (MEAS[i].kind == K_ARROW)
            snprintf(name, sizeof name, "arrow %.0f%%", 100 * sp[i]);
        else
            snprintf(name, sizeof name, "mixed*");
        char tid[32] = "";
        if (MEAS[i].kind == K_ARROW)
            snprintf(tid, sizeof tid, "%.3f/%.3f", MEAS[i].ms * 1e3 / (dense_meas[big] * (1 - sp[i])),
                     s.makespan_us / (dense_model[big] * (1 - sp[i])));
        printf("%7d %-10s %6d %8.3f %8.3f %+6.1f%% %6.1f%% %6.1f%% %s\n", MEAS[i].NV, name, lists[i].n_items,
               MEAS[i].ms, s.makespan_us / 1e3, 100 * (s.makespan_us / (MEAS[i].ms * 1e3) - 1), 100 * s.idle_frac,
               100 * ovh / s.busy_us, tid);
    }
}

/* Where arrow's time over its ideal (own dense x (1 - r)) goes in the model: t/ideal with the
 * per-item time, then also the launch time, then also the end-of-launch idle removed (from arrow
 * and dense alike: idle-free = busy / CTAs). */
static void arrow_breakdown(const fit *f, int kernel, int D, int n_ctas, dfa_acu_worklist *lists, const double *sp) {
    printf("%7s %-10s %8s %8s %8s %8s   (t/ideal in the model: as fitted, then cumulatively without\n", "tokens",
           "plan", "model", "-item", "-launch", "-idle");
    printf("%7s %-10s %8s %8s %8s %8s    the per-item time, the launch time, the idle CTA time)\n", "", "", "", "", "",
           "");
    for (int i = 0; i < N_MEAS; i++) {
        if (MEAS[i].kernel != kernel || MEAS[i].D != D || MEAS[i].kind != K_ARROW) continue;
        const int big = MEAS[i].NV > 8192;
        int dense = -1;
        for (int j = 0; j < N_MEAS; j++)
            if (MEAS[j].kernel == kernel && MEAS[j].D == D && MEAS[j].NV == MEAS[i].NV && MEAS[j].kind == K_DENSE) dense = j;
        double tid[4];
        for (int v = 0; v < 4; v++) {
            dfa_acu_cost m;
            model_of(f, big, kernel, D, &m);
            if (v >= 1) m.item_us = 0;
            if (v >= 2) m.launch_us = 0;
            dfa_acu_sim a, d;
            dfa_acu_sched_sim(&lists[i], &m, n_ctas, 1, &a);
            dfa_acu_sched_sim(&lists[dense], &m, n_ctas, 1, &d);
            const double ta = v == 3 ? a.busy_us / a.ctas : a.makespan_us, td = v == 3 ? d.busy_us / d.ctas : d.makespan_us;
            tid[v] = ta / (td * (1 - sp[i]));
        }
        printf("%7d arrow %3.0f%% %8.3f %8.3f %8.3f %8.3f\n", MEAS[i].NV, 100 * sp[i], tid[0], tid[1], tid[2], tid[3]);
    }
}

static int run_fit(int n_ctas) {
    dfa_acu_worklist lists[N_MEAS];
    double sp[N_MEAS];
    for (int i = 0; i < N_MEAS; i++)
        build(&lists[i], MEAS[i].NV, MEAS[i].kind, MEAS[i].target, rows_of(MEAS[i].kernel, MEAS[i].D), 0, &sp[i]);
    const int kernels[3][2] = {{2, 128}, {2, 64}, {5, 64}};
    printf("schedule model fit on %d CTAs (weighted least squares of relative errors; dense + arrow fitted, "
           "mixed held out)\n",
           n_ctas);
    for (int ng = 1; ng <= 2; ng++)
        for (int k = 0; k < 3; k++) {
            const int kernel = kernels[k][0], D = kernels[k][1];
            fit f = fit_kernel(kernel, D, n_ctas, ng, lists);
            printf("\n== variant %d, D=%d (%d-row list): step %.4f us", kernel, D, rows_of(kernel, D), f.step[0]);
            if (ng == 2) printf(" (4k) / %.4f us (16k)", f.step[1]);
            printf(", item %.2f steps, launch %.2f us", f.rho, f.launch);
            if (rows_of(kernel, D) == DFA_ACU_BM3) printf(", share(2 of 3) %.2f", f.share2);
            printf("; rms %.1f %%, max %.1f %%\n", 100 * f.rms, 100 * f.max_err);
            if (ng == 2 && k == 1) continue; /* D=64 v2: one step time fits (0.2 %) */
            fit_table(&f, kernel, D, n_ctas, lists, sp);
            arrow_breakdown(&f, kernel, D, n_ctas, lists, sp);
        }
    dfa_acu_cost d;
    dfa_acu_cost_default(&d, DFA_ACU_BM, 0);
    printf("\nidle: CTA time after the CTA's last item until the launch ends; ovh: the per-item time's share of\n"
           "the busy time; t/ideal: measured / model, as the GPU table (own dense x (1-r)); *: held out (copies\n"
           "at the default %.3f us/row, ARROW_RS as ARROW)\n",
           d.copy_row_us);
    for (int i = 0; i < N_MEAS; i++) dfa_acu_worklist_free(&lists[i]);
    return 0;
}

/* ---- predictions for the GPU bench's plans ---- */

/* Balance wl for (n_ctas, batch, split128): the report (unchanged list: after == before). */
static void balance_report(const dfa_acu_worklist *wl, int rows, int n_ctas, int batch, int split128,
                           const dfa_acu_cost *model, dfa_acu_balance_report *r) {
    dfa_acu_balance b = {n_ctas, batch, split128, model};
    dfa_acu_item *items;
    int n;
    dfa_error err = {0};
    if (dfa_acu_worklist_balance(wl, rows, &b, &items, &n, r, &err) != DFA_OK) {
        fprintf(stderr, "balance: %s\n", err.msg);
        exit(1);
    }
    free(items);
}

static int run_predict(int n_ctas) {
    static const struct {
        int kernel, D, unions;
    } K[4] = {{2, 128, 0}, {2, 64, 0}, {5, 64, 0}, {5, 64, 1}};
    static const int NVs[2] = {4096, 16384};
    static const struct {
        int kind;
        double target;
        const char *name;
    } P[5] = {{K_DENSE, 0, "dense"}, {K_ARROW, 0.25, "arrow 25%"}, {K_ARROW, 0.5, "arrow 50%"},
              {K_ARROW, 0.75, "arrow 75%"}, {K_MIXED, 0, "mixed"}};
    printf("predicted makespan, unbalanced / tail-balanced list, %d CTAs, default model (attn_sched.c);\n"
           "each B balanced for itself (the plan keeps one list per B = 1, 2)\n", n_ctas);
    printf("%4s %3s %7s %-10s %5s %6s %9s %9s %7s %7s %5s %5s %7s %7s\n", "var", "D", "tokens", "plan", "rows",
           "items", "unbal us", "bal us", "B=1", "idle", "k/md", "+pcs", "B=2", "split128");
    for (int k = 0; k < 4; k++) {
        if (K[k].kernel == 2 && K[k].D == 64) continue; /* the same 128-row list and model as D=128 */
        for (int n = 0; n < 2; n++)
            for (int p = 0; p < 5; p++) {
                const int rows = rows_of(K[k].kernel, K[k].D);
                dfa_acu_worklist wl;
                double sp;
                build(&wl, NVs[n], P[p].kind, P[p].target, rows, K[k].unions, &sp);
                dfa_acu_balance_report r1, r2, r3;
                balance_report(&wl, rows, n_ctas, 1, 0, NULL, &r1);
                balance_report(&wl, rows, n_ctas, 2, 0, NULL, &r2);
                char s128[16] = "";
                if (rows == DFA_ACU_BM) { /* 128-row items split too, if the 2-consumer kernel skipped idle warpgroups */
                    balance_report(&wl, rows, n_ctas, 1, 1, NULL, &r3);
                    snprintf(s128, sizeof s128, "%.3fx", r3.before.makespan_us / r3.after.makespan_us);
                }
                char km[16];
                snprintf(km, sizeof km, "%d/%d", r1.k, r1.mode);
                printf("%3d%c %3d %7d %-10s %5d %6d %9.1f %9.1f %6.3fx %6.1f%% %5s %5d %6.3fx %7s\n", K[k].kernel,
                       K[k].unions ? 'u' : ' ',
                       K[k].D, NVs[n], P[p].name, rows, wl.n_items, r1.before.makespan_us, r1.after.makespan_us,
                       r1.before.makespan_us / r1.after.makespan_us, 100 * r1.before.idle_frac, km, r1.n_pieces,
                       r2.before.makespan_us / r2.after.makespan_us, s128);
                dfa_acu_worklist_free(&wl);
            }
    }
    printf("5u: variant 5's 192-row list with union items (the model counts a union item's steps for all of\n"
           "its chunks, no gain from skipped steps);\n"
           "B=1, B=2: unbalanced / balanced makespan (> 1: faster); idle: CTA time idle at the end, unbalanced,\n"
           "B=1; k/md: the B=1 list's last k items re-cut, mode (0: 64 rows off, 1: 64-row pieces, 2: runs in\n"
           "128-row pieces); split128: B=1 if 128-row items were split too (needs an idle-warpgroup skip)\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--fit")) return run_fit(argc > 2 ? atoi(argv[2]) : 132);
    return run_predict(argc > 1 ? atoi(argv[1]) : 132);
}
