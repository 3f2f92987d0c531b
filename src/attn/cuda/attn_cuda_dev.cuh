/* attn_cuda_dev.cuh - device helpers shared by the attention kernel variants. */
#ifndef DFA_ATTN_CUDA_DEV_CUH
#define DFA_ATTN_CUDA_DEV_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "attn/cuda/attn_cuda_int.h"

__device__ __forceinline__ uint32_t acu_smem(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* 16-byte async copy global -> shared; zero-fills when !valid (src must still be a mapped
 * address). */
__device__ __forceinline__ void acu_cp16(uint32_t dst, const void *src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0)
                 : "memory");
}
__device__ __forceinline__ void acu_cp_commit() {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void acu_cp_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

template <typename T>
struct acu_pack;
template <>
struct acu_pack<__nv_bfloat16> {
    static __device__ __forceinline__ uint32_t two(float a, float b) {
        __nv_bfloat162 v = __floats2bfloat162_rn(a, b);
        return *reinterpret_cast<uint32_t *>(&v);
    }
    static __device__ __forceinline__ float2 unpack(uint32_t x) {
        __nv_bfloat162 v = *reinterpret_cast<__nv_bfloat162 *>(&x);
        return __bfloat1622float2(v);
    }
};
template <>
struct acu_pack<__half> {
    static __device__ __forceinline__ uint32_t two(float a, float b) {
        __half2 v = __floats2half2_rn(a, b);
        return *reinterpret_cast<uint32_t *>(&v);
    }
    static __device__ __forceinline__ float2 unpack(uint32_t x) {
        __half2 v = *reinterpret_cast<__half2 *>(&x);
        return __half22float2(v);
    }
};

/* Swizzled tile in shared memory: rows of D elements, 16-byte chunk c of row r stored at
 * chunk c ^ (r & 7) (conflict-free ldmatrix and cp.async). Offsets in elements. */
template <int D>
__device__ __forceinline__ int acu_swz(int row, int chunk) {
    return row * D + ((chunk ^ (row & 7)) << 3);
}


/* CACHE item: copy rows [q0, q0+q_len) of head h from the cache into the output. d: the head
 * dim of the tensors (a kernel padded to D columns passes the real one). */
template <int D>
__device__ __forceinline__ void acu_copy_item(const acu_params &p, const acu_item &it, int b, int tid, int nthr,
                                              int d = D) {
    const size_t tok = (size_t)p.n_heads * d;
    const size_t base = ((size_t)b * p.n_tokens + it.q0) * tok + (size_t)it.head * d;
    const uint4 *src = reinterpret_cast<const uint4 *>(reinterpret_cast<const uint16_t *>(p.cache) + base);
    uint4 *dst = reinterpret_cast<uint4 *>(reinterpret_cast<uint16_t *>(p.o) + base);
    const int cpr = D / 8, tokv = (int)(tok / 8); /* compile-time division; chunks >= d/8 skipped */
    for (int i = tid; i < it.q_len * cpr; i += nthr) {
        int r = i / cpr, c = i % cpr;
        if (c >= d / 8) continue;
        dst[(size_t)r * tokv + c] = src[(size_t)r * tokv + c];
    }
}

/* Shared-memory layouts of an output tile of BM rows x D columns (offsets in elements):
 * ACU_LAYOUT_ROWS: rows of D, 16-byte chunk c of row r at c ^ (r & 7) (variant 1);
 * ACU_LAYOUT_TMA: 64-column blocks of [BM][64], the 128-byte swizzle of TMA/wgmma (variant 2). */
enum { ACU_LAYOUT_ROWS = 0, ACU_LAYOUT_TMA = 1 };
template <int D, int LAYOUT>
__device__ __forceinline__ int acu_tile_off(int row, int chunk) {
    if (LAYOUT == ACU_LAYOUT_ROWS) return row * D + ((chunk ^ (row & 7)) << 3);
    return (chunk >> 3) * ACU_BM * 64 + row * 64 + (((chunk & 7) ^ (row & 7)) << 3);
}

/* v (8 packed values) += rv (8 packed values): the ARROW_RS residual add */
template <typename T>
__device__ __forceinline__ void acu_add8v(uint4 &v, const uint4 &rv) {
    uint32_t *pv = reinterpret_cast<uint32_t *>(&v);
    const uint32_t *pr = reinterpret_cast<const uint32_t *>(&rv);
#pragma unroll
    for (int j = 0; j < 4; j++) {
        float2 x = acu_pack<T>::unpack(pv[j]), y = acu_pack<T>::unpack(pr[j]);
        pv[j] = acu_pack<T>::two(x.x + y.x, x.y + y.y);
    }
}
/* v += the 8 values at src (16-byte aligned) */
template <typename T>
__device__ __forceinline__ void acu_add8(uint4 &v, const T *src) {
    uint4 rv = *reinterpret_cast<const uint4 *>(src);
    acu_add8v<T>(v, rv);
}


/* Epilogue: rows [r0, min(r1, q_len)) of the output tile (bf16/f16 in shared memory, D columns)
 * to global memory with 16-byte stores, adding the residual for ARROW_RS items. d <= D: the head
 * dim of the tensors; only its columns are stored. */
template <int D, int LAYOUT, typename T>
__device__ __forceinline__ void acu_store_tile(const acu_params &p, const acu_item &it, int b, const T *s_o, int tid,
                                               int nthr, int r0, int r1, int d = D) {
    const size_t tok = (size_t)p.n_heads * d;
    const size_t base = ((size_t)b * p.n_tokens + it.q0) * tok + (size_t)it.head * d;
    T *dst = reinterpret_cast<T *>(p.o) + base + (size_t)(it.flags >> ACU_ITEM_SLOT_SHIFT) * p.slot_stride;
    const T *res = (it.flags & ACU_ITEM_RESID) ? reinterpret_cast<const T *>(p.resid) + base : nullptr;
    const int cpr = D / 8; /* compile-time division; chunks >= d/8 (padding) skipped */
    if (r1 > it.q_len) r1 = it.q_len;
    for (int i = tid; i < (r1 - r0) * cpr; i += nthr) {
        int r = r0 + i / cpr, c = i % cpr;
        if (c >= d / 8) continue;
        uint4 v = *reinterpret_cast<const uint4 *>(s_o + acu_tile_off<D, LAYOUT>(r, c));
        if (res) acu_add8<T>(v, res + (size_t)r * tok + c * 8);
        *reinterpret_cast<uint4 *>(dst + (size_t)r * tok + c * 8) = v;
    }
}

/* Ring lists: row `row` of the item's log2-sum-exp2 of scaled scores, m the row max in raw score
 * units and l the sum of exp2((s - m) * scale_log2) (-inf for a row without keys). */
__device__ __forceinline__ void acu_store_lse(const acu_params &p, const acu_item &it, int b, int row, float m,
                                              float l) {
    if (row >= it.q_len) return;
    const size_t slot = (size_t)(it.flags >> ACU_ITEM_SLOT_SHIFT);
    const size_t rows = (size_t)p.batch * p.n_tokens;
    p.lse[(slot * rows + (size_t)b * p.n_tokens + it.q0 + row) * p.n_heads + it.head] =
        l > 0.f ? fmaf(m, p.scale_log2, log2f(l)) : -INFINITY;
}

#endif
