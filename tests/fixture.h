/* fixture.h - read golden tensors from tests/fixtures/ (safetensors written by the generator
 * scripts) and compare arrays. Header-only, for tests. */
#ifndef DFA_TESTS_FIXTURE_H
#define DFA_TESTS_FIXTURE_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ctx.h"
#include "io/safetensors.h"
#include "test.h"

/* Tensor `name` of st as malloc'ed f32 (any float/int dtype converted); shape/ndim out.
 * NULL (and a failed CHECK) if absent. */
static inline float *fixture_f32(const dfa_safetensors *st, const char *name, int *ndim, int64_t *shape) {
    const dfa_st_tensor *t = dfa_st_find(st, name);
    CHECKF(t != NULL, "fixture tensor %s missing", name);
    if (!t) return NULL;
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (size_t)t->shape[i];
    float *x = malloc((n ? n : 1) * sizeof(float));
    dfa_error err = {0};
    if (!x || dfa_st_load(st, name, DFA_F32, -1, NULL, x, DFA_DEV_CPU, NULL, &err) != DFA_OK) {
        CHECKF(0, "fixture tensor %s: %s", name, err.msg);
        free(x);
        return NULL;
    }
    if (ndim) *ndim = t->ndim;
    if (shape)
        for (int i = 0; i < t->ndim; i++) shape[i] = t->shape[i];
    return x;
}

static inline dfa_safetensors *fixture_open(const char *rel) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/%s", DFA_SOURCE_DIR, rel);
    dfa_safetensors *st = NULL;
    dfa_error err = {0};
    if (dfa_st_open(&st, path, &err) != DFA_OK) {
        CHECKF(0, "open %s: %s", path, err.msg);
        return NULL;
    }
    return st;
}

static inline const char *fixture_path(const char *rel, char *buf, size_t n) {
    snprintf(buf, n, "%s/tests/fixtures/%s", DFA_SOURCE_DIR, rel);
    return buf;
}

/* max |a - b| / max |b| (relative to the reference's scale); NaN anywhere -> INFINITY. */
static inline double fixture_rel_err(const float *a, const float *b, size_t n) {
    double md = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d != d) return INFINITY;
        if (d > md) md = d;
        if (fabs((double)b[i]) > mb) mb = fabs((double)b[i]);
    }
    return mb > 0 ? md / mb : md;
}

static inline void fixture_poison(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = NAN;
}

/* Copy the checkpoint folder `src_dir` (config.json + diffusion_pytorch_model.safetensors) into
 * dst_dir with tensor `victim` dropped (mode 0) or its last two dims merged into one (mode 1:
 * same bytes, wrong shape). Returns 0 on success. */
static inline int fixture_broken_copy(const char *src_dir, const char *victim, int mode, const char *dst_dir) {
    char buf[1200];
    dfa_safetensors *st = NULL;
    dfa_error err = {0};
    snprintf(buf, sizeof buf, "%s/diffusion_pytorch_model.safetensors", src_dir);
    if (dfa_st_open(&st, buf, &err) != DFA_OK) {
        CHECKF(0, "%s", err.msg);
        return -1;
    }
    const int n = dfa_st_count(st);
    dfa_st_item *items = calloc((size_t)n, sizeof *items);
    int64_t(*shapes)[DFA_MAX_DIMS] = calloc((size_t)n, sizeof *shapes);
    int m = 0, found = 0;
    for (int i = 0; items && shapes && i < n; i++) {
        const dfa_st_tensor *t = dfa_st_at(st, i);
        const int is_victim = strcmp(t->name, victim) == 0;
        found |= is_victim;
        if (is_victim && mode == 0) continue;
        items[m].name = t->name;
        items[m].dtype = t->dtype;
        items[m].ndim = t->ndim;
        memcpy(shapes[m], t->shape, sizeof shapes[m]);
        if (is_victim && t->ndim >= 2) {
            items[m].ndim = t->ndim - 1;
            shapes[m][t->ndim - 2] *= t->shape[t->ndim - 1];
        }
        items[m].shape = shapes[m];
        items[m].data = dfa_st_data(st, t);
        m++;
    }
    int rc = found ? 0 : -1;
    CHECKF(found, "victim %s not in %s", victim, src_dir);
    snprintf(buf, sizeof buf, "%s/diffusion_pytorch_model.safetensors", dst_dir);
    if (rc == 0 && dfa_st_write(buf, items, m, NULL, NULL, 0, &err) != DFA_OK) {
        CHECKF(0, "%s", err.msg);
        rc = -1;
    }
    free(items);
    free(shapes);
    dfa_st_close(st);
    char src[1200], cfg[65536];
    snprintf(src, sizeof src, "%s/config.json", src_dir);
    snprintf(buf, sizeof buf, "%s/config.json", dst_dir);
    FILE *f = fopen(src, "rb");
    size_t len = f ? fread(cfg, 1, sizeof cfg, f) : 0;
    if (f) fclose(f);
    FILE *g = rc == 0 ? fopen(buf, "wb") : NULL;
    if (!g || fwrite(cfg, 1, len, g) != len) rc = -1;
    if (g && fclose(g) != 0) rc = -1;
    return rc;
}

#endif
