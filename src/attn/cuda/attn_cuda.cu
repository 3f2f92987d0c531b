/* attn_cuda.cu - plans (work lists from attn_worklist.c, uploaded), the run entry point, and
 * the small per-head cache kernels. The attention kernels live in attn_cuda_mma.cu (variant 1),
 * attn_cuda_wgmma.cu (variants 2, 3 and 5: 2 consumer warpgroups, or 3 for variant 5 at D=64);
 * the ring combine in attn_cuda_ring.cu. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attn/attn.h"
#include "attn/cuda/attn_cuda_int.h"
#include "attn/cuda/attn_sched.h"
#include "core/cuda_check.h"

struct dfa_attn_cuda_plan {
    dfa_attn_layout layout;
    int n_heads, variant;
    int n_items, n_ranges;
    void *dev;         /* items then ranges, one allocation */
    acu_item *d_items; /* into dev */
    int2 *d_ranges;
    int n_items3;       /* variant 5: the 192-row list (D=64), else 0 */
    acu_item *d_items3; /* into dev */
    int2 *d_ranges3;
    int *d_counter;
    /* tail-balanced launch orders (attn_sched.h) of the 128-row [0] and 192-row [1] lists for
     * B = 1 [.][0] and B = 2 [.][1] on the persistent kernels; NULL: the list's own order */
    acu_item *d_bal[2][2];
    int n_bal[2][2];
    int has_copy, has_resid;
    dfa_attn_cuda_plan_info info;
    int n_win, win[DFA_ACU_RING_MAX_WIN]; /* ring plans (dfa_attn_cuda_ring_plan_build); else 0 */
    int in_set; /* a member of a dfa_attn_cuda_plan_set: dev is NULL, the set owns the memory */
};

static int is_wgmma3(int variant) {
    return variant == DFA_ATTN_CUDA_V_WGMMA3_NOPP;
}

/* variants this build knows: 1, 2, 3, 5 */
static int variant_known(int variant) {
    return variant == DFA_ATTN_CUDA_V_MMA || variant == DFA_ATTN_CUDA_V_WGMMA ||
           variant == DFA_ATTN_CUDA_V_WGMMA_GRID || variant == DFA_ATTN_CUDA_V_WGMMA3_NOPP;
}

/* variants measured slower than (or no faster than) their bases, or used once as an A/B control,
 * and removed: 4, 6 to 12 (session 4), 14 (session 5: v5 reading key ranges from global memory),
 * 15 and 16 (session 6: the A/B sides of the storer warp and four other experiments), 17 to 21
 * (session 7: the P V wait after the exponentials, early item fetch, the next item's first QK^T
 * under the epilogue, st.shared staging; bench/RESULTS.md "Session 7"), 22 (session 7: the A/B
 * side of the first item by block index, now every wgmma kernel's), 23 (session 7: the next item
 * claimed 3 key steps early) */
static int variant_removed(int variant) {
    return variant == 4 || (variant >= 6 && variant <= 12) || (variant >= 14 && variant <= 23);
}

static dfa_status plan_upload(dfa_attn_cuda_plan **out, dfa_acu_worklist *wlp, dfa_acu_worklist *wl3p,
                              const dfa_attn_layout *layout, int n_heads, int variant, int balance, void *stream,
                              dfa_error *err);

static dfa_status resolve_variant(int *variant, dfa_error *err) {
    /* default on sm_90: variant 5 (D=64 on the 3-consumer kernel, 72..128 as variant 2; other
     * head dims go to variant 1 at run time); variant 1 elsewhere. Measured on an H100 after the
     * idle-warpgroup protocol fix (bench/RESULTS.md, session 4): v5 is 2-5 % faster than v2 at D=64
     * dense and mixed, within noise on arrow plans; variants 4 and 6-10 were slower than their bases
     * and are removed. */
    if (*variant == DFA_ATTN_CUDA_V_DEFAULT)
        *variant = dfa_attn_cuda_variant_ok(DFA_ATTN_CUDA_V_WGMMA3_NOPP) ? DFA_ATTN_CUDA_V_WGMMA3_NOPP
                                                                         : DFA_ATTN_CUDA_V_MMA;
    if (variant_removed(*variant))
        DFA_FAIL(err, DFA_ERR_INVALID_ARG,
                 "attn_cuda plan: variant %d was removed (slower than its base or an A/B control, bench/RESULTS.md "
                 "sessions 4-7); "
                 "use 1, 2, 3 or 5",
                 *variant);
    if (!variant_known(*variant))
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda plan: unknown variant %d (expected 1, 2, 3 or 5)", *variant);
    return DFA_OK;
}

