/* vae_gpu.c - the AutoencoderKL decoder on the GPU: bf16 weights uploaded once (the f32 block's
 * layout, so every host weight pointer maps to a device one by offset), channels-last bf16
 * activations, 3x3 convs as banded im2col + cuBLASLt GEMM (dfa_cuops_linear), GroupNorm/SiLU,
 * upsampling and the mid-block single-head attention (row blocks of Q K^T, softmax, P V) with
 * the kernels of models/cuda/vae_cuda.h. Input latents and the output image stay host f32
 * (NCHW), as in dfa_vae_decode. */
#include <math.h>
#include <string.h>

#include "models/cuda/ops_cuda.h"
#include "models/cuda/vae_cuda.h"
#include "models/vae_int.h"

typedef uint16_t bf;

struct vae_gpu {
    dfa_cuops *ops;
    void *stream;
    bf *w;           /* device copy of v->weights as bf16 */
    bf *outw, *outb; /* conv_out padded to a multiple of 8 output channels (zero rows) */
    int cout_pad;
    bf *act; /* device activations block */
    size_t act_elems;
    int act_h, act_w;
    bf *cur, *nxt, *t1, *t2, *col, *q, *k, *vv, *vt, *o, *s, *out;
    double *stats;
    size_t col_elems;
    int sblk;
};

#define DW(g, v, p) ((g)->w + ((p) - (v)->weights)) /* device twin of host weight pointer p */

static dfa_status gpu_init(dfa_ctx *ctx, dfa_vae *v) {
    if (v->gpu) return DFA_OK;
    if (!ctx->cuda) DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED, "vae: CUDA backend without a CUDA device");
    struct vae_gpu *g = NULL;
    DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, sizeof *g, "vae gpu state", (void **)&g));
    memset(g, 0, sizeof *g);
    g->stream = dfa_cuda_stream(ctx->cuda);
    const dfa_vae_config *c = &v->cfg;
    const size_t K = (size_t)c->block_out[0] * 9;
    g->cout_pad = (c->out_channels + 7) & ~7;
    /* weights: f32 host block -> bf16 (host staging) -> device, plus the padded conv_out */
    const size_t pad_elems = (size_t)g->cout_pad * K + g->cout_pad;
    void *stage = NULL;
    dfa_status s = dfa_cuops_init(&g->ops, ctx->cuda, &ctx->err);
    if (s == DFA_OK)
        s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, (v->n_weights + pad_elems) * 2, "vae bf16 staging", &stage);
    if (s == DFA_OK) s = dfa_convert(stage, DFA_BF16, v->weights, DFA_F32, v->n_weights, &ctx->err);
    if (s == DFA_OK) {
        uint16_t *pw = (uint16_t *)stage + v->n_weights;
        memset(pw, 0, pad_elems * 2);
        s = dfa_convert(pw, DFA_BF16, v->out_w, DFA_F32, (size_t)c->out_channels * K, &ctx->err);
        if (s == DFA_OK)
            s = dfa_convert(pw + (size_t)g->cout_pad * K, DFA_BF16, v->out_b, DFA_F32, (size_t)c->out_channels,
                            &ctx->err);
    }
    if (s == DFA_OK)
        s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CUDA, (v->n_weights + pad_elems) * 2, "vae weights (bf16)", (void **)&g->w);
    if (s == DFA_OK) s = dfa_cuda_h2d(ctx->cuda, g->w, stage, (v->n_weights + pad_elems) * 2, &ctx->err);
    dfa_ctx_mem_release(ctx, stage);
    g->outw = g->w ? g->w + v->n_weights : NULL;
    g->outb = g->outw ? g->outw + (size_t)g->cout_pad * K : NULL;
    v->gpu = g;
    if (s != DFA_OK) dfa_vae_gpu_free(ctx, v); /* a later call starts over */
    return s;
}

void dfa_vae_gpu_free(dfa_ctx *ctx, dfa_vae *v) {
    struct vae_gpu *g = v->gpu;
    if (!g) return;
    dfa_cuops_free(g->ops);
    dfa_ctx_mem_release(ctx, g->w);
    dfa_ctx_mem_release(ctx, g->act);
    dfa_ctx_mem_release(ctx, g->stats);
    dfa_ctx_mem_release(ctx, g);
    v->gpu = NULL;
}

