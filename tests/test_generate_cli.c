/* test_generate_cli.c - `dfa generate` end to end on the tiny fixtures: latents equal diffusers'
 * 3-step loops (FLUX with guidance, SD3 with CFG) when the same initial noise is passed in; an
 * all-FULL plan file changes nothing; PNG output through a VAE; usage and model errors. */
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "core/ctx.h"
#include "io/png.h"
#include "models/flux.h"
#include "mmdit_fixture.h"
#include "plan/plan.h"
#include "test.h"
#include "text_model_fixture.h"

#define FX DFA_SOURCE_DIR "/tests/fixtures"

static int run(int argc, const char **argv) { return cmd_generate(argc, (char **)argv); }

/* write tensor "latents" [1, 4, 12, 16] from fixture tensor `name` of `io_path` */
static int write_init(const char *io_path, const char *name, const char *dst) {
    dfa_safetensors *st = NULL;
    dfa_error err = {0};
    if (dfa_st_open(&st, io_path, &err) != DFA_OK) return -1;
    float *x = fx_load(st, name, NULL);
    dfa_st_close(st);
    if (!x) return -1;
    const int64_t shp[4] = {1, 4, 12, 16};
    dfa_st_item it = {.name = "latents", .dtype = DFA_F32, .ndim = 4, .shape = shp, .data = x};
    int rc = dfa_st_write(dst, &it, 1, NULL, NULL, 0, &err) == DFA_OK ? 0 : -1;
    free(x);
    return rc;
}

static double compare_out(const char *out, const char *io_path) {
    dfa_safetensors *a = NULL, *b = NULL;
    dfa_error err = {0};
    double e = 1e30;
    if (dfa_st_open(&a, out, &err) == DFA_OK && dfa_st_open(&b, io_path, &err) == DFA_OK) {
        size_t n = 0, m = 0;
        float *x = fx_load(a, "latents", &n), *r = fx_load(b, "smp_final", &m);
        if (x && r && n == m) e = fx_rel_err(x, r, n);
        free(x);
        free(r);
    } else {
        fprintf(stderr, "%s\n", err.msg);
    }
    dfa_st_close(a);
    dfa_st_close(b);
    return e;
}

static void test_flux_latents(void) {
    test_tmpdir d;
    CHECK(tmpdir_make(&d, "gen_flux") == 0);
    char init[256], out[256], plan_path[256];
    tmpdir_file(&d, "init.safetensors", init, sizeof init);
    tmpdir_file(&d, "out.safetensors", out, sizeof out);
    tmpdir_file(&d, "plan.json", plan_path, sizeof plan_path);
    CHECK(write_init(FX "/flux_tiny/io.safetensors", "smp_latents0", init) == 0);
    const char *argv[] = {"generate", "-m", FX "/flux_tiny", "--prompt-embeds", FX "/flux_tiny/io.safetensors", "-o",
                          out, "-W", "128", "-H", "96", "--steps", "3", "--guidance", "3.5", "--init-latents", init,
                          "-t", "2"};
    const int argc = (int)(sizeof argv / sizeof *argv);
    CHECK(run(argc, argv) == 0);
    double e = compare_out(out, FX "/flux_tiny/io.safetensors");
    CHECKF(e <= 1e-5, "dfa generate flux: rel err %.3g", e);
    /* the same under an all-FULL plan file: 4 attention layers, 2 heads, [text 7, image 48] */
    dfa_attn_layout lay = {.n_vis = 48, .n_text = 7, .text_first = 1, .block = 128};
    dfa_plan plan;
    dfa_error err = {0};
    CHECK(dfa_plan_init(&plan, &lay, 3, 4, 2, &err) == DFA_OK);
    snprintf(plan.family, sizeof plan.family, "flux");
    plan.grid_h = 6;
    plan.grid_w = 8;
    CHECK(dfa_plan_validate(&plan, "plan", &err) == DFA_OK);
    CHECKF(dfa_plan_save(plan_path, &plan, &err) == DFA_OK, "%s", err.msg);
    dfa_plan_free(&plan);
    const char *argv2[] = {"generate", "-m", FX "/flux_tiny", "--prompt-embeds", FX "/flux_tiny/io.safetensors", "-o",
                           out, "-W", "128", "-H", "96", "--steps", "3", "--init-latents", init, "--plan", plan_path};
    CHECK(run((int)(sizeof argv2 / sizeof *argv2), argv2) == 0);
    e = compare_out(out, FX "/flux_tiny/io.safetensors");
    CHECKF(e <= 1e-5, "dfa generate flux --plan (all FULL): rel err %.3g", e);
    tmpdir_remove(&d);
}

