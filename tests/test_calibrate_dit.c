/* test_calibrate_dit.c - the DiT / PixArt plan-search engines (plan/engine_dit.h) on the tiny
 * fixtures:
 *   - with every layer FULL, row p of the batched engine equals dfa_dit_generate /
 *     dfa_pixart_generate run alone with seed + p, for DDIM, DPM-Solver++ (multistep history:
 *     trials must not step it) and DDPM with learned variance, with and without CFG; a trial
 *     step with garbage attention leaves no trace;
 *   - a V2 (DiT) / V1 (PixArt, CFG) plan searched on the engine and set on the context makes
 *     dfa_*_generate follow the search's trajectory of row 0;
 *   - `dfa calibrate` on DiT (--labels) and PixArt (--prompts): delta 0 all FULL, one seed one
 *     file, the plan loads and runs dfa_dit_generate; misuse refused. */
#include <string.h>
#include <unistd.h>

#include "attn/attn_state.h"
#include "cli/commands.h"
#include "mmdit_fixture.h"
#include "plan/engine_dit.h"
#include "plan/plan.h"
#include "plan/search.h"
#include "sample/sampler.h"
#include "test.h"

#define FX DFA_SOURCE_DIR "/tests/fixtures"
#define LT 5  /* PixArt text tokens */
#define CAP 24 /* PixArt caption_channels */

static dfa_ctx *make_ctx(void) {
    dfa_ctx *ctx = NULL;
    dfa_ctx_params p = dfa_ctx_default_params();
    p.n_threads = 1;
    if (dfa_ctx_init(&ctx, &p, NULL, 0) != DFA_OK) exit(1);
    return ctx;
}

typedef struct full_hook {
    dfa_ctx *ctx;
    const dfa_search_engine *e;
    int zero;
} full_hook;

static dfa_status hook_full(void *user, int layer, const void *q, const void *k, const void *v, void *out) {
    full_hook *h = user;
    (void)layer;
    const dfa_search_engine *e = h->e;
    if (h->zero) {
        memset(out, 0, (size_t)e->n_rows * dfa_layout_tokens(&e->layout) * e->n_heads * e->head_dim * sizeof(float));
        return DFA_OK;
    }
    return dfa_search_attn_cpu(h->ctx, &e->layout, e->n_rows, e->n_heads, e->head_dim, -1, q, k, v, out);
}

/* a model folder: transformer -> the fixture's, scheduler -> `sched` (a fixture folder holding
 * scheduler_config.json) */
static void make_dir(test_tmpdir *d, const char *fam, const char *sched) {
    char p[512], src[512];
    CHECK(tmpdir_make(d, "cal_dit") == 0);
    snprintf(src, sizeof src, FX "/%s/transformer", fam);
    CHECK(symlink(src, tmpdir_file(d, "transformer", p, sizeof p)) == 0);
    CHECK(symlink(sched, tmpdir_file(d, "scheduler", p, sizeof p)) == 0);
}

static void unmake_dir(test_tmpdir *d) {
    char p[512];
    unlink(tmpdir_file(d, "transformer", p, sizeof p));
    unlink(tmpdir_file(d, "scheduler", p, sizeof p));
    tmpdir_remove(d);
}

static void pe_random(dfa_pixart_embeds *pe, unsigned long long seed) {
    pe->n_txt = LT, pe->dim = CAP;
    float **all[4] = {&pe->embeds, &pe->mask, &pe->neg_embeds, &pe->neg_mask};
    const size_t sz[4] = {(size_t)LT * CAP, LT, (size_t)LT * CAP, LT};
    for (int i = 0; i < 4; i++) {
        *all[i] = malloc(sz[i] * sizeof(float));
        for (size_t j = 0; j < sz[i]; j++)
            (*all[i])[j] = (i & 1) ? (j + 1 < sz[i] || i == 3 ? 1.0f : 0.0f) : 2.0f * test_rng_uniform(&seed) - 1.0f;
    }
}

