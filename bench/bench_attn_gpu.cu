/* bench_attn_gpu.cu - times the fused multi-strategy attention kernel variants at the
 * DiTFastAttnV2 shapes (B=1, H=24, visual 4096/16384 + 512 text tokens, text first, block 128,
 * D 128 and 64): dense, arrow at block sparsity ~25/50/75 %, and a mixed per-head plan, for
 * variants 1, 2, 3 and 5 (5 at D=64 only: at other D it runs variant 2's kernel).
 * L2 is flushed (256 MB memset) before every timed launch; median of many, CUDA events.
 *
 * usage: bench_attn_gpu [out.json] [iters]     (JSON lines, one per measurement)
 *        bench_attn_gpu --one D NV variant window  (two launches of one plan, for ncu; window < 0: dense)
 *        bench_attn_gpu --balance out.json [iters]  tail-balanced work lists (attn_sched.h) against the
 *            lists' own order, default variant, same run: dense and arrow 25/50/75 % at 4096/16384
 *            + 512, D 64 and 128; outputs compared bit for bit; the schedule model's predicted ratio
 *            next to the measured one (JSON lines "kind":"balance" appended to out.json)
 *        bench_attn_gpu --balance-split128 out.json [iters]  the same with the balanced plans built
 *            with DFA_ATTN_CUDA_BALANCE_SPLIT128 (128-row items may be split too; "split128":1)
 *        bench_attn_gpu --extra DIR out.json [iters]  head dims beyond the paper's: dense outputs of
 *            every variant at a few shapes (D 64, 128, 72; inputs and outputs as raw bf16 files in
 *            DIR, listed in DIR/manifest.jsonl) for bench/attn_sdpa.py to check against PyTorch
 *            SDPA, and dense timings at DiT-XL-2 / PixArt-Sigma shapes (D=72) appended to out.json */
#include <algorithm>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <string>
#include <vector>

#include "attn/attn.h"
#include "attn/cuda/attn_cuda.h"
#include "attn/cuda/attn_sched.h"
#include "attn/mask.h"

#define CK(call)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)
#define DK(call)                                                        \
    do {                                                                \
        if ((call) != DFA_OK) {                                         \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, err.msg); \
            exit(1);                                                    \
        }                                                               \
    } while (0)

__global__ void fill_rand(__nv_bfloat16 *x, size_t n, unsigned seed, float amp) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    unsigned h = (unsigned)i * 2654435761u ^ seed;
    h ^= h >> 16;
    h *= 0x7feb352du;
    h ^= h >> 15;
    h *= 0x846ca68bu;
    h ^= h >> 16;
    x[i] = __float2bfloat16(amp * ((float)(h & 0xffffff) / 8388608.0f - 1.0f));
}

static dfa_error err;
static void *g_flush;
static const size_t FLUSH_BYTES = 256u << 20;

static double time_plan(const dfa_attn_cuda_plan *p, const dfa_attn_cuda_args *a, int iters) {
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    for (int i = 0; i < 3; i++) DK(dfa_attn_cuda_run(p, a, &err));
    CK(cudaDeviceSynchronize());
    std::vector<float> t;
    for (int i = 0; i < iters; i++) {
        CK(cudaMemsetAsync(g_flush, i & 0xff, FLUSH_BYTES, 0));
        CK(cudaEventRecord(e0, 0));
        DK(dfa_attn_cuda_run(p, a, &err));
        CK(cudaEventRecord(e1, 0));
        CK(cudaEventSynchronize(e1));
        float ms;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        t.push_back(ms);
    }
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

/* the variants this build has (4 and 6-12 were removed in session 4) */
static const int VARIANTS[] = {1, 2, 3, 5};
static const int N_VARIANTS = (int)(sizeof VARIANTS / sizeof VARIANTS[0]);

static int run_one(int D, int NV, int variant, int window) {
    const int H = 24;
    dfa_attn_layout l = {NV, 512, 1, 128, DFA_BAND_ARROW};
    const size_t n = (size_t)dfa_layout_tokens(&l) * H * D;
    void *buf[4];
    for (int i = 0; i < 4; i++) {
        CK(cudaMalloc(&buf[i], n * 2));
        fill_rand<<<(unsigned)((n + 255) / 256), 256>>>((__nv_bfloat16 *)buf[i], n, 99u + i, 1.f);
        CK(cudaGetLastError());
    }
    std::vector<int> m(H, window < 0 ? (int)DFA_ATTN_FULL : (int)DFA_ATTN_ARROW), w(H, window);
    dfa_attn_cuda_plan *p;
    DK(dfa_attn_cuda_plan_build(&p, &l, H, m.data(), w.data(), variant, NULL, &err));
    dfa_attn_cuda_args a = {DFA_ATTN_CUDA_BF16, 1, D, buf[0], buf[1], buf[2], buf[3], NULL, NULL, 0.f, NULL};
    for (int i = 0; i < 2; i++) DK(dfa_attn_cuda_run(p, &a, &err));
    CK(cudaDeviceSynchronize());
    dfa_attn_cuda_plan_free(p);
    for (int i = 0; i < 4; i++) CK(cudaFree(buf[i]));
    return 0;
}

static void dump(const char *path, const void *dev, size_t bytes) {
    std::vector<char> h(bytes);
    CK(cudaMemcpy(h.data(), dev, bytes, cudaMemcpyDeviceToHost));
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(h.data(), 1, bytes, f) != bytes) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    fclose(f);
}

