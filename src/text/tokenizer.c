/* tokenizer.c - tokenizer.json loading and the encode pipeline:
 *   added tokens (not normalized) split out of the raw text
 *   -> normalizers on each remaining segment -> added tokens (normalized) split out
 *   -> pre-tokenizers -> model (BPE / Unigram) per piece
 *   -> truncation (room left for the special tokens) -> post-processor -> padding. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "text/tok_internal.h"

static dfa_status read_text(const char *path, char **out, size_t *len, dfa_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) DFA_FAIL(err, DFA_ERR_IO, "cannot open '%s'", path);
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 65536 + 1 > cap) {
            size_t nc = cap ? cap * 2 : 1 << 20;
            char *nb = realloc(buf, nc);
            if (!nb) {
                free(buf);
                fclose(f);
                DFA_FAIL(err, DFA_ERR_OOM, "out of memory reading '%s'", path);
            }
            buf = nb, cap = nc;
        }
        size_t r = fread(buf + n, 1, 65536, f);
        n += r;
        if (r < 65536) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        DFA_FAIL(err, DFA_ERR_IO, "read error on '%s'", path);
    }
    buf[n] = 0;
    *out = buf, *len = n;
    return DFA_OK;
}

static dfa_status parse_added(dfa_tokenizer *t, const cJSON *arr, const char *what, dfa_error *err) {
    if (!arr || cJSON_IsNull(arr)) return DFA_OK;
    if (!cJSON_IsArray(arr)) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: 'added_tokens' must be an array", what);
    int n = cJSON_GetArraySize(arr);
    t->added = calloc((size_t)n + 1, sizeof *t->added);
    if (!t->added) DFA_FAIL(err, DFA_ERR_OOM, "%s: out of memory", what);
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(it, "content");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > 16777216.0 || !cJSON_IsString(c) ||
            c->valuestring[0] == 0)
            DFA_FAIL(err, DFA_ERR_FORMAT, "%s: added_tokens[%d] needs an integer 'id' (0..2^24) and a non-empty 'content'",
                     what, t->n_added);
        struct tok_added *a = &t->added[t->n_added++];
        a->id = id->valueint;
        DFA_TRY(dfa_utf8_to_cps(c->valuestring, strlen(c->valuestring), what, &a->content, err));
        a->normalized = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "normalized"));
        a->lstrip = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "lstrip"));
        a->rstrip = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "rstrip"));
        a->single_word = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "single_word"));
        a->special = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "special"));
    }
    return DFA_OK;
}

/* Resolve a token string given by the post-processor or the config to an id. */
static int32_t token_id(const dfa_tokenizer *t, const char *s) {
    size_t n = strlen(s);
    for (int i = 0; i < t->n_added; i++) {
        dfa_cpbuf b = {0};
        if (dfa_utf8_to_cps(s, n, "token", &b, NULL)) {
            dfa_cpbuf_free(&b);
            return -1;
        }
        int eq = b.n == t->added[i].content.n && memcmp(b.v, t->added[i].content.v, b.n * sizeof(uint32_t)) == 0;
        dfa_cpbuf_free(&b);
        if (eq) return t->added[i].id;
    }
    int32_t id;
    return dfa_strmap_get(&t->vocab, s, n, &id) ? id : -1;
}

int dfa_tok_token_to_id(const dfa_tokenizer *tok, const char *token) { return token_id(tok, token); }

static dfa_status push_id(int32_t **v, int *n, int32_t id, const char *what, dfa_error *err) {
    int32_t *nv = realloc(*v, (size_t)(*n + 1) * sizeof **v);
    if (!nv) DFA_FAIL(err, DFA_ERR_OOM, "%s: out of memory", what);
    *v = nv;
    nv[(*n)++] = id;
    return DFA_OK;
}

static dfa_status pair_id(const cJSON *pair, const char *key, const char *what, int32_t *id, dfa_error *err) {
    if (!cJSON_IsArray(pair) || cJSON_GetArraySize(pair) != 2 || !cJSON_IsNumber(cJSON_GetArrayItem(pair, 1)))
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: post_processor.%s must be [token, id]", what, key);
    *id = cJSON_GetArrayItem(pair, 1)->valueint;
    return DFA_OK;
}

