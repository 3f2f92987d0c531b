/* fuzz_plan.c - libFuzzer target for plan files: parse + validate; an accepted plan must write
 * back to text that parses to the same plan, and its cost must be finite. Built by
 * tests/fuzz/run.sh. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plan/plan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dfa_plan p, q;
    dfa_error err;
    dfa_error_clear(&err);
    if (dfa_plan_parse((const char *)data, size, "fuzz.json", &p, &err) != DFA_OK) {
        if (!err.msg[0] || p.method || p.layer_layout) abort(); /* a refusal names the problem and leaves nothing */
        return 0;
    }
    char *text = NULL;
    if (dfa_plan_to_json(&p, &text, &err) != DFA_OK) abort();
    if (dfa_plan_parse(text, strlen(text), "fuzz-rewritten.json", &q, &err) != DFA_OK) abort();
    size_t n = (size_t)p.n_steps * p.n_layers * p.n_heads;
    if (q.n_steps != p.n_steps || memcmp(p.method, q.method, n) || memcmp(p.window, q.window, n * sizeof(int32_t)) ||
        memcmp(p.store_res, q.store_res, n) || memcmp(p.asc, q.asc, (size_t)p.n_steps * p.n_layers) ||
        dfa_plan_n_layer_layouts(&p) != dfa_plan_n_layer_layouts(&q))
        abort();
    for (int l = 0; l < p.n_layers; l++)
        if (!dfa_plan_layout_same(dfa_plan_layer_layout(&p, l), dfa_plan_layer_layout(&q, l))) abort();
    dfa_plan_cost c;
    dfa_plan_cost_compute(&p, 64, &c, NULL);
    if (!isfinite(c.fraction) || c.fraction < 0) abort();
    free(text);
    dfa_plan_free(&q);
    dfa_plan_free(&p);
    return 0;
}
