/* attn_cuda_carry3.cu - variant 10: variant 5 (attn_cuda_wgmma3.cu: D=64, 3 consumer warpgroups,
 * 192-row items, no ping-pong) with the consumers' pipeline carried across work items, as
 * variant 9 does for variant 2 (attn_cuda_carry.cu, whose header says why and how).
 *
 * Per consumer warpgroup cw, at the end of item A (next item B, its slot read once):
 *   - carry (B computes and cw is one of B's n_act active consumers): one turn issues S_0(B) and
 *     A's last P V; then B's first softmax, A's epilogue (after that P V), O zeroed for B;
 *   - else variant 5's drain turn and epilogue; B then starts with the fill turn (or is skipped
 *     by an idle cw, or copied).
 * There is no turn ring here, so the warpgroups may decide differently. 3 Q buffers (24 KB
 * each, 200 KB of tiles).
 * Idle warpgroups (rows past the item's q_len) do not skip the item's K/V stages as variant 5
 * first did (consumer 0 arriving on the "empty" barriers for them): they wait for each stage's
 * fill and release it themselves (acu_walk_stages, now in variants 4-8 too). With the stand-in
 * rule, a warpgroup that skipped an item can become active and wait on a stage whose previous
 * fill (a TMA load of the skipped item) has not landed yet; the parity wait then passes one
 * phase early. The model of the protocol (interleavings, TMA completions in any order) finds
 * that for variant 5 too: a CTA runs items X (<= 64 rows, >= 1 step) then Y (> 64 rows);
 * warpgroup 1 skips X and, at Y's first step, waits on a stage whose last fill was X's and is
 * still in flight (a TMA issued before Y's Q load, landing after it). Walking the stages costs
 * the idle warpgroup only barrier waits. */
#include "attn/cuda/attn_cuda_wgmma_dev.cuh"

namespace {

constexpr int NC = 3;                  /* consumer warpgroups */
constexpr int BM = 64 * NC;            /* 192 query rows per CTA */
constexpr int THREADS = 128 * (NC + 1);
constexpr int D = 64;
constexpr int ST = 4;                  /* K/V stages */
constexpr int NQ = 3;                  /* Q buffers */
constexpr int Q_BYTES = BM * D * 2;    /* 24 KB */
constexpr int KV_BYTES = BN * D * 2;   /* one of K or V, one stage: 16 KB */
constexpr int TILES = NQ * Q_BYTES + 2 * ST * KV_BYTES; /* 200 KB */
constexpr int SMEM = TILES + 1024 /* alignment slack */ + 256 /* barriers */;
static_assert(BM == DFA_ACU_BM3, "items of the 192-row list fill one CTA");
static_assert(Q_BYTES % 1024 == 0 && KV_BYTES % 1024 == 0, "128-byte swizzle needs 1 KB aligned tiles");
static_assert(8 * (3 * NQ + 4 * ST) + 4 * NQ <= 256, "barriers and slots fit");
static_assert(SMEM <= 227 * 1024, "fits the opt-in shared memory of sm_90");

template <typename T>
__global__ void __launch_bounds__(THREADS, 1)
    attn_carry3_kernel(const __grid_constant__ acu_params p, const __grid_constant__ CUtensorMap tq,
                       const __grid_constant__ CUtensorMap tk, const __grid_constant__ CUtensorMap tv) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    extern __shared__ unsigned char smem_raw[];
    unsigned char *base = reinterpret_cast<unsigned char *>(((uintptr_t)smem_raw + 1023) & ~(uintptr_t)1023);
    const uint32_t sQ = acu_smem(base);        /* [NQ][BM][64] */
    const uint32_t sK = sQ + NQ * Q_BYTES;     /* [ST][BN][64] */
    const uint32_t sV = sK + ST * KV_BYTES;    /* [ST][BN][64] */
    const uint32_t bars = sQ + TILES;
    /* barriers: item_full[NQ], q_full[NQ], q_empty[NQ], k_full[ST], v_full[ST], k_empty[ST], v_empty[ST] */
    auto item_full = [&](int q) { return bars + 8 * q; };
    auto q_full = [&](int q) { return bars + 8 * (NQ + q); };
    auto q_empty = [&](int q) { return bars + 8 * (2 * NQ + q); };
    auto k_full = [&](int s) { return bars + 8 * (3 * NQ + s); };
    auto v_full = [&](int s) { return bars + 8 * (3 * NQ + ST + s); };
    auto k_empty = [&](int s) { return bars + 8 * (3 * NQ + 2 * ST + s); };
    auto v_empty = [&](int s) { return bars + 8 * (3 * NQ + 3 * ST + s); };
    int *slot = reinterpret_cast<int *>(base + TILES + 8 * (3 * NQ + 4 * ST)); /* item index per Q buffer */

