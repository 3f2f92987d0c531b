/* test_calibrate.c - the FLUX / SD3 plan-search engines (plan/engine_mmdit.h) and `dfa calibrate`
 * on the tiny fixtures:
 *   - with every layer FULL (the hook runs the CPU reference attention), the batched engine's
 *     latents of prompt p equal dfa_flux_generate / dfa_sd3_generate run alone with seed + p
 *     (FLUX with guidance, with and without true CFG; SD3 with CFG), and a trial step (commit 0)
 *     changes nothing;
 *   - a searched plan (V2 with FLUX, V1 with SD3 + CFG, compressed) run by `dfa generate --plan`
 *     for prompt 0 reproduces the search's own trajectory of prompt 0;
 *   - calibrate: delta 0 gives an all-FULL plan; the same seed gives the same file (V1 and V2);
 *     the plans record model, config, grid, steps and run through generate; generate refuses
 *     them for another resolution, step count or model;
 *   - SD3.5 (sd3_tiny: dual attention in block 0, its image-only attn2 is attention layer 1):
 *     the engine lists layer 1's layout (n_text 0); V1 and V2 plans compress layer 1, record its
 *     layout and replay through generate; calibrate's plans load and run;
 *   - errors: prompts of different text lengths, bad flags. */
#include <string.h>
#include <unistd.h>

#include "attn/attn_state.h"
#include "cli/commands.h"
#include "mmdit_fixture.h"
#include "models/mmdit_pipe.h"
#include "plan/cost.h"
#include "plan/engine_mmdit.h"
#include "plan/plan.h"
#include "plan/search.h"
#include "test.h"
#include "text_model_fixture.h"

#define FX DFA_SOURCE_DIR "/tests/fixtures"
#define NT 7  /* text tokens of the fixtures */
#define JD 24 /* joint_attention_dim */
#define PD 12 /* pooled_projection_dim */

static dfa_ctx *make_ctx(void) {
    dfa_ctx *ctx = NULL;
    dfa_ctx_params p = dfa_ctx_default_params();
    p.n_threads = 1; /* the tiny models are fastest on one thread */
    if (dfa_ctx_init(&ctx, &p, NULL, 0) != DFA_OK) exit(1);
    return ctx;
}

/* random prompt embeddings (malloc'ed; with negatives when neg) */
static void pe_random(dfa_prompt_embeds *pe, int n_txt, int neg, unsigned long long seed) {
    memset(pe, 0, sizeof *pe);
    pe->n_txt = n_txt, pe->dim = JD, pe->pooled_dim = PD;
    float **all[4] = {&pe->embeds, &pe->pooled, &pe->neg_embeds, &pe->neg_pooled};
    const size_t sz[4] = {(size_t)n_txt * JD, PD, (size_t)n_txt * JD, PD};
    for (int i = 0; i < (neg ? 4 : 2); i++) {
        *all[i] = malloc(sz[i] * sizeof(float));
        for (size_t j = 0; j < sz[i]; j++) (*all[i])[j] = 2.0f * test_rng_uniform(&seed) - 1.0f;
    }
}

static void pe_free_test(dfa_prompt_embeds *pe) {
    free(pe->embeds);
    free(pe->pooled);
    free(pe->neg_embeds);
    free(pe->neg_pooled);
}

static int pe_write(const dfa_prompt_embeds *pe, const char *path) {
    const int64_t se[3] = {1, pe->n_txt, pe->dim}, sp[2] = {1, pe->pooled_dim};
    dfa_st_item it[4] = {
        {.name = "prompt_embeds", .dtype = DFA_F32, .ndim = 3, .shape = se, .data = pe->embeds},
        {.name = "pooled_prompt_embeds", .dtype = DFA_F32, .ndim = 2, .shape = sp, .data = pe->pooled},
        {.name = "negative_prompt_embeds", .dtype = DFA_F32, .ndim = 3, .shape = se, .data = pe->neg_embeds},
        {.name = "negative_pooled_prompt_embeds", .dtype = DFA_F32, .ndim = 2, .shape = sp, .data = pe->neg_pooled},
    };
    dfa_error err = {0};
    int rc = dfa_st_write(path, it, pe->neg_embeds ? 4 : 2, NULL, NULL, 0, &err) == DFA_OK ? 0 : -1;
    if (rc) fprintf(stderr, "%s\n", err.msg);
    return rc;
}

/* ---- the engine with FULL attention equals the generate loops ---- */

typedef struct full_hook {
    dfa_ctx *ctx;
    const dfa_search_engine *e;
    int calls, zero; /* zero: write zeros instead (a trial that must not stick) */
} full_hook;

