/* sd3.c - SD3 / SD3.5 transformer forward on the CPU (f32), matching diffusers
 * SD3Transformer2DModel. See sd3.h and docs/DESIGN.md "MMDiT". */
#include "models/sd3.h"
#include "core/log.h"
#include "models/sd3_int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "attn/attn.h"
#include "models/cuda/ops_cuda.h"
#include "models/mmdit.h"
#include "models/ops.h"


/* ---- config and weights ---- */

static dfa_status sd3_parse_config(dfa_ctx *ctx, const cJSON *j, const char *what, dfa_sd3_config *c) {
    dfa_error *e = &ctx->err;
    memset(c, 0, sizeof *c);
    DFA_TRY(dfa_json_int_or(j, "sample_size", what, 128, &c->sample_size, e));
    DFA_TRY(dfa_json_int_or(j, "patch_size", what, 2, &c->patch_size, e));
    DFA_TRY(dfa_json_int_or(j, "in_channels", what, 16, &c->in_channels, e));
    DFA_TRY(dfa_json_int_or(j, "out_channels", what, c->in_channels, &c->out_channels, e));
    DFA_TRY(dfa_json_int_or(j, "num_layers", what, 18, &c->num_layers, e));
    DFA_TRY(dfa_json_int_or(j, "attention_head_dim", what, 64, &c->head_dim, e));
    DFA_TRY(dfa_json_int_or(j, "num_attention_heads", what, 18, &c->n_heads, e));
    DFA_TRY(dfa_json_int_or(j, "joint_attention_dim", what, 4096, &c->joint_attention_dim, e));
    DFA_TRY(dfa_json_int_or(j, "caption_projection_dim", what, 1152, &c->caption_projection_dim, e));
    DFA_TRY(dfa_json_int_or(j, "pooled_projection_dim", what, 2048, &c->pooled_projection_dim, e));
    DFA_TRY(dfa_json_int_or(j, "pos_embed_max_size", what, 96, &c->pos_embed_max_size, e));
    const cJSON *qk = cJSON_GetObjectItemCaseSensitive(j, "qk_norm");
    if (qk && !cJSON_IsNull(qk)) {
        if (!cJSON_IsString(qk) || strcmp(qk->valuestring, "rms_norm") != 0)
            DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED, "%s: qk_norm %s is not supported (null or \"rms_norm\")", what,
                         cJSON_IsString(qk) ? qk->valuestring : "(not a string)");
        c->qk_rms_norm = 1;
    }
    if (c->num_layers < 1 || c->num_layers > DFA_SD3_MAX_LAYERS || c->patch_size < 1 || c->in_channels < 1 ||
        c->out_channels < 1 || c->head_dim < 1 || c->n_heads < 1 || c->joint_attention_dim < 1 ||
        c->pooled_projection_dim < 1 || c->pos_embed_max_size < 1)
        DFA_CTX_FAIL(ctx, DFA_ERR_FORMAT, "%s: impossible SD3 config (layers %d, patch %d, in %d, out %d, heads %d x %d, "
                     "pos_embed_max_size %d)", what, c->num_layers, c->patch_size, c->in_channels, c->out_channels,
                     c->n_heads, c->head_dim, c->pos_embed_max_size);
    c->inner_dim = c->n_heads * c->head_dim;
    c->mlp_hidden = 4 * c->inner_dim;
    if (c->caption_projection_dim != c->inner_dim)
        DFA_CTX_FAIL(ctx, DFA_ERR_FORMAT, "%s: caption_projection_dim %d must equal num_attention_heads x "
                     "attention_head_dim = %d for joint attention", what, c->caption_projection_dim, c->inner_dim);
    int dl[DFA_SD3_MAX_LAYERS], nd = 0;
    DFA_TRY(dfa_mmdit_json_ints(ctx, j, "dual_attention_layers", what, dl, DFA_SD3_MAX_LAYERS, &nd));
    for (int i = 0; i < nd; i++) {
        if (dl[i] < 0 || dl[i] >= c->num_layers)
            DFA_CTX_FAIL(ctx, DFA_ERR_FORMAT, "%s: dual_attention_layers names block %d of %d", what, dl[i], c->num_layers);
        if (!c->dual[dl[i]]) c->n_dual++;
        c->dual[dl[i]] = 1;
    }
    return DFA_OK;
}

