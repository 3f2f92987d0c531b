/* prompt.c - diffusers' encode_prompt for FLUX, SD3 and PixArt-Sigma (see prompt.h). */
#include "text/prompt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/ctx.h"
#include "io/json.h"
#include "models/clip.h"
#include "models/t5.h"
#include "text/tokenizer.h"

struct dfa_prompt_encoder {
    dfa_ctx *ctx;
    dfa_prompt_layout layout;
    dfa_prompt_opts opts;
    int t5_len;
    dfa_tokenizer *tok_clip[2], *tok_t5;
    dfa_clip *clip[2];
    dfa_t5 *t5;  /* NULL: SD3 loaded without text_encoder_3 -> zeros, as diffusers does */
    int t5_width; /* d_model of T5, or the transformer's joint_attention_dim when there is none */
};

const char *dfa_prompt_layout_name(dfa_prompt_layout l) {
    switch (l) {
    case DFA_LAYOUT_FLUX: return "flux";
    case DFA_LAYOUT_SD3: return "sd3";
    case DFA_LAYOUT_PIXART: return "pixart";
    default: return "auto";
    }
}

dfa_prompt_layout dfa_prompt_encoder_layout(const dfa_prompt_encoder *pe) { return pe->layout; }

static int is_dir(const char *base, const char *sub) {
    char p[4096];
    struct stat sb;
    snprintf(p, sizeof p, "%s/%s", base, sub);
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static dfa_status detect_layout(dfa_ctx *ctx, const char *dir, dfa_prompt_layout *out) {
    char p[4096];
    struct stat sb;
    snprintf(p, sizeof p, "%s/model_index.json", dir);
    if (stat(p, &sb) == 0) {
        cJSON *root;
        DFA_TRY(dfa_json_read_file(p, &root, &ctx->err));
        const cJSON *cn = cJSON_GetObjectItemCaseSensitive(root, "_class_name");
        const char *name = cJSON_IsString(cn) ? cn->valuestring : "";
        *out = strstr(name, "Flux") ? DFA_LAYOUT_FLUX
               : strstr(name, "StableDiffusion3") ? DFA_LAYOUT_SD3
               : strstr(name, "PixArt") ? DFA_LAYOUT_PIXART : DFA_LAYOUT_AUTO;
        cJSON_Delete(root);
        if (*out != DFA_LAYOUT_AUTO) return DFA_OK;
    }
    if (is_dir(dir, "text_encoder_3")) *out = DFA_LAYOUT_SD3;
    else if (is_dir(dir, "text_encoder_2")) *out = DFA_LAYOUT_FLUX;
    else if (is_dir(dir, "text_encoder")) *out = DFA_LAYOUT_PIXART;
    else DFA_CTX_FAIL(ctx, DFA_ERR_NOT_FOUND, "%s: no text_encoder folder: not a diffusers FLUX / SD3 / PixArt model folder", dir);
    return DFA_OK;
}

static dfa_status load_tok(dfa_ctx *ctx, const char *dir, const char *sub, dfa_tokenizer **out) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, sub);
    dfa_status s = dfa_tok_load(out, p, &ctx->err);
    if (s) dfa_error_wrap(&ctx->err, "tokenizer folder '%s'", p);
    /* prompts are always padded to a fixed length: say so here, naming the folder, not at encode time */
    if (!s && dfa_tok_pad_id(*out) < 0) {
        dfa_tok_free(*out);
        *out = NULL;
        DFA_CTX_FAIL(ctx, DFA_ERR_FORMAT,
                     "tokenizer folder '%s': no pad token (pad_token in tokenizer_config.json or "
                     "special_tokens_map.json, or \"padding\" in tokenizer.json): is tokenizer_config.json missing?",
                     p);
    }
    return s;
}

/* On a CUDA context the encoders run on the GPU (bf16 weights, f32 residual stream;
 * tests/gpu/test_text_cuda.c), on a CPU context in f32 on the host. */
static dfa_status load_clip(dfa_ctx *ctx, const char *dir, const char *sub, dfa_clip **out) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, sub);
    return ctx->cuda ? dfa_clip_load_cuda(ctx, p, out) : dfa_clip_load(ctx, p, out);
}

void dfa_prompt_encoder_free(dfa_prompt_encoder *pe) {
    if (!pe) return;
    for (int i = 0; i < 2; i++) {
        dfa_tok_free(pe->tok_clip[i]);
        dfa_clip_free(pe->clip[i]);
    }
    dfa_tok_free(pe->tok_t5);
    dfa_t5_free(pe->t5);
    free(pe);
}

