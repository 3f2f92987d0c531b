#include "core/cuda_rt.h"

#include <stdlib.h>
#include <string.h>

#include "core/cuda_check.h"

struct dfa_cuda {
    int device;
    cudaStream_t stream;
    cudaDeviceProp prop;
    /* GPU-time spans: event pairs (created on first use), the accumulator of each pending span */
    cudaEvent_t ev[2 * DFA_CUDA_SPANS];
    double *acc[DFA_CUDA_SPANS];
    int n_ev, n_spans, open;
};

extern "C" dfa_status dfa_cuda_init(dfa_cuda **out, int device, dfa_error *err) {
    *out = NULL;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0)
        DFA_FAIL(err, DFA_ERR_UNSUPPORTED, "no CUDA device available (%s)",
                 e != cudaSuccess ? cudaGetErrorString(e) : "device count is 0");
    if (device < 0 || device >= n)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "CUDA device %d out of range (have %d)", device, n);
    dfa_cuda *cu = (dfa_cuda *)calloc(1, sizeof *cu);
    if (!cu) DFA_FAIL(err, DFA_ERR_OOM, "out of host memory");
    cu->device = device;
    dfa_status s = DFA_OK;
    if ((e = cudaSetDevice(device)) != cudaSuccess ||
        (e = cudaGetDeviceProperties(&cu->prop, device)) != cudaSuccess ||
        (e = cudaStreamCreateWithFlags(&cu->stream, cudaStreamNonBlocking)) != cudaSuccess) {
        s = DFA_SET(err, DFA_ERR_CUDA, "CUDA init on device %d: %s", device, cudaGetErrorString(e));
        free(cu);
        return s;
    }
    *out = cu;
    return DFA_OK;
}

extern "C" void dfa_cuda_free(dfa_cuda *cu) {
    if (!cu) return;
    for (int i = 0; i < cu->n_ev; i++) cudaEventDestroy(cu->ev[i]);
    cudaStreamDestroy(cu->stream);
    free(cu);
}

extern "C" const char *dfa_cuda_device_name(const dfa_cuda *cu) { return cu->prop.name; }
extern "C" int dfa_cuda_sm_count(const dfa_cuda *cu) { return cu->prop.multiProcessorCount; }
extern "C" void *dfa_cuda_stream(const dfa_cuda *cu) { return (void *)cu->stream; }

extern "C" dfa_status dfa_cuda_malloc(dfa_cuda *cu, void **ptr, size_t bytes, dfa_error *err) {
    (void)cu;
    *ptr = NULL;
    cudaError_t e = cudaMalloc(ptr, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        *ptr = NULL;
        cudaGetLastError(); /* clear the sticky-free error */
        DFA_FAIL(err, e == cudaErrorMemoryAllocation ? DFA_ERR_OOM : DFA_ERR_CUDA,
                 "cudaMalloc of %zu bytes failed: %s", bytes, cudaGetErrorString(e));
    }
    return DFA_OK;
}

extern "C" void dfa_cuda_dealloc(dfa_cuda *cu, void *ptr) {
    (void)cu;
    if (ptr) cudaFree(ptr);
}

extern "C" dfa_status dfa_cuda_h2d(dfa_cuda *cu, void *dst, const void *src, size_t bytes, dfa_error *err) {
    DFA_CUDA_TRY(err, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cu->stream));
    DFA_CUDA_TRY(err, cudaStreamSynchronize(cu->stream));
    return DFA_OK;
}

extern "C" dfa_status dfa_cuda_d2h(dfa_cuda *cu, void *dst, const void *src, size_t bytes, dfa_error *err) {
    DFA_CUDA_TRY(err, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, cu->stream));
    DFA_CUDA_TRY(err, cudaStreamSynchronize(cu->stream));
    return DFA_OK;
}

extern "C" dfa_status dfa_cuda_d2d(dfa_cuda *cu, void *dst, const void *src, size_t bytes, dfa_error *err) {
    DFA_CUDA_TRY(err, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cu->stream));
    return DFA_OK;
}

extern "C" dfa_status dfa_cuda_memset(dfa_cuda *cu, void *dst, int value, size_t bytes, dfa_error *err) {
    DFA_CUDA_TRY(err, cudaMemsetAsync(dst, value, bytes, cu->stream));
    return DFA_OK;
}

extern "C" dfa_status dfa_cuda_sync(dfa_cuda *cu, dfa_error *err) {
    DFA_CUDA_TRY(err, cudaStreamSynchronize(cu->stream));
    return DFA_OK;
}

