/* ddpm.c - DDPM noise schedule and the DDIM (eta = 0) sampler, as diffusers DDIMScheduler. */
#include "sample/ddpm.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"

/* torch.linspace(a, b, n, dtype=float32): the first half counts up from a, the second down from b. */
static void linspace_f32(float a, float b, int n, float *out) {
    if (n == 1) {
        out[0] = a;
        return;
    }
    const float step = (b - a) / (float)(n - 1);
    const int half = n / 2;
    for (int i = 0; i < n; i++) out[i] = i < half ? a + step * (float)i : b - step * (float)(n - 1 - i);
}

static double cos_bar(double t) {
    double c = cos((t + 0.008) / 1.008 * 3.14159265358979323846 / 2);
    return c * c;
}

static dfa_status get_num(const cJSON *cfg, const char *key, const char *what, double dflt, double *out,
                          dfa_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!v || cJSON_IsNull(v)) {
        *out = dflt;
        return DFA_OK;
    }
    if (!cJSON_IsNumber(v)) DFA_FAIL(err, DFA_ERR_FORMAT, "%s: %s must be a number", what, key);
    *out = v->valuedouble;
    return DFA_OK;
}

static const char *get_str(const cJSON *cfg, const char *key, const char *dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    return cJSON_IsString(v) ? v->valuestring : dflt;
}

dfa_status dfa_noise_schedule_from_json(dfa_noise_schedule *ns, const cJSON *cfg, const char *what, dfa_error *err) {
    double T = 0, b0 = 0, b1 = 0;
    DFA_TRY(get_num(cfg, "num_train_timesteps", what, 1000, &T, err));
    DFA_TRY(get_num(cfg, "beta_start", what, 0.0001, &b0, err));
    DFA_TRY(get_num(cfg, "beta_end", what, 0.02, &b1, err));
    if (!(T >= 2 && T <= DFA_SCHED_MAX_T))
        DFA_FAIL(err, DFA_ERR_UNSUPPORTED, "%s: num_train_timesteps %g (2..%d supported)", what, T, DFA_SCHED_MAX_T);
    const cJSON *tb = cJSON_GetObjectItemCaseSensitive(cfg, "trained_betas");
    if (tb && !cJSON_IsNull(tb)) DFA_FAIL(err, DFA_ERR_UNSUPPORTED, "%s: trained_betas is not supported", what);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cfg, "rescale_betas_zero_snr")))
        DFA_FAIL(err, DFA_ERR_UNSUPPORTED, "%s: rescale_betas_zero_snr is not supported", what);
    ns->T = (int)T;
    float betas[DFA_SCHED_MAX_T];
    const char *sched = get_str(cfg, "beta_schedule", "linear");
    if (strcmp(sched, "linear") == 0) {
        linspace_f32((float)b0, (float)b1, ns->T, betas);
    } else if (strcmp(sched, "scaled_linear") == 0) {
        linspace_f32((float)sqrt(b0), (float)sqrt(b1), ns->T, betas);
        for (int i = 0; i < ns->T; i++) betas[i] *= betas[i];
    } else if (strcmp(sched, "squaredcos_cap_v2") == 0) {
        for (int i = 0; i < ns->T; i++) {
            double b = 1 - cos_bar((double)(i + 1) / ns->T) / cos_bar((double)i / ns->T);
            betas[i] = (float)(b < 0.999 ? b : 0.999);
        }
    } else {
        DFA_FAIL(err, DFA_ERR_UNSUPPORTED, "%s: beta_schedule '%s' (linear, scaled_linear, squaredcos_cap_v2)", what,
                 sched);
    }
    float ac = 1.0f;
    for (int i = 0; i < ns->T; i++) {
        ac *= 1.0f - betas[i];
        ns->alphas_cumprod[i] = ac;
    }
    return DFA_OK;
}

dfa_status dfa_sched_common_from_json(const cJSON *cfg, const char *what, dfa_spacing dflt, dfa_pred_type *pred,
                                      dfa_spacing *spacing, int *steps_offset, dfa_error *err) {
    const char *p = get_str(cfg, "prediction_type", "epsilon");
    if (strcmp(p, "epsilon") == 0)
        *pred = DFA_PRED_EPSILON;
    else if (strcmp(p, "v_prediction") == 0)
        *pred = DFA_PRED_V;
    else if (strcmp(p, "sample") == 0)
        *pred = DFA_PRED_SAMPLE;
    else
        DFA_FAIL(err, DFA_ERR_UNSUPPORTED, "%s: prediction_type '%s'", what, p);
    const char *sp = get_str(cfg, "timestep_spacing", dflt == DFA_SPACING_LINSPACE ? "linspace" : "leading");
    if (strcmp(sp, "linspace") == 0)
        *spacing = DFA_SPACING_LINSPACE;
    else if (strcmp(sp, "leading") == 0)
        *spacing = DFA_SPACING_LEADING;
    else if (strcmp(sp, "trailing") == 0)
        *spacing = DFA_SPACING_TRAILING;
    else
        DFA_FAIL(err, DFA_ERR_UNSUPPORTED, "%s: timestep_spacing '%s' (linspace, leading, trailing)", what, sp);
    double off = 0;
    DFA_TRY(get_num(cfg, "steps_offset", what, 0, &off, err));
    *steps_offset = (int)off;
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cfg, "thresholding")))
        DFA_FAIL(err, DFA_ERR_UNSUPPORTED, "%s: thresholding is not supported", what);
    return DFA_OK;
}

