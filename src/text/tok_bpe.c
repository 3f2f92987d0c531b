/* tok_bpe.c - BPE as the tokenizers library runs it: one symbol per character (the
 * continuing-subword prefix on all but the first, the end-of-word suffix -- CLIP's "</w>" -- on
 * the last), unknown characters -> byte fallback or unk (fused if fuse_unk), then merges applied
 * lowest rank first, leftmost first among equal ranks (a heap of candidate pairs). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/tok_internal.h"

int tok_ids_push(tok_ids *t, int32_t id) {
    if (t->n == t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 64;
        int32_t *v = realloc(t->v, nc * sizeof *v);
        if (!v) return -1;
        t->v = v, t->cap = nc;
    }
    t->v[t->n++] = id;
    return 0;
}

static dfa_status opt_string(const cJSON *model, const char *key, const char *what, char **out, dfa_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(model, key);
    const char *s = "";
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsString(v)) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: model.%s must be a string or null", what, key);
        s = v->valuestring;
    }
    *out = strdup(s);
    if (!*out) DFA_FAIL(err, DFA_ERR_OOM, "%s: out of memory", what);
    return DFA_OK;
}

static int lookup(const dfa_tokenizer *t, const char *s, size_t n, int32_t *id) { return dfa_strmap_get(&t->vocab, s, n, id); }

dfa_status tok_bpe_load(dfa_tokenizer *t, const cJSON *model, const char *what, dfa_error *err) {
    tok_bpe *b = &t->bpe;
    b->unk_id = -1;
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsObject(vocab)) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: BPE model.vocab must be an object {token: id}", what);
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble > 16777216.0 || it->valuedouble != (int)it->valuedouble)
            DFA_FAIL(err, DFA_ERR_FORMAT, "%s: BPE vocab entry '%s' has no valid id (non-negative integer < 2^24)", what,
                     it->string);
        if (dfa_strmap_put(&t->vocab, it->string, strlen(it->string), it->valueint)) DFA_FAIL(err, DFA_ERR_OOM, "%s: out of memory", what);
    }
    DFA_TRY(opt_string(model, "continuing_subword_prefix", what, &b->cont_prefix, err));
    DFA_TRY(opt_string(model, "end_of_word_suffix", what, &b->eow_suffix, err));
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (d && !cJSON_IsNull(d) && !(cJSON_IsNumber(d) && d->valuedouble == 0.0))
        DFA_FAIL(err, DFA_ERR_UNSUPPORTED, "%s: BPE dropout is random; only null/0 is supported", what);
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    if (cJSON_IsString(unk)) {
        if (!lookup(t, unk->valuestring, strlen(unk->valuestring), &b->unk_id))
            DFA_FAIL(err, DFA_ERR_FORMAT, "%s: BPE unk_token '%s' is not in the vocabulary", what, unk->valuestring);
    } else if (unk && !cJSON_IsNull(unk)) {
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: BPE unk_token must be a string or null", what);
    }
    b->fuse_unk = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "fuse_unk"));
    b->byte_fallback = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "byte_fallback"));
    b->ignore_merges = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "ignore_merges"));

    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (merges && !cJSON_IsArray(merges)) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: BPE model.merges must be an array", what);
    int rank = 0;
    cJSON_ArrayForEach(it, merges) {
        const char *a, *c;
        size_t al, cl;
        if (cJSON_IsString(it)) { /* "a b" */
            a = it->valuestring;
            const char *sp = strchr(a, ' ');
            if (!sp || strchr(sp + 1, ' '))
                DFA_FAIL(err, DFA_ERR_FORMAT, "%s: merge %d '%s' is not two tokens separated by one space", what, rank, a);
            al = (size_t)(sp - a), c = sp + 1, cl = strlen(c);
        } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 && cJSON_IsString(cJSON_GetArrayItem(it, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(it, 1))) {
            a = cJSON_GetArrayItem(it, 0)->valuestring, c = cJSON_GetArrayItem(it, 1)->valuestring;
            al = strlen(a), cl = strlen(c);
        } else {
            DFA_FAIL(err, DFA_ERR_FORMAT, "%s: merge %d must be \"a b\" or [\"a\", \"b\"]", what, rank);
        }
        int32_t ia, ic, inew;
        if (!lookup(t, a, al, &ia) || !lookup(t, c, cl, &ic))
            DFA_FAIL(err, DFA_ERR_FORMAT, "%s: merge %d ('%.*s' '%.*s') uses a token that is not in the vocabulary", what,
                     rank, (int)al, a, (int)cl, c);
        char *joined = malloc(al + cl + 1);
        if (!joined) DFA_FAIL(err, DFA_ERR_OOM, "%s: out of memory", what);
        size_t strip = strlen(b->cont_prefix);
        if (cl < strip || memcmp(c, b->cont_prefix, strip) != 0) strip = 0;
        memcpy(joined, a, al);
        memcpy(joined + al, c + strip, cl - strip);
        int ok = lookup(t, joined, al + cl - strip, &inew);
        if (!ok) {
            dfa_status st = DFA_SET(err, DFA_ERR_FORMAT, "%s: merge %d gives '%.*s', which is not in the vocabulary",
                                    what, rank, (int)(al + cl - strip), joined);
            free(joined);
            return st;
        }
        free(joined);
        if (dfa_pairmap_put(&b->merges, (uint32_t)ia, (uint32_t)ic, rank, inew)) DFA_FAIL(err, DFA_ERR_OOM, "%s: out of memory", what);
        rank++;
    }
    return DFA_OK;
}

typedef struct sym {
    int32_t id;
    long prev, next;
    int alive;
} sym;

typedef struct cand {
    int32_t rank, new_id;
    long pos;
} cand;

