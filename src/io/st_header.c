/* st_header.c - parse and fully validate a safetensors header held in memory:
 * 8-byte little-endian length (bounded), UTF-8 JSON object, every tensor entry (dtype,
 * shape, data_offsets vs bytes), byte ranges inside the data section and disjoint,
 * names unique, __metadata__ a string->string map. Reads nothing outside buf[0..len). */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/st_internal.h"

#define MAX_EXACT_INT 9007199254740992.0 /* 2^53: every integer up to it is exact in a double */

int st_text_check(const uint8_t *s, size_t n, size_t *bad) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') goto fail;
            i++;
            continue;
        }
        int k; /* continuation bytes */
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) k = 1, cp = c & 0x1F, min = 0x80;
        else if ((c & 0xF0) == 0xE0) k = 2, cp = c & 0x0F, min = 0x800;
        else if ((c & 0xF8) == 0xF0) k = 3, cp = c & 0x07, min = 0x10000;
        else goto fail;
        if (n - i <= (size_t)k) goto fail;
        for (int j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) goto fail;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) goto fail;
        i += (size_t)k + 1;
    }
    return 0;
fail:
    *bad = i;
    return -1;
}

int st_nbytes(dfa_dtype dt, int ndim, const int64_t *shape, uint64_t *bytes) {
    uint64_t b = dfa_dtype_size(dt);
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return -1;
        uint64_t d = (uint64_t)shape[i];
        if (d != 0 && b > UINT64_MAX / d) return -1;
        b *= d;
    }
    *bytes = b;
    return 0;
}

static const char *kind_of(const cJSON *v) {
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    return "an invalid value";
}

/* A non-negative integer that a double holds exactly. */
static int as_u64(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!isfinite(d) || d < 0 || d > MAX_EXACT_INT || d != floor(d)) return -1;
    *out = (uint64_t)d;
    return 0;
}

void st_table_free(st_table *tb) {
    if (!tb) return;
    if (tb->t)
        for (int i = 0; i < tb->n; i++) free((char *)tb->t[i].name);
    free(tb->t);
    if (tb->meta)
        for (int i = 0; i < 2 * tb->n_meta; i++) free(tb->meta[i]);
    free(tb->meta);
    memset(tb, 0, sizeof *tb);
}

static char *dup_str(const char *s) {
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d) memcpy(d, s, n + 1);
    return d;
}

/* One tensor entry: {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}. */
static dfa_status parse_entry(const cJSON *e, const char *file, uint64_t data_size, dfa_st_tensor *t,
                              dfa_error *err) {
    const char *nm = e->string;
    if (!cJSON_IsObject(e))
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: tensor '%s': entry is %s, expected an object with dtype, shape, data_offsets",
                 file, nm, kind_of(e));
    static const char *const fields[3] = {"dtype", "shape", "data_offsets"};
    for (int k = 0; k < 3; k++) {
        int seen = 0;
        const cJSON *c;
        cJSON_ArrayForEach(c, e) seen += strcmp(c->string, fields[k]) == 0;
        if (seen > 1) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: tensor '%s': '%s' given %d times", file, nm, fields[k], seen);
    }
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!dt) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: tensor '%s': missing 'dtype'", file, nm);
    if (!sh) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: tensor '%s': missing 'shape'", file, nm);
    if (!off) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: tensor '%s': missing 'data_offsets'", file, nm);
    if (!cJSON_IsString(dt) || !dt->valuestring)
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: tensor '%s': dtype is %s, expected a string", file, nm, kind_of(dt));
    if (dfa_dtype_parse(dt->valuestring, &t->dtype) != 0)
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%.40s'", file, nm, dt->valuestring);
    if (!cJSON_IsArray(sh))
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: tensor '%s': shape is %s, expected an array", file, nm, kind_of(sh));
    int rank = cJSON_GetArraySize(sh);
    if (rank > DFA_MAX_DIMS)
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: tensor '%s': rank %d exceeds the maximum of %d", file, nm, rank,
                 DFA_MAX_DIMS);
    t->ndim = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, sh) {
        uint64_t v;
        if (as_u64(d, &v) != 0)
            DFA_FAIL(err, DFA_ERR_FORMAT, "%s: tensor '%s': shape[%d] is not a non-negative integer", file, nm,
                     t->ndim);
        t->shape[t->ndim++] = (int64_t)v;
    }
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: tensor '%s': data_offsets must be [begin, end], got %s", file, nm,
                 cJSON_IsArray(off) ? "an array of another length" : kind_of(off));
    if (as_u64(off->child, &t->begin) != 0 || as_u64(off->child->next, &t->end) != 0)
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: tensor '%s': data_offsets must be non-negative integers", file, nm);
    if (t->begin > t->end)
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "]: begin is after end",
                 file, nm, t->begin, t->end);
    if (t->end > data_size)
        DFA_FAIL(err, DFA_ERR_FORMAT,
                 "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] run past the data section (%" PRIu64
                 " bytes)",
                 file, nm, t->begin, t->end, data_size);
    char sb[160];
    uint64_t need;
    if (st_nbytes(t->dtype, t->ndim, t->shape, &need) != 0)
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: tensor '%s': shape %s of %s is too large", file, nm,
                 dfa_shape_str(t->ndim, t->shape, sb, sizeof sb), dfa_dtype_name(t->dtype));
    if (need != t->end - t->begin)
        DFA_FAIL(err, DFA_ERR_FORMAT,
                 "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] hold %" PRIu64 " bytes, shape %s of %s needs %" PRIu64,
                 file, nm, t->begin, t->end, t->end - t->begin, dfa_shape_str(t->ndim, t->shape, sb, sizeof sb),
                 dfa_dtype_name(t->dtype), need);
    return DFA_OK;
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first name that appears twice in names[0..n) (sorted in place), or NULL. */
static const char *first_duplicate(const char **names, int n) {
    qsort(names, (size_t)n, sizeof *names, cmp_str_ptr);
    for (int i = 1; i < n; i++)
        if (strcmp(names[i - 1], names[i]) == 0) return names[i];
    return NULL;
}

