/* test_tokenizer.c - the C tokenizers against the tokenizers library, token by token, on the
 * strings of tests/fixtures/text/tok_cases.json (made by tests/fixtures/gen_text.py), with and
 * without truncation + padding; broken tokenizer.json files give clear errors. */
#include <cjson/cJSON.h>
#include <stdint.h>

#include "test.h"
#include "text/tokenizer.h"

#define FIX DFA_SOURCE_DIR "/tests/fixtures/text/"

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) b[n] = 0;
    if (len) *len = (size_t)n;
    return b;
}

static cJSON *cases_root;

/* ref: the reference ids; padded_to > 0: ref is followed by pad_id up to padded_to (mask 0). */
static int compare_ids(const char *name, const char *text, const dfa_tok_result *r, const cJSON *ref, int padded_to,
                       int pad_id) {
    int nreal = cJSON_GetArraySize(ref), bad = -1;
    int n = padded_to > 0 ? padded_to : nreal;
    if (r->n != n) bad = -2;
    for (int i = 0; i < n && bad == -1; i++) {
        int want = i < nreal ? cJSON_GetArrayItem(ref, i)->valueint : pad_id;
        if (r->ids[i] != want || r->mask[i] != (i < nreal)) bad = i;
    }
    if (bad != -1) {
        fprintf(stderr, "%s mismatch on \"%s\" (n %d vs %d, first diff %d)\n  got:", name, text, r->n, n, bad);
        for (int i = 0; i < r->n && i < 40; i++) fprintf(stderr, " %d", r->ids[i]);
        fprintf(stderr, "\n  ref:");
        for (int i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", cJSON_GetArrayItem(ref, i)->valueint);
        fprintf(stderr, "\n");
        return 0;
    }
    return 1;
}

static void check_tokenizer(const char *name, const char *dir) {
    dfa_error err = {0};
    dfa_tokenizer *tok = NULL;
    dfa_status st = dfa_tok_load(&tok, dir, &err);
    CHECKF(st == DFA_OK, "%s: %s", dir, err.msg);
    if (st) return;
    if (strcmp(name, "t5hf") == 0) CHECKF(dfa_tok_use_transformers_t5(tok, &err) == DFA_OK, "%s", err.msg);
    int ml = cJSON_GetObjectItem(cJSON_GetObjectItem(cases_root, "max_length"), name)->valueint;
    int pad_id = cJSON_GetObjectItem(cJSON_GetObjectItem(cases_root, "pad_id"), name)->valueint;
    char kp[32];
    snprintf(kp, sizeof kp, "%s_pad", name);
    const cJSON *c;
    int n_cases = 0, n_ok = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(cases_root, "cases")) {
        const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
        dfa_tok_result r;
        dfa_tok_opts o = {.add_special_tokens = 1, .max_length = 0, .truncation = 0, .pad = 0};
        st = dfa_tok_encode(tok, text, strlen(text), &o, &r, &err);
        CHECKF(st == DFA_OK, "%s", err.msg);
        int ok = st == DFA_OK && compare_ids(name, text, &r, cJSON_GetObjectItem(c, name), 0, 0);
        dfa_tok_result_free(&r);
        o = (dfa_tok_opts){.add_special_tokens = 1, .max_length = ml, .truncation = 1, .pad = 1};
        st = dfa_tok_encode(tok, text, strlen(text), &o, &r, &err);
        CHECKF(st == DFA_OK, "%s", err.msg);
        ok = ok && st == DFA_OK && compare_ids(kp, text, &r, cJSON_GetObjectItem(c, kp), ml, pad_id);
        dfa_tok_result_free(&r);
        n_cases++;
        n_ok += ok;
    }
    CHECKF(n_ok == n_cases, "%s: %d of %d strings match", name, n_ok, n_cases);
    CHECK(n_cases > 100);
    dfa_tok_free(tok);
}

static void test_clip_tokenizer(void) { check_tokenizer("clip", FIX "clip_tok"); }
static void test_t5_tokenizer(void) { check_tokenizer("t5", FIX "t5_tok"); }
static void test_t5_byte_fallback(void) { check_tokenizer("t5bf", FIX "t5bf_tok"); }
/* the same file as transformers 5's T5Tokenizer rebuilds it (what diffusers pipelines run) */
static void test_t5_transformers(void) { check_tokenizer("t5hf", FIX "t5_tok"); }

static void test_gpt2_bytelevel(void) { check_tokenizer("gpt2", FIX "gpt2_tok"); }

