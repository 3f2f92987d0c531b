/* t5.c - T5 encoder (see t5.h). Formulas follow transformers' modeling_t5.py:
 *   x = shared[ids]
 *   bias[h, t, s] = rel_bias(layer 0)[bucket(s - t), h], computed once, added in every layer
 *   per layer: x += o(attn(rms(x); q.k^T + bias + mask; no scaling)); x += ffn(rms(x))
 *   out = rms_final(x). RMS norm: x * rsqrt(mean(x^2) + eps) * w (no mean subtraction, no bias). */
#include "models/t5.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ctx.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "models/clip.h"
#include "models/cuda/ops_cuda.h"
#include "models/cuda/text_cuda.h"
#include "models/ops.h"
#include "models/wload.h"

typedef struct t5_layer {
    float *ln1, *q, *k, *v, *o, *ln2, *wi0, *wi1, *wo;
} t5_layer;

/* On the CUDA backend the weight pointers hold bf16 DEVICE memory (read through BF()), except
 * rel_bias_host, the f32 table the bias is built from on the host. */
struct dfa_t5 {
    dfa_ctx *ctx;
    dfa_t5_config cfg;
    float *emb, *rel_bias, *final_ln;
    t5_layer *L;
    void *block;
    dfa_arena act, hact; /* activations (host or device); host scratch for the GPU path */
    int act_T;           /* tokens the arenas are sized for */
    int gpu;
    dfa_cuops *ops;
    float *rel_bias_host;
};
#define BF(p) ((const uint16_t *)(const void *)(p))

const dfa_t5_config *dfa_t5_get_config(const dfa_t5 *m) { return &m->cfg; }

int dfa_t5_bucket(int rel, int num_buckets, int max_distance) {
    int nb = num_buckets / 2;
    int bucket = rel > 0 ? nb : 0;
    int n = rel < 0 ? -rel : rel;
    int max_exact = nb / 2;
    if (n < max_exact) return bucket + n;
    /* float32 like torch: log(n / max_exact) / log(max_distance / max_exact) * (nb - max_exact) */
    float r = logf((float)n / (float)max_exact) / (float)log((double)max_distance / max_exact) * (float)(nb - max_exact);
    int large = max_exact + (int)r;
    if (large > nb - 1) large = nb - 1;
    return bucket + large;
}

static dfa_status read_config(dfa_ctx *ctx, const char *dir, dfa_t5_config *c) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    cJSON *o;
    dfa_error *e = &ctx->err;
    DFA_TRY(dfa_json_read_file(path, &o, e));
    dfa_status s = DFA_OK;
    double eps = 1e-6;
    const char *ffp = "relu", *act = NULL;
    if (!s) s = dfa_json_int(o, "d_model", path, &c->d_model, e);
    if (!s) s = dfa_json_int(o, "d_kv", path, &c->d_kv, e);
    if (!s) s = dfa_json_int(o, "num_heads", path, &c->heads, e);
    if (!s) s = dfa_json_int(o, "d_ff", path, &c->d_ff, e);
    if (!s) s = dfa_json_int(o, "num_layers", path, &c->layers, e);
    if (!s) s = dfa_json_int(o, "vocab_size", path, &c->vocab_size, e);
    if (!s) s = dfa_json_int_or(o, "relative_attention_num_buckets", path, 32, &c->num_buckets, e);
    if (!s) s = dfa_json_int_or(o, "relative_attention_max_distance", path, 128, &c->max_distance, e);
    if (!s) s = dfa_json_double_or(o, "layer_norm_epsilon", path, 1e-6, &eps, e);
    if (!s && cJSON_GetObjectItemCaseSensitive(o, "feed_forward_proj"))
        s = dfa_json_string(o, "feed_forward_proj", path, &ffp, e);
    if (!s && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(o, "dense_act_fn")))
        s = dfa_json_string(o, "dense_act_fn", path, &act, e);
    c->eps = (float)eps;
    if (!s) {
        c->gated = strncmp(ffp, "gated-", 6) == 0;
        const char *a = act ? act : (c->gated ? ffp + 6 : ffp);
        if (strcmp(a, "gelu") == 0 && !act) a = "gelu_new"; /* "gated-gelu" means gelu_new */
        if (strcmp(a, "gelu_new") == 0 || strcmp(a, "gelu_pytorch_tanh") == 0) c->act = DFA_TEXT_ACT_GELU_TANH;
        else if (strcmp(a, "gelu") == 0) c->act = DFA_TEXT_ACT_GELU;
        else if (strcmp(a, "relu") == 0) c->act = DFA_TEXT_ACT_RELU;
        else s = DFA_SET(e, DFA_ERR_UNSUPPORTED, "%s: feed-forward activation '%s' is not supported (gelu_new, gelu, relu)", path, a);
    }
    if (!s && (c->d_model <= 0 || c->d_kv <= 0 || c->heads <= 0 || c->d_ff <= 0 || c->layers <= 0 || c->vocab_size <= 0 ||
               c->num_buckets < 4 || c->max_distance <= c->num_buckets / 4))
        s = DFA_SET(e, DFA_ERR_FORMAT, "%s: inconsistent sizes (d_model %d, d_kv %d, heads %d, d_ff %d, layers %d, buckets %d)",
                    path, c->d_model, c->d_kv, c->heads, c->d_ff, c->layers, c->num_buckets);
    cJSON_Delete(o);
    return s;
}

