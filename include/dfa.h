/* dfa.h - public C API of libdfa: DiTFastAttn / DiTFastAttnV2 attention compression
 * and the diffusion-transformer engine that runs it.
 *
 * Everything lives behind an opaque context. Every call returns a dfa_status; on failure
 * dfa_ctx_error() gives a message that names the file:line where the error was raised and
 * what was wrong (file, tensor, expected vs got). The library never exits or aborts on
 * bad input. */
#ifndef DFA_H
#define DFA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DFA_VERSION_MAJOR 0
#define DFA_VERSION_MINOR 1
#define DFA_VERSION_PATCH 0

typedef enum dfa_status {
    DFA_OK = 0,
    DFA_ERR_INVALID_ARG,  /* a caller passed an impossible value */
    DFA_ERR_IO,           /* open/read/write/mmap failed */
    DFA_ERR_FORMAT,       /* a file is malformed (safetensors, json, plan, png) */
    DFA_ERR_NOT_FOUND,    /* a named tensor / key / file is missing */
    DFA_ERR_SHAPE,        /* shapes or dtypes disagree */
    DFA_ERR_OOM,          /* host or device allocation failed */
    DFA_ERR_CUDA,         /* a CUDA / cuBLAS call failed */
    DFA_ERR_UNSUPPORTED,  /* valid request this build cannot serve (e.g. no CUDA) */
    DFA_ERR_INTERNAL      /* a bug: an invariant did not hold */
} dfa_status;

typedef enum dfa_backend {
    DFA_BACKEND_CPU = 0,
    DFA_BACKEND_CUDA = 1
} dfa_backend;

typedef enum dfa_log_level {
    DFA_LOG_ERROR = 0,
    DFA_LOG_WARN = 1,
    DFA_LOG_INFO = 2,
    DFA_LOG_DEBUG = 3
} dfa_log_level;

typedef struct dfa_ctx dfa_ctx;

typedef struct dfa_ctx_params {
    dfa_backend backend;     /* CPU or CUDA */
    int n_threads;           /* CPU threads; <= 0 means all cores */
    int cuda_device;         /* CUDA device ordinal */
    dfa_log_level log_level; /* messages above this level are dropped */
    /* optional log sink; NULL writes to stderr */
    void (*log_fn)(dfa_log_level level, const char *msg, void *user);
    void *log_user;
} dfa_ctx_params;

/* Defaults: CPU backend, all cores, log level INFO, stderr. */
dfa_ctx_params dfa_ctx_default_params(void);

/* Create a context. On failure *out is NULL and, if err_buf is not NULL, the message is
 * copied there (err_len bytes at most, NUL-terminated). */
dfa_status dfa_ctx_init(dfa_ctx **out, const dfa_ctx_params *params, char *err_buf,
                        size_t err_len);
void dfa_ctx_free(dfa_ctx *ctx);

/* The message of the last failed call on this context ("" if none). */
const char *dfa_ctx_error(const dfa_ctx *ctx);
dfa_backend dfa_ctx_backend(const dfa_ctx *ctx);

/* Short name of a status code, e.g. "format error". */
const char *dfa_status_str(dfa_status s);
const char *dfa_version(void);

/* 1 when this build has CUDA code compiled in (it may still find no GPU at run time). */
int dfa_has_cuda(void);

#ifdef __cplusplus
}
#endif
#endif /* DFA_H */
