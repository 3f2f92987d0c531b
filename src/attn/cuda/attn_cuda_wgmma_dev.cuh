/* attn_cuda_wgmma_dev.cuh - Hopper (sm_90a) pieces shared by the wgmma attention kernels
 * (attn_cuda_wgmma.cu: variants 2, 3 and 5): wgmma wrappers, fences, mbarriers, TMA loads, the
 * key-range walker, and the host's TMA tensor maps. Device
 * helpers are guarded so that the compute_90 PTX pass sees none of the sm_90a-only
 * instructions. */
#ifndef DFA_ATTN_CUDA_WGMMA_DEV_CUH
#define DFA_ATTN_CUDA_WGMMA_DEV_CUH

#include <cuda.h>
#include <cudaTypedefs.h>

#include <type_traits>

#include "attn/cuda/attn_cuda_dev.cuh"

#include "attn/cuda/attn_cuda_wgmma.inc"

namespace {

constexpr int BN = 128; /* keys per step */

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
ACU_DEF_SS_N128(wgmma_ss_n128_bf16, "bf16")
ACU_DEF_SS_N128(wgmma_ss_n128_f16, "f16")
ACU_DEF_RS_N128(wgmma_rs_n128_bf16, "bf16")
ACU_DEF_RS_N128(wgmma_rs_n128_f16, "f16")
ACU_DEF_RS_N64(wgmma_rs_n64_bf16, "bf16")
ACU_DEF_RS_N64(wgmma_rs_n64_f16, "f16")

template <typename T>
__device__ __forceinline__ void mma_qk(float *s, uint64_t da, uint64_t db, int acc) {
    if constexpr (sizeof(T) == 2 && std::is_same<T, __nv_bfloat16>::value)
        wgmma_ss_n128_bf16(s, da, db, acc);
    else
        wgmma_ss_n128_f16(s, da, db, acc);
}
template <int D, typename T>
__device__ __forceinline__ void mma_pv(float *o, const uint32_t *a, uint64_t db) {
    constexpr bool bf = std::is_same<T, __nv_bfloat16>::value;
    if constexpr (D == 128) {
        if constexpr (bf) wgmma_rs_n128_bf16(o, a, db, 1);
        else wgmma_rs_n128_f16(o, a, db, 1);
    } else {
        if constexpr (bf) wgmma_rs_n64_bf16(o, a, db, 1);
        else wgmma_rs_n64_f16(o, a, db, 1);
    }
}

__device__ __forceinline__ void wg_fence() {
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wg_commit() {
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void wg_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
/* keep the compiler from touching accumulators between issue and wait */
template <int N>
__device__ __forceinline__ void reg_fence(float *r) {
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+f"(r[i])::"memory");
}

template <int N>
__device__ __forceinline__ void reg_fence_u(uint32_t *r) {
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+r"(r[i])::"memory");
}

__device__ __forceinline__ void mbar_init(uint32_t bar, int count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count));
}
__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
/* try_wait with a suspend-time hint: a waiting thread sleeps until the phase completes (or the
 * hint, ~10 ms, runs out) instead of spinning; without it the producer's wait for a free stage
 * spun 65 M times in one 5 ms launch (Nsight, session 5), taking issue slots from the consumer
 * warps on its sub-core. */
__device__ __forceinline__ void mbar_wait(uint32_t bar, int parity) {
    uint32_t done = 0;
    while (!done) {
        asm volatile(
            "{\n.reg .pred p;\n"
            "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2, 0x989680;\n"
            "selp.u32 %0, 1, 0, p;\n}\n"
            : "=r"(done)
            : "r"(bar), "r"(parity)
            : "memory");
    }
}
__device__ __forceinline__ void tma_load(uint32_t dst, const CUtensorMap *map, int c0, int c1, int c2, uint32_t bar) {
    asm volatile(
        "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];\n" ::"r"(dst),
        "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(bar)
        : "memory");
}

__device__ __forceinline__ float ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

/* wgmma shared-memory descriptor, 128-byte swizzle. */
__device__ __forceinline__ uint64_t desc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
    return (uint64_t)((addr & 0x3FFFF) >> 4) | ((uint64_t)((lbo >> 4) & 0x3FFF) << 16) |
           ((uint64_t)((sbo >> 4) & 0x3FFF) << 32) | (1ULL << 62);
}