static dfa_status load_impl(dfa_ctx *ctx, const char *dir, int gpu, dfa_t5 **out) {
    *out = NULL;
    dfa_safetensors *st = NULL;
    DFA_TRY(dfa_st_open(&st, dir, &ctx->err));
    dfa_t5 *m = calloc(1, sizeof *m);
    dfa_wspec *ws = NULL;
    if (!m) {
        dfa_st_close(st);
        DFA_CTX_FAIL(ctx, DFA_ERR_OOM, "t5: out of memory");
    }
    m->ctx = ctx;
    dfa_status s = read_config(ctx, dir, &m->cfg);
    const dfa_t5_config *c = &m->cfg;
    if (!s) {
        m->L = calloc((size_t)c->layers, sizeof *m->L);
        ws = calloc(3 + 9 * (size_t)c->layers, sizeof *ws);
        if (!m->L || !ws) s = DFA_SET(&ctx->err, DFA_ERR_OOM, "t5: out of memory");
    }
    if (!s) {
        int n = 0, D = c->d_model, I = c->heads * c->d_kv, F = c->d_ff;
#define W(slot, nd, a, b, ...)                                         \
    do {                                                               \
        ws[n].dst = &(slot);                                           \
        snprintf(ws[n].name, sizeof ws[n].name, __VA_ARGS__);          \
        ws[n].ndim = nd, ws[n].shape[0] = a, ws[n].shape[1] = b;       \
        n++;                                                           \
    } while (0)
        /* tied embeddings: transformers may keep either name */
        const char *emb = dfa_st_find(st, "shared.weight") ? "shared.weight" : "encoder.embed_tokens.weight";
        W(m->emb, 2, c->vocab_size, D, "%s", emb);
        W(m->rel_bias, 2, c->num_buckets, c->heads, "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight");
        W(m->final_ln, 1, D, 0, "encoder.final_layer_norm.weight");
        for (int l = 0; l < c->layers; l++) {
            t5_layer *y = &m->L[l];
            W(y->ln1, 1, D, 0, "encoder.block.%d.layer.0.layer_norm.weight", l);
            W(y->q, 2, I, D, "encoder.block.%d.layer.0.SelfAttention.q.weight", l);
            W(y->k, 2, I, D, "encoder.block.%d.layer.0.SelfAttention.k.weight", l);
            W(y->v, 2, I, D, "encoder.block.%d.layer.0.SelfAttention.v.weight", l);
            W(y->o, 2, D, I, "encoder.block.%d.layer.0.SelfAttention.o.weight", l);
            W(y->ln2, 1, D, 0, "encoder.block.%d.layer.1.layer_norm.weight", l);
            if (c->gated) {
                W(y->wi0, 2, F, D, "encoder.block.%d.layer.1.DenseReluDense.wi_0.weight", l);
                W(y->wi1, 2, F, D, "encoder.block.%d.layer.1.DenseReluDense.wi_1.weight", l);
            } else {
                W(y->wi0, 2, F, D, "encoder.block.%d.layer.1.DenseReluDense.wi.weight", l);
            }
            W(y->wo, 2, D, F, "encoder.block.%d.layer.1.DenseReluDense.wo.weight", l);
        }
#undef W
        /* CPU: f32 host weights; CUDA: bf16 device weights (T5-XXL: 9.5 GB) */
        m->gpu = gpu;
        if (m->gpu) s = dfa_cuops_init(&m->ops, ctx->cuda, &ctx->err);
        if (!s) s = dfa_wspec_place(ctx, st, ws, n, m->gpu, "t5 weights", &m->block);
        if (!s && m->gpu) {
            size_t nb = (size_t)c->num_buckets * c->heads;
            s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, nb * sizeof(float), "t5 bias table", (void **)&m->rel_bias_host);
            if (!s) s = dfa_st_load(st, ws[1].name, DFA_F32, 2, ws[1].shape, m->rel_bias_host, DFA_DEV_CPU, NULL, &ctx->err);
        }
    }
    free(ws);
    dfa_st_close(st);
    if (s) {
        dfa_error_wrap(&ctx->err, "loading T5 encoder '%s'", dir);
        dfa_t5_free(m);
        return s;
    }
    *out = m;
    return DFA_OK;
}