static void pe_free_test(dfa_pixart_embeds *pe) {
    free(pe->embeds);
    free(pe->mask);
    free(pe->neg_embeds);
    free(pe->neg_mask);
}

/* sched: scheduler folder; search: 0 none (FULL hook), 1 V2, 2 V1 */
static void dit_case(int pixart, const char *sched, float cfg, int steps, int search) {
    dfa_ctx *ctx = make_ctx();
    test_tmpdir d;
    make_dir(&d, pixart ? "pixart" : "dit", sched);
    dfa_dit *dm = NULL;
    dfa_pixart *pm = NULL;
    CHECKF((pixart ? dfa_pixart_load(ctx, FX "/pixart/transformer", &pm) : dfa_dit_load(ctx, FX "/dit/transformer", &dm))
               == DFA_OK, "%s", dfa_ctx_error(ctx));
    enum { P = 2, LH = 8, LW = 8 };
    const int labels[P] = {3, 7};
    dfa_pixart_embeds pe[P];
    for (int i = 0; i < P; i++) pe_random(&pe[i], 40 + i);
    dfa_engine_dit_params ep = {.steps = steps, .latent_h = LH, .latent_w = LW, .cfg_scale = cfg, .seed = 5};
    dfa_engine_dit *em = NULL;
    dfa_search_engine e;
    dfa_status s = pixart ? dfa_engine_pixart_init(ctx, pm, d.path, pe, P, &ep, &em, &e)
                          : dfa_engine_dit_init(ctx, dm, d.path, labels, P, &ep, &em, &e);
    CHECKF(s == DFA_OK, "%s", dfa_ctx_error(ctx));
    if (s != DFA_OK) goto out;
    CHECK(e.n_steps == steps && e.n_rows == (cfg > 1 ? 2 * P : P) && e.cfg == (cfg > 1) && e.layout.n_text == 0);
    CHECK(e.grid_h == 4 && e.grid_w == 4 && e.layout.n_vis == 16 && e.n_layers == 2 && e.n_heads == 2);
    dfa_search_plan sp;
    dfa_plan plan;
    int have_plan = 0;
    if (search) {
        const dfa_search_cand cands[2] = {{DFA_ATTN_FULL, -1}, {DFA_ATTN_CACHE, -1}};
        dfa_search_opts o = {.delta = search == 1 ? 2.0 : 0.5, .cands = cands, .n_cands = 2, .v1_window = -1};
        s = search == 1 ? dfa_search_v2(ctx, &e, &o, &sp) : dfa_search_v1(ctx, &e, &o, &sp);
        CHECKF(s == DFA_OK, "%s", dfa_ctx_error(ctx));
        if (s != DFA_OK) goto out;
        char cid[128];
        if (pixart)
            dfa_engine_pixart_config_id(pm, cid, sizeof cid);
        else
            dfa_engine_dit_config_id(dm, cid, sizeof cid);
        CHECK(dfa_search_plan_export(&sp, &e, &o, search == 2, pixart ? "pixart" : "dit", cid, &plan, &ctx->err) ==
              DFA_OK);
        dfa_search_plan_free(ctx, &sp);
        int nc = 0;
        for (size_t i = 0; i < (size_t)plan.n_steps * plan.n_layers * plan.n_heads; i++)
            nc += plan.method[i] != DFA_ATTN_FULL;
        CHECKF(nc > 0, "the searched plan compresses nothing (the test would not test)");
        CHECKF(dfa_attn_set_plan(ctx, &plan) == DFA_OK, "%s", dfa_ctx_error(ctx));
        have_plan = 1;
    } else {
        full_hook h = {.ctx = ctx, .e = &e};
        for (int step = 0; step < steps && s == DFA_OK; step++) {
            h.zero = 1;
            CHECK(e.run_step(e.user, step, 0, hook_full, &h, NULL) == DFA_OK);
            h.zero = 0;
            s = e.run_step(e.user, step, 1, hook_full, &h, NULL);
            CHECKF(s == DFA_OK, "%s", dfa_ctx_error(ctx));
        }
    }
    const size_t n = (size_t)4 * LH * LW;
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    for (int p = 0; p < (search ? 1 : P); p++) { /* with a plan: row 0 (the plan was searched on its batch) */
        fx_fill_nan(a, n);
        fx_fill_nan(b, n);
        CHECK(dfa_engine_dit_latents(ctx, em, p, a) == DFA_OK);
        dfa_dit_gen_params gp = {.steps = steps, .latent_h = LH, .latent_w = LW, .cfg_scale = cfg,
                                 .class_label = labels[p], .seed = ep.seed + (uint64_t)p};
        s = pixart ? dfa_pixart_generate(ctx, pm, d.path, &pe[p], &gp, b) : dfa_dit_generate(ctx, dm, d.path, &gp, b);
        CHECKF(s == DFA_OK, "%s", dfa_ctx_error(ctx));
        double err = fx_rel_err(a, b, n);
        CHECKF(err <= 1e-5, "%s %s cfg %g search %d row %d: engine vs generate rel err %.3g", pixart ? "pixart" : "dit",
               sched, cfg, search, p, err);
    }
    free(a);
    free(b);
    if (have_plan) {
        dfa_attn_clear_plan(ctx);
        dfa_plan_free(&plan);
    }
out:
    dfa_engine_dit_free(ctx, em);
    for (int i = 0; i < P; i++) pe_free_test(&pe[i]);
    dfa_dit_free(ctx, dm);
    dfa_pixart_free(ctx, pm);
    dfa_ctx_free(ctx);
    unmake_dir(&d);
}

