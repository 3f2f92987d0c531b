/* tok_normalize.c - normalizers: NFC, Lowercase, Replace, Strip, Prepend, Precompiled (the
 * SentencePiece charsmap that T5 tokenizers carry: a darts-clone double-array trie over UTF-8
 * keys plus a blob of NUL-terminated replacements; this is where T5's NFKC lives). */
#include <stdlib.h>
#include <string.h>

#include "text/tok_internal.h"

static dfa_status parse_precompiled(const cJSON *node, const char *what, tok_normalizer *nz, dfa_error *err) {
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(node, "precompiled_charsmap");
    if (cJSON_IsNull(m) || (cJSON_IsString(m) && m->valuestring[0] == 0)) return DFA_OK; /* empty: no-op */
    if (!cJSON_IsString(m)) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: Precompiled.precompiled_charsmap must be a base64 string", what);
    size_t len = strlen(m->valuestring);
    unsigned char *raw = malloc(len / 4 * 3 + 4);
    if (!raw) DFA_FAIL(err, DFA_ERR_OOM, "%s: out of memory (%zu bytes of charsmap)", what, len);
    long n = tok_base64_decode(m->valuestring, len, raw);
    if (n < 0) {
        free(raw);
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: Precompiled.precompiled_charsmap is not valid base64", what);
    }
    uint32_t trie_bytes = n >= 4 ? (uint32_t)raw[0] | (uint32_t)raw[1] << 8 | (uint32_t)raw[2] << 16 | (uint32_t)raw[3] << 24 : 0;
    if (n < 4 || trie_bytes % 4 || trie_bytes == 0 || (long)trie_bytes > n - 4) {
        free(raw);
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: Precompiled charsmap of %ld bytes: trie size %u is not a multiple of 4 within the data",
                 what, n, trie_bytes);
    }
    nz->trie_n = trie_bytes / 4;
    nz->norm_n = (size_t)n - 4 - trie_bytes;
    nz->trie = malloc(nz->trie_n * sizeof(uint32_t));
    nz->norm = malloc(nz->norm_n + 1);
    if (!nz->trie || !nz->norm) {
        free(raw);
        DFA_FAIL(err, DFA_ERR_OOM, "%s: out of memory for the charsmap", what);
    }
    for (size_t i = 0; i < nz->trie_n; i++) {
        const unsigned char *b = raw + 4 + 4 * i;
        nz->trie[i] = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    }
    memcpy(nz->norm, raw + 4 + trie_bytes, nz->norm_n);
    nz->norm[nz->norm_n] = 0;
    free(raw);
    return DFA_OK;
}

static dfa_status parse_one(const cJSON *node, const char *what, tok_normalizer *nz, dfa_error *err) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(node, "type");
    if (!cJSON_IsString(type)) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: normalizer without a 'type' string", what);
    const char *t = type->valuestring;
    memset(nz, 0, sizeof *nz);
    if (strcmp(t, "NFC") == 0) {
        nz->kind = NORM_NFC;
    } else if (strcmp(t, "Lowercase") == 0) {
        nz->kind = NORM_LOWER;
    } else if (strcmp(t, "Replace") == 0) {
        nz->kind = NORM_REPLACE;
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(node, "content");
        if (!cJSON_IsString(c)) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: Replace.content must be a string", what);
        DFA_TRY(tok_pattern_parse(cJSON_GetObjectItemCaseSensitive(node, "pattern"), what, &nz->pat, err));
        DFA_TRY(dfa_utf8_to_cps(c->valuestring, strlen(c->valuestring), what, &nz->content, err));
    } else if (strcmp(t, "Strip") == 0) {
        nz->kind = NORM_STRIP;
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(node, "strip_left");
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(node, "strip_right");
        nz->left = l ? cJSON_IsTrue(l) : 1;
        nz->right = r ? cJSON_IsTrue(r) : 1;
    } else if (strcmp(t, "Prepend") == 0) {
        nz->kind = NORM_PREPEND;
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(node, "prepend");
        if (!cJSON_IsString(c)) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: Prepend.prepend must be a string", what);
        DFA_TRY(dfa_utf8_to_cps(c->valuestring, strlen(c->valuestring), what, &nz->content, err));
    } else if (strcmp(t, "Precompiled") == 0) {
        nz->kind = NORM_PRECOMPILED;
        DFA_TRY(parse_precompiled(node, what, nz, err));
    } else {
        DFA_FAIL(err, DFA_ERR_UNSUPPORTED,
                 "%s: normalizer type '%s' is not supported (supported: Sequence, NFC, Lowercase, Replace, Strip, "
                 "Prepend, Precompiled)", what, t);
    }
    return DFA_OK;
}

