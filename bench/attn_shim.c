/* attn_shim.c - a C interface to the fused attention kernel for bench/attn_interleave.py
 * (ctypes), so that our kernel and PyTorch's (cuDNN SDPA, FlexAttention) are timed
 * alternately in one process on the same tensors. Built into a shared library by
 * bench/attn_interleave.sh (gcc/nvcc directly, like bench/attn_gpu.sh's fallback).
 *
 * Every function returns 0 on success; on failure a dfa_status (> 0) and, when msg is not NULL,
 * dfa_error's message ("src/x.c:12: what") copied into msg[0 .. msg_len). No globals.
 *
 * Built with -DSHIM_MASK_ONLY (no CUDA, mask.c + error.c only) it has just the mask functions:
 * bench/attn_interleave.py --selftest checks its Python mask and window rule against them. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "attn/mask.h"
#include "core/error.h"
#ifndef SHIM_MASK_ONLY
#include "attn/cuda/attn_cuda.h"
#endif

/* the version of this interface; attn_interleave.py refuses another */
int shim_version(void) {
    return 2;
}

static int shim_msg(const dfa_error *err, dfa_status s, char *msg, int msg_len) {
    if (msg && msg_len > 0) {
        snprintf(msg, (size_t)msg_len, "%s", s != DFA_OK ? err->msg : "");
    }
    return (int)s;
}

static int shim_layout(dfa_attn_layout *l, int n_vis, int n_text, int text_first, int block, int band,
                       dfa_error *err) {
    l->n_vis = n_vis;
    l->n_text = n_text;
    l->text_first = text_first;
    l->block = block;
    l->band = band;
    if (dfa_layout_valid(l) != 0)
        return (int)DFA_SET(err, DFA_ERR_INVALID_ARG, "attn_shim: invalid layout (vis %d, text %d, block %d, band %d)",
                            n_vis, n_text, block, band);
    return DFA_OK;
}

/* keep[q * N + k] = dfa_mask_keep(layout, window, q, k) for every pair, N = n_vis + n_text
 * (small layouts: the caller allocates N * N bytes, n_keep of them). */
int shim_mask_keep(int n_vis, int n_text, int text_first, int block, int band, int window, unsigned char *keep,
                   int64_t n_keep, char *msg, int msg_len) {
    dfa_error err = {DFA_OK, ""};
    dfa_attn_layout l;
    dfa_status s = (dfa_status)shim_layout(&l, n_vis, n_text, text_first, block, band, &err);
    if (s != DFA_OK) return shim_msg(&err, s, msg, msg_len);
    const int64_t n = dfa_layout_tokens(&l);
    if (!keep || n_keep < n * n) {
        s = DFA_SET(&err, DFA_ERR_INVALID_ARG, "attn_shim: keep buffer of %lld bytes, need %lld", (long long)n_keep,
                    (long long)(n * n));
        return shim_msg(&err, s, msg, msg_len);
    }
    for (int64_t q = 0; q < n; q++)
        for (int64_t k = 0; k < n; k++) keep[q * n + k] = (unsigned char)dfa_mask_keep(&l, window, (int)q, (int)k);
    return 0;
}

/* out[0] = dfa_mask_entries(layout, window), out[1] = dfa_mask_full_window(layout),
 * out[2] = the number of tiles */
int shim_mask_info(int n_vis, int n_text, int text_first, int block, int band, int window, int64_t *out, char *msg,
                   int msg_len) {
    dfa_error err = {DFA_OK, ""};
    dfa_attn_layout l;
    dfa_status s = (dfa_status)shim_layout(&l, n_vis, n_text, text_first, block, band, &err);
    if (s != DFA_OK) return shim_msg(&err, s, msg, msg_len);
    dfa_attn_tiles t;
    dfa_layout_tiles(&l, &t);
    out[0] = dfa_mask_entries(&l, window);
    out[1] = dfa_mask_full_window(&l);
    out[2] = t.n_tiles;
    return 0;
}

