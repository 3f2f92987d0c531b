/* tok_pretok.c - pre-tokenizers: Split, ByteLevel, Metaspace, WhitespaceSplit (and Sequence). */
#include <stdlib.h>
#include <string.h>

#include "text/tok_internal.h"

int tok_pieces_add(tok_pieces *p, const uint32_t *cps, size_t len) {
    if (p->n == p->cap) {
        size_t nc = p->cap ? p->cap * 2 : 16;
        size_t *s = realloc(p->start, nc * sizeof *s);
        if (!s) return -1;
        p->start = s;
        size_t *l = realloc(p->len, nc * sizeof *l);
        if (!l) return -1;
        p->len = l;
        p->cap = nc;
    }
    p->start[p->n] = p->cps.n;
    p->len[p->n] = len;
    if (dfa_cpbuf_append(&p->cps, cps, len)) return -1;
    p->n++;
    return 0;
}

void tok_pieces_free(tok_pieces *p) {
    dfa_cpbuf_free(&p->cps);
    free(p->start);
    free(p->len);
    memset(p, 0, sizeof *p);
}

uint32_t tok_byte_to_cp(unsigned char b) {
    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE) return b;
    /* the others get 256, 257, ... in byte order: 0x00-0x20, 0x7F-0xA0, 0xAD */
    if (b <= 0x20) return 256u + b;
    if (b == 0xAD) return 256u + 33 + 34;
    return 256u + 33 + (uint32_t)(b - 0x7F);
}

static void free_one(tok_pretok *p) { tok_pattern_free(&p->pat); }

void tok_pretok_free(tok_pretok *list, int n) {
    for (int i = 0; i < n; i++) free_one(&list[i]);
    free(list);
}

