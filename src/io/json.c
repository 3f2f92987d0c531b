/* json.c - cJSON behind typed getters whose errors name the file and the key. */
#include "io/json.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Config files are small; refuse anything this large (it is surely not a config). */
#define JSON_MAX_FILE_BYTES ((size_t)64 << 20)

/* Line and column (1-based) of byte `off` in text. */
static void line_col(const char *text, size_t off, size_t *line, size_t *col) {
    size_t l = 1, c = 1;
    for (size_t i = 0; i < off; i++) {
        if (text[i] == '\n') {
            l++;
            c = 1;
        } else {
            c++;
        }
    }
    *line = l;
    *col = c;
}

dfa_status dfa_json_parse(const char *text, size_t len, const char *what, cJSON **out, dfa_error *err) {
    *out = NULL;
    if (!what) what = "JSON";
    if (!text) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "%s: no text to parse", what);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    size_t off = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
    if (!root) {
        size_t line, col;
        line_col(text, off, &line, &col);
        if (len == 0 || off >= len)
            DFA_FAIL(err, DFA_ERR_FORMAT, "%s: invalid JSON: unexpected end of text (line %zu, column %zu)", what,
                     line, col);
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: invalid JSON at line %zu, column %zu (byte %zu)", what, line, col, off);
    }
    /* Only whitespace (or a terminating NUL) may follow the value. */
    for (size_t i = off; i < len; i++) {
        char ch = text[i];
        if (ch == '\0' && i + 1 == len) break;
        if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r') {
            size_t line, col;
            line_col(text, i, &line, &col);
            cJSON_Delete(root);
            DFA_FAIL(err, DFA_ERR_FORMAT, "%s: invalid JSON: text after the value at line %zu, column %zu (byte %zu)",
                     what, line, col, i);
        }
    }
    *out = root;
    return DFA_OK;
}

dfa_status dfa_json_read_file(const char *path, cJSON **out, dfa_error *err) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) DFA_FAIL(err, DFA_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        DFA_FAIL(err, DFA_ERR_IO, "%s: not a regular file", path);
    }
    if ((unsigned long long)sb.st_size > JSON_MAX_FILE_BYTES) {
        fclose(f);
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: %lld bytes is too large for a JSON config (limit %zu)", path,
                 (long long)sb.st_size, JSON_MAX_FILE_BYTES);
    }
    size_t n = (size_t)sb.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        DFA_FAIL(err, DFA_ERR_OOM, "%s: cannot allocate %zu bytes", path, n + 1);
    }
    size_t got = fread(buf, 1, n, f);
    int read_err = ferror(f);
    fclose(f);
    if (got != n || read_err) {
        free(buf);
        DFA_FAIL(err, DFA_ERR_IO, "%s: read %zu of %zu bytes", path, got, n);
    }
    buf[n] = '\0';
    dfa_status s = dfa_json_parse(buf, n, path, out, err);
    free(buf);
    return s;
}

dfa_status dfa_json_write_file(const char *path, const cJSON *root, dfa_error *err) {
    if (!root) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "%s: no JSON tree to write", path);
    char *text = cJSON_Print(root);
    if (!text) DFA_FAIL(err, DFA_ERR_OOM, "%s: cannot print the JSON tree", path);
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(text);
        DFA_FAIL(err, DFA_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    }
    size_t n = strlen(text);
    int ok = fwrite(text, 1, n, f) == n && fputc('\n', f) != EOF;
    free(text);
    if (fclose(f) != 0) ok = 0;
    if (!ok) DFA_FAIL(err, DFA_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return DFA_OK;
}

static const char *type_name(const cJSON *v) {
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    return "an invalid value";
}

/* Look `key` up. Returns DFA_OK with *v set, DFA_ERR_NOT_FOUND (message set) when the key is
 * missing or null, DFA_ERR_FORMAT when obj is not an object. */
