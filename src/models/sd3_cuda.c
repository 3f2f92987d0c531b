/* sd3_cuda.c - SD3 / SD3.5 transformer forward on the GPU: bf16 weights and activations, cuBLASLt
 * GEMMs and the fused kernels of models/cuda/ops_cuda.h, attention through dfa_attn_layer() on
 * bf16 CUDA tensors. Same steps and orders as the CPU forward in sd3.c; patchify / unpatchify
 * run on the host (they are copies). C only, so it builds with the CUDA stubs too. */
#include <math.h>
#include <string.h>

#include "attn/attn.h"
#include "attn/attn_state.h"
#include "core/log.h"
#include "core/cuda_rt.h"
#include "models/cuda/ops_cuda.h"
#include "models/sd3_int.h"

typedef uint16_t bf16;

#define W16(l) ((const bf16 *)(const void *)(l)->w)
#define B16(l) ((const bf16 *)(const void *)(l)->b)
#define V16(p) ((const bf16 *)(const void *)(p))

typedef struct sd3_dbuf {
    bf16 *h, *nrm, *nrm2, *q, *k, *v, *att, *tmp, *ff; /* [B, N, *] */
    bf16 *patch, *proj;                                 /* [B Ni, K], [B Ni, p p O] */
    bf16 *tproj, *temb, *stemb, *hid;                   /* [B, max(256, P)], [B, C] x 3 */
    bf16 *tin, *tv; /* text [B T, J] and pooled-text embedding [B, C]: in m->dcond (kept under a hold) */
    bf16 *mod1, *mod2;                                  /* [B, 9C], [B, 6C] */
    float *f32;                                         /* conversion staging */
} sd3_dbuf;

static size_t b16(size_t n) { return (n * 2 + 255u) & ~(size_t)255u; }
static size_t b32(size_t n) { return (n * 4 + 255u) & ~(size_t)255u; }

static dfa_status sd3_cuda_alloc(dfa_ctx *ctx, dfa_sd3 *m, int B, int Ni, int Nt, sd3_dbuf *s, float **hst,
                                 size_t *stage_n) {
    const dfa_sd3_config *c = &m->cfg;
    const size_t C = (size_t)c->inner_dim, F = (size_t)c->mlp_hidden, BN = (size_t)B * (Ni + Nt);
    const size_t pp = (size_t)c->patch_size * c->patch_size, K = (size_t)c->in_channels * pp;
    const size_t PO = pp * c->out_channels;
    size_t stage = (size_t)B * Ni * (K > PO ? K : PO);
    if ((size_t)B * Nt * c->joint_attention_dim > stage) stage = (size_t)B * Nt * c->joint_attention_dim;
    if ((size_t)B * (c->pooled_projection_dim + 256) > stage) stage = (size_t)B * (c->pooled_projection_dim + 256);
    *stage_n = stage;
    /* tproj holds the timestep sinusoid [B, 256] and then the pooled text [B, P] (P 2048 in SD3) */
    const size_t TP = (size_t)(c->pooled_projection_dim > 256 ? c->pooled_projection_dim : 256);
    const size_t sizes[] = {BN * C, BN * C, BN * C, BN * C, BN * C, BN * C, BN * C, BN * C, BN * F,
                            (size_t)B * Ni * K, (size_t)B * Ni * PO, (size_t)B * TP, (size_t)B * C, (size_t)B * C,
                            (size_t)B * C, (size_t)B * 9 * C, (size_t)B * 6 * C};
    bf16 **dst[] = {&s->h, &s->nrm, &s->nrm2, &s->q, &s->k, &s->v, &s->att, &s->tmp, &s->ff, &s->patch,
                    &s->proj, &s->tproj, &s->temb, &s->stemb, &s->hid, &s->mod1, &s->mod2};
    const int n = (int)(sizeof sizes / sizeof *sizes);
    size_t total = b32(stage) + 4096;
    for (int i = 0; i < n; i++) total += b16(sizes[i]);
    DFA_TRY(dfa_mmdit_arena_ensure(ctx, &m->act, DFA_DEV_CUDA, total, "sd3 activations (device)"));
    DFA_TRY(dfa_mmdit_arena_ensure(ctx, &m->host, DFA_DEV_CPU, b32(stage) + 256, "sd3 host staging"));
    for (int i = 0; i < n; i++) DFA_TRY(dfa_arena_alloc(ctx, &m->act, b16(sizes[i]), (void **)dst[i]));
    DFA_TRY(dfa_arena_alloc(ctx, &m->act, b32(stage), (void **)&s->f32));
    DFA_TRY(dfa_arena_alloc(ctx, &m->host, stage * sizeof(float), (void **)hst));
    /* text and pooled-text embedding: their own block, kept across the forwards of a hold */
    const size_t tin_b = b16((size_t)B * Nt * c->joint_attention_dim), cond = tin_b + b16((size_t)B * C);
    const int held = m->cond_pin && m->cond_gen == m->cond_pin && m->cond_B == B && m->cond_T == Nt && m->dcond;
    if (!held) m->cond_gen = 0;
    if (m->dcond_size < cond) {
        if (m->dcond) dfa_ctx_mem_release(ctx, m->dcond);
        m->dcond = NULL, m->dcond_size = 0;
        DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CUDA, cond, "sd3 text conditioning (device)", &m->dcond));
        m->dcond_size = cond;
    }
    s->tin = m->dcond;
    s->tv = (bf16 *)(void *)((char *)m->dcond + tin_b);
    return DFA_OK;
}

