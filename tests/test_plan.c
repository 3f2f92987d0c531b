/* test_plan.c - plan files: round trip, and bad files rejected with messages that name the
 * step / layer / head and the problem; per-layer layouts (layer_layouts): round trip, cost,
 * cache bytes and their errors. */
#include <math.h>
#include <unistd.h>

#include "attn/attn_state.h"
#include "plan/plan.h"
#include "plan/plan_target.h"
#include "test.h"

static const char *good =
    "{\n"
    "  \"format\": \"dfa-plan\",\n"
    "  \"version\": 1,\n"
    "  \"model\": {\"family\": \"sd3\", \"config\": \"tiny\"},\n"
    "  \"layout\": {\"n_text\": 5, \"text_first\": false, \"n_vis\": 24, \"grid_h\": 4, \"grid_w\": 6, \"block\": 4},\n"
    "  \"steps\": 3,\n"
    "  \"layers\": 2,\n"
    "  \"heads\": 3,\n"
    "  \"cfg\": true,\n"
    "  \"cfg_cond_index\": 1,\n"
    "  \"method_set\": [\"full\", \"arrow\", \"arrow_rs\", \"cache\", \"asc\"],\n"
    "  \"search\": {\"method\": \"v2\", \"delta\": 0.25, \"c\": 1.5},\n"
    "  \"entries\": [\n"
    "    {\"step\": 0, \"layer\": 0, \"asc\": false, \"heads\": \"F F A1\"},\n"
    "    {\"step\": 0, \"layer\": 1, \"asc\": false, \"heads\": \"F A2 F\"},\n"
    "    {\"step\": 1, \"layer\": 0, \"asc\": true, \"heads\": \"C R2 A1\"},\n"
    "    {\"step\": 1, \"layer\": 1, \"asc\": false, \"heads\": \"F C R5\"},\n"
    "    {\"step\": 2, \"layer\": 0, \"asc\": false, \"heads\": \"A0 R2 C\"},\n"
    "    {\"step\": 2, \"layer\": 1, \"asc\": true, \"heads\": \"C C C\"}\n"
    "  ]\n"
    "}\n";

static char *replace(const char *s, const char *from, const char *to) {
    const char *at = strstr(s, from);
    if (!at) {
        fprintf(stderr, "test bug: '%s' not in the good plan\n", from);
        exit(1);
    }
    size_t n = strlen(s) - strlen(from) + strlen(to) + 1;
    char *r = malloc(n);
    memcpy(r, s, (size_t)(at - s));
    strcpy(r + (at - s), to);
    strcat(r, at + strlen(from));
    return r;
}

/* p saved to a fresh temporary file and loaded back into q; the status of the load (q is set only
 * on DFA_OK) */
static dfa_status save_and_load(const dfa_plan *p, dfa_plan *q, dfa_error *err) {
    char path[] = "/tmp/dfa_test_plan_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return DFA_ERR_IO;
    close(fd);
    CHECK(dfa_plan_save(path, p, err) == DFA_OK);
    const dfa_status st = dfa_plan_load(path, q, err);
    CHECKF(st == DFA_OK, "%s", err->msg);
    unlink(path);
    return st;
}

