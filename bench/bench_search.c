/* bench_search.c - plan-search time against its floor, measured in the same run.
 *
 * The floor is generating the calibration rows uncompressed (the search has to run the model on
 * them anyway): a synthetic DiT-like engine (per layer: qkv projection, attention, output
 * projection, GELU MLP 4x; f32, OpenBLAS linears, attention by the CPU reference). Then the V2
 * search (candidates ARROW(1), ARROW(3), ARROW_RS(1), CACHE) and the V1 search on the same
 * engine from the same start. Prints seconds and the ratios to the floor (issue 8's bar for V2 on
 * the device: at most 1.3x).
 * Usage: bench_search [grid=32] [layers=4] [steps=4] [rows=2] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/ctx.h"
#include "models/ops.h"
#include "plan/search.h"

enum { H = 8, D = 64, C = H * D };

typedef struct synth {
    dfa_ctx *ctx;
    int L, R, N, steps, cur;
    dfa_attn_layout lay;
    float *wqkv, *wo, *w1, *w2; /* per layer */
    float *x0, *x, *h, *qkv, *q, *k, *v, *o, *t, *m;
} synth;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float *falloc(size_t n) {
    float *p = malloc(n * sizeof(float));
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return p;
}

static void fill(float *p, size_t n, float scale, unsigned long long *s) {
    for (size_t i = 0; i < n; i++) {
        *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
        p[i] = scale * (float)((double)(*s >> 11) * (2.0 / 9007199254740992.0) - 1.0);
    }
}

static dfa_status run_step(void *user, int step, int commit, dfa_search_hook_fn hook, void *hu, void *model_out) {
    synth *S = user;
    if (step != S->cur) return DFA_ERR_INVALID_ARG;
    const int M = S->R * S->N;
    for (size_t i = 0; i < (size_t)M * C; i++) S->h[i] = S->x[i] + 0.05f * (float)cos(0.3 * step + (double)(i % C));
    for (int l = 0; l < S->L; l++) {
        dfa_op_linear(S->ctx, S->h, M, C, S->wqkv + (size_t)l * 3 * C * C, NULL, 3 * C, S->qkv);
        for (int r = 0; r < M; r++) {
            memcpy(S->q + (size_t)r * C, S->qkv + (size_t)r * 3 * C, C * sizeof(float));
            memcpy(S->k + (size_t)r * C, S->qkv + (size_t)r * 3 * C + C, C * sizeof(float));
            memcpy(S->v + (size_t)r * C, S->qkv + (size_t)r * 3 * C + 2 * C, C * sizeof(float));
        }
        DFA_TRY(hook(hu, l, S->q, S->k, S->v, S->o));
        dfa_op_linear(S->ctx, S->o, M, C, S->wo + (size_t)l * C * C, NULL, C, S->t);
        for (size_t i = 0; i < (size_t)M * C; i++) S->h[i] += S->t[i];
        dfa_op_linear(S->ctx, S->h, M, C, S->w1 + (size_t)l * 4 * C * C, NULL, 4 * C, S->m);
        dfa_op_gelu_tanh(S->m, (size_t)M * 4 * C);
        dfa_op_linear(S->ctx, S->m, M, 4 * C, S->w2 + (size_t)l * 4 * C * C, NULL, C, S->t);
        for (size_t i = 0; i < (size_t)M * C; i++) S->h[i] += S->t[i];
    }
    if (model_out) memcpy(model_out, S->h, sizeof(float) * M * C);
    if (commit) {
        for (size_t i = 0; i < (size_t)M * C; i++) S->x[i] = 0.95f * S->x[i] + 0.05f * tanhf(S->h[i]);
        S->cur++;
    }
    return DFA_OK;
}

/* The floor's attention: every head FULL through the same CPU reference the search uses. */
static dfa_status full_hook(void *user, int layer, const void *q, const void *k, const void *v, void *out) {
    synth *S = user;
    (void)layer;
    return dfa_search_attn_cpu(S->ctx, &S->lay, S->R, H, D, -1, q, k, v, out);
}

static void reset(synth *S) {
    memcpy(S->x, S->x0, sizeof(float) * S->R * S->N * C);
    S->cur = 0;
}

