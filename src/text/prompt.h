/* prompt.h - a prompt becomes the embeddings a pipeline's transformer takes, as diffusers'
 * encode_prompt computes them, from a diffusers model folder:
 *   FLUX   (text_encoder = CLIP-L, text_encoder_2 = T5):
 *          prompt_embeds [T5 tokens, d_t5] = T5 last_hidden_state (no attention mask)
 *          pooled [d_clip] = CLIPTextModel pooler_output
 *   SD3    (text_encoder = CLIP-L, text_encoder_2 = CLIP-G, both with projection, text_encoder_3 = T5):
 *          prompt_embeds [77 + T5 tokens, d_t5] = cat_seq(pad_features(cat_feat(L[-2], G[-2]), d_t5), T5)
 *          pooled [pL + pG] = cat(text_embeds L, text_embeds G); without text_encoder_3 the T5
 *          rows are zeros of transformer/config.json's joint_attention_dim (diffusers' choice)
 *   PixArt (text_encoder = T5 only): prompt_embeds = T5(ids, attention_mask) + the mask.
 * The file format `dfa encode` writes: docs/DESIGN.md, "Prompt embeddings". */
#ifndef DFA_TEXT_PROMPT_H
#define DFA_TEXT_PROMPT_H

#include <stdint.h>

#include "dfa.h"

typedef enum dfa_prompt_layout {
    DFA_LAYOUT_AUTO = 0, /* model_index.json's _class_name, else which folders exist */
    DFA_LAYOUT_FLUX,
    DFA_LAYOUT_SD3,
    DFA_LAYOUT_PIXART
} dfa_prompt_layout;

typedef struct dfa_prompt_opts {
    dfa_prompt_layout layout;
    int max_sequence_length; /* T5 tokens; 0: the pipeline's default (FLUX 512, SD3 256, PixArt 300) */
    int clip_skip;           /* SD3: hidden_states[-(clip_skip + 2)]; 0 = penultimate */
    int t5_file_pipeline;    /* 0: T5 tokenized as transformers 5 rebuilds it (what diffusers runs,
                                dfa_tok_use_transformers_t5); 1: tokenizer.json's own pipeline */
} dfa_prompt_opts;

typedef struct dfa_text_embeds {
    int T, D;          /* prompt_embeds is [T, D] (batch 1) */
    float *embeds;
    int pooled_dim;    /* 0 when the layout has no pooled embedding (PixArt) */
    float *pooled;
    int32_t *mask;     /* [T] attention mask (PixArt), NULL otherwise */
    int t5_tokens;     /* how many of the T rows are T5 tokens (the last ones) */
} dfa_text_embeds;

typedef struct dfa_prompt_encoder dfa_prompt_encoder;

dfa_status dfa_prompt_encoder_load(dfa_ctx *ctx, const char *model_dir, const dfa_prompt_opts *opts,
                                   dfa_prompt_encoder **out);
void dfa_prompt_encoder_free(dfa_prompt_encoder *pe);
dfa_prompt_layout dfa_prompt_encoder_layout(const dfa_prompt_encoder *pe);
const char *dfa_prompt_layout_name(dfa_prompt_layout l);

/* Encode one UTF-8 prompt; out's arrays are malloc'ed (dfa_text_embeds_free). */
dfa_status dfa_prompt_encode(dfa_prompt_encoder *pe, const char *prompt, dfa_text_embeds *out);
void dfa_text_embeds_free(dfa_text_embeds *e);

#endif
