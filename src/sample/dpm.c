/* dpm.c - DPM-Solver++ (2M, midpoint) as diffusers DPMSolverMultistepScheduler. */
#include "sample/dpm.h"

#include <math.h>
#include <string.h>

#include "io/json.h"

static const char *str_or(const cJSON *cfg, const char *key, const char *dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    return cJSON_IsString(v) ? v->valuestring : dflt;
}

static int bool_or(const cJSON *cfg, const char *key, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

dfa_status dfa_dpm_init_json(dfa_dpm *s, const cJSON *cfg, const char *what, dfa_error *err) {
    memset(s, 0, sizeof *s);
    DFA_TRY(dfa_noise_schedule_from_json(&s->ns, cfg, what, err));
    DFA_TRY(dfa_sched_common_from_json(cfg, what, DFA_SPACING_LINSPACE, &s->pred, &s->spacing, &s->steps_offset, err));
    const char *alg = str_or(cfg, "algorithm_type", "dpmsolver++");
    if (strcmp(alg, "dpmsolver++") != 0)
        DFA_FAIL(err, DFA_ERR_UNSUPPORTED, "%s: algorithm_type '%s' (dpmsolver++ supported)", what, alg);
    const char *st = str_or(cfg, "solver_type", "midpoint");
    if (strcmp(st, "midpoint") != 0)
        DFA_FAIL(err, DFA_ERR_UNSUPPORTED, "%s: solver_type '%s' (midpoint supported)", what, st);
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(cfg, "solver_order");
    s->order = cJSON_IsNumber(o) ? o->valueint : 2;
    if (s->order < 1 || s->order > 2)
        DFA_FAIL(err, DFA_ERR_UNSUPPORTED, "%s: solver_order %d (1 or 2 supported)", what, s->order);
    static const char *const refused[] = {"use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas",
                                          "use_flow_sigmas", "use_lu_lambdas"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (bool_or(cfg, refused[i], 0))
            DFA_FAIL(err, DFA_ERR_UNSUPPORTED, "%s: %s is not supported", what, refused[i]);
    const cJSON *vt = cJSON_GetObjectItemCaseSensitive(cfg, "variance_type");
    if (vt && !cJSON_IsNull(vt))
        DFA_FAIL(err, DFA_ERR_UNSUPPORTED,
                 "%s: variance_type must be null (split learned sigma off the model output before stepping)", what);
    s->lower_order_final = bool_or(cfg, "lower_order_final", 1);
    s->euler_at_final = bool_or(cfg, "euler_at_final", 0);
    const char *fs = str_or(cfg, "final_sigmas_type", "zero");
    if (strcmp(fs, "zero") == 0)
        s->final_sigma_zero = 1;
    else if (strcmp(fs, "sigma_min") == 0)
        s->final_sigma_zero = 0;
    else
        DFA_FAIL(err, DFA_ERR_UNSUPPORTED, "%s: final_sigmas_type '%s' (zero, sigma_min)", what, fs);
    /* lambda_min_clipped: a number, or "-inf" / absent (json has no infinities: Python writes -Infinity) */
    const cJSON *lm = cJSON_GetObjectItemCaseSensitive(cfg, "lambda_min_clipped");
    s->lambda_min_clipped = cJSON_IsNumber(lm) ? lm->valuedouble : -INFINITY;
    return DFA_OK;
}

dfa_status dfa_dpm_init_file(dfa_dpm *s, const char *path, dfa_error *err) {
    cJSON *root = NULL;
    DFA_TRY(dfa_sched_json_read(path, &root, err));
    dfa_status st = dfa_dpm_init_json(s, root, path, err);
    cJSON_Delete(root);
    return st;
}

static float sigma_at(const dfa_noise_schedule *ns, int t) {
    const float a = ns->alphas_cumprod[t];
    return sqrtf((1.0f - a) / a);
}

dfa_status dfa_dpm_set_timesteps(dfa_ctx *ctx, dfa_dpm *s, int n_steps, size_t n) {
    const int T = s->ns.T;
    if (n_steps < 1 || n_steps > DFA_SCHED_MAX_STEPS || n_steps > T)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dpm: %d steps (1..%d)", n_steps,
                     T < DFA_SCHED_MAX_STEPS ? T : DFA_SCHED_MAX_STEPS);
    /* last_timestep = T - (number of lambdas below lambda_min_clipped) */
    int clipped = 0;
    for (int t = 0; t < T; t++) {
        const double a = s->ns.alphas_cumprod[t];
        const double lam = 0.5 * log(a) - 0.5 * log(1 - a);
        if (lam < s->lambda_min_clipped) clipped++;
    }
    const int last = T - clipped;
    for (int i = 0; i < n_steps; i++) {
        int t;
        if (s->spacing == DFA_SPACING_LINSPACE) {
            t = (int)nearbyint((double)(n_steps - i) * (last - 1) / n_steps); /* linspace(0, last-1, n+1) reversed */
        } else if (s->spacing == DFA_SPACING_LEADING) {
            t = (n_steps - i) * (last / (n_steps + 1)) + s->steps_offset;
        } else {
            t = (int)nearbyint((double)last - (double)i * ((double)T / n_steps)) - 1;
        }
        if (t < 0 || t >= T)
            DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dpm: timestep %d out of range for %d steps", t, n_steps);
        s->timesteps[i] = t;
        s->sigmas[i] = sigma_at(&s->ns, t);
    }
    s->sigmas[n_steps] = s->final_sigma_zero ? 0.0f : sigma_at(&s->ns, 0);
    s->n_steps = n_steps;
    s->step_index = 0;
    s->lower_order_nums = 0;
    if (s->n != n || !s->prev_x0) {
        dfa_ctx_mem_release(ctx, s->prev_x0);
        s->prev_x0 = NULL;
        s->n = 0;
        DFA_TRY(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, (n ? n : 1) * sizeof(float), "dpm history", (void **)&s->prev_x0));
        s->n = n;
    }
    return DFA_OK;
}

