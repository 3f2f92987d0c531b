/* pipe_prompts.h - text prompts -> the prompt embeddings a pipeline takes, with the text
 * encoders of the model folder (text/prompt.h): FLUX / SD3 (dfa_prompt_embeds) or PixArt
 * (dfa_pixart_embeds); for generation from prompt text and calibration over text prompts. */
#ifndef DFA_MODELS_PIPE_PROMPTS_H
#define DFA_MODELS_PIPE_PROMPTS_H

#include "core/ctx.h"
#include "models/dit_pipe.h"
#include "models/mmdit_pipe.h"

/* Encode prompts[0..n) (and `negative` for each when not NULL, for CFG) into pe[0..n) (pixart 0)
 * or xe[0..n) (pixart 1); max_len: T5 tokens (0: the pipeline's default). The encoders are loaded
 * once and freed before returning; on failure nothing is left allocated. */
dfa_status dfa_pipe_encode_prompts(dfa_ctx *ctx, const char *model, int max_len, int pixart, const char *const *prompts,
                               int n, const char *negative, dfa_prompt_embeds *pe, dfa_pixart_embeds *xe);

#endif
