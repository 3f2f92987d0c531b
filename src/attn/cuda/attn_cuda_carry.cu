/* attn_cuda_carry.cu - variant 9: variant 2's persistent Hopper kernel (attn_cuda_wgmma.cu) with
 * the consumer's software pipeline carried across work items.
 *
 * Why (bench/RESULTS.md "Where the time goes"): arrow items at 4k are ~5-7 key steps, and in
 * variant 2 every item restarts the pipeline: its first turn issues QK^T alone, its last turn PV
 * alone, then the epilogue, ~1.5 steps' worth of tensor-core idle per item (t/ideal 1.2 at 75 %).
 *
 * Here the boundary between item A (ending) and item B (next, already loaded by the producer)
 * is one turn: a consumer warpgroup issues S_0(B) = Q_B K_0(B)^T together with A's last
 * O += P V, then runs B's first softmax while that PV runs, and only then A's epilogue
 * (normalise with A's saved row sums, stage over A's Q rows, store, release A's Q buffer);
 * then zeroes O for B. Per item a warpgroup takes n_steps turns instead of n_steps + 1, and the
 * epilogue runs under the other warpgroup's GEMMs (ping-pong as in variant 2).
 *
 * Protocol differences from variant 2 (checked with a model of the protocol: producer, two
 * consumers, TMA completions in any order, random interleavings of 1-16 items):
 *   - 3 Q buffers (item slots t % 3): A's buffer is released only after the boundary turn, so
 *     with 2 the producer could not load the item after B until B's first turn; with 3 it keeps
 *     one item of lookahead as in variant 2. D=128: 3 x 32 + 2 x 2 x 32 KB = 224 KB of tiles.
 *   - the consumer reads item t+1's slot (waits item_full of its buffer) at the end of item t,
 *     once, and carries it into the next iteration; both consumer warpgroups read the same
 *     slot, so they make the same carry decision and keep the same number of turns (the turn
 *     alternation of barriers 3/4 needs that).
 *   - no carry into a CACHE item or past the end: then the boundary is variant 2's drain turn.
 * K/V stages, their barriers and the producer's order are those of variant 2. */
#include "attn/cuda/attn_cuda_wgmma_dev.cuh"

namespace {

constexpr int BM = ACU_BM; /* 128 query rows, 64 per consumer warpgroup */
constexpr int THREADS = 384;
constexpr int NQ = 3; /* Q buffers */

template <int D>
struct cfg {
    static constexpr int STAGES = D == 128 ? 2 : 4;
    static constexpr int Q_BYTES = BM * D * 2;
    static constexpr int KV_BYTES = BN * D * 2; /* one of K or V, one stage */
    static constexpr int TILES = NQ * Q_BYTES + 2 * STAGES * KV_BYTES;
    static constexpr int BAR_BYTES = 8 * (3 * NQ + 4 * STAGES) + 4 * NQ;
    static constexpr int SMEM = TILES + 1024 /* alignment slack */ + 256 /* barriers, slots */;
    static_assert(BAR_BYTES <= 256, "barriers and slots fit");
    static_assert(SMEM <= 227 * 1024, "fits the opt-in shared memory of sm_90");
};

template <int D, bool PAD, typename T>
__global__ void __launch_bounds__(THREADS, 1)
    attn_carry_kernel(const __grid_constant__ acu_params p, const __grid_constant__ CUtensorMap tq,
                      const __grid_constant__ CUtensorMap tk, const __grid_constant__ CUtensorMap tv) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    using C = cfg<D>;
    constexpr int ST = C::STAGES;
    constexpr int DH = D / 64; /* 64-element (128-byte) column blocks */
    extern __shared__ unsigned char smem_raw[];
    unsigned char *base = reinterpret_cast<unsigned char *>(((uintptr_t)smem_raw + 1023) & ~(uintptr_t)1023);
    const uint32_t sQ = acu_smem(base);                /* [NQ][DH][BM][64] */
    const uint32_t sK = sQ + NQ * C::Q_BYTES;          /* [ST][DH][BN][64] */
    const uint32_t sV = sK + ST * C::KV_BYTES;         /* [ST][DH][BN][64] */
    const uint32_t bars = sQ + C::TILES;
    /* barriers: item_full[NQ], q_full[NQ], q_empty[NQ], k_full[ST], v_full[ST], k_empty[ST], v_empty[ST] */
    auto item_full = [&](int q) { return bars + 8 * q; };
    auto q_full = [&](int q) { return bars + 8 * (NQ + q); };
    auto q_empty = [&](int q) { return bars + 8 * (2 * NQ + q); };
    auto k_full = [&](int s) { return bars + 8 * (3 * NQ + s); };
    auto v_full = [&](int s) { return bars + 8 * (3 * NQ + ST + s); };
    auto k_empty = [&](int s) { return bars + 8 * (3 * NQ + 2 * ST + s); };
    auto v_empty = [&](int s) { return bars + 8 * (3 * NQ + 3 * ST + s); };
    int *slot = reinterpret_cast<int *>(base + C::TILES + 8 * (3 * NQ + 4 * ST)); /* item index per Q buffer */

