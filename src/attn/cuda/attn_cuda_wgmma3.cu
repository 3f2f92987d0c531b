/* attn_cuda_wgmma3.cu - variant 5 at head dim 64: the variant-2 design (attn_cuda_wgmma.cu)
 * with 3 consumer warpgroups, 192 query rows per CTA (FlashAttention-3's choice for hdim 64).
 *
 * Why: at D=64 one 128-key step has as many ex2 (MUFU, 16/clk/SM) as tensor-core cycles, so with
 * 2 consumers the softmax is not hidden (Nsight: tensor pipe 45 %, issue-bound). A third
 * consumer gives each warpgroup's softmax two others' GEMMs to hide under.
 *
 * One CTA, 4 warpgroups (512 threads), persistent (one per SM, items from the global counter):
 *   warpgroup 0, producer (setmaxnreg 32): one thread loads Q (one 192-row TMA box) and the
 *     128-key K/V steps into a 4-stage ring, as in variant 2;
 *   warpgroups 1-3, consumers (setmaxnreg 160; 128*32 + 384*160 = 65536 registers): 64 query
 *     rows each, the same wgmma / softmax / intra-warpgroup pipeline as variant 2.
 * Items come from the 192-row work list (dfa_acu_worklist_build_rows): up to 192 rows that share
 * their key ranges (so exact), but an ARROW head's visual tile is one item of <= 128 rows. An
 * item of q_len rows uses the first n_act = ceil(q_len / 64) consumers; the idle ones compute
 * nothing but walk the item's K/V stages (wait for each fill, release it: acu_walk_stages) and
 * release the Q buffer, so every consumer thread arrives once per stage fill for itself (the
 * "empty" barriers' count of 384). Until session 3 consumer 0 arrived for the idle ones instead;
 * a warpgroup that skipped an item could then pass a parity wait one phase early (docs/DESIGN.md).
 * No ping-pong between the consumers (variant 4 had a turn ring; speed-up over variant 2 at D=64
 * 0.88-1.10x against this one's 0.98-1.11x, session 4; removed). Epilogue barriers: 1 + cw. */
#include "attn/cuda/attn_cuda_wgmma_dev.cuh"

namespace {

constexpr int NC = 3;                  /* consumer warpgroups */
constexpr int BM = 64 * NC;            /* 192 query rows per CTA */
constexpr int THREADS = 128 * (NC + 1);
constexpr int D = 64;
constexpr int ST = 4;                  /* K/V stages */
constexpr int Q_BYTES = BM * D * 2;    /* 24 KB */
constexpr int KV_BYTES = BN * D * 2;   /* one of K or V, one stage: 16 KB */
constexpr int TILES = 2 * Q_BYTES + 2 * ST * KV_BYTES; /* Q double-buffered: 176 KB */
constexpr int SMEM = TILES + 1024 /* alignment slack */ + 256 /* barriers */;
static_assert(BM == DFA_ACU_BM3, "items of the 192-row list fill one CTA");
static_assert(Q_BYTES % 1024 == 0 && KV_BYTES % 1024 == 0, "128-byte swizzle needs 1 KB aligned tiles");
static_assert(8 * (6 + 4 * ST) + 2 * 4 <= 256, "barriers and slots fit");

template <typename T>
__global__ void __launch_bounds__(THREADS, 1)
    attn_wgmma3_kernel(const __grid_constant__ acu_params p, const __grid_constant__ CUtensorMap tq,
                       const __grid_constant__ CUtensorMap tk, const __grid_constant__ CUtensorMap tv) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    extern __shared__ unsigned char smem_raw[];
    unsigned char *base = reinterpret_cast<unsigned char *>(((uintptr_t)smem_raw + 1023) & ~(uintptr_t)1023);
    const uint32_t sQ = acu_smem(base);        /* [2][BM][64] */
    const uint32_t sK = sQ + 2 * Q_BYTES;      /* [ST][BN][64] */
    const uint32_t sV = sK + ST * KV_BYTES;    /* [ST][BN][64] */
    const uint32_t bars = sQ + TILES;
    /* barriers: item_full[2], q_full[2], q_empty[2], k_full[ST], v_full[ST], k_empty[ST], v_empty[ST] */
    auto item_full = [&](int q) { return bars + 8 * q; };
    auto q_full = [&](int q) { return bars + 8 * (2 + q); };
    auto q_empty = [&](int q) { return bars + 8 * (4 + q); };
    auto k_full = [&](int s) { return bars + 8 * (6 + s); };
    auto v_full = [&](int s) { return bars + 8 * (6 + ST + s); };
    auto k_empty = [&](int s) { return bars + 8 * (6 + 2 * ST + s); };
    auto v_empty = [&](int s) { return bars + 8 * (6 + 3 * ST + s); };
    int *slot = reinterpret_cast<int *>(base + TILES + 8 * (6 + 4 * ST)); /* item index per Q buffer */

