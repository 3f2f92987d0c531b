/* cmd_plan.c - `dfa plan show PLAN [--heatmap out.png] [--heads]` and `dfa plan make ...`:
 * a plan's attention-FLOPs fraction, method counts per step, a steps x layers heatmap (V1
 * Fig. 5 style), and hand-made plans (uniform ARROW, caching every N steps, WA-RS, random). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn/attn_state.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "io/png.h"
#include "plan/plan.h"

/* heatmap colours, also printed as the legend */
static const uint8_t method_rgb[DFA_ATTN_METHOD_COUNT][3] = {
    {70, 70, 70},    /* FULL: dark grey */
    {66, 133, 244},  /* ARROW: blue */
    {52, 168, 83},   /* ARROW_RS: green */
    {251, 188, 5},   /* CACHE: yellow */
};
static const uint8_t asc_rgb[3] = {219, 68, 55}; /* ASC: red corner */

/* One cell per (step, layer): the mean colour of its heads (pure colour when all agree), or
 * with per_head one column per head. ASC marks the cell's lower-right corner. */
static dfa_status write_heatmap(const dfa_plan *p, const char *path, int per_head, dfa_error *err) {
    const int head_px = per_head ? (p->n_heads > 16 ? 3 : 6) : 0;
    const int cw = per_head ? head_px * p->n_heads + 1 : 16, ch = per_head ? 12 : 16;
    const int W = p->n_layers * cw + 1, Hh = p->n_steps * ch + 1;
    if ((double)W * Hh > 1e8) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "heatmap of %d x %d pixels is too large", W, Hh);
    uint8_t *px = malloc((size_t)W * Hh * 3);
    if (!px) DFA_FAIL(err, DFA_ERR_OOM, "out of host memory for a %d x %d heatmap", W, Hh);
    memset(px, 255, (size_t)W * Hh * 3); /* white grid lines */
    for (int s = 0; s < p->n_steps; s++)
        for (int l = 0; l < p->n_layers; l++) {
            double mean[3] = {0, 0, 0};
            for (int h = 0; h < p->n_heads; h++) {
                const uint8_t *c = method_rgb[p->method[dfa_plan_index(p, s, l, h)]];
                for (int k = 0; k < 3; k++) mean[k] += c[k] / (double)p->n_heads;
            }
            int asc = p->asc[(size_t)s * p->n_layers + l];
            for (int y = 1; y < ch; y++)
                for (int x = 1; x < cw; x++) {
                    uint8_t rgb[3];
                    if (per_head) {
                        int h = (x - 1) / head_px;
                        memcpy(rgb, method_rgb[p->method[dfa_plan_index(p, s, l, h)]], 3);
                    } else {
                        for (int k = 0; k < 3; k++) rgb[k] = (uint8_t)(mean[k] + 0.5);
                    }
                    if (asc && x + y >= cw + ch - 6) memcpy(rgb, asc_rgb, 3);
                    memcpy(px + ((size_t)(s * ch + y) * W + (size_t)l * cw + x) * 3, rgb, 3);
                }
        }
    dfa_status st = dfa_png_write(path, W, Hh, 3, px, err);
    free(px);
    return st;
}

