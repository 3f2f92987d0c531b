/* flux_cuda.c - FLUX.1 transformer forward on the GPU: bf16 weights and activations (f32 inside
 * every kernel), cuBLASLt GEMMs and the fused elementwise kernels of models/cuda/ops_cuda.h,
 * attention through dfa_attn_layer() on bf16 CUDA tensors. Same steps and orders as the CPU
 * forward in flux.c (docs/DESIGN.md "MMDiT"); C only, so it builds with the CUDA stubs too. */
#include <math.h>
#include <string.h>

#include "attn/attn.h"
#include "attn/attn_state.h"
#include "core/log.h"
#include "core/cuda_rt.h"
#include "models/cuda/ops_cuda.h"
#include "models/flux_int.h"
#include "models/ops.h"

typedef uint16_t bf16;

#define W16(l) ((const bf16 *)(const void *)(l)->w)
#define B16(l) ((const bf16 *)(const void *)(l)->b)

typedef struct flux_dbuf {
    bf16 *h, *nrm, *q, *k, *v, *att, *tmp, *ff; /* [B, N, *] */
    bf16 *xin, *out16;                          /* input / output in bf16 */
    bf16 *tproj, *temb, *stemb, *tv, *hid;      /* [B, max(256, P)], [B, C] x 4 */
    bf16 *tin, *pv; /* text [B T, J] and pooled-text embedding [B, C]: in m->dcond (kept under a hold) */
    bf16 *mod1, *mod2;                          /* [B, 6C] */
    float *f32;                                 /* staging for conversions */
    float *cos_t, *sin_t;                       /* [N, D/2]: in m->dcond too */
} flux_dbuf;

static size_t b16(size_t n) { return (n * 2 + 255u) & ~(size_t)255u; }
static size_t b32(size_t n) { return (n * 4 + 255u) & ~(size_t)255u; }

static dfa_status dev_alloc(dfa_ctx *ctx, dfa_arena *a, size_t bytes, void **p, dfa_status st) {
    if (st != DFA_OK) return st;
    return dfa_arena_alloc(ctx, a, bytes, p);
}

