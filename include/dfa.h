/* dfa.h - public C API of libdfa: DiTFastAttn / DiTFastAttnV2 attention compression
 * and the diffusion-transformer engine that runs it.
 *
 * Everything lives behind an opaque context. Every call returns a dfa_status; on failure
 * dfa_ctx_error() gives a message that names the file:line where the error was raised and
 * what was wrong (file, tensor, expected vs got). The library never exits or aborts on
 * bad input. */
#ifndef DFA_H
#define DFA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DFA_VERSION_MAJOR 0
#define DFA_VERSION_MINOR 1
#define DFA_VERSION_PATCH 0

typedef enum dfa_status {
    DFA_OK = 0,
    DFA_ERR_INVALID_ARG,  /* a caller passed an impossible value */
    DFA_ERR_IO,           /* open/read/write/mmap failed */
    DFA_ERR_FORMAT,       /* a file is malformed (safetensors, json, plan, png) */
    DFA_ERR_NOT_FOUND,    /* a named tensor / key / file is missing */
    DFA_ERR_SHAPE,        /* shapes or dtypes disagree */
    DFA_ERR_OOM,          /* host or device allocation failed */
    DFA_ERR_CUDA,         /* a CUDA / cuBLAS call failed */
    DFA_ERR_UNSUPPORTED,  /* valid request this build cannot serve (e.g. no CUDA) */
    DFA_ERR_INTERNAL      /* a bug: an invariant did not hold */
} dfa_status;

typedef enum dfa_backend {
    DFA_BACKEND_CPU = 0,
    DFA_BACKEND_CUDA = 1
} dfa_backend;

typedef enum dfa_log_level {
    DFA_LOG_ERROR = 0,
    DFA_LOG_WARN = 1,
    DFA_LOG_INFO = 2,
    DFA_LOG_DEBUG = 3
} dfa_log_level;

typedef struct dfa_ctx dfa_ctx;

typedef struct dfa_ctx_params {
    dfa_backend backend;     /* CPU or CUDA */
    int n_threads;           /* CPU threads; <= 0 means all cores */
    int cuda_device;         /* CUDA device ordinal */
    dfa_log_level log_level; /* messages above this level are dropped */
    /* optional log sink; NULL writes to stderr */
    void (*log_fn)(dfa_log_level level, const char *msg, void *user);
    void *log_user;
} dfa_ctx_params;

/* Defaults: CPU backend, all cores, log level INFO, stderr. */
dfa_ctx_params dfa_ctx_default_params(void);

/* Create a context. On failure *out is NULL and, if err_buf is not NULL, the message is
 * copied there (err_len bytes at most, NUL-terminated). */
dfa_status dfa_ctx_init(dfa_ctx **out, const dfa_ctx_params *params, char *err_buf,
                        size_t err_len);
void dfa_ctx_free(dfa_ctx *ctx);

/* The message of the last failed call on this context ("" if none). */
const char *dfa_ctx_error(const dfa_ctx *ctx);
dfa_backend dfa_ctx_backend(const dfa_ctx *ctx);

/* Short name of a status code, e.g. "format error". */
const char *dfa_status_str(dfa_status s);
const char *dfa_version(void);

/* 1 when this build has CUDA code compiled in (it may still find no GPU at run time). */
int dfa_has_cuda(void);

/* ---- models ----
 * A diffusers pipeline folder (transformer/config.json + weights, optional scheduler/, vae/,
 * text encoders, dfa.json). The family comes from transformer/config.json's _class_name. A model
 * keeps a pointer to the context it was loaded with: free the model before the context. */
typedef enum dfa_family {
    DFA_FAMILY_FLUX = 1,   /* FluxTransformer2DModel (FLUX.1-dev / -schnell) */
    DFA_FAMILY_SD3 = 2,    /* SD3Transformer2DModel (SD3 / SD3.5) */
    DFA_FAMILY_DIT = 3,    /* DiTTransformer2DModel (class-conditional) */
    DFA_FAMILY_PIXART = 4  /* PixArtTransformer2DModel (PixArt-Sigma / -Alpha) */
} dfa_family;

typedef struct dfa_model dfa_model;

/* Load the transformer (and read the scheduler config and dfa.json). The VAE is loaded on the
 * first dfa_generate that asks for an image. On failure *out is NULL and dfa_ctx_error says why
 * (missing folder, unknown _class_name, bad weights). */
dfa_status dfa_model_load(dfa_ctx *ctx, const char *dir, dfa_model **out);
void dfa_model_free(dfa_model *model);

dfa_family dfa_model_family(const dfa_model *model);
/* "flux", "sd3", "dit", "pixart" ("?" for anything else). */
const char *dfa_family_name(dfa_family family);
/* Attention layers in forward order (FLUX: double + single blocks), heads per layer, head
 * width, and the channels of the unpacked latents. */
int dfa_model_n_layers(const dfa_model *model);
int dfa_model_n_heads(const dfa_model *model);
int dfa_model_head_dim(const dfa_model *model);
int dfa_model_latent_channels(const dfa_model *model);

/* ---- attention plans (docs/PLAN_FORMAT.md; made by `dfa plan` / `dfa calibrate`) ---- */
typedef struct dfa_plan_file dfa_plan_file;

/* Load and validate a plan file. */
dfa_status dfa_plan_file_load(dfa_ctx *ctx, const char *path, dfa_plan_file **out);
void dfa_plan_file_free(dfa_plan_file *plan);
dfa_status dfa_plan_file_save(dfa_ctx *ctx, const dfa_plan_file *plan, const char *path);
/* The plan's attention FLOPs over the uncompressed run's (1 = no compression). */
double dfa_plan_file_attn_fraction(const dfa_plan_file *plan);
/* Search a plan for `model` over calibration prompts (DiTFastAttn V1 greedy, or V2's head-wise
 * knapsack), as `dfa calibrate` does. The plan records family, config, resolution and steps:
 * use it with the same width / height / steps (dfa_ctx_set_plan checks at each dfa_generate). */
