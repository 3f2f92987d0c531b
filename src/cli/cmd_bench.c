/* cmd_bench.c - `dfa bench attn --cpu`: times every attention method on one CPU shape and
 * prints each against FULL measured in the same run, beside its fraction of FULL's score
 * entries (the ideal ratio). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attn/attn.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "core/ctx.h"
#include "dfa.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct bench_bufs {
    dfa_tensor q, k, v, o;
    float **oc, **res;
    dfa_attn_head_exec *ex;
} bench_bufs;

/* median of reps timed runs after one warm-up; every head gets `proto` */
static int time_method(dfa_ctx *ctx, const dfa_attn_layout *L, bench_bufs *b, int H, dfa_attn_head_exec proto,
                       int asc, int reps, double *sec) {
    for (int h = 0; h < H; h++) {
        b->ex[h] = proto;
        b->ex[h].out_cache = b->oc[h];
        b->ex[h].res_cache = b->res[h];
    }
    double *t = malloc((size_t)reps * sizeof(double));
    if (!t) return -1;
    for (int r = -1; r < reps; r++) {
        double t0 = now_s();
        if (dfa_attn_run_heads(ctx, L, &b->q, &b->k, &b->v, &b->o, b->ex, asc, 1) != DFA_OK) {
            fprintf(stderr, "dfa bench attn: %s\n", dfa_ctx_error(ctx));
            free(t);
            return -1;
        }
        if (r >= 0) t[r] = now_s() - t0;
    }
    for (int i = 1; i < reps; i++) /* insertion sort, reps is small */
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
            double x = t[j];
            t[j] = t[j - 1];
            t[j - 1] = x;
        }
    *sec = t[reps / 2];
    free(t);
    return 0;
}