static dfa_status flux_cuda_alloc(dfa_ctx *ctx, dfa_flux *m, int B, int Ni, int Nt, flux_dbuf *s, float **host_f32,
                                  size_t *stage_n) {
    const dfa_flux_config *c = &m->cfg;
    const size_t C = (size_t)c->inner_dim, F = (size_t)c->mlp_hidden, N = (size_t)Ni + Nt, BN = (size_t)B * N;
    const size_t P = (size_t)N * (c->head_dim / 2), O = (size_t)m->proj_out.out;
    size_t stage = (size_t)B * Ni * c->in_channels;
    if ((size_t)B * Nt * c->joint_attention_dim > stage) stage = (size_t)B * Nt * c->joint_attention_dim;
    if ((size_t)B * Ni * O > stage) stage = (size_t)B * Ni * O;
    if ((size_t)B * (c->pooled_projection_dim + 256) > stage) stage = (size_t)B * (c->pooled_projection_dim + 256);
    if (2 * P > stage) stage = 2 * P;
    *stage_n = stage;
    /* tproj holds the timestep sinusoids [B, 256] and then the pooled text [B, P] (P 768 in FLUX.1) */
    const size_t TP = (size_t)(c->pooled_projection_dim > 256 ? c->pooled_projection_dim : 256);
    size_t bytes = 7 * b16(BN * C) + b16(BN * F) + b16((size_t)B * Ni * c->in_channels) + b16((size_t)B * Ni * O) +
                   b16((size_t)B * TP) + 4 * b16((size_t)B * C) + 2 * b16((size_t)B * 6 * C) + b32(stage) + 4096;
    DFA_TRY(dfa_mmdit_arena_ensure(ctx, &m->act, DFA_DEV_CUDA, bytes, "flux activations (device)"));
    DFA_TRY(dfa_mmdit_arena_ensure(ctx, &m->host, DFA_DEV_CPU, b32(stage) + 256, "flux host staging"));
    dfa_status st = DFA_OK;
    dfa_arena *a = &m->act;
    void **dst[] = {(void **)&s->h, (void **)&s->nrm, (void **)&s->q, (void **)&s->k, (void **)&s->v,
                    (void **)&s->att, (void **)&s->tmp};
    for (int i = 0; i < 7; i++) st = dev_alloc(ctx, a, b16(BN * C), dst[i], st);
    st = dev_alloc(ctx, a, b16(BN * F), (void **)&s->ff, st);
    st = dev_alloc(ctx, a, b16((size_t)B * Ni * c->in_channels), (void **)&s->xin, st);
    st = dev_alloc(ctx, a, b16((size_t)B * Ni * O), (void **)&s->out16, st);
    st = dev_alloc(ctx, a, b16((size_t)B * TP), (void **)&s->tproj, st);
    void **d4[] = {(void **)&s->temb, (void **)&s->stemb, (void **)&s->tv, (void **)&s->hid};
    for (int i = 0; i < 4; i++) st = dev_alloc(ctx, a, b16((size_t)B * C), d4[i], st);
    st = dev_alloc(ctx, a, b16((size_t)B * 6 * C), (void **)&s->mod1, st);
    st = dev_alloc(ctx, a, b16((size_t)B * 6 * C), (void **)&s->mod2, st);
    st = dev_alloc(ctx, a, b32(stage), (void **)&s->f32, st);
    if (st == DFA_OK) st = dfa_arena_alloc(ctx, &m->host, stage * sizeof(float), (void **)host_f32);
    if (st != DFA_OK) return st;
    /* text, pooled-text embedding, RoPE tables: their own block, kept across the forwards of a hold */
    const size_t tin_b = b16((size_t)B * Nt * c->joint_attention_dim + 1), pv_b = b16((size_t)B * C);
    const size_t cond = tin_b + pv_b + 2 * b32(P);
    const int held = m->cond_pin && m->cond_gen == m->cond_pin && m->cond_B == B && m->cond_T == Nt &&
                     m->cond_N == (int)N && m->dcond;
    if (!held) m->cond_gen = 0;
    if (m->dcond_size < cond) {
        if (m->dcond) dfa_ctx_mem_release(ctx, m->dcond);
        m->dcond = NULL, m->dcond_size = 0;
        DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CUDA, cond, "flux text conditioning (device)", &m->dcond));
        m->dcond_size = cond;
    }
    char *d = m->dcond;
    s->tin = (bf16 *)(void *)d;
    s->pv = (bf16 *)(void *)(d + tin_b);
    s->cos_t = (float *)(void *)(d + tin_b + pv_b);
    s->sin_t = (float *)(void *)(d + tin_b + pv_b + b32(P));
    return DFA_OK;
}

/* host f32 [n] -> device bf16 [n] through the f32 staging buffer */
static dfa_status upload_bf16(dfa_ctx *ctx, dfa_flux *m, flux_dbuf *s, const float *src, size_t n, bf16 *dst) {
    DFA_TRY(dfa_cuda_h2d(ctx->cuda, s->f32, src, n * sizeof(float), &ctx->err));
    return dfa_cuops_f32_to_bf16(m->ops, s->f32, dst, n, &ctx->err);
}

static dfa_status lin(dfa_ctx *ctx, dfa_flux *m, const dfa_lin *l, const bf16 *x, int M, bf16 *y, int acc) {
    return dfa_cuops_linear(m->ops, x, M, l->in, W16(l), B16(l), l->out, acc, y, &ctx->err);
}

/* t (already x1000) -> 256-channel sinusoid on the host -> MLP on the device: out [B, C] */
static dfa_status timestep_mlp(dfa_ctx *ctx, dfa_flux *m, flux_dbuf *s, float *hst, int B, const float *t,
                               const dfa_lin *l1, const dfa_lin *l2, bf16 *out) {
    const int half = 128;
    const float lmp = (float)(-log(10000.0));
    for (int b = 0; b < B; b++)
        for (int i = 0; i < half; i++) {
            float arg = t[b] * expf((lmp * (float)i) / (float)half);
            hst[(size_t)b * 256 + i] = cosf(arg);
            hst[(size_t)b * 256 + half + i] = sinf(arg);
        }
    DFA_TRY(upload_bf16(ctx, m, s, hst, (size_t)B * 256, s->tproj));
    DFA_TRY(lin(ctx, m, l1, s->tproj, B, s->hid, 0));
    DFA_TRY(dfa_cuops_act(m->ops, s->hid, (size_t)B * l1->out, DFA_ACT_SILU, &ctx->err));
    return lin(ctx, m, l2, s->hid, B, out, 0);
}

