/* attn_cuda_wgmma.cu - the Hopper path (FlashAttention-3 design, sm_90a): variants 2 and 3 (2
 * consumer warpgroups, 128-row items, every D from 64 to 128) and variant 5 at D=64 (3 consumer
 * warpgroups, 192-row items), one kernel template over the number of consumers NC.
 *
 * One CTA = 1 + NC warpgroups; it takes work items (head, up to 64 * NC query rows) of one batch
 * element each:
 *   warpgroup 0, producer: one thread issues TMA tensor copies (cp.async.bulk.tensor, 128-byte
 *     swizzle) of Q (one box of 64 * NC rows per 64 columns) and of each 128-key step of K and V
 *     into a STAGES-deep ring, completing on mbarriers; registers handed back with setmaxnreg.dec;
 *   warpgroups 1..NC, consumers: 64 query rows each; S = Q K^T with wgmma (both operands in
 *     shared memory), online softmax in registers (f32, log2 domain, the tail of a short step
 *     masked to -inf), O += P V with wgmma (P from registers, V N-major from shared memory),
 *     then release the stage to the producer.
 * Keys of a step past its range's end are real data of other tiles (or zero-filled past the
 * tensor): their scores are masked, so they contribute exactly 0. An item of q_len rows runs on the
 * first n_act = ceil(q_len / 64) consumers (rows of theirs past q_len are computed and not stored);
 * the idle ones compute nothing but walk the item's K/V stages (wait for each fill, release it:
 * acu_walk_stages) and release the Q buffer, so every consumer thread arrives once per stage fill
 * for itself (the "empty" barriers' count of 128 * NC). Until session 3 consumer 0 arrived for the
 * idle ones instead; a warpgroup that skipped an item could then pass a parity wait one phase early
 * (docs/DESIGN.md).
 *
 * NC = 2 (variants 2/3; ring plans, which also store each row's log-sum-exp): setmaxnreg 40 /
 * 232; the two consumers take turns issuing their GEMMs (ping-pong, named barriers 3 and 4;
 * items of <= 64 rows take no turns, struct pingpong). Since session 6 (FAST): warps 1-3 of
 * warpgroup 0 are the storer: the consumers stage their output over their Q rows and hand the
 * buffer over (o_full); the storer TMA-stores full plain chunks (acu_tma_chunk), stores the rest
 * (acu_storer_tile) and releases the Q buffer to the producer (q_empty). The consumers read each
 * item from the producer's slot, and rescale O between issuing QK^T and P V (RO).
 * NC = 3 (variant 5, D=64 only): why: at D=64 one 128-key step has as many ex2 (MUFU, 16/clk/SM)
 * as tensor-core cycles, so with 2 consumers the softmax is not hidden (Nsight: tensor pipe 45 %,
 * issue-bound); a third consumer gives each warpgroup's softmax two others' GEMMs to hide under.
 * setmaxnreg 32 / 160 (128*32 + 384*160 = 65536 registers); no ping-pong (variant 4 had a turn
 * ring for 3 consumers: slower, removed in session 4). Items come from the 192-row work list
 * (dfa_acu_worklist_build_rows): up to 192 rows that share their key ranges, or (since session 5)
 * "union items" over adjacent tiles of an ARROW head whose 64-row chunks each skip the whole key
 * steps outside their own mask (item.skip; so exact either way).
 *
 * Guarded so that the compute_90 PTX pass compiles an empty body (wgmma/setmaxnreg exist only
 * on sm_90a); the host checks the device first. */
#include "attn/cuda/attn_cuda_wgmma_dev.cuh"

namespace {

/* Trace builds only (DFA_ACU_TRACE, bench/attn_trace.sh): stamp `val` as event ev of role's t-th
 * item (attn_cuda_int.h); otherwise nothing, `val` not evaluated. */
#ifdef DFA_ACU_TRACE
#define ACU_TR(role, t, ev, val)                                                                          \
    do {                                                                                                  \
        if ((t) < DFA_ACU_TRACE_ITEMS - 1 && blockIdx.x < DFA_ACU_TRACE_CTAS)                             \
            p.trace[(((size_t)blockIdx.x * DFA_ACU_TRACE_ROLES + (role)) * DFA_ACU_TRACE_ITEMS + (t)) *    \
                        DFA_ACU_TRACE_EV +                                                                \
                    (ev)] = (unsigned long long)(val);                                                    \
    } while (0)
#define ACU_TR_HDR(ev, val)                                                                               \
    do {                                                                                                  \
        if (blockIdx.x < DFA_ACU_TRACE_CTAS)                                                              \
            p.trace[(((size_t)blockIdx.x * DFA_ACU_TRACE_ROLES) * DFA_ACU_TRACE_ITEMS +                   \
                     DFA_ACU_TRACE_ITEMS - 1) * DFA_ACU_TRACE_EV + (ev)] = (unsigned long long)(val);     \
    } while (0)
__device__ __forceinline__ unsigned long long acu_gtime() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %globaltimer;" : "=l"(t));
    return t;
}
#else
#define ACU_TR(role, t, ev, val) \
    do {                         \
    } while (0)
#define ACU_TR_HDR(ev, val) \
    do {                    \
    } while (0)
