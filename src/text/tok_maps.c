/* tok_maps.c - the hash maps behind the vocabularies and merges, and base64. */
#include <stdlib.h>
#include <string.h>

#include "text/tok_internal.h"

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static int strmap_grow(dfa_strmap *m) {
    size_t nc = m->cap ? m->cap * 2 : 1024;
    char **keys = calloc(nc, sizeof *keys);
    size_t *klen = calloc(nc, sizeof *klen);
    int32_t *vals = calloc(nc, sizeof *vals);
    if (!keys || !klen || !vals) {
        free(keys), free(klen), free(vals);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i]) continue;
        size_t j = hash_bytes(m->keys[i], m->klen[i]) & (nc - 1);
        while (keys[j]) j = (j + 1) & (nc - 1);
        keys[j] = m->keys[i], klen[j] = m->klen[i], vals[j] = m->vals[i];
    }
    free(m->keys), free(m->klen), free(m->vals);
    m->keys = keys, m->klen = klen, m->vals = vals, m->cap = nc;
    return 0;
}

int dfa_strmap_put(dfa_strmap *m, const char *key, size_t len, int32_t val) {
    if ((m->n + 1) * 2 > m->cap && strmap_grow(m)) return -1;
    size_t j = hash_bytes(key, len) & (m->cap - 1);
    while (m->keys[j]) {
        if (m->klen[j] == len && memcmp(m->keys[j], key, len) == 0) {
            m->vals[j] = val;
            return 0;
        }
        j = (j + 1) & (m->cap - 1);
    }
    char *k = malloc(len + 1);
    if (!k) return -1;
    memcpy(k, key, len);
    k[len] = 0;
    m->keys[j] = k, m->klen[j] = len, m->vals[j] = val;
    m->n++;
    return 0;
}

int dfa_strmap_get(const dfa_strmap *m, const char *key, size_t len, int32_t *val) {
    if (!m->cap) return 0;
    size_t j = hash_bytes(key, len) & (m->cap - 1);
    while (m->keys[j]) {
        if (m->klen[j] == len && memcmp(m->keys[j], key, len) == 0) {
            *val = m->vals[j];
            return 1;
        }
        j = (j + 1) & (m->cap - 1);
    }
    return 0;
}

void dfa_strmap_free(dfa_strmap *m) {
    for (size_t i = 0; i < m->cap; i++) free(m->keys[i]);
    free(m->keys), free(m->klen), free(m->vals);
    memset(m, 0, sizeof *m);
}

static uint64_t hash_pair(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return k;
}

static int pairmap_grow(dfa_pairmap *m) {
    size_t nc = m->cap ? m->cap * 2 : 1024;
    uint64_t *keys = calloc(nc, sizeof *keys);
    int32_t *rank = calloc(nc, sizeof *rank), *id = calloc(nc, sizeof *id);
    if (!keys || !rank || !id) {
        free(keys), free(rank), free(id);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i]) continue;
        size_t j = hash_pair(m->keys[i]) & (nc - 1);
        while (keys[j]) j = (j + 1) & (nc - 1);
        keys[j] = m->keys[i], rank[j] = m->rank[i], id[j] = m->id[i];
    }
    free(m->keys), free(m->rank), free(m->id);
    m->keys = keys, m->rank = rank, m->id = id, m->cap = nc;
    return 0;
}

int dfa_pairmap_put(dfa_pairmap *m, uint32_t a, uint32_t b, int32_t rank, int32_t id) {
    if ((m->n + 1) * 2 > m->cap && pairmap_grow(m)) return -1;
    uint64_t k = (((uint64_t)a << 32) | b) + 1;
    size_t j = hash_pair(k) & (m->cap - 1);
    while (m->keys[j] && m->keys[j] != k) j = (j + 1) & (m->cap - 1);
    if (m->keys[j]) return 0; /* a repeated merge keeps its first (lowest) rank */
    m->keys[j] = k, m->rank[j] = rank, m->id[j] = id;
    m->n++;
    return 0;
}

int dfa_pairmap_get(const dfa_pairmap *m, uint32_t a, uint32_t b, int32_t *rank, int32_t *id) {
    if (!m->cap) return 0;
    uint64_t k = (((uint64_t)a << 32) | b) + 1;
    size_t j = hash_pair(k) & (m->cap - 1);
    while (m->keys[j]) {
        if (m->keys[j] == k) {
            *rank = m->rank[j], *id = m->id[j];
            return 1;
        }
        j = (j + 1) & (m->cap - 1);
    }
    return 0;
}

void dfa_pairmap_free(dfa_pairmap *m) {
    free(m->keys), free(m->rank), free(m->id);
    memset(m, 0, sizeof *m);
}

static int b64val(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

long tok_base64_decode(const char *in, size_t len, unsigned char *out) {
    while (len > 0 && in[len - 1] == '=') len--;
    if (len % 4 == 1) return -1;
    long o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64val(in[i]);
        if (v < 0) return -1;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)((acc >> bits) & 0xFF);
        }
    }
    return o;
}