/* dense (all heads FULL, no text) at [B, N, H, D]: optional dump of q, k, v and every variant's
 * output under DIR/<tag>_*.bin, optional timing of variant 1 (and 2 for D 64/128) */
static void dense_extra(const char *dir, FILE *js, int D, int N, int H, int B, int iters, const char *what) {
    dfa_attn_layout l = {N, 0, 1, 128, DFA_BAND_ARROW};
    const size_t n = (size_t)B * N * H * D, bytes = n * 2;
    void *buf[4];
    for (int i = 0; i < 4; i++) {
        CK(cudaMalloc(&buf[i], bytes));
        fill_rand<<<(unsigned)((n + 255) / 256), 256>>>((__nv_bfloat16 *)buf[i], n, 4321u + 31u * i + D * N,
                                                       i < 2 ? 2.f : 1.f);
        CK(cudaGetLastError());
    }
    char tag[64], path[1024];
    snprintf(tag, sizeof tag, "D%d_N%d_H%d_B%d", D, N, H, B);
    std::vector<int> m(H, (int)DFA_ATTN_FULL), w(H, -1);
    dfa_attn_cuda_args a = {DFA_ATTN_CUDA_BF16, B, D, buf[0], buf[1], buf[2], buf[3], NULL, NULL, 0.f, NULL};
    std::string variants;
    for (int vi = 0; vi < N_VARIANTS; vi++) {
        const int variant = VARIANTS[vi];
        if (!dfa_attn_cuda_variant_ok(variant)) continue;
        dfa_attn_cuda_plan *p;
        DK(dfa_attn_cuda_plan_build(&p, &l, H, m.data(), w.data(), variant, NULL, &err));
        if (dir) {
            CK(cudaMemset(buf[3], 0xff, bytes)); /* NaN: every element must be written */
            DK(dfa_attn_cuda_run(p, &a, &err));
            CK(cudaDeviceSynchronize());
            snprintf(path, sizeof path, "%s/%s_out_v%d.bin", dir, tag, variant);
            dump(path, buf[3], bytes);
            variants += (variants.empty() ? "" : ",") + std::to_string(variant);
        }
        /* v1 and v2 (for 72..120 the D=128 wgmma kernel on TMA-zero-padded tiles); v5 at D=64 (3
         * consumer warpgroups; other D run v2's kernel) */
        if (js && (variant <= 2 || (variant == 5 && D == 64))) {
            double t = time_plan(p, &a, iters);
            const double flops = 4.0 * N * (double)N * D * H * B;
            printf("%s D=%d N=%d H=%d B=%d v%d dense: %.3f ms %.0f TFLOP/s\n", what, D, N, H, B, variant, t,
                   flops / t / 1e9);
            fprintf(js,
                    "{\"kind\":\"dense_extra\",\"what\":\"%s\",\"D\":%d,\"N\":%d,\"H\":%d,\"B\":%d,"
                    "\"variant\":%d,\"ms\":%.5f,\"tflops\":%.1f}\n",
                    what, D, N, H, B, variant, t, flops / t / 1e9);
            fflush(js);
        }
        dfa_attn_cuda_plan_free(p);
    }
    if (dir) {
        for (int i = 0; i < 3; i++) {
            snprintf(path, sizeof path, "%s/%s_%c.bin", dir, tag, "qkv"[i]);
            dump(path, buf[i], bytes);
        }
        snprintf(path, sizeof path, "%s/manifest.jsonl", dir);
        FILE *f = fopen(path, "a");
        if (!f) {
            fprintf(stderr, "cannot write %s\n", path);
            exit(1);
        }
        fprintf(f, "{\"tag\":\"%s\",\"D\":%d,\"N\":%d,\"H\":%d,\"B\":%d,\"variants\":[%s]}\n", tag, D, N, H, B,
                variants.c_str());
        fclose(f);
    }
    for (int i = 0; i < 4; i++) CK(cudaFree(buf[i]));
}