static int json_bool(const cJSON *node, const char *key, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(node, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

static dfa_status parse_one(const cJSON *node, const char *what, tok_pretok *p, dfa_error *err) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(node, "type");
    if (!cJSON_IsString(type)) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: pre_tokenizer without a 'type' string", what);
    const char *t = type->valuestring;
    if (strcmp(t, "Split") == 0) {
        p->kind = PRE_SPLIT;
        DFA_TRY(tok_pattern_parse(cJSON_GetObjectItemCaseSensitive(node, "pattern"), what, &p->pat, err));
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(node, "behavior");
        static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
        int found = -1;
        for (int i = 0; i < 5 && cJSON_IsString(b); i++)
            if (strcmp(b->valuestring, names[i]) == 0) found = i;
        if (found < 0)
            DFA_FAIL(err, DFA_ERR_FORMAT, "%s: Split.behavior must be one of Removed, Isolated, MergedWithPrevious, "
                     "MergedWithNext, Contiguous", what);
        p->behavior = (tok_split_behavior)found;
        p->invert = json_bool(node, "invert", 0);
    } else if (strcmp(t, "ByteLevel") == 0) {
        p->kind = PRE_BYTELEVEL;
        p->add_prefix_space = json_bool(node, "add_prefix_space", 1);
        p->use_regex = json_bool(node, "use_regex", 1);
        if (p->use_regex) {
            cJSON *pat = cJSON_CreateObject();
            if (!pat || !cJSON_AddStringToObject(pat, "Regex",
                    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+")) {
                cJSON_Delete(pat);
                DFA_FAIL(err, DFA_ERR_OOM, "%s: out of memory", what);
            }
            dfa_status st = tok_pattern_parse(pat, what, &p->pat, err);
            cJSON_Delete(pat);
            if (st) return st;
        }
    } else if (strcmp(t, "Metaspace") == 0) {
        p->kind = PRE_METASPACE;
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(node, "replacement");
        uint32_t cp = 0x2581;
        if (r) {
            if (!cJSON_IsString(r)) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: Metaspace.replacement must be a string", what);
            size_t l = strlen(r->valuestring);
            int k = dfa_utf8_decode((const unsigned char *)r->valuestring, l, &cp);
            if (k == 0 || (size_t)k != l)
                DFA_FAIL(err, DFA_ERR_FORMAT, "%s: Metaspace.replacement must be one character, got '%s'", what, r->valuestring);
        }
        p->replacement = cp;
        p->split = json_bool(node, "split", 1);
        const cJSON *ps = cJSON_GetObjectItemCaseSensitive(node, "prepend_scheme");
        if (cJSON_IsString(ps)) {
            if (strcmp(ps->valuestring, "always") == 0) p->prepend = PREPEND_ALWAYS;
            else if (strcmp(ps->valuestring, "first") == 0) p->prepend = PREPEND_FIRST;
            else if (strcmp(ps->valuestring, "never") == 0) p->prepend = PREPEND_NEVER;
            else DFA_FAIL(err, DFA_ERR_FORMAT, "%s: Metaspace.prepend_scheme '%s' is not always/first/never", what, ps->valuestring);
        } else {
            p->prepend = json_bool(node, "add_prefix_space", 1) ? PREPEND_ALWAYS : PREPEND_NEVER;
        }
    } else if (strcmp(t, "WhitespaceSplit") == 0) {
        p->kind = PRE_WHITESPACE_SPLIT;
    } else {
        DFA_FAIL(err, DFA_ERR_UNSUPPORTED,
                 "%s: pre_tokenizer type '%s' is not supported (supported: Sequence, Split, ByteLevel, Metaspace, "
                 "WhitespaceSplit)", what, t);
    }
    return DFA_OK;
}

dfa_status tok_pretok_parse(const cJSON *node, const char *what, tok_pretok **list, int *n, dfa_error *err) {
    if (!node || cJSON_IsNull(node)) return DFA_OK;
    if (!cJSON_IsObject(node)) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: 'pre_tokenizer' must be an object or null", what);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(node, "type");
    if (cJSON_IsString(type) && strcmp(type->valuestring, "Sequence") == 0) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(node, "pretokenizers");
        if (!cJSON_IsArray(arr)) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: pre_tokenizer Sequence without a 'pretokenizers' array", what);
        const cJSON *it;
        cJSON_ArrayForEach(it, arr) DFA_TRY(tok_pretok_parse(it, what, list, n, err));
        return DFA_OK;
    }
    tok_pretok *nl = realloc(*list, (size_t)(*n + 1) * sizeof **list);
    if (!nl) DFA_FAIL(err, DFA_ERR_OOM, "%s: out of memory", what);
    *list = nl;
    memset(&nl[*n], 0, sizeof nl[*n]);
    (*n)++;
    return parse_one(node, what, &nl[*n - 1], err);
}

/* Segments of s[0..n) by pattern matches, then the split behaviour (the tokenizers library's
 * fold over (segment, is_match)); appends the non-empty pieces. */
typedef struct seg {
    size_t b, e;
    int m;
} seg;

static int split_piece(const tok_pattern *pat, tok_split_behavior beh, int invert, const uint32_t *s, size_t n,
                       tok_pieces *out) {
    seg *v = NULL;
    size_t nv = 0, cap = 0, pos = 0, ms, me;
    int rc = -1;
#define PUSH(B, E, M)                                          \
    do {                                                       \
        if (nv == cap) {                                       \
            size_t nc_ = cap ? cap * 2 : 16;                   \
            seg *nv_ = realloc(v, nc_ * sizeof *v);            \
            if (!nv_) goto done;                               \
            v = nv_, cap = nc_;                                \
        }                                                      \
        v[nv].b = (B), v[nv].e = (E), v[nv].m = (M), nv++;     \
    } while (0)
    while (pos < n && tok_pattern_find(pat, s, n, pos, &ms, &me)) {
        if (ms > pos) PUSH(pos, ms, invert != 0);
        PUSH(ms, me, invert == 0);
        pos = me;
    }
    if (pos < n) PUSH(pos, n, invert != 0);
    /* fold in place: w is the output count */
    size_t w = 0;
    int prev = 0;
    switch (beh) {
    case SPLIT_REMOVED:
        for (size_t i = 0; i < nv; i++)
            if (!v[i].m) v[w++] = v[i];
        break;
    case SPLIT_ISOLATED: w = nv; break;
    case SPLIT_MERGED_PREV:
        for (size_t i = 0; i < nv; i++) {
            if (v[i].m && !prev && w > 0) v[w - 1].e = v[i].e;
            else v[w++] = v[i];
            prev = v[i].m;
        }
        break;
    case SPLIT_CONTIGUOUS:
        for (size_t i = 0; i < nv; i++) {
            int m = v[i].m;
            if (m == prev && w > 0) v[w - 1].e = v[i].e;
            else v[w++] = v[i];
            prev = m;
        }
        break;
    case SPLIT_MERGED_NEXT: {
        /* reverse fold: a match joins the piece after it unless that one was a match too */
        size_t r = nv; /* output grows downward from nv */
        for (size_t i = nv; i-- > 0;) {
            int m = v[i].m;
            if (m && !prev && r < nv) v[r].b = v[i].b;
            else v[--r] = v[i];
            prev = m;
        }
        for (size_t i = r; i < nv; i++) v[w++] = v[i];
        break;
    }
    }
    for (size_t i = 0; i < w; i++)
        if (v[i].e > v[i].b && tok_pieces_add(out, s + v[i].b, v[i].e - v[i].b)) goto done;
    rc = 0;
done:
    free(v);
    return rc;
#undef PUSH
}

static int run_one(const tok_pretok *p, const tok_pieces *in, int first, tok_pieces *out) {
    for (size_t i = 0; i < in->n; i++) {
        const uint32_t *s = in->cps.v + in->start[i];
        size_t n = in->len[i];
        switch (p->kind) {
        case PRE_SPLIT:
            if (split_piece(&p->pat, p->behavior, p->invert, s, n, out)) return -1;
            break;
        case PRE_WHITESPACE_SPLIT: {
            size_t j = 0;
            while (j < n) {
                while (j < n && dfa_uni_is_space(s[j])) j++;
                size_t b = j;
                while (j < n && !dfa_uni_is_space(s[j])) j++;
                if (j > b && tok_pieces_add(out, s + b, j - b)) return -1;
            }
            break;
        }
        case PRE_BYTELEVEL: {
            tok_pieces tmp = {0};
            dfa_cpbuf pre = {0};
            int rc = 0;
            if (p->add_prefix_space && (n == 0 || s[0] != ' ')) rc |= dfa_cpbuf_push(&pre, ' ');
            rc |= dfa_cpbuf_append(&pre, s, n);
            if (!rc) {
                if (p->use_regex) rc = split_piece(&p->pat, SPLIT_ISOLATED, 0, pre.v, pre.n, &tmp);
                else if (pre.n) rc = tok_pieces_add(&tmp, pre.v, pre.n);
            }
            for (size_t k = 0; !rc && k < tmp.n; k++) {
                dfa_cpbuf bytes = {0};
                rc = dfa_cps_to_utf8(tmp.cps.v + tmp.start[k], tmp.len[k], &bytes);
                for (size_t b = 0; !rc && b < bytes.n; b++) bytes.v[b] = tok_byte_to_cp((unsigned char)bytes.v[b]);
                if (!rc) rc = tok_pieces_add(out, bytes.v, bytes.n);
                dfa_cpbuf_free(&bytes);
            }
            tok_pieces_free(&tmp);
            dfa_cpbuf_free(&pre);
            if (rc) return -1;
            break;
        }
        case PRE_METASPACE: {
            dfa_cpbuf r = {0};
            int prepend = p->prepend == PREPEND_ALWAYS || (p->prepend == PREPEND_FIRST && first && i == 0);
            int rc = 0;
            if (prepend && (n == 0 || (s[0] != p->replacement && s[0] != ' '))) rc |= dfa_cpbuf_push(&r, p->replacement);
            for (size_t j = 0; !rc && j < n; j++) rc |= dfa_cpbuf_push(&r, s[j] == ' ' ? p->replacement : s[j]);
            if (!rc) {
                if (p->split) {
                    tok_pattern pat = {.kind = PAT_LITERAL};
                    uint32_t rep = p->replacement;
                    pat.lit.v = &rep;
                    pat.lit.n = 1;
                    rc = split_piece(&pat, SPLIT_MERGED_NEXT, 0, r.v, r.n, out);
                } else if (r.n) {
                    rc = tok_pieces_add(out, r.v, r.n);
                }
            }
            dfa_cpbuf_free(&r);
            if (rc) return -1;
            break;
        }
        }
    }
    return 0;
}

int tok_pretok_run(const tok_pretok *list, int n, const uint32_t *s, size_t len, int first, tok_pieces *out) {
    tok_pieces cur = {0};
    if (len == 0) return 0;
    if (tok_pieces_add(&cur, s, len)) goto oom;
    for (int i = 0; i < n; i++) {
        tok_pieces next = {0};
        if (run_one(&list[i], &cur, first, &next)) {
            tok_pieces_free(&next);
            goto oom;
        }
        tok_pieces_free(&cur);
        cur = next;
    }
    for (size_t i = 0; i < cur.n; i++)
        if (cur.len[i] && tok_pieces_add(out, cur.cps.v + cur.start[i], cur.len[i])) goto oom;
    tok_pieces_free(&cur);
    return 0;
oom:
    tok_pieces_free(&cur);
    return -1;
}
