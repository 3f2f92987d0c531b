/* plan.c - plan objects: init/free/copy, validation with look-ahead store flags, per-head
 * codes, attention-cost accounting. File I/O lives in plan_io.c. */
#include "plan/plan.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void plan_zero_arrays(dfa_plan *p) {
    p->asc = NULL;
    p->method = p->store_out = p->store_res = NULL;
    p->window = p->res_window = NULL;
    p->layer_layout = NULL;
}

void dfa_plan_free(dfa_plan *p) {
    if (!p) return;
    free(p->asc);
    free(p->method);
    free(p->window);
    free(p->store_out);
    free(p->store_res);
    free(p->res_window);
    free(p->layer_layout);
    plan_zero_arrays(p);
    p->validated = 0;
}

static dfa_status plan_alloc(dfa_plan *p, dfa_error *err) {
    size_t sl = (size_t)p->n_steps * p->n_layers, n = sl * p->n_heads;
    p->asc = calloc(sl, 1);
    p->method = calloc(n, 1);
    p->window = calloc(n, sizeof(int32_t));
    p->store_out = calloc(n, 1);
    p->store_res = calloc(n, 1);
    p->res_window = calloc(n, sizeof(int32_t));
    if (!p->asc || !p->method || !p->window || !p->store_out || !p->store_res || !p->res_window) {
        dfa_plan_free(p);
        DFA_FAIL(err, DFA_ERR_OOM, "out of host memory for a plan of %d steps x %d layers x %d heads", p->n_steps,
                 p->n_layers, p->n_heads);
    }
    return DFA_OK;
}

dfa_status dfa_plan_init(dfa_plan *p, const dfa_attn_layout *layout, int n_steps, int n_layers, int n_heads,
                         dfa_error *err) {
    memset(p, 0, sizeof *p);
    if (n_steps < 1 || n_layers < 1 || n_heads < 1 || n_steps > 100000 || n_layers > 100000 || n_heads > 100000 ||
        (double)n_steps * n_layers * n_heads > 1e9)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "plan: steps %d, layers %d, heads %d must each be >= 1 (and not absurd)",
                 n_steps, n_layers, n_heads);
    p->layout = *layout;
    p->n_steps = n_steps;
    p->n_layers = n_layers;
    p->n_heads = n_heads;
    p->cond_half = 1;
    p->c = 0.0;
    return plan_alloc(p, err);
}

dfa_status dfa_plan_copy(dfa_plan *dst, const dfa_plan *src, dfa_error *err) {
    *dst = *src;
    plan_zero_arrays(dst);
    DFA_TRY(plan_alloc(dst, err));
    size_t sl = (size_t)src->n_steps * src->n_layers, n = sl * src->n_heads;
    memcpy(dst->asc, src->asc, sl);
    memcpy(dst->method, src->method, n);
    memcpy(dst->window, src->window, n * sizeof(int32_t));
    memcpy(dst->store_out, src->store_out, n);
    memcpy(dst->store_res, src->store_res, n);
    memcpy(dst->res_window, src->res_window, n * sizeof(int32_t));
    if (src->layer_layout) {
        dst->layer_layout = malloc((size_t)src->n_layers * sizeof *dst->layer_layout);
        if (!dst->layer_layout) {
            dfa_plan_free(dst);
            DFA_FAIL(err, DFA_ERR_OOM, "out of host memory copying a plan's layer layouts");
        }
        memcpy(dst->layer_layout, src->layer_layout, (size_t)src->n_layers * sizeof *dst->layer_layout);
    }
    return DFA_OK;
}

dfa_status dfa_plan_set_layer_layout(dfa_plan *p, int layer, const dfa_attn_layout *l, dfa_error *err) {
    if (layer < 0 || layer >= p->n_layers)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "plan: layer layout for layer %d outside the plan's %d layers", layer,
                 p->n_layers);
    if (!p->layer_layout) {
        p->layer_layout = malloc((size_t)p->n_layers * sizeof *p->layer_layout);
        if (!p->layer_layout) DFA_FAIL(err, DFA_ERR_OOM, "out of host memory for a plan's layer layouts");
        for (int i = 0; i < p->n_layers; i++) p->layer_layout[i] = p->layout;
    }
    p->layer_layout[layer] = *l;
    p->layer_layout[layer].band = p->layout.band; /* the band kind is the plan's */
    p->validated = 0;
    return DFA_OK;
}

