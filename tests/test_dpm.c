/* test_dpm.c - DPM-Solver++ (2M) against diffusers' DPMSolverMultistepScheduler: four configs
 * (linspace/leading/trailing spacing, linear/scaled_linear betas, epsilon/v prediction,
 * final sigma zero / sigma_min, lower_order_final on/off, 5..20 steps), each fed the same
 * random model outputs diffusers got; every intermediate sample is compared. Also DDIM's
 * timesteps for each spacing, and the errors for refused configs. */
#include "core/ctx.h"
#include "fixture.h"
#include "sample/ddpm.h"
#include "sample/dpm.h"
#include "sample/sampler.h"
#include "test.h"
#include "tmpdir.h"

static dfa_ctx *new_ctx(void) {
    dfa_ctx_params p = dfa_ctx_default_params();
    p.n_threads = 1;
    dfa_ctx *ctx = NULL;
    char e[256];
    if (dfa_ctx_init(&ctx, &p, e, sizeof e) != DFA_OK) fprintf(stderr, "ctx: %s\n", e);
    return ctx;
}

static void dpm_case(const char *name, int n_expect) {
    dfa_ctx *ctx = new_ctx();
    dfa_safetensors *io = fixture_open("dpm/io.safetensors");
    char path[1024], rel[256], key[256];
    snprintf(rel, sizeof rel, "dpm/%s.json", name);
    fixture_path(rel, path, sizeof path);
    dfa_dpm s;
    dfa_error err = {0};
    dfa_status st = dfa_dpm_init_file(&s, path, &err);
    CHECKF(st == DFA_OK, "%s", err.msg);
    if (st != DFA_OK || !io) goto out;
    int64_t xs[8], ts[8];
    snprintf(key, sizeof key, "%s.x0", name);
    float *x = fixture_f32(io, key, NULL, xs);
    snprintf(key, sizeof key, "%s.timesteps", name);
    float *tref = fixture_f32(io, key, NULL, ts);
    snprintf(key, sizeof key, "%s.model_out", name);
    float *mo = fixture_f32(io, key, NULL, NULL);
    snprintf(key, sizeof key, "%s.samples", name);
    float *ref = fixture_f32(io, key, NULL, NULL);
    const size_t n = (size_t)(xs[0] * xs[1] * xs[2] * xs[3]);
    const int steps = (int)ts[0];
    CHECK(steps == n_expect);
    st = dfa_dpm_set_timesteps(ctx, &s, steps, n);
    CHECKF(st == DFA_OK, "%s", dfa_ctx_error(ctx));
    int tbad = 0;
    for (int i = 0; i < steps; i++) tbad += s.timesteps[i] != (int)tref[i];
    CHECKF(tbad == 0, "%s: %d timesteps differ (first %d vs %d)", name, tbad, s.timesteps[0], (int)tref[0]);
    double worst = 0;
    for (int i = 0; i < steps; i++) {
        st = dfa_dpm_step(ctx, &s, mo + (size_t)i * n, x);
        CHECK(st == DFA_OK);
        double e = fixture_rel_err(x, ref + (size_t)i * n, n);
        if (!(e <= worst)) worst = e;
        CHECKF(e <= 2e-5, "%s step %d (t=%d): rel err %g", name, i, s.timesteps[i], e);
    }
    printf("     %s: %d steps, worst rel err %.3g (bound 2e-5)\n", name, steps, worst);
    CHECK(dfa_dpm_step(ctx, &s, mo, x) == DFA_ERR_INVALID_ARG); /* past the end */
    free(x), free(tref), free(mo), free(ref);
out:
    dfa_dpm_free(ctx, &s);
    dfa_st_close(io);
    dfa_ctx_free(ctx);
}

static void test_dpm_linspace7(void) { dpm_case("linspace7", 7); }
static void test_dpm_leading20(void) { dpm_case("leading20", 20); }
static void test_dpm_trailing5v(void) { dpm_case("trailing5v", 5); }
static void test_dpm_linspace16_sigma_min(void) { dpm_case("linspace16nolof", 16); }

/* Ancestral DDPM (DDPMScheduler) through the sampler interface, fed diffusers' noise. */
static void ddpm_case(const char *name, int n_expect) {
    dfa_ctx *ctx = new_ctx();
    dfa_safetensors *io = fixture_open("ddpm/io.safetensors");
    char path[1024], rel[256], key[256];
    snprintf(rel, sizeof rel, "ddpm/%s.json", name);
    fixture_path(rel, path, sizeof path);
    dfa_sampler s;
    dfa_status st = dfa_sampler_init_file(ctx, &s, path, DFA_SAMPLER_DDIM);
    CHECKF(st == DFA_OK && s.kind == DFA_SAMPLER_DDPM, "%s", dfa_ctx_error(ctx));
    if (st != DFA_OK || !io) goto out;
    int64_t xs[8], ts[8];
    const char *what[6] = {"x0", "timesteps", "model_out", "model_var", "noise", "samples"};
    float *a[6];
    for (int i = 0; i < 6; i++) {
        snprintf(key, sizeof key, "%s.%s", name, what[i]);
        a[i] = fixture_f32(io, key, NULL, i == 0 ? xs : i == 1 ? ts : NULL);
    }
    const size_t n = (size_t)(xs[0] * xs[1] * xs[2] * xs[3]);
    const int steps = (int)ts[0];
    CHECK(steps == n_expect);
    CHECK(dfa_sampler_set_timesteps(ctx, &s, steps, n, 0) == DFA_OK);
    dfa_sampler_set_noise(&s, a[4]);
    int tbad = 0;
    for (int i = 0; i < steps; i++) tbad += dfa_sampler_timestep(&s, i) != (int)a[1][i];
    CHECKF(tbad == 0, "%s: %d timesteps differ", name, tbad);
    double worst = 0;
    for (int i = 0; i < steps && tbad == 0; i++) {
        CHECK(dfa_sampler_step(ctx, &s, i, a[2] + (size_t)i * n, a[3] + (size_t)i * n, a[0]) == DFA_OK);
        double e = fixture_rel_err(a[0], a[5] + (size_t)i * n, n);
        if (!(e <= worst)) worst = e;
        CHECKF(e <= 2e-5, "%s step %d (t=%d): rel err %g", name, i, dfa_sampler_timestep(&s, i), e);
    }
    printf("     ddpm %s: %d steps, worst rel err %.3g (bound 2e-5)\n", name, steps, worst);
    for (int i = 0; i < 6; i++) free(a[i]);
out:
    dfa_sampler_free(ctx, &s);
    dfa_st_close(io);
    dfa_ctx_free(ctx);
}

