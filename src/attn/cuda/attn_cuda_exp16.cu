/* attn_cuda_exp16.cu - variants 11 and 12 at head dim 64 (experimental): variant 5's kernel
 * (attn_cuda_wgmma3.cu without the ping-pong ring: 1 producer + 3 consumer warpgroups, 192 query
 * rows, 128-key steps, persistent) with a shorter softmax.
 *
 * Why: at D=64 variant 5 is bound by the softmax's instruction issue (Nsight: tensor pipe 50 %,
 * issue slots 54 %, latency-bound); per thread and 128-key step its softmax issues ~64 FMNMX,
 * 64 FFMA, 64 MUFU.EX2, 64 FADD (row sum), 32 F2FP (pack P), 32 FMUL (rescale O). Moving exp2 to
 * the FMA pipe (variants 7/8) made it slower: instructions per score are what costs.
 *   Variant 11: the row sum l on the tensor core. l = P 1, one extra wgmma m64n8k16 per 16-key
 *     slice (A = the P fragments already in registers for P V, B = a 16x8 tile of ones in shared
 *     memory, K-major, 128-byte swizzle: any address of its 1 KB atom holds 1.0), issued with the
 *     P V wgmmas of the step (same commit group) into a 4-register f32 accumulator lacc that is
 *     rescaled by alpha like O. All 8 columns hold the same sums; thread (warp w, lane) holds rows
 *     16 w + lane/4 (lacc[0], lacc[1]) and + 8 (lacc[2], lacc[3]), so the epilogue reads l from
 *     lacc[0] / lacc[2] with no shuffle. Only those two are rescaled: lacc[1] / lacc[3] are never
 *     read (they accumulate unscaled sums of p <= 1, bounded by the key count). The 64 FADDs go;
 *     l is now exactly the sum of the rounded P that multiplies V.
 *   Variant 12: variant 11 + ex2 on packed 16-bit pairs: x = s * scale_log2 - m * scale_log2 in
 *     f32 (FFMA), the pair packed (cvt.rn.bf16x2.f32 / f16x2: one F2FP, the pairs of the P
 *     fragments), then ex2.approx.ftz.bf16x2 (ex2.approx.f16x2 for fp16) gives the P fragment
 *     itself. On sm_90 ptxas (CUDA 13.0) emits TWO MUFU.EX2.BF16 (one per half) and a PRMT for
 *     one packed ex2: the MUFU count does not halve (bench/RESULTS.md, Version 11). The packing of
 *     x runs before the wait for the previous P V, the ex2 after it (it writes the fragments that
 *     P V reads).
 * Everything else (items from the 192-row list, idle warpgroups walking the K/V stages, the
 * epilogue over the warpgroup's own Q rows) is variant 5's, unchanged. */
#include "attn/cuda/attn_cuda_wgmma_dev.cuh"

