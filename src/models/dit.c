/* dit.c - DiTTransformer2DModel on the CPU (diffusers dit_transformer_2d.py semantics). */
#include "models/dit.h"
#include "core/log.h"

#include "attn/attn_state.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "io/json.h"
#include "io/safetensors.h"
#include "models/dit_common.h"
#include "models/dit_int.h"
#include "models/ops.h"
#include "models/wload.h"
#include "sample/sampler.h"

static dfa_status read_config(dfa_ctx *ctx, const char *path, dfa_dit_config *c) {
    cJSON *root = NULL;
    DFA_TRY(dfa_json_read_file(path, &root, &ctx->err));
    dfa_status s;
    memset(c, 0, sizeof *c);
    const char *nt = NULL;
    if ((s = dfa_tx_cfg_pos_int(ctx, root, "num_attention_heads", path, &c->heads)) ||
        (s = dfa_tx_cfg_pos_int(ctx, root, "attention_head_dim", path, &c->head_dim)) ||
        (s = dfa_tx_cfg_pos_int(ctx, root, "in_channels", path, &c->in_channels)) ||
        (s = dfa_json_int_or(root, "out_channels", path, c->in_channels, &c->out_channels, &ctx->err)) ||
        (s = dfa_tx_cfg_pos_int(ctx, root, "num_layers", path, &c->layers)) ||
        (s = dfa_tx_cfg_pos_int(ctx, root, "sample_size", path, &c->sample_size)) ||
        (s = dfa_tx_cfg_pos_int(ctx, root, "patch_size", path, &c->patch_size)) ||
        (s = dfa_tx_cfg_pos_int(ctx, root, "num_embeds_ada_norm", path, &c->num_classes)) ||
        (s = dfa_json_double_or(root, "norm_eps", path, 1e-5, &c->norm_eps, &ctx->err)))
        goto done;
    {
        const cJSON *oc = cJSON_GetObjectItemCaseSensitive(root, "out_channels");
        if (cJSON_IsNull(oc)) c->out_channels = c->in_channels;
    }
    if (dfa_json_string(root, "norm_type", path, &nt, NULL) == DFA_OK && strcmp(nt, "ada_norm_zero") != 0) {
        s = DFA_SET(&ctx->err, DFA_ERR_UNSUPPORTED, "%s: norm_type '%s' (DiT needs ada_norm_zero)", path, nt);
        goto done;
    }
    if (dfa_json_string(root, "activation_fn", path, &nt, NULL) == DFA_OK && strcmp(nt, "gelu-approximate") != 0) {
        s = DFA_SET(&ctx->err, DFA_ERR_UNSUPPORTED, "%s: activation_fn '%s' (gelu-approximate supported)", path, nt);
        goto done;
    }
    c->dim = c->heads * c->head_dim;
    c->ff_inner = 4 * c->dim;
    if (c->out_channels < 1) s = DFA_SET(&ctx->err, DFA_ERR_FORMAT, "%s: out_channels %d", path, c->out_channels);
done:
    cJSON_Delete(root);
    return s;
}

static dfa_status bind_dit(dfa_wload *wl, void *model) {
    dfa_dit *m = model;
    const dfa_dit_config *c = &m->cfg;
    const int D = c->dim, p = c->patch_size;
    char pre[256];
    int64_t pe_shape[4] = {D, c->in_channels, p, p};
    DFA_TRY(dfa_wload_tensor(wl, &m->pe_w, 4, pe_shape, "pos_embed.proj.weight"));
    DFA_TRY(dfa_wload_vec(wl, &m->pe_b, D, "pos_embed.proj.bias"));
    for (int i = 0; i < c->layers; i++) {
        dit_block *b = &m->blocks[i];
        snprintf(pre, sizeof pre, "transformer_blocks.%d.norm1.emb.timestep_embedder", i);
        DFA_TRY(dfa_tx_bind_temb(wl, &b->temb, D, DIT_TPROJ, pre));
        int64_t ct[2] = {c->num_classes + 1, D};
        DFA_TRY(dfa_wload_tensor(wl, &b->class_table, 2, ct,
                                 "transformer_blocks.%d.norm1.emb.class_embedder.embedding_table.weight", i));
        snprintf(pre, sizeof pre, "transformer_blocks.%d.norm1.linear", i);
        DFA_TRY(dfa_wload_linear(wl, &b->ada_w, &b->ada_b, 6 * D, D, pre));
        snprintf(pre, sizeof pre, "transformer_blocks.%d.attn1", i);
        DFA_TRY(dfa_tx_bind_attn(wl, &b->attn, D, D, 1, pre));
        snprintf(pre, sizeof pre, "transformer_blocks.%d.ff", i);
        DFA_TRY(dfa_tx_bind_ff(wl, &b->ff, D, c->ff_inner, pre));
    }
    DFA_TRY(dfa_wload_linear(wl, &m->po1_w, &m->po1_b, 2 * D, D, "proj_out_1"));
    DFA_TRY(dfa_wload_linear(wl, &m->po2_w, &m->po2_b, (int64_t)p * p * c->out_channels, D, "proj_out_2"));
    return DFA_OK;
}

