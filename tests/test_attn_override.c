/* test_attn_override.c - dfa_attn_set_override (attn_state.h): while set, dfa_attn_layer hands
 * every layer's q, k, v, out to the override and runs no attention itself (plan or not); its
 * status comes back; clearing it restores FULL attention and a plan set meanwhile. */
#include "attn/attn_state.h"
#include "attn_ref.h"
#include "core/ctx.h"
#include "dfa.h"
#include "plan/plan.h"

typedef struct ov_rec {
    int calls, last_layer;
    const dfa_attn_layout *layout;
    const dfa_tensor *q, *k, *v;
    dfa_tensor *out;
    dfa_status ret;
} ov_rec;

/* out = q + 2 k - v (anything attention cannot produce), layer recorded */
static dfa_status ov_fn(void *user, int layer, const dfa_attn_layout *layout, const dfa_tensor *q, const dfa_tensor *k,
                        const dfa_tensor *v, dfa_tensor *out) {
    ov_rec *r = user;
    r->calls++;
    r->last_layer = layer;
    r->layout = layout, r->q = q, r->k = k, r->v = v, r->out = out;
    if (r->ret != DFA_OK) return r->ret;
    const float *a = q->data, *b = k->data, *c = v->data;
    float *o = out->data;
    for (int64_t i = 0; i < dfa_tensor_numel(out); i++) o[i] = a[i] + 2.0f * b[i] - c[i];
    return DFA_OK;
}

static dfa_ctx *make_ctx(void) {
    dfa_ctx *ctx = NULL;
    dfa_ctx_params p = dfa_ctx_default_params();
    p.n_threads = 1;
    if (dfa_ctx_init(&ctx, &p, NULL, 0) != DFA_OK) exit(1);
    return ctx;
}

/* max |out - FULL reference| over every (b, h) */
static double full_err(const qkv_set *s, const dfa_attn_layout *L) {
    double *ref = malloc((size_t)s->N * s->D * sizeof(double)), worst = 0;
    for (int b = 0; b < s->B; b++)
        for (int h = 0; h < s->H; h++) {
            ref_head(s, L, -1, b, h, ref);
            double e = head_err(s, s->o, b, h, ref);
            if (!(e <= worst)) worst = e;
        }
    free(ref);
    return worst;
}

static int is_override_out(const qkv_set *s) {
    size_t n = (size_t)s->B * s->N * s->H * s->D;
    for (size_t i = 0; i < n; i++)
        if (s->o[i] != s->q[i] + 2.0f * s->k[i] - s->v[i]) return 0;
    return 1;
}

static void test_override_replaces_attention(void) {
    dfa_ctx *ctx = make_ctx();
    unsigned long long rng = 0x5eed0001ull;
    const dfa_attn_layout L = {.n_vis = 40, .n_text = 9, .text_first = 1, .block = 16};
    qkv_set s;
    qkv_alloc(&s, 2, L.n_vis + L.n_text, 3, 8, &rng);
    CHECK(dfa_attn_get_override(ctx, NULL) == NULL);
    CHECK(dfa_attn_set_override(ctx, NULL, NULL) == DFA_OK); /* clearing with no state: fine */
    /* no override: FULL */
    CHECK(dfa_attn_layer(ctx, 0, &L, &s.tq, &s.tk, &s.tv, &s.to) == DFA_OK);
    CHECKF(full_err(&s, &L) < 1e-5, "full err %g", full_err(&s, &L));
    ov_rec r = {.last_layer = -1};
    CHECK(dfa_attn_set_override(ctx, ov_fn, &r) == DFA_OK);
    void *u = NULL;
    CHECK(dfa_attn_get_override(ctx, &u) == ov_fn && u == &r);
    for (int layer = 0; layer < 3; layer++) {
        qkv_poison(&s);
        CHECK(dfa_attn_layer(ctx, layer, &L, &s.tq, &s.tk, &s.tv, &s.to) == DFA_OK);
        CHECK(r.calls == layer + 1 && r.last_layer == layer);
        CHECK(r.layout == &L && r.q == &s.tq && r.k == &s.tk && r.v == &s.tv && r.out == &s.to);
        CHECK(is_override_out(&s));
    }
    /* an error from the override comes back as it is */
    r.ret = DFA_ERR_SHAPE;
    CHECK(dfa_attn_layer(ctx, 7, &L, &s.tq, &s.tk, &s.tv, &s.to) == DFA_ERR_SHAPE);
    CHECK(r.calls == 4 && r.last_layer == 7);
    /* cleared: FULL again, the override is not called */
    CHECK(dfa_attn_set_override(ctx, NULL, &r) == DFA_OK);
    CHECK(dfa_attn_get_override(ctx, &u) == NULL && u == NULL);
    qkv_poison(&s);
    CHECK(dfa_attn_layer(ctx, 0, &L, &s.tq, &s.tk, &s.tv, &s.to) == DFA_OK);
    CHECK(r.calls == 4);
    CHECKF(full_err(&s, &L) < 1e-5, "full err after clearing %g", full_err(&s, &L));
    qkv_free(&s);
    dfa_ctx_free(ctx); /* frees the state the override allocated */
}

