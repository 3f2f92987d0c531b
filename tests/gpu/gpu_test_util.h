/* gpu_test_util.h - helpers the CUDA-vs-CPU tests share (tests/gpu/test_*_cuda.c): the
 * ||out-ref||/||ref|| error, bf16-exact random inputs, NaN-poisoned outputs, a context per backend. */
#ifndef DFA_TESTS_GPU_TEST_UTIL_H
#define DFA_TESTS_GPU_TEST_UTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "../test.h"
#include "core/ctx.h"
#include "core/tensor.h"
#include "dfa.h"

/* ||a - ref|| / ||ref|| (||ref|| = 0: ||a - ref||); a NaN in a or ref gives INFINITY. */
static inline double gpu_rel_l2(const float *a, const float *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) || isnan(ref[i])) return INFINITY;
        double d = (double)a[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

/* uniform random values in [-scale, scale) rounded to bf16 (the GPU then sees exactly the CPU's inputs) */
static inline void gpu_fill_bf16(float *x, size_t n, unsigned long long *rng, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = dfa_bf16_to_f32(dfa_f32_to_bf16(test_rng_uniform(rng) * scale));
}

/* malloc'ed [n] f32, all NaN (an output buffer a run must overwrite) */
static inline float *gpu_poisoned(size_t n) {
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; p && i < n; i++) p[i] = NAN;
    return p;
}

/* a context on backend be, warnings and errors logged only (NULL on failure, reason on stderr) */
static inline dfa_ctx *gpu_new_ctx(dfa_backend be) {
    dfa_ctx_params p = dfa_ctx_default_params();
    p.backend = be;
    p.log_level = DFA_LOG_WARN;
    dfa_ctx *ctx = NULL;
    char msg[256];
    if (dfa_ctx_init(&ctx, &p, msg, sizeof msg) != DFA_OK) fprintf(stderr, "ctx: %s\n", msg);
    return ctx;
}

#endif
