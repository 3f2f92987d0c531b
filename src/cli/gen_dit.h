/* gen_dit.h - `dfa generate` for the DiT family (DiTTransformer2DModel, PixArtTransformer2DModel),
 * as a function the generate command calls when the transformer config's _class_name is one of
 * those: model folder (transformer/, optional vae/ and scheduler/) -> latents file or PNG. */
#ifndef DFA_CLI_GEN_DIT_H
#define DFA_CLI_GEN_DIT_H

#include <stdio.h>

#include "core/ctx.h"

typedef struct dfa_gen_dit_opts {
    const char *model;       /* pipeline folder */
    const char *embeds;      /* PixArt: prompt embeddings file (models/dit_pipe.h) */
    const char *out;         /* *.png (decoded through vae/) or a latents .safetensors ("latents" [1, C, h, w]) */
    const char *latents_out; /* also write the latents here (NULL: no) */
    const char *plan;        /* attention plan file (NULL: every head FULL) */
    const char *init;        /* initial latents file ("latents" [1, C, h, w] or [C, h, w]); NULL: seeded */
    int steps;               /* <= 0: the pipeline's default (DiT 50, PixArt 20) */
    int width, height;       /* pixels; <= 0: sample_size * 8 */
    int class_label;         /* DiT: ImageNet class */
    long long seed;
    double cfg;              /* < 0: the pipeline's default (DiT 4.0, PixArt 4.5); <= 1: no CFG */
} dfa_gen_dit_opts;

/* 1 if `class_name` is handled here. */
int dfa_gen_dit_handles(const char *class_name);
/* Run; progress and the final attention/total time line go to `log` (NULL: quiet). */
dfa_status dfa_gen_dit_run(dfa_ctx *ctx, const char *class_name, const dfa_gen_dit_opts *o, FILE *log);

#endif