static void test_parse_good_and_round_trip(void) {
    dfa_plan p, q;
    dfa_error err;
    dfa_status st = dfa_plan_parse(good, strlen(good), "good.json", &p, &err);
    CHECKF(st == DFA_OK, "%s", err.msg);
    if (st) return;
    CHECK(strcmp(p.family, "sd3") == 0 && strcmp(p.config_id, "tiny") == 0 && strcmp(p.search, "v2") == 0);
    CHECK(p.layout.n_text == 5 && p.layout.text_first == 0 && p.layout.n_vis == 24 && p.layout.block == 4);
    CHECK(p.n_steps == 3 && p.n_layers == 2 && p.n_heads == 3 && p.cfg == 1 && p.cond_half == 1);
    CHECK(p.delta == 0.25 && p.c == 1.5);
    size_t i = dfa_plan_index(&p, 1, 1, 2);
    CHECK(p.method[i] == DFA_ATTN_ARROW_RS && p.window[i] == 5);
    CHECK(p.asc[1 * 2 + 0] == 1 && p.asc[2 * 2 + 1] == 1 && p.asc[0] == 0);
    CHECK(p.store_res[dfa_plan_index(&p, 0, 0, 1)] == 1 && p.res_window[dfa_plan_index(&p, 0, 0, 1)] == 2);
    CHECK(p.store_out[dfa_plan_index(&p, 0, 0, 0)] == 1 && p.store_out[dfa_plan_index(&p, 1, 0, 2)] == 1);
    char *text;
    CHECK(dfa_plan_to_json(&p, &text, &err) == DFA_OK);
    CHECKF(strcmp(text, good) == 0, "written:\n%s", text);
    st = save_and_load(&p, &q, &err);
    if (st == DFA_OK) {
        size_t n = (size_t)3 * 2 * 3;
        CHECK(memcmp(p.method, q.method, n) == 0 && memcmp(p.window, q.window, n * 4) == 0 &&
              memcmp(p.asc, q.asc, 6) == 0 && memcmp(p.store_out, q.store_out, n) == 0);
        dfa_plan_free(&q);
    }
    free(text);
    dfa_plan_free(&p);
    CHECK(dfa_plan_load("/nonexistent/plan.json", &q, &err) == DFA_ERR_IO);
    CHECK(strstr(err.msg, "/nonexistent/plan.json: cannot open") != NULL);
}

