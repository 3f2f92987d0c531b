/* clip.c - CLIP text encoder (see clip.h). Formulas follow transformers' modeling_clip.py:
 *   x = tok_emb[ids] + pos_emb[0..T)
 *   per layer: x += out_proj(attn(ln1(x)), causal, scale 1/sqrt(d_head)); x += fc2(act(fc1(ln2(x))))
 *   last_hidden_state = final_layer_norm(x); pooled = last_hidden_state[eos position]
 *   eos position: argmax(ids) when eos_token_id == 2 (legacy configs), else the first id == eos. */
#include "models/clip.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ctx.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "models/cuda/ops_cuda.h"
#include "models/cuda/text_cuda.h"
#include "models/ops.h"
#include "models/wload.h"

typedef struct clip_layer {
    float *ln1_w, *ln1_b, *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b;
    float *ln2_w, *ln2_b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} clip_layer;

/* On the CUDA backend the weight pointers hold bf16 DEVICE memory (read through BF()). */
struct dfa_clip {
    dfa_ctx *ctx;
    dfa_clip_config cfg;
    float *tok_emb, *pos_emb, *fln_w, *fln_b, *proj_w;
    clip_layer *L;
    void *block; /* every weight, one context-owned block */
    dfa_arena act;
    int gpu;
    dfa_cuops *ops;
};
#define BF(p) ((const uint16_t *)(const void *)(p))

const dfa_clip_config *dfa_clip_get_config(const dfa_clip *m) { return &m->cfg; }

static dfa_status parse_act(dfa_ctx *ctx, const char *s, const char *what, dfa_text_act *out) {
    if (strcmp(s, "quick_gelu") == 0) *out = DFA_TEXT_ACT_QUICK_GELU;
    else if (strcmp(s, "gelu") == 0) *out = DFA_TEXT_ACT_GELU;
    else if (strcmp(s, "gelu_new") == 0 || strcmp(s, "gelu_pytorch_tanh") == 0) *out = DFA_TEXT_ACT_GELU_TANH;
    else if (strcmp(s, "relu") == 0) *out = DFA_TEXT_ACT_RELU;
    else DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED, "%s: hidden_act '%s' is not supported (quick_gelu, gelu, gelu_new, relu)", what, s);
    return DFA_OK;
}

static void apply_act(dfa_text_act a, float *x, size_t n) {
    switch (a) {
    case DFA_TEXT_ACT_QUICK_GELU:
        for (size_t i = 0; i < n; i++) x[i] = x[i] / (1.0f + expf(-1.702f * x[i]));
        break;
    case DFA_TEXT_ACT_GELU: dfa_op_gelu_erf(x, n); break;
    case DFA_TEXT_ACT_GELU_TANH: dfa_op_gelu_tanh(x, n); break;
    case DFA_TEXT_ACT_RELU:
        for (size_t i = 0; i < n; i++) x[i] = x[i] > 0 ? x[i] : 0;
        break;
    }
}

static dfa_status read_config(dfa_ctx *ctx, const char *dir, const dfa_safetensors *st, dfa_clip_config *c) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    cJSON *root;
    dfa_error *e = &ctx->err;
    DFA_TRY(dfa_json_read_file(path, &root, e));
    /* CLIPConfig (full model) nests the text part under text_config */
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(root, "text_config");
    const cJSON *o = cJSON_IsObject(tc) ? tc : root;
    dfa_status s = DFA_OK;
    const char *act = "quick_gelu";
    double eps = 1e-5;
    if (!s) s = dfa_json_int(o, "hidden_size", path, &c->hidden, e);
    if (!s) s = dfa_json_int(o, "intermediate_size", path, &c->intermediate, e);
    if (!s) s = dfa_json_int(o, "num_attention_heads", path, &c->heads, e);
    if (!s) s = dfa_json_int(o, "num_hidden_layers", path, &c->layers, e);
    if (!s) s = dfa_json_int_or(o, "max_position_embeddings", path, 77, &c->max_pos, e);
    if (!s) s = dfa_json_int_or(o, "vocab_size", path, 49408, &c->vocab_size, e);
    if (!s) s = dfa_json_int_or(o, "eos_token_id", path, 2, &c->eos_token_id, e);
    if (!s) s = dfa_json_double_or(o, "layer_norm_eps", path, 1e-5, &eps, e);
    if (!s && cJSON_GetObjectItemCaseSensitive(o, "hidden_act")) s = dfa_json_string(o, "hidden_act", path, &act, e);
    if (!s) s = parse_act(ctx, act, path, &c->act);
    c->eps = (float)eps;
    c->projection_dim = 0;
    const dfa_st_tensor *pt = dfa_st_find(st, "text_projection.weight");
    if (!s && pt) {
        if (pt->ndim != 2 || pt->shape[1] != c->hidden)
            s = DFA_SET(e, DFA_ERR_SHAPE, "%s: text_projection.weight must be [projection_dim, %d]", dir, c->hidden);
        else c->projection_dim = (int)pt->shape[0];
    }
    if (!s && (c->hidden <= 0 || c->heads <= 0 || c->hidden % c->heads || c->layers <= 0 || c->intermediate <= 0 ||
               c->max_pos <= 0 || c->vocab_size <= 0))
        s = DFA_SET(e, DFA_ERR_FORMAT, "%s: inconsistent sizes (hidden %d, heads %d, layers %d, intermediate %d)", path,
                    c->hidden, c->heads, c->layers, c->intermediate);
    cJSON_Delete(root);
    return s;
}

