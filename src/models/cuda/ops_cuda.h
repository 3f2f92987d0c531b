/* ops_cuda.h - the GPU building blocks the model engines share: cuBLASLt bf16 GEMMs and
 * fused elementwise kernels (norms, modulation, gates, activations, RoPE). Activations are
 * bf16 in device memory; every kernel computes in f32. C interface; the .cu behind it.
 * Without CUDA (cuda stub build) every call returns DFA_ERR_UNSUPPORTED. */
#ifndef DFA_MODELS_CUDA_OPS_CUDA_H
#define DFA_MODELS_CUDA_OPS_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "core/cuda_rt.h"
#include "core/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dfa_cuops dfa_cuops; /* cuBLASLt handle + workspace on one stream */

dfa_status dfa_cuops_init(dfa_cuops **out, dfa_cuda *cu, dfa_error *err);
void dfa_cuops_free(dfa_cuops *ops);

/* y[M, N] = x[M, K] . W[N, K]^T (+ bias[N]) (+ y if accumulate), bf16 in and out, f32
 * accumulation (nn.Linear layout). x, W, y must not alias. */
dfa_status dfa_cuops_linear(dfa_cuops *ops, const uint16_t *x, int M, int K, const uint16_t *W,
                            const uint16_t *bias, int N, int accumulate, uint16_t *y, dfa_error *err);

/* Per-row LayerNorm / RMSNorm over N columns with optional affine (NULL = none), in place allowed. */
dfa_status dfa_cuops_layernorm(dfa_cuops *ops, const uint16_t *x, int M, int N, const uint16_t *gamma,
                               const uint16_t *beta, float eps, uint16_t *y, dfa_error *err);
dfa_status dfa_cuops_rmsnorm(dfa_cuops *ops, const uint16_t *x, int M, int N, const uint16_t *gamma, float eps,
                             uint16_t *y, dfa_error *err);
/* AdaLN modulation, fused with a LayerNorm without affine (eps):
 * y[b, t, :] = LN(x[b, t, :]) * (1 + scale[b, :]) + shift[b, :]; x, y: [B, T, N]. */
dfa_status dfa_cuops_ln_modulate(dfa_cuops *ops, const uint16_t *x, int B, int T, int N, const uint16_t *shift,
                                 const uint16_t *scale, float eps, uint16_t *y, dfa_error *err);
/* resid[b, t, :] += gate[b, :] * x[b, t, :] (gate NULL: plain add). */
dfa_status dfa_cuops_gate_add(dfa_cuops *ops, uint16_t *resid, int B, int T, int N, const uint16_t *gate,
                              const uint16_t *x, dfa_error *err);
/* The same two with the batch rows of shift / scale / gate `stride` elements apart (>= N): the
 * [B, 6D] modulation rows of DiT / PixArt in one launch. */
dfa_status dfa_cuops_ln_modulate_strided(dfa_cuops *ops, const uint16_t *x, int B, int T, int N,
                                         const uint16_t *shift, const uint16_t *scale, size_t mod_stride, float eps,
                                         uint16_t *y, dfa_error *err);
dfa_status dfa_cuops_gate_add_strided(dfa_cuops *ops, uint16_t *resid, int B, int T, int N, const uint16_t *gate,
                                      size_t gate_stride, const uint16_t *x, dfa_error *err);
typedef enum dfa_cuops_act { DFA_ACT_SILU = 0, DFA_ACT_GELU_TANH = 1, DFA_ACT_GELU_ERF = 2 } dfa_act_kind;
dfa_status dfa_cuops_act(dfa_cuops *ops, uint16_t *x, size_t n, dfa_act_kind act, dfa_error *err);
/* Rotary embedding on x[B, T, H, D] in place with cos/sin f32 tables [T, D/2]; pairs are
 * interleaved (x[2i], x[2i+1]) as FLUX's apply_rotary_emb(use_real_unbind_dim=-1). */
dfa_status dfa_cuops_rope(dfa_cuops *ops, uint16_t *x, int B, int T, int H, int D, const float *cos_t,
                          const float *sin_t, dfa_error *err);
