/* st_write.c - safetensors writer: JSON header written by hand (exact integers), padded with
 * spaces to an 8-byte boundary, tensors contiguous and each aligned to its element size. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/st_internal.h"

static void put_json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

static int cmp_name_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static dfa_status check_items(const char *path, const dfa_st_item *items, int n, const char *const *mk,
                              const char *const *mv, int n_meta, uint64_t *sizes, dfa_error *err) {
    size_t bad;
    for (int i = 0; i < n; i++) {
        const dfa_st_item *it = &items[i];
        if (!it->name) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "%s: item %d has no name", path, i);
        if (strcmp(it->name, "__metadata__") == 0 || st_text_check((const uint8_t *)it->name, strlen(it->name), &bad))
            DFA_FAIL(err, DFA_ERR_INVALID_ARG, "%s: tensor name '%s' is reserved or not UTF-8 text", path, it->name);
        if ((unsigned)it->dtype >= DFA_DTYPE_COUNT)
            DFA_FAIL(err, DFA_ERR_INVALID_ARG, "%s: tensor '%s': bad dtype %d", path, it->name, (int)it->dtype);
        if (it->ndim < 0 || it->ndim > DFA_MAX_DIMS || (it->ndim > 0 && !it->shape))
            DFA_FAIL(err, DFA_ERR_INVALID_ARG, "%s: tensor '%s': rank %d outside [0, %d]", path, it->name, it->ndim,
                     DFA_MAX_DIMS);
        if (st_nbytes(it->dtype, it->ndim, it->shape, &sizes[i]) != 0)
            DFA_FAIL(err, DFA_ERR_INVALID_ARG, "%s: tensor '%s': negative or too large shape", path, it->name);
        if (sizes[i] && !it->data) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "%s: tensor '%s': no data", path, it->name);
    }
    for (int i = 0; i < n_meta; i++)
        if (!mk[i] || !mv[i] || st_text_check((const uint8_t *)mk[i], strlen(mk[i]), &bad) ||
            st_text_check((const uint8_t *)mv[i], strlen(mv[i]), &bad))
            DFA_FAIL(err, DFA_ERR_INVALID_ARG, "%s: metadata entry %d is missing or not UTF-8 text", path, i);
    /* unique names (tensors, and metadata keys) */
    int cap = n > n_meta ? n : n_meta;
    const char **names = malloc(sizeof *names * (size_t)(cap ? cap : 1));
    if (!names) DFA_FAIL(err, DFA_ERR_OOM, "%s: out of memory", path);
    for (int pass = 0; pass < 2; pass++) {
        int k = pass == 0 ? n : n_meta;
        for (int i = 0; i < k; i++) names[i] = pass == 0 ? items[i].name : mk[i];
        qsort(names, (size_t)k, sizeof *names, cmp_name_ptr);
        for (int i = 1; i < k; i++)
            if (strcmp(names[i - 1], names[i]) == 0) {
                dfa_status s = DFA_SET(err, DFA_ERR_INVALID_ARG, "%s: %s '%s' given twice", path,
                                       pass == 0 ? "tensor" : "metadata key", names[i]);
                free(names);
                return s;
            }
    }
    free(names);
    return DFA_OK;
}

/* The header text (unpadded) into a malloc'ed buffer. */
static dfa_status build_header(const char *path, const dfa_st_item *items, int n, const uint64_t *begin,
                               const uint64_t *sizes, const char *const *mk, const char *const *mv, int n_meta,
                               char **text, size_t *len, dfa_error *err) {
    FILE *f = open_memstream(text, len);
    if (!f) DFA_FAIL(err, DFA_ERR_OOM, "%s: cannot build the header", path);
    fputc('{', f);
    if (n_meta > 0) {
        fputs("\"__metadata__\":{", f);
        for (int i = 0; i < n_meta; i++) {
            if (i) fputc(',', f);
            put_json_string(f, mk[i]);
            fputc(':', f);
            put_json_string(f, mv[i]);
        }
        fputc('}', f);
    }
    for (int i = 0; i < n; i++) {
        if (i || n_meta > 0) fputc(',', f);
        put_json_string(f, items[i].name);
        fprintf(f, ":{\"dtype\":\"%s\",\"shape\":[", dfa_dtype_name(items[i].dtype));
        for (int d = 0; d < items[i].ndim; d++) fprintf(f, "%s%" PRId64, d ? "," : "", items[i].shape[d]);
        fprintf(f, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", begin[i], begin[i] + sizes[i]);
    }
    fputc('}', f);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        free(*text);
        *text = NULL;
        DFA_FAIL(err, DFA_ERR_OOM, "%s: cannot build the header", path);
    }
    return DFA_OK;
}