typedef struct range_rec {
    uint64_t begin, end;
    const char *name;
} range_rec;

static int cmp_range(const void *a, const void *b) {
    const range_rec *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static dfa_status check_tables(const cJSON *meta, st_table *tb, const char *file, dfa_error *err) {
    dfa_status s = DFA_OK;
    int n = tb->n, nm = tb->n_meta;
    int cap = n > nm ? n : nm;
    const char **names = malloc(sizeof *names * (size_t)(cap ? cap : 1));
    range_rec *rr = malloc(sizeof *rr * (size_t)(n ? n : 1));
    if (!names || !rr) {
        s = DFA_SET(err, DFA_ERR_OOM, "%s: out of memory checking %d tensors", file, n);
        goto done;
    }
    for (int i = 0; i < n; i++) names[i] = tb->t[i].name;
    const char *dup = first_duplicate(names, n);
    if (dup) {
        s = DFA_SET(err, DFA_ERR_FORMAT, "%s: tensor '%s' appears more than once in the header", file, dup);
        goto done;
    }
    if (meta) {
        int k = 0;
        const cJSON *m;
        cJSON_ArrayForEach(m, meta) names[k++] = m->string;
        dup = first_duplicate(names, k);
        if (dup) {
            s = DFA_SET(err, DFA_ERR_FORMAT, "%s: __metadata__ key '%s' appears more than once", file, dup);
            goto done;
        }
    }
    int m = 0;
    for (int i = 0; i < n; i++)
        if (tb->t[i].end > tb->t[i].begin) rr[m++] = (range_rec){tb->t[i].begin, tb->t[i].end, tb->t[i].name};
    qsort(rr, (size_t)m, sizeof *rr, cmp_range);
    for (int i = 1; i < m; i++)
        if (rr[i].begin < rr[i - 1].end) {
            s = DFA_SET(err, DFA_ERR_FORMAT,
                        "%s: tensors '%s' [%" PRIu64 ", %" PRIu64 "] and '%s' [%" PRIu64 ", %" PRIu64
                        "] have overlapping data_offsets",
                        file, rr[i - 1].name, rr[i - 1].begin, rr[i - 1].end, rr[i].name, rr[i].begin, rr[i].end);
            goto done;
        }
done:
    free(names);
    free(rr);
    return s;
}

static dfa_status parse_meta(const cJSON *meta, st_table *tb, const char *file, dfa_error *err) {
    if (!cJSON_IsObject(meta))
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: __metadata__ is %s, expected an object of strings", file, kind_of(meta));
    int k = cJSON_GetArraySize(meta);
    tb->meta = calloc((size_t)(2 * k + 1), sizeof *tb->meta);
    if (!tb->meta) DFA_FAIL(err, DFA_ERR_OOM, "%s: out of memory for %d metadata entries", file, k);
    const cJSON *m;
    cJSON_ArrayForEach(m, meta) {
        if (!cJSON_IsString(m) || !m->valuestring)
            DFA_FAIL(err, DFA_ERR_FORMAT, "%s: __metadata__ '%s' is %s, expected a string", file, m->string,
                     kind_of(m));
        int i = tb->n_meta;
        tb->meta[2 * i] = dup_str(m->string);
        tb->meta[2 * i + 1] = dup_str(m->valuestring);
        tb->n_meta++;
        if (!tb->meta[2 * i] || !tb->meta[2 * i + 1])
            DFA_FAIL(err, DFA_ERR_OOM, "%s: out of memory for metadata", file);
    }
    return DFA_OK;
}

static dfa_status parse_json(const cJSON *root, uint64_t data_size, const char *file, st_table *tb, dfa_error *err) {
    if (!cJSON_IsObject(root))
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: header is %s, expected a JSON object", file, kind_of(root));
    int total = cJSON_GetArraySize(root);
    tb->t = calloc((size_t)(total ? total : 1), sizeof *tb->t);
    if (!tb->t) DFA_FAIL(err, DFA_ERR_OOM, "%s: out of memory for %d header entries", file, total);
    const cJSON *meta = NULL, *e;
    cJSON_ArrayForEach(e, root) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (meta) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: __metadata__ appears more than once", file);
            meta = e;
            DFA_TRY(parse_meta(meta, tb, file, err));
            continue;
        }
        dfa_st_tensor *t = &tb->t[tb->n];
        DFA_TRY(parse_entry(e, file, data_size, t, err));
        t->name = dup_str(e->string);
        if (!t->name) DFA_FAIL(err, DFA_ERR_OOM, "%s: out of memory for tensor names", file);
        tb->n++;
    }
    return check_tables(meta, tb, file, err);
}