/* The 128-row list serves every variant and head dim; variant 5 adds the 192-row list that its
 * D=64 kernel runs (else wl3 is left empty). On failure nothing is left allocated. */
static dfa_status build_lists(dfa_acu_worklist *wl, dfa_acu_worklist *wl3, const dfa_attn_layout *layout,
                              int n_heads, const int *method, const int *window, int variant, dfa_error *err) {
    memset(wl3, 0, sizeof *wl3);
    DFA_TRY(dfa_acu_worklist_build(wl, layout, n_heads, method, window, err));
    if (is_wgmma3(variant)) {
        dfa_status st = dfa_acu_worklist_build_rows(wl3, layout, n_heads, method, window, DFA_ACU_BM3, err);
        if (st != DFA_OK) {
            dfa_acu_worklist_free(wl);
            return st;
        }
    }
    return DFA_OK;
}

/* A plan's two work lists, their tail-balanced orders, and where they go in its device block
 * (16-byte aligned pieces): items, ranges, the 192-row items and ranges, the work counter, the
 * balanced orders. */
typedef struct plan_lists {
    dfa_acu_worklist wl, wl3;
    dfa_acu_item *bal[2][2]; /* [list: 128, 192][B = 1, 2], NULL = unchanged */
    int n_bal[2][2];
    size_t items_pad, off3, items3_pad, off_counter, off_bal[2][2], bytes;
} plan_lists;

static void lists_free(plan_lists *L) {
    dfa_acu_worklist_free(&L->wl);
    dfa_acu_worklist_free(&L->wl3);
    for (int i = 0; i < 4; i++) free(L->bal[i / 2][i % 2]), L->bal[i / 2][i % 2] = NULL;
}

/* Tail balancing (attn_sched.h) for the persistent kernels (not variants 1 and 3, one CTA per
 * item) on this device's SM count, for B = 1 and 2 (a plan does not know B; the run picks the
 * order made for its B, other B run the list's own order). `balance`: the plan's option
 * (attn_cuda.h DFA_ATTN_CUDA_BALANCE_*: OFF for A/B timing, bench_attn_gpu --balance; SPLIT128
 * also splits 128-row items, only for a 2-consumer kernel that skips idle warpgroups). */