#ifndef SHIM_MASK_ONLY
/* A plan for one layer: method[h] / window[h] for n_heads heads (dfa_attn_method values, window
 * in tiles as in mask.h), variant as dfa_attn_cuda_plan_build (0: default), uploaded on
 * `stream` (cudaStream_t or NULL). *plan: free it with shim_free. */
int shim_plan(int variant, int n_vis, int n_text, int text_first, int block, int band, int n_heads, const int *method,
              const int *window, void *stream, void **plan, char *msg, int msg_len) {
    dfa_error err = {DFA_OK, ""};
    dfa_attn_layout l;
    *plan = NULL;
    dfa_status s = (dfa_status)shim_layout(&l, n_vis, n_text, text_first, block, band, &err);
    if (s == DFA_OK) {
        dfa_attn_cuda_plan *p = NULL;
        s = dfa_attn_cuda_plan_build(&p, &l, n_heads, method, window, variant, stream, &err);
        if (s == DFA_OK) *plan = p;
    }
    return shim_msg(&err, s, msg, msg_len);
}

/* One launch (asynchronous on `stream`): q, k, v, out [batch, N, H, D] contiguous, dtype
 * 0 = bf16, 1 = fp16; cache / resid only for plans with CACHE / ARROW_RS heads (else NULL). */
int shim_run(void *plan, int dtype, int head_dim, int batch, const void *q, const void *k, const void *v, void *out,
             const void *cache, const void *resid, void *stream, char *msg, int msg_len) {
    dfa_error err = {DFA_OK, ""};
    dfa_attn_cuda_args a = {dtype, batch, head_dim, q, k, v, out, cache, resid, 0.f, stream};
    dfa_status s = dfa_attn_cuda_run((const dfa_attn_cuda_plan *)plan, &a, &err);
    return shim_msg(&err, s, msg, msg_len);
}

/* out[0..5] = n_items, n_copy_items, variant, computed_entries, mask_entries, copied_tokens */
int shim_plan_info(const void *plan, int64_t *out) {
    dfa_attn_cuda_plan_info info;
    dfa_attn_cuda_plan_get_info((const dfa_attn_cuda_plan *)plan, &info);
    out[0] = info.n_items;
    out[1] = info.n_copy_items;
    out[2] = info.variant;
    out[3] = info.computed_entries;
    out[4] = info.mask_entries;
    out[5] = info.copied_tokens;
    return 0;
}

void shim_free(void *plan) {
    dfa_attn_cuda_plan_free((dfa_attn_cuda_plan *)plan);
}

#ifdef DFA_ACU_TRACE
/* trace builds (bench/attn_trace.sh): copy the plan's trace region (the last run's stamps) to host;
 * returns its size in bytes when host is NULL, -1 on a CUDA error */
#include <cuda_runtime.h>

#include "attn/cuda/attn_trace.h"
void *dfa_attn_cuda_plan_trace(const dfa_attn_cuda_plan *p);
int64_t shim_trace(const void *plan, void *host) {
    const size_t n = DFA_ACU_TRACE_BYTES;
    if (!host) return (int64_t)n;
    if (cudaDeviceSynchronize() != cudaSuccess) return -1;
    return cudaMemcpy(host, dfa_attn_cuda_plan_trace((const dfa_attn_cuda_plan *)plan), n, cudaMemcpyDeviceToHost) ==
                   cudaSuccess
               ? (int64_t)n
               : -1;
}
/* zero the plan's trace region (before the run to be read: a CTA's items vary from run to run) */
int shim_trace_clear(const void *plan) {
    return cudaMemset(dfa_attn_cuda_plan_trace((const dfa_attn_cuda_plan *)plan), 0, DFA_ACU_TRACE_BYTES) ==
                   cudaSuccess
               ? 0
               : -1;
}
#endif

/* 1 if this GPU runs the variant (dfa_attn_cuda_variant_ok) */
int shim_variant_ok(int variant) {
    return dfa_attn_cuda_variant_ok(variant);
}
#endif
