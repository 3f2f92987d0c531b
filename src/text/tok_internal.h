/* tok_internal.h - the pieces of the tokenizer shared between its source files. */
#ifndef DFA_TEXT_TOK_INTERNAL_H
#define DFA_TEXT_TOK_INTERNAL_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "text/tokenizer.h"
#include "text/unicode.h"

/* ---- byte-string -> int map (open addressing; keys copied) ---- */
typedef struct dfa_strmap {
    char **keys;
    size_t *klen;
    int32_t *vals;
    size_t cap, n; /* cap is a power of two */
} dfa_strmap;
int dfa_strmap_put(dfa_strmap *m, const char *key, size_t len, int32_t val); /* 0, or -1 OOM */
int dfa_strmap_get(const dfa_strmap *m, const char *key, size_t len, int32_t *val); /* 1 found */
void dfa_strmap_free(dfa_strmap *m);

/* ---- (u32, u32) -> (rank, id) map for BPE merges ---- */
typedef struct dfa_pairmap {
    uint64_t *keys; /* key + 1 (0 = empty) */
    int32_t *rank, *id;
    size_t cap, n;
} dfa_pairmap;
int dfa_pairmap_put(dfa_pairmap *m, uint32_t a, uint32_t b, int32_t rank, int32_t id);
int dfa_pairmap_get(const dfa_pairmap *m, uint32_t a, uint32_t b, int32_t *rank, int32_t *id);
void dfa_pairmap_free(dfa_pairmap *m);

/* ---- patterns: a literal string, or one of the regexes the tokenizers ship ---- */
typedef enum tok_pat_kind {
    PAT_LITERAL, /* a String pattern, or a Regex that is a plain literal */
    PAT_REPEAT,  /* one atom with a quantifier: " {2,}", "\s+", "[ab]*" style */
    PAT_CLIP,    /* 's|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+ */
    PAT_GPT2     /* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
} tok_pat_kind;

typedef struct tok_pattern {
    tok_pat_kind kind;
    dfa_cpbuf lit;       /* PAT_LITERAL: the code points */
    int atom;            /* PAT_REPEAT: ATOM_* */
    uint32_t atom_cp;    /* ATOM_CHAR */
    int min_rep, max_rep; /* max_rep < 0: unbounded */
} tok_pattern;

/* Parse a {"String": s} or {"Regex": r} pattern object; unsupported regexes are an error. */
dfa_status tok_pattern_parse(const cJSON *pat, const char *what, tok_pattern *out, dfa_error *err);
void tok_pattern_free(tok_pattern *p);
/* Leftmost match at or after `from` in s[0..n): returns 1 and [*ms, *me), or 0. Never empty. */
int tok_pattern_find(const tok_pattern *p, const uint32_t *s, size_t n, size_t from, size_t *ms, size_t *me);

/* ---- normalizers ---- */
typedef enum tok_norm_kind { NORM_NFC, NORM_LOWER, NORM_REPLACE, NORM_STRIP, NORM_PRECOMPILED, NORM_PREPEND } tok_norm_kind;

typedef struct tok_normalizer {
    tok_norm_kind kind;
    tok_pattern pat;     /* REPLACE */
    dfa_cpbuf content;   /* REPLACE, PREPEND */
    int left, right;     /* STRIP */
    uint32_t *trie;      /* PRECOMPILED: darts double array */
    size_t trie_n;
    unsigned char *norm; /* PRECOMPILED: NUL-separated replacement strings */
    size_t norm_n;
} tok_normalizer;

/* Parse `node` (null, one normalizer or a Sequence) appending to the list. */
dfa_status tok_norm_parse(const cJSON *node, const char *what, tok_normalizer **list, int *n, dfa_error *err);
void tok_norm_free(tok_normalizer *list, int n);
void tok_norm_free_one(tok_normalizer *nz); /* its contents, not the struct */
/* Run the normalizers over s in place (s is replaced). 0 or -1 OOM. */
int tok_norm_run(const tok_normalizer *list, int n, dfa_cpbuf *s);

