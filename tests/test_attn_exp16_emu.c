/* test_attn_exp16_emu.c - a CPU emulation of the softmax arithmetic of the CUDA attention
 * kernel's variants 5, 11 and 12 at D=64 (src/attn/cuda/attn_cuda_exp16.cu), against a float64
 * softmax on the same 16-bit inputs: the error that rounding the exponent x to bf16 / fp16
 * before the packed exp2 (variant 12) adds, predicted before the kernel runs on a GPU.
 *
 * Emulated per 128-key step, as the kernels do: s in f32 (the tensor core's f32 accumulation),
 * running max m, alpha = 2^((m_old - m) c), x = fma(s, c, -m c) in f32 (c = scale log2 e);
 *   v5:  p = 2^x in f32, l = l alpha + sum p (f32), O = O alpha + sum h(p) v;
 *   v11: as v5 but l = l alpha + sum h(p) (the row sum P 1 by wgmma from the rounded P);
 *   v12: p = h(2^h(x)) (x rounded to the 16-bit type, the result rounded to nearest), l as v11;
 *   v12n: v12 with an extra error of up to 1 unit of the 16-bit result's last place, random
 *        (ex2.approx.ftz.bf16x2's accuracy is not documented precisely: a pessimistic model);
 * h() the 16-bit dtype's round-to-nearest, the output h(O / l). Checks, on the GPU tests' inputs
 * (q, k uniform in [-2, 2], v in [-1, 1]), the SDPA check's shape (N = 1153) and the key-gain
 * inputs (keys scaled by up to 7x): v11's error within 10 % of v5's, v12's under the dense SDPA
 * check's bound with v5 standing in for cuDNN (<= 2 x its error + 1e-3), v12's and v12n's under
 * the GPU test's 1e-2, and (bf16) v12's error above v11's, so that the test sees the rounding.
 * v12n against the SDPA bound is printed, not checked (a pessimistic model). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/tensor.h"
#include "test.h"

enum { D = 64, STEP = 128, ROWS = 96 };
enum { V5 = 0, V11, V12, V12N, NV };
static const char *const VNAME[NV] = {"v5", "v11", "v12", "v12n"};

static unsigned long long g_seed = 0x9e3779b97f4a7c15ULL;

/* round to the 16-bit dtype (bf16 = 1, fp16 = 0) and back */
static float h16(float x, int bf16) {
    return bf16 ? dfa_bf16_to_f32(dfa_f32_to_bf16(x)) : dfa_f16_to_f32(dfa_f32_to_f16(x));
}

/* one row's output under variant v; q [D], k, v [n][D] (16-bit values as floats) */
static void emulate_row(int v, int bf16, const float *q, const float *k, const float *vv, int n, float c, float *out) {
    float m = -INFINITY, l = 0.f, o[D] = {0};
    for (int j0 = 0; j0 < n; j0 += STEP) {
        const int j1 = j0 + STEP < n ? j0 + STEP : n;
        float s[STEP], mx = m;
        for (int j = j0; j < j1; j++) {
            double acc = 0;
            for (int d = 0; d < D; d++) acc += (double)q[d] * k[(size_t)j * D + d];
            s[j - j0] = (float)acc;
            if (s[j - j0] > mx) mx = s[j - j0];
        }
        const float alpha = exp2f((m - mx) * c), ms = mx * c;
        m = mx;
        l *= alpha;
        for (int d = 0; d < D; d++) o[d] *= alpha;
        for (int j = j0; j < j1; j++) {
            const float x = fmaf(s[j - j0], c, -ms);
            float p, ph;
            if (v == V5 || v == V11) {
                p = exp2f(x);
                ph = h16(p, bf16);
                l += v == V5 ? p : ph;
            } else {
                float e = exp2f(h16(x, bf16));
                if (v == V12N) {
                    const float ulp = bf16 ? 0x1p-7f : 0x1p-10f; /* 1 ulp at a binade's bottom: the largest relative ulp */
                    e *= 1.f + ulp * (float)test_rng_uniform(&g_seed);
                }
                ph = h16(e, bf16);
                l += ph;
            }
            for (int d = 0; d < D; d++) o[d] += ph * vv[(size_t)j * D + d];
        }
    }
    for (int d = 0; d < D; d++) out[d] = h16(o[d] * (l > 0.f ? 1.f / l : 0.f), bf16);
}

