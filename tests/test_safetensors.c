/* test_safetensors.c - the safetensors reader and writer: round trips through our writer, a
 * reference file written by the Python `safetensors` library, multi-file checkpoints, dtype
 * conversion on load, and every way a file can be broken (built here from byte buffers),
 * each with a clear message and no crash. */
#include "test.h"

#include <stdint.h>
#include <time.h>

#include "tmpdir.h"

#include "io/safetensors.h"

static test_tmpdir tmp;
static unsigned long long rng;

/* ---------------------------------------------------------------- helpers */

/* Write "<tmp>/<name>" = 8-byte LE `hl` + json + data. */
static const char *st_file_hl(const char *name, uint64_t hl, const char *json, const void *data, size_t dlen,
                              char *path, size_t n) {
    size_t jl = strlen(json);
    uint8_t *b = malloc(8 + jl + dlen + 1);
    if (!b) return NULL;
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(hl >> (8 * i));
    memcpy(b + 8, json, jl);
    if (dlen) memcpy(b + 8 + jl, data, dlen);
    const char *p = tmpdir_write(&tmp, name, b, 8 + jl + dlen, path, n);
    free(b);
    return p;
}

static const char *st_file(const char *name, const char *json, const void *data, size_t dlen, char *path, size_t n) {
    return st_file_hl(name, strlen(json), json, data, dlen, path, n);
}

/* Open must fail with `code` and a message holding every word in words (NULL-terminated). */
static void expect_open_fail_(int line, const char *path, dfa_status code, const char *const *words) {
    dfa_safetensors *st = (dfa_safetensors *)&st;
    dfa_error e;
    dfa_error_clear(&e);
    dfa_status s = dfa_st_open(&st, path, &e);
    CHECKF(s == code, "line %d: got '%s', expected '%s': %s", line, dfa_status_str(s), dfa_status_str(code), e.msg);
    CHECKF(st == NULL, "line %d: *out not NULL on failure", line);
    for (int i = 0; words[i]; i++)
        CHECKF(strstr(e.msg, words[i]) != NULL, "line %d: message lacks \"%s\": %s", line, words[i], e.msg);
    if (s == DFA_OK && st) dfa_st_close(st);
}
#define EXPECT_OPEN_FAIL(path, code, ...) \
    expect_open_fail_(__LINE__, (path), (code), (const char *const[]){__VA_ARGS__, NULL})

static float rnd(void) { return test_rng_uniform(&rng) * 4.0f; }

/* ---------------------------------------------------------------- valid files */

