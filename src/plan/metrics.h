/* metrics.h - the two papers' calibration metrics, in double precision over f32 outputs.
 *
 * V2 eq. 1, relative squared error of a method's output y_m against the original y_o, per
 * head on one layer's attention output:
 *     I = sum (y_m - y_o)^2 / sum (y_o - mean(y_o))^2
 * The printed formula has (y_m - mean(y_o)) in the numerator; that reading gives I = 1 for the
 * uncompressed output itself and is not the "error between y_m and y_o" the text describes, so
 * we use the standard RSE (docs/DESIGN.md "Plan search" gives the reasoning). The sums run over
 * every element of the slice (tokens x head_dim) and mean(y_o) is the slice's scalar mean.
 * Degenerate slice (constant y_o, denominator 0): I = 0 when y_m == y_o exactly, else +inf.
 *
 * V1 appendix A.2, mean relative absolute error of O' against O over n elements:
 *     L = (1/n) sum clip(|O_i - O'_i| / (max(|O_i|, |O'_i|) + eps), 0, 10),  eps = 1e-6
 * A non-finite term (inf or NaN in either output) counts as the clip maximum, 10. */
#ifndef DFA_PLAN_METRICS_H
#define DFA_PLAN_METRICS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DFA_MRAE_EPS 1e-6
#define DFA_MRAE_CLIP 10.0

/* RSE over a strided 2-D slice: `rows` rows of `cols` contiguous floats, row i at
 * base + i * row_stride (in floats). ref = y_o, approx = y_m. */
double dfa_metric_rse(const float *ref, const float *approx, size_t rows, size_t cols, size_t row_stride);

/* RSE of every head of one attention output [n_tokens, n_heads, head_dim] (one prompt):
 * out[h] = RSE of head h's [n_tokens, head_dim] slice. */
void dfa_metric_rse_heads(const float *ref, const float *approx, int n_tokens, int n_heads, int head_dim,
                          double *out);

/* V1's mean relative absolute error over n contiguous elements (eps as defined above). */
double dfa_metric_mrae(const float *ref, const float *approx, size_t n, double eps);

#ifdef __cplusplus
}
#endif
#endif
