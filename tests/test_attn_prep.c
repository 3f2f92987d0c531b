/* test_attn_prep.c - which CUDA work lists a plan needs (attn_prep.h), without a GPU: on real plan
 * files (bench/runs/fidelity-gpu/plans: V2, V1 WA-RS, caching) and random plans, every (step,
 * layer, launch) entry maps onto a list whose methods and windows are those the entry launches
 * (derived here from the plan independently of dfa_attn_launch_heads), the lists are pairwise
 * distinct, and their count equals a brute-force count of distinct launches. */
#include <stdlib.h>
#include <string.h>

#include "attn/attn_prep.h"
#include "plan/plan.h"
#include "test.h"

#define PLANS DFA_SOURCE_DIR "/bench/runs/fidelity-gpu/plans/"

/* the entry's launch straight from the plan: 0 if it does not run */
static int entry_launch(const dfa_plan *p, int s, int l, int which, int *m, int *w) {
    int any = 0;
    for (int h = 0; h < p->n_heads; h++) {
        const size_t i = dfa_plan_index(p, s, l, h);
        const int meth = p->method[i];
        if (which == 0) {
            m[h] = meth;
            w[h] = meth == DFA_ATTN_ARROW || meth == DFA_ATTN_ARROW_RS ? p->window[i] : -1;
            any = 1;
        } else {
            m[h] = p->store_res[i] ? DFA_ATTN_ARROW : DFA_ATTN_CACHE;
            w[h] = p->store_res[i] ? p->res_window[i] : -1;
            any |= p->store_res[i];
        }
    }
    return any;
}

static int same_key(const dfa_attn_prep *pp, int a, int b) {
    const int H = pp->n_heads;
    const dfa_attn_layout *x = &pp->layout[a], *y = &pp->layout[b];
    return x->n_vis == y->n_vis && x->n_text == y->n_text && x->text_first == y->text_first &&
           x->block == y->block && x->band == y->band &&
           !memcmp(pp->method + (size_t)a * H, pp->method + (size_t)b * H, (size_t)H * sizeof(int)) &&
           !memcmp(pp->window + (size_t)a * H, pp->window + (size_t)b * H, (size_t)H * sizeof(int));
}

static void check_plan(const dfa_plan *p, const char *name, int *n_lists_out) {
    dfa_error err = {0};
    dfa_attn_prep pp;
    dfa_status st = dfa_attn_prep_build(&pp, p, &err);
    CHECKF(st == DFA_OK, "%s: %s", name, err.msg);
    if (st != DFA_OK) return;
    const int H = p->n_heads, L = p->n_layers, S = p->n_steps;
    CHECK(pp.n_heads == H && pp.n_entries == S * L * 2);
    int *m = malloc((size_t)H * sizeof *m), *w = malloc((size_t)H * sizeof *w);
    int *uses = calloc((size_t)(pp.n_lists + 1), sizeof *uses);
    int bad = 0, runs = 0, refresh = 0;
    /* brute force: distinct launches by comparing every entry with every earlier one */
    int *em = malloc((size_t)pp.n_entries * H * sizeof *em), *ew = malloc((size_t)pp.n_entries * H * sizeof *ew);
    char *has = calloc((size_t)pp.n_entries, 1);
    int distinct = 0;
    for (int s = 0; s < S; s++)
        for (int l = 0; l < L; l++)
            for (int which = 0; which < 2; which++) {
                const int e = (s * L + l) * 2 + which, c = pp.index[e];
                const int runs_here = entry_launch(p, s, l, which, m, w);
                if (!runs_here) {
                    bad += c != -1;
                    continue;
                }
                runs++;
                refresh += which;
                if (c < 0 || c >= pp.n_lists) {
                    bad++;
                    continue;
                }
                uses[c]++;
                dfa_attn_layout lay = *dfa_plan_layer_layout(p, l);
                bad += !dfa_plan_layout_same(&pp.layout[c], &lay) || pp.layout[c].band != lay.band;
                bad += memcmp(pp.method + (size_t)c * H, m, (size_t)H * sizeof *m) != 0;
                bad += memcmp(pp.window + (size_t)c * H, w, (size_t)H * sizeof *w) != 0;
                memcpy(em + (size_t)e * H, m, (size_t)H * sizeof *m);
                memcpy(ew + (size_t)e * H, w, (size_t)H * sizeof *w);
                has[e] = 1;
                int seen = 0;
                for (int f = 0; f < e && !seen; f++) {
                    const int fl = (f / 2) % L; /* layer of entry f */
                    seen = has[f] &&
                           dfa_plan_layout_same(dfa_plan_layer_layout(p, fl), dfa_plan_layer_layout(p, l)) &&
                           !memcmp(em + (size_t)f * H, m, (size_t)H * sizeof *m) &&
                           !memcmp(ew + (size_t)f * H, w, (size_t)H * sizeof *w);
                }
                distinct += !seen;
            }
    CHECKF(bad == 0, "%s: %d entries map onto the wrong list", name, bad);
    CHECKF(pp.n_lists == distinct, "%s: %d lists, brute force %d distinct launches", name, pp.n_lists, distinct);
    int sum = 0, dup = 0;
    for (int c = 0; c < pp.n_lists; c++) {
        CHECKF(uses[c] == pp.uses[c] && uses[c] > 0, "%s: list %d used %d times, says %d", name, c, uses[c],
               pp.uses[c]);
        sum += uses[c];
        for (int d = 0; d < c; d++) dup += same_key(&pp, c, d);
    }
    CHECKF(dup == 0, "%s: %d pairs of identical lists", name, dup);
    CHECKF(sum == runs, "%s: lists serve %d entries of %d launches", name, sum, runs);
    printf("     %-22s %d steps x %d layers: %d launches (%d refresh) -> %d distinct work lists\n", name, S, L, runs,
           refresh, pp.n_lists);
    if (n_lists_out) *n_lists_out = pp.n_lists;
    free(m), free(w), free(uses), free(em), free(ew), free(has);
    dfa_attn_prep_free(&pp);
}

