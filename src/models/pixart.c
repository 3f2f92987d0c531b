/* pixart.c - PixArtTransformer2DModel on the CPU (diffusers pixart_transformer_2d.py and
 * BasicTransformerBlock with norm_type "ada_norm_single"). */
#include "models/pixart.h"
#include "core/log.h"

#include "attn/attn_state.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "io/json.h"
#include "io/safetensors.h"
#include "models/dit_common.h"
#include "models/pixart_int.h"
#include "models/ops.h"
#include "models/wload.h"
#include "sample/sampler.h"

static dfa_status read_config(dfa_ctx *ctx, const char *path, dfa_pixart_config *c) {
    cJSON *root = NULL;
    DFA_TRY(dfa_json_read_file(path, &root, &ctx->err));
    dfa_status s;
    memset(c, 0, sizeof *c);
    const char *nt = NULL;
    if ((s = dfa_tx_cfg_pos_int(ctx, root, "num_attention_heads", path, &c->heads)) ||
        (s = dfa_tx_cfg_pos_int(ctx, root, "attention_head_dim", path, &c->head_dim)) ||
        (s = dfa_tx_cfg_pos_int(ctx, root, "in_channels", path, &c->in_channels)) ||
        (s = dfa_tx_cfg_pos_int(ctx, root, "num_layers", path, &c->layers)) ||
        (s = dfa_tx_cfg_pos_int(ctx, root, "sample_size", path, &c->sample_size)) ||
        (s = dfa_tx_cfg_pos_int(ctx, root, "patch_size", path, &c->patch_size)) ||
        (s = dfa_json_double_or(root, "norm_eps", path, 1e-6, &c->norm_eps, &ctx->err)))
        goto done;
    c->dim = c->heads * c->head_dim;
    c->ff_inner = 4 * c->dim;
    {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "out_channels");
        c->out_channels = cJSON_IsNumber(v) ? v->valueint : (cJSON_IsNull(v) ? c->in_channels : 8);
        v = cJSON_GetObjectItemCaseSensitive(root, "cross_attention_dim");
        c->cross_dim = cJSON_IsNumber(v) ? v->valueint : c->dim;
        v = cJSON_GetObjectItemCaseSensitive(root, "caption_channels");
        c->caption_channels = cJSON_IsNumber(v) ? v->valueint : 0;
        v = cJSON_GetObjectItemCaseSensitive(root, "interpolation_scale");
        c->interpolation_scale =
            cJSON_IsNumber(v) ? v->valuedouble : (c->sample_size / 64 > 1 ? c->sample_size / 64 : 1);
        v = cJSON_GetObjectItemCaseSensitive(root, "use_additional_conditions");
        c->size_cond = cJSON_IsBool(v) ? cJSON_IsTrue(v) : (c->sample_size == 128);
    }
    if (c->size_cond && c->dim % 3) {
        s = DFA_SET(&ctx->err, DFA_ERR_FORMAT, "%s: use_additional_conditions needs the inner dim %d divisible by 3",
                    path, c->dim);
        goto done;
    }
    if (dfa_json_string(root, "norm_type", path, &nt, NULL) == DFA_OK && strcmp(nt, "ada_norm_single") != 0) {
        s = DFA_SET(&ctx->err, DFA_ERR_UNSUPPORTED, "%s: norm_type '%s' (PixArt needs ada_norm_single)", path, nt);
        goto done;
    }
    if (c->out_channels < 1 || c->cross_dim < 1 || c->caption_channels < 0 || !(c->interpolation_scale > 0) ||
        (c->caption_channels && c->cross_dim != c->dim))
        s = DFA_SET(&ctx->err, DFA_ERR_FORMAT,
                    "%s: out_channels %d, cross_attention_dim %d (must equal the inner dim %d when caption_channels "
                    "is set), caption_channels %d, interpolation_scale %g",
                    path, c->out_channels, c->cross_dim, c->dim, c->caption_channels, c->interpolation_scale);
