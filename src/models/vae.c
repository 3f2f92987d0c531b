/* vae.c - AutoencoderKL decoder on the CPU (f32): convs as im2col + OpenBLAS GEMM, GroupNorm,
 * SiLU, nearest 2x upsampling, and the mid block's single-head spatial attention done locally
 * with GEMMs (it is not a transformer attention: no plan, no dfa_attn_layer). */
#include "models/vae.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "io/json.h"
#include "io/png.h"
#include "io/safetensors.h"
#include "models/ops.h"
#include "models/vae_int.h"
#include "models/wload.h"

/* ---- config ---- */

static dfa_status read_config(dfa_ctx *ctx, const char *path, dfa_vae_config *c) {
    cJSON *root = NULL;
    dfa_error *err = &ctx->err;
    DFA_TRY(dfa_json_read_file(path, &root, err));
    dfa_status s = DFA_OK;
    memset(c, 0, sizeof *c);
#define GET(call)                                                                                                      \
    do {                                                                                                               \
        if ((s = (call)) != DFA_OK) goto done;                                                                         \
    } while (0)
    GET(dfa_json_int_or(root, "latent_channels", path, 4, &c->latent_channels, err));
    GET(dfa_json_int_or(root, "out_channels", path, 3, &c->out_channels, err));
    GET(dfa_json_int_or(root, "norm_num_groups", path, 32, &c->norm_groups, err));
    GET(dfa_json_int_or(root, "layers_per_block", path, 1, &c->layers_per_block, err));
    GET(dfa_json_bool_or(root, "use_post_quant_conv", path, 1, &c->post_quant_conv, err));
    GET(dfa_json_bool_or(root, "mid_block_add_attention", path, 1, &c->mid_attention, err));
    {
        const cJSON *sf = cJSON_GetObjectItemCaseSensitive(root, "scaling_factor");
        const cJSON *sh = cJSON_GetObjectItemCaseSensitive(root, "shift_factor");
        c->scaling_factor = cJSON_IsNumber(sf) ? sf->valuedouble : 0.18215;
        c->shift_factor = cJSON_IsNumber(sh) ? sh->valuedouble : 0.0;
        if (sf && !cJSON_IsNumber(sf)) {
            s = DFA_SET(err, DFA_ERR_FORMAT, "%s: scaling_factor must be a number", path);
            goto done;
        }
        if (sh && !cJSON_IsNumber(sh) && !cJSON_IsNull(sh)) {
            s = DFA_SET(err, DFA_ERR_FORMAT, "%s: shift_factor must be a number or null", path);
            goto done;
        }
        if (!(c->scaling_factor != 0.0) || !isfinite(c->scaling_factor)) {
            s = DFA_SET(err, DFA_ERR_FORMAT, "%s: scaling_factor %g is not usable", path, c->scaling_factor);
            goto done;
        }
    }
    {
        const cJSON *bo = cJSON_GetObjectItemCaseSensitive(root, "block_out_channels");
        if (!cJSON_IsArray(bo)) {
            s = DFA_SET(err, DFA_ERR_NOT_FOUND, "%s: block_out_channels missing or not an array", path);
            goto done;
        }
        int n = cJSON_GetArraySize(bo);
        if (n < 1 || n > DFA_VAE_MAX_BLOCKS) {
            s = DFA_SET(err, DFA_ERR_UNSUPPORTED, "%s: %d blocks in block_out_channels (1..%d supported)", path, n,
                        DFA_VAE_MAX_BLOCKS);
            goto done;
        }
        c->n_blocks = n;
        for (int i = 0; i < n; i++) {
            const cJSON *v = cJSON_GetArrayItem(bo, i);
            if (!cJSON_IsNumber(v) || v->valueint <= 0 || v->valueint % c->norm_groups) {
                s = DFA_SET(err, DFA_ERR_FORMAT,
                            "%s: block_out_channels[%d] must be a positive multiple of norm_num_groups %d", path, i,
                            c->norm_groups);
                goto done;
            }
            c->block_out[i] = v->valueint;
        }
        const cJSON *ub = cJSON_GetObjectItemCaseSensitive(root, "up_block_types");
        if (cJSON_IsArray(ub)) {
            if (cJSON_GetArraySize(ub) != n) {
                s = DFA_SET(err, DFA_ERR_FORMAT, "%s: %d up_block_types for %d block_out_channels", path,
                            cJSON_GetArraySize(ub), n);
                goto done;
            }
            for (int i = 0; i < n; i++) {
                const cJSON *v = cJSON_GetArrayItem(ub, i);
                if (!cJSON_IsString(v) || strcmp(v->valuestring, "UpDecoderBlock2D") != 0) {
                    s = DFA_SET(err, DFA_ERR_UNSUPPORTED, "%s: up_block_types[%d] is not UpDecoderBlock2D", path, i);
                    goto done;
                }
            }
        }
    }
    if (c->latent_channels < 1 || c->out_channels < 1 || c->norm_groups < 1 || c->layers_per_block < 1 ||
        c->layers_per_block > VAE_MAX_LAYERS)
        s = DFA_SET(err, DFA_ERR_UNSUPPORTED,
                    "%s: latent_channels %d, out_channels %d, norm_num_groups %d, layers_per_block %d (1..%d)", path,
                    c->latent_channels, c->out_channels, c->norm_groups, c->layers_per_block, VAE_MAX_LAYERS);
#undef GET
done:
    cJSON_Delete(root);
    return s;
}