static dfa_status upload_bf16(dfa_ctx *ctx, dfa_sd3 *m, sd3_dbuf *s, const float *src, size_t n, bf16 *dst) {
    DFA_TRY(dfa_cuda_h2d(ctx->cuda, s->f32, src, n * sizeof(float), &ctx->err));
    return dfa_cuops_f32_to_bf16(m->ops, s->f32, dst, n, &ctx->err);
}

static dfa_status lin(dfa_ctx *ctx, dfa_sd3 *m, const dfa_lin *l, const bf16 *x, int M, bf16 *y) {
    return dfa_cuops_linear(m->ops, x, M, l->in, W16(l), B16(l), l->out, 0, y, &ctx->err);
}

static dfa_status qkv(dfa_ctx *ctx, dfa_sd3 *m, const dfa_lin *lq, const dfa_lin *lk, const dfa_lin *lv,
                      const float *nq, const float *nk, const bf16 *xin, size_t row0, int T, sd3_dbuf *s) {
    const dfa_sd3_config *c = &m->cfg;
    const size_t C = (size_t)c->inner_dim;
    DFA_TRY(lin(ctx, m, lq, xin, T, s->q + row0 * C));
    DFA_TRY(lin(ctx, m, lk, xin, T, s->k + row0 * C));
    DFA_TRY(lin(ctx, m, lv, xin, T, s->v + row0 * C));
    if (nq)
        DFA_TRY(dfa_cuops_rmsnorm(m->ops, s->q + row0 * C, T * c->n_heads, c->head_dim, V16(nq), SD3_EPS, s->q + row0 * C,
                                  &ctx->err));
    if (nk)
        DFA_TRY(dfa_cuops_rmsnorm(m->ops, s->k + row0 * C, T * c->n_heads, c->head_dim, V16(nk), SD3_EPS, s->k + row0 * C,
                                  &ctx->err));
    return DFA_OK;
}

static dfa_status out_gate(dfa_ctx *ctx, dfa_sd3 *m, const dfa_lin *l, const bf16 *x, int T, const bf16 *gate,
                           bf16 *resid, bf16 *tmp) {
    DFA_TRY(lin(ctx, m, l, x, T, tmp));
    return dfa_cuops_gate_add(m->ops, resid, 1, T, l->out, gate, tmp, &ctx->err);
}

static dfa_status ff(dfa_ctx *ctx, dfa_sd3 *m, const dfa_lin *f0, const dfa_lin *f2, bf16 *resid, int T,
                     const bf16 *shift, const bf16 *scale, const bf16 *gate, sd3_dbuf *s) {
    const int C = m->cfg.inner_dim;
    DFA_TRY(dfa_cuops_ln_modulate(m->ops, resid, 1, T, C, shift, scale, SD3_EPS, s->nrm, &ctx->err));
    DFA_TRY(lin(ctx, m, f0, s->nrm, T, s->ff));
    DFA_TRY(dfa_cuops_act(m->ops, s->ff, (size_t)T * f0->out, DFA_ACT_GELU_TANH, &ctx->err));
    return out_gate(ctx, m, f2, s->ff, T, gate, resid, s->tmp);
}

