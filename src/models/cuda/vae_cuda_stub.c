/* vae_cuda_stub.c - built without nvcc: the VAE GPU kernels report that CUDA is absent. */
#include "models/cuda/vae_cuda.h"

#define NO_CUDA(err) DFA_FAIL(err, DFA_ERR_UNSUPPORTED, "this build of dfa has no CUDA support")

dfa_status dfa_vaecu_im2col3(void *stream, const uint16_t *x, int H, int W, int C, int row0, int nrows,
                             uint16_t *col, dfa_error *err) {
    (void)stream, (void)x, (void)H, (void)W, (void)C, (void)row0, (void)nrows, (void)col;
    NO_CUDA(err);
}
dfa_status dfa_vaecu_groupnorm(void *stream, const uint16_t *x, int HW, int C, int G, const uint16_t *gamma,
                               const uint16_t *beta, float eps, int silu, uint16_t *y, double *stats,
                               dfa_error *err) {
    (void)stream, (void)x, (void)HW, (void)C, (void)G, (void)gamma, (void)beta, (void)eps, (void)silu, (void)y,
        (void)stats;
    NO_CUDA(err);
}
dfa_status dfa_vaecu_upsample2x(void *stream, const uint16_t *x, int H, int W, int C, uint16_t *y, dfa_error *err) {
    (void)stream, (void)x, (void)H, (void)W, (void)C, (void)y;
    NO_CUDA(err);
}
dfa_status dfa_vaecu_softmax_rows(void *stream, uint16_t *s, int M, int N, float scale, dfa_error *err) {
    (void)stream, (void)s, (void)M, (void)N, (void)scale;
    NO_CUDA(err);
}
dfa_status dfa_vaecu_transpose(void *stream, const uint16_t *x, int N, int C, uint16_t *y, dfa_error *err) {
    (void)stream, (void)x, (void)N, (void)C, (void)y;
    NO_CUDA(err);
}