done:
    cJSON_Delete(root);
    return s;
}

static dfa_status bind_pixart(dfa_wload *wl, void *model) {
    dfa_pixart *m = model;
    const dfa_pixart_config *c = &m->cfg;
    const int D = c->dim, p = c->patch_size;
    char pre[256];
    int64_t pe_shape[4] = {D, c->in_channels, p, p};
    DFA_TRY(dfa_wload_tensor(wl, &m->pe_w, 4, pe_shape, "pos_embed.proj.weight"));
    DFA_TRY(dfa_wload_vec(wl, &m->pe_b, D, "pos_embed.proj.bias"));
    DFA_TRY(dfa_tx_bind_temb(wl, &m->temb, D, PIXART_TPROJ, "adaln_single.emb.timestep_embedder"));
    if (c->size_cond) {
        DFA_TRY(dfa_tx_bind_temb(wl, &m->res_emb, D / 3, PIXART_TPROJ, "adaln_single.emb.resolution_embedder"));
        DFA_TRY(dfa_tx_bind_temb(wl, &m->ar_emb, D / 3, PIXART_TPROJ, "adaln_single.emb.aspect_ratio_embedder"));
    }
    DFA_TRY(dfa_wload_linear(wl, &m->ada_w, &m->ada_b, 6 * D, D, "adaln_single.linear"));
    if (c->caption_channels) {
        DFA_TRY(dfa_wload_linear(wl, &m->cap1_w, &m->cap1_b, D, c->caption_channels, "caption_projection.linear_1"));
        DFA_TRY(dfa_wload_linear(wl, &m->cap2_w, &m->cap2_b, D, D, "caption_projection.linear_2"));
    }
    for (int i = 0; i < c->layers; i++) {
        pixart_block *b = &m->blocks[i];
        int64_t ss[2] = {6, D};
        DFA_TRY(dfa_wload_tensor(wl, &b->sst, 2, ss, "transformer_blocks.%d.scale_shift_table", i));
        snprintf(pre, sizeof pre, "transformer_blocks.%d.attn1", i);
        DFA_TRY(dfa_tx_bind_attn(wl, &b->attn1, D, D, 1, pre));
        snprintf(pre, sizeof pre, "transformer_blocks.%d.attn2", i);
        DFA_TRY(dfa_tx_bind_attn(wl, &b->attn2, D, c->cross_dim, 1, pre));
        snprintf(pre, sizeof pre, "transformer_blocks.%d.ff", i);
        DFA_TRY(dfa_tx_bind_ff(wl, &b->ff, D, c->ff_inner, pre));
    }
    int64_t so[2] = {2, D};
    DFA_TRY(dfa_wload_tensor(wl, &m->sst_out, 2, so, "scale_shift_table"));
    DFA_TRY(dfa_wload_linear(wl, &m->po_w, &m->po_b, (int64_t)p * p * c->out_channels, D, "proj_out"));
    return DFA_OK;
}

dfa_status dfa_pixart_load(dfa_ctx *ctx, const char *dir, dfa_pixart **out) {
    *out = NULL;
    char path[4096];
    dfa_pixart *m = NULL;
    DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, sizeof *m, "pixart", (void **)&m));
    memset(m, 0, sizeof *m);
    snprintf(path, sizeof path, "%s/config.json", dir);
    dfa_status s = read_config(ctx, path, &m->cfg);
    if (s == DFA_OK)
        s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, sizeof(pixart_block) * m->cfg.layers, "pixart blocks",
                              (void **)&m->blocks);
    dfa_safetensors *st = NULL;
    if (s == DFA_OK) s = dfa_st_open(&st, dir, &ctx->err);
    if (s == DFA_OK) s = dfa_wload_run(ctx, st, bind_pixart, m, "pixart", &m->weights, &m->n_weights);
    dfa_st_close(st);
    if (s == DFA_OK && dfa_ctx_backend(ctx) == DFA_BACKEND_CUDA) s = dfa_pixart_to_cuda(ctx, m);
    if (s != DFA_OK) {
        dfa_pixart_cuda_release(ctx, m);
        dfa_ctx_mem_release(ctx, m->weights);
        dfa_ctx_mem_release(ctx, m->blocks);
        dfa_ctx_mem_release(ctx, m);
        return s;
    }
    *out = m;
    return DFA_OK;
}

