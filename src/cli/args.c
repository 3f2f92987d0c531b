#include "cli/args.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const dfa_arg_spec *find_long(const dfa_arg_spec *s, int n, const char *name, size_t len) {
    for (int i = 0; i < n; i++)
        if (strlen(s[i].long_name) == len && strncmp(s[i].long_name, name, len) == 0) return &s[i];
    return NULL;
}

static const dfa_arg_spec *find_short(const dfa_arg_spec *s, int n, char c) {
    for (int i = 0; i < n; i++)
        if (s[i].short_name && s[i].short_name == c) return &s[i];
    return NULL;
}

static int in_bounds(const dfa_arg_spec *sp, double v) {
    return sp->min > sp->max || (v >= sp->min && v <= sp->max);
}

static int set_value(const dfa_arg_spec *sp, const char *flag, const char *val, char *err, size_t len) {
    char *end = NULL;
    errno = 0;
    switch (sp->type) {
    case DFA_ARG_INT:
    case DFA_ARG_INT64: {
        long long v = strtoll(val, &end, 10);
        if (errno || end == val || *end) {
            snprintf(err, len, "%s expects an integer, got '%s'", flag, val);
            return -1;
        }
        if (!in_bounds(sp, (double)v) || (sp->type == DFA_ARG_INT && (v > 2147483647LL || v < -2147483647LL))) {
            snprintf(err, len, "%s %s is out of range [%g, %g]", flag, val, sp->min, sp->max);
            return -1;
        }
        if (sp->type == DFA_ARG_INT)
            *(int *)sp->dest = (int)v;
        else
            *(long long *)sp->dest = v;
        return 0;
    }
    case DFA_ARG_FLOAT: {
        double v = strtod(val, &end);
        if (errno || end == val || *end || !isfinite(v)) {
            snprintf(err, len, "%s expects a number, got '%s'", flag, val);
            return -1;
        }
        if (!in_bounds(sp, v)) {
            snprintf(err, len, "%s %s is out of range [%g, %g]", flag, val, sp->min, sp->max);
            return -1;
        }
        *(double *)sp->dest = v;
        return 0;
    }
    case DFA_ARG_STRING:
        *(const char **)sp->dest = val;
        return 0;
    default:
        snprintf(err, len, "%s: internal flag type error", flag);
        return -1;
    }
}

int dfa_args_parse(int argc, char **argv, int first, const dfa_arg_spec *specs, int n_specs,
                   const char **pos, int max_pos, int *n_pos, char *err, size_t err_len) {
    *n_pos = 0;
    int only_pos = 0;
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (!only_pos && strcmp(a, "--") == 0) {
            only_pos = 1;
            continue;
        }
        if (!only_pos && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)) return 1;
        int is_flag = !only_pos && a[0] == '-' && a[1] != '\0' &&
                      !(a[1] >= '0' && a[1] <= '9') && !(a[1] == '.' && a[2] >= '0' && a[2] <= '9');
        if (!is_flag) {
            if (*n_pos >= max_pos) {
                snprintf(err, err_len, "unexpected argument '%s'", a);
                return -1;
            }
            pos[(*n_pos)++] = a;
            continue;
        }
        const dfa_arg_spec *sp = NULL;
        const char *inline_val = NULL;
        if (a[1] == '-') {
            const char *name = a + 2;
            const char *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            sp = find_long(specs, n_specs, name, len);
            if (eq) inline_val = eq + 1;
        } else if (a[2] == '\0') {
            sp = find_short(specs, n_specs, a[1]);
        }
        if (!sp) {
            snprintf(err, err_len, "unknown flag '%s' (see --help)", a);
            return -1;
        }
        if (sp->type == DFA_ARG_FLAG) {
            if (inline_val) {
                snprintf(err, err_len, "flag '%s' takes no value", a);
                return -1;
            }
            *(int *)sp->dest = 1;
            continue;
        }
        if (sp->type == DFA_ARG_LIST) {
            dfa_arg_list *l = sp->dest;
            l->n = 0;
            if (inline_val) l->items[l->n++] = inline_val;
            while (i + 1 < argc && argv[i + 1][0] != '-') {
                if (l->n >= DFA_ARG_LIST_MAX) {
                    snprintf(err, err_len, "%s takes at most %d values", a, DFA_ARG_LIST_MAX);
                    return -1;
                }
                l->items[l->n++] = argv[++i];
            }
            if (l->n == 0) {
                snprintf(err, err_len, "%s needs at least one value", a);
                return -1;
            }
            continue;
        }
        const char *val = inline_val;
        if (!val) {
            if (i + 1 >= argc) {
                snprintf(err, err_len, "%s needs a value (%s)", a, sp->metavar ? sp->metavar : "VALUE");
                return -1;
            }
            val = argv[++i];
        }
        if (set_value(sp, a, val, err, err_len)) return -1;
    }
    return 0;
}

void dfa_args_usage(const char *cmd, const char *usage, const char *desc, const dfa_arg_spec *specs,
                    int n_specs) {
    printf("usage: dfa %s %s\n", cmd, usage ? usage : "[options]");
    if (desc) printf("\n%s\n", desc);
    if (n_specs) printf("\noptions:\n");
    for (int i = 0; i < n_specs; i++) {
        const dfa_arg_spec *s = &specs[i];
        char left[64];
        if (s->short_name)
            snprintf(left, sizeof left, "-%c, --%s%s%s", s->short_name, s->long_name, s->metavar ? " " : "",
                     s->metavar ? s->metavar : "");
        else
            snprintf(left, sizeof left, "    --%s%s%s", s->long_name, s->metavar ? " " : "",
                     s->metavar ? s->metavar : "");
        printf("  %-28s %s\n", left, s->help ? s->help : "");
    }
    printf("  %-28s %s\n", "-h, --help", "show this help");
}
