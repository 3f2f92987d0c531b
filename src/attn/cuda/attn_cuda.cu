/* attn_cuda.cu - work lists (host) and the run entry point. The attention kernels live in
 * attn_cuda_mma.cu (variant 1) and attn_cuda_wgmma.cu (variants 2, 3); the attn.h semantics
 * (store_out, store_res, ASC) in attn_cuda_heads.cu. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attn/attn.h"
#include "attn/cuda/attn_cuda_int.h"
#include "core/cuda_check.h"

struct dfa_attn_cuda_plan {
    dfa_attn_layout layout;
    int n_heads, variant;
    int n_items, n_ranges;
    void *dev;         /* items then ranges, one allocation */
    acu_item *d_items; /* into dev */
    int2 *d_ranges;
    int *d_counter;
    int has_copy, has_resid;
    int method[ACU_MAX_HEADS];
    dfa_attn_cuda_plan_info info;
};

extern "C" dfa_status dfa_attn_cuda_plan_build(dfa_attn_cuda_plan **out, const dfa_attn_layout *layout, int n_heads,
                                               const int *method, const int *window, int variant, void *stream,
                                               dfa_error *err) {
    *out = NULL;
    if (n_heads < 1 || n_heads > ACU_MAX_HEADS)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda plan: n_heads=%d (1..%d)", n_heads, ACU_MAX_HEADS);
    if (variant == DFA_ATTN_CUDA_V_DEFAULT) variant = DFA_ATTN_CUDA_V_MMA;
    if (variant != DFA_ATTN_CUDA_V_MMA && variant != DFA_ATTN_CUDA_V_WGMMA && variant != DFA_ATTN_CUDA_V_WGMMA_GRID)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda plan: unknown variant %d (expected 1, 2 or 3)", variant);
    dfa_acu_worklist wl;
    DFA_TRY(dfa_acu_worklist_build(&wl, layout, n_heads, method, window, err));
    static_assert(sizeof(dfa_acu_range) == sizeof(int2), "ranges are read as int2 on the device");
    const size_t items_pad = ((size_t)wl.n_items * sizeof(acu_item) + 15) & ~(size_t)15;
    const size_t ranges_pad = ((size_t)(wl.n_ranges ? wl.n_ranges : 1) * sizeof(int2) + 15) & ~(size_t)15;
    const size_t bytes = items_pad + ranges_pad + 16; /* + the work counter */
    dfa_attn_cuda_plan *p = (dfa_attn_cuda_plan *)calloc(1, sizeof *p);
    char *flat = (char *)calloc(1, bytes);
    if (!p || !flat) {
        dfa_acu_worklist_free(&wl);
        free(p);
        free(flat);
        DFA_FAIL(err, DFA_ERR_OOM, "attn_cuda plan: out of host memory");
    }
    memcpy(flat, wl.items, (size_t)wl.n_items * sizeof(acu_item));
    memcpy(flat + items_pad, wl.ranges, (size_t)wl.n_ranges * sizeof(dfa_acu_range));
    cudaError_t e = cudaMalloc(&p->dev, bytes);
    if (e == cudaSuccess) e = cudaMemcpyAsync(p->dev, flat, bytes, cudaMemcpyHostToDevice, (cudaStream_t)stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize((cudaStream_t)stream);
    free(flat);
    if (e != cudaSuccess) {
        dfa_acu_worklist_free(&wl);
        if (p->dev) cudaFree(p->dev);
        free(p);
        DFA_FAIL(err, DFA_ERR_CUDA, "attn_cuda plan: upload of %zu bytes failed: %s", bytes, cudaGetErrorString(e));
    }
    p->layout = *layout;
    p->n_heads = n_heads;
    p->variant = variant;
    p->n_items = wl.n_items;
    p->n_ranges = wl.n_ranges;
    p->d_items = (acu_item *)p->dev;
    p->d_ranges = (int2 *)((char *)p->dev + items_pad);
    p->d_counter = (int *)((char *)p->dev + items_pad + ranges_pad);
    for (int h = 0; h < n_heads; h++) p->method[h] = method[h];
    p->has_copy = wl.has_copy;
    p->has_resid = wl.has_resid;
    p->info = wl.info;
    p->info.variant = variant;
    dfa_acu_worklist_free(&wl);
    *out = p;
    return DFA_OK;
}

extern "C" void dfa_attn_cuda_plan_free(dfa_attn_cuda_plan *p) {
    if (!p) return;
    if (p->dev) cudaFree(p->dev);
    free(p);
}

extern "C" void dfa_attn_cuda_plan_get_info(const dfa_attn_cuda_plan *p, dfa_attn_cuda_plan_info *info) {
    *info = p->info;
}

extern "C" int dfa_attn_cuda_variant_ok(int variant) {
    if (variant == DFA_ATTN_CUDA_V_MMA || variant == DFA_ATTN_CUDA_V_DEFAULT) return 1;
    if (variant != DFA_ATTN_CUDA_V_WGMMA && variant != DFA_ATTN_CUDA_V_WGMMA_GRID) return 0;
    int dev = 0, major = 0, minor = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) return 0;
    if (cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) return 0;
    return major == 9 && minor == 0;
}

