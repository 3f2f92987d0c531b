/* test_sd35_search_cuda.c (GPU) - plan search on SD3.5 (dual attention: block 0's image-only attn2
 * is attention layer 1, n_text 0) with the model and the search on the GPU (CUDA search backend),
 * on a random SD3.5-style checkpoint written here (head dim 64 as the CUDA kernel wants, 12x16
 * patches, 77 text tokens, CFG): V2 (arrow, cache) and V1 each
 *   - run, export a plan that records layer 1's own layout and compresses layer 1;
 *   - replay: dfa_sd3_generate on the GPU under that plan follows the search's own trajectory
 *     (the engine's latents), bound 2e-2 relative L2 (bf16; the search computes the same
 *     attention through the search backend's kernels);
 * and the CPU search of the same model finds a plan of similar cost (printed). */
#include "../test.h"
#include "../tmpdir.h"
#include "gpu_test_util.h"

#include "attn/attn_state.h"
#include "core/ctx.h"
#include "core/tensor.h"
#include "models/mmdit_pipe.h"
#include "models/sd3.h"
#include "plan/engine_mmdit.h"
#include "plan/plan.h"
#include "plan/search.h"
#include "sample/flow.h"

enum { NT = 77, JD = 96, PD = 320, LH = 24, LW = 32, S = 3, P = 1 };

static void pe_random(dfa_prompt_embeds *pe, unsigned long long seed) {
    memset(pe, 0, sizeof *pe);
    pe->n_txt = NT, pe->dim = JD, pe->pooled_dim = PD;
    float **all[4] = {&pe->embeds, &pe->pooled, &pe->neg_embeds, &pe->neg_pooled};
    const size_t sz[4] = {(size_t)NT * JD, PD, (size_t)NT * JD, PD};
    for (int i = 0; i < 4; i++) {
        *all[i] = malloc(sz[i] * sizeof(float));
        for (size_t j = 0; j < sz[i]; j++) (*all[i])[j] = 2.0f * test_rng_uniform(&seed) - 1.0f;
    }
}

static int layer1_compressed(const dfa_plan *p) {
    int n = 0;
    for (int s = 0; s < p->n_steps; s++) {
        n += p->asc[(size_t)s * p->n_layers + 1];
        for (int h = 0; h < p->n_heads; h++) n += p->method[dfa_plan_index(p, s, 1, h)] != DFA_ATTN_FULL;
    }
    return n;
}

/* search on ctx (GPU: CUDA backend), export, and (GPU) replay through dfa_sd3_generate */
static double search_case(dfa_ctx *ctx, dfa_sd3 *m, const dfa_prompt_embeds *pe, int v1, int replay) {
    const int gpu = ctx->cuda != NULL;
    dfa_flow_config fc = dfa_flow_config_default();
    dfa_engine_mmdit_params ep = {.steps = S, .latent_h = LH, .latent_w = LW, .cfg_scale = 5.0f, .seed = 3};
    dfa_engine_mmdit *em = NULL;
    dfa_search_engine e;
    dfa_status s = dfa_engine_sd3_init(ctx, m, &fc, pe, P, &ep, &em, &e);
    CHECKF(s == DFA_OK, "%s", dfa_ctx_error(ctx));
    if (s) return -1;
    CHECK(e.n_layers == 4 && e.layer_layout && e.layer_layout[1].n_text == 0 && e.layer_layout[2].n_text == NT);
    const dfa_search_cand cands[3] = {{DFA_ATTN_FULL, -1}, {DFA_ATTN_ARROW, 0}, {DFA_ATTN_CACHE, -1}};
    dfa_search_opts o = {.delta = v1 ? 0.5 : 2.0, .c = 0, .cands = cands, .n_cands = 3, .v1_window = -1};
    dfa_search_cuda cs;
    dfa_search_backend be;
    if (gpu) {
        s = dfa_search_backend_cuda(ctx, &cs, &be);
        CHECKF(s == DFA_OK, "%s", dfa_ctx_error(ctx));
        o.backend = &be;
    }
    dfa_search_plan sp;
    dfa_plan plan;
    double frac = -1;
    if (s == DFA_OK) s = v1 ? dfa_search_v1(ctx, &e, &o, &sp) : dfa_search_v2(ctx, &e, &o, &sp);
    CHECKF(s == DFA_OK, "%s search: %s", v1 ? "v1" : "v2", dfa_ctx_error(ctx));
    if (s == DFA_OK) {
        char cid[128];
        dfa_engine_sd3_config_id(m, cid, sizeof cid);
        s = dfa_search_plan_export(&sp, &e, &o, v1, "sd3", cid, &plan, &ctx->err);
        CHECKF(s == DFA_OK, "%s", dfa_ctx_error(ctx));
        frac = dfa_search_plan_cost_fraction(&sp);
        dfa_search_plan_free(ctx, &sp);
    }
    if (s == DFA_OK) {
        CHECK(dfa_plan_n_layer_layouts(&plan) == 1 && dfa_plan_layer_layout(&plan, 1)->n_text == 0);
        const int n1 = layer1_compressed(&plan);
        printf("     %s %s search: modelled cost %.3f of FULL; attn2 (layer 1) compressed entries %d\n",
               gpu ? "GPU" : "CPU", v1 ? "v1" : "v2", frac, n1);
        if (gpu) CHECKF(n1 > 0, "%s: attn2 not compressed (the replay would not test it)", v1 ? "v1" : "v2");
        if (replay) {
            const size_t n = (size_t)16 * LH * LW;
            float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
            for (size_t i = 0; i < n; i++) a[i] = b[i] = NAN;
            CHECK(dfa_engine_mmdit_latents(ctx, em, 0, a) == DFA_OK);
            CHECKF(dfa_attn_set_plan(ctx, &plan) == DFA_OK, "%s", dfa_ctx_error(ctx));
            dfa_mmdit_gen_params gp = {.steps = S, .latent_h = LH, .latent_w = LW, .cfg_scale = 5.0f, .seed = 3};
            s = dfa_sd3_generate(ctx, m, &fc, pe, &gp, b);
            CHECKF(s == DFA_OK, "%s", dfa_ctx_error(ctx));
            dfa_attn_clear_plan(ctx);
            double re = gpu_rel_l2(b, a, n);
            printf("     %s replay: generate under the plan vs the search trajectory: rel L2 %.3g\n",
                   v1 ? "v1" : "v2", re);
            CHECKF(re <= 2e-2, "%s replay: rel L2 %.3g > 2e-2", v1 ? "v1" : "v2", re);
            free(a), free(b);
        }
        dfa_plan_free(&plan);
    }
    if (gpu) dfa_search_cuda_free(&cs);
    dfa_engine_mmdit_free(ctx, em);
    return frac;
}

int main(void) {
    test_tmpdir d;
    if (tmpdir_make(&d, "sd35_search_cuda") != 0) return 1;
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
        dfa_prompt_embeds pe;
        pe_random(&pe, 41);
        for (int v1 = 0; v1 < 2; v1++) {
            double fg = search_case(gpu, mg, &pe, v1, 1);
            double fc = search_case(cpu, mc, &pe, v1, 0);
            CHECK(fg >= 0 && fc >= 0);
        }
        free(pe.embeds), free(pe.pooled), free(pe.neg_embeds), free(pe.neg_pooled);
    }
    dfa_sd3_free(cpu, mc);
    dfa_sd3_free(gpu, mg);
    dfa_ctx_free(cpu);
    dfa_ctx_free(gpu);
    tmpdir_remove(&d);
    return test_summary();
}