static dfa_status hook_full(void *user, int layer, const void *q, const void *k, const void *v, void *out) {
    full_hook *h = user;
    (void)layer;
    h->calls++;
    const dfa_search_engine *e = h->e;
    if (h->zero) {
        memset(out, 0, (size_t)e->n_rows * dfa_layout_tokens(&e->layout) * e->n_heads * e->head_dim * sizeof(float));
        return DFA_OK;
    }
    return dfa_search_attn_cpu(h->ctx, &e->layout, e->n_rows, e->n_heads, e->head_dim, -1, q, k, v, out);
}

static void engine_full_case(int sd3, float cfg) {
    dfa_ctx *ctx = make_ctx();
    dfa_flux *fm = NULL;
    dfa_sd3 *sm = NULL;
    const char *dir = sd3 ? FX "/sd3_plain" : FX "/flux_tiny";
    CHECKF((sd3 ? dfa_sd3_load(ctx, dir, &sm) : dfa_flux_load(ctx, dir, &fm)) == DFA_OK, "%s", dfa_ctx_error(ctx));
    dfa_flow_config fc;
    CHECKF(dfa_flow_config_read(ctx, dir, &fc) == DFA_OK, "%s", dfa_ctx_error(ctx));
    enum { P = 2, S = 3, LH = 12, LW = 16 };
    dfa_prompt_embeds pe[P];
    for (int i = 0; i < P; i++) pe_random(&pe[i], NT, cfg > 1.0f, 100 + i);
    dfa_engine_mmdit_params ep = {.steps = S, .latent_h = LH, .latent_w = LW, .cfg_scale = cfg,
                                  .guidance = 3.5f, .seed = 11};
    dfa_engine_mmdit *em = NULL;
    dfa_search_engine e;
    dfa_status s = sd3 ? dfa_engine_sd3_init(ctx, sm, &fc, pe, P, &ep, &em, &e)
                       : dfa_engine_flux_init(ctx, fm, &fc, pe, P, &ep, &em, &e);
    CHECKF(s == DFA_OK, "%s", dfa_ctx_error(ctx));
    if (s != DFA_OK) goto out;
    CHECK(e.n_steps == S && e.n_rows == (cfg > 1 ? 2 * P : P) && e.cfg == (cfg > 1) && e.n_heads == 2 && e.head_dim == 16);
    CHECK(e.n_layers == (sd3 ? 2 : 4) && e.layout.n_text == NT && e.layout.text_first == !sd3);
    CHECK(e.grid_h == 6 && e.grid_w == 8 && e.layout.n_vis == 48);
    full_hook h = {.ctx = ctx, .e = &e};
    float *mo = malloc(e.out_numel * sizeof(float)), *mo2 = malloc(e.out_numel * sizeof(float));
    fx_fill_nan(mo, e.out_numel);
    for (int step = 0; step < S; step++) {
        h.zero = 1; /* a trial with garbage attention: no trace afterwards */
        CHECK(e.run_step(e.user, step, 0, hook_full, &h, NULL) == DFA_OK);
        h.zero = 0;
        CHECK(e.run_step(e.user, step, 0, hook_full, &h, step == 0 ? mo : NULL) == DFA_OK);
        CHECK(dfa_engine_mmdit_step(em) == step);
        CHECK(e.run_step(e.user, step, 1, hook_full, &h, step == 0 ? mo2 : NULL) == DFA_OK);
        CHECK(dfa_engine_mmdit_step(em) == step + 1);
    }
    CHECK(h.calls == 3 * S * e.n_layers);
    CHECK(memcmp(mo, mo2, e.out_numel * sizeof(float)) == 0); /* trial and commit see the same step */
    int finite = 1;
    for (size_t i = 0; i < e.out_numel; i++) finite &= isfinite(mo[i]) != 0;
    CHECK(finite);
    CHECK(e.run_step(e.user, 0, 1, hook_full, &h, NULL) == DFA_ERR_INVALID_ARG); /* steps in order */
    CHECK(dfa_attn_get_override(ctx, NULL) == NULL); /* removed after every step */
    const size_t n = (size_t)4 * LH * LW;
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    for (int p = 0; p < P; p++) {
        fx_fill_nan(a, n);
        fx_fill_nan(b, n);
        CHECK(dfa_engine_mmdit_latents(ctx, em, p, a) == DFA_OK);
        dfa_mmdit_gen_params gp = {.steps = S, .latent_h = LH, .latent_w = LW, .cfg_scale = ep.cfg_scale,
                                   .guidance = 3.5f, .seed = ep.seed + (uint64_t)p};
        s = sd3 ? dfa_sd3_generate(ctx, sm, &fc, &pe[p], &gp, b) : dfa_flux_generate(ctx, fm, &fc, &pe[p], &gp, b);
        CHECKF(s == DFA_OK, "%s", dfa_ctx_error(ctx));
        double err = fx_rel_err(a, b, n);
        CHECKF(err <= 1e-5, "%s cfg %g prompt %d: engine vs generate rel err %.3g", sd3 ? "sd3" : "flux", cfg, p, err);
    }
    free(a);
    free(b);
    free(mo);
    free(mo2);
out:
    dfa_engine_mmdit_free(ctx, em);
    for (int i = 0; i < P; i++) pe_free_test(&pe[i]);
    dfa_flux_free(ctx, fm);
    dfa_sd3_free(ctx, sm);
    dfa_ctx_free(ctx);
}

