/* flux.c - FLUX.1 transformer forward on the CPU (f32), matching diffusers
 * FluxTransformer2DModel. See flux.h and docs/DESIGN.md "MMDiT". */
#include "models/flux.h"
#include "core/log.h"
#include "models/flux_int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "attn/attn.h"
#include "models/cuda/ops_cuda.h"
#include "models/mmdit.h"
#include "models/ops.h"


/* ---- config and weights ---- */

static dfa_status flux_parse_config(dfa_ctx *ctx, const cJSON *j, const char *what, dfa_flux_config *c) {
    dfa_error *e = &ctx->err;
    memset(c, 0, sizeof *c);
    DFA_TRY(dfa_json_int_or(j, "patch_size", what, 1, &c->patch_size, e));
    DFA_TRY(dfa_json_int_or(j, "in_channels", what, 64, &c->in_channels, e));
    DFA_TRY(dfa_json_int_or(j, "out_channels", what, c->in_channels, &c->out_channels, e));
    DFA_TRY(dfa_json_int_or(j, "num_layers", what, 19, &c->num_layers, e));
    DFA_TRY(dfa_json_int_or(j, "num_single_layers", what, 38, &c->num_single_layers, e));
    DFA_TRY(dfa_json_int_or(j, "attention_head_dim", what, 128, &c->head_dim, e));
    DFA_TRY(dfa_json_int_or(j, "num_attention_heads", what, 24, &c->n_heads, e));
    DFA_TRY(dfa_json_int_or(j, "joint_attention_dim", what, 4096, &c->joint_attention_dim, e));
    DFA_TRY(dfa_json_int_or(j, "pooled_projection_dim", what, 768, &c->pooled_projection_dim, e));
    DFA_TRY(dfa_json_bool_or(j, "guidance_embeds", what, 0, &c->guidance_embeds, e));
    DFA_TRY(dfa_mmdit_json_ints(ctx, j, "axes_dims_rope", what, c->axes_dims_rope, DFA_FLUX_MAX_AXES, &c->n_axes));
    if (c->n_axes == 0) {
        c->n_axes = 3;
        c->axes_dims_rope[0] = 16;
        c->axes_dims_rope[1] = c->axes_dims_rope[2] = 56;
    }
    c->rope_theta = 10000.0;
    if (c->patch_size < 1 || c->in_channels < 1 || c->out_channels < 1 || c->num_layers < 0 ||
        c->num_single_layers < 0 || c->head_dim < 2 || c->head_dim % 2 || c->n_heads < 1 ||
        c->joint_attention_dim < 1 || c->pooled_projection_dim < 1)
        DFA_CTX_FAIL(ctx, DFA_ERR_FORMAT, "%s: impossible FLUX config (patch %d, in %d, out %d, layers %d+%d, heads %d x %d)",
                     what, c->patch_size, c->in_channels, c->out_channels, c->num_layers, c->num_single_layers,
                     c->n_heads, c->head_dim);
    int sum = 0;
    for (int i = 0; i < c->n_axes; i++) {
        if (c->axes_dims_rope[i] < 0 || c->axes_dims_rope[i] % 2)
            DFA_CTX_FAIL(ctx, DFA_ERR_FORMAT, "%s: axes_dims_rope[%d] = %d must be even", what, i, c->axes_dims_rope[i]);
        sum += c->axes_dims_rope[i];
    }
    if (sum != c->head_dim)
        DFA_CTX_FAIL(ctx, DFA_ERR_FORMAT, "%s: axes_dims_rope sum to %d, attention_head_dim is %d", what, sum, c->head_dim);
    c->inner_dim = c->n_heads * c->head_dim;
    c->mlp_hidden = 4 * c->inner_dim;
    return DFA_OK;
}