dfa_status dfa_dit_load(dfa_ctx *ctx, const char *dir, dfa_dit **out) {
    *out = NULL;
    char path[4096];
    dfa_dit *m = NULL;
    DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, sizeof *m, "dit", (void **)&m));
    memset(m, 0, sizeof *m);
    snprintf(path, sizeof path, "%s/config.json", dir);
    dfa_status s = read_config(ctx, path, &m->cfg);
    if (s == DFA_OK)
        s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, sizeof(dit_block) * m->cfg.layers, "dit blocks", (void **)&m->blocks);
    dfa_safetensors *st = NULL;
    if (s == DFA_OK) s = dfa_st_open(&st, dir, &ctx->err);
    if (s == DFA_OK) s = dfa_wload_run(ctx, st, bind_dit, m, "dit", &m->weights, &m->n_weights);
    dfa_st_close(st);
    if (s == DFA_OK && dfa_ctx_backend(ctx) == DFA_BACKEND_CUDA) s = dfa_dit_to_cuda(ctx, m);
    if (s != DFA_OK) {
        dfa_dit_cuda_release(ctx, m);
        dfa_ctx_mem_release(ctx, m->weights);
        dfa_ctx_mem_release(ctx, m->blocks);
        dfa_ctx_mem_release(ctx, m);
        return s;
    }
    *out = m;
    return DFA_OK;
}

dfa_status dfa_dit_write_random(dfa_ctx *ctx, const char *dir, uint64_t seed) {
    char path[4096];
    dfa_dit m;
    memset(&m, 0, sizeof m);
    snprintf(path, sizeof path, "%s/config.json", dir);
    DFA_TRY(read_config(ctx, path, &m.cfg));
    DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, sizeof(*m.blocks) * m.cfg.layers, "dit blocks", (void **)&m.blocks));
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
    dfa_status s = dfa_wload_write_random(ctx, bind_dit, &m, path, seed, "dit");
    dfa_ctx_mem_release(ctx, m.blocks);
    return s;
}

void dfa_dit_free(dfa_ctx *ctx, dfa_dit *m) {
    if (!m) return;
    if (m->act_ready) dfa_arena_release(ctx, &m->act);
    dfa_dit_cuda_release(ctx, m);
    dfa_ctx_mem_release(ctx, m->weights);
    dfa_ctx_mem_release(ctx, m->blocks);
    dfa_ctx_mem_release(ctx, m);
}

const dfa_dit_config *dfa_dit_get_config(const dfa_dit *m) { return &m->cfg; }

typedef struct dit_bufs {
    float *hs, *nh, *q, *k, *v, *o, *tmp, *mid, *pos, *emb, *mod, *scr, *ws;
    size_t ws_floats;
} dit_bufs;

static dfa_status get_bufs(dfa_ctx *ctx, dfa_dit *m, int B, int N, int C, int W, dit_bufs *b) {
    const dfa_dit_config *c = &m->cfg;
    const size_t D = (size_t)c->dim, M = (size_t)B * N, P = (size_t)c->patch_size * c->patch_size * c->out_channels;
    const size_t ws = dfa_op_conv2d_ws_min(C, c->patch_size, W / c->patch_size) * 64;
    struct {
        float **p;
        size_t n;
    } req[] = {{&b->hs, M * D},
               {&b->nh, M * D},
               {&b->q, M * D},
               {&b->k, M * D},
               {&b->v, M * D},
               {&b->o, M * D},
               {&b->tmp, M * (D > P ? D : P)},
               {&b->mid, M * c->ff_inner},
               {&b->pos, (size_t)N * D},
               {&b->emb, (size_t)B * D},
               {&b->mod, (size_t)B * 6 * D},
               {&b->scr, DIT_TPROJ + 2 * D},
               {&b->ws, ws}};
    const int nreq = (int)(sizeof req / sizeof req[0]);
    size_t total = 0;
    for (int i = 0; i < nreq; i++) total += req[i].n * sizeof(float) + 256;
    if (!m->act_ready || m->act.size < total) {
        if (m->act_ready) dfa_arena_release(ctx, &m->act);
        m->act_ready = 0;
        DFA_TRY(dfa_arena_init(ctx, &m->act, DFA_DEV_CPU, total, "dit activations"));
        m->act_ready = 1;
    }
    dfa_arena_reset(&m->act);
    for (int i = 0; i < nreq; i++) DFA_TRY(dfa_arena_alloc(ctx, &m->act, req[i].n * sizeof(float), (void **)req[i].p));
    b->ws_floats = ws;
    return DFA_OK;
}