/* With a plan set, the override still wins (no begin_step needed); cleared, the plan runs again
 * and needs its steps as before. */
static void test_override_over_plan(void) {
    dfa_ctx *ctx = make_ctx();
    unsigned long long rng = 0x5eed0002ull;
    const dfa_attn_layout L = {.n_vis = 48, .n_text = 0, .text_first = 0, .block = 16};
    qkv_set s;
    qkv_alloc(&s, 1, L.n_vis, 2, 8, &rng);
    dfa_plan p;
    dfa_error err = {0};
    CHECK(dfa_plan_init(&p, &L, 2, 1, 2, &err) == DFA_OK);
    p.grid_h = 6, p.grid_w = 8;
    dfa_plan_make_opts mo = {DFA_PLAN_PAT_ARROW, 0, 1, 0, 0, 1};
    CHECKF(dfa_plan_make(&p, &mo, &err) == DFA_OK, "%s", err.msg);
    ov_rec r = {.last_layer = -1};
    CHECK(dfa_attn_set_override(ctx, ov_fn, &r) == DFA_OK); /* before the plan: the state exists already */
    CHECKF(dfa_attn_set_plan(ctx, &p) == DFA_OK, "%s", dfa_ctx_error(ctx));
    CHECK(dfa_attn_get_override(ctx, NULL) == ov_fn); /* setting a plan keeps the override */
    qkv_poison(&s);
    CHECK(dfa_attn_layer(ctx, 0, &L, &s.tq, &s.tk, &s.tv, &s.to) == DFA_OK); /* no begin_step: no error */
    CHECK(r.calls == 1 && is_override_out(&s));
    CHECK(dfa_attn_set_override(ctx, NULL, NULL) == DFA_OK);
    CHECK(dfa_attn_plan(ctx) != NULL);
    CHECK(dfa_attn_layer(ctx, 0, &L, &s.tq, &s.tk, &s.tv, &s.to) == DFA_ERR_INVALID_ARG); /* plan: step needed */
    CHECK(dfa_attn_begin_step(ctx, 0) == DFA_OK);
    qkv_poison(&s);
    CHECK(dfa_attn_layer(ctx, 0, &L, &s.tq, &s.tk, &s.tv, &s.to) == DFA_OK);
    CHECK(r.calls == 1);
    /* ARROW(0) of the plan, not FULL: compare one head with the windowed reference */
    double *ref = malloc((size_t)s.N * s.D * sizeof(double));
    ref_head(&s, &L, 0, 0, 1, ref);
    CHECKF(head_err(&s, s.o, 0, 1, ref) < 1e-5, "plan arrow err %g", head_err(&s, s.o, 0, 1, ref));
    ref_head(&s, &L, -1, 0, 1, ref);
    CHECK(head_err(&s, s.o, 0, 1, ref) > 1e-4); /* and the window matters here */
    free(ref);
    dfa_attn_end_run(ctx);
    dfa_plan_free(&p);
    qkv_free(&s);
    dfa_ctx_free(ctx);
}

int main(void) {
    RUN(test_override_replaces_attention);
    RUN(test_override_over_plan);
    return test_summary();
}