/* Older tokenizer.json spellings give the same ids: merges as "a b" strings (CLIP files made
 * before tokenizers 0.20), Metaspace with add_prefix_space instead of prepend_scheme. Edits are
 * textual where the file holds Unigram scores: a cJSON print would move their last bits. */
static char *merges_to_strings(const char *text, size_t len) {
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root) return NULL;
    cJSON *merges = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "model"), "merges"), *m;
    cJSON *strs = cJSON_CreateArray();
    cJSON_ArrayForEach(m, merges) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s %s", cJSON_GetArrayItem(m, 0)->valuestring, cJSON_GetArrayItem(m, 1)->valuestring);
        cJSON_AddItemToArray(strs, cJSON_CreateString(buf));
    }
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(root, "model"), "merges", strs);
    char *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return out;
}

static char *metaspace_legacy(const char *text, size_t len) {
    const char *from = "\"prepend_scheme\": \"always\",\n    \"split\": true", *to = "\"add_prefix_space\": true";
    const char *at = strstr(text, from);
    if (!at) return NULL;
    char *out = malloc(len + 1);
    size_t a = (size_t)(at - text);
    memcpy(out, text, a);
    strcpy(out + a, to);
    strcat(out + a, at + strlen(from));
    return out;
}

static void same_ids(const char *name, const char *dir, char *(*edit)(const char *, size_t)) {
    char path[512];
    size_t len;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    char *text = slurp(path, &len), *edited = text ? edit(text, len) : NULL;
    free(text);
    dfa_tokenizer *a = NULL, *b = NULL;
    dfa_error err = {0};
    CHECKF(edited != NULL, "%s: could not make the variant", name);
    if (edited) CHECKF(dfa_tok_load_json(&b, edited, strlen(edited), "variant.json", &err) == DFA_OK, "%s", err.msg);
    free(edited);
    CHECK(dfa_tok_load(&a, dir, &err) == DFA_OK);
    if (!a || !b) {
        dfa_tok_free(a), dfa_tok_free(b);
        return;
    }
    const cJSON *c;
    int n = 0, ok = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(cases_root, "cases")) {
        const char *t = cJSON_GetObjectItem(c, "text")->valuestring;
        dfa_tok_result ra, rb;
        dfa_tok_opts o = {.add_special_tokens = 1};
        if (dfa_tok_encode(a, t, strlen(t), &o, &ra, &err) || dfa_tok_encode(b, t, strlen(t), &o, &rb, &err)) {
            CHECK(0);
            break;
        }
        n++;
        int same = ra.n == rb.n && memcmp(ra.ids, rb.ids, (size_t)ra.n * sizeof(int32_t)) == 0;
        if (!same) fprintf(stderr, "%s: differs on \"%s\"\n", name, t);
        ok += same;
        dfa_tok_result_free(&ra), dfa_tok_result_free(&rb);
    }
    CHECKF(n > 100 && ok == n, "%s: %d of %d strings identical", name, ok, n);
    dfa_tok_free(a), dfa_tok_free(b);
}

static void test_format_variants(void) {
    same_ids("merges as strings", FIX "clip_tok", merges_to_strings);
    same_ids("Metaspace add_prefix_space", FIX "t5_tok", metaspace_legacy);
}

static void test_config_defaults(void) {
    dfa_error err = {0};
    dfa_tokenizer *tok = NULL;
    CHECK(dfa_tok_load(&tok, FIX "clip_tok", &err) == DFA_OK);
    if (!tok) return;
    CHECK(dfa_tok_model_max_length(tok) == 77);
    CHECK(dfa_tok_pad_id(tok) == dfa_tok_token_to_id(tok, "<|endoftext|>"));
    CHECK(dfa_tok_token_to_id(tok, "<|startoftext|>") >= 0);
    CHECK(dfa_tok_token_to_id(tok, "no-such-token-xyz") == -1);
    dfa_tok_result r;
    CHECK(dfa_tok_encode(tok, "a cat", 5, NULL, &r, &err) == DFA_OK); /* defaults: pad to 77 */
    CHECK(r.n == 77);
    CHECK(r.mask[0] == 1 && r.mask[76] == 0);
    dfa_tok_result_free(&r);
    dfa_tok_free(tok);
    CHECK(dfa_tok_load(&tok, FIX "t5_tok", &err) == DFA_OK);
    if (!tok) return;
    CHECK(dfa_tok_model_max_length(tok) == 512 && dfa_tok_pad_id(tok) == 0);
    dfa_tok_free(tok);
}

