/* attn_layer.c - dfa_attn_layer(): the plan-driven entry point, and the context's attention
 * state (plan copy, current step, per-(layer, head) output and residual caches). The work per
 * head is done by dfa_attn_run_heads() (attn_cpu.c; CUDA tensors are dispatched from there). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn/attn.h"
#include "attn/attn_int.h"
#include "attn/attn_prep.h"
#include "attn/attn_state.h"
#include "core/ctx.h"
#include "core/cuda_rt.h"
#include "core/log.h"

typedef struct dfa_attn_state dfa_attn_state;

typedef struct head_cache {
    int out_step, res_step; /* step whose output / residual the head's slice holds; -1: none */
} head_cache;

typedef struct layer_cache {
    void *out, *res; /* [B, N, H, D] each, or NULL */
} layer_cache;

struct dfa_attn_state {
    dfa_plan plan;
    int has_plan;
    int step;
    head_cache *caches;   /* [n_layers * n_heads] */
    layer_cache *buffers; /* [n_layers] */
    /* geometry of the cache buffers, fixed by the first allocation of a run */
    int64_t cache_B, cache_D;
    dfa_device cache_dev;
    size_t elem;
    size_t bytes, peak;
    dfa_attn_head_exec *exec; /* [n_heads] scratch */
    void **gpu_lists;         /* [n_steps * n_layers * 2] CUDA work lists: members of gpu_set after the
                               * prepare, else built on first use */
    void *gpu_set;            /* the prepared work lists (one device allocation), NULL before */
    void *cache_block;        /* the prepared caches (one allocation), or NULL: per-layer buffers */
    int run_prepared;         /* dfa_attn_prepare ran for this run (reset by end_run) */
    dfa_attn_prep_stats stats;
    /* without a plan (every head FULL) on CUDA: the work lists of the last two (layout, head count)
     * pairs (SD3.5 alternates its joint attention and the image-only attn2 every block) */
    void *full_lists[2][2];
    dfa_attn_layout full_layout[2];
    int full_heads[2], full_next;
    /* dfa_attn_set_override: replaces every layer's attention while set */
    dfa_attn_override_fn override_fn;
    void *override_user;
};

static void free_caches(dfa_ctx *ctx, dfa_attn_state *st) {
    if (!st->caches) return;
    size_t n = (size_t)st->plan.n_layers * st->plan.n_heads;
    for (size_t i = 0; i < n; i++) st->caches[i].out_step = st->caches[i].res_step = -1;
    for (int l = 0; l < st->plan.n_layers; l++) {
        if (!st->cache_block) {
            dfa_ctx_mem_release(ctx, st->buffers[l].out);
            dfa_ctx_mem_release(ctx, st->buffers[l].res);
        }
        st->buffers[l].out = st->buffers[l].res = NULL;
    }
    dfa_ctx_mem_release(ctx, st->cache_block);
    st->cache_block = NULL;
    st->run_prepared = 0;
    st->stats.cache_bytes = 0;
    st->bytes = 0;
    st->cache_B = st->cache_D = 0;
}

void dfa_attn_end_run(dfa_ctx *ctx) {
    if (ctx->attn) {
        free_caches(ctx, ctx->attn);
        ctx->attn->step = -1;
    }
}

void dfa_attn_clear_plan(dfa_ctx *ctx) {
    dfa_attn_state *st = ctx->attn;
    if (!st) return;
    free_caches(ctx, st);
    if (st->gpu_lists) {
        for (size_t i = 0; i < (size_t)st->plan.n_steps * st->plan.n_layers * 2; i++)
            dfa_attn_gpu_list_free(st->gpu_lists[i]);
        free(st->gpu_lists);
        st->gpu_lists = NULL;
    }
    dfa_attn_gpu_set_free(st->gpu_set);
    st->gpu_set = NULL;
    st->stats.n_lists = st->stats.n_entries = 0;
    st->stats.list_bytes = 0;
    free(st->caches);
    free(st->buffers);
    free(st->exec);
    st->caches = NULL;
    st->buffers = NULL;
    st->exec = NULL;
    dfa_plan_free(&st->plan);
    st->has_plan = 0;
    st->step = -1;
}

