/* tx_cuda.c - DiT / PixArt building blocks on the GPU (see tx_cuda.h). */
#include "models/tx_cuda.h"

#include <math.h>
#include <string.h>

#include "attn/attn.h"
#include "core/cuda_rt.h"
#include "models/cuda/ops_cuda.h"
#include "models/mmdit.h"
#include "models/ops.h"

typedef uint16_t bf16;

#define DW(p) ((const bf16 *)(const void *)(p)) /* device bf16 behind a float pointer */
#define UPLOAD_CHUNK ((size_t)1 << 22)

dfa_status dfa_txg_upload_weights(dfa_ctx *ctx, const float *host, size_t n, uint16_t **dev) {
    *dev = NULL;
    if (!ctx->cuda) DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED, "weights to the GPU: no CUDA device in this context");
    void *d = NULL, *tmp = NULL;
    DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CUDA, (n ? n : 1) * sizeof(bf16), "model weights (device, bf16)", &d));
    dfa_status s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, UPLOAD_CHUNK * sizeof(bf16), "weight upload staging", &tmp);
    for (size_t off = 0; s == DFA_OK && off < n; off += UPLOAD_CHUNK) {
        const size_t c = n - off < UPLOAD_CHUNK ? n - off : UPLOAD_CHUNK;
        bf16 *t = tmp;
        const long long cn = (long long)c;
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static)
        for (long long i = 0; i < cn; i++) t[i] = dfa_f32_to_bf16(host[off + (size_t)i]);
        s = dfa_cuda_h2d(ctx->cuda, (bf16 *)d + off, t, c * sizeof(bf16), &ctx->err);
    }
    dfa_ctx_mem_release(ctx, tmp);
    if (s != DFA_OK) {
        dfa_ctx_mem_release(ctx, d);
        return s;
    }
    *dev = d;
    return DFA_OK;
}

void dfa_txg_reloc(float **p, const float *host, const uint16_t *dev) {
    if (*p) *p = (float *)(void *)(uintptr_t)(dev + (*p - host));
}

void dfa_txg_reloc_attn(dfa_tx_attn *a, const float *host, const uint16_t *dev) {
    float **f[] = {&a->qw, &a->qb, &a->kw, &a->kb, &a->vw, &a->vb, &a->ow, &a->ob};
    for (int i = 0; i < 8; i++) dfa_txg_reloc(f[i], host, dev);
}

void dfa_txg_reloc_ff(dfa_tx_ff *f, const float *host, const uint16_t *dev) {
    float **p[] = {&f->w1, &f->b1, &f->w2, &f->b2};
    for (int i = 0; i < 4; i++) dfa_txg_reloc(p[i], host, dev);
}

void dfa_txg_reloc_temb(dfa_tx_temb *t, const float *host, const uint16_t *dev) {
    float **p[] = {&t->w1, &t->b1, &t->w2, &t->b2};
    for (int i = 0; i < 4; i++) dfa_txg_reloc(p[i], host, dev);
}

dfa_status dfa_txg_model_upload(dfa_ctx *ctx, dfa_txg_model *s, const float *host, size_t n, uint16_t **dev) {
    *dev = NULL;
    DFA_TRY(dfa_cuops_init(&s->ops, ctx->cuda, &ctx->err));
    return dfa_txg_upload_weights(ctx, host, n, dev);
}

void dfa_txg_model_commit(dfa_ctx *ctx, float **weights, uint16_t *dev, dfa_device *devp) {
    dfa_ctx_mem_release(ctx, *weights);
    *weights = (float *)(void *)dev;
    *devp = DFA_DEV_CUDA;
}

void dfa_txg_model_release(dfa_ctx *ctx, dfa_txg_model *s) {
    if (s->dact.base) dfa_arena_release(ctx, &s->dact);
    if (s->hst.base) dfa_arena_release(ctx, &s->hst);
    if (s->dpos) dfa_ctx_mem_release(ctx, s->dpos);
    s->dpos = NULL;
    if (s->ops) dfa_cuops_free(s->ops);
    s->ops = NULL;
}