dfa_status dfa_dit_check_input(dfa_ctx *ctx, const dfa_dit *m, int B, int H, int W, const int *labels) {
    const dfa_dit_config *c = &m->cfg;
    const int p = c->patch_size;
    if (B < 1 || H < p || W < p || H % p || W % p)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dit: input %dx%d (batch %d) is not a positive multiple of patch %d", H,
                     W, B, p);
    for (int i = 0; i < B; i++)
        if (labels[i] < 0 || labels[i] > c->num_classes)
            DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dit: class label %d out of range 0..%d (%d = null class)",
                         labels[i], c->num_classes, c->num_classes);
    return DFA_OK;
}

/* conditioning of block `blk`'s AdaLayerNormZero.emb: timestep embedding + class embedding */
static void block_cond(const dfa_ctx *ctx, const dfa_dit *m, const dit_block *blk, int B, const float *t,
                       const int *labels, dit_bufs *b) {
    const int D = m->cfg.dim;
    dfa_tx_temb_forward(ctx, &blk->temb, B, t, 1.0f, D, b->scr, b->emb);
    for (int i = 0; i < B; i++) dfa_op_add(b->emb + (size_t)i * D, blk->class_table + (size_t)labels[i] * D, D);
}

static dfa_status dit_forward_impl(dfa_ctx *ctx, dfa_dit *m, int B, int H, int W, const float *x, const float *t,
                                   const int *labels, float *out) {
    const dfa_dit_config *c = &m->cfg;
    const int p = c->patch_size, D = c->dim;
    DFA_TRY(dfa_dit_check_input(ctx, m, B, H, W, labels));
    const int h = H / p, w = W / p, N = h * w, M = B * N;
    dit_bufs b;
    DFA_TRY(get_bufs(ctx, m, B, N, c->in_channels, W, &b));
    dfa_tx_sincos_pos_embed(D, h, w, c->sample_size / p, 1.0, b.pos);
    dfa_tx_patch_embed(ctx, x, B, c->in_channels, H, W, p, m->pe_w, m->pe_b, D, b.pos, b.tmp, b.ws, b.ws_floats, b.hs);
    const size_t ms = 6 * (size_t)D; /* chunk order: shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp */
    for (int l = 0; l < c->layers; l++) {
        const dit_block *blk = &m->blocks[l];
        block_cond(ctx, m, blk, B, t, labels, &b);
        dfa_op_silu(b.emb, (size_t)B * D);
        dfa_op_linear(ctx, b.emb, B, D, blk->ada_w, blk->ada_b, 6 * D, b.mod);
        dfa_op_layernorm(ctx, b.hs, M, D, NULL, NULL, 1e-6f, b.nh);
        dfa_tx_modulate(b.nh, B, N, D, b.mod, b.mod + D, ms);
        DFA_TRY(dfa_tx_self_attn(ctx, l, &blk->attn, B, N, c->heads, c->head_dim, b.nh, b.q, b.k, b.v, b.o, b.tmp,
                                 &m->attn_s));
        dfa_tx_gated_add(b.hs, b.tmp, B, N, D, b.mod + 2 * D, ms);
        dfa_op_layernorm(ctx, b.hs, M, D, NULL, NULL, (float)c->norm_eps, b.nh);
        dfa_tx_modulate(b.nh, B, N, D, b.mod + 3 * D, b.mod + 4 * D, ms);
        dfa_tx_ff_forward(ctx, &blk->ff, M, D, b.nh, b.mid, b.tmp);
        dfa_tx_gated_add(b.hs, b.tmp, B, N, D, b.mod + 5 * D, ms);
    }
    /* final layer: conditioning from block 0's embedder; shift first, then scale */
    block_cond(ctx, m, &m->blocks[0], B, t, labels, &b);
    dfa_op_silu(b.emb, (size_t)B * D);
    dfa_op_linear(ctx, b.emb, B, D, m->po1_w, m->po1_b, 2 * D, b.mod);
    dfa_op_layernorm(ctx, b.hs, M, D, NULL, NULL, 1e-6f, b.nh);
    dfa_tx_modulate(b.nh, B, N, D, b.mod, b.mod + D, 2 * (size_t)D);
    const int P = p * p * c->out_channels;
    dfa_op_linear(ctx, b.nh, M, D, m->po2_w, m->po2_b, P, b.tmp);
    dfa_tx_unpatchify(b.tmp, B, h, w, p, c->out_channels, out);
    return DFA_OK;
}

