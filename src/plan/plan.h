/* plan.h - a compression plan: for every denoising step x attention layer x head, the method
 * (FULL, ARROW(w), ARROW_RS(w), CACHE) and per (step, layer) ASC; plus what it was made for
 * (model, token layout, steps, CFG) and how (method set, delta, c, search). File format:
 * docs/PLAN_FORMAT.md. A plan is a standalone object (init/free pair); the context takes a
 * copy through dfa_attn_set_plan() (attn_state.h).
 *
 * Semantics over steps (per layer and head), checked by dfa_plan_validate():
 *   CACHE at step s reuses the output of the last earlier step that computed the head
 *     (FULL, ARROW or ARROW_RS); there must be one.
 *   ARROW_RS(w) at step s adds the residual R = FULL - ARROW(w) refreshed at the last earlier
 *     FULL step of the head (V1 WA-RS); there must be one, and every ARROW_RS step reusing
 *     one refresh has the same w. That FULL step computes ARROW(w) as well (cost FULL+ARROW).
 * Derived by look-ahead (filled by dfa_plan_validate): which steps store an output or a
 * residual, so that only what a later step reuses is kept. */
#ifndef DFA_PLAN_PLAN_H
#define DFA_PLAN_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "attn/attn.h"
#include "attn/mask.h"
#include "core/error.h"
#include "dfa.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DFA_PLAN_FORMAT "dfa-plan"
#define DFA_PLAN_VERSION 1
/* Tile size plans use unless told otherwise: the CUDA kernel's query tile (every work item one
 * full tile; src/attn/cuda/attn_cuda.h) and the cost table's block. */
#define DFA_PLAN_DEFAULT_BLOCK 128

/* method_set bits: which methods the search could choose (FULL is always allowed). */
enum {
    DFA_PLAN_SET_ARROW = 1 << DFA_ATTN_ARROW,
    DFA_PLAN_SET_ARROW_RS = 1 << DFA_ATTN_ARROW_RS,
    DFA_PLAN_SET_CACHE = 1 << DFA_ATTN_CACHE,
    DFA_PLAN_SET_ASC = 1 << 8
};

typedef struct dfa_plan {
    char family[32];     /* "dit", "pixart", "sd3", "flux", ... */
    char config_id[128]; /* which checkpoint / resolution the plan was made for */
    dfa_attn_layout layout; /* the main token layout (every layer's unless layer_layout says otherwise);
                             * layout.band is the plan's band kind (file key "band"), every layer's */
    int grid_h, grid_w;  /* visual token grid (n_vis = grid_h * grid_w) */
    /* [n_layers] per-layer layouts, or NULL: every layer uses `layout`. Set through
     * dfa_plan_set_layer_layout (SD3.5's image-only attn2 layers: n_text 0). Every entry has the
     * main n_vis (one visual grid); read it through dfa_plan_layer_layout(). */
    dfa_attn_layout *layer_layout;
    int n_steps, n_layers, n_heads;
    int cfg;             /* 1: the CFG batch [2n] runs in one call */
    int cond_half;       /* which batch half is conditional (diffusers: 1 = [uncond, cond]) */
    unsigned method_set; /* DFA_PLAN_SET_* bits */
    double delta, c;     /* search threshold and V2 head constraint (c <= 0: none) */
    char search[32];     /* "v1", "v2", "manual", ... */

    /* [n_steps * n_layers] */
    uint8_t *asc;
    /* [n_steps * n_layers * n_heads], index dfa_plan_index() */
    uint8_t *method;
    int32_t *window;     /* tiles, for ARROW / ARROW_RS (0 otherwise) */

    /* derived by dfa_plan_validate() (look-ahead), same indexing as method */
    uint8_t *store_out;  /* this step's output is reused by a later CACHE */
    uint8_t *store_res;  /* FULL step refreshing a residual for a later ARROW_RS */
    int32_t *res_window; /* that residual's window */
    int validated;
} dfa_plan;

static inline size_t dfa_plan_index(const dfa_plan *p, int step, int layer, int head) {
    return ((size_t)step * p->n_layers + layer) * p->n_heads + head;
}

/* Same token layout (text_first only matters with text). */
static inline int dfa_plan_layout_same(const dfa_attn_layout *a, const dfa_attn_layout *b) {
    return a->n_vis == b->n_vis && a->n_text == b->n_text && a->block == b->block &&
           (a->n_text == 0 || a->text_first == b->text_first);
}

/* The token layout of attention layer `layer`. */
static inline const dfa_attn_layout *dfa_plan_layer_layout(const dfa_plan *p, int layer) {
    return p->layer_layout ? &p->layer_layout[layer] : &p->layout;
}

/* Give layer `layer` its own layout (allocates layer_layout on first use, every other layer
 * keeping the main one). Validated by dfa_plan_validate (same n_vis as the main layout). */