static void test_dit_ddim_cfg(void) { dit_case(0, FX "/dit/scheduler", 4.0f, 4, 0); }
static void test_dit_dpm(void) { dit_case(0, FX "/dit/dpm", 1.0f, 4, 0); }
static void test_dit_ddpm_cfg(void) { dit_case(0, FX "/dit/ddpm", 3.0f, 3, 0); }
static void test_pixart_dpm_cfg(void) { dit_case(1, FX "/pixart/scheduler", 4.5f, 4, 0); }
static void test_pixart_ddpm_cfg(void) { dit_case(1, FX "/dit/ddpm", 4.5f, 3, 0); }
static void test_dit_replay_v2(void) { dit_case(0, FX "/dit/dpm", 4.0f, 4, 1); }
static void test_pixart_replay_v1(void) { dit_case(1, FX "/pixart/scheduler", 4.5f, 4, 2); }

static void test_errors(void) {
    dfa_ctx *ctx = make_ctx();
    dfa_dit *dm = NULL;
    CHECK(dfa_dit_load(ctx, FX "/dit/transformer", &dm) == DFA_OK);
    const int bad[2] = {1, 10};
    dfa_engine_dit_params ep = {.steps = 2, .latent_h = 8, .latent_w = 8};
    dfa_engine_dit *em = (dfa_engine_dit *)&ep;
    dfa_search_engine e;
    CHECK(dfa_engine_dit_init(ctx, dm, FX "/dit", bad, 2, &ep, &em, &e) == DFA_ERR_INVALID_ARG);
    CHECKF(strstr(dfa_ctx_error(ctx), "class label 10 out of range 0..9"), "%s", dfa_ctx_error(ctx));
    ep.latent_h = 7;
    CHECK(dfa_engine_dit_init(ctx, dm, FX "/dit", bad, 1, &ep, &em, &e) == DFA_ERR_INVALID_ARG);
    CHECK(em == NULL);
    dfa_dit_free(ctx, dm);
    dfa_ctx_free(ctx);
}

static int cal(int argc, const char **argv) { return cmd_calibrate(argc, (char **)argv); }