#endif

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
/* TMA store of one 64-column box (bulk group of the issuing thread) and the waits on its groups */
__device__ __forceinline__ void tma_store(const CUtensorMap *map, uint32_t src, int c0, int c1, int c2) {
    asm volatile("cp.async.bulk.tensor.3d.global.shared::cta.bulk_group [%0, {%1, %2, %3}], [%4];\n" ::"l"(
                     reinterpret_cast<uint64_t>(map)),
                 "r"(c0), "r"(c1), "r"(c2), "r"(src)
                 : "memory");
}
__device__ __forceinline__ void bulk_commit() {
    asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
}
__device__ __forceinline__ void bulk_wait_read() { /* the groups' shared-memory sources are read */
    asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory");
}
__device__ __forceinline__ void bulk_wait_all() { /* ... and their global writes done */
    asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory");
}
/* The storer's acu_store_tile (rows [r0, min(r1, q_len)) of the staged tile, the residual added for
 * ARROW_RS items), two 16-byte chunks per thread and pass with both loads issued before either
 * add: the storer warps' few registers (40) allow no more, and one at a time (acu_store_tile)
 * kept a mixed plan's residual items 24 % over prediction at D=128 (session 6). */
template <int D, typename T>
__device__ __forceinline__ void acu_storer_tile(const acu_params &p, const acu_item &it, int b, const T *s_o, int tid,
                                                int nthr, int r0, int r1, int d) {
    const size_t tok = (size_t)p.n_heads * d;
    const size_t base = ((size_t)b * p.n_tokens + it.q0) * tok + (size_t)it.head * d;
    T *dst = reinterpret_cast<T *>(p.o) + base + (size_t)(it.flags >> ACU_ITEM_SLOT_SHIFT) * p.slot_stride;
    const T *res = (it.flags & ACU_ITEM_RESID) ? reinterpret_cast<const T *>(p.resid) + base : nullptr;
    constexpr int cpr = D / 8;
    if (r1 > it.q_len) r1 = it.q_len;
    const int n = (r1 - r0) * cpr;
    for (int i0 = tid; i0 < n; i0 += 2 * nthr) {
        uint4 v[2], rv[2];
        size_t off[2];
        bool ok[2];
#pragma unroll
        for (int u = 0; u < 2; u++) {
            const int i = i0 + u * nthr, r = r0 + i / cpr, c = i % cpr;
            ok[u] = i < n && c < d / 8;
            off[u] = (size_t)r * tok + c * 8;
            if (ok[u]) {
                v[u] = *reinterpret_cast<const uint4 *>(s_o + acu_tile_off<D, ACU_LAYOUT_TMA>(r, c));
                if (res) rv[u] = *reinterpret_cast<const uint4 *>(res + off[u]);
            }
        }
#pragma unroll
        for (int u = 0; u < 2; u++) {
            if (!ok[u]) continue;
            if (res) acu_add8v<T>(v[u], rv[u]);
            *reinterpret_cast<uint4 *>(dst + off[u]) = v[u];
        }
    }
}

/* FAST: chunk c (rows 64c .. 64c + 63) of a computed item leaves by TMA store when it is full and
 * plain (no residual to add, output slot 0); else the storer warps store it (acu_storer_tile) */
__device__ __forceinline__ bool acu_tma_chunk(const acu_item &it, int c) {
    return !(it.flags & (ACU_ITEM_COPY | ACU_ITEM_RESID)) && (it.flags >> ACU_ITEM_SLOT_SHIFT) == 0 &&
           it.q_len >= 64 * (c + 1);
}
#endif

/* An item handed from the producer to the consumers in shared memory (one per Q buffer): the
 * producer has read it and its key ranges (at most 2, attn_worklist.h) from global memory anyway;
 * the consumers reading them again put dependent global loads on their path at each item start.
 * Measured (session 5, A/B in one process against the same kernels reading them from global memory,
 * then variant 14): D=64 dense 2 % faster, D=128 and
 * short arrow items unchanged. At NC = 2 the consumers read the item itself from here too (session
 * 6, with the storer warps: FAST). */
struct acu_slot {
    int2 r[2];
    acu_item it;
    int idx, n_steps;
};

template <int NC, int D>
struct cfg {
    static constexpr int BM = 64 * NC; /* query rows per CTA, 64 per consumer warpgroup */
    static constexpr int THREADS = 128 * (NC + 1);
    static constexpr int STAGES = D == 128 ? 2 : 4;
    static constexpr int Q_BYTES = BM * D * 2;
    static constexpr int KV_BYTES = BN * D * 2; /* one of K or V, one stage */
    static constexpr int TILES = 2 * Q_BYTES + 2 * STAGES * KV_BYTES; /* Q double-buffered */
    static constexpr int SMEM = TILES + 1024 /* alignment slack */ + 512 /* barriers, item slots */;
    static constexpr int OFULL = (8 * (6 + 4 * STAGES) + 2 * (int)sizeof(acu_slot) + 7) / 8 * 8; /* FAST */
    static constexpr int PRODUCER_REGS = NC == 2 ? 40 : 32;
    static constexpr int CONSUMER_REGS = NC == 2 ? 232 : 160;
    static_assert(NC == 2 || NC == 3, "2 or 3 consumer warpgroups");
    static_assert(BM == (NC == 2 ? DFA_ACU_BM : DFA_ACU_BM3), "an item of the work list fills one CTA");
    static_assert(NC == 2 || D == 64, "3 consumers: D=64 only (acu_tile_off's 128-row column blocks)");
    static_assert(Q_BYTES % 1024 == 0 && KV_BYTES % 1024 == 0, "128-byte swizzle needs 1 KB aligned tiles");
    static_assert(OFULL + 16 <= 512, "barriers and item slots fit");
    static_assert(128 * PRODUCER_REGS + 128 * NC * CONSUMER_REGS <= 65536, "register file");
};

