/* flow.c - flow-matching Euler schedule, step, CFG, sampling loop and RNG (see flow.h). */
#include "sample/flow.h"
#include "core/log.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "attn/attn_state.h"
#include "io/json.h"

dfa_flow_config dfa_flow_config_default(void) {
    dfa_flow_config c = {.num_train_timesteps = 1000,
                         .shift = 1.0,
                         .use_dynamic_shifting = 0,
                         .base_shift = 0.5,
                         .max_shift = 1.15,
                         .base_image_seq_len = 256,
                         .max_image_seq_len = 4096,
                         .time_shift_linear = 0};
    return c;
}

static int flow_is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

dfa_status dfa_flow_config_read_or_default(dfa_ctx *ctx, const char *model_dir, int flux, int guidance_embeds,
                                           dfa_flow_config *cfg) {
    dfa_status s = dfa_flow_config_read(ctx, model_dir, cfg);
    if (s != DFA_ERR_NOT_FOUND) return s;
    *cfg = dfa_flow_config_default();
    cfg->shift = 3.0;
    cfg->use_dynamic_shifting = flux && guidance_embeds;
    if (flux && !guidance_embeds) cfg->shift = 1.0; /* schnell */
    dfa_error_clear(&ctx->err);
    return DFA_OK;
}

dfa_status dfa_flow_config_read(dfa_ctx *ctx, const char *path, dfa_flow_config *cfg) {
    char file[1100];
    const char *cands[3] = {"%s", "%s/scheduler_config.json", "%s/scheduler/scheduler_config.json"};
    int found = 0;
    for (int i = 0; i < 3 && !found; i++) {
        int k = snprintf(file, sizeof file, cands[i], path);
        if (k > 0 && (size_t)k < sizeof file && flow_is_file(file)) found = 1;
    }
    if (!found)
        DFA_CTX_FAIL(ctx, DFA_ERR_NOT_FOUND, "no scheduler config at %s (nor scheduler_config.json or "
                     "scheduler/scheduler_config.json inside)", path);
    cJSON *j = NULL;
    DFA_TRY(dfa_json_read_file(file, &j, &ctx->err));
    dfa_flow_config c = dfa_flow_config_default();
    dfa_error *e = &ctx->err;
    dfa_status st = dfa_json_int_or(j, "num_train_timesteps", file, c.num_train_timesteps, &c.num_train_timesteps, e);
    if (st == DFA_OK) st = dfa_json_double_or(j, "shift", file, c.shift, &c.shift, e);
    if (st == DFA_OK) st = dfa_json_bool_or(j, "use_dynamic_shifting", file, 0, &c.use_dynamic_shifting, e);
    if (st == DFA_OK) st = dfa_json_double_or(j, "base_shift", file, c.base_shift, &c.base_shift, e);
    if (st == DFA_OK) st = dfa_json_double_or(j, "max_shift", file, c.max_shift, &c.max_shift, e);
    if (st == DFA_OK) st = dfa_json_int_or(j, "base_image_seq_len", file, 256, &c.base_image_seq_len, e);
    if (st == DFA_OK) st = dfa_json_int_or(j, "max_image_seq_len", file, 4096, &c.max_image_seq_len, e);
    const char *tst = NULL;
    if (st == DFA_OK && cJSON_GetObjectItemCaseSensitive(j, "time_shift_type") &&
        !cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "time_shift_type"))) {
        st = dfa_json_string(j, "time_shift_type", file, &tst, e);
        if (st == DFA_OK) {
            if (strcmp(tst, "linear") == 0)
                c.time_shift_linear = 1;
            else if (strcmp(tst, "exponential") != 0)
                st = dfa_error_set(e, DFA_ERR_FORMAT, __FILE__, __LINE__, "%s: time_shift_type '%s' is neither "
                                   "'exponential' nor 'linear'", file, tst);
        }
    }
    const char *unsupported[] = {"use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "invert_sigmas",
                                 "stochastic_sampling"};
    for (size_t i = 0; st == DFA_OK && i < sizeof unsupported / sizeof *unsupported; i++) {
        int on = 0;
        st = dfa_json_bool_or(j, unsupported[i], file, 0, &on, e);
        if (st == DFA_OK && on)
            st = dfa_error_set(e, DFA_ERR_UNSUPPORTED, __FILE__, __LINE__, "%s: '%s' is set; this sampler implements "
                               "the plain (shifted) flow-matching Euler schedule only", file, unsupported[i]);
    }
    if (st == DFA_OK) {
        double term = 0;
        st = dfa_json_double_or(j, "shift_terminal", file, 0.0, &term, e);
        if (st == DFA_OK && term != 0.0)
            st = dfa_error_set(e, DFA_ERR_UNSUPPORTED, __FILE__, __LINE__, "%s: shift_terminal = %g is not supported",
                               file, term);
    }
    if (st == DFA_OK && (c.num_train_timesteps < 1 || !(c.shift > 0) || c.max_image_seq_len == c.base_image_seq_len))
        st = dfa_error_set(e, DFA_ERR_FORMAT, __FILE__, __LINE__, "%s: impossible schedule (num_train_timesteps %d, "
                           "shift %g, image seq lens %d..%d)", file, c.num_train_timesteps, c.shift,
                           c.base_image_seq_len, c.max_image_seq_len);
    cJSON_Delete(j);
    if (st == DFA_OK) *cfg = c;
    return st;
}

double dfa_flow_calculate_shift(const dfa_flow_config *cfg, int image_seq_len) {
    double m = (cfg->max_shift - cfg->base_shift) / (double)(cfg->max_image_seq_len - cfg->base_image_seq_len);
    double b = cfg->base_shift - m * cfg->base_image_seq_len;
    return image_seq_len * m + b;
}

