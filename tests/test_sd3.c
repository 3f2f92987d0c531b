/* test_sd3.c - SD3 / SD3.5 transformer and CFG sampler against golden fixtures from diffusers
 * (tests/fixtures/gen_mmdit.py): sd3_tiny is SD3.5-style (qk_norm rms_norm, dual attention in
 * block 0, 3 blocks, the last context_pre_only, 6x8 patches cropped from a 12x12 pos-embed
 * grid); sd3_plain is SD3.0-style (no qk norm, no dual attention). One CFG-batch forward, the
 * fixed-shift schedule, a 3-step CFG sampling loop, and the checkpoint error messages. */
#include <math.h>
#include <string.h>

#include "attn/attn_state.h"
#include "core/ctx.h"
#include "mmdit_fixture.h"
#include "models/mmdit_pipe.h"
#include "models/sd3.h"
#include "plan/plan.h"
#include "sample/flow.h"
#include "test.h"

#define SD3_DIR DFA_SOURCE_DIR "/tests/fixtures/sd3_tiny"
#define SD3_PLAIN_DIR DFA_SOURCE_DIR "/tests/fixtures/sd3_plain"
/* f32 end to end (weights stored f16, read exactly); differences are summation order and f32
 * rounding in norms / timestep tables. Measured ~1e-6; bound 1e-5. */
#define FWD_TOL 1e-5
#define SMP_TOL 1e-5

static dfa_ctx *make_ctx(void) {
    dfa_ctx_params p = dfa_ctx_default_params();
    p.n_threads = 2;
    p.log_level = DFA_LOG_WARN;
    dfa_ctx *ctx = NULL;
    char err[256];
    if (dfa_ctx_init(&ctx, &p, err, sizeof err) != DFA_OK) fprintf(stderr, "ctx: %s\n", err);
    return ctx;
}

/* [neg; pos] prompt embeddings (the pipeline's CFG order) */
typedef struct fx {
    dfa_safetensors *io;
    float *pe, *pp; /* [2, T, J], [2, P] */
    int T;
} fx;