void dfa_attn_state_free(dfa_ctx *ctx) {
    if (!ctx->attn) return;
    dfa_attn_clear_plan(ctx);
    for (int i = 0; i < 2; i++) {
        dfa_attn_gpu_list_free(ctx->attn->full_lists[i][0]);
        dfa_attn_gpu_list_free(ctx->attn->full_lists[i][1]);
    }
    free(ctx->attn);
    ctx->attn = NULL;
}

dfa_status dfa_attn_set_plan(dfa_ctx *ctx, const dfa_plan *plan) {
    /* validate a copy first: on failure the plan in use (if any) stays */
    dfa_plan copy;
    DFA_TRY(dfa_plan_copy(&copy, plan, &ctx->err));
    dfa_status s = dfa_plan_validate(&copy, "plan", &ctx->err);
    size_t n = (size_t)copy.n_layers * copy.n_heads;
    head_cache *caches = NULL;
    layer_cache *buffers = NULL;
    dfa_attn_head_exec *exec = NULL;
    if (s == DFA_OK) {
        caches = calloc(n, sizeof *caches);
        buffers = calloc((size_t)copy.n_layers, sizeof *buffers);
        exec = calloc((size_t)copy.n_heads, sizeof *exec);
        if (!caches || !buffers || !exec) s = DFA_SET(&ctx->err, DFA_ERR_OOM, "out of host memory for plan caches");
    }
    if (s == DFA_OK && !ctx->attn) {
        ctx->attn = calloc(1, sizeof *ctx->attn);
        if (!ctx->attn) s = DFA_SET(&ctx->err, DFA_ERR_OOM, "out of host memory for the attention state");
    }
    if (s != DFA_OK) {
        dfa_plan_free(&copy);
        free(caches);
        free(buffers);
        free(exec);
        return s;
    }
    dfa_attn_clear_plan(ctx);
    dfa_attn_state *st = ctx->attn;
    for (size_t i = 0; i < n; i++) caches[i].out_step = caches[i].res_step = -1;
    st->plan = copy;
    st->caches = caches;
    st->buffers = buffers;
    st->exec = exec;
    st->has_plan = 1;
    st->step = -1;
    return DFA_OK;
}

dfa_status dfa_attn_load_plan(dfa_ctx *ctx, const char *path) {
    dfa_plan p;
    DFA_TRY(dfa_plan_load(path, &p, &ctx->err));
    dfa_status s = dfa_attn_set_plan(ctx, &p);
    dfa_plan_free(&p);
    return s;
}

const dfa_plan *dfa_attn_plan(const dfa_ctx *ctx) {
    return ctx->attn && ctx->attn->has_plan ? &ctx->attn->plan : NULL;
}

int dfa_attn_step(const dfa_ctx *ctx) {
    return ctx->attn ? ctx->attn->step : -1;
}

dfa_status dfa_attn_begin_step(dfa_ctx *ctx, int step) {
    dfa_attn_state *st = ctx->attn;
    if (!st || !st->has_plan) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dfa_attn_begin_step(%d): no plan is set", step);
    if (step < 0 || step >= st->plan.n_steps)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dfa_attn_begin_step: step %d outside the plan's [0, %d)", step,
                     st->plan.n_steps);
    if (step == 0) {
        size_t n = (size_t)st->plan.n_layers * st->plan.n_heads;
        for (size_t i = 0; i < n; i++) st->caches[i].out_step = st->caches[i].res_step = -1;
    } else if (step != st->step + 1) {
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dfa_attn_begin_step: step %d after step %d (steps run in order from 0)",
                     step, st->step);
    }
    st->step = step;
    return DFA_OK;
}

size_t dfa_attn_cache_bytes(const dfa_ctx *ctx) {
    return ctx->attn ? ctx->attn->bytes : 0;
}

size_t dfa_attn_cache_peak_bytes(const dfa_ctx *ctx) {
    return ctx->attn ? ctx->attn->peak : 0;
}

size_t dfa_plan_cache_bytes(const dfa_plan *p, int batch, int head_dim, size_t elem_size) {
    size_t total = 0;
    for (int l = 0; l < p->n_layers; l++) {
        size_t per = (size_t)batch * dfa_layout_tokens(dfa_plan_layer_layout(p, l)) * p->n_heads * head_dim * elem_size;
        int o = 0, r = 0;
        for (int s = 0; s < p->n_steps; s++)
            for (int h = 0; h < p->n_heads; h++) {
                size_t i = dfa_plan_index(p, s, l, h);
                o |= p->store_out[i];
                r |= p->store_res[i];
            }
        total += (size_t)(o + r) * per;
    }
    return total;
}

