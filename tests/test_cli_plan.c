/* test_cli_plan.c - `dfa plan make`, `dfa plan show` (summary + heatmap PNG) and
 * `dfa bench attn --cpu` through their command functions: exit codes, files written, the
 * heatmap's colours; --image-only-layers (SD3.5 attn2 layer layouts) and how show lists them. */
#include "test.h"

#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>

#include "tmpdir.h"

#include "cli/commands.h"
#include "io/png.h"
#include "plan/plan.h"

static test_tmpdir tmp;

static int run(int argc, const char **argv) {
    fflush(stdout);
    return argc >= 1 && strcmp(argv[0], "plan") == 0 ? cmd_plan(argc, (char **)argv) : cmd_bench(argc, (char **)argv);
}

/* `dfa plan show PLAN` into buf (stdout redirected to the file `out` around the call) */
static int show_into(const char *plan, const char *out, char *buf, size_t cap) {
    fflush(stdout);
    int keep = dup(1), fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644), rc = -1;
    const char *show[] = {"plan", "show", plan};
    if (keep >= 0 && fd >= 0 && dup2(fd, 1) >= 0) {
        rc = run(3, show);
        fflush(stdout);
        dup2(keep, 1);
    }
    if (fd >= 0) close(fd);
    if (keep >= 0) close(keep);
    buf[0] = 0;
    FILE *f = fopen(out, "r");
    if (f) {
        size_t n = fread(buf, 1, cap - 1, f);
        buf[n] = 0;
        fclose(f);
    }
    return rc;
}

static void test_make_and_show(void) {
    char plan[300], png[300], pngh[300];
    tmpdir_file(&tmp, "p.json", plan, sizeof plan);
    tmpdir_file(&tmp, "p.png", png, sizeof png);
    tmpdir_file(&tmp, "ph.png", pngh, sizeof pngh);
    const char *mk[] = {"plan", "make", "-o", plan, "--steps", "4", "--layers", "3", "--heads", "2", "--grid", "6x8",
                        "--text", "5", "--block", "8", "--pattern", "cache", "--every", "2", "--cfg", "--asc",
                        "--full-steps", "1"};
    CHECK(run((int)(sizeof mk / sizeof mk[0]), mk) == 0);
    dfa_plan p;
    dfa_error err;
    CHECKF(dfa_plan_load(plan, &p, &err) == DFA_OK, "%s", err.msg);
    /* steps: 0 F, 1 F (+ASC), 2 C (+ASC), 3 F (+ASC) */
    CHECK(p.method[dfa_plan_index(&p, 2, 1, 1)] == DFA_ATTN_CACHE && p.method[dfa_plan_index(&p, 3, 0, 0)] == DFA_ATTN_FULL);
    CHECK(p.asc[0] == 0 && p.asc[1 * 3 + 2] == 1);
    dfa_plan_free(&p);
    const char *show[] = {"plan", "show", plan, "--heatmap", png};
    CHECK(run(5, show) == 0);
    int w, h;
    uint8_t *px = NULL;
    CHECKF(dfa_png_read(png, 3, &w, &h, &px, &err) == DFA_OK, "%s", err.msg);
    CHECKF(w == 3 * 16 + 1 && h == 4 * 16 + 1, "heatmap %d x %d", w, h);
    if (px) {
        /* step 2, layer 0: CACHE (yellow) in the upper-left of the cell, ASC (red) in its lower-right corner */
        const uint8_t *c = px + ((size_t)(2 * 16 + 3) * w + 3) * 3;
        CHECKF(c[0] == 251 && c[1] == 188 && c[2] == 5, "cache cell colour %d %d %d", c[0], c[1], c[2]);
        c = px + ((size_t)(2 * 16 + 15) * w + 15) * 3;
        CHECKF(c[0] == 219 && c[1] == 68 && c[2] == 55, "asc corner colour %d %d %d", c[0], c[1], c[2]);
        c = px + ((size_t)(0 * 16 + 3) * w + 3) * 3; /* step 0: FULL grey */
        CHECK(c[0] == 70 && c[1] == 70 && c[2] == 70);
        free(px);
    }
    const char *showh[] = {"plan", "show", plan, "--heatmap", pngh, "--heads"};
    CHECK(run(6, showh) == 0);
    CHECK(dfa_png_read(pngh, 3, &w, &h, &px, &err) == DFA_OK);
    CHECKF(w == 3 * (2 * 6 + 1) + 1 && h == 4 * 12 + 1, "per-head heatmap %d x %d", w, h);
    free(px);
}