static void test_engine_flux_full(void) { engine_full_case(0, 1.0f); }
static void test_engine_flux_true_cfg(void) { engine_full_case(0, 3.0f); }
static void test_engine_sd3_full(void) { engine_full_case(1, 4.5f); }

static void test_engine_errors(void) {
    dfa_ctx *ctx = make_ctx();
    dfa_flux *fm = NULL;
    dfa_sd3 *sm = NULL;
    dfa_flow_config fc = dfa_flow_config_default();
    CHECK(dfa_flux_load(ctx, FX "/flux_tiny", &fm) == DFA_OK);
    CHECK(dfa_sd3_load(ctx, FX "/sd3_tiny", &sm) == DFA_OK); /* SD3.5-style: dual attention in block 0 */
    dfa_prompt_embeds pe[2];
    pe_random(&pe[0], NT, 0, 1);
    pe_random(&pe[1], NT + 1, 0, 2);
    dfa_engine_mmdit_params ep = {.steps = 2, .latent_h = 12, .latent_w = 16, .guidance = 3.5f};
    dfa_engine_mmdit *em = (dfa_engine_mmdit *)&ep; /* must come back NULL */
    dfa_search_engine e;
    CHECK(dfa_engine_flux_init(ctx, fm, &fc, pe, 2, &ep, &em, &e) == DFA_ERR_SHAPE && em == NULL);
    CHECKF(strstr(dfa_ctx_error(ctx), "prompt 1 has 8 text tokens, prompt 0 has 7"), "%s", dfa_ctx_error(ctx));
    /* SD3.5 dual attention: layer 1 (block 0's attn2) is image only */
    CHECKF(dfa_engine_sd3_init(ctx, sm, &fc, pe, 1, &ep, &em, &e) == DFA_OK, "%s", dfa_ctx_error(ctx));
    CHECK(e.n_layers == 4 && e.layer_layout != NULL);
    for (int l = 0; e.layer_layout && l < 4; l++)
        CHECKF(e.layer_layout[l].n_text == (l == 1 ? 0 : NT) && e.layer_layout[l].n_vis == 48, "layer %d", l);
    dfa_engine_mmdit_free(ctx, em);
    em = (dfa_engine_mmdit *)&ep;
    ep.latent_h = 13;
    CHECK(dfa_engine_flux_init(ctx, fm, &fc, pe, 1, &ep, &em, &e) == DFA_ERR_INVALID_ARG);
    for (int i = 0; i < 2; i++) pe_free_test(&pe[i]);
    dfa_flux_free(ctx, fm);
    dfa_sd3_free(ctx, sm);
    dfa_ctx_free(ctx);
}

/* ---- a searched plan, replayed by dfa generate, follows the search's trajectory ---- */

static int count_compressed(const dfa_plan *p) {
    int n = 0;
    size_t sl = (size_t)p->n_steps * p->n_layers;
    for (size_t i = 0; i < sl * p->n_heads; i++) n += p->method[i] != DFA_ATTN_FULL;
    for (size_t i = 0; i < sl; i++) n += p->asc[i];
    return n;
}

/* layers of the plan compressed at some step (method or ASC), as a bit mask */
static unsigned compressed_layers(const dfa_plan *p) {
    unsigned m = 0;
    for (int s = 0; s < p->n_steps; s++)
        for (int l = 0; l < p->n_layers && l < 32; l++) {
            int c = p->asc[(size_t)s * p->n_layers + l];
            for (int h = 0; h < p->n_heads; h++) c |= p->method[dfa_plan_index(p, s, l, h)] != DFA_ATTN_FULL;
            if (c) m |= 1u << l;
        }
    return m;
}

/* sd3: 0 FLUX (V2), 1 SD3 (V1 unless v2); dual: sd3_tiny (SD3.5 dual attention) instead of sd3_plain */
/* band: DFA_BAND_PLAIN runs V1 (on FLUX too) with the plain band at window 0 (the default
 * window covers the tiny model's 2 tiles: FULL), so that generate must run the plan's band to
 * replay the search's trajectory */
