#include "models/dit_common.h"
#include "core/log.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "attn/attn.h"
#include "io/json.h"
#include "models/ops.h"

dfa_status dfa_tx_bind_attn(dfa_wload *wl, dfa_tx_attn *a, int D, int Dkv, int bias, const char *prefix) {
    char p[256];
    snprintf(p, sizeof p, "%s.to_q", prefix);
    DFA_TRY(dfa_wload_linear(wl, &a->qw, bias ? &a->qb : NULL, D, D, p));
    snprintf(p, sizeof p, "%s.to_k", prefix);
    DFA_TRY(dfa_wload_linear(wl, &a->kw, bias ? &a->kb : NULL, D, Dkv, p));
    snprintf(p, sizeof p, "%s.to_v", prefix);
    DFA_TRY(dfa_wload_linear(wl, &a->vw, bias ? &a->vb : NULL, D, Dkv, p));
    snprintf(p, sizeof p, "%s.to_out.0", prefix);
    DFA_TRY(dfa_wload_linear(wl, &a->ow, &a->ob, D, D, p));
    if (!bias) a->qb = a->kb = a->vb = NULL;
    return DFA_OK;
}

dfa_status dfa_tx_bind_ff(dfa_wload *wl, dfa_tx_ff *f, int D, int inner, const char *prefix) {
    char p[256];
    f->inner = inner;
    snprintf(p, sizeof p, "%s.net.0.proj", prefix);
    DFA_TRY(dfa_wload_linear(wl, &f->w1, &f->b1, inner, D, p));
    snprintf(p, sizeof p, "%s.net.2", prefix);
    return dfa_wload_linear(wl, &f->w2, &f->b2, D, inner, p);
}

dfa_status dfa_tx_bind_temb(dfa_wload *wl, dfa_tx_temb *t, int D, int in_dim, const char *prefix) {
    char p[256];
    t->in_dim = in_dim;
    snprintf(p, sizeof p, "%s.linear_1", prefix);
    DFA_TRY(dfa_wload_linear(wl, &t->w1, &t->b1, D, in_dim, p));
    snprintf(p, sizeof p, "%s.linear_2", prefix);
    return dfa_wload_linear(wl, &t->w2, &t->b2, D, D, p);
}

void dfa_tx_temb_forward(const dfa_ctx *ctx, const dfa_tx_temb *te, int B, const float *t, float shift, int D,
                         float *scratch, float *out) {
    float *proj = scratch, *mid = scratch + te->in_dim;
    for (int b = 0; b < B; b++) {
        dfa_op_timestep_embedding(t[b], te->in_dim, 1, shift, 1.0f, 10000, proj);
        dfa_op_linear(ctx, proj, 1, te->in_dim, te->w1, te->b1, D, mid);
        dfa_op_silu(mid, (size_t)D);
        dfa_op_linear(ctx, mid, 1, D, te->w2, te->b2, D, out + (size_t)b * D);
    }
}

static void sincos_1d(int half, double pos, float *out) { /* out[0:half/2] sin, [half/2:half] cos */
    const int q = half / 2;
    for (int i = 0; i < q; i++) {
        double omega = 1.0 / pow(10000.0, (double)i / (half / 2.0));
        out[i] = (float)sin(pos * omega);
        out[q + i] = (float)cos(pos * omega);
    }
}

void dfa_tx_sincos_pos_embed(int D, int gh, int gw, int base_size, double interpolation_scale, float *out) {
    const int half = D / 2;
    for (int i = 0; i < gh; i++) {
        /* float32 positions as diffusers computes them */
        const float ph = (float)((float)i / ((float)gh / (float)base_size) / (float)interpolation_scale);
        for (int j = 0; j < gw; j++) {
            const float pw = (float)((float)j / ((float)gw / (float)base_size) / (float)interpolation_scale);
            float *row = out + ((size_t)i * gw + j) * D;
            sincos_1d(half, pw, row);
            sincos_1d(half, ph, row + half);
        }
    }
}

void dfa_tx_patch_embed(const dfa_ctx *ctx, const float *x, int B, int C, int H, int W, int p, const float *w,
                        const float *b, int D, const float *pos, float *tmp, float *ws, size_t ws_floats, float *out) {
    const int h = H / p, wd = W / p, N = h * wd;
    for (int bi = 0; bi < B; bi++) {
        dfa_op_conv2d(ctx, x + (size_t)bi * C * H * W, C, H, W, w, b, D, p, p, 0, tmp, ws, ws_floats);
        float *o = out + (size_t)bi * N * D;
        for (int n = 0; n < N; n++)
            for (int d = 0; d < D; d++)
                o[(size_t)n * D + d] = tmp[(size_t)d * N + n] + (pos ? pos[(size_t)n * D + d] : 0);
    }
}

void dfa_tx_unpatchify(const float *y, int B, int h, int w, int p, int C, float *out) {
    const int HH = h * p, WW = w * p;
    for (int b = 0; b < B; b++)
        for (int hy = 0; hy < h; hy++)
            for (int wx = 0; wx < w; wx++) {
                const float *t = y + (((size_t)b * h + hy) * w + wx) * p * p * C;
                for (int py = 0; py < p; py++)
                    for (int px = 0; px < p; px++)
                        for (int c = 0; c < C; c++)
                            out[(((size_t)b * C + c) * HH + hy * p + py) * WW + wx * p + px] = t[(py * p + px) * C + c];
            }
}

