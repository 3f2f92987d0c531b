/* unicode.c - UTF-8, character classes, lowercase, NFC, grapheme clusters (see unicode.h). */
#include "text/unicode.h"

#include <stdlib.h>
#include <string.h>

void dfa_cpbuf_free(dfa_cpbuf *b) {
    free(b->v);
    b->v = NULL;
    b->n = b->cap = 0;
}

int dfa_cpbuf_reserve(dfa_cpbuf *b, size_t cap) {
    if (cap <= b->cap) return 0;
    size_t nc = b->cap ? b->cap : 16;
    while (nc < cap) {
        if (nc > SIZE_MAX / 2 / sizeof(uint32_t)) return -1;
        nc *= 2;
    }
    uint32_t *v = realloc(b->v, nc * sizeof(uint32_t));
    if (!v) return -1;
    b->v = v;
    b->cap = nc;
    return 0;
}

int dfa_cpbuf_push(dfa_cpbuf *b, uint32_t cp) {
    if (b->n == b->cap && dfa_cpbuf_reserve(b, b->n + 1)) return -1;
    b->v[b->n++] = cp;
    return 0;
}

int dfa_cpbuf_append(dfa_cpbuf *b, const uint32_t *cps, size_t n) {
    if (n == 0) return 0;
    if (dfa_cpbuf_reserve(b, b->n + n)) return -1;
    memcpy(b->v + b->n, cps, n * sizeof(uint32_t));
    b->n += n;
    return 0;
}

int dfa_utf8_decode(const unsigned char *s, size_t len, uint32_t *cp) {
    if (len == 0) return 0;
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int n;
    uint32_t v, min;
    if ((c & 0xE0) == 0xC0) {
        n = 2, v = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        n = 3, v = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        n = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if ((size_t)n > len) return 0;
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return n;
}

int dfa_utf8_encode(uint32_t cp, unsigned char out[4]) {
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | (cp >> 6));
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | (cp >> 18));
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

dfa_status dfa_utf8_to_cps(const char *s, size_t len, const char *what, dfa_cpbuf *b, dfa_error *err) {
    const unsigned char *u = (const unsigned char *)s;
    if (dfa_cpbuf_reserve(b, b->n + len)) DFA_FAIL(err, DFA_ERR_OOM, "%s: out of memory decoding %zu bytes", what, len);
    size_t i = 0;
    while (i < len) {
        uint32_t cp;
        int k = dfa_utf8_decode(u + i, len - i, &cp);
        if (k == 0)
            DFA_FAIL(err, DFA_ERR_INVALID_ARG, "%s: invalid UTF-8 at byte %zu (0x%02X)", what, i, (unsigned)u[i]);
        b->v[b->n++] = cp;
        i += (size_t)k;
    }
    return DFA_OK;
}

int dfa_cps_to_utf8(const uint32_t *cps, size_t n, dfa_cpbuf *b) {
    if (dfa_cpbuf_reserve(b, b->n + 4 * n)) return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char tmp[4];
        int k = dfa_utf8_encode(cps[i], tmp);
        for (int j = 0; j < k; j++) b->v[b->n++] = tmp[j];
    }
    return 0;
}

static int in_ranges(const uint32_t (*r)[2], int n, uint32_t cp) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < r[mid][0]) hi = mid - 1;
        else if (cp > r[mid][1]) lo = mid + 1;
        else return 1;
    }
    return 0;
}

/* Index of cp in a table sorted by its first column, or -1. */
static int find_row2(const uint32_t (*r)[2], int n, uint32_t cp) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < r[mid][0]) hi = mid - 1;
        else if (cp > r[mid][0]) lo = mid + 1;
        else return mid;
    }
    return -1;
}

int dfa_uni_is_letter(uint32_t cp) {
    if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
    return in_ranges(dfa_uni_letter, dfa_uni_letter_n, cp);
}
int dfa_uni_is_number(uint32_t cp) {
    if (cp < 0x80) return cp >= '0' && cp <= '9';
    return in_ranges(dfa_uni_number, dfa_uni_number_n, cp);
}
int dfa_uni_is_mark(uint32_t cp) { return cp >= 0x300 && in_ranges(dfa_uni_mark, dfa_uni_mark_n, cp); }

int dfa_uni_is_space(uint32_t cp) {
    return (cp >= 0x9 && cp <= 0xD) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

int dfa_uni_ccc(uint32_t cp) {
    if (cp < 0x300) return 0;
    int i = find_row2(dfa_uni_ccc_tab, dfa_uni_ccc_tab_n, cp);
    return i < 0 ? 0 : (int)dfa_uni_ccc_tab[i][1];
}

int dfa_uni_lower_push(uint32_t cp, dfa_cpbuf *out) {
    if (cp < 0x80) return dfa_cpbuf_push(out, (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp);
    if (cp == 0x130) { /* LATIN CAPITAL LETTER I WITH DOT ABOVE -> i + COMBINING DOT ABOVE */
        if (dfa_cpbuf_push(out, 0x69)) return -1;
        return dfa_cpbuf_push(out, 0x307);
    }
    int i = find_row2(dfa_uni_lower, dfa_uni_lower_n, cp);
    return dfa_cpbuf_push(out, i < 0 ? cp : dfa_uni_lower[i][1]);
}

/* Hangul syllable algorithm constants (Unicode ch. 3.12). */
enum { SBASE = 0xAC00, LBASE = 0x1100, VBASE = 0x1161, TBASE = 0x11A7, LCOUNT = 19, VCOUNT = 21, TCOUNT = 28 };
#define NCOUNT (VCOUNT * TCOUNT)
#define SCOUNT (LCOUNT * NCOUNT)

static int decompose_push(uint32_t cp, dfa_cpbuf *out) {
    if (cp >= SBASE && cp < SBASE + SCOUNT) {
        uint32_t s = cp - SBASE;
        if (dfa_cpbuf_push(out, LBASE + s / NCOUNT) || dfa_cpbuf_push(out, VBASE + (s % NCOUNT) / TCOUNT)) return -1;
        if (s % TCOUNT) return dfa_cpbuf_push(out, TBASE + s % TCOUNT);
        return 0;
    }
    if (cp < 0xC0) return dfa_cpbuf_push(out, cp);
    int lo = 0, hi = dfa_uni_decomp_n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < dfa_uni_decomp[mid][0]) hi = mid - 1;
        else if (cp > dfa_uni_decomp[mid][0]) lo = mid + 1;
        else return dfa_cpbuf_append(out, dfa_uni_decomp_pool + dfa_uni_decomp[mid][1], dfa_uni_decomp[mid][2]);
    }
    return dfa_cpbuf_push(out, cp);
}

