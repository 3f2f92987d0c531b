/* attn_cuda_wgmma3e.cu - variants 6, 7 and 8 at head dim 64: variant 5 (attn_cuda_wgmma3.cu, 3
 * consumer warpgroups, 192-row items, no ping-pong) with a shorter softmax. Same producer, ring,
 * barriers, idle-consumer handling and epilogue as variant 5 (its header comment); only the
 * consumers' softmax step differs:
 *   - conditional rescaling (FlashAttention-4): a row's reference max m moves only when the
 *     step's max exceeds it by more than ACU_CR_THR = 8 in log2 units (scores * scale_log2); otherwise
 *     P = 2^((s - m) * scale_log2) is computed against the stale m (entries up to 2^8, fine in
 *     bf16/f16 and f32) and alpha = 1. O is multiplied by alpha only when some row of the warp
 *     moved (warp vote), so most steps skip the 32 FMULs between the wait for P_{i-1} V_{i-1}
 *     and the issue of P_i V_i. Exact: docs/DESIGN.md ("Conditional rescaling");
 *   - the row max in 4 running maxima (chain depth 8 + 2, was 16) and the row sum in 4 partial
 *     sums (a full max tree, 16 live temporaries, spilled);
 *   - EMU of every 4 score column-groups (8 columns each) of a row take 2^x from ex2_emu (FMA
 *     pipe, attn_exp2_poly.h) instead of MUFU ex2: variant 6 EMU = 0, 7: 1 (25 %), 8: 2 (50 %).
 *     At D=64 one 128-key step has as many MUFU cycles (16 ex2/clk/SM) as tensor cycles. */
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
#define ACU_CR_THR 8.f /* conditional rescaling threshold, log2 units */
static_assert(BM == DFA_ACU_BM3, "items of the 192-row list fill one CTA");
static_assert(Q_BYTES % 1024 == 0 && KV_BYTES % 1024 == 0, "128-byte swizzle needs 1 KB aligned tiles");
static_assert(8 * (6 + 4 * ST) + 2 * 4 <= 256, "barriers and slots fit");