void dfa_tx_modulate(float *x, int B, int N, int D, const float *shift, const float *scale, size_t mod_stride) {
    for (int b = 0; b < B; b++) {
        const float *sh = shift + b * mod_stride, *sc = scale + b * mod_stride;
        for (int n = 0; n < N; n++) {
            float *r = x + ((size_t)b * N + n) * D;
            for (int d = 0; d < D; d++) r[d] = r[d] * (1.0f + sc[d]) + sh[d];
        }
    }
}

void dfa_tx_gated_add(float *h, const float *x, int B, int N, int D, const float *gate, size_t mod_stride) {
    for (int b = 0; b < B; b++) {
        const float *g = gate ? gate + b * mod_stride : NULL;
        for (int n = 0; n < N; n++) {
            float *r = h + ((size_t)b * N + n) * D;
            const float *s = x + ((size_t)b * N + n) * D;
            if (g)
                for (int d = 0; d < D; d++) r[d] += g[d] * s[d];
            else
                for (int d = 0; d < D; d++) r[d] += s[d];
        }
    }
}

dfa_status dfa_tx_self_attn(dfa_ctx *ctx, int layer, const dfa_tx_attn *a, int B, int N, int H, int Dh, const float *in,
                            float *q, float *k, float *v, float *o, float *out, double *attn_s) {
    const int D = H * Dh, M = B * N;
    dfa_op_linear(ctx, in, M, D, a->qw, a->qb, D, q);
    dfa_op_linear(ctx, in, M, D, a->kw, a->kb, D, k);
    dfa_op_linear(ctx, in, M, D, a->vw, a->vb, D, v);
    const int64_t shape[4] = {B, N, H, Dh};
    dfa_tensor tq, tk, tv, to;
    DFA_TRY(dfa_tensor_init(&tq, DFA_F32, DFA_DEV_CPU, 4, shape, q, &ctx->err));
    DFA_TRY(dfa_tensor_init(&tk, DFA_F32, DFA_DEV_CPU, 4, shape, k, &ctx->err));
    DFA_TRY(dfa_tensor_init(&tv, DFA_F32, DFA_DEV_CPU, 4, shape, v, &ctx->err));
    DFA_TRY(dfa_tensor_init(&to, DFA_F32, DFA_DEV_CPU, 4, shape, o, &ctx->err));
    const dfa_attn_layout layout = {N, 0, 0, DFA_TX_ATTN_BLOCK, DFA_BAND_ARROW};
    const double t0 = dfa_now_s();
    DFA_TRY(dfa_attn_layer(ctx, layer, &layout, &tq, &tk, &tv, &to));
    if (attn_s) *attn_s += dfa_now_s() - t0;
    dfa_op_linear(ctx, o, M, D, a->ow, a->ob, D, out);
    return DFA_OK;
}

void dfa_tx_cross_attn(const dfa_ctx *ctx, const dfa_tx_attn *a, int B, int N, int L, int H, int Dh, int Dkv,
                       const float *in, const float *kv_in, const float *bias, float *q, float *k, float *v, float *o,
                       float *s, float *out) {
    const int D = H * Dh;
    const float scale = 1.0f / sqrtf((float)Dh);
    dfa_op_linear(ctx, in, B * N, D, a->qw, a->qb, D, q);
    dfa_op_linear(ctx, kv_in, B * L, Dkv, a->kw, a->kb, D, k);
    dfa_op_linear(ctx, kv_in, B * L, Dkv, a->vw, a->vb, D, v);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const float *qb = q + (size_t)b * N * D + (size_t)h * Dh;
            const float *kb = k + (size_t)b * L * D + (size_t)h * Dh;
            const float *vb = v + (size_t)b * L * D + (size_t)h * Dh;
            dfa_op_gemm(ctx, 1, N, L, Dh, scale, qb, D, kb, D, 0.0f, s, L);
            if (bias) {
                const float *br = bias + (size_t)b * L;
                for (int i = 0; i < N; i++)
                    for (int j = 0; j < L; j++) s[(size_t)i * L + j] += br[j];
            }
            dfa_op_softmax_rows(s, N, L);
            dfa_op_gemm(ctx, 0, N, Dh, L, 1.0f, s, L, vb, D, 0.0f, o + (size_t)b * N * D + (size_t)h * Dh, D);
        }
    dfa_op_linear(ctx, o, B * N, D, a->ow, a->ob, D, out);
}

void dfa_tx_ff_forward(const dfa_ctx *ctx, const dfa_tx_ff *f, int M, int D, const float *in, float *mid, float *out) {
    dfa_op_linear(ctx, in, M, D, f->w1, f->b1, f->inner, mid);
    dfa_op_gelu_tanh(mid, (size_t)M * f->inner);
    dfa_op_linear(ctx, mid, M, f->inner, f->w2, f->b2, D, out);
}

dfa_status dfa_tx_cfg_pos_int(dfa_ctx *ctx, const cJSON *root, const char *key, const char *path, int *out) {
    DFA_TRY(dfa_json_int(root, key, path, out, &ctx->err));
    if (*out <= 0) DFA_CTX_FAIL(ctx, DFA_ERR_FORMAT, "%s: %s must be positive, got %d", path, key, *out);
    return DFA_OK;
}

