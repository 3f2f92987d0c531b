/* plan_io.c - plan files: JSON (docs/PLAN_FORMAT.md). Written by hand, one line per
 * (step, layer), so that files stay readable and diff well; read with cJSON and validated
 * strictly (errors name the file, the step/layer/head and what is wrong). Syntax errors and
 * file reading go through io/json.h. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "plan/plan.h"

/* ---- writing ---- */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) DFA_PRINTF(2, 3);
static void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->oom = 1;
            return;
        }
        if (b->p && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->n + (size_t)k + 1) cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
}

static void sb_json_string(sbuf *b, const char *s) {
    sb_printf(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            sb_printf(b, "\\%c", c);
        else if (c < 0x20)
            sb_printf(b, "\\u%04x", c);
        else
            sb_printf(b, "%c", c);
    }
    sb_printf(b, "\"");
}

dfa_status dfa_plan_to_json(const dfa_plan *p, char **out, dfa_error *err) {
    *out = NULL;
    sbuf b = {0};
    sb_printf(&b, "{\n  \"format\": \"%s\",\n  \"version\": %d,\n  \"model\": {\"family\": ", DFA_PLAN_FORMAT,
              DFA_PLAN_VERSION);
    sb_json_string(&b, p->family);
    sb_printf(&b, ", \"config\": ");
    sb_json_string(&b, p->config_id);
    sb_printf(&b,
              "},\n  \"layout\": {\"n_text\": %d, \"text_first\": %s, \"n_vis\": %d, \"grid_h\": %d, \"grid_w\": %d, "
              "\"block\": %d},\n",
              p->layout.n_text, p->layout.text_first ? "true" : "false", p->layout.n_vis, p->grid_h, p->grid_w,
              p->layout.block);
    if (p->layout.band != DFA_BAND_ARROW) sb_printf(&b, "  \"band\": \"%s\",\n", dfa_band_name(p->layout.band));
    if (dfa_plan_n_layer_layouts(p) > 0) {
        sb_printf(&b, "  \"layer_layouts\": [");
        int k = 0;
        for (int l = 0; l < p->n_layers; l++) {
            const dfa_attn_layout *L = dfa_plan_layer_layout(p, l);
            if (dfa_plan_layout_same(L, &p->layout)) continue;
            sb_printf(&b,
                      "%s\n    {\"layer\": %d, \"n_text\": %d, \"text_first\": %s, \"n_vis\": %d, \"block\": %d}",
                      k++ ? "," : "", l, L->n_text, L->text_first ? "true" : "false", L->n_vis, L->block);
        }
        sb_printf(&b, "\n  ],\n");
    }
    sb_printf(&b, "  \"steps\": %d,\n  \"layers\": %d,\n  \"heads\": %d,\n", p->n_steps, p->n_layers, p->n_heads);
    sb_printf(&b, "  \"cfg\": %s,\n  \"cfg_cond_index\": %d,\n", p->cfg ? "true" : "false", p->cond_half);
    sb_printf(&b, "  \"method_set\": [\"full\"");
    if (p->method_set & DFA_PLAN_SET_ARROW) sb_printf(&b, ", \"arrow\"");
    if (p->method_set & DFA_PLAN_SET_ARROW_RS) sb_printf(&b, ", \"arrow_rs\"");
    if (p->method_set & DFA_PLAN_SET_CACHE) sb_printf(&b, ", \"cache\"");
    if (p->method_set & DFA_PLAN_SET_ASC) sb_printf(&b, ", \"asc\"");
    sb_printf(&b, "],\n  \"search\": {\"method\": ");
    sb_json_string(&b, p->search);
    sb_printf(&b, ", \"delta\": %.17g, \"c\": %.17g},\n  \"entries\": [\n", p->delta, p->c);
    char code[24];
    for (int s = 0; s < p->n_steps; s++)
        for (int l = 0; l < p->n_layers; l++) {
            sb_printf(&b, "    {\"step\": %d, \"layer\": %d, \"asc\": %s, \"heads\": \"", s, l,
                      p->asc[(size_t)s * p->n_layers + l] ? "true" : "false");
            for (int h = 0; h < p->n_heads; h++) {
                size_t i = dfa_plan_index(p, s, l, h);
                sb_printf(&b, "%s%s", h ? " " : "", dfa_plan_code(p->method[i], p->window[i], code, sizeof code));
            }
            sb_printf(&b, "\"}%s\n", (s == p->n_steps - 1 && l == p->n_layers - 1) ? "" : ",");
        }
    sb_printf(&b, "  ]\n}\n");
    if (b.oom) {
        free(b.p);
        DFA_FAIL(err, DFA_ERR_OOM, "out of host memory writing a plan");
    }
    *out = b.p;
    return DFA_OK;
}

