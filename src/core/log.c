#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "core/ctx.h"

void dfa_log(const dfa_ctx *ctx, dfa_log_level level, const char *fmt, ...) {
    dfa_log_level max = ctx ? ctx->params.log_level : DFA_LOG_INFO;
    if (level > max) return;
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (ctx && ctx->params.log_fn) {
        ctx->params.log_fn(level, buf, ctx->params.log_user);
        return;
    }
    static const char *const tag[] = {"error", "warn", "info", "debug"};
    fprintf(stderr, "dfa %s: %s\n", tag[level], buf);
}

double dfa_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
