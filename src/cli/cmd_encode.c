/* cmd_encode.c - `dfa encode -m MODEL_DIR -p PROMPT -o embeds.safetensors`: tokenizers + text
 * encoders of a diffusers folder (FLUX, SD3, PixArt-Sigma) -> the tensors the engine's
 * --prompt-embeds reads (names and shapes: docs/DESIGN.md, "Prompt embeddings"). */
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/ctx.h"
#include "io/safetensors.h"
#include "text/prompt.h"

static int write_embeds(const char *path, const dfa_text_embeds *pos, const dfa_text_embeds *neg,
                        dfa_prompt_layout layout, const char *prompt, const char *negative, int t5_len, dfa_error *err) {
    dfa_st_item items[6];
    int64_t shapes[6][3];
    int n = 0;
    const dfa_text_embeds *e[2] = {pos, neg};
    const char *names[2][3] = {{"prompt_embeds", "pooled_prompt_embeds", "prompt_attention_mask"},
                               {"negative_prompt_embeds", "negative_pooled_prompt_embeds", "negative_prompt_attention_mask"}};
    for (int k = 0; k < 2; k++) {
        if (!e[k]) continue;
        shapes[n][0] = 1, shapes[n][1] = e[k]->T, shapes[n][2] = e[k]->D;
        items[n] = (dfa_st_item){names[k][0], DFA_F32, 3, shapes[n], e[k]->embeds};
        n++;
        if (e[k]->pooled) {
            shapes[n][0] = 1, shapes[n][1] = e[k]->pooled_dim;
            items[n] = (dfa_st_item){names[k][1], DFA_F32, 2, shapes[n], e[k]->pooled};
            n++;
        }
        if (e[k]->mask) {
            shapes[n][0] = 1, shapes[n][1] = e[k]->T;
            items[n] = (dfa_st_item){names[k][2], DFA_I32, 2, shapes[n], e[k]->mask};
            n++;
        }
    }
    char len_s[32];
    snprintf(len_s, sizeof len_s, "%d", t5_len);
    const char *keys[4] = {"dfa_layout", "max_sequence_length", "prompt", "negative_prompt"};
    const char *vals[4] = {dfa_prompt_layout_name(layout), len_s, prompt, negative ? negative : ""};
    return dfa_st_write(path, items, n, keys, vals, negative ? 4 : 3, err) == DFA_OK ? 0 : 1;
}