dfa_status dfa_plan_save(const char *path, const dfa_plan *p, dfa_error *err) {
    char *text;
    DFA_TRY(dfa_plan_to_json(p, &text, err));
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(text);
        DFA_FAIL(err, DFA_ERR_IO, "cannot write plan %s: %s", path, strerror(errno));
    }
    size_t n = strlen(text);
    int bad = fwrite(text, 1, n, f) != n;
    bad |= fclose(f) != 0;
    free(text);
    if (bad) DFA_FAIL(err, DFA_ERR_IO, "writing plan %s failed: %s", path, strerror(errno));
    return DFA_OK;
}

/* ---- reading ---- */

static dfa_status get_item(const cJSON *o, const char *key, const char *what, const char *ctxs, const cJSON **out,
                           dfa_error *err) {
    *out = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!*out) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: missing key \"%s\"%s", what, key, ctxs);
    return DFA_OK;
}

static dfa_status get_int(const cJSON *o, const char *key, const char *what, const char *ctxs, int lo, int hi,
                          int *v, dfa_error *err) {
    const cJSON *it;
    DFA_TRY(get_item(o, key, what, ctxs, &it, err));
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble) || it->valuedouble != floor(it->valuedouble))
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: \"%s\"%s must be an integer", what, key, ctxs);
    if (it->valuedouble < lo || it->valuedouble > hi)
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: \"%s\"%s = %.15g out of range [%d, %d]", what, key, ctxs, it->valuedouble,
                 lo, hi);
    *v = (int)it->valuedouble;
    return DFA_OK;
}

static dfa_status get_bool(const cJSON *o, const char *key, const char *what, const char *ctxs, int *v,
                           dfa_error *err) {
    const cJSON *it;
    DFA_TRY(get_item(o, key, what, ctxs, &it, err));
    if (!cJSON_IsBool(it)) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: \"%s\"%s must be true or false", what, key, ctxs);
    *v = cJSON_IsTrue(it);
    return DFA_OK;
}

static dfa_status get_str(const cJSON *o, const char *key, const char *what, const char *ctxs, char *dst,
                          size_t cap, dfa_error *err) {
    const cJSON *it;
    DFA_TRY(get_item(o, key, what, ctxs, &it, err));
    if (!cJSON_IsString(it)) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: \"%s\"%s must be a string", what, key, ctxs);
    if (strlen(it->valuestring) >= cap)
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: \"%s\"%s longer than %zu characters", what, key, ctxs, cap - 1);
    memcpy(dst, it->valuestring, strlen(it->valuestring) + 1);
    return DFA_OK;
}

static dfa_status get_num(const cJSON *o, const char *key, const char *what, const char *ctxs, double *v,
                          dfa_error *err) {
    const cJSON *it;
    DFA_TRY(get_item(o, key, what, ctxs, &it, err));
    if (!cJSON_IsNumber(it)) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: \"%s\"%s must be a number", what, key, ctxs);
    *v = it->valuedouble;
    return DFA_OK;
}

static dfa_status check_keys(const cJSON *o, const char *const *keys, int n, const char *what, const char *ctxs,
                             dfa_error *err) {
    for (const cJSON *c = o->child; c; c = c->next) {
        int ok = 0;
        for (int i = 0; i < n; i++) ok |= c->string && strcmp(c->string, keys[i]) == 0;
        if (!ok) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: unknown key \"%s\"%s", what, c->string ? c->string : "?", ctxs);
    }
    return DFA_OK;
}

