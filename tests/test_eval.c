/* test_eval.c - the fidelity harness: SSIM against known values and a plain float64 reference
 * loop (2-D window, no separable passes), PSNR and relative L2 known values, and `dfa eval`'s
 * run on the tiny FLUX fixture (latents only, then with the 4-channel VAE fixture as vae/):
 * an all-FULL plan gives SSIM 1 / PSNR inf / latent error 0 / fraction 1, a CACHE plan a
 * fraction below 1 and a nonzero error; a plan for another step count is refused. */
#include <math.h>
#include <unistd.h>

#include "attn/attn_state.h"
#include "cli/commands.h"
#include "cli/eval_run.h"
#include "core/ctx.h"
#include "eval/fidelity.h"
#include "io/png.h"
#include "plan/plan.h"
#include "test.h"
#include "tmpdir.h"

#define FX DFA_SOURCE_DIR "/tests/fixtures"

/* SSIM by definition: for every valid 11x11 window position the Gaussian-weighted statistics
 * summed directly over the 2-D window (weights g_i g_j / (sum g)^2), per channel, averaged. */
static double ssim_ref(const uint8_t *a, const uint8_t *b, int w, int h, int ch) {
    double g[11], gs = 0;
    for (int i = 0; i < 11; i++) gs += g[i] = exp(-(double)((i - 5) * (i - 5)) / (2.0 * 1.5 * 1.5));
    const double C1 = 6.5025, C2 = 58.5225; /* (0.01*255)^2, (0.03*255)^2 */
    double total = 0;
    for (int c = 0; c < ch; c++) {
        double sum = 0;
        int cnt = 0;
        for (int y0 = 0; y0 + 11 <= h; y0++)
            for (int x0 = 0; x0 + 11 <= w; x0++) {
                double mx = 0, my = 0, xx = 0, yy = 0, xy = 0;
                for (int j = 0; j < 11; j++)
                    for (int i = 0; i < 11; i++) {
                        const double wt = g[i] * g[j] / (gs * gs);
                        const double va = a[((y0 + j) * w + x0 + i) * ch + c], vb = b[((y0 + j) * w + x0 + i) * ch + c];
                        mx += wt * va, my += wt * vb, xx += wt * va * va, yy += wt * vb * vb, xy += wt * va * vb;
                    }
                const double vx = xx - mx * mx, vy = yy - my * my, cxy = xy - mx * my;
                sum += (2 * mx * my + C1) * (2 * cxy + C2) / ((mx * mx + my * my + C1) * (vx + vy + C2));
                cnt++;
            }
        total += sum / cnt;
    }
    return total / ch;
}