static int plan_compressed(const char *path, const char *family, int *n_steps) {
    dfa_plan p;
    dfa_error err = {0};
    if (dfa_plan_load(path, &p, &err) != DFA_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    int nc = 0;
    for (size_t i = 0; i < (size_t)p.n_steps * p.n_layers * p.n_heads; i++) nc += p.method[i] != DFA_ATTN_FULL;
    for (size_t i = 0; i < (size_t)p.n_steps * p.n_layers; i++) nc += p.asc[i];
    if (strcmp(p.family, family) != 0) nc = -1;
    *n_steps = p.n_steps;
    dfa_plan_free(&p);
    return nc;
}

static void test_cli(void) {
    test_tmpdir d;
    CHECK(tmpdir_make(&d, "cal_cli_dit") == 0);
    char p0[256], p1[256], p2[256], list[256], pe_path[256];
    tmpdir_file(&d, "p0.json", p0, sizeof p0);
    tmpdir_file(&d, "p1.json", p1, sizeof p1);
    tmpdir_file(&d, "p2.json", p2, sizeof p2);
    int steps = 0;
    const char *a0[] = {"calibrate", "-m", FX "/dit", "--labels", "1,5", "--delta", "0", "--method", "v1", "-W", "64",
                        "-H", "64", "--steps", "4", "-o", p0, "-q", "-t", "1"};
    CHECK(cal((int)(sizeof a0 / sizeof *a0), a0) == 0);
    CHECK(plan_compressed(p0, "dit", &steps) == 0 && steps == 4);
    const char *a1[] = {"calibrate", "-m", FX "/dit", "--n-prompts", "3", "--delta", "0.5", "--method", "v1", "-W",
                        "64", "-H", "64", "--steps", "4", "-o", p1, "-q", "-t", "1"};
    const int n1 = (int)(sizeof a1 / sizeof *a1);
    CHECK(cal(n1, a1) == 0);
    a1[n1 - 4] = p2;
    CHECK(cal(n1, a1) == 0);
    char *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    FILE *f = fopen(p1, "rb"), *g = fopen(p2, "rb");
    if (f && g) {
        x = calloc(1, 1 << 16), y = calloc(1, 1 << 16);
        nx = fread(x, 1, (1 << 16) - 1, f), ny = fread(y, 1, (1 << 16) - 1, g);
    }
    if (f) fclose(f);
    if (g) fclose(g);
    CHECK(x && y && nx == ny && nx > 0 && memcmp(x, y, nx) == 0);
    free(x);
    free(y);
    CHECK(plan_compressed(p1, "dit", &steps) > 0);
    /* `dfa generate` runs it and refuses it for another step count, resolution or CFG setting */
    char out[256];
    tmpdir_file(&d, "out.safetensors", out, sizeof out);
    const char *ga[] = {"generate", "-m", FX "/dit", "--class", "2", "-W", "64", "-H", "64", "--steps", "4", "--plan",
                       p1, "-o", out, "-t", "1"};
    const int ng = (int)(sizeof ga / sizeof *ga);
    CHECK(cmd_generate(ng, (char **)ga) == 0);
    ga[10] = "5";
    CHECK(cmd_generate(ng, (char **)ga) == 1);
    ga[10] = "4";
    ga[6] = "48";
    CHECK(cmd_generate(ng, (char **)ga) == 1);
    ga[6] = "64";
    const char *g1[] = {"generate", "-m", FX "/dit", "--class", "2", "-W", "64", "-H", "64", "--steps", "4",
                        "--plan", p1, "-o", out, "--cfg-scale", "1", "-t", "1"};
    CHECK(cmd_generate((int)(sizeof g1 / sizeof *g1), (char **)g1) == 1);
    /* the plan runs dfa_dit_generate (CFG, 4 steps, 8x8 latents) */
    dfa_ctx *ctx = make_ctx();
    dfa_dit *dm = NULL;
    CHECK(dfa_dit_load(ctx, FX "/dit/transformer", &dm) == DFA_OK);
    CHECKF(dfa_attn_load_plan(ctx, p1) == DFA_OK, "%s", dfa_ctx_error(ctx));
    float lat[4 * 8 * 8];
    dfa_dit_gen_params gp = {.steps = 4, .latent_h = 8, .latent_w = 8, .cfg_scale = 4.0f, .class_label = 2};
    CHECKF(dfa_dit_generate(ctx, dm, FX "/dit", &gp, lat) == DFA_OK, "%s", dfa_ctx_error(ctx));
    dfa_dit_free(ctx, dm);
    dfa_ctx_free(ctx);
    /* PixArt from a prompt list */
    dfa_pixart_embeds pe;
    pe_random(&pe, 77);
    const int64_t e3[3] = {1, LT, CAP}, m2[2] = {1, LT};
    dfa_st_item items[4] = {{"prompt_embeds", DFA_F32, 3, e3, pe.embeds},
                            {"prompt_attention_mask", DFA_F32, 2, m2, pe.mask},
                            {"negative_prompt_embeds", DFA_F32, 3, e3, pe.neg_embeds},
                            {"negative_prompt_attention_mask", DFA_F32, 2, m2, pe.neg_mask}};
    dfa_error err = {0};
    CHECK(dfa_st_write(tmpdir_file(&d, "pe.safetensors", pe_path, sizeof pe_path), items, 4, NULL, NULL, 0, &err) ==
          DFA_OK);
    pe_free_test(&pe);
    f = fopen(tmpdir_file(&d, "list.txt", list, sizeof list), "w");
    if (f) {
        fprintf(f, "pe.safetensors\n%s\n", pe_path);
        fclose(f);
    }
    const char *a2[] = {"calibrate", "-m", FX "/pixart", "--prompts", list, "--delta", "2", "-W", "64", "-H", "64",
                        "--steps", "3", "--methods", "cache,rs", "-o", p0, "-q", "-t", "1"};
    CHECK(cal((int)(sizeof a2 / sizeof *a2), a2) == 0);
    CHECK(plan_compressed(p0, "pixart", &steps) > 0 && steps == 3);
    /* defaults (no -W / -H / --steps): calibrate and generate agree (64 px = sample size, 50 steps) */
    const char *a3[] = {"calibrate", "-m", FX "/dit", "--labels", "4", "--delta", "0.2", "-o", p2, "-q", "-t", "1"};
    CHECK(cal((int)(sizeof a3 / sizeof *a3), a3) == 0);
    CHECK(plan_compressed(p2, "dit", &steps) >= 0 && steps == 50);
    const char *g3[] = {"generate", "-m", FX "/dit", "--class", "4", "--plan", p2, "-o", out, "-t", "1"};
    CHECK(cmd_generate((int)(sizeof g3 / sizeof *g3), (char **)g3) == 0);
    /* misuse */
    const char *b0[] = {"calibrate", "-m", FX "/dit", "--prompt-embeds", pe_path, "--delta", "1", "-o", p0, "-t", "1"};
    CHECK(cal((int)(sizeof b0 / sizeof *b0), b0) == 2);
    const char *b1[] = {"calibrate", "-m", FX "/pixart", "--labels", "1", "--delta", "1", "-o", p0, "-t", "1"};
    CHECK(cal((int)(sizeof b1 / sizeof *b1), b1) == 2);
    const char *b2[] = {"calibrate", "-m", FX "/dit", "--labels", "1,10", "--delta", "1", "-W", "64", "-H", "64",
                        "-o", p0, "-t", "1"};
    CHECK(cal((int)(sizeof b2 / sizeof *b2), b2) == 1);
    tmpdir_remove(&d);
}

int main(void) {
    RUN(test_dit_ddim_cfg);
    RUN(test_dit_dpm);
    RUN(test_dit_ddpm_cfg);
    RUN(test_pixart_dpm_cfg);
    RUN(test_pixart_ddpm_cfg);
    RUN(test_dit_replay_v2);
    RUN(test_pixart_replay_v1);
    RUN(test_errors);
    RUN(test_cli);
    return test_summary();
}