static int run_extra(const char *dir, const char *json, int iters) {
    FILE *js = fopen(json, "a");
    if (!js) {
        fprintf(stderr, "cannot write %s\n", json);
        return 1;
    }
    CK(cudaMalloc(&g_flush, FLUSH_BYTES));
    /* correctness dumps: odd N, two batch elements */
    const int check_D[4] = {64, 128, 72, 24};
    for (int i = 0; i < 4; i++) dense_extra(dir, NULL, check_D[i], 1153, 4, 2, 0, "check");
    /* timings: DiT-XL-2 at 512^2 (32x32 patches, 16 heads of 72, CFG batch 2), PixArt-Sigma at
     * 1024^2 (64x64 patches); the same shapes at D=64 and 128 for reference */
    dense_extra(NULL, js, 72, 1024, 16, 2, iters, "DiT-XL-2-512");
    dense_extra(NULL, js, 72, 4096, 16, 2, iters, "PixArt-Sigma-1024");
    dense_extra(NULL, js, 64, 4096, 16, 2, iters, "PixArt-shape-D64");
    dense_extra(NULL, js, 128, 4096, 16, 2, iters, "PixArt-shape-D128");
    CK(cudaFree(g_flush));
    fclose(js);
    return 0;
}

/* A plan of the default variant built with balancing option `balance` (attn_cuda.h
 * DFA_ATTN_CUDA_BALANCE_*; OFF: the lists' own order, as before Version 10). */
static dfa_attn_cuda_plan *plan_bal(const dfa_attn_layout *l, int H, const int *m, const int *w, int balance) {
    dfa_attn_cuda_plan *p;
    DK(dfa_attn_cuda_plan_build_opt(&p, l, H, m, w, DFA_ATTN_CUDA_V_DEFAULT, balance, NULL, &err));
    return p;
}

/* Version 10: balanced vs unbalanced lists of the default variant (D=64: the 3-consumer kernel on the
 * 192-row list; D=128: variant 2's kernel on the 128-row list), B=1. Each pair is timed twice,
 * alternating (drift between the two shows as their spread); both outputs, NaN-poisoned first,
 * must agree bit for bit (a row's arithmetic does not depend on how its rows are cut into items).
 * split128: the balanced plans may also split 128-row items (DFA_ATTN_CUDA_BALANCE_SPLIT128), and
 * the prediction is the model's for that. */
