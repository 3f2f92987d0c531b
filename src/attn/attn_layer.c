/* attn_layer.c - dfa_attn_layer(). FIRST SLICE: every head FULL on the CPU, plain loops.
 * The plan-driven dispatch replaces this body (attention-methods issue). */
#include <math.h>
#include <stdlib.h>

#include "attn/attn.h"
#include "core/ctx.h"

static dfa_status check_qkv(dfa_ctx *ctx, const dfa_attn_layout *layout, const dfa_tensor *q, const dfa_tensor *k,
                            const dfa_tensor *v, const dfa_tensor *out) {
    if (dfa_layout_valid(layout))
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "attention layout invalid: n_vis=%d n_text=%d block=%d", layout->n_vis,
                     layout->n_text, layout->block);
    const dfa_tensor *all[4] = {q, k, v, out};
    for (int i = 0; i < 4; i++) {
        if (all[i]->ndim != 4 || !dfa_tensor_same_shape(all[i], q) || all[i]->dtype != q->dtype ||
            all[i]->dev != q->dev) {
            char a[96], b[96];
            DFA_CTX_FAIL(ctx, DFA_ERR_SHAPE, "attention tensor %d: %s %s vs q %s %s (need [B, N, H, D], one dtype)", i,
                         dfa_dtype_name(all[i]->dtype), dfa_shape_str(all[i]->ndim, all[i]->shape, a, sizeof a),
                         dfa_dtype_name(q->dtype), dfa_shape_str(q->ndim, q->shape, b, sizeof b));
        }
    }
    if (q->shape[1] != dfa_layout_tokens(layout))
        DFA_CTX_FAIL(ctx, DFA_ERR_SHAPE, "attention: q has %lld tokens, layout has %d", (long long)q->shape[1],
                     dfa_layout_tokens(layout));
    return DFA_OK;
}

dfa_status dfa_attn_layer(dfa_ctx *ctx, int layer, const dfa_attn_layout *layout, const dfa_tensor *q,
                          const dfa_tensor *k, const dfa_tensor *v, dfa_tensor *out) {
    (void)layer;
    DFA_TRY(check_qkv(ctx, layout, q, k, v, out));
    if (q->dev != DFA_DEV_CPU || q->dtype != DFA_F32)
        DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED, "attention: only f32 CPU tensors in this build slice");
    const int B = (int)q->shape[0], N = (int)q->shape[1], H = (int)q->shape[2], D = (int)q->shape[3];
    const float scale = 1.0f / sqrtf((float)D);
    const float *Q = q->data, *K = k->data, *V = v->data;
    float *O = out->data;
    const size_t rs = (size_t)H * D; /* token stride */
#pragma omp parallel num_threads(ctx->n_threads)
    {
        float *s = malloc((size_t)N * sizeof(float));
#pragma omp for collapse(2) schedule(static)
        for (int bh = 0; bh < B * H; bh++) {
            for (int i = 0; i < N; i++) {
                if (!s) continue;
                int b = bh / H, h = bh % H;
                const float *qi = Q + ((size_t)b * N + i) * rs + (size_t)h * D;
                float m = -INFINITY;
                for (int j = 0; j < N; j++) {
                    const float *kj = K + ((size_t)b * N + j) * rs + (size_t)h * D;
                    float acc = 0;
                    for (int d = 0; d < D; d++) acc += qi[d] * kj[d];
                    s[j] = acc * scale;
                    if (s[j] > m) m = s[j];
                }
                double sum = 0;
                for (int j = 0; j < N; j++) {
                    s[j] = expf(s[j] - m);
                    sum += s[j];
                }
                float *oi = O + ((size_t)b * N + i) * rs + (size_t)h * D;
                for (int d = 0; d < D; d++) oi[d] = 0;
                for (int j = 0; j < N; j++) {
                    const float *vj = V + ((size_t)b * N + j) * rs + (size_t)h * D;
                    float p = (float)(s[j] / sum);
                    for (int d = 0; d < D; d++) oi[d] += p * vj[d];
                }
            }
        }
        free(s);
    }
    return DFA_OK;
}