static void sd3_register_attn(dfa_wtab *t, sd3_attn *a, int C, int D, int qk, const char *name, int i) {
    const int64_t ds[1] = {D};
    dfa_wtab_linear(t, &a->q, C, C, 1, "transformer_blocks.%d.%s.to_q", i, name);
    dfa_wtab_linear(t, &a->k, C, C, 1, "transformer_blocks.%d.%s.to_k", i, name);
    dfa_wtab_linear(t, &a->v, C, C, 1, "transformer_blocks.%d.%s.to_v", i, name);
    dfa_wtab_linear(t, &a->out, C, C, 1, "transformer_blocks.%d.%s.to_out.0", i, name);
    a->nq = a->nk = NULL;
    if (qk) {
        dfa_wtab_add(t, &a->nq, 1, ds, "transformer_blocks.%d.%s.norm_q.weight", i, name);
        dfa_wtab_add(t, &a->nk, 1, ds, "transformer_blocks.%d.%s.norm_k.weight", i, name);
    }
}

static void sd3_register(void *model, dfa_wtab *t) {
    dfa_sd3 *m = model;
    const dfa_sd3_config *c = &m->cfg;
    const int C = c->inner_dim, D = c->head_dim, F = c->mlp_hidden, p = c->patch_size, M = c->pos_embed_max_size;
    const int64_t pw[4] = {C, c->in_channels, p, p}, pb[1] = {C}, pe[3] = {1, (int64_t)M * M, C}, ds[1] = {D};
    dfa_wtab_add(t, &m->patch_w, 4, pw, "pos_embed.proj.weight");
    dfa_wtab_add(t, &m->patch_b, 1, pb, "pos_embed.proj.bias");
    dfa_wtab_add(t, &m->pos, 3, pe, "pos_embed.pos_embed");
    dfa_wtab_linear(t, &m->t1, 256, C, 1, "time_text_embed.timestep_embedder.linear_1");
    dfa_wtab_linear(t, &m->t2, C, C, 1, "time_text_embed.timestep_embedder.linear_2");
    dfa_wtab_linear(t, &m->p1, c->pooled_projection_dim, C, 1, "time_text_embed.text_embedder.linear_1");
    dfa_wtab_linear(t, &m->p2, C, C, 1, "time_text_embed.text_embedder.linear_2");
    dfa_wtab_linear(t, &m->ctx_emb, c->joint_attention_dim, c->caption_projection_dim, 1, "context_embedder");
    for (int i = 0; i < c->num_layers; i++) {
        sd3_block *b = &m->blk[i];
        b->pre_only = i == c->num_layers - 1;
        b->dual = c->dual[i];
        dfa_wtab_linear(t, &b->norm1, C, (b->dual ? 9 : 6) * C, 1, "transformer_blocks.%d.norm1.linear", i);
        dfa_wtab_linear(t, &b->norm1_ctx, C, (b->pre_only ? 2 : 6) * C, 1, "transformer_blocks.%d.norm1_context.linear",
                        i);
        sd3_register_attn(t, &b->a, C, D, c->qk_rms_norm, "attn", i);
        dfa_wtab_linear(t, &b->aq, C, C, 1, "transformer_blocks.%d.attn.add_q_proj", i);
        dfa_wtab_linear(t, &b->ak, C, C, 1, "transformer_blocks.%d.attn.add_k_proj", i);
        dfa_wtab_linear(t, &b->av, C, C, 1, "transformer_blocks.%d.attn.add_v_proj", i);
        if (!b->pre_only) dfa_wtab_linear(t, &b->add_out, C, C, 1, "transformer_blocks.%d.attn.to_add_out", i);
        b->naq = b->nak = NULL;
        if (c->qk_rms_norm) {
            dfa_wtab_add(t, &b->naq, 1, ds, "transformer_blocks.%d.attn.norm_added_q.weight", i);
            dfa_wtab_add(t, &b->nak, 1, ds, "transformer_blocks.%d.attn.norm_added_k.weight", i);
        }
        if (b->dual) sd3_register_attn(t, &b->a2, C, D, c->qk_rms_norm, "attn2", i);
        dfa_wtab_linear(t, &b->ff0, C, F, 1, "transformer_blocks.%d.ff.net.0.proj", i);
        dfa_wtab_linear(t, &b->ff2, F, C, 1, "transformer_blocks.%d.ff.net.2", i);
        if (!b->pre_only) {
            dfa_wtab_linear(t, &b->ffc0, C, F, 1, "transformer_blocks.%d.ff_context.net.0.proj", i);
            dfa_wtab_linear(t, &b->ffc2, F, C, 1, "transformer_blocks.%d.ff_context.net.2", i);
        }
    }
    dfa_wtab_linear(t, &m->norm_out, C, 2 * C, 1, "norm_out.linear");
    dfa_wtab_linear(t, &m->proj_out, C, p * p * c->out_channels, 1, "proj_out");
}

