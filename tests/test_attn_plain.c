/* test_attn_plain.c - the plain band (mask.h DFA_BAND_PLAIN: V1's window over the whole
 * [text, image] / [image, text] sequence). The mask predicate against an independent tile
 * numbering written here, the tile predicate, dfa_mask_entries and dfa_cost_tiles against brute
 * force; plain == arrow without text; the full window; the CPU attention (every method, the
 * ARROW_RS residual) against the float64 loop over dfa_mask_keep. */
#include "attn_ref.h"
#include "core/ctx.h"
#include "dfa.h"
#include "plan/cost.h"

#define TOL 2e-5

static unsigned long long g_rng = 0x51a1dULL;

static int rnd(int n) { return (int)(test_rng_next(&g_rng) % (unsigned long long)n); }

/* Independent tile numbering: walk the two segments in sequence order, cutting each into
 * tiles of `block` from its first token. tile[p] for every position p. */
static void tile_numbers(const dfa_attn_layout *L, int *tile) {
    const int seg_len[2] = {L->text_first ? L->n_text : L->n_vis, L->text_first ? L->n_vis : L->n_text};
    int p = 0, t = 0;
    for (int s = 0; s < 2; s++) {
        for (int i = 0; i < seg_len[s]; i++) tile[p++] = t + i / L->block;
        t += (seg_len[s] + L->block - 1) / L->block;
    }
}

static dfa_attn_layout random_layout(int it) {
    dfa_attn_layout L = {0};
    L.n_vis = rnd(90);
    L.n_text = it % 3 == 0 ? 0 : rnd(30); /* text none / first / last */
    L.text_first = rnd(2);
    L.block = 1 + rnd(17); /* short last tiles in both segments */
    L.band = DFA_BAND_PLAIN;
    if (L.n_vis + L.n_text == 0) L.n_vis = 1;
    return L;
}

static void test_mask_brute_force(void) {
    for (int it = 0; it < 150; it++) {
        dfa_attn_layout L = random_layout(it);
        const int N = dfa_layout_tokens(&L);
        int *tile = malloc((size_t)N * sizeof *tile);
        tile_numbers(&L, tile);
        dfa_attn_tiles t;
        dfa_layout_tiles(&L, &t);
        CHECK(dfa_mask_full_window(&L) == t.n_tiles - 1);
        int bad_tile = 0;
        for (int p = 0; p < N; p++) bad_tile += dfa_token_tile(&L, p) != tile[p];
        CHECKF(bad_tile == 0, "dfa_token_tile: %d positions wrong", bad_tile);
        for (int w = -1; w <= t.n_tiles + 1; w++) {
            int64_t cnt = 0;
            int bad = 0;
            for (int q = 0; q < N; q++)
                for (int k = 0; k < N; k++) {
                    int want = w < 0 || abs(tile[q] - tile[k]) <= w;
                    bad += dfa_mask_keep(&L, w, q, k) != want;
                    bad += dfa_mask_tile_keep(&L, w, tile[q], tile[k]) != want;
                    cnt += want;
                }
            CHECKF(bad == 0, "n_vis %d n_text %d first %d block %d window %d: %d predicate errors", L.n_vis, L.n_text,
                   L.text_first, L.block, w, bad);
            CHECKF(cnt == dfa_mask_entries(&L, w), "n_vis %d n_text %d first %d block %d window %d: %lld vs %lld",
                   L.n_vis, L.n_text, L.text_first, L.block, w, (long long)cnt, (long long)dfa_mask_entries(&L, w));
            int64_t tiles = 0;
            for (int qt = 0; qt < t.n_tiles; qt++)
                for (int kt = 0; kt < t.n_tiles; kt++) tiles += w < 0 || abs(qt - kt) <= w;
            CHECK(tiles == dfa_cost_tiles(&L, w));
        }
        /* the full window is FULL, one less is not (with two tiles or more) */
        CHECK(dfa_mask_entries(&L, t.n_tiles - 1) == (int64_t)N * N);
        if (t.n_tiles > 1) CHECK(dfa_mask_entries(&L, t.n_tiles - 2) < (int64_t)N * N);
        free(tile);
    }
}

