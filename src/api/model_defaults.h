/* model_defaults.h - MODEL/dfa.json, the generation settings dfa's own models ship with (size,
 * steps, T5 length, true-CFG scale, negative prompt). `dfa generate` and `dfa calibrate` fill
 * the flags the user did not give from it, so that a plan calibrated with the defaults matches a
 * generation with the defaults. */
#ifndef DFA_API_MODEL_DEFAULTS_H
#define DFA_API_MODEL_DEFAULTS_H

#include "core/ctx.h"

typedef struct dfa_model_defaults {
    int width, height, steps, max_len; /* 0: not in the file */
    double true_cfg_scale;             /* -1: not in the file */
    int has_negative;
    char negative[512];
} dfa_model_defaults;

/* No dfa.json: everything "not in the file", DFA_OK. A malformed file or values out of range
 * (width/height > 65536, steps > 10000, max_sequence_length > 4096, negatives): an error naming
 * the file. */
dfa_status dfa_model_defaults_read(dfa_ctx *ctx, const char *model_dir, dfa_model_defaults *d);

#endif