dfa_status dfa_pixart_write_random(dfa_ctx *ctx, const char *dir, uint64_t seed) {
    char path[4096];
    dfa_pixart m;
    memset(&m, 0, sizeof m);
    snprintf(path, sizeof path, "%s/config.json", dir);
    DFA_TRY(read_config(ctx, path, &m.cfg));
    DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, sizeof(*m.blocks) * m.cfg.layers, "pixart blocks", (void **)&m.blocks));
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
    dfa_status s = dfa_wload_write_random(ctx, bind_pixart, &m, path, seed, "pixart");
    dfa_ctx_mem_release(ctx, m.blocks);
    return s;
}

void dfa_pixart_free(dfa_ctx *ctx, dfa_pixart *m) {
    if (!m) return;
    if (m->act_ready) dfa_arena_release(ctx, &m->act);
    dfa_pixart_cuda_release(ctx, m);
    dfa_ctx_mem_release(ctx, m->weights);
    dfa_ctx_mem_release(ctx, m->blocks);
    dfa_ctx_mem_release(ctx, m);
}

const dfa_pixart_config *dfa_pixart_get_config(const dfa_pixart *m) { return &m->cfg; }

typedef struct pixart_bufs {
    float *hs, *nh, *q, *k, *v, *o, *tmp, *mid, *pos, *temb, *tmod, *mod, *scr, *ws;
    float *txt, *txt_mid, *ck, *cv, *s, *bias;
    size_t ws_floats;
} pixart_bufs;

static dfa_status get_bufs(dfa_ctx *ctx, dfa_pixart *m, int B, int N, int L, int W, pixart_bufs *b) {
    const dfa_pixart_config *c = &m->cfg;
    const size_t D = (size_t)c->dim, M = (size_t)B * N, P = (size_t)c->patch_size * c->patch_size * c->out_channels;
    const size_t ws = dfa_op_conv2d_ws_min(c->in_channels, c->patch_size, W / c->patch_size) * 64;
    const size_t BL = (size_t)B * L;
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
               {&b->temb, (size_t)B * D},
               {&b->tmod, (size_t)B * 6 * D},
               {&b->mod, (size_t)B * 6 * D},
               {&b->scr, PIXART_TPROJ + 2 * D},
               {&b->ws, ws},
               {&b->txt, BL * D},
               {&b->txt_mid, BL * D},
               {&b->ck, BL * D},
               {&b->cv, BL * D},
               {&b->s, (size_t)N * L},
               {&b->bias, BL}};
    const int nreq = (int)(sizeof req / sizeof req[0]);
    size_t total = 0;
    for (int i = 0; i < nreq; i++) total += req[i].n * sizeof(float) + 256;
    if (!m->act_ready || m->act.size < total) {
        if (m->act_ready) dfa_arena_release(ctx, &m->act);
        m->act_ready = 0;
        DFA_TRY(dfa_arena_init(ctx, &m->act, DFA_DEV_CPU, total, "pixart activations"));
        m->act_ready = 1;
    }
    dfa_arena_reset(&m->act);
    for (int i = 0; i < nreq; i++) DFA_TRY(dfa_arena_alloc(ctx, &m->act, req[i].n * sizeof(float), (void **)req[i].p));
    b->ws_floats = ws;
    return DFA_OK;
}