dfa_status st_parse(const uint8_t *buf, size_t len, uint64_t file_size, const char *file, st_table *out,
                    dfa_error *err) {
    memset(out, 0, sizeof *out);
    if (!file) file = "safetensors";
    if (!buf && len) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "%s: no header bytes", file);
    if (len > file_size) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "%s: %zu header bytes but the file has %" PRIu64, file, len, file_size);
    if (len < 8)
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: file is %" PRIu64 " bytes, too short for a safetensors header (8-byte length + JSON)",
                 file, file_size);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | buf[i];
    if (hl > DFA_ST_MAX_HEADER)
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: header length %" PRIu64 " exceeds the limit of %llu bytes (not a safetensors file?)", file, hl,
                 DFA_ST_MAX_HEADER);
    if (hl > file_size - 8)
        DFA_FAIL(err, DFA_ERR_FORMAT,
                 "%s: header length %" PRIu64 " runs past the end of the file (%" PRIu64 " bytes follow the length field; truncated file?)",
                 file, hl, file_size - 8);
    if (hl > len - 8)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "%s: header length %" PRIu64 " but only %zu bytes are in memory", file, hl,
                 len - 8);
    if (hl < 2) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: header length %" PRIu64 " is too short for a JSON object", file, hl);
    const uint8_t *json = buf + 8;
    size_t bad;
    if (st_text_check(json, (size_t)hl, &bad) != 0)
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: header is not UTF-8 JSON text (bad byte 0x%02x at header offset %zu)", file,
                 json[bad], bad);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts((const char *)json, (size_t)hl, &end, 0);
    size_t at = end && end >= (const char *)json ? (size_t)(end - (const char *)json) : 0;
    if (!root) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: header is not valid JSON (error near header offset %zu)", file, at);
    for (size_t i = at; i < hl; i++)
        if (json[i] != ' ' && json[i] != '\t' && json[i] != '\n' && json[i] != '\r') {
            cJSON_Delete(root);
            DFA_FAIL(err, DFA_ERR_FORMAT, "%s: header is not valid JSON (text after the object at header offset %zu)",
                     file, i);
        }
    out->data_start = 8 + hl;
    dfa_status s = parse_json(root, file_size - 8 - hl, file, out, err);
    cJSON_Delete(root);
    if (s != DFA_OK) st_table_free(out);
    return s;
}

dfa_status dfa_st_parse_header(const uint8_t *buf, size_t len, uint64_t file_size, const char *file_name,
                               dfa_st_tensor **out_tensors, int *out_n, dfa_error *err) {
    st_table tb;
    *out_tensors = NULL;
    *out_n = 0;
    DFA_TRY(st_parse(buf, len, file_size, file_name, &tb, err));
    *out_tensors = tb.t;
    *out_n = tb.n;
    tb.t = NULL;
    tb.n = 0;
    st_table_free(&tb);
    return DFA_OK;
}

void dfa_st_free_table(dfa_st_tensor *tensors, int n) {
    if (!tensors) return;
    for (int i = 0; i < n; i++) free((char *)tensors[i].name);
    free(tensors);
}
