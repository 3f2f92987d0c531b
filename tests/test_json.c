/* test_json.c - JSON helpers: file round trip, typed getters and their errors, broken text. */
#include "test.h"

#include "tmpdir.h"

#include "io/json.h"

static test_tmpdir tmp;

static void path_in_tmp(char *buf, size_t n, const char *name) { tmpdir_file(&tmp, name, buf, n); }

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static void test_roundtrip(void) {
    unsigned long long rng = 0x9e3779b97f4a7c15ULL ^ (unsigned long long)getpid();
    int iv = (int)(test_rng_next(&rng) % 2000001) - 1000000;
    double dv = test_rng_uniform(&rng) * 1e3;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "num_layers", iv);
    cJSON_AddNumberToObject(root, "eps", dv);
    cJSON_AddStringToObject(root, "_class_name", "SD3Transformer2DModel");
    cJSON_AddBoolToObject(root, "qk_norm", 1);
    cJSON_AddNullToObject(root, "cross_attention_dim");
    char path[128];
    path_in_tmp(path, sizeof path, "config.json");
    dfa_error e;
    dfa_error_clear(&e);
    CHECKF(dfa_json_write_file(path, root, &e) == DFA_OK, "%s", e.msg);
    cJSON_Delete(root);

    cJSON *back = NULL;
    CHECKF(dfa_json_read_file(path, &back, &e) == DFA_OK, "%s", e.msg);
    int n = -1, b = -1, dflt = -1;
    double d = 0;
    const char *s = NULL;
    CHECK(dfa_json_int(back, "num_layers", path, &n, &e) == DFA_OK && n == iv);
    CHECK(dfa_json_double(back, "eps", path, &d, &e) == DFA_OK);
    CHECK_NEAR(d, dv, 1e-12 * (1 + fabs(dv)));
    CHECK(dfa_json_double(back, "num_layers", path, &d, &e) == DFA_OK && d == iv); /* int reads as double */
    CHECK(dfa_json_string(back, "_class_name", path, &s, &e) == DFA_OK && s && strcmp(s, "SD3Transformer2DModel") == 0);
    CHECK(dfa_json_bool_or(back, "qk_norm", path, 0, &b, &e) == DFA_OK && b == 1);
    CHECK(dfa_json_bool_or(back, "absent", path, 1, &b, &e) == DFA_OK && b == 1);
    CHECK(dfa_json_int_or(back, "absent", path, 77, &dflt, &e) == DFA_OK && dflt == 77);
    CHECK(dfa_json_int_or(back, "cross_attention_dim", path, 5, &dflt, &e) == DFA_OK && dflt == 5); /* null */
    CHECK(dfa_json_double_or(back, "absent", path, 0.5, &d, &e) == DFA_OK && d == 0.5);
    CHECK(dfa_json_int_or(NULL, "x", path, 3, &dflt, &e) == DFA_OK && dflt == 3);
    cJSON_Delete(back);
}