/* rel L2 error of ROWS rows x D against float64, for each variant; gain: keys scaled by 1 + gain u */
static void run(const char *name, int n, int bf16, float amp_qk, float gain, double err[NV]) {
    float *q = malloc(sizeof(float) * ROWS * D), *k = malloc(sizeof(float) * (size_t)n * D),
          *vv = malloc(sizeof(float) * (size_t)n * D);
    double *w = malloc(sizeof(double) * n);
    CHECK(q && k && vv && w);
    if (!q || !k || !vv || !w) return;
    for (int i = 0; i < ROWS * D; i++) q[i] = h16(amp_qk * (float)test_rng_uniform(&g_seed), bf16);
    for (int j = 0; j < n; j++) {
        const float g = 1.f + gain * 0.5f * ((float)test_rng_uniform(&g_seed) + 1.f);
        for (int d = 0; d < D; d++) {
            k[(size_t)j * D + d] = h16(g * h16(amp_qk * (float)test_rng_uniform(&g_seed), bf16), bf16);
            vv[(size_t)j * D + d] = h16((float)test_rng_uniform(&g_seed), bf16);
        }
    }
    const double scale = 1.0 / sqrt((double)D);
    const float c = (float)scale * 1.4426950408889634f;
    double e2[NV] = {0}, r2 = 0;
    for (int i = 0; i < ROWS; i++) {
        const float *qi = q + (size_t)i * D;
        double mx = -INFINITY, sum = 0, ref[D] = {0};
        for (int j = 0; j < n; j++) {
            double acc = 0;
            for (int d = 0; d < D; d++) acc += (double)qi[d] * k[(size_t)j * D + d];
            w[j] = acc * scale;
            if (w[j] > mx) mx = w[j];
        }
        for (int j = 0; j < n; j++) {
            w[j] = exp(w[j] - mx);
            sum += w[j];
            for (int d = 0; d < D; d++) ref[d] += w[j] * vv[(size_t)j * D + d];
        }
        for (int d = 0; d < D; d++) r2 += (ref[d] / sum) * (ref[d] / sum);
        for (int v = 0; v < NV; v++) {
            float out[D];
            emulate_row(v, bf16, qi, k, vv, n, c, out);
            for (int d = 0; d < D; d++) e2[v] += (out[d] - ref[d] / sum) * (out[d] - ref[d] / sum);
        }
    }
    printf("  %-26s %-4s N=%5d:", name, bf16 ? "bf16" : "f16", n);
    for (int v = 0; v < NV; v++) {
        err[v] = sqrt(e2[v] / r2);
        printf(" %s %.2e", VNAME[v], err[v]);
    }
    printf("  (v12 / v5 %.2f)\n", err[V12] / err[V5]);
    free(q), free(k), free(vv), free(w);
}

static void check(const char *name, int n, int bf16, float amp_qk, float gain) {
    double e[NV];
    run(name, n, bf16, amp_qk, gain, e);
    CHECKF(e[V5] > 1e-4 && e[V5] < 1e-2, "%s: v5's emulated error %.3g outside (1e-4, 1e-2)", name, e[V5]);
    CHECKF(e[V11] <= 1.1 * e[V5] + 1e-4, "%s: v11 %.3g vs v5 %.3g", name, e[V11], e[V5]);
    for (int v = V12; v <= V12N; v++)
        CHECKF(e[v] < 1e-2, "%s: %s's emulated error %.3g >= 1e-2 (the GPU test's bound)", name, VNAME[v], e[v]);
    CHECKF(e[V12] <= 2 * e[V5] + 1e-3, "%s: v12's emulated error %.3g > 2 x v5's %.3g + 1e-3 (the SDPA check)", name,
           e[V12], e[V5]);
    /* the pessimistic model is reported, not required: it can cross the SDPA check's bound */
    if (e[V12N] > 2 * e[V5] + 1e-3)
        printf("    note: v12n %.2e > 2 x v5 + 1e-3 = %.2e: the dense SDPA check could fail for v12 if the MUFU's bf16 "
               "result is off by a full ulp\n", e[V12N], 2 * e[V5] + 1e-3);
    if (bf16) CHECKF(e[V12] > e[V11], "%s: v12 %.3g not above v11 %.3g: x is not rounded?", name, e[V12], e[V11]);
}

static void test_gpu_test_inputs(void) {
    check("GPU test inputs", 4608, 1, 2.f, 0.f);
    check("GPU test inputs", 4608, 0, 2.f, 0.f);
    check("SDPA check shape", 1153, 1, 2.f, 0.f);
}

static void test_key_gains(void) {
    check("key gains x7", 1100, 1, 2.f, 6.f);
    check("key gains x7", 1100, 0, 2.f, 6.f);
}

/* logits 4x larger than the tests' (q, k in [-4, 4]): far more of a row's weight at |x| >> 1 */
static void test_peaked(void) {
    check("peaked (q, k in [-4, 4])", 4608, 1, 4.f, 0.f);
}

int main(void) {
    RUN(test_gpu_test_inputs);
    RUN(test_key_gains);
    RUN(test_peaked);
    return test_summary();
}
