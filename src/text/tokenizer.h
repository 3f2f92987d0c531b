/* tokenizer.h - the tokenizers library's tokenizer.json, read and run in C: the normalizers,
 * pre-tokenizers, models (byte-level BPE as CLIP ships it, SentencePiece Unigram as T5 ships
 * it), post-processors, added tokens, truncation and padding that text encoders need.
 * What is supported and what is easy to get wrong: docs/DESIGN.md, "Tokenizers". */
#ifndef DFA_TEXT_TOKENIZER_H
#define DFA_TEXT_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct dfa_tokenizer dfa_tokenizer;

/* Load `path`: a tokenizer.json file, or a directory (a diffusers tokenizer folder) holding
 * tokenizer.json and optionally tokenizer_config.json / special_tokens_map.json, which give
 * model_max_length and pad_token when tokenizer.json does not. Unsupported components give
 * DFA_ERR_UNSUPPORTED naming the component; malformed files DFA_ERR_FORMAT naming the key. */
dfa_status dfa_tok_load(dfa_tokenizer **out, const char *path, dfa_error *err);
/* The same from a tokenizer.json held in memory (`what` names it in messages). */
dfa_status dfa_tok_load_json(dfa_tokenizer **out, const char *json, size_t len, const char *what, dfa_error *err);
void dfa_tok_free(dfa_tokenizer *tok);

typedef struct dfa_tok_opts {
    int add_special_tokens; /* run the post-processor (CLIP: BOS ... EOS; T5: ... </s>) */
    int max_length;         /* <= 0: the tokenizer's model_max_length (0 if unknown: no limit) */
    int truncation;         /* cut to max_length (the special tokens included) */
    int pad;                /* pad to max_length with the pad token, attention mask 0 there */
} dfa_tok_opts;

/* The defaults of `tokenizer(text, padding="max_length", truncation=True)`. */
dfa_tok_opts dfa_tok_default_opts(void);

typedef struct dfa_tok_result {
    int n;
    int32_t *ids;  /* n token ids */
    int32_t *mask; /* n entries: 1 for real tokens, 0 for padding */
} dfa_tok_result;

/* Encode UTF-8 text (len bytes; invalid UTF-8 is an error naming the byte offset). */
dfa_status dfa_tok_encode(const dfa_tokenizer *tok, const char *text, size_t len, const dfa_tok_opts *opts,
                          dfa_tok_result *out, dfa_error *err);
void dfa_tok_result_free(dfa_tok_result *r);

/* Re-shape a T5 (Unigram) tokenizer the way transformers 5's T5Tokenizer rebuilds it from
 * tokenizer.json, which is what diffusers pipelines get today: the file's Precompiled charsmap
 * is kept and its other normalizers (Strip, Replace " {2,}") dropped; the pre-tokenizer becomes
 * WhitespaceSplit + Metaspace("▁", prepend always, split); no byte fallback; unk id 2 (T5's
 * layout, hard-coded there); scores as Python's json reads them. Differs from the
 * file's own pipeline only around runs of whitespace (tabs, newlines, repeated spaces). */
dfa_status dfa_tok_use_transformers_t5(dfa_tokenizer *tok, dfa_error *err);

int dfa_tok_vocab_size(const dfa_tokenizer *tok);
int dfa_tok_model_max_length(const dfa_tokenizer *tok); /* 0 if the files do not say */
int dfa_tok_pad_id(const dfa_tokenizer *tok);           /* -1 if there is none */
/* Id of a token string (vocabulary or added token), -1 if absent. */
int dfa_tok_token_to_id(const dfa_tokenizer *tok, const char *token);

#endif
