#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *base_name_of(const char *file) {
    /* keep the path from "src/" or "tests/" on, so messages stay short and stable */
    const char *p = strstr(file, "src/");
    if (!p) p = strstr(file, "tests/");
    return p ? p : file;
}

dfa_status dfa_error_set(dfa_error *err, dfa_status code, const char *file, int line,
                         const char *fmt, ...) {
    if (!err) return code;
    err->code = code;
    int n = snprintf(err->msg, sizeof err->msg, "%s:%d: ", base_name_of(file), line);
    if (n < 0 || (size_t)n >= sizeof err->msg) n = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg + n, sizeof err->msg - (size_t)n, fmt, ap);
    va_end(ap);
    return code;
}

dfa_status dfa_error_wrap(dfa_error *err, const char *fmt, ...) {
    if (!err) return DFA_ERR_INTERNAL;
    char prefix[DFA_ERROR_MSG_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char old[DFA_ERROR_MSG_LEN];
    memcpy(old, err->msg, sizeof old);
    size_t n = strnlen(prefix, sizeof prefix - 1);
    if (n > sizeof err->msg - 3) n = sizeof err->msg - 3;
    memcpy(err->msg, prefix, n);
    memcpy(err->msg + n, ": ", 2);
    size_t rest = sizeof err->msg - n - 2;
    size_t m = strnlen(old, rest - 1);
    memcpy(err->msg + n + 2, old, m);
    err->msg[n + 2 + m] = '\0';
    return err->code;
}

void dfa_error_clear(dfa_error *err) {
    if (!err) return;
    err->code = DFA_OK;
    err->msg[0] = '\0';
}

const char *dfa_status_str(dfa_status s) {
    switch (s) {
    case DFA_OK: return "ok";
    case DFA_ERR_INVALID_ARG: return "invalid argument";
    case DFA_ERR_IO: return "i/o error";
    case DFA_ERR_FORMAT: return "format error";
    case DFA_ERR_NOT_FOUND: return "not found";
    case DFA_ERR_SHAPE: return "shape mismatch";
    case DFA_ERR_OOM: return "out of memory";
    case DFA_ERR_CUDA: return "cuda error";
    case DFA_ERR_UNSUPPORTED: return "unsupported";
    case DFA_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}