/* Parse the config and allocate the model and its blocks (no weights yet). */
static dfa_status sd3_new(dfa_ctx *ctx, const char *model_dir, dfa_sd3 **out, char *tdir, size_t tdir_len) {
    *out = NULL;
    char cfg_path[1100];
    cJSON *j = NULL;
    DFA_TRY(dfa_mmdit_read_config(ctx, model_dir, &j, tdir, tdir_len, cfg_path, sizeof cfg_path));
    dfa_sd3 *m = NULL;
    dfa_status st = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, sizeof *m, "sd3 model", (void **)&m);
    if (st != DFA_OK) {
        cJSON_Delete(j);
        return st;
    }
    memset(m, 0, sizeof *m);
    st = sd3_parse_config(ctx, j, cfg_path, &m->cfg);
    cJSON_Delete(j);
    if (st == DFA_OK)
        st = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, (size_t)m->cfg.num_layers * sizeof(sd3_block), "sd3 blocks",
                               (void **)&m->blk);
    if (st != DFA_OK) {
        dfa_sd3_free(ctx, m);
        return st;
    }
    memset(m->blk, 0, (size_t)m->cfg.num_layers * sizeof(sd3_block));
    *out = m;
    return DFA_OK;
}

dfa_status dfa_sd3_load(dfa_ctx *ctx, const char *model_dir, dfa_sd3 **out) {
    char tdir[1024];
    dfa_sd3 *m = NULL;
    DFA_TRY(sd3_new(ctx, model_dir, &m, tdir, sizeof tdir));
    dfa_status st = DFA_OK;
    m->dev = dfa_ctx_backend(ctx) == DFA_BACKEND_CUDA ? DFA_DEV_CUDA : DFA_DEV_CPU;
    if (m->dev == DFA_DEV_CUDA) st = dfa_cuops_init(&m->ops, ctx->cuda, &ctx->err);
    if (st == DFA_OK)
        st = dfa_wtab_load(ctx, m, sd3_register, tdir, m->dev, m->dev == DFA_DEV_CUDA ? DFA_BF16 : DFA_F32,
                           &m->weights, &m->weight_bytes);
    if (st != DFA_OK) {
        dfa_sd3_free(ctx, m);
        return st;
    }
    for (int i = 0, a = 0; i < m->cfg.num_layers; i++) {
        m->blk[i].attn_index = a;
        a += 1 + m->blk[i].dual;
    }
    *out = m;
    return DFA_OK;
}

dfa_status dfa_sd3_write_random(dfa_ctx *ctx, const char *model_dir, uint64_t seed) {
    char tdir[1024], path[1100];
    dfa_sd3 *m = NULL;
    DFA_TRY(sd3_new(ctx, model_dir, &m, tdir, sizeof tdir));
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", tdir);
    dfa_status st = dfa_wtab_write_random(ctx, m, sd3_register, path, seed);
    dfa_sd3_free(ctx, m);
    return st;
}