static dfa_status load_impl(dfa_ctx *ctx, const char *dir, int gpu, dfa_clip **out) {
    *out = NULL;
    dfa_safetensors *st = NULL;
    DFA_TRY(dfa_st_open(&st, dir, &ctx->err));
    dfa_clip *m = calloc(1, sizeof *m);
    dfa_wspec *ws = NULL;
    dfa_status s = DFA_OK;
    if (!m) {
        dfa_st_close(st);
        DFA_CTX_FAIL(ctx, DFA_ERR_OOM, "clip: out of memory");
    }
    m->ctx = ctx;
    s = read_config(ctx, dir, st, &m->cfg);
    const dfa_clip_config *c = &m->cfg;
    int nw = 5 + 16 * (s ? 0 : c->layers);
    if (!s) {
        m->L = calloc((size_t)c->layers, sizeof *m->L);
        ws = calloc((size_t)nw, sizeof *ws);
        if (!m->L || !ws) s = DFA_SET(&ctx->err, DFA_ERR_OOM, "clip: out of memory");
    }
    if (!s) {
        /* the weight table: names as transformers writes them; checkpoints carry a "text_model."
         * prefix, CLIPTextModel.state_dict() of transformers 5 does not: accept both */
        int n = 0, D = c->hidden, I = c->intermediate;
        const char *tm = dfa_st_find(st, "text_model.embeddings.token_embedding.weight") ? "text_model." : "";
#define W(slot, nd, a, b, ...)                                         \
    do {                                                               \
        ws[n].dst = &(slot);                                           \
        snprintf(ws[n].name, sizeof ws[n].name, __VA_ARGS__);          \
        ws[n].ndim = nd, ws[n].shape[0] = a, ws[n].shape[1] = b;       \
        n++;                                                           \
    } while (0)
        W(m->tok_emb, 2, c->vocab_size, D, "%sembeddings.token_embedding.weight", tm);
        W(m->pos_emb, 2, c->max_pos, D, "%sembeddings.position_embedding.weight", tm);
        W(m->fln_w, 1, D, 0, "%sfinal_layer_norm.weight", tm);
        W(m->fln_b, 1, D, 0, "%sfinal_layer_norm.bias", tm);
        if (c->projection_dim) W(m->proj_w, 2, c->projection_dim, D, "text_projection.weight");
        for (int l = 0; l < c->layers; l++) {
            clip_layer *y = &m->L[l];
            char p[64];
            snprintf(p, sizeof p, "%sencoder.layers", tm);
            W(y->ln1_w, 1, D, 0, "%s.%d.layer_norm1.weight", p, l);
            W(y->ln1_b, 1, D, 0, "%s.%d.layer_norm1.bias", p, l);
            W(y->q_w, 2, D, D, "%s.%d.self_attn.q_proj.weight", p, l);
            W(y->q_b, 1, D, 0, "%s.%d.self_attn.q_proj.bias", p, l);
            W(y->k_w, 2, D, D, "%s.%d.self_attn.k_proj.weight", p, l);
            W(y->k_b, 1, D, 0, "%s.%d.self_attn.k_proj.bias", p, l);
            W(y->v_w, 2, D, D, "%s.%d.self_attn.v_proj.weight", p, l);
            W(y->v_b, 1, D, 0, "%s.%d.self_attn.v_proj.bias", p, l);
            W(y->o_w, 2, D, D, "%s.%d.self_attn.out_proj.weight", p, l);
            W(y->o_b, 1, D, 0, "%s.%d.self_attn.out_proj.bias", p, l);
            W(y->ln2_w, 1, D, 0, "%s.%d.layer_norm2.weight", p, l);
            W(y->ln2_b, 1, D, 0, "%s.%d.layer_norm2.bias", p, l);
            W(y->fc1_w, 2, I, D, "%s.%d.mlp.fc1.weight", p, l);
            W(y->fc1_b, 1, I, 0, "%s.%d.mlp.fc1.bias", p, l);
            W(y->fc2_w, 2, D, I, "%s.%d.mlp.fc2.weight", p, l);
            W(y->fc2_b, 1, D, 0, "%s.%d.mlp.fc2.bias", p, l);
        }
#undef W
        nw = n;
        /* CPU: f32 host weights; CUDA: bf16 device weights */
        m->gpu = gpu;
        if (m->gpu) s = dfa_cuops_init(&m->ops, ctx->cuda, &ctx->err);
        if (!s) s = dfa_wspec_place(ctx, st, ws, nw, m->gpu, "clip weights", &m->block);
    }
    if (!s) {
        /* activations for max_pos tokens: x, h, q, k, v, a [T, D]; mlp [T, I]; scores [T, T]
         * (CUDA: f32 x, y [T, D] and the projection; bf16 h, q, k, v, a [T, D], f [T, I], the
         * projection's input; ids) */
        size_t T = (size_t)c->max_pos, D = (size_t)c->hidden, I = (size_t)c->intermediate;
        size_t P = (size_t)c->projection_dim;
        size_t bytes = m->gpu ? (5 * T * D + T * I + P + 1) * 2 + T * 4 + (2 * T * D + P + 1) * 4 + 16 * 256
                              : (6 * T * D + T * I + T * T) * sizeof(float) + 16 * 256;
        s = dfa_arena_init(ctx, &m->act, m->gpu ? DFA_DEV_CUDA : DFA_DEV_CPU, bytes, "clip activations");
    }
    free(ws);
    dfa_st_close(st);
    if (s) {
        dfa_error_wrap(&ctx->err, "loading CLIP text encoder '%s'", dir);
        dfa_clip_free(m);
        return s;
    }
    *out = m;
    return DFA_OK;
}