dfa_status dfa_ddim_init_json(dfa_ddim *s, const cJSON *cfg, const char *what, dfa_error *err) {
    memset(s, 0, sizeof *s);
    DFA_TRY(dfa_noise_schedule_from_json(&s->ns, cfg, what, err));
    DFA_TRY(dfa_sched_common_from_json(cfg, what, DFA_SPACING_LEADING, &s->pred, &s->spacing, &s->steps_offset, err));
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, "set_alpha_to_one");
    s->set_alpha_to_one = v ? cJSON_IsTrue(v) : 1;
    v = cJSON_GetObjectItemCaseSensitive(cfg, "clip_sample");
    s->clip_sample = v ? cJSON_IsTrue(v) : 1;
    DFA_TRY(get_num(cfg, "clip_sample_range", what, 1.0, &s->clip_range, err));
    return DFA_OK;
}

dfa_status dfa_sched_json_read(const char *path, cJSON **out, dfa_error *err) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) DFA_FAIL(err, DFA_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? 2 * cap : 8192;
            if (cap > ((size_t)1 << 24)) {
                free(buf);
                fclose(f);
                DFA_FAIL(err, DFA_ERR_FORMAT, "%s: larger than 16 MiB, not a scheduler config", path);
            }
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                DFA_FAIL(err, DFA_ERR_OOM, "%s: no memory", path);
            }
            buf = nb;
        }
        size_t r = fread(buf + len, 1, 4096, f);
        len += r;
        if (r < 4096) break;
    }
    fclose(f);
    /* Python's json writes -Infinity / Infinity (diffusers: lambda_min_clipped); standard JSON
     * has no such tokens: outside strings, rewrite them as 1e999 (strtod gives +-inf), padded
     * to the same length. NaN stays a syntax error. */
    int in_str = 0;
    for (size_t i = 0; i < len; i++) {
        const char c = buf[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = 0;
            continue;
        }
        if (c == '"') {
            in_str = 1;
        } else if (c == 'I' && len - i >= 8 && memcmp(buf + i, "Infinity", 8) == 0) {
            memcpy(buf + i, "1e999   ", 8);
            i += 7;
        }
    }
    dfa_status st = dfa_json_parse(buf, len, path, out, err);
    free(buf);
    return st;
}

dfa_status dfa_ddim_init_file(dfa_ddim *s, const char *path, dfa_error *err) {
    cJSON *root = NULL;
    DFA_TRY(dfa_sched_json_read(path, &root, err));
    dfa_status st = dfa_ddim_init_json(s, root, path, err);
    cJSON_Delete(root);
    return st;
}

/* DDIM / DDPM set_timesteps: n points (linspace, leading, trailing), descending. */
static dfa_status discrete_timesteps(const char *who, int T, dfa_spacing spacing, int steps_offset, int n,
                                     int *out, dfa_error *err) {
    if (n < 1 || n > T || n > DFA_SCHED_MAX_STEPS)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "%s: %d steps (1..%d)", who, n,
                 T < DFA_SCHED_MAX_STEPS ? T : DFA_SCHED_MAX_STEPS);
    for (int i = 0; i < n; i++) {
        const int k = n - 1 - i; /* reversed */
        int t;
        if (spacing == DFA_SPACING_LINSPACE)
            t = (int)nearbyint(n == 1 ? 0.0 : (double)k * (T - 1) / (n - 1));
        else if (spacing == DFA_SPACING_LEADING)
            t = k * (T / n) + steps_offset;
        else
            t = (int)nearbyint((double)T - (double)i * ((double)T / n)) - 1;
        if (t < 0 || t >= T)
            DFA_FAIL(err, DFA_ERR_INVALID_ARG, "%s: timestep %d out of range (steps_offset %d)", who, t, steps_offset);
        out[i] = t;
    }
    return DFA_OK;
}

dfa_status dfa_ddim_set_timesteps(dfa_ddim *s, int n, dfa_error *err) {
    DFA_TRY(discrete_timesteps("ddim", s->ns.T, s->spacing, s->steps_offset, n, s->timesteps, err));
    s->n_steps = n;
    return DFA_OK;
}