static size_t b16(size_t n) { return (n * 2 + 255u) & ~(size_t)255u; }
static size_t b32(size_t n) { return (n * 4 + 255u) & ~(size_t)255u; }
static size_t zmax(size_t a, size_t b) { return a > b ? a : b; }

int dfa_txg_cross_group(int N, int L, int H, size_t budget) {
    const size_t per_head = (size_t)N * (size_t)((L + 7) & ~7) * 6;
    if (!budget) budget = DFA_TXG_CROSS_BUDGET;
    size_t g = per_head ? budget / per_head : (size_t)H;
    if (g < 1) g = 1;
    return g > (size_t)H ? H : (int)g;
}

/* the buffer list, in carve order: sizes in bytes */
static int bufs_list(const dfa_txg_dims *d, void ***ptr, size_t *bytes, dfa_txg_bufs *b) {
    const size_t BN = (size_t)d->B * d->N, D = (size_t)d->D, BL = (size_t)d->B * d->L;
    const size_t Lp = (size_t)((d->L + 7) & ~7);
    int n = 0;
#define ADD(field, nbytes)                           \
    do {                                             \
        if (ptr) ptr[n] = (void **)(void *)&b->field; \
        bytes[n++] = (nbytes);                       \
    } while (0)
    ADD(hs, b16(BN * D));
    ADD(nh, b16(BN * D));
    ADD(q, b16(BN * D));
    ADD(k, b16(BN * D));
    ADD(v, b16(BN * D));
    ADD(o, b16(BN * D));
    ADD(tmp, b16(BN * D));
    ADD(mid, b16(BN * (size_t)d->ff_inner));
    ADD(cols, b16(BN * zmax((size_t)d->patch_cols, (size_t)d->out_cols)));
    ADD(tproj, b16((size_t)(d->B + 3) * 256)); /* + 3 rows: PixArt-Alpha size conditioning */
    ADD(emb, b16((size_t)d->B * D));
    ADD(emb2, b16((size_t)d->B * D));
    ADD(mod, b16((size_t)d->B * 6 * D));
    ADD(mod2, b16((size_t)d->B * 6 * D));
    if (d->L > 0) {
        ADD(txt_in, b16(BL * (size_t)d->caption));
        ADD(txt_mid, b16(BL * D));
        ADD(ck, b16(BL * D));
        ADD(cv, b16(BL * D));
        ADD(kh, b16(BL * D));
        ADD(vh, b16(BL * D));
        ADD(qh, b16(BN * D));
        ADD(oh, b16(BN * D));
        const size_t G = (size_t)dfa_txg_cross_group(d->N, d->L, d->heads, d->cross_budget);
        ADD(pr, b16(G * d->N * Lp));
        ADD(sc, b32(G * d->N * Lp));
    }
#undef ADD
    return n;
}

size_t dfa_txg_bufs_bytes(const dfa_txg_dims *d) {
    size_t bytes[40], total = 4096;
    const int n = bufs_list(d, NULL, bytes, NULL);
    for (int i = 0; i < n; i++) total += bytes[i];
    return total;
}

size_t dfa_txg_stage_floats(const dfa_txg_dims *d) {
    const size_t BN = (size_t)d->B * d->N;
    size_t s = zmax(BN * (size_t)d->patch_cols, BN * (size_t)d->out_cols);
    s = zmax(s, (size_t)(d->B + 3) * 256);
    s = zmax(s, (size_t)d->B * d->L * (size_t)(d->caption > 0 ? d->caption : 1));
    return zmax(s, 1024);
}

dfa_status dfa_txg_bufs_carve(dfa_ctx *ctx, dfa_arena *a, const dfa_txg_dims *d, dfa_txg_bufs *b) {
    memset(b, 0, sizeof *b);
    void **ptr[40];
    size_t bytes[40];
    const int n = bufs_list(d, ptr, bytes, b);
    for (int i = 0; i < n; i++) DFA_TRY(dfa_arena_alloc(ctx, a, bytes[i], ptr[i]));
    b->Lp = (d->L + 7) & ~7;
    return DFA_OK;
}