void dfa_attn_get_prep_stats(const dfa_ctx *ctx, dfa_attn_prep_stats *out) {
    memset(out, 0, sizeof *out);
    if (ctx->attn) *out = ctx->attn->stats;
}

static dfa_status gpu_lists_alloc(dfa_ctx *ctx, dfa_attn_state *st) {
    if (!st->gpu_lists) {
        st->gpu_lists = calloc((size_t)st->plan.n_steps * st->plan.n_layers * 2, sizeof(void *));
        if (!st->gpu_lists) DFA_CTX_FAIL(ctx, DFA_ERR_OOM, "out of host memory for the CUDA work lists");
    }
    return DFA_OK;
}

/* Once per plan: every distinct work list in one device allocation, each entry pointed at its list. */
static dfa_status prepare_lists(dfa_ctx *ctx, dfa_attn_state *st) {
    if (st->gpu_set) return DFA_OK;
    DFA_TRY(gpu_lists_alloc(ctx, st));
    dfa_attn_prep pp;
    DFA_TRY(dfa_attn_prep_build(&pp, &st->plan, &ctx->err));
    void **lists = calloc((size_t)(pp.n_lists ? pp.n_lists : 1), sizeof *lists);
    void *set = NULL;
    size_t bytes = 0;
    dfa_status s = lists ? dfa_attn_gpu_lists_prepare(ctx, &pp, &set, lists, &bytes)
                         : DFA_SET(&ctx->err, DFA_ERR_OOM, "out of host memory for the CUDA work lists");
    if (s == DFA_OK) {
        int n = 0;
        for (int e = 0; e < pp.n_entries; e++) {
            if (pp.index[e] < 0) continue;
            dfa_attn_gpu_list_free(st->gpu_lists[e]); /* one built at first use before (no prepare then) */
            st->gpu_lists[e] = lists[pp.index[e]];
            n++;
        }
        st->gpu_set = set;
        st->stats.n_lists = pp.n_lists;
        st->stats.n_entries = n;
        st->stats.list_bytes = bytes;
    }
    free(lists);
    dfa_attn_prep_free(&pp);
    return s;
}

/* Once per run: the caches the plan stores, one block carved per layer (256-byte aligned). */
static dfa_status prepare_caches(dfa_ctx *ctx, dfa_attn_state *st, dfa_device dev, size_t elem, int B, int D) {
    const dfa_plan *p = &st->plan;
    size_t total = 0;
    for (int pass = 0; pass < 2; pass++) {
        size_t off = 0;
        for (int l = 0; l < p->n_layers; l++) {
            const size_t per = (size_t)B * dfa_layout_tokens(dfa_plan_layer_layout(p, l)) * p->n_heads * D * elem;
            int o = 0, r = 0;
            for (int t = 0; t < p->n_steps; t++)
                for (int h = 0; h < p->n_heads; h++) {
                    const size_t i = dfa_plan_index(p, t, l, h);
                    o |= p->store_out[i];
                    r |= p->store_res[i];
                }
            for (int k = 0; k < 2; k++) {
                if (!(k ? r : o)) continue;
                if (pass) {
                    void **buf = k ? &st->buffers[l].res : &st->buffers[l].out;
                    *buf = (char *)st->cache_block + off;
                    st->bytes += per;
                }
                off += (per + 255) / 256 * 256;
            }
        }
        if (!pass) {
            total = off;
            if (total == 0) return DFA_OK;
            DFA_TRY(dfa_ctx_mem_alloc(ctx, dev, total, "attention caches (the run's plan)", &st->cache_block));
        }
    }
    if (st->bytes > st->peak) st->peak = st->bytes;
    st->stats.cache_bytes = total;
    return DFA_OK;
}