static void test_sd3_latents_cfg(void) {
    test_tmpdir d;
    CHECK(tmpdir_make(&d, "gen_sd3") == 0);
    char init[256], out[256];
    tmpdir_file(&d, "init.safetensors", init, sizeof init);
    tmpdir_file(&d, "out.safetensors", out, sizeof out);
    CHECK(write_init(FX "/sd3_tiny/io.safetensors", "smp_latents0", init) == 0);
    const char *argv[] = {"generate", "-m", FX "/sd3_tiny", "--prompt-embeds", FX "/sd3_tiny/io.safetensors", "-o",
                          out, "-W", "128", "-H", "96", "--steps", "3", "--cfg-scale", "4.5", "--init-latents", init};
    CHECK(run((int)(sizeof argv / sizeof *argv), argv) == 0);
    double e = compare_out(out, FX "/sd3_tiny/io.safetensors");
    CHECKF(e <= 1e-5, "dfa generate sd3: rel err %.3g", e);
    tmpdir_remove(&d);
}

/* A pipeline folder assembled from the FLUX fixture and the 4-channel VAE fixture -> PNG. */
static void test_png(void) {
    test_tmpdir d;
    CHECK(tmpdir_make(&d, "gen_png") == 0);
    char p[256], png[256], lat[256];
    tmpdir_file(&d, "transformer", p, sizeof p);
    CHECK(symlink(FX "/flux_tiny/transformer", p) == 0);
    tmpdir_file(&d, "scheduler", p, sizeof p);
    CHECK(symlink(FX "/flux_tiny/scheduler", p) == 0);
    tmpdir_file(&d, "vae", p, sizeof p);
    CHECK(symlink(FX "/vae4/vae", p) == 0);
    tmpdir_file(&d, "out.png", png, sizeof png);
    tmpdir_file(&d, "lat.safetensors", lat, sizeof lat);
    const char *argv[] = {"generate", "-m", d.path, "--prompt-embeds", FX "/flux_tiny/io.safetensors", "-o", png,
                          "--latents", lat, "-W", "32", "-H", "24", "--steps", "2", "--seed", "5"};
    CHECK(run((int)(sizeof argv / sizeof *argv), argv) == 0);
    int w = 0, h = 0;
    uint8_t *px = NULL;
    dfa_error err = {0};
    CHECKF(dfa_png_read(png, 3, &w, &h, &px, &err) == DFA_OK, "%s", err.msg);
    CHECK(w == 32 && h == 24);
    free(px);
    CHECK(access(lat, R_OK) == 0);
    /* 16-channel VAE with this 4-channel transformer: refused */
    tmpdir_file(&d, "vae", p, sizeof p);
    unlink(p);
    CHECK(symlink(FX "/vae16/vae", p) == 0);
    CHECK(run((int)(sizeof argv / sizeof *argv), argv) == 1);
    /* unlink the symlinks before removing the folder (no link following there) */
    const char *links[] = {"transformer", "scheduler", "vae"};
    for (int i = 0; i < 3; i++) {
        tmpdir_file(&d, links[i], p, sizeof p);
        unlink(p);
    }
    tmpdir_remove(&d);
}

/* --prompt runs the folder's text encoders (tiny CLIP + T5 fixtures, a random FLUX transformer
 * sized to them): the latents equal `dfa encode` + `--prompt-embeds` bit for bit. */