dfa_status dfa_txg_model_begin(dfa_ctx *ctx, dfa_txg_model *s, const dfa_txg_dims *d, const char *act_name,
                               const char *hst_name, dfa_txg *g, dfa_txg_bufs *b) {
    const size_t stage = dfa_txg_stage_floats(d);
    DFA_TRY(dfa_mmdit_arena_ensure(ctx, &s->dact, DFA_DEV_CUDA, dfa_txg_bufs_bytes(d) + dfa_mmdit_fbytes(stage),
                                   act_name));
    DFA_TRY(dfa_mmdit_arena_ensure(ctx, &s->hst, DFA_DEV_CPU, dfa_mmdit_fbytes(stage) + 256, hst_name));
    DFA_TRY(dfa_txg_bufs_carve(ctx, &s->dact, d, b));
    *g = (dfa_txg){ctx, s->ops, NULL, NULL, stage};
    DFA_TRY(dfa_arena_alloc(ctx, &s->dact, stage * sizeof(float), (void **)&g->dstage));
    return dfa_arena_alloc(ctx, &s->hst, stage * sizeof(float), (void **)&g->hstage);
}

dfa_status dfa_txg_upload(dfa_txg *g, const float *src, size_t n, uint16_t *dst) {
    for (size_t off = 0; off < n; off += g->stage_n) {
        const size_t c = n - off < g->stage_n ? n - off : g->stage_n;
        DFA_TRY(dfa_cuda_h2d(g->ctx->cuda, g->dstage, src + off, c * sizeof(float), &g->ctx->err));
        DFA_TRY(dfa_cuops_f32_to_bf16(g->ops, g->dstage, dst + off, c, &g->ctx->err));
    }
    return DFA_OK;
}

dfa_status dfa_txg_download(dfa_txg *g, const uint16_t *src, size_t n, float *dst) {
    for (size_t off = 0; off < n; off += g->stage_n) {
        const size_t c = n - off < g->stage_n ? n - off : g->stage_n;
        DFA_TRY(dfa_cuops_bf16_to_f32(g->ops, src + off, g->dstage, c, &g->ctx->err));
        DFA_TRY(dfa_cuda_d2h(g->ctx->cuda, dst + off, g->dstage, c * sizeof(float), &g->ctx->err));
    }
    return DFA_OK;
}

dfa_status dfa_txg_linear(dfa_txg *g, const uint16_t *x, int M, int K, const float *w, const float *b, int N,
                          uint16_t *y) {
    return dfa_cuops_linear(g->ops, x, M, K, DW(w), b ? DW(b) : NULL, N, 0, y, &g->ctx->err);
}

dfa_status dfa_txg_tproj(dfa_txg *g, int B, const float *t, int dim, float shift, uint16_t *out) {
    if ((size_t)B * dim > g->stage_n)
        DFA_CTX_FAIL(g->ctx, DFA_ERR_INTERNAL, "timestep projection: %d x %d > staging %zu", B, dim, g->stage_n);
    for (int b = 0; b < B; b++) dfa_op_timestep_embedding(t[b], dim, 1, shift, 1.0f, 10000, g->hstage + (size_t)b * dim);
    return dfa_txg_upload(g, g->hstage, (size_t)B * dim, out);
}

dfa_status dfa_txg_temb(dfa_txg *g, const dfa_tx_temb *te, int B, const uint16_t *proj, int D, uint16_t *mid,
                        uint16_t *out) {
    DFA_TRY(dfa_txg_linear(g, proj, B, te->in_dim, te->w1, te->b1, D, mid));
    DFA_TRY(dfa_cuops_act(g->ops, mid, (size_t)B * D, DFA_ACT_SILU, &g->ctx->err));
    return dfa_txg_linear(g, mid, B, D, te->w2, te->b2, D, out);
}