static void test_ddpm_fixed_small(void) { ddpm_case("small10", 10); }
static void test_ddpm_learned_range_250(void) { ddpm_case("range250", 250); }
static void test_ddpm_small_log_v_trailing(void) { ddpm_case("smalllog5v", 5); }
static void test_ddpm_large_linspace(void) { ddpm_case("large7lin", 7); }

static void test_refused_configs(void) {
    const char *bad[] = {"{\"use_karras_sigmas\": true}", "{\"algorithm_type\": \"sde-dpmsolver++\"}",
                         "{\"solver_order\": 3}", "{\"beta_schedule\": \"cosine\"}",
                         "{\"variance_type\": \"learned_range\"}", "{\"thresholding\": true}"};
    const char *words[] = {"use_karras_sigmas", "sde-dpmsolver++", "solver_order", "cosine", "variance_type",
                           "thresholding"};
    for (int i = 0; i < 6; i++) {
        cJSON *j = cJSON_Parse(bad[i]);
        dfa_dpm s;
        dfa_error err = {0};
        CHECK(dfa_dpm_init_json(&s, j, "cfg.json", &err) == DFA_ERR_UNSUPPORTED);
        CHECKF(strstr(err.msg, words[i]) && strstr(err.msg, "cfg.json"), "message: %s", err.msg);
        cJSON_Delete(j);
    }
}

/* DDIM timesteps against diffusers' set_timesteps (values computed with diffusers 0.42.1). */
static void test_ddim_timesteps(void) {
    struct {
        const char *cfg;
        int n;
        int t[5];
    } cases[] = {
        {"{\"timestep_spacing\": \"leading\"}", 3, {666, 333, 0}},
        {"{\"timestep_spacing\": \"leading\", \"steps_offset\": 1}", 4, {751, 501, 251, 1}},
        {"{\"timestep_spacing\": \"linspace\"}", 4, {999, 666, 333, 0}},
        {"{\"timestep_spacing\": \"trailing\"}", 3, {999, 666, 332}},
    };
    for (int c = 0; c < 4; c++) {
        cJSON *j = cJSON_Parse(cases[c].cfg);
        dfa_ddim s;
        dfa_error err = {0};
        CHECK(dfa_ddim_init_json(&s, j, "cfg", &err) == DFA_OK);
        CHECK(dfa_ddim_set_timesteps(&s, cases[c].n, &err) == DFA_OK);
        for (int i = 0; i < cases[c].n; i++) CHECKF(s.timesteps[i] == cases[c].t[i], "case %d step %d: %d vs %d", c, i, s.timesteps[i], cases[c].t[i]);
        cJSON_Delete(j);
    }
}

/* scheduler_config.json as Python writes it: -Infinity outside strings becomes -inf, inside
 * strings it stays text; NaN is still refused. */
static void test_sched_json_infinity(void) {
    test_tmpdir t;
    if (tmpdir_make(&t, "schedjson") != 0) return;
    const char *good = "{\"lambda_min_clipped\": -Infinity, \"note\": \"x -Infinity \\\" Infinity\", \"beta_end\": 0.02}";
    char path[256];
    CHECK(tmpdir_write(&t, "a.json", good, strlen(good), path, sizeof path) != NULL);
    cJSON *root = NULL;
    dfa_error err = {0};
    CHECKF(dfa_sched_json_read(path, &root, &err) == DFA_OK, "%s", err.msg);
    if (root) {
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(root, "lambda_min_clipped");
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(root, "note");
        CHECK(cJSON_IsNumber(l) && isinf(l->valuedouble) && l->valuedouble < 0);
        CHECK(cJSON_IsString(n) && strcmp(n->valuestring, "x -Infinity \" Infinity") == 0);
        cJSON_Delete(root);
    }
    const char *bad = "{\"beta_end\": NaN}";
    CHECK(tmpdir_write(&t, "b.json", bad, strlen(bad), path, sizeof path) != NULL);
    root = NULL;
    CHECK(dfa_sched_json_read(path, &root, &err) == DFA_ERR_FORMAT && root == NULL);
    CHECK(dfa_sched_json_read("/nonexistent/s.json", &root, &err) == DFA_ERR_IO);
    tmpdir_remove(&t);
}

int main(void) {
    RUN(test_sched_json_infinity);
    RUN(test_dpm_linspace7);
    RUN(test_dpm_leading20);
    RUN(test_dpm_trailing5v);
    RUN(test_dpm_linspace16_sigma_min);
    RUN(test_ddpm_fixed_small);
    RUN(test_ddpm_learned_range_250);
    RUN(test_ddpm_small_log_v_trailing);
    RUN(test_ddpm_large_linspace);
    RUN(test_refused_configs);
    RUN(test_ddim_timesteps);
    return test_summary();
}