    const int tid = threadIdx.x;
    const int total = p.n_items * p.batch;
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
    float m_r[2], l_r[2], alpha[2];
    uint32_t qbuf = sQ;
    float sc[BN / 2];
    uint32_t pa[BN / 16][4];
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
    auto issue_pv = [&](int s) {
        wg_fence();
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++) {
            const uint32_t va = sV + s * KV_BYTES + kk * 16 * 128;
            mma_pv<D, T>(o, pa[kk], desc(va, BN * 128, 1024));
        }
        wg_commit();
    };
    /* online softmax in place on sc (as variant 2); rows r0 = lane/4 and r0 + 8 */
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
            float sum = 0.f;
#pragma unroll
            for (int j = 0; j < BN / 8; j++) {
                sc[4 * j + 2 * r] = ex2(fmaf(sc[4 * j + 2 * r], p.scale_log2, -ms));
                sc[4 * j + 2 * r + 1] = ex2(fmaf(sc[4 * j + 2 * r + 1], p.scale_log2, -ms));
                sum += sc[4 * j + 2 * r] + sc[4 * j + 2 * r + 1];
            }
            l_r[r] = l_r[r] * alpha[r] + sum;
        }
    };
    auto rescale_pack = [&]() {
#pragma unroll
        for (int j = 0; j < D / 8; j++) {
            o[4 * j] *= alpha[0];
            o[4 * j + 1] *= alpha[0];
            o[4 * j + 2] *= alpha[1];
            o[4 * j + 3] *= alpha[1];
        }
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++) {
            pa[kk][0] = acu_pack<T>::two(sc[8 * kk], sc[8 * kk + 1]);
            pa[kk][1] = acu_pack<T>::two(sc[8 * kk + 2], sc[8 * kk + 3]);
            pa[kk][2] = acu_pack<T>::two(sc[8 * kk + 4], sc[8 * kk + 5]);
            pa[kk][3] = acu_pack<T>::two(sc[8 * kk + 6], sc[8 * kk + 7]);
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
        const int n_act = it.q_len > 128 ? 3 : it.q_len > 64 ? 2 : 1; /* consumers with rows */
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
        m_r[0] = m_r[1] = -INFINITY;
        l_r[0] = l_r[1] = 0.f;
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
            reg_fence_u<BN / 4>(&pa[0][0]);
            mbar_arrive(v_empty(sp));
        }
        gstep += n_steps;
        /* epilogue (as variant 2): normalise, stage the warpgroup's 64 rows over its own Q rows,
         * store them with 16-byte accesses, release the Q buffer. The item is read again (slot[qb]
         * stays until this warpgroup releases the buffer) rather than kept live in registers
         * through the loop: at 160 registers that saved a spill. */
#pragma unroll
        for (int r = 0; r < 2; r++) {
            l_r[r] += __shfl_xor_sync(0xffffffffu, l_r[r], 1);
            l_r[r] += __shfl_xor_sync(0xffffffffu, l_r[r], 2);
            l_r[r] = l_r[r] > 0.f ? 1.f / l_r[r] : 0.f;
        }
        T *so = reinterpret_cast<T *>(base + qb * Q_BYTES);
        const int row = cw * 64 + wq * 16 + (lane >> 2), c = 2 * (lane & 3);
#pragma unroll
        for (int j = 0; j < D / 8; j++) {
            *reinterpret_cast<uint32_t *>(so + acu_tile_off<D, ACU_LAYOUT_TMA>(row, j) + c) =
                acu_pack<T>::two(o[4 * j] * l_r[0], o[4 * j + 1] * l_r[0]);
            *reinterpret_cast<uint32_t *>(so + acu_tile_off<D, ACU_LAYOUT_TMA>(row + 8, j) + c) =
                acu_pack<T>::two(o[4 * j + 2] * l_r[1], o[4 * j + 3] * l_r[1]);
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

template <typename T>
cudaError_t launch(const acu_params &p, int dtype, cudaStream_t st) {
    encode_fn enc;
    cudaError_t e = get_encode(&enc);
    if (e != cudaSuccess) return e;
    CUtensorMap mq, mk, mv;
    const int rows = p.batch * p.n_tokens;
    if ((e = make_map(enc, &mq, p.q, dtype, rows, p.n_heads, D, BM)) != cudaSuccess) return e;
    if ((e = make_map(enc, &mk, p.k, dtype, rows, p.n_heads, D, BN)) != cudaSuccess) return e;
    if ((e = make_map(enc, &mv, p.v, dtype, rows, p.n_heads, D, BN)) != cudaSuccess) return e;
    e = cudaFuncSetAttribute(attn_wgmma3_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM);
    if (e != cudaSuccess) return e;
    int dev = 0, sms = 0;
    if ((e = cudaGetDevice(&dev)) != cudaSuccess) return e;
    if ((e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev)) != cudaSuccess) return e;
    const int total = p.n_items * p.batch;
    const int grid = sms < total ? sms : total;
    attn_wgmma3_kernel<T><<<grid, THREADS, SMEM, st>>>(p, mq, mk, mv);
    return cudaGetLastError();
}

} // namespace

/* head_dim 64 only; p's items come from the 192-row work list */
cudaError_t acu_launch_wgmma3(const acu_params &p, int dtype, cudaStream_t st) {
    if (dtype == DFA_ATTN_CUDA_BF16) return launch<__nv_bfloat16>(p, dtype, st);
    return launch<__half>(p, dtype, st);
}
