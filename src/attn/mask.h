/* mask.h - the one definition of which attention scores each method computes.
 *
 * The CPU reference, the CUDA kernels, the FLOP accounting and the plan search all use
 * this file, so that they agree exactly. See docs/DESIGN.md "Attention masks".
 *
 * Token layout: N = n_text + n_vis tokens; text is either before the visual tokens
 * (FLUX: [text, image]) or after them (SD3: [image, text]); n_text may be 0 (DiT, PixArt).
 *
 * Tiling: each segment (text, visual) is cut into tiles of `block` tokens starting at the
 * segment's first token; the last tile of a segment may be short. A tile never spans two
 * segments, whatever n_text is, so text rows and columns are whole tiles.
 *
 * Band (ARROW, and V1's WINDOW, which is the same mask): a visual query in visual tile i
 * sees visual keys in visual tiles j with |i - j| <= window (window counted in tiles),
 * and every text key. A text query sees every key. window < 0 means "no band" = FULL.
 *
 * Band kind (dfa_attn_layout.band): ARROW is the above (the default, value 0, so a
 * zero-initialised layout is an arrow one). PLAIN is V1's window over the flattened joint
 * sequence, text included: query tile qt sees key tile kt iff |qt - kt| <= window, with the
 * tiles t in [0, n_tiles) of the whole sequence (text and visual tiles in sequence order), so
 * text gets no special rows or columns; window is in those tiles and the full window is
 * n_tiles - 1. Without text the two kinds are the same mask. */
#ifndef DFA_ATTN_MASK_H
#define DFA_ATTN_MASK_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { DFA_BAND_ARROW = 0, DFA_BAND_PLAIN = 1, DFA_BAND_COUNT };

typedef struct dfa_attn_layout {
    int n_vis;      /* visual tokens */
    int n_text;     /* text tokens (0 when the model has none in self-attention) */
    int text_first; /* 1: [text, visual]; 0: [visual, text] */
    int block;      /* tile size in tokens for the band (>= 1) */
    int band;       /* DFA_BAND_ARROW (0, default) or DFA_BAND_PLAIN */
} dfa_attn_layout;

/* "arrow" / "plain" ("?" otherwise); parse returns -1 for an unknown name. */
const char *dfa_band_name(int band);
int dfa_band_parse(const char *name);

/* Derived tile geometry. Tile index t in [0, n_tiles): text tiles and visual tiles in
 * sequence order. */
typedef struct dfa_attn_tiles {
    int n_tiles, n_vis_tiles, n_text_tiles;
    int vis_tile0;  /* index of the first visual tile */
    int text_tile0; /* index of the first text tile */
} dfa_attn_tiles;

int dfa_layout_tokens(const dfa_attn_layout *l);
int dfa_layout_vis_start(const dfa_attn_layout *l);  /* first visual token's position */
int dfa_layout_text_start(const dfa_attn_layout *l); /* first text token's position */
/* 0 if the layout is usable (positive block, non-negative counts, at least one token, a known
 * band kind). */
int dfa_layout_valid(const dfa_attn_layout *l);

void dfa_layout_tiles(const dfa_attn_layout *l, dfa_attn_tiles *t);
/* Tile t's first token position and length. */
void dfa_tile_span(const dfa_attn_layout *l, int tile, int *start, int *len);
/* 1 if tile t holds visual tokens; sets *vis_index to its index among visual tiles. */
int dfa_tile_is_visual(const dfa_attn_layout *l, int tile, int *vis_index);
/* The tile holding token position p (0 <= p < N). */
int dfa_token_tile(const dfa_attn_layout *l, int p);

/* Token-level predicate: does query position q see key position k under window?
 * (window < 0: full). Defined through tiles, so it equals the tile predicate below. */
int dfa_mask_keep(const dfa_attn_layout *l, int window, int q, int k);
/* Tile-level predicate: every (q, k) pair in (query tile qt, key tile kt) shares it. */
int dfa_mask_tile_keep(const dfa_attn_layout *l, int window, int qt, int kt);

/* Exact number of (query, key) score entries computed for one head under window
 * (window < 0: full = N*N). 64-bit: 16k tokens squared overflows 32 bits. */
int64_t dfa_mask_entries(const dfa_attn_layout *l, int window);

/* The smallest window (in tiles) whose band equals FULL: ARROW n_vis_tiles - 1 (every visual
 * pair), PLAIN n_tiles - 1 (every pair of the sequence). */
int dfa_mask_full_window(const dfa_attn_layout *l);

/* A band half-width given in tokens, as a window in tiles: ceil(tokens / block), capped at
 * dfa_mask_full_window (tokens < 0 gives -1 = FULL). */
int dfa_mask_window_from_tokens(const dfa_attn_layout *l, int tokens);
/* V1's default: a window of 1/8 of the visual tokens in total width, i.e. a half-width of
 * n_vis / 16 tokens, in tiles (at least 0); PLAIN: of all N tokens (N / 16). */
int dfa_mask_v1_window(const dfa_attn_layout *l);
/* The window (0 .. dfa_mask_full_window) whose block sparsity 1 - entries / N^2 is nearest to
 * `target` (ties: the smaller window); that sparsity in *sparsity if not NULL. The benchmarks'
 * "25 / 50 / 75 % sparse" arrow plans. */
int dfa_mask_window_for_sparsity(const dfa_attn_layout *l, double target, double *sparsity);

#ifdef __cplusplus
}
#endif
#endif