static dfa_status balance_lists(plan_lists *L, int variant, int balance, dfa_error *err) {
    memset(L->bal, 0, sizeof L->bal);
    memset(L->n_bal, 0, sizeof L->n_bal);
    int on = 0, split128 = 0;
    DFA_TRY(dfa_acu_balance_mode(balance, variant, &on, &split128, err));
    if (!on) return DFA_OK;
    int dev = 0, sms = 0;
    DFA_CUDA_TRY(err, cudaGetDevice(&dev));
    DFA_CUDA_TRY(err, cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    for (int li = 0; li < 2; li++) {
        const dfa_acu_worklist *wl = li ? &L->wl3 : &L->wl;
        if (wl->n_items == 0) continue;
        for (int bi = 0; bi < 2; bi++) {
            dfa_acu_balance b = {sms, bi + 1, split128, NULL};
            DFA_TRY(dfa_acu_worklist_balance(wl, li ? DFA_ACU_BM3 : DFA_ACU_BM, &b, &L->bal[li][bi],
                                             &L->n_bal[li][bi], NULL, err));
        }
    }
    return DFA_OK;
}

extern "C" dfa_status dfa_attn_cuda_plan_build_opt(dfa_attn_cuda_plan **out, const dfa_attn_layout *layout,
                                                   int n_heads, const int *method, const int *window, int variant,
                                                   int balance, void *stream, dfa_error *err) {
    *out = NULL;
    DFA_TRY(resolve_variant(&variant, err));
    dfa_acu_worklist wl, wl3; /* an unknown balance option fails in plan_upload (lists freed) */
    DFA_TRY(build_lists(&wl, &wl3, layout, n_heads, method, window, variant, err));
    return plan_upload(out, &wl, &wl3, layout, n_heads, variant, balance, stream, err);
}

extern "C" dfa_status dfa_attn_cuda_plan_build(dfa_attn_cuda_plan **out, const dfa_attn_layout *layout, int n_heads,
                                               const int *method, const int *window, int variant, void *stream,
                                               dfa_error *err) {
    return dfa_attn_cuda_plan_build_opt(out, layout, n_heads, method, window, variant, DFA_ATTN_CUDA_BALANCE_ON,
                                        stream, err);
}

static void lists_layout(plan_lists *L) {
    static_assert(sizeof(dfa_acu_range) == sizeof(int2), "ranges are read as int2 on the device");
    const dfa_acu_worklist *wl = &L->wl, *wl3 = &L->wl3;
    L->items_pad = ((size_t)wl->n_items * sizeof(acu_item) + 15) & ~(size_t)15;
    const size_t ranges_pad = ((size_t)(wl->n_ranges ? wl->n_ranges : 1) * sizeof(int2) + 15) & ~(size_t)15;
    L->items3_pad = ((size_t)wl3->n_items * sizeof(acu_item) + 15) & ~(size_t)15;
    const size_t ranges3_pad = ((size_t)(wl3->n_ranges ? wl3->n_ranges : 1) * sizeof(int2) + 15) & ~(size_t)15;
    L->off3 = L->items_pad + ranges_pad;
    L->off_counter = L->off3 + L->items3_pad + ranges3_pad;
    size_t off = L->off_counter + 16; /* + the work counter */
#ifdef DFA_ACU_TRACE
    off += DFA_ACU_TRACE_BYTES; /* the trace region after the counter */
#endif
    for (int i = 0; i < 4; i++) {
        L->off_bal[i / 2][i % 2] = off;
        off += ((size_t)L->n_bal[i / 2][i % 2] * sizeof(acu_item) + 15) & ~(size_t)15;
    }
    L->bytes = off;
}

/* Copy the lists into flat (L->bytes, zeroed) and point p at dev (its device copy). */
static void lists_pack(const plan_lists *L, char *flat, void *dev, dfa_attn_cuda_plan *p,
                       const dfa_attn_layout *layout, int n_heads, int variant) {
    const dfa_acu_worklist *wl = &L->wl, *wl3 = &L->wl3;
    memcpy(flat, wl->items, (size_t)wl->n_items * sizeof(acu_item));
    memcpy(flat + L->items_pad, wl->ranges, (size_t)wl->n_ranges * sizeof(dfa_acu_range));
    if (wl3->n_items) {
        memcpy(flat + L->off3, wl3->items, (size_t)wl3->n_items * sizeof(acu_item));
        memcpy(flat + L->off3 + L->items3_pad, wl3->ranges, (size_t)wl3->n_ranges * sizeof(dfa_acu_range));
    }
    p->layout = *layout;
    p->n_heads = n_heads;
    p->variant = variant;
    p->n_items = wl->n_items;
    p->n_ranges = wl->n_ranges;
    p->d_items = (acu_item *)dev;
    p->d_ranges = (int2 *)((char *)dev + L->items_pad);
    p->n_items3 = wl3->n_items;
    p->d_items3 = (acu_item *)((char *)dev + L->off3);
    p->d_ranges3 = (int2 *)((char *)dev + L->off3 + L->items3_pad);
    p->d_counter = (int *)((char *)dev + L->off_counter);
    for (int i = 0; i < 4; i++) {
        const int li = i / 2, bi = i % 2;
        p->n_bal[li][bi] = L->n_bal[li][bi];
        p->d_bal[li][bi] = L->bal[li][bi] ? (acu_item *)((char *)dev + L->off_bal[li][bi]) : NULL;
        if (L->bal[li][bi])
            memcpy(flat + L->off_bal[li][bi], L->bal[li][bi], (size_t)L->n_bal[li][bi] * sizeof(acu_item));
    }
    p->has_copy = wl->has_copy;
    p->has_resid = wl->has_resid;
    p->info = wl->info;
    p->info.variant = variant;
    for (int i = 0; i < 4; i++) p->info.n_bal_items[i / 2][i % 2] = L->bal[i / 2][i % 2] ? L->n_bal[i / 2][i % 2] : 0;
}

/* Upload wl and wl3 (wl3 may be empty; both freed here in every case) as a plan, with their
 * tail-balanced orders as `balance` (DFA_ATTN_CUDA_BALANCE_*) says. */
static dfa_status plan_upload(dfa_attn_cuda_plan **out, dfa_acu_worklist *wlp, dfa_acu_worklist *wl3p,
                              const dfa_attn_layout *layout, int n_heads, int variant, int balance, void *stream,
                              dfa_error *err) {
    plan_lists L;
    memset(&L, 0, sizeof L);
    L.wl = *wlp, L.wl3 = *wl3p;
    const dfa_status bst = balance_lists(&L, variant, balance, err);
    if (bst != DFA_OK) {
        lists_free(&L);
        return bst;
    }
    /* the wgmma kernels hand an item's key ranges to their consumers in a 2-entry shared slot
     * (attn_cuda_wgmma.cu acu_slot); the builders never make more (attn_worklist.h) */
    for (int li = 0; li < 2; li++) {
        const dfa_acu_worklist *w = li ? &L.wl3 : &L.wl;
        for (int i = 0; i < w->n_items; i++)
            if (w->items[i].n_r > 2) {
                const int n_r = w->items[i].n_r;
                lists_free(&L);
                DFA_FAIL(err, DFA_ERR_INTERNAL, "attn_cuda plan: item %d has %d key ranges (at most 2)", i, n_r);
            }
    }
    lists_layout(&L);
    const size_t bytes = L.bytes;
    dfa_attn_cuda_plan *p = (dfa_attn_cuda_plan *)calloc(1, sizeof *p);
    char *flat = (char *)calloc(1, bytes);
    cudaError_t e = cudaErrorMemoryAllocation;
    if (p && flat) {
        e = cudaMalloc(&p->dev, bytes);
        if (e == cudaSuccess) {
            lists_pack(&L, flat, p->dev, p, layout, n_heads, variant);
            e = cudaMemcpyAsync(p->dev, flat, bytes, cudaMemcpyHostToDevice, (cudaStream_t)stream);
        }
        if (e == cudaSuccess) e = cudaStreamSynchronize((cudaStream_t)stream);
    }
    free(flat);
    lists_free(&L);
    if (!p) DFA_FAIL(err, DFA_ERR_OOM, "attn_cuda plan: out of host memory");
    if (e != cudaSuccess) {
        if (p->dev) cudaFree(p->dev);
        free(p);
        DFA_FAIL(err, DFA_ERR_CUDA, "attn_cuda plan: upload of %zu bytes failed: %s", bytes, cudaGetErrorString(e));
    }
    *out = p;
    return DFA_OK;
}

/* ---- plan sets: many plans, one device allocation, one copy ---- */
struct dfa_attn_cuda_plan_set {
    int n;
    size_t bytes;
    void *dev;
    dfa_attn_cuda_plan *plans; /* [n], in_set */
};

extern "C" dfa_status dfa_attn_cuda_plan_set_build(dfa_attn_cuda_plan_set **out, int n, const dfa_attn_layout *layouts,
                                                   int n_heads, const int *method, const int *window, int variant,
                                                   void *stream, dfa_error *err) {
    *out = NULL;
    if (n < 1 || n_heads < 1) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda plan set: %d plans of %d heads", n, n_heads);
    DFA_TRY(resolve_variant(&variant, err));
    dfa_attn_cuda_plan_set *ps = (dfa_attn_cuda_plan_set *)calloc(1, sizeof *ps);
    plan_lists *L = (plan_lists *)calloc((size_t)n, sizeof *L);
    size_t *off = (size_t *)calloc((size_t)n, sizeof *off);
    if (ps) ps->plans = (dfa_attn_cuda_plan *)calloc((size_t)n, sizeof *ps->plans);
    dfa_status st = DFA_OK;
    int built = 0;
    if (!ps || !L || !off || !ps->plans) st = DFA_SET(err, DFA_ERR_OOM, "attn_cuda plan set: out of host memory");
    size_t total = 0;
    for (; st == DFA_OK && built < n; built++) { /* host: every list, then one block for all */
        const size_t h = (size_t)built * n_heads;
        st = build_lists(&L[built].wl, &L[built].wl3, &layouts[built], n_heads, method + h, window + h, variant, err);
        if (st != DFA_OK) break;
        st = balance_lists(&L[built], variant, DFA_ATTN_CUDA_BALANCE_ON, err);
        if (st != DFA_OK) {
            lists_free(&L[built]);
            break;
        }
        lists_layout(&L[built]);
        off[built] = total;
        total += (L[built].bytes + 255) & ~(size_t)255;
    }
    char *flat = st == DFA_OK ? (char *)calloc(1, total) : NULL;
    if (st == DFA_OK && !flat) st = DFA_SET(err, DFA_ERR_OOM, "attn_cuda plan set: out of host memory (%zu bytes)", total);
    if (st == DFA_OK) {
        cudaError_t e = cudaMalloc(&ps->dev, total);
        if (e == cudaSuccess) {
            for (int i = 0; i < n; i++) {
                lists_pack(&L[i], flat + off[i], (char *)ps->dev + off[i], &ps->plans[i], &layouts[i], n_heads, variant);
                ps->plans[i].in_set = 1;
            }
            e = cudaMemcpyAsync(ps->dev, flat, total, cudaMemcpyHostToDevice, (cudaStream_t)stream);
        }
        if (e == cudaSuccess) e = cudaStreamSynchronize((cudaStream_t)stream);
        if (e != cudaSuccess)
            st = DFA_SET(err, DFA_ERR_CUDA, "attn_cuda plan set: upload of %d work lists (%zu bytes) failed: %s", n,
                         total, cudaGetErrorString(e));
    }
    free(flat);
    for (int i = 0; L && i < built; i++) lists_free(&L[i]);
    free(L);
    free(off);
    if (st != DFA_OK) {
        dfa_attn_cuda_plan_set_free(ps);
        return st;
    }
    ps->n = n;
    ps->bytes = total;
    *out = ps;
    return DFA_OK;
}

extern "C" dfa_attn_cuda_plan *dfa_attn_cuda_plan_set_get(dfa_attn_cuda_plan_set *ps, int i) {
    return ps && i >= 0 && i < ps->n ? &ps->plans[i] : NULL;
}

extern "C" size_t dfa_attn_cuda_plan_set_bytes(const dfa_attn_cuda_plan_set *ps) {
    return ps ? ps->bytes : 0;
}

extern "C" void dfa_attn_cuda_plan_set_free(dfa_attn_cuda_plan_set *ps) {
    if (!ps) return;
    if (ps->dev) cudaFree(ps->dev);
    free(ps->plans);
    free(ps);
}

extern "C" dfa_status dfa_attn_cuda_ring_plan_build(dfa_attn_cuda_plan **out, const dfa_attn_layout *layout,
                                                    int n_heads, int n_win, const int *win, void *stream,
                                                    dfa_error *err) {
    *out = NULL;
    dfa_acu_worklist wl, wl3;
    memset(&wl3, 0, sizeof wl3);
    DFA_TRY(dfa_acu_worklist_build_rings(&wl, layout, n_heads, n_win, win, err));
    DFA_TRY(plan_upload(out, &wl, &wl3, layout, n_heads, DFA_ATTN_CUDA_V_WGMMA, DFA_ATTN_CUDA_BALANCE_OFF, stream,
                        err));
    (*out)->n_win = n_win;
    memcpy((*out)->win, win, sizeof(int) * n_win);
    return DFA_OK;
}

/* The launch parameters every run shares (the 128-row list, no cache / residual / slots / LSE). */
static void params_init(acu_params *prm, const dfa_attn_cuda_plan *p, const dfa_attn_cuda_args *a, void *out) {
    memset(prm, 0, sizeof *prm);
    prm->q = a->q;
    prm->k = a->k;
    prm->v = a->v;
    prm->o = out;
    prm->items = p->d_items;
    prm->ranges = p->d_ranges;
    prm->counter = p->d_counter;
#ifdef DFA_ACU_TRACE
    prm->trace = (unsigned long long *)((char *)p->d_counter + 16);
#endif
    prm->n_items = p->n_items;
    prm->batch = a->batch;
    prm->n_tokens = dfa_layout_tokens(&p->layout);
    prm->n_heads = p->n_heads;
    prm->head_dim = a->head_dim;
    const float scale = a->scale > 0 ? a->scale : 1.0f / sqrtf((float)a->head_dim);
    prm->scale_log2 = scale * 1.4426950408889634f;
}

#ifdef DFA_ACU_TRACE
/* trace builds only: the plan's trace region on the device (DFA_ACU_TRACE_BYTES) */
extern "C" void *dfa_attn_cuda_plan_trace(const dfa_attn_cuda_plan *p) {
    return (char *)p->d_counter + 16;
}
#endif

extern "C" void dfa_attn_cuda_plan_free(dfa_attn_cuda_plan *p) {
    if (!p || p->in_set) return; /* set members go with their set */
    if (p->dev) cudaFree(p->dev);
    free(p);
}

extern "C" void dfa_attn_cuda_plan_get_info(const dfa_attn_cuda_plan *p, dfa_attn_cuda_plan_info *info) {
    *info = p->info;
}

extern "C" int dfa_attn_cuda_variant_ok(int variant) {
    if (variant == DFA_ATTN_CUDA_V_MMA || variant == DFA_ATTN_CUDA_V_DEFAULT) return 1;
    if (variant < DFA_ATTN_CUDA_V_WGMMA || !variant_known(variant)) return 0;
    int dev = 0, major = 0, minor = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) return 0;
    if (cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) return 0;
    return major == 9 && minor == 0;
}

