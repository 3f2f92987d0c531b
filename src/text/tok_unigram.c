/* tok_unigram.c - SentencePiece Unigram as the tokenizers library runs it: Viterbi over the
 * UTF-8 bytes of a piece, every vocabulary entry a candidate with its log-probability score;
 * a character no entry covers becomes unk with score min_score - 10; consecutive unknowns fuse
 * into one unk (then byte fallback <0xXX> if the model has it). Ties keep the first candidate
 * found: shorter pieces are tried first at each start, and a later one must score strictly more. */
#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/tok_internal.h"

#define UNK_PENALTY 10.0

/* The score as the tokenizers library holds it. Its JSON parser (serde_json without
 * float_roundtrip) is not correctly rounded: it accumulates the decimal digits into a u64
 * significand s and an exponent e, then computes (double)s * 10^e or (double)s / 10^-e, which
 * rounds twice when s > 2^53 (17-digit scores: ~1 in 8 of a real vocabulary). Viterbi ties are
 * decided by these last bits, so we redo that computation. The digits are those of the
 * shortest representation of the correctly rounded value, which is what tokenizers (ryu) and
 * Python write. */
static double serde_f64(double v) {
    if (v == 0.0 || v != v || v - v != 0.0) return v;
    char buf[64];
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, sizeof buf, "%.*e", p - 1, v);
        if (strtod(buf, NULL) == v) break;
    }
    const char *c = buf;
    int neg = *c == '-';
    if (neg) c++;
    uint64_t sig = 0;
    int nfrac = 0, seen_point = 0;
    for (; *c && *c != 'e'; c++) {
        if (*c == '.') {
            seen_point = 1;
            continue;
        }
        sig = sig * 10 + (uint64_t)(*c - '0');
        nfrac += seen_point;
    }
    int exp10 = (*c == 'e') ? atoi(c + 1) : 0;
    int e = exp10 - nfrac;
    double f = (double)sig;
    while (e < -308) { /* serde: divide by 1e308 until the power is in its table */
        f /= 1e308;
        e += 308;
    }
    char pw[16];
    snprintf(pw, sizeof pw, "1e%d", e < 0 ? -e : e);
    double p10 = strtod(pw, NULL);
    f = e < 0 ? f / p10 : f * p10;
    return neg ? -f : f;
}

dfa_status tok_unigram_load(dfa_tokenizer *t, const cJSON *model, const char *what, dfa_error *err) {
    tok_unigram *u = &t->uni;
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsArray(vocab)) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: Unigram model.vocab must be an array of [piece, score]", what);
    int n = cJSON_GetArraySize(vocab);
    if (n <= 0) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: Unigram model.vocab is empty", what);
    u->scores = malloc((size_t)n * sizeof(double));
    u->exact = malloc((size_t)n * sizeof(double));
    if (!u->scores || !u->exact) DFA_FAIL(err, DFA_ERR_OOM, "%s: out of memory", what);
    u->n = n;
    u->min_score = DBL_MAX;
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        const cJSON *p = cJSON_GetArrayItem(it, 0), *s = cJSON_GetArrayItem(it, 1);
        if (!cJSON_IsArray(it) || cJSON_GetArraySize(it) != 2 || !cJSON_IsString(p) || !cJSON_IsNumber(s))
            DFA_FAIL(err, DFA_ERR_FORMAT, "%s: Unigram vocab entry %d must be [string, number]", what, i);
        size_t l = strlen(p->valuestring);
        if (dfa_strmap_put(&t->vocab, p->valuestring, l, i)) DFA_FAIL(err, DFA_ERR_OOM, "%s: out of memory", what);
        if (l > u->max_piece_bytes) u->max_piece_bytes = l;
        u->scores[i] = serde_f64(s->valuedouble);
        u->exact[i] = s->valuedouble;
        if (u->scores[i] < u->min_score) u->min_score = u->scores[i];
        i++;
    }
    u->unk_id = -1;
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_id");
    if (cJSON_IsNumber(unk)) {
        if (unk->valuedouble < 0 || unk->valuedouble >= n || unk->valuedouble != unk->valueint)
            DFA_FAIL(err, DFA_ERR_FORMAT, "%s: Unigram unk_id %g is not an index into the %d-entry vocabulary", what,
                     unk->valuedouble, n);
        u->unk_id = unk->valueint;
    } else if (unk && !cJSON_IsNull(unk)) {
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: Unigram unk_id must be an integer or null", what);
    }
    u->byte_fallback = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "byte_fallback"));
    return DFA_OK;
}