void dfa_ddim_step(const dfa_ddim *s, int i, const float *model_out, float *sample, size_t n) {
    const int t = s->timesteps[i], prev = t - s->ns.T / s->n_steps;
    const double a_t = s->ns.alphas_cumprod[t];
    const double a_prev =
        prev >= 0 ? s->ns.alphas_cumprod[prev] : (s->set_alpha_to_one ? 1.0 : s->ns.alphas_cumprod[0]);
    const double sa = sqrt(a_t), sb = sqrt(1 - a_t), sap = sqrt(a_prev), sbp = sqrt(1 - a_prev);
    for (size_t j = 0; j < n; j++) {
        const double x = sample[j], m = model_out[j];
        double x0, eps;
        if (s->pred == DFA_PRED_EPSILON) {
            x0 = (x - sb * m) / sa;
            eps = m;
        } else if (s->pred == DFA_PRED_SAMPLE) {
            x0 = m;
            eps = (x - sa * x0) / sb;
        } else {
            x0 = sa * x - sb * m;
            eps = sa * m + sb * x;
        }
        /* diffusers keeps the unclipped eps (use_clipped_model_output = False) */
        if (s->clip_sample) x0 = x0 < -s->clip_range ? -s->clip_range : (x0 > s->clip_range ? s->clip_range : x0);
        sample[j] = (float)(sap * x0 + sbp * eps);
    }
}

/* ---- DDPM ---- */

dfa_status dfa_ddpm_init_json(dfa_ddpm *s, const cJSON *cfg, const char *what, dfa_error *err) {
    memset(s, 0, sizeof *s);
    DFA_TRY(dfa_noise_schedule_from_json(&s->ns, cfg, what, err));
    DFA_TRY(dfa_sched_common_from_json(cfg, what, DFA_SPACING_LEADING, &s->pred, &s->spacing, &s->steps_offset, err));
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, "clip_sample");
    s->clip_sample = v ? cJSON_IsTrue(v) : 1;
    DFA_TRY(get_num(cfg, "clip_sample_range", what, 1.0, &s->clip_range, err));
    static const char *const names[] = {"fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log",
                                        "learned", "learned_range"};
    const char *vt = get_str(cfg, "variance_type", "fixed_small");
    s->variance = (dfa_ddpm_variance)-1;
    for (int i = 0; i < 6; i++)
        if (strcmp(vt, names[i]) == 0) s->variance = (dfa_ddpm_variance)i;
    if ((int)s->variance < 0 || s->variance == DFA_VAR_FIXED_LARGE_LOG) /* diffusers' takes sqrt(log(beta)): NaN */
        DFA_FAIL(err, DFA_ERR_UNSUPPORTED, "%s: variance_type '%s'", what, vt);
    return DFA_OK;
}

dfa_status dfa_ddpm_set_timesteps(dfa_ddpm *s, int n, dfa_error *err) {
    DFA_TRY(discrete_timesteps("ddpm", s->ns.T, s->spacing, s->steps_offset, n, s->timesteps, err));
    s->n_steps = n;
    return DFA_OK;
}

int dfa_ddpm_needs_model_var(const dfa_ddpm *s) {
    return s->variance == DFA_VAR_LEARNED || s->variance == DFA_VAR_LEARNED_RANGE;
}

void dfa_ddpm_step(const dfa_ddpm *s, int i, const float *model_out, const float *model_var, const float *noise,
                   float *sample, size_t n) {
    const int t = s->timesteps[i], prev = i + 1 < s->n_steps ? s->timesteps[i + 1] : -1;
    /* float32 as diffusers (alphas_cumprod is a float32 tensor) */
    const float a_t = s->ns.alphas_cumprod[t], a_prev = prev >= 0 ? s->ns.alphas_cumprod[prev] : 1.0f;
    const float b_t = 1.0f - a_t, b_prev = 1.0f - a_prev;
    const float cur_alpha = a_t / a_prev, cur_beta = 1.0f - cur_alpha;
    const double c_x0 = sqrt((double)a_prev) * cur_beta / b_t, c_x = sqrt((double)cur_alpha) * b_prev / b_t;
    double var = (double)b_prev / b_t * cur_beta;
    if (var < 1e-20) var = 1e-20;
    const double min_log = log(var), max_log = log((double)cur_beta);
    for (size_t j = 0; j < n; j++) {
        const double x = sample[j], m = model_out[j];
        double x0;
        if (s->pred == DFA_PRED_EPSILON)
            x0 = (x - sqrt((double)b_t) * m) / sqrt((double)a_t);
        else if (s->pred == DFA_PRED_SAMPLE)
            x0 = m;
        else
            x0 = sqrt((double)a_t) * x - sqrt((double)b_t) * m;
        if (s->clip_sample) x0 = x0 < -s->clip_range ? -s->clip_range : (x0 > s->clip_range ? s->clip_range : x0);
        double out = c_x0 * x0 + c_x * x;
        if (t > 0 && noise) {
            double sd;
            switch (s->variance) {
            case DFA_VAR_FIXED_SMALL: sd = sqrt(var); break;
            case DFA_VAR_FIXED_SMALL_LOG: sd = exp(0.5 * min_log); break;
            case DFA_VAR_FIXED_LARGE: sd = sqrt((double)cur_beta); break;
            case DFA_VAR_LEARNED: sd = sqrt((double)model_var[j]); break;
            default: {
                const double frac = ((double)model_var[j] + 1.0) / 2.0;
                sd = exp(0.5 * (frac * max_log + (1.0 - frac) * min_log));
            }
            }
            out += sd * noise[j];
        }
        sample[j] = (float)out;
    }
}
