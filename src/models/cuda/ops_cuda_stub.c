/* ops_cuda_stub.c - built without nvcc: the GPU model ops report that CUDA is absent. */
#include "models/cuda/ops_cuda.h"

#define NO_CUDA(err) DFA_FAIL(err, DFA_ERR_UNSUPPORTED, "this build of dfa has no CUDA support")

dfa_status dfa_cuops_init(dfa_cuops **out, dfa_cuda *cu, dfa_error *err) {
    (void)cu;
    *out = 0;
    NO_CUDA(err);
}
void dfa_cuops_free(dfa_cuops *ops) { (void)ops; }
dfa_status dfa_cuops_linear(dfa_cuops *ops, const uint16_t *x, int M, int K, const uint16_t *W,
                            const uint16_t *bias, int N, int accumulate, uint16_t *y, dfa_error *err) {
    (void)ops; (void)x; (void)M; (void)K; (void)W; (void)bias; (void)N; (void)accumulate; (void)y;
    NO_CUDA(err);
}
dfa_status dfa_cuops_layernorm(dfa_cuops *ops, const uint16_t *x, int M, int N, const uint16_t *gamma,
                               const uint16_t *beta, float eps, uint16_t *y, dfa_error *err) {
    (void)ops; (void)x; (void)M; (void)N; (void)gamma; (void)beta; (void)eps; (void)y;
    NO_CUDA(err);
}
dfa_status dfa_cuops_rmsnorm(dfa_cuops *ops, const uint16_t *x, int M, int N, const uint16_t *gamma, float eps,
                             uint16_t *y, dfa_error *err) {
    (void)ops; (void)x; (void)M; (void)N; (void)gamma; (void)eps; (void)y;
    NO_CUDA(err);
}
dfa_status dfa_cuops_ln_modulate(dfa_cuops *ops, const uint16_t *x, int B, int T, int N, const uint16_t *shift,
                                 const uint16_t *scale, float eps, uint16_t *y, dfa_error *err) {
    (void)ops; (void)x; (void)B; (void)T; (void)N; (void)shift; (void)scale; (void)eps; (void)y;
    NO_CUDA(err);
}
dfa_status dfa_cuops_gate_add(dfa_cuops *ops, uint16_t *resid, int B, int T, int N, const uint16_t *gate,
                              const uint16_t *x, dfa_error *err) {
    (void)ops; (void)resid; (void)B; (void)T; (void)N; (void)gate; (void)x;
    NO_CUDA(err);
}
dfa_status dfa_cuops_act(dfa_cuops *ops, uint16_t *x, size_t n, dfa_act_kind act, dfa_error *err) {
    (void)ops; (void)x; (void)n; (void)act;
    NO_CUDA(err);
}
dfa_status dfa_cuops_rope(dfa_cuops *ops, uint16_t *x, int B, int T, int H, int D, const float *cos_t,
                          const float *sin_t, dfa_error *err) {
    (void)ops; (void)x; (void)B; (void)T; (void)H; (void)D; (void)cos_t; (void)sin_t;
    NO_CUDA(err);
}
dfa_status dfa_cuops_f32_to_bf16(dfa_cuops *ops, const float *src, uint16_t *dst, size_t n, dfa_error *err) {
    (void)ops; (void)src; (void)dst; (void)n;
    NO_CUDA(err);
}
dfa_status dfa_cuops_bf16_to_f32(dfa_cuops *ops, const uint16_t *src, float *dst, size_t n, dfa_error *err) {
    (void)ops; (void)src; (void)dst; (void)n;
    NO_CUDA(err);
}
dfa_status dfa_cuops_gemm_batched(dfa_cuops *ops, int trans_b, int M, int N, int K, float alpha, const uint16_t *A,
                                  int lda, long long sA, const uint16_t *B, int ldb, long long sB, void *C, int ldc,
                                  long long sC, int c_f32, int batch, dfa_error *err) {
    (void)ops; (void)trans_b; (void)M; (void)N; (void)K; (void)alpha; (void)A; (void)lda; (void)sA; (void)B;
    (void)ldb; (void)sB; (void)C; (void)ldc; (void)sC; (void)c_f32; (void)batch;
    NO_CUDA(err);
}
dfa_status dfa_cuops_softmax_bias(dfa_cuops *ops, const float *s, int rows, int L, int ld, const float *bias,
                                  uint16_t *p, dfa_error *err) {
    (void)ops; (void)s; (void)rows; (void)L; (void)ld; (void)bias; (void)p;
    NO_CUDA(err);
}
dfa_status dfa_cuops_heads_permute(dfa_cuops *ops, const uint16_t *x, int B, int T, int H, int D, int to_heads,
                                   uint16_t *y, dfa_error *err) {
    (void)ops; (void)x; (void)B; (void)T; (void)H; (void)D; (void)to_heads; (void)y;
    NO_CUDA(err);
}
dfa_status dfa_cuops_add_row(dfa_cuops *ops, const uint16_t *a, int B, int N, const uint16_t *row, uint16_t *y,
                             dfa_error *err) {
    (void)ops; (void)a; (void)B; (void)N; (void)row; (void)y;
    NO_CUDA(err);
}
dfa_status dfa_cuops_ln_modulate_strided(dfa_cuops *ops, const uint16_t *x, int B, int T, int N,
                                         const uint16_t *shift, const uint16_t *scale, size_t mod_stride, float eps,
                                         uint16_t *y, dfa_error *err) {
    (void)ops; (void)x; (void)B; (void)T; (void)N; (void)shift; (void)scale; (void)mod_stride; (void)eps; (void)y;
    NO_CUDA(err);
}
dfa_status dfa_cuops_gate_add_strided(dfa_cuops *ops, uint16_t *resid, int B, int T, int N, const uint16_t *gate,
                                      size_t gate_stride, const uint16_t *x, dfa_error *err) {
    (void)ops; (void)resid; (void)B; (void)T; (void)N; (void)gate; (void)gate_stride; (void)x;
    NO_CUDA(err);
}
dfa_status dfa_cuops_patchify(dfa_cuops *ops, const float *x, int B, int bcast, int C, int H, int W, int p, uint16_t *y,
                              dfa_error *err) {
    (void)ops; (void)x; (void)B; (void)bcast; (void)C; (void)H; (void)W; (void)p; (void)y;
    NO_CUDA(err);
}
dfa_status dfa_cuops_unpatchify(dfa_cuops *ops, const uint16_t *y, int B, int O, int H, int W, int p, float *out,
                                dfa_error *err) {
    (void)ops; (void)y; (void)B; (void)O; (void)H; (void)W; (void)p; (void)out;
    NO_CUDA(err);
}
dfa_status dfa_cuops_flow_step(dfa_cuops *ops, float *x, const float *vel, size_t n, int cfg, float scale, float dt,
                               dfa_error *err) {
    (void)ops; (void)x; (void)vel; (void)n; (void)cfg; (void)scale; (void)dt;
    NO_CUDA(err);
}
void dfa_cuops_set_gemm_timer(dfa_cuops *ops, double *secs) { (void)ops; (void)secs; }