void tok_norm_free_one(tok_normalizer *nz) {
    tok_pattern_free(&nz->pat);
    dfa_cpbuf_free(&nz->content);
    free(nz->trie);
    free(nz->norm);
    nz->trie = NULL, nz->norm = NULL;
}

void tok_norm_free(tok_normalizer *list, int n) {
    for (int i = 0; i < n; i++) tok_norm_free_one(&list[i]);
    free(list);
}

dfa_status tok_norm_parse(const cJSON *node, const char *what, tok_normalizer **list, int *n, dfa_error *err) {
    if (!node || cJSON_IsNull(node)) return DFA_OK;
    if (!cJSON_IsObject(node)) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: 'normalizer' must be an object or null", what);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(node, "type");
    if (cJSON_IsString(type) && strcmp(type->valuestring, "Sequence") == 0) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(node, "normalizers");
        if (!cJSON_IsArray(arr)) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: normalizer Sequence without a 'normalizers' array", what);
        const cJSON *it;
        cJSON_ArrayForEach(it, arr) DFA_TRY(tok_norm_parse(it, what, list, n, err));
        return DFA_OK;
    }
    tok_normalizer *nl = realloc(*list, (size_t)(*n + 1) * sizeof **list);
    if (!nl) DFA_FAIL(err, DFA_ERR_OOM, "%s: out of memory", what);
    *list = nl;
    memset(&nl[*n], 0, sizeof nl[*n]);
    (*n)++; /* counted before parsing so that a failure frees what was allocated */
    return parse_one(node, what, &nl[*n - 1], err);
}

/* darts-clone common prefix search: value of the SHORTEST key that prefixes key[0..len), -1. */
static long trie_first_prefix(const tok_normalizer *nz, const unsigned char *key, size_t len) {
#define UNIT_OFFSET(u) (((u) >> 10) << (((u) & (1u << 9)) >> 6))
#define UNIT_LABEL(u) ((u) & ((1u << 31) | 0xFFu))
#define UNIT_HAS_LEAF(u) (((u) >> 8) & 1u)
#define UNIT_VALUE(u) ((u) & ((1u << 31) - 1))
    size_t pos = 0;
    if (nz->trie_n == 0) return -1;
    pos ^= UNIT_OFFSET(nz->trie[0]);
    for (size_t i = 0; i < len; i++) {
        if (key[i] == 0) return -1;
        pos ^= key[i];
        if (pos >= nz->trie_n) return -1;
        uint32_t u = nz->trie[pos];
        if (UNIT_LABEL(u) != key[i]) return -1;
        pos ^= UNIT_OFFSET(u);
        if (pos >= nz->trie_n) return -1;
        if (UNIT_HAS_LEAF(u)) return (long)UNIT_VALUE(nz->trie[pos]);
    }
    return -1;
#undef UNIT_OFFSET
#undef UNIT_LABEL
#undef UNIT_HAS_LEAF
#undef UNIT_VALUE
}

/* The replacement of cps[0..n) if the charsmap has one: appended to out, returns 1; 0 if none
 * (or if the replacement is not valid UTF-8); -1 OOM. */
