/* test_flow.c - flow-matching schedules against diffusers' FlowMatchEulerDiscreteScheduler
 * (tests/fixtures/flow_schedules.safetensors from gen_mmdit.py: SD3 fixed shift, FLUX-dev
 * dynamic shift, FLUX-schnell, linear time shift), scheduler-config parsing, the Euler loop
 * and CFG, and the seeded RNG. */
#include <math.h>
#include <string.h>
#include <sys/stat.h>

#include "core/ctx.h"
#include "io/json.h"
#include "mmdit_fixture.h"
#include "sample/flow.h"
#include "test.h"

#define SCHED_FILE DFA_SOURCE_DIR "/tests/fixtures/flow_schedules.safetensors"

static dfa_ctx *make_ctx(void) {
    dfa_ctx_params p = dfa_ctx_default_params();
    p.n_threads = 2;
    p.log_level = DFA_LOG_WARN;
    dfa_ctx *ctx = NULL;
    char err[256];
    if (dfa_ctx_init(&ctx, &p, err, sizeof err) != DFA_OK) fprintf(stderr, "ctx: %s\n", err);
    return ctx;
}

static void test_schedules_match_diffusers(void) {
    dfa_ctx *ctx = make_ctx();
    dfa_safetensors *st = NULL;
    dfa_error err = {0};
    CHECKF(dfa_st_open(&st, SCHED_FILE, &err) == DFA_OK, "%s", err.msg);
    int cases = 0;
    for (int i = 0; st && i < dfa_st_meta_count(st); i++) {
        const char *name, *val;
        dfa_st_meta_at(st, i, &name, &val);
        cJSON *j = NULL;
        if (dfa_json_parse(val, strlen(val), name, &j, &err) != DFA_OK) {
            CHECKF(0, "%s", err.msg);
            continue;
        }
        dfa_flow_config c = dfa_flow_config_default();
        const cJSON *tst = cJSON_GetObjectItemCaseSensitive(j, "time_shift_type");
        int steps = 0, flux = 0, seq = -1;
        dfa_json_double_or(j, "shift", name, 1.0, &c.shift, &err);
        dfa_json_bool_or(j, "use_dynamic_shifting", name, 0, &c.use_dynamic_shifting, &err);
        c.time_shift_linear = tst && cJSON_IsString(tst) && strcmp(tst->valuestring, "linear") == 0;
        dfa_json_int(j, "steps", name, &steps, &err);
        dfa_json_bool_or(j, "flux_sigmas", name, 0, &flux, &err);
        dfa_json_int_or(j, "image_seq_len", name, -1, &seq, &err);
        cJSON_Delete(j);
        char key[128];
        snprintf(key, sizeof key, "%s_sigmas", name);
        float *rs = fx_load(st, key, NULL);
        snprintf(key, sizeof key, "%s_timesteps", name);
        float *rt = fx_load(st, key, NULL);
        double *sin = malloc((size_t)steps * sizeof(double));
        float *sig = malloc((size_t)(steps + 1) * sizeof(float)), *ts = malloc((size_t)steps * sizeof(float));
        if (rs && rt && sin && sig && ts) {
            fx_fill_nan(sig, (size_t)steps + 1);
            fx_fill_nan(ts, (size_t)steps);
            if (flux) dfa_flow_flux_sigmas(steps, sin);
            double mu = seq >= 0 ? dfa_flow_calculate_shift(&c, seq) : NAN;
            dfa_status s = dfa_flow_set_timesteps(ctx, &c, steps, flux ? sin : NULL, mu, sig, ts);
            CHECKF(s == DFA_OK, "%s: %s", name, dfa_ctx_error(ctx));
            /* exact: the same float32/float64 operations as diffusers + numpy */
            int bad = 0;
            for (int k = 0; k <= steps; k++) bad += sig[k] != rs[k];
            for (int k = 0; k < steps; k++) bad += ts[k] != rt[k];
            CHECKF(bad == 0, "%s: %d of %d values differ (first sigma %.9g vs %.9g)", name, bad, 2 * steps + 1, sig[1],
                   rs[1]);
            double md = 0;
            for (int k = 0; k <= steps; k++) md = fmax(md, fabs((double)sig[k] - rs[k]));
            CHECKF(md <= 1e-6, "%s: max sigma difference %.3g", name, md);
            cases++;
        }
        free(rs);
        free(rt);
        free(sin);
        free(sig);
        free(ts);
    }
    CHECK(cases == 6);
    dfa_st_close(st);
    dfa_ctx_free(ctx);
}