/* Activation block for latents h x w: same sizing as the CPU path, in bf16 elements. */
static dfa_status gpu_buffers(dfa_ctx *ctx, dfa_vae *v, int h, int w) {
    struct vae_gpu *g = v->gpu;
    const dfa_vae_config *c = &v->cfg;
    if (g->act && g->act_h == h && g->act_w == w) return DFA_OK;
    const int nb = c->n_blocks, top = c->block_out[nb - 1];
    size_t act = (size_t)(c->latent_channels > top ? c->latent_channels : top) * h * w;
    size_t col_min = (size_t)(c->latent_channels > top ? c->latent_channels : top) * 9 * w;
    int prev = top;
    for (int i = 0; i < nb; i++) {
        const int out = c->block_out[nb - 1 - i], mx = prev > out ? prev : out;
        const size_t HW = (size_t)(h << i) * (w << i);
        if ((size_t)mx * HW > act) act = (size_t)mx * HW;
        if ((size_t)mx * 9 * (w << i) > col_min) col_min = (size_t)mx * 9 * (w << i);
        if (i != nb - 1) {
            if ((size_t)out * HW * 4 > act) act = (size_t)out * HW * 4;
            if ((size_t)out * 9 * (w << (i + 1)) > col_min) col_min = (size_t)out * 9 * (w << (i + 1));
        }
        prev = out;
    }
    size_t col = (size_t)64 << 20; /* 128 MiB of bf16 im2col rows */
    if (col < col_min) col = col_min;
    const size_t N0 = (size_t)h * w;
    int sblk = (int)(((size_t)64 << 20) / N0);
    sblk = sblk < 1 ? 1 : (sblk > (int)N0 ? (int)N0 : sblk);
    const size_t attn = c->mid_attention ? 5 * (size_t)top * N0 + (size_t)sblk * N0 : 0;
    const size_t Ho = N0 << (2 * (nb - 1));
    const int cout_pad = (c->out_channels + 7) & ~7;
    const size_t total = 4 * (act + 64) + col + 64 + attn + 6 * 64 + Ho * cout_pad + 64;
    dfa_ctx_mem_release(ctx, g->act);
    g->act = NULL;
    g->act_h = g->act_w = 0;
    DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CUDA, total * sizeof(bf), "vae gpu activations", (void **)&g->act));
    if (!g->stats)
        DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CUDA, 2 * 1024 * sizeof(double), "vae gpu groupnorm stats",
                                  (void **)&g->stats));
    bf *p = g->act;
#define TAKE(dst, n)                                                                                                   \
    do {                                                                                                               \
        (dst) = p;                                                                                                     \
        p += (((n) + 63) & ~(size_t)63);                                                                               \
    } while (0)
    TAKE(g->cur, act);
    TAKE(g->nxt, act);
    TAKE(g->t1, act);
    TAKE(g->t2, act);
    TAKE(g->col, col);
    if (c->mid_attention) {
        TAKE(g->q, (size_t)top * N0);
        TAKE(g->k, (size_t)top * N0);
        TAKE(g->vv, (size_t)top * N0);
        TAKE(g->vt, (size_t)top * N0);
        TAKE(g->o, (size_t)top * N0);
        TAKE(g->s, (size_t)sblk * N0);
    }
    TAKE(g->out, Ho * cout_pad);
#undef TAKE
    g->col_elems = col;
    g->sblk = sblk;
    g->act_h = h;
    g->act_w = w;
    return DFA_OK;
}

static void swapb(bf **a, bf **b) {
    bf *t = *a;
    *a = *b;
    *b = t;
}

static dfa_status conv3(dfa_ctx *ctx, dfa_vae *v, const bf *x, int cin, int H, int W, const float *wt,
                        const float *bias, int cout, bf *y) {
    struct vae_gpu *g = v->gpu;
    const size_t rowk = (size_t)W * cin * 9;
    int band = (int)(g->col_elems / rowk);
    band = band < 1 ? 1 : (band > H ? H : band);
    for (int r0 = 0; r0 < H; r0 += band) {
        const int nr = r0 + band <= H ? band : H - r0;
        DFA_TRY(dfa_vaecu_im2col3(g->stream, x, H, W, cin, r0, nr, g->col, &ctx->err));
        DFA_TRY(dfa_cuops_linear(g->ops, g->col, nr * W, cin * 9, DW(g, v, wt), bias ? DW(g, v, bias) : NULL, cout, 0,
                                 y + (size_t)r0 * W * cout, &ctx->err));
    }
    return DFA_OK;
}

