/* ops.h - the CPU building blocks every model shares (f32, row-major, host memory).
 * One implementation of each: models call these, never their own copies. CUDA versions
 * live in models/cuda/ behind an extern "C" header with the same names and a _cuda suffix. */
#ifndef DFA_MODELS_OPS_H
#define DFA_MODELS_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "dfa.h"

/* y[M, N] = x[M, K] . W[N, K]^T (+ bias[N] if not NULL): PyTorch nn.Linear layout. */
void dfa_op_linear(const dfa_ctx *ctx, const float *x, int M, int K, const float *W, const float *bias, int N,
                   float *y);
/* C[M, N] = alpha * A[M, K] . B[K, N] + beta * C, with row strides lda, ldb, ldc. */
void dfa_op_gemm(const dfa_ctx *ctx, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc);

/* 2-D convolution, one image, channels-first: y[Cout, Ho, Wo] = conv(x[Cin, H, W], w[Cout, Cin, k, k])
 * + bias (may be NULL), zero padding `pad`, stride `stride` (PyTorch nn.Conv2d, groups 1).
 * Im2col + GEMM over bands of output rows: ws is scratch of ws_floats floats, at least
 * dfa_op_conv2d_ws_min(); more lets the bands be taller. 1x1/stride-1/pad-0 needs none. */
size_t dfa_op_conv2d_ws_min(int Cin, int k, int Wo);
void dfa_op_conv2d(const dfa_ctx *ctx, const float *x, int Cin, int H, int W, const float *w, const float *bias,
                   int Cout, int k, int stride, int pad, float *y, float *ws, size_t ws_floats);
/* Nearest-neighbour 2x upsampling: y[C, 2H, 2W] from x[C, H, W]. */
void dfa_op_upsample2x_nearest(const float *x, int C, int H, int W, float *y);

/* Per-row normalisations over the last dimension N; gamma/beta may be NULL. x == y allowed. */
void dfa_op_layernorm(const dfa_ctx *ctx, const float *x, int M, int N, const float *gamma, const float *beta,
                      float eps, float *y);
void dfa_op_rmsnorm(const dfa_ctx *ctx, const float *x, int M, int N, const float *gamma, float eps, float *y);
/* GroupNorm over [C, HW] (one image, channels-first): groups of C/G channels. */
void dfa_op_groupnorm(const dfa_ctx *ctx, const float *x, int C, int HW, int G, const float *gamma,
                      const float *beta, float eps, float *y);

/* Elementwise, in place. */
void dfa_op_silu(float *x, size_t n);
void dfa_op_gelu_erf(float *x, size_t n);  /* exact GELU (nn.GELU()) */
void dfa_op_gelu_tanh(float *x, size_t n); /* approximate="tanh" */
void dfa_op_add(float *y, const float *x, size_t n);            /* y += x */
void dfa_op_scale(float *y, float s, size_t n);                 /* y *= s */
void dfa_op_softmax_rows(float *x, int M, int N);               /* stable, per row */

/* Dense multi-head attention on the host, for models whose attention is not compressed (the
 * text encoders). q: [T, H*D], k and v: [S, H*D], out: [T, H*D], all with row stride ld
 * (>= H*D). Per head: scores = scale * q.k^T, + bias[h, t, s] if bias is not NULL (T5's
 * relative position bias, shape [H, T, S]); keys s > t are masked when causal, keys with
 * key_mask[s] == 0 when key_mask is not NULL (masked scores are set to -FLT_MAX like
 * transformers' finfo.min, so a row with every key masked averages all values); softmax over
 * s; out = p.v. scratch: T*S floats. */
void dfa_op_attention(const dfa_ctx *ctx, const float *q, const float *k, const float *v, int T, int S, int H, int D,
                      int ld, float scale, int causal, const float *bias, const int32_t *key_mask, float *scratch,
                      float *out);

/* Sinusoidal timestep embedding (diffusers get_timestep_embedding): out[dim] for one t.
 * flip_sin_to_cos: [cos, sin] order; shift = downscale_freq_shift; scale multiplies args. */
void dfa_op_timestep_embedding(float t, int dim, int flip_sin_to_cos, float shift, float scale, int max_period,
                               float *out);

#endif