static void flux_register(void *model, dfa_wtab *t) {
    dfa_flux *m = model;
    const dfa_flux_config *c = &m->cfg;
    const int C = c->inner_dim, D = c->head_dim, F = c->mlp_hidden;
    const int64_t dshape[1] = {D};
    dfa_wtab_linear(t, &m->t1, 256, C, 1, "time_text_embed.timestep_embedder.linear_1");
    dfa_wtab_linear(t, &m->t2, C, C, 1, "time_text_embed.timestep_embedder.linear_2");
    if (c->guidance_embeds) {
        dfa_wtab_linear(t, &m->g1, 256, C, 1, "time_text_embed.guidance_embedder.linear_1");
        dfa_wtab_linear(t, &m->g2, C, C, 1, "time_text_embed.guidance_embedder.linear_2");
    }
    dfa_wtab_linear(t, &m->p1, c->pooled_projection_dim, C, 1, "time_text_embed.text_embedder.linear_1");
    dfa_wtab_linear(t, &m->p2, C, C, 1, "time_text_embed.text_embedder.linear_2");
    dfa_wtab_linear(t, &m->ctx_emb, c->joint_attention_dim, C, 1, "context_embedder");
    dfa_wtab_linear(t, &m->x_emb, c->in_channels, C, 1, "x_embedder");
    for (int i = 0; i < c->num_layers; i++) {
        flux_double *b = &m->dbl[i];
        const char *p = "transformer_blocks";
        dfa_wtab_linear(t, &b->norm1, C, 6 * C, 1, "%s.%d.norm1.linear", p, i);
        dfa_wtab_linear(t, &b->norm1_ctx, C, 6 * C, 1, "%s.%d.norm1_context.linear", p, i);
        dfa_wtab_linear(t, &b->q, C, C, 1, "%s.%d.attn.to_q", p, i);
        dfa_wtab_linear(t, &b->k, C, C, 1, "%s.%d.attn.to_k", p, i);
        dfa_wtab_linear(t, &b->v, C, C, 1, "%s.%d.attn.to_v", p, i);
        dfa_wtab_linear(t, &b->aq, C, C, 1, "%s.%d.attn.add_q_proj", p, i);
        dfa_wtab_linear(t, &b->ak, C, C, 1, "%s.%d.attn.add_k_proj", p, i);
        dfa_wtab_linear(t, &b->av, C, C, 1, "%s.%d.attn.add_v_proj", p, i);
        dfa_wtab_linear(t, &b->out, C, C, 1, "%s.%d.attn.to_out.0", p, i);
        dfa_wtab_linear(t, &b->add_out, C, C, 1, "%s.%d.attn.to_add_out", p, i);
        dfa_wtab_add(t, &b->nq, 1, dshape, "%s.%d.attn.norm_q.weight", p, i);
        dfa_wtab_add(t, &b->nk, 1, dshape, "%s.%d.attn.norm_k.weight", p, i);
        dfa_wtab_add(t, &b->naq, 1, dshape, "%s.%d.attn.norm_added_q.weight", p, i);
        dfa_wtab_add(t, &b->nak, 1, dshape, "%s.%d.attn.norm_added_k.weight", p, i);
        dfa_wtab_linear(t, &b->ff0, C, F, 1, "%s.%d.ff.net.0.proj", p, i);
        dfa_wtab_linear(t, &b->ff2, F, C, 1, "%s.%d.ff.net.2", p, i);
        dfa_wtab_linear(t, &b->ffc0, C, F, 1, "%s.%d.ff_context.net.0.proj", p, i);
        dfa_wtab_linear(t, &b->ffc2, F, C, 1, "%s.%d.ff_context.net.2", p, i);
    }
    for (int i = 0; i < c->num_single_layers; i++) {
        flux_single *b = &m->sgl[i];
        const char *p = "single_transformer_blocks";
        dfa_wtab_linear(t, &b->norm, C, 3 * C, 1, "%s.%d.norm.linear", p, i);
        dfa_wtab_linear(t, &b->q, C, C, 1, "%s.%d.attn.to_q", p, i);
        dfa_wtab_linear(t, &b->k, C, C, 1, "%s.%d.attn.to_k", p, i);
        dfa_wtab_linear(t, &b->v, C, C, 1, "%s.%d.attn.to_v", p, i);
        dfa_wtab_add(t, &b->nq, 1, dshape, "%s.%d.attn.norm_q.weight", p, i);
        dfa_wtab_add(t, &b->nk, 1, dshape, "%s.%d.attn.norm_k.weight", p, i);
        dfa_wtab_linear(t, &b->mlp, C, F, 1, "%s.%d.proj_mlp", p, i);
        dfa_wtab_linear_split(t, &b->proj_out, C + F, C, C, "%s.%d.proj_out", p, i);
    }
    dfa_wtab_linear(t, &m->norm_out, C, 2 * C, 1, "norm_out.linear");
    dfa_wtab_linear(t, &m->proj_out, C, c->patch_size * c->patch_size * c->out_channels, 1, "proj_out");
}

