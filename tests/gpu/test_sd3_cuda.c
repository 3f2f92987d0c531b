/* test_sd3_cuda.c (GPU) - the CUDA SD3 forward (bf16) against the CPU forward (f32, itself
 * checked against diffusers in tests/test_sd3.c) on one random SD3.5-style checkpoint written
 * here (head dim 64, qk RMSNorm, dual attention in block 0, context_pre_only last block, 12x16
 * patches cropped from a 32x32 pos grid, 77 text tokens, pooled text wider than the 256-channel
 * timestep sinusoid as in SD3's 2048: the two share a device buffer, issue 5), CFG batch of 2,
 * outputs poisoned. Then the same under a random plan (every method, ASC) whose layer 1 (block 0's
 * image-only attn2) has its own layout (layer_layouts, n_text 0), 3 steps, CUDA vs CPU per step,
 * prepared before the loop (dfa_attn_prepare): no device allocation and no work-list build inside it.
 * Then the held conditioning of a sampling loop (bit-identical to the plain forward, host text not
 * re-read), the event attention timer, a 3-step CFG loop CUDA vs CPU, and that loop (latents, CFG
 * and Euler on the device) bit-equal to the host sampler over CUDA forwards and to the same loop
 * under a CUDA Graph. Bound: 3e-2 rel L2. */
#include <string.h>

#include "../fixture.h"
#include "../test.h"
#include "gpu_test_util.h"
#include "../tmpdir.h"

#include "attn/attn_state.h"
#include "core/ctx.h"
#include "core/cuda_rt.h"
#include "core/tensor.h"
#include "models/mmdit_pipe.h"
#include "models/sd3.h"
#include "sample/flow.h"
#include "plan/plan.h"

/* The host sampler over CUDA forwards, as dfa_sd3_generate's device loop must match it bit for bit:
 * latents lx [nl] from gp's seed, then per step (planned: dfa_attn_begin_step first) one CFG-batch
 * forward on [lx, lx] (T text tokens, H x W latent), CFG combine and Euler step between sig[i] and
 * sig[i + 1]. x, og [2 nl] and vv [nl] are scratch. */
static void host_cfg_loop(dfa_ctx *gpu, dfa_sd3 *mg, const dfa_mmdit_gen_params *gp, int H, int W, int T,
                          const float *txt, const float *pooled, const float *sig, const float *tsv, int planned,
                          size_t nl, float *x, float *og, float *vv, float *lx) {
    dfa_rng r;
    dfa_rng_seed(&r, gp->seed);
    dfa_rng_normal(&r, lx, nl);
    for (int i = 0; i < gp->steps; i++) {
        if (planned) CHECK(dfa_attn_begin_step(gpu, i) == DFA_OK);
        memcpy(x, lx, nl * 4);
        memcpy(x + nl, lx, nl * 4);
        const float ti[2] = {tsv[i], tsv[i]};
        fixture_poison(og, 2 * nl);
        CHECKF(dfa_sd3_forward(gpu, mg, 2, H, W, T, x, txt, pooled, ti, og) == DFA_OK, "%s", dfa_ctx_error(gpu));
        dfa_flow_cfg_combine(vv, og, og + nl, nl, gp->cfg_scale);
        dfa_flow_euler_step(lx, vv, nl, sig[i], sig[i + 1]);
    }
}

