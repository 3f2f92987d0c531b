/* text_cuda.h - the GPU kernels the text encoders need beyond models/cuda/ops_cuda.h: token
 * (+ position) embedding gather, dense attention with T5's bias / a causal mask / a key mask,
 * norms of an f32 residual stream, residual add, activations with an optional gate. bf16 is
 * what the GEMMs read and write; the residual stream and every kernel's arithmetic are f32.
 * Without CUDA (stub build) every call returns DFA_ERR_UNSUPPORTED. */
#ifndef DFA_MODELS_CUDA_TEXT_CUDA_H
#define DFA_MODELS_CUDA_TEXT_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "core/cuda_rt.h"
#include "core/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out[t, :] = tok[ids[t], :] (+ pos[t, :] when pos is not NULL), f32; ids on the device. */
dfa_status dfa_textk_embed(dfa_cuda *cu, const int32_t *ids, int T, const uint16_t *tok, const uint16_t *pos, int D,
                           float *out, dfa_error *err);
/* Per row of the f32 x[M, N]: RMS norm x * rsqrt(mean(x^2) + eps) * gamma (rms != 0), or LayerNorm
 * (x - mean) * rsqrt(var + eps) * gamma + beta; gamma / beta bf16 or NULL. Writes y16 (bf16) and / or
 * y32 (f32), whichever is not NULL; y32 may be x. */
dfa_status dfa_textk_norm(dfa_cuda *cu, const float *x, int M, int N, const uint16_t *gamma, const uint16_t *beta,
                          float eps, int rms, uint16_t *y16, float *y32, dfa_error *err);
/* x[i] += b[i]: a bf16 GEMM output into the f32 residual stream. */
dfa_status dfa_textk_add(dfa_cuda *cu, float *x, const uint16_t *b, size_t n, dfa_error *err);
/* Per head h and query t: softmax_s(scale * q_t.k_s + bias[h, t, s]; masked keys -> -FLT_MAX)
 * . v. q, k, v, out: [T, H*Dh] with row stride ld; bias f32 [H, T, T] or NULL; key_mask [T]
 * int32 or NULL; causal masks s > t. T <= 4096, Dh <= 256. */
dfa_status dfa_textk_attention(dfa_cuda *cu, const uint16_t *q, const uint16_t *k, const uint16_t *v, int T, int H,
                               int Dh, int ld, float scale, int causal, const float *bias, const int32_t *key_mask,
                               uint16_t *out, dfa_error *err);
typedef enum dfa_textk_act_kind {
    DFA_TEXTK_QUICK_GELU = 0, /* x * sigmoid(1.702 x) */
    DFA_TEXTK_RELU = 1,
    DFA_TEXTK_GELU_TANH = 2, /* gelu_new / gelu_pytorch_tanh */
    DFA_TEXTK_GELU_ERF = 3
} dfa_textk_act_kind;
/* x[i] = act(x[i]) * gate[i] (gate NULL: act(x[i])), in f32, one bf16 rounding at the end (T5's
 * gated-GELU: act(wi_0 h) * wi_1 h without rounding act(wi_0 h) first). */
dfa_status dfa_textk_act(dfa_cuda *cu, uint16_t *x, const uint16_t *gate, size_t n, dfa_textk_act_kind act,
                         dfa_error *err);

#ifdef __cplusplus
}
#endif
#endif
