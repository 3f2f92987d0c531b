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

#endif