/* Parse the config and allocate the model and its block arrays (no weights yet). */
static dfa_status flux_new(dfa_ctx *ctx, const char *model_dir, dfa_flux **out, char *tdir, size_t tdir_len) {
    *out = NULL;
    char cfg_path[1100];
    cJSON *j = NULL;
    DFA_TRY(dfa_mmdit_read_config(ctx, model_dir, &j, tdir, tdir_len, cfg_path, sizeof cfg_path));
    dfa_flux_config cfg;
    dfa_status st = flux_parse_config(ctx, j, cfg_path, &cfg);
    cJSON_Delete(j);
    if (st != DFA_OK) return st;
    dfa_flux *m = NULL;
    DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, sizeof *m, "flux model", (void **)&m));
    memset(m, 0, sizeof *m);
    m->cfg = cfg;
    size_t nd = (size_t)(cfg.num_layers ? cfg.num_layers : 1), ns = (size_t)(cfg.num_single_layers ? cfg.num_single_layers : 1);
    st = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, nd * sizeof(flux_double), "flux double blocks", (void **)&m->dbl);
    if (st == DFA_OK)
        st = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, ns * sizeof(flux_single), "flux single blocks", (void **)&m->sgl);
    if (st != DFA_OK) {
        dfa_flux_free(ctx, m);
        return st;
    }
    *out = m;
    return DFA_OK;
}

dfa_status dfa_flux_load(dfa_ctx *ctx, const char *model_dir, dfa_flux **out) {
    char tdir[1024];
    dfa_flux *m = NULL;
    DFA_TRY(flux_new(ctx, model_dir, &m, tdir, sizeof tdir));
    dfa_status st = DFA_OK;
    m->dev = dfa_ctx_backend(ctx) == DFA_BACKEND_CUDA ? DFA_DEV_CUDA : DFA_DEV_CPU;
    if (m->dev == DFA_DEV_CUDA) st = dfa_cuops_init(&m->ops, ctx->cuda, &ctx->err);
    if (st == DFA_OK)
        st = dfa_wtab_load(ctx, m, flux_register, tdir, m->dev, m->dev == DFA_DEV_CUDA ? DFA_BF16 : DFA_F32,
                           &m->weights, &m->weight_bytes);
    if (st != DFA_OK) {
        dfa_flux_free(ctx, m);
        return st;
    }
    *out = m;
    return DFA_OK;
}

dfa_status dfa_flux_write_random(dfa_ctx *ctx, const char *model_dir, uint64_t seed) {
    char tdir[1024], path[1100];
    dfa_flux *m = NULL;
    DFA_TRY(flux_new(ctx, model_dir, &m, tdir, sizeof tdir));
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", tdir);
    dfa_status st = dfa_wtab_write_random(ctx, m, flux_register, path, seed);
    dfa_flux_free(ctx, m);
    return st;
}

