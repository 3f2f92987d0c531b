/* gen_files.c - see gen_files.h. */
#include "cli/gen_files.h"

#include <string.h>
#include <unistd.h>

#include "api/api_int.h"
#include "attn/attn_state.h"
#include "core/ctx.h"
#include "io/safetensors.h"

typedef struct progress_state {
    FILE *log;
    int tty;
    double total;
} progress_state;

static void on_step(void *user, int step, int n, double secs) {
    progress_state *s = user;
    s->total += secs;
    if (s->tty) {
        int filled = (int)((double)(step + 1) / n * 30.0 + 0.5);
        fprintf(s->log, "\r[%.*s%*s] %d/%d  %.2f s/step", filled, "##############################", 30 - filled, "",
                step + 1, n, s->total / (step + 1));
        if (step + 1 == n) fputc('\n', s->log);
    } else {
        fprintf(s->log, "step %d/%d  %.3f s\n", step + 1, n, secs);
    }
    fflush(s->log);
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* "latents" [1, C, h, w] or [C, h, w] -> buf */
static dfa_status load_init(dfa_ctx *ctx, const char *path, int C, int h, int w, float *buf) {
    dfa_safetensors *st = NULL;
    DFA_TRY(dfa_st_open(&st, path, &ctx->err));
    const dfa_st_tensor *t = dfa_st_find(st, "latents");
    dfa_status s;
    if (!t) {
        s = DFA_SET(&ctx->err, DFA_ERR_NOT_FOUND, "%s: no tensor 'latents'", path);
    } else {
        const int64_t s4[4] = {1, C, h, w};
        const int four = t->ndim == 4;
        s = dfa_st_load(st, "latents", DFA_F32, four ? 4 : 3, four ? s4 : s4 + 1, buf, DFA_DEV_CPU, NULL, &ctx->err);
    }
    dfa_st_close(st);
    return s;
}

dfa_status dfa_gen_files(dfa_ctx *ctx, dfa_model *m, const dfa_generate_params *p_in, const char *out,
                         const char *latents_out, const char *init_path, FILE *log) {
    if (!out) DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "generate: no output file");
    const int png = ends_with(out, ".png");
    if (!png && !ends_with(out, ".safetensors"))
        DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "generate: output %s must end in .png or .safetensors", out);
    dfa_generate_params p = *p_in;
    int C = 0, h = 0, w = 0;
    DFA_TRY(dfa_generate_latent_shape(ctx, m, &p, &C, &h, &w));
    const size_t n = (size_t)C * h * w;
    float *lat = NULL, *init = NULL;
    dfa_image im = {0};
    dfa_status s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, (n ? n : 1) * sizeof(float), "latents", (void **)&lat);
    if (s == DFA_OK && init_path) {
        s = dfa_ctx_mem_alloc(ctx, DFA_DEV_CPU, (n ? n : 1) * sizeof(float), "initial latents", (void **)&init);
        if (s == DFA_OK) s = load_init(ctx, init_path, C, h, w, init);
        p.init_latents = init;
    }
    progress_state ps = {log, log ? isatty(fileno(log)) : 0, 0.0};
    if (log) {
        p.progress = on_step, p.progress_user = &ps;
    }
    if (s == DFA_OK && log)
        fprintf(log, "dfa generate: %s, latent %d x %d x %d, seed %llu%s%s\n", dfa_family_name(m->family), C, h, w,
                (unsigned long long)p.seed, init ? " (initial latents from file)" : "",
                dfa_attn_plan(ctx) ? ", with a plan" : "");
    if (s == DFA_OK) s = dfa_generate(ctx, m, &p, png ? &im : NULL, lat, n);
    if (s == DFA_OK && log) {
        /* attention: on CUDA the GPU time between events around each attention call (no stream
         * drains; docs/DESIGN.md "Sampling loop on the GPU"), on the CPU wall time in
         * dfa_attn_layer; rest: the denoising steps' wall time minus that */
        double attn = 0, total = 0;
        dfa_api_model_times(m, &attn, &total);
        fprintf(log, "done: %.2f s; transformer %.2f s: attention %.2f s (%.1f%%), rest %.2f s\n", ps.total, total,
                attn, total > 0 ? 100.0 * attn / total : 0.0, ps.total - attn);
    }
    const int64_t shape[4] = {1, C, h, w};
    const dfa_st_item it = {"latents", DFA_F32, 4, shape, lat};
    if (s == DFA_OK && latents_out) s = dfa_st_write(latents_out, &it, 1, NULL, NULL, 0, &ctx->err);
    if (s == DFA_OK) s = png ? dfa_image_save_png(ctx, &im, out) : dfa_st_write(out, &it, 1, NULL, NULL, 0, &ctx->err);
    dfa_image_free(&im);
    dfa_ctx_mem_release(ctx, init);
    dfa_ctx_mem_release(ctx, lat);
    return s;
}