static void test_writer_roundtrip(void) {
    enum { NA = 15, NB = 7, NC = 12, ND = 4, NE = 5 };
    float a[NA];
    uint16_t b[NB], c[NC];
    int64_t d[ND];
    uint8_t e8[NE];
    double sc = rnd();
    for (int i = 0; i < NA; i++) a[i] = rnd();
    for (int i = 0; i < NB; i++) b[i] = dfa_f32_to_bf16(rnd());
    for (int i = 0; i < NC; i++) c[i] = dfa_f32_to_f16(rnd());
    for (int i = 0; i < ND; i++) d[i] = (int64_t)(test_rng_next(&rng) % 2001) - 1000;
    for (int i = 0; i < NE; i++) e8[i] = (uint8_t)test_rng_next(&rng);
    const int64_t sa[2] = {3, 5}, sb[1] = {NB}, scs[3] = {2, 3, 2}, sd[1] = {ND}, se[1] = {NE}, sz[2] = {0, 3};
    /* odd sizes first: the writer must still place every tensor aligned */
    const dfa_st_item items[] = {
        {"e.u8", DFA_U8, 1, se, e8},          {"b.bf16", DFA_BF16, 1, sb, b}, {"a.f32", DFA_F32, 2, sa, a},
        {"c.f16", DFA_F16, 3, scs, c},        {"d.i64", DFA_I64, 1, sd, d},   {"s.scalar", DFA_F64, 0, NULL, &sc},
        {"z.empty", DFA_F32, 2, sz, NULL},
    };
    const int n = (int)(sizeof items / sizeof items[0]);
    const char *mk[] = {"format", "note"}, *mv[] = {"pt", "quote \" backslash \\ tab \t done"};
    char path[300];
    tmpdir_file(&tmp, "rt.safetensors", path, sizeof path);
    dfa_error err;
    dfa_error_clear(&err);
    CHECKF(dfa_st_write(path, items, n, mk, mv, 2, &err) == DFA_OK, "%s", err.msg);

    dfa_safetensors *st = NULL;
    CHECKF(dfa_st_open(&st, path, &err) == DFA_OK, "%s", err.msg);
    if (!st) return;
    CHECK(dfa_st_count(st) == n);
    CHECK(dfa_st_file_count(st) == 1 && strcmp(dfa_st_file_path(st, 0), path) == 0);
    for (int i = 0; i < n && i < dfa_st_count(st); i++) {
        const dfa_st_tensor *t = dfa_st_at(st, i);
        CHECKF(strcmp(t->name, items[i].name) == 0, "header order: %s vs %s", t->name, items[i].name);
        CHECK(t->dtype == items[i].dtype && t->ndim == items[i].ndim);
        for (int k = 0; k < t->ndim; k++) CHECK(t->shape[k] == items[i].shape[k]);
        CHECK(dfa_st_find(st, items[i].name) == t);
        size_t es = dfa_dtype_size(t->dtype);
        const void *p = dfa_st_data(st, t);
        CHECKF((uintptr_t)p % es == 0, "%s not aligned to %zu", t->name, es);
        int64_t numel = 1;
        for (int k = 0; k < t->ndim; k++) numel *= t->shape[k];
        CHECK(t->end - t->begin == (uint64_t)numel * es);
        if (numel) CHECK(memcmp(p, items[i].data, (size_t)numel * es) == 0);
    }
    CHECK(dfa_st_find(st, "nope") == NULL);
    CHECK(dfa_st_meta_count(st) == 2);
    for (int i = 0; i < dfa_st_meta_count(st); i++) {
        const char *k, *v;
        dfa_st_meta_at(st, i, &k, &v);
        CHECKF(strcmp(k, mk[i]) == 0 && strcmp(v, mv[i]) == 0, "meta %d: %s=%s", i, k, v);
    }

    /* loads with conversion, each against a scalar reference */
    float f[NC];
    for (int i = 0; i < NC; i++) f[i] = NAN;
    CHECKF(dfa_st_load(st, "b.bf16", DFA_F32, 1, sb, f, DFA_DEV_CPU, NULL, &err) == DFA_OK, "%s", err.msg);
    for (int i = 0; i < NB; i++) CHECK(f[i] == dfa_bf16_to_f32(b[i]));
    for (int i = 0; i < NC; i++) f[i] = NAN;
    CHECKF(dfa_st_load(st, "c.f16", DFA_F32, 3, scs, f, DFA_DEV_CPU, NULL, &err) == DFA_OK, "%s", err.msg);
    for (int i = 0; i < NC; i++) CHECK(f[i] == dfa_f16_to_f32(c[i]));
    uint16_t h[NA];
    memset(h, 0xff, sizeof h);
    CHECKF(dfa_st_load(st, "a.f32", DFA_BF16, -1, NULL, h, DFA_DEV_CPU, NULL, &err) == DFA_OK, "%s", err.msg);
    for (int i = 0; i < NA; i++) CHECK(h[i] == dfa_f32_to_bf16(a[i]));
    memset(h, 0xff, sizeof h);
    CHECKF(dfa_st_load(st, "a.f32", DFA_F16, 2, sa, h, DFA_DEV_CPU, NULL, &err) == DFA_OK, "%s", err.msg);
    for (int i = 0; i < NA; i++) CHECK(h[i] == dfa_f32_to_f16(a[i]));
    float fa[NA];
    memset(fa, 0xff, sizeof fa);
    CHECKF(dfa_st_load(st, "a.f32", DFA_F32, 2, sa, fa, DFA_DEV_CPU, NULL, &err) == DFA_OK, "%s", err.msg);
    CHECK(memcmp(fa, a, sizeof a) == 0);
    double dd[ND];
    CHECKF(dfa_st_load(st, "d.i64", DFA_F64, 1, sd, dd, DFA_DEV_CPU, NULL, &err) == DFA_OK, "%s", err.msg);
    for (int i = 0; i < ND; i++) CHECK(dd[i] == (double)d[i]);
    float fs = NAN;
    CHECKF(dfa_st_load(st, "s.scalar", DFA_F32, 0, NULL, &fs, DFA_DEV_CPU, NULL, &err) == DFA_OK, "%s", err.msg);
    CHECK(fs == (float)sc);
    CHECKF(dfa_st_load(st, "z.empty", DFA_F32, 2, sz, NULL, DFA_DEV_CPU, NULL, &err) == DFA_OK, "%s", err.msg);
    dfa_st_close(st);
}

