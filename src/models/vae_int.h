/* vae_int.h - the decoder's internal layout, shared by the CPU (vae.c) and GPU (vae_gpu.c)
 * paths. Not a public header. */
#ifndef DFA_MODELS_VAE_INT_H
#define DFA_MODELS_VAE_INT_H

#include <stdint.h>

#include "models/vae.h"

#define VAE_MAX_LAYERS 4
#define VAE_EPS 1e-6f

typedef struct vae_resnet {
    int cin, cout;
    float *n1w, *n1b, *c1w, *c1b, *n2w, *n2b, *c2w, *c2b, *scw, *scb; /* sc*: only when cin != cout */
} vae_resnet;

typedef struct vae_attn {
    float *gnw, *gnb, *qw, *qb, *kw, *kb, *vw, *vb, *ow, *ob;
} vae_attn;

struct dfa_vae {
    dfa_vae_config cfg;
    float *pqc_w, *pqc_b, *in_w, *in_b, *nout_w, *nout_b, *out_w, *out_b;
    vae_resnet mid[2];
    vae_attn attn;
    vae_resnet up[DFA_VAE_MAX_BLOCKS][VAE_MAX_LAYERS + 1];
    float *ups_w[DFA_VAE_MAX_BLOCKS], *ups_b[DFA_VAE_MAX_BLOCKS];
    float *weights;
    size_t n_weights;
    dfa_arena act;
    int act_ready, act_h, act_w;
    struct vae_gpu *gpu; /* GPU state (weights as bf16, kernels' scratch), NULL until first used */
};

/* GPU path (vae_gpu.c): decode with the same contract as dfa_vae_decode. */
dfa_status dfa_vae_decode_gpu(dfa_ctx *ctx, dfa_vae *v, const float *latents, int h, int w, float *image);
void dfa_vae_gpu_free(dfa_ctx *ctx, dfa_vae *v);


#endif
