/* attn_cuda_mma.cu - variant 1: FlashAttention-2-style tiles on mma.sync m16n8k16.
 *
 * One CTA = one work item (head, 128 query rows) of one batch element; 8 warps, each owns 16
 * query rows. The key ranges of the item are walked in steps of 64 keys, K/V double-buffered
 * with cp.async (zero-filled past the range end, where scores are also masked to -inf).
 * Online softmax in the log2 domain, f32 accumulators; P stays in registers as the A
 * operand of the PV product. Grid = items x batch, items ordered longest-first.
 *
 * Head dims: any multiple of 8 in [8, 256]. D = 64 and 128 have their own exact kernels
 * (PAD = false). Every other D runs a padded kernel of width DP (32, 64, 80, 128 or 256, the
 * smallest >= D): Q/K/V tiles are loaded with their columns D..DP-1 zero-filled, both products
 * loop over the first NK = ceil(D/16) 16-column blocks only (the zero columns of the last block
 * add exactly 0 to Q K^T; of P V only the real D columns are stored). DP not a multiple of 64
 * (32, 80) has no room for the XOR swizzle within a row: its shared tiles use a row stride of
 * DP + 8 elements (an odd number of 16-byte chunks, so ldmatrix's 8 rows hit 8 distinct bank
 * groups). */
#include "attn/cuda/attn_cuda_dev.cuh"

