/* test_gen_dit.c - the CLI-side DiT / PixArt generation (src/cli/gen_dit.h) on pipeline folders
 * assembled from the fixtures: latents equal diffusers' 3-step loops, PNG through the VAE, errors
 * for missing inputs. */
#include <unistd.h>

#include "cli/gen_dit.h"
#include "core/ctx.h"
#include "fixture.h"
#include "io/png.h"
#include "test.h"
#include "tmpdir.h"

static dfa_ctx *new_ctx(void) {
    dfa_ctx_params p = dfa_ctx_default_params();
    p.n_threads = 2;
    dfa_ctx *ctx = NULL;
    char e[256];
    if (dfa_ctx_init(&ctx, &p, e, sizeof e) != DFA_OK) fprintf(stderr, "ctx: %s\n", e);
    return ctx;
}

static void link_fixture(const test_tmpdir *t, const char *name, const char *rel) {
    char src[1024], dst[256];
    fixture_path(rel, src, sizeof src);
    tmpdir_file(t, name, dst, sizeof dst);
    CHECKF(symlink(src, dst) == 0, "symlink %s -> %s", dst, src);
}

static float *read_latents(const char *path, size_t n) {
    dfa_safetensors *st = NULL;
    dfa_error err = {0};
    if (dfa_st_open(&st, path, &err) != DFA_OK) {
        CHECKF(0, "%s", err.msg);
        return NULL;
    }
    int64_t shape[8];
    int nd = 0;
    float *x = fixture_f32(st, "latents", &nd, shape);
    CHECK(nd == 4 && (size_t)(shape[0] * shape[1] * shape[2] * shape[3]) == n);
    dfa_st_close(st);
    return x;
}

static void test_dit_folder(void) {
    test_tmpdir t;
    if (tmpdir_make(&t, "gendit") != 0) return;
    link_fixture(&t, "transformer", "dit/transformer");
    link_fixture(&t, "scheduler", "dit/scheduler");
    link_fixture(&t, "vae", "vae4/vae");
    dfa_safetensors *io = fixture_open("dit/io.safetensors");
    dfa_ctx *ctx = new_ctx();
    if (!io || !ctx) goto out;
    int64_t ns[8];
    float *noise = fixture_f32(io, "noise", NULL, ns), *ref = fixture_f32(io, "final", NULL, NULL);
    float *par = fixture_f32(io, "params", NULL, NULL);
    const size_t n = (size_t)ns[1] * ns[2] * ns[3];
    char init[256], out[256], png[256];
    tmpdir_file(&t, "init.safetensors", init, sizeof init);
    tmpdir_file(&t, "lat.safetensors", out, sizeof out);
    tmpdir_file(&t, "img.png", png, sizeof png);
    const dfa_st_item it = {"latents", DFA_F32, 4, ns, noise};
    dfa_error err = {0};
    CHECK(dfa_st_write(init, &it, 1, NULL, NULL, 0, &err) == DFA_OK);
    dfa_gen_dit_opts o = {.model = t.path, .out = out, .init = init, .steps = 3, .class_label = (int)par[0],
                          .cfg = par[2], .width = (int)ns[3] * 2, .height = (int)ns[2] * 2};
    CHECK(dfa_gen_dit_handles("DiTTransformer2DModel") && !dfa_gen_dit_handles("FluxTransformer2DModel"));
    dfa_status s = dfa_gen_dit_run(ctx, "DiTTransformer2DModel", &o, NULL);
    CHECKF(s == DFA_OK, "%s", dfa_ctx_error(ctx));
    float *lat = read_latents(out, n);
    if (lat) CHECKF(fixture_rel_err(lat, ref, n) <= 1e-4, "latents vs diffusers %g", fixture_rel_err(lat, ref, n));
    free(lat);
    /* PNG through vae/ (the tiny VAE upsamples 2x) */
    o.out = png;
    s = dfa_gen_dit_run(ctx, "DiTTransformer2DModel", &o, stdout);
    CHECKF(s == DFA_OK, "%s", dfa_ctx_error(ctx));
    int w = 0, h = 0;
    uint8_t *px = NULL;
    CHECK(dfa_png_read(png, 3, &w, &h, &px, &err) == DFA_OK && w == (int)ns[3] * 2 && h == (int)ns[2] * 2);
    free(px);
    /* bad output name, class out of range */
    o.out = init;
    o.out = "x.jpg";
    CHECK(dfa_gen_dit_run(ctx, "DiTTransformer2DModel", &o, NULL) == DFA_ERR_INVALID_ARG);
    o.out = out;
    o.class_label = 1000;
    CHECK(dfa_gen_dit_run(ctx, "DiTTransformer2DModel", &o, NULL) == DFA_ERR_INVALID_ARG);
    free(noise), free(ref), free(par);
out:
    dfa_st_close(io);
    dfa_ctx_free(ctx);
    tmpdir_remove(&t);
}