static dfa_status parse_entry(dfa_plan *p, const cJSON *e, int idx, uint8_t *seen, const char *what,
                              dfa_error *err) {
    char ctxs[64];
    snprintf(ctxs, sizeof ctxs, " in entries[%d]", idx);
    if (!cJSON_IsObject(e)) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: entries[%d] must be an object", what, idx);
    static const char *const keys[] = {"step", "layer", "asc", "heads"};
    DFA_TRY(check_keys(e, keys, 4, what, ctxs, err));
    int s, l, asc;
    DFA_TRY(get_int(e, "step", what, ctxs, 0, p->n_steps - 1, &s, err));
    DFA_TRY(get_int(e, "layer", what, ctxs, 0, p->n_layers - 1, &l, err));
    DFA_TRY(get_bool(e, "asc", what, ctxs, &asc, err));
    size_t sl = (size_t)s * p->n_layers + l;
    if (seen[sl]) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: step %d layer %d appears twice (entries[%d])", what, s, l, idx);
    seen[sl] = 1;
    p->asc[sl] = (uint8_t)asc;
    const cJSON *hs = cJSON_GetObjectItemCaseSensitive(e, "heads");
    if (!cJSON_IsString(hs))
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: step %d layer %d: \"heads\" must be a string of per-head codes", what, s, l);
    const char *c = hs->valuestring;
    int h = 0;
    while (*c) {
        while (*c == ' ') c++;
        if (!*c) break;
        const char *e0 = c;
        while (*c && *c != ' ') c++;
        char code[24];
        size_t n = (size_t)(c - e0);
        if (n >= sizeof code) n = sizeof code - 1;
        memcpy(code, e0, n);
        code[n] = 0;
        if (h >= p->n_heads)
            DFA_FAIL(err, DFA_ERR_FORMAT, "%s: step %d layer %d: more than %d head codes", what, s, l, p->n_heads);
        int m, w;
        if (dfa_plan_parse_code(code, &m, &w))
            DFA_FAIL(err, DFA_ERR_FORMAT,
                     "%s: step %d layer %d head %d: unknown method code '%s' (expected F, A<window>, R<window> or C)",
                     what, s, l, h, code);
        size_t i = dfa_plan_index(p, s, l, h);
        p->method[i] = (uint8_t)m;
        p->window[i] = w;
        h++;
    }
    if (h != p->n_heads)
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: step %d layer %d: %d head codes, expected %d", what, s, l, h, p->n_heads);
    return DFA_OK;
}

/* Optional "layer_layouts": [{"layer", "n_text", "text_first", "n_vis", "block"}, ...], only
 * layers whose layout differs from the main one, each once. */
static dfa_status parse_layer_layouts(dfa_plan *p, const cJSON *ll, const char *what, dfa_error *err) {
    if (!cJSON_IsArray(ll))
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: \"layer_layouts\" must be an array of {layer, n_text, text_first, n_vis, "
                 "block} objects", what);
    static const char *const keys[] = {"layer", "n_text", "text_first", "n_vis", "block"};
    int idx = 0;
    for (const cJSON *e = ll->child; e; e = e->next, idx++) {
        char ctxs[64];
        snprintf(ctxs, sizeof ctxs, " in layer_layouts[%d]", idx);
        if (!cJSON_IsObject(e)) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: layer_layouts[%d] must be an object", what, idx);
        DFA_TRY(check_keys(e, keys, 5, what, ctxs, err));
        int l, tf;
        dfa_attn_layout L = {0};
        DFA_TRY(get_int(e, "layer", what, ctxs, 0, p->n_layers - 1, &l, err));
        DFA_TRY(get_int(e, "n_text", what, ctxs, 0, 1 << 24, &L.n_text, err));
        DFA_TRY(get_bool(e, "text_first", what, ctxs, &tf, err));
        DFA_TRY(get_int(e, "n_vis", what, ctxs, 0, 1 << 26, &L.n_vis, err));
        DFA_TRY(get_int(e, "block", what, ctxs, 1, 1 << 16, &L.block, err));
        L.text_first = tf;
        if (p->layer_layout && !dfa_plan_layout_same(&p->layer_layout[l], &p->layout))
            DFA_FAIL(err, DFA_ERR_FORMAT, "%s: layer %d has two layouts in layer_layouts (entry %d)", what, l, idx);
        if (dfa_plan_layout_same(&L, &p->layout))
            DFA_FAIL(err, DFA_ERR_FORMAT,
                     "%s: layer %d: layer_layouts[%d] repeats the main layout (list only layers that differ)", what,
                     l, idx);
        DFA_TRY(dfa_plan_set_layer_layout(p, l, &L, err));
    }
    return DFA_OK;
}