dfa_status acu_check_common(int dtype, int batch, int head_dim, dfa_error *err) {
    if (dtype != DFA_ATTN_CUDA_BF16 && dtype != DFA_ATTN_CUDA_F16)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda: dtype %d (expected bf16=0 or f16=1)", dtype);
    if (head_dim < 8 || head_dim > 256 || head_dim % 8 != 0)
        DFA_FAIL(err, DFA_ERR_UNSUPPORTED, "attn_cuda: head_dim %d (supported: multiples of 8 from 8 to 256)",
                 head_dim);
    if (batch < 1 || batch > 65535) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda: batch %d", batch);
    return DFA_OK;
}

extern "C" dfa_status dfa_attn_cuda_run(const dfa_attn_cuda_plan *p, const dfa_attn_cuda_args *a, dfa_error *err) {
    DFA_TRY(acu_check_common(a->dtype, a->batch, a->head_dim, err));
    if (p->n_win) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda: a ring plan runs by dfa_attn_cuda_ring_run");
    if (!a->q || !a->k || !a->v || !a->out) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda: NULL q/k/v/out");
    if (p->has_copy && !a->cache)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda: plan has CACHE heads but args.cache is NULL");
    if (p->has_resid && !a->resid)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda: plan has ARROW_RS heads but args.resid is NULL");
    const void *ptrs[6] = {a->q, a->k, a->v, a->out, a->cache, a->resid};
    for (int i = 0; i < 6; i++)
        if (((uintptr_t)ptrs[i] & 15) != 0)
            DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda: tensor %d not 16-byte aligned", i);
    if ((int64_t)p->n_items * a->batch > 0x7fffffffLL)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda: %d items x batch %d too many", p->n_items, a->batch);
    /* the wgmma kernel exists for D = 64 and 128, and 72..120 on the D=128 kernel with TMA's zero
     * fill as padding; other head dims run variant 1 on the same work list (it does not depend on
     * the variant) */
    const int wgmma = p->variant >= DFA_ATTN_CUDA_V_WGMMA && a->head_dim >= 64 && a->head_dim <= 128;
    /* variant 5 at D=64: the 3-consumer kernel on the 192-row list */
    const int wgmma3 = is_wgmma3(p->variant) && a->head_dim == 64;
    if (wgmma && !dfa_attn_cuda_variant_ok(p->variant))
        DFA_FAIL(err, DFA_ERR_UNSUPPORTED, "attn_cuda: variant %d (wgmma) needs an sm_90 GPU", p->variant);
    acu_params prm;
    params_init(&prm, p, a, a->out);
    prm.cache = a->cache;
    prm.resid = a->resid;
    cudaStream_t st = (cudaStream_t)a->stream;
    if (p->n_items == 0) return DFA_OK; /* every head DFA_ATTN_CUDA_NONE */
    if (wgmma) DFA_CUDA_TRY(err, cudaMemsetAsync(p->d_counter, 0, sizeof(int), st));
    if (wgmma3) {
        prm.items = p->d_items3;
        prm.ranges = p->d_ranges3;
        prm.n_items = p->n_items3;
    }
    /* the persistent kernels run the list's order balanced for this B, if the plan has one */
    if (wgmma && p->variant != DFA_ATTN_CUDA_V_WGMMA_GRID && a->batch <= 2 && p->d_bal[wgmma3][a->batch - 1]) {
        prm.items = p->d_bal[wgmma3][a->batch - 1];
        prm.n_items = p->n_bal[wgmma3][a->batch - 1];
        if ((int64_t)prm.n_items * a->batch > 0x7fffffffLL)
            DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda: %d items x batch %d too many", prm.n_items, a->batch);
    }
    cudaError_t e;
    if (wgmma) /* 3 consumers for variant 5 at D=64; persistent except variant 3 */
        e = acu_launch_wgmma(prm, wgmma3 ? 3 : 2, a->head_dim, a->dtype, p->variant != DFA_ATTN_CUDA_V_WGMMA_GRID, st);
    else
        e = acu_launch_mma(prm, a->head_dim, a->dtype, st);
    if (e != cudaSuccess)
        DFA_FAIL(err, DFA_ERR_CUDA, "attn_cuda: variant %d launch (D=%d, %d items x B=%d) failed: %s", p->variant,
                 a->head_dim, p->n_items, a->batch, cudaGetErrorString(e));
    return DFA_OK;
}