void dfa_flux_free(dfa_ctx *ctx, dfa_flux *m) {
    if (!m) return;
    if (m->act.base) dfa_arena_release(ctx, &m->act);
    if (m->host.base) dfa_arena_release(ctx, &m->host);
    if (m->dcond) dfa_ctx_mem_release(ctx, m->dcond);
    if (m->weights) dfa_ctx_mem_release(ctx, m->weights);
    if (m->ops) dfa_cuops_free(m->ops);
    if (m->dbl) dfa_ctx_mem_release(ctx, m->dbl);
    if (m->sgl) dfa_ctx_mem_release(ctx, m->sgl);
    dfa_ctx_mem_release(ctx, m);
}

const dfa_flux_config *dfa_flux_get_config(const dfa_flux *m) { return &m->cfg; }
int dfa_flux_attn_layers(const dfa_flux *m) { return m->cfg.num_layers + m->cfg.num_single_layers; }
void dfa_flux_times(const dfa_flux *m, double *attn_s, double *total_s) {
    if (attn_s) *attn_s = m->attn_s;
    if (total_s) *total_s = m->total_s;
}
void dfa_flux_reset_times(dfa_flux *m) { m->attn_s = m->total_s = 0; }
void dfa_flux_set_gemm_timer(dfa_flux *m, double *secs) {
    if (m->ops) dfa_cuops_set_gemm_timer(m->ops, secs);
}
void dfa_flux_hold_cond(dfa_flux *m, int on) {
    m->cond_pin = on ? (++m->cond_seq ? m->cond_seq : ++m->cond_seq) : 0;
}

/* ---- pipeline helpers ---- */

void dfa_flux_image_ids(int h, int w, float *ids) {
    for (int r = 0; r < h; r++)
        for (int c = 0; c < w; c++) {
            float *p = ids + ((size_t)r * w + c) * 3;
            p[0] = 0.0f;
            p[1] = (float)r;
            p[2] = (float)c;
        }
}

/* token (r, c) channel (ch * 4 + dy * 2 + dx)  <->  lat[ch, 2r + dy, 2c + dx] */
static void flux_pack(float *lat, int B, int C, int H, int W, float *packed, int to_packed) {
    const int h = H / 2, w = W / 2;
    for (int b = 0; b < B; b++)
        for (int r = 0; r < h; r++)
            for (int c = 0; c < w; c++)
                for (int ch = 0; ch < C; ch++)
                    for (int dy = 0; dy < 2; dy++)
                        for (int dx = 0; dx < 2; dx++) {
                            size_t pi = (((size_t)b * h + r) * w + c) * (size_t)(4 * C) + (size_t)ch * 4 + dy * 2 + dx;
                            size_t li = (((size_t)b * C + ch) * H + 2 * r + dy) * W + 2 * c + dx;
                            if (to_packed)
                                packed[pi] = lat[li];
                            else
                                lat[li] = packed[pi];
                        }
}

void dfa_flux_pack_latents(const float *lat, int B, int C, int H, int W, float *packed) {
    flux_pack((float *)lat, B, C, H, W, packed, 1);
}

void dfa_flux_unpack_latents(const float *packed, int B, int C, int H, int W, float *lat) {
    flux_pack(lat, B, C, H, W, (float *)packed, 0);
}

/* ---- RoPE: interleaved pairs (x[2p], x[2p+1]) rotated by angle pos[axis] * theta^(-2j/d_axis) ---- */

void dfa_flux_rope_table(const dfa_flux_config *c, int N, const float *ids_txt, int n_txt, const float *ids_img,
                            float *cos_t, float *sin_t) {
    const int P = c->head_dim / 2;
    for (int n = 0; n < N; n++) {
        const float *id = n < n_txt ? ids_txt + (size_t)n * c->n_axes : ids_img + (size_t)(n - n_txt) * c->n_axes;
        int p = 0;
        for (int a = 0; a < c->n_axes; a++) {
            const int d = c->axes_dims_rope[a];
            for (int j = 0; j < d / 2; j++, p++) {
                double freq = 1.0 / pow(c->rope_theta, (double)(2 * j) / (double)d);
                double ang = (double)id[a] * freq;
                cos_t[(size_t)n * P + p] = (float)cos(ang);
                sin_t[(size_t)n * P + p] = (float)sin(ang);
            }
        }
    }
}

