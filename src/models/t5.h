/* t5.h - T5EncoderModel (transformers layout: config.json + model.safetensors[.index.json]),
 * CPU, f32 compute. RMS layer norm (no mean, no bias), attention WITHOUT 1/sqrt(d) scaling plus
 * a bidirectional relative position bias whose table only layer 0 holds (shared by all layers),
 * gated-GELU FFN (v1.1 / XXL: wo(gelu_new(wi_0 x) * wi_1 x)) or ReLU FFN (original T5). */
#ifndef DFA_MODELS_T5_H
#define DFA_MODELS_T5_H

#include <stdint.h>

#include "dfa.h"

typedef struct dfa_t5_config {
    int vocab_size, d_model, d_kv, heads, d_ff, layers;
    int num_buckets, max_distance;
    int gated;     /* 1: wi_0/wi_1 gated FFN */
    int act;       /* dfa_text_act (clip.h): gelu_new for gated-gelu, relu */
    float eps;
} dfa_t5_config;

typedef struct dfa_t5 dfa_t5;

/* dfa_t5_load: f32 host weights, CPU forward (whatever the context's backend).
 * dfa_t5_load_cuda: bf16 device weights, GPU forward (CUDA context): f32 residual stream, norms,
 * softmax and output, bf16 GEMM inputs (tests/gpu/test_text_cuda.c; the prompt encoder uses it on
 * CUDA contexts). */
dfa_status dfa_t5_load(dfa_ctx *ctx, const char *dir, dfa_t5 **out);
dfa_status dfa_t5_load_cuda(dfa_ctx *ctx, const char *dir, dfa_t5 **out);
void dfa_t5_free(dfa_t5 *m);
const dfa_t5_config *dfa_t5_get_config(const dfa_t5 *m);

/* last_hidden_state [T, d_model] for T >= 1 token ids. mask: NULL (every key attends: what
 * FLUX and SD3 do) or T entries, 0 for padding keys (PixArt passes the tokenizer's mask). */
dfa_status dfa_t5_encode(dfa_t5 *m, const int32_t *ids, const int32_t *mask, int T, float *out);

/* The bucket of relative position (key - query) in T5's bidirectional scheme (exposed for tests). */
int dfa_t5_bucket(int rel, int num_buckets, int max_distance);

#endif
