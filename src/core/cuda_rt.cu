#include "core/cuda_rt.h"

#include <stdlib.h>
#include <string.h>

#include "core/cuda_check.h"

struct dfa_cuda {
    int device;
    cudaStream_t stream;
    cudaDeviceProp prop;
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
