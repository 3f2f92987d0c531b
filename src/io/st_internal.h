/* st_internal.h - pieces shared by the safetensors reader, header parser and writer
 * (private to src/io). */
#ifndef DFA_IO_ST_INTERNAL_H
#define DFA_IO_ST_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "io/safetensors.h"

/* The header length is capped (as the reference implementation does). */
#define DFA_ST_MAX_HEADER 100000000ULL

/* A parsed header: tensors in header order, __metadata__ as key/value pairs
 * (meta[2*i] = key, meta[2*i+1] = value), all strings owned. */
typedef struct st_table {
    dfa_st_tensor *t;
    int n;
    char **meta;
    int n_meta;
    uint64_t data_start; /* 8 + header length */
} st_table;

dfa_status st_parse(const uint8_t *buf, size_t len, uint64_t file_size, const char *file, st_table *out,
                    dfa_error *err);
void st_table_free(st_table *tb);

/* 0 when s[0..n) is UTF-8 without control characters other than \t \n \r; otherwise -1
 * and *bad the offset of the first offending byte. */
int st_text_check(const uint8_t *s, size_t n, size_t *bad);

/* numel * dtype size into *bytes; -1 on overflow. */
int st_nbytes(dfa_dtype dt, int ndim, const int64_t *shape, uint64_t *bytes);

#endif
