/* cost.c - the per-head latency model of the plan search and its table file (see cost.h). */
#include "plan/cost.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void dfa_cost_table_default(dfa_cost_table *t) {
    memset(t, 0, sizeof *t);
    snprintf(t->device, sizeof t->device, "modelled H100 bf16 (not measured)");
    /* 4 * 128^2 * D FLOPs per tile at ~400 TFLOP/s device-wide; D=64 runs at lower efficiency;
     * copy/add: bf16 rows at ~3 TB/s (read + write, read 2 + write 1). */
    t->e[t->n++] = (dfa_cost_entry){128, 128, 21.0, 50.0, 0.17, 0.26};
    t->e[t->n++] = (dfa_cost_entry){64, 128, 12.0, 40.0, 0.09, 0.13};
}

void dfa_cost_table_flops(dfa_cost_table *t, int block) {
    memset(t, 0, sizeof *t);
    snprintf(t->device, sizeof t->device, "flops");
    for (int d = 32; d <= 256; d *= 2)
        t->e[t->n++] = (dfa_cost_entry){d, block, 4.0 * block * block * d, 0, 0, 0};
}

static int64_t band_pairs(int64_t n, int64_t w) {
    /* sum over i in [0, n) of |{j in [0, n): |i - j| <= w}| */
    if (w >= n - 1) return n * n;
    return n * (2 * w + 1) - w * (w + 1);
}

int64_t dfa_cost_tiles(const dfa_attn_layout *l, int window) {
    dfa_attn_tiles t;
    dfa_layout_tiles(l, &t);
    int64_t nt = t.n_text_tiles, nv = t.n_vis_tiles, n = t.n_tiles;
    if (window < 0) return n * n;
    if (l->band == DFA_BAND_PLAIN) return band_pairs(n, window); /* one band over every tile */
    return nt * n + nv * nt + band_pairs(nv, window);
}

static const dfa_cost_entry *nearest(const dfa_cost_table *t, int head_dim, int block) {
    const dfa_cost_entry *best = NULL;
    for (int i = 0; i < t->n; i++) {
        const dfa_cost_entry *e = &t->e[i];
        if (!best) {
            best = e;
            continue;
        }
        int de = abs(e->head_dim - head_dim), db = abs(best->head_dim - head_dim);
        int be = abs(e->block - block), bb = abs(best->block - block);
        if (de < db || (de == db && be < bb)) best = e;
    }
    return best;
}

double dfa_cost_head_ns(const dfa_cost_table *t, const dfa_attn_layout *l, int head_dim, dfa_attn_method m,
                        int window) {
    const dfa_cost_entry *e = nearest(t, head_dim, l->block);
    if (!e || head_dim < 1) return -1;
    double sd = (double)head_dim / e->head_dim, sb = (double)l->block / e->block;
    double tile = e->tile_ns * sd * sb * sb, tokens = dfa_layout_tokens(l);
    switch (m) {
    case DFA_ATTN_FULL: return e->head_ns + (double)dfa_cost_tiles(l, -1) * tile;
    case DFA_ATTN_ARROW: return e->head_ns + (double)dfa_cost_tiles(l, window) * tile;
    case DFA_ATTN_ARROW_RS:
        return e->head_ns + (double)dfa_cost_tiles(l, window) * tile + tokens * e->add_ns_per_token * sd;
    case DFA_ATTN_CACHE: return tokens * e->copy_ns_per_token * sd;
    default: return -1;
    }
}

/* ---- the table file ---- */

static const char *const KEYS[6] = {"head_dim", "block", "tile_ns", "head_ns", "copy_ns_per_token", "add_ns_per_token"};

static dfa_status parse_entry(char *s, const char *what, int line, dfa_cost_entry *e, dfa_error *err) {
    double v[6];
    int seen[6] = {0};
    char *save = NULL;
    for (char *tok = strtok_r(s, " \t\r", &save); tok; tok = strtok_r(NULL, " \t\r", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq) DFA_FAIL(err, DFA_ERR_FORMAT, "%s:%d: expected key=value, got '%s'", what, line, tok);
        *eq = 0;
        int k = -1;
        for (int i = 0; i < 6; i++)
            if (!strcmp(tok, KEYS[i])) k = i;
        if (k < 0) DFA_FAIL(err, DFA_ERR_FORMAT, "%s:%d: unknown key '%s'", what, line, tok);
        char *end;
        errno = 0;
        v[k] = strtod(eq + 1, &end);
        if (end == eq + 1 || *end || errno || !isfinite(v[k]) || v[k] < 0)
            DFA_FAIL(err, DFA_ERR_FORMAT, "%s:%d: %s needs a finite number >= 0, got '%s'", what, line, tok, eq + 1);
        seen[k] = 1;
    }
    for (int i = 0; i < 6; i++)
        if (!seen[i]) DFA_FAIL(err, DFA_ERR_FORMAT, "%s:%d: entry lacks %s", what, line, KEYS[i]);
    if (v[0] < 1 || v[0] > 4096 || v[0] != floor(v[0]) || v[1] < 1 || v[1] > 4096 || v[1] != floor(v[1]))
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s:%d: head_dim and block must be integers in [1, 4096], got %g and %g", what,
                 line, v[0], v[1]);
    *e = (dfa_cost_entry){(int)v[0], (int)v[1], v[2], v[3], v[4], v[5]};
    return DFA_OK;
}