template <int EMU, typename T>
__global__ void __launch_bounds__(THREADS, 1)
    attn_wgmma3e_kernel(const __grid_constant__ acu_params p, const __grid_constant__ CUtensorMap tq,
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
    /* online softmax in place on sc; rows r0 = lane/4 and r0 + 8. m_r: the rows' reference max
     * (moves only by more than ACU_CR_THR, header comment); need: some row of this warp moved */
    bool need = true;
    auto softmax = [&](int valid) {
        if (valid < BN) {
#pragma unroll
            for (int j = 0; j < BN / 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    if (j * 8 + 2 * (lane & 3) + (e & 1) >= valid) sc[4 * j + e] = -INFINITY;
        }
        bool moved = false;
#pragma unroll
        for (int r = 0; r < 2; r++) {
            float t[4]; /* 4 running maxima (4 live registers; a full tree spilled) */
#pragma unroll
            for (int i = 0; i < 4; i++) t[i] = fmaxf(sc[4 * i + 2 * r], sc[4 * i + 2 * r + 1]);
#pragma unroll
            for (int j = 4; j < BN / 8; j++)
                t[j & 3] = fmaxf(t[j & 3], fmaxf(sc[4 * j + 2 * r], sc[4 * j + 2 * r + 1]));
            t[0] = fmaxf(fmaxf(t[0], t[1]), fmaxf(t[2], t[3]));
            float mx = t[0];
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            /* the first step: m_r = -inf, mx finite (every step has a valid key): moves */
            const bool mv = (mx - m_r[r]) * p.scale_log2 > ACU_CR_THR;
            alpha[r] = mv ? ex2((m_r[r] - mx) * p.scale_log2) : 1.f;
            m_r[r] = mv ? mx : m_r[r];
            moved |= mv;
            const float ms = m_r[r] * p.scale_log2;
            float part[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
            for (int j = 0; j < BN / 8; j++) {
                const float x0 = fmaf(sc[4 * j + 2 * r], p.scale_log2, -ms);
                const float x1 = fmaf(sc[4 * j + 2 * r + 1], p.scale_log2, -ms);
                if ((j & 3) < EMU) {
                    sc[4 * j + 2 * r] = ex2_emu(x0);
                    sc[4 * j + 2 * r + 1] = ex2_emu(x1);
                } else {
                    sc[4 * j + 2 * r] = ex2(x0);
                    sc[4 * j + 2 * r + 1] = ex2(x1);
                }
                part[j & 3] += sc[4 * j + 2 * r] + sc[4 * j + 2 * r + 1];
            }
            l_r[r] = l_r[r] * alpha[r] + ((part[0] + part[1]) + (part[2] + part[3]));
        }
        need = __any_sync(0xffffffffu, moved);
    };
    /* P (the scores after softmax) to 16-bit, into pn. Packing before the wait for P_{i-1} V_{i-1}
     * (pn beside pa) was tried: ptxas then serialises the wgmmas (C7513), so it runs after it. */
    uint32_t pn[BN / 16][4];
    auto pack = [&]() {
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++) {
            pn[kk][0] = acu_pack<T>::two(sc[8 * kk], sc[8 * kk + 1]);
            pn[kk][1] = acu_pack<T>::two(sc[8 * kk + 2], sc[8 * kk + 3]);
            pn[kk][2] = acu_pack<T>::two(sc[8 * kk + 4], sc[8 * kk + 5]);
            pn[kk][3] = acu_pack<T>::two(sc[8 * kk + 6], sc[8 * kk + 7]);
        }
    };
    /* after P_{i-1} V_{i-1} is done: O *= alpha if a row of the warp moved, pa = pn */
    auto rescale_take = [&]() {
        if (need) {
#pragma unroll
            for (int j = 0; j < D / 8; j++) {
                o[4 * j] *= alpha[0];
                o[4 * j + 1] *= alpha[0];
                o[4 * j + 2] *= alpha[1];
                o[4 * j + 3] *= alpha[1];
            }
        }
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++)
#pragma unroll
            for (int i = 0; i < 4; i++) pa[kk][i] = pn[kk][i];
    };
    int n_act = NC; /* active consumers of the current item */
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
        n_act = it.q_len > 128 ? 3 : it.q_len > 64 ? 2 : 1;
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
            pack();
            rescale_take(); /* no P V in flight; alpha is 0 or 1 here (o = 0) */
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
            pack();
            rescale_take();
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

template <int EMU, typename T>
cudaError_t launch(const acu_params &p, int dtype, cudaStream_t st) {
    encode_fn enc;
    cudaError_t e = get_encode(&enc);
    if (e != cudaSuccess) return e;
    CUtensorMap mq, mk, mv;
    const int rows = p.batch * p.n_tokens;
    if ((e = make_map(enc, &mq, p.q, dtype, rows, p.n_heads, D, BM)) != cudaSuccess) return e;
    if ((e = make_map(enc, &mk, p.k, dtype, rows, p.n_heads, D, BN)) != cudaSuccess) return e;
    if ((e = make_map(enc, &mv, p.v, dtype, rows, p.n_heads, D, BN)) != cudaSuccess) return e;
    e = cudaFuncSetAttribute(attn_wgmma3e_kernel<EMU, T>, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM);
    if (e != cudaSuccess) return e;
    int dev = 0, sms = 0;
    if ((e = cudaGetDevice(&dev)) != cudaSuccess) return e;
    if ((e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev)) != cudaSuccess) return e;
    const int total = p.n_items * p.batch;
    const int grid = sms < total ? sms : total;
    attn_wgmma3e_kernel<EMU, T><<<grid, THREADS, SMEM, st>>>(p, mq, mk, mv);
    return cudaGetLastError();
}

} // namespace

/* head_dim 64 only; p's items come from the 192-row work list; emu: 0, 1 or 2 of every 4 column
 * groups on the FMA-pipe exp2 (variants 6, 7, 8) */
cudaError_t acu_launch_wgmma3e(const acu_params &p, int dtype, int emu, cudaStream_t st) {
    const bool bf = dtype == DFA_ATTN_CUDA_BF16;
    switch (emu) {
    case 0: return bf ? launch<0, __nv_bfloat16>(p, dtype, st) : launch<0, __half>(p, dtype, st);
    case 1: return bf ? launch<1, __nv_bfloat16>(p, dtype, st) : launch<1, __half>(p, dtype, st);
    case 2: return bf ? launch<2, __nv_bfloat16>(p, dtype, st) : launch<2, __half>(p, dtype, st);
    default: return cudaErrorInvalidValue;
    }
}