dfa_status dfa_pixart_check_input(dfa_ctx *ctx, const dfa_pixart *m, int B, int H, int W, int L) {
    const int p = m->cfg.patch_size;
    if (B < 1 || H < p || W < p || H % p || W % p || L < 1)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG,
                     "pixart: input %dx%d (batch %d, %d text tokens) is not a positive multiple of patch %d", H, W, B,
                     L, p);
    return DFA_OK;
}

static dfa_status pixart_forward_impl(dfa_ctx *ctx, dfa_pixart *m, int B, int H, int W, const float *x, const float *t,
                                      int L, const float *text, const float *mask, float *out) {
    const dfa_pixart_config *c = &m->cfg;
    const int p = c->patch_size, D = c->dim;
    DFA_TRY(dfa_pixart_check_input(ctx, m, B, H, W, L));
    const int h = H / p, w = W / p, N = h * w, M = B * N;
    pixart_bufs b;
    DFA_TRY(get_bufs(ctx, m, B, N, L, W, &b));
    /* position embedding for this grid: base size = sample_size / patch, positions scaled by
     * base_size / grid and divided by interpolation_scale */
    dfa_tx_sincos_pos_embed(D, h, w, c->sample_size / p, c->interpolation_scale, b.pos);
    dfa_tx_patch_embed(ctx, x, B, c->in_channels, H, W, p, m->pe_w, m->pe_b, D, b.pos, b.tmp, b.ws, b.ws_floats, b.hs);
    /* adaLN-single: embedded_timestep = temb(t); tmod = linear(silu(temb)) [B, 6D] shared by all blocks */
    dfa_tx_temb_forward(ctx, &m->temb, B, t, 0.0f, D, b.scr, b.temb);
    if (c->size_cond) {
        /* PixArt-Alpha: + [emb(height), emb(width), emb(height / width)] (D/3 each), pixels = latent * 8
         * as PixArtAlphaPipeline passes them; the same sinusoidal projection as the timestep */
        const int s3 = D / 3;
        const float hp = (float)(H * 8), wp = (float)(W * 8), ar = (float)((double)(H * 8) / (double)(W * 8));
        for (int bi = 0; bi < B; bi++) {
            float *e = b.temb + (size_t)bi * D, *tmp = b.mod; /* b.mod is free until below */
            dfa_tx_temb_forward(ctx, &m->res_emb, 1, &hp, 0.0f, s3, b.scr, tmp);
            dfa_tx_temb_forward(ctx, &m->res_emb, 1, &wp, 0.0f, s3, b.scr, tmp + s3);
            dfa_tx_temb_forward(ctx, &m->ar_emb, 1, &ar, 0.0f, s3, b.scr, tmp + 2 * s3);
            dfa_op_add(e, tmp, (size_t)D);
        }
    }
    memcpy(b.mod, b.temb, (size_t)B * D * sizeof(float));
    dfa_op_silu(b.mod, (size_t)B * D);
    dfa_op_linear(ctx, b.mod, B, D, m->ada_w, m->ada_b, 6 * D, b.tmod);
    /* caption projection: linear_1, GELU(tanh), linear_2 */
    const int Dkv = c->caption_channels ? D : c->cross_dim;
    if (c->caption_channels) {
        dfa_op_linear(ctx, text, B * L, c->caption_channels, m->cap1_w, m->cap1_b, D, b.txt_mid);
        dfa_op_gelu_tanh(b.txt_mid, (size_t)B * L * D);
        dfa_op_linear(ctx, b.txt_mid, B * L, D, m->cap2_w, m->cap2_b, D, b.txt);
    } else {
        memcpy(b.txt, text, (size_t)B * L * Dkv * sizeof(float));
    }
    if (mask)
        for (size_t i = 0; i < (size_t)B * L; i++) b.bias[i] = (1.0f - mask[i]) * -10000.0f;
    const size_t ms = 6 * (size_t)D;
    for (int l = 0; l < c->layers; l++) {
        const pixart_block *blk = &m->blocks[l];
        /* chunk order: shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp */
        for (int bi = 0; bi < B; bi++)
            for (size_t j = 0; j < ms; j++) b.mod[bi * ms + j] = blk->sst[j] + b.tmod[bi * ms + j];
        dfa_op_layernorm(ctx, b.hs, M, D, NULL, NULL, (float)c->norm_eps, b.nh);
        dfa_tx_modulate(b.nh, B, N, D, b.mod, b.mod + D, ms);
        DFA_TRY(dfa_tx_self_attn(ctx, l, &blk->attn1, B, N, c->heads, c->head_dim, b.nh, b.q, b.k, b.v, b.o, b.tmp,
                                 &m->attn_s));
        dfa_tx_gated_add(b.hs, b.tmp, B, N, D, b.mod + 2 * D, ms);
        /* cross-attention on the un-normalised hidden states (PixArt: no norm2 here) */
        dfa_tx_cross_attn(ctx, &blk->attn2, B, N, L, c->heads, c->head_dim, Dkv, b.hs, b.txt, mask ? b.bias : NULL, b.q,
                          b.ck, b.cv, b.o, b.s, b.tmp);
        dfa_op_add(b.hs, b.tmp, (size_t)M * D);
        dfa_op_layernorm(ctx, b.hs, M, D, NULL, NULL, (float)c->norm_eps, b.nh);
        dfa_tx_modulate(b.nh, B, N, D, b.mod + 3 * D, b.mod + 4 * D, ms);
        dfa_tx_ff_forward(ctx, &blk->ff, M, D, b.nh, b.mid, b.tmp);
        dfa_tx_gated_add(b.hs, b.tmp, B, N, D, b.mod + 5 * D, ms);
    }
    /* output: shift = table[0] + temb, scale = table[1] + temb */
    for (int bi = 0; bi < B; bi++)
        for (int j = 0; j < D; j++) {
            b.mod[bi * 2 * D + j] = m->sst_out[j] + b.temb[bi * D + j];
            b.mod[bi * 2 * D + D + j] = m->sst_out[D + j] + b.temb[bi * D + j];
        }
    dfa_op_layernorm(ctx, b.hs, M, D, NULL, NULL, 1e-6f, b.nh);
    dfa_tx_modulate(b.nh, B, N, D, b.mod, b.mod + D, 2 * (size_t)D);
    dfa_op_linear(ctx, b.nh, M, D, m->po_w, m->po_b, p * p * c->out_channels, b.tmp);
    dfa_tx_unpatchify(b.tmp, B, h, w, p, c->out_channels, out);
    return DFA_OK;
}