/* Ping-pong (FA3; NC = 2): the two consumer warpgroups take turns issuing their GEMMs (named
 * barriers 3 + cw), so that one's softmax runs under the other's tensor-core work. The turns run
 * on across items: warpgroup 0 skips its very first wait, and takes warpgroup 1's last pass
 * at its next turn or once the CTA has no more work (finish). Items with one active consumer
 * (n_act = 1, <= 64 rows) take no turns: warpgroup 1 walks the stages instead, warpgroup 0
 * computes alone, and warpgroup 1's pending pass stays on barrier 3 until warpgroup 0's next
 * turn (a barrier never holds two arrivals: warpgroup 1 passes again only after warpgroup 0's
 * next pass). pingpong<false>: no turns. */
#if defined(__CUDA_ARCH_FEAT_SM90_ALL) /* like the kernel body: the other passes never use it */
template <bool ON>
struct pingpong {
    __device__ __forceinline__ void wait(int, int) {}
    __device__ __forceinline__ void pass(int, int) {}
    __device__ __forceinline__ void finish(int) {}
};
template <>
struct pingpong<true> {
    bool first = true;
    int issued = 0;
    __device__ __forceinline__ void wait(int cw, int n_act) {
        if (n_act < 2) return;
        if (!(cw == 0 && first)) asm volatile("bar.sync %0, 256;\n" ::"r"(3 + cw) : "memory");
        first = false;
        issued++;
    }
    __device__ __forceinline__ void pass(int cw, int n_act) {
        if (n_act > 1) asm volatile("bar.arrive %0, 256;\n" ::"r"(4 - cw) : "memory");
    }
    __device__ __forceinline__ void finish(int cw) {
        if (cw == 0 && issued > 0) asm volatile("bar.sync 3, 256;\n" ::: "memory");
    }
};
#endif

/* t[0] = max (sum) of t[0 .. 2W-1], as a pairwise tree (constant indices: stays in registers) */
template <int W>
__device__ __forceinline__ void tree_max(float *t) {
#pragma unroll
    for (int j = 0; j < W; j++) t[j] = fmaxf(t[j], t[j + W]);
    if constexpr (W > 1) tree_max<W / 2>(t);
}
template <int W>
__device__ __forceinline__ void tree_sum(float *t) {
#pragma unroll
    for (int j = 0; j < W; j++) t[j] += t[j + W];
    if constexpr (W > 1) tree_sum<W / 2>(t);
}

/* A union item's skipped steps (NC = 3): from item step `step`, walk the stages of the steps in
 * [x0, x1) (wait for each fill, release it; acu_walk_stages) and the key walker past them.
 * Returns the next step to compute. */
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
template <int ST>
__device__ __forceinline__ int acu_pass_skipped(int step, int x0, int x1, int gstep, uint32_t kf, uint32_t vf,
                                                uint32_t ke, uint32_t ve, walker &w) {
    while (step >= x0 && step < x1) {
        acu_walk_stages<ST>(kf, vf, ke, ve, gstep + step, 1);
        w.next();
        step++;
    }
    return step;
}
#endif

/* PAD: the tensors' head dim is p.head_dim < D; the tensor maps have that inner size, so TMA
 * zero-fills columns p.head_dim..D-1 of every Q/K/V tile (exact: zero columns add 0 to Q K^T, and
 * give output columns that are not stored). */
/* NC = 2 (FAST, session 6): the consumers take each item's fields from the producer's slot (no
 * global load before their first QK^T) and hand their staged output to the storer warp (TMA
 * store), measured 0.6-1.3 % faster on dense D=128 and 1-3 % on arrow plans (A/B in one process,
 * bench/RESULTS.md); at NC = 3 (D=64) the same measured 5-8 % slower and is not used.
 * RO (NC = 2, session 6): FlashAttention-3's order of the O rescaling: O *= alpha of step i-1
 * between issuing QK^T(i) and P V(i-1) (ptxas interleaves it with the QK^T issue), so that only
 * the packing of P follows the wait for P V(i-1); measured (A/B in one process) 0.8-1.1 % faster
 * on dense D=128 and 0.6-1.1 % on its arrow plans; at NC = 3 dense D=64 0.7 % slower at 4k
 * (arrow 16k 1-2 % faster): not used there. */