dfa_status dfa_clip_load(dfa_ctx *ctx, const char *dir, dfa_clip **out) { return load_impl(ctx, dir, 0, out); }

dfa_status dfa_clip_load_cuda(dfa_ctx *ctx, const char *dir, dfa_clip **out) {
    *out = NULL;
    if (!ctx->cuda) DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED, "clip: the CUDA load needs a context with the CUDA backend");
    return load_impl(ctx, dir, 1, out);
}

void dfa_clip_free(dfa_clip *m) {
    if (!m) return;
    if (m->block) dfa_ctx_mem_release(m->ctx, m->block);
    if (m->act.base) dfa_arena_release(m->ctx, &m->act);
    dfa_cuops_free(m->ops);
    free(m->L);
    free(m);
}

static int eos_position(const dfa_clip_config *c, const int32_t *ids, int T) {
    int eos = 0;
    if (c->eos_token_id == 2) {
        for (int t = 1; t < T; t++)
            if (ids[t] > ids[eos]) eos = t;
    } else {
        for (int t = 0; t < T; t++)
            if (ids[t] == c->eos_token_id) {
                eos = t;
                break;
            }
    }
    return eos;
}

/* The same forward on the GPU: f32 residual stream x (so the hidden states the pipelines take are
 * not rounded), norms and output; bf16 only where a GEMM reads or writes (weights, normed input,
 * q / k / v, attention output, act(fc1), each branch's output before it is added to x). */