/* without text the plain band is the arrow band: same predicate, entries, tiles, full window */
static void test_no_text_equals_arrow(void) {
    for (int it = 0; it < 40; it++) {
        dfa_attn_layout P = random_layout(0), A = P; /* it % 3 == 0: no text */
        A.band = DFA_BAND_ARROW;
        const int N = dfa_layout_tokens(&P);
        CHECK(dfa_mask_full_window(&P) == dfa_mask_full_window(&A));
        CHECK(dfa_mask_v1_window(&P) == dfa_mask_v1_window(&A));
        for (int w = -1; w <= dfa_mask_full_window(&A) + 1; w++) {
            int bad = 0;
            for (int q = 0; q < N; q++)
                for (int k = 0; k < N; k++) bad += dfa_mask_keep(&P, w, q, k) != dfa_mask_keep(&A, w, q, k);
            CHECK(bad == 0);
            CHECK(dfa_mask_entries(&P, w) == dfa_mask_entries(&A, w));
            CHECK(dfa_cost_tiles(&P, w) == dfa_cost_tiles(&A, w));
        }
    }
    /* with text they differ: the plain band does not give text full rows */
    dfa_attn_layout P = {512, 64, 1, 64, DFA_BAND_PLAIN}, A = P;
    A.band = DFA_BAND_ARROW;
    CHECK(dfa_mask_full_window(&P) == 8 && dfa_mask_full_window(&A) == 7);
    CHECK(dfa_mask_keep(&A, 0, 0, 575) == 1 && dfa_mask_keep(&P, 0, 0, 575) == 0);
    CHECK(dfa_mask_entries(&P, 1) < dfa_mask_entries(&A, 1));
    /* V1's default window: 1/8 of all tokens in total width for plain, of the visual ones for arrow */
    CHECK(dfa_mask_v1_window(&P) == 1 && dfa_mask_v1_window(&A) == 1);
    CHECK(dfa_band_parse("plain") == DFA_BAND_PLAIN && dfa_band_parse("arrow") == DFA_BAND_ARROW);
    CHECK(dfa_band_parse("window") == -1 && dfa_band_parse(NULL) == -1);
    dfa_attn_layout bad = P;
    bad.band = 7;
    CHECK(dfa_layout_valid(&bad) != 0 && dfa_layout_valid(&P) == 0);
}

static int close_to(const qkv_set *s, int b, int h, const double *ref, const float *o, const float *add) {
    double worst = 0;
    for (int t = 0; t < s->N; t++)
        for (int d = 0; d < s->D; d++) {
            double r = ref[(size_t)t * s->D + d] + (add ? add[qkv_at(s, b, t, h) + d] : 0.0);
            double e = fabs(o[qkv_at(s, b, t, h) + d] - r);
            if (!(e <= worst)) worst = isnan(e) ? INFINITY : e;
        }
    return worst <= TOL;
}

/* CPU attention under the plain band: ARROW, ARROW_RS (with the residual of a FULL refresh),
 * FULL against the float64 loop over dfa_mask_keep; fresh inputs, output poisoned. */
