/* pixart_int.h - PixArtTransformer2DModel internals shared by pixart.c (CPU) and pixart_cuda.c. */
#ifndef DFA_MODELS_PIXART_INT_H
#define DFA_MODELS_PIXART_INT_H

#include <stdint.h>

#include "models/dit_common.h"
#include "models/pixart.h"
#include "models/tx_cuda.h"

#define PIXART_TPROJ 256 /* Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0) */

typedef struct pixart_block {
    float *sst; /* scale_shift_table [6, D] */
    dfa_tx_attn attn1, attn2;
    dfa_tx_ff ff;
} pixart_block;

struct dfa_pixart {
    dfa_pixart_config cfg;
    float *pe_w, *pe_b, *ada_w, *ada_b, *cap1_w, *cap1_b, *cap2_w, *cap2_b, *sst_out, *po_w, *po_b;
    dfa_tx_temb temb;
    dfa_tx_temb res_emb, ar_emb; /* PixArt-Alpha size conditioning (use_additional_conditions) */
    pixart_block *blocks;
    float *weights;
    size_t n_weights;
    dfa_arena act;
    int act_ready;
    double attn_s, total_s; /* time in dfa_attn_layer and in the whole forward, since the last reset */
    /* CUDA backend (dev == DFA_DEV_CUDA): the weight pointers above hold device bf16 addresses
     * inside `weights` (a device block); the CPU forward is not available then. */
    dfa_device dev;
    dfa_txg_model gpu; /* ops, device activations, host staging, cached position embedding */
    size_t cross_budget; /* CUDA: cross-attention head-group budget in bytes (0: default; tests) */
    /* CUDA text cache: dfa_pixart_sample sets txt_pin (nonzero) while its text stays fixed; the
     * projected text and key bias computed under that pin (txt_gen) are reused by later forwards
     * of the same loop. */
    unsigned txt_pin, txt_seq, txt_gen;
    int txt_B, txt_L, txt_mask;
    uint16_t *dtxt; /* [B * L, Dkv] bf16 (device) */
    float *dbias;   /* [B, L] (device) */
    size_t dtxt_n;  /* elements dtxt holds (B * L * Dkv; Dkv is fixed per model, so dbias holds B * L) */
};

/* The forward's argument checks (CPU and CUDA): B, L >= 1, H and W positive multiples of the patch. */
dfa_status dfa_pixart_check_input(dfa_ctx *ctx, const dfa_pixart *m, int B, int H, int W, int L);
/* Move the loaded host weights to the GPU (bf16) and switch the model to the CUDA forward. */
dfa_status dfa_pixart_to_cuda(dfa_ctx *ctx, dfa_pixart *m);
/* The CUDA forward: same contract as dfa_pixart_forward (host f32 in and out). */
dfa_status dfa_pixart_forward_cuda(dfa_ctx *ctx, dfa_pixart *m, int B, int H, int W, const float *x, const float *t,
                                   int L, const float *text, const float *mask, float *out);
void dfa_pixart_cuda_release(dfa_ctx *ctx, dfa_pixart *m);

#endif