dfa_status dfa_prompt_encoder_load(dfa_ctx *ctx, const char *dir, const dfa_prompt_opts *opts, dfa_prompt_encoder **out) {
    *out = NULL;
    dfa_prompt_encoder *pe = calloc(1, sizeof *pe);
    if (!pe) DFA_CTX_FAIL(ctx, DFA_ERR_OOM, "prompt encoder: out of memory");
    pe->ctx = ctx;
    if (opts) pe->opts = *opts;
    dfa_status s = DFA_OK;
    pe->layout = pe->opts.layout;
    if (pe->layout == DFA_LAYOUT_AUTO) s = detect_layout(ctx, dir, &pe->layout);
    const char *t5_enc = "text_encoder_2", *t5_tok = "tokenizer_2";
    int n_clip = 1, dflt_len = 512;
    if (pe->layout == DFA_LAYOUT_SD3) n_clip = 2, t5_enc = "text_encoder_3", t5_tok = "tokenizer_3", dflt_len = 256;
    if (pe->layout == DFA_LAYOUT_PIXART) n_clip = 0, t5_enc = "text_encoder", t5_tok = "tokenizer", dflt_len = 300;
    pe->t5_len = pe->opts.max_sequence_length > 0 ? pe->opts.max_sequence_length : dflt_len;
    if (!s && pe->opts.clip_skip < 0) s = DFA_SET(&ctx->err, DFA_ERR_INVALID_ARG, "clip_skip %d is negative", pe->opts.clip_skip);
    for (int i = 0; i < n_clip && !s; i++) {
        s = load_tok(ctx, dir, i ? "tokenizer_2" : "tokenizer", &pe->tok_clip[i]);
        if (!s) s = load_clip(ctx, dir, i ? "text_encoder_2" : "text_encoder", &pe->clip[i]);
        if (!s && pe->layout == DFA_LAYOUT_SD3 && !dfa_clip_get_config(pe->clip[i])->projection_dim)
            s = DFA_SET(&ctx->err, DFA_ERR_FORMAT, "%s/%s: SD3 needs CLIPTextModelWithProjection (no text_projection.weight)",
                        dir, i ? "text_encoder_2" : "text_encoder");
    }
    int no_t5 = pe->layout == DFA_LAYOUT_SD3 && !is_dir(dir, "text_encoder_3");
    if (!s && no_t5) { /* SD3 without T5: zeros of the transformer's joint_attention_dim */
        char p[4096];
        struct stat sb;
        pe->t5_width = 4096;
        snprintf(p, sizeof p, "%s/transformer/config.json", dir);
        if (stat(p, &sb) == 0) {
            cJSON *cfg;
            s = dfa_json_read_file(p, &cfg, &ctx->err);
            if (!s) {
                s = dfa_json_int_or(cfg, "joint_attention_dim", p, 4096, &pe->t5_width, &ctx->err);
                cJSON_Delete(cfg);
            }
        }
    } else {
        if (!s) s = load_tok(ctx, dir, t5_tok, &pe->tok_t5);
        if (!s && !pe->opts.t5_file_pipeline) s = dfa_tok_use_transformers_t5(pe->tok_t5, &ctx->err);
        if (!s) {
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", dir, t5_enc);
            s = ctx->cuda ? dfa_t5_load_cuda(ctx, p, &pe->t5) : dfa_t5_load(ctx, p, &pe->t5);
        }
        if (!s) pe->t5_width = dfa_t5_get_config(pe->t5)->d_model;
    }
    if (!s && pe->layout == DFA_LAYOUT_SD3) {
        int w = dfa_clip_get_config(pe->clip[0])->hidden + dfa_clip_get_config(pe->clip[1])->hidden;
        if (w > pe->t5_width)
            s = DFA_SET(&ctx->err, DFA_ERR_SHAPE, "%s: CLIP features (%d) wider than T5's width (%d)", dir, w,
                        pe->t5_width);
    }
    if (s) {
        dfa_prompt_encoder_free(pe);
        return s;
    }
    *out = pe;
    return DFA_OK;
}

void dfa_text_embeds_free(dfa_text_embeds *e) {
    free(e->embeds);
    free(e->pooled);
    free(e->mask);
    memset(e, 0, sizeof *e);
}

/* Tokenize like tokenizer(prompt, padding="max_length", max_length=len, truncation=True). */
static dfa_status tokenize(dfa_ctx *ctx, const dfa_tokenizer *tok, const char *prompt, int len, dfa_tok_result *r) {
    dfa_tok_opts o = {.add_special_tokens = 1, .max_length = len, .truncation = 1, .pad = 1};
    return dfa_tok_encode(tok, prompt, strlen(prompt), &o, r, &ctx->err);
}