int main(void) {
    test_tmpdir d;
    if (tmpdir_make(&d, "sd3_cuda") != 0) return 1;
    char p[256];
    tmpdir_file(&d, "transformer", p, sizeof p);
    mkdir(p, 0755);
    const char *cfg = "{\"_class_name\": \"SD3Transformer2DModel\", \"patch_size\": 2, \"in_channels\": 16,"
                      " \"out_channels\": 16, \"num_layers\": 3, \"attention_head_dim\": 64, \"num_attention_heads\": 2,"
                      " \"joint_attention_dim\": 96, \"caption_projection_dim\": 128, \"pooled_projection_dim\": 320,"
                      " \"pos_embed_max_size\": 32, \"dual_attention_layers\": [0], \"qk_norm\": \"rms_norm\"}";
    CHECK(tmpdir_write(&d, "transformer/config.json", cfg, strlen(cfg), p, sizeof p) != NULL);
    dfa_ctx *cpu = gpu_new_ctx(DFA_BACKEND_CPU), *gpu = gpu_new_ctx(DFA_BACKEND_CUDA);
    CHECK(cpu && gpu);
    CHECKF(dfa_sd3_write_random(cpu, d.path, 12) == DFA_OK, "%s", dfa_ctx_error(cpu));
    dfa_sd3 *mc = NULL, *mg = NULL;
    CHECKF(dfa_sd3_load(cpu, d.path, &mc) == DFA_OK, "%s", dfa_ctx_error(cpu));
    CHECKF(gpu && dfa_sd3_load(gpu, d.path, &mg) == DFA_OK, "%s", gpu ? dfa_ctx_error(gpu) : "no ctx");
    if (mc && mg) {
        unsigned long long rng = 0xabcdefULL;
        const int B = 2, H = 24, W = 32, T = 77;
        const size_t nx = (size_t)B * 16 * H * W, nt = (size_t)B * T * 96, np = (size_t)B * 320;
        float *x = malloc(nx * 4), *txt = malloc(nt * 4), *pooled = malloc(np * 4), *oc = malloc(nx * 4), *og = malloc(nx * 4);
        for (size_t i = 0; i < nx; i++) x[i] = dfa_bf16_to_f32(dfa_f32_to_bf16(test_rng_uniform(&rng)));
        for (size_t i = 0; i < nt; i++) txt[i] = dfa_bf16_to_f32(dfa_f32_to_bf16(test_rng_uniform(&rng)));
        for (size_t i = 0; i < np; i++) pooled[i] = dfa_bf16_to_f32(dfa_f32_to_bf16(test_rng_uniform(&rng)));
        const float t[2] = {700.0f, 700.0f};
        for (size_t i = 0; i < nx; i++) oc[i] = og[i] = NAN;
        CHECKF(dfa_sd3_forward(cpu, mc, B, H, W, T, x, txt, pooled, t, oc) == DFA_OK, "%s", dfa_ctx_error(cpu));
        dfa_status s = dfa_sd3_forward(gpu, mg, B, H, W, T, x, txt, pooled, t, og);
        CHECKF(s == DFA_OK, "%s", dfa_ctx_error(gpu));
        double e = gpu_rel_l2(og, oc, nx);
        printf("     sd3 CUDA vs CPU forward (batch 2): rel L2 %.3g\n", e);
        CHECKF(e <= 3e-2, "rel L2 %.3g > 3e-2", e);
        /* a plan with a per-layer layout for the attn2 layer (attention layer 1) */
        const dfa_attn_layout L = {.n_vis = (H / 2) * (W / 2), .n_text = T, .text_first = 0, .block = 128};
        dfa_attn_layout L1 = L;
        L1.n_text = 0;
        dfa_plan plan;
        dfa_error err;
        dfa_error_clear(&err);
        const int S = 3;
        CHECK(dfa_sd3_attn_layers(mc) == 4 && dfa_sd3_attn_image_only(mc, 1) && !dfa_sd3_attn_image_only(mc, 2));
        CHECK(dfa_plan_init(&plan, &L, S, 4, 2, &err) == DFA_OK);
        plan.grid_h = H / 2, plan.grid_w = W / 2, plan.cfg = 1, plan.cond_half = 1;
        CHECK(dfa_plan_set_layer_layout(&plan, 1, &L1, &err) == DFA_OK);
        dfa_plan_make_opts mo = {DFA_PLAN_PAT_RANDOM, dfa_mask_full_window(&L), 1, 0, 0, 7};
        CHECKF(dfa_plan_make(&plan, &mo, &err) == DFA_OK, "%s", err.msg);
        int n_attn2 = 0;
        for (int st = 1; st < S; st++)
            for (int h = 0; h < 2; h++) n_attn2 += plan.method[dfa_plan_index(&plan, st, 1, h)] != DFA_ATTN_FULL;
        CHECKF(n_attn2 > 0, "the random plan leaves attn2 FULL (the test would not test)");
        CHECKF(dfa_attn_set_plan(cpu, &plan) == DFA_OK, "%s", dfa_ctx_error(cpu));
        CHECKF(dfa_attn_set_plan(gpu, &plan) == DFA_OK, "%s", dfa_ctx_error(gpu));
        /* the prepare (issue 4/5): every distinct work list and the run's caches before the loop;
         * the loop then allocates nothing on the device and builds no work list */
        CHECKF(dfa_attn_prepare(gpu, DFA_DEV_CUDA, DFA_BF16, B, 64) == DFA_OK, "%s", dfa_ctx_error(gpu));
        dfa_attn_prep_stats ps0, ps1;
        dfa_attn_get_prep_stats(gpu, &ps0);
        const size_t allocs0 = gpu->device_allocs;
        printf("     sd3 plan prepared: %d distinct work lists for %d launches (%zu bytes), caches %zu bytes\n",
               ps0.n_lists, ps0.n_entries, ps0.list_bytes, ps0.cache_bytes);
        CHECKF(ps0.n_lists > 0 && ps0.n_lists <= ps0.n_entries && ps0.n_entries >= S * 4 && ps0.list_bytes > 0,
               "prepare: %d lists for %d entries, %zu bytes", ps0.n_lists, ps0.n_entries, ps0.list_bytes);
        CHECKF(ps0.cache_bytes >= dfa_plan_cache_bytes(&plan, B, 64, 2) && ps0.cache_bytes > 0,
               "prepared caches %zu bytes < the plan's %zu", ps0.cache_bytes, dfa_plan_cache_bytes(&plan, B, 64, 2));
        for (int st = 0; st < S; st++) {
            for (size_t i = 0; i < nx; i++) oc[i] = og[i] = NAN;
            CHECK(dfa_attn_begin_step(cpu, st) == DFA_OK && dfa_attn_begin_step(gpu, st) == DFA_OK);
            CHECKF(dfa_sd3_forward(cpu, mc, B, H, W, T, x, txt, pooled, t, oc) == DFA_OK, "%s", dfa_ctx_error(cpu));
            s = dfa_sd3_forward(gpu, mg, B, H, W, T, x, txt, pooled, t, og);
            CHECKF(s == DFA_OK, "%s", dfa_ctx_error(gpu));
            e = gpu_rel_l2(og, oc, nx);
            printf("     sd3 CUDA vs CPU forward, plan with attn2 layer layout, step %d: rel L2 %.3g\n", st, e);
            CHECKF(e <= 3e-2, "step %d: rel L2 %.3g > 3e-2", st, e);
            for (size_t i = 0; i < nx; i++) x[i] = dfa_bf16_to_f32(dfa_f32_to_bf16(test_rng_uniform(&rng)));
        }
        dfa_attn_get_prep_stats(gpu, &ps1);
        CHECKF(gpu->device_allocs == allocs0 && ps1.lazy_builds == ps0.lazy_builds &&
                   ps1.lazy_caches == ps0.lazy_caches && ps1.prepares == ps0.prepares,
               "the prepared planned loop allocated: %zu device allocations, %lld work lists and %lld caches built "
               "at first use, %lld prepares",
               gpu->device_allocs - allocs0, (long long)(ps1.lazy_builds - ps0.lazy_builds),
               (long long)(ps1.lazy_caches - ps0.lazy_caches), (long long)(ps1.prepares - ps0.prepares));
        dfa_attn_end_run(cpu);
        dfa_attn_end_run(gpu);
        dfa_attn_clear_plan(cpu);
        dfa_attn_clear_plan(gpu);
        /* held conditioning (dfa_sd3_hold_cond, as the sampling loop runs): bit-identical to the
         * plain forward; under the hold a poisoned host text is not read again; released, it is */
        float *oh = malloc(nx * 4), *txt2 = malloc(nt * 4);
        fixture_poison(og, nx);
        dfa_sd3_reset_times(mg);
        CHECKF(dfa_sd3_forward(gpu, mg, B, H, W, T, x, txt, pooled, t, og) == DFA_OK, "%s", dfa_ctx_error(gpu));
        double ta = 0, tt = 0;
        dfa_sd3_times(mg, &ta, &tt);
        printf("     sd3 CUDA attention timer (events): %.3g of %.3g s\n", ta, tt);
        CHECKF(ta > 0 && ta < tt, "attention timer %g s of %g s", ta, tt);
        memcpy(txt2, txt, nt * 4);
        dfa_sd3_hold_cond(mg, 1);
        for (int k = 0; k < 2; k++) {
            fixture_poison(oh, nx);
            CHECKF(dfa_sd3_forward(gpu, mg, B, H, W, T, x, txt2, pooled, t, oh) == DFA_OK, "%s", dfa_ctx_error(gpu));
            CHECKF(memcmp(oh, og, nx * 4) == 0, "held forward %d differs from the plain one (rel L2 %.3g)", k,
                   gpu_rel_l2(oh, og, nx));
            for (size_t i = 0; i < nt; i++) txt2[i] = NAN; /* the second held forward must not read it */
        }
        dfa_sd3_hold_cond(mg, 0);
        fixture_poison(oh, nx);
        CHECKF(dfa_sd3_forward(gpu, mg, B, H, W, T, x, txt2, pooled, t, oh) == DFA_OK, "%s", dfa_ctx_error(gpu));
        CHECKF(!isfinite(oh[0]), "released hold: the NaN text was not uploaded (out[0] %g)", oh[0]);
        /* the 3-step CFG sampling loop (held text), CUDA vs CPU */
        dfa_prompt_embeds pe = {.n_txt = T, .dim = 96, .pooled_dim = 320, .neg_embeds = txt, .neg_pooled = pooled,
                                .embeds = txt + (size_t)T * 96, .pooled = pooled + 320};
        dfa_flow_config fc;
        CHECKF(dfa_flow_config_read_or_default(cpu, d.path, 0, 0, &fc) == DFA_OK, "%s", dfa_ctx_error(cpu));
        dfa_mmdit_gen_params gp = {.steps = 3, .latent_h = H, .latent_w = W, .cfg_scale = 5.0f, .seed = 3};
        const size_t nl = nx / 2;
        fixture_poison(oc, nl), fixture_poison(oh, nl);
        CHECKF(dfa_sd3_generate(cpu, mc, &fc, &pe, &gp, oc) == DFA_OK, "%s", dfa_ctx_error(cpu));
        CHECKF(dfa_sd3_generate(gpu, mg, &fc, &pe, &gp, oh) == DFA_OK, "%s", dfa_ctx_error(gpu));
        e = gpu_rel_l2(oh, oc, nl);
        printf("     sd3 CUDA vs CPU 3-step CFG loop: rel L2 %.3g\n", e);
        CHECKF(e <= 3e-2, "3-step loop rel L2 %.3g > 3e-2", e);
        /* that loop ran on the device (latents, CFG, Euler: dfa_sd3_sample_cuda); the host sampler
         * over the same CUDA forwards must give the same bits */
        float sig[4], tsv[4], *lx = malloc(nl * 4), *vv = malloc(nl * 4), *lp = malloc(nl * 4);
        CHECKF(dfa_flow_set_timesteps(cpu, &fc, 3, NULL, NAN, sig, tsv) == DFA_OK, "%s", dfa_ctx_error(cpu));
        host_cfg_loop(gpu, mg, &gp, H, W, T, txt, pooled, sig, tsv, 0, nl, x, og, vv, lx);
        CHECKF(memcmp(lx, oh, nl * 4) == 0, "device loop != host loop over the CUDA forwards (rel L2 %.3g)",
               gpu_rel_l2(oh, lx, nl));
        printf("     sd3 device loop (CFG + Euler on the GPU) == host loop over CUDA forwards: %s\n",
               memcmp(lx, oh, nl * 4) == 0 ? "bit-equal" : "DIFFERENT");
        /* the device loop under the plan (begin_step per step, as dfa_flow_sample): bit-equal to the
         * host sampler over the planned CUDA forwards */
        CHECKF(dfa_attn_set_plan(gpu, &plan) == DFA_OK, "%s", dfa_ctx_error(gpu));
        fixture_poison(lp, nl);
        dfa_attn_get_prep_stats(gpu, &ps0);
        const size_t allocs1 = gpu->device_allocs;
        CHECKF(dfa_sd3_generate(gpu, mg, &fc, &pe, &gp, lp) == DFA_OK, "%s", dfa_ctx_error(gpu));
        /* dfa_sd3_sample_cuda prepares before its loop: the latents, the work lists (once) and the
         * caches (one block) are its only device allocations; nothing is built at first use */
        dfa_attn_get_prep_stats(gpu, &ps1);
        CHECKF(ps1.prepares == ps0.prepares + 1 && ps1.lazy_builds == ps0.lazy_builds &&
                   ps1.lazy_caches == ps0.lazy_caches && gpu->device_allocs - allocs1 == 2,
               "planned generate: %lld prepares, %lld lists / %lld caches at first use, %zu device allocations "
               "(expected 1, 0, 0, 2: latents + caches)",
               (long long)(ps1.prepares - ps0.prepares), (long long)(ps1.lazy_builds - ps0.lazy_builds),
               (long long)(ps1.lazy_caches - ps0.lazy_caches), gpu->device_allocs - allocs1);
        host_cfg_loop(gpu, mg, &gp, H, W, T, txt, pooled, sig, tsv, 1, nl, x, og, vv, lx);
        dfa_attn_end_run(gpu);
        dfa_attn_clear_plan(gpu);
        CHECKF(memcmp(lx, lp, nl * 4) == 0, "planned device loop != host loop (rel L2 %.3g)", gpu_rel_l2(lp, lx, nl));
        printf("     sd3 device loop under the plan == host loop over planned CUDA forwards: %s\n",
               memcmp(lx, lp, nl * 4) == 0 ? "bit-equal" : "DIFFERENT");
        free(lx), free(vv), free(lp);
        /* the same loop with its forward as a CUDA Graph (dense run): bit-equal to the eager
         * device loop (tools/cuda_emu has no graphs: skipped there) */
        if (strcmp(dfa_cuda_device_name(gpu->cuda), "emu") != 0) {
            float *lgr = malloc(nl * 4);
            fixture_poison(lgr, nl);
            const int runs = dfa_sd3_set_cuda_graph(mg, 1);
            CHECKF(dfa_sd3_generate(gpu, mg, &fc, &pe, &gp, lgr) == DFA_OK, "%s", dfa_ctx_error(gpu));
            CHECKF(dfa_sd3_set_cuda_graph(mg, 0) == runs + 1, "the loop did not run a CUDA Graph");
            CHECKF(memcmp(lgr, oh, nl * 4) == 0, "CUDA Graph loop != eager loop (rel L2 %.3g)", gpu_rel_l2(lgr, oh, nl));
            printf("     sd3 CUDA Graph loop == eager device loop: %s\n", memcmp(lgr, oh, nl * 4) ? "DIFFERENT" : "bit-equal");
            free(lgr);
        }
        free(oh), free(txt2);
        dfa_plan_free(&plan);
        free(x), free(txt), free(pooled), free(oc), free(og);
    }
    dfa_sd3_free(cpu, mc);
    dfa_sd3_free(gpu, mg);
    dfa_ctx_free(cpu);
    dfa_ctx_free(gpu);
    tmpdir_remove(&d);
    return test_summary();
}
