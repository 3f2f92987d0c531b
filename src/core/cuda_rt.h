/* cuda_rt.h - the CUDA runtime behind a C interface. Implemented in cuda_rt.cu when nvcc is
 * present, else in cuda_stub.c, where every call returns DFA_ERR_UNSUPPORTED. */
#ifndef DFA_CORE_CUDA_RT_H
#define DFA_CORE_CUDA_RT_H

#include <stddef.h>

#include "core/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dfa_cuda dfa_cuda; /* device ordinal, stream, properties */

dfa_status dfa_cuda_init(dfa_cuda **out, int device, dfa_error *err);
void dfa_cuda_free(dfa_cuda *cu);
const char *dfa_cuda_device_name(const dfa_cuda *cu);
int dfa_cuda_sm_count(const dfa_cuda *cu);
void *dfa_cuda_stream(const dfa_cuda *cu); /* cudaStream_t */

dfa_status dfa_cuda_malloc(dfa_cuda *cu, void **ptr, size_t bytes, dfa_error *err);
void dfa_cuda_dealloc(dfa_cuda *cu, void *ptr);
dfa_status dfa_cuda_h2d(dfa_cuda *cu, void *dst, const void *src, size_t bytes, dfa_error *err);
dfa_status dfa_cuda_d2h(dfa_cuda *cu, void *dst, const void *src, size_t bytes, dfa_error *err);
dfa_status dfa_cuda_d2d(dfa_cuda *cu, void *dst, const void *src, size_t bytes, dfa_error *err);
dfa_status dfa_cuda_memset(dfa_cuda *cu, void *dst, int value, size_t bytes, dfa_error *err);
dfa_status dfa_cuda_sync(dfa_cuda *cu, dfa_error *err);
/* GPU-time spans on the stream (attention timers): span_begin / span_end record CUDA events
 * around work enqueued in between, with no host synchronisation; dfa_cuda_spans_collect waits for
 * the last event once and adds each span's elapsed seconds to the double that its span_end named
 * (every such double must outlive the collect: models collect at the end of each forward, after
 * their download has synchronised anyway). A span measures the stream's time from reaching the
 * begin event to reaching the end event (GPU time, including any gap the host leaves in the
 * queue). DFA_CUDA_SPANS spans are pending at most: a full pool is collected (one sync) first.
 * spans_drop forgets the pending spans (error paths). */
#define DFA_CUDA_SPANS 1024
dfa_status dfa_cuda_span_begin(dfa_cuda *cu, dfa_error *err);
dfa_status dfa_cuda_span_end(dfa_cuda *cu, double *acc, dfa_error *err);
dfa_status dfa_cuda_spans_collect(dfa_cuda *cu, dfa_error *err);
void dfa_cuda_spans_drop(dfa_cuda *cu);
/* CUDA Graphs: capture_begin puts the stream in capture mode (no synchronisation, no pageable
 * copies, no allocation until capture_end); capture_end ends it and instantiates the graph into
 * *out; capture_abort ends a failed capture and drops what was captured; graph_launch replays
 * it on the stream. */
typedef struct dfa_cuda_graph dfa_cuda_graph;
dfa_status dfa_cuda_capture_begin(dfa_cuda *cu, dfa_error *err);
dfa_status dfa_cuda_capture_end(dfa_cuda *cu, dfa_cuda_graph **out, dfa_error *err);
void dfa_cuda_capture_abort(dfa_cuda *cu);
dfa_status dfa_cuda_graph_launch(dfa_cuda *cu, dfa_cuda_graph *g, dfa_error *err);
void dfa_cuda_graph_free(dfa_cuda_graph *g);
/* Free and total device memory in bytes. */
dfa_status dfa_cuda_mem_info(dfa_cuda *cu, size_t *free_b, size_t *total_b, dfa_error *err);

#ifdef __cplusplus
}
#endif
#endif