static dfa_status attention(dfa_ctx *ctx, dfa_sd3 *m, int layer, const dfa_attn_layout *lay, int B, int N,
                            sd3_dbuf *s) {
    const dfa_sd3_config *c = &m->cfg;
    return dfa_attn_layer_bf16_cuda(ctx, layer, lay, B, N, c->n_heads, c->head_dim, s->q, s->k, s->v, s->att,
                                    m->no_timer ? NULL : &m->attn_s);
}

static dfa_status block_forward(dfa_ctx *ctx, dfa_sd3 *m, const sd3_block *blk, int B, int Ni, int Nt, sd3_dbuf *s) {
    const dfa_sd3_config *c = &m->cfg;
    const int C = c->inner_dim, N = Ni + Nt;
    const int n1 = blk->dual ? 9 : 6, n2 = blk->pre_only ? 2 : 6;
    DFA_TRY(lin(ctx, m, &blk->norm1, s->stemb, B, s->mod1));
    DFA_TRY(lin(ctx, m, &blk->norm1_ctx, s->stemb, B, s->mod2));
    for (int b = 0; b < B; b++) {
        const bf16 *m1 = s->mod1 + (size_t)b * n1 * C, *m2 = s->mod2 + (size_t)b * n2 * C;
        const size_t ri = (size_t)b * N, rt = ri + Ni;
        DFA_TRY(dfa_cuops_ln_modulate(m->ops, s->h + ri * C, 1, Ni, C, m1, m1 + C, SD3_EPS, s->nrm + ri * C, &ctx->err));
        if (blk->dual)
            DFA_TRY(dfa_cuops_ln_modulate(m->ops, s->h + ri * C, 1, Ni, C, m1 + 6 * C, m1 + 7 * C, SD3_EPS,
                                          s->nrm2 + (size_t)b * Ni * C, &ctx->err));
        const bf16 *sh = blk->pre_only ? m2 + C : m2, *sc = blk->pre_only ? m2 : m2 + C; /* Continuous: scale, shift */
        DFA_TRY(dfa_cuops_ln_modulate(m->ops, s->h + rt * C, 1, Nt, C, sh, sc, SD3_EPS, s->nrm + rt * C, &ctx->err));
        DFA_TRY(qkv(ctx, m, &blk->a.q, &blk->a.k, &blk->a.v, blk->a.nq, blk->a.nk, s->nrm + ri * C, ri, Ni, s));
        DFA_TRY(qkv(ctx, m, &blk->aq, &blk->ak, &blk->av, blk->naq, blk->nak, s->nrm + rt * C, rt, Nt, s));
    }
    const dfa_attn_layout lay = {.n_vis = Ni, .n_text = Nt, .text_first = 0, .block = SD3_ATTN_BLOCK};
    DFA_TRY(attention(ctx, m, blk->attn_index, &lay, B, N, s));
    for (int b = 0; b < B; b++) {
        const bf16 *m1 = s->mod1 + (size_t)b * n1 * C, *m2 = s->mod2 + (size_t)b * n2 * C;
        const size_t ri = (size_t)b * N, rt = ri + Ni;
        DFA_TRY(out_gate(ctx, m, &blk->a.out, s->att + ri * C, Ni, m1 + 2 * C, s->h + ri * C, s->tmp));
        if (!blk->pre_only)
            DFA_TRY(out_gate(ctx, m, &blk->add_out, s->att + rt * C, Nt, m2 + 2 * C, s->h + rt * C, s->tmp));
    }
    if (blk->dual) {
        for (int b = 0; b < B; b++)
            DFA_TRY(qkv(ctx, m, &blk->a2.q, &blk->a2.k, &blk->a2.v, blk->a2.nq, blk->a2.nk, s->nrm2 + (size_t)b * Ni * C,
                        (size_t)b * Ni, Ni, s));
        const dfa_attn_layout lay2 = {.n_vis = Ni, .n_text = 0, .text_first = 0, .block = SD3_ATTN_BLOCK};
        DFA_TRY(attention(ctx, m, blk->attn_index + 1, &lay2, B, Ni, s));
        for (int b = 0; b < B; b++)
            DFA_TRY(out_gate(ctx, m, &blk->a2.out, s->att + (size_t)b * Ni * C, Ni, s->mod1 + (size_t)b * n1 * C + 8 * C,
                             s->h + (size_t)b * N * C, s->tmp));
    }
    for (int b = 0; b < B; b++) {
        const bf16 *m1 = s->mod1 + (size_t)b * n1 * C, *m2 = s->mod2 + (size_t)b * n2 * C;
        const size_t ri = (size_t)b * N, rt = ri + Ni;
        DFA_TRY(ff(ctx, m, &blk->ff0, &blk->ff2, s->h + ri * C, Ni, m1 + 3 * C, m1 + 4 * C, m1 + 5 * C, s));
        if (!blk->pre_only)
            DFA_TRY(ff(ctx, m, &blk->ffc0, &blk->ffc2, s->h + rt * C, Nt, m2 + 3 * C, m2 + 4 * C, m2 + 5 * C, s));
    }
    return DFA_OK;
}

