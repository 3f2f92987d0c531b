/* attn_prep.h - which CUDA work lists a plan needs (plain C: the CPU tests check it).
 *
 * Every (step, layer) of a plan runs one fused launch over its heads' methods, and a second one
 * (the refresh: ARROW(res_window) of the heads that store a residual) when some head refreshes.
 * A launch's work list depends only on (layer layout with the plan's band, head count, per-head
 * method and window): many steps share one. dfa_attn_prep_build lists the distinct ones and maps
 * every (step, layer, launch) onto them, so that a CUDA run builds and uploads each once, in one
 * allocation, before its loop (attn_layer.c dfa_attn_prepare). */
#ifndef DFA_ATTN_ATTN_PREP_H
#define DFA_ATTN_ATTN_PREP_H

#include "attn/attn.h"
#include "plan/plan.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The per-head methods and windows of launch `which` (0: the main launch, 1: the refresh) of a
 * layer whose heads are heads[0..H): exactly what attn_gpu.c hands to the kernel. Returns 0 (and
 * writes nothing) when that launch does not run (which = 1 without a refreshing head). */
int dfa_attn_launch_heads(const dfa_attn_head_exec *heads, int H, int which, int *method, int *window);

typedef struct dfa_attn_prep { /* struct tag: attn_int.h declares it */
    int n_heads, n_entries; /* n_entries = n_steps * n_layers * 2 */
    int n_lists;            /* distinct work lists */
    int *index;             /* [n_entries]: list of (step, layer, launch) at ((s * L + l) * 2 + launch); -1: none */
    dfa_attn_layout *layout; /* [n_lists]: the layer layout, the plan's band */
    int *method, *window;    /* [n_lists * n_heads] */
    int *uses;               /* [n_lists]: entries mapped onto each */
} dfa_attn_prep;

/* The distinct work lists of a validated plan, in order of first use (step, layer, launch). */
dfa_status dfa_attn_prep_build(dfa_attn_prep *pp, const dfa_plan *plan, dfa_error *err);
void dfa_attn_prep_free(dfa_attn_prep *pp);

#ifdef __cplusplus
}
#endif
#endif
