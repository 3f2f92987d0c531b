/* cmd_eval.c - `dfa eval`: the fidelity harness (eval_run.h). Generates with no compression
 * and with each plan from the same seeds and reports per plan the attention FLOPs fraction,
 * SSIM / PSNR against the uncompressed images, the latents' relative L2 error and the wall time,
 * as a markdown table (stdout and OUTDIR/report.md), an SSIM-vs-attention plot and a contact
 * sheet. --prompts FILE: one prompt per line (blank lines and '#' comments skipped); a line
 * ending in .safetensors is a prompt-embeddings file instead (relative: from the working
 * directory, else from the list's folder), so calibrate's lists work here too. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/eval_run.h"

#define EVAL_MAX_PROMPTS 256

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* Lines of the list into strs[] (malloc'ed); prompts[] point into them. -1 on error. */
static int read_prompts(const char *file, char **strs, dfa_eval_prompt *prompts, int max, char *msg, size_t len) {
    FILE *f = fopen(file, "r");
    if (!f) {
        snprintf(msg, len, "%s: cannot open the prompt list (%s)", file, strerror(errno));
        return -1;
    }
    const char *slash = strrchr(file, '/');
    const int dir_len = slash ? (int)(slash - file) : 0;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        char *s = line, *e = line + strlen(line);
        while (e > s && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t')) *--e = 0;
        while (*s == ' ' || *s == '\t') s++;
        if (!*s || *s == '#') continue;
        if (n == max) {
            snprintf(msg, len, "%s: more than %d prompts", file, max);
            n = -1;
            break;
        }
        const int emb = ends_with(s, ".safetensors");
        size_t sz = strlen(s) + (size_t)dir_len + 2;
        char *p = malloc(sz);
        if (!p) {
            snprintf(msg, len, "out of memory reading %s", file);
            n = -1;
            break;
        }
        if (emb && s[0] != '/' && access(s, R_OK) != 0 && slash)
            snprintf(p, sz, "%.*s/%s", dir_len, file, s);
        else
            snprintf(p, sz, "%s", s);
        strs[n] = p;
        prompts[n] = emb ? (dfa_eval_prompt){.embeds = p} : (dfa_eval_prompt){.text = p};
        n++;
    }
    fclose(f);
    if (n < 0)
        return -1;
    if (n == 0) {
        snprintf(msg, len, "%s: no prompts in the list", file);
        return -1;
    }
    return n;
}