/* The queued part of a forward (no host synchronisation, no upload: a CUDA Graph can capture it):
 * patchify of x (device; NULL: s->patch is filled already), the timestep MLP on s->tproj, the
 * embeddings, the blocks, the output projection and unpatchify into out (device f32). */
static dfa_status sd3_cuda_body(dfa_ctx *ctx, dfa_sd3 *m, int B, int H, int W, int n_txt, const float *x, int bcast,
                                sd3_dbuf *sp, float *out) {
    const dfa_sd3_config *c = &m->cfg;
    const int p = c->patch_size, M = c->pos_embed_max_size, C = c->inner_dim, Cin = c->in_channels;
    const int hp = H / p, wp = W / p, Ni = hp * wp, N = Ni + n_txt, K = Cin * p * p, O = c->out_channels;
    const int top = (M - hp) / 2, left = (M - wp) / 2, PO = p * p * O;
    sd3_dbuf s = *sp;
    /* patchify: (c, ky, kx) vectors, as the Conv2d weight is laid out */
    if (x) DFA_TRY(dfa_cuops_patchify(m->ops, x, B, bcast, Cin, H, W, p, s.patch, &ctx->err));
    DFA_TRY(lin(ctx, m, &m->t1, s.tproj, B, s.hid));
    DFA_TRY(dfa_cuops_act(m->ops, s.hid, (size_t)B * C, DFA_ACT_SILU, &ctx->err));
    DFA_TRY(lin(ctx, m, &m->t2, s.hid, B, s.temb));
    DFA_TRY(dfa_cuops_gate_add(m->ops, s.temb, 1, B, C, NULL, s.tv, &ctx->err));
    const dfa_lin patch = {.w = m->patch_w, .b = m->patch_b, .in = K, .out = C};
    for (int b = 0; b < B; b++) {
        bf16 *hb = s.h + (size_t)b * N * C;
        DFA_TRY(lin(ctx, m, &patch, s.patch + (size_t)b * Ni * K, Ni, hb));
        for (int i = 0; i < hp; i++) /* + pos_embed rows of the centre crop, one patch row at a time */
            DFA_TRY(dfa_cuops_gate_add(m->ops, hb + (size_t)i * wp * C, 1, wp, C, NULL,
                                       V16(m->pos) + ((size_t)(top + i) * M + left) * C, &ctx->err));
        DFA_TRY(lin(ctx, m, &m->ctx_emb, s.tin + (size_t)b * n_txt * c->joint_attention_dim, n_txt, hb + (size_t)Ni * C));
    }
    DFA_TRY(dfa_cuda_d2d(ctx->cuda, s.stemb, s.temb, (size_t)B * C * 2, &ctx->err));
    DFA_TRY(dfa_cuops_act(m->ops, s.stemb, (size_t)B * C, DFA_ACT_SILU, &ctx->err));
    for (int i = 0; i < c->num_layers; i++) DFA_TRY(block_forward(ctx, m, &m->blk[i], B, Ni, n_txt, &s));
    /* norm_out (scale, shift), proj_out, unpatchify */
    DFA_TRY(lin(ctx, m, &m->norm_out, s.stemb, B, s.mod1));
    for (int b = 0; b < B; b++) {
        const bf16 *mod = s.mod1 + (size_t)b * 2 * C;
        DFA_TRY(dfa_cuops_ln_modulate(m->ops, s.h + (size_t)b * N * C, 1, Ni, C, mod + C, mod, SD3_EPS, s.nrm, &ctx->err));
        DFA_TRY(lin(ctx, m, &m->proj_out, s.nrm, Ni, s.proj + (size_t)b * Ni * PO));
    }
    return dfa_cuops_unpatchify(m->ops, s.proj, B, O, H, W, p, out, &ctx->err);
}