static dfa_status attention(dfa_ctx *ctx, dfa_flux *m, int layer, const dfa_attn_layout *lay, int B, int N,
                            flux_dbuf *s) {
    const dfa_flux_config *c = &m->cfg;
    return dfa_attn_layer_bf16_cuda(ctx, layer, lay, B, N, c->n_heads, c->head_dim, s->q, s->k, s->v, s->att,
                                    &m->attn_s);
}

/* modulated norm + q/k/v + per-head RMSNorm for T rows at row0 (one stream of one batch element) */
static dfa_status double_qkv(dfa_ctx *ctx, dfa_flux *m, const dfa_lin *lq, const dfa_lin *lk, const dfa_lin *lv,
                             const float *nq, const float *nk, const bf16 *mod, size_t row0, int T, flux_dbuf *s) {
    const dfa_flux_config *c = &m->cfg;
    const size_t C = (size_t)c->inner_dim;
    bf16 *y = s->nrm + row0 * C;
    DFA_TRY(dfa_cuops_ln_modulate(m->ops, s->h + row0 * C, 1, T, (int)C, mod, mod + C, FLUX_EPS, y, &ctx->err));
    DFA_TRY(lin(ctx, m, lq, y, T, s->q + row0 * C, 0));
    DFA_TRY(lin(ctx, m, lk, y, T, s->k + row0 * C, 0));
    DFA_TRY(lin(ctx, m, lv, y, T, s->v + row0 * C, 0));
    DFA_TRY(dfa_cuops_rmsnorm(m->ops, s->q + row0 * C, T * c->n_heads, c->head_dim, (const bf16 *)(const void *)nq,
                              FLUX_EPS, s->q + row0 * C, &ctx->err));
    return dfa_cuops_rmsnorm(m->ops, s->k + row0 * C, T * c->n_heads, c->head_dim, (const bf16 *)(const void *)nk,
                             FLUX_EPS, s->k + row0 * C, &ctx->err);
}

static dfa_status double_post(dfa_ctx *ctx, dfa_flux *m, const dfa_lin *lout, const dfa_lin *f0, const dfa_lin *f2,
                              const bf16 *mod, size_t row0, int T, flux_dbuf *s) {
    const size_t C = (size_t)m->cfg.inner_dim, F = (size_t)m->cfg.mlp_hidden;
    bf16 *h = s->h + row0 * C, *tmp = s->tmp + row0 * C, *nrm = s->nrm + row0 * C, *ff = s->ff + row0 * F;
    DFA_TRY(lin(ctx, m, lout, s->att + row0 * C, T, tmp, 0));
    DFA_TRY(dfa_cuops_gate_add(m->ops, h, 1, T, (int)C, mod + 2 * C, tmp, &ctx->err)); /* gate_msa */
    DFA_TRY(dfa_cuops_ln_modulate(m->ops, h, 1, T, (int)C, mod + 3 * C, mod + 4 * C, FLUX_EPS, nrm, &ctx->err));
    DFA_TRY(lin(ctx, m, f0, nrm, T, ff, 0));
    DFA_TRY(dfa_cuops_act(m->ops, ff, (size_t)T * F, DFA_ACT_GELU_TANH, &ctx->err));
    DFA_TRY(lin(ctx, m, f2, ff, T, tmp, 0));
    return dfa_cuops_gate_add(m->ops, h, 1, T, (int)C, mod + 5 * C, tmp, &ctx->err); /* gate_mlp */
}

/* x: host [B, n_img, in_channels], or device f32 (dev) [B or 1 (bcast), n_img, in_channels];
 * out: host, or device (dev) [B, n_img, out] f32. */