static void test_bad_files(void) {
    static const struct {
        const char *from, *to, *msg;
    } bad[] = {
        {"\"version\": 1", "\"version\": 2", "plan format version 2, this build reads version 1"},
        {"\"dfa-plan\"", "\"plan\"", "\"format\" is \"plan\", expected \"dfa-plan\""},
        {"\"heads\": \"F F A1\"", "\"heads\": \"F X A1\"",
         "step 0 layer 0 head 1: unknown method code 'X' (expected F, A<window>, R<window> or C)"},
        {"\"heads\": \"F F A1\"", "\"heads\": \"F F A6\"", "step 0 layer 0 head 2: window 6 out of range [0, 5]"},
        {"\"heads\": \"F F A1\"", "\"heads\": \"C F A1\"",
         "step 0 layer 0 head 0: CACHE (C) but no earlier step computes this head"},
        {"\"heads\": \"F A2 F\"", "\"heads\": \"F A2 A2\"",
         "step 1 layer 1 head 2: ARROW_RS (R5) but no earlier FULL step refreshes the residual"},
        {"\"heads\": \"A0 R2 C\"", "\"heads\": \"A0 R1 C\"",
         "step 2 layer 0 head 1: ARROW_RS window 1 differs from window 2 of the residual refreshed at step 0"},
        {"\"heads\": \"F F A1\"", "\"heads\": \"F F\"", "step 0 layer 0: 2 head codes, expected 3"},
        {"\"heads\": \"F F A1\"", "\"heads\": \"F F A1 F\"", "step 0 layer 0: more than 3 head codes"},
        {"\"step\": 2, \"layer\": 1", "\"step\": 2, \"layer\": 0", "step 2 layer 0 appears twice"},
        {"\"step\": 2, \"layer\": 1", "\"step\": 3, \"layer\": 1", "\"step\" in entries[5] = 3 out of range [0, 2]"},
        {"\"steps\": 3", "\"steps\": 4", "6 entries, expected steps x layers = 4 x 2 = 8"},
        {"\"cfg\": true", "\"cfg\": false", "step 1 layer 0: ASC but the plan has no CFG"},
        {", \"cache\"", "", "step 1 layer 0 head 0: method cache (C) is not in the method set"},
        {"\"asc\"]", "\"ascc\"]", "method_set: unknown method ascc"},
        {"\"grid_w\": 6", "\"grid_w\": 5", "visual grid 4 x 5 does not hold n_vis = 24 tokens"},
        {"\"block\": 4", "\"block\": 0", "\"block\" in layout = 0 out of range"},
        {"\"steps\": 3,", "\"stpes\": 3,", "unknown key \"stpes\""},
        {"\"cfg_cond_index\": 1,", "\"cfg_cond_index\": 1, \"extra\": 0,", "unknown key \"extra\""},
        {"\"cfg_cond_index\": 1,", "", "missing key \"cfg_cond_index\""},
        {"\"heads\": 3", "\"heads\": \"3\"", "\"heads\" must be an integer"},
        {"\"heads\": 3", "\"heads\": 3e38", "\"heads\" = 3e+38 out of range [1, 100000]"},
        {"\"heads\": 3", "\"heads\": 2.5", "\"heads\" must be an integer"},
        {"\"entries\": [", "\"entries\": [}", "bad.json: invalid JSON at line 13"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *text = replace(good, bad[i].from, bad[i].to);
        dfa_plan p;
        dfa_error err;
        dfa_error_clear(&err);
        dfa_status st = dfa_plan_parse(text, strlen(text), "bad.json", &p, &err);
        CHECKF(st == DFA_ERR_FORMAT, "case %zu accepted (status %d)", i, (int)st);
        CHECKF(strstr(err.msg, bad[i].msg) != NULL && strstr(err.msg, "bad.json") != NULL,
               "case %zu: message '%s' lacks '%s'", i, err.msg, bad[i].msg);
        if (st == DFA_OK) dfa_plan_free(&p);
        free(text);
    }
}

/* ---- per-layer layouts (SD3.5's image-only attn2 layers) ---- */

#define LL_LINE "  \"layout\": {\"n_text\": 5, \"text_first\": false, \"n_vis\": 24, \"grid_h\": 4, \"grid_w\": 6, \"block\": 4},\n"
#define LL_LIST                                                                                                       \
    "  \"layer_layouts\": [\n"                                                                                         \
    "    {\"layer\": 1, \"n_text\": 0, \"text_first\": false, \"n_vis\": 24, \"block\": 4}\n"                      \
    "  ],\n"

static char *good_ll(void) { return replace(good, LL_LINE, LL_LINE LL_LIST); }

static void test_layer_layouts(void) {
    char *text = good_ll(), *back = NULL;
    dfa_plan p, q;
    dfa_error err;
    dfa_error_clear(&err);
    dfa_status st = dfa_plan_parse(text, strlen(text), "ll.json", &p, &err);
    CHECKF(st == DFA_OK, "%s", err.msg);
    if (st) {
        free(text);
        return;
    }
    const dfa_attn_layout *l0 = dfa_plan_layer_layout(&p, 0), *l1 = dfa_plan_layer_layout(&p, 1);
    CHECK(l0->n_text == 5 && l0->n_vis == 24 && l1->n_text == 0 && l1->n_vis == 24 && l1->block == 4);
    CHECK(dfa_plan_n_layer_layouts(&p) == 1 && p.layout.n_text == 5);
    /* written back byte for byte; a plan without differing layers writes no layer_layouts */
    CHECK(dfa_plan_to_json(&p, &back, &err) == DFA_OK);
    CHECKF(back && strcmp(back, text) == 0, "written:\n%s", back ? back : "(null)");
    free(back);
    /* copy keeps them (own memory) */
    CHECK(dfa_plan_copy(&q, &p, &err) == DFA_OK);
    CHECK(q.layer_layout != p.layer_layout && dfa_plan_layer_layout(&q, 1)->n_text == 0);
    dfa_plan_free(&q);
    /* cost: each layer with its own layout (exact entries, FLOPs = 4 * entries * D * batch) */
    dfa_plan_cost c;
    double sf[3];
    dfa_plan_cost_compute(&p, 8, &c, sf);
    double full = 0, flops = 0;
    for (int l = 0; l < 2; l++) full += 3.0 * dfa_mask_entries(dfa_plan_layer_layout(&p, l), -1);
    full *= 4.0 * 8 * 2 * 3; /* D, CFG batch, steps */
    for (int s = 0; s < 3; s++)
        for (int l = 0; l < 2; l++) {
            double e = 0;
            for (int h = 0; h < 3; h++) {
                size_t i = dfa_plan_index(&p, s, l, h);
                e += (double)dfa_attn_head_entries(dfa_plan_layer_layout(&p, l), p.method[i], p.window[i],
                                                   p.store_res[i], p.res_window[i]);
            }
            flops += 4.0 * 8 * e * (p.asc[s * 2 + l] ? 1 : 2);
        }
    CHECKF(fabs(c.full_flops - full) <= 1e-9 * full && fabs(c.flops - flops) <= 1e-9 * full,
           "cost %g / %g, expected %g / %g", c.flops, c.full_flops, flops, full);
    /* a single-layout plan over-counts layer 1 (29 tokens instead of 24): the test tells them apart */
    dfa_plan one;
    st = dfa_plan_parse(good, strlen(good), "good.json", &one, &err);
    if (st == DFA_OK) {
        dfa_plan_cost c1;
        dfa_plan_cost_compute(&one, 8, &c1, NULL);
        CHECK(c1.full_flops > c.full_flops * 1.1);
        /* cache bytes: layer 1 buffers hold 24 tokens, layer 0 29 */
        size_t b1 = dfa_plan_cache_bytes(&one, 2, 8, 4), b2 = dfa_plan_cache_bytes(&p, 2, 8, 4);
        CHECKF(b1 - b2 == (size_t)2 * 5 * 3 * 8 * 4 * 2, "cache bytes %zu vs %zu", b1, b2); /* out + res of layer 1 */
        dfa_plan_free(&one);
    }
    /* dfa plan-style setter: layer out of range */
    dfa_attn_layout L = p.layout;
    CHECK(dfa_plan_set_layer_layout(&p, 2, &L, &err) == DFA_ERR_INVALID_ARG && strstr(err.msg, "layer 2"));
    dfa_plan_free(&p);
    free(text);

    static const struct {
        const char *from, *to, *msg;
    } bad[] = {
        {"{\"layer\": 1, \"n_text\": 0", "{\"layer\": 2, \"n_text\": 0", "\"layer\" in layer_layouts[0] = 2 out of range [0, 1]"},
        {"\"n_vis\": 24, \"block\": 4}", "\"n_vis\": 20, \"block\": 4}",
         "layer 1: layer layout has n_vis 20, the plan's visual grid 4 x 6 holds 24"},
        {"\"n_vis\": 24, \"block\": 4}", "\"n_vis\": 24, \"block\": 8}",
         "step 1 layer 1 head 2: window 5 out of range [0, 2] (3 visual tiles of 8 tokens)"},
        {"\"n_text\": 0, \"text_first\": false", "\"n_text\": 5, \"text_first\": false",
         "layer 1: layer_layouts[0] repeats the main layout"},
        {"\"block\": 4}\n", "\"block\": 4},\n    {\"layer\": 1, \"n_text\": 1, \"text_first\": false, \"n_vis\": 24, \"block\": 4}\n",
         "layer 1 has two layouts in layer_layouts (entry 1)"},
        {"\"block\": 4}\n", "\"block\": 4, \"grid_h\": 4}\n", "unknown key \"grid_h\" in layer_layouts[0]"},
        {"\"n_text\": 0, \"text_first\": false, ", "\"n_text\": 0, ", "missing key \"text_first\" in layer_layouts[0]"},
        {"\"layer_layouts\": [\n    {", "\"layer_layouts\": [\n    3, {", "layer_layouts[0] must be an object"},
        {"\"layer_layouts\": [\n    {\"layer\": 1, \"n_text\": 0, \"text_first\": false, \"n_vis\": 24, \"block\": 4}\n  ]",
         "\"layer_layouts\": {}", "\"layer_layouts\" must be an array"},
        {"\"n_text\": 0, \"text_first\"", "\"n_text\": -1, \"text_first\"", "\"n_text\" in layer_layouts[0] = -1 out of range"},
    };
    char *base = good_ll();
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *t = replace(base, bad[i].from, bad[i].to);
        dfa_plan b;
        dfa_error_clear(&err);
        st = dfa_plan_parse(t, strlen(t), "bad.json", &b, &err);
        CHECKF(st == DFA_ERR_FORMAT, "layer layout case %zu accepted (status %d)", i, (int)st);
        CHECKF(strstr(err.msg, bad[i].msg) != NULL && strstr(err.msg, "bad.json") != NULL,
               "layer layout case %zu: message '%s' lacks '%s'", i, err.msg, bad[i].msg);
        CHECK(b.layer_layout == NULL && b.method == NULL); /* nothing left behind */
        if (st == DFA_OK) dfa_plan_free(&b);
        free(t);
    }
    free(base);
}