/* ---- weights ---- */

static dfa_status bind_resnet(dfa_wload *wl, vae_resnet *r, int cin, int cout, const char *p) {
    char n[256];
    r->cin = cin;
    r->cout = cout;
    snprintf(n, sizeof n, "%s.norm1", p);
    DFA_TRY(dfa_wload_vec(wl, &r->n1w, cin, "%s.weight", n));
    DFA_TRY(dfa_wload_vec(wl, &r->n1b, cin, "%s.bias", n));
    snprintf(n, sizeof n, "%s.conv1", p);
    DFA_TRY(dfa_wload_conv(wl, &r->c1w, &r->c1b, cout, cin, 3, n));
    snprintf(n, sizeof n, "%s.norm2", p);
    DFA_TRY(dfa_wload_vec(wl, &r->n2w, cout, "%s.weight", n));
    DFA_TRY(dfa_wload_vec(wl, &r->n2b, cout, "%s.bias", n));
    snprintf(n, sizeof n, "%s.conv2", p);
    DFA_TRY(dfa_wload_conv(wl, &r->c2w, &r->c2b, cout, cout, 3, n));
    r->scw = r->scb = NULL;
    if (cin != cout) {
        snprintf(n, sizeof n, "%s.conv_shortcut", p);
        DFA_TRY(dfa_wload_conv(wl, &r->scw, &r->scb, cout, cin, 1, n));
    }
    return DFA_OK;
}

/* to_q/to_k/to_v/to_out.0 (current diffusers) or query/key/value/proj_attn (older files). */
static dfa_status bind_attn_proj(dfa_wload *wl, float **w, float **b, int C, const char *p, const char *name,
                                 const char *old) {
    char n1[256], n2[256];
    int64_t shape[2] = {C, C};
    snprintf(n1, sizeof n1, "%s.%s.weight", p, name);
    snprintf(n2, sizeof n2, "%s.%s.weight", p, old);
    DFA_TRY(dfa_wload_tensor_alt(wl, w, 2, shape, n1, n2));
    int64_t nb = C;
    snprintf(n1, sizeof n1, "%s.%s.bias", p, name);
    snprintf(n2, sizeof n2, "%s.%s.bias", p, old);
    return dfa_wload_tensor_alt(wl, b, 1, &nb, n1, n2);
}

