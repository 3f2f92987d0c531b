/* attn_prep.c - the distinct CUDA work lists of a plan (attn_prep.h). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attn/attn_prep.h"

int dfa_attn_launch_heads(const dfa_attn_head_exec *heads, int H, int which, int *method, int *window) {
    if (which == 0) {
        for (int h = 0; h < H; h++) {
            const int m = heads[h].method;
            method[h] = m;
            window[h] = m == DFA_ATTN_ARROW || m == DFA_ATTN_ARROW_RS ? heads[h].window : -1;
        }
        return 1;
    }
    int refresh = 0;
    for (int h = 0; h < H; h++) refresh |= heads[h].store_res != 0;
    if (!refresh) return 0;
    /* refresh heads: ARROW(res_window) into their residual slices; every other head a CACHE item
     * copying its own slice onto itself */
    for (int h = 0; h < H; h++) {
        method[h] = heads[h].store_res ? DFA_ATTN_ARROW : DFA_ATTN_CACHE;
        window[h] = heads[h].store_res ? heads[h].res_window : -1;
    }
    return 1;
}

/* a layout as the work list sees it: text_first does not matter without text */
static dfa_attn_layout norm_layout(dfa_attn_layout l) {
    if (l.n_text == 0) l.text_first = 0;
    return l;
}

static int layout_eq(const dfa_attn_layout *a, const dfa_attn_layout *b) {
    return a->n_vis == b->n_vis && a->n_text == b->n_text && a->text_first == b->text_first &&
           a->block == b->block && a->band == b->band;
}

static uint64_t mix(uint64_t h, int64_t v) {
    h ^= (uint64_t)v;
    return h * 0x100000001b3ULL;
}

static uint64_t key_hash(const dfa_attn_layout *l, int H, const int *m, const int *w) {
    uint64_t h = 0xcbf29ce484222325ULL;
    h = mix(mix(mix(mix(mix(h, l->n_vis), l->n_text), l->text_first), l->block), l->band);
    for (int i = 0; i < H; i++) h = mix(mix(h, m[i]), w[i]);
    return h;
}

void dfa_attn_prep_free(dfa_attn_prep *pp) {
    free(pp->index);
    free(pp->layout);
    free(pp->method);
    free(pp->window);
    free(pp->uses);
    memset(pp, 0, sizeof *pp);
}

dfa_status dfa_attn_prep_build(dfa_attn_prep *pp, const dfa_plan *p, dfa_error *err) {
    memset(pp, 0, sizeof *pp);
    if (!p->validated) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attention prepare: the plan is not validated");
    const int H = p->n_heads, n = p->n_steps * p->n_layers * 2;
    size_t cap = 16;
    while (cap < (size_t)n * 2) cap *= 2;
    int *table = malloc(cap * sizeof *table); /* list index + 1, 0 empty */
    uint64_t *hashes = malloc((size_t)n * sizeof *hashes);
    dfa_attn_head_exec *heads = calloc((size_t)H, sizeof *heads);
    int *m = malloc((size_t)H * sizeof *m), *w = malloc((size_t)H * sizeof *w);
    pp->index = malloc((size_t)n * sizeof *pp->index);
    pp->layout = malloc((size_t)n * sizeof *pp->layout);
    pp->method = malloc((size_t)n * H * sizeof *pp->method);
    pp->window = malloc((size_t)n * H * sizeof *pp->window);
    pp->uses = calloc((size_t)n, sizeof *pp->uses);
    dfa_status s = DFA_OK;
    if (!table || !hashes || !heads || !m || !w || !pp->index || !pp->layout || !pp->method || !pp->window ||
        !pp->uses) {
        s = DFA_SET(err, DFA_ERR_OOM, "attention prepare: out of host memory (%d plan entries)", n);
        goto done;
    }
    memset(table, 0, cap * sizeof *table);
    pp->n_heads = H;
    pp->n_entries = n;
    for (int st = 0; st < p->n_steps; st++)
        for (int l = 0; l < p->n_layers; l++) {
            dfa_attn_layout lay = norm_layout(*dfa_plan_layer_layout(p, l));
            lay.band = dfa_plan_layer_layout(p, l)->band;
            for (int h = 0; h < H; h++) {
                const size_t i = dfa_plan_index(p, st, l, h);
                heads[h].method = p->method[i];
                heads[h].window = p->window[i];
                heads[h].store_out = p->store_out[i];
                heads[h].store_res = p->store_res[i];
                heads[h].res_window = p->res_window[i];
            }
            for (int which = 0; which < 2; which++) {
                const int e = (st * p->n_layers + l) * 2 + which;
                pp->index[e] = -1;
                if (!dfa_attn_launch_heads(heads, H, which, m, w)) continue;
                const uint64_t hv = key_hash(&lay, H, m, w);
                size_t slot = (size_t)hv & (cap - 1);
                int found = -1;
                for (; table[slot]; slot = (slot + 1) & (cap - 1)) {
                    const int c = table[slot] - 1;
                    if (hashes[c] == hv && layout_eq(&pp->layout[c], &lay) &&
                        !memcmp(pp->method + (size_t)c * H, m, (size_t)H * sizeof *m) &&
                        !memcmp(pp->window + (size_t)c * H, w, (size_t)H * sizeof *w)) {
                        found = c;
                        break;
                    }
                }
                if (found < 0) {
                    found = pp->n_lists++;
                    hashes[found] = hv;
                    pp->layout[found] = lay;
                    memcpy(pp->method + (size_t)found * H, m, (size_t)H * sizeof *m);
                    memcpy(pp->window + (size_t)found * H, w, (size_t)H * sizeof *w);
                    table[slot] = found + 1;
                }
                pp->index[e] = found;
                pp->uses[found]++;
            }
        }
done:
    free(table);
    free(hashes);
    free(heads);
    free(m);
    free(w);
    if (s != DFA_OK) dfa_attn_prep_free(pp);
    return s;
}