/* --image-only-layers: SD3.5's attn2 layers get the main layout without text; show lists them */
static void test_make_image_only(void) {
    char plan[300], out[300];
    tmpdir_file(&tmp, "io.json", plan, sizeof plan);
    tmpdir_file(&tmp, "io_show.txt", out, sizeof out);
    const char *mk[] = {"plan", "make", "-o", plan, "--steps", "3", "--layers", "4", "--heads", "2", "--grid", "6x8",
                        "--text", "5", "--text-after", "--block", "8", "--pattern", "random", "--window", "5",
                        "--image-only-layers", "1,3", "--cfg"};
    CHECK(run((int)(sizeof mk / sizeof mk[0]), mk) == 0);
    dfa_plan p;
    dfa_error err = {0};
    const dfa_status st = dfa_plan_load(plan, &p, &err);
    CHECKF(st == DFA_OK, "%s", err.msg);
    if (st == DFA_OK) {
        CHECK(dfa_plan_n_layer_layouts(&p) == 2);
        for (int l = 0; l < 4; l++) {
            const dfa_attn_layout *L = dfa_plan_layer_layout(&p, l);
            CHECKF(L->n_text == (l % 2 ? 0 : 5) && L->n_vis == 48 && L->block == 8, "layer %d", l);
        }
        dfa_plan_free(&p);
    }
    char buf[4096];
    CHECK(show_into(plan, out, buf, sizeof buf) == 0);
    CHECKF(strstr(buf, "own layouts  2 layer(s): 1 (48+0, tiles of 8) 3 (48+0, tiles of 8)") != NULL, "%s", buf);
    const char *bad[] = {"plan", "make", "-o", plan, "--steps", "3", "--layers", "4", "--heads", "2", "--grid", "6x8",
                         "--text", "5", "--image-only-layers", "1,4"};
    CHECK(run((int)(sizeof bad / sizeof bad[0]), bad) == 2); /* layer 4 of 4 */
}

/* --band plain: V1's window over the whole sequence; windows in sequence tiles; show prints it */
static void test_make_plain(void) {
    char plan[300], out[300], buf[4096];
    tmpdir_file(&tmp, "plain.json", plan, sizeof plan);
    tmpdir_file(&tmp, "plain_show.txt", out, sizeof out);
    /* 48 visual tokens in 6 tiles of 8 + 5 text tokens in 1: 7 tiles, window 6 = full (arrow: 5) */
    const char *mk[] = {"plan", "make", "-o", plan, "--steps", "3", "--layers", "2", "--heads", "2", "--grid", "6x8",
                        "--text", "5", "--block", "8", "--pattern", "rs", "--window", "6", "--band", "plain"};
    CHECK(run((int)(sizeof mk / sizeof mk[0]), mk) == 0);
    dfa_plan p;
    dfa_error err = {0};
    const dfa_status st = dfa_plan_load(plan, &p, &err);
    CHECKF(st == DFA_OK, "%s", err.msg);
    if (st == DFA_OK) {
        CHECK(p.layout.band == DFA_BAND_PLAIN && p.window[dfa_plan_index(&p, 1, 0, 0)] == 6);
        dfa_plan_free(&p);
    }
    CHECK(show_into(plan, out, buf, sizeof buf) == 0);
    CHECKF(strstr(buf, "band         plain (V1's window over the whole sequence: windows in tiles of all 7 tiles)"),
           "%s", buf);
    const char *arrow[] = {"plan", "make", "-o", plan, "--steps", "3", "--layers", "2", "--heads", "2", "--grid", "6x8",
                           "--text", "5", "--block", "8", "--pattern", "rs", "--window", "6"};
    CHECK(run((int)(sizeof arrow / sizeof arrow[0]), arrow) == 1); /* beyond the 6 visual tiles */
    mk[19] = "5";
    CHECK(run((int)(sizeof mk / sizeof mk[0]), mk) == 0);
    CHECK(show_into(plan, out, buf, sizeof buf) == 0);
    CHECK(strstr(buf, "band         plain") != NULL);
    const char *ar[] = {"plan", "make", "-o", plan, "--steps", "3", "--layers", "2", "--heads", "2", "--grid", "6x8",
                        "--text", "5", "--block", "8", "--pattern", "rs", "--window", "5"};
    CHECK(run((int)(sizeof ar / sizeof ar[0]), ar) == 0);
    CHECK(show_into(plan, out, buf, sizeof buf) == 0);
    CHECK(strstr(buf, "band         arrow") != NULL);
    mk[19] = "7"; /* beyond the 7 tiles */
    CHECK(run((int)(sizeof mk / sizeof mk[0]), mk) == 1);
    mk[19] = "2";
    mk[21] = "diagonal"; /* unknown kind */
    CHECK(run((int)(sizeof mk / sizeof mk[0]), mk) == 2);
    mk[21] = "plain";
    mk[17] = "cache"; /* no windowed heads: refused */
    CHECK(run((int)(sizeof mk / sizeof mk[0]), mk) == 2);
}

