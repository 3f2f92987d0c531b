/* test_core.c - status/errors, dtype conversion, tensors, context memory and arenas, CLI flags. */
#include "test.h"

#include "cli/args.h"
#include "core/ctx.h"
#include "core/tensor.h"
#include "dfa.h"

static void test_error_messages(void) {
    dfa_error e;
    dfa_error_clear(&e);
    dfa_status s = DFA_SET(&e, DFA_ERR_SHAPE, "tensor '%s': expected %d got %d", "w", 3, 4);
    CHECK(s == DFA_ERR_SHAPE);
    CHECK(e.code == DFA_ERR_SHAPE);
    CHECKF(strstr(e.msg, "tests/test_core.c:") == e.msg, "msg=%s", e.msg);
    CHECK(strstr(e.msg, "tensor 'w': expected 3 got 4") != NULL);
    dfa_error_wrap(&e, "loading %s", "model.safetensors");
    CHECKF(strncmp(e.msg, "loading model.safetensors: tests/", 33) == 0, "msg=%s", e.msg);
    CHECK(strcmp(dfa_status_str(DFA_ERR_FORMAT), "format error") == 0);
}

static void test_dtype_names(void) {
    for (int i = 0; i < DFA_DTYPE_COUNT; i++) {
        dfa_dtype t;
        CHECK(dfa_dtype_parse(dfa_dtype_name((dfa_dtype)i), &t) == 0 && t == (dfa_dtype)i);
        CHECK(dfa_dtype_size((dfa_dtype)i) > 0);
    }
    dfa_dtype t;
    CHECK(dfa_dtype_parse("F31", &t) != 0);
    CHECK(dfa_dtype_parse("f32", &t) != 0); /* names are case-sensitive in safetensors */
}

/* f16 and bf16 conversions against exact references over every 16-bit pattern. */
static void test_half_roundtrip(void) {
    int bad16 = 0, badbf = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = dfa_f16_to_f32((uint16_t)h);
        if (isnan(f)) {
            if (!isnan(dfa_f16_to_f32(dfa_f32_to_f16(f)))) bad16++;
        } else if (dfa_f32_to_f16(f) != h) {
            bad16++;
        }
        float g = dfa_bf16_to_f32((uint16_t)h);
        if (isnan(g)) {
            if (!isnan(dfa_bf16_to_f32(dfa_f32_to_bf16(g)))) badbf++;
        } else if (dfa_f32_to_bf16(g) != h) {
            badbf++;
        }
    }
    CHECKF(bad16 == 0, "%d f16 patterns do not round trip", bad16);
    CHECKF(badbf == 0, "%d bf16 patterns do not round trip", badbf);
    /* rounding: values between two f16 neighbours go to the nearer, ties to even */
    CHECK(dfa_f32_to_f16(1.0f) == 0x3c00);
    CHECK(dfa_f32_to_f16(1.0f + 1.0f / 2048.0f) == 0x3c00);           /* tie -> even (0x3c00) */
    CHECK(dfa_f32_to_f16(1.0f + 3.0f / 2048.0f) == 0x3c02);           /* tie -> even (0x3c02) */
    CHECK(dfa_f32_to_f16(1.0f + 1.0f / 2048.0f + 1e-6f) == 0x3c01);   /* above tie */
    CHECK(dfa_f32_to_f16(70000.0f) == 0x7c00);                        /* overflow -> inf */
    CHECK(dfa_f32_to_f16(-1e-10f) == 0x8000);                         /* underflow -> -0 */
    CHECK(dfa_f32_to_f16(5.9604645e-08f) == 0x0001);                  /* smallest subnormal */
    CHECK(dfa_f32_to_bf16(1.0f + 1.0f / 256.0f) == 0x3f80);           /* tie -> even */
    CHECK(dfa_f32_to_bf16(1.0f + 3.0f / 256.0f) == 0x3f82);
}

static void test_convert(void) {
    dfa_error e;
    float src[5] = {0.5f, -2.25f, 3.0f, 1e-3f, 65504.0f};
    uint16_t h[5], b[5];
    float back[5];
    double d[5];
    CHECK(dfa_convert(h, DFA_F16, src, DFA_F32, 5, &e) == DFA_OK);
    CHECK(dfa_convert(back, DFA_F32, h, DFA_F16, 5, &e) == DFA_OK);
    for (int i = 0; i < 5; i++) CHECK_NEAR(back[i], src[i], fabs(src[i]) * 1e-3);
    CHECK(dfa_convert(b, DFA_BF16, src, DFA_F32, 5, &e) == DFA_OK);
    CHECK(dfa_convert(d, DFA_F64, b, DFA_BF16, 5, &e) == DFA_OK);
    for (int i = 0; i < 5; i++) CHECK_NEAR(d[i], src[i], fabs(src[i]) * 8e-3);
    int32_t iv[3] = {-7, 0, 123456};
    float fv[3];
    CHECK(dfa_convert(fv, DFA_F32, iv, DFA_I32, 3, &e) == DFA_OK);
    CHECK(fv[0] == -7.0f && fv[1] == 0.0f && fv[2] == 123456.0f);
    uint8_t f8[2] = {1, 2};
    CHECK(dfa_convert(fv, DFA_F32, f8, DFA_F8_E4M3, 2, &e) == DFA_ERR_UNSUPPORTED);
    CHECK(strstr(e.msg, "F8_E4M3") != NULL);
}