static dfa_status parse_post(dfa_tokenizer *t, const cJSON *pp, const char *what, dfa_error *err) {
    if (!pp || cJSON_IsNull(pp)) return DFA_OK;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(pp, "type");
    if (!cJSON_IsString(type)) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: post_processor without a 'type' string", what);
    const char *ty = type->valuestring;
    if (strcmp(ty, "RobertaProcessing") == 0 || strcmp(ty, "BertProcessing") == 0) {
        int32_t cls = -1, sep = -1;
        DFA_TRY(pair_id(cJSON_GetObjectItemCaseSensitive(pp, "cls"), "cls", what, &cls, err));
        DFA_TRY(pair_id(cJSON_GetObjectItemCaseSensitive(pp, "sep"), "sep", what, &sep, err));
        DFA_TRY(push_id(&t->pre_ids, &t->n_pre, cls, what, err));
        return push_id(&t->post_ids, &t->n_post, sep, what, err);
    }
    if (strcmp(ty, "ByteLevel") == 0) return DFA_OK; /* offsets only */
    if (strcmp(ty, "Sequence") == 0) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(pp, "processors"), *it;
        if (!cJSON_IsArray(arr)) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: post_processor Sequence without 'processors'", what);
        cJSON_ArrayForEach(it, arr) DFA_TRY(parse_post(t, it, what, err));
        return DFA_OK;
    }
    if (strcmp(ty, "TemplateProcessing") == 0) {
        const cJSON *single = cJSON_GetObjectItemCaseSensitive(pp, "single");
        const cJSON *specials = cJSON_GetObjectItemCaseSensitive(pp, "special_tokens");
        if (!cJSON_IsArray(single)) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: TemplateProcessing.single must be an array", what);
        int seen_seq = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, single) {
            const cJSON *sp = cJSON_GetObjectItemCaseSensitive(it, "SpecialToken");
            if (cJSON_GetObjectItemCaseSensitive(it, "Sequence")) {
                seen_seq = 1;
                continue;
            }
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(sp, "id");
            if (!cJSON_IsString(name))
                DFA_FAIL(err, DFA_ERR_FORMAT, "%s: TemplateProcessing.single item is neither Sequence nor SpecialToken", what);
            const cJSON *entry = cJSON_GetObjectItemCaseSensitive(specials, name->valuestring);
            const cJSON *ids = cJSON_GetObjectItemCaseSensitive(entry, "ids"), *idv;
            if (!cJSON_IsArray(ids))
                DFA_FAIL(err, DFA_ERR_FORMAT, "%s: TemplateProcessing special token '%s' has no ids in special_tokens", what,
                         name->valuestring);
            cJSON_ArrayForEach(idv, ids) {
                if (!cJSON_IsNumber(idv)) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: special token '%s': ids must be integers", what, name->valuestring);
                if (seen_seq) DFA_TRY(push_id(&t->post_ids, &t->n_post, idv->valueint, what, err));
                else DFA_TRY(push_id(&t->pre_ids, &t->n_pre, idv->valueint, what, err));
            }
        }
        return DFA_OK;
    }
    DFA_FAIL(err, DFA_ERR_UNSUPPORTED,
             "%s: post_processor type '%s' is not supported (supported: TemplateProcessing, RobertaProcessing, "
             "BertProcessing, ByteLevel, Sequence)", what, ty);
}

/* pad_token of tokenizer_config.json / special_tokens_map.json: a string or {"content": ...}. */
static const char *pad_token_of(const cJSON *cfg) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(cfg, "pad_token");
    if (cJSON_IsString(p)) return p->valuestring;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(p, "content");
    return cJSON_IsString(c) ? c->valuestring : NULL;
}

void dfa_tok_free(dfa_tokenizer *t) {
    if (!t) return;
    dfa_strmap_free(&t->vocab);
    dfa_pairmap_free(&t->bpe.merges);
    free(t->bpe.cont_prefix);
    free(t->bpe.eow_suffix);
    free(t->uni.scores);
    free(t->uni.exact);
    tok_norm_free(t->norms, t->n_norms);
    tok_pretok_free(t->pretoks, t->n_pretoks);
    for (int i = 0; i < t->n_added; i++) dfa_cpbuf_free(&t->added[i].content);
    free(t->added);
    free(t->pre_ids);
    free(t->post_ids);
    free(t);
}