typedef struct node {
    double score;
    long start; /* -1: not reached */
    int32_t id;
} node;

int tok_unigram_encode(const dfa_tokenizer *t, const uint32_t *cps, size_t n, tok_ids *out) {
    const tok_unigram *u = &t->uni;
    dfa_cpbuf b = {0};
    node *best = NULL;
    char *s = NULL;
    size_t *cut = NULL;
    int rc = -1;
    if (n == 0) return 0;
    if (dfa_cps_to_utf8(cps, n, &b)) goto done;
    size_t len = b.n;
    s = malloc(len + 1);
    best = malloc((len + 1) * sizeof *best);
    cut = malloc((len + 1) * sizeof *cut);
    if (!s || !best || !cut) goto done;
    for (size_t i = 0; i < len; i++) s[i] = (char)b.v[i];
    /* char boundaries */
    size_t nc = 0;
    for (size_t i = 0, off = 0; i < n; i++) {
        cut[nc++] = off;
        off += cps[i] < 0x80 ? 1 : cps[i] < 0x800 ? 2 : cps[i] < 0x10000 ? 3 : 4;
    }
    cut[nc] = len;
    for (size_t i = 0; i <= len; i++) best[i].start = -1, best[i].score = 0, best[i].id = -1;
    best[0].start = 0;
    double unk_score = u->min_score - UNK_PENALTY;
    for (size_t c = 0; c < nc; c++) {
        size_t at = cut[c];
        double here = best[at].score;
        size_t mblen = cut[c + 1] - at;
        int single = 0;
        for (size_t e = c + 1; e <= nc && cut[e] - at <= u->max_piece_bytes; e++) {
            int32_t id;
            size_t key = cut[e];
            if (!dfa_strmap_get(&t->vocab, s + at, key - at, &id)) continue;
            double cand = u->scores[id] + here;
            if (best[key].start < 0 || cand > best[key].score) best[key].score = cand, best[key].start = (long)at, best[key].id = id;
            if (key - at == mblen) single = 1;
        }
        if (!single) {
            size_t key = at + mblen;
            double cand = unk_score + here;
            if (best[key].start < 0 || cand > best[key].score) best[key].score = cand, best[key].start = (long)at, best[key].id = u->unk_id;
        }
    }
    /* backtrack into (start, end, is_unk) pieces, fusing consecutive unknowns; collected in cut[] reversed */
    size_t np = 0;
    long *ps = malloc((len + 1) * sizeof *ps), *pe = malloc((len + 1) * sizeof *pe);
    if (!ps || !pe) {
        free(ps), free(pe);
        goto done;
    }
    long end = (long)len, unk_end = -1, unk_start = -1;
    while (end > 0) {
        node *nd = &best[end];
        long st = nd->start;
        if (u->unk_id >= 0 && nd->id == u->unk_id) {
            if (unk_end < 0) unk_end = end;
            unk_start = st;
        } else {
            if (unk_end >= 0) ps[np] = unk_start, pe[np] = unk_end, np++, unk_end = -1;
            ps[np] = st, pe[np] = end, np++;
        }
        end = st;
    }
    if (unk_end >= 0) ps[np] = unk_start, pe[np] = unk_end, np++;
    rc = 0;
    for (size_t k = np; k-- > 0 && rc == 0;) {
        const char *p = s + ps[k];
        size_t pl = (size_t)(pe[k] - ps[k]);
        int32_t id;
        if (dfa_strmap_get(&t->vocab, p, pl, &id)) {
            rc = tok_ids_push(out, id);
            continue;
        }
        if (u->byte_fallback) {
            size_t j;
            int32_t bid;
            for (j = 0; j < pl; j++) {
                char code[8];
                snprintf(code, sizeof code, "<0x%02X>", (unsigned char)p[j]);
                if (!dfa_strmap_get(&t->vocab, code, 6, &bid)) break;
            }
            if (j == pl) {
                for (j = 0; j < pl && rc == 0; j++) {
                    char code[8];
                    snprintf(code, sizeof code, "<0x%02X>", (unsigned char)p[j]);
                    dfa_strmap_get(&t->vocab, code, 6, &bid);
                    rc = tok_ids_push(out, bid);
                }
                continue;
            }
        }
        rc = u->unk_id >= 0 ? tok_ids_push(out, u->unk_id) : -2;
    }
    free(ps), free(pe);
done:
    dfa_cpbuf_free(&b);
    free(best), free(s), free(cut);
    return rc;
}
