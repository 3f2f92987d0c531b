/* engine_hook.c - the search engines' attention override (engine_hook.h). */
#include "plan/engine_hook.h"

static dfa_status hook_override(void *user, int layer, const dfa_attn_layout *layout, const dfa_tensor *q,
                                const dfa_tensor *k, const dfa_tensor *v, dfa_tensor *out) {
    dfa_engine_hook *b = user;
    dfa_ctx *ctx = b->ctx;
    const dfa_search_engine *g = b->eng;
    if (layer != b->next_layer || layer >= g->n_layers)
        DFA_CTX_FAIL(ctx, DFA_ERR_INTERNAL, "search engine: attention layer %d called, expected layer %d of %d", layer,
                     b->next_layer, g->n_layers);
    const dfa_attn_layout *L = dfa_search_engine_layer_layout(g, layer);
    if (!layout || layout->n_vis != L->n_vis || layout->n_text != L->n_text || layout->text_first != L->text_first ||
        layout->block != L->block)
        DFA_CTX_FAIL(ctx, DFA_ERR_UNSUPPORTED, "search engine: layer %d has another token layout than the engine's "
                     "(%d visual + %d text tokens, tiles of %d)", layer, L->n_vis, L->n_text, L->block);
    /* the search backend's memory: f32 host (CPU backend) or bf16 on the device (CUDA backend) */
    const dfa_dtype want_t = b->cuda ? DFA_BF16 : DFA_F32;
    const dfa_device want_d = b->cuda ? DFA_DEV_CUDA : DFA_DEV_CPU;
    const dfa_tensor *t[4] = {q, k, v, out};
    for (int i = 0; i < 4; i++)
        if (t[i]->dtype != want_t || t[i]->dev != want_d || t[i]->ndim != 4 || t[i]->shape[0] != g->n_rows ||
            t[i]->shape[1] != dfa_layout_tokens(L) || t[i]->shape[2] != g->n_heads || t[i]->shape[3] != g->head_dim) {
            char sb[96];
            DFA_CTX_FAIL(ctx, DFA_ERR_SHAPE, "search engine: layer %d %s is %s %s %s; expected %s %s [%d, %d, %d, %d]",
                         layer, i == 0 ? "q" : i == 1 ? "k" : i == 2 ? "v" : "out", dfa_dtype_name(t[i]->dtype),
                         t[i]->dev == DFA_DEV_CUDA ? "CUDA" : "host",
                         dfa_shape_str(t[i]->ndim, t[i]->shape, sb, sizeof sb), dfa_dtype_name(want_t),
                         b->cuda ? "CUDA" : "host", g->n_rows, dfa_layout_tokens(L), g->n_heads, g->head_dim);
        }
    b->next_layer++;
    return b->hook(b->hook_user, layer, q->data, k->data, v->data, out->data);
}

dfa_status dfa_engine_hook_begin(dfa_engine_hook *b, dfa_ctx *ctx, const dfa_search_engine *eng, int step, int cur,
                                 dfa_search_hook_fn hook, void *hook_user) {
    if (step != cur)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "search engine: step %d asked, the latents are at step %d", step, cur);
    if (step >= eng->n_steps)
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "search engine: step %d beyond %d steps", step, eng->n_steps);
    if (!hook) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "search engine: no hook");
    b->ctx = ctx, b->eng = eng, b->hook = hook, b->hook_user = hook_user, b->next_layer = 0;
    b->cuda = ctx->cuda != NULL;
    b->prev = dfa_attn_get_override(ctx, &b->prev_user);
    return dfa_attn_set_override(ctx, hook_override, b);
}

dfa_status dfa_engine_hook_end(dfa_engine_hook *b, dfa_status s, int step) {
    dfa_attn_set_override(b->ctx, b->prev, b->prev_user); /* cannot fail: the state exists */
    if (s == DFA_OK && b->next_layer != b->eng->n_layers)
        s = DFA_SET(&b->ctx->err, DFA_ERR_INTERNAL, "search engine: step %d ran %d attention layers, expected %d", step,
                    b->next_layer, b->eng->n_layers);
    return s;
}
