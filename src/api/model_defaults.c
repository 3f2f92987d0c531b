/* model_defaults.c - MODEL/dfa.json (model_defaults.h). */
#include "api/model_defaults.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "io/json.h"

dfa_status dfa_model_defaults_read(dfa_ctx *ctx, const char *model_dir, dfa_model_defaults *d) {
    memset(d, 0, sizeof *d);
    d->true_cfg_scale = -1.0;
    char path[1100];
    snprintf(path, sizeof path, "%s/dfa.json", model_dir);
    if (access(path, F_OK) != 0) return DFA_OK;
    cJSON *j = NULL;
    DFA_TRY(dfa_json_read_file(path, &j, &ctx->err));
    dfa_status s = dfa_json_int_or(j, "width", path, 0, &d->width, &ctx->err);
    if (s == DFA_OK) s = dfa_json_int_or(j, "height", path, 0, &d->height, &ctx->err);
    if (s == DFA_OK) s = dfa_json_int_or(j, "num_inference_steps", path, 0, &d->steps, &ctx->err);
    if (s == DFA_OK) s = dfa_json_int_or(j, "max_sequence_length", path, 0, &d->max_len, &ctx->err);
    if (s == DFA_OK) s = dfa_json_double_or(j, "true_cfg_scale", path, -1.0, &d->true_cfg_scale, &ctx->err);
    if (s == DFA_OK && cJSON_GetObjectItemCaseSensitive(j, "negative_prompt")) {
        const char *neg = NULL;
        s = dfa_json_string(j, "negative_prompt", path, &neg, &ctx->err);
        if (s == DFA_OK) {
            snprintf(d->negative, sizeof d->negative, "%s", neg);
            d->has_negative = 1;
        }
    }
    if (s == DFA_OK && (d->width < 0 || d->height < 0 || d->steps < 0 || d->max_len < 0 || d->width > 65536 ||
                        d->height > 65536 || d->steps > 10000 || d->max_len > 4096))
        s = DFA_SET(&ctx->err, DFA_ERR_FORMAT, "%s: width/height/steps/max_sequence_length out of range", path);
    cJSON_Delete(j);
    return s;
}
