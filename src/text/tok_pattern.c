/* tok_pattern.c - the patterns of Replace normalizers and Split pre-tokenizers. tokenizer.json
 * may hold any Oniguruma regex; we support what text-encoder tokenizers ship: literal strings,
 * one atom with a quantifier (" {2,}", "\s+"), CLIP's and GPT-2's pre-tokenizer regexes (matched
 * by hand-written code, same leftmost-first semantics). Anything else: DFA_ERR_UNSUPPORTED. */
#include <string.h>

#include "text/tok_internal.h"

enum { ATOM_CHAR, ATOM_SPACE, ATOM_NOT_SPACE, ATOM_ANY, ATOM_LETTER, ATOM_NUMBER };

static const char CLIP_RE[] = "'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+";
static const char GPT2_RE[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static int is_meta(char c) { return strchr(".^$|?*+()[]{}\\", c) != NULL; }

/* Parse one atom at r (UTF-8); returns bytes consumed, 0 if not an atom we support. */
static int parse_atom(const char *r, int *atom, uint32_t *cp) {
    if (r[0] == '\\') {
        switch (r[1]) {
        case 's': *atom = ATOM_SPACE; return 2;
        case 'S': *atom = ATOM_NOT_SPACE; return 2;
        case 't': *atom = ATOM_CHAR, *cp = '\t'; return 2;
        case 'n': *atom = ATOM_CHAR, *cp = '\n'; return 2;
        case 'r': *atom = ATOM_CHAR, *cp = '\r'; return 2;
        case 'p':
            if (strncmp(r, "\\p{L}", 5) == 0) { *atom = ATOM_LETTER; return 5; }
            if (strncmp(r, "\\p{N}", 5) == 0) { *atom = ATOM_NUMBER; return 5; }
            return 0;
        default:
            if (r[1] && is_meta(r[1])) { *atom = ATOM_CHAR, *cp = (unsigned char)r[1]; return 2; }
            return 0;
        }
    }
    if (r[0] == '.') { *atom = ATOM_ANY; return 1; }
    if (!r[0] || is_meta(r[0])) return 0;
    int k = dfa_utf8_decode((const unsigned char *)r, strlen(r), cp);
    if (k) *atom = ATOM_CHAR;
    return k;
}

static int atom_match(int atom, uint32_t acp, uint32_t c) {
    switch (atom) {
    case ATOM_CHAR: return c == acp;
    case ATOM_SPACE: return dfa_uni_is_space(c);
    case ATOM_NOT_SPACE: return !dfa_uni_is_space(c);
    case ATOM_ANY: return c != '\n';
    case ATOM_LETTER: return dfa_uni_is_letter(c);
    case ATOM_NUMBER: return dfa_uni_is_number(c);
    }
    return 0;
}

static int parse_uint(const char **p, int *v) {
    const char *s = *p;
    if (*s < '0' || *s > '9') return 0;
    long x = 0;
    while (*s >= '0' && *s <= '9') {
        x = x * 10 + (*s - '0');
        if (x > 1000000) return 0;
        s++;
    }
    *v = (int)x;
    *p = s;
    return 1;
}

dfa_status tok_pattern_parse(const cJSON *pat, const char *what, tok_pattern *out, dfa_error *err) {
    memset(out, 0, sizeof *out);
    if (!cJSON_IsObject(pat)) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: 'pattern' must be an object {\"String\"|\"Regex\": ...}", what);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(pat, "String");
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
    if (cJSON_IsString(s)) {
        out->kind = PAT_LITERAL;
        dfa_status st = dfa_utf8_to_cps(s->valuestring, strlen(s->valuestring), what, &out->lit, err);
        if (st) return st;
        if (out->lit.n == 0) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: empty String pattern", what);
        return DFA_OK;
    }
    if (!cJSON_IsString(r)) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: pattern has neither a String nor a Regex string", what);
    const char *re = r->valuestring;
    /* some CLIP files list the special tokens first; added tokens are split out before the
     * pre-tokenizer runs, so those alternatives never see their text */
    static const char CLIP_SPECIAL[] = "<\\|startoftext\\|>|<\\|endoftext\\|>|";
    if (strncmp(re, CLIP_SPECIAL, sizeof CLIP_SPECIAL - 1) == 0 && strcmp(re + sizeof CLIP_SPECIAL - 1, CLIP_RE) == 0) {
        out->kind = PAT_CLIP;
        return DFA_OK;
    }
    if (strcmp(re, CLIP_RE) == 0) {
        out->kind = PAT_CLIP;
        return DFA_OK;
    }
    if (strcmp(re, GPT2_RE) == 0) {
        out->kind = PAT_GPT2;
        return DFA_OK;
    }
    /* a literal regex ("``"), or one atom + quantifier */
    const char *p = re;
    int atom;
    uint32_t cp = 0;
    int k = parse_atom(p, &atom, &cp);
    if (k > 0) {
        const char *q = p + k;
        int mn = -1, mx = -1;
        if (*q == '+') mn = 1, mx = -1, q++;
        else if (*q == '{') {
            q++;
            if (!parse_uint(&q, &mn)) goto unsupported;
            if (*q == '}') mx = mn, q++;
            else if (*q == ',') {
                q++;
                if (*q == '}') mx = -1, q++;
                else if (parse_uint(&q, &mx) && *q == '}') q++;
                else goto unsupported;
            } else goto unsupported;
        }
        if (mn >= 1 && *q == 0 && (mx < 0 || mx >= mn)) {
            out->kind = PAT_REPEAT, out->atom = atom, out->atom_cp = cp, out->min_rep = mn, out->max_rep = mx;
            return DFA_OK;
        }
    }
    /* all literal characters? */
    out->kind = PAT_LITERAL;
    while (*p) {
        k = parse_atom(p, &atom, &cp);
        if (k == 0 || atom != ATOM_CHAR) {
            dfa_cpbuf_free(&out->lit);
            goto unsupported;
        }
        if (dfa_cpbuf_push(&out->lit, cp)) DFA_FAIL(err, DFA_ERR_OOM, "%s: out of memory", what);
        p += k;
    }
    if (out->lit.n == 0) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: empty Regex pattern", what);
    return DFA_OK;
unsupported:
    DFA_FAIL(err, DFA_ERR_UNSUPPORTED,
             "%s: regex '%s' is not supported (supported: literals, one atom with +/{n,m}, CLIP's and GPT-2's "
             "pre-tokenizer regexes)", what, re);
}

void tok_pattern_free(tok_pattern *p) { dfa_cpbuf_free(&p->lit); }

static int is_contraction(const uint32_t *s, size_t n, size_t i, size_t *end) {
    if (s[i] != '\'' || i + 1 >= n) return 0;
    uint32_t a = s[i + 1], b = i + 2 < n ? s[i + 2] : 0;
    if (a == 's' || a == 't' || a == 'm' || a == 'd') {
        *end = i + 2;
        return 1;
    }
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) {
        *end = i + 3;
        return 1;
    }
    return 0;
}