/* x [B, N, H, D] in place */
static void flux_rope_apply(const dfa_ctx *ctx, float *x, int B, int N, int H, int D, const float *cos_t,
                            const float *sin_t) {
    const int P = D / 2;
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static)
    for (int bn = 0; bn < B * N; bn++) {
        const int n = bn % N;
        const float *cs = cos_t + (size_t)n * P, *sn = sin_t + (size_t)n * P;
        for (int h = 0; h < H; h++) {
            float *v = x + ((size_t)bn * H + h) * D;
            for (int p = 0; p < P; p++) {
                float a = v[2 * p], b = v[2 * p + 1];
                v[2 * p] = a * cs[p] - b * sn[p];
                v[2 * p + 1] = b * cs[p] + a * sn[p];
            }
        }
    }
}

/* ---- forward ---- */

typedef struct flux_buf {
    float *h, *nrm, *q, *k, *v, *att, *tmp, *ff; /* [B, N, *] */
    float *temb, *stemb, *tv, *scratch;          /* [B, C], [C], 256 + 2C */
    float *mod1, *mod2;                          /* [B, 6C] */
    float *cos_t, *sin_t;                        /* [N, D/2] */
} flux_buf;

static size_t flux_arena_bytes(const dfa_flux_config *c, int B, int N) {
    const size_t C = (size_t)c->inner_dim, F = (size_t)c->mlp_hidden, BN = (size_t)B * N;
    return 7 * dfa_mmdit_fbytes(BN * C) + dfa_mmdit_fbytes(BN * F) + 3 * dfa_mmdit_fbytes((size_t)B * C) +
           dfa_mmdit_fbytes(256 + 2 * C) + 2 * dfa_mmdit_fbytes((size_t)B * 6 * C) +
           2 * dfa_mmdit_fbytes((size_t)N * (c->head_dim / 2)) + 4096;
}

static dfa_status flux_alloc(dfa_ctx *ctx, dfa_flux *m, int B, int N, flux_buf *s) {
    const dfa_flux_config *c = &m->cfg;
    const size_t C = (size_t)c->inner_dim, F = (size_t)c->mlp_hidden, BN = (size_t)B * N;
    DFA_TRY(dfa_mmdit_arena_ensure(ctx, &m->act, DFA_DEV_CPU, flux_arena_bytes(c, B, N), "flux activations"));
    dfa_status st = DFA_OK;
    dfa_arena *a = &m->act;
    s->h = dfa_mmdit_falloc(ctx, a, BN * C, &st);
    s->nrm = dfa_mmdit_falloc(ctx, a, BN * C, &st);
    s->q = dfa_mmdit_falloc(ctx, a, BN * C, &st);
    s->k = dfa_mmdit_falloc(ctx, a, BN * C, &st);
    s->v = dfa_mmdit_falloc(ctx, a, BN * C, &st);
    s->att = dfa_mmdit_falloc(ctx, a, BN * C, &st);
    s->tmp = dfa_mmdit_falloc(ctx, a, BN * C, &st);
    s->ff = dfa_mmdit_falloc(ctx, a, BN * F, &st);
    s->temb = dfa_mmdit_falloc(ctx, a, (size_t)B * C, &st);
    s->stemb = dfa_mmdit_falloc(ctx, a, (size_t)B * C, &st);
    s->tv = dfa_mmdit_falloc(ctx, a, (size_t)B * C, &st);
    s->scratch = dfa_mmdit_falloc(ctx, a, 256 + 2 * C, &st);
    s->mod1 = dfa_mmdit_falloc(ctx, a, (size_t)B * 6 * C, &st);
    s->mod2 = dfa_mmdit_falloc(ctx, a, (size_t)B * 6 * C, &st);
    s->cos_t = dfa_mmdit_falloc(ctx, a, (size_t)N * (c->head_dim / 2), &st);
    s->sin_t = dfa_mmdit_falloc(ctx, a, (size_t)N * (c->head_dim / 2), &st);
    return st;
}