dfa_status dfa_txg_patch_embed(dfa_txg *g, const float *x, int B, int C, int H, int W, int p, const float *w,
                               const float *b, int D, const uint16_t *pos, uint16_t *cols, uint16_t *out) {
    const int h = H / p, wd = W / p, N = h * wd, K = C * p * p;
    if ((size_t)B * N * K > g->stage_n)
        DFA_CTX_FAIL(g->ctx, DFA_ERR_INTERNAL, "patch embed: %d x %d x %d > staging %zu", B, N, K, g->stage_n);
    float *c = g->hstage; /* im2col: row (b, n), column (ch, py, px) = the conv weight's [D, C, p, p] order */
    for (int bi = 0; bi < B; bi++)
        for (int hy = 0; hy < h; hy++)
            for (int wx = 0; wx < wd; wx++) {
                float *row = c + ((size_t)bi * N + (size_t)hy * wd + wx) * K;
                for (int ch = 0; ch < C; ch++)
                    for (int py = 0; py < p; py++)
                        for (int px = 0; px < p; px++)
                            row[(ch * p + py) * p + px] =
                                x[(((size_t)bi * C + ch) * H + (size_t)hy * p + py) * W + (size_t)wx * p + px];
            }
    DFA_TRY(dfa_txg_upload(g, c, (size_t)B * N * K, cols));
    DFA_TRY(dfa_txg_linear(g, cols, B * N, K, w, b, D, out));
    return dfa_cuops_add_row(g->ops, out, B, N * D, pos, out, &g->ctx->err);
}

dfa_status dfa_txg_unpatchify(dfa_txg *g, const uint16_t *y, int B, int h, int w, int p, int C, float *out) {
    const size_t n = (size_t)B * h * w * p * p * C;
    if (n > g->stage_n) DFA_CTX_FAIL(g->ctx, DFA_ERR_INTERNAL, "unpatchify: %zu > staging %zu", n, g->stage_n);
    DFA_TRY(dfa_txg_download(g, y, n, g->hstage));
    dfa_tx_unpatchify(g->hstage, B, h, w, p, C, out);
    return DFA_OK;
}

dfa_status dfa_txg_self_attn(dfa_txg *g, int layer, const dfa_tx_attn *a, int B, int N, int H, int Dh,
                             const uint16_t *in, dfa_txg_bufs *b, uint16_t *out, double *attn_s) {
    dfa_ctx *ctx = g->ctx;
    const int D = H * Dh, M = B * N;
    DFA_TRY(dfa_txg_linear(g, in, M, D, a->qw, a->qb, D, b->q));
    DFA_TRY(dfa_txg_linear(g, in, M, D, a->kw, a->kb, D, b->k));
    DFA_TRY(dfa_txg_linear(g, in, M, D, a->vw, a->vb, D, b->v));
    const dfa_attn_layout lay = {N, 0, 0, DFA_TX_ATTN_BLOCK, DFA_BAND_ARROW};
    DFA_TRY(dfa_attn_layer_bf16_cuda(ctx, layer, &lay, B, N, H, Dh, b->q, b->k, b->v, b->o, attn_s));
    return dfa_txg_linear(g, b->o, M, D, a->ow, a->ob, D, out);
}

