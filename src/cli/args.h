/* args.h - one flag parser for every subcommand, driven by a table of specs.
 * Unknown or malformed flags give a one-line error; the caller exits 2. */
#ifndef DFA_CLI_ARGS_H
#define DFA_CLI_ARGS_H

#include <stddef.h>

typedef enum dfa_arg_type {
    DFA_ARG_FLAG,   /* bool, no value: int* set to 1 */
    DFA_ARG_INT,    /* int* */
    DFA_ARG_INT64,  /* long long* */
    DFA_ARG_FLOAT,  /* double* */
    DFA_ARG_STRING, /* const char** */
    DFA_ARG_LIST    /* dfa_arg_list*: the flag takes every following non-flag word */
} dfa_arg_type;

#define DFA_ARG_LIST_MAX 64
typedef struct dfa_arg_list {
    int n;
    const char *items[DFA_ARG_LIST_MAX];
} dfa_arg_list;

typedef struct dfa_arg_spec {
    const char *long_name; /* "steps" for --steps */
    char short_name;       /* 'm' for -m, 0 for none */
    dfa_arg_type type;
    void *dest;
    const char *metavar;   /* "N", "FILE", ... (NULL for flags) */
    const char *help;
    double min, max;       /* numeric bounds; ignored when min > max */
} dfa_arg_spec;

/* Parse argv[first..argc). Positional words go to pos[] (at most max_pos). Returns 0 on
 * success, 1 if --help/-h was given (usage printed), -1 on error (message in err).
 * Numbers must parse whole and lie in [min, max]. */
int dfa_args_parse(int argc, char **argv, int first, const dfa_arg_spec *specs, int n_specs,
                   const char **pos, int max_pos, int *n_pos, char *err, size_t err_len);

/* Print "usage: dfa CMD USAGE", the description and one line per flag. */
void dfa_args_usage(const char *cmd, const char *usage, const char *desc, const dfa_arg_spec *specs,
                    int n_specs);

#endif