static void test_calculate_shift(void) {
    dfa_flow_config c = dfa_flow_config_default();
    CHECK_NEAR(dfa_flow_calculate_shift(&c, 256), 0.5, 1e-12);
    CHECK_NEAR(dfa_flow_calculate_shift(&c, 4096), 1.15, 1e-12);
    CHECK_NEAR(dfa_flow_calculate_shift(&c, 2176), 0.825, 1e-12);
}

static void test_config_read(void) {
    dfa_ctx *ctx = make_ctx();
    test_tmpdir d;
    CHECK(tmpdir_make(&d, "flow_cfg") == 0);
    char path[256];
    const char *good = "{\"shift\": 3.0, \"use_dynamic_shifting\": true, \"base_image_seq_len\": 256,"
                       " \"max_image_seq_len\": 4096, \"base_shift\": 0.5, \"max_shift\": 1.15,"
                       " \"time_shift_type\": \"exponential\", \"use_karras_sigmas\": false, \"shift_terminal\": null}";
    CHECK(tmpdir_write(&d, "scheduler_config.json", good, strlen(good), path, sizeof path) != NULL);
    dfa_flow_config c;
    memset(&c, 0, sizeof c);
    CHECKF(dfa_flow_config_read(ctx, d.path, &c) == DFA_OK, "%s", dfa_ctx_error(ctx));
    CHECK(c.shift == 3.0 && c.use_dynamic_shifting == 1 && c.time_shift_linear == 0 && c.num_train_timesteps == 1000);
    const char *karras = "{\"shift\": 3.0, \"use_karras_sigmas\": true}";
    CHECK(tmpdir_write(&d, "scheduler_config.json", karras, strlen(karras), path, sizeof path) != NULL);
    CHECK(dfa_flow_config_read(ctx, path, &c) == DFA_ERR_UNSUPPORTED);
    CHECKF(strstr(dfa_ctx_error(ctx), "use_karras_sigmas") != NULL, "%s", dfa_ctx_error(ctx));
    const char *term = "{\"shift\": 3.0, \"shift_terminal\": 0.1}";
    CHECK(tmpdir_write(&d, "scheduler_config.json", term, strlen(term), path, sizeof path) != NULL);
    CHECK(dfa_flow_config_read(ctx, path, &c) == DFA_ERR_UNSUPPORTED);
    CHECK(dfa_flow_config_read(ctx, "/nonexistent/sched", &c) == DFA_ERR_NOT_FOUND);
    float sig[3], ts[2];
    dfa_flow_config dyn = dfa_flow_config_default();
    dyn.use_dynamic_shifting = 1;
    CHECK(dfa_flow_set_timesteps(ctx, &dyn, 2, NULL, NAN, sig, ts) == DFA_ERR_INVALID_ARG); /* needs mu */
    CHECK(dfa_flow_set_timesteps(ctx, &c, 0, NULL, NAN, sig, ts) == DFA_ERR_INVALID_ARG);
    dfa_ctx_free(ctx);
    tmpdir_remove(&d);
}

typedef struct loop_state {
    int calls, progress;
    float last_t;
} loop_state;

/* v = x (an exponential flow): x_{i+1} = x_i * (1 + sigma_{i+1} - sigma_i) */
static dfa_status vel_identity(void *user, int step, float t, const float *x, float *v) {
    loop_state *s = user;
    CHECK(step == s->calls);
    s->calls++;
    s->last_t = t;
    memcpy(v, x, 3 * sizeof(float));
    return DFA_OK;
}

static void on_progress(void *user, int step, int n, double secs) {
    loop_state *s = user;
    CHECK(step == s->progress && n == 4 && secs >= 0);
    s->progress++;
}

/* A pipeline folder without scheduler/: the released pipelines' schedulers by family; a folder
 * whose config is broken is still an error, not a silent default. */