/* ---- pre-tokenizers: a list of pieces over one code point buffer ---- */
typedef struct tok_pieces {
    dfa_cpbuf cps;
    size_t *start, *len;
    size_t n, cap;
} tok_pieces;
int tok_pieces_add(tok_pieces *p, const uint32_t *cps, size_t len); /* appends a piece (copied) */
void tok_pieces_free(tok_pieces *p);

typedef enum tok_split_behavior { SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT, SPLIT_CONTIGUOUS } tok_split_behavior;
typedef enum tok_pretok_kind { PRE_SPLIT, PRE_BYTELEVEL, PRE_METASPACE, PRE_WHITESPACE_SPLIT } tok_pretok_kind;
typedef enum tok_prepend { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER } tok_prepend;

typedef struct tok_pretok {
    tok_pretok_kind kind;
    tok_pattern pat;            /* SPLIT */
    tok_split_behavior behavior;
    int invert;
    int add_prefix_space;       /* BYTELEVEL */
    int use_regex;              /* BYTELEVEL */
    uint32_t replacement;       /* METASPACE */
    tok_prepend prepend;        /* METASPACE */
    int split;                  /* METASPACE */
} tok_pretok;

dfa_status tok_pretok_parse(const cJSON *node, const char *what, tok_pretok **list, int *n, dfa_error *err);
void tok_pretok_free(tok_pretok *list, int n);
/* Pre-tokenize one normalized segment; first: the segment starts the input (Metaspace "first").
 * Pieces are appended to out. 0 or -1 OOM. */
int tok_pretok_run(const tok_pretok *list, int n, const uint32_t *s, size_t len, int first, tok_pieces *out);
/* GPT-2's byte -> printable code point table. */
uint32_t tok_byte_to_cp(unsigned char b);

/* ---- models ---- */
typedef struct tok_ids {
    int32_t *v;
    size_t n, cap;
} tok_ids;
int tok_ids_push(tok_ids *t, int32_t id);

typedef struct tok_bpe {
    dfa_pairmap merges;
    char *cont_prefix, *eow_suffix; /* "" when absent */
    int32_t unk_id;                 /* -1 none */
    int fuse_unk, byte_fallback, ignore_merges;
} tok_bpe;

typedef struct tok_unigram {
    double *scores; /* per id, as the tokenizers library parses them (serde_f64) */
    double *exact;  /* per id, correctly rounded (what Python's json gives transformers) */
    int n;
    int32_t unk_id; /* -1 none */
    int byte_fallback;
    double min_score;
    size_t max_piece_bytes;
} tok_unigram;

struct dfa_tokenizer {
    int is_bpe; /* else Unigram */
    dfa_strmap vocab;
    char **id_to_tok; /* id -> string, NULL for gaps */
    int vocab_size;   /* 1 + the largest id (vocabulary and added tokens) */
    tok_bpe bpe;
    tok_unigram uni;
    tok_normalizer *norms;
    int n_norms;
    tok_pretok *pretoks;
    int n_pretoks;
    /* added tokens */
    struct tok_added {
        int32_t id;
        dfa_cpbuf content; /* as written; normalized ones: after the normalizers */
        int normalized, lstrip, rstrip, single_word, special;
    } *added;
    int n_added;
    /* post-processor (single sequence): ids before and after */
    int32_t *pre_ids, *post_ids;
    int n_pre, n_post;
    int model_max_length;
    int32_t pad_id;
};

dfa_status tok_bpe_load(dfa_tokenizer *t, const cJSON *model, const char *what, dfa_error *err);
/* Encode one piece (UTF-8 bytes as elements of `bytes`, code points in cps). */
int tok_bpe_encode(const dfa_tokenizer *t, const uint32_t *cps, size_t n, tok_ids *out);
dfa_status tok_unigram_load(dfa_tokenizer *t, const cJSON *model, const char *what, dfa_error *err);
/* Returns 0, -1 OOM, -2 no unk token for an uncovered character. */
int tok_unigram_encode(const dfa_tokenizer *t, const uint32_t *cps, size_t n, tok_ids *out);

/* Base64 (standard alphabet, '=' padding); returns the byte count or -1 on bad input. */
long tok_base64_decode(const char *in, size_t len, unsigned char *out);

#endif