static void print_summary(const dfa_plan *p, const char *path, int head_dim) {
    dfa_plan_cost c;
    double *sf = malloc((size_t)p->n_steps * sizeof(double));
    dfa_plan_cost_compute(p, head_dim, &c, sf);
    dfa_attn_tiles t;
    dfa_layout_tiles(&p->layout, &t);
    printf("plan %s (%s v%d)\n", path, DFA_PLAN_FORMAT, DFA_PLAN_VERSION);
    printf("  model        %s / %s; search %s (delta %g, c %g)\n", p->family[0] ? p->family : "-",
           p->config_id[0] ? p->config_id : "-", p->search[0] ? p->search : "-", p->delta, p->c);
    printf("  layout       %d visual tokens (%d x %d) + %d text tokens %s; tiles of %d (%d visual tiles)\n",
           p->layout.n_vis, p->grid_h, p->grid_w, p->layout.n_text,
           p->layout.n_text == 0 ? "" : (p->layout.text_first ? "before the image" : "after the image"),
           p->layout.block, t.n_vis_tiles);
    if (p->layout.band == DFA_BAND_PLAIN)
        printf("  band         plain (V1's window over the whole sequence: windows in tiles of all %d tiles)\n",
               t.n_tiles);
    else
        printf("  band         arrow (visual band + every text row and column)\n");
    if (dfa_plan_n_layer_layouts(p) > 0) {
        printf("  own layouts  %d layer(s):", dfa_plan_n_layer_layouts(p));
        for (int l = 0; l < p->n_layers; l++) {
            const dfa_attn_layout *L = dfa_plan_layer_layout(p, l);
            if (dfa_plan_layout_same(L, &p->layout)) continue;
            printf(" %d (%d+%d%s, tiles of %d)", l, L->n_vis, L->n_text,
                   L->n_text == 0 ? "" : (L->text_first ? " text first" : " text after"), L->block);
        }
        printf("\n");
    }
    printf("  size         %d steps x %d layers x %d heads; CFG %s\n", p->n_steps, p->n_layers, p->n_heads,
           p->cfg ? (p->cond_half ? "yes (batch [uncond, cond])" : "yes (batch [cond, uncond])") : "no");
    printf("  attention    %.2f%% of full attention FLOPs (V2 sparsity %.3f); %.1f of %.1f GFLOP per image "
           "at head dim %d\n",
           100.0 * c.fraction, 1.0 - c.fraction, c.flops / 1e9, c.full_flops / 1e9, head_dim);
    int64_t total = (int64_t)p->n_steps * p->n_layers * p->n_heads;
    printf("  head-steps  ");
    for (int m = 0; m < DFA_ATTN_METHOD_COUNT; m++)
        printf(" %s %lld (%.1f%%)", dfa_attn_method_name(m), (long long)c.n_method[m], 100.0 * c.n_method[m] / total);
    printf("\n  residuals    %lld FULL head-steps refresh a residual (cost FULL + ARROW)\n", (long long)c.n_refresh);
    printf("  ASC          %lld of %d layer-steps\n", (long long)c.n_asc, p->n_steps * p->n_layers);
    size_t cb = dfa_plan_cache_bytes(p, p->cfg ? 2 : 1, head_dim, 4);
    printf("  caches       %.2f MiB at most (f32, batch %d, head dim %d; %.2f MiB in bf16)\n", cb / 1048576.0,
           p->cfg ? 2 : 1, head_dim, cb / 2097152.0);
    printf("\n  step  attn%%   full  arrow  arr_rs  cache  asc\n");
    for (int s = 0; s < p->n_steps; s++) {
        int n[DFA_ATTN_METHOD_COUNT] = {0}, asc = 0;
        for (int l = 0; l < p->n_layers; l++) {
            asc += p->asc[(size_t)s * p->n_layers + l];
            for (int h = 0; h < p->n_heads; h++) n[p->method[dfa_plan_index(p, s, l, h)]]++;
        }
        printf("  %4d  %6.2f  %5d  %5d  %6d  %5d  %3d\n", s, 100.0 * sf[s], n[0], n[1], n[2], n[3], asc);
    }
    free(sf);
}

static int plan_show(int argc, char **argv) {
    const char *heatmap = NULL;
    int heads = 0, head_dim = 64;
    dfa_arg_spec specs[] = {
        {"heatmap", 0, DFA_ARG_STRING, &heatmap, "PNG", "write a steps x layers heatmap (one colour per method)", 1, 0},
        {"heads", 0, DFA_ARG_FLAG, &heads, NULL, "heatmap: one column per head inside each layer", 1, 0},
        {"dim", 0, DFA_ARG_INT, &head_dim, "D", "head dim for absolute FLOPs and cache bytes (default 64)", 1, 4096},
    };
    const int ns = (int)(sizeof specs / sizeof specs[0]);
    const char *pos[1];
    int npos;
    char msg[256];
    int r = dfa_args_parse(argc, argv, 2, specs, ns, pos, 1, &npos, msg, sizeof msg);
    if (r == 1) {
        dfa_args_usage("plan show", "PLAN [--heatmap out.png] [--heads]",
                       "Summarise a compression plan: attention FLOPs fraction, methods per step, cache bytes.",
                       specs, ns);
        return 0;
    }
    if (r < 0 || npos != 1) {
        fprintf(stderr, "dfa plan show: %s\n", r < 0 ? msg : "expected one plan file");
        return 2;
    }
    dfa_plan p;
    dfa_error err;
    dfa_error_clear(&err);
    if (dfa_plan_load(pos[0], &p, &err) != DFA_OK) {
        fprintf(stderr, "dfa plan show: %s\n", err.msg);
        return 1;
    }
    print_summary(&p, pos[0], head_dim);
    int rc = 0;
    if (heatmap) {
        if (write_heatmap(&p, heatmap, heads, &err) != DFA_OK) {
            fprintf(stderr, "dfa plan show: %s\n", err.msg);
            rc = 1;
        } else {
            printf("\nheatmap %s: rows = steps (0 at the top), columns = layers%s; full grey, arrow blue, "
                   "arrow_rs green, cache yellow, ASC red corner%s\n",
                   heatmap, heads ? " (one column per head)" : "", heads ? "" : "; mixed layers show the mean colour");
        }
    }
    dfa_plan_free(&p);
    return rc;
}