dfa_status dfa_txg_cross_attn(dfa_txg *g, const dfa_tx_attn *a, int B, int N, int L, int H, int Dh, int Dkv,
                              const uint16_t *in, int mask_on, size_t budget, dfa_txg_bufs *b, uint16_t *out) {
    dfa_error *e = &g->ctx->err;
    const int D = H * Dh, Lp = b->Lp;
    DFA_TRY(dfa_txg_linear(g, in, B * N, D, a->qw, a->qb, D, b->q));
    DFA_TRY(dfa_txg_linear(g, b->txt, B * L, Dkv, a->kw, a->kb, D, b->ck));
    DFA_TRY(dfa_txg_linear(g, b->txt, B * L, Dkv, a->vw, a->vb, D, b->cv));
    DFA_TRY(dfa_cuops_heads_permute(g->ops, b->q, B, N, H, Dh, 1, b->qh, e));
    DFA_TRY(dfa_cuops_heads_permute(g->ops, b->ck, B, L, H, Dh, 1, b->kh, e));
    DFA_TRY(dfa_cuops_heads_permute(g->ops, b->cv, B, L, H, Dh, 1, b->vh, e));
    const float scale = 1.0f / sqrtf((float)Dh);
    const int G = dfa_txg_cross_group(N, L, H, budget);
    for (int bi = 0; bi < B; bi++)
        for (int h0 = 0; h0 < H; h0 += G) {
            const int gh = H - h0 < G ? H - h0 : G;
            /* head-major: head h of item bi starts at (bi * H + h) * T * Dh */
            const size_t qo = ((size_t)bi * H + h0) * N * Dh, ko = ((size_t)bi * H + h0) * L * Dh;
            /* scores [gh, N, L] (row stride Lp) = scale * Q_h K_h^T, f32 */
            DFA_TRY(dfa_cuops_gemm_batched(g->ops, 1, N, L, Dh, scale, b->qh + qo, Dh, (long long)N * Dh, b->kh + ko,
                                           Dh, (long long)L * Dh, b->sc, Lp, (long long)N * Lp, 1, gh, e));
            DFA_TRY(dfa_cuops_softmax_bias(g->ops, b->sc, gh * N, L, Lp, mask_on ? b->bias + (size_t)bi * L : NULL,
                                           b->pr, e));
            /* O_h [N, Dh] = P_h [N, L] V_h [L, Dh] */
            DFA_TRY(dfa_cuops_gemm_batched(g->ops, 0, N, Dh, L, 1.0f, b->pr, Lp, (long long)N * Lp, b->vh + ko, Dh,
                                           (long long)L * Dh, b->oh + qo, Dh, (long long)N * Dh, 0, gh, e));
        }
    DFA_TRY(dfa_cuops_heads_permute(g->ops, b->oh, B, N, H, Dh, 0, b->o, e));
    return dfa_txg_linear(g, b->o, B * N, D, a->ow, a->ob, D, out);
}

dfa_status dfa_txg_ff(dfa_txg *g, const dfa_tx_ff *f, int M, int D, const uint16_t *in, uint16_t *mid,
                      uint16_t *out) {
    DFA_TRY(dfa_txg_linear(g, in, M, D, f->w1, f->b1, f->inner, mid));
    DFA_TRY(dfa_cuops_act(g->ops, mid, (size_t)M * f->inner, DFA_ACT_GELU_TANH, &g->ctx->err));
    return dfa_txg_linear(g, mid, M, f->inner, f->w2, f->b2, D, out);
}

dfa_status dfa_txg_pos_embed(dfa_txg *g, int D, int gh, int gw, int base_size, double interp, uint16_t **pos,
                             int *ph, int *pw) {
    if (*pos && *ph == gh && *pw == gw) return DFA_OK;
    dfa_ctx *ctx = g->ctx;
    if (*pos) dfa_ctx_mem_release(ctx, *pos);
    *pos = NULL;
    *ph = *pw = 0;
    const size_t n = (size_t)gh * gw * D;
    void *host = NULL, *dev = NULL;
    DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, n * sizeof(float), "position embedding (host)", &host));
    dfa_status s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CUDA, n * sizeof(bf16), "position embedding (device)", &dev);
    if (s == DFA_OK) {
        dfa_tx_sincos_pos_embed(D, gh, gw, base_size, interp, host);
        s = dfa_txg_upload(g, host, n, dev);
    }
    dfa_ctx_mem_release(ctx, host);
    if (s != DFA_OK) {
        dfa_ctx_mem_release(ctx, dev);
        return s;
    }
    *pos = dev;
    *ph = gh, *pw = gw;
    return DFA_OK;
}