static dfa_status bind_vae(dfa_wload *wl, void *model) {
    dfa_vae *v = model;
    const dfa_vae_config *c = &v->cfg;
    const int L = c->latent_channels, nb = c->n_blocks;
    const int top = c->block_out[nb - 1];
    char p[256];
    if (c->post_quant_conv) DFA_TRY(dfa_wload_conv(wl, &v->pqc_w, &v->pqc_b, L, L, 1, "post_quant_conv"));
    DFA_TRY(dfa_wload_conv(wl, &v->in_w, &v->in_b, top, L, 3, "decoder.conv_in"));
    DFA_TRY(bind_resnet(wl, &v->mid[0], top, top, "decoder.mid_block.resnets.0"));
    if (c->mid_attention) {
        const char *a = "decoder.mid_block.attentions.0";
        DFA_TRY(dfa_wload_vec(wl, &v->attn.gnw, top, "%s.group_norm.weight", a));
        DFA_TRY(dfa_wload_vec(wl, &v->attn.gnb, top, "%s.group_norm.bias", a));
        DFA_TRY(bind_attn_proj(wl, &v->attn.qw, &v->attn.qb, top, a, "to_q", "query"));
        DFA_TRY(bind_attn_proj(wl, &v->attn.kw, &v->attn.kb, top, a, "to_k", "key"));
        DFA_TRY(bind_attn_proj(wl, &v->attn.vw, &v->attn.vb, top, a, "to_v", "value"));
        DFA_TRY(bind_attn_proj(wl, &v->attn.ow, &v->attn.ob, top, a, "to_out.0", "proj_attn"));
    }
    DFA_TRY(bind_resnet(wl, &v->mid[1], top, top, "decoder.mid_block.resnets.1"));
    int prev = top;
    for (int i = 0; i < nb; i++) {
        const int out = c->block_out[nb - 1 - i];
        for (int j = 0; j <= c->layers_per_block; j++) {
            snprintf(p, sizeof p, "decoder.up_blocks.%d.resnets.%d", i, j);
            DFA_TRY(bind_resnet(wl, &v->up[i][j], j == 0 ? prev : out, out, p));
        }
        v->ups_w[i] = v->ups_b[i] = NULL;
        if (i != nb - 1) {
            snprintf(p, sizeof p, "decoder.up_blocks.%d.upsamplers.0.conv", i);
            DFA_TRY(dfa_wload_conv(wl, &v->ups_w[i], &v->ups_b[i], out, out, 3, p));
        }
        prev = out;
    }
    DFA_TRY(dfa_wload_vec(wl, &v->nout_w, c->block_out[0], "decoder.conv_norm_out.weight"));
    DFA_TRY(dfa_wload_vec(wl, &v->nout_b, c->block_out[0], "decoder.conv_norm_out.bias"));
    DFA_TRY(dfa_wload_conv(wl, &v->out_w, &v->out_b, c->out_channels, c->block_out[0], 3, "decoder.conv_out"));
    return DFA_OK;
}

dfa_status dfa_vae_load(dfa_ctx *ctx, const char *dir, dfa_vae **out) {
    *out = NULL;
    char path[4096];
    dfa_vae *v = NULL;
    DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, sizeof *v, "vae", (void **)&v));
    memset(v, 0, sizeof *v);
    snprintf(path, sizeof path, "%s/config.json", dir);
    dfa_status s = read_config(ctx, path, &v->cfg);
    if (s != DFA_OK) {
        dfa_ctx_mem_release(ctx, v);
        return s;
    }
    dfa_safetensors *st = NULL;
    s = dfa_st_open(&st, dir, &ctx->err);
    if (s == DFA_OK) s = dfa_wload_run(ctx, st, bind_vae, v, "vae", &v->weights, &v->n_weights);
    dfa_st_close(st);
    if (s != DFA_OK) {
        dfa_ctx_mem_release(ctx, v);
        return s;
    }
    *out = v;
    return DFA_OK;
}

void dfa_vae_free(dfa_ctx *ctx, dfa_vae *v) {
    if (!v) return;
    dfa_vae_gpu_free(ctx, v);
    if (v->act_ready) dfa_arena_release(ctx, &v->act);
    dfa_ctx_mem_release(ctx, v->weights);
    dfa_ctx_mem_release(ctx, v);
}