static dfa_status gn(dfa_ctx *ctx, dfa_vae *v, const bf *x, int HW, int C, const float *gamma, const float *beta,
                     int silu, bf *y) {
    struct vae_gpu *g = v->gpu;
    if (v->cfg.norm_groups > 1024)
        DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED, "vae gpu: %d groups (1024 max)", v->cfg.norm_groups);
    return dfa_vaecu_groupnorm(g->stream, x, HW, C, v->cfg.norm_groups, DW(g, v, gamma), DW(g, v, beta), VAE_EPS, silu,
                               y, g->stats, &ctx->err);
}

static dfa_status resnet(dfa_ctx *ctx, dfa_vae *v, const vae_resnet *r, int H, int W) {
    struct vae_gpu *g = v->gpu;
    const int HW = H * W;
    DFA_TRY(gn(ctx, v, g->cur, HW, r->cin, r->n1w, r->n1b, 1, g->t1));
    DFA_TRY(conv3(ctx, v, g->t1, r->cin, H, W, r->c1w, r->c1b, r->cout, g->t2));
    DFA_TRY(gn(ctx, v, g->t2, HW, r->cout, r->n2w, r->n2b, 1, g->t1));
    DFA_TRY(conv3(ctx, v, g->t1, r->cout, H, W, r->c2w, r->c2b, r->cout, g->nxt));
    if (r->scw) {
        DFA_TRY(dfa_cuops_linear(g->ops, g->cur, HW, r->cin, DW(g, v, r->scw), DW(g, v, r->scb), r->cout, 0, g->t2,
                                 &ctx->err));
        DFA_TRY(dfa_cuops_gate_add(g->ops, g->nxt, 1, HW, r->cout, NULL, g->t2, &ctx->err));
    } else {
        DFA_TRY(dfa_cuops_gate_add(g->ops, g->nxt, 1, HW, r->cout, NULL, g->cur, &ctx->err));
    }
    swapb(&g->cur, &g->nxt);
    return DFA_OK;
}

static dfa_status attention(dfa_ctx *ctx, dfa_vae *v, int C, int N) {
    struct vae_gpu *g = v->gpu;
    const vae_attn *a = &v->attn;
    DFA_TRY(gn(ctx, v, g->cur, N, C, a->gnw, a->gnb, 0, g->t1));
    DFA_TRY(dfa_cuops_linear(g->ops, g->t1, N, C, DW(g, v, a->qw), DW(g, v, a->qb), C, 0, g->q, &ctx->err));
    DFA_TRY(dfa_cuops_linear(g->ops, g->t1, N, C, DW(g, v, a->kw), DW(g, v, a->kb), C, 0, g->k, &ctx->err));
    DFA_TRY(dfa_cuops_linear(g->ops, g->t1, N, C, DW(g, v, a->vw), DW(g, v, a->vb), C, 0, g->vv, &ctx->err));
    DFA_TRY(dfa_vaecu_transpose(g->stream, g->vv, N, C, g->vt, &ctx->err));
    const float scale = 1.0f / sqrtf((float)C);
    for (int i0 = 0; i0 < N; i0 += g->sblk) {
        const int m = i0 + g->sblk <= N ? g->sblk : N - i0;
        DFA_TRY(dfa_cuops_linear(g->ops, g->q + (size_t)i0 * C, m, C, g->k, NULL, N, 0, g->s, &ctx->err));
        DFA_TRY(dfa_vaecu_softmax_rows(g->stream, g->s, m, N, scale, &ctx->err));
        DFA_TRY(dfa_cuops_linear(g->ops, g->s, m, N, g->vt, NULL, C, 0, g->o + (size_t)i0 * C, &ctx->err));
    }
    DFA_TRY(dfa_cuops_linear(g->ops, g->o, N, C, DW(g, v, a->ow), DW(g, v, a->ob), C, 0, g->t2, &ctx->err));
    return dfa_cuops_gate_add(g->ops, g->cur, 1, N, C, NULL, g->t2, &ctx->err);
}