/* alpha_t = 1 / sqrt(sigma^2 + 1), sigma_t = sigma * alpha_t */
static void alpha_sigma(double sigma, double *a, double *s) {
    *a = 1.0 / sqrt(sigma * sigma + 1.0);
    *s = sigma * *a;
}

dfa_status dfa_dpm_step(dfa_ctx *ctx, dfa_dpm *s, const float *model_out, float *sample) {
    const int i = s->step_index, N = s->n_steps;
    if (i >= N || !s->prev_x0)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dpm: step %d of %d (call dfa_dpm_set_timesteps first)", i, N);
    const int lower_final =
        i == N - 1 && (s->euler_at_final || (s->lower_order_final && N < 15) || s->final_sigma_zero);
    const int first = s->order == 1 || s->lower_order_nums < 1 || lower_final;
    double a_s0, s_s0, a_t, s_t;
    alpha_sigma(s->sigmas[i], &a_s0, &s_s0);
    alpha_sigma(s->sigmas[i + 1], &a_t, &s_t);
    /* exp(-h) with h = lambda_t - lambda_s0, lambda = log(alpha) - log(sigma): written as a
     * ratio so that the final sigma 0 gives exp(-h) = 0 without log(0) */
    const double emh = (s_t * a_s0) / (a_t * s_s0);
    const double c_x = s_t / s_s0, c_d = -a_t * (emh - 1.0); /* x_t = c_x x + c_d D0 (+ 0.5 c_d D1) */
    double r_inv = 0;
    if (!first) {
        double a_s1, s_s1;
        alpha_sigma(s->sigmas[i - 1], &a_s1, &s_s1);
        const double lam_t = log(a_t) - log(s_t), lam_s0 = log(a_s0) - log(s_s0), lam_s1 = log(a_s1) - log(s_s1);
        r_inv = (lam_t - lam_s0) / (lam_s0 - lam_s1); /* 1 / r0, r0 = h_0 / h */
    }
    for (size_t j = 0; j < s->n; j++) {
        const double x = sample[j], m = model_out[j];
        double x0;
        if (s->pred == DFA_PRED_EPSILON)
            x0 = (x - s_s0 * m) / a_s0;
        else if (s->pred == DFA_PRED_V)
            x0 = a_s0 * x - s_s0 * m;
        else
            x0 = m;
        double xt;
        if (first) {
            xt = c_x * x + c_d * x0;
        } else {
            const double d1 = r_inv * (x0 - s->prev_x0[j]);
            xt = c_x * x + c_d * x0 + 0.5 * c_d * d1;
        }
        s->prev_x0[j] = (float)x0;
        sample[j] = (float)xt;
    }
    if (s->lower_order_nums < s->order) s->lower_order_nums++;
    s->step_index++;
    return DFA_OK;
}

void dfa_dpm_free(dfa_ctx *ctx, dfa_dpm *s) {
    if (!s) return;
    dfa_ctx_mem_release(ctx, s->prev_x0);
    s->prev_x0 = NULL;
    s->n = 0;
}