static void test_tensor(void) {
    dfa_error e;
    dfa_tensor t;
    int64_t shape[3] = {2, 3, 4};
    CHECK(dfa_tensor_init(&t, DFA_BF16, DFA_DEV_CPU, 3, shape, NULL, &e) == DFA_OK);
    CHECK(dfa_tensor_numel(&t) == 24);
    CHECK(dfa_tensor_nbytes(&t) == 48);
    char buf[64];
    CHECK(strcmp(dfa_shape_str(3, shape, buf, sizeof buf), "[2, 3, 4]") == 0);
    int64_t bad[2] = {2, -1};
    CHECK(dfa_tensor_init(&t, DFA_F32, DFA_DEV_CPU, 2, bad, NULL, &e) == DFA_ERR_SHAPE);
    CHECK(dfa_tensor_init(&t, DFA_F32, DFA_DEV_CPU, 9, shape, NULL, &e) == DFA_ERR_SHAPE);
}

static void test_ctx_and_arena(void) {
    dfa_ctx *ctx = NULL;
    char msg[256];
    dfa_ctx_params p = dfa_ctx_default_params();
    p.n_threads = 2;
    CHECK(dfa_ctx_init(&ctx, &p, msg, sizeof msg) == DFA_OK);
    CHECK(ctx && ctx->n_threads == 2);
    dfa_arena a;
    CHECK(dfa_arena_init(ctx, &a, DFA_DEV_CPU, 4096, "activations") == DFA_OK);
    CHECK(ctx->host_bytes == 4096);
    void *p1, *p2, *p3;
    CHECK(dfa_arena_alloc(ctx, &a, 100, &p1) == DFA_OK);
    CHECK(dfa_arena_alloc(ctx, &a, 100, &p2) == DFA_OK);
    CHECK((unsigned char *)p2 - (unsigned char *)p1 == 256);
    CHECK(dfa_arena_alloc(ctx, &a, 8000, &p3) == DFA_ERR_OOM);
    CHECKF(strstr(dfa_ctx_error(ctx), "arena 'activations' is full") != NULL, "%s", dfa_ctx_error(ctx));
    dfa_arena_reset(&a);
    dfa_tensor t;
    int64_t shape[2] = {16, 16};
    CHECK(dfa_arena_tensor(ctx, &a, &t, DFA_F32, 2, shape) == DFA_OK);
    CHECK(t.data == a.base && a.peak >= 1024);
    dfa_arena_release(ctx, &a);
    CHECK(ctx->host_bytes == 0);
    void *leak;
    CHECK(dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, 1000, "left to the context", &leak) == DFA_OK);
    dfa_ctx_free(ctx); /* frees `leak`: LeakSanitizer checks this under make test-asan */

    /* a CUDA context on a build or machine without CUDA fails with a message, no crash */
    p.backend = DFA_BACKEND_CUDA;
    dfa_status s = dfa_ctx_init(&ctx, &p, msg, sizeof msg);
    if (s != DFA_OK) {
        CHECK(ctx == NULL);
        CHECK(strlen(msg) > 0);
    } else {
        dfa_ctx_free(ctx);
    }
    p.backend = (dfa_backend)7;
    CHECK(dfa_ctx_init(&ctx, &p, msg, sizeof msg) == DFA_ERR_INVALID_ARG);
    CHECK(strstr(msg, "unknown backend 7") != NULL);
}

static void test_args(void) {
    int steps = 28, flag = 0;
    double cfg = 1.0;
    const char *model = NULL;
    dfa_arg_spec specs[] = {
        {"model", 'm', DFA_ARG_STRING, &model, "DIR", "model", 0, -1},
        {"steps", 0, DFA_ARG_INT, &steps, "N", "steps", 1, 1000},
        {"cfg-scale", 0, DFA_ARG_FLOAT, &cfg, "X", "cfg", 0, 100},
        {"cpu", 0, DFA_ARG_FLAG, &flag, NULL, "cpu", 0, -1},
    };
    const char *pos[4];
    int npos;
    char err[256];
    char *ok[] = {"gen", "-m", "dir", "--steps=50", "--cfg-scale", "4.5", "--cpu", "x"};
    CHECK(dfa_args_parse(8, ok, 1, specs, 4, pos, 4, &npos, err, sizeof err) == 0);
    CHECK(strcmp(model, "dir") == 0 && steps == 50 && cfg == 4.5 && flag == 1 && npos == 1);
    char *bad1[] = {"gen", "--stepz", "3"};
    CHECK(dfa_args_parse(3, bad1, 1, specs, 4, pos, 4, &npos, err, sizeof err) == -1);
    CHECK(strstr(err, "unknown flag '--stepz'") != NULL);
    char *bad2[] = {"gen", "--steps", "12x"};
    CHECK(dfa_args_parse(3, bad2, 1, specs, 4, pos, 4, &npos, err, sizeof err) == -1);
    CHECK(strstr(err, "expects an integer") != NULL);
    char *bad3[] = {"gen", "--steps", "0"};
    CHECK(dfa_args_parse(3, bad3, 1, specs, 4, pos, 4, &npos, err, sizeof err) == -1);
    CHECK(strstr(err, "out of range") != NULL);
    char *bad4[] = {"gen", "-m"};
    CHECK(dfa_args_parse(2, bad4, 1, specs, 4, pos, 4, &npos, err, sizeof err) == -1);
    CHECK(strstr(err, "needs a value") != NULL);
    char *neg[] = {"gen", "--cfg-scale", "-1"};
    CHECK(dfa_args_parse(3, neg, 1, specs, 4, pos, 4, &npos, err, sizeof err) == -1);
    char *help[] = {"gen", "--help"};
    CHECK(dfa_args_parse(2, help, 1, specs, 4, pos, 4, &npos, err, sizeof err) == 1);
}

int main(void) {
    RUN(test_error_messages);
    RUN(test_dtype_names);
    RUN(test_half_roundtrip);
    RUN(test_convert);
    RUN(test_tensor);
    RUN(test_ctx_and_arena);
    RUN(test_args);
    return test_summary();
}
