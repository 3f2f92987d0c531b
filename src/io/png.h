/* png.h - PNG files through libpng: 8-bit gray, RGB or RGBA. */
#ifndef DFA_IO_PNG_H
#define DFA_IO_PNG_H

#include <stdint.h>

#include "core/error.h"

/* pixels: h rows of w * channels bytes, channels 1, 3 or 4. */
dfa_status dfa_png_write(const char *path, int w, int h, int channels, const uint8_t *pixels, dfa_error *err);
/* Reads any PNG, converted to 8-bit with `channels` (1, 3 or 4) channels; *pixels is
 * malloc'ed (caller frees). */
dfa_status dfa_png_read(const char *path, int channels, int *w, int *h, uint8_t **pixels, dfa_error *err);

#endif