void dfa_sd3_free(dfa_ctx *ctx, dfa_sd3 *m) {
    if (!m) return;
    if (m->act.base) dfa_arena_release(ctx, &m->act);
    if (m->host.base) dfa_arena_release(ctx, &m->host);
    if (m->dcond) dfa_ctx_mem_release(ctx, m->dcond);
    if (m->weights) dfa_ctx_mem_release(ctx, m->weights);
    if (m->ops) dfa_cuops_free(m->ops);
    if (m->blk) dfa_ctx_mem_release(ctx, m->blk);
    dfa_ctx_mem_release(ctx, m);
}

const dfa_sd3_config *dfa_sd3_get_config(const dfa_sd3 *m) { return &m->cfg; }
int dfa_sd3_attn_layers(const dfa_sd3 *m) { return m->cfg.num_layers + m->cfg.n_dual; }
int dfa_sd3_attn_image_only(const dfa_sd3 *m, int layer) {
    for (int i = 0; i < m->cfg.num_layers; i++)
        if (m->blk[i].dual && m->blk[i].attn_index + 1 == layer) return 1;
    return 0;
}
void dfa_sd3_times(const dfa_sd3 *m, double *attn_s, double *total_s) {
    if (attn_s) *attn_s = m->attn_s;
    if (total_s) *total_s = m->total_s;
}
void dfa_sd3_reset_times(dfa_sd3 *m) { m->attn_s = m->total_s = 0; }
void dfa_sd3_set_gemm_timer(dfa_sd3 *m, double *secs) {
    if (m->ops) dfa_cuops_set_gemm_timer(m->ops, secs);
}
int dfa_sd3_set_cuda_graph(dfa_sd3 *m, int on) {
    m->cuda_graph = on;
    return m->graph_runs;
}
void dfa_sd3_hold_cond(dfa_sd3 *m, int on) {
    m->cond_pin = on ? (++m->cond_seq ? m->cond_seq : ++m->cond_seq) : 0;
}

/* ---- forward ---- */

typedef struct sd3_buf {
    float *h, *nrm, *nrm2, *q, *k, *v, *att, *tmp, *ff; /* [B, N, *] */
    float *patch, *proj;                                /* [B, Ni, Cin p p], [B, Ni, p p out] */
    float *temb, *stemb, *tv, *scratch, *mod1, *mod2;
} sd3_buf;

static dfa_status sd3_alloc(dfa_ctx *ctx, dfa_sd3 *m, int B, int Ni, int N, sd3_buf *s) {
    const dfa_sd3_config *c = &m->cfg;
    const size_t C = (size_t)c->inner_dim, F = (size_t)c->mlp_hidden, BN = (size_t)B * N, pp = (size_t)c->patch_size * c->patch_size;
    const size_t sizes[] = {BN * C, BN * C, BN * C, BN * C, BN * C, BN * C, BN * C, BN * C, BN * F,
                            (size_t)B * Ni * c->in_channels * pp, (size_t)B * Ni * c->out_channels * pp,
                            (size_t)B * C, (size_t)B * C, (size_t)B * C, 256 + 2 * C, (size_t)B * 9 * C,
                            (size_t)B * 6 * C};
    float **dst[] = {&s->h, &s->nrm, &s->nrm2, &s->q, &s->k, &s->v, &s->att, &s->tmp, &s->ff, &s->patch, &s->proj,
                     &s->temb, &s->stemb, &s->tv, &s->scratch, &s->mod1, &s->mod2};
    const int n = (int)(sizeof sizes / sizeof *sizes);
    size_t total = 4096;
    for (int i = 0; i < n; i++) total += dfa_mmdit_fbytes(sizes[i]);
    DFA_TRY(dfa_mmdit_arena_ensure(ctx, &m->act, DFA_DEV_CPU, total, "sd3 activations"));
    dfa_status st = DFA_OK;
    for (int i = 0; i < n; i++) *dst[i] = dfa_mmdit_falloc(ctx, &m->act, sizes[i], &st);
    return st;
}