/* ---- ring plans: FULL and several ARROW windows from one launch + a combine ---- */
static size_t ring_seg_bytes(const dfa_attn_cuda_plan *p, int batch, int head_dim) {
    const size_t e = (size_t)batch * dfa_layout_tokens(&p->layout) * p->n_heads * head_dim * 2;
    return ((e * (p->n_win + 1)) + 255) & ~(size_t)255;
}

extern "C" size_t dfa_attn_cuda_ring_scratch_bytes(const dfa_attn_cuda_plan *p, int batch, int head_dim) {
    if (!p->n_win) return 0;
    return ring_seg_bytes(p, batch, head_dim) +
           (size_t)(p->n_win + 1) * batch * dfa_layout_tokens(&p->layout) * p->n_heads * sizeof(float);
}

extern "C" dfa_status dfa_attn_cuda_ring_run(const dfa_attn_cuda_plan *p, const dfa_attn_cuda_args *a, void *scratch,
                                             void *full, void *const *arrow, dfa_error *err) {
    DFA_TRY(acu_check_common(a->dtype, a->batch, a->head_dim, err));
    if (!p->n_win) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda ring run: not a ring plan");
    if (a->head_dim < 64 || a->head_dim > 128 || !dfa_attn_cuda_variant_ok(DFA_ATTN_CUDA_V_WGMMA))
        DFA_FAIL(err, DFA_ERR_UNSUPPORTED, "attn_cuda ring run: needs the wgmma kernel (sm_90, D 64..128; D=%d)",
                 a->head_dim);
    if (!a->q || !a->k || !a->v || !scratch || !full)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda ring run: NULL q/k/v/scratch/full");
    for (int i = 0; i < p->n_win; i++)
        if (!arrow[i] || ((uintptr_t)arrow[i] & 15))
            DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda ring run: arrow output %d NULL or not 16-byte aligned", i);
    const void *ptrs[5] = {a->q, a->k, a->v, full, scratch};
    for (int i = 0; i < 5; i++)
        if (((uintptr_t)ptrs[i] & 15) != 0)
            DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda ring run: tensor %d not 16-byte aligned", i);
    if ((int64_t)p->n_items * a->batch > 0x7fffffffLL)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda ring run: %d items x batch %d too many", p->n_items, a->batch);
    acu_params prm;
    params_init(&prm, p, a, scratch);
    prm.slot_stride = (size_t)a->batch * prm.n_tokens * p->n_heads * a->head_dim;
    prm.lse = (float *)((char *)scratch + ring_seg_bytes(p, a->batch, a->head_dim));
    cudaStream_t st = (cudaStream_t)a->stream;
    DFA_CUDA_TRY(err, cudaMemsetAsync(p->d_counter, 0, sizeof(int), st));
    cudaError_t e = acu_launch_wgmma(prm, 2, a->head_dim, a->dtype, true, st);
    if (e != cudaSuccess)
        DFA_FAIL(err, DFA_ERR_CUDA, "attn_cuda ring run: launch (D=%d, %d items x B=%d) failed: %s", a->head_dim,
                 p->n_items, a->batch, cudaGetErrorString(e));
    acu_ring_args ra;
    memset(&ra, 0, sizeof ra);
    ra.seg = scratch;
    ra.lse = prm.lse;
    for (int i = 0; i < p->n_win; i++) ra.out[i] = arrow[i], ra.win[i] = p->win[i];
    ra.out[p->n_win] = full;
    ra.n_win = p->n_win;
    ra.layout = p->layout;
    ra.rows = (size_t)a->batch * prm.n_tokens;
    ra.n_heads = p->n_heads;
    ra.head_dim = a->head_dim;
    e = acu_launch_ring_combine(ra, a->dtype, st);
    if (e != cudaSuccess)
        DFA_FAIL(err, DFA_ERR_CUDA, "attn_cuda ring run: combine launch failed: %s", cudaGetErrorString(e));
    return DFA_OK;
}

