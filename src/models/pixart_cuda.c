/* pixart_cuda.c - PixArtTransformer2DModel forward on the GPU: bf16 weights and activations (f32
 * inside every kernel), cuBLASLt GEMMs, self-attention through dfa_attn_layer on bf16 CUDA
 * tensors, cross-attention to the text tokens as two batched GEMMs around a masked softmax
 * (tx_cuda.c). Same steps and orders as pixart.c's CPU forward; C only. */
#include <string.h>

#include "core/cuda_rt.h"
#include "models/cuda/ops_cuda.h"
#include "models/mmdit.h"
#include "models/pixart_int.h"
#include "models/tx_cuda.h"

typedef uint16_t bf16;
#define DW(p) ((const bf16 *)(const void *)(p))

dfa_status dfa_pixart_to_cuda(dfa_ctx *ctx, dfa_pixart *m) {
    if (!ctx->cuda) DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED, "pixart: no CUDA device in this context");
    uint16_t *dev = NULL;
    DFA_TRY(dfa_txg_model_upload(ctx, &m->gpu, m->weights, m->n_weights, &dev));
    const float *host = m->weights;
    float **top[] = {&m->pe_w,   &m->pe_b,   &m->ada_w,   &m->ada_b, &m->cap1_w, &m->cap1_b,
                     &m->cap2_w, &m->cap2_b, &m->sst_out, &m->po_w,  &m->po_b};
    for (int i = 0; i < (int)(sizeof top / sizeof top[0]); i++) dfa_txg_reloc(top[i], host, dev);
    dfa_txg_reloc_temb(&m->temb, host, dev);
    dfa_txg_reloc_temb(&m->res_emb, host, dev);
    dfa_txg_reloc_temb(&m->ar_emb, host, dev);
    for (int l = 0; l < m->cfg.layers; l++) {
        pixart_block *b = &m->blocks[l];
        dfa_txg_reloc(&b->sst, host, dev);
        dfa_txg_reloc_attn(&b->attn1, host, dev);
        dfa_txg_reloc_attn(&b->attn2, host, dev);
        dfa_txg_reloc_ff(&b->ff, host, dev);
    }
    dfa_txg_model_commit(ctx, &m->weights, dev, &m->dev);
    return DFA_OK;
}

void dfa_pixart_cuda_release(dfa_ctx *ctx, dfa_pixart *m) {
    if (m->dtxt) dfa_ctx_mem_release(ctx, m->dtxt);
    if (m->dbias) dfa_ctx_mem_release(ctx, m->dbias);
    m->dtxt = NULL, m->dbias = NULL, m->dtxt_n = 0, m->txt_gen = 0;
    dfa_txg_model_release(ctx, &m->gpu);
}

/* embedded_timestep [B, D] into b->emb (PixArt-Alpha: + the size / aspect-ratio embedding) */
static dfa_status pixart_temb(dfa_txg *g, const dfa_pixart *m, int B, int H, int W, const float *t, dfa_txg_bufs *b) {
    const dfa_pixart_config *c = &m->cfg;
    const int D = c->dim;
    DFA_TRY(dfa_txg_tproj(g, B, t, PIXART_TPROJ, 0.0f, b->tproj));
    DFA_TRY(dfa_txg_temb(g, &m->temb, B, b->tproj, D, b->emb2, b->emb));
    if (!c->size_cond) return DFA_OK;
    /* [emb(height), emb(width), emb(height / width)] (D/3 each), pixels = latent * 8, into mod2's first row */
    const int s3 = D / 3;
    const float hw[2] = {(float)(H * 8), (float)(W * 8)}, ar = (float)((double)(H * 8) / (double)(W * 8));
    bf16 *proj = b->tproj + (size_t)B * PIXART_TPROJ, *row = b->mod2;
    DFA_TRY(dfa_txg_tproj(g, 2, hw, PIXART_TPROJ, 0.0f, proj));
    DFA_TRY(dfa_txg_temb(g, &m->res_emb, 2, proj, s3, b->emb2, row));
    DFA_TRY(dfa_txg_tproj(g, 1, &ar, PIXART_TPROJ, 0.0f, proj));
    DFA_TRY(dfa_txg_temb(g, &m->ar_emb, 1, proj, s3, b->emb2, row + 2 * s3));
    return dfa_cuops_add_row(g->ops, b->emb, B, D, row, b->emb, &g->ctx->err);
}