static dfa_status load_tree(dfa_tokenizer *t, const cJSON *root, const char *what, dfa_error *err) {
    if (!cJSON_IsObject(root)) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: the top level must be an object", what);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model)) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: missing 'model' object", what);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    const char *ty = cJSON_IsString(type) ? type->valuestring
                     : cJSON_GetObjectItemCaseSensitive(model, "merges") ? "BPE" : "";
    if (strcmp(ty, "BPE") == 0) {
        t->is_bpe = 1;
        DFA_TRY(tok_bpe_load(t, model, what, err));
    } else if (strcmp(ty, "Unigram") == 0) {
        DFA_TRY(tok_unigram_load(t, model, what, err));
    } else {
        DFA_FAIL(err, DFA_ERR_UNSUPPORTED, "%s: model type '%s' is not supported (supported: BPE, Unigram)", what, ty);
    }
    DFA_TRY(parse_added(t, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), what, err));
    DFA_TRY(tok_norm_parse(cJSON_GetObjectItemCaseSensitive(root, "normalizer"), what, &t->norms, &t->n_norms, err));
    DFA_TRY(tok_pretok_parse(cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), what, &t->pretoks, &t->n_pretoks, err));
    DFA_TRY(parse_post(t, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), what, err));
    /* normalized added tokens are matched in normalized text: normalize their content once */
    for (int i = 0; i < t->n_added; i++) {
        if (!t->added[i].normalized) continue;
        if (tok_norm_run(t->norms, t->n_norms, &t->added[i].content)) DFA_FAIL(err, DFA_ERR_OOM, "%s: out of memory", what);
    }
    /* vocab size: one past the largest id */
    int32_t mx = -1;
    for (size_t i = 0; i < t->vocab.cap; i++)
        if (t->vocab.keys[i] && t->vocab.vals[i] > mx) mx = t->vocab.vals[i];
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].id > mx) mx = t->added[i].id;
    t->vocab_size = mx + 1;
    for (int i = 0; i < t->n_pre; i++)
        if (t->pre_ids[i] < 0 || t->pre_ids[i] >= t->vocab_size) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: post_processor id %d is outside the vocabulary (%d)", what, t->pre_ids[i], t->vocab_size);
    for (int i = 0; i < t->n_post; i++)
        if (t->post_ids[i] < 0 || t->post_ids[i] >= t->vocab_size) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: post_processor id %d is outside the vocabulary (%d)", what, t->post_ids[i], t->vocab_size);
    /* padding / truncation defaults written in the file */
    t->pad_id = -1;
    const cJSON *pad = cJSON_GetObjectItemCaseSensitive(root, "padding");
    if (cJSON_IsObject(pad)) {
        const cJSON *pid = cJSON_GetObjectItemCaseSensitive(pad, "pad_id");
        if (cJSON_IsNumber(pid) && pid->valuedouble >= 0 && pid->valuedouble < t->vocab_size) t->pad_id = pid->valueint;
        const cJSON *fixed = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(pad, "strategy"), "Fixed");
        if (cJSON_IsNumber(fixed) && fixed->valuedouble > 0 && fixed->valuedouble < 1e7) t->model_max_length = fixed->valueint;
    }
    const cJSON *trunc = cJSON_GetObjectItemCaseSensitive(root, "truncation");
    const cJSON *tml = cJSON_GetObjectItemCaseSensitive(trunc, "max_length");
    if (cJSON_IsNumber(tml) && tml->valuedouble > 0 && tml->valuedouble < 1e7) t->model_max_length = tml->valueint;
    return DFA_OK;
}

dfa_status dfa_tok_load_json(dfa_tokenizer **out, const char *json, size_t len, const char *what, dfa_error *err) {
    *out = NULL;
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        long off = (at && at >= json && at <= json + len) ? (long)(at - json) : -1;
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: not valid JSON (syntax error near byte %ld)", what, off);
    }
    dfa_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        cJSON_Delete(root);
        DFA_FAIL(err, DFA_ERR_OOM, "%s: out of memory", what);
    }
    dfa_status st = load_tree(t, root, what, err);
    cJSON_Delete(root);
    if (st) {
        dfa_tok_free(t);
        return st;
    }
    *out = t;
    return DFA_OK;
}