dfa_status dfa_t5_load(dfa_ctx *ctx, const char *dir, dfa_t5 **out) { return load_impl(ctx, dir, 0, out); }

dfa_status dfa_t5_load_cuda(dfa_ctx *ctx, const char *dir, dfa_t5 **out) {
    *out = NULL;
    if (!ctx->cuda) DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED, "t5: the CUDA load needs a context with the CUDA backend");
    return load_impl(ctx, dir, 1, out);
}

void dfa_t5_free(dfa_t5 *m) {
    if (!m) return;
    if (m->block) dfa_ctx_mem_release(m->ctx, m->block);
    if (m->act.base) dfa_arena_release(m->ctx, &m->act);
    if (m->hact.base) dfa_arena_release(m->ctx, &m->hact);
    if (m->rel_bias_host) dfa_ctx_mem_release(m->ctx, m->rel_bias_host);
    dfa_cuops_free(m->ops);
    free(m->L);
    free(m);
}

/* bias[h, t, s] = table[bucket(s - t), h] */
static void build_bias(const dfa_t5_config *c, const float *table, int T, float *bias) {
    int H = c->heads;
    for (int t = 0; t < T; t++)
        for (int s = 0; s < T; s++) {
            int b = dfa_t5_bucket(s - t, c->num_buckets, c->max_distance);
            for (int hh = 0; hh < H; hh++) bias[((size_t)hh * T + t) * T + s] = table[(size_t)b * H + hh];
        }
}

/* The same forward on the GPU. The residual stream x, the norms' arithmetic and the output are f32;
 * bf16 only where a GEMM reads or writes (weights, normed input h, q / k / v, attention output a,
 * act(wi_0 h) * wi_1 h, each branch's output before it is added to x). Attention: f32 scores +
 * f32 bias, f32 softmax. Measured on the fixture (tests/gpu/test_text_cuda.c): a bf16 residual
 * and an extra rounding of act(wi_0 h) cost ~1.5x the error of this scheme; real T5 (v1.1 / XXL)
 * has far larger residual activations than the fixture, where a bf16 stream loses more. */
