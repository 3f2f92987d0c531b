/* test_sd3_cuda.c (GPU) - the CUDA SD3 forward (bf16) against the CPU forward (f32, itself
 * checked against diffusers in tests/test_sd3.c) on one random SD3.5-style checkpoint written
 * here (head dim 64, qk RMSNorm, dual attention in block 0, context_pre_only last block, 12x16
 * patches cropped from a 32x32 pos grid, 77 text tokens, pooled text wider than the 256-channel
 * timestep sinusoid as in SD3's 2048: the two share a device buffer, issue 5), CFG batch of 2,
 * outputs poisoned.
 * Bound: 3e-2 relative L2. */
#include "../test.h"
#include "gpu_test_util.h"
#include "../tmpdir.h"

#include "core/ctx.h"
#include "core/tensor.h"
#include "models/sd3.h"

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
        free(x), free(txt), free(pooled), free(oc), free(og);
    }
    dfa_sd3_free(cpu, mc);
    dfa_sd3_free(gpu, mg);
    dfa_ctx_free(cpu);
    dfa_ctx_free(gpu);
    tmpdir_remove(&d);
    return test_summary();
}