static dfa_status clip_encode_cuda(dfa_clip *m, const int32_t *ids, int T, int want, int last, float *hidden,
                                   float *pooled, float *proj) {
    dfa_ctx *ctx = m->ctx;
    dfa_error *e = &ctx->err;
    const dfa_clip_config *c = &m->cfg;
    int D = c->hidden, I = c->intermediate, H = c->heads, L = c->layers, P = c->projection_dim;
    size_t TD = (size_t)T * D;
    dfa_arena_reset(&m->act);
    uint16_t *h, *q, *k, *v, *a, *f, *pb;
    int32_t *ids_d;
    float *x, *y, *pf;
    DFA_TRY(dfa_arena_alloc(ctx, &m->act, TD * 4, (void **)&x));
    DFA_TRY(dfa_arena_alloc(ctx, &m->act, TD * 4, (void **)&y));
    DFA_TRY(dfa_arena_alloc(ctx, &m->act, TD * 2, (void **)&h));
    DFA_TRY(dfa_arena_alloc(ctx, &m->act, TD * 2, (void **)&q));
    DFA_TRY(dfa_arena_alloc(ctx, &m->act, TD * 2, (void **)&k));
    DFA_TRY(dfa_arena_alloc(ctx, &m->act, TD * 2, (void **)&v));
    DFA_TRY(dfa_arena_alloc(ctx, &m->act, TD * 2, (void **)&a));
    DFA_TRY(dfa_arena_alloc(ctx, &m->act, (size_t)T * I * 2, (void **)&f));
    DFA_TRY(dfa_arena_alloc(ctx, &m->act, (size_t)(P + 1) * 2, (void **)&pb));
    DFA_TRY(dfa_arena_alloc(ctx, &m->act, (size_t)(P + 1) * 4, (void **)&pf));
    DFA_TRY(dfa_arena_alloc(ctx, &m->act, (size_t)T * 4, (void **)&ids_d));
    DFA_TRY(dfa_cuda_h2d(ctx->cuda, ids_d, ids, (size_t)T * 4, e));
    DFA_TRY(dfa_textk_embed(ctx->cuda, ids_d, T, BF(m->tok_emb), BF(m->pos_emb), D, x, e));
    if (hidden && want == 0) DFA_TRY(dfa_cuda_d2h(ctx->cuda, hidden, x, TD * 4, e));
    float scale = 1.0f / sqrtf((float)(D / H));
    dfa_textk_act_kind act = c->act == DFA_TEXT_ACT_QUICK_GELU ? DFA_TEXTK_QUICK_GELU
                             : c->act == DFA_TEXT_ACT_RELU     ? DFA_TEXTK_RELU
                             : c->act == DFA_TEXT_ACT_GELU     ? DFA_TEXTK_GELU_ERF
                                                               : DFA_TEXTK_GELU_TANH;
    for (int l = 0; l < L; l++) {
        const clip_layer *w = &m->L[l];
        DFA_TRY(dfa_textk_norm(ctx->cuda, x, T, D, BF(w->ln1_w), BF(w->ln1_b), c->eps, 0, h, NULL, e));
        DFA_TRY(dfa_cuops_linear(m->ops, h, T, D, BF(w->q_w), BF(w->q_b), D, 0, q, e));
        DFA_TRY(dfa_cuops_linear(m->ops, h, T, D, BF(w->k_w), BF(w->k_b), D, 0, k, e));
        DFA_TRY(dfa_cuops_linear(m->ops, h, T, D, BF(w->v_w), BF(w->v_b), D, 0, v, e));
        DFA_TRY(dfa_textk_attention(ctx->cuda, q, k, v, T, H, D / H, D, scale, 1, NULL, NULL, a, e));
        DFA_TRY(dfa_cuops_linear(m->ops, a, T, D, BF(w->o_w), BF(w->o_b), D, 0, h, e)); /* h: the branch */
        DFA_TRY(dfa_textk_add(ctx->cuda, x, h, TD, e));
        DFA_TRY(dfa_textk_norm(ctx->cuda, x, T, D, BF(w->ln2_w), BF(w->ln2_b), c->eps, 0, h, NULL, e));
        DFA_TRY(dfa_cuops_linear(m->ops, h, T, D, BF(w->fc1_w), BF(w->fc1_b), I, 0, f, e));
        DFA_TRY(dfa_textk_act(ctx->cuda, f, NULL, (size_t)T * I, act, e));
        DFA_TRY(dfa_cuops_linear(m->ops, f, T, I, BF(w->fc2_w), BF(w->fc2_b), D, 0, h, e));
        DFA_TRY(dfa_textk_add(ctx->cuda, x, h, TD, e));
        if (hidden && want == l + 1) DFA_TRY(dfa_cuda_d2h(ctx->cuda, hidden, x, TD * 4, e));
    }
    DFA_TRY(dfa_textk_norm(ctx->cuda, x, T, D, BF(m->fln_w), BF(m->fln_b), c->eps, 0, h, y, e));
    if (hidden && last) DFA_TRY(dfa_cuda_d2h(ctx->cuda, hidden, y, TD * 4, e));
    size_t eos = (size_t)eos_position(c, ids, T) * D;
    if (pooled) DFA_TRY(dfa_cuda_d2h(ctx->cuda, pooled, y + eos, (size_t)D * 4, e));
    if (proj) {
        DFA_TRY(dfa_cuops_linear(m->ops, h + eos, 1, D, BF(m->proj_w), NULL, P, 0, pb, e));
        DFA_TRY(dfa_cuops_bf16_to_f32(m->ops, pb, pf, (size_t)P, e));
        DFA_TRY(dfa_cuda_d2h(ctx->cuda, proj, pf, (size_t)P * 4, e));
    }
    return DFA_OK;
}