/* Apply tokenizer_config.json / special_tokens_map.json in dir (if present). */
static dfa_status load_configs(dfa_tokenizer *t, const char *dir, dfa_error *err) {
    const char *names[2] = {"tokenizer_config.json", "special_tokens_map.json"};
    for (int k = 0; k < 2; k++) {
        char path[8192];
        if (snprintf(path, sizeof path, "%s/%s", dir, names[k]) >= (int)sizeof path) continue;
        struct stat sb;
        if (stat(path, &sb) != 0) continue;
        char *text;
        size_t len;
        DFA_TRY(read_text(path, &text, &len, err));
        cJSON *cfg = cJSON_ParseWithLength(text, len);
        free(text);
        if (!cfg) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: not valid JSON", path);
        const cJSON *ml = cJSON_GetObjectItemCaseSensitive(cfg, "model_max_length");
        if (k == 0 && cJSON_IsNumber(ml) && ml->valuedouble > 0 && ml->valuedouble < 1e7) t->model_max_length = ml->valueint;
        const char *pt = pad_token_of(cfg);
        if (pt && t->pad_id < 0) {
            int32_t id = token_id(t, pt);
            if (id < 0) {
                dfa_status st = DFA_SET(err, DFA_ERR_FORMAT, "%s: pad_token '%s' is not a token of the tokenizer", path, pt);
                cJSON_Delete(cfg);
                return st;
            }
            t->pad_id = id;
        }
        cJSON_Delete(cfg);
    }
    return DFA_OK;
}

dfa_status dfa_tok_load(dfa_tokenizer **out, const char *path, dfa_error *err) {
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0) DFA_FAIL(err, DFA_ERR_IO, "tokenizer '%s' does not exist", path);
    char file[4096], dir[4096];
    if (S_ISDIR(sb.st_mode)) {
        snprintf(file, sizeof file, "%s/tokenizer.json", path);
        snprintf(dir, sizeof dir, "%s", path);
    } else {
        snprintf(file, sizeof file, "%s", path);
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        else snprintf(dir, sizeof dir, ".");
    }
    char *text;
    size_t len;
    DFA_TRY(read_text(file, &text, &len, err));
    dfa_status st = dfa_tok_load_json(out, text, len, file, err);
    free(text);
    if (st) return st;
    st = load_configs(*out, dir, err);
    if (st) {
        dfa_tok_free(*out);
        *out = NULL;
    }
    return st;
}

dfa_tok_opts dfa_tok_default_opts(void) {
    dfa_tok_opts o = {.add_special_tokens = 1, .max_length = 0, .truncation = 1, .pad = 1};
    return o;
}

dfa_status dfa_tok_use_transformers_t5(dfa_tokenizer *t, dfa_error *err) {
    if (t->is_bpe) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "tokenizer: the transformers T5 pipeline needs a Unigram model, not BPE");
    int k = 0;
    for (int i = 0; i < t->n_norms; i++) {
        if (t->norms[i].kind == NORM_PRECOMPILED) t->norms[k++] = t->norms[i];
        else tok_norm_free_one(&t->norms[i]);
    }
    t->n_norms = k;
    tok_pretok *p = calloc(2, sizeof *p);
    if (!p) DFA_FAIL(err, DFA_ERR_OOM, "tokenizer: out of memory");
    tok_pretok_free(t->pretoks, t->n_pretoks);
    p[0].kind = PRE_WHITESPACE_SPLIT;
    p[1].kind = PRE_METASPACE, p[1].replacement = 0x2581, p[1].prepend = PREPEND_ALWAYS, p[1].split = 1;
    t->pretoks = p;
    t->n_pretoks = 2;
    t->uni.byte_fallback = 0;
    if (t->uni.n > 2) t->uni.unk_id = 2; /* T5Tokenizer hard-codes T5's layout: <pad> 0, </s> 1, <unk> 2 */
    /* transformers reads the vocabulary with Python's json (correctly rounded) and hands the
     * floats to the library: no serde rounding there */
    t->uni.min_score = t->uni.n ? t->uni.exact[0] : 0;
    for (int i = 0; i < t->uni.n; i++) {
        t->uni.scores[i] = t->uni.exact[i];
        if (t->uni.exact[i] < t->uni.min_score) t->uni.min_score = t->uni.exact[i];
    }
    return DFA_OK;
}