static dfa_status t5_encode_cuda(dfa_t5 *m, const int32_t *ids, const int32_t *mask, int T, float *out) {
    dfa_ctx *ctx = m->ctx;
    dfa_error *e = &ctx->err;
    const dfa_t5_config *c = &m->cfg;
    int D = c->d_model, I = c->heads * c->d_kv, F = c->d_ff, H = c->heads;
    size_t Ts = (size_t)T;
    if (T > m->act_T) {
        if (m->act.base) dfa_arena_release(ctx, &m->act);
        if (m->hact.base) dfa_arena_release(ctx, &m->hact);
        /* f32: x, y [T, D], bias [H, T, T], ids, mask; bf16: h [T, D], q, k, v, a [T, I], f0, f1 [T, F] */
        size_t bytes = (2 * Ts * D + (size_t)H * Ts * Ts + 2 * Ts) * 4 + (Ts * D + 4 * Ts * I + 2 * Ts * F) * 2 + 16 * 256;
        m->act_T = 0;
        DFA_TRY(dfa_arena_init(ctx, &m->act, DFA_DEV_CUDA, bytes, "t5 activations (device)"));
        DFA_TRY(dfa_arena_init(ctx, &m->hact, DFA_DEV_CPU, (size_t)H * Ts * Ts * 4 + 256, "t5 bias (host)"));
        m->act_T = T;
    }
    dfa_arena_reset(&m->act);
    dfa_arena_reset(&m->hact);
    uint16_t *h, *q, *k, *v, *a, *f0, *f1;
    float *x, *y, *bias_d, *bias_h;
    int32_t *ids_d, *mask_d = NULL;
    DFA_TRY(dfa_arena_alloc(ctx, &m->act, Ts * D * 4, (void **)&x));
    DFA_TRY(dfa_arena_alloc(ctx, &m->act, Ts * D * 4, (void **)&y));
    DFA_TRY(dfa_arena_alloc(ctx, &m->act, Ts * D * 2, (void **)&h));
    DFA_TRY(dfa_arena_alloc(ctx, &m->act, Ts * I * 2, (void **)&q));
    DFA_TRY(dfa_arena_alloc(ctx, &m->act, Ts * I * 2, (void **)&k));
    DFA_TRY(dfa_arena_alloc(ctx, &m->act, Ts * I * 2, (void **)&v));
    DFA_TRY(dfa_arena_alloc(ctx, &m->act, Ts * I * 2, (void **)&a));
    DFA_TRY(dfa_arena_alloc(ctx, &m->act, Ts * F * 2, (void **)&f0));
    DFA_TRY(dfa_arena_alloc(ctx, &m->act, Ts * F * 2, (void **)&f1));
    DFA_TRY(dfa_arena_alloc(ctx, &m->act, (size_t)H * Ts * Ts * 4, (void **)&bias_d));
    DFA_TRY(dfa_arena_alloc(ctx, &m->act, Ts * 4, (void **)&ids_d));
    if (mask) DFA_TRY(dfa_arena_alloc(ctx, &m->act, Ts * 4, (void **)&mask_d));
    DFA_TRY(dfa_arena_alloc(ctx, &m->hact, (size_t)H * Ts * Ts * 4, (void **)&bias_h));
    build_bias(c, m->rel_bias_host, T, bias_h);
    DFA_TRY(dfa_cuda_h2d(ctx->cuda, bias_d, bias_h, (size_t)H * Ts * Ts * 4, e));
    DFA_TRY(dfa_cuda_h2d(ctx->cuda, ids_d, ids, Ts * 4, e));
    if (mask) DFA_TRY(dfa_cuda_h2d(ctx->cuda, mask_d, mask, Ts * 4, e));
    dfa_textk_act_kind act = c->act == DFA_TEXT_ACT_RELU   ? DFA_TEXTK_RELU
                             : c->act == DFA_TEXT_ACT_GELU ? DFA_TEXTK_GELU_ERF
                                                           : DFA_TEXTK_GELU_TANH;
    DFA_TRY(dfa_textk_embed(ctx->cuda, ids_d, T, BF(m->emb), NULL, D, x, e));
    for (int l = 0; l < c->layers; l++) {
        const t5_layer *w = &m->L[l];
        DFA_TRY(dfa_textk_norm(ctx->cuda, x, T, D, BF(w->ln1), NULL, c->eps, 1, h, NULL, e));
        DFA_TRY(dfa_cuops_linear(m->ops, h, T, D, BF(w->q), NULL, I, 0, q, e));
        DFA_TRY(dfa_cuops_linear(m->ops, h, T, D, BF(w->k), NULL, I, 0, k, e));
        DFA_TRY(dfa_cuops_linear(m->ops, h, T, D, BF(w->v), NULL, I, 0, v, e));
        DFA_TRY(dfa_textk_attention(ctx->cuda, q, k, v, T, H, c->d_kv, I, 1.0f, 0, bias_d, mask_d, a, e));
        DFA_TRY(dfa_cuops_linear(m->ops, a, T, I, BF(w->o), NULL, D, 0, h, e)); /* h: the branch output */
        DFA_TRY(dfa_textk_add(ctx->cuda, x, h, Ts * D, e));
        DFA_TRY(dfa_textk_norm(ctx->cuda, x, T, D, BF(w->ln2), NULL, c->eps, 1, h, NULL, e));
        DFA_TRY(dfa_cuops_linear(m->ops, h, T, D, BF(w->wi0), NULL, F, 0, f0, e));
        if (c->gated) DFA_TRY(dfa_cuops_linear(m->ops, h, T, D, BF(w->wi1), NULL, F, 0, f1, e));
        DFA_TRY(dfa_textk_act(ctx->cuda, f0, c->gated ? f1 : NULL, Ts * F, act, e));
        DFA_TRY(dfa_cuops_linear(m->ops, f0, T, F, BF(w->wo), NULL, D, 0, h, e));
        DFA_TRY(dfa_textk_add(ctx->cuda, x, h, Ts * D, e));
    }
    DFA_TRY(dfa_textk_norm(ctx->cuda, x, T, D, BF(m->final_ln), NULL, c->eps, 1, NULL, y, e));
    return dfa_cuda_d2h(ctx->cuda, out, y, Ts * D * sizeof(float), e);
}