static void test_config_default_by_family(void) {
    dfa_ctx *ctx = make_ctx();
    test_tmpdir d;
    CHECK(tmpdir_make(&d, "flow_dflt") == 0);
    dfa_flow_config c;
    CHECKF(dfa_flow_config_read_or_default(ctx, d.path, 1, 1, &c) == DFA_OK, "%s", dfa_ctx_error(ctx));
    CHECK(c.use_dynamic_shifting == 1 && c.shift == 3.0); /* FLUX-dev */
    CHECK(dfa_flow_config_read_or_default(ctx, d.path, 1, 0, &c) == DFA_OK);
    CHECK(c.use_dynamic_shifting == 0 && c.shift == 1.0); /* FLUX-schnell */
    CHECK(dfa_flow_config_read_or_default(ctx, d.path, 0, 0, &c) == DFA_OK);
    CHECK(c.use_dynamic_shifting == 0 && c.shift == 3.0); /* SD3 */
    CHECK(strlen(dfa_ctx_error(ctx)) == 0);
    char path[256];
    tmpdir_file(&d, "scheduler", path, sizeof path);
    CHECK(mkdir(path, 0755) == 0);
    const char *bad = "{\"shift\": 3.0, \"use_karras_sigmas\": true}";
    CHECK(tmpdir_write(&d, "scheduler/scheduler_config.json", bad, strlen(bad), path, sizeof path) != NULL);
    CHECK(dfa_flow_config_read_or_default(ctx, d.path, 0, 0, &c) == DFA_ERR_UNSUPPORTED);
    tmpdir_remove(&d);
    dfa_ctx_free(ctx);
}

static void test_loop_and_cfg(void) {
    dfa_ctx *ctx = make_ctx();
    float sig[5] = {1.0f, 0.75f, 0.5f, 0.25f, 0.0f}, ts[4] = {1000, 750, 500, 250};
    float x[3] = {1.0f, -2.0f, 0.5f}, v[3];
    double ex[3] = {1.0, -2.0, 0.5};
    loop_state s = {0};
    CHECK(dfa_flow_sample(ctx, 4, sig, ts, x, v, 3, vel_identity, on_progress, &s) == DFA_OK);
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 3; k++) ex[k] *= 1.0 + (sig[i + 1] - sig[i]);
    for (int k = 0; k < 3; k++) CHECK_NEAR(x[k], ex[k], 1e-6);
    CHECK(s.calls == 4 && s.progress == 4 && s.last_t == 250.0f);
    float u[2] = {1.0f, 2.0f}, c[2] = {3.0f, -1.0f}, o[2];
    dfa_flow_cfg_combine(o, u, c, 2, 4.5f);
    CHECK_NEAR(o[0], 1.0 + 4.5 * 2.0, 1e-6);
    CHECK_NEAR(o[1], 2.0 + 4.5 * -3.0, 1e-6);
    dfa_ctx_free(ctx);
}

static void test_rng(void) {
    enum { N = 100001 }; /* odd: the tail draws a fresh pair */
    float *a = malloc(N * sizeof(float)), *b = malloc(N * sizeof(float)), *c = malloc(N * sizeof(float));
    dfa_rng r;
    fx_fill_nan(a, N);
    fx_fill_nan(b, N);
    dfa_rng_seed(&r, 42);
    dfa_rng_normal(&r, a, N);
    dfa_rng_seed(&r, 42);
    dfa_rng_normal(&r, b, N);
    CHECK(memcmp(a, b, N * sizeof(float)) == 0);
    dfa_rng_seed(&r, 43);
    dfa_rng_normal(&r, c, N);
    int same = 0, nonfinite = 0;
    double mean = 0, var = 0, m4 = 0;
    for (int i = 0; i < N; i++) {
        same += a[i] == c[i];
        nonfinite += !isfinite(a[i]);
        mean += a[i];
    }
    CHECK(nonfinite == 0);
    mean /= N;
    for (int i = 0; i < N; i++) {
        double d = a[i] - mean;
        var += d * d;
        m4 += d * d * d * d;
    }
    var /= N;
    m4 /= N;
    CHECK(same < 10);
    CHECK_NEAR(mean, 0.0, 0.02);
    CHECK_NEAR(var, 1.0, 0.02);
    CHECK_NEAR(m4 / (var * var), 3.0, 0.1); /* Gaussian kurtosis */
    /* first values are pinned: the generator must never change silently (seeds are reproducible) */
    dfa_rng_seed(&r, 0);
    CHECK(dfa_rng_next(&r) == 0x99ec5f36cb75f2b4ull);
    CHECK(a[0] == -1.61322379f && a[1] == 1.53448737f); /* seed 42 */
    free(a);
    free(b);
    free(c);
}

int main(void) {
    RUN(test_schedules_match_diffusers);
    RUN(test_calculate_shift);
    RUN(test_config_read);
    RUN(test_config_default_by_family);
    RUN(test_loop_and_cfg);
    RUN(test_rng);
    return test_summary();
}