int cmd_encode(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL, *negative = NULL, *outp = NULL, *layout_s = "auto";
    int max_len = 0, clip_skip = 0, threads = 0, t5_file = 0, cuda = 0;
    const dfa_arg_spec specs[] = {
        {"model", 'm', DFA_ARG_STRING, &model, "DIR", "diffusers model folder (text_encoder*/, tokenizer*/)", 0, -1},
        {"prompt", 'p', DFA_ARG_STRING, &prompt, "TEXT", "the prompt (UTF-8)", 0, -1},
        {"negative-prompt", 'n', DFA_ARG_STRING, &negative, "TEXT", "also write negative_* tensors for TEXT", 0, -1},
        {"output", 'o', DFA_ARG_STRING, &outp, "FILE", "output .safetensors", 0, -1},
        {"layout", 0, DFA_ARG_STRING, &layout_s, "NAME", "auto (default), flux, sd3 or pixart", 0, -1},
        {"max-sequence-length", 0, DFA_ARG_INT, &max_len, "N", "T5 tokens (default: FLUX 512, SD3 256, PixArt 300)", 1, 4096},
        {"clip-skip", 0, DFA_ARG_INT, &clip_skip, "N", "SD3: CLIP hidden state -(N+2) (default 0: penultimate)", 0, 64},
        {"t5-file-pipeline", 0, DFA_ARG_FLAG, &t5_file, NULL,
         "tokenize T5 with tokenizer.json's own normalizer/pre-tokenizer (default: as transformers 5 rebuilds it)", 0, -1},
        {"threads", 't', DFA_ARG_INT, &threads, "N", "CPU threads (default: all cores)", 0, 4096},
        {"cuda", 0, DFA_ARG_FLAG, &cuda, NULL, "run the encoders on the GPU (bf16 weights; device 0)", 0, -1},
    };
    const int n_specs = (int)(sizeof specs / sizeof specs[0]);
    const char *usage = "-m MODEL_DIR -p PROMPT -o embeds.safetensors [options]";
    const char *desc = "Tokenize and encode a prompt with the model's own text encoders (CPU f32, or --cuda), writing\n"
                       "prompt_embeds [1, T, D] and pooled_prompt_embeds [1, P] (FLUX, SD3) or\n"
                       "prompt_attention_mask [1, T] (PixArt), as diffusers' encode_prompt computes them.";
    const char *pos[1];
    int n_pos = 0;
    char aerr[256];
    int r = dfa_args_parse(argc, argv, 1, specs, n_specs, pos, 1, &n_pos, aerr, sizeof aerr);
    if (r == 1) {
        dfa_args_usage("encode", usage, desc, specs, n_specs);
        return 0;
    }
    if (r < 0) {
        fprintf(stderr, "dfa encode: %s\n", aerr);
        return 2;
    }
    if (n_pos || !model || !prompt || !outp) {
        fprintf(stderr, "dfa encode: -m, -p and -o are required (see dfa encode --help)\n");
        return 2;
    }
    dfa_prompt_opts po = {.max_sequence_length = max_len, .clip_skip = clip_skip, .t5_file_pipeline = t5_file};
    if (strcmp(layout_s, "auto") == 0) po.layout = DFA_LAYOUT_AUTO;
    else if (strcmp(layout_s, "flux") == 0) po.layout = DFA_LAYOUT_FLUX;
    else if (strcmp(layout_s, "sd3") == 0) po.layout = DFA_LAYOUT_SD3;
    else if (strcmp(layout_s, "pixart") == 0) po.layout = DFA_LAYOUT_PIXART;
    else {
        fprintf(stderr, "dfa encode: --layout must be auto, flux, sd3 or pixart, got '%s'\n", layout_s);
        return 2;
    }
    dfa_ctx_params cp = dfa_ctx_default_params();
    cp.n_threads = threads;
    if (cuda) cp.backend = DFA_BACKEND_CUDA;
    dfa_ctx *ctx = NULL;
    char ebuf[1024];
    if (dfa_ctx_init(&ctx, &cp, ebuf, sizeof ebuf) != DFA_OK) {
        fprintf(stderr, "dfa encode: %s\n", ebuf);
        return 1;
    }
    int rc = 1;
    dfa_prompt_encoder *pe = NULL;
    dfa_text_embeds ep = {0}, en = {0};
    if (dfa_prompt_encoder_load(ctx, model, &po, &pe) == DFA_OK && dfa_prompt_encode(pe, prompt, &ep) == DFA_OK &&
        (!negative || dfa_prompt_encode(pe, negative, &en) == DFA_OK)) {
        dfa_error err = {0};
        rc = write_embeds(outp, &ep, negative ? &en : NULL, dfa_prompt_encoder_layout(pe), prompt, negative, ep.t5_tokens,
                          &err);
        if (rc) fprintf(stderr, "dfa encode: %s\n", err.msg);
        else
            printf("wrote %s: %s layout, prompt_embeds [1, %d, %d]%s%s\n", outp,
                   dfa_prompt_layout_name(dfa_prompt_encoder_layout(pe)), ep.T, ep.D, ep.pooled ? ", pooled" : "",
                   negative ? ", negative" : "");
    } else {
        fprintf(stderr, "dfa encode: %s\n", dfa_ctx_error(ctx));
    }
    dfa_text_embeds_free(&ep);
    dfa_text_embeds_free(&en);
    dfa_prompt_encoder_free(pe);
    dfa_ctx_free(ctx);
    return rc;
}
