/* mmdit_fixture.h - helpers for the MMDiT golden-fixture tests (header-only): load f32 tensors
 * from a fixture safetensors file, compare with a relative bound, and write a broken copy of a
 * checkpoint (one tensor missing or misshapen) for the error tests. */
#ifndef DFA_TESTS_MMDIT_FIXTURE_H
#define DFA_TESTS_MMDIT_FIXTURE_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "test.h"
#include "tmpdir.h"

#ifndef DFA_FIXTURE_DIR
#define DFA_FIXTURE_DIR "tests/fixtures"
#endif

/* malloc'd f32 copy of tensor `name` (any float dtype); numel in *n. NULL if missing. */
static inline float *fx_load(const dfa_safetensors *st, const char *name, size_t *n) {
    const dfa_st_tensor *t = dfa_st_find(st, name);
    if (!t) {
        fprintf(stderr, "fixture tensor %s missing\n", name);
        return NULL;
    }
    size_t k = 1;
    for (int i = 0; i < t->ndim; i++) k *= (size_t)t->shape[i];
    float *p = malloc((k ? k : 1) * sizeof(float));
    dfa_error err = {0};
    if (!p || dfa_st_load(st, name, DFA_F32, -1, NULL, p, DFA_DEV_CPU, NULL, &err) != DFA_OK) {
        fprintf(stderr, "fixture tensor %s: %s\n", name, err.msg);
        free(p);
        return NULL;
    }
    if (n) *n = k;
    return p;
}

/* max |a - b| / max |b| */
static inline double fx_rel_err(const float *a, const float *b, size_t n) {
    double md = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= md)) md = d; /* NaN propagates as "huge" */
        if (fabs((double)b[i]) > mb) mb = fabs((double)b[i]);
    }
    return mb > 0 ? md / mb : md;
}

static inline void fx_fill_nan(float *p, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] = NAN;
}

/* Copy a checkpoint (config.json + diffusion_pytorch_model.safetensors) into dir/transformer,
 * dropping tensor `drop` (if not NULL) and giving tensor `reshape` (if not NULL) the shape
 * [its first dim + 1, ...] (same dtype, zero data). Returns 0 on success. */
static inline int fx_write_broken_ckpt(const char *src_dir, const char *dst_dir, const char *drop, const char *reshape) {
    char path[1024];
    snprintf(path, sizeof path, "%s/transformer", dst_dir);
    if (mkdir(path, 0755) != 0) return -1;
    /* config */
    char src[1024], dst[1024];
    snprintf(src, sizeof src, "%s/transformer/config.json", src_dir);
    snprintf(dst, sizeof dst, "%s/transformer/config.json", dst_dir);
    FILE *fi = fopen(src, "rb"), *fo = fopen(dst, "wb");
    if (!fi || !fo) {
        if (fi) fclose(fi);
        if (fo) fclose(fo);
        return -1;
    }
    char buf[4096];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, fi)) > 0) fwrite(buf, 1, k, fo);
    fclose(fi);
    fclose(fo);
    /* weights */
    snprintf(src, sizeof src, "%s/transformer/diffusion_pytorch_model.safetensors", src_dir);
    snprintf(dst, sizeof dst, "%s/transformer/diffusion_pytorch_model.safetensors", dst_dir);
    dfa_safetensors *st = NULL;
    dfa_error err = {0};
    if (dfa_st_open(&st, src, &err) != DFA_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    int n = dfa_st_count(st), m = 0;
    dfa_st_item *items = calloc((size_t)n, sizeof *items);
    int64_t(*shapes)[DFA_MAX_DIMS] = calloc((size_t)n, sizeof *shapes);
    void **zero = calloc((size_t)n, sizeof *zero);
    int rc = items && shapes && zero ? 0 : -1;
    for (int i = 0; i < n && rc == 0; i++) {
        const dfa_st_tensor *t = dfa_st_at(st, i);
        if (drop && strcmp(t->name, drop) == 0) continue;
        dfa_st_item *it = &items[m];
        it->name = t->name;
        it->dtype = t->dtype;
        it->ndim = t->ndim;
        memcpy(shapes[m], t->shape, sizeof shapes[m]);
        it->shape = shapes[m];
        it->data = dfa_st_data(st, t);
        if (reshape && strcmp(t->name, reshape) == 0) {
            shapes[m][0] += 1;
            size_t bytes = dfa_dtype_size(t->dtype);
            for (int d = 0; d < t->ndim; d++) bytes *= (size_t)shapes[m][d];
            zero[m] = calloc(bytes ? bytes : 1, 1);
            if (!zero[m]) rc = -1;
            it->data = zero[m];
        }
        m++;
    }
    if (rc == 0 && dfa_st_write(dst, items, m, NULL, NULL, 0, &err) != DFA_OK) {
        fprintf(stderr, "%s\n", err.msg);
        rc = -1;
    }
    for (int i = 0; zero && i < n; i++) free(zero[i]);
    free(zero);
    free(shapes);
    free(items);
    dfa_st_close(st);
    return rc;
}

#endif