static void replay_case_band(int sd3, int dual, int v2, int band) {
    dfa_ctx *ctx = make_ctx();
    test_tmpdir d;
    CHECK(tmpdir_make(&d, band ? (sd3 ? "cal_replay_sd3plain" : "cal_replay_fluxplain")
                      : sd3 ? (dual ? (v2 ? "cal_replay_sd35v2" : "cal_replay_sd35v1") : "cal_replay_sd3")
                            : "cal_replay_flux") == 0);
    const char *dir = sd3 ? (dual ? FX "/sd3_tiny" : FX "/sd3_plain") : FX "/flux_tiny";
    const int v1 = (sd3 && !v2) || band;
    dfa_flux *fm = NULL;
    dfa_sd3 *sm = NULL;
    CHECK((sd3 ? dfa_sd3_load(ctx, dir, &sm) : dfa_flux_load(ctx, dir, &fm)) == DFA_OK);
    dfa_flow_config fc;
    CHECK(dfa_flow_config_read(ctx, dir, &fc) == DFA_OK);
    enum { P = 2, S = 4, LH = 12, LW = 16 };
    dfa_prompt_embeds pe[P];
    for (int i = 0; i < P; i++) pe_random(&pe[i], NT, sd3, 200 + i);
    char pe0[256], plan_path[256], out[256];
    tmpdir_file(&d, "pe0.safetensors", pe0, sizeof pe0);
    tmpdir_file(&d, "plan.json", plan_path, sizeof plan_path);
    tmpdir_file(&d, "out.safetensors", out, sizeof out);
    CHECK(pe_write(&pe[0], pe0) == 0);
    dfa_engine_mmdit_params ep = {.steps = S, .latent_h = LH, .latent_w = LW, .cfg_scale = sd3 ? 5.0f : 1.0f,
                                  .guidance = 3.5f, .seed = 21};
    dfa_engine_mmdit *em = NULL;
    dfa_search_engine e;
    CHECK((sd3 ? dfa_engine_sd3_init(ctx, sm, &fc, pe, P, &ep, &em, &e)
               : dfa_engine_flux_init(ctx, fm, &fc, pe, P, &ep, &em, &e)) == DFA_OK);
    const dfa_search_cand cands[3] = {{DFA_ATTN_FULL, -1}, {DFA_ATTN_CACHE, -1}, {DFA_ATTN_ARROW, 0}};
    dfa_search_opts o = {.delta = v1 ? 0.5 : 2.0, .c = 0, .cands = cands, .n_cands = dual ? 3 : 2,
                         .v1_window = band ? 0 : -1, .band = band};
    dfa_search_plan sp;
    dfa_plan plan;
    dfa_status s = v1 ? dfa_search_v1(ctx, &e, &o, &sp) : dfa_search_v2(ctx, &e, &o, &sp);
    CHECKF(s == DFA_OK, "%s", dfa_ctx_error(ctx));
    if (dual && s == DFA_OK) { /* modelled cost of each (step, layer): with that layer's own layout */
        dfa_cost_table ct;
        dfa_cost_table_default(&ct);
        const int H = e.n_heads, R = e.n_rows;
        for (int st = 0; st < S; st++)
            for (int l = 0; l < e.n_layers; l++) {
                const size_t sl = (size_t)st * e.n_layers + l;
                const dfa_attn_layout *LL = dfa_search_engine_layer_layout(&e, l);
                double want = 0;
                if (v1) { /* the strategies' model (search_v1.c strategy_cost) */
                    double full = dfa_cost_head_ns(&ct, LL, e.head_dim, DFA_ATTN_FULL, -1);
                    double copy = dfa_cost_head_ns(&ct, LL, e.head_dim, DFA_ATTN_CACHE, -1);
                    int w = sp.window[sl * H] >= 0 ? sp.window[sl * H] : 0;
                    double rs = dfa_cost_head_ns(&ct, LL, e.head_dim, DFA_ATTN_ARROW_RS, w);
                    switch (sp.v1[sl]) {
                    case DFA_V1_AST: want = R * H * copy; break;
                    case DFA_V1_WARS: want = R * H * rs; break;
                    case DFA_V1_WARS_ASC: want = R / 2 * H * (rs + copy); break;
                    case DFA_V1_ASC: want = R / 2 * H * (full + copy); break;
                    default: want = R * H * full; break;
                    }
                } else { /* V2: the chosen heads' costs */
                    for (int h = 0; h < H; h++)
                        want += R * dfa_cost_head_ns(&ct, LL, e.head_dim, (dfa_attn_method)sp.method[sl * H + h],
                                                     sp.window[sl * H + h]);
                }
                CHECKF(fabs(sp.cost_ns[sl] - want) <= 1e-9 * want, "step %d layer %d: modelled cost %g, want %g", st,
                       l, sp.cost_ns[sl], want);
            }
    }
    char cid[128];
    if (sd3)
        dfa_engine_sd3_config_id(sm, cid, sizeof cid);
    else
        dfa_engine_flux_config_id(fm, cid, sizeof cid);
    CHECKF(dfa_search_plan_export(&sp, &e, &o, v1, sd3 ? "sd3" : "flux", cid, &plan, &ctx->err) == DFA_OK, "%s",
           dfa_ctx_error(ctx));
    const int nc = count_compressed(&plan);
    CHECK(plan.layout.band == band);
    if (band) { /* WA-RS heads under the plain band, or the case tests nothing about the band */
        int rs = 0;
        for (size_t i = 0; i < (size_t)plan.n_steps * plan.n_layers * plan.n_heads; i++)
            rs += plan.method[i] == DFA_ATTN_ARROW_RS;
        CHECKF(rs > 0, "%s plain: no WA-RS head in the plan", sd3 ? "sd3" : "flux");
    }
    CHECKF(nc > 0, "%s: the searched plan compresses nothing (the test would not test)", sd3 ? "sd3" : "flux");
    if (dual) { /* the attn2 layer's layout is recorded, and the plan compresses that layer */
        CHECK(dfa_plan_n_layer_layouts(&plan) == 1 && dfa_plan_layer_layout(&plan, 1)->n_text == 0);
        CHECKF(compressed_layers(&plan) & 2u, "sd3.5 %s: attn2 (layer 1) not compressed (layers 0x%x)",
               v1 ? "v1" : "v2", compressed_layers(&plan));
    }
    CHECK(dfa_plan_save(plan_path, &plan, &ctx->err) == DFA_OK);
    const size_t n = (size_t)4 * LH * LW;
    float *a = malloc(n * sizeof(float));
    CHECK(dfa_engine_mmdit_latents(ctx, em, 0, a) == DFA_OK);
    const char *argv[] = {"generate", "-m", dir, "--prompt-embeds", pe0, "-o", out, "-W", "128", "-H", "96",
                          "--steps", "4", "--seed", "21", "--plan", plan_path, "--cfg-scale", sd3 ? "5" : "1",
                          "-t", "1"};
    CHECK(cmd_generate((int)(sizeof argv / sizeof *argv), (char **)argv) == 0);
    dfa_safetensors *st = NULL;
    dfa_error err = {0};
    if (dfa_st_open(&st, out, &err) == DFA_OK) {
        size_t m = 0;
        float *b = fx_load(st, "latents", &m);
        CHECK(b && m == n);
        if (b && m == n) {
            double re = fx_rel_err(b, a, n);
            CHECKF(re <= 1e-5, "%s%s: generate --plan vs the search trajectory: rel err %.3g (%d compressed entries)",
                   sd3 ? (dual ? "sd3.5" : "sd3") : "flux", v1 ? " v1" : " v2", re, nc);
        }
        free(b);
        dfa_st_close(st);
    } else {
        CHECKF(0, "%s", err.msg);
    }
    free(a);
    dfa_plan_free(&plan);
    dfa_search_plan_free(ctx, &sp);
    dfa_engine_mmdit_free(ctx, em);
    for (int i = 0; i < P; i++) pe_free_test(&pe[i]);
    dfa_flux_free(ctx, fm);
    dfa_sd3_free(ctx, sm);
    dfa_ctx_free(ctx);
    tmpdir_remove(&d);
}

