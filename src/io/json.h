/* json.h - cJSON behind a few helpers that turn a missing or mistyped key into an error that
 * names the file and the key. Use cJSON's own API for everything else. */
#ifndef DFA_IO_JSON_H
#define DFA_IO_JSON_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "core/error.h"

/* Read and parse a whole JSON file (config files are small, at most 64 MB; checkpoints never
 * go here). Errors name the file and, for syntax errors, line, column and byte offset.
 * Only whitespace may follow the top-level value. */
dfa_status dfa_json_read_file(const char *path, cJSON **out, dfa_error *err);
dfa_status dfa_json_parse(const char *text, size_t len, const char *what, cJSON **out, dfa_error *err);
/* Write a cJSON tree (pretty-printed) to a file. */
dfa_status dfa_json_write_file(const char *path, const cJSON *root, dfa_error *err);

/* Typed getters: `what` names the file/object for the message. Missing key (or a null
 * value, or obj == NULL): DFA_ERR_NOT_FOUND, unless a default is given through the _or
 * variants. Wrong type / not integral / out of int range / obj not an object: DFA_ERR_FORMAT. */
dfa_status dfa_json_int(const cJSON *obj, const char *key, const char *what, int *out, dfa_error *err);
dfa_status dfa_json_int_or(const cJSON *obj, const char *key, const char *what, int dflt, int *out, dfa_error *err);
dfa_status dfa_json_double(const cJSON *obj, const char *key, const char *what, double *out, dfa_error *err);
dfa_status dfa_json_double_or(const cJSON *obj, const char *key, const char *what, double dflt, double *out,
                              dfa_error *err);
dfa_status dfa_json_bool_or(const cJSON *obj, const char *key, const char *what, int dflt, int *out, dfa_error *err);
/* Points into the tree (valid while the tree lives). */
dfa_status dfa_json_string(const cJSON *obj, const char *key, const char *what, const char **out, dfa_error *err);

#endif