int dfa_tok_vocab_size(const dfa_tokenizer *tok) { return tok->vocab_size; }
int dfa_tok_model_max_length(const dfa_tokenizer *tok) { return tok->model_max_length; }
int dfa_tok_pad_id(const dfa_tokenizer *tok) { return tok->pad_id; }

void dfa_tok_result_free(dfa_tok_result *r) {
    free(r->ids);
    free(r->mask);
    memset(r, 0, sizeof *r);
}

/* ---- encoding ---- */

static int is_word_char(uint32_t c) { return dfa_uni_is_letter(c) || dfa_uni_is_number(c) || c == '_'; }

/* One text segment after added-token splitting. */
typedef struct segment {
    int32_t token; /* >= 0: an added token */
    size_t b, e;   /* range in the buffer it came from */
} segment;

typedef struct seglist {
    segment *v;
    size_t n, cap;
} seglist;

static int seg_push(seglist *l, int32_t token, size_t b, size_t e) {
    if (token < 0 && e <= b) return 0;
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 16;
        segment *nv = realloc(l->v, nc * sizeof *nv);
        if (!nv) return -1;
        l->v = nv, l->cap = nc;
    }
    l->v[l->n++] = (segment){token, b, e};
    return 0;
}

/* Split s[b..e) by the added tokens whose `normalized` flag equals norm (leftmost-longest). */
static int split_added(const dfa_tokenizer *t, const uint32_t *s, size_t b, size_t e, int norm, seglist *out) {
    size_t start = b, i = b;
    while (i < e) {
        int best = -1;
        size_t blen = 0;
        for (int k = 0; k < t->n_added; k++) {
            const struct tok_added *a = &t->added[k];
            if (a->normalized != norm || a->content.n > e - i || a->content.n <= blen) continue;
            if (memcmp(s + i, a->content.v, a->content.n * sizeof(uint32_t)) == 0) best = k, blen = a->content.n;
        }
        if (best < 0) {
            i++;
            continue;
        }
        const struct tok_added *a = &t->added[best];
        size_t ms = i, me = i + blen;
        if (a->single_word && ((ms > b && is_word_char(s[ms - 1])) || (me < e && is_word_char(s[me])))) {
            i = me; /* the match is consumed but discarded */
            continue;
        }
        if (a->lstrip) {
            while (ms > start && dfa_uni_is_space(s[ms - 1])) ms--;
        }
        if (a->rstrip) {
            while (me < e && dfa_uni_is_space(s[me])) me++;
        }
        if (seg_push(out, -1, start, ms) || seg_push(out, a->id, ms, me)) return -1;
        start = i = me;
    }
    return seg_push(out, -1, start, e);
}

static dfa_status model_pieces(const dfa_tokenizer *t, const uint32_t *s, size_t n, int first, tok_ids *ids,
                               dfa_error *err) {
    tok_pieces pieces = {0};
    if (tok_pretok_run(t->pretoks, t->n_pretoks, s, n, first, &pieces)) {
        tok_pieces_free(&pieces);
        DFA_FAIL(err, DFA_ERR_OOM, "tokenizer: out of memory pre-tokenizing %zu characters", n);
    }
    for (size_t i = 0; i < pieces.n; i++) {
        const uint32_t *p = pieces.cps.v + pieces.start[i];
        int rc = t->is_bpe ? tok_bpe_encode(t, p, pieces.len[i], ids) : tok_unigram_encode(t, p, pieces.len[i], ids);
        if (rc) {
            tok_pieces_free(&pieces);
            if (rc == -2)
                DFA_FAIL(err, DFA_ERR_INVALID_ARG, "tokenizer: a character is not in the vocabulary and the model has no unk token");
            DFA_FAIL(err, DFA_ERR_OOM, "tokenizer: out of memory encoding");
        }
    }
    tok_pieces_free(&pieces);
    return DFA_OK;
}