static dfa_status flux_attention(dfa_ctx *ctx, dfa_flux *m, int layer, const dfa_attn_layout *lay, int B, int N,
                                 flux_buf *s) {
    return dfa_mmdit_attention(ctx, layer, lay, B, N, m->cfg.n_heads, m->cfg.head_dim, s->q, s->k, s->v, s->att,
                               &m->attn_s);
}

/* One stream (image or text rows of batch b) of a double block: modulated norm + q/k/v + qk-norm. */
static void flux_double_qkv(const dfa_ctx *ctx, const dfa_flux_config *c, const dfa_lin *lq, const dfa_lin *lk,
                            const dfa_lin *lv, const float *nq, const float *nk, const float *mod, size_t row0, int T,
                            flux_buf *s) {
    const int C = c->inner_dim;
    float *x = s->h + row0 * C, *y = s->nrm + row0 * C;
    dfa_mmdit_ln_modulate(ctx, x, T, C, mod + 0 * C, mod + 1 * C, FLUX_EPS, y); /* shift_msa, scale_msa */
    dfa_mmdit_linear(ctx, lq, y, T, s->q + row0 * C);
    dfa_mmdit_linear(ctx, lk, y, T, s->k + row0 * C);
    dfa_mmdit_linear(ctx, lv, y, T, s->v + row0 * C);
    dfa_mmdit_head_rmsnorm(ctx, s->q + row0 * C, T, c->n_heads, c->head_dim, nq, FLUX_EPS);
    dfa_mmdit_head_rmsnorm(ctx, s->k + row0 * C, T, c->n_heads, c->head_dim, nk, FLUX_EPS);
}

/* After attention: out projection + gated residual, then the gated feed-forward. */
static void flux_double_post(const dfa_ctx *ctx, const dfa_flux_config *c, const dfa_lin *lout, const dfa_lin *f0,
                             const dfa_lin *f2, const float *mod, size_t row0, int T, flux_buf *s) {
    const int C = c->inner_dim;
    float *h = s->h + row0 * C;
    dfa_mmdit_linear(ctx, lout, s->att + row0 * C, T, s->tmp + row0 * C);
    dfa_mmdit_gate_add(ctx, h, T, C, mod + 2 * C, s->tmp + row0 * C);                  /* gate_msa */
    dfa_mmdit_ln_modulate(ctx, h, T, C, mod + 3 * C, mod + 4 * C, FLUX_EPS, s->nrm + row0 * C); /* shift/scale_mlp */
    dfa_mmdit_linear(ctx, f0, s->nrm + row0 * C, T, s->ff + row0 * c->mlp_hidden);
    dfa_op_gelu_tanh(s->ff + row0 * c->mlp_hidden, (size_t)T * c->mlp_hidden);
    dfa_mmdit_linear(ctx, f2, s->ff + row0 * c->mlp_hidden, T, s->tmp + row0 * C);
    dfa_mmdit_gate_add(ctx, h, T, C, mod + 5 * C, s->tmp + row0 * C); /* gate_mlp */
}

