/* png.c - 8-bit gray / RGB / RGBA PNG files through libpng's simplified API (no setjmp here;
 * libpng reports failures in image.message). */
#include "io/png.h"

#include <errno.h>
#include <limits.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Refuse images whose pixels would need more than this (a corrupt header, not a picture). */
#define PNG_MAX_BYTES ((size_t)1 << 30)

static png_uint_32 format_of(int channels) {
    return channels == 1 ? PNG_FORMAT_GRAY : channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_RGBA;
}

dfa_status dfa_png_write(const char *path, int w, int h, int channels, const uint8_t *pixels, dfa_error *err) {
    if (channels != 1 && channels != 3 && channels != 4)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "%s: PNG channels must be 1, 3 or 4, got %d", path, channels);
    if (w <= 0 || h <= 0)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "%s: PNG size must be positive, got %d x %d", path, w, h);
    if ((size_t)w * (size_t)channels > (size_t)INT_MAX || (size_t)w * (size_t)h * (size_t)channels > PNG_MAX_BYTES)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "%s: PNG of %d x %d x %d is too large", path, w, h, channels);
    if (!pixels) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "%s: no pixels to write", path);
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = (png_uint_32)w;
    img.height = (png_uint_32)h;
    img.format = format_of(channels);
    if (!png_image_write_to_file(&img, path, 0, pixels, (png_int_32)(w * channels), NULL)) {
        dfa_status s = DFA_SET(err, DFA_ERR_IO, "%s: cannot write PNG: %s", path, img.message);
        png_image_free(&img);
        return s;
    }
    png_image_free(&img);
    return DFA_OK;
}

dfa_status dfa_png_read(const char *path, int channels, int *w, int *h, uint8_t **pixels, dfa_error *err) {
    *pixels = NULL;
    *w = *h = 0;
    if (channels != 1 && channels != 3 && channels != 4)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "%s: PNG channels must be 1, 3 or 4, got %d", path, channels);
    FILE *f = fopen(path, "rb");
    if (!f) DFA_FAIL(err, DFA_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    unsigned char sig[8];
    size_t got = fread(sig, 1, sizeof sig, f);
    if (got != sizeof sig || png_sig_cmp(sig, 0, sizeof sig) != 0) {
        fclose(f);
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: not a PNG file (bad signature)", path);
    }
    rewind(f);
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_stdio(&img, f)) {
        dfa_status s = DFA_SET(err, DFA_ERR_FORMAT, "%s: bad PNG header: %s", path, img.message);
        png_image_free(&img);
        fclose(f);
        return s;
    }
    size_t bytes = (size_t)img.width * img.height * (size_t)channels;
    if (img.width == 0 || img.height == 0 || img.width > INT_MAX / 4 || img.height > INT_MAX || bytes > PNG_MAX_BYTES) {
        dfa_status s = DFA_SET(err, DFA_ERR_FORMAT, "%s: PNG of %u x %u is too large (limit %zu bytes)", path,
                               (unsigned)img.width, (unsigned)img.height, PNG_MAX_BYTES);
        png_image_free(&img);
        fclose(f);
        return s;
    }
    img.format = format_of(channels);
    uint8_t *buf = malloc(bytes);
    if (!buf) {
        png_image_free(&img);
        fclose(f);
        DFA_FAIL(err, DFA_ERR_OOM, "%s: cannot allocate %zu bytes of pixels", path, bytes);
    }
    png_color black = {0, 0, 0}; /* alpha dropped by compositing on black */
    int ok = png_image_finish_read(&img, &black, buf, (png_int_32)(img.width * (png_uint_32)channels), NULL);
    fclose(f);
    if (!ok) {
        dfa_status s = DFA_SET(err, DFA_ERR_FORMAT, "%s: corrupt PNG data: %s", path, img.message);
        png_image_free(&img);
        free(buf);
        return s;
    }
    png_image_free(&img);
    *w = (int)img.width;
    *h = (int)img.height;
    *pixels = buf;
    return DFA_OK;
}