typedef struct dfa_calibrate_params {
    const char *method;               /* "v2" (default) or "v1" */
    double delta;                     /* threshold: V2 layer influence budget, V1 MRAE scale (>= 0) */
    double c;                         /* V2 per-head coefficient (default 1.5; 0: no per-head cap) */
    const char *methods;              /* V2 candidates "arrow,cache,rs" (NULL: "arrow,cache") */
    const char *windows;              /* V2 ARROW windows in tiles, "1,2" (NULL: 1/8, 1/4, 1/2 band) */
    int v1_window;                    /* V1 WA-RS window in tiles (< 0: 1/8 of the visual tokens) */
    const char *const *prompt_embeds; /* FLUX / SD3 / PixArt: prompt-embeddings files */
    int n_prompts;
    const int *class_labels;          /* DiT: labels (NULL: 8 spread over the classes) */
    int n_class_labels;
    int steps, width, height;         /* <= 0: as dfa_generate's defaults */
    float cfg_scale;                  /* < 0: as dfa_generate's default */
    float guidance;                   /* FLUX-dev (3.5) */
    uint64_t seed;                    /* prompt p's noise: seed + p */
    const char *band;                 /* V1 window kind: "arrow" (NULL, default: visual band + all text) or
                                       * "plain" (V1's window over the whole sequence; v1 only) */
} dfa_calibrate_params;

dfa_calibrate_params dfa_calibrate_default_params(void);
dfa_status dfa_calibrate(dfa_ctx *ctx, dfa_model *model, const dfa_calibrate_params *params, dfa_plan_file **out);

/* Use `plan` (a copy) for the following dfa_generate calls on this context; dfa_generate checks
 * that it was made for the run (family, config, resolution, steps, prompt length, CFG) and
 * fails with DFA_ERR_INVALID_ARG otherwise. */
dfa_status dfa_ctx_set_plan(dfa_ctx *ctx, const dfa_plan_file *plan);
/* Back to every head FULL. */
void dfa_ctx_clear_plan(dfa_ctx *ctx);

/* ---- generation ---- */

/* Called after each denoising step (step counts from 0). */
typedef void (*dfa_progress_fn)(void *user, int step, int n_steps, double step_seconds);

typedef struct dfa_generate_params {
    const char *prompt;          /* FLUX / SD3 / PixArt: encoded with the folder's text encoders */
    const char *prompt_embeds;   /* or: a prompt embeddings .safetensors (FLUX, SD3, PixArt) */
    const char *negative_prompt; /* CFG; NULL: dfa.json's, else "" */
    int steps;                   /* <= 0: dfa.json, else FLUX-dev 28 / schnell 4, SD3 28, DiT 50, PixArt 20 */
    int width, height;           /* pixels; <= 0: dfa.json, else FLUX/SD3 1024, DiT/PixArt sample_size*8 */
    int max_sequence_length;     /* T5 tokens with `prompt`; 0: dfa.json, else the pipeline's */
    uint64_t seed;               /* initial noise seed */
    float cfg_scale;             /* < 0: dfa.json, else SD3 7 (1 without negatives), FLUX 1 (off), DiT 4, PixArt 4.5 */
    float guidance;              /* FLUX-dev distilled guidance (default 3.5) */
    int class_label;             /* DiT: ImageNet class */
    const float *init_latents;   /* [C, h, w] initial noise instead of the seeded one (NULL: seeded) */
    dfa_progress_fn progress;    /* NULL: none */
    void *progress_user;
} dfa_generate_params;

dfa_generate_params dfa_generate_default_params(void);

/* 8-bit interleaved RGB, data[(y * width + x) * 3 + c]; free with dfa_image_free. */
typedef struct dfa_image {
    int width, height, channels;
    uint8_t *data;
} dfa_image;

void dfa_image_free(dfa_image *image);
dfa_status dfa_image_save_png(dfa_ctx *ctx, const dfa_image *image, const char *path);

/* The latent shape [C, h, w] dfa_generate would produce for these parameters. */
dfa_status dfa_generate_latent_shape(dfa_ctx *ctx, dfa_model *model, const dfa_generate_params *params, int *c,
                                     int *h, int *w);

/* Run the pipeline. out_image (NULL: no decode) receives the decoded image (needs the folder's
 * vae/); out_latents (NULL: not wanted) receives the final latents [C, h, w] as handed to the
 * VAE, n_latents floats of room (dfa_generate_latent_shape). At least one output is needed. */
dfa_status dfa_generate(dfa_ctx *ctx, dfa_model *model, const dfa_generate_params *params, dfa_image *out_image,
                        float *out_latents, size_t n_latents);

/* Decode latents [C, h, w] (as dfa_generate returns them) through the folder's vae/ into an
 * RGB8 image (h * s by w * s, s = the VAE's upscale, 8 for released VAEs). */
dfa_status dfa_decode(dfa_ctx *ctx, dfa_model *model, const float *latents, int h, int w, dfa_image *out_image);

/* Read a named tensor of a .safetensors file as f32 (e.g. latents to start from or compare
 * with). *data is malloc'ed (free with dfa_free); shape gets up to 8 dims. */
dfa_status dfa_tensor_read_f32(dfa_ctx *ctx, const char *path, const char *name, float **data, int64_t shape[8],
                               int *ndim);
void dfa_free(void *p);

#ifdef __cplusplus
}
#endif
#endif /* DFA_H */