void dfa_flow_flux_sigmas(int n, double *sigmas) {
    /* np.linspace(1.0, 1/n, n) */
    double start = 1.0, stop = 1.0 / n;
    if (n == 1) {
        sigmas[0] = start;
        return;
    }
    double step = (stop - start) / (n - 1);
    for (int i = 0; i < n; i++) sigmas[i] = start + i * step;
    sigmas[n - 1] = stop;
}

/* Shift of one sigma in double (the default-schedule path runs in float64 numpy). */
static double shift_f64(const dfa_flow_config *c, double mu, double s) {
    if (c->use_dynamic_shifting) {
        double r = 1.0 / s - 1.0;
        return c->time_shift_linear ? mu / (mu + r) : exp(mu) / (exp(mu) + r);
    }
    return c->shift * s / (1.0 + (c->shift - 1.0) * s);
}

/* Same in float32 (custom sigmas are cast to float32 numpy first; python scalars stay weak). */
static float shift_f32(const dfa_flow_config *c, double mu, float s) {
    if (c->use_dynamic_shifting) {
        float r = 1.0f / s - 1.0f;
        float e = c->time_shift_linear ? (float)mu : (float)exp(mu);
        return e / (e + r);
    }
    float sh = (float)c->shift, shm1 = (float)(c->shift - 1.0);
    return sh * s / (1.0f + shm1 * s);
}

dfa_status dfa_flow_set_timesteps(dfa_ctx *ctx, const dfa_flow_config *cfg, int n, const double *sigmas_in, double mu,
                                  float *sigmas, float *timesteps) {
    if (n < 1) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "flow schedule: %d steps (need >= 1)", n);
    if (cfg->use_dynamic_shifting && !isfinite(mu))
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "flow schedule: dynamic shifting needs a finite mu");
    const float NT = (float)cfg->num_train_timesteps;
    if (sigmas_in) {
        for (int i = 0; i < n; i++) {
            if (!(sigmas_in[i] > 0.0 && sigmas_in[i] <= 1.0))
                DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "flow schedule: sigma[%d] = %g outside (0, 1]", i, sigmas_in[i]);
            sigmas[i] = shift_f32(cfg, mu, (float)sigmas_in[i]);
        }
    } else {
        /* the scheduler's init: sigmas = t / N for t = N..1 (f32), shifted with the fixed shift
         * unless dynamic; sigma_max / sigma_min are its ends. */
        float smin = 1.0f / NT, smax = 1.0f;
        if (!cfg->use_dynamic_shifting) {
            float sh = (float)cfg->shift, shm1 = (float)(cfg->shift - 1.0);
            smin = sh * smin / (1.0f + shm1 * smin);
            smax = sh * smax / (1.0f + shm1 * smax);
        }
        double t0 = (double)smax * cfg->num_train_timesteps, t1 = (double)smin * cfg->num_train_timesteps;
        for (int i = 0; i < n; i++) {
            double t = n == 1 ? t0 : (i == n - 1 ? t1 : t0 + i * ((t1 - t0) / (n - 1)));
            sigmas[i] = (float)shift_f64(cfg, mu, t / cfg->num_train_timesteps);
        }
    }
    for (int i = 0; i < n; i++) timesteps[i] = sigmas[i] * NT;
    sigmas[n] = 0.0f;
    return DFA_OK;
}

void dfa_flow_euler_step(float *x, const float *v, size_t n, float sigma, float sigma_next) {
    const float dt = sigma_next - sigma;
    for (size_t i = 0; i < n; i++) x[i] = x[i] + dt * v[i];
}

void dfa_flow_cfg_combine(float *out, const float *uncond, const float *cond, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) out[i] = uncond[i] + scale * (cond[i] - uncond[i]);
}

dfa_status dfa_flow_sample(dfa_ctx *ctx, int n_steps, const float *sigmas, const float *timesteps, float *x, float *v,
                           size_t n, dfa_flow_velocity_fn velocity, dfa_flow_progress_fn progress, void *user) {
    if (n_steps < 1 || !sigmas || !timesteps || !x || !v || !velocity)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "flow sample: bad arguments (%d steps)", n_steps);
    const int planned = dfa_attn_plan(ctx) != NULL;
    dfa_status st = DFA_OK;
    for (int i = 0; i < n_steps && st == DFA_OK; i++) {
        double t0 = dfa_now_s();
        if (planned && (st = dfa_attn_begin_step(ctx, i)) != DFA_OK) break;
        st = velocity(user, i, timesteps[i], x, v);
        if (st != DFA_OK) break;
        dfa_flow_euler_step(x, v, n, sigmas[i], sigmas[i + 1]);
        if (progress) progress(user, i, n_steps, dfa_now_s() - t0);
    }
    if (planned) dfa_attn_end_run(ctx);
    return st;
}

/* ---- RNG: xoshiro256** seeded by splitmix64 ---- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void dfa_rng_seed(dfa_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t dfa_rng_next(dfa_rng *r) {
    uint64_t *s = r->s;
    const uint64_t result = rotl64(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

void dfa_rng_normal(dfa_rng *r, float *out, size_t n) {
    const double two_pi = 6.283185307179586476925286766559;
    for (size_t i = 0; i < n; i += 2) {
        /* u1 in (0, 1], u2 in [0, 1) from 53 random bits */
        double u1 = ((double)(dfa_rng_next(r) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
        double u2 = (double)(dfa_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
        double rad = sqrt(-2.0 * log(u1));
        out[i] = (float)(rad * cos(two_pi * u2));
        if (i + 1 < n) out[i + 1] = (float)(rad * sin(two_pi * u2));
    }
}