    const int tid = threadIdx.x;
    const int total = p.n_items * p.batch;
    if (tid == 0) {
        for (int q = 0; q < NQ; q++) {
            mbar_init(item_full(q), 1);
            mbar_init(q_full(q), 1);
            mbar_init(q_empty(q), 256);
        }
        for (int s = 0; s < ST; s++) {
            mbar_init(k_full(s), 1);
            mbar_init(v_full(s), 1);
            mbar_init(k_empty(s), 256);
            mbar_init(v_empty(s), 256);
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

    /* producer: variant 2's, with NQ item slots */
    if (wg == 0) {
        asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n");
        if (tid == 0) {
            int gstep = 0;
            for (int t = 0;; t++) {
                const int qb = t % NQ;
                if (t >= NQ) mbar_wait(q_empty(qb), (t / NQ - 1) & 1);
                const int idx = atomicAdd(p.counter, 1);
                slot[qb] = idx;
                mbar_arrive(item_full(qb));
                if (idx >= total) break;
                const acu_item it = p.items[idx / p.batch];
                if (it.flags & ACU_ITEM_COPY) continue;
                const int row0 = (idx % p.batch) * p.n_tokens; /* batch element's first row in [B*N] */
                const uint32_t qdst = sQ + qb * C::Q_BYTES;
                mbar_expect_tx(q_full(qb), C::Q_BYTES);
                for (int dh = 0; dh < DH; dh++)
                    tma_load(qdst + dh * BM * 128, &tq, dh * 64, it.head, row0 + it.q0, q_full(qb));
                const int n_steps = item_steps(it);
                walker w(p.ranges + it.r_off, it.n_r);
                for (int step = 0; step < n_steps; step++, w.next(), gstep++) {
                    const int s = gstep % ST;
                    const int par = ((gstep / ST) - 1) & 1;
                    if (gstep >= ST) mbar_wait(k_empty(s), par);
                    mbar_expect_tx(k_full(s), C::KV_BYTES);
                    for (int dh = 0; dh < DH; dh++)
                        tma_load(sK + s * C::KV_BYTES + dh * BN * 128, &tk, dh * 64, it.head, row0 + w.k, k_full(s));
                    if (gstep >= ST) mbar_wait(v_empty(s), par);
                    mbar_expect_tx(v_full(s), C::KV_BYTES);
                    for (int dh = 0; dh < DH; dh++)
                        tma_load(sV + s * C::KV_BYTES + dh * BN * 128, &tv, dh * 64, it.head, row0 + w.k, v_full(s));
                }
            }
        }
        return;
    }
    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n");
    const int ctid = tid - 128;        /* 0..255 */
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
            const uint32_t qa = qbuf + (kk / 4) * BM * 128 + cw * 64 * 128 + (kk % 4) * 32;
            const uint32_t ka = sK + s * C::KV_BYTES + (kk / 4) * BN * 128 + (kk % 4) * 32;
            mma_qk<T>(sc, desc(qa, 16, 1024), desc(ka, 16, 1024), kk > 0);
        }
        wg_commit();
    };
    auto issue_pv = [&](int s) {
        wg_fence();
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++) {
            const uint32_t va = sV + s * C::KV_BYTES + kk * 16 * 128;
            mma_pv<D, T>(o, pa[kk], desc(va, BN * 128, 1024));
        }
        wg_commit();
    };
    /* online softmax in place on sc (variant 2's); rows r0 = lane/4 and r0 + 8 */
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
    auto pack = [&]() {
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++) {
            pa[kk][0] = acu_pack<T>::two(sc[8 * kk], sc[8 * kk + 1]);
            pa[kk][1] = acu_pack<T>::two(sc[8 * kk + 2], sc[8 * kk + 3]);
            pa[kk][2] = acu_pack<T>::two(sc[8 * kk + 4], sc[8 * kk + 5]);
            pa[kk][3] = acu_pack<T>::two(sc[8 * kk + 6], sc[8 * kk + 7]);
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
        pack();
    };
    auto zero_o = [&]() {
#pragma unroll
        for (int i = 0; i < D / 2; i++) o[i] = 0.f;
    };
    /* ping-pong turns as in variant 2: warpgroup 0 skips its very first wait and takes warpgroup
     * 1's last pass after the loop */
    bool first_turn = true;
    auto turn_wait = [&]() {
        if (!(cw == 0 && first_turn)) asm volatile("bar.sync %0, 256;\n" ::"r"(3 + cw) : "memory");
        first_turn = false;
    };
    auto turn_pass = [&]() { asm volatile("bar.arrive %0, 256;\n" ::"r"(4 - cw) : "memory"); };
    /* the item's row sums (m_r, l_r final) -> their reciprocals in l_r; ring plans: the rows'
     * log-sum-exp. Done before the boundary turn, so that only 2 floats of the item stay live
     * through it. */
    auto finish_rows = [&](int idx) {
#pragma unroll
        for (int r = 0; r < 2; r++) {
            l_r[r] += __shfl_xor_sync(0xffffffffu, l_r[r], 1);
            l_r[r] += __shfl_xor_sync(0xffffffffu, l_r[r], 2);
            if (p.lse && (lane & 3) == 0) /* ring plans: the row's log-sum-exp */
                acu_store_lse(p, p.items[idx / p.batch], idx % p.batch, cw * 64 + wq * 16 + (lane >> 2) + 8 * r,
                              m_r[r], l_r[r]);
            l_r[r] = l_r[r] > 0.f ? 1.f / l_r[r] : 0.f;
        }
    };
    /* epilogue of the item in Q buffer qb (l: its rows' 1/sum): normalise, stage this
     * warpgroup's 64 rows over its own Q rows (no wgmma of this warpgroup reads that buffer any
     * more; the other warpgroup only reads its own rows), store, release the buffer */
    auto epilogue = [&](int qb, float l0, float l1) {
        const int idx = slot[qb]; /* stays until the buffer is released (fewer live registers) */
        const acu_item it = p.items[idx / p.batch];
        const int b = idx % p.batch;
        const float l[2] = {l0, l1};
        T *so = reinterpret_cast<T *>(base + qb * C::Q_BYTES);
        /* the thread index read again here: ptxas otherwise keeps the store loop's index
         * arithmetic live through the whole item (one spilled register at D=128) */
        uint32_t etid;
        asm volatile("mov.u32 %0, %%tid.x;\n" : "=r"(etid));
        const int ecw = (int)(etid / 128) - 1, elane = etid & 31;
        const int row = (int)(etid & 127) / 32 * 16 + ecw * 64 + (elane >> 2), c = 2 * (elane & 3);
#pragma unroll
        for (int j = 0; j < D / 8; j++) {
            *reinterpret_cast<uint32_t *>(so + acu_tile_off<D, ACU_LAYOUT_TMA>(row, j) + c) =
                acu_pack<T>::two(o[4 * j] * l[0], o[4 * j + 1] * l[0]);
            *reinterpret_cast<uint32_t *>(so + acu_tile_off<D, ACU_LAYOUT_TMA>(row + 8, j) + c) =
                acu_pack<T>::two(o[4 * j + 2] * l[1], o[4 * j + 3] * l[1]);
        }
        asm volatile("bar.sync %0, 128;\n" ::"r"(1 + cw) : "memory");
        acu_store_tile<D, ACU_LAYOUT_TMA, T>(p, it, b, so, etid & 127, 128, ecw * 64, ecw * 64 + 64,
                                             PAD ? p.head_dim : D); /* the tensors' head dim */
        /* the staging (over Q) is read; TMA may overwrite it after this (async proxy) */
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
        mbar_arrive(q_empty(qb));
    };

    int gstep = 0, q_par = 0; /* bit q: parity of Q buffer q's next fill */
    int t = 0;
    mbar_wait(item_full(0), 0);
    int idx = slot[0];
    bool carried = false; /* the current item's first turn was the previous boundary's */
    walker w(p.ranges, 1); /* reset per item; ranges[0] exists in every plan */
    while (idx < total) {
        const int qb = t % NQ;
        const acu_item it = p.items[idx / p.batch];
        if (it.flags & ACU_ITEM_COPY) {
            acu_copy_item<D>(p, it, idx % p.batch, ctid, 256, PAD ? p.head_dim : D);
            mbar_arrive(q_empty(qb));
            t++;
            mbar_wait(item_full(t % NQ), (t / NQ) & 1);
            idx = slot[t % NQ];
            carried = false;
            continue;
        }
        const int n_steps = item_steps(it);
        if (!carried) { /* pipeline fill: S_0 alone (variant 2's first turn) */
            qbuf = sQ + qb * C::Q_BYTES;
            zero_o();
            m_r[0] = m_r[1] = -INFINITY;
            l_r[0] = l_r[1] = 0.f;
            mbar_wait(q_full(qb), (q_par >> qb) & 1);
            q_par ^= 1 << qb;
            w = walker(p.ranges + it.r_off, it.n_r);
            const int s = gstep % ST, ph = (gstep / ST) & 1;
            mbar_wait(k_full(s), ph);
            turn_wait();
            issue_qk(s);
            turn_pass();
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
            turn_wait();
            issue_qk(s);
            issue_pv(sp);
            turn_pass();
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
        /* boundary: the next item (its slot is written before the producer loads anything of it) */
        const int tn = t + 1, qn = tn % NQ;
        mbar_wait(item_full(qn), (tn / NQ) & 1);
        const int nidx = slot[qn];
        const bool carry = nidx < total && !(p.items[nidx / p.batch].flags & ACU_ITEM_COPY);
        const int gl = gstep + n_steps - 1; /* this item's last step */
        const int sp = gl % ST, php = (gl / ST) & 1;
        finish_rows(idx);
        const float il0 = l_r[0], il1 = l_r[1];
        if (carry) { /* S_0(next) and this item's last P V in one turn */
            mbar_wait(q_full(qn), (q_par >> qn) & 1);
            q_par ^= 1 << qn;
            qbuf = sQ + qn * C::Q_BYTES;
            const int s = (gl + 1) % ST, ph = ((gl + 1) / ST) & 1;
            mbar_wait(k_full(s), ph);
            mbar_wait(v_full(sp), php);
            turn_wait();
            issue_qk(s);
            issue_pv(sp);
            turn_pass();
            wg_wait<1>();
            reg_fence<BN / 2>(sc);
            mbar_arrive(k_empty(s));
            m_r[0] = m_r[1] = -INFINITY;
            l_r[0] = l_r[1] = 0.f;
            const acu_item nt = p.items[nidx / p.batch];
            w = walker(p.ranges + nt.r_off, nt.n_r);
            softmax(w.valid()); /* alpha = 0: O restarts from zero below */
            wg_wait<0>();
            reg_fence<D / 2>(o);
            reg_fence_u<BN / 4>(&pa[0][0]);
            mbar_arrive(v_empty(sp));
            pack();
        } else { /* drain: the last P V alone (variant 2's last turn) */
            mbar_wait(v_full(sp), php);
            turn_wait();
            issue_pv(sp);
            turn_pass();
            wg_wait<0>();
            reg_fence<D / 2>(o);
            reg_fence_u<BN / 4>(&pa[0][0]);
            mbar_arrive(v_empty(sp));
        }
        epilogue(qb, il0, il1);
        if (carry) zero_o();
        gstep += n_steps;
        t = tn;
        idx = nidx;
        carried = carry;
    }
    if (cw == 0 && !first_turn) asm volatile("bar.sync 3, 256;\n" ::: "memory");
#endif
}