dfa_status dfa_cost_table_parse(const char *text, const char *what, dfa_cost_table *t, dfa_error *err) {
    memset(t, 0, sizeof *t);
    int line = 0, have_magic = 0;
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        line++;
        char buf[1024];
        if (len >= sizeof buf) DFA_FAIL(err, DFA_ERR_FORMAT, "%s:%d: line longer than %zu bytes", what, line, sizeof buf);
        memcpy(buf, p, len);
        buf[len] = 0;
        p = nl ? nl + 1 : p + len;
        char *hash = strchr(buf, '#');
        if (hash) *hash = 0;
        char *s = buf + strspn(buf, " \t\r");
        if (!*s) continue;
        if (!have_magic) {
            int ver = 0;
            if (sscanf(s, "dfa-cost-table %d", &ver) != 1)
                DFA_FAIL(err, DFA_ERR_FORMAT, "%s:%d: expected 'dfa-cost-table 1' first", what, line);
            if (ver != 1) DFA_FAIL(err, DFA_ERR_FORMAT, "%s:%d: cost table version %d, this build reads 1", what, line, ver);
            have_magic = 1;
        } else if (!strncmp(s, "device ", 7) || !strncmp(s, "device\t", 7)) {
            char *d = s + 7 + strspn(s + 7, " \t");
            size_t n = strcspn(d, "\r");
            if (n >= sizeof t->device) n = sizeof t->device - 1;
            memcpy(t->device, d, n);
            t->device[n] = 0;
        } else if (!strncmp(s, "entry", 5) && (s[5] == ' ' || s[5] == '\t')) {
            if (t->n == DFA_COST_MAX_ENTRIES)
                DFA_FAIL(err, DFA_ERR_FORMAT, "%s:%d: more than %d entries", what, line, DFA_COST_MAX_ENTRIES);
            DFA_TRY(parse_entry(s + 6, what, line, &t->e[t->n], err));
            t->n++;
        } else {
            DFA_FAIL(err, DFA_ERR_FORMAT, "%s:%d: unknown record '%.40s'", what, line, s);
        }
    }
    if (!have_magic) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: empty, expected 'dfa-cost-table 1'", what);
    if (t->n == 0) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: no entry lines", what);
    return DFA_OK;
}

dfa_status dfa_cost_table_read(const char *path, dfa_cost_table *t, dfa_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) DFA_FAIL(err, DFA_ERR_IO, "cannot open cost table %s: %s", path, strerror(errno));
    char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    int big = n == sizeof buf - 1 && fgetc(f) != EOF;
    fclose(f);
    if (big) DFA_FAIL(err, DFA_ERR_FORMAT, "cost table %s is over %zu bytes", path, sizeof buf - 1);
    buf[n] = 0;
    if (strlen(buf) != n) DFA_FAIL(err, DFA_ERR_FORMAT, "cost table %s holds a NUL byte", path);
    return dfa_cost_table_parse(buf, path, t, err);
}

dfa_status dfa_cost_table_write(const char *path, const dfa_cost_table *t, dfa_error *err) {
    FILE *f = fopen(path, "wb");
    if (!f) DFA_FAIL(err, DFA_ERR_IO, "cannot create cost table %s: %s", path, strerror(errno));
    fprintf(f, "# dfa attention cost model: ns per head per batch row (src/plan/cost.h)\ndfa-cost-table 1\n");
    if (t->device[0]) fprintf(f, "device %s\n", t->device);
    for (int i = 0; i < t->n; i++) {
        const dfa_cost_entry *e = &t->e[i];
        fprintf(f, "entry head_dim=%d block=%d tile_ns=%.17g head_ns=%.17g copy_ns_per_token=%.17g add_ns_per_token=%.17g\n",
                e->head_dim, e->block, e->tile_ns, e->head_ns, e->copy_ns_per_token, e->add_ns_per_token);
    }
    if (fclose(f) != 0) DFA_FAIL(err, DFA_ERR_IO, "writing cost table %s failed", path);
    return DFA_OK;
}
