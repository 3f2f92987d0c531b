/* test_png.c - PNG round trips (1, 3, 4 channels), channel conversion on read, broken files. */
#include "test.h"

#include <stdint.h>
#include <time.h>

#include "tmpdir.h"

#include "io/png.h"

static test_tmpdir tmp;
static unsigned long long rng;

static uint8_t *random_pixels(int w, int h, int c) {
    uint8_t *p = malloc((size_t)w * h * c);
    if (p)
        for (size_t i = 0; i < (size_t)w * h * c; i++) p[i] = (uint8_t)(test_rng_next(&rng) >> 24);
    return p;
}

static void test_roundtrip(void) {
    const int cs[3] = {1, 3, 4};
    for (int k = 0; k < 3; k++) {
        int w = 1 + (int)(test_rng_next(&rng) % 67), h = 1 + (int)(test_rng_next(&rng) % 45), c = cs[k];
        uint8_t *px = random_pixels(w, h, c);
        CHECK(px != NULL);
        if (!px) return;
        char path[300];
        tmpdir_file(&tmp, "rt.png", path, sizeof path);
        dfa_error e;
        dfa_error_clear(&e);
        CHECKF(dfa_png_write(path, w, h, c, px, &e) == DFA_OK, "%s", e.msg);
        int rw = -1, rh = -1;
        uint8_t *back = NULL;
        CHECKF(dfa_png_read(path, c, &rw, &rh, &back, &e) == DFA_OK, "%s", e.msg);
        CHECKF(rw == w && rh == h, "%dx%d vs %dx%d", rw, rh, w, h);
        if (back && rw == w && rh == h) {
            size_t bad = 0;
            for (size_t i = 0; i < (size_t)w * h * c; i++) bad += back[i] != px[i];
            CHECKF(bad == 0, "channels %d: %zu bytes differ", c, bad);
        }
        free(back);
        free(px);
    }
}

/* An opaque RGB image read as RGBA gets alpha 255; gray read as RGB repeats the value;
 * RGBA read as RGB on black keeps opaque pixels and zeroes transparent ones. */
static void test_channel_conversion(void) {
    const int w = 5, h = 3;
    char path[300];
    tmpdir_file(&tmp, "conv.png", path, sizeof path);
    dfa_error e;
    uint8_t *rgb = random_pixels(w, h, 3);
    CHECK(dfa_png_write(path, w, h, 3, rgb, &e) == DFA_OK);
    int rw, rh;
    uint8_t *rgba = NULL;
    CHECKF(dfa_png_read(path, 4, &rw, &rh, &rgba, &e) == DFA_OK, "%s", e.msg);
    if (rgba)
        for (int i = 0; i < w * h; i++) {
            CHECK(rgba[4 * i + 3] == 255);
            CHECK(memcmp(rgba + 4 * i, rgb + 3 * i, 3) == 0);
        }
    free(rgba);
    free(rgb);

    uint8_t *gray = random_pixels(w, h, 1);
    CHECK(dfa_png_write(path, w, h, 1, gray, &e) == DFA_OK);
    uint8_t *g3 = NULL;
    CHECKF(dfa_png_read(path, 3, &rw, &rh, &g3, &e) == DFA_OK, "%s", e.msg);
    if (g3)
        for (int i = 0; i < w * h; i++) CHECK(g3[3 * i] == gray[i] && g3[3 * i + 1] == gray[i] && g3[3 * i + 2] == gray[i]);
    free(g3);
    free(gray);

    uint8_t *a = random_pixels(w, h, 4);
    for (int i = 0; i < w * h; i++) a[4 * i + 3] = (i % 2) ? 255 : 0;
    CHECK(dfa_png_write(path, w, h, 4, a, &e) == DFA_OK);
    uint8_t *a3 = NULL;
    CHECKF(dfa_png_read(path, 3, &rw, &rh, &a3, &e) == DFA_OK, "%s", e.msg);
    if (a3)
        for (int i = 0; i < w * h; i++) {
            if (i % 2) CHECK(memcmp(a3 + 3 * i, a + 4 * i, 3) == 0);
            else CHECK(a3[3 * i] == 0 && a3[3 * i + 1] == 0 && a3[3 * i + 2] == 0);
        }
    free(a3);
    free(a);
}

