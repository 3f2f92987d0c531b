/* vae_cuda.h - kernels of the VAE decoder's GPU path (bf16 activations, channels-last
 * [H, W, C], f32 math). C interface; the .cu behind it; without CUDA every call returns
 * DFA_ERR_UNSUPPORTED (vae_cuda_stub.c). `stream` is a cudaStream_t. */
#ifndef DFA_MODELS_CUDA_VAE_CUDA_H
#define DFA_MODELS_CUDA_VAE_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 3x3, stride 1, zero pad 1 im2col of output rows [row0, row0 + nrows) of x [H, W, C]:
 * col[(r * W + j), c * 9 + ky * 3 + kx] (the PyTorch weight's flatten order). */
dfa_status dfa_vaecu_im2col3(void *stream, const uint16_t *x, int H, int W, int C, int row0, int nrows,
                             uint16_t *col, dfa_error *err);
/* GroupNorm over x [HW, C] (G groups of C/G channels), affine, optional SiLU; y may alias x.
 * stats: 2 * G doubles of device scratch. */
dfa_status dfa_vaecu_groupnorm(void *stream, const uint16_t *x, int HW, int C, int G, const uint16_t *gamma,
                               const uint16_t *beta, float eps, int silu, uint16_t *y, double *stats,
                               dfa_error *err);
/* Nearest 2x: y [2H, 2W, C] from x [H, W, C]. */
dfa_status dfa_vaecu_upsample2x(void *stream, const uint16_t *x, int H, int W, int C, uint16_t *y, dfa_error *err);
/* Row softmax of s [M, N] in place, scaled first: softmax(scale * s). */
dfa_status dfa_vaecu_softmax_rows(void *stream, uint16_t *s, int M, int N, float scale, dfa_error *err);
/* y [C, N] = x [N, C]^T. */
dfa_status dfa_vaecu_transpose(void *stream, const uint16_t *x, int N, int C, uint16_t *y, dfa_error *err);

#ifdef __cplusplus
}
#endif
#endif