static void test_invalid_utf8(void) {
    dfa_error err = {0};
    dfa_tokenizer *tok = NULL;
    CHECK(dfa_tok_load(&tok, FIX "t5_tok", &err) == DFA_OK);
    if (!tok) return;
    const char *bad[] = {"abc\xff", "\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "ok\x80ok", "\xe2\x82"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dfa_tok_result r = {0};
        dfa_status st = dfa_tok_encode(tok, bad[i], strlen(bad[i]), NULL, &r, &err);
        CHECKF(st == DFA_ERR_INVALID_ARG, "case %zu: status %d", i, st);
        CHECKF(strstr(err.msg, "invalid UTF-8 at byte") != NULL, "%s", err.msg);
        CHECK(r.ids == NULL);
    }
    dfa_tok_free(tok);
}

/* Edit the CLIP tokenizer.json and expect a load error whose message holds `expect`. */
static void expect_broken(const char *json, dfa_status code, const char *expect) {
    dfa_error err = {0};
    dfa_tokenizer *tok = NULL;
    dfa_status st = dfa_tok_load_json(&tok, json, strlen(json), "broken.json", &err);
    CHECKF(st == code, "expected status %d, got %d (%s) for %.80s", code, st, err.msg, json);
    CHECKF(strstr(err.msg, expect) != NULL, "message '%s' lacks '%s'", err.msg, expect);
    CHECKF(strstr(err.msg, "broken.json") != NULL, "message '%s' does not name the file", err.msg);
    CHECK(tok == NULL);
    dfa_tok_free(tok);
}

static void test_broken_files(void) {
    expect_broken("{\"model\": ", DFA_ERR_FORMAT, "not valid JSON");
    expect_broken("[]", DFA_ERR_FORMAT, "top level");
    expect_broken("{}", DFA_ERR_FORMAT, "missing 'model'");
    expect_broken("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", DFA_ERR_UNSUPPORTED, "WordPiece");
    expect_broken("{\"model\": {\"type\": \"BPE\", \"vocab\": []}}", DFA_ERR_FORMAT, "vocab must be an object");
    expect_broken("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -3}}}", DFA_ERR_FORMAT, "'a'");
    expect_broken("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a c\"]}}",
                  DFA_ERR_FORMAT, "merge 0");
    expect_broken("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]}}",
                  DFA_ERR_FORMAT, "gives 'ab'");
    expect_broken("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"ab\"]}}", DFA_ERR_FORMAT,
                  "two tokens");
    expect_broken("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"unk_token\": \"<unk>\"}}", DFA_ERR_FORMAT,
                  "unk_token '<unk>'");
    expect_broken("{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", \"x\"]]}}", DFA_ERR_FORMAT, "entry 0");
    expect_broken("{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", -1.0]], \"unk_id\": 5}}", DFA_ERR_FORMAT,
                  "unk_id 5");
    expect_broken("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", DFA_ERR_FORMAT, "empty");
    expect_broken("{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", -1.0]]}, \"normalizer\": {\"type\": \"NFKD\"}}",
                  DFA_ERR_UNSUPPORTED, "NFKD");
    expect_broken("{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", -1.0]]}, \"normalizer\": {\"type\": "
                  "\"Replace\", \"pattern\": {\"Regex\": \"(a|b)+c\"}, \"content\": \"\"}}",
                  DFA_ERR_UNSUPPORTED, "(a|b)+c");
    expect_broken("{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", -1.0]]}, \"normalizer\": {\"type\": "
                  "\"Precompiled\", \"precompiled_charsmap\": \"!!!!\"}}",
                  DFA_ERR_FORMAT, "base64");
    expect_broken("{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", -1.0]]}, \"normalizer\": {\"type\": "
                  "\"Precompiled\", \"precompiled_charsmap\": \"/////wAA\"}}",
                  DFA_ERR_FORMAT, "trie size");
    expect_broken("{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", -1.0]]}, \"pre_tokenizer\": {\"type\": "
                  "\"Split\", \"pattern\": {\"String\": \"x\"}, \"behavior\": \"Sideways\"}}",
                  DFA_ERR_FORMAT, "behavior");
    expect_broken("{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", -1.0]]}, \"pre_tokenizer\": {\"type\": "
                  "\"BertPreTokenizer\"}}",
                  DFA_ERR_UNSUPPORTED, "BertPreTokenizer");
    expect_broken("{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", -1.0]]}, \"post_processor\": {\"type\": "
                  "\"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"</s>\"}}], \"special_tokens\": {}}}",
                  DFA_ERR_FORMAT, "'</s>'");
    expect_broken("{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", -1.0]]}, \"post_processor\": {\"type\": "
                  "\"RobertaProcessing\", \"cls\": [\"<s>\", 7], \"sep\": [\"</s>\", 1]}}",
                  DFA_ERR_FORMAT, "outside the vocabulary");
    expect_broken("{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", -1.0]]}, \"added_tokens\": [{\"id\": 1}]}",
                  DFA_ERR_FORMAT, "added_tokens[0]");
    /* a missing file names the path */
    dfa_error err = {0};
    dfa_tokenizer *tok = NULL;
    CHECK(dfa_tok_load(&tok, FIX "no_such_dir", &err) == DFA_ERR_IO);
    CHECK(strstr(err.msg, "no_such_dir") != NULL);
}

