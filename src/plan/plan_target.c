/* plan_target.c - refuse a plan made for another model, resolution or step count (plan_target.h). */
#include "plan/plan_target.h"

#include <stdio.h>
#include <string.h>

static void grid_str(int gh, int gw, int px, char *buf, size_t n) {
    if (px > 0)
        snprintf(buf, n, "%dx%d px (W x H; %d x %d tokens)", gw * px, gh * px, gw, gh);
    else
        snprintf(buf, n, "%d x %d tokens (W x H)", gw, gh);
}

dfa_status dfa_plan_check_target(const dfa_plan *p, const dfa_plan_target *t, const char *what, dfa_error *err) {
    if (!what) what = "plan";
    if (t->family && t->family[0] && p->family[0] && strcmp(p->family, t->family) != 0)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "%s was made for model family '%s', this model is '%s'", what, p->family,
                 t->family);
    if (t->config_id && t->config_id[0] && p->config_id[0] && strcmp(p->config_id, t->config_id) != 0)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "%s was made for another checkpoint architecture (config '%s'; this model "
                 "is '%s')", what, p->config_id, t->config_id);
    if (p->grid_h != t->grid_h || p->grid_w != t->grid_w || p->layout.n_vis != t->layout.n_vis) {
        char a[96], b[96];
        grid_str(p->grid_h, p->grid_w, t->px_per_token, a, sizeof a);
        grid_str(t->grid_h, t->grid_w, t->px_per_token, b, sizeof b);
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "%s was made for a resolution of %s, this run has %s; calibrate a plan "
                 "for this resolution", what, a, b);
    }
    if (p->n_steps != t->n_steps)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "%s was made for %d denoising steps, this run has %d; calibrate a plan "
                 "for %d steps (or run with --steps %d)", what, p->n_steps, t->n_steps, t->n_steps, p->n_steps);
    if (p->n_layers != t->n_layers || p->n_heads != t->n_heads)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "%s was made for %d attention layers x %d heads, this model has %d x %d",
                 what, p->n_layers, p->n_heads, t->n_layers, t->n_heads);
    if (p->layout.n_text != t->layout.n_text)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "%s was made for %d text tokens, these prompt embeddings have %d", what,
                 p->layout.n_text, t->layout.n_text);
    if (p->layout.text_first != t->layout.text_first || p->layout.block != t->layout.block)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "%s has token layout (text %s, tiles of %d), this model uses (text %s, "
                 "tiles of %d)", what, p->layout.text_first ? "first" : "last", p->layout.block,
                 t->layout.text_first ? "first" : "last", t->layout.block);
    for (int l = 0; l < p->n_layers; l++) {
        const dfa_attn_layout *a = dfa_plan_layer_layout(p, l), *b = t->layer_layout ? &t->layer_layout[l] : &t->layout;
        if (!dfa_plan_layout_same(a, b))
            DFA_FAIL(err, DFA_ERR_INVALID_ARG, "%s: attention layer %d has token layout (%d visual + %d text tokens, "
                     "tiles of %d) in the plan, this model's layer %d has (%d visual + %d text tokens, tiles of %d)",
                     what, l, a->n_vis, a->n_text, a->block, l, b->n_vis, b->n_text, b->block);
    }
    if (!!p->cfg != !!t->cfg)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "%s was made %s classifier-free guidance, this run is %s it", what,
                 p->cfg ? "with" : "without", t->cfg ? "with" : "without");
    return DFA_OK;
}