static void test_pixart_folder(void) {
    test_tmpdir t;
    if (tmpdir_make(&t, "genpix") != 0) return;
    link_fixture(&t, "transformer", "pixart/transformer");
    link_fixture(&t, "scheduler", "pixart/scheduler");
    dfa_safetensors *io = fixture_open("pixart/io.safetensors");
    dfa_ctx *ctx = new_ctx();
    if (!io || !ctx) goto out;
    int64_t ns[8], es[8];
    float *noise = fixture_f32(io, "noise", NULL, ns), *ref = fixture_f32(io, "final", NULL, NULL);
    float *par = fixture_f32(io, "params", NULL, NULL), *enc = fixture_f32(io, "enc", NULL, es);
    float *mask = fixture_f32(io, "mask", NULL, NULL);
    const int L = (int)es[1], Cc = (int)es[2];
    const size_t n = (size_t)ns[1] * ns[2] * ns[3], tw = (size_t)L * Cc;
    char init[256], out[256], emb[256], png[256];
    tmpdir_file(&t, "init.safetensors", init, sizeof init);
    tmpdir_file(&t, "lat.safetensors", out, sizeof out);
    tmpdir_file(&t, "emb.safetensors", emb, sizeof emb);
    tmpdir_file(&t, "img.png", png, sizeof png);
    const int64_t e3[3] = {1, L, Cc}, m2[2] = {1, L};
    dfa_st_item items[4] = {{"prompt_embeds", DFA_F32, 3, e3, enc + tw},
                            {"prompt_attention_mask", DFA_F32, 2, m2, mask + L},
                            {"negative_prompt_embeds", DFA_F32, 3, e3, enc},
                            {"negative_prompt_attention_mask", DFA_F32, 2, m2, mask}};
    const dfa_st_item it = {"latents", DFA_F32, 4, ns, noise};
    dfa_error err = {0};
    CHECK(dfa_st_write(init, &it, 1, NULL, NULL, 0, &err) == DFA_OK);
    CHECK(dfa_st_write(emb, items, 4, NULL, NULL, 0, &err) == DFA_OK);
    dfa_gen_dit_opts o = {.model = t.path, .embeds = emb, .out = out, .init = init, .steps = 3, .cfg = par[0],
                          .width = (int)ns[3] * 8, .height = (int)ns[2] * 8};
    dfa_status s = dfa_gen_dit_run(ctx, "PixArtTransformer2DModel", &o, NULL);
    CHECKF(s == DFA_OK, "%s", dfa_ctx_error(ctx));
    float *lat = read_latents(out, n);
    if (lat) CHECKF(fixture_rel_err(lat, ref, n) <= 1e-4, "latents vs diffusers %g", fixture_rel_err(lat, ref, n));
    free(lat);
    /* no vae/ in this folder: PNG output is refused naming the folder; no embeds: refused */
    o.out = png;
    CHECK(dfa_gen_dit_run(ctx, "PixArtTransformer2DModel", &o, NULL) == DFA_ERR_NOT_FOUND);
    CHECK(strstr(dfa_ctx_error(ctx), "/vae") != NULL);
    o.out = out;
    o.embeds = NULL;
    CHECK(dfa_gen_dit_run(ctx, "PixArtTransformer2DModel", &o, NULL) == DFA_ERR_INVALID_ARG);
    free(noise), free(ref), free(par), free(enc), free(mask);
out:
    dfa_st_close(io);
    dfa_ctx_free(ctx);
    tmpdir_remove(&t);
}

int main(void) {
    RUN(test_dit_folder);
    RUN(test_pixart_folder);
    return test_summary();
}