dfa_status dfa_flux_forward(dfa_ctx *ctx, dfa_flux *m, int B, int n_img, int n_txt, const float *x, const float *txt,
                            const float *pooled, const float *timestep, const float *guidance, const float *txt_ids,
                            const float *img_ids, float *out) {
    const dfa_flux_config *c = &m->cfg;
    if (B < 1 || n_img < 1 || n_txt < 0)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "flux forward: batch %d, %d image tokens, %d text tokens", B, n_img, n_txt);
    if (!x || !pooled || !timestep || !img_ids || !out || (n_txt > 0 && (!txt || !txt_ids)))
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "flux forward: a required input is NULL");
    if (c->guidance_embeds && !guidance)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "flux forward: this checkpoint has guidance_embeds; pass a guidance scale");
    if (m->dev == DFA_DEV_CUDA)
        return dfa_flux_forward_cuda(ctx, m, B, n_img, n_txt, x, txt, pooled, timestep, guidance, txt_ids, img_ids, out);
    const double t_start = dfa_now_s();
    const int C = c->inner_dim, N = n_txt + n_img, F = c->mlp_hidden;
    flux_buf s;
    DFA_TRY(flux_alloc(ctx, m, B, N, &s));
    const dfa_attn_layout lay = {.n_vis = n_img, .n_text = n_txt, .text_first = 1, .block = FLUX_ATTN_BLOCK};

    /* embeddings: layout [text, image] per batch element */
    for (int b = 0; b < B; b++) {
        if (n_txt)
            dfa_mmdit_linear(ctx, &m->ctx_emb, txt + (size_t)b * n_txt * c->joint_attention_dim, n_txt,
                             s.h + (size_t)b * N * C);
        dfa_mmdit_linear(ctx, &m->x_emb, x + (size_t)b * n_img * c->in_channels, n_img,
                         s.h + ((size_t)b * N + n_txt) * C);
        /* temb = timestep_embedder(proj(t * 1000)) [+ guidance_embedder(proj(g * 1000))] + text_embedder(pooled) */
        float *te = s.temb + (size_t)b * C;
        dfa_mmdit_timestep_mlp(ctx, timestep[b] * 1000.0f, &m->t1, &m->t2, s.scratch, te);
        if (c->guidance_embeds) {
            dfa_mmdit_timestep_mlp(ctx, guidance[b] * 1000.0f, &m->g1, &m->g2, s.scratch, s.tv);
            dfa_op_add(te, s.tv, (size_t)C);
        }
        dfa_mmdit_mlp_silu(ctx, &m->p1, &m->p2, pooled + (size_t)b * c->pooled_projection_dim, s.scratch, s.tv);
        dfa_op_add(te, s.tv, (size_t)C);
    }
    memcpy(s.stemb, s.temb, (size_t)B * C * sizeof(float));
    dfa_op_silu(s.stemb, (size_t)B * C);
    dfa_flux_rope_table(c, N, txt_ids, n_txt, img_ids, s.cos_t, s.sin_t);

    dfa_status st = DFA_OK;
    for (int i = 0; i < c->num_layers && st == DFA_OK; i++) {
        const flux_double *blk = &m->dbl[i];
        dfa_mmdit_linear(ctx, &blk->norm1, s.stemb, B, s.mod1);
        dfa_mmdit_linear(ctx, &blk->norm1_ctx, s.stemb, B, s.mod2);
        for (int b = 0; b < B; b++) {
            const size_t r_txt = (size_t)b * N, r_img = r_txt + n_txt;
            flux_double_qkv(ctx, c, &blk->q, &blk->k, &blk->v, blk->nq, blk->nk, s.mod1 + (size_t)b * 6 * C, r_img,
                            n_img, &s);
            if (n_txt)
                flux_double_qkv(ctx, c, &blk->aq, &blk->ak, &blk->av, blk->naq, blk->nak, s.mod2 + (size_t)b * 6 * C,
                                r_txt, n_txt, &s);
        }
        flux_rope_apply(ctx, s.q, B, N, c->n_heads, c->head_dim, s.cos_t, s.sin_t);
        flux_rope_apply(ctx, s.k, B, N, c->n_heads, c->head_dim, s.cos_t, s.sin_t);
        st = flux_attention(ctx, m, i, &lay, B, N, &s);
        if (st != DFA_OK) break;
        for (int b = 0; b < B; b++) {
            const size_t r_txt = (size_t)b * N, r_img = r_txt + n_txt;
            flux_double_post(ctx, c, &blk->out, &blk->ff0, &blk->ff2, s.mod1 + (size_t)b * 6 * C, r_img, n_img, &s);
            if (n_txt)
                flux_double_post(ctx, c, &blk->add_out, &blk->ffc0, &blk->ffc2, s.mod2 + (size_t)b * 6 * C, r_txt,
                                 n_txt, &s);
        }
    }
    for (int i = 0; i < c->num_single_layers && st == DFA_OK; i++) {
        const flux_single *blk = &m->sgl[i];
        dfa_mmdit_linear(ctx, &blk->norm, s.stemb, B, s.mod1); /* shift, scale, gate */
        for (int b = 0; b < B; b++) {
            const size_t r0 = (size_t)b * N;
            const float *mod = s.mod1 + (size_t)b * 3 * C;
            dfa_mmdit_ln_modulate(ctx, s.h + r0 * C, N, C, mod, mod + C, FLUX_EPS, s.nrm + r0 * C);
        }
        dfa_mmdit_linear(ctx, &blk->q, s.nrm, B * N, s.q);
        dfa_mmdit_linear(ctx, &blk->k, s.nrm, B * N, s.k);
        dfa_mmdit_linear(ctx, &blk->v, s.nrm, B * N, s.v);
        dfa_mmdit_linear(ctx, &blk->mlp, s.nrm, B * N, s.ff);
        dfa_op_gelu_tanh(s.ff, (size_t)B * N * F);
        dfa_mmdit_head_rmsnorm(ctx, s.q, B * N, c->n_heads, c->head_dim, blk->nq, FLUX_EPS);
        dfa_mmdit_head_rmsnorm(ctx, s.k, B * N, c->n_heads, c->head_dim, blk->nk, FLUX_EPS);
        flux_rope_apply(ctx, s.q, B, N, c->n_heads, c->head_dim, s.cos_t, s.sin_t);
        flux_rope_apply(ctx, s.k, B, N, c->n_heads, c->head_dim, s.cos_t, s.sin_t);
        st = flux_attention(ctx, m, c->num_layers + i, &lay, B, N, &s);
        if (st != DFA_OK) break;
        /* proj_out([attn, mlp]) = attn . W[:, :C]^T + mlp . W[:, C:]^T + bias, no concatenation
         * (the weight is stored split: W[:, :C] [C, C] then W[:, C:] [C, F]) */
        for (size_t r = 0; r < (size_t)B * N; r++) memcpy(s.tmp + r * C, blk->proj_out.b, (size_t)C * sizeof(float));
        dfa_op_gemm(ctx, 1, B * N, C, C, 1.0f, s.att, C, blk->proj_out.w, C, 1.0f, s.tmp, C);
        dfa_op_gemm(ctx, 1, B * N, C, F, 1.0f, s.ff, F, blk->proj_out.w + (size_t)C * C, F, 1.0f, s.tmp, C);
        for (int b = 0; b < B; b++) {
            const size_t r0 = (size_t)b * N;
            dfa_mmdit_gate_add(ctx, s.h + r0 * C, N, C, s.mod1 + (size_t)b * 3 * C + 2 * C, s.tmp + r0 * C);
        }
    }
    if (st == DFA_OK) {
        /* norm_out: AdaLayerNormContinuous, chunk order (scale, shift) */
        dfa_mmdit_linear(ctx, &m->norm_out, s.stemb, B, s.mod1);
        const int O = m->proj_out.out;
        for (int b = 0; b < B; b++) {
            const size_t r_img = (size_t)b * N + n_txt;
            const float *mod = s.mod1 + (size_t)b * 2 * C;
            dfa_mmdit_ln_modulate(ctx, s.h + r_img * C, n_img, C, mod + C, mod, FLUX_EPS, s.nrm + r_img * C);
            dfa_mmdit_linear(ctx, &m->proj_out, s.nrm + r_img * C, n_img, out + (size_t)b * n_img * O);
        }
    }
    m->total_s += dfa_now_s() - t_start;
    return st;
}