static int run_balance(const char *json, int iters, int split128) {
    FILE *js = fopen(json, "a");
    if (!js) {
        fprintf(stderr, "cannot write %s\n", json);
        return 1;
    }
    int dev = 0, sms = 0;
    CK(cudaGetDevice(&dev));
    CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    CK(cudaMalloc(&g_flush, FLUSH_BYTES));
    const int H = 24, NT = 512, B = 1;
    const int Ds[2] = {128, 64}, NVs[2] = {4096, 16384};
    const double targets[4] = {0, 0.25, 0.5, 0.75}; /* 0: dense */
    int bad = 0;
    printf("tail-balanced lists on %d SMs (default variant, B=1%s): unbalanced / balanced time, model's prediction\n",
           sms, split128 ? ", split128" : "");
    for (int di = 0; di < 2; di++)
        for (int ni = 0; ni < 2; ni++) {
            const int D = Ds[di], NV = NVs[ni];
            dfa_attn_layout l = {NV, NT, 1, 128, DFA_BAND_ARROW};
            const size_t n = (size_t)B * dfa_layout_tokens(&l) * H * D;
            void *buf[5];
            for (int i = 0; i < 5; i++) {
                CK(cudaMalloc(&buf[i], n * 2));
                fill_rand<<<(unsigned)((n + 255) / 256), 256>>>((__nv_bfloat16 *)buf[i], n, 555u + 13u * i,
                                                               i < 2 ? 2.f : 1.f);
                CK(cudaGetLastError());
            }
            for (int ti = 0; ti < 4; ti++) {
                double sp = 0;
                const int win = ti ? dfa_mask_window_for_sparsity(&l, targets[ti], &sp) : -1;
                std::vector<int> m(H, ti ? (int)DFA_ATTN_ARROW : (int)DFA_ATTN_FULL), w(H, win);
                /* the model's prediction for the list this plan runs */
                const int rows = D == 64 && dfa_attn_cuda_variant_ok(DFA_ATTN_CUDA_V_WGMMA3_NOPP) ? DFA_ACU_BM3 : DFA_ACU_BM;
                dfa_acu_worklist wl;
                DK(dfa_acu_worklist_build_rows(&wl, &l, H, m.data(), w.data(), rows, &err));
                dfa_acu_balance bal = {sms, B, split128, NULL};
                dfa_acu_balance_report rep;
                dfa_acu_item *items;
                int n_items;
                DK(dfa_acu_worklist_balance(&wl, rows, &bal, &items, &n_items, &rep, &err));
                free(items);
                const int n0 = wl.n_items;
                dfa_acu_worklist_free(&wl);
                dfa_attn_cuda_plan *pu = plan_bal(&l, H, m.data(), w.data(), DFA_ATTN_CUDA_BALANCE_OFF);
                dfa_attn_cuda_plan *pb = plan_bal(&l, H, m.data(), w.data(),
                                                  split128 ? DFA_ATTN_CUDA_BALANCE_SPLIT128 : DFA_ATTN_CUDA_BALANCE_ON);
                dfa_attn_cuda_args a = {DFA_ATTN_CUDA_BF16, B, D, buf[0], buf[1], buf[2], buf[3], NULL, NULL, 0.f, NULL};
                /* outputs: unbalanced into buf[3], balanced into buf[4], both poisoned first */
                CK(cudaMemset(buf[3], 0xff, n * 2));
                DK(dfa_attn_cuda_run(pu, &a, &err));
                a.out = buf[4];
                CK(cudaMemset(buf[4], 0xff, n * 2));
                DK(dfa_attn_cuda_run(pb, &a, &err));
                CK(cudaDeviceSynchronize());
                std::vector<unsigned short> hu(n), hb(n);
                CK(cudaMemcpy(hu.data(), buf[3], n * 2, cudaMemcpyDeviceToHost));
                CK(cudaMemcpy(hb.data(), buf[4], n * 2, cudaMemcpyDeviceToHost));
                size_t diff = 0, nan = 0;
                for (size_t i = 0; i < n; i++) {
                    diff += hu[i] != hb[i];
                    nan += (hb[i] & 0x7f80) == 0x7f80; /* bf16 Inf/NaN: unwritten or broken */
                }
                if (diff || nan) bad++;
                double u[2], b[2];
                for (int round = 0; round < 2; round++) {
                    a.out = buf[3];
                    u[round] = time_plan(pu, &a, iters);
                    a.out = buf[4];
                    b[round] = time_plan(pb, &a, iters);
                }
                const double tu = (u[0] + u[1]) / 2, tb = (b[0] + b[1]) / 2;
                dfa_attn_cuda_plan_free(pu);
                dfa_attn_cuda_plan_free(pb);
                const double pred = rep.before.makespan_us / rep.after.makespan_us;
                char name[32];
                if (ti) snprintf(name, sizeof name, "arrow %.0f%%", 100 * sp);
                else snprintf(name, sizeof name, "dense");
                printf("D=%d N=%d+%d %-10s %d-row list %4d items (+%d): unbalanced %.4f ms, balanced %.4f ms: %.3fx "
                       "(rounds %.3fx / %.3fx), predicted %.3fx (%.1f -> %.1f us); outputs %s (%zu differ, %zu NaN)\n",
                       D, NV, NT, name, rows, n0, rep.n_pieces, tu, tb, tu / tb, u[0] / b[0], u[1] / b[1],
                       pred, rep.before.makespan_us, rep.after.makespan_us, diff || nan ? "DIFFER" : "bit-equal", diff,
                       nan);
                fprintf(js,
                        "{\"kind\":\"balance\",\"split128\":%d,\"variant\":0,\"D\":%d,\"NV\":%d,\"NT\":%d,"
                        "\"plan\":\"%s\",\"target\":%.2f,"
                        "\"window\":%d,\"rows\":%d,\"items\":%d,\"pieces\":%d,\"unbal_ms\":%.5f,\"bal_ms\":%.5f,"
                        "\"pred\":%.4f,\"pred_unbal_us\":%.2f,\"pred_bal_us\":%.2f,\"idle\":%.4f,\"differ\":%zu,"
                        "\"nan\":%zu}\n",
                        split128, D, NV, NT, name, targets[ti], win, rows, n0, rep.n_pieces, tu, tb, pred,
                        rep.before.makespan_us, rep.after.makespan_us, rep.before.idle_frac, diff, nan);
                fflush(js);
            }
            for (int i = 0; i < 5; i++) CK(cudaFree(buf[i]));
        }
    printf("balance check: %s (%d plans with outputs that differ or are not finite)\n", bad ? "FAILED" : "ok", bad);
    CK(cudaFree(g_flush));
    fclose(js);
    return bad ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "--balance")) return run_balance(argv[2], argc > 3 ? atoi(argv[3]) : 30, 0);
    if (argc >= 3 && !strcmp(argv[1], "--balance-split128"))
        return run_balance(argv[2], argc > 3 ? atoi(argv[3]) : 30, 1);
    if (argc == 6 && !strcmp(argv[1], "--one")) return run_one(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
    if (argc >= 4 && !strcmp(argv[1], "--extra")) return run_extra(argv[2], argv[3], argc > 4 ? atoi(argv[4]) : 30);
    const char *path = argc > 1 ? argv[1] : "attn_gpu.json";
    const int iters = argc > 2 ? atoi(argv[2]) : 30;
    FILE *js = fopen(path, "w");
    if (!js) {
        fprintf(stderr, "cannot write %s\n", path);
        return 1;
    }
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("device %s, %d SMs\n", prop.name, prop.multiProcessorCount);
    CK(cudaMalloc(&g_flush, FLUSH_BYTES));
    const int H = 24, NT = 512, B = 1;
    const int Ds[2] = {128, 64}, NVs[2] = {4096, 16384};
    const double targets[3] = {0.25, 0.5, 0.75};
    for (int di = 0; di < 2; di++)
        for (int ni = 0; ni < 2; ni++) {
            const int D = Ds[di], NV = NVs[ni];
            dfa_attn_layout l = {NV, NT, 1, 128, DFA_BAND_ARROW};
            const int N = dfa_layout_tokens(&l);
            const size_t n = (size_t)B * N * H * D;
            void *buf[6];
            for (int i = 0; i < 6; i++) {
                CK(cudaMalloc(&buf[i], n * 2));
                fill_rand<<<(unsigned)((n + 255) / 256), 256>>>((__nv_bfloat16 *)buf[i], n, 1234u + 77u * i,
                                                               i < 2 ? 2.f : 1.f);
                CK(cudaGetLastError());
            }
            dfa_attn_cuda_args a = {DFA_ATTN_CUDA_BF16, B, D, buf[0], buf[1], buf[2], buf[3], buf[4], buf[5], 0.f, NULL};
            const double dense_flops = 4.0 * N * (double)N * D * H;
            for (int vi = 0; vi < N_VARIANTS; vi++) {
                const int variant = VARIANTS[vi];
                if (!dfa_attn_cuda_variant_ok(variant)) continue;
                /* v5 at D=128 is v2's kernel */
                if (variant == 5 && D != 64) continue;
                std::vector<int> m(H), w(H);
                dfa_attn_cuda_plan *p;
                /* dense */
                std::fill(m.begin(), m.end(), (int)DFA_ATTN_FULL);
                std::fill(w.begin(), w.end(), -1);
                DK(dfa_attn_cuda_plan_build(&p, &l, H, m.data(), w.data(), variant, NULL, &err));
                double td = time_plan(p, &a, iters);
                dfa_attn_cuda_plan_free(p);
                printf("D=%d N=%d+%d v%d dense: %.3f ms %.0f TFLOP/s\n", D, NV, NT, variant, td,
                       dense_flops / td / 1e9);
                fprintf(js, "{\"kind\":\"dense\",\"D\":%d,\"NV\":%d,\"NT\":%d,\"variant\":%d,\"ms\":%.5f,\"tflops\":%.1f}\n",
                        D, NV, NT, variant, td, dense_flops / td / 1e9);
                /* arrow, all heads one window */
                for (int ti = 0; ti < 3; ti++) {
                    double sp = 0;
                    int win = dfa_mask_window_for_sparsity(&l, targets[ti], &sp);
                    std::fill(m.begin(), m.end(), (int)DFA_ATTN_ARROW);
                    std::fill(w.begin(), w.end(), win);
                    DK(dfa_attn_cuda_plan_build(&p, &l, H, m.data(), w.data(), variant, NULL, &err));
                    double t = time_plan(p, &a, iters);
                    dfa_attn_cuda_plan_free(p);
                    double ideal = td * (1.0 - sp);
                    printf("D=%d N=%d+%d v%d arrow w=%d sparsity %.1f%%: %.3f ms, %.2fx dense, t/(dense(1-r)) %.3f\n",
                           D, NV, NT, variant, win, 100 * sp, t, td / t, t / ideal);
                    fprintf(js,
                            "{\"kind\":\"arrow\",\"D\":%d,\"NV\":%d,\"NT\":%d,\"variant\":%d,\"target\":%.2f,"
                            "\"window\":%d,\"sparsity\":%.4f,\"ms\":%.5f,\"dense_ms\":%.5f,\"ratio_to_ideal\":%.4f}\n",
                            D, NV, NT, variant, targets[ti], win, sp, t, td, t / ideal);
                }
                /* mixed V2-like plan: 6 full, 9 arrow (w 1/3/8), 3 arrow+residual (w 2), 6 cached */
                const int mm[24] = {0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3, 3};
                const int ww[24] = {-1, -1, -1, -1, -1, -1, 1, 1, 1, 3, 3, 3, 8, 8, 8, 2, 2, 2, 0, 0, 0, 0, 0, 0};
                /* interleave so that costs are not grouped by head index */
                for (int h = 0; h < H; h++) m[h] = mm[(h * 7) % 24], w[h] = ww[(h * 7) % 24];
                DK(dfa_attn_cuda_plan_build(&p, &l, H, m.data(), w.data(), variant, NULL, &err));
                dfa_attn_cuda_plan_info info;
                dfa_attn_cuda_plan_get_info(p, &info);
                double t = time_plan(p, &a, iters);
                dfa_attn_cuda_plan_free(p);
                const double frac = (double)info.mask_entries / ((double)N * N * H);
                const double copy_ms = (double)info.copied_tokens * D * 2 * 2 / 3.0e12 * 1e3; /* read+write @3 TB/s */
                const double pred = td * frac + copy_ms;
                printf("D=%d N=%d+%d v%d mixed (6F 9A 3RS 6C): %.3f ms, predicted %.3f ms (%.1f%% of dense entries + "
                       "copy %.3f ms): ratio %.3f\n",
                       D, NV, NT, variant, t, pred, 100 * frac, copy_ms, t / pred);
                fprintf(js,
                        "{\"kind\":\"mixed\",\"D\":%d,\"NV\":%d,\"NT\":%d,\"variant\":%d,\"ms\":%.5f,\"pred_ms\":%.5f,"
                        "\"entry_frac\":%.4f,\"dense_ms\":%.5f}\n",
                        D, NV, NT, variant, t, pred, frac, td);
                /* dense again: the spread between the two dense timings is the noise floor */
                std::fill(m.begin(), m.end(), (int)DFA_ATTN_FULL);
                std::fill(w.begin(), w.end(), -1);
                DK(dfa_attn_cuda_plan_build(&p, &l, H, m.data(), w.data(), variant, NULL, &err));
                double td2 = time_plan(p, &a, iters);
                dfa_attn_cuda_plan_free(p);
                printf("D=%d N=%d+%d v%d dense again: %.3f ms (%.1f%% from the first)\n", D, NV, NT, variant, td2,
                       100.0 * (td2 - td) / td);
                fprintf(js, "{\"kind\":\"dense_again\",\"D\":%d,\"NV\":%d,\"variant\":%d,\"ms\":%.5f}\n", D, NV,
                        variant, td2);
                fflush(js);
            }
            for (int i = 0; i < 6; i++) CK(cudaFree(buf[i]));
        }
    CK(cudaFree(g_flush));
    fclose(js);
    return 0;
}