template <int NC, int D, bool PAD, typename T>
__global__ void __launch_bounds__(cfg<NC, D>::THREADS, 1)
    attn_wgmma_kernel(const __grid_constant__ acu_params p, const __grid_constant__ CUtensorMap tq,
                      const __grid_constant__ CUtensorMap tk, const __grid_constant__ CUtensorMap tv,
                      const __grid_constant__ CUtensorMap to) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    using C = cfg<NC, D>;
    constexpr bool FAST = NC == 2;
    constexpr bool RO = NC == 2;
    constexpr int BM = C::BM;
    constexpr int ST = C::STAGES;
    constexpr int DH = D / 64; /* 64-element (128-byte) column blocks */
    constexpr bool PINGPONG = NC == 2; /* the two consumers take turns issuing their GEMMs */
    constexpr bool LSE = NC == 2;      /* ring plans' LSE output (p.lse != NULL; they run variant 2) */
    /* the epilogue reads the item again from slot[qb] rather than keeping it live through the
     * step loop: at 160 registers (NC = 3) that saved a spill */
    constexpr bool ITEM_RELOAD = NC == 3;
    extern __shared__ unsigned char smem_raw[];
    unsigned char *base = reinterpret_cast<unsigned char *>(((uintptr_t)smem_raw + 1023) & ~(uintptr_t)1023);
    const uint32_t sQ = acu_smem(base);                /* [2][DH][BM][64] */
    const uint32_t sK = sQ + 2 * C::Q_BYTES;           /* [ST][DH][BN][64] */
    const uint32_t sV = sK + ST * C::KV_BYTES;         /* [ST][DH][BN][64] */
    const uint32_t bars = sQ + C::TILES;
    /* barriers: item_full[2], q_full[2], q_empty[2], k_full[ST], v_full[ST], k_empty[ST], v_empty[ST] */
    auto item_full = [&](int q) { return bars + 8 * q; };
    auto q_full = [&](int q) { return bars + 8 * (2 + q); };
    auto q_empty = [&](int q) { return bars + 8 * (4 + q); };
    auto k_full = [&](int s) { return bars + 8 * (6 + s); };
    auto v_full = [&](int s) { return bars + 8 * (6 + ST + s); };
    auto k_empty = [&](int s) { return bars + 8 * (6 + 2 * ST + s); };
    auto v_empty = [&](int s) { return bars + 8 * (6 + 3 * ST + s); };
    acu_slot *slot = reinterpret_cast<acu_slot *>(base + C::TILES + 8 * (6 + 4 * ST)); /* per Q buffer */
    /* FAST: o_full[2] after the slots (the other kernels' layout unchanged) */
    auto o_full = [&](int q) { return bars + C::OFULL + 8 * q; };

    const int tid = threadIdx.x;
    const int total = p.n_items * p.batch;
    if (tid == 0) {
        for (int q = 0; q < 2; q++) {
            mbar_init(item_full(q), 1);
            mbar_init(q_full(q), 1);
            mbar_init(q_empty(q), FAST ? 96 : 128 * NC); /* FAST: the storer warps release Q */
            if (FAST) mbar_init(o_full(q), 128 * NC);
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
    if (tid == 0) {
        ACU_TR_HDR(0, clock64());
        ACU_TR_HDR(1, acu_gtime());
    }
    auto item_steps = [&](const acu_item &it) {
        int n = 0;
        for (int r = 0; r < it.n_r; r++) {
            int2 kr = p.ranges[it.r_off + r];
            n += (kr.y - kr.x + BN - 1) / BN;
        }
        return n;
    };
    const int wg = tid / 128;

    /* Persistent CTAs: the producer takes the next item (index into the longest-first list x
     * batch; the first its block index, then from a global counter) and hands it (with its key ranges and step count) to the
     * consumers through slot[] / item_full;
     * Q is double-buffered and the K/V ring runs across items, so the next item's loads
     * overlap the current item's last steps and epilogue. */
    if (wg == 0) {
        asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(C::PRODUCER_REGS));
        if (tid == 0) {
            /* q_par is never read here (the consumers keep the Q parities); kept from session 4,
             * where dropping it renumbered the consumers' registers (any edit re-rolls ptxas's
             * schedule: change this only with an A/B on the device) */
            int gstep = 0, q_par = 0;
            for (int t = 0;; t++) {
                const int qb = t & 1;
                ACU_TR(0, t, 2, clock64());
                if (t >= 2) mbar_wait(q_empty(qb), ((t >> 1) - 1) & 1);
                ACU_TR(0, t, 3, clock64());
                /* a CTA's first item is its block index (no atomic on the cold start: session 7,
                 * variant 22), the counter hands out the rest from gridDim.x on; Q is loaded as
                 * soon as the item is read, before its key ranges (bench/RESULTS.md "Session 7") */
                const int idx = t == 0 ? (int)blockIdx.x : (int)gridDim.x + atomicAdd(p.counter, 1);
                ACU_TR(0, t, 0, idx);
                acu_slot *sl = &slot[qb];
                sl->idx = idx;
                acu_item it;
                if (idx < total) {
                    it = p.items[idx / p.batch];
                    sl->it = it;
                    if (!(it.flags & ACU_ITEM_COPY)) {
                        q_par ^= 1 << qb;
                        const int row0 = (idx % p.batch) * p.n_tokens;
                        mbar_expect_tx(q_full(qb), C::Q_BYTES);
                        for (int dh = 0; dh < DH; dh++)
                            tma_load(sQ + qb * C::Q_BYTES + dh * BM * 128, &tq, dh * 64, it.head, row0 + it.q0,
                                     q_full(qb));
                    }
                    for (int r = 0; r < it.n_r && r < 2; r++) sl->r[r] = p.ranges[it.r_off + r];
                    sl->n_steps = it.flags & ACU_ITEM_COPY ? 0 : item_steps(it);
                }
                mbar_arrive(item_full(qb)); /* release: the slot is visible to the waiters */
                ACU_TR(0, t, 4, clock64());
                if (idx >= total) {
                    ACU_TR_HDR(2, clock64());
                    ACU_TR_HDR(3, acu_gtime());
                    break;
                }
                if (it.flags & ACU_ITEM_COPY) continue;
                const int row0 = (idx % p.batch) * p.n_tokens; /* batch element's first row in [B*N] */
                const int n_steps = sl->n_steps;
                ACU_TR(0, t, 1, n_steps);
                ACU_TR(0, t, 5, clock64());
                walker w(sl->r, it.n_r);
                for (int step = 0; step < n_steps; step++, w.next(), gstep++) {
                    const int s = gstep % ST;
                    const int par = ((gstep / ST) - 1) & 1;
                    if (gstep >= ST) mbar_wait(k_empty(s), par);
                    if (step == 0) ACU_TR(0, t, 6, clock64());
                    mbar_expect_tx(k_full(s), C::KV_BYTES);
                    for (int dh = 0; dh < DH; dh++)
                        tma_load(sK + s * C::KV_BYTES + dh * BN * 128, &tk, dh * 64, it.head, row0 + w.k, k_full(s));
                    if (gstep >= ST) mbar_wait(v_empty(s), par);
                    mbar_expect_tx(v_full(s), C::KV_BYTES);
                    for (int dh = 0; dh < DH; dh++)
                        tma_load(sV + s * C::KV_BYTES + dh * BN * 128, &tv, dh * 64, it.head, row0 + w.k, v_full(s));
                    if (step == 0) ACU_TR(0, t, 7, clock64());
                }
                ACU_TR(0, t, 8, clock64());
            }
        } else if (FAST && tid >= 32) {
            /* the storer warps 1-3 (FAST): per item, once every consumer thread has handed the Q
             * buffer over with its output staged there (o_full), store it: full plain chunks by
             * TMA (thread 32 issues, then waits until the copies have read the staging), the
             * others (partial rows, a residual to add, a ring slot) with acu_storer_tile (96
             * threads); then give the buffer back to the producer (q_empty) */
            const int lane = tid - 32; /* 0 .. 95 */
            for (int t = 0;; t++) {
                const int qb = t & 1, ph = (t >> 1) & 1;
                mbar_wait(item_full(qb), ph);
                if (lane == 0) ACU_TR(1, t, 2, clock64());
                const acu_slot *sl = &slot[qb];
                const int idx = sl->idx;
                if (idx >= total) break;
                mbar_wait(o_full(qb), ph);
                if (lane == 0) ACU_TR(1, t, 3, clock64());
                const acu_item &it = sl->it; /* read where used: the producer warpgroup's few registers */
                if (!(it.flags & ACU_ITEM_COPY)) {
                    const int b = idx % p.batch;
                    const T *so = reinterpret_cast<const T *>(base + qb * C::Q_BYTES);
                    int n = 0;
                    for (int c = 0; c < NC; c++) {
                        if (acu_tma_chunk(it, c)) {
                            if (lane == 0)
                                for (int dh = 0; dh < DH; dh++)
                                    tma_store(&to, sQ + qb * C::Q_BYTES + dh * BM * 128 + c * 64 * 128, dh * 64,
                                              it.head, b * p.n_tokens + it.q0 + 64 * c);
                            n++;
                        } else if (64 * c < it.q_len) {
                            acu_storer_tile<D, T>(p, it, b, so, lane, 96, 64 * c, 64 * c + 64, PAD ? p.head_dim : D);
                        }
                    }
                    if (lane == 0 && n) {
                        bulk_commit();
                        bulk_wait_read();
                    }
                    /* these warps' reads of the staging ordered before the producer's next TMA load */
                    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
                }
                /* every thread (each read the slot or the staging): thread 32 after its stores' reads */
                if (lane == 0) ACU_TR(1, t, 4, clock64());
                mbar_arrive(q_empty(qb));
            }
            if (lane == 0) bulk_wait_all(); /* the last stores' writes done before the CTA exits */
        }
        return;
    }
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(C::CONSUMER_REGS));
    const int ctid = tid - 128;        /* 0 .. 128 * NC - 1 */
    /* consumer warpgroup (rows 64*cw ..), broadcast so that the compiler sees a warp-uniform
     * value: the wgmma descriptors built from it then stay on the uniform datapath */
    const int cw = __shfl_sync(0xffffffffu, ctid / 128, 0);
    const int lane = tid & 31, wq = (ctid / 32) & 3; /* warp within the warpgroup: 16 rows each */
    float o[D / 2];
    float m_r[2], l_r[2], alpha[2];
    uint32_t qbuf = sQ;
    float sc[BN / 2];
    uint32_t pa[BN / 16][4];
    /* descriptors: one per operand and step, the k-slices' offsets added to its address field
     * (bits 0-13 = address / 16; shared memory < 256 KB, so no carry out of the field) */
    auto issue_qk = [&](int s) {
        const uint32_t dq = desc_lo(qbuf + cw * 64 * 128, 16), dk = desc_lo(sK + s * C::KV_BYTES, 16);
        wg_fence();
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++)
            mma_qk<T>(sc, desc_join(dq + (((kk / 4) * BM * 128 + (kk % 4) * 32) >> 4), 1024),
                      desc_join(dk + (((kk / 4) * BN * 128 + (kk % 4) * 32) >> 4), 1024), kk > 0);
        wg_commit();
    };
    auto issue_pv = [&](int s) {
        const uint32_t dv = desc_lo(sV + s * C::KV_BYTES, BN * 128);
        wg_fence();
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++) mma_pv<D, T>(o, pa[kk], desc_join(dv + ((kk * 16 * 128) >> 4), 1024));
        wg_commit();
    };
    /* online softmax in place on sc; m_r in raw score units, one FFMA + EX2 per score; the
     * tail of a short step masked to -inf. Rows r0 = lane/4 and r0 + 8. */
    auto softmax = [&](int valid) {
        if (valid < BN) {
#pragma unroll
            for (int j = 0; j < BN / 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    if (j * 8 + 2 * (lane & 3) + (e & 1) >= valid) sc[4 * j + e] = -INFINITY;
        }
        /* row max and row sum as pairwise trees (depth 5 over a thread's 32 scores of a row, not
         * a chain of 32 dependent instructions: Nsight's top stall was fixed-latency waits) */
#pragma unroll
        for (int r = 0; r < 2; r++) {
            float t[BN / 8];
#pragma unroll
            for (int j = 0; j < BN / 8; j++) t[j] = fmaxf(sc[4 * j + 2 * r], sc[4 * j + 2 * r + 1]);
            tree_max<BN / 16>(t);
            float mx = fmaxf(m_r[r], t[0]);
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            alpha[r] = ex2((m_r[r] - mx) * p.scale_log2);
            m_r[r] = mx;
            const float ms = mx * p.scale_log2;
#pragma unroll
            for (int j = 0; j < BN / 8; j++) {
                sc[4 * j + 2 * r] = ex2(fmaf(sc[4 * j + 2 * r], p.scale_log2, -ms));
                sc[4 * j + 2 * r + 1] = ex2(fmaf(sc[4 * j + 2 * r + 1], p.scale_log2, -ms));
                t[j] = sc[4 * j + 2 * r] + sc[4 * j + 2 * r + 1];
            }
            tree_sum<BN / 16>(t);
            l_r[r] = l_r[r] * alpha[r] + t[0];
        }
    };
    auto rescale = [&]() {
#pragma unroll
        for (int j = 0; j < D / 8; j++) {
            o[4 * j] *= alpha[0];
            o[4 * j + 1] *= alpha[0];
            o[4 * j + 2] *= alpha[1];
            o[4 * j + 3] *= alpha[1];
        }
    };
    /* RO: O is rescaled before P V is issued (mid, last), not here */
    auto rescale_pack = [&]() {
        if constexpr (!RO) rescale();
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++) {
            pa[kk][0] = acu_pack<T>::two(sc[8 * kk], sc[8 * kk + 1]);
            pa[kk][1] = acu_pack<T>::two(sc[8 * kk + 2], sc[8 * kk + 3]);
            pa[kk][2] = acu_pack<T>::two(sc[8 * kk + 4], sc[8 * kk + 5]);
            pa[kk][3] = acu_pack<T>::two(sc[8 * kk + 6], sc[8 * kk + 7]);
        }
    };
    pingpong<PINGPONG> turns; /* NC = 2 only (struct pingpong) */
    int gstep = 0, q_par = 0; /* bit q: parity of Q buffer q's next fill */
    /* FAST: the consumers hand each Q buffer (with the output staged over it) to the storer, which
     * gives it back to the producer */
    auto q_done = [&](int q) { mbar_arrive(FAST ? o_full(q) : q_empty(q)); };
    for (int t = 0;; t++) {
        const int qb = t & 1;
        mbar_wait(item_full(qb), (t >> 1) & 1);
        /* broadcast (warp-uniform to the compiler): the loop's branches and the K/V stage
         * indices derived from it then run on the uniform datapath */
        const acu_slot *sl = &slot[qb];
        const int idx = __shfl_sync(0xffffffffu, sl->idx, 0);
#ifdef DFA_ACU_TRACE
        const bool trc = (ctid & 127) == 0; /* the warpgroup's stamps: its first thread */
#define ACU_TRC(ev, val)                          \
    do {                                          \
        if (trc) ACU_TR(2 + cw, t, (ev), (val));  \
    } while (0)
#else
#define ACU_TRC(ev, val) \
    do {                 \
    } while (0)
#endif
        ACU_TRC(2, clock64());
        ACU_TRC(0, idx);
        if (idx >= total) break;
        /* NC = 3: the item's fields from global memory (held from the slot they spilled at 160
         * registers); NC = 2 (FAST): from the slot, read where used */
        acu_item it;
        if constexpr (!FAST) it = p.items[idx / p.batch];
        /* FAST: the item from the slot (valid until this warpgroup releases the Q buffer) */
        const acu_item &itr = FAST ? sl->it : it;
        const int b = ITEM_RELOAD ? -1 : idx % p.batch; /* batch element (NC = 3: not kept live) */
        const int flags = FAST ? __shfl_sync(0xffffffffu, sl->it.flags, 0) : it.flags;
        if (flags & ACU_ITEM_COPY) {
            acu_copy_item<D>(p, itr, ITEM_RELOAD ? idx % p.batch : b, ctid, 128 * NC, PAD ? p.head_dim : D);
            q_done(qb);
            ACU_TRC(1, -1);
            ACU_TRC(9, clock64());
            continue;
        }
        const int n_steps = __shfl_sync(0xffffffffu, sl->n_steps, 0);
        const int q_len = FAST ? __shfl_sync(0xffffffffu, sl->it.q_len, 0) : it.q_len;
        const int n_act = q_len > 128 ? 3 : q_len > 64 ? 2 : 1; /* consumers with rows */
        if (cw >= n_act) { /* no rows here: walk the item's K/V stages (acu_walk_stages), release Q */
            acu_walk_stages<ST>(k_full(0), v_full(0), k_empty(0), v_empty(0), gstep, n_steps);
            q_par ^= 1 << qb;
            gstep += n_steps;
            q_done(qb);
            ACU_TRC(1, n_steps);
            ACU_TRC(10, 1);
            ACU_TRC(9, clock64());
            continue;
        }
        qbuf = sQ + qb * C::Q_BYTES;
#pragma unroll
        for (int i = 0; i < D / 2; i++) o[i] = 0.f;
        m_r[0] = m_r[1] = -INFINITY;
        l_r[0] = l_r[1] = 0.f;
        mbar_wait(q_full(qb), (q_par >> qb) & 1);
        ACU_TRC(3, clock64());
        ACU_TRC(1, n_steps);
        q_par ^= 1 << qb;
        /* The steps of an item (FA3's intra-warpgroup overlap in the source order: the softmax of
         * step i after issuing P V of step i-1; ptxas decides where the wait for it lands).
         * first: QK^T of global step g alone; mid: QK^T of g with P V of gp (the previous
         * computed step); last: P V of gp alone. */
        auto first = [&](int g, int valid) {
            const int s = g % ST, ph = (g / ST) & 1;
            mbar_wait(k_full(s), ph);
            turns.wait(cw, n_act);
            issue_qk(s);
            turns.pass(cw, n_act);
            ACU_TRC(4, clock64());
            wg_wait<0>();
            reg_fence<BN / 2>(sc);
            ACU_TRC(5, clock64());
            mbar_arrive(k_empty(s));
            softmax(valid);
            rescale_pack();
            ACU_TRC(6, clock64());
        };
        auto mid = [&](int g, int gp, int valid) {
            const int s = g % ST, ph = (g / ST) & 1;
            const int sp = gp % ST, php = (gp / ST) & 1;
            mbar_wait(k_full(s), ph);
            mbar_wait(v_full(sp), php);
            turns.wait(cw, n_act);
            issue_qk(s);
            if constexpr (RO) rescale(); /* under QK^T(i); P V(i-2), the last to touch O, is done */
            issue_pv(sp);
            turns.pass(cw, n_act);
            wg_wait<1>(); /* the QK^T group is done, P V may still run */
            reg_fence<BN / 2>(sc);
            mbar_arrive(k_empty(s));
            softmax(valid);
            wg_wait<0>();
            reg_fence<D / 2>(o);
            reg_fence_u<BN / 4>(&pa[0][0]);
            mbar_arrive(v_empty(sp));
            rescale_pack();
        };
        auto last = [&](int gp) {
            const int sp = gp % ST, php = (gp / ST) & 1;
            mbar_wait(v_full(sp), php);
            turns.wait(cw, n_act);
            if constexpr (RO) rescale();
            issue_pv(sp);
            turns.pass(cw, n_act);
            wg_wait<0>();
            reg_fence<D / 2>(o);
            reg_fence_u<BN / 4>(&pa[0][0]);
            mbar_arrive(v_empty(sp));
        };
        /* union items (192-row lists, attn_worklist.h): this warpgroup's 64-row chunk skips the
         * item's key steps [x0, x1) (at most DFA_ACU_MAX_SKIP < ST in a row): it walks their
         * stages (waits for each fill, releases it) without computing; 128-row lists never skip.
         * Items without a skip take the plain loop (kept apart: the skip-aware loop measured 2-7 %
         * slower on dense plans, session 5) */
        int x0 = 0, x1 = 0;
        if constexpr (NC == 3) {
            const int sk = __shfl_sync(0xffffffffu, sl->it.skip[cw], 0);
            x0 = dfa_acu_skip_first(sk);
            x1 = x0 + dfa_acu_skip_count(sk);
        }
        if (NC == 3 && x1 > x0) { /* key ranges from global memory (the skip loop measured
                                    * slower reading them from the slot, session 5) */
            walker w(p.ranges + itr.r_off, itr.n_r);
            const uint32_t kf0 = k_full(0), vf0 = v_full(0), ke0 = k_empty(0), ve0 = v_empty(0);
            int step = acu_pass_skipped<ST>(0, x0, x1, gstep, kf0, vf0, ke0, ve0, w);
            int gp = gstep + step;
            first(gp, w.valid());
            for (step++, w.next();; step++, w.next()) {
                step = acu_pass_skipped<ST>(step, x0, x1, gstep, kf0, vf0, ke0, ve0, w);
                if (step >= n_steps) break;
                mid(gstep + step, gp, w.valid());
                gp = gstep + step;
            }
            last(gp);
        } else {
            walker w(sl->r, itr.n_r);
            first(gstep, w.valid());
            for (int step = 1; step < n_steps; step++) {
                w.next();
                mid(gstep + step, gstep + step - 1, w.valid());
            }
            ACU_TRC(7, clock64());
            last(gstep + n_steps - 1);
            ACU_TRC(8, clock64());
        }
        gstep += n_steps;
        /* epilogue: normalise; each warpgroup stages its 64 rows over its own Q rows (same
         * swizzled layout), which only its own finished wgmmas read, then stores them with
         * 16-byte accesses; the Q buffer goes back to the producer once all are done */
#pragma unroll
        for (int r = 0; r < 2; r++) {
            l_r[r] += __shfl_xor_sync(0xffffffffu, l_r[r], 1);
            l_r[r] += __shfl_xor_sync(0xffffffffu, l_r[r], 2);
            if constexpr (LSE)
                if (p.lse && (lane & 3) == 0) /* ring plans: the row's log-sum-exp */
                    acu_store_lse(p, itr, b, cw * 64 + wq * 16 + (lane >> 2) + 8 * r, m_r[r], l_r[r]);
            l_r[r] = l_r[r] > 0.f ? 1.f / l_r[r] : 0.f;
        }
        T *so = reinterpret_cast<T *>(base + qb * C::Q_BYTES);
        const int row = cw * 64 + wq * 16 + (lane >> 2), c = 2 * (lane & 3);
#pragma unroll
        for (int j = 0; j < D / 8; j++) {
            *reinterpret_cast<uint32_t *>(so + acu_tile_off<D, ACU_LAYOUT_TMA>(row, j) + c) =
                acu_pack<T>::two(o[4 * j] * l_r[0], o[4 * j + 1] * l_r[0]);
            *reinterpret_cast<uint32_t *>(so + acu_tile_off<D, ACU_LAYOUT_TMA>(row + 8, j) + c) =
                acu_pack<T>::two(o[4 * j + 2] * l_r[1], o[4 * j + 3] * l_r[1]);
        }
        if constexpr (FAST) {
            /* the storer warps store it (TMA or acu_storer_tile); the staging writes (generic proxy)
             * ordered before the TMA stores (async proxy) */
            asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
            q_done(qb);
            ACU_TRC(9, clock64());
            continue;
        }
        asm volatile("bar.sync %0, 128;\n" ::"r"(1 + cw) : "memory");
        if constexpr (ITEM_RELOAD) { /* slot[qb] stays until this warpgroup releases the buffer */
            const acu_slot *se = &slot[qb];
            acu_store_tile<D, ACU_LAYOUT_TMA, T>(p, se->it, se->idx % p.batch, so, ctid & 127, 128, cw * 64,
                                                 cw * 64 + 64, PAD ? p.head_dim : D);
        } else {
            acu_store_tile<D, ACU_LAYOUT_TMA, T>(p, itr, b, so, ctid & 127, 128, cw * 64, cw * 64 + 64,
                                                 PAD ? p.head_dim : D); /* the tensors' head dim */
        }
        /* the staging (over Q) is read; TMA may overwrite it after this (async proxy) */
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
        q_done(qb);
        ACU_TRC(9, clock64());
    }
