/* text_cuda_stub.c - built without nvcc: the text-encoder kernels report that CUDA is absent. */
#include "models/cuda/text_cuda.h"

#define NO_CUDA(err) DFA_FAIL(err, DFA_ERR_UNSUPPORTED, "this build of dfa has no CUDA support")

dfa_status dfa_textk_embed(dfa_cuda *cu, const int32_t *ids, int T, const uint16_t *tok, const uint16_t *pos, int D,
                           float *out, dfa_error *err) {
    (void)cu, (void)ids, (void)T, (void)tok, (void)pos, (void)D, (void)out;
    NO_CUDA(err);
}
dfa_status dfa_textk_norm(dfa_cuda *cu, const float *x, int M, int N, const uint16_t *gamma, const uint16_t *beta,
                          float eps, int rms, uint16_t *y16, float *y32, dfa_error *err) {
    (void)cu, (void)x, (void)M, (void)N, (void)gamma, (void)beta, (void)eps, (void)rms, (void)y16, (void)y32;
    NO_CUDA(err);
}
dfa_status dfa_textk_add(dfa_cuda *cu, float *x, const uint16_t *b, size_t n, dfa_error *err) {
    (void)cu, (void)x, (void)b, (void)n;
    NO_CUDA(err);
}
dfa_status dfa_textk_attention(dfa_cuda *cu, const uint16_t *q, const uint16_t *k, const uint16_t *v, int T, int H,
                               int Dh, int ld, float scale, int causal, const float *bias, const int32_t *key_mask,
                               uint16_t *out, dfa_error *err) {
    (void)cu, (void)q, (void)k, (void)v, (void)T, (void)H, (void)Dh, (void)ld, (void)scale, (void)causal, (void)bias,
        (void)key_mask, (void)out;
    NO_CUDA(err);
}
dfa_status dfa_textk_act(dfa_cuda *cu, uint16_t *x, const uint16_t *gate, size_t n, dfa_textk_act_kind act,
                         dfa_error *err) {
    (void)cu, (void)x, (void)gate, (void)n, (void)act;
    NO_CUDA(err);
}