static void replay_case_ex(int sd3, int dual, int v2) { replay_case_band(sd3, dual, v2, DFA_BAND_ARROW); }
static void test_replay_flux_v2(void) { replay_case_ex(0, 0, 1); }
static void test_replay_flux_v1_plain(void) { replay_case_band(0, 0, 0, DFA_BAND_PLAIN); }
static void test_replay_sd3_v1_plain(void) { replay_case_band(1, 0, 0, DFA_BAND_PLAIN); }
static void test_replay_sd3_v1(void) { replay_case_ex(1, 0, 0); }
static void test_replay_sd35_v1(void) { replay_case_ex(1, 1, 0); }
static void test_replay_sd35_v2(void) { replay_case_ex(1, 1, 1); }

/* ---- the CLI ---- */

static int cal(int argc, const char **argv) { return cmd_calibrate(argc, (char **)argv); }
static int gen(int argc, const char **argv) { return cmd_generate(argc, (char **)argv); }

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) n = 0;
    if (s) s[n] = 0;
    fclose(f);
    return s;
}

static int same_file(const char *a, const char *b) {
    char *x = slurp(a), *y = slurp(b);
    int same = x && y && strcmp(x, y) == 0;
    free(x);
    free(y);
    return same;
}

static void cli_case_ex(int sd3, int dual) {
    test_tmpdir d;
    CHECK(tmpdir_make(&d, sd3 ? (dual ? "cal_cli_sd35" : "cal_cli_sd3") : "cal_cli_flux") == 0);
    const char *dir = sd3 ? (dual ? FX "/sd3_tiny" : FX "/sd3_plain") : FX "/flux_tiny";
    char list[256], pe_path[3][256], p0[256], p1[256], p2[256], p3[256], out[256];
    FILE *f = fopen(tmpdir_file(&d, "prompts.txt", list, sizeof list), "w");
    CHECK(f != NULL);
    if (!f) return;
    fprintf(f, "# calibration prompts\n\n");
    for (int i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof name, "p%d.safetensors", i);
        tmpdir_file(&d, name, pe_path[i], sizeof pe_path[i]);
        dfa_prompt_embeds pe;
        pe_random(&pe, NT, sd3, 300 + i);
        CHECK(pe_write(&pe, pe_path[i]) == 0);
        pe_free_test(&pe);
        fprintf(f, "%s\n", i == 1 ? name : pe_path[i]); /* one relative to the list's folder */
    }
    fclose(f);
    tmpdir_file(&d, "p0.json", p0, sizeof p0);
    tmpdir_file(&d, "p1.json", p1, sizeof p1);
    tmpdir_file(&d, "p2.json", p2, sizeof p2);
    tmpdir_file(&d, "p3.json", p3, sizeof p3);
    tmpdir_file(&d, "out.safetensors", out, sizeof out);
    /* delta 0: all FULL, whatever the candidates */
    const char *a0[] = {"calibrate", "-m", dir, "--prompts", list, "--n-prompts", "2", "--method", "v2", "--delta",
                        "0", "--methods", "arrow,cache,rs", "-W", "128", "-H", "96", "--steps", "3", "-o", p0, "-q",
                        "-t", "1"};
    CHECK(cal((int)(sizeof a0 / sizeof *a0), a0) == 0);
    dfa_plan p;
    dfa_error err = {0};
    CHECKF(dfa_plan_load(p0, &p, &err) == DFA_OK, "%s", err.msg);
    if (err.msg[0] == 0) {
        CHECK(count_compressed(&p) == 0);
        CHECK(strcmp(p.family, sd3 ? "sd3" : "flux") == 0 && strncmp(p.config_id, sd3 ? "sd3:" : "flux:", 4) == 0);
        CHECK(p.n_steps == 3 && p.grid_h == 6 && p.grid_w == 8 && p.layout.n_text == NT && p.cfg == sd3);
        CHECK(strcmp(p.search, "v2") == 0 && p.delta == 0);
        dfa_plan_free(&p);
    }
    /* V1 and V2 with a budget: twice each, same files */
    for (int v1 = 0; v1 < 2; v1++) {
        const char *a1[] = {"calibrate", "-m", dir, "--prompts", list, "--method", v1 ? "v1" : "v2", "--delta",
                            v1 ? "0.5" : "2", "--methods", "cache,rs", "-W", "128", "-H", "96", "--steps", "3",
                            "--seed", "4", "-o", p1, "-q", "-t", "1"};
        const int n1 = (int)(sizeof a1 / sizeof *a1);
        CHECK(cal(n1, a1) == 0);
        a1[n1 - 4] = p2;
        CHECK(cal(n1, a1) == 0);
        CHECKF(same_file(p1, p2), "%s: calibrate with one seed gave two plans", v1 ? "v1" : "v2");
        CHECKF(dfa_plan_load(p1, &p, &err) == DFA_OK, "%s", err.msg);
        if (!err.msg[0]) {
            CHECK(strcmp(p.search, v1 ? "v1" : "v2") == 0);
            CHECKF(count_compressed(&p) > 0, "%s plan compresses nothing", v1 ? "v1" : "v2");
            if (dual)
                CHECK(dfa_plan_n_layer_layouts(&p) == 1 && dfa_plan_layer_layout(&p, 1)->n_text == 0 &&
                      dfa_plan_layer_layout(&p, 1)->n_vis == 48);
            else
                CHECK(dfa_plan_n_layer_layouts(&p) == 0 && p.layer_layout == NULL);
            dfa_plan_free(&p);
        }
        /* runs through generate; refused for another resolution, step count, model */
        const char *g[] = {"generate", "-m", dir, "--prompt-embeds", pe_path[0], "-o", out, "-W", "128", "-H", "96",
                           "--steps", "3", "--plan", p1, "-t", "1"};
        const int ng = (int)(sizeof g / sizeof *g);
        CHECK(gen(ng, g) == 0);
        g[10] = "112"; /* -H */
        CHECK(gen(ng, g) == 1);
        g[10] = "96";
        g[12] = "4"; /* --steps */
        CHECK(gen(ng, g) == 1);
        g[12] = "3";
        g[2] = sd3 ? FX "/flux_tiny" : FX "/sd3_plain";
        g[4] = sd3 ? FX "/flux_tiny/io.safetensors" : FX "/sd3_plain/io.safetensors";
        CHECK(gen(ng, g) == 1);
        if (dual) { /* SD3.5 plan on SD3.0 and back */
            g[2] = FX "/sd3_plain", g[4] = FX "/sd3_plain/io.safetensors";
            CHECK(gen(ng, g) == 1);
        }
    }
    /* another seed: a plan still, made for the same target */
    const char *a3[] = {"calibrate", "-m", dir, "--prompt-embeds", pe_path[2], "--delta", "1", "-W", "128", "-H", "96",
                        "--steps", "2", "--seed", "9", "-o", p3, "-q", "-t", "1"};
    CHECK(cal((int)(sizeof a3 / sizeof *a3), a3) == 0);
    CHECKF(dfa_plan_load(p3, &p, &err) == DFA_OK, "%s", err.msg);
    if (!err.msg[0]) {
        CHECK(p.n_steps == 2);
        dfa_plan_free(&p);
    }
    tmpdir_remove(&d);
}