void dfa_plan_set_band(dfa_plan *p, int band) {
    p->layout.band = band;
    for (int l = 0; p->layer_layout && l < p->n_layers; l++) p->layer_layout[l].band = band;
    p->validated = 0;
}

int dfa_plan_n_layer_layouts(const dfa_plan *p) {
    int n = 0;
    for (int l = 0; p->layer_layout && l < p->n_layers; l++)
        n += !dfa_plan_layout_same(&p->layer_layout[l], &p->layout);
    return n;
}

const char *dfa_plan_code(int method, int window, char *buf, size_t len) {
    switch (method) {
    case DFA_ATTN_FULL: snprintf(buf, len, "F"); break;
    case DFA_ATTN_ARROW: snprintf(buf, len, "A%d", window); break;
    case DFA_ATTN_ARROW_RS: snprintf(buf, len, "R%d", window); break;
    case DFA_ATTN_CACHE: snprintf(buf, len, "C"); break;
    default: snprintf(buf, len, "?%d", method); break;
    }
    return buf;
}

int dfa_plan_parse_code(const char *s, int *method, int *window) {
    *window = 0;
    if (strcmp(s, "F") == 0) {
        *method = DFA_ATTN_FULL;
        return 0;
    }
    if (strcmp(s, "C") == 0) {
        *method = DFA_ATTN_CACHE;
        return 0;
    }
    if ((s[0] == 'A' || s[0] == 'R') && s[1] >= '0' && s[1] <= '9') {
        long w = 0;
        for (const char *c = s + 1; *c; c++) {
            if (*c < '0' || *c > '9') return -1;
            w = w * 10 + (*c - '0');
            if (w > 1000000000L) return -1;
        }
        *method = s[0] == 'A' ? DFA_ATTN_ARROW : DFA_ATTN_ARROW_RS;
        *window = (int)w;
        return 0;
    }
    return -1;
}

static const struct {
    const char *name;
    unsigned bit;
} set_names[] = {{"full", 0},
                 {"arrow", DFA_PLAN_SET_ARROW},
                 {"arrow_rs", DFA_PLAN_SET_ARROW_RS},
                 {"cache", DFA_PLAN_SET_CACHE},
                 {"asc", DFA_PLAN_SET_ASC}};

int dfa_plan_parse_method_set(const char *list, unsigned *bits) {
    *bits = 0;
    const char *s = list;
    while (*s) {
        const char *e = strchr(s, ',');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        int found = 0;
        for (size_t i = 0; i < sizeof set_names / sizeof set_names[0]; i++)
            if (strlen(set_names[i].name) == n && strncmp(s, set_names[i].name, n) == 0) {
                *bits |= set_names[i].bit;
                found = 1;
            }
        if (!found) return -1;
        s = e ? e + 1 : s + n;
    }
    return 0;
}

