/* fuzz_json.c - libFuzzer target for the JSON helpers: parse, then read a few keys through
 * every typed getter. Built by tests/fuzz/run.sh. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "io/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void poke(const cJSON *obj, const char *key) {
    dfa_error err;
    int i;
    double d;
    const char *s;
    dfa_json_int(obj, key, "fuzz.json", &i, &err);
    dfa_json_int_or(obj, key, "fuzz.json", 1, &i, &err);
    dfa_json_double(obj, key, "fuzz.json", &d, &err);
    dfa_json_double_or(obj, key, "fuzz.json", 1.0, &d, &err);
    dfa_json_bool_or(obj, key, "fuzz.json", 0, &i, &err);
    if (dfa_json_string(obj, key, "fuzz.json", &s, &err) == DFA_OK && !s) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cJSON *root = NULL;
    dfa_error err;
    dfa_error_clear(&err);
    if (dfa_json_parse((const char *)data, size, "fuzz.json", &root, &err) != DFA_OK) {
        if (root || !err.msg[0]) abort();
        return 0;
    }
    static const char *const keys[] = {"a", "num_layers", "eps", "name", "flag", ""};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) poke(root, keys[k]);
    if (root->child && root->child->string) poke(root, root->child->string);
    if (root->child) poke(root->child, "a");
    cJSON_Delete(root);
    return 0;
}