static void test_cli_flux(void) { cli_case_ex(0, 0); }
static void test_cli_sd3(void) { cli_case_ex(1, 0); }
static void test_cli_sd35(void) { cli_case_ex(1, 1); }

/* MODEL/dfa.json: calibrate and generate take the same defaults (size, steps), so the plan fits */
static void test_cli_model_defaults(void) {
    test_tmpdir d;
    CHECK(tmpdir_make(&d, "cal_defaults") == 0);
    char p[256], plan[256], out[256];
    CHECK(symlink(FX "/flux_tiny/transformer", tmpdir_file(&d, "transformer", p, sizeof p)) == 0);
    CHECK(symlink(FX "/flux_tiny/scheduler", tmpdir_file(&d, "scheduler", p, sizeof p)) == 0);
    const char *js = "{\"width\": 128, \"height\": 96, \"num_inference_steps\": 3}";
    CHECK(tmpdir_write(&d, "dfa.json", js, strlen(js), p, sizeof p) != NULL);
    tmpdir_file(&d, "plan.json", plan, sizeof plan);
    tmpdir_file(&d, "out.safetensors", out, sizeof out);
    const char *a[] = {"calibrate", "-m", d.path, "--prompt-embeds", FX "/flux_tiny/io.safetensors", "--delta", "1",
                       "-o", plan, "-q", "-t", "1"};
    CHECK(cal((int)(sizeof a / sizeof *a), a) == 0);
    dfa_plan pl;
    dfa_error err = {0};
    CHECKF(dfa_plan_load(plan, &pl, &err) == DFA_OK, "%s", err.msg);
    if (!err.msg[0]) {
        CHECK(pl.n_steps == 3 && pl.grid_h == 6 && pl.grid_w == 8);
        dfa_plan_free(&pl);
    }
    const char *g[] = {"generate", "-m", d.path, "--prompt-embeds", FX "/flux_tiny/io.safetensors", "--plan", plan,
                       "-o", out, "-t", "1"};
    CHECK(gen((int)(sizeof g / sizeof *g), g) == 0);
    unlink(tmpdir_file(&d, "transformer", p, sizeof p));
    unlink(tmpdir_file(&d, "scheduler", p, sizeof p));
    tmpdir_remove(&d);
}