int main(int argc, char **argv) {
    int grid = argc > 1 ? atoi(argv[1]) : 32, L = argc > 2 ? atoi(argv[2]) : 4, steps = argc > 3 ? atoi(argv[3]) : 4,
        R = argc > 4 ? atoi(argv[4]) : 2;
    if (grid < 4 || L < 1 || steps < 1 || R < 1) return fprintf(stderr, "bad arguments\n"), 1;
    synth S;
    memset(&S, 0, sizeof S);
    if (dfa_ctx_init(&S.ctx, NULL, NULL, 0) != DFA_OK) return 1;
    S.L = L, S.R = R, S.steps = steps, S.lay = (dfa_attn_layout){grid * grid, 0, 0, 64, DFA_BAND_ARROW};
    S.N = grid * grid;
    unsigned long long seed = 0x1234567ULL;
    size_t MC = (size_t)R * S.N * C;
    S.wqkv = falloc((size_t)L * 3 * C * C), S.wo = falloc((size_t)L * C * C), S.w1 = falloc((size_t)L * 4 * C * C),
    S.w2 = falloc((size_t)L * 4 * C * C);
    fill(S.wqkv, (size_t)L * 3 * C * C, 0.08f, &seed), fill(S.wo, (size_t)L * C * C, 0.02f, &seed);
    fill(S.w1, (size_t)L * 4 * C * C, 0.04f, &seed), fill(S.w2, (size_t)L * 4 * C * C, 0.01f, &seed);
    S.x0 = falloc(MC), S.x = falloc(MC), S.h = falloc(MC), S.qkv = falloc(3 * MC), S.q = falloc(MC), S.k = falloc(MC);
    S.v = falloc(MC), S.o = falloc(MC), S.t = falloc(MC), S.m = falloc(4 * MC);
    fill(S.x0, MC, 1.0f, &seed);

    dfa_search_engine e = {.user = &S, .n_steps = steps, .n_layers = L, .n_heads = H, .head_dim = D, .n_rows = R,
                           .layout = S.lay, .grid_h = grid, .grid_w = grid, .out_numel = MC, .run_step = run_step};
    printf("synthetic DiT: %d layers, %d heads x %d, %d tokens (%dx%d), %d rows, %d steps, %d threads\n", L, H, D,
           S.N, grid, grid, R, steps, S.ctx->n_threads);

    double floor_s = INFINITY, t0; /* best of 2: the first run also pays thread start-up and page faults */
    for (int rep = 0; rep < 2; rep++) {
        reset(&S);
        t0 = now_s();
        for (int s = 0; s < steps; s++)
            if (run_step(&S, s, 1, full_hook, &S, NULL) != DFA_OK)
                return fprintf(stderr, "%s\n", dfa_ctx_error(S.ctx)), 1;
        floor_s = fmin(floor_s, now_s() - t0);
    }
    printf("floor (uncompressed generation of the rows): %8.3f s\n", floor_s);

    static const dfa_search_cand cands[] = {
        {DFA_ATTN_ARROW, 1}, {DFA_ATTN_ARROW, 3}, {DFA_ATTN_ARROW_RS, 1}, {DFA_ATTN_CACHE, -1}};
    dfa_search_opts o;
    memset(&o, 0, sizeof o);
    o.delta = 0.5, o.c = 1.5, o.cands = cands, o.n_cands = 4, o.v1_window = -1;
    dfa_search_plan p;
    reset(&S);
    t0 = now_s();
    if (dfa_search_v2(S.ctx, &e, &o, &p) != DFA_OK) return fprintf(stderr, "%s\n", dfa_ctx_error(S.ctx)), 1;
    double v2_s = now_s() - t0;
    printf("V2 search (delta %.2f, c %.1f):            %8.3f s  x%.2f of the floor  plan cost %.3f of FULL\n", o.delta,
           o.c, v2_s, v2_s / floor_s, dfa_search_plan_cost_fraction(&p));
    dfa_search_plan_free(S.ctx, &p);

    o.delta = 0.1;
    reset(&S);
    t0 = now_s();
    if (dfa_search_v1(S.ctx, &e, &o, &p) != DFA_OK) return fprintf(stderr, "%s\n", dfa_ctx_error(S.ctx)), 1;
    double v1_s = now_s() - t0;
    printf("V1 search (delta %.2f, window %d tiles):    %8.3f s  x%.2f of the floor  plan cost %.3f of FULL\n", o.delta,
           dfa_search_v1_default_window(&S.lay), v1_s, v1_s / floor_s, dfa_search_plan_cost_fraction(&p));
    dfa_search_plan_free(S.ctx, &p);
    dfa_ctx_free(S.ctx);
    return 0;
}