namespace {

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
/* wgmma m64n8k16, A (64x16) from registers, B (16x8) by descriptor, K-major (no transpose) */
#define ACU_DEF_RS_N8(FN, TY)                                                                                   \
    __device__ __forceinline__ void FN(float *d, const uint32_t *a, uint64_t db) {                             \
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %9, 0;\n"                                                \
                     "wgmma.mma_async.sync.aligned.m64n8k16.f32." TY "." TY                                    \
                     " {%0, %1, %2, %3}, {%4, %5, %6, %7}, %8, p, 1, 1, 0;\n}\n"                               \
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])                                          \
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));                           \
    }
ACU_DEF_RS_N8(wgmma_rs_n8_bf16, "bf16")
ACU_DEF_RS_N8(wgmma_rs_n8_f16, "f16")
#undef ACU_DEF_RS_N8

template <typename T>
__device__ __forceinline__ void mma_sum(float *l, const uint32_t *a, uint64_t db) {
    if constexpr (std::is_same<T, __nv_bfloat16>::value) wgmma_rs_n8_bf16(l, a, db);
    else wgmma_rs_n8_f16(l, a, db);
}

/* 2^x of both 16-bit halves (x already packed): the P fragment */
template <typename T>
__device__ __forceinline__ uint32_t ex2x2(uint32_t x) {
    uint32_t y;
    if constexpr (std::is_same<T, __nv_bfloat16>::value)
        asm("ex2.approx.ftz.bf16x2 %0, %1;\n" : "=r"(y) : "r"(x));
    else
        asm("ex2.approx.f16x2 %0, %1;\n" : "=r"(y) : "r"(x));
    return y;
}
#endif

constexpr int NC = 3;                  /* consumer warpgroups */
constexpr int BM = 64 * NC;            /* 192 query rows per CTA */
constexpr int THREADS = 128 * (NC + 1);
constexpr int D = 64;
constexpr int ST = 4;                  /* K/V stages */
constexpr int Q_BYTES = BM * D * 2;    /* 24 KB */
constexpr int KV_BYTES = BN * D * 2;   /* one of K or V, one stage: 16 KB */
constexpr int TILES = 2 * Q_BYTES + 2 * ST * KV_BYTES; /* Q double-buffered: 176 KB */
constexpr int ONES = 1024;             /* the ones tile (B of the row-sum wgmma): one swizzle atom */
constexpr int SMEM = TILES + ONES + 1024 /* alignment slack */ + 256 /* barriers */;
static_assert(BM == DFA_ACU_BM3, "items of the 192-row list fill one CTA");
static_assert(Q_BYTES % 1024 == 0 && KV_BYTES % 1024 == 0, "128-byte swizzle needs 1 KB aligned tiles");
static_assert(8 * (6 + 4 * ST) + 2 * 4 <= 256, "barriers and slots fit");
static_assert(ONES / 4 <= THREADS, "one word of the ones tile per thread");

template <bool BF16X2, typename T>
__global__ void __launch_bounds__(THREADS, 1)
    attn_exp16_kernel(const __grid_constant__ acu_params p, const __grid_constant__ CUtensorMap tq,
                      const __grid_constant__ CUtensorMap tk, const __grid_constant__ CUtensorMap tv) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    extern __shared__ unsigned char smem_raw[];
    unsigned char *base = reinterpret_cast<unsigned char *>(((uintptr_t)smem_raw + 1023) & ~(uintptr_t)1023);
    const uint32_t sQ = acu_smem(base);        /* [2][BM][64] */
    const uint32_t sK = sQ + 2 * Q_BYTES;      /* [ST][BN][64] */
    const uint32_t sV = sK + ST * KV_BYTES;    /* [ST][BN][64] */
    const uint32_t sOnes = sQ + TILES;         /* 1 KB of 1.0 (1 KB aligned) */
    const uint32_t bars = sOnes + ONES;
    /* barriers: item_full[2], q_full[2], q_empty[2], k_full[ST], v_full[ST], k_empty[ST], v_empty[ST] */
    auto item_full = [&](int q) { return bars + 8 * q; };
    auto q_full = [&](int q) { return bars + 8 * (2 + q); };
    auto q_empty = [&](int q) { return bars + 8 * (4 + q); };
    auto k_full = [&](int s) { return bars + 8 * (6 + s); };
    auto v_full = [&](int s) { return bars + 8 * (6 + ST + s); };
    auto k_empty = [&](int s) { return bars + 8 * (6 + 2 * ST + s); };
    auto v_empty = [&](int s) { return bars + 8 * (6 + 3 * ST + s); };
    int *slot = reinterpret_cast<int *>(base + TILES + ONES + 8 * (6 + 4 * ST)); /* item index per Q buffer */