/* --prompts with text prompts (PixArt with its default CFG, FLUX): the same plan as the list of
 * `dfa encode` files of those prompts; a list mixing both kinds is refused */
static void prompt_text_case(int pixart) {
    test_tmpdir d;
    CHECK(tmpdir_make(&d, pixart ? "cal_text_pixart" : "cal_text_flux") == 0);
    CHECK((pixart ? text_model_pixart(&d) : text_model_flux(&d)) == 0);
    static const char *const prompts[2] = {"a red cube on a table", "two cats"};
    char pe[2][256], txt[256], emb[256], mixed[256], p1[256], p2[256];
    FILE *ft = fopen(tmpdir_file(&d, "text.txt", txt, sizeof txt), "w");
    FILE *fe = fopen(tmpdir_file(&d, "embeds.txt", emb, sizeof emb), "w");
    FILE *fm = fopen(tmpdir_file(&d, "mixed.txt", mixed, sizeof mixed), "w");
    CHECK(ft && fe && fm);
    if (!ft || !fe || !fm) return;
    fprintf(ft, "# text prompts\n\n");
    for (int i = 0; i < 2; i++) {
        char name[32];
        snprintf(name, sizeof name, "p%d.safetensors", i);
        tmpdir_file(&d, name, pe[i], sizeof pe[i]);
        const char *enc[] = {"encode", "-m", d.path, "-p", prompts[i], "-o", pe[i], "--max-sequence-length", "16",
                             "-t", "1", "-n", ""};
        CHECK(cmd_encode(pixart ? 13 : 11, (char **)enc) == 0);
        fprintf(ft, "%s\n", prompts[i]);
        fprintf(fe, "%s\n", pe[i]);
        fprintf(fm, "%s\n", i ? prompts[i] : pe[i]);
    }
    fclose(ft), fclose(fe), fclose(fm);
    tmpdir_file(&d, "p1.json", p1, sizeof p1);
    tmpdir_file(&d, "p2.json", p2, sizeof p2);
    const char *a[] = {"calibrate", "-m", d.path, "--prompts", txt, "--delta", "4", "-W", "64", "-H", "64",
                       "--steps", "2", "--max-sequence-length", "16", "-o", p1, "-q", "-t", "1"};
    const int na = (int)(sizeof a / sizeof *a);
    CHECK(cal(na, a) == 0);
    a[4] = emb;
    a[16] = p2;
    CHECK(cal(na, a) == 0);
    CHECKF(same_file(p1, p2), "%s: text prompts and their embeddings files gave two plans", pixart ? "pixart" : "flux");
    dfa_plan p;
    dfa_error err = {0};
    CHECKF(dfa_plan_load(p1, &p, &err) == DFA_OK, "%s", err.msg);
    if (!err.msg[0]) {
        CHECK(p.layout.n_text == (pixart ? 0 : 16) && p.cfg == pixart); /* PixArt: text in cross-attention */
        CHECKF(count_compressed(&p) > 0, "the plan compresses nothing: comparing it says little");
        dfa_plan_free(&p);
    }
    a[4] = mixed;
    CHECK(cal(na, a) == 1);
    text_model_cleanup(&d);
    tmpdir_remove(&d);
}

