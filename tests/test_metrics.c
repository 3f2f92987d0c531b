/* test_metrics.c - V2 RSE and V1 mean relative absolute error against hand-computed values. */
#include "test.h"

#include "plan/metrics.h"

static void test_rse_hand(void) {
    /* y_o = [1, 2, 3, 4]: mean 2.5, sum (y_o - mean)^2 = 2.25 + 0.25 + 0.25 + 2.25 = 5.
     * y_m = [1, 2, 3, 6]: sum (y_m - y_o)^2 = 4  ->  I = 0.8. */
    float o[4] = {1, 2, 3, 4}, m[4] = {1, 2, 3, 6};
    CHECK_NEAR(dfa_metric_rse(o, m, 1, 4, 4), 0.8, 1e-15);
    CHECK_NEAR(dfa_metric_rse(o, m, 2, 2, 2), 0.8, 1e-15); /* same elements as 2 rows */
    CHECK(dfa_metric_rse(o, o, 1, 4, 4) == 0.0);           /* the original itself: 0, not 1 */
    /* y_m = mean(y_o) everywhere: I = 1 (predicting the mean) */
    float mm[4] = {2.5f, 2.5f, 2.5f, 2.5f};
    CHECK_NEAR(dfa_metric_rse(o, mm, 1, 4, 4), 1.0, 1e-15);
    /* constant reference */
    float c[3] = {7, 7, 7}, c2[3] = {7, 7, 7.5f};
    CHECK(dfa_metric_rse(c, c, 1, 3, 3) == 0.0);
    CHECK(isinf(dfa_metric_rse(c, c2, 1, 3, 3)));
    float nanv[4] = {1, 2, NAN, 4};
    CHECK(isinf(dfa_metric_rse(o, nanv, 1, 4, 4)));
}

/* Per head on [tokens, heads, dim]: head slices are strided; poison the other head. */
static void test_rse_heads(void) {
    enum { N = 3, H = 2, D = 2 };
    float o[N * H * D], m[N * H * D];
    /* head 0 values (token-major): 0,1 | 2,3 | 4,5 ; head 1: 10,10 | 10,10 | 10,12 */
    float h0[6] = {0, 1, 2, 3, 4, 5}, h1[6] = {10, 10, 10, 10, 10, 12};
    for (int t = 0; t < N; t++)
        for (int d = 0; d < D; d++) {
            o[(t * H + 0) * D + d] = h0[t * D + d];
            o[(t * H + 1) * D + d] = h1[t * D + d];
        }
    memcpy(m, o, sizeof o);
    m[(2 * H + 0) * D + 1] = 7; /* head 0: error (7-5)^2 = 4; den: mean 2.5, sum sq = 17.5 */
    m[(0 * H + 1) * D + 0] = 9; /* head 1: error 1; mean 62/6, den = 6*(10-62/6)^2... */
    double mean1 = 62.0 / 6, den1 = 5 * (10 - mean1) * (10 - mean1) + (12 - mean1) * (12 - mean1);
    double out[H] = {-1, -1};
    dfa_metric_rse_heads(o, m, N, H, D, out);
    CHECK_NEAR(out[0], 4.0 / 17.5, 1e-12);
    CHECK_NEAR(out[1], 1.0 / den1, 1e-12);
}

static void test_mrae_hand(void) {
    /* terms: |1-1|/(1+e)=0; |2-1|/(2+e); |-1-1|/(1+e)=2/(1+e); |0-0|/(0+e)=0 */
    float o[4] = {1, 2, -1, 0}, m[4] = {1, 1, 1, 0};
    double e = 1e-6, want = (1.0 / (2 + e) + 2.0 / (1 + e)) / 4;
    CHECK_NEAR(dfa_metric_mrae(o, m, 4, e), want, 1e-15);
    /* tiny values: |1e-7 - 0| / (1e-7 + 1e-6) = 1/11 */
    float t[1] = {1e-7f}, z[1] = {0};
    CHECK_NEAR(dfa_metric_mrae(t, z, 1, 1e-6), (double)1e-7f / ((double)1e-7f + 1e-6), 1e-12);
    /* non-finite terms count as the clip maximum */
    float inf1[2] = {INFINITY, 1}, one[2] = {1, 1};
    CHECK_NEAR(dfa_metric_mrae(one, inf1, 2, 1e-6), 10.0 / 2, 1e-15);
    CHECK(dfa_metric_mrae(o, o, 4, 1e-6) == 0.0);
    /* the ratio never exceeds 2 for finite values: opposite signs give the maximum */
    float a[1] = {3}, b[1] = {-3};
    CHECK_NEAR(dfa_metric_mrae(a, b, 1, 0), 2.0, 1e-15);
}

int main(void) {
    RUN(test_rse_hand);
    RUN(test_rse_heads);
    RUN(test_mrae_hand);
    return test_summary();
}