dfa_status dfa_clip_encode(dfa_clip *m, const int32_t *ids, int T, int layer, float *hidden, float *pooled, float *proj) {
    dfa_ctx *ctx = m->ctx;
    const dfa_clip_config *c = &m->cfg;
    int D = c->hidden, I = c->intermediate, H = c->heads, L = c->layers;
    if (T <= 0 || T > c->max_pos) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "clip: %d tokens, expected 1..%d", T, c->max_pos);
    int want = layer;
    if (layer != DFA_TEXT_LAST_HIDDEN) {
        if (layer < 0) want = L + 1 + layer;
        if (want < 0 || want > L)
            DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "clip: hidden state %d out of range (%d layers: -%d..%d)", layer, L, L + 1, L);
    }
    if (proj && !c->projection_dim) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "clip: projected output asked for but the model has no text_projection");
    for (int t = 0; t < T; t++)
        if (ids[t] < 0 || ids[t] >= c->vocab_size)
            DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "clip: token id %d at position %d outside the vocabulary (%d)", ids[t], t, c->vocab_size);
    if (m->gpu) return clip_encode_cuda(m, ids, T, want, layer == DFA_TEXT_LAST_HIDDEN, hidden, pooled, proj);
    dfa_arena_reset(&m->act);
    float *x, *h, *q, *k, *v, *a, *f, *sc;
    size_t TD = (size_t)T * D * sizeof(float);
    DFA_TRY(dfa_arena_alloc(ctx, &m->act, TD, (void **)&x));
    DFA_TRY(dfa_arena_alloc(ctx, &m->act, TD, (void **)&h));
    DFA_TRY(dfa_arena_alloc(ctx, &m->act, TD, (void **)&q));
    DFA_TRY(dfa_arena_alloc(ctx, &m->act, TD, (void **)&k));
    DFA_TRY(dfa_arena_alloc(ctx, &m->act, TD, (void **)&v));
    DFA_TRY(dfa_arena_alloc(ctx, &m->act, TD, (void **)&a));
    DFA_TRY(dfa_arena_alloc(ctx, &m->act, (size_t)T * I * sizeof(float), (void **)&f));
    DFA_TRY(dfa_arena_alloc(ctx, &m->act, (size_t)T * T * sizeof(float), (void **)&sc));
    for (int t = 0; t < T; t++)
        for (int d = 0; d < D; d++)
            x[(size_t)t * D + d] = m->tok_emb[(size_t)ids[t] * D + d] + m->pos_emb[(size_t)t * D + d];
    if (hidden && want == 0) memcpy(hidden, x, TD);
    float scale = 1.0f / sqrtf((float)(D / H));
    for (int l = 0; l < L; l++) {
        const clip_layer *y = &m->L[l];
        dfa_op_layernorm(ctx, x, T, D, y->ln1_w, y->ln1_b, c->eps, h);
        dfa_op_linear(ctx, h, T, D, y->q_w, y->q_b, D, q);
        dfa_op_linear(ctx, h, T, D, y->k_w, y->k_b, D, k);
        dfa_op_linear(ctx, h, T, D, y->v_w, y->v_b, D, v);
        dfa_op_attention(ctx, q, k, v, T, T, H, D / H, D, scale, 1, NULL, NULL, sc, a);
        dfa_op_linear(ctx, a, T, D, y->o_w, y->o_b, D, h);
        dfa_op_add(x, h, (size_t)T * D);
        dfa_op_layernorm(ctx, x, T, D, y->ln2_w, y->ln2_b, c->eps, h);
        dfa_op_linear(ctx, h, T, D, y->fc1_w, y->fc1_b, I, f);
        apply_act(c->act, f, (size_t)T * I);
        dfa_op_linear(ctx, f, T, I, y->fc2_w, y->fc2_b, D, h);
        dfa_op_add(x, h, (size_t)T * D);
        if (hidden && want == l + 1) memcpy(hidden, x, TD);
    }
    dfa_op_layernorm(ctx, x, T, D, m->fln_w, m->fln_b, c->eps, h); /* last_hidden_state */
    if (hidden && layer == DFA_TEXT_LAST_HIDDEN) memcpy(hidden, h, TD);
    int eos = eos_position(c, ids, T);
    if (pooled) memcpy(pooled, h + (size_t)eos * D, (size_t)D * sizeof(float));
    if (proj) dfa_op_linear(ctx, h + (size_t)eos * D, 1, D, m->proj_w, NULL, c->projection_dim, proj);
    return DFA_OK;
}
