/* cmd_calibrate.c - `dfa calibrate`: search a compression plan (V1 greedy or V2 head-wise
 * knapsack, src/plan/search.h) for FLUX.1 or SD3 over calibration prompts, with a progress bar
 * and an ETA; writes the plan (family, config id, layout, grid, steps recorded, so that
 * `dfa generate --plan` refuses it for another model, resolution or step count) and prints its
 * attention-FLOPs fraction and the search time.
 *
 * Calibration prompts: --prompts FILE, one entry per line (blank lines and '#' comments skipped),
 * the first --n-prompts used. When every entry ends in ".safetensors" the list names prompt-
 * embeddings files (a relative path is taken from the working directory, else from the list
 * file's folder); when none does, the entries are text prompts, encoded with the model folder's
 * text encoders as `dfa generate --prompt` does (negative "" or dfa.json's when CFG is on; T5
 * length --max-sequence-length, else dfa.json's, else the pipeline's); a list mixing both is an
 * error. Or one --prompt-embeds FILE. They run as one batch (same text length each). Prompt p's
 * noise: seed + p. */
#include <errno.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "api/calibrate.h"
#include "core/ctx.h"
#include "plan/plan.h"

#define CAL_MAX_PROMPTS 256

typedef struct cal_opts {
    const char *model, *method, *methods, *prompts, *embeds, *out, *windows, *labels, *band;
    int n_prompts, steps, width, height, threads, v1_window, quiet, cuda, max_len;
    long long seed;
    double delta, c, cfg, guidance;
} cal_opts;

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* Entries of the prompt list (malloc'ed strings into entries[], count returned; -1 on error).
 * *texts: 1 when they are text prompts, 0 when they are prompt-embeddings files (paths resolved). */
static int read_prompt_list(const char *file, char **entries, int max, int *texts, char *msg, size_t msg_len) {
    FILE *f = fopen(file, "r");
    if (!f) {
        snprintf(msg, msg_len, "%s: cannot open the prompt list (%s)", file, strerror(errno));
        return -1;
    }
    const char *slash = strrchr(file, '/');
    const int dir_len = slash ? (int)(slash - file) : 0;
    char line[4096];
    int n = 0, n_st = 0;
    while (fgets(line, sizeof line, f)) {
        char *s = line, *e = line + strlen(line);
        while (e > s && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t')) *--e = 0;
        while (*s == ' ' || *s == '\t') s++;
        if (!*s || *s == '#') continue;
        if (n == max) break;
        const int is_st = ends_with(s, ".safetensors");
        size_t len = strlen(s) + (size_t)dir_len + 2;
        char *p = malloc(len);
        if (!p) {
            snprintf(msg, msg_len, "out of memory reading %s", file);
            while (n > 0) free(entries[--n]);
            fclose(f);
            return -1;
        }
        if (is_st && s[0] != '/' && access(s, R_OK) != 0 && slash)
            snprintf(p, len, "%.*s/%s", dir_len, file, s);
        else
            snprintf(p, len, "%s", s);
        entries[n++] = p;
        n_st += is_st;
    }
    fclose(f);
    *texts = n_st == 0;
    if (n == 0) snprintf(msg, msg_len, "%s: no prompts in the list", file);
    if (n_st && n_st != n) {
        snprintf(msg, msg_len, "%s mixes %d prompt-embeddings paths (*.safetensors) with %d text prompts; use one kind",
                 file, n_st, n - n_st);
        while (n > 0) free(entries[--n]);
        return -1;
    }
    return n;
}

/* "1,2,3" -> labels (range checked by the search engine against the model's classes). */
static dfa_status parse_labels(dfa_ctx *ctx, const char *list, int *labels, int max, int *n) {
    char buf[2048];
    snprintf(buf, sizeof buf, "%s", list);
    *n = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t && *n < max; t = strtok_r(NULL, ",", &save)) {
        char *end;
        long v = strtol(t, &end, 10);
        if (*end || v < 0 || v > 1000000)
            DFA_CTX_FAIL(ctx, DFA_ERR_INVALID_ARG, "--labels: '%s' is not a class label", t);
        labels[(*n)++] = (int)v;
    }
    return DFA_OK;
}

static int run_calibrate(dfa_ctx *ctx, const cal_opts *o, char **paths, int n_paths, int texts) {
    dfa_model *m = NULL;
    dfa_plan plan;
    int have_plan = 0, rc = 1;
    int labels[CAL_MAX_PROMPTS];
    int n_labels = 0;
    dfa_status s = dfa_model_load(ctx, o->model, &m);
    const int is_dit = m && dfa_model_family(m) == DFA_FAMILY_DIT;
    const char *bad = s != DFA_OK ? NULL
                      : is_dit && n_paths ? "DiT is class-conditional: it takes --labels, not prompts"
                      : !is_dit && o->labels ? "--labels is for DiT; this model takes prompts"
                      : !is_dit && !n_paths ? "needs --prompts FILE or --prompt-embeds FILE"
                      : NULL;
    if (bad) {
        fprintf(stderr, "dfa calibrate: %s\n", bad);
        dfa_model_free(m);
        return 2;
    }
    if (s == DFA_OK && o->labels) s = parse_labels(ctx, o->labels, labels, CAL_MAX_PROMPTS, &n_labels);
    dfa_calib_opts co = {.v1 = strcmp(o->method, "v1") == 0, .delta = o->delta, .c = o->c, .methods = o->methods,
                         .windows = o->windows, .v1_window = o->v1_window, .band = dfa_band_parse(o->band), .embeds = texts ? NULL : (const char *const *)paths,
                         .n_embeds = texts ? 0 : n_paths, .texts = texts ? (const char *const *)paths : NULL,
                         .n_texts = texts ? n_paths : 0, .max_len = o->max_len, .labels = n_labels ? labels : NULL, .n_labels = n_labels,
                         .n_default_labels = o->n_prompts, .steps = o->steps, .width = o->width, .height = o->height,
                         .cfg = o->cfg, .guidance = o->guidance, .seed = (uint64_t)o->seed,
                         .log = o->quiet ? NULL : stderr};
    dfa_calib_result res = {0};
    if (s == DFA_OK) s = dfa_calib_run(ctx, m, &co, &plan, &res);
    if (s == DFA_OK) {
        have_plan = 1;
        s = dfa_plan_save(o->out, &plan, &ctx->err);
    }
    if (s == DFA_OK) {
        dfa_plan_cost pc;
        dfa_plan_cost_compute(&plan, res.head_dim, &pc, NULL);
        printf("%s\n", o->out);
        fprintf(stderr, "plan %s: attention FLOPs %.2f%% of full (modelled attention time %.2f%%); head-steps full %lld, "
                "arrow %lld, arrow_rs %lld, cache %lld; ASC %lld layer-steps; search %.2f s\n", o->out,
                100.0 * pc.fraction, 100.0 * res.model_time_fraction, (long long)pc.n_method[0],
                (long long)pc.n_method[1], (long long)pc.n_method[2], (long long)pc.n_method[3], (long long)pc.n_asc,
                res.search_seconds);
        rc = 0;
    }
    if (s != DFA_OK) fprintf(stderr, "dfa calibrate: %s\n", dfa_ctx_error(ctx));
    if (have_plan) dfa_plan_free(&plan);
    dfa_model_free(m);
    return rc;
}

int cmd_calibrate(int argc, char **argv) {
    cal_opts o = {.method = "v2", .methods = "arrow,cache", .n_prompts = 8, .v1_window = -1, .delta = -1, .c = 1.5, .cfg = -1, .guidance = 3.5,
                  .band = "arrow"};
    dfa_arg_spec specs[] = {
        {"model", 'm', DFA_ARG_STRING, &o.model, "DIR", "diffusers pipeline folder (transformer/, scheduler/)", 1, 0},
        {"method", 0, DFA_ARG_STRING, &o.method, "v1|v2", "search: v1 (DiTFastAttn greedy) or v2 (head-wise knapsack, "
         "default)", 1, 0},
        {"delta", 0, DFA_ARG_FLOAT, &o.delta, "X", "threshold: V2 layer influence budget, V1 MRAE scale", 0, 1e9},
        {"c", 0, DFA_ARG_FLOAT, &o.c, "C", "V2 per-head coefficient (default 1.5; 0: no per-head cap)", 0, 1e9},
        {"methods", 0, DFA_ARG_STRING, &o.methods, "LIST", "V2 candidates: arrow,cache,rs (default arrow,cache)", 1, 0},
        {"windows", 0, DFA_ARG_STRING, &o.windows, "LIST", "V2 ARROW windows in tiles (default: 1/8, 1/4, 1/2 of the "
         "visual tiles as band width)", 1, 0},
        {"window", 0, DFA_ARG_INT, &o.v1_window, "W", "V1 WA-RS window in tiles (default 1/8 of the visual tokens)", 0,
         1e6},
        {"band", 0, DFA_ARG_STRING, &o.band, "arrow|plain", "V1 window kind: arrow (default; visual band + every text "
         "row and column) or plain (V1's window over the whole [text, image] sequence, --window in its tiles)", 1, 0},
        {"prompts", 0, DFA_ARG_STRING, &o.prompts, "FILE", "calibration prompts, one per line: text prompts (encoded "
         "with the folder's text encoders) or prompt-embeddings .safetensors files", 1, 0},
        {"max-sequence-length", 0, DFA_ARG_INT, &o.max_len, "N", "T5 tokens for text prompts (default: dfa.json, else "
         "FLUX 512, SD3 256, PixArt 300)", 1, 4096},
        {"prompt-embeds", 0, DFA_ARG_STRING, &o.embeds, "FILE", "one prompt-embeddings file instead of a list", 1, 0},
        {"labels", 0, DFA_ARG_STRING, &o.labels, "LIST", "DiT: class labels, one row each (default: --n-prompts labels "
         "spread over the classes)", 1, 0},
        {"n-prompts", 0, DFA_ARG_INT, &o.n_prompts, "N", "calibration prompts used from the list (default 8)", 1,
         CAL_MAX_PROMPTS},
        {"steps", 0, DFA_ARG_INT, &o.steps, "N", "denoising steps (default: as dfa generate - MODEL/dfa.json, else FLUX-dev / SD3 28, "
         "schnell 4, DiT 50, PixArt 20)", 1, 10000},
        {"width", 'W', DFA_ARG_INT, &o.width, "PX", "width in pixels (default as dfa generate: dfa.json, 1024, DiT/PixArt sample size)", 8, 65536},
        {"height", 'H', DFA_ARG_INT, &o.height, "PX", "height in pixels (default as dfa generate)", 8, 65536},
        {"seed", 0, DFA_ARG_INT64, &o.seed, "S", "noise seed of prompt 0 (prompt p: S + p; default 0)", 0, 9.2e18},
        {"cfg-scale", 0, DFA_ARG_FLOAT, &o.cfg, "S", "classifier-free guidance (default: SD3 7 / PixArt 4.5 with "
         "negatives, DiT 4)", 0, 1000},
        {"guidance", 0, DFA_ARG_FLOAT, &o.guidance, "G", "FLUX-dev guidance scale (default 3.5)", 0, 1000},
        {"output", 'o', DFA_ARG_STRING, &o.out, "FILE", "plan file to write (JSON)", 1, 0},
        {"quiet", 'q', DFA_ARG_FLAG, &o.quiet, NULL, "no progress bar", 1, 0},
        {"cuda", 0, DFA_ARG_FLAG, &o.cuda, NULL, "FLUX / SD3 on the GPU, search on the GPU (bf16; device 0)", 0, -1},
        {"threads", 't', DFA_ARG_INT, &o.threads, "T", "CPU threads (default all cores)", 0, 1024},
    };
    const int ns = (int)(sizeof specs / sizeof specs[0]);
    const char *pos[1];
    int npos;
    char msg[512];
    int r = dfa_args_parse(argc, argv, 1, specs, ns, pos, 1, &npos, msg, sizeof msg);
    if (r == 1) {
        dfa_args_usage("calibrate", "-m DIR --method v1|v2 --delta X (--prompts FILE | --prompt-embeds FILE) -W PX "
                       "-H PX [--steps N] -o plan.json",
                       "Search an attention compression plan for FLUX.1 or SD3 over calibration prompts (V1: greedy\n"
                       "per layer under a model-output error threshold; V2: one method per head by an exact\n"
                       "knapsack under an attention-output error budget). Prints a progress bar with an ETA, then\n"
                       "the plan's attention-FLOPs fraction and the search time. Use it with dfa generate --plan.",
                       specs, ns);
        return 0;
    }
    if (r == 0 && npos) {
        snprintf(msg, sizeof msg, "takes no positional arguments (got '%s')", pos[0]);
        r = -1;
    }
    if (r == 0 && (!o.model || !o.out || o.delta < 0 || (o.prompts && o.embeds))) {
        snprintf(msg, sizeof msg, "needs -m DIR, --delta X, -o FILE and at most one of --prompts FILE / "
                 "--prompt-embeds FILE");
        r = -1;
    }
    if (r == 0 && strcmp(o.method, "v1") != 0 && strcmp(o.method, "v2") != 0) {
        snprintf(msg, sizeof msg, "--method must be v1 or v2 (got '%s')", o.method);
        r = -1;
    }
    if (r == 0 && dfa_band_parse(o.band) < 0) {
        snprintf(msg, sizeof msg, "--band must be arrow or plain (got '%s')", o.band);
        r = -1;
    }
    if (r == 0 && dfa_band_parse(o.band) == DFA_BAND_PLAIN && strcmp(o.method, "v1") != 0) {
        snprintf(msg, sizeof msg, "--band plain is V1's window (--method v1); V2 searches the arrow band");
        r = -1;
    }
    if (r < 0) {
        fprintf(stderr, "dfa calibrate: %s\n", msg);
        return 2;
    }
    char *paths[CAL_MAX_PROMPTS];
    int n_paths = 0, texts = 0;
    if (o.prompts) {
        n_paths = read_prompt_list(o.prompts, paths, o.n_prompts, &texts, msg, sizeof msg);
        if (n_paths < 0 || n_paths == 0) {
            fprintf(stderr, "dfa calibrate: %s\n", msg);
            for (int i = 0; i < n_paths; i++) free(paths[i]);
            return 1;
        }
        if (n_paths < o.n_prompts && o.n_prompts != 8)
            fprintf(stderr, "dfa calibrate: %s lists %d prompts; using them (--n-prompts %d)\n", o.prompts, n_paths,
                    o.n_prompts);
    } else if (o.embeds) {
        paths[0] = strdup(o.embeds);
        if (!paths[0]) return 1;
        n_paths = 1;
    }
    dfa_ctx *ctx = NULL;
    dfa_ctx_params cp = dfa_ctx_default_params();
    cp.n_threads = o.threads;
    if (o.cuda) cp.backend = DFA_BACKEND_CUDA;
    char err[256];
    int rc = 1;
    if (dfa_ctx_init(&ctx, &cp, err, sizeof err) != DFA_OK) {
        fprintf(stderr, "dfa calibrate: %s\n", err);
    } else {
        rc = run_calibrate(ctx, &o, paths, n_paths, texts);
        dfa_ctx_free(ctx);
    }
    for (int i = 0; i < n_paths; i++) free(paths[i]);
    return rc;
}