const dfa_vae_config *dfa_vae_get_config(const dfa_vae *v) { return &v->cfg; }
int dfa_vae_upscale(const dfa_vae *v) { return 1 << (v->cfg.n_blocks - 1); }

/* ---- forward ---- */

typedef struct vae_bufs {
    float *cur, *nxt, *t1, *t2; /* each holds the largest C x H x W activation */
    float *ws;                  /* im2col scratch */
    size_t ws_floats;
    float *qT, *k, *v, *o, *p; /* mid-block attention */
    int pblk;
} vae_bufs;

static void swap(float **a, float **b) {
    float *t = *a;
    *a = *b;
    *b = t;
}

static void conv3(const dfa_ctx *ctx, vae_bufs *b, const float *x, int cin, int H, int W, const float *w,
                  const float *bias, int cout, float *y) {
    dfa_op_conv2d(ctx, x, cin, H, W, w, bias, cout, 3, 1, 1, y, b->ws, b->ws_floats);
}

static void gn_silu(const dfa_ctx *ctx, const float *x, int C, int HW, int G, const float *g, const float *be,
                    float *y) {
    dfa_op_groupnorm(ctx, x, C, HW, G, g, be, VAE_EPS, y);
    dfa_op_silu(y, (size_t)C * HW);
}

/* b->cur [cin, H, W] -> b->cur [cout, H, W] */
static void resnet_fwd(const dfa_ctx *ctx, const vae_resnet *r, int G, int H, int W, vae_bufs *b) {
    const int HW = H * W;
    gn_silu(ctx, b->cur, r->cin, HW, G, r->n1w, r->n1b, b->t1);
    conv3(ctx, b, b->t1, r->cin, H, W, r->c1w, r->c1b, r->cout, b->t2);
    gn_silu(ctx, b->t2, r->cout, HW, G, r->n2w, r->n2b, b->t1);
    conv3(ctx, b, b->t1, r->cout, H, W, r->c2w, r->c2b, r->cout, b->nxt);
    if (r->scw) {
        dfa_op_conv2d(ctx, b->cur, r->cin, H, W, r->scw, r->scb, r->cout, 1, 1, 0, b->t2, NULL, 0);
        dfa_op_add(b->nxt, b->t2, (size_t)r->cout * HW);
    } else {
        dfa_op_add(b->nxt, b->cur, (size_t)r->cout * HW);
    }
    swap(&b->cur, &b->nxt);
}

/* Single-head self-attention over the H*W positions of b->cur [C, H*W], in place (+ residual). */
static void attn_fwd(const dfa_ctx *ctx, const vae_attn *a, int C, int G, int N, vae_bufs *b) {
    dfa_op_groupnorm(ctx, b->cur, C, N, G, a->gnw, a->gnb, VAE_EPS, b->t1);
    /* projections as 1x1 convs on the channels-first layout: q/k/v [C, N] */
    dfa_op_conv2d(ctx, b->t1, C, 1, N, a->qw, a->qb, C, 1, 1, 0, b->t2, NULL, 0);
    dfa_op_conv2d(ctx, b->t1, C, 1, N, a->kw, a->kb, C, 1, 1, 0, b->k, NULL, 0);
    dfa_op_conv2d(ctx, b->t1, C, 1, N, a->vw, a->vb, C, 1, 1, 0, b->v, NULL, 0);
    const float scale = 1.0f / sqrtf((float)C);
    for (int c = 0; c < C; c++)
        for (int i = 0; i < N; i++) b->qT[(size_t)i * C + c] = b->t2[(size_t)c * N + i] * scale;
    for (int i0 = 0; i0 < N; i0 += b->pblk) {
        const int m = i0 + b->pblk <= N ? b->pblk : N - i0;
        /* P[m, N] = qT[i0:i0+m] . K ; softmax; O[:, i0:i0+m] = V . P^T */
        dfa_op_gemm(ctx, 0, m, N, C, 1.0f, b->qT + (size_t)i0 * C, C, b->k, N, 0.0f, b->p, N);
        dfa_op_softmax_rows(b->p, m, N);
        dfa_op_gemm(ctx, 1, C, m, N, 1.0f, b->v, N, b->p, N, 0.0f, b->o + i0, N);
    }
    dfa_op_conv2d(ctx, b->o, C, 1, N, a->ow, a->ob, C, 1, 1, 0, b->t2, NULL, 0);
    dfa_op_add(b->cur, b->t2, (size_t)C * N);
}