static int cand_less(const cand *a, const cand *b) { return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos; }

typedef struct heap {
    cand *v;
    size_t n, cap;
} heap;

static int heap_push(heap *h, cand c) {
    if (h->n == h->cap) {
        size_t nc = h->cap ? h->cap * 2 : 64;
        cand *v = realloc(h->v, nc * sizeof *v);
        if (!v) return -1;
        h->v = v, h->cap = nc;
    }
    size_t i = h->n++;
    h->v[i] = c;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(&h->v[i], &h->v[p])) break;
        cand t = h->v[i];
        h->v[i] = h->v[p], h->v[p] = t;
        i = p;
    }
    return 0;
}

static cand heap_pop(heap *h) {
    cand top = h->v[0];
    h->v[0] = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->n && cand_less(&h->v[l], &h->v[m])) m = l;
        if (r < h->n && cand_less(&h->v[r], &h->v[m])) m = r;
        if (m == i) break;
        cand t = h->v[i];
        h->v[i] = h->v[m], h->v[m] = t;
        i = m;
    }
    return top;
}

static int push_sym(sym **v, size_t *n, size_t *cap, int32_t id) {
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 32;
        sym *nv = realloc(*v, nc * sizeof *nv);
        if (!nv) return -1;
        *v = nv, *cap = nc;
    }
    (*v)[*n].id = id, (*v)[*n].alive = 1;
    (*n)++;
    return 0;
}

int tok_bpe_encode(const dfa_tokenizer *t, const uint32_t *cps, size_t n, tok_ids *out) {
    const tok_bpe *b = &t->bpe;
    dfa_cpbuf word = {0};
    int rc = -1;
    sym *s = NULL;
    size_t ns = 0, scap = 0;
    heap h = {0};
    char *buf = NULL;
    if (dfa_cps_to_utf8(cps, n, &word)) goto done;
    size_t pl = strlen(b->cont_prefix), sl = strlen(b->eow_suffix);
    buf = malloc(word.n + pl + sl + 8);
    if (!buf) goto done;
    for (size_t i = 0; i < word.n; i++) buf[i] = (char)word.v[i];
    int32_t id;
    if (b->ignore_merges && lookup(t, buf, word.n, &id)) {
        rc = tok_ids_push(out, id);
        goto done;
    }
    int32_t unk_pending = -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch[4];
        int cl = dfa_utf8_encode(cps[i], ch);
        size_t k = 0;
        if (i > 0) memcpy(buf + k, b->cont_prefix, pl), k += pl;
        memcpy(buf + k, ch, (size_t)cl), k += (size_t)cl;
        if (i + 1 == n) memcpy(buf + k, b->eow_suffix, sl), k += sl;
        if (lookup(t, buf, k, &id)) {
            if (unk_pending >= 0) {
                if (push_sym(&s, &ns, &scap, unk_pending)) goto done;
                unk_pending = -1;
            }
            if (push_sym(&s, &ns, &scap, id)) goto done;
            continue;
        }
        if (b->byte_fallback) {
            int32_t bid[64];
            size_t j, nb = k < 64 ? k : 0;
            for (j = 0; j < nb; j++) {
                char code[8];
                snprintf(code, sizeof code, "<0x%02X>", (unsigned char)buf[j]);
                if (!lookup(t, code, 6, &bid[j])) break;
            }
            if (nb && j == nb) {
                for (j = 0; j < nb; j++)
                    if (push_sym(&s, &ns, &scap, bid[j])) goto done;
                continue;
            }
        }
        if (b->unk_id >= 0) {
            if (unk_pending >= 0 && !b->fuse_unk && push_sym(&s, &ns, &scap, unk_pending)) goto done;
            unk_pending = b->unk_id;
        }
    }
    if (unk_pending >= 0 && push_sym(&s, &ns, &scap, unk_pending)) goto done;
    for (size_t i = 0; i < ns; i++) s[i].prev = (long)i - 1, s[i].next = i + 1 < ns ? (long)i + 1 : -1;
    for (size_t i = 0; i + 1 < ns; i++) {
        int32_t r, nid;
        if (dfa_pairmap_get(&b->merges, (uint32_t)s[i].id, (uint32_t)s[i + 1].id, &r, &nid) &&
            heap_push(&h, (cand){r, nid, (long)i}))
            goto done;
    }
    while (h.n) {
        cand c = heap_pop(&h);
        sym *cur = &s[c.pos];
        if (!cur->alive || cur->next < 0) continue;
        sym *right = &s[cur->next];
        int32_t r, nid;
        if (!dfa_pairmap_get(&b->merges, (uint32_t)cur->id, (uint32_t)right->id, &r, &nid) || nid != c.new_id) continue;
        cur->id = c.new_id;
        right->alive = 0;
        cur->next = right->next;
        if (cur->next >= 0) s[cur->next].prev = c.pos;
        if (cur->prev >= 0 &&
            dfa_pairmap_get(&b->merges, (uint32_t)s[cur->prev].id, (uint32_t)cur->id, &r, &nid) &&
            heap_push(&h, (cand){r, nid, cur->prev}))
            goto done;
        if (cur->next >= 0 && dfa_pairmap_get(&b->merges, (uint32_t)cur->id, (uint32_t)s[cur->next].id, &r, &nid) &&
            heap_push(&h, (cand){r, nid, c.pos}))
            goto done;
    }
    for (size_t i = 0; i < ns; i++)
        if (s[i].alive && tok_ids_push(out, s[i].id)) goto done;
    rc = 0;
done:
    dfa_cpbuf_free(&word);
    free(buf);
    free(s);
    free(h.v);
    return rc;
}
