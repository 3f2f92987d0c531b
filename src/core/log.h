/* log.h - leveled logging through the context's sink. */
#ifndef DFA_CORE_LOG_H
#define DFA_CORE_LOG_H

#include "core/error.h"
#include "dfa.h"

/* monotonic wall clock in seconds (timers, progress, ETAs) */
double dfa_now_s(void);

void dfa_log(const dfa_ctx *ctx, dfa_log_level level, const char *fmt, ...) DFA_PRINTF(3, 4);

#define DFA_LOGE(ctx, ...) dfa_log((ctx), DFA_LOG_ERROR, __VA_ARGS__)
#define DFA_LOGW(ctx, ...) dfa_log((ctx), DFA_LOG_WARN, __VA_ARGS__)
#define DFA_LOGI(ctx, ...) dfa_log((ctx), DFA_LOG_INFO, __VA_ARGS__)
#define DFA_LOGD(ctx, ...) dfa_log((ctx), DFA_LOG_DEBUG, __VA_ARGS__)

#endif