dfa_status dfa_dit_forward(dfa_ctx *ctx, dfa_dit *m, int B, int H, int W, const float *x, const float *t,
                           const int *labels, float *out) {
    const double t0 = dfa_now_s();
    dfa_status s = m->dev == DFA_DEV_CUDA ? dfa_dit_forward_cuda(ctx, m, B, H, W, x, t, labels, out)
                                          : dit_forward_impl(ctx, m, B, H, W, x, t, labels, out);
    m->total_s += dfa_now_s() - t0;
    return s;
}

void dfa_dit_times(const dfa_dit *m, double *attn_s, double *total_s) {
    if (attn_s) *attn_s = m->attn_s;
    if (total_s) *total_s = m->total_s;
}

dfa_attn_layout dfa_dit_attn_layout(const dfa_dit *m, int h, int w) {
    const int p = m->cfg.patch_size;
    const dfa_attn_layout l = {(h / p) * (w / p), 0, 0, DFA_TX_ATTN_BLOCK, DFA_BAND_ARROW};
    return l;
}

void dfa_dit_reset_times(dfa_dit *m) { m->attn_s = m->total_s = 0; }

dfa_status dfa_dit_sample(dfa_ctx *ctx, dfa_dit *m, dfa_sampler *sched, int label, float guidance, int h, int w,
                          float *latents, dfa_flow_progress_fn progress, void *user) {
    const dfa_dit_config *c = &m->cfg;
    const int cfg = guidance > 1.0f, B = cfg ? 2 : 1, n_steps = dfa_sampler_n_steps(sched);
    const size_t n = (size_t)c->in_channels * h * w, n_out = (size_t)c->out_channels * h * w;
    if (sched->n != n)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dit sample: sampler set for %zu values, latents have %zu", sched->n, n);
    if (dfa_sampler_needs_var(sched) && c->out_channels != 2 * c->in_channels)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dit sample: learned variance needs out_channels = 2 * in_channels");
    void *xin = NULL, *out = NULL;
    DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, B * n * sizeof(float), "dit sample input", &xin));
    dfa_status s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, B * n_out * sizeof(float), "dit sample output", &out);
    /* [uncond, cond] as every dfa model (ASC's cond_half = 1); DiTPipeline batches [cond, null],
     * which gives the same numbers: batch items do not interact outside ASC. */
    const int labels[2] = {cfg ? c->num_classes : label, label};
    const int planned = dfa_attn_plan(ctx) != NULL;
    for (int i = 0; s == DFA_OK && i < n_steps; i++) {
        float *x = xin, *o = out;
        if (planned && (s = dfa_attn_begin_step(ctx, i)) != DFA_OK) break;
        const double t0 = dfa_now_s();
        const float ts = (float)dfa_sampler_timestep(sched, i), t[2] = {ts, ts};
        for (int b = 0; b < B; b++) memcpy(x + b * n, latents, n * sizeof(float));
        s = dfa_dit_forward(ctx, m, B, h, w, x, t, labels, o);
        if (s != DFA_OK) break;
        if (cfg) /* eps channels come first in each batch item: combine [uncond, cond] into item 0 */
            for (size_t j = 0; j < n; j++) o[j] = o[j] + guidance * (o[n_out + j] - o[j]);
        /* learned variance (DDPM): the conditional item's, unguided (as the DiT reference code) */
        s = dfa_sampler_step(ctx, sched, i, o, o + (cfg ? n_out : 0) + n, latents);
        if (s != DFA_OK) break;
        if (progress) progress(user, i, n_steps, dfa_now_s() - t0);
    }
    if (planned) dfa_attn_end_run(ctx);
    dfa_ctx_mem_release(ctx, out);
    dfa_ctx_mem_release(ctx, xin);
    return s;
}