dfa_status dfa_attn_prepare(dfa_ctx *ctx, dfa_device dev, dfa_dtype dtype, int batch, int head_dim) {
    dfa_attn_state *st = ctx->attn;
    if (!st || !st->has_plan) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dfa_attn_prepare: no plan is set");
    if (dev != DFA_DEV_CUDA)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dfa_attn_prepare: prepares CUDA runs (the CPU path needs none)");
    if (batch < 1 || head_dim < 1)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dfa_attn_prepare: batch %d, head dim %d", batch, head_dim);
    const size_t elem = dfa_dtype_size(dtype);
    if (st->cache_B && (st->cache_B != batch || st->cache_D != head_dim || st->cache_dev != dev || st->elem != elem))
        DFA_CTX_FAIL(ctx, DFA_ERR_SHAPE,
                     "dfa_attn_prepare: batch %d / head dim %d / device / dtype differ from the caches of this run "
                     "(batch %lld, head dim %lld); call dfa_attn_end_run between runs",
                     batch, head_dim, (long long)st->cache_B, (long long)st->cache_D);
    if (st->run_prepared) return DFA_OK;
    const double t0 = dfa_now_s();
    const int had_lists = st->gpu_set != NULL;
    DFA_TRY(prepare_lists(ctx, st));
    if (st->bytes == 0) { /* caches allocated at first use already (an unprepared start): keep those */
        st->cache_B = batch;
        st->cache_D = head_dim;
        st->cache_dev = dev;
        st->elem = elem;
        DFA_TRY(prepare_caches(ctx, st, dev, elem, batch, head_dim));
    }
    st->run_prepared = 1;
    st->stats.prepares++;
    DFA_LOGI(ctx, "attention prepare: %d distinct work lists for %d plan entries, %zu bytes on the device (%s); "
             "caches %zu bytes; %.1f ms",
             st->stats.n_lists, st->stats.n_entries, st->stats.list_bytes, had_lists ? "kept" : "uploaded",
             st->stats.cache_bytes, 1e3 * (dfa_now_s() - t0));
    return DFA_OK;
}

static dfa_status cache_buf(dfa_ctx *ctx, dfa_attn_state *st, const dfa_tensor *out, void **buf, int layer,
                            const char *kind) {
    if (*buf) return DFA_OK;
    if (st->cache_B == 0) {
        st->cache_B = out->shape[0];
        st->cache_D = out->shape[3];
        st->cache_dev = out->dev;
        st->elem = dfa_dtype_size(out->dtype);
    }
    size_t bytes = (size_t)st->cache_B * dfa_layout_tokens(dfa_plan_layer_layout(&st->plan, layer)) *
                   st->plan.n_heads * st->cache_D * st->elem;
    char what[96];
    snprintf(what, sizeof what, "attention %s cache (layer %d)", kind, layer);
    DFA_TRY(dfa_ctx_mem_alloc(ctx, st->cache_dev, bytes, what, buf));
    st->stats.lazy_caches++;
    st->bytes += bytes;
    if (st->bytes > st->peak) st->peak = st->bytes;
    return DFA_OK;
}

static int layout_equal(const dfa_attn_layout *a, const dfa_attn_layout *b) {
    return dfa_plan_layout_same(a, b);
}