/* The same descriptor in two words: the low one (address / 16 in bits 0-13, leading byte offset
 * in 16-29) changes per k-slice by a constant added to the address field (shared memory < 256 KB:
 * no carry out of it); the high one (stride byte offset, swizzle mode) is a constant. */
__device__ __forceinline__ uint32_t desc_lo(uint32_t addr, uint32_t lbo) {
    return ((addr & 0x3FFFF) >> 4) | (((lbo >> 4) & 0x3FFF) << 16);
}
__device__ __forceinline__ uint64_t desc_join(uint32_t lo, uint32_t sbo) {
    uint64_t d;
    asm("mov.b64 %0, {%1, %2};\n" : "=l"(d) : "r"(lo), "r"(((sbo >> 4) & 0x3FFF) | (1u << 30)));
    return d;
}

/* An idle consumer warpgroup's pass over an item it has no rows of (attn_cuda_wgmma.cu, NC = 2
 * and 3): every thread waits for each of the item's K/V stage fills and releases the stage,
 * as an active warpgroup does, global steps g0 .. g0 + n_steps - 1 of an ST-stage ring. kf, vf,
 * ke, ve: stage 0's k_full, v_full, k_empty, v_empty barriers (stage s at + 8 s). Not skipping
 * is the point: parity waits only tell phases apart mod 2, so every waiter must have waited on
 * a stage's previous fill before it waits on the next one. A warpgroup that skipped an item (with
 * another one arriving on "empty" in its stead) could, at its next item's first wait, see a
 * stage whose fill of the skipped item is still in flight and pass one phase early
 * (docs/DESIGN.md). Costs the idle warpgroup only barrier waits. */
template <int ST>
__device__ __forceinline__ void acu_walk_stages(uint32_t kf, uint32_t vf, uint32_t ke, uint32_t ve, int g0,
                                                int n_steps) {
    for (int g = g0; g < g0 + n_steps; g++) {
        const uint32_t s8 = 8 * (g % ST);
        const int ph = (g / ST) & 1;
        mbar_wait(kf + s8, ph);
        mbar_arrive(ke + s8);
        mbar_wait(vf + s8, ph);
        mbar_arrive(ve + s8);
    }
}

/* Walks an item's key ranges in steps of BN keys; the current range's end stays in a register
 * (reading it from global memory every step put a load on the softmax's path). */
struct walker {
    const int2 *r;
    int n_r, ri, k, end;
    __device__ walker(const int2 *ranges, int n) : r(ranges), n_r(n), ri(0), k(ranges[0].x), end(ranges[0].y) {}
    __device__ int valid() const { return end - k < BN ? end - k : BN; }
    __device__ void next() {
        k += BN;
        if (k >= end && ri + 1 < n_r) {
            const int2 x = r[++ri];
            k = x.x;
            end = x.y;
        }
    }
};
#endif

typedef PFN_cuTensorMapEncodeTiled_v12000 encode_fn;

/* [rows, heads, D] tensor, boxes of 64 columns x box_rows rows, 128-byte swizzle, zero fill */
cudaError_t make_map(encode_fn enc, CUtensorMap *m, const void *ptr, int dtype, int n_rows, int n_heads, int D,
                     int box_rows = 128) {
    cuuint64_t dims[3] = {(cuuint64_t)D, (cuuint64_t)n_heads, (cuuint64_t)n_rows};
    cuuint64_t strides[2] = {(cuuint64_t)D * 2, (cuuint64_t)n_heads * D * 2};
    cuuint32_t box[3] = {64, 1, (cuuint32_t)box_rows};
    cuuint32_t estr[3] = {1, 1, 1};
    CUresult r = enc(m, dtype == DFA_ATTN_CUDA_BF16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
                     3, const_cast<void *>(ptr), dims, strides, box, estr, CU_TENSOR_MAP_INTERLEAVE_NONE,
                     CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                     CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    return r == CUDA_SUCCESS ? cudaSuccess : cudaErrorInvalidValue;
}

/* cuTensorMapEncodeTiled through the runtime (no link against libcuda) */
inline cudaError_t get_encode(encode_fn *out) {
    void *fn = nullptr;
    cudaDriverEntryPointQueryResult q;
    cudaError_t e = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q);
    if (e != cudaSuccess) return e;
    if (q != cudaDriverEntryPointSuccess || !fn) return cudaErrorNotSupported;
    *out = reinterpret_cast<encode_fn>(fn);
    return cudaSuccess;
}

} // namespace

#endif
