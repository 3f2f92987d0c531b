/* pipe_prompts.c - see pipe_prompts.h. */
#include "models/pipe_prompts.h"

#include <string.h>

#include "text/prompt.h"

dfa_status dfa_pipe_encode_prompts(dfa_ctx *ctx, const char *model, int max_len, int pixart, const char *const *prompts,
                               int n, const char *negative, dfa_prompt_embeds *pe, dfa_pixart_embeds *xe) {
    dfa_prompt_opts po = {.layout = pixart ? DFA_LAYOUT_PIXART : DFA_LAYOUT_AUTO, .max_sequence_length = max_len};
    dfa_prompt_encoder *enc = NULL;
    DFA_TRY(dfa_prompt_encoder_load(ctx, model, &po, &enc));
    dfa_text_embeds neg = {0};
    dfa_status s = negative ? dfa_prompt_encode(enc, negative, &neg) : DFA_OK;
    int done = 0;
    for (; s == DFA_OK && done < n; done++) {
        dfa_text_embeds pos = {0};
        s = dfa_prompt_encode(enc, prompts[done], &pos);
        if (s == DFA_OK)
            s = pixart ? dfa_pixart_embeds_from_text(ctx, &pos, negative ? &neg : NULL, &xe[done])
                       : dfa_prompt_embeds_from_text(ctx, &pos, negative ? &neg : NULL, &pe[done]);
        dfa_text_embeds_free(&pos);
        if (s != DFA_OK) break;
    }
    dfa_text_embeds_free(&neg);
    dfa_prompt_encoder_free(enc);
    if (s != DFA_OK)
        for (int i = 0; i < done; i++) {
            if (pixart)
                dfa_pixart_embeds_free(ctx, &xe[i]);
            else
                dfa_prompt_embeds_free(ctx, &pe[i]);
        }
    return s;
}
