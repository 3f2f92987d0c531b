/* text_cuda.h - the GPU kernels the text encoders need beyond models/cuda/ops_cuda.h: token
 * (+ position) embedding gather, dense attention with T5's bias / a causal mask / a key mask,
 * quick_gelu and relu, elementwise product. bf16 in device memory, f32 inside the kernels.
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

/* out[t, :] = tok[ids[t], :] (+ pos[t, :] when pos is not NULL); ids on the device. */
dfa_status dfa_textk_embed(dfa_cuda *cu, const int32_t *ids, int T, const uint16_t *tok, const uint16_t *pos, int D,
                           uint16_t *out, dfa_error *err);
/* Per head h and query t: softmax_s(scale * q_t.k_s + bias[h, t, s]; masked keys -> -FLT_MAX)
 * . v. q, k, v, out: [T, H*Dh] with row stride ld; bias f32 [H, T, T] or NULL; key_mask [T]
 * int32 or NULL; causal masks s > t. T <= 4096, Dh <= 256. */
dfa_status dfa_textk_attention(dfa_cuda *cu, const uint16_t *q, const uint16_t *k, const uint16_t *v, int T, int H,
                               int Dh, int ld, float scale, int causal, const float *bias, const int32_t *key_mask,
                               uint16_t *out, dfa_error *err);
typedef enum dfa_textk_act_kind { DFA_TEXTK_QUICK_GELU = 0, DFA_TEXTK_RELU = 1 } dfa_textk_act_kind;
dfa_status dfa_textk_act(dfa_cuda *cu, uint16_t *x, size_t n, dfa_textk_act_kind act, dfa_error *err);
/* a[i] *= b[i] */
dfa_status dfa_textk_mul(dfa_cuda *cu, uint16_t *a, const uint16_t *b, size_t n, dfa_error *err);

#ifdef __cplusplus
}
#endif
#endif