static void test_prompt_text(void) {
    test_tmpdir d;
    CHECK(tmpdir_make(&d, "gen_text") == 0);
    char p[256], pe[256], o1[256], o2[256];
    const char *links[][2] = {{"text_encoder", FX "/text/clip"}, {"tokenizer", FX "/text/clip_tok"},
                              {"text_encoder_2", FX "/text/t5"}, {"tokenizer_2", FX "/text/t5_tok"},
                              {"scheduler", FX "/flux_tiny/scheduler"}};
    for (int i = 0; i < 5; i++) {
        tmpdir_file(&d, links[i][0], p, sizeof p);
        CHECK(symlink(links[i][1], p) == 0);
    }
    tmpdir_file(&d, "transformer", p, sizeof p);
    CHECK(mkdir(p, 0755) == 0);
    const char *cfg = "{\"_class_name\": \"FluxTransformer2DModel\", \"in_channels\": 16, \"num_layers\": 1,"
                      " \"num_single_layers\": 1, \"attention_head_dim\": 16, \"num_attention_heads\": 2,"
                      " \"joint_attention_dim\": 48, \"pooled_projection_dim\": 32, \"guidance_embeds\": true,"
                      " \"axes_dims_rope\": [4, 6, 6]}";
    CHECK(tmpdir_write(&d, "transformer/config.json", cfg, strlen(cfg), p, sizeof p) != NULL);
    dfa_ctx_params cp = dfa_ctx_default_params();
    cp.n_threads = 2;
    dfa_ctx *ctx = NULL;
    char err[256];
    CHECK(dfa_ctx_init(&ctx, &cp, err, sizeof err) == DFA_OK);
    CHECKF(ctx && dfa_flux_write_random(ctx, d.path, 9) == DFA_OK, "%s", ctx ? dfa_ctx_error(ctx) : err);
    dfa_ctx_free(ctx);
    tmpdir_file(&d, "pe.safetensors", pe, sizeof pe);
    tmpdir_file(&d, "o1.safetensors", o1, sizeof o1);
    tmpdir_file(&d, "o2.safetensors", o2, sizeof o2);
    const char *enc[] = {"encode", "-m", d.path, "-p", "a red cube on a table", "-o", pe, "--max-sequence-length", "16"};
    CHECK(cmd_encode(9, (char **)enc) == 0);
    const char *g1[] = {"generate", "-m", d.path, "--prompt-embeds", pe, "-o", o1, "-W", "64", "-H", "32", "--steps",
                        "2", "--seed", "4"};
    CHECK(run(15, g1) == 0);
    const char *g2[] = {"generate", "-m", d.path, "--prompt", "a red cube on a table", "--max-sequence-length", "16",
                        "-o", o2, "-W", "64", "-H", "32", "--steps", "2", "--seed", "4"};
    CHECK(run(17, g2) == 0);
    dfa_safetensors *a = NULL, *b = NULL;
    dfa_error e = {0};
    size_t n1 = 0, n2 = 0;
    CHECK(dfa_st_open(&a, o1, &e) == DFA_OK && dfa_st_open(&b, o2, &e) == DFA_OK);
    float *x1 = a ? fx_load(a, "latents", &n1) : NULL, *x2 = b ? fx_load(b, "latents", &n2) : NULL;
    CHECK(x1 && x2 && n1 == n2 && n1 == 4 * 4 * 8 && memcmp(x1, x2, n1 * sizeof(float)) == 0);
    free(x1);
    free(x2);
    dfa_st_close(a);
    dfa_st_close(b);
    /* both --prompt and --prompt-embeds: usage error */
    const char *both[] = {"generate", "-m", d.path, "--prompt", "x", "--prompt-embeds", pe, "-o", o2};
    CHECK(run(9, both) == 2);
    for (int i = 0; i < 5; i++) {
        tmpdir_file(&d, links[i][0], p, sizeof p);
        unlink(p);
    }
    tmpdir_remove(&d);
}

/* PixArt --prompt: the same latents as `dfa encode` (with the negative "" for the default CFG)
 * followed by --prompt-embeds; another prompt gives other latents */
