/* bench_util.h - helpers the DiT / PixArt benchmarks share (bench_dit_gpu.c, bench_dit_real.c). */
#ifndef DFA_BENCH_UTIL_H
#define DFA_BENCH_UTIL_H

#include <stdlib.h>
#include <time.h>

#include "core/ctx.h"
#include "io/safetensors.h"

/* monotonic wall clock, seconds */
static inline double bench_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Tensor `name` of st as malloc'ed f32 (NULL if absent or unreadable); its shape to shape[] and
 * element count to *n when those are non-NULL. */
static inline float *bench_st_f32(dfa_safetensors *st, const char *name, int64_t *shape, size_t *n) {
    const dfa_st_tensor *t = dfa_st_find(st, name);
    if (!t) return NULL;
    size_t k = 1;
    for (int i = 0; i < t->ndim; i++) {
        k *= (size_t)t->shape[i];
        if (shape) shape[i] = t->shape[i];
    }
    float *x = malloc(k * sizeof(float));
    dfa_error err = {0};
    if (x && dfa_st_load(st, name, DFA_F32, -1, NULL, x, DFA_DEV_CPU, NULL, &err) != DFA_OK) {
        free(x);
        return NULL;
    }
    if (n) *n = k;
    return x;
}

#endif