/* projected text [B*L, Dkv] -> m->dtxt, key bias -> m->dbias (reused under the same pin);
 * b->txt, b->bias point at them */
static dfa_status pixart_text(dfa_txg *g, dfa_pixart *m, int B, int L, int cap_in, int Dkv, const float *text,
                              const float *mask, dfa_txg_bufs *b) {
    dfa_ctx *ctx = g->ctx;
    const dfa_pixart_config *c = &m->cfg;
    const size_t n = (size_t)B * L * Dkv;
    b->txt = m->dtxt, b->bias = m->dbias;
    if (m->txt_pin && m->txt_gen == m->txt_pin && m->txt_B == B && m->txt_L == L && m->txt_mask == (mask != NULL) &&
        m->dtxt)
        return DFA_OK;
    m->txt_gen = 0;
    if (m->dtxt_n < n) {
        if (m->dtxt) dfa_ctx_mem_release(ctx, m->dtxt);
        if (m->dbias) dfa_ctx_mem_release(ctx, m->dbias);
        m->dtxt = NULL, m->dbias = NULL, m->dtxt_n = 0;
        DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CUDA, n * sizeof(bf16), "pixart text (device)", (void **)&m->dtxt));
        DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CUDA, (size_t)B * L * sizeof(float), "pixart text bias (device)",
                                  (void **)&m->dbias));
        m->dtxt_n = n;
    }
    b->txt = m->dtxt, b->bias = m->dbias;
    if (c->caption_channels) {
        DFA_TRY(dfa_txg_upload(g, text, (size_t)B * L * cap_in, b->txt_in));
        DFA_TRY(dfa_txg_linear(g, b->txt_in, B * L, cap_in, m->cap1_w, m->cap1_b, Dkv, b->txt_mid));
        DFA_TRY(dfa_cuops_act(m->gpu.ops, b->txt_mid, (size_t)B * L * Dkv, DFA_ACT_GELU_TANH, &ctx->err));
        DFA_TRY(dfa_txg_linear(g, b->txt_mid, B * L, Dkv, m->cap2_w, m->cap2_b, Dkv, m->dtxt));
    } else {
        DFA_TRY(dfa_txg_upload(g, text, n, m->dtxt));
    }
    if (mask) {
        for (size_t i = 0; i < (size_t)B * L; i++) g->hstage[i] = (1.0f - mask[i]) * -10000.0f;
        DFA_TRY(dfa_cuda_h2d(ctx->cuda, m->dbias, g->hstage, (size_t)B * L * sizeof(float), &ctx->err));
    }
    m->txt_gen = m->txt_pin, m->txt_B = B, m->txt_L = L, m->txt_mask = mask != NULL;
    return DFA_OK;
}