static dfa_status ensure_arena(dfa_ctx *ctx, dfa_vae *v, int h, int w, vae_bufs *b) {
    const dfa_vae_config *c = &v->cfg;
    const int nb = c->n_blocks, top = c->block_out[nb - 1];
    /* largest activation, and the largest im2col need (Cin * 9 * Wo) */
    size_t act = (size_t)(c->latent_channels > top ? c->latent_channels : top) * h * w;
    size_t ws_min = dfa_op_conv2d_ws_min(c->latent_channels > top ? c->latent_channels : top, 3, w);
    size_t ws_full = (size_t)top * 9 * h * w;
    int prev = top;
    for (int i = 0; i < nb; i++) {
        const int out = c->block_out[nb - 1 - i];
        const size_t HW = (size_t)(h << i) * (w << i);
        const int mx = prev > out ? prev : out;
        if ((size_t)mx * HW > act) act = (size_t)mx * HW;
        if (dfa_op_conv2d_ws_min(mx, 3, w << i) > ws_min) ws_min = dfa_op_conv2d_ws_min(mx, 3, w << i);
        if ((size_t)mx * 9 * HW > ws_full) ws_full = (size_t)mx * 9 * HW;
        if (i != nb - 1) {
            const size_t HW2 = HW * 4;
            if ((size_t)out * HW2 > act) act = (size_t)out * HW2;
            if (dfa_op_conv2d_ws_min(out, 3, w << (i + 1)) > ws_min)
                ws_min = dfa_op_conv2d_ws_min(out, 3, w << (i + 1));
            if ((size_t)out * 9 * HW2 > ws_full) ws_full = (size_t)out * 9 * HW2;
        }
        prev = out;
    }
    size_t ws = ws_full < ((size_t)16 << 20) ? ws_full : ((size_t)16 << 20);
    if (ws < ws_min) ws = ws_min;
    const size_t N0 = (size_t)h * w;
    int pblk = (int)(((size_t)16 << 20) / N0);
    if (pblk < 1) pblk = 1;
    if ((size_t)pblk > N0) pblk = (int)N0;
    const size_t attn = c->mid_attention ? 4 * (size_t)top * N0 + (size_t)pblk * N0 : 0;
    const size_t total = (4 * act + ws + attn) * sizeof(float) + 16 * 256;
    if (!v->act_ready || v->act.size < total) {
        if (v->act_ready) dfa_arena_release(ctx, &v->act);
        v->act_ready = 0;
        DFA_TRY(dfa_arena_init(ctx, &v->act, DFA_DEV_CPU, total, "vae activations"));
        v->act_ready = 1;
    }
    dfa_arena_reset(&v->act);
    float **bufs[4] = {&b->cur, &b->nxt, &b->t1, &b->t2};
    for (int i = 0; i < 4; i++) DFA_TRY(dfa_arena_alloc(ctx, &v->act, act * sizeof(float), (void **)bufs[i]));
    DFA_TRY(dfa_arena_alloc(ctx, &v->act, ws * sizeof(float), (void **)&b->ws));
    b->ws_floats = ws;
    b->pblk = pblk;
    if (c->mid_attention) {
        float **ab[4] = {&b->qT, &b->k, &b->v, &b->o};
        for (int i = 0; i < 4; i++)
            DFA_TRY(dfa_arena_alloc(ctx, &v->act, (size_t)top * N0 * sizeof(float), (void **)ab[i]));
        DFA_TRY(dfa_arena_alloc(ctx, &v->act, (size_t)pblk * N0 * sizeof(float), (void **)&b->p));
    }
    return DFA_OK;
}

