/* cmd_bench.c - `dfa bench attn --cpu`: times every attention method on one CPU shape and
 * prints each against FULL measured in the same run, beside its fraction of FULL's score
 * entries (the ideal ratio). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attn/attn.h"
#include "core/log.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "core/ctx.h"
#include "dfa.h"

typedef struct bench_bufs {
    dfa_tensor q, k, v, o;
    float *oc, *res; /* [2B, N, H, D] output and residual caches */
    dfa_attn_head_exec *ex;
} bench_bufs;

/* One timed configuration: every head gets `proto`; batch b (the CFG rows use 2 x batch). */
typedef struct bench_cfg {
    char name[48];
    dfa_attn_head_exec proto;
    int asc, cfg_batch;
    double entries_frac; /* score entries / FULL's, per batch element computed */
    double flops;        /* of one call */
    int base;            /* index of the FULL row it is compared with */
    double best;
} bench_cfg;

static int run_cfg(dfa_ctx *ctx, const dfa_attn_layout *L, bench_bufs *b, int H, int batch, bench_cfg *c) {
    for (int h = 0; h < H; h++) b->ex[h] = c->proto;
    b->q.shape[0] = b->k.shape[0] = b->v.shape[0] = b->o.shape[0] = c->cfg_batch ? 2 * batch : batch;
    double t0 = dfa_now_s();
    if (dfa_attn_run_heads(ctx, L, &b->q, &b->k, &b->v, &b->o, b->ex, b->oc, b->res, c->asc, 1) != DFA_OK) {
        fprintf(stderr, "dfa bench attn: %s\n", dfa_ctx_error(ctx));
        return -1;
    }
    double t = dfa_now_s() - t0;
    if (c->best == 0 || t < c->best) c->best = t;
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
        {"reps", 0, DFA_ARG_INT, &reps, "R", "timed repetitions, the best reported (default 5)", 1, 1000},
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
    dfa_attn_layout L = {n_vis, n_text, !text_after, block, DFA_BAND_ARROW};
    const int N = n_vis + n_text, B2 = 2 * batch;
    const size_t n = (size_t)B2 * N * heads * dim;
    bench_bufs b;
    float *buf[4];
    int ok = 1;
    for (int i = 0; i < 4; i++) ok &= (buf[i] = malloc(n * sizeof(float))) != NULL;
    b.oc = calloc(n, sizeof(float));
    b.res = calloc(n, sizeof(float));
    b.ex = calloc((size_t)heads, sizeof *b.ex);
    ok &= b.oc && b.res && b.ex;
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
               "(%d visual tiles), %d threads, best of %d\n\n",
               batch, n_vis, n_text, text_after ? "text after" : "text first", heads, dim, block, tl.n_vis_tiles,
               ctx->n_threads, reps);
        /* configurations, timed round-robin (each rep runs every one) and the best kept, so that
         * a disturbance on a shared machine hits all alike */
        bench_cfg cf[20];
        int nc = 0;
        const double fl1 = 4.0 * dim * heads * batch; /* FLOPs per score entry, one call */
        cf[nc++] = (bench_cfg){"FULL", {DFA_ATTN_FULL, 0, 0, 0, 0}, 0, 0, 1.0, fl1 * ef, 0, 0};
        int wv[5] = {0, 1, 2, (tl.n_vis_tiles + 15) / 16, tl.n_vis_tiles / 4}; /* last two ~ V1's 1/8, 1/4 */
        int nw = 0, ws[5];
        for (int i = 0; i < 5; i++) { /* distinct windows below FULL */
            int dup = wv[i] >= dfa_mask_full_window(&L);
            for (int j = 0; j < nw; j++) dup |= ws[j] == wv[i];
            if (!dup) ws[nw++] = wv[i];
        }
        for (int i = 0; i < nw; i++) {
            double e = (double)dfa_mask_entries(&L, ws[i]);
            bench_cfg *c = &cf[nc++];
            *c = (bench_cfg){"", {DFA_ATTN_ARROW, ws[i], 0, 0, 0}, 0, 0, e / ef, fl1 * e, 0, 0};
            snprintf(c->name, sizeof c->name, "ARROW(w=%d)", ws[i]);
            c = &cf[nc++];
            *c = (bench_cfg){"", {DFA_ATTN_ARROW_RS, ws[i], 0, 0, 0}, 0, 0, e / ef, fl1 * e, 0, 0};
            snprintf(c->name, sizeof c->name, "ARROW_RS(w=%d) reuse", ws[i]);
            c = &cf[nc++];
            *c = (bench_cfg){"", {DFA_ATTN_FULL, 0, 0, 1, ws[i]}, 0, 0, 1.0 + e / ef, fl1 * (ef + e), 0, 0};
            snprintf(c->name, sizeof c->name, "ARROW_RS(w=%d) refresh", ws[i]);
        }
        cf[nc++] = (bench_cfg){"CACHE", {DFA_ATTN_CACHE, 0, 0, 0, 0}, 0, 0, 0.0, 0.0, 0, 0};
        const int full2 = nc;
        cf[nc++] = (bench_cfg){"FULL, CFG batch", {DFA_ATTN_FULL, 0, 0, 0, 0}, 0, 1, 1.0, 2 * fl1 * ef, full2, 0};
        cf[nc++] = (bench_cfg){"ASC (FULL), CFG batch", {DFA_ATTN_FULL, 0, 0, 0, 0}, 1, 1, 0.5, fl1 * ef, full2, 0};
        for (int rep = -1; rep < reps && !rc; rep++) /* rep = -1: warm-up */
            for (int i = 0; i < nc && !rc; i++) {
                double keep = cf[i].best;
                if (run_cfg(ctx, &L, &b, heads, batch, &cf[i])) rc = 1;
                if (rep < 0) cf[i].best = keep;
            }
        if (!rc) {
            printf("%-28s %10s %9s %12s %9s\n", "method", "ms", "vs FULL", "entries", "GFLOP/s");
            for (int i = 0; i < nc; i++) {
                char gf[16] = "-";
                if (cf[i].flops > 0) snprintf(gf, sizeof gf, "%.1f", cf[i].flops / cf[i].best / 1e9);
                printf("%-28s %10.3f %8.2fx %11.3f %9s\n", cf[i].name, cf[i].best * 1e3,
                       cf[cf[i].base].best / cf[i].best, cf[i].entries_frac, gf);
            }
            printf("\n\"vs FULL\": FULL's time / the method's (same run, same batch; the CFG rows against FULL on "
                   "the CFG batch); \"entries\": the method's score entries / FULL's (per computed batch element for "
                   "ASC: 0.5 of the batch).\n");
        }
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