/* A file written by the Python safetensors library (tests/fixtures/make_reference_st.py). */
static void test_reference_file(void) {
    dfa_safetensors *st = NULL;
    dfa_error err;
    const char *path = DFA_SOURCE_DIR "/tests/fixtures/reference.safetensors";
    CHECKF(dfa_st_open(&st, path, &err) == DFA_OK, "%s", err.msg);
    if (!st) return;
    CHECK(dfa_st_count(st) == 5);
    float f[6];
    const int64_t sa[2] = {2, 3}, sc[2] = {3, 1};
    CHECKF(dfa_st_load(st, "a.weight", DFA_F32, 2, sa, f, DFA_DEV_CPU, NULL, &err) == DFA_OK, "%s", err.msg);
    for (int i = 0; i < 6; i++) CHECK(f[i] == i * 0.5f - 1);
    CHECKF(dfa_st_load(st, "b.bias", DFA_F32, 1, (const int64_t[]){4}, f, DFA_DEV_CPU, NULL, &err) == DFA_OK, "%s",
           err.msg);
    for (int i = 0; i < 4; i++) CHECK(f[i] == i - 1.5f);
    CHECK(dfa_st_find(st, "b.bias")->dtype == DFA_BF16);
    CHECKF(dfa_st_load(st, "c.half", DFA_F32, 2, sc, f, DFA_DEV_CPU, NULL, &err) == DFA_OK, "%s", err.msg);
    for (int i = 0; i < 3; i++) CHECK(f[i] == i * 0.25f);
    CHECK(dfa_st_find(st, "c.half")->dtype == DFA_F16);
    double d[2];
    CHECKF(dfa_st_load(st, "d.index", DFA_F64, 1, (const int64_t[]){2}, d, DFA_DEV_CPU, NULL, &err) == DFA_OK, "%s",
           err.msg);
    CHECK(d[0] == 7 && d[1] == -3);
    CHECKF(dfa_st_load(st, "e.scalar", DFA_F32, 0, NULL, f, DFA_DEV_CPU, NULL, &err) == DFA_OK, "%s", err.msg);
    CHECK(f[0] == 42.0f && dfa_st_find(st, "e.scalar")->ndim == 0);
    int found = 0;
    for (int i = 0; i < dfa_st_meta_count(st); i++) {
        const char *k, *v;
        dfa_st_meta_at(st, i, &k, &v);
        found += strcmp(k, "format") == 0 && strcmp(v, "pt") == 0;
    }
    CHECK(found == 1 && dfa_st_meta_count(st) == 2);
    dfa_st_close(st);
}

/* A tensor that is not aligned to its element size (legal in the format): loads go through
 * the staging copy. */
static void test_misaligned_load(void) {
    float v[3] = {rnd(), rnd(), rnd()};
    uint8_t data[3 + sizeof v];
    data[0] = 1, data[1] = 2, data[2] = 3;
    memcpy(data + 3, v, sizeof v);
    char path[300];
    /* a 112-byte header keeps the data section 8-aligned, so F32 at offset 3 is misaligned */
    char json[113];
    snprintf(json, sizeof json, "%-112s",
             "{\"u\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]},"
             "\"f\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[3,15]}}");
    st_file("mis.safetensors", json, data, sizeof data, path, sizeof path);
    dfa_safetensors *st = NULL;
    dfa_error err;
    CHECKF(dfa_st_open(&st, path, &err) == DFA_OK, "%s", err.msg);
    if (!st) return;
    double d[3] = {0, 0, 0};
    float f[3] = {0, 0, 0};
    CHECKF(dfa_st_load(st, "f", DFA_F64, 1, (const int64_t[]){3}, d, DFA_DEV_CPU, NULL, &err) == DFA_OK, "%s",
           err.msg);
    CHECKF(dfa_st_load(st, "f", DFA_F32, -1, NULL, f, DFA_DEV_CPU, NULL, &err) == DFA_OK, "%s", err.msg);
    for (int i = 0; i < 3; i++) CHECK(d[i] == (double)v[i] && f[i] == v[i]);
    CHECKF(dfa_st_load(st, "u", DFA_F32, -1, NULL, f, DFA_DEV_CPU, NULL, &err) == DFA_OK, "%s", err.msg);
    CHECK(f[0] == 1 && f[1] == 2 && f[2] == 3);
    dfa_st_close(st);
}