template <int D, bool PAD, typename T>
cudaError_t launch(const acu_params &p, int dtype, cudaStream_t st) {
    const int dg = PAD ? p.head_dim : D;
    encode_fn enc;
    cudaError_t e = get_encode(&enc);
    if (e != cudaSuccess) return e;
    CUtensorMap mq, mk, mv;
    const int rows = p.batch * p.n_tokens;
    if ((e = make_map(enc, &mq, p.q, dtype, rows, p.n_heads, dg)) != cudaSuccess) return e;
    if ((e = make_map(enc, &mk, p.k, dtype, rows, p.n_heads, dg)) != cudaSuccess) return e;
    if ((e = make_map(enc, &mv, p.v, dtype, rows, p.n_heads, dg)) != cudaSuccess) return e;
    constexpr int smem = cfg<D>::SMEM;
    e = cudaFuncSetAttribute(attn_carry_kernel<D, PAD, T>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (e != cudaSuccess) return e;
    int dev = 0, sms = 0;
    if ((e = cudaGetDevice(&dev)) != cudaSuccess) return e;
    if ((e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev)) != cudaSuccess) return e;
    const int total = p.n_items * p.batch;
    const int grid = sms < total ? sms : total;
    attn_carry_kernel<D, PAD, T><<<grid, THREADS, smem, st>>>(p, mq, mk, mv);
    return cudaGetLastError();
}

template <typename T>
cudaError_t launch_d(const acu_params &p, int head_dim, int dtype, cudaStream_t st) {
    if (head_dim == 64) return launch<64, false, T>(p, dtype, st);
    if (head_dim == 128) return launch<128, false, T>(p, dtype, st);
    return launch<128, true, T>(p, dtype, st); /* 64 < head_dim < 128 */
}

} // namespace

/* head_dim 64, 128, or a multiple of 8 between them (as variant 2); persistent */
cudaError_t acu_launch_wgmma_carry(const acu_params &p, int head_dim, int dtype, cudaStream_t st) {
    if (dtype == DFA_ATTN_CUDA_BF16) return launch_d<__nv_bfloat16>(p, head_dim, dtype, st);
    return launch_d<__half>(p, head_dim, dtype, st);
}
