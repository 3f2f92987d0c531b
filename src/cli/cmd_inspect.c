/* cmd_inspect.c - `dfa inspect FILE|DIR`: every tensor of a safetensors checkpoint (name, dtype,
 * shape, bytes), totals per dtype, and the metadata. A broken file prints its error, exit 1. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "io/safetensors.h"

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static void print_bytes(uint64_t b) {
    if (b >= (1ULL << 30)) printf("%" PRIu64 " bytes (%.2f GiB)", b, (double)b / (double)(1ULL << 30));
    else if (b >= (1ULL << 20)) printf("%" PRIu64 " bytes (%.2f MiB)", b, (double)b / (double)(1ULL << 20));
    else printf("%" PRIu64 " bytes", b);
}

int cmd_inspect(int argc, char **argv) {
    const char *filter = NULL;
    int no_tensors = 0;
    const dfa_arg_spec specs[] = {
        {"filter", 'f', DFA_ARG_STRING, &filter, "TEXT", "list only tensors whose name contains TEXT", 0, -1},
        {"summary", 's', DFA_ARG_FLAG, &no_tensors, NULL, "print totals and metadata only, no tensor list", 0, -1},
    };
    const int n_specs = (int)(sizeof specs / sizeof specs[0]);
    const char *usage = "[options] FILE.safetensors | INDEX.safetensors.index.json | DIR";
    const char *desc = "List every tensor of a safetensors checkpoint (name, dtype, shape, bytes), totals and\n"
                       "metadata. A folder is read through diffusion_pytorch_model.safetensors[.index.json] or\n"
                       "model.safetensors[.index.json]. The header is validated completely; a broken file\n"
                       "prints what is wrong and exits 1.";
    const char *pos[2];
    int n_pos = 0;
    char aerr[256];
    int r = dfa_args_parse(argc, argv, 1, specs, n_specs, pos, 2, &n_pos, aerr, sizeof aerr);
    if (r == 1) {
        dfa_args_usage("inspect", usage, desc, specs, n_specs);
        return 0;
    }
    if (r < 0) {
        fprintf(stderr, "dfa inspect: %s\n", aerr);
        return 2;
    }
    if (n_pos != 1) {
        fprintf(stderr, "dfa inspect: expected one checkpoint path, got %d (see dfa inspect --help)\n", n_pos);
        return 2;
    }

    dfa_safetensors *st = NULL;
    dfa_error err;
    dfa_error_clear(&err);
    if (dfa_st_open(&st, pos[0], &err) != DFA_OK) {
        fprintf(stderr, "dfa inspect: %s\n", err.msg);
        return 1;
    }
    int n = dfa_st_count(st), nf = dfa_st_file_count(st);
    int name_w = 4;
    for (int i = 0; i < n; i++) {
        int l = (int)strlen(dfa_st_at(st, i)->name);
        if (l > name_w) name_w = l;
    }
    if (name_w > 72) name_w = 72;

    uint64_t total = 0, per_bytes[DFA_DTYPE_COUNT] = {0}, per_numel[DFA_DTYPE_COUNT] = {0};
    int per_count[DFA_DTYPE_COUNT] = {0}, shown = 0;
    if (!no_tensors && n > 0) {
        printf("%-*s  %-7s %-24s %14s%s\n", name_w, "name", "dtype", "shape", "bytes", nf > 1 ? "  file" : "");
    }
    for (int i = 0; i < n; i++) {
        const dfa_st_tensor *t = dfa_st_at(st, i);
        uint64_t bytes = t->end - t->begin;
        total += bytes;
        per_bytes[t->dtype] += bytes;
        per_numel[t->dtype] += bytes / dfa_dtype_size(t->dtype);
        per_count[t->dtype]++;
        if (no_tensors || (filter && !strstr(t->name, filter))) continue;
        char sb[160];
        printf("%-*s  %-7s %-24s %14" PRIu64, name_w, t->name, dfa_dtype_name(t->dtype),
               dfa_shape_str(t->ndim, t->shape, sb, sizeof sb), bytes);
        if (nf > 1) printf("  %s", base_name(dfa_st_file_path(st, t->file)));
        printf("\n");
        shown++;
    }
    if (filter && !no_tensors) printf("(%d of %d tensors match '%s')\n", shown, n, filter);

    printf("\n%s: %d tensor%s in %d file%s, ", dfa_st_path(st), n, n == 1 ? "" : "s", nf, nf == 1 ? "" : "s");
    print_bytes(total);
    printf("\n");
    for (int d = 0; d < DFA_DTYPE_COUNT; d++)
        if (per_count[d])
            printf("  %-7s %6d tensor%s %16" PRIu64 " values %16" PRIu64 " bytes\n", dfa_dtype_name((dfa_dtype)d),
                   per_count[d], per_count[d] == 1 ? " " : "s", per_numel[d], per_bytes[d]);
    int nm = dfa_st_meta_count(st);
    printf("metadata (%d entr%s)%s\n", nm, nm == 1 ? "y" : "ies", nm ? ":" : "");
    for (int i = 0; i < nm; i++) {
        const char *k, *v;
        dfa_st_meta_at(st, i, &k, &v);
        size_t vl = strlen(v);
        if (vl > 200) printf("  %s = %.200s... (%zu characters)\n", k, v, vl);
        else printf("  %s = %s\n", k, v);
    }
    dfa_st_close(st);
    return 0;
}