static void test_load_errors(void) {
    float a[6] = {1, 2, 3, 4, 5, 6};
    const int64_t s23[2] = {2, 3}, s32[2] = {3, 2}, s6[1] = {6};
    dfa_st_item it = {"x.weight", DFA_F32, 2, s23, a};
    char path[300];
    tmpdir_file(&tmp, "load.safetensors", path, sizeof path);
    dfa_error err;
    CHECK(dfa_st_write(path, &it, 1, NULL, NULL, 0, &err) == DFA_OK);
    dfa_safetensors *st = NULL;
    CHECKF(dfa_st_open(&st, path, &err) == DFA_OK, "%s", err.msg);
    if (!st) return;
    float out[6];
    CHECK(dfa_st_load(st, "x.bias", DFA_F32, -1, NULL, out, DFA_DEV_CPU, NULL, &err) == DFA_ERR_NOT_FOUND);
    CHECKF(strstr(err.msg, "tensor 'x.bias' not found in") && strstr(err.msg, "load.safetensors"), "%s", err.msg);
    CHECK(dfa_st_load(st, "x.weight", DFA_F32, 2, s32, out, DFA_DEV_CPU, NULL, &err) == DFA_ERR_SHAPE);
    CHECKF(strstr(err.msg, "tensor 'x.weight' in") && strstr(err.msg, "load.safetensors: expected [3, 2], got [2, 3]"),
           "%s", err.msg);
    CHECK(dfa_st_load(st, "x.weight", DFA_F32, 1, s6, out, DFA_DEV_CPU, NULL, &err) == DFA_ERR_SHAPE);
    CHECKF(strstr(err.msg, "expected [6], got [2, 3]"), "%s", err.msg);
    CHECK(dfa_st_load(st, "x.weight", DFA_I32, -1, NULL, out, DFA_DEV_CPU, NULL, &err) == DFA_ERR_UNSUPPORTED);
    CHECKF(strstr(err.msg, "cannot convert F32 to I32"), "%s", err.msg);
    CHECK(dfa_st_load(st, "x.weight", DFA_F32, -1, NULL, out, DFA_DEV_CUDA, NULL, &err) == DFA_ERR_INVALID_ARG);
    CHECKF(strstr(err.msg, "CUDA handle"), "%s", err.msg);
    if (!dfa_has_cuda()) {
        /* without CUDA compiled in, a device load is refused cleanly (the handle is never used) */
        struct dfa_cuda *fake = (struct dfa_cuda *)&fake;
        CHECK(dfa_st_load(st, "x.weight", DFA_F32, -1, NULL, out, DFA_DEV_CUDA, fake, &err) == DFA_ERR_UNSUPPORTED);
        CHECKF(strstr(err.msg, "x.weight") && strstr(err.msg, "no CUDA"), "%s", err.msg);
        CHECK(dfa_st_load(st, "x.weight", DFA_BF16, -1, NULL, out, DFA_DEV_CUDA, fake, &err) == DFA_ERR_UNSUPPORTED);
        CHECKF(strstr(err.msg, "x.weight") && strstr(err.msg, "no CUDA"), "%s", err.msg);
    }
    dfa_st_close(st);

    /* the writer refuses what the reader would reject */
    dfa_st_item two[2] = {it, it};
    CHECK(dfa_st_write(path, two, 2, NULL, NULL, 0, &err) == DFA_ERR_INVALID_ARG);
    CHECKF(strstr(err.msg, "'x.weight' given twice"), "%s", err.msg);
    const int64_t neg[1] = {-2};
    dfa_st_item bad = {"neg", DFA_F32, 1, neg, a};
    CHECK(dfa_st_write(path, &bad, 1, NULL, NULL, 0, &err) == DFA_ERR_INVALID_ARG);
    CHECK(dfa_st_write("/nonexistent-dir/x.safetensors", &it, 1, NULL, NULL, 0, &err) == DFA_ERR_IO);
    CHECKF(strstr(err.msg, "/nonexistent-dir/x.safetensors"), "%s", err.msg);
}

/* ---------------------------------------------------------------- multi-file */

static void write_shards(const char *dir, float *a, float *b) {
    const int64_t sa[1] = {4}, sb[2] = {2, 2};
    dfa_st_item s1[2] = {{"blocks.0.w", DFA_F32, 1, sa, a}, {"blocks.0.b", DFA_F32, 1, sa, a}};
    dfa_st_item s2[1] = {{"blocks.1.w", DFA_F32, 2, sb, b}};
    char p[300];
    dfa_error err;
    snprintf(p, sizeof p, "%s/part-1.safetensors", dir);
    CHECKF(dfa_st_write(p, s1, 2, NULL, NULL, 0, &err) == DFA_OK, "%s", err.msg);
    snprintf(p, sizeof p, "%s/part-2.safetensors", dir);
    CHECKF(dfa_st_write(p, s2, 1, NULL, NULL, 0, &err) == DFA_OK, "%s", err.msg);
}

