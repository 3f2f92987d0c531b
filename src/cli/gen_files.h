/* gen_files.h - `dfa generate`'s file side over the public API (include/dfa.h): run a loaded
 * model and write a PNG (through vae/) or a latents .safetensors ("latents" [1, C, h, w]),
 * optionally the latents as well, starting from an initial-latents file if given; progress (a
 * bar on a terminal, plain lines otherwise) and the attention / total time line go to `log`. */
#ifndef DFA_CLI_GEN_FILES_H
#define DFA_CLI_GEN_FILES_H

#include <stdio.h>

#include "dfa.h"

/* out: *.png or *.safetensors; latents_out, init: NULL for none; log: NULL for quiet. */
dfa_status dfa_gen_files(dfa_ctx *ctx, dfa_model *m, const dfa_generate_params *p, const char *out,
                         const char *latents_out, const char *init, FILE *log);

#endif
