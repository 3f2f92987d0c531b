/* test_cost.c - the per-head latency model: exact tile counts against a brute-force count over
 * the tile predicate of mask.h, the method ordering and FLOP table, the table file format. */
#include "test.h"

#include <unistd.h>

#include "plan/cost.h"

static void test_tiles_brute(void) {
    unsigned long long s = 99;
    int bad = 0;
    for (int t = 0; t < 300; t++) {
        dfa_attn_layout l = {1 + (int)(test_rng_next(&s) % 200), (int)(test_rng_next(&s) % 40),
                             (int)(test_rng_next(&s) % 2), 1 + (int)(test_rng_next(&s) % 32), DFA_BAND_ARROW};
        dfa_attn_tiles ti;
        dfa_layout_tiles(&l, &ti);
        int w = (int)(test_rng_next(&s) % (unsigned)(ti.n_vis_tiles + 3)) - 1; /* -1 .. beyond full */
        int64_t n = 0;
        for (int a = 0; a < ti.n_tiles; a++)
            for (int b = 0; b < ti.n_tiles; b++) n += dfa_mask_tile_keep(&l, w, a, b);
        if (n != dfa_cost_tiles(&l, w) && bad++ < 5)
            fprintf(stderr, "n_vis=%d n_text=%d first=%d block=%d w=%d: %lld vs %lld\n", l.n_vis, l.n_text,
                    l.text_first, l.block, w, (long long)n, (long long)dfa_cost_tiles(&l, w));
    }
    CHECK(bad == 0);
}

static void test_method_costs(void) {
    dfa_cost_table t;
    dfa_cost_table_default(&t);
    dfa_attn_layout l = {4096, 512, 1, 128, DFA_BAND_ARROW}; /* FLUX 1K: 32 visual tiles, 4 text tiles */
    double full = dfa_cost_head_ns(&t, &l, 128, DFA_ATTN_FULL, 0);
    double a2 = dfa_cost_head_ns(&t, &l, 128, DFA_ATTN_ARROW, 2);
    double a8 = dfa_cost_head_ns(&t, &l, 128, DFA_ATTN_ARROW, 8);
    double rs2 = dfa_cost_head_ns(&t, &l, 128, DFA_ATTN_ARROW_RS, 2);
    double cache = dfa_cost_head_ns(&t, &l, 128, DFA_ATTN_CACHE, 0);
    CHECK(cache > 0 && cache < a2 && a2 < rs2 && rs2 < a8 && a8 < full);
    CHECK_NEAR(full, 50 + 36.0 * 36 * 21, 1e-9);
    CHECK_NEAR(a2, 50 + (4.0 * 36 + 32 * 4 + (32 * 5 - 6)) * 21, 1e-9);
    CHECK_NEAR(dfa_cost_head_ns(&t, &l, 128, DFA_ATTN_ARROW, 31), full, 1e-9); /* band covers all */
    CHECK(dfa_cost_head_ns(&t, &l, 128, DFA_ATTN_METHOD_COUNT, 0) < 0);
    /* head dim without an entry: nearest (128) scaled linearly */
    CHECK_NEAR(dfa_cost_head_ns(&t, &l, 256, DFA_ATTN_CACHE, 0), 2 * cache, 1e-9);
    /* FLOP table: whole tiles, 4 * block^2 * D each; equals 4 N^2 D when block divides N */
    dfa_cost_table_flops(&t, 64);
    dfa_attn_layout m = {1024, 256, 0, 64, DFA_BAND_ARROW};
    CHECK_NEAR(dfa_cost_head_ns(&t, &m, 64, DFA_ATTN_FULL, 0), 4.0 * 1280 * 1280 * 64, 1e-3);
    CHECK_NEAR(dfa_cost_head_ns(&t, &m, 64, DFA_ATTN_ARROW, 1), 4.0 * (double)dfa_mask_entries(&m, 1) * 64, 1e-3);
}

static void test_table_file(void) {
    char path[] = "/tmp/dfa_cost_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    dfa_cost_table t, u;
    dfa_cost_table_default(&t);
    t.e[1].tile_ns = 1.0 / 3; /* needs all 17 digits to round-trip */
    dfa_error err;
    CHECKF(dfa_cost_table_write(path, &t, &err) == DFA_OK, "%s", err.msg);
    memset(&u, 0xff, sizeof u);
    CHECKF(dfa_cost_table_read(path, &u, &err) == DFA_OK, "%s", err.msg);
    CHECK(u.n == 2 && !strcmp(u.device, t.device));
    CHECK(!memcmp(u.e, t.e, sizeof(dfa_cost_entry) * 2));
    remove(path);
    CHECK(dfa_cost_table_read(path, &u, &err) == DFA_ERR_IO && strstr(err.msg, path));

    const char *ok = "# c\n dfa-cost-table 1 \ndevice H100 SXM\n\nentry head_dim=64 block=64 tile_ns=3 head_ns=0 "
                     "copy_ns_per_token=0 add_ns_per_token=1e-1 # trailing\n";
    CHECKF(dfa_cost_table_parse(ok, "t", &u, &err) == DFA_OK, "%s", err.msg);
    CHECK(u.n == 1 && u.e[0].block == 64 && u.e[0].add_ns_per_token == 0.1 && !strcmp(u.device, "H100 SXM"));
    struct {
        const char *text, *msg;
    } bad[] = {
        {"", "empty"},
        {"dfa-cost-table 2\n", "version 2"},
        {"entry head_dim=64\n", "t:1: expected 'dfa-cost-table 1'"},
        {"dfa-cost-table 1\n", "no entry"},
        {"dfa-cost-table 1\nentry head_dim=64 block=64 tile_ns=3 head_ns=0 copy_ns_per_token=0\n", "t:2: entry lacks add_ns_per_token"},
        {"dfa-cost-table 1\nentry head_dim=64 block=64 tile_ns=x head_ns=0 copy_ns_per_token=0 add_ns_per_token=0\n", "tile_ns needs"},
        {"dfa-cost-table 1\nentry head_dim=64 block=64 tile_ns=-1 head_ns=0 copy_ns_per_token=0 add_ns_per_token=0\n", "tile_ns needs"},
        {"dfa-cost-table 1\nentry head_dim=6.5 block=64 tile_ns=1 head_ns=0 copy_ns_per_token=0 add_ns_per_token=0\n", "integers"},
        {"dfa-cost-table 1\nentry head_dim=64 speed=3\n", "unknown key 'speed'"},
        {"dfa-cost-table 1\nbogus 3\n", "t:2: unknown record"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dfa_error_clear(&err);
        CHECKF(dfa_cost_table_parse(bad[i].text, "t", &u, &err) == DFA_ERR_FORMAT, "case %zu", i);
        CHECKF(strstr(err.msg, bad[i].msg) != NULL, "case %zu: %s", i, err.msg);
    }
}

int main(void) {
    RUN(test_tiles_brute);
    RUN(test_method_costs);
    RUN(test_table_file);
    return test_summary();
}