int cmd_eval(int argc, char **argv) {
    const char *model = NULL, *prompts = NULL, *outdir = NULL;
    dfa_arg_list plans = {0}, embeds = {0}, seeds = {0};
    int steps = 0, width = 0, height = 0, threads = 0, max_len = 0, cuda = 0;
    double cfg = -1, guidance = 3.5;
    dfa_arg_spec specs[] = {
        {"model", 'm', DFA_ARG_STRING, &model, "DIR", "diffusers pipeline folder (transformer/, vae/, text encoders)", 1, 0},
        {"plans", 0, DFA_ARG_LIST, &plans, "PLAN...", "plan files to compare with the uncompressed run", 1, 0},
        {"prompts", 0, DFA_ARG_STRING, &prompts, "FILE", "prompts, one per line (or prompt-embeddings files)", 1, 0},
        {"prompt-embeds", 0, DFA_ARG_LIST, &embeds, "FILE...", "prompt-embeddings files instead of --prompts", 1, 0},
        {"seeds", 0, DFA_ARG_LIST, &seeds, "S...", "noise seeds, each prompt runs with each (default 0)", 1, 0},
        {"steps", 0, DFA_ARG_INT, &steps, "N", "denoising steps (default as dfa generate)", 1, 10000},
        {"width", 'W', DFA_ARG_INT, &width, "PX", "width in pixels (default: dfa.json, else 1024)", 8, 65536},
        {"height", 'H', DFA_ARG_INT, &height, "PX", "height in pixels (default: dfa.json, else 1024)", 8, 65536},
        {"cfg-scale", 0, DFA_ARG_FLOAT, &cfg, "S", "classifier-free guidance (default as dfa generate)", 0, 1000},
        {"guidance", 0, DFA_ARG_FLOAT, &guidance, "G", "FLUX-dev guidance scale (default 3.5)", 0, 1000},
        {"max-sequence-length", 0, DFA_ARG_INT, &max_len, "N", "T5 tokens for text prompts", 1, 4096},
        {"out", 'o', DFA_ARG_STRING, &outdir, "DIR", "write report.md, ssim_vs_attn.png, contact_sheet.png here", 1, 0},
        {"threads", 't', DFA_ARG_INT, &threads, "T", "CPU threads (default all cores)", 0, 1024},
        {"cuda", 0, DFA_ARG_FLAG, &cuda, NULL, "run on the GPU (CUDA backend, device 0)", 0, -1},
    };
    const int ns = (int)(sizeof specs / sizeof specs[0]);
    const char *pos[1];
    int npos;
    char msg[512];
    int r = dfa_args_parse(argc, argv, 1, specs, ns, pos, 1, &npos, msg, sizeof msg);
    if (r == 1) {
        dfa_args_usage("eval", "-m DIR --plans A.json B.json ... (--prompts FILE | --prompt-embeds FILE...) "
                       "[--seeds S...] [--steps N] [-W PX -H PX] [-o OUTDIR]",
                       "Fidelity harness: generate with no compression and with each plan from the same seeds;\n"
                       "report per plan the attention FLOPs fraction, SSIM and PSNR of the images against the\n"
                       "uncompressed ones, the final latents' relative L2 error and the wall time (markdown table;\n"
                       "with -o also an SSIM-vs-attention plot and a contact sheet). Without vae/: latents only.\n"
                       "Use held-out prompts, not the calibration ones.", specs, ns);
        return 0;
    }
    if (r == 0 && npos) {
        snprintf(msg, sizeof msg, "takes no positional arguments (got '%s')", pos[0]);
        r = -1;
    }
    if (r == 0 && (!model || plans.n < 1 || (!prompts == !embeds.n))) {
        snprintf(msg, sizeof msg, "needs -m DIR, --plans PLAN... and one of --prompts FILE / --prompt-embeds FILE...");
        r = -1;
    }
    long long seed_v[DFA_ARG_LIST_MAX];
    for (int i = 0; r == 0 && i < seeds.n; i++) {
        char *end;
        errno = 0;
        seed_v[i] = strtoll(seeds.items[i], &end, 10);
        if (errno || *end || end == seeds.items[i] || seed_v[i] < 0) {
            snprintf(msg, sizeof msg, "--seeds: '%s' is not a non-negative integer", seeds.items[i]);
            r = -1;
        }
    }
    if (r < 0) {
        fprintf(stderr, "dfa eval: %s\n", msg);
        return 2;
    }
    char *strs[EVAL_MAX_PROMPTS];
    dfa_eval_prompt pr[EVAL_MAX_PROMPTS];
    int n_pr = 0, n_strs = 0;
    if (prompts) {
        n_pr = n_strs = read_prompts(prompts, strs, pr, EVAL_MAX_PROMPTS, msg, sizeof msg);
        if (n_pr < 0) {
            fprintf(stderr, "dfa eval: %s\n", msg);
            return 1;
        }
    } else {
        for (int i = 0; i < embeds.n; i++) pr[n_pr++] = (dfa_eval_prompt){.embeds = embeds.items[i]};
    }
    dfa_eval_opts o = {.model = model, .plans = plans.items, .n_plans = plans.n, .prompts = pr, .n_prompts = n_pr,
                       .seeds = seeds.n ? seed_v : NULL, .n_seeds = seeds.n, .steps = steps, .width = width,
                       .height = height, .max_len = max_len, .cfg = cfg, .guidance = guidance, .outdir = outdir};
    dfa_ctx *ctx = NULL;
    dfa_ctx_params cp = dfa_ctx_default_params();
    cp.n_threads = threads;
    if (cuda) cp.backend = DFA_BACKEND_CUDA;
    char err[256];
    int rc = 1;
    if (dfa_ctx_init(&ctx, &cp, err, sizeof err) != DFA_OK) {
        fprintf(stderr, "dfa eval: %s\n", err);
    } else {
        dfa_eval_result res;
        if (dfa_eval_run(ctx, &o, &res, stderr) != DFA_OK) {
            fprintf(stderr, "dfa eval: %s\n", dfa_ctx_error(ctx));
        } else {
            dfa_eval_write_markdown(&res, model, stdout);
            dfa_eval_result_free(&res);
            rc = 0;
        }
        dfa_ctx_free(ctx);
    }
    for (int i = 0; i < n_strs; i++) free(strs[i]);
    return rc;
}