/* q/k/v of T rows starting at row0 (buffers [.., C]) from the normed input, with optional qk-norm. */
static void sd3_qkv(const dfa_ctx *ctx, const dfa_sd3_config *c, const dfa_lin *lq, const dfa_lin *lk,
                    const dfa_lin *lv, const float *nq, const float *nk, const float *xin, size_t row0, int T,
                    sd3_buf *s) {
    const int C = c->inner_dim;
    dfa_mmdit_linear(ctx, lq, xin, T, s->q + row0 * C);
    dfa_mmdit_linear(ctx, lk, xin, T, s->k + row0 * C);
    dfa_mmdit_linear(ctx, lv, xin, T, s->v + row0 * C);
    if (nq) dfa_mmdit_head_rmsnorm(ctx, s->q + row0 * C, T, c->n_heads, c->head_dim, nq, SD3_EPS);
    if (nk) dfa_mmdit_head_rmsnorm(ctx, s->k + row0 * C, T, c->n_heads, c->head_dim, nk, SD3_EPS);
}

/* resid += gate * l(x): T rows */
static void sd3_out_gate(const dfa_ctx *ctx, const dfa_lin *l, const float *x, int T, const float *gate, float *resid,
                         float *tmp) {
    dfa_mmdit_linear(ctx, l, x, T, tmp);
    dfa_mmdit_gate_add(ctx, resid, T, l->out, gate, tmp);
}

/* resid += gate * ff(LN(resid) * (1 + scale) + shift) */
static void sd3_ff(const dfa_ctx *ctx, const dfa_sd3_config *c, const dfa_lin *f0, const dfa_lin *f2, float *resid,
                   int T, const float *shift, const float *scale, const float *gate, sd3_buf *s) {
    const int C = c->inner_dim;
    dfa_mmdit_ln_modulate(ctx, resid, T, C, shift, scale, SD3_EPS, s->nrm);
    dfa_mmdit_linear(ctx, f0, s->nrm, T, s->ff);
    dfa_op_gelu_tanh(s->ff, (size_t)T * f0->out);
    sd3_out_gate(ctx, f2, s->ff, T, gate, resid, s->tmp);
}