namespace {

constexpr int BM = ACU_BM; /* 128 query rows */
constexpr int BN = 64;     /* keys per step */
constexpr int WARPS = 8;
constexpr int THREADS = WARPS * 32;

/* Shared tiles of DP columns: DP % 64 == 0 uses the XOR swizzle of acu_swz (16-byte chunk c of
 * row r at c ^ (r & 7)); other DP a plain row stride of DP + 8 elements. Offsets in elements. */
template <int DP>
struct mma_tile {
    static constexpr bool XOR = DP % 64 == 0;
    static constexpr int STRIDE = XOR ? DP : DP + 8;
    static __device__ __forceinline__ int off(int row, int chunk) {
        return XOR ? acu_swz<DP>(row, chunk) : row * STRIDE + (chunk << 3);
    }
};

template <int DP>
constexpr int smem_bytes() {
    return (BM + 4 * BN) * mma_tile<DP>::STRIDE * 2; /* Q + 2 x (K, V) */
}

__device__ __forceinline__ void ldsm_x4(uint32_t *r, uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t *r, uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

template <typename T>
__device__ __forceinline__ void mma16816(float *c, const uint32_t *a, uint32_t b0, uint32_t b1);
template <>
__device__ __forceinline__ void mma16816<__nv_bfloat16>(float *c, const uint32_t *a, uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma16816<__half>(float *c, const uint32_t *a, uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Load `rows` (<= R) rows of one head starting at token tok0 into a [R][DP] tile: chunks
 * [0, nch) of each row, rows >= nvalid and chunks >= dch (PAD: past the real head dim) zero-filled. */
template <int DP, bool PAD, int R>
__device__ __forceinline__ void load_tile(uint32_t s_base, const uint16_t *g, size_t tok_stride, int tok0, int nvalid,
                                          int nch, int dch, int tid) {
#pragma unroll
    for (int i = tid; i < R * nch; i += THREADS) {
        int r = i / nch, c = i % nch;
        bool ok = r < nvalid && (!PAD || c < dch);
        const uint16_t *src = g + (size_t)(tok0 + (ok ? r : 0)) * tok_stride + (PAD && !ok ? 0 : c) * 8;
        acu_cp16(s_base + mma_tile<DP>::off(r, c) * 2, src, ok);
    }
}

/* PAD kernels' CACHE item and epilogue: acu_copy_item / acu_store_tile with a runtime head dim d
 * (token stride n_heads * d) and the shared layout of mma_tile<DP>. */
__device__ __forceinline__ void copy_item_rt(const acu_params &p, const acu_item &it, int b, int tid, int d) {
    const size_t tok = (size_t)p.n_heads * d;
    const size_t base = ((size_t)b * p.n_tokens + it.q0) * tok + (size_t)it.head * d;
    const uint4 *src = reinterpret_cast<const uint4 *>(reinterpret_cast<const uint16_t *>(p.cache) + base);
    uint4 *dst = reinterpret_cast<uint4 *>(reinterpret_cast<uint16_t *>(p.o) + base);
    const int cpr = d / 8, tokv = (int)(tok / 8);
    for (int i = tid; i < it.q_len * cpr; i += THREADS) {
        int r = i / cpr, c = i % cpr;
        dst[(size_t)r * tokv + c] = src[(size_t)r * tokv + c];
    }
}

template <int DP, typename T>
__device__ __forceinline__ void store_tile_rt(const acu_params &p, const acu_item &it, int b, const T *s_o, int tid,
                                              int d) {
    const size_t tok = (size_t)p.n_heads * d;
    const size_t base = ((size_t)b * p.n_tokens + it.q0) * tok + (size_t)it.head * d;
    T *dst = reinterpret_cast<T *>(p.o) + base;
    const T *res = (it.flags & ACU_ITEM_RESID) ? reinterpret_cast<const T *>(p.resid) + base : nullptr;
    const int cpr = d / 8;
    for (int i = tid; i < it.q_len * cpr; i += THREADS) {
        int r = i / cpr, c = i % cpr;
        uint4 v = *reinterpret_cast<const uint4 *>(s_o + mma_tile<DP>::off(r, c));
        if (res) acu_add8<T>(v, res + (size_t)r * tok + c * 8);
        *reinterpret_cast<uint4 *>(dst + (size_t)r * tok + c * 8) = v;
    }
}

/* DP: the tile width (the head dim itself when !PAD); PAD: the head dim is p.head_dim <= DP. */
template <int DP, bool PAD, typename T>
__global__ void __launch_bounds__(THREADS, 1) attn_mma_kernel(const acu_params p) {
    extern __shared__ __align__(128) unsigned char smem_raw[];
    constexpr int S = mma_tile<DP>::STRIDE; /* elements per shared row */
    T *sQ = reinterpret_cast<T *>(smem_raw);
    T *sK = sQ + BM * S;      /* [2][BN][S] */
    T *sV = sK + 2 * BN * S;  /* [2][BN][S] */
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int b = blockIdx.x % p.batch;
    const acu_item it = p.items[blockIdx.x / p.batch];
    const int D = PAD ? p.head_dim : DP;           /* the real head dim (a multiple of 8) */
    const int NK = PAD ? (D + 15) >> 4 : DP / 16;  /* 16-column blocks of both products */
    const int NCH = 2 * NK, DCH = D >> 3;          /* chunks loaded per row, real chunks */
    if (it.flags & ACU_ITEM_COPY) {
        if constexpr (PAD)
            copy_item_rt(p, it, b, tid, D);
        else
            acu_copy_item<DP>(p, it, b, tid, THREADS);
        return;
    }
    const size_t tok = (size_t)p.n_heads * D;
    const size_t head_off = (size_t)b * p.n_tokens * tok + (size_t)it.head * D;
    const uint16_t *gq = reinterpret_cast<const uint16_t *>(p.q) + head_off;
    const uint16_t *gk = reinterpret_cast<const uint16_t *>(p.k) + head_off;
    const uint16_t *gv = reinterpret_cast<const uint16_t *>(p.v) + head_off;
    const uint32_t sQa = acu_smem(sQ), sKa = acu_smem(sK), sVa = acu_smem(sV);

    /* key-step walker over the item's ranges */
    int ld_r = 0, ld_k = p.ranges[it.r_off].x;
    int n_steps = 0;
    for (int r = 0; r < it.n_r; r++) {
        int2 kr = p.ranges[it.r_off + r];
        n_steps += (kr.y - kr.x + BN - 1) / BN;
    }
    auto issue_kv = [&](int buf, int &valid) {
        int2 kr = p.ranges[it.r_off + ld_r];
        valid = kr.y - ld_k < BN ? kr.y - ld_k : BN;
        load_tile<DP, PAD, BN>(sKa + buf * BN * S * 2, gk, tok, ld_k, valid, NCH, DCH, tid);
        load_tile<DP, PAD, BN>(sVa + buf * BN * S * 2, gv, tok, ld_k, valid, NCH, DCH, tid);
        ld_k += BN;
        if (ld_k >= kr.y && ld_r + 1 < it.n_r) {
            ld_r++;
            ld_k = p.ranges[it.r_off + ld_r].x;
        }
    };

    load_tile<DP, PAD, BM>(sQa, gq, tok, it.q0, it.q_len, NCH, DCH, tid);
    int valid_cur, valid_next = 0;
    issue_kv(0, valid_cur);
    acu_cp_commit();

    float o[DP / 8][4];
#pragma unroll
    for (int i = 0; i < DP / 8; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
    float m_r[2] = {-INFINITY, -INFINITY}, l_r[2] = {0.f, 0.f};
    const int qrow = warp * 16;

    for (int step = 0; step < n_steps; step++) {
        const int buf = step & 1;
        if (step + 1 < n_steps) {
            issue_kv(buf ^ 1, valid_next);
            acu_cp_commit();
            acu_cp_wait<1>();
        } else {
            acu_cp_wait<0>();
        }
        __syncthreads();
        const uint32_t kb = sKa + buf * BN * S * 2, vb = sVa + buf * BN * S * 2;

        float s[BN / 8][4];
#pragma unroll
        for (int i = 0; i < BN / 8; i++) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < DP / 16; kk++) {
            if (PAD && kk >= NK) break; /* the rest of the tile is zero padding */
            uint32_t a[4];
            ldsm_x4(a, sQa + mma_tile<DP>::off(qrow + ((lane >> 3) & 1) * 8 + (lane & 7), kk * 2 + (lane >> 4)) * 2);
#pragma unroll
            for (int nb = 0; nb < BN / 16; nb++) {
                uint32_t bb[4];
                ldsm_x4(bb, kb + mma_tile<DP>::off(nb * 16 + (lane >> 4) * 8 + (lane & 7), kk * 2 + ((lane >> 3) & 1)) * 2);
                mma16816<T>(s[2 * nb], a, bb[0], bb[1]);
                mma16816<T>(s[2 * nb + 1], a, bb[2], bb[3]);
            }
        }
        /* scale into the log2 domain, mask the tail of a short step */
#pragma unroll
        for (int nb = 0; nb < BN / 8; nb++) {
#pragma unroll
            for (int j = 0; j < 4; j++) {
                int col = nb * 8 + 2 * (lane & 3) + (j & 1);
                s[nb][j] = col < valid_cur ? s[nb][j] * p.scale_log2 : -INFINITY;
            }
        }
        float alpha[2];
#pragma unroll
        for (int r = 0; r < 2; r++) {
            float mx = m_r[r];
#pragma unroll
            for (int nb = 0; nb < BN / 8; nb++) mx = fmaxf(mx, fmaxf(s[nb][2 * r], s[nb][2 * r + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            alpha[r] = exp2f(m_r[r] - mx);
            m_r[r] = mx;
            float sum = 0.f;
#pragma unroll
            for (int nb = 0; nb < BN / 8; nb++) {
                s[nb][2 * r] = exp2f(s[nb][2 * r] - mx);
                s[nb][2 * r + 1] = exp2f(s[nb][2 * r + 1] - mx);
                sum += s[nb][2 * r] + s[nb][2 * r + 1];
            }
            l_r[r] = l_r[r] * alpha[r] + sum;
        }
#pragma unroll
        for (int i = 0; i < DP / 8; i++) {
            o[i][0] *= alpha[0];
            o[i][1] *= alpha[0];
            o[i][2] *= alpha[1];
            o[i][3] *= alpha[1];
        }
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++) {
            uint32_t a[4];
            a[0] = acu_pack<T>::two(s[2 * kk][0], s[2 * kk][1]);
            a[1] = acu_pack<T>::two(s[2 * kk][2], s[2 * kk][3]);
            a[2] = acu_pack<T>::two(s[2 * kk + 1][0], s[2 * kk + 1][1]);
            a[3] = acu_pack<T>::two(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
            for (int db = 0; db < DP / 16; db++) {
                if (PAD && db >= NK) break; /* output columns >= 16 NK stay 0 and are not stored */
                uint32_t bb[4];
                ldsm_x4_t(bb, vb + mma_tile<DP>::off(kk * 16 + ((lane >> 3) & 1) * 8 + (lane & 7), db * 2 + (lane >> 4)) * 2);
                mma16816<T>(o[2 * db], a, bb[0], bb[1]);
                mma16816<T>(o[2 * db + 1], a, bb[2], bb[3]);
            }
        }
        valid_cur = valid_next;
        __syncthreads(); /* the buffer is overwritten by the next step's loads */
    }

    /* normalise, write the warp's own rows of the tile into sQ, then store coalesced */
#pragma unroll
    for (int r = 0; r < 2; r++) {
        l_r[r] += __shfl_xor_sync(0xffffffffu, l_r[r], 1);
        l_r[r] += __shfl_xor_sync(0xffffffffu, l_r[r], 2);
        l_r[r] = l_r[r] > 0.f ? 1.f / l_r[r] : 0.f;
    }
#pragma unroll
    for (int nb = 0; nb < DP / 8; nb++) {
        if (PAD && nb >= NCH) break;
        int row = qrow + (lane >> 2), c = 2 * (lane & 3);
        *reinterpret_cast<uint32_t *>(sQ + mma_tile<DP>::off(row, nb) + c) =
            acu_pack<T>::two(o[nb][0] * l_r[0], o[nb][1] * l_r[0]);
        *reinterpret_cast<uint32_t *>(sQ + mma_tile<DP>::off(row + 8, nb) + c) =
            acu_pack<T>::two(o[nb][2] * l_r[1], o[nb][3] * l_r[1]);
    }
    __syncthreads();
    if constexpr (PAD)
        store_tile_rt<DP, T>(p, it, b, sQ, tid, D);
    else
        acu_store_tile<DP, ACU_LAYOUT_ROWS, T>(p, it, b, sQ, tid, THREADS, 0, BM);
}

template <int DP, bool PAD, typename T>
cudaError_t launch(const acu_params &p, cudaStream_t st) {
    constexpr int smem = smem_bytes<DP>();
    cudaError_t e =
        cudaFuncSetAttribute(attn_mma_kernel<DP, PAD, T>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (e != cudaSuccess) return e;
    attn_mma_kernel<DP, PAD, T><<<p.n_items * p.batch, THREADS, smem, st>>>(p);
    return cudaGetLastError();
}

/* head_dim: a multiple of 8 in [8, 256] (acu_check_common) */
template <typename T>
cudaError_t launch_d(const acu_params &p, int head_dim, cudaStream_t st) {
    if (head_dim == 64) return launch<64, false, T>(p, st);
    if (head_dim == 128) return launch<128, false, T>(p, st);
    if (head_dim <= 32) return launch<32, true, T>(p, st);
    if (head_dim <= 64) return launch<64, true, T>(p, st);
    if (head_dim <= 80) return launch<80, true, T>(p, st);
    if (head_dim <= 128) return launch<128, true, T>(p, st);
    return launch<256, true, T>(p, st);
}

} // namespace

cudaError_t acu_launch_mma(const acu_params &p, int head_dim, int dtype, cudaStream_t st) {
    if (dtype == DFA_ATTN_CUDA_BF16) return launch_d<__nv_bfloat16>(p, head_dim, st);
    return launch_d<__half>(p, head_dim, st);
}