static void write_index(const char *dir, const char *name, const char *weight_map) {
    char p[300], text[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    snprintf(text, sizeof text, "{\"metadata\": {\"total_size\": 48}, \"weight_map\": %s}", weight_map);
    FILE *f = fopen(p, "wb");
    CHECK(f != NULL);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static void test_multifile(void) {
    char dir[160], idx[300];
    tmpdir_file(&tmp, "ckpt", dir, sizeof dir);
    CHECK(mkdir(dir, 0700) == 0);
    float a[4], b[4];
    for (int i = 0; i < 4; i++) a[i] = rnd(), b[i] = rnd();
    write_shards(dir, a, b);
    const char *good = "{\"blocks.0.w\": \"part-1.safetensors\", \"blocks.0.b\": \"part-1.safetensors\","
                       " \"blocks.1.w\": \"part-2.safetensors\"}";
    write_index(dir, "diffusion_pytorch_model.safetensors.index.json", good);
    snprintf(idx, sizeof idx, "%s/diffusion_pytorch_model.safetensors.index.json", dir);
    for (int pass = 0; pass < 2; pass++) { /* through the index, then through the folder */
        dfa_safetensors *st = NULL;
        dfa_error err;
        CHECKF(dfa_st_open(&st, pass ? dir : idx, &err) == DFA_OK, "%s", err.msg);
        if (!st) continue;
        CHECK(dfa_st_count(st) == 3 && dfa_st_file_count(st) == 2);
        CHECK(strcmp(dfa_st_path(st), idx) == 0);
        const dfa_st_tensor *t = dfa_st_find(st, "blocks.1.w");
        CHECK(t && strstr(dfa_st_file_path(st, t->file), "part-2.safetensors"));
        float f[4];
        CHECKF(dfa_st_load(st, "blocks.1.w", DFA_F32, 2, (const int64_t[]){2, 2}, f, DFA_DEV_CPU, NULL, &err) == DFA_OK,
               "%s", err.msg);
        CHECK(memcmp(f, b, sizeof f) == 0);
        CHECKF(dfa_st_load(st, "blocks.0.b", DFA_F32, 1, (const int64_t[]){4}, f, DFA_DEV_CPU, NULL, &err) == DFA_OK,
               "%s", err.msg);
        CHECK(memcmp(f, a, sizeof f) == 0);
        CHECK(dfa_st_load(st, "blocks.2.w", DFA_F32, -1, NULL, f, DFA_DEV_CPU, NULL, &err) == DFA_ERR_NOT_FOUND);
        CHECKF(strstr(err.msg, "'blocks.2.w' not found") && strstr(err.msg, "2 shards"), "%s", err.msg);
        dfa_st_close(st);
    }

    /* a single file in the folder too: ambiguous */
    char one[300];
    snprintf(one, sizeof one, "%s/diffusion_pytorch_model.safetensors", dir);
    dfa_st_item it = {"x", DFA_F32, 1, (const int64_t[]){4}, a};
    dfa_error err;
    CHECK(dfa_st_write(one, &it, 1, NULL, NULL, 0, &err) == DFA_OK);
    EXPECT_OPEN_FAIL(dir, DFA_ERR_FORMAT, "holds both", "diffusion_pytorch_model.safetensors");
    remove(one);

    /* index naming a shard that is missing */
    write_index(dir, "bad.safetensors.index.json", "{\"blocks.0.w\": \"part-1.safetensors\", \"q\": \"part-9.safetensors\"}");
    snprintf(idx, sizeof idx, "%s/bad.safetensors.index.json", dir);
    EXPECT_OPEN_FAIL(idx, DFA_ERR_NOT_FOUND, "part-9.safetensors", "cannot open");
    /* index naming a tensor its shard does not hold */
    write_index(dir, "bad.safetensors.index.json", "{\"blocks.0.w\": \"part-1.safetensors\", \"ghost\": \"part-2.safetensors\"}");
    EXPECT_OPEN_FAIL(idx, DFA_ERR_NOT_FOUND, "bad.safetensors.index.json", "tensor 'ghost'", "part-2.safetensors",
                     "does not hold it");
    /* index mapping a tensor to the wrong shard */
    write_index(dir, "bad.safetensors.index.json", "{\"blocks.0.w\": \"part-2.safetensors\", \"blocks.1.w\": \"part-1.safetensors\"}");
    EXPECT_OPEN_FAIL(idx, DFA_ERR_FORMAT, "tensor 'blocks.0.w' is mapped to part-2.safetensors but is in");
    /* no weight_map, bad values, shard outside the folder, broken JSON */
    write_index(dir, "bad.safetensors.index.json", "{}");
    EXPECT_OPEN_FAIL(idx, DFA_ERR_FORMAT, "weight_map");
    write_index(dir, "bad.safetensors.index.json", "{\"blocks.0.w\": 3}");
    EXPECT_OPEN_FAIL(idx, DFA_ERR_FORMAT, "weight_map['blocks.0.w']");
    write_index(dir, "bad.safetensors.index.json", "{\"blocks.0.w\": \"../part-1.safetensors\"}");
    EXPECT_OPEN_FAIL(idx, DFA_ERR_FORMAT, "inside the index's folder");
    write_index(dir, "bad.safetensors.index.json", "{\"blocks.0.w\": ");
    EXPECT_OPEN_FAIL(idx, DFA_ERR_FORMAT, "bad.safetensors.index.json", "invalid JSON");
    /* a tensor in two shards */
    char p3[300];
    snprintf(p3, sizeof p3, "%s/part-3.safetensors", dir);
    CHECK(dfa_st_write(p3, &(dfa_st_item){"blocks.1.w", DFA_F32, 1, (const int64_t[]){4}, a}, 1, NULL, NULL, 0, &err) ==
          DFA_OK);
    write_index(dir, "bad.safetensors.index.json", "{\"blocks.0.w\": \"part-1.safetensors\", \"blocks.1.w\": \"part-2.safetensors\", \"x\": \"part-3.safetensors\"}");
    EXPECT_OPEN_FAIL(idx, DFA_ERR_FORMAT, "tensor 'blocks.1.w' is in both");
    /* a folder without any known layout */
    char empty[160];
    tmpdir_file(&tmp, "emptydir", empty, sizeof empty);
    CHECK(mkdir(empty, 0700) == 0);
    EXPECT_OPEN_FAIL(empty, DFA_ERR_NOT_FOUND, "emptydir", "no diffusion_pytorch_model.safetensors");
}

/* ---------------------------------------------------------------- broken files */

static void test_broken_files(void) {
    char p[300];
    float data[6] = {0};
    const char *ok_hdr = "{\"x.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}";

    EXPECT_OPEN_FAIL(tmpdir_write(&tmp, "empty.safetensors", "", 0, p, sizeof p), DFA_ERR_FORMAT, "empty.safetensors",
                     "too short");
    EXPECT_OPEN_FAIL(tmpdir_write(&tmp, "five.safetensors", "abcde", 5, p, sizeof p), DFA_ERR_FORMAT, "five.safetensors",
                     "5 bytes, too short");
    tmpdir_file(&tmp, "absent.safetensors", p, sizeof p);
    EXPECT_OPEN_FAIL(p, DFA_ERR_NOT_FOUND, "absent.safetensors");
    /* header length beyond the file */
    EXPECT_OPEN_FAIL(st_file_hl("long.safetensors", 1000, ok_hdr, data, 24, p, sizeof p), DFA_ERR_FORMAT,
                     "long.safetensors", "header length 1000 runs past the end of the file");
    EXPECT_OPEN_FAIL(st_file_hl("huge.safetensors", 0x7fffffffffffffffULL, ok_hdr, data, 24, p, sizeof p),
                     DFA_ERR_FORMAT, "huge.safetensors", "exceeds the limit");
    EXPECT_OPEN_FAIL(st_file_hl("zero.safetensors", 0, ok_hdr, data, 24, p, sizeof p), DFA_ERR_FORMAT,
                     "too short for a JSON object");
    /* truncated: data cut short, then cut inside the header */
    EXPECT_OPEN_FAIL(st_file("trunc.safetensors", ok_hdr, data, 20, p, sizeof p), DFA_ERR_FORMAT, "trunc.safetensors",
                     "tensor 'x.weight'", "data_offsets [0, 24] run past the data section (20 bytes)");
    EXPECT_OPEN_FAIL(st_file_hl("cut.safetensors", strlen(ok_hdr), "{\"x.weight\":{\"dty", NULL, 0, p, sizeof p),
                     DFA_ERR_FORMAT, "cut.safetensors", "runs past the end of the file");
    /* bad JSON, wrong kinds of JSON, bad text */
    EXPECT_OPEN_FAIL(st_file("json.safetensors", "{\"x.weight\":{\"dtype\":\"F32\",", data, 24, p, sizeof p),
                     DFA_ERR_FORMAT, "json.safetensors", "not valid JSON");
    EXPECT_OPEN_FAIL(st_file("arr.safetensors", "[1, 2]  ", NULL, 0, p, sizeof p), DFA_ERR_FORMAT,
                     "header is an array, expected a JSON object");
    EXPECT_OPEN_FAIL(st_file("tail.safetensors", "{} x", NULL, 0, p, sizeof p), DFA_ERR_FORMAT, "text after the object");
    EXPECT_OPEN_FAIL(st_file("utf.safetensors", "{\"\xc3\x28\":1}", NULL, 0, p, sizeof p), DFA_ERR_FORMAT,
                     "not UTF-8 JSON text");
    const char nul_hdr[] = "{\"a\0\":{}}";
    uint8_t nb[8 + sizeof nul_hdr - 1] = {sizeof nul_hdr - 1};
    memcpy(nb + 8, nul_hdr, sizeof nul_hdr - 1);
    EXPECT_OPEN_FAIL(tmpdir_write(&tmp, "nul.safetensors", nb, sizeof nb, p, sizeof p), DFA_ERR_FORMAT,
                     "bad byte 0x00");
    EXPECT_OPEN_FAIL(st_file("entry.safetensors", "{\"x\": 5}", NULL, 0, p, sizeof p), DFA_ERR_FORMAT,
                     "tensor 'x': entry is a number");
    /* dtype */
    EXPECT_OPEN_FAIL(st_file("dtype.safetensors", "{\"x\":{\"dtype\":\"F31\",\"shape\":[2],\"data_offsets\":[0,8]}}", data,
                             8, p, sizeof p),
                     DFA_ERR_FORMAT, "dtype.safetensors", "tensor 'x'", "unknown dtype 'F31'");
    EXPECT_OPEN_FAIL(st_file("nodt.safetensors", "{\"x\":{\"shape\":[2],\"data_offsets\":[0,8]}}", data, 8, p, sizeof p),
                     DFA_ERR_FORMAT, "tensor 'x': missing 'dtype'");
    EXPECT_OPEN_FAIL(st_file("dtnum.safetensors", "{\"x\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", data, 8, p,
                             sizeof p),
                     DFA_ERR_FORMAT, "dtype is a number");
    EXPECT_OPEN_FAIL(st_file("dtwice.safetensors",
                             "{\"x\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,8]}}", data, 8,
                             p, sizeof p),
                     DFA_ERR_FORMAT, "tensor 'x': 'dtype' given 2 times");
    /* shape */
    EXPECT_OPEN_FAIL(st_file("noshape.safetensors", "{\"x\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", data, 8, p,
                             sizeof p),
                     DFA_ERR_FORMAT, "missing 'shape'");
    EXPECT_OPEN_FAIL(st_file("neg.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", data,
                             8, p, sizeof p),
                     DFA_ERR_FORMAT, "shape[0] is not a non-negative integer");
    EXPECT_OPEN_FAIL(st_file("frac.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[2, 1.5],\"data_offsets\":[0,8]}}",
                             data, 8, p, sizeof p),
                     DFA_ERR_FORMAT, "shape[1] is not a non-negative integer");
    EXPECT_OPEN_FAIL(
        st_file("rank.safetensors",
                "{\"x\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}", data, 8, p, sizeof p),
        DFA_ERR_FORMAT, "rank 9 exceeds the maximum of 8");
    EXPECT_OPEN_FAIL(st_file("big.safetensors",
                             "{\"x\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", data,
                             8, p, sizeof p),
                     DFA_ERR_FORMAT, "is too large");
    /* offsets */
    EXPECT_OPEN_FAIL(st_file("range.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[25],\"data_offsets\":[0,100]}}",
                             data, 24, p, sizeof p),
                     DFA_ERR_FORMAT, "range.safetensors", "tensor 'x'", "[0, 100] run past the data section (24 bytes)");
    EXPECT_OPEN_FAIL(st_file("order.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,8]}}",
                             data, 24, p, sizeof p),
                     DFA_ERR_FORMAT, "[16, 8]: begin is after end");
    EXPECT_OPEN_FAIL(st_file("one.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8]}}", data, 24,
                             p, sizeof p),
                     DFA_ERR_FORMAT, "data_offsets must be [begin, end]");
    EXPECT_OPEN_FAIL(st_file("nooff.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[2]}}", data, 24, p, sizeof p),
                     DFA_ERR_FORMAT, "missing 'data_offsets'");
    EXPECT_OPEN_FAIL(st_file("negoff.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}",
                             data, 24, p, sizeof p),
                     DFA_ERR_FORMAT, "data_offsets must be non-negative integers");
    EXPECT_OPEN_FAIL(st_file("overlap.safetensors",
                             "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                             "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
                             data, 24, p, sizeof p),
                     DFA_ERR_FORMAT, "overlap.safetensors", "'a' [0, 16] and 'b' [8, 16] have overlapping data_offsets");
    /* shape / bytes mismatch: the message spells out both sides */
    EXPECT_OPEN_FAIL(st_file("model.safetensors", "{\"x.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}",
                             data, 24, p, sizeof p),
                     DFA_ERR_FORMAT,
                     "model.safetensors: tensor 'x.weight': data_offsets [0, 20] hold 20 bytes, shape [2, 3] of F32 needs 24");
    /* duplicate names */
    EXPECT_OPEN_FAIL(st_file("dup.safetensors",
                             "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                             "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
                             data, 24, p, sizeof p),
                     DFA_ERR_FORMAT, "dup.safetensors", "tensor 'w' appears more than once");
    /* metadata */
    EXPECT_OPEN_FAIL(st_file("meta.safetensors", "{\"__metadata__\":{\"format\":1}}", NULL, 0, p, sizeof p),
                     DFA_ERR_FORMAT, "__metadata__ 'format' is a number, expected a string");
    EXPECT_OPEN_FAIL(st_file("meta2.safetensors", "{\"__metadata__\":[]}", NULL, 0, p, sizeof p), DFA_ERR_FORMAT,
                     "__metadata__ is an array");
    EXPECT_OPEN_FAIL(st_file("meta3.safetensors", "{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", NULL, 0, p, sizeof p),
                     DFA_ERR_FORMAT, "__metadata__ key 'k' appears more than once");
    EXPECT_OPEN_FAIL(st_file("meta4.safetensors", "{\"__metadata__\":{},\"__metadata__\":{}}", NULL, 0, p, sizeof p),
                     DFA_ERR_FORMAT, "__metadata__ appears more than once");

    /* still valid: empty header object, zero-size tensors sharing an offset, gaps, padding */
    dfa_safetensors *st = NULL;
    dfa_error err;
    CHECKF(dfa_st_open(&st, st_file("min.safetensors", "{}      ", NULL, 0, p, sizeof p), &err) == DFA_OK, "%s", err.msg);
    CHECK(st && dfa_st_count(st) == 0);
    dfa_st_close(st);
    st = NULL;
    CHECKF(dfa_st_open(&st,
                       st_file("zero.safetensors",
                               "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]},"
                               "\"b\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[8,8]},"
                               "\"c\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                               "\"d\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}  ",
                               data, 24, p, sizeof p),
                       &err) == DFA_OK,
           "%s", err.msg);
    CHECK(st && dfa_st_count(st) == 4);
    dfa_st_close(st);
}

/* Every prefix and many single-byte mutations of a valid header go through the parser from an
 * exactly sized heap buffer: errors or success, never a crash or an out-of-bounds read (ASan). */
static void test_mutations(void) {
    const char *hdr = "{\"__metadata__\":{\"k\":\"v\"},\"a\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,8]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}";
    size_t hl = strlen(hdr), n = 8 + hl + 12;
    uint8_t *img = calloc(1, n);
    if (!img) return;
    for (int i = 0; i < 8; i++) img[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(img + 8, hdr, hl);
    dfa_st_tensor *t = NULL;
    int nt = 0, oks = 0;
    dfa_error err;
    CHECKF(dfa_st_parse_header(img, n, n, "m", &t, &nt, &err) == DFA_OK && nt == 2, "%s", err.msg);
    dfa_st_free_table(t, nt);
    for (size_t len = 0; len < n; len++) {
        uint8_t *b = malloc(len ? len : 1);
        memcpy(b, img, len);
        dfa_status s = dfa_st_parse_header(b, len, len, "m", &t, &nt, &err);
        oks += s == DFA_OK;
        if (s == DFA_OK) dfa_st_free_table(t, nt);
        else CHECK(t == NULL && err.msg[0]);
        free(b);
    }
    CHECK(oks == 0); /* every prefix is short of the data */
    const uint8_t vals[] = {0, '"', '{', '}', '[', ']', ',', ':', '0', '9', '-', 0xff, 0xc3, ' '};
    for (size_t pos = 0; pos < 8 + hl; pos++)
        for (size_t v = 0; v < sizeof vals; v++) {
            uint8_t *b = malloc(n);
            memcpy(b, img, n);
            b[pos] = vals[v];
            dfa_status s = dfa_st_parse_header(b, n, n, "m", &t, &nt, &err);
            if (s == DFA_OK) dfa_st_free_table(t, nt);
            free(b);
        }
    free(img);
}

int main(void) {
    rng = 0x853c49e6748fea9bULL ^ (unsigned long long)time(NULL);
    printf("seed %llu\n", rng);
    if (tmpdir_make(&tmp, "test_st") != 0) return 1;
    RUN(test_writer_roundtrip);
    RUN(test_reference_file);
    RUN(test_misaligned_load);
    RUN(test_load_errors);
    RUN(test_multifile);
    RUN(test_broken_files);
    RUN(test_mutations);
    tmpdir_remove(&tmp);
    return test_summary();
}