static dfa_status sd3_block_forward(dfa_ctx *ctx, dfa_sd3 *m, const sd3_block *blk, int B, int Ni, int Nt,
                                    sd3_buf *s) {
    const dfa_sd3_config *c = &m->cfg;
    const int C = c->inner_dim, N = Ni + Nt, H = c->n_heads, D = c->head_dim;
    const int n1 = blk->dual ? 9 : 6, n2 = blk->pre_only ? 2 : 6;
    dfa_mmdit_linear(ctx, &blk->norm1, s->stemb, B, s->mod1);
    dfa_mmdit_linear(ctx, &blk->norm1_ctx, s->stemb, B, s->mod2);
    /* chunks: shift_msa 0, scale_msa 1, gate_msa 2, shift_mlp 3, scale_mlp 4, gate_mlp 5, [shift/scale/gate_msa2 6..8];
     * pre_only context: AdaLayerNormContinuous (scale 0, shift 1) */
    for (int b = 0; b < B; b++) {
        const float *m1 = s->mod1 + (size_t)b * n1 * C, *m2 = s->mod2 + (size_t)b * n2 * C;
        const size_t ri = (size_t)b * N, rt = ri + Ni;
        dfa_mmdit_ln_modulate(ctx, s->h + ri * C, Ni, C, m1, m1 + C, SD3_EPS, s->nrm + ri * C);
        if (blk->dual) dfa_mmdit_ln_modulate(ctx, s->h + ri * C, Ni, C, m1 + 6 * C, m1 + 7 * C, SD3_EPS, s->nrm2 + (size_t)b * Ni * C);
        if (blk->pre_only)
            dfa_mmdit_ln_modulate(ctx, s->h + rt * C, Nt, C, m2 + C, m2, SD3_EPS, s->nrm + rt * C);
        else
            dfa_mmdit_ln_modulate(ctx, s->h + rt * C, Nt, C, m2, m2 + C, SD3_EPS, s->nrm + rt * C);
        sd3_qkv(ctx, c, &blk->a.q, &blk->a.k, &blk->a.v, blk->a.nq, blk->a.nk, s->nrm + ri * C, ri, Ni, s);
        sd3_qkv(ctx, c, &blk->aq, &blk->ak, &blk->av, blk->naq, blk->nak, s->nrm + rt * C, rt, Nt, s);
    }
    const dfa_attn_layout lay = {.n_vis = Ni, .n_text = Nt, .text_first = 0, .block = SD3_ATTN_BLOCK};
    DFA_TRY(dfa_mmdit_attention(ctx, blk->attn_index, &lay, B, N, H, D, s->q, s->k, s->v, s->att, &m->attn_s));
    for (int b = 0; b < B; b++) {
        const float *m1 = s->mod1 + (size_t)b * n1 * C, *m2 = s->mod2 + (size_t)b * n2 * C;
        const size_t ri = (size_t)b * N, rt = ri + Ni;
        sd3_out_gate(ctx, &blk->a.out, s->att + ri * C, Ni, m1 + 2 * C, s->h + ri * C, s->tmp);
        if (!blk->pre_only) sd3_out_gate(ctx, &blk->add_out, s->att + rt * C, Nt, m2 + 2 * C, s->h + rt * C, s->tmp);
    }
    if (blk->dual) { /* image-only self-attention on the second modulation; [B, Ni, H, D] */
        for (int b = 0; b < B; b++)
            sd3_qkv(ctx, c, &blk->a2.q, &blk->a2.k, &blk->a2.v, blk->a2.nq, blk->a2.nk, s->nrm2 + (size_t)b * Ni * C,
                    (size_t)b * Ni, Ni, s);
        const dfa_attn_layout lay2 = {.n_vis = Ni, .n_text = 0, .text_first = 0, .block = SD3_ATTN_BLOCK};
        DFA_TRY(dfa_mmdit_attention(ctx, blk->attn_index + 1, &lay2, B, Ni, H, D, s->q, s->k, s->v, s->att, &m->attn_s));
        for (int b = 0; b < B; b++)
            sd3_out_gate(ctx, &blk->a2.out, s->att + (size_t)b * Ni * C, Ni, s->mod1 + (size_t)b * n1 * C + 8 * C,
                         s->h + (size_t)b * N * C, s->tmp);
    }
    for (int b = 0; b < B; b++) {
        const float *m1 = s->mod1 + (size_t)b * n1 * C, *m2 = s->mod2 + (size_t)b * n2 * C;
        const size_t ri = (size_t)b * N, rt = ri + Ni;
        sd3_ff(ctx, c, &blk->ff0, &blk->ff2, s->h + ri * C, Ni, m1 + 3 * C, m1 + 4 * C, m1 + 5 * C, s);
        if (!blk->pre_only)
            sd3_ff(ctx, c, &blk->ffc0, &blk->ffc2, s->h + rt * C, Nt, m2 + 3 * C, m2 + 4 * C, m2 + 5 * C, s);
    }
    return DFA_OK;
}