static dfa_status lookup(const cJSON *obj, const char *key, const char *what, const cJSON **v, dfa_error *err) {
    *v = NULL;
    if (!what) what = "JSON";
    if (obj && !cJSON_IsObject(obj))
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: expected an object holding key '%s', got %s", what, key, type_name(obj));
    const cJSON *item = obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
    if (!item) DFA_FAIL(err, DFA_ERR_NOT_FOUND, "%s: missing key '%s'", what, key);
    if (cJSON_IsNull(item)) DFA_FAIL(err, DFA_ERR_NOT_FOUND, "%s: key '%s' is null", what, key);
    *v = item;
    return DFA_OK;
}

static dfa_status as_int(const cJSON *v, const char *key, const char *what, int *out, dfa_error *err) {
    if (!cJSON_IsNumber(v))
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: key '%s': expected an integer, got %s", what, key, type_name(v));
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d))
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: key '%s': expected an integer, got %g", what, key, d);
    if (d < (double)INT_MIN || d > (double)INT_MAX)
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: key '%s': %g is out of int range", what, key, d);
    *out = (int)d;
    return DFA_OK;
}

dfa_status dfa_json_int(const cJSON *obj, const char *key, const char *what, int *out, dfa_error *err) {
    const cJSON *v;
    DFA_TRY(lookup(obj, key, what, &v, err));
    return as_int(v, key, what ? what : "JSON", out, err);
}

dfa_status dfa_json_int_or(const cJSON *obj, const char *key, const char *what, int dflt, int *out, dfa_error *err) {
    const cJSON *v;
    dfa_status s = lookup(obj, key, what, &v, err);
    if (s == DFA_ERR_NOT_FOUND) {
        dfa_error_clear(err);
        *out = dflt;
        return DFA_OK;
    }
    if (s != DFA_OK) return s;
    return as_int(v, key, what ? what : "JSON", out, err);
}

static dfa_status as_double(const cJSON *v, const char *key, const char *what, double *out, dfa_error *err) {
    if (!cJSON_IsNumber(v))
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: key '%s': expected a number, got %s", what, key, type_name(v));
    if (!isfinite(v->valuedouble))
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: key '%s': number out of range", what, key);
    *out = v->valuedouble;
    return DFA_OK;
}

dfa_status dfa_json_double(const cJSON *obj, const char *key, const char *what, double *out, dfa_error *err) {
    const cJSON *v;
    DFA_TRY(lookup(obj, key, what, &v, err));
    return as_double(v, key, what ? what : "JSON", out, err);
}

dfa_status dfa_json_double_or(const cJSON *obj, const char *key, const char *what, double dflt, double *out,
                              dfa_error *err) {
    const cJSON *v;
    dfa_status s = lookup(obj, key, what, &v, err);
    if (s == DFA_ERR_NOT_FOUND) {
        dfa_error_clear(err);
        *out = dflt;
        return DFA_OK;
    }
    if (s != DFA_OK) return s;
    return as_double(v, key, what ? what : "JSON", out, err);
}

dfa_status dfa_json_bool_or(const cJSON *obj, const char *key, const char *what, int dflt, int *out, dfa_error *err) {
    const cJSON *v;
    dfa_status s = lookup(obj, key, what, &v, err);
    if (s == DFA_ERR_NOT_FOUND) {
        dfa_error_clear(err);
        *out = dflt;
        return DFA_OK;
    }
    if (s != DFA_OK) return s;
    if (!cJSON_IsBool(v))
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: key '%s': expected true or false, got %s", what ? what : "JSON", key,
                 type_name(v));
    *out = cJSON_IsTrue(v) ? 1 : 0;
    return DFA_OK;
}

dfa_status dfa_json_string(const cJSON *obj, const char *key, const char *what, const char **out, dfa_error *err) {
    const cJSON *v;
    *out = NULL;
    DFA_TRY(lookup(obj, key, what, &v, err));
    if (!cJSON_IsString(v) || !v->valuestring)
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: key '%s': expected a string, got %s", what ? what : "JSON", key,
                 type_name(v));
    *out = v->valuestring;
    return DFA_OK;
}