dfa_status acu_check_common(int dtype, int batch, int head_dim, dfa_error *err) {
    if (dtype != DFA_ATTN_CUDA_BF16 && dtype != DFA_ATTN_CUDA_F16)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda: dtype %d (expected bf16=0 or f16=1)", dtype);
    if (head_dim != 64 && head_dim != 128)
        DFA_FAIL(err, DFA_ERR_UNSUPPORTED, "attn_cuda: head_dim %d (supported: 64, 128)", head_dim);
    if (batch < 1 || batch > 65535) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda: batch %d", batch);
    return DFA_OK;
}

extern "C" dfa_status dfa_attn_cuda_run(const dfa_attn_cuda_plan *p, const dfa_attn_cuda_args *a, dfa_error *err) {
    DFA_TRY(acu_check_common(a->dtype, a->batch, a->head_dim, err));
    if (!a->q || !a->k || !a->v || !a->out) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda: NULL q/k/v/out");
    acu_params prm;
    memset(&prm, 0, sizeof prm);
    for (int h = 0; h < p->n_heads; h++) {
        const int m = p->method[h];
        const void *c = m == DFA_ATTN_CACHE && a->head_cache ? a->head_cache[h] : NULL;
        const void *r = m == DFA_ATTN_ARROW_RS && a->head_resid ? a->head_resid[h] : NULL;
        if (m == DFA_ATTN_CACHE && !c)
            DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda: head %d is CACHE but has no cache buffer", h);
        if (m == DFA_ATTN_ARROW_RS && !r)
            DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda: head %d is ARROW_RS but has no residual buffer", h);
        if (((uintptr_t)c & 15) || ((uintptr_t)r & 15))
            DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda: head %d cache/residual not 16-byte aligned", h);
        prm.cache[h] = c;
        prm.resid[h] = r;
    }
    const void *ptrs[4] = {a->q, a->k, a->v, a->out};
    for (int i = 0; i < 4; i++)
        if (((uintptr_t)ptrs[i] & 15) != 0)
            DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda: tensor %d not 16-byte aligned", i);
    if ((int64_t)p->n_items * a->batch > 0x7fffffffLL)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda: %d items x batch %d too many", p->n_items, a->batch);
    const int wgmma = p->variant == DFA_ATTN_CUDA_V_WGMMA || p->variant == DFA_ATTN_CUDA_V_WGMMA_GRID;
    if (wgmma && !dfa_attn_cuda_variant_ok(p->variant))
        DFA_FAIL(err, DFA_ERR_UNSUPPORTED, "attn_cuda: variant %d (wgmma) needs an sm_90 GPU", p->variant);
    prm.q = a->q;
    prm.k = a->k;
    prm.v = a->v;
    prm.o = a->out;
    prm.items = p->d_items;
    prm.ranges = p->d_ranges;
    prm.counter = p->d_counter;
    prm.n_items = p->n_items;
    prm.batch = a->batch;
    prm.n_tokens = dfa_layout_tokens(&p->layout);
    prm.n_heads = p->n_heads;
    float scale = a->scale > 0 ? a->scale : 1.0f / sqrtf((float)a->head_dim);
    prm.scale_log2 = scale * 1.4426950408889634f;
    cudaStream_t st = (cudaStream_t)a->stream;
    if (p->n_items == 0) return DFA_OK; /* every head DFA_ATTN_CUDA_NONE */
    if (wgmma) DFA_CUDA_TRY(err, cudaMemsetAsync(p->d_counter, 0, sizeof(int), st));
    cudaError_t e = wgmma ? acu_launch_wgmma(prm, a->head_dim, a->dtype, p->variant == DFA_ATTN_CUDA_V_WGMMA, st)
                          : acu_launch_mma(prm, a->head_dim, a->dtype, st);
    if (e != cudaSuccess)
        DFA_FAIL(err, DFA_ERR_CUDA, "attn_cuda: variant %d launch (D=%d, %d items x B=%d) failed: %s", p->variant,
                 a->head_dim, p->n_items, a->batch, cudaGetErrorString(e));
    return DFA_OK;
}

