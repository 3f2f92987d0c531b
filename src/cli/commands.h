/* commands.h - every subcommand's entry point; the table in main.c dispatches to them.
 * Each returns the process exit code: 0 ok, 1 runtime failure, 2 bad usage. */
#ifndef DFA_CLI_COMMANDS_H
#define DFA_CLI_COMMANDS_H

typedef int (*dfa_cmd_fn)(int argc, char **argv); /* argv[0] is the command name */

typedef struct dfa_command {
    const char *name;
    const char *summary;
    dfa_cmd_fn run;
} dfa_command;

int cmd_version(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_plan(int argc, char **argv);  /* cmd_plan.c: plan show / plan make */
int cmd_bench(int argc, char **argv); /* cmd_bench.c: bench attn --cpu */
int cmd_generate(int argc, char **argv); /* cmd_generate.c: FLUX / SD3 generation */
int cmd_encode(int argc, char **argv);
int cmd_calibrate(int argc, char **argv); /* cmd_calibrate.c: plan search (V1 / V2) */
int cmd_eval(int argc, char **argv);      /* cmd_eval.c: fidelity harness (plans vs uncompressed) */

#endif