static dfa_status write_all(const char *tmp, const char *path, size_t hl, const char *header, const dfa_st_item *items,
                            const int *order, int n, const uint64_t *sizes, dfa_error *err) {
    FILE *f = fopen(tmp, "wb");
    if (!f) DFA_FAIL(err, DFA_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    uint8_t le[8];
    for (int i = 0; i < 8; i++) le[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    int ok = fwrite(le, 1, 8, f) == 8 && fwrite(header, 1, hl, f) == hl;
    for (int k = 0; k < n && ok; k++) {
        int i = order[k];
        ok = sizes[i] == 0 || fwrite(items[i].data, 1, (size_t)sizes[i], f) == (size_t)sizes[i];
    }
    int e = errno;
    if (fclose(f) != 0) ok = 0, e = errno;
    if (!ok || rename(tmp, path) != 0) {
        if (ok) e = errno;
        remove(tmp);
        DFA_FAIL(err, DFA_ERR_IO, "%s: write failed: %s", path, strerror(e));
    }
    return DFA_OK;
}

dfa_status dfa_st_write(const char *path, const dfa_st_item *items, int n, const char *const *meta_keys,
                        const char *const *meta_values, int n_meta, dfa_error *err) {
    if (!path || n < 0 || (n > 0 && !items) || n_meta < 0 || (n_meta > 0 && (!meta_keys || !meta_values)))
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "%s: bad arguments to dfa_st_write", path ? path : "(no path)");
    size_t cnt = (size_t)(n ? n : 1);
    uint64_t *sizes = calloc(cnt, sizeof *sizes), *begin = calloc(cnt, sizeof *begin);
    int *order = calloc(cnt, sizeof *order);
    char *header = NULL, *tmp = NULL;
    size_t len = 0;
    dfa_status s = DFA_OK;
    if (!sizes || !begin || !order) s = DFA_SET(err, DFA_ERR_OOM, "%s: out of memory", path);
    if (s == DFA_OK) s = check_items(path, items, n, meta_keys, meta_values, n_meta, sizes, err);
    if (s == DFA_OK) {
        /* place by decreasing element size (8, 4, 2, 1), stable: every tensor stays aligned */
        int k = 0;
        uint64_t off = 0;
        for (size_t es = 8; es >= 1; es /= 2)
            for (int i = 0; i < n; i++)
                if (dfa_dtype_size(items[i].dtype) == es) {
                    order[k++] = i;
                    begin[i] = off;
                    off += sizes[i];
                }
        if (k != n) s = DFA_SET(err, DFA_ERR_INTERNAL, "%s: placed %d of %d tensors", path, k, n);
    }
    if (s == DFA_OK) s = build_header(path, items, n, begin, sizes, meta_keys, meta_values, n_meta, &header, &len, err);
    if (s == DFA_OK) {
        /* pad with spaces so the data section starts at a multiple of 8 */
        size_t padded = (len + 7) / 8 * 8;
        char *h = realloc(header, padded + 1);
        if (!h) s = DFA_SET(err, DFA_ERR_OOM, "%s: out of memory", path);
        else {
            header = h;
            memset(header + len, ' ', padded - len);
            len = padded;
        }
    }
    if (s == DFA_OK && len > DFA_ST_MAX_HEADER)
        s = DFA_SET(err, DFA_ERR_INVALID_ARG, "%s: header of %zu bytes exceeds the limit of %llu", path, len,
                    DFA_ST_MAX_HEADER);
    if (s == DFA_OK) {
        size_t pl = strlen(path);
        tmp = malloc(pl + 5);
        if (!tmp) s = DFA_SET(err, DFA_ERR_OOM, "%s: out of memory", path);
        else {
            memcpy(tmp, path, pl);
            memcpy(tmp + pl, ".tmp", 5);
            s = write_all(tmp, path, len, header, items, order, n, sizes, err);
        }
    }
    free(tmp);
    free(header);
    free(sizes);
    free(begin);
    free(order);
    return s;
}