/* The body under a CUDA Graph (m->graph): captured on the first call, replayed after. */
static dfa_status sd3_cuda_body_graph(dfa_ctx *ctx, dfa_sd3 *m, int B, int H, int W, int n_txt, const float *x,
                                      int bcast, sd3_dbuf *s, float *out) {
    if (!m->graph) {
        DFA_TRY(dfa_cuda_capture_begin(ctx->cuda, &ctx->err));
        m->no_timer = 1; /* event records inside a capture are not timed on replay */
        dfa_status st = sd3_cuda_body(ctx, m, B, H, W, n_txt, x, bcast, s, out);
        m->no_timer = 0;
        if (st == DFA_OK) st = dfa_cuda_capture_end(ctx->cuda, &m->graph, &ctx->err);
        if (st != DFA_OK) {
            dfa_cuda_capture_abort(ctx->cuda);
            return st;
        }
    }
    return dfa_cuda_graph_launch(ctx->cuda, m->graph, &ctx->err);
}

/* x: host [B, Cin, H, W], or device (x_dev) [B or 1 (bcast), Cin, H, W] f32; out: host or device
 * (out_dev) [B, O, H, W] f32. Patchify / unpatchify run on the device either way. graph: the
 * body under m->graph (device x and out only). */
static dfa_status sd3_cuda_run(dfa_ctx *ctx, dfa_sd3 *m, int B, int H, int W, int n_txt, const float *x, int x_dev,
                               int bcast, const float *txt, const float *pooled, const float *timestep, float *out,
                               int out_dev, int graph) {
    const dfa_sd3_config *c = &m->cfg;
    const int p = c->patch_size, C = c->inner_dim, Cin = c->in_channels;
    const int hp = H / p, wp = W / p, Ni = hp * wp, K = Cin * p * p, O = c->out_channels, PO = p * p * O;
    sd3_dbuf s;
    float *hst = NULL;
    size_t stage = 0;
    DFA_TRY(sd3_cuda_alloc(ctx, m, B, Ni, n_txt, &s, &hst, &stage));
    /* every upload first (each one waits for the stream), then the whole forward is queued with
     * no host synchronisation until the final download */
    if (!x_dev) { /* the latents as they are (B Cin H W = B Ni K floats) into the f32 staging, patchified
                   * before the next upload reuses the staging */
        DFA_TRY(dfa_cuda_h2d(ctx->cuda, s.f32, x, (size_t)B * Ni * K * sizeof(float), &ctx->err));
        DFA_TRY(dfa_cuops_patchify(m->ops, s.f32, B, 0, Cin, H, W, p, s.patch, &ctx->err));
    }
    if (!m->cond_gen) { /* text and text_embedder(pooled): once per hold (sd3_cuda_alloc) */
        DFA_TRY(upload_bf16(ctx, m, &s, txt, (size_t)B * n_txt * c->joint_attention_dim, s.tin));
        DFA_TRY(upload_bf16(ctx, m, &s, pooled, (size_t)B * c->pooled_projection_dim, s.tproj));
        DFA_TRY(lin(ctx, m, &m->p1, s.tproj, B, s.hid));
        DFA_TRY(dfa_cuops_act(m->ops, s.hid, (size_t)B * C, DFA_ACT_SILU, &ctx->err));
        DFA_TRY(lin(ctx, m, &m->p2, s.hid, B, s.tv));
        m->cond_gen = m->cond_pin, m->cond_B = B, m->cond_T = n_txt;
    }
    /* temb = timestep_embedder(proj(t)) + text_embedder(pooled) */
    const int half = 128;
    const float lmp = (float)(-log(10000.0));
    for (int b = 0; b < B; b++)
        for (int i = 0; i < half; i++) {
            float arg = timestep[b] * expf((lmp * (float)i) / (float)half);
            hst[(size_t)b * 256 + i] = cosf(arg);
            hst[(size_t)b * 256 + half + i] = sinf(arg);
        }
    DFA_TRY(upload_bf16(ctx, m, &s, hst, (size_t)B * 256, s.tproj)); /* the last upload */
    const float *xb = x_dev ? x : NULL;
    if (graph && x_dev && out_dev) DFA_TRY(sd3_cuda_body_graph(ctx, m, B, H, W, n_txt, xb, bcast, &s, out));
    else DFA_TRY(sd3_cuda_body(ctx, m, B, H, W, n_txt, xb, bcast, &s, out_dev ? out : s.f32));
    if (out_dev) return dfa_cuda_sync(ctx->cuda, &ctx->err); /* the forward ends when its output is there */
    return dfa_cuda_d2h(ctx->cuda, out, s.f32, (size_t)B * Ni * PO * sizeof(float), &ctx->err);
}

