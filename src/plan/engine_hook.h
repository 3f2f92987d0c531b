/* engine_hook.h - shared by the search engines (engine_mmdit.c, engine_dit.c): install the
 * attention override for one run_step so that every dfa_attn_layer() call of the model goes to
 * the search hook, after checking the layer order, the layout and the [rows, N, H, D] shape
 * against the engine, in the search backend's memory (f32 host on a CPU context, bf16 on the
 * device on a CUDA one); then restore the override that was there before. */
#ifndef DFA_PLAN_ENGINE_HOOK_H
#define DFA_PLAN_ENGINE_HOOK_H

#include "attn/attn_state.h"
#include "plan/search.h"

typedef struct dfa_engine_hook {
    dfa_ctx *ctx;
    const dfa_search_engine *eng;
    dfa_search_hook_fn hook;
    void *hook_user;
    int next_layer;
    int cuda; /* the context is on CUDA: the layers come as bf16 device tensors */
    dfa_attn_override_fn prev;
    void *prev_user;
} dfa_engine_hook;

/* Check step against the engine's next step (*cur), install the override. */
dfa_status dfa_engine_hook_begin(dfa_engine_hook *b, dfa_ctx *ctx, const dfa_search_engine *eng, int step, int cur,
                                 dfa_search_hook_fn hook, void *hook_user);
/* Restore the previous override; with s == DFA_OK, check that every layer ran. Returns s or
 * the check's error. */
dfa_status dfa_engine_hook_end(dfa_engine_hook *b, dfa_status s, int step);

#endif