static dfa_status flux_cuda_run(dfa_ctx *ctx, dfa_flux *m, int B, int n_img, int n_txt, const float *x, int bcast,
                                const float *txt, const float *pooled, const float *timestep, const float *guidance,
                                const float *txt_ids, const float *img_ids, float *out, int dev) {
    const dfa_flux_config *c = &m->cfg;
    const int C = c->inner_dim, N = n_txt + n_img, H = c->n_heads, D = c->head_dim;
    const int O = m->proj_out.out;
    flux_dbuf s;
    float *hst = NULL;
    size_t stage_n = 0;
    DFA_TRY(flux_cuda_alloc(ctx, m, B, n_img, n_txt, &s, &hst, &stage_n));
    const dfa_attn_layout lay = {.n_vis = n_img, .n_text = n_txt, .text_first = 1, .block = FLUX_ATTN_BLOCK};

    /* inputs and embeddings, layout [text, image] per batch element; text, pooled-text embedding
     * and RoPE tables once per hold (flux_cuda_alloc) */
    const size_t nxi = (size_t)n_img * c->in_channels;
    if (!dev) DFA_TRY(upload_bf16(ctx, m, &s, x, (size_t)B * nxi, s.xin));
    for (int b = 0; dev && b < B; b++)
        DFA_TRY(dfa_cuops_f32_to_bf16(m->ops, x + (bcast ? 0 : b) * nxi, s.xin + b * nxi, nxi, &ctx->err));
    const int fresh = !m->cond_gen;
    if (fresh) {
        if (n_txt) DFA_TRY(upload_bf16(ctx, m, &s, txt, (size_t)B * n_txt * c->joint_attention_dim, s.tin));
        DFA_TRY(upload_bf16(ctx, m, &s, pooled, (size_t)B * c->pooled_projection_dim, s.tproj));
        DFA_TRY(lin(ctx, m, &m->p1, s.tproj, B, s.hid, 0));
        DFA_TRY(dfa_cuops_act(m->ops, s.hid, (size_t)B * C, DFA_ACT_SILU, &ctx->err));
        DFA_TRY(lin(ctx, m, &m->p2, s.hid, B, s.pv, 0));
        const size_t P = (size_t)N * (D / 2); /* RoPE tables on the host */
        dfa_flux_rope_table(c, N, txt_ids, n_txt, img_ids, hst, hst + P);
        DFA_TRY(dfa_cuda_h2d(ctx->cuda, s.cos_t, hst, P * sizeof(float), &ctx->err));
        DFA_TRY(dfa_cuda_h2d(ctx->cuda, s.sin_t, hst + P, P * sizeof(float), &ctx->err));
    }
    float tb[64], gb[64];
    for (int b = 0; b < B; b++) {
        tb[b] = timestep[b] * 1000.0f;
        if (c->guidance_embeds) gb[b] = guidance[b] * 1000.0f;
    }
    DFA_TRY(timestep_mlp(ctx, m, &s, hst, B, tb, &m->t1, &m->t2, s.temb));
    if (c->guidance_embeds) {
        DFA_TRY(timestep_mlp(ctx, m, &s, hst, B, gb, &m->g1, &m->g2, s.tv));
        DFA_TRY(dfa_cuops_gate_add(m->ops, s.temb, 1, B, C, NULL, s.tv, &ctx->err));
    }
    DFA_TRY(dfa_cuops_gate_add(m->ops, s.temb, 1, B, C, NULL, s.pv, &ctx->err));
    DFA_TRY(dfa_cuda_d2d(ctx->cuda, s.stemb, s.temb, (size_t)B * C * 2, &ctx->err));
    DFA_TRY(dfa_cuops_act(m->ops, s.stemb, (size_t)B * C, DFA_ACT_SILU, &ctx->err));
    if (fresh) m->cond_gen = m->cond_pin, m->cond_B = B, m->cond_T = n_txt, m->cond_N = N;
    /* the last upload is done: from here the forward is queued without host synchronisation */
    for (int b = 0; b < B; b++) {
        if (n_txt)
            DFA_TRY(lin(ctx, m, &m->ctx_emb, s.tin + (size_t)b * n_txt * c->joint_attention_dim, n_txt,
                        s.h + (size_t)b * N * C, 0));
        DFA_TRY(lin(ctx, m, &m->x_emb, s.xin + (size_t)b * n_img * c->in_channels, n_img,
                    s.h + ((size_t)b * N + n_txt) * C, 0));
    }

    for (int i = 0; i < c->num_layers; i++) {
        const flux_double *blk = &m->dbl[i];
        DFA_TRY(lin(ctx, m, &blk->norm1, s.stemb, B, s.mod1, 0));
        DFA_TRY(lin(ctx, m, &blk->norm1_ctx, s.stemb, B, s.mod2, 0));
        for (int b = 0; b < B; b++) {
            const size_t r_txt = (size_t)b * N, r_img = r_txt + n_txt;
            DFA_TRY(double_qkv(ctx, m, &blk->q, &blk->k, &blk->v, blk->nq, blk->nk, s.mod1 + (size_t)b * 6 * C, r_img,
                               n_img, &s));
            if (n_txt)
                DFA_TRY(double_qkv(ctx, m, &blk->aq, &blk->ak, &blk->av, blk->naq, blk->nak,
                                   s.mod2 + (size_t)b * 6 * C, r_txt, n_txt, &s));
        }
        DFA_TRY(dfa_cuops_rope(m->ops, s.q, B, N, H, D, s.cos_t, s.sin_t, &ctx->err));
        DFA_TRY(dfa_cuops_rope(m->ops, s.k, B, N, H, D, s.cos_t, s.sin_t, &ctx->err));
        DFA_TRY(attention(ctx, m, i, &lay, B, N, &s));
        for (int b = 0; b < B; b++) {
            const size_t r_txt = (size_t)b * N, r_img = r_txt + n_txt;
            DFA_TRY(double_post(ctx, m, &blk->out, &blk->ff0, &blk->ff2, s.mod1 + (size_t)b * 6 * C, r_img, n_img, &s));
            if (n_txt)
                DFA_TRY(double_post(ctx, m, &blk->add_out, &blk->ffc0, &blk->ffc2, s.mod2 + (size_t)b * 6 * C, r_txt,
                                    n_txt, &s));
        }
    }
    const int BN = B * N, F = c->mlp_hidden;
    for (int i = 0; i < c->num_single_layers; i++) {
        const flux_single *blk = &m->sgl[i];
        DFA_TRY(lin(ctx, m, &blk->norm, s.stemb, B, s.mod1, 0)); /* shift, scale, gate */
        for (int b = 0; b < B; b++) {
            const bf16 *mod = s.mod1 + (size_t)b * 3 * C;
            DFA_TRY(dfa_cuops_ln_modulate(m->ops, s.h + (size_t)b * N * C, 1, N, C, mod, mod + C, FLUX_EPS,
                                          s.nrm + (size_t)b * N * C, &ctx->err));
        }
        DFA_TRY(lin(ctx, m, &blk->q, s.nrm, BN, s.q, 0));
        DFA_TRY(lin(ctx, m, &blk->k, s.nrm, BN, s.k, 0));
        DFA_TRY(lin(ctx, m, &blk->v, s.nrm, BN, s.v, 0));
        DFA_TRY(lin(ctx, m, &blk->mlp, s.nrm, BN, s.ff, 0));
        DFA_TRY(dfa_cuops_act(m->ops, s.ff, (size_t)BN * F, DFA_ACT_GELU_TANH, &ctx->err));
        DFA_TRY(dfa_cuops_rmsnorm(m->ops, s.q, BN * H, D, (const bf16 *)(const void *)blk->nq, FLUX_EPS, s.q, &ctx->err));
        DFA_TRY(dfa_cuops_rmsnorm(m->ops, s.k, BN * H, D, (const bf16 *)(const void *)blk->nk, FLUX_EPS, s.k, &ctx->err));
        DFA_TRY(dfa_cuops_rope(m->ops, s.q, B, N, H, D, s.cos_t, s.sin_t, &ctx->err));
        DFA_TRY(dfa_cuops_rope(m->ops, s.k, B, N, H, D, s.cos_t, s.sin_t, &ctx->err));
        DFA_TRY(attention(ctx, m, c->num_layers + i, &lay, B, N, &s));
        /* proj_out over [attn, mlp]: the weight is stored split ([C, C] then [C, F]) */
        const bf16 *w = W16(&blk->proj_out);
        DFA_TRY(dfa_cuops_linear(m->ops, s.att, BN, C, w, B16(&blk->proj_out), C, 0, s.tmp, &ctx->err));
        DFA_TRY(dfa_cuops_linear(m->ops, s.ff, BN, F, w + (size_t)C * C, NULL, C, 1, s.tmp, &ctx->err));
        for (int b = 0; b < B; b++)
            DFA_TRY(dfa_cuops_gate_add(m->ops, s.h + (size_t)b * N * C, 1, N, C, s.mod1 + (size_t)b * 3 * C + 2 * C,
                                       s.tmp + (size_t)b * N * C, &ctx->err));
    }
    /* norm_out (scale, shift) and proj_out on the image tokens */
    DFA_TRY(lin(ctx, m, &m->norm_out, s.stemb, B, s.mod1, 0));
    for (int b = 0; b < B; b++) {
        const size_t r_img = (size_t)b * N + n_txt;
        const bf16 *mod = s.mod1 + (size_t)b * 2 * C;
        DFA_TRY(dfa_cuops_ln_modulate(m->ops, s.h + r_img * C, 1, n_img, C, mod + C, mod, FLUX_EPS, s.nrm + r_img * C,
                                      &ctx->err));
        DFA_TRY(lin(ctx, m, &m->proj_out, s.nrm + r_img * C, n_img, s.out16 + (size_t)b * n_img * O, 0));
    }
    const size_t no = (size_t)B * n_img * O;
    DFA_TRY(dfa_cuops_bf16_to_f32(m->ops, s.out16, dev ? out : s.f32, no, &ctx->err));
    if (dev) return dfa_cuda_sync(ctx->cuda, &ctx->err); /* the forward ends when its output is there */
    return dfa_cuda_d2h(ctx->cuda, out, s.f32, no * sizeof(float), &ctx->err);
}