static void test_ssim_known(void) {
    dfa_error err = {0};
    unsigned long long rs = 0x5eed1234ULL;
    enum { W = 23, H = 17, N = W * H * 3 };
    uint8_t a[N], b[N];
    for (int i = 0; i < N; i++) a[i] = (uint8_t)(20 + (test_rng_next(&rs) % 180));
    memcpy(b, a, N);
    CHECK_NEAR(dfa_ssim_u8(a, b, W, H, 3, &err), 1.0, 1e-12);
    /* constant images 100 and 110: only the luminance term, (2*100*110 + C1) / (100^2 + 110^2 + C1)
     * = 22006.5025 / 22106.5025 = 0.99547644... (hand-checked) */
    memset(a, 100, N);
    memset(b, 110, N);
    CHECK_NEAR(dfa_ssim_u8(a, b, W, H, 3, &err), 0.995476444, 1e-8);
    /* a textured image shifted by a constant: contrast-structure term exactly 1, the luminance
     * term varies with the local mean; against the reference loop */
    for (int i = 0; i < N; i++) a[i] = (uint8_t)(20 + (test_rng_next(&rs) % 180)), b[i] = (uint8_t)(a[i] + 30);
    double s = dfa_ssim_u8(a, b, W, H, 3, &err), r = ssim_ref(a, b, W, H, 3);
    CHECK_NEAR(s, r, 1e-10);
    CHECK(s < 1.0 && s > 0.9);
    /* a noisy copy, 2 channels, against the reference loop */
    for (int i = 0; i < N; i++) {
        int v = (int)a[i] + (int)(test_rng_next(&rs) % 41) - 20;
        b[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
    s = dfa_ssim_u8(a, b, W, H, 2, &err), r = ssim_ref(a, b, W, H, 2);
    CHECK_NEAR(s, r, 1e-10);
    CHECK(s < 0.99);
    /* order does not matter; anticorrelated images go negative */
    CHECK_NEAR(dfa_ssim_u8(b, a, W, H, 2, &err), s, 1e-12);
    for (int i = 0; i < N; i++) b[i] = (uint8_t)(255 - a[i]);
    s = dfa_ssim_u8(a, b, W, H, 1, &err), r = ssim_ref(a, b, W, H, 1);
    CHECK_NEAR(s, r, 1e-10);
    CHECK(s < 0.0);
    /* smaller than the window: NaN */
    CHECK(isnan(dfa_ssim_u8(a, b, 10, 30, 1, &err)));
}

static void test_psnr_l2_known(void) {
    uint8_t a[200], b[200];
    memset(a, 7, sizeof a);
    memset(b, 8, sizeof b);
    CHECK_NEAR(dfa_mse_u8(a, b, 200), 1.0, 0);
    CHECK_NEAR(dfa_psnr_from_mse(dfa_mse_u8(a, b, 200)), 48.130803608679, 1e-9); /* 20 log10 255 */
    memcpy(b, a, 200);
    for (int i = 0; i < 100; i++) b[2 * i] = 12; /* half the values off by 5: MSE 12.5 */
    CHECK_NEAR(dfa_mse_u8(a, b, 200), 12.5, 0);
    CHECK_NEAR(dfa_psnr_from_mse(12.5), 37.161703478599, 1e-9); /* 10 log10(65025 / 12.5) */
    CHECK(isinf(dfa_psnr_from_mse(dfa_mse_u8(a, a, 200))));
    const float r[2] = {3, 4}, x[2] = {3, 4.5f}, z[2] = {0, 0};
    CHECK_NEAR(dfa_rel_l2(r, x, 2), 0.1, 1e-12);
    CHECK_NEAR(dfa_rel_l2(r, r, 2), 0.0, 0);
    CHECK(dfa_rel_l2(z, z, 2) == 0.0 && isinf(dfa_rel_l2(z, r, 2)));
}

/* FLUX fixture plans: 3 steps, 4 attention layers, 2 heads, [text 7, image 6 x 8]. */
static int make_plan(const char *path, dfa_plan_pattern pat, int steps) {
    dfa_attn_layout lay = {.n_vis = 48, .n_text = 7, .text_first = 1, .block = 128};
    dfa_plan p;
    dfa_error err = {0};
    if (dfa_plan_init(&p, &lay, steps, 4, 2, &err) != DFA_OK) return -1;
    snprintf(p.family, sizeof p.family, "flux");
    p.grid_h = 6, p.grid_w = 8;
    dfa_plan_make_opts o = {.pattern = pat, .every = 2};
    int rc = dfa_plan_make(&p, &o, &err) == DFA_OK && dfa_plan_save(path, &p, &err) == DFA_OK ? 0 : -1;
    if (rc) fprintf(stderr, "%s\n", err.msg);
    dfa_plan_free(&p);
    return rc;
}

static dfa_ctx *ctx1(void) {
    dfa_ctx_params cp = dfa_ctx_default_params();
    cp.n_threads = 1;
    dfa_ctx *ctx = NULL;
    char err[256];
    if (dfa_ctx_init(&ctx, &cp, err, sizeof err) != DFA_OK) fprintf(stderr, "%s\n", err);
    return ctx;
}

static void test_eval_flux(void) {
    test_tmpdir d;
    CHECK(tmpdir_make(&d, "eval") == 0);
    char full[256], cache[256], bad[256], out[256], p[600];
    tmpdir_file(&d, "full.json", full, sizeof full);
    tmpdir_file(&d, "cache.json", cache, sizeof cache);
    tmpdir_file(&d, "steps4.json", bad, sizeof bad);
    tmpdir_file(&d, "out", out, sizeof out);
    CHECK(make_plan(full, DFA_PLAN_PAT_FULL, 3) == 0 && make_plan(cache, DFA_PLAN_PAT_CACHE, 3) == 0 &&
          make_plan(bad, DFA_PLAN_PAT_FULL, 4) == 0);
    const char *plans[2] = {full, cache};
    const dfa_eval_prompt pr[1] = {{.embeds = FX "/flux_tiny/io.safetensors"}};
    const long long seeds[2] = {0, 3};
    dfa_eval_opts o = {.model = FX "/flux_tiny", .plans = plans, .n_plans = 2, .prompts = pr, .n_prompts = 1,
                       .seeds = seeds, .n_seeds = 2, .steps = 3, .width = 128, .height = 96, .cfg = -1,
                       .guidance = 3.5};
    dfa_ctx *ctx = ctx1();
    CHECK(ctx != NULL);
    if (!ctx) return;
    dfa_eval_result res;
    memset(&res, 0xA5, sizeof res);
    /* 1) no vae/: latent metrics only */
    CHECKF(dfa_eval_run(ctx, &o, &res, NULL) == DFA_OK, "%s", dfa_ctx_error(ctx));
    CHECK(res.has_images == 0 && res.n_images == 2 && res.n_plans == 2);
    if (res.n_plans == 2) {
        CHECK_NEAR(res.rows[0].fraction, 1.0, 1e-12);
        CHECK(res.rows[0].latent_err == 0.0);
        CHECK(isnan(res.rows[0].ssim) && isnan(res.rows[0].psnr));
        CHECK_NEAR(res.rows[1].fraction, 2.0 / 3.0, 1e-12); /* FULL, CACHE, FULL */
        CHECKF(res.rows[1].latent_err > 1e-4 && res.rows[1].latent_err < 1.0, "%g", res.rows[1].latent_err);
        CHECK(res.rows[1].seconds >= 0 && res.base.seconds >= 0);
    }
    dfa_eval_result_free(&res);
    CHECK(dfa_attn_plan(ctx) == NULL); /* the context is left without a plan */
    /* 2) the same with the VAE fixture as vae/ (4 latent channels, 2x upscale): 32 x 24 px */
    const char *links[][2] = {{"transformer", FX "/flux_tiny/transformer"},
                              {"scheduler", FX "/flux_tiny/scheduler"},
                              {"vae", FX "/vae4/vae"}};
    char model[300];
    tmpdir_file(&d, "model", model, sizeof model);
    CHECK(mkdir(model, 0755) == 0);
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", model, links[i][0]);
        CHECK(symlink(links[i][1], p) == 0);
    }
    o.model = model, o.width = 32, o.height = 24, o.outdir = out;
    memset(&res, 0xA5, sizeof res);
    CHECKF(dfa_eval_run(ctx, &o, &res, NULL) == DFA_OK, "%s", dfa_ctx_error(ctx));
    CHECK(res.has_images == 1 && res.n_plans == 2);
    if (res.n_plans == 2) {
        CHECK_NEAR(res.rows[0].ssim, 1.0, 1e-12);
        CHECK(isinf(res.rows[0].psnr) && res.rows[0].latent_err == 0.0);
        CHECKF(res.rows[1].ssim < 1.0 && res.rows[1].ssim > 0.5, "%g", res.rows[1].ssim);
        CHECK(res.rows[1].ssim_min <= res.rows[1].ssim);
        CHECKF(isfinite(res.rows[1].psnr) && res.rows[1].psnr > 10, "%g", res.rows[1].psnr);
        CHECK(res.rows[1].latent_err > 1e-4);
    }
    dfa_eval_result_free(&res);
    int w = 0, h = 0;
    uint8_t *px = NULL;
    dfa_error err = {0};
    snprintf(p, sizeof p, "%s/contact_sheet.png", out);
    CHECKF(dfa_png_read(p, 3, &w, &h, &px, &err) == DFA_OK, "%s", err.msg);
    CHECK(w == 3 * 32 + 4 * 4 && h == 2 * 24 + 3 * 4); /* [ref | full | cache] x 2 seeds, 4 px gutters */
    if (px && w == 112 && h == 60) /* the all-FULL tile equals the reference tile */
        for (int y = 0; y < 24; y++) CHECK(memcmp(px + ((4 + y) * w + 4) * 3, px + ((4 + y) * w + 40) * 3, 96) == 0);
    free(px);
    px = NULL;
    snprintf(p, sizeof p, "%s/ssim_vs_attn.png", out);
    CHECKF(dfa_png_read(p, 3, &w, &h, &px, &err) == DFA_OK, "%s", err.msg);
    free(px);
    snprintf(p, sizeof p, "%s/report.md", out);
    CHECK(access(p, R_OK) == 0);
    /* 3) a plan for another step count is refused, naming the file */
    const char *plans_bad[2] = {full, bad};
    o.plans = plans_bad, o.outdir = NULL;
    CHECK(dfa_eval_run(ctx, &o, &res, NULL) != DFA_OK);
    CHECKF(strstr(dfa_ctx_error(ctx), "steps4.json") != NULL, "%s", dfa_ctx_error(ctx));
    dfa_ctx_free(ctx);
    /* 4) the command: usage errors and one latent-only run through argv */
    const char *no_plans[] = {"eval", "-m", FX "/flux_tiny", "--prompt-embeds", FX "/flux_tiny/io.safetensors"};
    CHECK(cmd_eval(5, (char **)no_plans) == 2);
    const char *both[] = {"eval", "-m", FX "/flux_tiny", "--plans", full, "--prompts", "x.txt", "--prompt-embeds", "y"};
    CHECK(cmd_eval(9, (char **)both) == 2);
    const char *ok[] = {"eval", "-m", FX "/flux_tiny", "--plans", full, cache, "--prompt-embeds",
                        FX "/flux_tiny/io.safetensors", "-W", "128", "-H", "96", "--steps", "3", "-t", "1"};
    CHECK(cmd_eval(16, (char **)ok) == 0);
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", model, links[i][0]);
        unlink(p);
    }
    tmpdir_remove(&d);
}

int main(void) {
    RUN(test_ssim_known);
    RUN(test_psnr_l2_known);
    RUN(test_eval_flux);
    return test_summary();
}