static void test_plan_files(void) {
    const char *files[] = {"v2_d0.2_c1.5.json", "v2_d1.0_c1.5.json", "v1_d0.2.json", "v1plain_d0.4.json",
                           "cache_n2.json"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s%s", PLANS, files[i]);
        dfa_plan p;
        dfa_error err = {0};
        dfa_status st = dfa_plan_load(path, &p, &err);
        CHECKF(st == DFA_OK, "%s: %s", files[i], err.msg);
        if (st != DFA_OK) continue;
        int n = 0;
        check_plan(&p, files[i], &n);
        /* caching every 2 steps: per layer one all-FULL list and one all-CACHE list at most, and the
         * all-FULL list is one for every layer (one layout) */
        if (!strcmp(files[i], "cache_n2.json")) CHECKF(n <= 2, "cache_n2: %d lists (expected <= 2)", n);
        dfa_plan_free(&p);
    }
}

static void test_random_and_layouts(void) {
    const dfa_attn_layout L = {.n_vis = 24 * 24, .n_text = 77, .text_first = 1, .block = 64};
    for (int pat = DFA_PLAN_PAT_FULL; pat <= DFA_PLAN_PAT_RANDOM; pat++) {
        dfa_plan p;
        dfa_error err = {0};
        CHECK(dfa_plan_init(&p, &L, 6, 5, 4, &err) == DFA_OK);
        p.grid_h = p.grid_w = 24;
        dfa_attn_layout L1 = L; /* an image-only layer (SD3.5 attn2): its own lists */
        L1.n_text = 0;
        CHECK(dfa_plan_set_layer_layout(&p, 2, &L1, &err) == DFA_OK);
        dfa_plan_make_opts mo = {(dfa_plan_pattern)pat, 3, 2, 1, 0, 11 + (unsigned long long)pat};
        dfa_status st = dfa_plan_make(&p, &mo, &err);
        CHECKF(st == DFA_OK, "pattern %d: %s", pat, err.msg);
        char name[32];
        snprintf(name, sizeof name, "pattern %d", pat);
        int n = 0;
        if (st == DFA_OK) check_plan(&p, name, &n);
        /* all FULL: one list for the text layers, one for the image-only layer */
        if (pat == DFA_PLAN_PAT_FULL) CHECKF(n == 2, "all-FULL plan: %d lists (expected 2)", n);
        dfa_plan_free(&p);
    }
}

static void test_launch_heads(void) {
    dfa_attn_head_exec h[4] = {{DFA_ATTN_FULL, 0, 1, 1, 2},
                               {DFA_ATTN_ARROW, 3, 0, 0, 0},
                               {DFA_ATTN_CACHE, 5, 0, 0, 0},
                               {DFA_ATTN_ARROW_RS, 1, 0, 0, 0}};
    int m[4], w[4];
    CHECK(dfa_attn_launch_heads(h, 4, 0, m, w) == 1);
    CHECK(m[0] == DFA_ATTN_FULL && w[0] == -1 && m[1] == DFA_ATTN_ARROW && w[1] == 3 && m[2] == DFA_ATTN_CACHE &&
          w[2] == -1 && m[3] == DFA_ATTN_ARROW_RS && w[3] == 1);
    CHECK(dfa_attn_launch_heads(h, 4, 1, m, w) == 1);
    CHECK(m[0] == DFA_ATTN_ARROW && w[0] == 2 && m[1] == DFA_ATTN_CACHE && w[1] == -1 && m[3] == DFA_ATTN_CACHE);
    h[0].store_res = 0;
    m[0] = 77;
    CHECK(dfa_attn_launch_heads(h, 4, 1, m, w) == 0 && m[0] == 77);
}

int main(void) {
    RUN(test_launch_heads);
    RUN(test_plan_files);
    RUN(test_random_and_layouts);
    return test_summary();
}
