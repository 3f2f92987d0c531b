/* attn_exp2_poly.h - 2^x on the FMA pipe (FlashAttention-4's exp2 emulation), shared by the
 * CUDA kernel (attn_cuda_wgmma3e.cu, through ex2_emu in attn_cuda_wgmma_dev.cuh) and the CPU
 * unit test (tests/test_exp2_poly.c). Plain C; no CUDA needed to include it.
 *
 * Cody-Waite range reduction: x = j + f, j = floor(x), f in [0, 1); 2^x = 2^j * p(f) with
 * p(f) = 1 + f (c1 + f (c2 + f c3)) (3 FMAs), a relative-error minimax fit with p(0) = 1 exactly
 * (so 2^j is exact at integers, the row max gives exactly 1). Max relative error on [0, 1):
 * 8.6e-5 (Lawson iteration on a 20001-point grid, coefficients rounded to f32; re-fit by
 * tests/test_exp2_poly.c's grid check); bf16's half ulp is 2e-3.
 *
 * j is found with one add in round-down mode: t = x +rd 1.5*2^23 holds 1.5*2^23 + floor(x)
 * exactly (|x| < 2^22), so t - 1.5*2^23 = j and x - j = f are exact, and the low bits of t's
 * encoding are j + 0x400000; (bits(t) << 23) drops everything but j << 23 (two's complement), and
 * an integer add puts it into p's exponent field. x is clamped below at -127 first: x <= -127,
 * -inf (masked scores) and NaN give exactly +0 (j = -127, f = 0, p = 1: the bits cancel); x in
 * (-127, -126) gives a value in [0, 2^-125) (exponent field 0), never NaN or negative. Valid for
 * x up to 127 (the kernel passes x <= 8). The kernel's ex2_emu (attn_cuda_wgmma_dev.cuh) is the
 * same sequence as inline PTX with these constants as operands. */
#ifndef DFA_ATTN_EXP2_POLY_H
#define DFA_ATTN_EXP2_POLY_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#define DFA_EXP2P_C1 0x1.63e65ap-1f /* 0.695116818 */
#define DFA_EXP2P_C2 0x1.d23776p-3f /* 0.227644846 */
#define DFA_EXP2P_C3 0x1.3baacap-4f /* 0.0770671740 */
#define DFA_EXP2P_XMIN (-127.0f)
#define DFA_EXP2P_RND 12582912.0f /* 1.5 * 2^23 */
#define DFA_EXP2P_MAX_REL 1e-4    /* the bound the unit test holds it to, for x in [-126, 127] */

#if defined(__CUDACC__)
#define DFA_EXP2P_FN static __host__ __device__ __forceinline__
#else
#define DFA_EXP2P_FN static inline
#endif

/* p(f) ~ 2^f on [0, 1) */
DFA_EXP2P_FN float dfa_exp2p_poly(float f) {
    return fmaf(fmaf(fmaf(DFA_EXP2P_C3, f, DFA_EXP2P_C2), f, DFA_EXP2P_C1), f, 1.0f);
}

/* t = 1.5*2^23 + floor(x) (exact), p = p(x - floor(x)): 2^floor(x) * p by an integer add */
DFA_EXP2P_FN float dfa_exp2p_combine(float t, float p) {
    uint32_t bt, bp;
    memcpy(&bt, &t, 4);
    memcpy(&bp, &p, 4);
    bp += bt << 23;
    float r;
    memcpy(&r, &bp, 4);
    return r;
}

/* The host form (the device's ex2_emu is the same arithmetic with the floor as a round-down
 * add): used by the unit test. */
static inline float dfa_exp2p_host(float x) {
    x = fmaxf(x, DFA_EXP2P_XMIN); /* fmaxf(NaN, -127) = -127 */
    const float j = floorf(x);
    const float t = DFA_EXP2P_RND + j; /* exact */
    return dfa_exp2p_combine(t, dfa_exp2p_poly(x - j));
}

#endif
