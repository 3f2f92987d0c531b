/* flux_int.h - FLUX model internals shared by flux.c (CPU) and flux_cuda.c (CUDA). On CUDA the
 * float* weight pointers hold device addresses of bf16 data (cast to uint16_t * before use). */
#ifndef DFA_MODELS_FLUX_INT_H
#define DFA_MODELS_FLUX_INT_H

#include "core/ctx.h"
#include "models/flux.h"
#include "models/mmdit.h"
#include "sample/flow.h"

#define FLUX_EPS 1e-6f
#define FLUX_ATTN_BLOCK 128

struct dfa_cuops;

typedef struct flux_double {
    dfa_lin norm1, norm1_ctx;        /* AdaLayerNormZero: C -> 6C */
    dfa_lin q, k, v, aq, ak, av;     /* image / text (added) projections */
    dfa_lin out, add_out;            /* to_out.0 / to_add_out */
    dfa_lin ff0, ff2, ffc0, ffc2;    /* FeedForward net.0.proj / net.2, image and context */
    float *nq, *nk, *naq, *nak;      /* RMSNorm weights [D] */
} flux_double;

typedef struct flux_single {
    dfa_lin norm;         /* AdaLayerNormZeroSingle: C -> 3C */
    dfa_lin q, k, v, mlp; /* proj_mlp: C -> F */
    dfa_lin proj_out;     /* (C + F) -> C over [attn, mlp]; weight stored split: [C, C] then [C, F] */
    float *nq, *nk;
} flux_single;

struct dfa_flux {
    dfa_flux_config cfg;
    dfa_device dev;           /* CPU: f32 weights in host memory; CUDA: bf16 weights on the GPU */
    struct dfa_cuops *ops;    /* CUDA only */
    dfa_arena host;           /* CUDA only: host staging (RoPE tables, conversions) */
    dfa_lin t1, t2, g1, g2, p1, p2; /* time_text_embed: timestep / guidance / text embedders */
    dfa_lin ctx_emb, x_emb, norm_out, proj_out;
    flux_double *dbl;
    flux_single *sgl;
    void *weights;
    size_t weight_bytes;
    dfa_arena act;
    double attn_s, total_s;
    /* CUDA conditioning cache (dfa_flux_hold_cond): cond_pin nonzero while the caller keeps text,
     * pooled and ids fixed; what was uploaded under that pin (cond_gen) is reused. */
    unsigned cond_pin, cond_seq, cond_gen;
    int cond_B, cond_T, cond_N;
    void *dcond;       /* device: text [B, T, J] bf16, pooled-text embedding [B, C] bf16, cos, sin [N, D/2] */
    size_t dcond_size; /* bytes */
};

/* RoPE cos/sin tables [N, head_dim / 2] for ids in layout order ([text, image]). */
void dfa_flux_rope_table(const dfa_flux_config *c, int N, const float *ids_txt, int n_txt, const float *ids_img,
                         float *cos_t, float *sin_t);
/* The CUDA forward (flux_cuda.c): same contract as dfa_flux_forward (host f32 in and out). */
dfa_status dfa_flux_forward_cuda(dfa_ctx *ctx, dfa_flux *m, int B, int n_img, int n_txt, const float *x,
                                 const float *txt, const float *pooled, const float *timestep, const float *guidance,
                                 const float *txt_ids, const float *img_ids, float *out);
/* dfa_flow_sample for FLUX on the device (dfa_flux_generate's CUDA loop): the packed latents x
 * [n_img, in_channels] (host; in: the initial noise, out: the result) stay on the GPU for all
 * steps; each step is one forward on batch B (2: true CFG, [negative, positive] in txt / pooled)
 * and one dfa_cuops_flow_step (CFG combine + Euler, bit-equal to the host sampler's). */
dfa_status dfa_flux_sample_cuda(dfa_ctx *ctx, dfa_flux *m, int B, int n_img, int n_txt, const float *txt,
                                const float *pooled, float guidance, float cfg_scale, const float *txt_ids,
                                const float *img_ids, int n_steps, const float *sigmas, const float *timesteps,
                                float *x, dfa_flow_progress_fn progress, void *user);

#endif