dfa_status dfa_vae_decode_gpu(dfa_ctx *ctx, dfa_vae *v, const float *latents, int h, int w, float *image) {
    const dfa_vae_config *c = &v->cfg;
    DFA_TRY(gpu_init(ctx, v));
    DFA_TRY(gpu_buffers(ctx, v, h, w));
    struct vae_gpu *g = v->gpu;
    const int L = c->latent_channels, nb = c->n_blocks, top = c->block_out[nb - 1], up = 1 << (nb - 1);
    const int Ho = h * up, Wo = w * up, oc = c->out_channels;
    const size_t n0 = (size_t)L * h * w, nout = (size_t)Ho * Wo * v->gpu->cout_pad;
    /* host staging: latents NCHW f32 -> scaled, NHWC bf16; output NHWC f32 */
    void *stage = NULL;
    const size_t stage_bytes = (nout > n0 ? nout : n0) * sizeof(float);
    DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, stage_bytes + n0 * 2, "vae gpu host staging", &stage));
    float *f = stage;
    uint16_t *hb = (uint16_t *)((char *)stage + stage_bytes);
    const float inv = (float)(1.0 / c->scaling_factor), sh = (float)c->shift_factor;
    for (int ch = 0; ch < L; ch++)
        for (int p = 0; p < h * w; p++) f[(size_t)p * L + ch] = latents[(size_t)ch * h * w + p] * inv + sh;
    dfa_status s = dfa_convert(hb, DFA_BF16, f, DFA_F32, n0, &ctx->err);
    if (s == DFA_OK) s = dfa_cuda_h2d(ctx->cuda, g->cur, hb, n0 * 2, &ctx->err);
#define RUN(x)                                                                                                         \
    do {                                                                                                               \
        if (s == DFA_OK) s = (x);                                                                                      \
    } while (0)
    if (c->post_quant_conv) {
        RUN(dfa_cuops_linear(g->ops, g->cur, h * w, L, DW(g, v, v->pqc_w), DW(g, v, v->pqc_b), L, 0, g->nxt,
                             &ctx->err));
        if (s == DFA_OK) swapb(&g->cur, &g->nxt);
    }
    RUN(conv3(ctx, v, g->cur, L, h, w, v->in_w, v->in_b, top, g->nxt));
    if (s == DFA_OK) swapb(&g->cur, &g->nxt);
    RUN(resnet(ctx, v, &v->mid[0], h, w));
    if (c->mid_attention) RUN(attention(ctx, v, top, h * w));
    RUN(resnet(ctx, v, &v->mid[1], h, w));
    int H = h, W = w;
    for (int i = 0; i < nb && s == DFA_OK; i++) {
        for (int j = 0; j <= c->layers_per_block; j++) RUN(resnet(ctx, v, &v->up[i][j], H, W));
        if (i != nb - 1) {
            const int C = c->block_out[nb - 1 - i];
            RUN(dfa_vaecu_upsample2x(g->stream, g->cur, H, W, C, g->t1, &ctx->err));
            H *= 2;
            W *= 2;
            RUN(conv3(ctx, v, g->t1, C, H, W, v->ups_w[i], v->ups_b[i], C, g->cur));
        }
    }
    RUN(gn(ctx, v, g->cur, H * W, c->block_out[0], v->nout_w, v->nout_b, 1, g->t1));
    /* conv_out with the zero-padded weights: g->out is [Ho*Wo, cout_pad] */
    {
        const int cin = c->block_out[0];
        const size_t rowk = (size_t)W * cin * 9;
        int band = (int)(g->col_elems / rowk);
        band = band < 1 ? 1 : (band > H ? H : band);
        for (int r0 = 0; r0 < H && s == DFA_OK; r0 += band) {
            const int nr = r0 + band <= H ? band : H - r0;
            RUN(dfa_vaecu_im2col3(g->stream, g->t1, H, W, cin, r0, nr, g->col, &ctx->err));
            RUN(dfa_cuops_linear(g->ops, g->col, nr * W, cin * 9, g->outw, g->outb, g->cout_pad, 0,
                                 g->out + (size_t)r0 * W * g->cout_pad, &ctx->err));
        }
    }
#undef RUN
    uint16_t *ob = (uint16_t *)f; /* reuse the staging: bf16 output first, then f32 */
    if (s == DFA_OK) s = dfa_cuda_d2h(ctx->cuda, ob, g->out, nout * 2, &ctx->err);
    if (s == DFA_OK) {
        for (size_t p = 0; p < (size_t)Ho * Wo; p++)
            for (int ch = 0; ch < oc; ch++) image[(size_t)ch * Ho * Wo + p] = dfa_bf16_to_f32(ob[p * g->cout_pad + ch]);
    }
    dfa_ctx_mem_release(ctx, stage);
    return s;
}