extern "C" dfa_status dfa_cuda_mem_info(dfa_cuda *cu, size_t *free_b, size_t *total_b, dfa_error *err) {
    (void)cu;
    DFA_CUDA_TRY(err, cudaMemGetInfo(free_b, total_b));
    return DFA_OK;
}

extern "C" dfa_status dfa_cuda_span_begin(dfa_cuda *cu, dfa_error *err) {
    if (cu->open) DFA_FAIL(err, DFA_ERR_INTERNAL, "CUDA span begun twice without an end");
    if (cu->n_spans == DFA_CUDA_SPANS) DFA_TRY(dfa_cuda_spans_collect(cu, err));
    const int i = 2 * cu->n_spans;
    while (cu->n_ev < i + 2) {
        DFA_CUDA_TRY(err, cudaEventCreate(&cu->ev[cu->n_ev]));
        cu->n_ev++;
    }
    DFA_CUDA_TRY(err, cudaEventRecord(cu->ev[i], cu->stream));
    cu->open = 1;
    return DFA_OK;
}

extern "C" dfa_status dfa_cuda_span_end(dfa_cuda *cu, double *acc, dfa_error *err) {
    if (!cu->open) DFA_FAIL(err, DFA_ERR_INTERNAL, "CUDA span ended without a begin");
    DFA_CUDA_TRY(err, cudaEventRecord(cu->ev[2 * cu->n_spans + 1], cu->stream));
    cu->acc[cu->n_spans++] = acc;
    cu->open = 0;
    return DFA_OK;
}

extern "C" dfa_status dfa_cuda_spans_collect(dfa_cuda *cu, dfa_error *err) {
    if (cu->open) DFA_FAIL(err, DFA_ERR_INTERNAL, "CUDA spans collected inside an open span");
    const int n = cu->n_spans;
    cu->n_spans = 0;
    if (n == 0) return DFA_OK;
    DFA_CUDA_TRY(err, cudaEventSynchronize(cu->ev[2 * n - 1]));
    for (int i = 0; i < n; i++) {
        float ms = 0.0f;
        DFA_CUDA_TRY(err, cudaEventElapsedTime(&ms, cu->ev[2 * i], cu->ev[2 * i + 1]));
        if (cu->acc[i]) *cu->acc[i] += 1e-3 * (double)ms;
    }
    return DFA_OK;
}

extern "C" void dfa_cuda_spans_drop(dfa_cuda *cu) {
    if (cu) cu->n_spans = 0, cu->open = 0;
}

struct dfa_cuda_graph {
    cudaGraphExec_t exec;
};

extern "C" dfa_status dfa_cuda_capture_begin(dfa_cuda *cu, dfa_error *err) {
    DFA_CUDA_TRY(err, cudaStreamBeginCapture(cu->stream, cudaStreamCaptureModeThreadLocal));
    return DFA_OK;
}

extern "C" dfa_status dfa_cuda_capture_end(dfa_cuda *cu, dfa_cuda_graph **out, dfa_error *err) {
    *out = NULL;
    cudaGraph_t g = NULL;
    DFA_CUDA_TRY(err, cudaStreamEndCapture(cu->stream, &g));
    dfa_cuda_graph *r = (dfa_cuda_graph *)calloc(1, sizeof *r);
    cudaError_t e = r ? cudaGraphInstantiate(&r->exec, g, 0) : cudaErrorMemoryAllocation;
    cudaGraphDestroy(g);
    if (e != cudaSuccess) {
        free(r);
        DFA_FAIL(err, DFA_ERR_CUDA, "cudaGraphInstantiate: %s", cudaGetErrorString(e));
    }
    *out = r;
    return DFA_OK;
}

extern "C" void dfa_cuda_capture_abort(dfa_cuda *cu) {
    cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(cu->stream, &st) == cudaSuccess && st != cudaStreamCaptureStatusNone) {
        cudaGraph_t g = NULL;
        if (cudaStreamEndCapture(cu->stream, &g) == cudaSuccess && g) cudaGraphDestroy(g);
    }
    cudaGetLastError(); /* the capture's error is reported by the caller */
}

extern "C" dfa_status dfa_cuda_graph_launch(dfa_cuda *cu, dfa_cuda_graph *g, dfa_error *err) {
    DFA_CUDA_TRY(err, cudaGraphLaunch(g->exec, cu->stream));
    return DFA_OK;
}

extern "C" void dfa_cuda_graph_free(dfa_cuda_graph *g) {
    if (!g) return;
    cudaGraphExecDestroy(g->exec);
    free(g);
}
