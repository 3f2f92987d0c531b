/* dit_cuda.c - DiTTransformer2DModel forward on the GPU: bf16 weights and activations (f32
 * inside every kernel), cuBLASLt GEMMs, self-attention through dfa_attn_layer on bf16 CUDA
 * tensors. Same steps and orders as dit.c's CPU forward; C only (builds with the CUDA stubs). */
#include <string.h>

#include "core/cuda_rt.h"
#include "models/cuda/ops_cuda.h"
#include "models/dit_int.h"
#include "models/mmdit.h"
#include "models/tx_cuda.h"

typedef uint16_t bf16;
#define DW(p) ((const bf16 *)(const void *)(p))

dfa_status dfa_dit_to_cuda(dfa_ctx *ctx, dfa_dit *m) {
    if (!ctx->cuda) DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED, "dit: no CUDA device in this context");
    uint16_t *dev = NULL;
    DFA_TRY(dfa_txg_model_upload(ctx, &m->gpu, m->weights, m->n_weights, &dev));
    const float *host = m->weights;
    float **top[] = {&m->pe_w, &m->pe_b, &m->po1_w, &m->po1_b, &m->po2_w, &m->po2_b};
    for (int i = 0; i < 6; i++) dfa_txg_reloc(top[i], host, dev);
    for (int l = 0; l < m->cfg.layers; l++) {
        dit_block *b = &m->blocks[l];
        dfa_txg_reloc_temb(&b->temb, host, dev);
        dfa_txg_reloc(&b->class_table, host, dev);
        dfa_txg_reloc(&b->ada_w, host, dev);
        dfa_txg_reloc(&b->ada_b, host, dev);
        dfa_txg_reloc_attn(&b->attn, host, dev);
        dfa_txg_reloc_ff(&b->ff, host, dev);
    }
    dfa_txg_model_commit(ctx, &m->weights, dev, &m->dev);
    return DFA_OK;
}

void dfa_dit_cuda_release(dfa_ctx *ctx, dfa_dit *m) {
    dfa_txg_model_release(ctx, &m->gpu);
}

/* AdaLayerNormZero.emb of block blk: temb(t) + class row, then SiLU: b->emb [B, D] */
static dfa_status block_cond(dfa_txg *g, const dfa_dit *m, const dit_block *blk, int B, const int *labels,
                             dfa_txg_bufs *b) {
    const int D = m->cfg.dim;
    DFA_TRY(dfa_txg_temb(g, &blk->temb, B, b->tproj, D, b->emb2, b->emb));
    for (int i = 0; i < B; i++)
        DFA_TRY(dfa_cuops_add_row(g->ops, b->emb + (size_t)i * D, 1, D, DW(blk->class_table) + (size_t)labels[i] * D,
                                  b->emb + (size_t)i * D, &g->ctx->err));
    return dfa_cuops_act(g->ops, b->emb, (size_t)B * D, DFA_ACT_SILU, &g->ctx->err);
}

static dfa_status dit_cuda_run(dfa_ctx *ctx, dfa_dit *m, int B, int H, int W, const float *x, const float *t,
                               const int *labels, float *out) {
    const dfa_dit_config *c = &m->cfg;
    const int p = c->patch_size, D = c->dim;
    DFA_TRY(dfa_dit_check_input(ctx, m, B, H, W, labels));
    const int h = H / p, w = W / p, N = h * w, M = B * N;
    const dfa_txg_dims d = {.B = B, .N = N, .D = D, .ff_inner = c->ff_inner, .patch_cols = c->in_channels * p * p,
                            .out_cols = p * p * c->out_channels, .heads = c->heads};
    dfa_txg_bufs b;
    dfa_txg g;
    DFA_TRY(dfa_txg_model_begin(ctx, &m->gpu, &d, "dit activations (device)", "dit host staging", &g, &b));
    dfa_error *e = &ctx->err;

    DFA_TRY(dfa_txg_pos_embed(&g, D, h, w, c->sample_size / p, 1.0, &m->gpu.dpos, &m->gpu.pos_h, &m->gpu.pos_w));
    DFA_TRY(dfa_txg_patch_embed(&g, x, B, c->in_channels, H, W, p, m->pe_w, m->pe_b, D, m->gpu.dpos, b.cols, b.hs));
    DFA_TRY(dfa_txg_tproj(&g, B, t, DIT_TPROJ, 1.0f, b.tproj)); /* the same projection for every block */
    const size_t ms = 6 * (size_t)D; /* modulation row stride: shift, scale, gate (msa), shift, scale, gate (mlp) */
    for (int l = 0; l < c->layers; l++) {
        const dit_block *blk = &m->blocks[l];
        DFA_TRY(block_cond(&g, m, blk, B, labels, &b));
        /* chunk order: shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp */
        DFA_TRY(dfa_txg_linear(&g, b.emb, B, D, blk->ada_w, blk->ada_b, 6 * D, b.mod));
        DFA_TRY(dfa_cuops_ln_modulate_strided(m->gpu.ops, b.hs, B, N, D, b.mod, b.mod + D, ms, 1e-6f, b.nh, e));
        DFA_TRY(dfa_txg_self_attn(&g, l, &blk->attn, B, N, c->heads, c->head_dim, b.nh, &b, b.tmp,
                                  m->gpu.no_attn_timer ? NULL : &m->attn_s));
        DFA_TRY(dfa_cuops_gate_add_strided(m->gpu.ops, b.hs, B, N, D, b.mod + 2 * D, ms, b.tmp, e));
        DFA_TRY(dfa_cuops_ln_modulate_strided(m->gpu.ops, b.hs, B, N, D, b.mod + 3 * D, b.mod + 4 * D, ms,
                                              (float)c->norm_eps, b.nh, e));
        DFA_TRY(dfa_txg_ff(&g, &blk->ff, M, D, b.nh, b.mid, b.tmp));
        DFA_TRY(dfa_cuops_gate_add_strided(m->gpu.ops, b.hs, B, N, D, b.mod + 5 * D, ms, b.tmp, e));
    }
    /* final layer: conditioning from block 0's embedder; shift first, then scale */
    DFA_TRY(block_cond(&g, m, &m->blocks[0], B, labels, &b));
    DFA_TRY(dfa_txg_linear(&g, b.emb, B, D, m->po1_w, m->po1_b, 2 * D, b.mod));
    DFA_TRY(dfa_cuops_ln_modulate_strided(m->gpu.ops, b.hs, B, N, D, b.mod, b.mod + D, 2 * (size_t)D, 1e-6f, b.nh, e));
    const int P = p * p * c->out_channels;
    DFA_TRY(dfa_txg_linear(&g, b.nh, M, D, m->po2_w, m->po2_b, P, b.cols));
    return dfa_txg_unpatchify(&g, b.cols, B, h, w, p, c->out_channels, out);
}

dfa_status dfa_dit_forward_cuda(dfa_ctx *ctx, dfa_dit *m, int B, int H, int W, const float *x, const float *t,
                                const int *labels, float *out) {
    if (!ctx->cuda || !m->gpu.ops)
        DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED, "dit forward: no CUDA device in this context");
    return dfa_mmdit_spans_end(ctx, dit_cuda_run(ctx, m, B, H, W, x, t, labels, out));
}

void dfa_dit_set_attn_timer(dfa_dit *m, int on) { m->gpu.no_attn_timer = !on; }
