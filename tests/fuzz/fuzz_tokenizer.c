/* fuzz_tokenizer.c - libFuzzer target for the tokenizer loader and encoder. The input is
 * JSON, a NUL byte, then text: the JSON is loaded as a tokenizer.json (seeds: the fixture
 * tokenizers) and, when it loads, the text is encoded with and without truncation + padding
 * (and with the special tokens), then once more reshaped by dfa_tok_use_transformers_t5 (Unigram).
 * Built by tests/fuzz/run.sh. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t jlen = nul ? (size_t)(nul - data) : size;
    const char *text = nul ? (const char *)nul + 1 : "";
    size_t tlen = nul ? size - jlen - 1 : 0;
    if (tlen > 4096) tlen = 4096; /* keep each run fast: the work is linear in the text */
    dfa_tokenizer *tok = NULL;
    dfa_error err;
    dfa_error_clear(&err);
    if (dfa_tok_load_json(&tok, (const char *)data, jlen, "fuzz.json", &err) != DFA_OK) {
        if (tok || !err.msg[0]) abort();
        return 0;
    }
    const dfa_tok_opts opts[4] = {{1, 0, 0, 0}, {1, 16, 1, 0}, {0, 8, 1, 0}, {1, 0, 0, 0}};
    for (int i = 0; i < 4; i++) {
        /* last round: a Unigram model reshaped as transformers' T5Tokenizer */
        if (i == 3 && dfa_tok_use_transformers_t5(tok, &err) != DFA_OK) break;
        dfa_tok_result r;
        if (dfa_tok_encode(tok, text, tlen, &opts[i], &r, &err) == DFA_OK) {
            for (int k = 0; k < r.n; k++)
                if (r.ids[k] < 0 || r.ids[k] >= dfa_tok_vocab_size(tok) || (r.mask[k] != 0 && r.mask[k] != 1)) abort();
            if (opts[i].truncation && r.n > opts[i].max_length) abort();
            dfa_tok_result_free(&r);
        } else if (r.ids || !err.msg[0]) {
            abort();
        }
    }
    dfa_tok_free(tok);
    return 0;
}