#undef ACU_TRC
    turns.finish(cw);
#endif
}

template <int NC, int D, bool PAD, typename T>
cudaError_t launch(const acu_params &p, int dtype, bool persistent, cudaStream_t st) {
    using C = cfg<NC, D>;
    const int dg = PAD ? p.head_dim : D;
    encode_fn enc;
    cudaError_t e = get_encode(&enc);
    if (e != cudaSuccess) return e;
    CUtensorMap mq, mk, mv, mo;
    const int rows = p.batch * p.n_tokens;
    if ((e = make_map(enc, &mq, p.q, dtype, rows, p.n_heads, dg, C::BM)) != cudaSuccess) return e;
    if ((e = make_map(enc, &mk, p.k, dtype, rows, p.n_heads, dg, BN)) != cudaSuccess) return e;
    if ((e = make_map(enc, &mv, p.v, dtype, rows, p.n_heads, dg, BN)) != cudaSuccess) return e;
    if (NC == 2) { /* the storer's TMA stores (FAST): 64-row boxes, one per consumer warpgroup */
        if ((e = make_map(enc, &mo, p.o, dtype, rows, p.n_heads, dg, 64)) != cudaSuccess) return e;
    } else {
        mo = mv; /* unused */
    }
    e = cudaFuncSetAttribute(attn_wgmma_kernel<NC, D, PAD, T>, cudaFuncAttributeMaxDynamicSharedMemorySize, C::SMEM);
    if (e != cudaSuccess) return e;
    int dev = 0, sms = 0;
    if ((e = cudaGetDevice(&dev)) != cudaSuccess) return e;
    if ((e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev)) != cudaSuccess) return e;
    const int total = p.n_items * p.batch;
    const int grid = persistent && sms < total ? sms : total;
    attn_wgmma_kernel<NC, D, PAD, T><<<grid, C::THREADS, C::SMEM, st>>>(p, mq, mk, mv, mo);
    return cudaGetLastError();
}

template <typename T>
cudaError_t launch_d(const acu_params &p, int nc, int head_dim, int dtype, bool persistent, cudaStream_t st) {
    if (nc == 3) return head_dim == 64 ? launch<3, 64, false, T>(p, dtype, persistent, st) : cudaErrorInvalidValue;
    if (head_dim == 64) return launch<2, 64, false, T>(p, dtype, persistent, st);
    if (head_dim == 128) return launch<2, 128, false, T>(p, dtype, persistent, st);
    return launch<2, 128, true, T>(p, dtype, persistent, st); /* 64 < head_dim < 128 */
}

} // namespace

cudaError_t acu_launch_wgmma(const acu_params &p, int nc, int head_dim, int dtype, bool persistent, cudaStream_t st) {
    if (nc != 2 && nc != 3) return cudaErrorInvalidValue;
    if (dtype == DFA_ATTN_CUDA_BF16) return launch_d<__nv_bfloat16>(p, nc, head_dim, dtype, persistent, st);
    return launch_d<__half>(p, nc, head_dim, dtype, persistent, st);
}