    const int tid = threadIdx.x;
    const int total = p.n_items * p.batch;
    if (tid < ONES / 4) /* 1.0 in both halves: bf16 0x3F80, fp16 0x3C00 */
        reinterpret_cast<uint32_t *>(base + TILES)[tid] =
            std::is_same<T, __nv_bfloat16>::value ? 0x3F803F80u : 0x3C003C00u;
    /* the generic-proxy stores above are read by wgmma (async proxy) */
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    if (tid == 0) {
        for (int q = 0; q < 2; q++) {
            mbar_init(item_full(q), 1);
            mbar_init(q_full(q), 1);
            mbar_init(q_empty(q), 128 * NC);
        }
        for (int s = 0; s < ST; s++) {
            mbar_init(k_full(s), 1);
            mbar_init(v_full(s), 1);
            mbar_init(k_empty(s), 128 * NC);
            mbar_init(v_empty(s), 128 * NC);
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();
    auto item_steps = [&](const acu_item &it) {
        int n = 0;
        for (int r = 0; r < it.n_r; r++) {
            int2 kr = p.ranges[it.r_off + r];
            n += (kr.y - kr.x + BN - 1) / BN;
        }
        return n;
    };
    const int wg = tid / 128;

    if (wg == 0) {
        asm volatile("setmaxnreg.dec.sync.aligned.u32 32;\n");
        if (tid == 0) {
            int gstep = 0;
            for (int t = 0;; t++) {
                const int qb = t & 1;
                if (t >= 2) mbar_wait(q_empty(qb), ((t >> 1) - 1) & 1);
                const int idx = atomicAdd(p.counter, 1);
                slot[qb] = idx;
                mbar_arrive(item_full(qb));
                if (idx >= total) break;
                const acu_item it = p.items[idx / p.batch];
                if (it.flags & ACU_ITEM_COPY) continue;
                const int row0 = (idx % p.batch) * p.n_tokens; /* batch element's first row in [B*N] */
                mbar_expect_tx(q_full(qb), Q_BYTES);
                tma_load(sQ + qb * Q_BYTES, &tq, 0, it.head, row0 + it.q0, q_full(qb)); /* 192-row box */
                const int n_steps = item_steps(it);
                walker w(p.ranges + it.r_off, it.n_r);
                for (int step = 0; step < n_steps; step++, w.next(), gstep++) {
                    const int s = gstep % ST;
                    const int par = ((gstep / ST) - 1) & 1;
                    if (gstep >= ST) mbar_wait(k_empty(s), par);
                    mbar_expect_tx(k_full(s), KV_BYTES);
                    tma_load(sK + s * KV_BYTES, &tk, 0, it.head, row0 + w.k, k_full(s));
                    if (gstep >= ST) mbar_wait(v_empty(s), par);
                    mbar_expect_tx(v_full(s), KV_BYTES);
                    tma_load(sV + s * KV_BYTES, &tv, 0, it.head, row0 + w.k, v_full(s));
                }
            }
        }
        return;
    }
    asm volatile("setmaxnreg.inc.sync.aligned.u32 160;\n");
    const int ctid = tid - 128;        /* 0..383 */
    const int cw = ctid / 128;         /* consumer warpgroup: rows 64*cw .. */
    const int lane = tid & 31, wq = (ctid / 32) & 3; /* warp within the warpgroup: 16 rows each */
    float o[D / 2];
    float lacc[4]; /* row sums P 1 (m64n8 accumulator): [0] row lane/4, [2] row lane/4 + 8 */
    float m_r[2], alpha[2];
    uint32_t qbuf = sQ;
    float sc[BN / 2];
    uint32_t pa[BN / 16][4];
    uint32_t px[BN / 4]; /* variant 12: x packed in pairs, pair i = elements 2 i, 2 i + 1 of sc */
    auto issue_qk = [&](int s) {
        wg_fence();
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            const uint32_t qa = qbuf + cw * 64 * 128 + kk * 32;
            const uint32_t ka = sK + s * KV_BYTES + kk * 32;
            mma_qk<T>(sc, desc(qa, 16, 1024), desc(ka, 16, 1024), kk > 0);
        }
        wg_commit();
    };
    /* O += P V and l += P 1, one commit group */
    auto issue_pv = [&](int s) {
        wg_fence();
        const uint64_t ones_desc = desc(sOnes, 16, 1024); /* K-major, 8 rows of 128 bytes: every element 1 */
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++) {
            const uint32_t va = sV + s * KV_BYTES + kk * 16 * 128;
            mma_pv<D, T>(o, pa[kk], desc(va, BN * 128, 1024));
            mma_sum<T>(lacc, pa[kk], ones_desc);
        }
        wg_commit();
    };
    /* online softmax in place on sc (variant 5's without the row sum); rows r0 = lane/4 and r0 + 8.
     * Variant 11 leaves p in sc (f32), variant 12 the exponent x packed in pairs: sc[2 i] holds
     * the bits of pair i (elements 2 i, 2 i + 1). */
    auto softmax = [&](int valid) {
        if (valid < BN) {
#pragma unroll
            for (int j = 0; j < BN / 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    if (j * 8 + 2 * (lane & 3) + (e & 1) >= valid) sc[4 * j + e] = -INFINITY;
        }
#pragma unroll
        for (int r = 0; r < 2; r++) {
            float mx = m_r[r];
#pragma unroll
            for (int j = 0; j < BN / 8; j++) mx = fmaxf(mx, fmaxf(sc[4 * j + 2 * r], sc[4 * j + 2 * r + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            alpha[r] = ex2((m_r[r] - mx) * p.scale_log2);
            m_r[r] = mx;
            const float ms = mx * p.scale_log2;
#pragma unroll
            for (int j = 0; j < BN / 8; j++) {
                const float x0 = fmaf(sc[4 * j + 2 * r], p.scale_log2, -ms);
                const float x1 = fmaf(sc[4 * j + 2 * r + 1], p.scale_log2, -ms);
                if constexpr (BF16X2) {
                    px[2 * j + r] = acu_pack<T>::two(x0, x1);
                } else {
                    sc[4 * j + 2 * r] = ex2(x0);
                    sc[4 * j + 2 * r + 1] = ex2(x1);
                }
            }
        }
    };
    /* after the previous P V (and P 1) completed: rescale O and l, write the P fragments */
    auto rescale_pack = [&]() {
#pragma unroll
        for (int j = 0; j < D / 8; j++) {
            o[4 * j] *= alpha[0];
            o[4 * j + 1] *= alpha[0];
            o[4 * j + 2] *= alpha[1];
            o[4 * j + 3] *= alpha[1];
        }
        lacc[0] *= alpha[0];
        lacc[2] *= alpha[1];
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++)
#pragma unroll
            for (int i = 0; i < 4; i++) {
                if constexpr (BF16X2) pa[kk][i] = ex2x2<T>(px[4 * kk + i]);
                else pa[kk][i] = acu_pack<T>::two(sc[8 * kk + 2 * i], sc[8 * kk + 2 * i + 1]);
            }
    };
    int gstep = 0, q_par = 0; /* bit q: parity of Q buffer q's next fill */
    for (int t = 0;; t++) {
        const int qb = t & 1;
        mbar_wait(item_full(qb), (t >> 1) & 1);
        const int idx = slot[qb];
        if (idx >= total) break;
        const acu_item it = p.items[idx / p.batch];
        if (it.flags & ACU_ITEM_COPY) {
            acu_copy_item<D>(p, it, idx % p.batch, ctid, 128 * NC);
            mbar_arrive(q_empty(qb));
            continue;
        }
        const int n_steps = item_steps(it);
        const int n_act = it.q_len > 128 ? 3 : it.q_len > 64 ? 2 : 1;
        if (cw >= n_act) { /* no rows here: walk the item's K/V stages (acu_walk_stages), release Q */
            acu_walk_stages<ST>(k_full(0), v_full(0), k_empty(0), v_empty(0), gstep, n_steps);
            q_par ^= 1 << qb;
            gstep += n_steps;
            mbar_arrive(q_empty(qb));
            continue;
        }
        qbuf = sQ + qb * Q_BYTES;
#pragma unroll
        for (int i = 0; i < D / 2; i++) o[i] = 0.f;
#pragma unroll
        for (int i = 0; i < 4; i++) lacc[i] = 0.f;
        m_r[0] = m_r[1] = -INFINITY;
        mbar_wait(q_full(qb), (q_par >> qb) & 1);
        q_par ^= 1 << qb;
        walker w(p.ranges + it.r_off, it.n_r);
        /* software pipeline: the softmax of step i runs while the tensor cores do P_{i-1} V_{i-1} */
        {
            const int s = gstep % ST, ph = (gstep / ST) & 1;
            mbar_wait(k_full(s), ph);
            issue_qk(s);
            wg_wait<0>();
            reg_fence<BN / 2>(sc);
            mbar_arrive(k_empty(s));
            softmax(w.valid());
            rescale_pack();
        }
        for (int step = 1; step < n_steps; step++) {
            w.next();
            const int g = gstep + step;
            const int s = g % ST, ph = (g / ST) & 1;
            const int sp = (g - 1) % ST, php = ((g - 1) / ST) & 1;
            mbar_wait(k_full(s), ph);
            mbar_wait(v_full(sp), php);
            issue_qk(s);
            issue_pv(sp);
            wg_wait<1>(); /* the QK^T group is done, P V may still run */
            reg_fence<BN / 2>(sc);
            mbar_arrive(k_empty(s));
            softmax(w.valid());
            wg_wait<0>();
            reg_fence<D / 2>(o);
            reg_fence<4>(lacc);
            reg_fence_u<BN / 4>(&pa[0][0]);
            mbar_arrive(v_empty(sp));
            rescale_pack();
        }
        {
            const int g = gstep + n_steps - 1;
            const int sp = g % ST, php = (g / ST) & 1;
            mbar_wait(v_full(sp), php);
            issue_pv(sp);
            wg_wait<0>();
            reg_fence<D / 2>(o);
            reg_fence<4>(lacc);
            reg_fence_u<BN / 4>(&pa[0][0]);
            mbar_arrive(v_empty(sp));
        }
        gstep += n_steps;
        /* epilogue (as variant 5, l from the row-sum accumulator: no shuffles): normalise, stage
         * the warpgroup's 64 rows over its own Q rows, store them, release the Q buffer */
        const float inv0 = lacc[0] > 0.f ? 1.f / lacc[0] : 0.f;
        const float inv1 = lacc[2] > 0.f ? 1.f / lacc[2] : 0.f;
        T *so = reinterpret_cast<T *>(base + qb * Q_BYTES);
        const int row = cw * 64 + wq * 16 + (lane >> 2), c = 2 * (lane & 3);
#pragma unroll
        for (int j = 0; j < D / 8; j++) {
            *reinterpret_cast<uint32_t *>(so + acu_tile_off<D, ACU_LAYOUT_TMA>(row, j) + c) =
                acu_pack<T>::two(o[4 * j] * inv0, o[4 * j + 1] * inv0);
            *reinterpret_cast<uint32_t *>(so + acu_tile_off<D, ACU_LAYOUT_TMA>(row + 8, j) + c) =
                acu_pack<T>::two(o[4 * j + 2] * inv1, o[4 * j + 3] * inv1);
        }
        asm volatile("bar.sync %0, 128;\n" ::"r"(1 + cw) : "memory");
        const int idx_e = slot[qb];
        acu_store_tile<D, ACU_LAYOUT_TMA, T>(p, p.items[idx_e / p.batch], idx_e % p.batch, so, ctid & 127, 128, cw * 64,
                                             cw * 64 + 64);
        /* the staging (over Q) is read; TMA may overwrite it after this (async proxy) */
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
        mbar_arrive(q_empty(qb));
    }
#endif
}

template <bool BF16X2, typename T>
cudaError_t launch(const acu_params &p, int dtype, cudaStream_t st) {
    encode_fn enc;
    cudaError_t e = get_encode(&enc);
    if (e != cudaSuccess) return e;
    CUtensorMap mq, mk, mv;
    const int rows = p.batch * p.n_tokens;
    if ((e = make_map(enc, &mq, p.q, dtype, rows, p.n_heads, D, BM)) != cudaSuccess) return e;
    if ((e = make_map(enc, &mk, p.k, dtype, rows, p.n_heads, D, BN)) != cudaSuccess) return e;
    if ((e = make_map(enc, &mv, p.v, dtype, rows, p.n_heads, D, BN)) != cudaSuccess) return e;
    e = cudaFuncSetAttribute(attn_exp16_kernel<BF16X2, T>, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM);
    if (e != cudaSuccess) return e;
    int dev = 0, sms = 0;
    if ((e = cudaGetDevice(&dev)) != cudaSuccess) return e;
    if ((e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev)) != cudaSuccess) return e;
    const int total = p.n_items * p.batch;
    const int grid = sms < total ? sms : total;
    attn_exp16_kernel<BF16X2, T><<<grid, THREADS, SMEM, st>>>(p, mq, mk, mv);
    return cudaGetLastError();
}

} // namespace

/* head_dim 64 only; p's items come from the 192-row work list; bf16x2: variant 12, else 11 */
cudaError_t acu_launch_exp16(const acu_params &p, int dtype, bool bf16x2, cudaStream_t st) {
    if (dtype == DFA_ATTN_CUDA_BF16)
        return bf16x2 ? launch<true, __nv_bfloat16>(p, dtype, st) : launch<false, __nv_bfloat16>(p, dtype, st);
    return bf16x2 ? launch<true, __half>(p, dtype, st) : launch<false, __half>(p, dtype, st);
}
