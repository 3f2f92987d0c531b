/* test_vae_cuda.c (GPU) - the VAE decoder's CUDA path (bf16) against diffusers' golden
 * decodes (tests/fixtures/vae4, vae16) and against the CPU path on a random-weight decoder
 * with SD's channel counts (128, 256, 512, 512; 2 layers; 32 groups) at a 32x24 latent.
 * Bounds: relative L2 2e-2, max |diff| / max |ref| 6e-2 (bf16 weights and activations). */
#include "../fixture.h"
#include "../test.h"
#include "gpu_test_util.h"

#include <stdint.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/ctx.h"
#include "dfa.h"
#include "models/vae.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static dfa_ctx *new_ctx(dfa_backend b) {
    dfa_ctx_params p = dfa_ctx_default_params();
    p.backend = b;
    dfa_ctx *ctx = NULL;
    char e[256];
    if (dfa_ctx_init(&ctx, &p, e, sizeof e) != DFA_OK) fprintf(stderr, "ctx: %s\n", e);
    return ctx;
}

static void fixture_case(const char *name) {
    dfa_ctx *ctx = new_ctx(DFA_BACKEND_CUDA);
    char dir[1024], rel[256];
    snprintf(rel, sizeof rel, "%s/vae", name);
    fixture_path(rel, dir, sizeof dir);
    dfa_vae *vae = NULL;
    CHECKF(ctx && dfa_vae_load(ctx, dir, &vae) == DFA_OK, "load: %s", ctx ? dfa_ctx_error(ctx) : "");
    snprintf(rel, sizeof rel, "%s/io.safetensors", name);
    dfa_safetensors *io = fixture_open(rel);
    if (vae && io) {
        int64_t zs[8], is[8];
        float *z = fixture_f32(io, "latents", NULL, zs), *ref = fixture_f32(io, "image", NULL, is);
        const size_t n = (size_t)is[1] * is[2] * is[3];
        float *img = malloc(n * sizeof(float));
        for (int rep = 0; rep < 2; rep++) {
            fixture_poison(img, n);
            dfa_status s = dfa_vae_decode(ctx, vae, z, (int)zs[2], (int)zs[3], img);
            CHECKF(s == DFA_OK, "decode: %s", dfa_ctx_error(ctx));
            double l2 = gpu_rel_l2(img, ref, n), mx = fixture_rel_err(img, ref, n);
            printf("     %s gpu rep %d: rel L2 %.3g, max rel %.3g\n", name, rep, l2, mx);
            CHECKF(l2 <= 2e-2 && mx <= 6e-2, "%s: rel L2 %g max %g", name, l2, mx);
        }
        free(z), free(ref), free(img);
    }
    dfa_st_close(io);
    dfa_vae_free(ctx, vae);
    dfa_ctx_free(ctx);
}

static void test_fixture_vae4(void) { fixture_case("vae4"); }
static void test_fixture_vae16(void) { fixture_case("vae16"); }

/* ---- a random decoder with SD's channel counts, written as a diffusers folder ---- */
typedef struct wlist {
    dfa_st_item it[256];
    int64_t shapes[256][4];
    char names[256][96];
    float *data[256];
    int n;
    unsigned long long rng;
} wlist;

static void add(wlist *l, const char *name, int nd, int64_t a, int64_t b, int64_t c, int64_t d, float scale,
                float offset) {
    int i = l->n++;
    snprintf(l->names[i], sizeof l->names[i], "%s", name);
    int64_t s[4] = {a, b, c, d};
    size_t n = 1;
    for (int k = 0; k < nd; k++) {
        l->shapes[i][k] = s[k];
        n *= (size_t)s[k];
    }
    l->data[i] = malloc(n * sizeof(float));
    for (size_t k = 0; k < n; k++) l->data[i][k] = offset + scale * test_rng_uniform(&l->rng);
    l->it[i] = (dfa_st_item){l->names[i], DFA_F32, nd, l->shapes[i], l->data[i]};
}

static void add_conv(wlist *l, const char *p, int co, int ci, int k) {
    char n[128];
    snprintf(n, sizeof n, "%s.weight", p);
    add(l, n, 4, co, ci, k, k, 1.7f / sqrtf((float)ci * k * k), 0);
    snprintf(n, sizeof n, "%s.bias", p);
    add(l, n, 1, co, 0, 0, 0, 0.1f, 0);
}
static void add_norm(wlist *l, const char *p, int c) {
    char n[128];
    snprintf(n, sizeof n, "%s.weight", p);
    add(l, n, 1, c, 0, 0, 0, 0.2f, 1.0f);
    snprintf(n, sizeof n, "%s.bias", p);
    add(l, n, 1, c, 0, 0, 0, 0.1f, 0);
}
static void add_lin(wlist *l, const char *p, int co, int ci) {
    char n[128];
    snprintf(n, sizeof n, "%s.weight", p);
    add(l, n, 2, co, ci, 0, 0, 1.7f / sqrtf((float)ci), 0);
    snprintf(n, sizeof n, "%s.bias", p);
    add(l, n, 1, co, 0, 0, 0, 0.1f, 0);
}
static void add_resnet(wlist *l, const char *p, int ci, int co) {
    char n[128];
    snprintf(n, sizeof n, "%s.norm1", p), add_norm(l, n, ci);
    snprintf(n, sizeof n, "%s.conv1", p), add_conv(l, n, co, ci, 3);
    snprintf(n, sizeof n, "%s.norm2", p), add_norm(l, n, co);
    snprintf(n, sizeof n, "%s.conv2", p), add_conv(l, n, co, co, 3);
    if (ci != co) snprintf(n, sizeof n, "%s.conv_shortcut", p), add_conv(l, n, co, ci, 1);
}