static void test_broken(void) {
    dfa_error e;
    char path[300];
    int w, h;
    uint8_t *px = (uint8_t *)1;
    /* not a PNG */
    tmpdir_write(&tmp, "text.png", "hello, this is no image", 23, path, sizeof path);
    CHECK(dfa_png_read(path, 3, &w, &h, &px, &e) == DFA_ERR_FORMAT && px == NULL);
    CHECKF(strstr(e.msg, "text.png: not a PNG file"), "%s", e.msg);
    /* empty */
    tmpdir_write(&tmp, "empty.png", "", 0, path, sizeof path);
    CHECK(dfa_png_read(path, 3, &w, &h, &px, &e) == DFA_ERR_FORMAT);
    /* truncated: a valid file cut in the middle of the image data */
    uint8_t *img = random_pixels(32, 32, 3);
    tmpdir_file(&tmp, "full.png", path, sizeof path);
    CHECK(dfa_png_write(path, 32, 32, 3, img, &e) == DFA_OK);
    free(img);
    FILE *f = fopen(path, "rb");
    uint8_t buf[8192];
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    CHECK(n > 100);
    char cut[300];
    tmpdir_write(&tmp, "cut.png", buf, n / 2, cut, sizeof cut);
    CHECK(dfa_png_read(cut, 3, &w, &h, &px, &e) == DFA_ERR_FORMAT && px == NULL);
    CHECKF(strstr(e.msg, "cut.png"), "%s", e.msg);
    /* header only (signature + part of IHDR) */
    tmpdir_write(&tmp, "hdr.png", buf, 20, cut, sizeof cut);
    CHECK(dfa_png_read(cut, 3, &w, &h, &px, &e) == DFA_ERR_FORMAT);
    CHECKF(strstr(e.msg, "hdr.png"), "%s", e.msg);
    /* a flipped byte in the image data: CRC error */
    if (n > 60) {
        buf[n - 20] ^= 0x5a;
        tmpdir_write(&tmp, "crc.png", buf, n, cut, sizeof cut);
        CHECK(dfa_png_read(cut, 3, &w, &h, &px, &e) == DFA_ERR_FORMAT);
        CHECKF(strstr(e.msg, "crc.png"), "%s", e.msg);
    }
    /* missing file, bad arguments */
    tmpdir_file(&tmp, "absent.png", path, sizeof path);
    CHECK(dfa_png_read(path, 3, &w, &h, &px, &e) == DFA_ERR_IO);
    CHECKF(strstr(e.msg, "absent.png: cannot open"), "%s", e.msg);
    CHECK(dfa_png_read(path, 2, &w, &h, &px, &e) == DFA_ERR_INVALID_ARG);
    uint8_t one[4] = {0};
    CHECK(dfa_png_write(path, 0, 1, 3, one, &e) == DFA_ERR_INVALID_ARG);
    CHECK(dfa_png_write(path, 1, 1, 2, one, &e) == DFA_ERR_INVALID_ARG);
    CHECK(dfa_png_write("/nonexistent-dir/x.png", 1, 1, 1, one, &e) == DFA_ERR_IO);
    CHECKF(strstr(e.msg, "/nonexistent-dir/x.png"), "%s", e.msg);
}

int main(void) {
    rng = 0x2545f4914f6cdd1dULL ^ (unsigned long long)time(NULL);
    printf("seed %llu\n", rng);
    if (tmpdir_make(&tmp, "test_png") != 0) return 1;
    RUN(test_roundtrip);
    RUN(test_channel_conversion);
    RUN(test_broken);
    tmpdir_remove(&tmp);
    return test_summary();
}