dfa_status dfa_t5_encode(dfa_t5 *m, const int32_t *ids, const int32_t *mask, int T, float *out) {
    dfa_ctx *ctx = m->ctx;
    const dfa_t5_config *c = &m->cfg;
    int D = c->d_model, I = c->heads * c->d_kv, F = c->d_ff, H = c->heads;
    if (T <= 0 || T > 1 << 16) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "t5: %d tokens, expected 1..65536", T);
    for (int t = 0; t < T; t++)
        if (ids[t] < 0 || ids[t] >= c->vocab_size)
            DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "t5: token id %d at position %d outside the vocabulary (%d)", ids[t], t, c->vocab_size);
    if (m->gpu) return t5_encode_cuda(m, ids, mask, T, out);
    size_t Ts = (size_t)T;
    if (T > m->act_T) { /* x, h [T, D]; q, k, v, a [T, I]; f0, f1 [T, F]; bias [H, T, T]; scores [T, T] */
        if (m->act.base) dfa_arena_release(ctx, &m->act);
        m->act_T = 0;
        size_t bytes = (2 * Ts * D + 4 * Ts * I + 2 * Ts * F + (size_t)H * Ts * Ts + Ts * Ts) * sizeof(float) + 16 * 256;
        DFA_TRY(dfa_arena_init(ctx, &m->act, DFA_DEV_CPU, bytes, "t5 activations"));
        m->act_T = T;
    }
    dfa_arena_reset(&m->act);
    float *x, *h, *q, *k, *v, *a, *f0, *f1, *bias, *sc;
    DFA_TRY(dfa_arena_alloc(ctx, &m->act, Ts * D * sizeof(float), (void **)&x));
    DFA_TRY(dfa_arena_alloc(ctx, &m->act, Ts * D * sizeof(float), (void **)&h));
    DFA_TRY(dfa_arena_alloc(ctx, &m->act, Ts * I * sizeof(float), (void **)&q));
    DFA_TRY(dfa_arena_alloc(ctx, &m->act, Ts * I * sizeof(float), (void **)&k));
    DFA_TRY(dfa_arena_alloc(ctx, &m->act, Ts * I * sizeof(float), (void **)&v));
    DFA_TRY(dfa_arena_alloc(ctx, &m->act, Ts * I * sizeof(float), (void **)&a));
    DFA_TRY(dfa_arena_alloc(ctx, &m->act, Ts * F * sizeof(float), (void **)&f0));
    DFA_TRY(dfa_arena_alloc(ctx, &m->act, Ts * F * sizeof(float), (void **)&f1));
    DFA_TRY(dfa_arena_alloc(ctx, &m->act, (size_t)H * Ts * Ts * sizeof(float), (void **)&bias));
    DFA_TRY(dfa_arena_alloc(ctx, &m->act, Ts * Ts * sizeof(float), (void **)&sc));
    for (int t = 0; t < T; t++) memcpy(x + (size_t)t * D, m->emb + (size_t)ids[t] * D, (size_t)D * sizeof(float));
    build_bias(c, m->rel_bias, T, bias);
    for (int l = 0; l < c->layers; l++) {
        const t5_layer *y = &m->L[l];
        dfa_op_rmsnorm(ctx, x, T, D, y->ln1, c->eps, h);
        dfa_op_linear(ctx, h, T, D, y->q, NULL, I, q);
        dfa_op_linear(ctx, h, T, D, y->k, NULL, I, k);
        dfa_op_linear(ctx, h, T, D, y->v, NULL, I, v);
        dfa_op_attention(ctx, q, k, v, T, T, H, c->d_kv, I, 1.0f, 0, bias, mask, sc, a);
        dfa_op_linear(ctx, a, T, I, y->o, NULL, D, h);
        dfa_op_add(x, h, Ts * D);
        dfa_op_rmsnorm(ctx, x, T, D, y->ln2, c->eps, h);
        dfa_op_linear(ctx, h, T, D, y->wi0, NULL, F, f0);
        if (c->act == DFA_TEXT_ACT_GELU_TANH) dfa_op_gelu_tanh(f0, Ts * F);
        else if (c->act == DFA_TEXT_ACT_GELU) dfa_op_gelu_erf(f0, Ts * F);
        else
            for (size_t i = 0; i < Ts * F; i++) f0[i] = f0[i] > 0 ? f0[i] : 0;
        if (c->gated) {
            dfa_op_linear(ctx, h, T, D, y->wi1, NULL, F, f1);
            for (size_t i = 0; i < Ts * F; i++) f0[i] *= f1[i];
        }
        dfa_op_linear(ctx, f0, T, F, y->wo, NULL, D, h);
        dfa_op_add(x, h, Ts * D);
    }
    dfa_op_rmsnorm(ctx, x, T, D, m->final_ln, c->eps, out);
    return DFA_OK;
}