dfa_status dfa_prompt_encode(dfa_prompt_encoder *pe, const char *prompt, dfa_text_embeds *out) {
    dfa_ctx *ctx = pe->ctx;
    memset(out, 0, sizeof *out);
    dfa_tok_result tr = {0}, cr = {0};
    dfa_status s = pe->t5 ? tokenize(ctx, pe->tok_t5, prompt, pe->t5_len, &tr) : DFA_OK;
    if (s) return s;
    int Dt = pe->t5_width, Tt = pe->t5 ? tr.n : pe->t5_len;
    float *t5o = calloc((size_t)Tt * Dt, sizeof(float));
    if (!t5o) s = DFA_SET(&ctx->err, DFA_ERR_OOM, "prompt: out of memory");
    /* FLUX and SD3 run T5 without the attention mask; PixArt passes it */
    if (!s && pe->t5) s = dfa_t5_encode(pe->t5, tr.ids, pe->layout == DFA_LAYOUT_PIXART ? tr.mask : NULL, Tt, t5o);
    if (s) goto done;
    if (pe->layout == DFA_LAYOUT_PIXART) {
        out->T = Tt, out->D = Dt, out->embeds = t5o, t5o = NULL;
        out->mask = tr.ids ? malloc((size_t)Tt * sizeof(int32_t)) : NULL;
        if (!out->mask) s = DFA_SET(&ctx->err, DFA_ERR_OOM, "prompt: out of memory");
        else memcpy(out->mask, tr.mask, (size_t)Tt * sizeof(int32_t));
    } else if (pe->layout == DFA_LAYOUT_FLUX) {
        const dfa_clip_config *c = dfa_clip_get_config(pe->clip[0]);
        s = tokenize(ctx, pe->tok_clip[0], prompt, c->max_pos, &cr);
        out->pooled = malloc((size_t)c->hidden * sizeof(float));
        if (!s && !out->pooled) s = DFA_SET(&ctx->err, DFA_ERR_OOM, "prompt: out of memory");
        if (!s) s = dfa_clip_encode(pe->clip[0], cr.ids, cr.n, DFA_TEXT_LAST_HIDDEN, NULL, out->pooled, NULL);
        out->pooled_dim = c->hidden;
        out->T = Tt, out->D = Dt, out->embeds = t5o, t5o = NULL;
    } else { /* SD3 */
        const dfa_clip_config *a = dfa_clip_get_config(pe->clip[0]), *b = dfa_clip_get_config(pe->clip[1]);
        int Tc = a->max_pos < b->max_pos ? a->max_pos : b->max_pos;
        out->T = Tc + Tt, out->D = Dt;
        out->pooled_dim = a->projection_dim + b->projection_dim;
        out->embeds = calloc((size_t)out->T * Dt, sizeof(float)); /* zero: the feature padding */
        out->pooled = malloc((size_t)out->pooled_dim * sizeof(float));
        float *h = malloc((size_t)Tc * (a->hidden > b->hidden ? a->hidden : b->hidden) * sizeof(float));
        if (!out->embeds || !out->pooled || !h) s = DFA_SET(&ctx->err, DFA_ERR_OOM, "prompt: out of memory");
        int off = 0, pooled_off = 0;
        for (int i = 0; i < 2 && !s; i++) {
            const dfa_clip_config *c = i ? b : a;
            dfa_tok_result_free(&cr);
            s = tokenize(ctx, pe->tok_clip[i], prompt, c->max_pos, &cr);
            if (!s && cr.n != Tc)
                s = DFA_SET(&ctx->err, DFA_ERR_SHAPE, "prompt: CLIP encoders pad to different lengths (%d, %d)", cr.n, Tc);
            if (!s) s = dfa_clip_encode(pe->clip[i], cr.ids, cr.n, -(pe->opts.clip_skip + 2), h, NULL, out->pooled + pooled_off);
            for (int t = 0; t < Tc && !s; t++) memcpy(out->embeds + (size_t)t * Dt + off, h + (size_t)t * c->hidden, (size_t)c->hidden * sizeof(float));
            off += c->hidden;
            pooled_off += c->projection_dim;
        }
        if (!s) memcpy(out->embeds + (size_t)Tc * Dt, t5o, (size_t)Tt * Dt * sizeof(float));
        free(h);
    }
    out->t5_tokens = Tt;
done:
    free(t5o);
    dfa_tok_result_free(&tr);
    dfa_tok_result_free(&cr);
    if (s) dfa_text_embeds_free(out);
    return s;
}