dfa_status dfa_plan_validate(dfa_plan *p, const char *what, dfa_error *err) {
    const char *w = what ? what : "plan";
    p->validated = 0;
    if (p->layout.band < 0 || p->layout.band >= DFA_BAND_COUNT)
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: unknown band kind %d (expected arrow or plain)", w, p->layout.band);
    if (dfa_layout_valid(&p->layout))
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: layout invalid (n_vis %d, n_text %d, block %d)", w, p->layout.n_vis,
                 p->layout.n_text, p->layout.block);
    if (p->grid_h < 1 || p->grid_w < 1 || (int64_t)p->grid_h * p->grid_w != p->layout.n_vis)
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: visual grid %d x %d does not hold n_vis = %d tokens", w, p->grid_h,
                 p->grid_w, p->layout.n_vis);
    if (!isfinite(p->delta) || !isfinite(p->c))
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: search delta %g and c %g must be finite numbers", w, p->delta, p->c);
    if (p->cond_half != 0 && p->cond_half != 1)
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: cfg_cond_index must be 0 or 1, got %d", w, p->cond_half);
    if (!p->method)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "%s: plan has no entries (not initialised)", w);
    const int S = p->n_steps, Ly = p->n_layers, H = p->n_heads;
    for (int l = 0; p->layer_layout && l < Ly; l++) {
        const dfa_attn_layout *L = &p->layer_layout[l];
        if (dfa_layout_valid(L))
            DFA_FAIL(err, DFA_ERR_FORMAT, "%s: layer %d: layer layout invalid (n_vis %d, n_text %d, block %d)", w, l,
                     L->n_vis, L->n_text, L->block);
        if (L->band != p->layout.band)
            DFA_FAIL(err, DFA_ERR_FORMAT, "%s: layer %d: band %s, the plan's is %s (one band kind per plan)", w, l,
                     dfa_band_name(L->band), dfa_band_name(p->layout.band));
        if (L->n_vis != p->layout.n_vis)
            DFA_FAIL(err, DFA_ERR_FORMAT,
                     "%s: layer %d: layer layout has n_vis %d, the plan's visual grid %d x %d holds %d (layers share "
                     "one grid)",
                     w, l, L->n_vis, p->grid_h, p->grid_w, p->layout.n_vis);
    }
    char code[24];
    for (int s = 0; s < S; s++)
        for (int l = 0; l < Ly; l++) {
            const dfa_attn_layout *LL = dfa_plan_layer_layout(p, l);
            const int wmax = dfa_mask_full_window(LL);
            if (p->asc[(size_t)s * Ly + l]) {
                if (!p->cfg)
                    DFA_FAIL(err, DFA_ERR_FORMAT, "%s: step %d layer %d: ASC but the plan has no CFG (cfg false)", w,
                             s, l);
                if (!(p->method_set & DFA_PLAN_SET_ASC))
                    DFA_FAIL(err, DFA_ERR_FORMAT, "%s: step %d layer %d: ASC but 'asc' is not in the method set", w,
                             s, l);
            }
            for (int h = 0; h < H; h++) {
                size_t i = dfa_plan_index(p, s, l, h);
                int m = p->method[i], win = p->window[i];
                if (m >= DFA_ATTN_METHOD_COUNT)
                    DFA_FAIL(err, DFA_ERR_FORMAT, "%s: step %d layer %d head %d: unknown method %d", w, s, l, h, m);
                if (m != DFA_ATTN_FULL && !(p->method_set & (1u << m)))
                    DFA_FAIL(err, DFA_ERR_FORMAT, "%s: step %d layer %d head %d: method %s (%s) is not in the method set",
                             w, s, l, h, dfa_attn_method_name(m), dfa_plan_code(m, win, code, sizeof code));
                if (m == DFA_ATTN_ARROW || m == DFA_ATTN_ARROW_RS) {
                    if (win < 0 || win > wmax)
                        DFA_FAIL(err, DFA_ERR_FORMAT,
                                 "%s: step %d layer %d head %d: window %d out of range [0, %d] (%d %s tiles of %d "
                                 "tokens)",
                                 w, s, l, h, win, wmax, wmax + 1,
                                 LL->band == DFA_BAND_PLAIN ? "sequence (plain band)" : "visual", LL->block);
                } else if (win != 0) {
                    DFA_FAIL(err, DFA_ERR_FORMAT, "%s: step %d layer %d head %d: method %s takes no window (got %d)", w,
                             s, l, h, dfa_attn_method_name(m), win);
                }
            }
        }
    /* look-ahead: which steps store an output / a residual for a later step */
    size_t n = (size_t)S * Ly * H;
    memset(p->store_out, 0, n);
    memset(p->store_res, 0, n);
    memset(p->res_window, 0, n * sizeof(int32_t));
    for (int l = 0; l < Ly; l++)
        for (int h = 0; h < H; h++) {
            int last_computed = -1, last_full = -1;
            for (int s = 0; s < S; s++) {
                size_t i = dfa_plan_index(p, s, l, h);
                int m = p->method[i];
                if (m == DFA_ATTN_CACHE) {
                    if (last_computed < 0)
                        DFA_FAIL(err, DFA_ERR_FORMAT,
                                 "%s: step %d layer %d head %d: CACHE (C) but no earlier step computes this head, so "
                                 "there is nothing to reuse",
                                 w, s, l, h);
                    p->store_out[dfa_plan_index(p, last_computed, l, h)] = 1;
                    continue;
                }
                if (m == DFA_ATTN_ARROW_RS) {
                    if (last_full < 0)
                        DFA_FAIL(err, DFA_ERR_FORMAT,
                                 "%s: step %d layer %d head %d: ARROW_RS (R%d) but no earlier FULL step refreshes the "
                                 "residual, so there is nothing to reuse",
                                 w, s, l, h, p->window[i]);
                    size_t f = dfa_plan_index(p, last_full, l, h);
                    if (p->store_res[f] && p->res_window[f] != p->window[i])
                        DFA_FAIL(err, DFA_ERR_FORMAT,
                                 "%s: step %d layer %d head %d: ARROW_RS window %d differs from window %d of the "
                                 "residual refreshed at step %d (one refresh, one window)",
                                 w, s, l, h, p->window[i], p->res_window[f], last_full);
                    p->store_res[f] = 1;
                    p->res_window[f] = p->window[i];
                }
                if (m == DFA_ATTN_FULL) last_full = s;
                last_computed = s;
            }
        }
    p->validated = 1;
    return DFA_OK;
}