/* "--image-only-layers 1,3": those layers get the main layout without text (n_text 0). */
static dfa_status set_image_only(dfa_plan *p, const char *list, dfa_error *err) {
    const char *s = list;
    while (*s) {
        char *e;
        long l = strtol(s, &e, 10);
        if (e == s || (*e && *e != ',') || l < 0 || l >= p->n_layers)
            DFA_FAIL(err, DFA_ERR_INVALID_ARG, "--image-only-layers '%s': expected layer indices in [0, %d) separated "
                     "by commas", list, p->n_layers);
        dfa_attn_layout L = p->layout;
        L.n_text = 0;
        DFA_TRY(dfa_plan_set_layer_layout(p, (int)l, &L, err));
        s = *e ? e + 1 : e;
    }
    return DFA_OK;
}

static int plan_make(int argc, char **argv) {
    const char *out = NULL, *grid = NULL, *pattern = "full", *family = "", *config = "", *image_only = NULL;
    const char *band_name = "arrow";
    int steps = 0, layers = 0, heads = 0, n_text = 0, text_after = 0, block = DFA_PLAN_DEFAULT_BLOCK, window = -1, window_tokens = -1;
    int every = 2, full_steps = 0, cfg = 0, asc = 0, v1_window = 0;
    long long seed = 1;
    dfa_arg_spec specs[] = {
        {"output", 'o', DFA_ARG_STRING, &out, "FILE", "plan file to write", 1, 0},
        {"steps", 0, DFA_ARG_INT, &steps, "N", "denoising steps", 1, 100000},
        {"layers", 0, DFA_ARG_INT, &layers, "N", "attention layers", 1, 100000},
        {"heads", 0, DFA_ARG_INT, &heads, "N", "heads per layer", 1, 100000},
        {"grid", 0, DFA_ARG_STRING, &grid, "HxW", "visual token grid, e.g. 64x64", 1, 0},
        {"text", 0, DFA_ARG_INT, &n_text, "N", "text tokens in the joint attention (0: none)", 0, 1 << 24},
        {"text-after", 0, DFA_ARG_FLAG, &text_after, NULL, "text after the image tokens (SD3); default before (FLUX)", 1, 0},
        {"block", 0, DFA_ARG_INT, &block, "N", "tile size in tokens (default 128, the CUDA kernel's tile)", 1, 65536},
        {"pattern", 'p', DFA_ARG_STRING, &pattern, "P", "full | arrow | cache | rs | random (default full)", 1, 0},
        {"window", 'w', DFA_ARG_INT, &window, "TILES", "band half-width in tiles (arrow, rs, random)", 0, 1 << 24},
        {"window-tokens", 0, DFA_ARG_INT, &window_tokens, "T", "band half-width in tokens, rounded up to tiles", 0, 1 << 26},
        {"v1-window", 0, DFA_ARG_FLAG, &v1_window, NULL, "V1's window: 1/8 of the visual tokens in total width", 1, 0},
        {"band", 0, DFA_ARG_STRING, &band_name, "KIND",
         "arrow (default: visual band + all text) | plain (V1's window over the whole sequence; windows in "
         "sequence tiles)", 1, 0},
        {"every", 0, DFA_ARG_INT, &every, "N", "cache / rs: compute (refresh) every N steps (default 2)", 1, 100000},
        {"full-steps", 0, DFA_ARG_INT, &full_steps, "K", "leading steps kept FULL (default 0)", 0, 100000},
        {"cfg", 0, DFA_ARG_FLAG, &cfg, NULL, "the model runs a CFG batch [uncond, cond]", 1, 0},
        {"asc", 0, DFA_ARG_FLAG, &asc, NULL, "ASC on every layer of the compressed steps (needs --cfg)", 1, 0},
        {"seed", 0, DFA_ARG_INT64, &seed, "S", "random pattern seed", 0, 9e18},
        {"family", 0, DFA_ARG_STRING, &family, "NAME", "model family recorded in the plan", 1, 0},
        {"config", 0, DFA_ARG_STRING, &config, "ID", "model config id recorded in the plan", 1, 0},
        {"image-only-layers", 0, DFA_ARG_STRING, &image_only, "L,L,..",
         "attention layers without text tokens (SD3.5 dual blocks' attn2: layer index of the block's attention + 1)",
         1, 0},
    };
    const int ns = (int)(sizeof specs / sizeof specs[0]);
    const char *pos[1];
    int npos;
    char msg[256];
    int r = dfa_args_parse(argc, argv, 2, specs, ns, pos, 1, &npos, msg, sizeof msg);
    if (r == 1) {
        dfa_args_usage("plan make", "-o PLAN --steps N --layers N --heads N --grid HxW [options]",
                       "Write a hand-made plan: uniform ARROW(w), layer caching every N steps (V2's \"attention "
                       "caching N=2\"), V1 WA-RS with a refresh period, or a random valid mix. A V1-style window of "
                       "1/8 of the visual tokens is --window-tokens n_vis/16 (half-width).",
                       specs, ns);
        return 0;
    }
    int gh = 0, gw = 0;
    if (r == 0 && (npos != 0 || !out || !steps || !layers || !heads || !grid || sscanf(grid, "%dx%d", &gh, &gw) != 2 ||
                   gh < 1 || gw < 1)) {
        snprintf(msg, sizeof msg, "need -o FILE, --steps, --layers, --heads and --grid HxW (see --help)");
        r = -1;
    }
    if (r < 0) {
        fprintf(stderr, "dfa plan make: %s\n", msg);
        return 2;
    }
    static const char *const pats[] = {"full", "arrow", "cache", "rs", "random"};
    int pat = -1;
    for (int i = 0; i < 5; i++)
        if (strcmp(pattern, pats[i]) == 0) pat = i;
    if (pat < 0) {
        fprintf(stderr, "dfa plan make: unknown pattern '%s' (full, arrow, cache, rs, random)\n", pattern);
        return 2;
    }
    const int band = dfa_band_parse(band_name);
    if (band < 0) {
        fprintf(stderr, "dfa plan make: unknown --band '%s' (arrow or plain)\n", band_name);
        return 2;
    }
    if (band == DFA_BAND_PLAIN && pat != 1 && pat != 3 && pat != 4) {
        fprintf(stderr, "dfa plan make: --band plain only changes windowed heads; pattern %s has none (use arrow, rs "
                        "or random)\n", pattern);
        return 2;
    }
    dfa_attn_layout L = {gh * gw, n_text, !text_after, block, band};
    if (window_tokens >= 0) window = dfa_mask_window_from_tokens(&L, window_tokens);
    if (v1_window) window = dfa_mask_v1_window(&L);
    if (window < 0) window = (pat == 1 || pat == 3 || pat == 4) ? -2 : 0;
    if (window == -2) {
        fprintf(stderr, "dfa plan make: pattern %s needs --window or --window-tokens\n", pattern);
        return 2;
    }
    dfa_plan p;
    dfa_error err;
    dfa_error_clear(&err);
    if (dfa_plan_init(&p, &L, steps, layers, heads, &err) != DFA_OK) {
        fprintf(stderr, "dfa plan make: %s\n", err.msg);
        return 1;
    }
    p.grid_h = gh;
    p.grid_w = gw;
    p.cfg = cfg;
    if (image_only && set_image_only(&p, image_only, &err) != DFA_OK) {
        fprintf(stderr, "dfa plan make: %s\n", err.msg);
        dfa_plan_free(&p);
        return 2;
    }
    p.cond_half = 1;
    snprintf(p.family, sizeof p.family, "%s", family);
    snprintf(p.config_id, sizeof p.config_id, "%s", config);
    dfa_plan_make_opts o = {(dfa_plan_pattern)pat, window, every, full_steps, asc, (unsigned long long)seed};
    int rc = 0;
    if (dfa_plan_make(&p, &o, &err) != DFA_OK || dfa_plan_save(out, &p, &err) != DFA_OK) {
        fprintf(stderr, "dfa plan make: %s\n", err.msg);
        rc = 1;
    } else {
        dfa_plan_cost c;
        dfa_plan_cost_compute(&p, 64, &c, NULL);
        printf("wrote %s: %d steps x %d layers x %d heads, %.2f%% of full attention FLOPs\n", out, steps, layers, heads,
               100.0 * c.fraction);
    }
    dfa_plan_free(&p);
    return rc;
}

int cmd_plan(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "show") == 0) return plan_show(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "make") == 0) return plan_make(argc, argv);
    int help = argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0);
    fprintf(help ? stdout : stderr,
            "usage: dfa plan show PLAN [--heatmap out.png] [--heads] [--dim D]\n"
            "       dfa plan make -o PLAN --steps N --layers N --heads N --grid HxW [--pattern P] ...\n"
            "`dfa plan show --help` and `dfa plan make --help` list the options.\n");
    return help ? 0 : 2;
}
