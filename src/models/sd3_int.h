/* sd3_int.h - SD3 model internals shared by sd3.c (CPU) and sd3_cuda.c (CUDA). On CUDA the
 * float* weight pointers hold device addresses of bf16 data. */
#ifndef DFA_MODELS_SD3_INT_H
#define DFA_MODELS_SD3_INT_H

#include "core/ctx.h"
#include "models/mmdit.h"
#include "models/sd3.h"
#include "sample/flow.h"

#define SD3_EPS 1e-6f
#define SD3_ATTN_BLOCK 128

struct dfa_cuops;

typedef struct sd3_attn {
    dfa_lin q, k, v, out;
    float *nq, *nk; /* RMSNorm weights [D] (qk_norm "rms_norm"), else NULL */
} sd3_attn;

typedef struct sd3_block {
    int pre_only; /* context_pre_only: the last block */
    int dual;     /* has attn2 */
    int attn_index;
    dfa_lin norm1;      /* AdaLayerNormZero: C -> 6C (SD35AdaLayerNormZeroX: 9C) */
    dfa_lin norm1_ctx;  /* AdaLayerNormZero: C -> 6C, or AdaLayerNormContinuous C -> 2C when pre_only */
    sd3_attn a;         /* image side of the joint attention */
    dfa_lin aq, ak, av, add_out; /* text side (add_out absent when pre_only) */
    float *naq, *nak;
    sd3_attn a2;        /* dual attention (image only) */
    dfa_lin ff0, ff2, ffc0, ffc2;
} sd3_block;

struct dfa_sd3 {
    dfa_sd3_config cfg;
    dfa_device dev;        /* CPU: f32 host weights; CUDA: bf16 device weights */
    struct dfa_cuops *ops; /* CUDA only */
    dfa_arena host;        /* CUDA only: host staging */
    float *patch_w, *patch_b, *pos; /* proj [C, Cin, p, p], bias [C], pos_embed [1, M*M, C] */
    dfa_lin t1, t2, p1, p2, ctx_emb, norm_out, proj_out;
    sd3_block *blk;
    void *weights;
    size_t weight_bytes;
    dfa_arena act;
    double attn_s, total_s;
    /* CUDA conditioning cache (dfa_sd3_hold_cond): cond_pin nonzero while the caller keeps text
     * and pooled fixed; what was uploaded under that pin (cond_gen) is reused. */
    unsigned cond_pin, cond_seq, cond_gen;
    int cond_B, cond_T;
    void *dcond;       /* device: text [B, T, J] bf16, then the pooled-text embedding [B, C] bf16 */
    size_t dcond_size; /* bytes */
    /* CUDA Graph of the loop's forward (dfa_sd3_set_cuda_graph): on, the graph of the current
     * dfa_sd3_sample_cuda (NULL between loops), loops that used one, attention timer off while
     * capturing */
    int cuda_graph, graph_runs, no_timer;
    struct dfa_cuda_graph *graph;
};

/* The CUDA forward (sd3_cuda.c): same contract as dfa_sd3_forward (host f32 in and out). */
dfa_status dfa_sd3_forward_cuda(dfa_ctx *ctx, dfa_sd3 *m, int B, int H, int W, int n_txt, const float *x,
                                const float *txt, const float *pooled, const float *timestep, float *out);
/* The same with the latents on the device (the sampling loop's): x_dev f32 [B (bcast: 1), Cin,
 * H, W], out_dev f32 [B, out_channels, H, W]; text, pooled and timestep on the host as above.
 * Returns after the output is complete (one stream synchronisation). graph: the queued part of
 * the forward runs as m->graph (captured on first use; the caller keeps every address fixed and
 * frees the graph). */
dfa_status dfa_sd3_forward_cuda_dev(dfa_ctx *ctx, dfa_sd3 *m, int B, int H, int W, int n_txt, const float *x_dev,
                                    int bcast, const float *txt, const float *pooled, const float *timestep,
                                    float *out_dev, int graph);
/* dfa_flow_sample for SD3 on the device (dfa_sd3_generate's CUDA loop): the latents x [C, h, w]
 * (host, in: the initial noise, out: the result) stay on the GPU for all steps; each step is one
 * dfa_sd3_forward_cuda_dev on batch B (2: CFG [uncond, cond] in txt / pooled) and one
 * dfa_cuops_flow_step (CFG combine + Euler, bit-equal to the host sampler's). Runs the attention
 * plan's steps as dfa_flow_sample does. */
dfa_status dfa_sd3_sample_cuda(dfa_ctx *ctx, dfa_sd3 *m, int B, int h, int w, int n_txt, const float *txt,
                               const float *pooled, float cfg_scale, int n_steps, const float *sigmas,
                               const float *timesteps, float *x, dfa_flow_progress_fn progress, void *user);

#endif
