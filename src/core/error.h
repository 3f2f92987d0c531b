/* error.h - status + message with file:line, filled where the error is raised. */
#ifndef DFA_CORE_ERROR_H
#define DFA_CORE_ERROR_H

#include "dfa.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DFA_ERROR_MSG_LEN 1024

typedef struct dfa_error {
    dfa_status code;
    char msg[DFA_ERROR_MSG_LEN]; /* "src/x.c:12: what went wrong" */
} dfa_error;

#if defined(__GNUC__)
#define DFA_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define DFA_PRINTF(a, b)
#endif

/* Record an error (err may be NULL) and return code, so that callers can write
 * `return dfa_error_set(err, DFA_ERR_FORMAT, __FILE__, __LINE__, "...")`. */
dfa_status dfa_error_set(dfa_error *err, dfa_status code, const char *file, int line,
                         const char *fmt, ...) DFA_PRINTF(5, 6);
/* Prefix an existing message with more context ("while loading X: "). */
dfa_status dfa_error_wrap(dfa_error *err, const char *fmt, ...) DFA_PRINTF(2, 3);
void dfa_error_clear(dfa_error *err);

/* Raise: fill err and return the code from the current function. */
#define DFA_FAIL(err, code, ...) return dfa_error_set((err), (code), __FILE__, __LINE__, __VA_ARGS__)
/* Set without returning (for cleanup paths). */
#define DFA_SET(err, code, ...) dfa_error_set((err), (code), __FILE__, __LINE__, __VA_ARGS__)
/* Propagate a failed status. */
#define DFA_TRY(expr)                       \
    do {                                    \
        dfa_status dfa_try_s_ = (expr);     \
        if (dfa_try_s_ != DFA_OK) return dfa_try_s_; \
    } while (0)

#ifdef __cplusplus
}
#endif

#endif