static int bench_attn(int argc, char **argv) {
    int cpu = 0, n_vis = 1024, n_text = 128, heads = 4, dim = 64, block = 64, reps = 5, threads = 0, batch = 1;
    int text_after = 0;
    dfa_arg_spec specs[] = {
        {"cpu", 0, DFA_ARG_FLAG, &cpu, NULL, "time the CPU reference (the only backend here so far)", 1, 0},
        {"tokens", 0, DFA_ARG_INT, &n_vis, "N", "visual tokens (default 1024)", 1, 1 << 20},
        {"text", 0, DFA_ARG_INT, &n_text, "N", "text tokens (default 128)", 0, 1 << 20},
        {"text-after", 0, DFA_ARG_FLAG, &text_after, NULL, "text after the image (SD3 order)", 1, 0},
        {"heads", 0, DFA_ARG_INT, &heads, "H", "heads (default 4)", 1, 1024},
        {"dim", 0, DFA_ARG_INT, &dim, "D", "head dim (default 64)", 1, 1024},
        {"block", 0, DFA_ARG_INT, &block, "B", "tile size in tokens (default 64)", 1, 1 << 16},
        {"batch", 0, DFA_ARG_INT, &batch, "B", "batch (default 1; ASC rows use 2 x this)", 1, 1024},
        {"reps", 0, DFA_ARG_INT, &reps, "R", "timed repetitions, median reported (default 5)", 1, 1000},
        {"threads", 't', DFA_ARG_INT, &threads, "T", "CPU threads (default all cores)", 0, 1024},
    };
    const int ns = (int)(sizeof specs / sizeof specs[0]);
    const char *pos[1];
    int npos;
    char msg[256];
    int r = dfa_args_parse(argc, argv, 2, specs, ns, pos, 1, &npos, msg, sizeof msg);
    if (r == 1) {
        dfa_args_usage("bench attn", "--cpu [--tokens N] [--text N] [--heads H] [--dim D]",
                       "Time each attention method on one shape, each against FULL in the same run.", specs, ns);
        return 0;
    }
    if (r == 0 && (npos || !cpu)) {
        snprintf(msg, sizeof msg, "%s", npos ? "takes no positional arguments" : "only --cpu is available so far");
        r = -1;
    }
    if (r < 0) {
        fprintf(stderr, "dfa bench attn: %s\n", msg);
        return 2;
    }
    dfa_ctx *ctx = NULL;
    dfa_ctx_params cp = dfa_ctx_default_params();
    cp.n_threads = threads;
    char err[256];
    if (dfa_ctx_init(&ctx, &cp, err, sizeof err) != DFA_OK) {
        fprintf(stderr, "dfa bench attn: %s\n", err);
        return 1;
    }
    dfa_attn_layout L = {n_vis, n_text, !text_after, block};
    const int N = n_vis + n_text, B2 = 2 * batch;
    const size_t n = (size_t)B2 * N * heads * dim, cn = (size_t)B2 * N * dim;
    bench_bufs b;
    float *buf[4];
    int ok = 1;
    for (int i = 0; i < 4; i++) ok &= (buf[i] = malloc(n * sizeof(float))) != NULL;
    b.oc = calloc((size_t)heads, sizeof(float *));
    b.res = calloc((size_t)heads, sizeof(float *));
    b.ex = calloc((size_t)heads, sizeof *b.ex);
    ok &= b.oc && b.res && b.ex;
    for (int h = 0; ok && h < heads; h++) {
        ok &= (b.oc[h] = calloc(cn, sizeof(float))) != NULL;
        ok &= (b.res[h] = calloc(cn, sizeof(float))) != NULL;
    }
    int rc = 0;
    if (!ok) {
        fprintf(stderr, "dfa bench attn: out of host memory for %d tokens x %d heads x %d\n", N, heads, dim);
        rc = 1;
    } else {
        unsigned long long s = 88172645463325252ULL;
        for (int i = 0; i < 3; i++)
            for (size_t j = 0; j < n; j++) {
                s ^= s << 13, s ^= s >> 7, s ^= s << 17;
                buf[i][j] = (float)((double)(s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
            }
        dfa_attn_tiles tl;
        dfa_layout_tiles(&L, &tl);
        int64_t shape[4] = {batch, N, heads, dim};
        dfa_tensor_init(&b.q, DFA_F32, DFA_DEV_CPU, 4, shape, buf[0], NULL);
        dfa_tensor_init(&b.k, DFA_F32, DFA_DEV_CPU, 4, shape, buf[1], NULL);
        dfa_tensor_init(&b.v, DFA_F32, DFA_DEV_CPU, 4, shape, buf[2], NULL);
        dfa_tensor_init(&b.o, DFA_F32, DFA_DEV_CPU, 4, shape, buf[3], NULL);
        const double ef = (double)dfa_mask_entries(&L, -1);
        printf("dfa bench attn --cpu: batch %d, %d visual + %d text tokens (%s), %d heads, D=%d, tiles of %d "
               "(%d visual tiles), %d threads, median of %d\n\n",
               batch, n_vis, n_text, text_after ? "text after" : "text first", heads, dim, block, tl.n_vis_tiles,
               ctx->n_threads, reps);
        printf("%-28s %10s %9s %12s %9s\n", "method", "ms", "vs FULL", "entries", "GFLOP/s");
        double t_full = 0;
        dfa_attn_head_exec full = {DFA_ATTN_FULL, 0, 0, 0, 0, NULL, NULL};
        if (time_method(ctx, &L, &b, heads, full, 0, reps, &t_full)) rc = 1;
        double flops_full = 4.0 * dim * ef * heads * batch;
        printf("%-28s %10.3f %8.2fx %11.3f %9.1f\n", "FULL", t_full * 1e3, 1.0, 1.0, flops_full / t_full / 1e9);
        int wv[5] = {0, 1, 2, (tl.n_vis_tiles + 15) / 16, tl.n_vis_tiles / 4}; /* last two ~ V1's 1/8, 1/4 */
        int nw = 0, ws[5];
        for (int i = 0; i < 5; i++) { /* distinct windows below FULL */
            int dup = wv[i] >= dfa_mask_full_window(&L);
            for (int j = 0; j < nw; j++) dup |= ws[j] == wv[i];
            if (!dup) ws[nw++] = wv[i];
        }
        for (int i = 0; i < nw && !rc; i++) {
            double t, e = (double)dfa_mask_entries(&L, ws[i]);
            char name[64];
            dfa_attn_head_exec ar = {DFA_ATTN_ARROW, ws[i], 0, 0, 0, NULL, NULL};
            if (time_method(ctx, &L, &b, heads, ar, 0, reps, &t)) rc = 1;
            snprintf(name, sizeof name, "ARROW(w=%d)", ws[i]);
            printf("%-28s %10.3f %8.2fx %11.3f %9.1f\n", name, t * 1e3, t_full / t, e / ef,
                   4.0 * dim * e * heads * batch / t / 1e9);
            dfa_attn_head_exec rs = {DFA_ATTN_ARROW_RS, ws[i], 0, 0, 0, NULL, NULL};
            if (time_method(ctx, &L, &b, heads, rs, 0, reps, &t)) rc = 1;
            snprintf(name, sizeof name, "ARROW_RS(w=%d) reuse", ws[i]);
            printf("%-28s %10.3f %8.2fx %11.3f %9.1f\n", name, t * 1e3, t_full / t, e / ef,
                   4.0 * dim * e * heads * batch / t / 1e9);
            dfa_attn_head_exec rf = {DFA_ATTN_FULL, 0, 0, 1, ws[i], NULL, NULL};
            if (time_method(ctx, &L, &b, heads, rf, 0, reps, &t)) rc = 1;
            snprintf(name, sizeof name, "ARROW_RS(w=%d) refresh", ws[i]);
            printf("%-28s %10.3f %8.2fx %11.3f %9.1f\n", name, t * 1e3, t_full / t, 1.0 + e / ef,
                   4.0 * dim * (ef + e) * heads * batch / t / 1e9);
        }
        double t;
        dfa_attn_head_exec ca = {DFA_ATTN_CACHE, 0, 0, 0, 0, NULL, NULL};
        if (!rc && time_method(ctx, &L, &b, heads, ca, 0, reps, &t)) rc = 1;
        if (!rc) printf("%-28s %10.3f %8.2fx %11.3f %9s\n", "CACHE", t * 1e3, t_full / t, 0.0, "-");
        /* ASC: a CFG batch of 2 x batch, against FULL on the same batch */
        b.q.shape[0] = b.k.shape[0] = b.v.shape[0] = b.o.shape[0] = B2;
        double t2 = 0;
        if (!rc && time_method(ctx, &L, &b, heads, full, 0, reps, &t2)) rc = 1;
        if (!rc && time_method(ctx, &L, &b, heads, full, 1, reps, &t)) rc = 1;
        if (!rc) {
            printf("%-28s %10.3f %8.2fx %11.3f %9.1f\n", "FULL, CFG batch", t2 * 1e3, 1.0, 1.0, 2 * flops_full / t2 / 1e9);
            printf("%-28s %10.3f %8.2fx %11.3f %9.1f\n", "ASC (FULL), CFG batch", t * 1e3, t2 / t, 0.5,
                   flops_full / t / 1e9);
            printf("\n\"vs FULL\": FULL's time / the method's (same run, same batch); \"entries\": the method's "
                   "score entries / FULL's (the ideal ratio's inverse).\n");
        }
    }
    for (int h = 0; b.oc && h < heads; h++) {
        free(b.oc[h]);
        if (b.res) free(b.res[h]);
    }
    free(b.oc);
    free(b.res);
    free(b.ex);
    for (int i = 0; i < 4; i++) free(buf[i]);
    dfa_ctx_free(ctx);
    return rc;
}

int cmd_bench(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "attn") == 0) return bench_attn(argc, argv);
    int help = argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0);
    fprintf(help ? stdout : stderr, "usage: dfa bench attn --cpu [--tokens N] [--text N] [--heads H] [--dim D]\n");
    return help ? 0 : 2;
}