static void test_pixart_prompt_text(void) {
    test_tmpdir d;
    CHECK(tmpdir_make(&d, "gen_pixart_text") == 0);
    CHECK(text_model_pixart(&d) == 0);
    char pe[256], o1[256], o2[256], o3[256];
    tmpdir_file(&d, "pe.safetensors", pe, sizeof pe);
    tmpdir_file(&d, "o1.safetensors", o1, sizeof o1);
    tmpdir_file(&d, "o2.safetensors", o2, sizeof o2);
    tmpdir_file(&d, "o3.safetensors", o3, sizeof o3);
    const char *enc[] = {"encode", "-m", d.path, "-p", "a red cube", "-n", "", "-o", pe, "--max-sequence-length",
                         "16", "-t", "1"};
    CHECK(cmd_encode(13, (char **)enc) == 0);
    const char *g1[] = {"generate", "-m", d.path, "--prompt-embeds", pe, "-o", o1, "--steps", "2", "--seed", "4",
                        "-t", "1"};
    CHECK(run(13, g1) == 0);
    const char *g2[] = {"generate", "-m", d.path, "--prompt", "a red cube", "--max-sequence-length", "16", "-o", o2,
                        "--steps", "2", "--seed", "4", "-t", "1"};
    CHECK(run(15, g2) == 0);
    g2[4] = "a blue sphere";
    g2[8] = o3;
    CHECK(run(15, g2) == 0);
    dfa_safetensors *a = NULL, *b = NULL, *c = NULL;
    dfa_error e = {0};
    size_t n1 = 0, n2 = 0, n3 = 0;
    CHECK(dfa_st_open(&a, o1, &e) == DFA_OK && dfa_st_open(&b, o2, &e) == DFA_OK && dfa_st_open(&c, o3, &e) == DFA_OK);
    float *x1 = a ? fx_load(a, "latents", &n1) : NULL, *x2 = b ? fx_load(b, "latents", &n2) : NULL;
    float *x3 = c ? fx_load(c, "latents", &n3) : NULL;
    CHECK(x1 && x2 && n1 == n2 && n1 == 4 * 8 * 8 && memcmp(x1, x2, n1 * sizeof(float)) == 0);
    CHECK(x1 && x3 && n3 == n1 && memcmp(x1, x3, n1 * sizeof(float)) != 0);
    free(x1), free(x2), free(x3);
    dfa_st_close(a), dfa_st_close(b), dfa_st_close(c);
    /* no text encoder in the folder: a clear error, exit 1 */
    const char *fx[] = {"generate", "-m", FX "/pixart", "--prompt", "x", "-o", o3, "--steps", "1"};
    CHECK(run(9, fx) == 1);
    text_model_cleanup(&d);
    tmpdir_remove(&d);
}

static void test_usage_and_errors(void) {
    const char *no_out[] = {"generate", "-m", FX "/flux_tiny", "--prompt-embeds", FX "/flux_tiny/io.safetensors"};
    CHECK(run(5, no_out) == 2);
    const char *bad_flag[] = {"generate", "--frobnicate"};
    CHECK(run(2, bad_flag) == 2);
    const char *help[] = {"generate", "--help"};
    CHECK(run(2, help) == 0);
    const char *no_model[] = {"generate", "-m", "/nonexistent", "--prompt-embeds", "x", "-o", "/tmp/x.safetensors"};
    CHECK(run(7, no_model) == 1);
    const char *dit[] = {"generate", "-m", FX "/dit", "--prompt-embeds", "x", "-o", "/tmp/x.safetensors"};
    CHECK(run(7, dit) == 2); /* DiT is class-conditional: prompt embeddings are a usage error */
    const char *dit_ok[] = {"generate", "-m", FX "/dit", "--class", "3", "--steps", "2", "-o", "/tmp/dfa_dit_cli.safetensors"};
    CHECK(run(9, dit_ok) == 0); /* DiT through the same command */
    remove("/tmp/dfa_dit_cli.safetensors");
    const char *odd[] = {"generate", "-m", FX "/flux_tiny", "--prompt-embeds", FX "/flux_tiny/io.safetensors", "-o",
                         "/tmp/dfa_never_written.safetensors", "-W", "104", "-H", "96"};
    CHECK(run(11, odd) == 1); /* 104 px: an odd latent width, FLUX packs 2x2 */
}

int main(void) {
    RUN(test_flux_latents);
    RUN(test_sd3_latents_cfg);
    RUN(test_png);
    RUN(test_prompt_text);
    RUN(test_pixart_prompt_text);
    RUN(test_usage_and_errors);
    return test_summary();
}
