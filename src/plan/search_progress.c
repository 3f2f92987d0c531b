/* search_progress.c - progress bar and ETA for the plan searches. */
#include "plan/search_progress.h"
#include "core/log.h"

#include <time.h>

static void fmt_time(char *buf, size_t n, double s) {
    if (!(s >= 0) || s > 1e8) {
        snprintf(buf, n, "--");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ldh%02ldm%02lds", t / 3600, t / 60 % 60, t % 60);
    else if (t >= 60) snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, n, "%lds", t);
}

void dfa_search_progress_format(char *buf, size_t n, int64_t done, int64_t total, int step, int n_steps, int layer,
                                int n_layers, double elapsed) {
    enum { W = 20 };
    char bar[W + 1], el[32], eta[32];
    int fill = total > 0 ? (int)(W * done / total) : 0;
    for (int i = 0; i < W; i++) bar[i] = i < fill ? '#' : '-';
    bar[W] = 0;
    fmt_time(el, sizeof el, elapsed);
    if (done > 0 && total >= done) fmt_time(eta, sizeof eta, elapsed * (double)(total - done) / (double)done);
    else snprintf(eta, sizeof eta, "--");
    snprintf(buf, n, "[%s] %3d%%  step %d/%d  layer %d/%d  %s elapsed, ETA %s", bar,
             total > 0 ? (int)(100 * done / total) : 0, step + 1, n_steps, layer + 1, n_layers, el, eta);
}

void dfa_search_progress_init(dfa_search_progress *p, FILE *out, int n_steps, int n_layers) {
    p->out = out, p->n_steps = n_steps, p->n_layers = n_layers, p->done = 0;
    p->t0 = dfa_now_s();
    p->last_draw = -1;
}

void dfa_search_progress_on_layer(void *user, int step, int layer, const dfa_mckp_problem *prob, const int *choice) {
    dfa_search_progress *p = user;
    (void)prob, (void)choice;
    p->done++;
    if (!p->out) return;
    double t = dfa_now_s();
    int64_t total = (int64_t)p->n_steps * p->n_layers;
    if (p->done < total && p->last_draw >= 0 && t - p->last_draw < 0.1) return;
    p->last_draw = t;
    char line[192];
    dfa_search_progress_format(line, sizeof line, p->done, total, step, p->n_steps, layer, p->n_layers, t - p->t0);
    fprintf(p->out, "\r%s", line);
    fflush(p->out);
}

void dfa_search_progress_finish(dfa_search_progress *p) {
    if (!p->out) return;
    char el[32];
    fmt_time(el, sizeof el, dfa_now_s() - p->t0);
    fprintf(p->out, "\rsearch done: %lld layer decisions in %s%40s\n", (long long)p->done, el, "");
    fflush(p->out);
}