static void test_cpu_attention(void) {
    dfa_ctx *ctx = NULL;
    dfa_ctx_params cp = dfa_ctx_default_params();
    cp.n_threads = 2;
    CHECK(dfa_ctx_init(&ctx, &cp, NULL, 0) == DFA_OK);
    static const int shapes[][5] = {
        /* n_vis, n_text, text_first, block, H */
        {37, 11, 1, 8, 2}, {50, 9, 0, 16, 3}, {45, 0, 1, 4, 2}, {29, 7, 1, 1, 1}, {200, 40, 1, 32, 2}, {7, 5, 0, 64, 1},
    };
    for (size_t ci = 0; ci < sizeof shapes / sizeof shapes[0]; ci++) {
        dfa_attn_layout L = {shapes[ci][0], shapes[ci][1], shapes[ci][2], shapes[ci][3], DFA_BAND_PLAIN};
        const int H = shapes[ci][4], B = 2, D = 64;
        qkv_set s;
        qkv_alloc(&s, B, dfa_layout_tokens(&L), H, D, &g_rng);
        const size_t n = (size_t)B * s.N * H * D;
        double *ref = malloc((size_t)s.N * D * sizeof(double)), *ref2 = malloc((size_t)s.N * D * sizeof(double));
        float *res = malloc(n * sizeof(float)), *res_in = malloc(n * sizeof(float));
        dfa_attn_head_exec *ex = calloc((size_t)H, sizeof *ex);
        const int wf = dfa_mask_full_window(&L);
        const int windows[4] = {0, 1, wf > 2 ? wf - 1 : 0, wf};
        for (int wi = 0; wi < 4; wi++) {
            const int w = windows[wi];
            /* ARROW(w) */
            for (int h = 0; h < H; h++) ex[h] = (dfa_attn_head_exec){DFA_ATTN_ARROW, w, 0, 0, 0};
            qkv_poison(&s);
            CHECK(dfa_attn_run_heads(ctx, &L, &s.tq, &s.tk, &s.tv, &s.to, ex, NULL, NULL, 0, 0) == DFA_OK);
            int ok = 1;
            for (int b = 0; b < B; b++)
                for (int h = 0; h < H; h++) {
                    ref_head(&s, &L, w, b, h, ref);
                    ok &= close_to(&s, b, h, ref, s.o, NULL);
                }
            CHECKF(ok, "case %zu ARROW(%d) plain", ci, w);
            /* FULL refreshing the residual R = FULL - ARROW(w) */
            for (int h = 0; h < H; h++) ex[h] = (dfa_attn_head_exec){DFA_ATTN_FULL, 0, 0, 1, w};
            for (size_t i = 0; i < n; i++) res[i] = NAN;
            qkv_poison(&s);
            CHECK(dfa_attn_run_heads(ctx, &L, &s.tq, &s.tk, &s.tv, &s.to, ex, NULL, res, 0, 0) == DFA_OK);
            ok = 1;
            for (int b = 0; b < B; b++)
                for (int h = 0; h < H; h++) {
                    ref_head(&s, &L, -1, b, h, ref);
                    ref_head(&s, &L, w, b, h, ref2);
                    ok &= close_to(&s, b, h, ref, s.o, NULL);
                    for (size_t i = 0; i < (size_t)s.N * D; i++) ref[i] -= ref2[i];
                    ok &= close_to(&s, b, h, ref, res, NULL);
                }
            CHECKF(ok, "case %zu FULL + residual of plain ARROW(%d)", ci, w);
            /* ARROW_RS(w) with a random residual */
            for (size_t i = 0; i < n; i++) res_in[i] = test_rng_uniform(&g_rng);
            for (int h = 0; h < H; h++) ex[h] = (dfa_attn_head_exec){DFA_ATTN_ARROW_RS, w, 0, 0, 0};
            qkv_poison(&s);
            CHECK(dfa_attn_run_heads(ctx, &L, &s.tq, &s.tk, &s.tv, &s.to, ex, NULL, res_in, 0, 0) == DFA_OK);
            ok = 1;
            for (int b = 0; b < B; b++)
                for (int h = 0; h < H; h++) {
                    ref_head(&s, &L, w, b, h, ref);
                    ok &= close_to(&s, b, h, ref, s.o, res_in);
                }
            CHECKF(ok, "case %zu ARROW_RS(%d) plain", ci, w);
        }
        /* the plain band with text is not the arrow band: outputs differ somewhere */
        if (L.n_text > 0 && wf > 1) {
            dfa_attn_layout A = L;
            A.band = DFA_BAND_ARROW;
            for (int h = 0; h < H; h++) ex[h] = (dfa_attn_head_exec){DFA_ATTN_ARROW, 0, 0, 0, 0};
            CHECK(dfa_attn_run_heads(ctx, &L, &s.tq, &s.tk, &s.tv, &s.to, ex, NULL, NULL, 0, 0) == DFA_OK);
            memcpy(res, s.o, n * sizeof(float));
            CHECK(dfa_attn_run_heads(ctx, &A, &s.tq, &s.tk, &s.tv, &s.to, ex, NULL, NULL, 0, 0) == DFA_OK);
            CHECK(memcmp(res, s.o, n * sizeof(float)) != 0);
        }
        free(ref);
        free(ref2);
        free(res);
        free(res_in);
        free(ex);
        qkv_free(&s);
    }
    dfa_ctx_free(ctx);
}

int main(void) {
    RUN(test_mask_brute_force);
    RUN(test_no_text_equals_arrow);
    RUN(test_cpu_attention);
    return test_summary();
}