static int is_other(uint32_t c) { return !dfa_uni_is_space(c) && !dfa_uni_is_letter(c) && !dfa_uni_is_number(c); }

/* End of the match of CLIP's regex at i, or i if none starts there. */
static size_t clip_at(const uint32_t *s, size_t n, size_t i) {
    size_t e;
    if (is_contraction(s, n, i, &e)) return e;
    e = i;
    if (dfa_uni_is_letter(s[i])) {
        while (e < n && dfa_uni_is_letter(s[e])) e++;
        return e;
    }
    if (dfa_uni_is_number(s[i])) return i + 1;
    while (e < n && is_other(s[e])) e++;
    return e;
}

static size_t gpt2_at(const uint32_t *s, size_t n, size_t i) {
    size_t e;
    if (is_contraction(s, n, i, &e)) return e;
    size_t j = (s[i] == ' ' && i + 1 < n) ? i + 1 : i;
    for (int pass = 0; pass < 2; pass++) { /* with the optional space, then without */
        size_t b = pass == 0 ? j : i;
        if (pass == 1 && b == j) break;
        e = b;
        if (dfa_uni_is_letter(s[b])) {
            while (e < n && dfa_uni_is_letter(s[e])) e++;
            return e;
        }
        if (dfa_uni_is_number(s[b])) {
            while (e < n && dfa_uni_is_number(s[e])) e++;
            return e;
        }
        if (is_other(s[b])) {
            while (e < n && is_other(s[e])) e++;
            return e;
        }
    }
    if (!dfa_uni_is_space(s[i])) return i;
    e = i;
    while (e < n && dfa_uni_is_space(s[e])) e++;
    if (e == n) return e;      /* \s+(?!\S) at the end */
    if (e - 1 > i) return e - 1; /* \s+(?!\S): leave the last space for the next word */
    return e;                  /* \s+ */
}

int tok_pattern_find(const tok_pattern *p, const uint32_t *s, size_t n, size_t from, size_t *ms, size_t *me) {
    for (size_t i = from; i < n; i++) {
        size_t e = i;
        switch (p->kind) {
        case PAT_LITERAL:
            if (i + p->lit.n <= n && memcmp(s + i, p->lit.v, p->lit.n * sizeof(uint32_t)) == 0) e = i + p->lit.n;
            break;
        case PAT_REPEAT: {
            size_t r = 0;
            while (i + r < n && atom_match(p->atom, p->atom_cp, s[i + r]) && (p->max_rep < 0 || r < (size_t)p->max_rep))
                r++;
            if (r == 0) break;
            if (r >= (size_t)p->min_rep) {
                e = i + r;
            } else {
                /* the whole run is too short: no match can start inside it */
                while (i + r < n && atom_match(p->atom, p->atom_cp, s[i + r])) r++;
                i += r - 1;
            }
            break;
        }
        case PAT_CLIP: e = clip_at(s, n, i); break;
        case PAT_GPT2: e = gpt2_at(s, n, i); break;
        }
        if (e > i) {
            *ms = i, *me = e;
            return 1;
        }
    }
    return 0;
}