static int fx_open(fx *f, const char *dir) {
    memset(f, 0, sizeof *f);
    char path[1024];
    snprintf(path, sizeof path, "%s/io.safetensors", dir);
    dfa_error err = {0};
    if (dfa_st_open(&f->io, path, &err) != DFA_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    size_t nt = 0, np = 0;
    float *pos = fx_load(f->io, "prompt_embeds", &nt), *neg = fx_load(f->io, "negative_prompt_embeds", NULL);
    float *pool = fx_load(f->io, "pooled_prompt_embeds", &np), *npool = fx_load(f->io, "negative_pooled_prompt_embeds", NULL);
    int ok = pos && neg && pool && npool;
    if (ok) {
        f->pe = malloc(2 * nt * sizeof(float));
        f->pp = malloc(2 * np * sizeof(float));
        memcpy(f->pe, neg, nt * sizeof(float));
        memcpy(f->pe + nt, pos, nt * sizeof(float));
        memcpy(f->pp, npool, np * sizeof(float));
        memcpy(f->pp + np, pool, np * sizeof(float));
        f->T = (int)(nt / 24);
    }
    free(pos);
    free(neg);
    free(pool);
    free(npool);
    return ok ? 0 : -1;
}

static void fx_close(fx *f) {
    free(f->pe);
    free(f->pp);
    dfa_st_close(f->io);
}

static void test_config_sizes(void) {
    dfa_ctx *ctx = make_ctx();
    dfa_sd3 *m = NULL;
    CHECKF(dfa_sd3_load(ctx, SD3_DIR, &m) == DFA_OK, "%s", dfa_ctx_error(ctx));
    if (m) {
        const dfa_sd3_config *c = dfa_sd3_get_config(m);
        CHECK(c->inner_dim == 32 && c->num_layers == 3 && c->qk_rms_norm == 1 && c->n_dual == 1 && c->dual[0] == 1);
        CHECK(c->patch_size == 2 && c->pos_embed_max_size == 12 && c->in_channels == 4);
        CHECK(dfa_sd3_attn_layers(m) == 4);
    }
    dfa_sd3_free(ctx, m);
    m = NULL;
    CHECKF(dfa_sd3_load(ctx, SD3_PLAIN_DIR, &m) == DFA_OK, "%s", dfa_ctx_error(ctx));
    if (m) {
        const dfa_sd3_config *c = dfa_sd3_get_config(m);
        CHECK(c->qk_rms_norm == 0 && c->n_dual == 0 && dfa_sd3_attn_layers(m) == c->num_layers);
    }
    dfa_sd3_free(ctx, m);
    dfa_ctx_free(ctx);
}

static void check_forward(const char *dir, const char *label) {
    fx f;
    CHECK(fx_open(&f, dir) == 0);
    dfa_ctx *ctx = make_ctx();
    dfa_sd3 *m = NULL;
    CHECKF(dfa_sd3_load(ctx, dir, &m) == DFA_OK, "%s", dfa_ctx_error(ctx));
    size_t nx = 0, ny = 0;
    float *x = fx_load(f.io, "fwd_hidden_states", &nx), *t = fx_load(f.io, "fwd_timestep", NULL);
    float *ref = fx_load(f.io, "fwd_out", &ny);
    if (m && x && t && ref && f.pe) {
        float *out = malloc(ny * sizeof(float));
        for (int rep = 0; rep < 2; rep++) {
            fx_fill_nan(out, ny);
            dfa_status st = dfa_sd3_forward(ctx, m, 2, 12, 16, f.T, x, f.pe, f.pp, t, out);
            CHECKF(st == DFA_OK, "%s", dfa_ctx_error(ctx));
            double e = fx_rel_err(out, ref, ny);
            CHECKF(e <= FWD_TOL, "%s forward rel err %.3g > %.1g", label, e, FWD_TOL);
            if (rep == 0) printf("     %s forward (CFG batch of 2) rel err %.3g\n", label, e);
        }
        /* batch element 1 alone equals element 1 of the batch (no cross-batch leakage) */
        const size_t half = ny / 2;
        fx_fill_nan(out, ny);
        dfa_status st = dfa_sd3_forward(ctx, m, 1, 12, 16, f.T, x + nx / 2, f.pe + (size_t)f.T * 24, f.pp + 12, t + 1,
                                        out);
        CHECK(st == DFA_OK);
        CHECK(fx_rel_err(out, ref + half, half) <= FWD_TOL);
        /* a latent larger than the pos-embed grid is refused with the sizes */
        CHECK(dfa_sd3_forward(ctx, m, 1, 26, 16, f.T, x, f.pe, f.pp, t, out) == DFA_ERR_INVALID_ARG);
        CHECK(strstr(dfa_ctx_error(ctx), "pos_embed_max_size 12") != NULL);
        free(out);
    }
    free(x);
    free(t);
    free(ref);
    dfa_sd3_free(ctx, m);
    dfa_ctx_free(ctx);
    fx_close(&f);
}

static void test_forward_sd35(void) { check_forward(SD3_DIR, "sd3.5-style"); }
static void test_forward_sd3(void) { check_forward(SD3_PLAIN_DIR, "sd3-style"); }

typedef struct sd3_smp {
    dfa_ctx *ctx;
    dfa_sd3 *m;
    fx *f;
    float cfg;
    float *xin, *vout; /* [2, C, H, W] */
    size_t n;
} sd3_smp;

static dfa_status sd3_velocity(void *user, int step, float timestep, const float *x, float *v) {
    sd3_smp *s = user;
    (void)step;
    memcpy(s->xin, x, s->n * sizeof(float)); /* latent_model_input = cat([latents] * 2) */
    memcpy(s->xin + s->n, x, s->n * sizeof(float));
    float t[2] = {timestep, timestep};
    DFA_TRY(dfa_sd3_forward(s->ctx, s->m, 2, 12, 16, s->f->T, s->xin, s->f->pe, s->f->pp, t, s->vout));
    dfa_flow_cfg_combine(v, s->vout, s->vout + s->n, s->n, s->cfg); /* [uncond, cond] */
    return DFA_OK;
}

static void test_sampling_cfg(void) {
    fx f;
    CHECK(fx_open(&f, SD3_DIR) == 0);
    dfa_ctx *ctx = make_ctx();
    dfa_sd3 *m = NULL;
    CHECKF(dfa_sd3_load(ctx, SD3_DIR, &m) == DFA_OK, "%s", dfa_ctx_error(ctx));
    dfa_flow_config fc;
    CHECKF(dfa_flow_config_read(ctx, SD3_DIR, &fc) == DFA_OK, "%s", dfa_ctx_error(ctx));
    CHECK(fc.use_dynamic_shifting == 0 && fc.shift == 3.0);
    size_t ns = 0, nt = 0, nx = 0;
    float *rs = fx_load(f.io, "smp_sigmas", &ns), *rt = fx_load(f.io, "smp_timesteps", &nt);
    float *x0 = fx_load(f.io, "smp_latents0", &nx), *ref = fx_load(f.io, "smp_final", NULL);
    float *cs = fx_load(f.io, "smp_cfg_scale", NULL);
    if (m && rs && rt && x0 && ref && cs) {
        const int steps = (int)nt;
        float sig[4], ts[3];
        fx_fill_nan(sig, 4);
        fx_fill_nan(ts, 3);
        CHECK(steps == 3 && dfa_flow_set_timesteps(ctx, &fc, steps, NULL, NAN, sig, ts) == DFA_OK);
        for (int i = 0; i <= steps; i++) CHECKF(sig[i] == rs[i], "sigma[%d] %.9g vs %.9g", i, sig[i], rs[i]);
        for (int i = 0; i < steps; i++) CHECKF(ts[i] == rt[i], "timestep[%d] %.9g vs %.9g", i, ts[i], rt[i]);
        sd3_smp s = {.ctx = ctx, .m = m, .f = &f, .cfg = cs[0], .n = nx};
        s.xin = malloc(2 * nx * sizeof(float));
        s.vout = malloc(2 * nx * sizeof(float));
        float *x = malloc(nx * sizeof(float)), *v = malloc(nx * sizeof(float));
        memcpy(x, x0, nx * sizeof(float));
        fx_fill_nan(v, nx);
        dfa_status st = dfa_flow_sample(ctx, steps, sig, ts, x, v, nx, sd3_velocity, NULL, &s);
        CHECKF(st == DFA_OK, "%s", dfa_ctx_error(ctx));
        double e = fx_rel_err(x, ref, nx);
        CHECKF(e <= SMP_TOL, "sampling rel err %.3g > %.1g", e, SMP_TOL);
        printf("     sd3 3-step CFG sampling rel err %.3g\n", e);
        free(x);
        free(v);
        free(s.xin);
        free(s.vout);
    }
    free(rs);
    free(rt);
    free(x0);
    free(ref);
    free(cs);
    dfa_sd3_free(ctx, m);
    dfa_ctx_free(ctx);
    fx_close(&f);
}

/* The pipeline-level loop with CFG equals diffusers' loop; without negatives CFG is refused. */
static void test_generate_cfg(void) {
    dfa_ctx *ctx = make_ctx();
    dfa_sd3 *m = NULL;
    CHECKF(dfa_sd3_load(ctx, SD3_DIR, &m) == DFA_OK, "%s", dfa_ctx_error(ctx));
    dfa_flow_config fc;
    CHECK(dfa_flow_config_read(ctx, SD3_DIR, &fc) == DFA_OK);
    dfa_prompt_embeds pe;
    dfa_status st = dfa_prompt_embeds_load(ctx, SD3_DIR "/io.safetensors", &pe);
    CHECKF(st == DFA_OK, "%s", dfa_ctx_error(ctx));
    dfa_safetensors *io = NULL;
    dfa_error err = {0};
    CHECK(dfa_st_open(&io, SD3_DIR "/io.safetensors", &err) == DFA_OK);
    size_t n = 0;
    float *x0 = io ? fx_load(io, "smp_latents0", &n) : NULL, *ref = io ? fx_load(io, "smp_final", NULL) : NULL;
    if (m && st == DFA_OK && x0 && ref) {
        CHECK(pe.neg_embeds && pe.neg_pooled && pe.n_txt == 7);
        float *out = malloc(n * sizeof(float));
        dfa_mmdit_gen_params gp = {.steps = 3, .latent_h = 12, .latent_w = 16, .cfg_scale = 4.5f, .init_latents = x0};
        fx_fill_nan(out, n);
        CHECKF(dfa_sd3_generate(ctx, m, &fc, &pe, &gp, out) == DFA_OK, "%s", dfa_ctx_error(ctx));
        double e = fx_rel_err(out, ref, n);
        CHECKF(e <= SMP_TOL, "generate rel err %.3g", e);
        printf("     sd3 generate (CFG 4.5) rel err %.3g\n", e);
        /* an attention plan has one layout for every layer, so SD3.5's image-only attn2 layers
         * cannot run under one yet: a clear error, not a wrong result */
        dfa_attn_layout lay = {.n_vis = 48, .n_text = 7, .text_first = 0, .block = 128};
        dfa_plan plan;
        CHECK(dfa_plan_init(&plan, &lay, 3, dfa_sd3_attn_layers(m), 2, &err) == DFA_OK);
        plan.cfg = 1;
        plan.cond_half = 1;
        plan.grid_h = 6;
        plan.grid_w = 8;
        CHECK(dfa_plan_validate(&plan, "plan", &err) == DFA_OK);
        CHECK(dfa_attn_set_plan(ctx, &plan) == DFA_OK);
        CHECK(dfa_sd3_generate(ctx, m, &fc, &pe, &gp, out) != DFA_OK);
        CHECKF(strstr(dfa_ctx_error(ctx), "layout") != NULL, "%s", dfa_ctx_error(ctx));
        dfa_attn_clear_plan(ctx);
        dfa_plan_free(&plan);
        /* CFG needs the negatives */
        float *keep = pe.neg_embeds;
        pe.neg_embeds = NULL;
        CHECK(dfa_sd3_generate(ctx, m, &fc, &pe, &gp, out) == DFA_ERR_NOT_FOUND);
        CHECKF(strstr(dfa_ctx_error(ctx), "negative_prompt_embeds") != NULL, "%s", dfa_ctx_error(ctx));
        pe.neg_embeds = keep;
        free(out);
    }
    if (st == DFA_OK) dfa_prompt_embeds_free(ctx, &pe);
    free(x0);
    free(ref);
    dfa_st_close(io);
    dfa_sd3_free(ctx, m);
    dfa_ctx_free(ctx);
}

/* SD3.0-style under plans: all-FULL equals the plain run, CACHE + ASC changes it. */
static void test_generate_plan(void) {
    dfa_ctx *ctx = make_ctx();
    dfa_sd3 *m = NULL;
    CHECKF(dfa_sd3_load(ctx, SD3_PLAIN_DIR, &m) == DFA_OK, "%s", dfa_ctx_error(ctx));
    dfa_flow_config fc;
    CHECK(dfa_flow_config_read(ctx, SD3_PLAIN_DIR, &fc) == DFA_OK);
    dfa_prompt_embeds pe;
    dfa_status st = dfa_prompt_embeds_load(ctx, SD3_PLAIN_DIR "/io.safetensors", &pe);
    CHECKF(st == DFA_OK, "%s", dfa_ctx_error(ctx));
    if (m && st == DFA_OK) {
        const size_t n = 4 * 12 * 16;
        float *plain = malloc(n * sizeof(float)), *out = malloc(n * sizeof(float));
        dfa_mmdit_gen_params gp = {.steps = 3, .latent_h = 12, .latent_w = 16, .cfg_scale = 5.0f, .seed = 3};
        CHECK(dfa_sd3_generate(ctx, m, &fc, &pe, &gp, plain) == DFA_OK);
        dfa_attn_layout lay = {.n_vis = 48, .n_text = 7, .text_first = 0, .block = 128};
        dfa_plan plan;
        dfa_error err = {0};
        CHECK(dfa_plan_init(&plan, &lay, 3, dfa_sd3_attn_layers(m), 2, &err) == DFA_OK);
        plan.cfg = 1;
        plan.cond_half = 1;
        plan.grid_h = 6;
        plan.grid_w = 8;
        CHECK(dfa_plan_validate(&plan, "plan", &err) == DFA_OK);
        CHECKF(dfa_attn_set_plan(ctx, &plan) == DFA_OK, "%s", dfa_ctx_error(ctx));
        fx_fill_nan(out, n);
        CHECKF(dfa_sd3_generate(ctx, m, &fc, &pe, &gp, out) == DFA_OK, "%s", dfa_ctx_error(ctx));
        CHECKF(fx_rel_err(out, plain, n) <= 1e-6, "all-FULL plan rel err %.3g", fx_rel_err(out, plain, n));
        for (int hd = 0; hd < 2; hd++) plan.method[dfa_plan_index(&plan, 2, 0, hd)] = DFA_ATTN_CACHE;
        plan.asc[2 * plan.n_layers + 1] = 1;
        plan.method_set = DFA_PLAN_SET_CACHE | DFA_PLAN_SET_ASC;
        CHECKF(dfa_plan_validate(&plan, "plan", &err) == DFA_OK, "%s", err.msg);
        CHECK(dfa_attn_set_plan(ctx, &plan) == DFA_OK);
        fx_fill_nan(out, n);
        CHECKF(dfa_sd3_generate(ctx, m, &fc, &pe, &gp, out) == DFA_OK, "%s", dfa_ctx_error(ctx));
        double e = fx_rel_err(out, plain, n);
        CHECKF(e > 1e-6 && e < 1.0, "CACHE + ASC plan: rel err %.3g (expected a finite change)", e);
        dfa_attn_clear_plan(ctx);
        dfa_plan_free(&plan);
        free(plain);
        free(out);
    }
    if (st == DFA_OK) dfa_prompt_embeds_free(ctx, &pe);
    dfa_sd3_free(ctx, m);
    dfa_ctx_free(ctx);
}

static void test_broken_checkpoints(void) {
    test_tmpdir d1, d2;
    CHECK(tmpdir_make(&d1, "sd3_missing") == 0);
    CHECK(tmpdir_make(&d2, "sd3_shape") == 0);
    CHECK(fx_write_broken_ckpt(SD3_DIR, d1.path, "transformer_blocks.0.attn2.norm_k.weight", NULL) == 0);
    CHECK(fx_write_broken_ckpt(SD3_DIR, d2.path, NULL, "pos_embed.proj.weight") == 0);
    dfa_ctx *ctx = make_ctx();
    dfa_sd3 *m = NULL;
    CHECK(dfa_sd3_load(ctx, d1.path, &m) == DFA_ERR_NOT_FOUND && m == NULL);
    CHECKF(strstr(dfa_ctx_error(ctx), "transformer_blocks.0.attn2.norm_k.weight") != NULL, "message: %s",
           dfa_ctx_error(ctx));
    CHECK(dfa_sd3_load(ctx, d2.path, &m) == DFA_ERR_SHAPE && m == NULL);
    const char *msg = dfa_ctx_error(ctx);
    CHECKF(strstr(msg, "pos_embed.proj.weight") && strstr(msg, "[32, 4, 2, 2]") && strstr(msg, "[33, 4, 2, 2]"),
           "message: %s", msg);
    /* unsupported qk_norm is named */
    char cfg[1024];
    snprintf(cfg, sizeof cfg, "%s/transformer/config.json", d1.path);
    FILE *fo = fopen(cfg, "wb");
    if (fo) {
        fputs("{\"num_layers\": 2, \"attention_head_dim\": 16, \"num_attention_heads\": 2, \"caption_projection_dim\": 32,"
              " \"qk_norm\": \"layer_norm\"}", fo);
        fclose(fo);
    }
    CHECK(dfa_sd3_load(ctx, d1.path, &m) == DFA_ERR_UNSUPPORTED && m == NULL);
    CHECKF(strstr(dfa_ctx_error(ctx), "layer_norm") != NULL, "message: %s", dfa_ctx_error(ctx));
    dfa_ctx_free(ctx);
    tmpdir_remove(&d1);
    tmpdir_remove(&d2);
}

int main(void) {
    RUN(test_config_sizes);
    RUN(test_forward_sd35);
    RUN(test_forward_sd3);
    RUN(test_sampling_cfg);
    RUN(test_generate_cfg);
    RUN(test_generate_plan);
    RUN(test_broken_checkpoints);
    return test_summary();
}