/* ---- the plan-level band kind ("band": "plain", V1's window over the whole sequence) ---- */

#define BAND_LINE "  \"band\": \"plain\",\n"

static void test_band(void) {
    dfa_plan p, q, a;
    dfa_error err;
    dfa_error_clear(&err);
    /* a file without the key is arrow */
    CHECK(dfa_plan_parse(good, strlen(good), "good.json", &a, &err) == DFA_OK);
    CHECK(a.layout.band == DFA_BAND_ARROW);
    char *text = replace(good, LL_LINE, LL_LINE BAND_LINE), *back = NULL;
    dfa_status st = dfa_plan_parse(text, strlen(text), "plain.json", &p, &err);
    CHECKF(st == DFA_OK, "%s", err.msg);
    if (st) {
        free(text);
        dfa_plan_free(&a);
        return;
    }
    CHECK(p.layout.band == DFA_BAND_PLAIN);
    /* written back byte for byte (the key only for plain), through a file too */
    CHECK(dfa_plan_to_json(&p, &back, &err) == DFA_OK);
    CHECKF(back && strcmp(back, text) == 0, "written:\n%s", back ? back : "(null)");
    free(back);
    st = save_and_load(&p, &q, &err);
    if (st == DFA_OK) {
        CHECK(q.layout.band == DFA_BAND_PLAIN);
        dfa_plan_free(&q);
    }
    CHECK(dfa_plan_copy(&q, &p, &err) == DFA_OK && q.layout.band == DFA_BAND_PLAIN);
    dfa_plan_free(&q);
    /* cost: the same codes cost less under the plain band (text rows are banded too), and the
     * plan's cost is exactly the plain mask's entries */
    dfa_plan_cost cp, ca;
    dfa_plan_cost_compute(&p, 8, &cp, NULL);
    dfa_plan_cost_compute(&a, 8, &ca, NULL);
    CHECKF(cp.flops < ca.flops && cp.full_flops == ca.full_flops, "plain %g arrow %g", cp.flops, ca.flops);
    dfa_attn_layout L = p.layout;
    CHECK(L.band == DFA_BAND_PLAIN);
    double flops = 0;
    for (int s = 0; s < 3; s++)
        for (int l = 0; l < 2; l++)
            for (int h = 0; h < 3; h++) {
                size_t i = dfa_plan_index(&p, s, l, h);
                flops += 4.0 * 8 * (p.asc[s * 2 + l] ? 1 : 2) *
                         (double)dfa_attn_head_entries(&L, p.method[i], p.window[i], p.store_res[i], p.res_window[i]);
            }
    CHECKF(fabs(cp.flops - flops) <= 1e-9 * flops, "cost %g, expected %g", cp.flops, flops);
    dfa_plan_free(&p);
    dfa_plan_free(&a);
    /* windows are in tiles of the whole sequence: 8 tiles (2 text + 6 visual), A7 = full */
    char *t7 = replace(text, "\"heads\": \"F F A1\"", "\"heads\": \"F F A7\"");
    st = dfa_plan_parse(t7, strlen(t7), "plain7.json", &p, &err);
    CHECKF(st == DFA_OK, "%s", err.msg);
    if (st == DFA_OK) dfa_plan_free(&p);
    free(t7);
    /* layer layouts take the plan's band */
    char *ll = good_ll(), *tl = replace(ll, LL_LINE, LL_LINE BAND_LINE);
    free(ll);
    st = dfa_plan_parse(tl, strlen(tl), "plainll.json", &p, &err);
    CHECKF(st == DFA_OK, "%s", err.msg);
    if (st == DFA_OK) {
        CHECK(dfa_plan_layer_layout(&p, 1)->band == DFA_BAND_PLAIN && dfa_plan_layer_layout(&p, 1)->n_text == 0);
        CHECK(dfa_plan_to_json(&p, &back, &err) == DFA_OK);
        CHECKF(back && strcmp(back, tl) == 0, "written:\n%s", back ? back : "(null)");
        free(back);
        dfa_plan_free(&p);
    }
    free(tl);

    static const struct {
        const char *from, *to, *msg;
    } bad[] = {
        {BAND_LINE, "  \"band\": \"diagonal\",\n",
         "\"band\" is \"diagonal\"; expected \"arrow\" (the default) or \"plain\""},
        {BAND_LINE, "  \"band\": 1,\n", "\"band\" is not a string; expected"},
        {BAND_LINE, "  \"band\": \"Plain\",\n", "\"band\" is \"Plain\""},
        {"\"heads\": \"F F A1\"", "\"heads\": \"F F A8\"",
         "step 0 layer 0 head 2: window 8 out of range [0, 7] (8 sequence (plain band) tiles of 4 tokens)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *t = replace(text, bad[i].from, bad[i].to);
        dfa_plan b;
        dfa_error_clear(&err);
        st = dfa_plan_parse(t, strlen(t), "bad.json", &b, &err);
        CHECKF(st == DFA_ERR_FORMAT, "band case %zu accepted (status %d)", i, (int)st);
        CHECKF(strstr(err.msg, bad[i].msg) != NULL && strstr(err.msg, "bad.json") != NULL,
               "band case %zu: message '%s' lacks '%s'", i, err.msg, bad[i].msg);
        if (st == DFA_OK) dfa_plan_free(&b);
        free(t);
    }
    free(text);
}

/* the model check: each layer's layout against the model's (SD3.5 plan vs SD3.0 model and back) */
static void test_target_layer_layouts(void) {
    char *text = good_ll();
    dfa_plan p, one;
    dfa_error err;
    dfa_error_clear(&err);
    CHECK(dfa_plan_parse(text, strlen(text), "ll.json", &p, &err) == DFA_OK);
    CHECK(dfa_plan_parse(good, strlen(good), "one.json", &one, &err) == DFA_OK);
    dfa_attn_layout lls[2] = {p.layout, p.layout};
    lls[1].n_text = 0;
    dfa_plan_target t = {.family = "sd3", .config_id = "tiny", .layout = p.layout, .grid_h = 4, .grid_w = 6,
                         .n_steps = 3, .n_layers = 2, .n_heads = 3, .cfg = 1};
    CHECK(dfa_plan_check_target(&one, &t, "one.json", &err) == DFA_OK);
    CHECK(dfa_plan_check_target(&p, &t, "ll.json", &err) == DFA_ERR_INVALID_ARG);
    CHECKF(strstr(err.msg, "ll.json: attention layer 1 has token layout (24 visual + 0 text tokens, tiles of 4) in "
                           "the plan, this model's layer 1 has (24 visual + 5 text tokens") != NULL, "%s", err.msg);
    t.layer_layout = lls;
    CHECKF(dfa_plan_check_target(&p, &t, "ll.json", &err) == DFA_OK, "%s", err.msg);
    CHECK(dfa_plan_check_target(&one, &t, "one.json", &err) == DFA_ERR_INVALID_ARG);
    CHECKF(strstr(err.msg, "attention layer 1 has token layout (24 visual + 5 text tokens") != NULL, "%s", err.msg);
    dfa_plan_free(&p);
    dfa_plan_free(&one);
    free(text);
}

static void test_codes(void) {
    int m, w;
    CHECK(dfa_plan_parse_code("A12", &m, &w) == 0 && m == DFA_ATTN_ARROW && w == 12);
    CHECK(dfa_plan_parse_code("R0", &m, &w) == 0 && m == DFA_ATTN_ARROW_RS && w == 0);
    CHECK(dfa_plan_parse_code("A", &m, &w) != 0);
    CHECK(dfa_plan_parse_code("A-1", &m, &w) != 0);
    CHECK(dfa_plan_parse_code("F1", &m, &w) != 0);
    CHECK(dfa_plan_parse_code("c", &m, &w) != 0);
    CHECK(dfa_plan_parse_code("A99999999999", &m, &w) != 0);
    unsigned bits;
    CHECK(dfa_plan_parse_method_set("arrow,cache", &bits) == 0 && bits == (DFA_PLAN_SET_ARROW | DFA_PLAN_SET_CACHE));
    CHECK(dfa_plan_parse_method_set("arrow,nope", &bits) != 0);
}

int main(void) {
    RUN(test_codes);
    RUN(test_parse_good_and_round_trip);
    RUN(test_bad_files);
    RUN(test_layer_layouts);
    RUN(test_band);
    RUN(test_target_layer_layouts);
    return test_summary();
}