/* ---- per-head cache kernels: 16-byte vectors (8 elements), D % 8 == 0 ---- */

struct head_mask {
    unsigned long long w[4];
};

static dfa_status make_mask(head_mask *m, const unsigned char *heads, int n_heads, dfa_error *err) {
    if (n_heads < 1 || n_heads > 256) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda: n_heads %d (1..256)", n_heads);
    memset(m, 0, sizeof *m);
    for (int h = 0; h < n_heads; h++)
        if (heads[h]) m->w[h >> 6] |= 1ULL << (h & 63);
    return DFA_OK;
}

template <typename T>
__device__ __forceinline__ float to_f(T x);
template <>
__device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 x) {
    return __bfloat162float(x);
}
template <>
__device__ __forceinline__ float to_f<__half>(__half x) {
    return __half2float(x);
}
template <typename T>
__device__ __forceinline__ T from_f(float x);
template <>
__device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) {
    return __float2bfloat16(x);
}
template <>
__device__ __forceinline__ __half from_f<__half>(float x) {
    return __float2half(x);
}

/* dst = a (b == NULL) or a - b, on the selected heads. One thread per 8 elements. */
template <typename T>
__global__ void heads_kernel(T *dst, const T *a, const T *b, int64_t n_vec, int n_heads, int dvec, head_mask m) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_vec) return;
    int h = (int)((i / dvec) % n_heads);
    if (!((m.w[h >> 6] >> (h & 63)) & 1)) return;
    uint4 va = reinterpret_cast<const uint4 *>(a)[i];
    if (b) {
        uint4 vb = reinterpret_cast<const uint4 *>(b)[i];
        const T *xa = reinterpret_cast<const T *>(&va);
        const T *xb = reinterpret_cast<const T *>(&vb);
        uint4 vo;
        T *xo = reinterpret_cast<T *>(&vo);
#pragma unroll
        for (int j = 0; j < 8; j++) xo[j] = from_f<T>(to_f<T>(xa[j]) - to_f<T>(xb[j]));
        va = vo;
    }
    reinterpret_cast<uint4 *>(dst)[i] = va;
}

