/* test_inspect.c - `dfa inspect`: exit codes on a good file, a sharded folder, broken files
 * and bad usage (the command function is called directly). */
#include "test.h"

#include "tmpdir.h"

#include "cli/commands.h"
#include "io/safetensors.h"

static test_tmpdir tmp;

static int run_inspect(int argc, const char *const *args) {
    char *argv[8];
    for (int i = 0; i < argc && i < 8; i++) argv[i] = (char *)args[i];
    fflush(stdout);
    int rc = cmd_inspect(argc, argv);
    fflush(stdout);
    return rc;
}
#define INSPECT(...) \
    run_inspect((int)(sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *)), (const char *const[]){__VA_ARGS__})

static void test_good(void) {
    const char *ref = DFA_SOURCE_DIR "/tests/fixtures/reference.safetensors";
    CHECK(INSPECT("inspect", ref) == 0);
    CHECK(INSPECT("inspect", "--filter", "weight", ref) == 0);
    CHECK(INSPECT("inspect", "-s", ref) == 0);
    CHECK(INSPECT("inspect", "--help") == 0);

    /* a sharded checkpoint, opened through its folder */
    char dir[160], p[300];
    tmpdir_file(&tmp, "unet", dir, sizeof dir);
    CHECK(mkdir(dir, 0700) == 0);
    float a[4] = {1, 2, 3, 4};
    const int64_t s4[1] = {4};
    dfa_st_item i1 = {"a", DFA_F32, 1, s4, a}, i2 = {"b", DFA_F32, 1, s4, a};
    dfa_error err;
    snprintf(p, sizeof p, "%s/s1.safetensors", dir);
    CHECK(dfa_st_write(p, &i1, 1, NULL, NULL, 0, &err) == DFA_OK);
    snprintf(p, sizeof p, "%s/s2.safetensors", dir);
    CHECK(dfa_st_write(p, &i2, 1, NULL, NULL, 0, &err) == DFA_OK);
    const char *index = "{\"weight_map\": {\"a\": \"s1.safetensors\", \"b\": \"s2.safetensors\"}}";
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    FILE *f = fopen(p, "wb");
    if (f) {
        fputs(index, f);
        fclose(f);
    }
    CHECK(INSPECT("inspect", dir) == 0);
}

static void test_broken_and_usage(void) {
    char p[300];
    /* shape / bytes mismatch */
    const char *hdr = "{\"x\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}";
    uint8_t b[8 + 128] = {0};
    size_t hl = strlen(hdr);
    b[0] = (uint8_t)hl;
    memcpy(b + 8, hdr, hl);
    CHECK(INSPECT("inspect", tmpdir_write(&tmp, "bad.safetensors", b, 8 + hl + 20, p, sizeof p)) == 1);
    /* truncated inside the header */
    CHECK(INSPECT("inspect", tmpdir_write(&tmp, "cut.safetensors", b, 8 + hl / 2, p, sizeof p)) == 1);
    /* not a safetensors file at all, and a missing one */
    CHECK(INSPECT("inspect", DFA_SOURCE_DIR "/tests/test.h") == 1);
    CHECK(INSPECT("inspect", tmpdir_file(&tmp, "absent.safetensors", p, sizeof p)) == 1);
    /* usage errors */
    CHECK(INSPECT("inspect") == 2);
    CHECK(INSPECT("inspect", "--bogus", "x.safetensors") == 2);
    CHECK(INSPECT("inspect", "--filter") == 2);
    CHECK(INSPECT("inspect", "a.safetensors", "b.safetensors") == 2);
}

int main(void) {
    if (tmpdir_make(&tmp, "test_inspect") != 0) return 1;
    RUN(test_good);
    RUN(test_broken_and_usage);
    tmpdir_remove(&tmp);
    return test_summary();
}