dfa_status dfa_plan_set_layer_layout(dfa_plan *p, int layer, const dfa_attn_layout *l, dfa_error *err);
/* Set the plan's band kind (DFA_BAND_*) on the main layout and every layer layout. */
void dfa_plan_set_band(dfa_plan *p, int band);
/* Layers whose layout differs from the main one (0: a single-layout plan). */
int dfa_plan_n_layer_layouts(const dfa_plan *p);

/* Allocate an all-FULL plan, no ASC; metadata zero / empty strings, method_set 0. */
dfa_status dfa_plan_init(dfa_plan *p, const dfa_attn_layout *layout, int n_steps, int n_layers, int n_heads,
                         dfa_error *err);
void dfa_plan_free(dfa_plan *p);
dfa_status dfa_plan_copy(dfa_plan *dst, const dfa_plan *src, dfa_error *err);

/* Check every entry and derive the store flags. Errors name step/layer/head and the problem;
 * `what` (a file name or "plan") prefixes the message. */
dfa_status dfa_plan_validate(dfa_plan *p, const char *what, dfa_error *err);

/* Plan files (JSON, docs/PLAN_FORMAT.md). load validates. */
dfa_status dfa_plan_load(const char *path, dfa_plan *p, dfa_error *err);
dfa_status dfa_plan_parse(const char *text, size_t len, const char *what, dfa_plan *p, dfa_error *err);
dfa_status dfa_plan_save(const char *path, const dfa_plan *p, dfa_error *err);
/* The file text (malloc'ed, caller frees). */
dfa_status dfa_plan_to_json(const dfa_plan *p, char **out, dfa_error *err);

/* Per-head code: "F", "A<w>", "R<w>", "C". buf >= 16 bytes. */
const char *dfa_plan_code(int method, int window, char *buf, size_t len);
/* Parse one code; 0 on success. */
int dfa_plan_parse_code(const char *s, int *method, int *window);
/* "full,arrow,cache" style list <-> bits */
int dfa_plan_parse_method_set(const char *list, unsigned *bits);

/* ---- hand-made plans (tests, benchmarks, baselines such as V2's "attention caching N=2") ----
 * Applied to an initialised plan (dfa_plan_init); steps before full_steps stay FULL. */
typedef enum dfa_plan_pattern {
    DFA_PLAN_PAT_FULL = 0, /* every head FULL */
    DFA_PLAN_PAT_ARROW,    /* every head ARROW(window) */
    DFA_PLAN_PAT_CACHE,    /* compute every `every` steps (FULL), CACHE in between (AST, layer-wise) */
    DFA_PLAN_PAT_RS,       /* FULL refresh every `every` steps, ARROW_RS(window) in between (V1 WA-RS) */
    DFA_PLAN_PAT_RANDOM    /* a random valid mix of every method, per head (seeded) */
} dfa_plan_pattern;

typedef struct dfa_plan_make_opts {
    dfa_plan_pattern pattern;
    int window;          /* tiles, for ARROW / RS / RANDOM (max window for RANDOM) */
    int every;           /* period for CACHE / RS (>= 1) */
    int full_steps;      /* leading steps kept FULL */
    int asc;             /* ASC on every layer of the compressed steps (needs p->cfg) */
    unsigned long long seed;
} dfa_plan_make_opts;

/* Fill p's entries by the pattern, set method_set and search = "manual", validate. */
dfa_status dfa_plan_make(dfa_plan *p, const dfa_plan_make_opts *o, dfa_error *err);

/* ---- attention cost (exact entries from mask.h; FLOPs = 4 * entries * D) ----
 * batch = 2 with CFG, else 1; ASC halves it for its (step, layer). */
typedef struct dfa_plan_cost {
    double flops;        /* the plan's attention FLOPs for one generation (one image / CFG pair) */
    double full_flops;   /* the same model, every head FULL, no ASC */
    double fraction;     /* flops / full_flops: V1 "Attn FLOPs"; V2 sparsity = 1 - fraction */
    int64_t n_method[DFA_ATTN_METHOD_COUNT]; /* head-steps per method */
    int64_t n_refresh;   /* FULL head-steps that also refresh a residual */
    int64_t n_asc;       /* (step, layer) pairs with ASC */
} dfa_plan_cost;

/* FLOPs of one (step, layer) for head dim D (all batch elements). */
double dfa_plan_layer_flops(const dfa_plan *p, int step, int layer, int head_dim);
/* fraction per step into step_frac[n_steps] (may be NULL); totals into *c. */
void dfa_plan_cost_compute(const dfa_plan *p, int head_dim, dfa_plan_cost *c, double *step_frac);

#ifdef __cplusplus
}
#endif
#endif