static dfa_status heads_op(void *dst, const void *a, const void *b, int dtype, int batch, int n_tokens, int n_heads,
                           int head_dim, const unsigned char *heads, void *stream, dfa_error *err) {
    DFA_TRY(acu_check_common(dtype, batch, head_dim, err));
    if (n_tokens < 1) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda: n_tokens %d", n_tokens);
    if (!dst || !a) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda: NULL buffer");
    head_mask m;
    DFA_TRY(make_mask(&m, heads, n_heads, err));
    const int dvec = head_dim / 8;
    const int64_t n_vec = (int64_t)batch * n_tokens * n_heads * dvec;
    const int threads = 256;
    const int64_t blocks = (n_vec + threads - 1) / threads;
    cudaStream_t st = (cudaStream_t)stream;
    if (dtype == DFA_ATTN_CUDA_BF16)
        heads_kernel<__nv_bfloat16><<<(unsigned)blocks, threads, 0, st>>>(
            (__nv_bfloat16 *)dst, (const __nv_bfloat16 *)a, (const __nv_bfloat16 *)b, n_vec, n_heads, dvec, m);
    else
        heads_kernel<__half><<<(unsigned)blocks, threads, 0, st>>>((__half *)dst, (const __half *)a,
                                                                    (const __half *)b, n_vec, n_heads, dvec, m);
    DFA_CUDA_LAUNCH_TRY(err);
    return DFA_OK;
}

extern "C" dfa_status dfa_attn_cuda_copy_heads(void *dst, const void *src, int dtype, int batch, int n_tokens,
                                               int n_heads, int head_dim, const unsigned char *heads, void *stream,
                                               dfa_error *err) {
    return heads_op(dst, src, NULL, dtype, batch, n_tokens, n_heads, head_dim, heads, stream, err);
}

extern "C" dfa_status dfa_attn_cuda_residual(void *dst, const void *full, const void *arrow, int dtype, int batch,
                                             int n_tokens, int n_heads, int head_dim, const unsigned char *heads,
                                             void *stream, dfa_error *err) {
    if (!arrow) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda residual: NULL arrow buffer");
    return heads_op(dst, full, arrow, dtype, batch, n_tokens, n_heads, head_dim, heads, stream, err);
}