static uint32_t compose_pair(uint32_t a, uint32_t b) {
    if (a >= LBASE && a < LBASE + LCOUNT && b >= VBASE && b < VBASE + VCOUNT)
        return SBASE + ((a - LBASE) * VCOUNT + (b - VBASE)) * TCOUNT;
    if (a >= SBASE && a < SBASE + SCOUNT && (a - SBASE) % TCOUNT == 0 && b > TBASE && b < TBASE + TCOUNT)
        return a + (b - TBASE);
    int lo = 0, hi = dfa_uni_compose_n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        const uint32_t *r = dfa_uni_compose[mid];
        if (a < r[0] || (a == r[0] && b < r[1])) hi = mid - 1;
        else if (a > r[0] || b > r[1]) lo = mid + 1;
        else return r[2];
    }
    return 0;
}

int dfa_uni_nfc(const uint32_t *in, size_t n, dfa_cpbuf *out) {
    dfa_cpbuf d = {0};
    for (size_t i = 0; i < n; i++)
        if (decompose_push(in[i], &d)) goto oom;
    /* canonical ordering: stable insertion sort of each run of non-starters by class */
    for (size_t i = 1; i < d.n; i++) {
        int c = dfa_uni_ccc(d.v[i]);
        if (c == 0) continue;
        size_t j = i;
        while (j > 0) {
            int p = dfa_uni_ccc(d.v[j - 1]);
            if (p == 0 || p <= c) break;
            uint32_t t = d.v[j];
            d.v[j] = d.v[j - 1];
            d.v[j - 1] = t;
            j--;
        }
    }
    /* canonical composition */
    size_t base = out->n;
    if (dfa_cpbuf_reserve(out, out->n + d.n)) goto oom;
    long starter = -1;
    int last_cc = 0;
    for (size_t i = 0; i < d.n; i++) {
        uint32_t c = d.v[i];
        int cc = dfa_uni_ccc(c);
        size_t o = out->n - base;
        if (starter >= 0) {
            int adjacent = (o == (size_t)starter + 1);
            if (adjacent || (last_cc != 0 && last_cc < cc)) {
                uint32_t comp = compose_pair(out->v[base + (size_t)starter], c);
                if (comp) {
                    out->v[base + (size_t)starter] = comp;
                    continue;
                }
            }
        }
        if (cc == 0) starter = (long)o;
        last_cc = cc;
        out->v[out->n++] = c;
    }
    dfa_cpbuf_free(&d);
    return 0;
oom:
    dfa_cpbuf_free(&d);
    return -1;
}

static int is_extend(uint32_t cp) {
    return dfa_uni_is_mark(cp) || cp == 0x200D || (cp >= 0x1F3FB && cp <= 0x1F3FF) || (cp >= 0xE0020 && cp <= 0xE007F);
}
/* Extended_Pictographic, roughly: the emoji blocks and the older symbols emoji use. */
static int is_pictographic(uint32_t cp) {
    return (cp >= 0x1F000 && cp <= 0x1FAFF) || (cp >= 0x2600 && cp <= 0x27BF) || (cp >= 0x2300 && cp <= 0x23FF) ||
           (cp >= 0x2B00 && cp <= 0x2BFF) || (cp >= 0x2190 && cp <= 0x21FF) || cp == 0xA9 || cp == 0xAE ||
           cp == 0x203C || cp == 0x2049 || cp == 0x2122 || cp == 0x2139 || cp == 0x3030 || cp == 0x303D ||
           cp == 0x3297 || cp == 0x3299;
}
static int is_ri(uint32_t cp) { return cp >= 0x1F1E6 && cp <= 0x1F1FF; }

size_t dfa_uni_grapheme_len(const uint32_t *in, size_t n, size_t i) {
    if (i >= n) return 0;
    size_t j = i + 1;
    if (in[i] == '\r') return (j < n && in[j] == '\n') ? 2 : 1;
    if (in[i] == '\n' || in[i] < 0x20) return 1;
    if (is_ri(in[i]) && j < n && is_ri(in[j])) j++;
    /* Hangul: L* then V/LV*, then T* */
    uint32_t c = in[i];
    int hangul = (c >= 0x1100 && c <= 0x11FF) || (c >= SBASE && c < SBASE + SCOUNT);
    while (hangul && j < n && in[j] >= 0x1160 && in[j] <= 0x11FF) j++;
    while (j < n) {
        if (is_extend(in[j])) {
            /* emoji ZWJ sequences: pictographic ZWJ pictographic */
            if (in[j] == 0x200D && j + 1 < n && is_pictographic(in[i]) && is_pictographic(in[j + 1])) j++;
            j++;
        } else {
            break;
        }
    }
    return j - i;
}