static dfa_status pixart_cuda_run(dfa_ctx *ctx, dfa_pixart *m, int B, int H, int W, const float *x, const float *t,
                                  int L, const float *text, const float *mask, float *out) {
    const dfa_pixart_config *c = &m->cfg;
    const int p = c->patch_size, D = c->dim;
    DFA_TRY(dfa_pixart_check_input(ctx, m, B, H, W, L));
    if (c->size_cond && 3 * (D / 3) != D)
        DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED, "pixart (CUDA): size conditioning needs the inner dim %d divisible by 3",
                     D);
    const int h = H / p, w = W / p, N = h * w, M = B * N;
    const int cap_in = c->caption_channels ? c->caption_channels : c->cross_dim;
    const dfa_txg_dims d = {.B = B, .N = N, .D = D, .ff_inner = c->ff_inner, .patch_cols = c->in_channels * p * p,
                            .out_cols = p * p * c->out_channels, .heads = c->heads, .L = L, .caption = cap_in,
                            .cross_budget = m->cross_budget};
    dfa_txg_bufs b;
    dfa_txg g;
    DFA_TRY(dfa_txg_model_begin(ctx, &m->gpu, &d, "pixart activations (device)", "pixart host staging", &g, &b));
    dfa_error *e = &ctx->err;

    DFA_TRY(dfa_txg_pos_embed(&g, D, h, w, c->sample_size / p, c->interpolation_scale, &m->gpu.dpos, &m->gpu.pos_h,
                              &m->gpu.pos_w));
    DFA_TRY(dfa_txg_patch_embed(&g, x, B, c->in_channels, H, W, p, m->pe_w, m->pe_b, D, m->gpu.dpos, b.cols, b.hs));
    /* adaLN-single: embedded_timestep (b.emb); tmod = linear(silu(temb)) [B, 6D] (b.mod2) */
    DFA_TRY(pixart_temb(&g, m, B, H, W, t, &b));
    DFA_TRY(dfa_cuda_d2d(ctx->cuda, b.emb2, b.emb, (size_t)B * D * sizeof(bf16), e));
    DFA_TRY(dfa_cuops_act(m->gpu.ops, b.emb2, (size_t)B * D, DFA_ACT_SILU, e));
    DFA_TRY(dfa_txg_linear(&g, b.emb2, B, D, m->ada_w, m->ada_b, 6 * D, b.mod2));
    /* text: caption projection (linear_1, GELU(tanh), linear_2) and key bias, kept across the
     * forwards of one sampling loop (txt_pin) */
    const int Dkv = c->caption_channels ? D : c->cross_dim;
    DFA_TRY(pixart_text(&g, m, B, L, cap_in, Dkv, text, mask, &b));
    const size_t ms = 6 * (size_t)D; /* modulation row stride: shift, scale, gate (msa), shift, scale, gate (mlp) */
    for (int l = 0; l < c->layers; l++) {
        const pixart_block *blk = &m->blocks[l];
        /* chunk order: shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp */
        DFA_TRY(dfa_cuops_add_row(m->gpu.ops, b.mod2, B, (int)ms, DW(blk->sst), b.mod, e));
        DFA_TRY(dfa_cuops_ln_modulate_strided(m->gpu.ops, b.hs, B, N, D, b.mod, b.mod + D, ms, (float)c->norm_eps,
                                              b.nh, e));
        DFA_TRY(dfa_txg_self_attn(&g, l, &blk->attn1, B, N, c->heads, c->head_dim, b.nh, &b, b.tmp,
                                  m->gpu.no_attn_timer ? NULL : &m->attn_s));
        DFA_TRY(dfa_cuops_gate_add_strided(m->gpu.ops, b.hs, B, N, D, b.mod + 2 * D, ms, b.tmp, e));
        /* cross-attention on the un-normalised hidden states (PixArt: no norm2 here) */
        DFA_TRY(dfa_txg_cross_attn(&g, &blk->attn2, B, N, L, c->heads, c->head_dim, Dkv, b.hs, mask != NULL,
                                   m->cross_budget, &b,
                                   b.tmp));
        DFA_TRY(dfa_cuops_gate_add(m->gpu.ops, b.hs, 1, M, D, NULL, b.tmp, e));
        DFA_TRY(dfa_cuops_ln_modulate_strided(m->gpu.ops, b.hs, B, N, D, b.mod + 3 * D, b.mod + 4 * D, ms,
                                              (float)c->norm_eps, b.nh, e));
        DFA_TRY(dfa_txg_ff(&g, &blk->ff, M, D, b.nh, b.mid, b.tmp));
        DFA_TRY(dfa_cuops_gate_add_strided(m->gpu.ops, b.hs, B, N, D, b.mod + 5 * D, ms, b.tmp, e));
    }
    /* output: shift = table[0] + temb, scale = table[1] + temb */
    bf16 *shift = b.mod, *scale = b.mod + (size_t)B * D;
    DFA_TRY(dfa_cuops_add_row(m->gpu.ops, b.emb, B, D, DW(m->sst_out), shift, e));
    DFA_TRY(dfa_cuops_add_row(m->gpu.ops, b.emb, B, D, DW(m->sst_out) + D, scale, e));
    DFA_TRY(dfa_cuops_ln_modulate(m->gpu.ops, b.hs, B, N, D, shift, scale, 1e-6f, b.nh, e)); /* rows D apart */
    DFA_TRY(dfa_txg_linear(&g, b.nh, M, D, m->po_w, m->po_b, p * p * c->out_channels, b.cols));
    return dfa_txg_unpatchify(&g, b.cols, B, h, w, p, c->out_channels, out);
}

dfa_status dfa_pixart_forward_cuda(dfa_ctx *ctx, dfa_pixart *m, int B, int H, int W, const float *x, const float *t,
                                   int L, const float *text, const float *mask, float *out) {
    if (!ctx->cuda || !m->gpu.ops)
        DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED, "pixart forward: no CUDA device in this context");
    return dfa_mmdit_spans_end(ctx, pixart_cuda_run(ctx, m, B, H, W, x, t, L, text, mask, out));
}

void dfa_pixart_set_attn_timer(dfa_pixart *m, int on) { m->gpu.no_attn_timer = !on; }