static dfa_status parse_tree(const cJSON *root, const char *what, dfa_plan *p, dfa_error *err) {
    if (!cJSON_IsObject(root)) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: a plan file is a JSON object", what);
    static const char *const keys[] = {"format",         "version",    "model",  "layout",  "steps",
                                       "layers",         "heads",      "cfg",    "cfg_cond_index",
                                       "method_set",     "search",     "entries", "layer_layouts",
                                       "band"};
    const char *nc = "";
    char fmt[32];
    DFA_TRY(get_str(root, "format", what, nc, fmt, sizeof fmt, err));
    if (strcmp(fmt, DFA_PLAN_FORMAT) != 0)
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: \"format\" is \"%s\", expected \"%s\"", what, fmt, DFA_PLAN_FORMAT);
    int version;
    DFA_TRY(get_int(root, "version", what, nc, -1000000, 1000000, &version, err));
    if (version != DFA_PLAN_VERSION)
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: plan format version %d, this build reads version %d", what, version,
                 DFA_PLAN_VERSION);
    DFA_TRY(check_keys(root, keys, (int)(sizeof keys / sizeof keys[0]), what, nc, err));

    dfa_attn_layout L = {0};
    int gh, gw, S, Ly, H, tf;
    const cJSON *lo;
    DFA_TRY(get_item(root, "layout", what, nc, &lo, err));
    static const char *const lkeys[] = {"n_text", "text_first", "n_vis", "grid_h", "grid_w", "block"};
    if (!cJSON_IsObject(lo)) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: \"layout\" must be an object", what);
    DFA_TRY(check_keys(lo, lkeys, 6, what, " in layout", err));
    DFA_TRY(get_int(lo, "n_text", what, " in layout", 0, 1 << 24, &L.n_text, err));
    DFA_TRY(get_bool(lo, "text_first", what, " in layout", &tf, err));
    DFA_TRY(get_int(lo, "n_vis", what, " in layout", 0, 1 << 26, &L.n_vis, err));
    DFA_TRY(get_int(lo, "grid_h", what, " in layout", 1, 1 << 16, &gh, err));
    DFA_TRY(get_int(lo, "grid_w", what, " in layout", 1, 1 << 16, &gw, err));
    DFA_TRY(get_int(lo, "block", what, " in layout", 1, 1 << 16, &L.block, err));
    L.text_first = tf;
    const cJSON *bd = cJSON_GetObjectItemCaseSensitive(root, "band"); /* optional, absent: arrow */
    if (bd && (!cJSON_IsString(bd) || dfa_band_parse(bd->valuestring) < 0))
        DFA_FAIL(err, DFA_ERR_FORMAT,
                 "%s: \"band\" is %s%s%s; expected \"arrow\" (the default) or \"plain\" (V1's window over the "
                 "whole sequence)",
                 what, cJSON_IsString(bd) ? "\"" : "", cJSON_IsString(bd) ? bd->valuestring : "not a string",
                 cJSON_IsString(bd) ? "\"" : "");
    if (bd) L.band = dfa_band_parse(bd->valuestring);
    DFA_TRY(get_int(root, "steps", what, nc, 1, 100000, &S, err));
    DFA_TRY(get_int(root, "layers", what, nc, 1, 100000, &Ly, err));
    DFA_TRY(get_int(root, "heads", what, nc, 1, 100000, &H, err));
    DFA_TRY(dfa_plan_init(p, &L, S, Ly, H, err));
    dfa_status st = DFA_OK;
    uint8_t *seen = NULL;
    do {
        p->grid_h = gh;
        p->grid_w = gw;
        const cJSON *ll = cJSON_GetObjectItemCaseSensitive(root, "layer_layouts");
        if (ll && (st = parse_layer_layouts(p, ll, what, err))) break;
        const cJSON *mo, *se, *ms, *en;
        if ((st = get_item(root, "model", what, nc, &mo, err))) break;
        if (!cJSON_IsObject(mo)) {
            st = DFA_SET(err, DFA_ERR_FORMAT, "%s: \"model\" must be an object", what);
            break;
        }
        if ((st = get_str(mo, "family", what, " in model", p->family, sizeof p->family, err))) break;
        if ((st = get_str(mo, "config", what, " in model", p->config_id, sizeof p->config_id, err))) break;
        if ((st = get_bool(root, "cfg", what, nc, &p->cfg, err))) break;
        if ((st = get_int(root, "cfg_cond_index", what, nc, 0, 1, &p->cond_half, err))) break;
        if ((st = get_item(root, "method_set", what, nc, &ms, err))) break;
        if (!cJSON_IsArray(ms)) {
            st = DFA_SET(err, DFA_ERR_FORMAT, "%s: \"method_set\" must be an array of names", what);
            break;
        }
        p->method_set = 0;
        for (const cJSON *c = ms->child; c && !st; c = c->next) {
            unsigned bit;
            if (!cJSON_IsString(c) || dfa_plan_parse_method_set(c->valuestring, &bit) || strchr(c->valuestring, ','))
                st = DFA_SET(err, DFA_ERR_FORMAT,
                             "%s: method_set: unknown method %s (expected full, arrow, arrow_rs, cache, asc)", what,
                             cJSON_IsString(c) ? c->valuestring : "(not a string)");
            else
                p->method_set |= bit;
        }
        if (st) break;
        if ((st = get_item(root, "search", what, nc, &se, err))) break;
        if (!cJSON_IsObject(se)) {
            st = DFA_SET(err, DFA_ERR_FORMAT, "%s: \"search\" must be an object", what);
            break;
        }
        if ((st = get_str(se, "method", what, " in search", p->search, sizeof p->search, err))) break;
        if ((st = get_num(se, "delta", what, " in search", &p->delta, err))) break;
        if ((st = get_num(se, "c", what, " in search", &p->c, err))) break;
        if ((st = get_item(root, "entries", what, nc, &en, err))) break;
        if (!cJSON_IsArray(en)) {
            st = DFA_SET(err, DFA_ERR_FORMAT, "%s: \"entries\" must be an array", what);
            break;
        }
        int ne = cJSON_GetArraySize(en);
        if (ne != S * Ly) {
            st = DFA_SET(err, DFA_ERR_FORMAT, "%s: %d entries, expected steps x layers = %d x %d = %d", what, ne, S, Ly,
                         S * Ly);
            break;
        }
        seen = calloc((size_t)S * Ly, 1);
        if (!seen) {
            st = DFA_SET(err, DFA_ERR_OOM, "out of host memory reading %s", what);
            break;
        }
        int idx = 0;
        for (const cJSON *e = en->child; e && !st; e = e->next, idx++) st = parse_entry(p, e, idx, seen, what, err);
        if (st) break;
        st = dfa_plan_validate(p, what, err);
    } while (0);
    free(seen);
    if (st) dfa_plan_free(p);
    return st;
}

dfa_status dfa_plan_parse(const char *text, size_t len, const char *what, dfa_plan *p, dfa_error *err) {
    memset(p, 0, sizeof *p);
    cJSON *root = NULL;
    DFA_TRY(dfa_json_parse(text, len, what, &root, err));
    dfa_status st = parse_tree(root, what, p, err);
    cJSON_Delete(root);
    return st;
}

dfa_status dfa_plan_load(const char *path, dfa_plan *p, dfa_error *err) {
    memset(p, 0, sizeof *p);
    cJSON *root = NULL;
    DFA_TRY(dfa_json_read_file(path, &root, err));
    dfa_status st = parse_tree(root, path, p, err);
    cJSON_Delete(root);
    return st;
}