static dfa_status plan_layer(dfa_ctx *ctx, int layer, const dfa_attn_layout *layout, const dfa_tensor *q,
                             const dfa_tensor *k, const dfa_tensor *v, dfa_tensor *out) {
    dfa_attn_state *st = ctx->attn;
    const dfa_plan *p = &st->plan;
    const int s = st->step;
    if (s < 0) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dfa_attn_layer: a plan is set but no step was begun "
                                                      "(call dfa_attn_begin_step first)");
    if (layer < 0 || layer >= p->n_layers)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "dfa_attn_layer: layer %d outside the plan's %d layers", layer,
                     p->n_layers);
    if (q->ndim != 4 || q->shape[2] != p->n_heads)
        DFA_CTX_FAIL(ctx, DFA_ERR_SHAPE, "dfa_attn_layer: q has %lld heads, the plan has %d",
                     q->ndim == 4 ? (long long)q->shape[2] : -1LL, p->n_heads);
    const dfa_attn_layout *pl = dfa_plan_layer_layout(p, layer);
    if (!layout_equal(layout, pl))
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG,
                     "dfa_attn_layer: layer %d: layout (n_text %d, text_first %d, n_vis %d, block %d) is not the "
                     "plan's (n_text %d, text_first %d, n_vis %d, block %d): the plan was made for another model, "
                     "resolution or prompt length",
                     layer, layout->n_text, layout->text_first, layout->n_vis, layout->block, pl->n_text,
                     pl->text_first, pl->n_vis, pl->block);
    if (st->cache_B && (out->shape[0] != st->cache_B || out->shape[3] != st->cache_D || out->dev != st->cache_dev ||
                        dfa_dtype_size(out->dtype) != st->elem))
        DFA_CTX_FAIL(ctx, DFA_ERR_SHAPE,
                     "dfa_attn_layer: batch %lld / head dim %lld / device / dtype differ from the caches of this run "
                     "(batch %lld, head dim %lld); call dfa_attn_end_run between runs",
                     (long long)out->shape[0], (long long)out->shape[3], (long long)st->cache_B,
                     (long long)st->cache_D);
    if (q->dev == DFA_DEV_CUDA && !st->run_prepared) /* a run nobody prepared: now, before any launch */
        DFA_TRY(dfa_attn_prepare(ctx, out->dev, out->dtype, (int)out->shape[0], (int)out->shape[3]));
    const int asc = p->asc[(size_t)s * p->n_layers + layer];
    for (int h = 0; h < p->n_heads; h++) {
        size_t i = dfa_plan_index(p, s, layer, h);
        head_cache *c = &st->caches[(size_t)layer * p->n_heads + h];
        dfa_attn_head_exec *e = &st->exec[h];
        memset(e, 0, sizeof *e);
        e->method = p->method[i];
        e->window = p->window[i];
        e->store_out = p->store_out[i];
        e->store_res = p->store_res[i];
        e->res_window = p->res_window[i];
        if (e->method == DFA_ATTN_CACHE || e->method == DFA_ATTN_ARROW_RS) {
            /* the step whose result this one reuses, from the plan */
            int want = -1;
            for (int t = s - 1; t >= 0 && want < 0; t--) {
                int m = p->method[dfa_plan_index(p, t, layer, h)];
                if (e->method == DFA_ATTN_CACHE ? m != DFA_ATTN_CACHE : m == DFA_ATTN_FULL) want = t;
            }
            int have = e->method == DFA_ATTN_CACHE ? c->out_step : c->res_step;
            if (have != want || want < 0)
                DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG,
                             "dfa_attn_layer: step %d layer %d head %d: %s needs the %s of step %d, but the cache "
                             "holds step %d (was every layer run at every step since step 0?)",
                             s, layer, h, dfa_attn_method_name(e->method),
                             e->method == DFA_ATTN_CACHE ? "output" : "residual", want, have);
        }
        layer_cache *lb = &st->buffers[layer];
        if (e->store_out || e->method == DFA_ATTN_CACHE) DFA_TRY(cache_buf(ctx, st, out, &lb->out, layer, "output"));
        if (e->store_res || e->method == DFA_ATTN_ARROW_RS)
            DFA_TRY(cache_buf(ctx, st, out, &lb->res, layer, "residual"));
    }
    void **lists = NULL;
    void *had[2] = {NULL, NULL};
    if (q->dev == DFA_DEV_CUDA) {
        DFA_TRY(gpu_lists_alloc(ctx, st));
        lists = st->gpu_lists + ((size_t)s * p->n_layers + layer) * 2;
        had[0] = lists[0], had[1] = lists[1];
    }
    dfa_attn_layout banded = *layout; /* the model's geometry, the plan's band kind */
    banded.band = pl->band;
    const dfa_status rs = dfa_attn_run_heads_ex(ctx, &banded, q, k, v, out, st->exec, st->buffers[layer].out,
                                                st->buffers[layer].res, asc, p->cond_half, lists);
    if (lists) st->stats.lazy_builds += (!had[0] && lists[0]) + (!had[1] && lists[1]);
    DFA_TRY(rs);
    for (int h = 0; h < p->n_heads; h++) {
        head_cache *c = &st->caches[(size_t)layer * p->n_heads + h];
        if (st->exec[h].store_out) c->out_step = s;
        if (st->exec[h].store_res) c->res_step = s;
    }
    return DFA_OK;
}

dfa_status dfa_attn_set_override(dfa_ctx *ctx, dfa_attn_override_fn fn, void *user) {
    if (!ctx->attn) {
        if (!fn) return DFA_OK;
        if (!(ctx->attn = calloc(1, sizeof *ctx->attn)))
            DFA_CTX_FAIL(ctx, DFA_ERR_OOM, "out of host memory for the attention state");
        ctx->attn->step = -1;
    }
    ctx->attn->override_fn = fn;
    ctx->attn->override_user = fn ? user : NULL;
    return DFA_OK;
}