/* Strided batched row-major GEMM, bf16 A and B, f32 accumulation, C bf16 (c_f32 0) or f32:
 * for i < batch: C_i[M, N] = alpha * A_i[M, K] . op(B_i), op(B_i) = B_i^T with B_i [N, K] when
 * trans_b, else B_i [K, N]. Leading dims lda, ldb, ldc (elements, row-major); batch strides sA,
 * sB, sC (elements). C must not alias A or B. (PixArt's cross-attention scores and P.V.) */
dfa_status dfa_cuops_gemm_batched(dfa_cuops *ops, int trans_b, int M, int N, int K, float alpha, const uint16_t *A,
                                  int lda, long long sA, const uint16_t *B, int ldb, long long sB, void *C, int ldc,
                                  long long sC, int c_f32, int batch, dfa_error *err);
/* Row softmax with an additive key bias: p[r, j] = softmax_j(s[r, j] + bias[j]) for r < rows,
 * j < L; s f32 with row stride ld, p bf16 with row stride ld; bias [L] f32 or NULL. */
dfa_status dfa_cuops_softmax_bias(dfa_cuops *ops, const float *s, int rows, int L, int ld, const float *bias,
                                  uint16_t *p, dfa_error *err);
/* Head-major permutation: to_heads 1: y[b, h, t, d] = x[b, t, h, d]; 0: the inverse
 * (x [B, H, T, D] -> y [B, T, H, D]). x and y must not alias. */
dfa_status dfa_cuops_heads_permute(dfa_cuops *ops, const uint16_t *x, int B, int T, int H, int D, int to_heads,
                                   uint16_t *y, dfa_error *err);
/* y[b, :] = a[b, :] + row[:] for b < B rows of N (a == y allowed). */
dfa_status dfa_cuops_add_row(dfa_cuops *ops, const uint16_t *a, int B, int N, const uint16_t *row, uint16_t *y,
                             dfa_error *err);
/* Patch embedding input: x f32 [B (bcast: 1), C, H, W] -> y bf16 [B, (H/p) (W/p), C p p], each
 * patch vector in (c, ky, kx) order as the Conv2d weight; bcast 1: every batch item reads item 0
 * (SD3's cat([latents] * 2)). */
dfa_status dfa_cuops_patchify(dfa_cuops *ops, const float *x, int B, int bcast, int C, int H, int W, int p, uint16_t *y,
                              dfa_error *err);
/* The inverse for the output projection: y bf16 [B, (H/p) (W/p), p p O] ((py, px, o) order) ->
 * out f32 [B, O, H, W]. */
dfa_status dfa_cuops_unpatchify(dfa_cuops *ops, const uint16_t *y, int B, int O, int H, int W, int p, float *out,
                                dfa_error *err);
/* One flow-matching Euler step on f32 latents, with the CFG combine when cfg:
 *   v = cfg ? u + scale (c - u) with u = vel[i], c = vel[n + i] : vel[i];   x[i] = x[i] + dt v
 * every operation rounded to f32 on its own (no fused multiply-add), so the result is bit-equal
 * to dfa_flow_cfg_combine + dfa_flow_euler_step on the host. */
dfa_status dfa_cuops_flow_step(dfa_cuops *ops, float *x, const float *vel, size_t n, int cfg, float scale, float dt,
                               dfa_error *err);
/* GEMM timer (profiling): with secs non-NULL, CUDA events are recorded around every GEMM of
 * dfa_cuops_linear / dfa_cuops_gemm_batched and their GPU seconds are added to *secs when the
 * model collects its spans (core/cuda_rt.h; end of each forward); NULL: off (the default). */
void dfa_cuops_set_gemm_timer(dfa_cuops *ops, double *secs);
/* f32 <-> bf16 conversions on the device. */
dfa_status dfa_cuops_f32_to_bf16(dfa_cuops *ops, const float *src, uint16_t *dst, size_t n, dfa_error *err);
dfa_status dfa_cuops_bf16_to_f32(dfa_cuops *ops, const uint16_t *src, float *dst, size_t n, dfa_error *err);

#ifdef __cplusplus
}
#endif
#endif