    const int tid = threadIdx.x;
    const int total = p.n_items * p.batch;
    if (tid == 0) {
        for (int q = 0; q < NQ; q++) {
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
    auto item_act = [&](const acu_item &it) { return it.q_len > 128 ? 3 : it.q_len > 64 ? 2 : 1; };
    const int wg = tid / 128;

    /* producer: variant 5's, with NQ item slots */
    if (wg == 0) {
        asm volatile("setmaxnreg.dec.sync.aligned.u32 32;\n");
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
    const int lane = tid & 31;
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
    /* the item's row sums -> their reciprocals in l_r (before the boundary turn: fewer live
     * registers through it) */
    auto finish_rows = [&]() {
#pragma unroll
        for (int r = 0; r < 2; r++) {
            l_r[r] += __shfl_xor_sync(0xffffffffu, l_r[r], 1);
            l_r[r] += __shfl_xor_sync(0xffffffffu, l_r[r], 2);
            l_r[r] = l_r[r] > 0.f ? 1.f / l_r[r] : 0.f;
        }
    };
    /* epilogue of the item in Q buffer qb (l: its rows' 1/sum), as variant 5: stage this
     * warpgroup's 64 rows over its own Q rows, store, release the buffer; the item is read again
     * from slot[qb] (it stays until the release) */
    auto epilogue = [&](int qb, float l0, float l1) {
        uint32_t etid; /* read again: fewer registers live through the item */
        asm volatile("mov.u32 %0, %%tid.x;\n" : "=r"(etid));
        const int ecw = (int)(etid / 128) - 1, elane = etid & 31;
        T *so = reinterpret_cast<T *>(base + qb * Q_BYTES);
        const int row = ecw * 64 + (int)(etid & 127) / 32 * 16 + (elane >> 2), c = 2 * (elane & 3);
#pragma unroll
        for (int j = 0; j < D / 8; j++) {
            *reinterpret_cast<uint32_t *>(so + acu_tile_off<D, ACU_LAYOUT_TMA>(row, j) + c) =
                acu_pack<T>::two(o[4 * j] * l0, o[4 * j + 1] * l0);
            *reinterpret_cast<uint32_t *>(so + acu_tile_off<D, ACU_LAYOUT_TMA>(row + 8, j) + c) =
                acu_pack<T>::two(o[4 * j + 2] * l1, o[4 * j + 3] * l1);
        }
        asm volatile("bar.sync %0, 128;\n" ::"r"(1 + ecw) : "memory");
        const int idx_e = slot[qb];
        acu_store_tile<D, ACU_LAYOUT_TMA, T>(p, p.items[idx_e / p.batch], idx_e % p.batch, so, etid & 127, 128,
                                             ecw * 64, ecw * 64 + 64);
        /* the staging (over Q) is read; TMA may overwrite it after this (async proxy) */
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
        mbar_arrive(q_empty(qb));
    };

    int gstep = 0, q_par = 0; /* bit q: parity of Q buffer q's next fill */
    int t = 0;
    mbar_wait(item_full(0), 0);
    int idx = slot[0];
    bool carried = false; /* this warpgroup's first turn of the item was the previous boundary's */
    walker w(p.ranges, 1); /* reset per item; ranges[0] exists in every plan */
    while (idx < total) {
        const int qb = t % NQ;
        const acu_item it = p.items[idx / p.batch];
        if (it.flags & ACU_ITEM_COPY) {
            acu_copy_item<D>(p, it, idx % p.batch, ctid, 128 * NC);
            mbar_arrive(q_empty(qb));
            t++;
            mbar_wait(item_full(t % NQ), (t / NQ) & 1);
            idx = slot[t % NQ];
            carried = false;
            continue;
        }
        const int n_steps = item_steps(it);
        const int n_act = item_act(it);
        if (cw >= n_act) { /* no rows here: walk the item's stages (header), release Q */
            acu_walk_stages<ST>(k_full(0), v_full(0), k_empty(0), v_empty(0), gstep, n_steps);
            q_par ^= 1 << qb;
            gstep += n_steps;
            mbar_arrive(q_empty(qb));
            t++;
            mbar_wait(item_full(t % NQ), (t / NQ) & 1);
            idx = slot[t % NQ];
            carried = false;
            continue;
        }
        if (!carried) { /* pipeline fill: S_0 alone (variant 5's first turn) */
            qbuf = sQ + qb * Q_BYTES;
            zero_o();
            m_r[0] = m_r[1] = -INFINITY;
            l_r[0] = l_r[1] = 0.f;
            mbar_wait(q_full(qb), (q_par >> qb) & 1);
            q_par ^= 1 << qb;
            w = walker(p.ranges + it.r_off, it.n_r);
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
        /* boundary: the next item */
        const int tn = t + 1, qn = tn % NQ;
        mbar_wait(item_full(qn), (tn / NQ) & 1);
        const int nidx = slot[qn];
        int n_act_n = 0; /* active consumers of the next item; 0: a copy, or past the end */
        if (nidx < total) {
            const acu_item nt = p.items[nidx / p.batch];
            if (!(nt.flags & ACU_ITEM_COPY)) n_act_n = item_act(nt);
        }
        const bool carry = cw < n_act_n;
        const int gl = gstep + n_steps - 1; /* this item's last step */
        const int sp = gl % ST, php = (gl / ST) & 1;
        finish_rows();
        const float il0 = l_r[0], il1 = l_r[1];
        if (carry) { /* S_0(next) and this item's last P V in one turn */
            mbar_wait(q_full(qn), (q_par >> qn) & 1);
            q_par ^= 1 << qn;
            qbuf = sQ + qn * Q_BYTES;
            const int s = (gl + 1) % ST, ph = ((gl + 1) / ST) & 1;
            mbar_wait(k_full(s), ph);
            mbar_wait(v_full(sp), php);
            issue_qk(s);
            issue_pv(sp);
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
        } else { /* drain: the last P V alone (variant 5's last turn) */
            mbar_wait(v_full(sp), php);
            issue_pv(sp);
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
    e = cudaFuncSetAttribute(attn_carry3_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM);
    if (e != cudaSuccess) return e;
    int dev = 0, sms = 0;
    if ((e = cudaGetDevice(&dev)) != cudaSuccess) return e;
    if ((e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev)) != cudaSuccess) return e;
    const int total = p.n_items * p.batch;
    const int grid = sms < total ? sms : total;
    attn_carry3_kernel<T><<<grid, THREADS, SMEM, st>>>(p, mq, mk, mv);
    return cudaGetLastError();
}

} // namespace

/* head_dim 64 only; p's items come from the 192-row work list */
cudaError_t acu_launch_wgmma3_carry(const acu_params &p, int dtype, cudaStream_t st) {
    if (dtype == DFA_ATTN_CUDA_BF16) return launch<__nv_bfloat16>(p, dtype, st);
    return launch<__half>(p, dtype, st);
}