static void test_cli_prompt_text_pixart(void) { prompt_text_case(1); }
static void test_cli_prompt_text_flux(void) { prompt_text_case(0); }

/* calibrate --method v1 --band plain writes "band": "plain" and generate runs it; refused
 * with V2 or an unknown kind */
static void test_cli_band(void) {
    test_tmpdir d;
    CHECK(tmpdir_make(&d, "cal_cli_band") == 0);
    char plan[256], out[256];
    tmpdir_file(&d, "plain.json", plan, sizeof plan);
    tmpdir_file(&d, "out.safetensors", out, sizeof out);
    const char *a[] = {"calibrate", "-m", FX "/flux_tiny", "--prompt-embeds", FX "/flux_tiny/io.safetensors",
                       "--method", "v1", "--band", "plain", "--window", "0", "--delta", "0.5", "-W", "128", "-H",
                       "96", "--steps", "3", "-o", plan, "-q", "-t", "1"};
    const int na = (int)(sizeof a / sizeof *a);
    CHECK(cal(na, a) == 0);
    dfa_plan p;
    dfa_error err = {0};
    CHECKF(dfa_plan_load(plan, &p, &err) == DFA_OK, "%s", err.msg);
    if (!err.msg[0]) {
        CHECK(p.layout.band == DFA_BAND_PLAIN && strcmp(p.search, "v1") == 0);
        dfa_plan_free(&p);
    }
    const char *g[] = {"generate", "-m", FX "/flux_tiny", "--prompt-embeds", FX "/flux_tiny/io.safetensors", "-o",
                       out, "-W", "128", "-H", "96", "--steps", "3", "--plan", plan, "-t", "1"};
    CHECK(gen((int)(sizeof g / sizeof *g), g) == 0);
    a[8] = "diagonal";
    CHECK(cal(na, a) == 2);
    a[8] = "plain";
    a[6] = "v2";
    CHECK(cal(na, a) == 2); /* the plain band is V1's */
    tmpdir_remove(&d);
}

static void test_cli_errors(void) {
    const char *help[] = {"calibrate", "--help"};
    CHECK(cal(2, help) == 0);
    const char *none[] = {"calibrate", "-m", FX "/flux_tiny", "--delta", "1", "-o", "/nonexistent/x.json"};
    CHECK(cal(7, none) == 2); /* no prompts */
    const char *both[] = {"calibrate", "-m", FX "/flux_tiny", "--delta", "1", "-o", "x.json", "--prompts", "a",
                          "--prompt-embeds", "b"};
    CHECK(cal(11, both) == 2);
    const char *meth[] = {"calibrate", "-m", FX "/flux_tiny", "--delta", "1", "-o", "x.json", "--prompt-embeds",
                          FX "/flux_tiny/io.safetensors", "--method", "v3"};
    CHECK(cal(11, meth) == 2);
    const char *cands[] = {"calibrate", "-m", FX "/flux_tiny", "--delta", "1", "-o", "/nonexistent/x.json",
                           "--prompt-embeds", FX "/flux_tiny/io.safetensors", "--methods", "arrow,bogus", "-W", "128",
                           "-H", "96", "--steps", "2", "-t", "1"};
    CHECK(cal(19, cands) == 1);
    const char *list[] = {"calibrate", "-m", FX "/flux_tiny", "--delta", "1", "-o", "x.json", "--prompts",
                          "/nonexistent/list.txt"};
    CHECK(cal(9, list) == 1);
}

int main(void) {
    RUN(test_engine_flux_full);
    RUN(test_engine_flux_true_cfg);
    RUN(test_engine_sd3_full);
    RUN(test_engine_errors);
    RUN(test_replay_flux_v2);
    RUN(test_replay_sd3_v1);
    RUN(test_replay_sd35_v1);
    RUN(test_replay_sd35_v2);
    RUN(test_replay_flux_v1_plain);
    RUN(test_replay_sd3_v1_plain);
    RUN(test_cli_band);
    RUN(test_cli_flux);
    RUN(test_cli_sd3);
    RUN(test_cli_sd35);
    RUN(test_cli_model_defaults);
    RUN(test_cli_prompt_text_pixart);
    RUN(test_cli_prompt_text_flux);
    RUN(test_cli_errors);
    return test_summary();
}