dfa_status dfa_vae_decode(dfa_ctx *ctx, dfa_vae *v, const float *latents, int h, int w, float *image) {
    const dfa_vae_config *c = &v->cfg;
    if (h < 1 || w < 1 || (size_t)h * w > ((size_t)1 << 26) >> (2 * (c->n_blocks - 1)))
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "vae decode: latent size %dx%d out of range", h, w);
    if (ctx->params.backend == DFA_BACKEND_CUDA) return dfa_vae_decode_gpu(ctx, v, latents, h, w, image);
    vae_bufs b;
    DFA_TRY(ensure_arena(ctx, v, h, w, &b));
    const int L = c->latent_channels, nb = c->n_blocks, G = c->norm_groups, top = c->block_out[nb - 1];
    const size_t n0 = (size_t)L * h * w;
    const float inv = (float)(1.0 / c->scaling_factor), sh = (float)c->shift_factor;
    for (size_t i = 0; i < n0; i++) b.cur[i] = latents[i] * inv + sh;
    if (c->post_quant_conv) {
        dfa_op_conv2d(ctx, b.cur, L, h, w, v->pqc_w, v->pqc_b, L, 1, 1, 0, b.nxt, NULL, 0);
        swap(&b.cur, &b.nxt);
    }
    conv3(ctx, &b, b.cur, L, h, w, v->in_w, v->in_b, top, b.nxt);
    swap(&b.cur, &b.nxt);
    resnet_fwd(ctx, &v->mid[0], G, h, w, &b);
    if (c->mid_attention) attn_fwd(ctx, &v->attn, top, G, h * w, &b);
    resnet_fwd(ctx, &v->mid[1], G, h, w, &b);
    int H = h, W = w;
    for (int i = 0; i < nb; i++) {
        for (int j = 0; j <= c->layers_per_block; j++) resnet_fwd(ctx, &v->up[i][j], G, H, W, &b);
        if (i != nb - 1) {
            const int C = c->block_out[nb - 1 - i];
            dfa_op_upsample2x_nearest(b.cur, C, H, W, b.t1);
            H *= 2;
            W *= 2;
            conv3(ctx, &b, b.t1, C, H, W, v->ups_w[i], v->ups_b[i], C, b.cur);
        }
    }
    gn_silu(ctx, b.cur, c->block_out[0], H * W, G, v->nout_w, v->nout_b, b.t1);
    conv3(ctx, &b, b.t1, c->block_out[0], H, W, v->out_w, v->out_b, c->out_channels, image);
    return DFA_OK;
}

void dfa_vae_to_rgb8(const float *image, int H, int W, uint8_t *rgb) {
    const size_t HW = (size_t)H * W;
    for (size_t i = 0; i < HW; i++) {
        for (int c = 0; c < 3; c++) {
            float x = image[c * HW + i] * 0.5f + 0.5f;
            x = x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x);
            rgb[i * 3 + c] = (uint8_t)nearbyintf(x * 255.0f);
        }
    }
}

dfa_status dfa_vae_decode_png(dfa_ctx *ctx, dfa_vae *v, const float *latents, int h, int w, const char *path) {
    if (v->cfg.out_channels != 3)
        DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED, "vae: PNG output needs 3 output channels, config has %d",
                     v->cfg.out_channels);
    const int s = dfa_vae_upscale(v), H = h * s, W = w * s;
    void *img = NULL, *rgb = NULL;
    DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, (size_t)3 * H * W * sizeof(float), "vae image", &img));
    dfa_status st = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, (size_t)3 * H * W, "vae rgb8", &rgb);
    if (st == DFA_OK) st = dfa_vae_decode(ctx, v, latents, h, w, img);
    if (st == DFA_OK) {
        dfa_vae_to_rgb8(img, H, W, rgb);
        st = dfa_png_write(path, W, H, 3, rgb, &ctx->err);
    }
    dfa_ctx_mem_release(ctx, rgb);
    dfa_ctx_mem_release(ctx, img);
    return st;
}