static void test_getter_errors(void) {
    const char *text = "{\"a\": 1.5, \"s\": \"x\", \"big\": 1e12, \"n\": null, \"arr\": [1], \"i\": 4}";
    cJSON *root = NULL;
    dfa_error e;
    dfa_error_clear(&e);
    CHECKF(dfa_json_parse(text, strlen(text), "cfg.json", &root, &e) == DFA_OK, "%s", e.msg);
    int n = 0;
    const char *s;
    CHECK(dfa_json_int(root, "missing", "cfg.json", &n, &e) == DFA_ERR_NOT_FOUND);
    CHECKF(strstr(e.msg, "cfg.json: missing key 'missing'") != NULL, "%s", e.msg);
    CHECK(dfa_json_int(root, "a", "cfg.json", &n, &e) == DFA_ERR_FORMAT);
    CHECKF(strstr(e.msg, "'a'") && strstr(e.msg, "expected an integer, got 1.5"), "%s", e.msg);
    CHECK(dfa_json_int(root, "s", "cfg.json", &n, &e) == DFA_ERR_FORMAT);
    CHECKF(strstr(e.msg, "expected an integer, got a string"), "%s", e.msg);
    CHECK(dfa_json_int(root, "big", "cfg.json", &n, &e) == DFA_ERR_FORMAT);
    CHECKF(strstr(e.msg, "out of int range"), "%s", e.msg);
    CHECK(dfa_json_int_or(root, "s", "cfg.json", 1, &n, &e) == DFA_ERR_FORMAT); /* present but wrong: no default */
    CHECK(dfa_json_int(root, "n", "cfg.json", &n, &e) == DFA_ERR_NOT_FOUND);
    CHECKF(strstr(e.msg, "'n' is null"), "%s", e.msg);
    CHECK(dfa_json_string(root, "i", "cfg.json", &s, &e) == DFA_ERR_FORMAT);
    CHECKF(strstr(e.msg, "expected a string, got a number"), "%s", e.msg);
    CHECK(dfa_json_bool_or(root, "i", "cfg.json", 0, &n, &e) == DFA_ERR_FORMAT);
    CHECK(dfa_json_int(cJSON_GetObjectItem(root, "arr"), "x", "cfg.json", &n, &e) == DFA_ERR_FORMAT);
    CHECKF(strstr(e.msg, "expected an object"), "%s", e.msg);
    cJSON_Delete(root);
}

static void test_broken(void) {
    dfa_error e;
    cJSON *root = (cJSON *)1;
    char path[128];
    /* syntax error on line 3 */
    path_in_tmp(path, sizeof path, "bad.json");
    write_text(path, "{\n  \"a\": 1,\n  \"b\": ]\n}\n");
    CHECK(dfa_json_read_file(path, &root, &e) == DFA_ERR_FORMAT && root == NULL);
    CHECKF(strstr(e.msg, "bad.json: invalid JSON at line 3"), "%s", e.msg);
    /* truncated */
    write_text(path, "{\"a\": [1, 2");
    CHECK(dfa_json_read_file(path, &root, &e) == DFA_ERR_FORMAT);
    CHECKF(strstr(e.msg, "bad.json: invalid JSON"), "%s", e.msg);
    /* empty */
    write_text(path, "");
    CHECK(dfa_json_read_file(path, &root, &e) == DFA_ERR_FORMAT);
    CHECKF(strstr(e.msg, "unexpected end"), "%s", e.msg);
    /* garbage after the value */
    write_text(path, "{\"a\": 1} x");
    CHECK(dfa_json_read_file(path, &root, &e) == DFA_ERR_FORMAT);
    CHECKF(strstr(e.msg, "text after the value"), "%s", e.msg);
    /* trailing whitespace is fine */
    write_text(path, "{\"a\": 1}  \n\n");
    CHECKF(dfa_json_read_file(path, &root, &e) == DFA_OK, "%s", e.msg);
    cJSON_Delete(root);
    /* missing file */
    path_in_tmp(path, sizeof path, "nope.json");
    CHECK(dfa_json_read_file(path, &root, &e) == DFA_ERR_IO);
    CHECKF(strstr(e.msg, "nope.json: cannot open"), "%s", e.msg);
    /* a buffer that is not NUL-terminated: parse must stay inside len */
    char buf[8] = {'{', '"', 'a', '"', ':', '1', '}', 'Z'};
    CHECK(dfa_json_parse(buf, 7, "mem", &root, &e) == DFA_OK);
    cJSON_Delete(root);
    CHECK(dfa_json_parse(buf, 6, "mem", &root, &e) == DFA_ERR_FORMAT);
}

int main(void) {
    if (tmpdir_make(&tmp, "test_json") != 0) return 1;
    RUN(test_roundtrip);
    RUN(test_getter_errors);
    RUN(test_broken);
    tmpdir_remove(&tmp);
    return test_summary();
}