static void test_bad_usage(void) {
    char bad[300];
    const char *text = "{\"format\": \"dfa-plan\", \"version\": 7}";
    tmpdir_write(&tmp, "bad.json", text, strlen(text), bad, sizeof bad);
    const char *a1[] = {"plan", "show", bad};
    CHECK(run(3, a1) == 1);
    const char *a2[] = {"plan", "show"};
    CHECK(run(2, a2) == 2);
    const char *a3[] = {"plan", "frobnicate"};
    CHECK(run(2, a3) == 2);
    const char *a4[] = {"plan", "make", "-o", "/tmp/x.json", "--steps", "2", "--layers", "1", "--heads", "1",
                        "--grid", "4x4", "--pattern", "arrow"};
    CHECK(run(14, a4) == 2); /* arrow needs a window */
    const char *a5[] = {"plan", "make", "-o", "/tmp/x.json", "--steps", "2", "--layers", "1", "--heads", "1",
                        "--grid", "4x4", "--block", "4", "--pattern", "arrow", "--window", "9"};
    CHECK(run(18, a5) == 1); /* window beyond the 4 visual tiles */
    char v1[300];
    tmpdir_file(&tmp, "v1.json", v1, sizeof v1);
    const char *a6[] = {"plan", "make", "-o", v1, "--steps", "3", "--layers", "1", "--heads", "1", "--grid", "32x32",
                        "--block", "16", "--pattern", "rs", "--v1-window"};
    CHECK(run(17, a6) == 0);
    dfa_plan p;
    dfa_error err;
    CHECK(dfa_plan_load(v1, &p, &err) == DFA_OK);
    CHECK(p.method[1] == DFA_ATTN_ARROW_RS && p.window[1] == 4); /* 1024 / 16 = 64 tokens = 4 tiles of 16 */
    CHECK(p.store_res[0] == 1 && p.res_window[0] == 4);
    dfa_plan_free(&p);
    const char *b1[] = {"bench", "attn"};
    CHECK(run(2, b1) == 2); /* --cpu required */
}

static void test_bench_small(void) {
    const char *b[] = {"bench", "attn", "--cpu", "--tokens", "96", "--text", "9", "--heads", "2", "--dim", "64",
                       "--block", "16", "--reps", "1"};
    CHECK(run(15, b) == 0);
}

int main(void) {
    if (tmpdir_make(&tmp, "cliplan")) return 1;
    RUN(test_make_and_show);
    RUN(test_make_image_only);
    RUN(test_make_plain);
    RUN(test_bad_usage);
    RUN(test_bench_small);
    tmpdir_remove(&tmp);
    return test_summary();
}