dfa_status dfa_sd3_forward(dfa_ctx *ctx, dfa_sd3 *m, int B, int H, int W, int n_txt, const float *x, const float *txt,
                           const float *pooled, const float *timestep, float *out) {
    const dfa_sd3_config *c = &m->cfg;
    const int p = c->patch_size, M = c->pos_embed_max_size, C = c->inner_dim, Cin = c->in_channels;
    if (B < 1 || H < p || W < p || H % p || W % p || n_txt < 1)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "sd3 forward: batch %d, latent %dx%d (multiples of patch %d), %d text "
                     "tokens", B, H, W, p, n_txt);
    const int hp = H / p, wp = W / p, Ni = hp * wp, N = Ni + n_txt;
    if (hp > M || wp > M)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "sd3 forward: latent %dx%d is %dx%d patches, more than "
                     "pos_embed_max_size %d", H, W, hp, wp, M);
    if (!x || !txt || !pooled || !timestep || !out)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "sd3 forward: a required input is NULL");
    if (m->dev == DFA_DEV_CUDA) return dfa_sd3_forward_cuda(ctx, m, B, H, W, n_txt, x, txt, pooled, timestep, out);
    const double t_start = dfa_now_s();
    sd3_buf s;
    DFA_TRY(sd3_alloc(ctx, m, B, Ni, N, &s));
    /* patch embedding (Conv2d k = stride = p as a GEMM over (c, ky, kx) vectors) + cropped pos embed */
    const int K = Cin * p * p, top = (M - hp) / 2, left = (M - wp) / 2;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < hp; i++)
            for (int j = 0; j < wp; j++) {
                float *v = s.patch + (((size_t)b * hp + i) * wp + j) * K;
                for (int ch = 0; ch < Cin; ch++)
                    for (int ky = 0; ky < p; ky++)
                        for (int kx = 0; kx < p; kx++)
                            v[(ch * p + ky) * p + kx] = x[(((size_t)b * Cin + ch) * H + i * p + ky) * W + j * p + kx];
            }
    const dfa_lin patch = {.w = m->patch_w, .b = m->patch_b, .in = K, .out = C};
    for (int b = 0; b < B; b++) {
        float *hb = s.h + (size_t)b * N * C;
        dfa_mmdit_linear(ctx, &patch, s.patch + (size_t)b * Ni * K, Ni, hb);
        for (int i = 0; i < hp; i++)
            for (int j = 0; j < wp; j++)
                dfa_op_add(hb + ((size_t)i * wp + j) * C, m->pos + ((size_t)(top + i) * M + left + j) * C, (size_t)C);
        dfa_mmdit_linear(ctx, &m->ctx_emb, txt + (size_t)b * n_txt * c->joint_attention_dim, n_txt, hb + (size_t)Ni * C);
        float *te = s.temb + (size_t)b * C;
        dfa_mmdit_timestep_mlp(ctx, timestep[b], &m->t1, &m->t2, s.scratch, te);
        dfa_mmdit_mlp_silu(ctx, &m->p1, &m->p2, pooled + (size_t)b * c->pooled_projection_dim, s.scratch, s.tv);
        dfa_op_add(te, s.tv, (size_t)C);
    }
    memcpy(s.stemb, s.temb, (size_t)B * C * sizeof(float));
    dfa_op_silu(s.stemb, (size_t)B * C);
    dfa_status st = DFA_OK;
    for (int i = 0; i < c->num_layers && st == DFA_OK; i++) st = sd3_block_forward(ctx, m, &m->blk[i], B, Ni, n_txt, &s);
    if (st == DFA_OK) {
        /* norm_out: AdaLayerNormContinuous (scale, shift); proj_out; unpatchify (n h w p q c -> n c (h p) (w q)) */
        dfa_mmdit_linear(ctx, &m->norm_out, s.stemb, B, s.mod1);
        const int O = c->out_channels, P = p * p * O;
        for (int b = 0; b < B; b++) {
            const float *mod = s.mod1 + (size_t)b * 2 * C;
            dfa_mmdit_ln_modulate(ctx, s.h + (size_t)b * N * C, Ni, C, mod + C, mod, SD3_EPS, s.nrm);
            dfa_mmdit_linear(ctx, &m->proj_out, s.nrm, Ni, s.proj + (size_t)b * Ni * P);
        }
        for (int b = 0; b < B; b++)
            for (int i = 0; i < hp; i++)
                for (int j = 0; j < wp; j++) {
                    const float *y = s.proj + (((size_t)b * hp + i) * wp + j) * P;
                    for (int py = 0; py < p; py++)
                        for (int px = 0; px < p; px++)
                            for (int ch = 0; ch < O; ch++)
                                out[(((size_t)b * O + ch) * H + i * p + py) * W + j * p + px] = y[(py * p + px) * O + ch];
                }
    }
    m->total_s += dfa_now_s() - t_start;
    return st;
}
