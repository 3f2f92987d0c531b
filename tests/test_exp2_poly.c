/* test_exp2_poly.c - the FMA-pipe 2^x of attn_exp2_poly.h (the exp2 emulation that variants 7
 * and 8 of the CUDA attention kernel use for part of the softmax) against exp2() in double:
 * relative error <= 1e-4 on a dense grid over the softmax's range (x <= 8 after subtracting a
 * possibly stale row max, down to -126), exact powers of two at integers, and x below -126,
 * -inf and NaN giving a finite tiny non-negative value. Also checks that the error is the
 * polynomial's (not zero), so that the test would see a broken range reduction or coefficient. */
#include <float.h>
#include <math.h>

#include "attn/cuda/attn_exp2_poly.h"
#include "test.h"

/* dense grid: x = -130 .. 9 in steps of 2^-12 (569k points), plus the points just below and
 * above every integer */
static void test_grid(void) {
    double worst = 0, worst_x = 0;
    long n = 0, bad = 0;
    for (long i = -130L * 4096; i <= 9L * 4096; i++) {
        const float xs[3] = {(float)i / 4096.f, nextafterf((float)i / 4096.f, -INFINITY),
                             nextafterf((float)i / 4096.f, INFINITY)};
        for (int k = 0; k < 3; k++) {
            const float x = xs[k];
            const float r = dfa_exp2p_host(x);
            if (!(r >= 0.f) || !isfinite(r)) {
                bad++;
                continue;
            }
            n++;
            if (x >= -126.f) {
                const double ref = exp2((double)x);
                const double rel = fabs((double)r / ref - 1.0);
                if (rel > worst) worst = rel, worst_x = x;
            } else if (r >= 0x1p-125f) {
                bad++;
            }
        }
    }
    printf("  %ld points, worst relative error %.3e at x = %.6f\n", n, worst, worst_x);
    CHECKF(bad == 0, "%ld points NaN, negative, infinite or (x < -126) >= 2^-125", bad);
    CHECKF(worst <= DFA_EXP2P_MAX_REL, "worst relative error %.3e > %.1e", worst, DFA_EXP2P_MAX_REL);
    /* the documented fit error (8.6e-5): a much smaller one means the test is not testing the
     * polynomial */
    CHECKF(worst > 5e-5, "worst relative error %.3e: not the degree-3 polynomial's", worst);
}

static void test_integers(void) {
    int bad = 0;
    for (int j = -126; j <= 127; j++) {
        const float r = dfa_exp2p_host((float)j);
        if (r != ldexpf(1.f, j)) {
            if (bad < 5) fprintf(stderr, "  2^%d: %.9g\n", j, (double)r);
            bad++;
        }
    }
    CHECKF(bad == 0, "%d integers not exact", bad);
    CHECK(dfa_exp2p_host(0.f) == 1.f);
    CHECK(dfa_exp2p_host(-0.f) == 1.f);
}

static void test_extremes(void) {
    /* masked scores (-inf) and anything at or below -127 give exactly 0 (the kernel's P) */
    const float zs[] = {-INFINITY, -FLT_MAX, -1e30f, -1000.f, -200.f, -127.f, NAN};
    for (unsigned i = 0; i < sizeof zs / sizeof zs[0]; i++) {
        const float r = dfa_exp2p_host(zs[i]);
        CHECKF(r == 0.f && !signbit(r), "x = %g: %g", (double)zs[i], (double)r);
    }
    const float ts[] = {-126.999f, -126.5f, -126.001f};
    for (unsigned i = 0; i < sizeof ts / sizeof ts[0]; i++) {
        const float r = dfa_exp2p_host(ts[i]);
        CHECKF(r >= 0.f && r < 0x1p-125f, "x = %g: %g", (double)ts[i], (double)r);
    }
    /* monotone across the integer seams (a wrong exponent insertion jumps by 2x) */
    int nonmono = 0;
    for (int j = -125; j <= 8; j++) {
        const float below = nextafterf((float)j, -INFINITY);
        const float a = dfa_exp2p_host(below), b = dfa_exp2p_host((float)j);
        if (!(a <= b * (1.f + 2e-4f) && a >= b * (1.f - 2e-4f))) nonmono++;
    }
    CHECKF(nonmono == 0, "%d integer seams jump", nonmono);
}

/* the round-down add of the device (t = x +rd 1.5*2^23) equals 1.5*2^23 + floor(x) whenever the
 * sum is formed exactly and rounded down: check the host's floor against a double computation */
static void test_reduction(void) {
    int bad = 0;
    for (long i = -127L * 64; i <= 8L * 64; i++) {
        const float x = (float)i / 64.f + 1.f / 128.f;
        const double t = floor((double)x + 12582912.0); /* round-down add, in double exactly */
        if ((float)t != DFA_EXP2P_RND + floorf(x)) bad++;
    }
    CHECKF(bad == 0, "%d reductions differ", bad);
}

int main(void) {
    RUN(test_grid);
    RUN(test_integers);
    RUN(test_extremes);
    RUN(test_reduction);
    return test_summary();
}