static int precompiled_transform(const tok_normalizer *nz, const uint32_t *cps, size_t n, dfa_cpbuf *out) {
    unsigned char key[64];
    size_t kl = 0;
    for (size_t i = 0; i < n; i++) {
        if (kl + 4 > sizeof key) return 0;
        kl += (size_t)dfa_utf8_encode(cps[i], key + kl);
    }
    long v = trie_first_prefix(nz, key, kl);
    if (v < 0 || (size_t)v >= nz->norm_n) return 0;
    const unsigned char *s = nz->norm + v;
    size_t len = strlen((const char *)s); /* the blob is NUL-terminated at norm_n */
    size_t mark = out->n;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        int k = dfa_utf8_decode(s + i, len - i, &cp);
        if (k == 0) {
            out->n = mark;
            return 0;
        }
        if (dfa_cpbuf_push(out, cp)) return -1;
        i += (size_t)k;
    }
    return 1;
}

static int run_precompiled(const tok_normalizer *nz, const dfa_cpbuf *in, dfa_cpbuf *out) {
    if (nz->trie_n == 0) return dfa_cpbuf_append(out, in->v, in->n);
    for (size_t i = 0; i < in->n;) {
        size_t g = dfa_uni_grapheme_len(in->v, in->n, i);
        size_t bytes = 0;
        for (size_t j = i; j < i + g; j++) bytes += in->v[j] < 0x80 ? 1 : in->v[j] < 0x800 ? 2 : in->v[j] < 0x10000 ? 3 : 4;
        if (bytes < 6) {
            int r = precompiled_transform(nz, in->v + i, g, out);
            if (r < 0) return -1;
            if (r == 1) {
                i += g;
                continue;
            }
        }
        for (size_t j = i; j < i + g; j++) {
            int r = precompiled_transform(nz, in->v + j, 1, out);
            if (r < 0) return -1;
            if (r == 0 && dfa_cpbuf_push(out, in->v[j])) return -1;
        }
        i += g;
    }
    return 0;
}

static int run_one(const tok_normalizer *nz, const dfa_cpbuf *in, dfa_cpbuf *out) {
    switch (nz->kind) {
    case NORM_NFC: return dfa_uni_nfc(in->v, in->n, out);
    case NORM_LOWER:
        for (size_t i = 0; i < in->n; i++)
            if (dfa_uni_lower_push(in->v[i], out)) return -1;
        return 0;
    case NORM_REPLACE: {
        size_t pos = 0, ms, me;
        while (pos < in->n && tok_pattern_find(&nz->pat, in->v, in->n, pos, &ms, &me)) {
            if (dfa_cpbuf_append(out, in->v + pos, ms - pos) || dfa_cpbuf_append(out, nz->content.v, nz->content.n))
                return -1;
            pos = me;
        }
        return dfa_cpbuf_append(out, in->v + pos, in->n - pos);
    }
    case NORM_STRIP: {
        size_t b = 0, e = in->n;
        if (nz->left)
            while (b < e && dfa_uni_is_space(in->v[b])) b++;
        if (nz->right)
            while (e > b && dfa_uni_is_space(in->v[e - 1])) e--;
        return dfa_cpbuf_append(out, in->v + b, e - b);
    }
    case NORM_PREPEND:
        if (in->n && dfa_cpbuf_append(out, nz->content.v, nz->content.n)) return -1;
        return dfa_cpbuf_append(out, in->v, in->n);
    case NORM_PRECOMPILED: return run_precompiled(nz, in, out);
    }
    return 0;
}

int tok_norm_run(const tok_normalizer *list, int n, dfa_cpbuf *s) {
    for (int i = 0; i < n; i++) {
        dfa_cpbuf out = {0};
        if (run_one(&list[i], s, &out)) {
            dfa_cpbuf_free(&out);
            return -1;
        }
        dfa_cpbuf_free(s);
        *s = out;
    }
    return 0;
}