dfa_status dfa_pixart_forward(dfa_ctx *ctx, dfa_pixart *m, int B, int H, int W, const float *x, const float *t, int L,
                              const float *text, const float *mask, float *out) {
    const double t0 = dfa_now_s();
    dfa_status s = m->dev == DFA_DEV_CUDA ? dfa_pixart_forward_cuda(ctx, m, B, H, W, x, t, L, text, mask, out)
                                          : pixart_forward_impl(ctx, m, B, H, W, x, t, L, text, mask, out);
    m->total_s += dfa_now_s() - t0;
    return s;
}

void dfa_pixart_times(const dfa_pixart *m, double *attn_s, double *total_s) {
    if (attn_s) *attn_s = m->attn_s;
    if (total_s) *total_s = m->total_s;
}

dfa_attn_layout dfa_pixart_attn_layout(const dfa_pixart *m, int h, int w) {
    const int p = m->cfg.patch_size;
    const dfa_attn_layout l = {(h / p) * (w / p), 0, 0, DFA_TX_ATTN_BLOCK, DFA_BAND_ARROW};
    return l;
}

void dfa_pixart_reset_times(dfa_pixart *m) { m->attn_s = m->total_s = 0; }

dfa_status dfa_pixart_sample(dfa_ctx *ctx, dfa_pixart *m, dfa_sampler *sched, float guidance, int h, int w, int L,
                             const float *text_cond, const float *mask_cond, const float *text_uncond,
                             const float *mask_uncond, float *latents, dfa_flow_progress_fn progress, void *user) {
    const dfa_pixart_config *c = &m->cfg;
    const int cfg = guidance > 1.0f, B = cfg ? 2 : 1;
    const size_t n = (size_t)c->in_channels * h * w, n_out = (size_t)c->out_channels * h * w;
    const size_t tw = (size_t)L * (c->caption_channels ? c->caption_channels : c->cross_dim);
    if (cfg && (!text_uncond || (mask_cond == NULL) != (mask_uncond == NULL)))
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "pixart sample: guidance %g needs the negative prompt's states%s",
                     guidance, mask_cond ? " and mask" : "");
    const int n_steps = dfa_sampler_n_steps(sched), var = dfa_sampler_needs_var(sched);
    if (sched->n != n)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "pixart sample: sampler set for %zu values, latents have %zu", sched->n,
                     n);
    if (var && c->out_channels != 2 * c->in_channels)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "pixart sample: learned variance needs out_channels = 2 * in_channels");
    void *xin = NULL, *out = NULL, *txt = NULL, *msk = NULL;
    dfa_status s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, B * n * sizeof(float), "pixart sample input", &xin);
    if (s == DFA_OK) s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, B * n_out * sizeof(float), "pixart sample output", &out);
    if (s == DFA_OK) s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, B * tw * sizeof(float), "pixart sample text", &txt);
    if (s == DFA_OK && mask_cond)
        s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, (size_t)B * L * sizeof(float), "pixart sample mask", &msk);
    if (s == DFA_OK) {
        float *tt = txt, *mm = msk;
        if (cfg) {
            memcpy(tt, text_uncond, tw * sizeof(float));
            memcpy(tt + tw, text_cond, tw * sizeof(float));
            if (mm) {
                memcpy(mm, mask_uncond, (size_t)L * sizeof(float));
                memcpy(mm + L, mask_cond, (size_t)L * sizeof(float));
            }
        } else {
            memcpy(tt, text_cond, tw * sizeof(float));
            if (mm) memcpy(mm, mask_cond, (size_t)L * sizeof(float));
        }
    }
    const int planned = dfa_attn_plan(ctx) != NULL;
    /* the text (txt, msk) is fixed for the whole loop: the CUDA engine may keep its projection */
    m->txt_pin = ++m->txt_seq ? m->txt_seq : ++m->txt_seq;
    for (int i = 0; s == DFA_OK && i < n_steps; i++) {
        float *x = xin, *o = out;
        if (planned && (s = dfa_attn_begin_step(ctx, i)) != DFA_OK) break;
        const double t0 = dfa_now_s();
        const float ts = (float)dfa_sampler_timestep(sched, i), t[2] = {ts, ts};
        for (int b = 0; b < B; b++) memcpy(x + b * n, latents, n * sizeof(float));
        s = dfa_pixart_forward(ctx, m, B, h, w, x, t, L, txt, msk, o);
        if (s != DFA_OK) break;
        if (cfg) /* [uncond, cond]: combined into item 0; its first in_channels channels are eps */
            for (size_t j = 0; j < (var ? 2 * n : n); j++) o[j] = o[j] + guidance * (o[n_out + j] - o[j]);
        /* learned variance (DDPM only): the guided variance channels, as diffusers guides all channels */
        s = dfa_sampler_step(ctx, sched, i, o, o + n, latents);
        if (s == DFA_OK && progress) progress(user, i, n_steps, dfa_now_s() - t0);
    }
    m->txt_pin = 0;
    if (planned) dfa_attn_end_run(ctx);
    dfa_ctx_mem_release(ctx, msk);
    dfa_ctx_mem_release(ctx, txt);
    dfa_ctx_mem_release(ctx, out);
    dfa_ctx_mem_release(ctx, xin);
    return s;
}
