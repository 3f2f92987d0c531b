/* text_model_fixture.h - tiny pipeline folders with text encoders, for the tests of text prompts
 * (`dfa generate --prompt`, `dfa calibrate --prompts` with text): the T5 / CLIP fixtures of
 * tests/fixtures/text linked in, and a transformer whose text width fits them:
 *   PixArt: tests/fixtures/pixart's transformer with caption_channels 48 (T5's d_model) and a
 *           seeded caption_projection.linear_1.weight [32, 48] in place of the [32, 24] one;
 *   FLUX:   random weights (dfa_flux_write_random), joint dim 48 (T5), pooled 32 (CLIP).
 * Header-only, for tests; call text_model_cleanup before tmpdir_remove (links are not followed). */
#ifndef DFA_TESTS_TEXT_MODEL_FIXTURE_H
#define DFA_TESTS_TEXT_MODEL_FIXTURE_H

#include <string.h>
#include <unistd.h>

#include "core/ctx.h"
#include "io/safetensors.h"
#include "models/flux.h"
#include "test.h"
#include "tmpdir.h"

#define TMF_FX DFA_SOURCE_DIR "/tests/fixtures"

static const char *const tmf_links[] = {"text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "scheduler"};

static inline void tmf_link(const test_tmpdir *d, const char *name, const char *target) {
    char p[256];
    CHECK(symlink(target, tmpdir_file(d, name, p, sizeof p)) == 0);
}

/* PixArt folder in d (transformer/, text_encoder/, tokenizer/, scheduler/); 0 on success */
static inline int text_model_pixart(const test_tmpdir *d) {
    char p[256];
    tmf_link(d, "text_encoder", TMF_FX "/text/t5");
    tmf_link(d, "tokenizer", TMF_FX "/text/t5_tok");
    tmf_link(d, "scheduler", TMF_FX "/pixart/scheduler");
    CHECK(mkdir(tmpdir_file(d, "transformer", p, sizeof p), 0755) == 0);
    FILE *in = fopen(TMF_FX "/pixart/transformer/config.json", "rb");
    char cfg[4096] = {0}, out[4200];
    size_t n = in ? fread(cfg, 1, sizeof cfg - 1, in) : 0;
    if (in) fclose(in);
    char *cc = strstr(cfg, "\"caption_channels\": 24");
    CHECK(n > 0 && cc != NULL);
    if (!cc) return -1;
    int k = snprintf(out, sizeof out, "%.*s\"caption_channels\": 48%s", (int)(cc - cfg), cfg, cc + 22);
    CHECK(tmpdir_write(d, "transformer/config.json", out, (size_t)k, p, sizeof p) != NULL);
    dfa_safetensors *st = NULL;
    dfa_error err = {0};
    CHECKF(dfa_st_open(&st, TMF_FX "/pixart/transformer/diffusion_pytorch_model.safetensors", &err) == DFA_OK, "%s",
           err.msg);
    if (!st) return -1;
    const int nt = dfa_st_count(st);
    dfa_st_item *items = calloc((size_t)nt, sizeof *items);
    int64_t(*shapes)[DFA_MAX_DIMS] = calloc((size_t)nt, sizeof *shapes);
    float **data = calloc((size_t)nt, sizeof *data);
    int ok = items && shapes && data;
    for (int i = 0; ok && i < nt; i++) {
        const dfa_st_tensor *t = dfa_st_at(st, i);
        size_t numel = 1;
        for (int j = 0; j < t->ndim; j++) numel *= (size_t)(shapes[i][j] = t->shape[j]);
        const int cap = strcmp(t->name, "caption_projection.linear_1.weight") == 0;
        if (cap) numel = (size_t)(shapes[i][1] = 48) * (size_t)shapes[i][0];
        data[i] = malloc(numel * sizeof(float));
        ok = data[i] != NULL;
        if (ok && cap) {
            unsigned s = 77;
            for (size_t j = 0; j < numel; j++) data[i][j] = 0.3f * ((float)rand_r(&s) / RAND_MAX - 0.5f);
        } else if (ok) {
            ok = dfa_st_load(st, t->name, DFA_F32, -1, NULL, data[i], DFA_DEV_CPU, NULL, &err) == DFA_OK;
        }
        items[i] = (dfa_st_item){.name = t->name, .dtype = DFA_F32, .ndim = t->ndim, .shape = shapes[i],
                                 .data = data[i]};
    }
    tmpdir_file(d, "transformer/diffusion_pytorch_model.safetensors", p, sizeof p);
    if (ok) ok = dfa_st_write(p, items, nt, NULL, NULL, 0, &err) == DFA_OK;
    CHECKF(ok, "writing %s: %s", p, err.msg);
    for (int i = 0; data && i < nt; i++) free(data[i]);
    free(data), free(shapes), free(items);
    dfa_st_close(st);
    return ok ? 0 : -1;
}

/* FLUX folder in d (CLIP + T5 encoders, random transformer, flux_tiny's scheduler); 0 on success */
static inline int text_model_flux(const test_tmpdir *d) {
    char p[256];
    tmf_link(d, "text_encoder", TMF_FX "/text/clip");
    tmf_link(d, "tokenizer", TMF_FX "/text/clip_tok");
    tmf_link(d, "text_encoder_2", TMF_FX "/text/t5");
    tmf_link(d, "tokenizer_2", TMF_FX "/text/t5_tok");
    tmf_link(d, "scheduler", TMF_FX "/flux_tiny/scheduler");
    CHECK(mkdir(tmpdir_file(d, "transformer", p, sizeof p), 0755) == 0);
    const char *cfg = "{\"_class_name\": \"FluxTransformer2DModel\", \"in_channels\": 16, \"num_layers\": 1,"
                      " \"num_single_layers\": 1, \"attention_head_dim\": 16, \"num_attention_heads\": 2,"
                      " \"joint_attention_dim\": 48, \"pooled_projection_dim\": 32, \"guidance_embeds\": true,"
                      " \"axes_dims_rope\": [4, 6, 6]}";
    CHECK(tmpdir_write(d, "transformer/config.json", cfg, strlen(cfg), p, sizeof p) != NULL);
    dfa_ctx_params cp = dfa_ctx_default_params();
    cp.n_threads = 1;
    dfa_ctx *ctx = NULL;
    char err[256] = {0};
    CHECK(dfa_ctx_init(&ctx, &cp, err, sizeof err) == DFA_OK);
    const int ok = ctx && dfa_flux_write_random(ctx, d->path, 9) == DFA_OK;
    CHECKF(ok, "%s", ctx ? dfa_ctx_error(ctx) : err);
    dfa_ctx_free(ctx);
    return ok ? 0 : -1;
}

/* remove the links the two makers above create (those that exist) */
static inline void text_model_cleanup(const test_tmpdir *d) {
    char p[256];
    for (size_t i = 0; i < sizeof tmf_links / sizeof *tmf_links; i++) unlink(tmpdir_file(d, tmf_links[i], p, sizeof p));
}

#endif