static dfa_status encode_ids(const dfa_tokenizer *t, const dfa_cpbuf *raw, tok_ids *ids, dfa_error *err) {
    seglist l1 = {0};
    dfa_status st = DFA_OK;
    if (split_added(t, raw->v, 0, raw->n, 0, &l1)) {
        free(l1.v);
        DFA_FAIL(err, DFA_ERR_OOM, "tokenizer: out of memory");
    }
    for (size_t i = 0; i < l1.n && st == DFA_OK; i++) {
        if (l1.v[i].token >= 0) {
            if (tok_ids_push(ids, l1.v[i].token)) st = DFA_SET(err, DFA_ERR_OOM, "tokenizer: out of memory");
            continue;
        }
        dfa_cpbuf norm = {0};
        seglist l2 = {0};
        if (dfa_cpbuf_append(&norm, raw->v + l1.v[i].b, l1.v[i].e - l1.v[i].b) || tok_norm_run(t->norms, t->n_norms, &norm) ||
            split_added(t, norm.v, 0, norm.n, 1, &l2)) {
            st = DFA_SET(err, DFA_ERR_OOM, "tokenizer: out of memory");
        }
        for (size_t k = 0; k < l2.n && st == DFA_OK; k++) {
            if (l2.v[k].token >= 0) {
                if (tok_ids_push(ids, l2.v[k].token)) st = DFA_SET(err, DFA_ERR_OOM, "tokenizer: out of memory");
                continue;
            }
            int first = l1.v[i].b == 0 && l2.v[k].b == 0;
            st = model_pieces(t, norm.v + l2.v[k].b, l2.v[k].e - l2.v[k].b, first, ids, err);
        }
        free(l2.v);
        dfa_cpbuf_free(&norm);
    }
    free(l1.v);
    return st;
}

dfa_status dfa_tok_encode(const dfa_tokenizer *tok, const char *text, size_t len, const dfa_tok_opts *opts,
                          dfa_tok_result *out, dfa_error *err) {
    memset(out, 0, sizeof *out);
    dfa_tok_opts o = opts ? *opts : dfa_tok_default_opts();
    int max_len = o.max_length > 0 ? o.max_length : tok->model_max_length;
    if (o.pad && max_len <= 0)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "tokenizer: padding asked for but no max_length given and the tokenizer files name none");
    if (o.pad && tok->pad_id < 0)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "tokenizer: padding asked for but the tokenizer files name no pad token");
    if (!text && len) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "tokenizer: NULL text of length %zu", len);
    dfa_cpbuf raw = {0};
    tok_ids ids = {0};
    dfa_status st = dfa_utf8_to_cps(text ? text : "", len, "prompt", &raw, err);
    if (st) {
        dfa_cpbuf_free(&raw);
        return st;
    }
    st = encode_ids(tok, &raw, &ids, err);
    dfa_cpbuf_free(&raw);
    if (st) {
        free(ids.v);
        return st;
    }
    int n_special = o.add_special_tokens ? tok->n_pre + tok->n_post : 0;
    size_t keep = ids.n;
    if (o.truncation && max_len > 0) {
        size_t room = max_len > n_special ? (size_t)(max_len - n_special) : 0;
        if (keep > room) keep = room;
    }
    size_t total = keep + (size_t)n_special;
    size_t padded = (o.pad && max_len > 0 && total < (size_t)max_len) ? (size_t)max_len : total;
    if (padded > 0x7fffffff) {
        free(ids.v);
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "tokenizer: %zu tokens is too many", padded);
    }
    out->ids = malloc((padded ? padded : 1) * sizeof(int32_t));
    out->mask = malloc((padded ? padded : 1) * sizeof(int32_t));
    if (!out->ids || !out->mask) {
        free(ids.v);
        dfa_tok_result_free(out);
        DFA_FAIL(err, DFA_ERR_OOM, "tokenizer: out of memory for %zu tokens", padded);
    }
    size_t k = 0;
    if (o.add_special_tokens)
        for (int i = 0; i < tok->n_pre; i++) out->ids[k++] = tok->pre_ids[i];
    for (size_t i = 0; i < keep; i++) out->ids[k++] = ids.v[i];
    if (o.add_special_tokens)
        for (int i = 0; i < tok->n_post; i++) out->ids[k++] = tok->post_ids[i];
    for (size_t i = 0; i < k; i++) out->mask[i] = 1;
    for (; k < padded; k++) out->ids[k] = tok->pad_id, out->mask[k] = 0;
    out->n = (int)padded;
    free(ids.v);
    return DFA_OK;
}
