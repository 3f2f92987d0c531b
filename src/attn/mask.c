#include "attn/mask.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *dfa_band_name(int band) {
    return band == DFA_BAND_ARROW ? "arrow" : band == DFA_BAND_PLAIN ? "plain" : "?";
}

int dfa_band_parse(const char *name) {
    if (!name) return -1;
    if (!strcmp(name, "arrow")) return DFA_BAND_ARROW;
    if (!strcmp(name, "plain")) return DFA_BAND_PLAIN;
    return -1;
}

int dfa_layout_tokens(const dfa_attn_layout *l) {
    return l->n_vis + l->n_text;
}

int dfa_layout_vis_start(const dfa_attn_layout *l) {
    return l->text_first ? l->n_text : 0;
}

int dfa_layout_text_start(const dfa_attn_layout *l) {
    return l->text_first ? 0 : l->n_vis;
}

int dfa_layout_valid(const dfa_attn_layout *l) {
    if (l->block < 1 || l->n_vis < 0 || l->n_text < 0 || l->n_vis + l->n_text < 1) return -1;
    if (l->band < 0 || l->band >= DFA_BAND_COUNT) return -1;
    if ((long long)l->n_vis + l->n_text > (1LL << 30)) return -1;
    return 0;
}

static int ceil_div(int a, int b) {
    return (a + b - 1) / b;
}

void dfa_layout_tiles(const dfa_attn_layout *l, dfa_attn_tiles *t) {
    t->n_vis_tiles = ceil_div(l->n_vis, l->block);
    t->n_text_tiles = ceil_div(l->n_text, l->block);
    t->n_tiles = t->n_vis_tiles + t->n_text_tiles;
    t->text_tile0 = l->text_first ? 0 : t->n_vis_tiles;
    t->vis_tile0 = l->text_first ? t->n_text_tiles : 0;
}

int dfa_tile_is_visual(const dfa_attn_layout *l, int tile, int *vis_index) {
    dfa_attn_tiles t;
    dfa_layout_tiles(l, &t);
    if (tile >= t.vis_tile0 && tile < t.vis_tile0 + t.n_vis_tiles) {
        if (vis_index) *vis_index = tile - t.vis_tile0;
        return 1;
    }
    return 0;
}

void dfa_tile_span(const dfa_attn_layout *l, int tile, int *start, int *len) {
    dfa_attn_tiles t;
    dfa_layout_tiles(l, &t);
    int seg_start, seg_len, local;
    if (tile >= t.vis_tile0 && tile < t.vis_tile0 + t.n_vis_tiles) {
        seg_start = dfa_layout_vis_start(l);
        seg_len = l->n_vis;
        local = tile - t.vis_tile0;
    } else {
        seg_start = dfa_layout_text_start(l);
        seg_len = l->n_text;
        local = tile - t.text_tile0;
    }
    int s = local * l->block;
    int n = seg_len - s;
    if (n > l->block) n = l->block;
    *start = seg_start + s;
    *len = n;
}

int dfa_token_tile(const dfa_attn_layout *l, int p) {
    dfa_attn_tiles t;
    dfa_layout_tiles(l, &t);
    int vs = dfa_layout_vis_start(l);
    if (p >= vs && p < vs + l->n_vis) return t.vis_tile0 + (p - vs) / l->block;
    return t.text_tile0 + (p - dfa_layout_text_start(l)) / l->block;
}

int dfa_mask_tile_keep(const dfa_attn_layout *l, int window, int qt, int kt) {
    if (window < 0) return 1;
    if (l->band == DFA_BAND_PLAIN) return abs(qt - kt) <= window;
    int qi, ki;
    if (!dfa_tile_is_visual(l, qt, &qi)) return 1; /* text rows are full */
    if (!dfa_tile_is_visual(l, kt, &ki)) return 1; /* text columns are full */
    return abs(qi - ki) <= window;
}

int dfa_mask_keep(const dfa_attn_layout *l, int window, int q, int k) {
    if (window < 0) return 1;
    if (l->band == DFA_BAND_PLAIN) return abs(dfa_token_tile(l, q) - dfa_token_tile(l, k)) <= window;
    int vs = dfa_layout_vis_start(l);
    int qv = q >= vs && q < vs + l->n_vis;
    int kv = k >= vs && k < vs + l->n_vis;
    if (!qv || !kv) return 1;
    int qi = (q - vs) / l->block, ki = (k - vs) / l->block;
    return abs(qi - ki) <= window;
}

/* PLAIN: query tile qt's keys are the tiles [qt - w, qt + w] (clipped), contiguous tokens. */
static int64_t plain_entries(const dfa_attn_layout *l, int w) {
    dfa_attn_tiles t;
    dfa_layout_tiles(l, &t);
    int64_t e = 0;
    for (int qt = 0; qt < t.n_tiles; qt++) {
        int s0, n0, s1, n1, rs, rn;
        dfa_tile_span(l, qt, &rs, &rn);
        dfa_tile_span(l, qt - w < 0 ? 0 : qt - w, &s0, &n0);
        dfa_tile_span(l, qt + w > t.n_tiles - 1 ? t.n_tiles - 1 : qt + w, &s1, &n1);
        e += (int64_t)rn * (s1 + n1 - s0);
    }
    return e;
}

int64_t dfa_mask_entries(const dfa_attn_layout *l, int window) {
    int64_t n = dfa_layout_tokens(l);
    if (window < 0) return n * n;
    if (l->band == DFA_BAND_PLAIN) return plain_entries(l, window);
    int64_t nt = l->n_text, nv = l->n_vis;
    /* text rows (all keys) + visual rows x text keys + visual x visual band */
    int64_t e = nt * n + nv * nt;
    int nvt = ceil_div(l->n_vis, l->block);
    for (int i = 0; i < nvt; i++) {
        int64_t rows = (i == nvt - 1) ? nv - (int64_t)i * l->block : l->block;
        int j0 = i - window < 0 ? 0 : i - window;
        int j1 = i + window > nvt - 1 ? nvt - 1 : i + window;
        int64_t kend = (int64_t)(j1 + 1) * l->block;
        if (kend > nv) kend = nv;
        int64_t cols = kend - (int64_t)j0 * l->block;
        e += rows * cols;
    }
    return e;
}

int dfa_mask_full_window(const dfa_attn_layout *l) {
    int nvt = ceil_div(l->n_vis, l->block);
    if (l->band == DFA_BAND_PLAIN) nvt += ceil_div(l->n_text, l->block);
    return nvt > 0 ? nvt - 1 : 0;
}

int dfa_mask_window_from_tokens(const dfa_attn_layout *l, int tokens) {
    if (tokens < 0) return -1;
    int w = ceil_div(tokens, l->block);
    int wf = dfa_mask_full_window(l);
    return w > wf ? wf : w;
}

int dfa_mask_v1_window(const dfa_attn_layout *l) {
    return dfa_mask_window_from_tokens(l, (l->band == DFA_BAND_PLAIN ? dfa_layout_tokens(l) : l->n_vis) / 16);
}

int dfa_mask_window_for_sparsity(const dfa_attn_layout *l, double target, double *sparsity) {
    const double nn = (double)dfa_layout_tokens(l) * dfa_layout_tokens(l);
    int best = 0;
    double best_d = INFINITY, best_s = 0;
    for (int w = 0; w <= dfa_mask_full_window(l); w++) {
        const double s = 1.0 - (double)dfa_mask_entries(l, w) / nn;
        if (fabs(s - target) < best_d) best_d = fabs(s - target), best = w, best_s = s;
    }
    if (sparsity) *sparsity = best_s;
    return best;
}