dfa_status dfa_sd3_forward_cuda(dfa_ctx *ctx, dfa_sd3 *m, int B, int H, int W, int n_txt, const float *x,
                                const float *txt, const float *pooled, const float *timestep, float *out) {
    if (!ctx->cuda || !m->ops) DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED, "sd3 forward: no CUDA device in this context");
    const double t0 = dfa_now_s();
    dfa_status st = sd3_cuda_run(ctx, m, B, H, W, n_txt, x, 0, 0, txt, pooled, timestep, out, 0, 0);
    st = dfa_mmdit_spans_end(ctx, st); /* the attention spans' GPU seconds into m->attn_s */
    m->total_s += dfa_now_s() - t0;
    return st;
}

dfa_status dfa_sd3_forward_cuda_dev(dfa_ctx *ctx, dfa_sd3 *m, int B, int H, int W, int n_txt, const float *x_dev,
                                    int bcast, const float *txt, const float *pooled, const float *timestep,
                                    float *out_dev, int graph) {
    if (!ctx->cuda || !m->ops) DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED, "sd3 forward: no CUDA device in this context");
    const double t0 = dfa_now_s();
    dfa_status st = sd3_cuda_run(ctx, m, B, H, W, n_txt, x_dev, 1, bcast, txt, pooled, timestep, out_dev, 1, graph);
    st = dfa_mmdit_spans_end(ctx, st);
    m->total_s += dfa_now_s() - t0;
    return st;
}

dfa_status dfa_sd3_sample_cuda(dfa_ctx *ctx, dfa_sd3 *m, int B, int h, int w, int n_txt, const float *txt,
                               const float *pooled, float cfg_scale, int n_steps, const float *sigmas,
                               const float *timesteps, float *x, dfa_flow_progress_fn progress, void *user) {
    if (!ctx->cuda || !m->ops) DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED, "sd3 sample: no CUDA device in this context");
    if (B != 1 && B != 2) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "sd3 sample (CUDA): batch %d (1, or 2 for CFG)", B);
    const size_t n = (size_t)m->cfg.in_channels * h * w;
    float *d = NULL;
    DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CUDA, (size_t)(1 + B) * n * sizeof(float), "sd3 latents (device)",
                              (void **)&d));
    float *dx = d, *dv = d + n; /* latents [C, h, w]; velocities [B, C, h, w] */
    dfa_status st = dfa_cuda_h2d(ctx->cuda, dx, x, n * sizeof(float), &ctx->err);
    const int planned = dfa_attn_plan(ctx) != NULL;
    /* a plan's work lists and caches before the loop: nothing is allocated or uploaded inside it */
    if (planned && st == DFA_OK) st = dfa_attn_prepare(ctx, DFA_DEV_CUDA, DFA_BF16, B, m->cfg.head_dim);
    /* CUDA Graph (dfa_sd3_set_cuda_graph, dense runs only): step 0 eager (first-use work lists and
     * GEMM algorithms), step 1 captures the forward's queued part, later steps replay it */
    const int graph = m->cuda_graph && !planned;
    for (int i = 0; i < n_steps && st == DFA_OK; i++) {
        const double t0 = dfa_now_s();
        if (planned && (st = dfa_attn_begin_step(ctx, i)) != DFA_OK) break;
        const float t[2] = {timesteps[i], timesteps[i]};
        /* latent_model_input = cat([latents] * 2): the patchify reads item 0 for both */
        st = dfa_sd3_forward_cuda_dev(ctx, m, B, h, w, n_txt, dx, 1, txt, pooled, t, dv, graph && i > 0);
        if (st == DFA_OK)
            st = dfa_cuops_flow_step(m->ops, dx, dv, n, B == 2, cfg_scale, sigmas[i + 1] - sigmas[i], &ctx->err);
        if (st == DFA_OK && progress) progress(user, i, n_steps, dfa_now_s() - t0);
    }
    if (planned) dfa_attn_end_run(ctx);
    if (st == DFA_OK) st = dfa_cuda_d2h(ctx->cuda, x, dx, n * sizeof(float), &ctx->err);
    if (m->graph) m->graph_runs++;
    dfa_cuda_graph_free(m->graph); /* it holds this loop's latents addresses */
    m->graph = NULL;
    dfa_ctx_mem_release(ctx, d);
    return st;
}