/* ---- cost ---- */

static double layer_flops(const dfa_plan *p, int s, int l, int D) {
    double bmul = p->cfg ? 2.0 : 1.0;
    if (p->asc[(size_t)s * p->n_layers + l]) bmul *= 0.5;
    double e = 0;
    for (int h = 0; h < p->n_heads; h++) {
        size_t i = dfa_plan_index(p, s, l, h);
        e += (double)dfa_attn_head_entries(dfa_plan_layer_layout(p, l), p->method[i], p->window[i], p->store_res[i],
                                           p->res_window[i]);
    }
    return 4.0 * D * e * bmul;
}

double dfa_plan_layer_flops(const dfa_plan *p, int step, int layer, int head_dim) {
    return layer_flops(p, step, layer, head_dim);
}

void dfa_plan_cost_compute(const dfa_plan *p, int head_dim, dfa_plan_cost *c, double *step_frac) {
    memset(c, 0, sizeof *c);
    const int D = head_dim > 0 ? head_dim : 1;
    const double bmul = p->cfg ? 2.0 : 1.0;
    double full_step = 0; /* every layer FULL, with its own layout */
    for (int l = 0; l < p->n_layers; l++)
        full_step += 4.0 * D * (double)dfa_mask_entries(dfa_plan_layer_layout(p, l), -1) * p->n_heads * bmul;
    for (int s = 0; s < p->n_steps; s++) {
        double fs = 0;
        for (int l = 0; l < p->n_layers; l++) {
            fs += layer_flops(p, s, l, D);
            c->n_asc += p->asc[(size_t)s * p->n_layers + l] ? 1 : 0;
            for (int h = 0; h < p->n_heads; h++) {
                size_t i = dfa_plan_index(p, s, l, h);
                if (p->method[i] < DFA_ATTN_METHOD_COUNT) c->n_method[p->method[i]]++;
                c->n_refresh += p->store_res[i] ? 1 : 0;
            }
        }
        if (step_frac) step_frac[s] = fs / full_step;
        c->flops += fs;
    }
    c->full_flops = full_step * p->n_steps;
    c->fraction = c->full_flops > 0 ? c->flops / c->full_flops : 0;
}
