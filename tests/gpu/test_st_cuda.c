/* test_st_cuda.c (GPU) - dfa_st_load to device memory: same dtype straight from the mapping,
 * converted dtypes through the bounded staging buffer (tensors larger than one chunk), and a
 * source not aligned to its element size; each read back and compared with the host load.
 * Device memory is poisoned before every load. */
#include "../test.h"

#include <stdint.h>
#include <time.h>

#include "../tmpdir.h"

#include "core/cuda_rt.h"
#include "io/safetensors.h"

static dfa_cuda *cu;
static test_tmpdir tmp;
static unsigned long long rng;

/* Load `name` as dtype to the device and to the host; the two must agree byte for byte. */
static void device_matches_host(dfa_safetensors *st, const char *name, dfa_dtype dtype) {
    const dfa_st_tensor *t = dfa_st_find(st, name);
    CHECK(t != NULL);
    if (!t) return;
    size_t numel = (size_t)((t->end - t->begin) / dfa_dtype_size(t->dtype));
    size_t bytes = numel * dfa_dtype_size(dtype);
    uint8_t *host = malloc(bytes), *back = malloc(bytes);
    void *dev = NULL;
    dfa_error err;
    dfa_error_clear(&err);
    CHECKF(dfa_cuda_malloc(cu, &dev, bytes, &err) == DFA_OK, "%s", err.msg);
    if (!host || !back || !dev) goto out;
    memset(host, 0xa5, bytes);
    memset(back, 0x5a, bytes);
    CHECKF(dfa_cuda_memset(cu, dev, 0xff, bytes, &err) == DFA_OK, "%s", err.msg);
    CHECKF(dfa_st_load(st, name, dtype, t->ndim, t->shape, host, DFA_DEV_CPU, NULL, &err) == DFA_OK, "%s", err.msg);
    CHECKF(dfa_st_load(st, name, dtype, t->ndim, t->shape, dev, DFA_DEV_CUDA, cu, &err) == DFA_OK, "%s", err.msg);
    CHECKF(dfa_cuda_d2h(cu, back, dev, bytes, &err) == DFA_OK, "%s", err.msg);
    size_t bad = 0;
    for (size_t i = 0; i < bytes; i++) bad += host[i] != back[i];
    CHECKF(bad == 0, "%s as %s: %zu of %zu bytes differ", name, dfa_dtype_name(dtype), bad, bytes);
out:
    dfa_cuda_dealloc(cu, dev);
    free(host);
    free(back);
}

static void test_device_loads(void) {
    /* 3.1M bf16 values: more than two staging chunks when converted to f32 */
    const size_t nb = 3100000, nf = 1000003;
    uint16_t *b = malloc(nb * 2);
    float *f = malloc(nf * 4);
    if (!b || !f) return;
    for (size_t i = 0; i < nb; i++) b[i] = dfa_f32_to_bf16(test_rng_uniform(&rng));
    for (size_t i = 0; i < nf; i++) f[i] = test_rng_uniform(&rng) * 100.0f;
    const int64_t sb[2] = {3100, 1000}, sf[1] = {(int64_t)nf};
    dfa_st_item items[2] = {{"w.bf16", DFA_BF16, 2, sb, b}, {"w.f32", DFA_F32, 1, sf, f}};
    char path[300];
    tmpdir_file(&tmp, "dev.safetensors", path, sizeof path);
    dfa_error err;
    CHECKF(dfa_st_write(path, items, 2, NULL, NULL, 0, &err) == DFA_OK, "%s", err.msg);
    dfa_safetensors *st = NULL;
    CHECKF(dfa_st_open(&st, path, &err) == DFA_OK, "%s", err.msg);
    if (st) {
        device_matches_host(st, "w.bf16", DFA_BF16); /* straight from the mapping */
        device_matches_host(st, "w.bf16", DFA_F32);  /* widened in chunks */
        device_matches_host(st, "w.f32", DFA_F32);
        device_matches_host(st, "w.f32", DFA_BF16); /* narrowed in chunks */
        device_matches_host(st, "w.f32", DFA_F16);
        /* and the device values are the right ones, not only equal to the host's */
        float *back = malloc(nb * 4);
        void *dev = NULL;
        CHECK(dfa_cuda_malloc(cu, &dev, nb * 4, &err) == DFA_OK);
        if (back && dev) {
            CHECK(dfa_st_load(st, "w.bf16", DFA_F32, 2, sb, dev, DFA_DEV_CUDA, cu, &err) == DFA_OK);
            CHECK(dfa_cuda_d2h(cu, back, dev, nb * 4, &err) == DFA_OK);
            size_t bad = 0;
            for (size_t i = 0; i < nb; i++) bad += back[i] != dfa_bf16_to_f32(b[i]);
            CHECKF(bad == 0, "%zu values differ", bad);
            /* wrong expected shape: refused before anything is copied */
            const int64_t wrong[2] = {1000, 3100};
            CHECK(dfa_st_load(st, "w.bf16", DFA_F32, 2, wrong, dev, DFA_DEV_CUDA, cu, &err) == DFA_ERR_SHAPE);
        }
        dfa_cuda_dealloc(cu, dev);
        free(back);
        dfa_st_close(st);
    }
    free(b);
    free(f);
}

/* F32 data at an odd offset: the device load copies through the aligned staging buffer. */
static void test_device_misaligned(void) {
    enum { N = 300001 };
    uint8_t *data = malloc(1 + 4 * N);
    float *v = malloc(4 * N);
    if (!data || !v) return;
    for (int i = 0; i < N; i++) v[i] = test_rng_uniform(&rng);
    data[0] = 7;
    memcpy(data + 1, v, 4 * N);
    char json[161];
    snprintf(json, sizeof json, "{\"u\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                                "\"f\":{\"dtype\":\"F32\",\"shape\":[%d],\"data_offsets\":[1,%d]}}", N, 1 + 4 * N);
    char hdr[161];
    snprintf(hdr, sizeof hdr, "%-152s", json);
    size_t hl = strlen(hdr), total = 8 + hl + 1 + 4 * (size_t)N;
    uint8_t *img = malloc(total);
    char path[300];
    if (img) {
        for (int i = 0; i < 8; i++) img[i] = (uint8_t)((uint64_t)hl >> (8 * i));
        memcpy(img + 8, hdr, hl);
        memcpy(img + 8 + hl, data, 1 + 4 * (size_t)N);
        tmpdir_write(&tmp, "mis.safetensors", img, total, path, sizeof path);
        dfa_safetensors *st = NULL;
        dfa_error err;
        CHECKF(dfa_st_open(&st, path, &err) == DFA_OK, "%s", err.msg);
        if (st) {
            device_matches_host(st, "f", DFA_F32);
            device_matches_host(st, "f", DFA_BF16);
            dfa_st_close(st);
        }
    }
    free(img);
    free(data);
    free(v);
}

int main(void) {
    rng = 0x9e3779b97f4a7c15ull ^ (unsigned long long)time(NULL);
    dfa_error err;
    if (dfa_cuda_init(&cu, 0, &err) != DFA_OK) {
        fprintf(stderr, "no GPU: %s\n", err.msg);
        return 1;
    }
    if (tmpdir_make(&tmp, "test_st_cuda") != 0) return 1;
    RUN(test_device_loads);
    RUN(test_device_misaligned);
    tmpdir_remove(&tmp);
    dfa_cuda_free(cu);
    return test_summary();
}