static int write_sd_like(const char *dir) {
    static wlist l;
    memset(&l, 0, sizeof l);
    l.rng = 0x5eedULL;
    const int bo[4] = {128, 256, 512, 512}, nb = 4, layers = 2;
    add_conv(&l, "post_quant_conv", 4, 4, 1);
    add_conv(&l, "decoder.conv_in", 512, 4, 3);
    add_resnet(&l, "decoder.mid_block.resnets.0", 512, 512);
    add_norm(&l, "decoder.mid_block.attentions.0.group_norm", 512);
    add_lin(&l, "decoder.mid_block.attentions.0.to_q", 512, 512);
    add_lin(&l, "decoder.mid_block.attentions.0.to_k", 512, 512);
    add_lin(&l, "decoder.mid_block.attentions.0.to_v", 512, 512);
    add_lin(&l, "decoder.mid_block.attentions.0.to_out.0", 512, 512);
    add_resnet(&l, "decoder.mid_block.resnets.1", 512, 512);
    int prev = 512;
    char p[128];
    for (int i = 0; i < nb; i++) {
        const int out = bo[nb - 1 - i];
        for (int j = 0; j <= layers; j++) {
            snprintf(p, sizeof p, "decoder.up_blocks.%d.resnets.%d", i, j);
            add_resnet(&l, p, j == 0 ? prev : out, out);
        }
        if (i != nb - 1) snprintf(p, sizeof p, "decoder.up_blocks.%d.upsamplers.0.conv", i), add_conv(&l, p, out, out, 3);
        prev = out;
    }
    add_norm(&l, "decoder.conv_norm_out", 128);
    add_conv(&l, "decoder.conv_out", 3, 128, 3);
    char path[512];
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
    dfa_error err = {0};
    int rc = dfa_st_write(path, l.it, l.n, NULL, NULL, 0, &err) == DFA_OK ? 0 : -1;
    if (rc) fprintf(stderr, "%s\n", err.msg);
    for (int i = 0; i < l.n; i++) free(l.data[i]);
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f, "{\"_class_name\": \"AutoencoderKL\", \"latent_channels\": 4, \"out_channels\": 3, "
               "\"block_out_channels\": [128, 256, 512, 512], \"layers_per_block\": 2, \"norm_num_groups\": 32, "
               "\"scaling_factor\": 0.18215, \"shift_factor\": null, \"up_block_types\": [\"UpDecoderBlock2D\", "
               "\"UpDecoderBlock2D\", \"UpDecoderBlock2D\", \"UpDecoderBlock2D\"]}\n");
    return fclose(f) == 0 ? rc : -1;
}

static void test_sd_like_vs_cpu(void) {
    char dir[] = "/tmp/dfa_vaegpu_XXXXXX";
    if (!mkdtemp(dir) || write_sd_like(dir) != 0) {
        CHECKF(0, "could not write the random decoder");
        return;
    }
    dfa_ctx *cg = new_ctx(DFA_BACKEND_CUDA), *cc = new_ctx(DFA_BACKEND_CPU);
    dfa_vae *vg = NULL, *vc = NULL;
    CHECKF(dfa_vae_load(cg, dir, &vg) == DFA_OK, "%s", dfa_ctx_error(cg));
    CHECKF(dfa_vae_load(cc, dir, &vc) == DFA_OK, "%s", dfa_ctx_error(cc));
    if (vg && vc) {
        const int h = 32, w = 24, H = h * 8, W = w * 8;
        unsigned long long rng = 42;
        float *z = malloc(sizeof(float) * 4 * h * w), *a = malloc(sizeof(float) * 3 * H * W),
              *b = malloc(sizeof(float) * 3 * H * W);
        for (int i = 0; i < 4 * h * w; i++) z[i] = 0.18215f * 2.0f * test_rng_uniform(&rng);
        double t0 = now();
        CHECKF(dfa_vae_decode(cc, vc, z, h, w, b) == DFA_OK, "%s", dfa_ctx_error(cc));
        double t1 = now();
        fixture_poison(a, (size_t)3 * H * W);
        CHECKF(dfa_vae_decode(cg, vg, z, h, w, a) == DFA_OK, "%s", dfa_ctx_error(cg));
        double t2 = now();
        CHECKF(dfa_vae_decode(cg, vg, z, h, w, a) == DFA_OK, "%s", dfa_ctx_error(cg));
        double t3 = now();
        double l2 = gpu_rel_l2(a, b, (size_t)3 * H * W), mx = fixture_rel_err(a, b, (size_t)3 * H * W);
        printf("     sd-like %dx%d: gpu vs cpu rel L2 %.3g, max rel %.3g; cpu %.2f s, gpu first %.3f s, "
               "warm %.3f s\n",
               W, H, l2, mx, t1 - t0, t2 - t1, t3 - t2);
        CHECKF(l2 <= 2e-2 && mx <= 6e-2, "rel L2 %g max %g", l2, mx);
        free(z), free(a), free(b);
    }
    dfa_vae_free(cg, vg);
    dfa_vae_free(cc, vc);
    dfa_ctx_free(cg);
    dfa_ctx_free(cc);
    char path[512];
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir), unlink(path);
    snprintf(path, sizeof path, "%s/config.json", dir), unlink(path);
    rmdir(dir);
}

int main(void) {
    RUN(test_fixture_vae4);
    RUN(test_fixture_vae16);
    RUN(test_sd_like_vs_cpu);
    return test_summary();
}
