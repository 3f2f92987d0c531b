/* metrics.c - V2 per-head relative squared error and V1 mean relative absolute error. */
#include "plan/metrics.h"

#include <math.h>

double dfa_metric_rse(const float *ref, const float *approx, size_t rows, size_t cols, size_t row_stride) {
    size_t n = rows * cols;
    if (n == 0) return 0.0;
    double mean = 0;
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < cols; j++) mean += ref[i * row_stride + j];
    mean /= (double)n;
    double num = 0, den = 0;
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < cols; j++) {
            double o = ref[i * row_stride + j], m = approx[i * row_stride + j];
            num += (m - o) * (m - o);
            den += (o - mean) * (o - mean);
        }
    if (isnan(num) || isnan(den)) return INFINITY;
    if (den == 0) return num == 0 ? 0.0 : INFINITY;
    return num / den;
}

void dfa_metric_rse_heads(const float *ref, const float *approx, int n_tokens, int n_heads, int head_dim,
                          double *out) {
    size_t stride = (size_t)n_heads * head_dim;
    for (int h = 0; h < n_heads; h++)
        out[h] = dfa_metric_rse(ref + (size_t)h * head_dim, approx + (size_t)h * head_dim, (size_t)n_tokens,
                                (size_t)head_dim, stride);
}

double dfa_metric_mrae(const float *ref, const float *approx, size_t n, double eps) {
    if (n == 0) return 0.0;
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        double o = ref[i], m = approx[i];
        double a = fabs(o), b = fabs(m);
        double r = fabs(o - m) / ((a > b ? a : b) + eps);
        if (!isfinite(r) || r > DFA_MRAE_CLIP) r = DFA_MRAE_CLIP;
        sum += r; /* r >= 0 always: the lower clip never binds */
    }
    return sum / (double)n;
}
