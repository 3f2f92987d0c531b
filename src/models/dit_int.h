/* dit_int.h - DiTTransformer2DModel internals shared by dit.c (CPU) and dit_cuda.c (CUDA). */
#ifndef DFA_MODELS_DIT_INT_H
#define DFA_MODELS_DIT_INT_H

#include <stdint.h>

#include "models/dit.h"
#include "models/dit_common.h"
#include "models/tx_cuda.h"

#define DIT_TPROJ 256 /* Timesteps(num_channels=256, flip_sin_to_cos=True, downscale_freq_shift=1) */

typedef struct dit_block {
    dfa_tx_temb temb;     /* norm1.emb.timestep_embedder */
    float *class_table;   /* norm1.emb.class_embedder.embedding_table [num_classes + 1, D] */
    float *ada_w, *ada_b; /* norm1.linear [6D, D] */
    dfa_tx_attn attn;
    dfa_tx_ff ff;
} dit_block;

struct dfa_dit {
    dfa_dit_config cfg;
    float *pe_w, *pe_b, *po1_w, *po1_b, *po2_w, *po2_b;
    dit_block *blocks;
    float *weights;
    size_t n_weights;
    dfa_arena act;
    int act_ready;
    double attn_s, total_s; /* time in dfa_attn_layer and in the whole forward, since the last reset */
    /* CUDA backend (dev == DFA_DEV_CUDA): the weight pointers above hold device bf16 addresses
     * inside `weights` (a device block); the CPU forward is not available then. */
    dfa_device dev;
    dfa_txg_model gpu; /* ops, device activations, host staging, cached position embedding */
};

/* The forward's argument checks (CPU and CUDA): B >= 1, H and W positive multiples of the patch,
 * labels in 0..num_classes (num_classes = the null class). */
dfa_status dfa_dit_check_input(dfa_ctx *ctx, const dfa_dit *m, int B, int H, int W, const int *labels);
/* Move the loaded host weights to the GPU (bf16) and switch the model to the CUDA forward. */
dfa_status dfa_dit_to_cuda(dfa_ctx *ctx, dfa_dit *m);
/* The CUDA forward: same contract as dfa_dit_forward (host f32 in and out). */
dfa_status dfa_dit_forward_cuda(dfa_ctx *ctx, dfa_dit *m, int B, int H, int W, const float *x, const float *t,
                                const int *labels, float *out);
void dfa_dit_cuda_release(dfa_ctx *ctx, dfa_dit *m);

#endif