static void test_no_pad_token(void) {
    const char *j = "{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"<unk>\", 0], [\"a\", -1.0]], \"unk_id\": 0}}";
    dfa_error err = {0};
    dfa_tokenizer *tok = NULL;
    CHECK(dfa_tok_load_json(&tok, j, strlen(j), "mini.json", &err) == DFA_OK);
    if (!tok) return;
    dfa_tok_result r;
    dfa_tok_opts o = {.add_special_tokens = 1, .max_length = 8, .truncation = 1, .pad = 1};
    CHECK(dfa_tok_encode(tok, "aaa", 3, &o, &r, &err) == DFA_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, "pad token") != NULL);
    o.pad = 0;
    CHECK(dfa_tok_encode(tok, "aab", 3, &o, &r, &err) == DFA_OK);
    CHECK(r.n == 3 && r.ids[0] == 1 && r.ids[1] == 1 && r.ids[2] == 0); /* no Metaspace: "a","a", unk */
    dfa_tok_result_free(&r);
    dfa_tok_free(tok);
}

/* Optional, outside CI: DFA_TOK_EXTRA=DIR holding tokenizer.json + cases.json ([{"text", "ids"}],
 * ids with the special tokens, no padding), e.g. from tools/gen_tok_check.py (a T5-style
 * tokenizer with SentencePiece's full nmt_nfkc charsmap, 240 KB: too big for the fixtures). */
static void test_extra(void) {
    const char *dir = getenv("DFA_TOK_EXTRA");
    if (!dir) return;
    char path[1024];
    snprintf(path, sizeof path, "%s/cases.json", dir);
    size_t len;
    char *text = slurp(path, &len);
    CHECKF(text != NULL, "cannot read %s", path);
    if (!text) return;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    dfa_error err = {0};
    dfa_tokenizer *tok = NULL;
    CHECKF(dfa_tok_load(&tok, dir, &err) == DFA_OK, "%s", err.msg);
    for (int pass = 0; pass < 2 && tok; pass++) { /* the file's pipeline, then transformers' ("ids_hf") */
        const char *key = pass ? "ids_hf" : "ids";
        if (pass && (!cJSON_GetObjectItem(cJSON_GetArrayItem(root, 0), key) ||
                     dfa_tok_use_transformers_t5(tok, &err) != DFA_OK))
            break;
        int n = 0, ok = 0;
        const cJSON *c;
        cJSON_ArrayForEach(c, root) {
            const char *s = cJSON_GetObjectItem(c, "text")->valuestring;
            dfa_tok_result r;
            dfa_tok_opts o = {.add_special_tokens = 1};
            n++;
            if (dfa_tok_encode(tok, s, strlen(s), &o, &r, &err) == DFA_OK) {
                ok += compare_ids(key, s, &r, cJSON_GetObjectItem(c, key), 0, 0);
                dfa_tok_result_free(&r);
            }
        }
        printf("extra (%s): %d of %d strings match\n", key, ok, n);
        CHECK(n > 0 && ok == n);
    }
    dfa_tok_free(tok);
    cJSON_Delete(root);
}

int main(void) {
    size_t len;
    char *text = slurp(FIX "tok_cases.json", &len);
    CHECKF(text != NULL, "cannot read %s", FIX "tok_cases.json");
    if (!text) return test_summary();
    cases_root = cJSON_ParseWithLength(text, len);
    free(text);
    CHECK(cases_root != NULL);
    if (!cases_root) return test_summary();
    RUN(test_clip_tokenizer);
    RUN(test_t5_tokenizer);
    RUN(test_t5_byte_fallback);
    RUN(test_t5_transformers);
    RUN(test_gpt2_bytelevel);
    RUN(test_format_variants);
    RUN(test_config_defaults);
    RUN(test_invalid_utf8);
    RUN(test_broken_files);
    RUN(test_no_pad_token);
    RUN(test_extra);
    cJSON_Delete(cases_root);
    return test_summary();
}