dfa_attn_override_fn dfa_attn_get_override(const dfa_ctx *ctx, void **user) {
    dfa_attn_override_fn fn = ctx->attn ? ctx->attn->override_fn : NULL;
    if (user) *user = fn ? ctx->attn->override_user : NULL;
    return fn;
}

dfa_status dfa_attn_layer(dfa_ctx *ctx, int layer, const dfa_attn_layout *layout, const dfa_tensor *q,
                          const dfa_tensor *k, const dfa_tensor *v, dfa_tensor *out) {
    if (ctx->attn && ctx->attn->override_fn)
        return ctx->attn->override_fn(ctx->attn->override_user, layer, layout, q, k, v, out);
    if (ctx->attn && ctx->attn->has_plan) return plan_layer(ctx, layer, layout, q, k, v, out);
    if (q->ndim != 4 || q->shape[2] < 1 || q->shape[2] > (1 << 20))
        DFA_CTX_FAIL(ctx, DFA_ERR_SHAPE, "dfa_attn_layer: q must be [B, N, H, D]");
    const int H = (int)q->shape[2];
    dfa_attn_head_exec *heads = calloc((size_t)H, sizeof *heads);
    if (!heads) DFA_CTX_FAIL(ctx, DFA_ERR_OOM, "out of host memory (attention head list)");
    for (int h = 0; h < H; h++) heads[h].method = DFA_ATTN_FULL;
    void **lists = NULL;
    if (q->dev == DFA_DEV_CUDA && layout) { /* keep the all-FULL work list across layers and steps */
        if (!ctx->attn && (ctx->attn = calloc(1, sizeof *ctx->attn)) != NULL) ctx->attn->step = -1;
        dfa_attn_state *st = ctx->attn;
        if (st) {
            int slot = -1;
            for (int i = 0; i < 2 && slot < 0; i++)
                if (st->full_heads[i] == H && layout_equal(&st->full_layout[i], layout) &&
                    st->full_layout[i].text_first == layout->text_first)
                    slot = i;
            if (slot < 0) { /* replace the older pair (round robin) */
                slot = st->full_next;
                st->full_next ^= 1;
                dfa_attn_gpu_list_free(st->full_lists[slot][0]);
                dfa_attn_gpu_list_free(st->full_lists[slot][1]);
                st->full_lists[slot][0] = st->full_lists[slot][1] = NULL;
                st->full_layout[slot] = *layout;
                st->full_heads[slot] = H;
            }
            lists = st->full_lists[slot];
        }
    }
    dfa_status s = dfa_attn_run_heads_ex(ctx, layout, q, k, v, out, heads, NULL, NULL, 0, 0, lists);
    free(heads);
    (void)layer;
    return s;
}

dfa_status dfa_attn_layer_bf16_cuda(dfa_ctx *ctx, int layer, const dfa_attn_layout *layout, int B, int N, int H,
                                    int D, void *q, void *k, void *v, void *out, double *seconds) {
    const int64_t shp[4] = {B, N, H, D};
    dfa_tensor tq, tk, tv, to;
    DFA_TRY(dfa_tensor_init(&tq, DFA_BF16, DFA_DEV_CUDA, 4, shp, q, &ctx->err));
    DFA_TRY(dfa_tensor_init(&tk, DFA_BF16, DFA_DEV_CUDA, 4, shp, k, &ctx->err));
    DFA_TRY(dfa_tensor_init(&tv, DFA_BF16, DFA_DEV_CUDA, 4, shp, v, &ctx->err));
    DFA_TRY(dfa_tensor_init(&to, DFA_BF16, DFA_DEV_CUDA, 4, shp, out, &ctx->err));
    if (!seconds) return dfa_attn_layer(ctx, layer, layout, &tq, &tk, &tv, &to);
    /* CUDA events around the call, no host synchronisation: the seconds reach *seconds when the
     * model calls dfa_cuda_spans_collect (end of its forward) */
    DFA_TRY(dfa_cuda_span_begin(ctx->cuda, &ctx->err));
    const dfa_status s = dfa_attn_layer(ctx, layer, layout, &tq, &tk, &tv, &to);
    if (s != DFA_OK) {
        dfa_cuda_spans_drop(ctx->cuda);
        return s;
    }
    return dfa_cuda_span_end(ctx->cuda, seconds, &ctx->err);
}
