/* clip.h - CLIPTextModel / CLIPTextModelWithProjection (transformers layout: config.json +
 * model.safetensors), CPU, f32 compute (weights of any float dtype are converted on load).
 * Pre-LN transformer with a causal mask; hidden states of any layer; pooled output at the EOS
 * position; text_projection when the checkpoint has one. Attention is plain dense attention
 * (dfa_op_attention), never the compressed dfa_attn_layer. */
#ifndef DFA_MODELS_CLIP_H
#define DFA_MODELS_CLIP_H

#include <stdint.h>

#include "dfa.h"

/* hidden-state selector: last_hidden_state (after the final layer norm) */
#define DFA_TEXT_LAST_HIDDEN 1000000

typedef enum dfa_text_act { DFA_TEXT_ACT_QUICK_GELU, DFA_TEXT_ACT_GELU, DFA_TEXT_ACT_GELU_TANH, DFA_TEXT_ACT_RELU } dfa_text_act;

typedef struct dfa_clip_config {
    int vocab_size, hidden, intermediate, heads, layers, max_pos;
    int projection_dim; /* 0 when the checkpoint has no text_projection */
    dfa_text_act act;
    float eps;
    int eos_token_id; /* 2: legacy configs, pooled at argmax(ids) */
} dfa_clip_config;

typedef struct dfa_clip dfa_clip;

/* dir: a transformers text-encoder folder (config.json + model.safetensors[.index.json]).
 * dfa_clip_load: f32 host weights, CPU forward (whatever the context's backend).
 * dfa_clip_load_cuda: bf16 device weights, GPU forward (CUDA context): f32 residual stream and
 * outputs, bf16 GEMM inputs (tests/gpu/test_text_cuda.c; the prompt encoder uses it on CUDA contexts). */
dfa_status dfa_clip_load(dfa_ctx *ctx, const char *dir, dfa_clip **out);
dfa_status dfa_clip_load_cuda(dfa_ctx *ctx, const char *dir, dfa_clip **out);
void dfa_clip_free(dfa_clip *m);
const dfa_clip_config *dfa_clip_get_config(const dfa_clip *m);

/* Run T (1..max_pos) token ids. Outputs may be NULL:
 *   hidden [T, hidden]: hidden_states[layer] with Python indexing over the layers+1 states
 *     (0 = embeddings, layers = last layer's output, -1 = the same, -2 = penultimate: SD3/SDXL),
 *     or DFA_TEXT_LAST_HIDDEN for last_hidden_state (final layer norm applied);
 *   pooled [hidden]: pooler_output (last_hidden_state at the EOS position);
 *   proj [projection_dim]: text_embeds = text_projection(pooled) (error if the model has none). */
dfa_status dfa_clip_encode(dfa_clip *m, const int32_t *ids, int T, int layer, float *hidden, float *pooled, float *proj);

#endif
