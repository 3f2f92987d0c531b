/* attn_ref.h - shared helpers for the attention tests: random tensors and a plain float64
 * reference of one head under a window (dfa_mask_keep decides every entry). */
#ifndef DFA_TESTS_ATTN_REF_H
#define DFA_TESTS_ATTN_REF_H

#include <math.h>
#include <stdlib.h>

#include "attn/attn.h"
#include "attn/mask.h"
#include "core/tensor.h"
#include "test.h"

typedef struct qkv_set {
    int B, N, H, D;
    float *q, *k, *v, *o;
    dfa_tensor tq, tk, tv, to;
} qkv_set;

static inline void qkv_alloc(qkv_set *s, int B, int N, int H, int D, unsigned long long *rng) {
    s->B = B, s->N = N, s->H = H, s->D = D;
    size_t n = (size_t)B * N * H * D;
    s->q = malloc(n * sizeof(float));
    s->k = malloc(n * sizeof(float));
    s->v = malloc(n * sizeof(float));
    s->o = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        s->q[i] = 2.0f * test_rng_uniform(rng); /* spread scores so that softmax is not flat */
        s->k[i] = 2.0f * test_rng_uniform(rng);
        s->v[i] = test_rng_uniform(rng);
        s->o[i] = NAN;
    }
    int64_t shape[4] = {B, N, H, D};
    dfa_tensor_init(&s->tq, DFA_F32, DFA_DEV_CPU, 4, shape, s->q, NULL);
    dfa_tensor_init(&s->tk, DFA_F32, DFA_DEV_CPU, 4, shape, s->k, NULL);
    dfa_tensor_init(&s->tv, DFA_F32, DFA_DEV_CPU, 4, shape, s->v, NULL);
    dfa_tensor_init(&s->to, DFA_F32, DFA_DEV_CPU, 4, shape, s->o, NULL);
}

static inline void qkv_poison(qkv_set *s) {
    size_t n = (size_t)s->B * s->N * s->H * s->D;
    for (size_t i = 0; i < n; i++) s->o[i] = NAN;
}

static inline void qkv_free(qkv_set *s) {
    free(s->q);
    free(s->k);
    free(s->v);
    free(s->o);
}

static inline size_t qkv_at(const qkv_set *s, int b, int n, int h) {
    return (((size_t)b * s->N + n) * s->H + h) * s->D;
}

/* ref[N * D] = attention of (b, h) under window (< 0: full), float64. */
static inline void ref_head(const qkv_set *s, const dfa_attn_layout *L, int window, int b, int h, double *ref) {
    const int N = s->N, D = s->D;
    double *p = malloc((size_t)N * sizeof(double));
    for (int i = 0; i < N; i++) {
        const float *qi = s->q + qkv_at(s, b, i, h);
        double mx = -INFINITY;
        for (int j = 0; j < N; j++) {
            if (!dfa_mask_keep(L, window, i, j)) {
                p[j] = -INFINITY;
                continue;
            }
            const float *kj = s->k + qkv_at(s, b, j, h);
            double acc = 0;
            for (int d = 0; d < D; d++) acc += (double)qi[d] * kj[d];
            p[j] = acc / sqrt((double)D);
            if (p[j] > mx) mx = p[j];
        }
        double sum = 0;
        for (int j = 0; j < N; j++) {
            p[j] = p[j] == -INFINITY ? 0 : exp(p[j] - mx);
            sum += p[j];
        }
        for (int d = 0; d < D; d++) {
            double acc = 0;
            for (int j = 0; j < N; j++)
                if (p[j] != 0) acc += p[j] * s->v[qkv_at(s, b, j, h) + d];
            ref[(size_t)i * D + d] = acc / sum;
        }
    }
    free(p);
}

/* max |out(b, h) - ref| */
static inline double head_err(const qkv_set *s, const float *out, int b, int h, const double *ref) {
    double e = 0;
    for (int i = 0; i < s->N; i++)
        for (int d = 0; d < s->D; d++) {
            double x = out[qkv_at(s, b, i, h) + d];
            double dd = fabs(x - ref[(size_t)i * s->D + d]);
            if (!(dd <= e)) e = isnan(dd) ? INFINITY : dd;
        }
    return e;
}

#endif
