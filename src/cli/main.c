/* main.c - `dfa <command> [options]`: one table, one dispatch. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "dfa.h"

static const dfa_command commands[] = {
    {"version", "print the version and whether CUDA is compiled in", cmd_version},
    {"inspect", "list the tensors (name, dtype, shape, bytes) and metadata of a safetensors checkpoint", cmd_inspect},
    {"plan", "show a compression plan (FLOPs, methods, heatmap) or make one by hand", cmd_plan},
    {"bench", "time the attention methods (bench attn --cpu)", cmd_bench},
    {"generate", "generate an image or latents (FLUX.1, SD3, PixArt from a prompt; DiT from a class)", cmd_generate},
    {"calibrate", "search a compression plan (V1 greedy / V2 head-wise) over calibration prompts", cmd_calibrate},
    {"eval", "fidelity harness: SSIM / PSNR / latent error and attention FLOPs of plans vs uncompressed", cmd_eval},
    {"encode", "tokenize and encode a prompt with a model's text encoders into prompt embeddings", cmd_encode},
};
static const int n_commands = (int)(sizeof commands / sizeof commands[0]);

static void print_help(void) {
    printf("dfa %s - DiTFastAttn / DiTFastAttnV2 attention compression for diffusion transformers\n\n",
           dfa_version());
    printf("usage: dfa <command> [options]\n\ncommands:\n");
    for (int i = 0; i < n_commands; i++) printf("  %-12s %s\n", commands[i].name, commands[i].summary);
    printf("\n`dfa <command> --help` describes a command's options.\n");
}

int cmd_version(int argc, char **argv) {
    (void)argv;
    if (argc > 1) {
        fprintf(stderr, "dfa version: takes no arguments\n");
        return 2;
    }
    printf("dfa %s (CUDA %s)\n", dfa_version(), dfa_has_cuda() ? "compiled in" : "not compiled in");
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        print_help();
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) return cmd_version(1, argv + 1);
    for (int i = 0; i < n_commands; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "dfa: unknown command '%s' (see dfa --help)\n", argv[1]);
    return 2;
}