dfa_status dfa_flux_forward_cuda(dfa_ctx *ctx, dfa_flux *m, int B, int n_img, int n_txt, const float *x,
                                 const float *txt, const float *pooled, const float *timestep, const float *guidance,
                                 const float *txt_ids, const float *img_ids, float *out) {
    if (!ctx->cuda || !m->ops) DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED, "flux forward: no CUDA device in this context");
    if (B > 64) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "flux forward (CUDA): batch %d > 64", B);
    const double t0 = dfa_now_s();
    dfa_status st =
        flux_cuda_run(ctx, m, B, n_img, n_txt, x, 0, txt, pooled, timestep, guidance, txt_ids, img_ids, out, 0);
    st = dfa_mmdit_spans_end(ctx, st); /* the attention spans' GPU seconds into m->attn_s */
    m->total_s += dfa_now_s() - t0;
    return st;
}

dfa_status dfa_flux_sample_cuda(dfa_ctx *ctx, dfa_flux *m, int B, int n_img, int n_txt, const float *txt,
                                const float *pooled, float guidance, float cfg_scale, const float *txt_ids,
                                const float *img_ids, int n_steps, const float *sigmas, const float *timesteps,
                                float *x, dfa_flow_progress_fn progress, void *user) {
    if (!ctx->cuda || !m->ops) DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED, "flux sample: no CUDA device in this context");
    if (B != 1 && B != 2) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "flux sample (CUDA): batch %d (1, or 2 for CFG)", B);
    if (m->proj_out.out != m->cfg.in_channels)
        DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED, "flux sample (CUDA): out %d != in_channels %d", m->proj_out.out,
                     m->cfg.in_channels);
    const size_t n = (size_t)n_img * m->cfg.in_channels;
    float *d = NULL;
    DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CUDA, (size_t)(1 + B) * n * sizeof(float), "flux latents (device)",
                              (void **)&d));
    float *dx = d, *dv = d + n; /* packed latents [n_img, in_channels]; velocities [B, n_img, in_channels] */
    dfa_status st = dfa_cuda_h2d(ctx->cuda, dx, x, n * sizeof(float), &ctx->err);
    const int planned = dfa_attn_plan(ctx) != NULL, guided = m->cfg.guidance_embeds;
    /* a plan's work lists and caches before the loop: nothing is allocated or uploaded inside it */
    if (planned && st == DFA_OK) st = dfa_attn_prepare(ctx, DFA_DEV_CUDA, DFA_BF16, B, m->cfg.head_dim);
    const float g[2] = {guidance, guidance};
    for (int i = 0; i < n_steps && st == DFA_OK; i++) {
        const double t0 = dfa_now_s();
        if (planned && (st = dfa_attn_begin_step(ctx, i)) != DFA_OK) break;
        const float t[2] = {timesteps[i] / 1000.0f, timesteps[i] / 1000.0f};
        const double f0 = dfa_now_s();
        st = flux_cuda_run(ctx, m, B, n_img, n_txt, dx, 1, txt, pooled, t, guided ? g : NULL, txt_ids, img_ids, dv, 1);
        st = dfa_mmdit_spans_end(ctx, st);
        m->total_s += dfa_now_s() - f0;
        if (st == DFA_OK)
            st = dfa_cuops_flow_step(m->ops, dx, dv, n, B == 2, cfg_scale, sigmas[i + 1] - sigmas[i], &ctx->err);
        if (st == DFA_OK && progress) progress(user, i, n_steps, dfa_now_s() - t0);
    }
    if (planned) dfa_attn_end_run(ctx);
    if (st == DFA_OK) st = dfa_cuda_d2h(ctx->cuda, x, dx, n * sizeof(float), &ctx->err);
    dfa_ctx_mem_release(ctx, d);
    return st;
}
