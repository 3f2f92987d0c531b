/* attn_sched.c - schedule model of the persistent attention kernels and tail balancing of their
 * work lists (see attn_sched.h). */
#include "attn/cuda/attn_sched.h"

#include <stdlib.h>
#include <string.h>

/* ---- the cost model ---- */

/* Fitted by `bench_attn_sched --fit` on the session 4 H100 run (variants 2 and 5, dense and arrow
 * 25/50/75 % at 4096+512 and 16384+512, B=1, H=24; bench/RESULTS.md "Version 10" has the fit
 * table). Only ratios between items matter for the balancing; the absolute values give the
 * bench's predicted milliseconds. */
#define FIT2_STEP_US 1.560  /* 2 consumers, D=128: a 128-key step of a 128-row item (4k fit) */
#define FIT2_ITEM_US 3.59   /* 2 consumers, D=128: per item (2.30 steps) */
#define FIT2_LAUNCH_US 6.35 /* 2 consumers, D=128: per launch */
#define FIT3_STEP_US 1.764  /* 3 consumers, D=64: a step of a 192-row item */
#define FIT3_ITEM_US 2.12   /* 3 consumers, D=64: per item (1.20 steps) */
#define FIT3_LAUNCH_US 6.17 /* 3 consumers, D=64: per launch */
/* A CACHE copy: one row of one head read and written, 2 x 256 B at D=128, over one SM's share of
 * ~3 TB/s (23 GB/s): ~0.02 us. Not fitted (no plan of the fit has copies). */
#define COPY_ROW_US 0.02

/* Shares (attn_sched.h): SHARE3_2 = 0.73 is the fit's (arrow plans run 128-row visual items on 2
 * of the 3 consumers; with it 2 active warpgroups take 0.73 x 1.764 = 1.29 us a step, variant 2's
 * 2 warpgroups 1.26-1.27 at D=64: consistent). SHARE3_1 is a guess: the step time grows by ~0.48 us
 * per active warpgroup from 2 to 3 (1.29 -> 1.76); linear down to 1 gives 0.81 us = 0.46, and a
 * warpgroup alone overlaps only its own softmax with its own GEMMs, so a little more: 0.48.
 * SHARE2_1_SKIP likewise (D=128, where the GEMMs dominate: a lone warpgroup keeps the tensor cores
 * busier, 0.62 of two). */
void dfa_acu_cost_default(dfa_acu_cost *m, int rows, int skip_idle) {
    memset(m, 0, sizeof *m);
    m->copy_row_us = COPY_ROW_US;
    if (rows == DFA_ACU_BM3) {
        m->n_cons = 3;
        m->step_us = FIT3_STEP_US;
        m->item_us = FIT3_ITEM_US;
        m->launch_us = FIT3_LAUNCH_US;
        m->share[1] = DFA_ACU_SHARE3_1;
        m->share[2] = DFA_ACU_SHARE3_2;
        m->share[3] = 1.0;
        m->lookahead = 4; /* K/V stages at D=64 */
    } else {
        m->n_cons = 2;
        m->step_us = FIT2_STEP_US;
        m->item_us = FIT2_ITEM_US;
        m->launch_us = FIT2_LAUNCH_US;
        m->share[1] = skip_idle ? DFA_ACU_SHARE2_1_SKIP : 1.0;
        m->share[2] = 1.0;
        m->lookahead = 2; /* K/V stages at D=128 */
    }
}

/* A union item's chunks skip up to DFA_ACU_MAX_SKIP of these steps (item.skip); the CTA still
 * streams every step and its slowest warpgroup computes all but <= 2 of them, so the model keeps
 * counting the union's steps (a slight overestimate for union items, none for the others). */
int dfa_acu_item_steps(const dfa_acu_worklist *wl, const dfa_acu_item *it) {
    if (it->flags & DFA_ACU_ITEM_COPY) return 0;
    int n = 0;
    for (int r = 0; r < it->n_r; r++) {
        const dfa_acu_range *kr = &wl->ranges[it->r_off + r];
        n += (kr->k1 - kr->k0 + DFA_ACU_BM - 1) / DFA_ACU_BM; /* 128-key steps */
    }
    return n;
}

static int n_active(const dfa_acu_cost *m, int q_len) {
    int a = (q_len + 63) / 64;
    return a < 1 ? 1 : a > m->n_cons ? m->n_cons : a;
}

double dfa_acu_item_cost(const dfa_acu_cost *m, const dfa_acu_worklist *wl, const dfa_acu_item *it) {
    if (it->flags & DFA_ACU_ITEM_COPY) return it->q_len * m->copy_row_us;
    return m->item_us + m->share[n_active(m, it->q_len)] * dfa_acu_item_steps(wl, it) * m->step_us;
}

/* The producer is done with an item (and claims the next) `lead` before the item ends. */
static double item_lead(const dfa_acu_cost *m, const dfa_acu_item *it, double cost) {
    if (it->flags & DFA_ACU_ITEM_COPY) return cost;
    const double l = m->share[n_active(m, it->q_len)] * m->lookahead * m->step_us;
    return l < cost ? l : cost;
}

/* ---- the replay: a binary heap of CTAs keyed by (claim time, claims so far, index) ---- */

typedef struct cta {
    double claim, end; /* when it claims its next item; when its last claimed item ends */
    int n, id;
} cta;

typedef struct sched {
    cta *h;
    int n;         /* CTAs */
    double busy;
} sched;

static int cta_less(const cta *a, const cta *b) {
    if (a->claim != b->claim) return a->claim < b->claim;
    if (a->n != b->n) return a->n < b->n;
    return a->id < b->id;
}

static void sift_down(cta *h, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, s = i;
        if (l < n && cta_less(&h[l], &h[s])) s = l;
        if (r < n && cta_less(&h[r], &h[s])) s = r;
        if (s == i) return;
        cta t = h[i];
        h[i] = h[s];
        h[s] = t;
        i = s;
    }
}

static void sched_init(sched *s, cta *h, int n) {
    s->h = h;
    s->n = n;
    s->busy = 0;
    for (int i = 0; i < n; i++) h[i] = (cta){0, 0, 0, i}; /* equal keys but id: a valid heap */
}

/* The first CTA to claim takes an item of time `cost` (`lead` before its end it claims again). */
static void sched_take(sched *s, double cost, double lead) {
    cta *c = &s->h[0];
    const double start = c->end;
    c->end = start + cost;
    c->claim = c->end - lead > start ? c->end - lead : start;
    c->n++;
    s->busy += cost;
    sift_down(s->h, s->n, 0);
}

static void sched_result(const sched *s, const dfa_acu_cost *m, dfa_acu_sim *out) {
    double end = 0;
    for (int i = 0; i < s->n; i++)
        if (s->h[i].end > end) end = s->h[i].end;
    out->makespan_us = m->launch_us + end;
    out->busy_us = s->busy;
    out->idle_frac = end > 0 ? 1.0 - s->busy / (s->n * end) : 0;
    out->ctas = s->n;
}

static int grid_ctas(int n_ctas, int n_items, int batch) {
    const int64_t total = (int64_t)n_items * batch;
    return total < n_ctas ? (int)total : n_ctas;
}

void dfa_acu_sched_sim(const dfa_acu_worklist *wl, const dfa_acu_cost *m, int n_ctas, int batch, dfa_acu_sim *out) {
    memset(out, 0, sizeof *out);
    const int ctas = grid_ctas(n_ctas < 1 ? 1 : n_ctas, wl->n_items, batch < 1 ? 1 : batch);
    if (ctas < 1) {
        out->makespan_us = m->launch_us;
        return;
    }
    cta *h = malloc((size_t)ctas * sizeof *h);
    if (!h) { /* no memory for a model: report nothing rather than fail the caller */
        out->makespan_us = -1;
        return;
    }
    sched s;
    sched_init(&s, h, ctas);
    for (int i = 0; i < wl->n_items; i++) {
        const double c = dfa_acu_item_cost(m, wl, &wl->items[i]), lead = item_lead(m, &wl->items[i], c);
        for (int b = 0; b < batch; b++) sched_take(&s, c, lead);
    }
    sched_result(&s, m, out);
    free(h);
}

/* ---- tail balancing ---- */

typedef struct piece {
    dfa_acu_item it;
    double cost, lead;
} piece;

/* Launch order of the tail: longest first, then head, then query row (L2 reuse, as the list). */
static int piece_before(const piece *a, const piece *b) {
    if (a->cost != b->cost) return a->cost > b->cost;
    if (a->it.head != b->it.head) return a->it.head < b->it.head;
    return a->it.q0 < b->it.q0;
}

typedef struct cand {
    double mk;
    int k, mode;
} cand;

static int cand_cmp(const void *a, const void *b) {
    const cand *x = (const cand *)a, *y = (const cand *)b;
    if (x->mk != y->mk) return x->mk < y->mk ? -1 : 1;
    if (x->k != y->k) return x->k - y->k;
    return x->mode - y->mode;
}

enum { MODE_ONE_OFF, MODE_ALL64, MODE_RECUT128, N_MODES };

typedef struct bal_ctx {
    const dfa_acu_worklist *wl;
    const dfa_acu_cost *m;
    int rows, split128, nc, batch;
    double *cost, *lead; /* per list item */
    piece *tail;         /* the current candidate's tail, in launch order */
    int n_tail;
    dfa_acu_item *seg; /* scratch for MODE_RECUT128 */
} bal_ctx;

static int splittable(const bal_ctx *c, const dfa_acu_item *it) {
    if (it->flags & DFA_ACU_ITEM_COPY || it->q_len <= 64) return 0;
    return c->rows == DFA_ACU_BM3 || c->split128;
}

static void tail_push(bal_ctx *c, const dfa_acu_item *it) {
    piece x;
    x.it = *it;
    x.cost = dfa_acu_item_cost(c->m, c->wl, it);
    x.lead = item_lead(c->m, it, x.cost);
    int j = c->n_tail++;
    while (j > 0 && piece_before(&x, &c->tail[j - 1])) {
        c->tail[j] = c->tail[j - 1];
        j--;
    }
    c->tail[j] = x;
}

static int has_skip(const dfa_acu_item *it) { return it->skip[0] || it->skip[1] || it->skip[2]; }

/* Rows [q0, q0 + len) of `it` (same head, flags, ranges) in pieces of `size` rows, the last one
 * shorter. A piece starting 64 j rows into `it` takes its chunk skips from chunk j on (the cuts
 * of a union item fall on its 64-row chunk edges: tail_add, tail_recut). */
static void push_cut(bal_ctx *c, const dfa_acu_item *it, int q0, int len, int size) {
    for (int r = 0; r < len; r += size) {
        dfa_acu_item p = *it;
        p.q0 = q0 + r;
        p.q_len = len - r < size ? len - r : size;
        const int j = (p.q0 - it->q0) / 64, n_ch = (p.q_len + 63) / 64;
        for (int ch = 0; ch < 3; ch++) p.skip[ch] = ch < n_ch && ch + j < 3 ? it->skip[ch + j] : 0;
        tail_push(c, &p);
    }
}

/* Item i's pieces under MODE_ONE_OFF (q_len - 64, 64) or MODE_ALL64 (64-row pieces). */
static void tail_add(bal_ctx *c, int i, int mode) {
    const dfa_acu_item *it = &c->wl->items[i];
    if (!splittable(c, it)) tail_push(c, it);
    else if (mode == MODE_ALL64) push_cut(c, it, it->q0, it->q_len, 64);
    else if (has_skip(it)) { /* a union item: cut at its last chunk's edge (a short last chunk) */
        const int head = ((it->q_len + 63) / 64 - 1) * 64;
        push_cut(c, it, it->q0, head, head);
        push_cut(c, it, it->q0 + head, it->q_len - head, 64);
    } else {
        push_cut(c, it, it->q0, it->q_len - 64, it->q_len - 64);
        push_cut(c, it, it->q0 + it->q_len - 64, 64, 64);
    }
}

static int seg_cmp(const void *a, const void *b) {
    const dfa_acu_item *x = (const dfa_acu_item *)a, *y = (const dfa_acu_item *)b;
    if (x->head != y->head) return x->head - y->head;
    if (x->r_off != y->r_off) return x->r_off - y->r_off;
    if (x->flags != y->flags) return x->flags - y->flags;
    return x->q0 - y->q0;
}

/* MODE_RECUT128: the last k items, adjacent rows of one head with the same ranges (one run of the
 * 192-row list: same r_off) merged, re-cut into 128-row pieces (2 active consumers). A union item
 * has ranges of its own (no other item shares its r_off) and is never merged: it is re-cut alone,
 * on its chunk edges. */
static void tail_recut(bal_ctx *c, int k) {
    c->n_tail = 0;
    int n = 0;
    for (int i = c->nc - k; i < c->nc; i++) {
        if (splittable(c, &c->wl->items[i])) c->seg[n++] = c->wl->items[i];
        else tail_push(c, &c->wl->items[i]);
    }
    qsort(c->seg, (size_t)n, sizeof *c->seg, seg_cmp);
    for (int i = 0; i < n;) {
        const dfa_acu_item *a = &c->seg[i];
        int end = a->q0 + a->q_len, j = i + 1;
        for (; j < n && !has_skip(a) && !has_skip(&c->seg[j]) && c->seg[j].head == a->head &&
               c->seg[j].r_off == a->r_off && c->seg[j].n_r == a->n_r && c->seg[j].flags == a->flags &&
               c->seg[j].q0 == end;
             j++)
            end += c->seg[j].q_len;
        push_cut(c, a, a->q0, end - a->q0, 128);
        i = j;
    }
}

/* Makespan of: items [from, nc - k) after `snap` (the replay of [0, from)), the current tail,
 * the copies. */
static void cand_sim(const bal_ctx *c, const cta *snap, int ctas, int from, int k, cta *work, dfa_acu_sim *out) {
    sched s;
    s.h = work;
    s.n = ctas;
    memcpy(work, snap, (size_t)ctas * sizeof *work);
    s.busy = 0;
    const int B = c->batch;
    for (int i = from; i < c->nc - k; i++)
        for (int b = 0; b < B; b++) sched_take(&s, c->cost[i], c->lead[i]);
    for (int p = 0; p < c->n_tail; p++)
        for (int b = 0; b < B; b++) sched_take(&s, c->tail[p].cost, c->tail[p].lead);
    for (int i = c->nc; i < c->wl->n_items; i++)
        for (int b = 0; b < B; b++) sched_take(&s, c->cost[i], c->lead[i]);
    sched_result(&s, c->m, out);
}

/* Replay items [from, to) onto the state s. */
static void replay(const bal_ctx *c, sched *s, int from, int to) {
    for (int i = from; i < to; i++)
        for (int b = 0; b < c->batch; b++) sched_take(s, c->cost[i], c->lead[i]);
}

/* The tail sizes tried: every k up to 8, then coarser (k grows by 1 + k / 8), up to kmax. */
static int k_grid(int kmax, int *ks) {
    int n = 0;
    for (int k = 1; k <= kmax; k += 1 + k / 8) ks[n++] = k;
    return n;
}

static void tail_build(bal_ctx *c, int k, int mode) {
    if (mode == MODE_RECUT128) {
        tail_recut(c, k);
        return;
    }
    c->n_tail = 0;
    for (int i = c->nc - k; i < c->nc; i++) tail_add(c, i, mode);
}

dfa_status dfa_acu_worklist_balance(const dfa_acu_worklist *wl, int rows, const dfa_acu_balance *b,
                                    dfa_acu_item **items_out, int *n_out, dfa_acu_balance_report *rep,
                                    dfa_error *err) {
    dfa_acu_balance_report r;
    memset(&r, 0, sizeof r);
    *items_out = NULL;
    *n_out = 0;
    if (rep) *rep = r;
    if (!b || b->n_ctas <= 0 || wl->n_items == 0) return DFA_OK;
    if (rows != DFA_ACU_BM && rows != DFA_ACU_BM3)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda balance: %d rows per item (expected %d or %d)", rows,
                 DFA_ACU_BM, DFA_ACU_BM3);
    if (b->n_ctas > 65536 || b->batch > 65535)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda balance: %d CTAs, batch %d", b->n_ctas, b->batch);
    dfa_acu_cost m;
    if (b->model) m = *b->model;
    else dfa_acu_cost_default(&m, rows, rows == DFA_ACU_BM && b->split128);
    if (m.n_cons != (rows == DFA_ACU_BM3 ? 3 : 2))
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda balance: a %d-consumer model for a %d-row list", m.n_cons, rows);
    bal_ctx c;
    memset(&c, 0, sizeof c);
    c.wl = wl;
    c.m = &m;
    c.rows = rows;
    c.split128 = b->split128;
    c.batch = b->batch < 1 ? 1 : b->batch;
    for (c.nc = 0; c.nc < wl->n_items && !(wl->items[c.nc].flags & DFA_ACU_ITEM_COPY); c.nc++) {}
    for (int i = c.nc; i < wl->n_items; i++) /* copies come last (dfa_acu_worklist_build_rows) */
        if (!(wl->items[i].flags & DFA_ACU_ITEM_COPY))
            DFA_FAIL(err, DFA_ERR_INVALID_ARG, "attn_cuda balance: item %d computes after a copy item", i);
    /* the tail searched: up to two waves of launch items (list items x B) */
    const int waves2 = (2 * b->n_ctas + c.batch - 1) / c.batch;
    const int kmax = c.nc < waves2 ? c.nc : waves2;
    const int ctas = grid_ctas(b->n_ctas, wl->n_items, c.batch);
    c.cost = malloc((size_t)wl->n_items * sizeof *c.cost);
    c.lead = malloc((size_t)wl->n_items * sizeof *c.lead);
    c.tail = malloc((size_t)(kmax * 3 + 1) * sizeof *c.tail);
    c.seg = malloc((size_t)(kmax + 1) * sizeof *c.seg);
    int *ks = malloc((size_t)(kmax + 1) * sizeof *ks);
    cand *cands = malloc((size_t)(N_MODES * kmax + 1) * sizeof *cands);
    /* snapshots of the replay of [0, nc - ks[j]) for every tried k, then a work copy */
    cta *snap = malloc((size_t)ctas * (kmax + 2) * sizeof *snap);
    dfa_acu_item *items = NULL;
    dfa_status st = DFA_OK;
    if (!c.cost || !c.lead || !c.tail || !c.seg || !ks || !cands || !snap) {
        st = DFA_SET(err, DFA_ERR_OOM, "attn_cuda balance: out of host memory (%d items)", wl->n_items);
        goto done;
    }
    cta *work = snap + (size_t)ctas * (kmax + 1);
    for (int i = 0; i < wl->n_items; i++) {
        c.cost[i] = dfa_acu_item_cost(&m, wl, &wl->items[i]);
        c.lead[i] = item_lead(&m, &wl->items[i], c.cost[i]);
    }
    sched s;
    sched_init(&s, snap, ctas); /* before: the list as built (k = 0, empty tail) */
    cand_sim(&c, snap, ctas, 0, 0, work, &r.before);
    r.after = r.before;
    /* a cut only adds work and rarely recovers more than half of the idle time (bench_attn_sched):
     * nothing to gain where the CTAs idle for less than 2.5 x the threshold */
    if (kmax == 0 || r.before.idle_frac * (r.before.makespan_us - m.launch_us) <=
                         2.5 * DFA_ACU_BAL_MIN_GAIN * r.before.makespan_us)
        goto done;
    const int nk = k_grid(kmax, ks);
    if (nk < 1) goto done; /* not reached: kmax >= 1 gives k = 1 */
    replay(&c, &s, 0, c.nc - ks[nk - 1]);
    for (int j = nk - 1; j >= 0; j--) { /* snapshot j: after [0, nc - ks[j]) */
        if (j < nk - 1) replay(&c, &s, c.nc - ks[j + 1], c.nc - ks[j]);
        memcpy(snap + (size_t)ctas * (j + 1), s.h, (size_t)ctas * sizeof *snap);
    }
    int n_cand = 0;
    /* without any item to split (128-row lists without split128) modes 0 and 1 are one reorder */
    const int n_modes = rows == DFA_ACU_BM3 ? N_MODES : c.split128 ? 2 : 1;
    for (int mode = 0; mode < n_modes; mode++) {
        c.n_tail = 0;
        for (int k = 1, j = 0; j < nk; k++) {
            if (mode != MODE_RECUT128) tail_add(&c, c.nc - k, mode);
            if (k != ks[j]) continue;
            if (mode == MODE_RECUT128) tail_recut(&c, k);
            dfa_acu_sim sim;
            cand_sim(&c, snap + (size_t)ctas * (j + 1), ctas, c.nc - k, k, work, &sim);
            cands[n_cand++] = (cand){sim.makespan_us, k, mode};
            j++;
        }
    }
    qsort(cands, (size_t)n_cand, sizeof *cands, cand_cmp);
    if (n_cand == 0 || cands[0].mk >= r.before.makespan_us * (1.0 - DFA_ACU_BAL_MIN_GAIN)) goto done;
    /* the pick: prefix, its tail, copies */
    const int k = cands[0].k;
    tail_build(&c, k, cands[0].mode);
    const int n_new = c.nc - k + c.n_tail + (wl->n_items - c.nc);
    items = malloc((size_t)n_new * sizeof *items);
    if (!items) {
        st = DFA_SET(err, DFA_ERR_OOM, "attn_cuda balance: out of host memory (%d items)", n_new);
        goto done;
    }
    memcpy(items, wl->items, (size_t)(c.nc - k) * sizeof *items);
    for (int p = 0; p < c.n_tail; p++) items[c.nc - k + p] = c.tail[p].it;
    memcpy(items + c.nc - k + c.n_tail, wl->items + c.nc, (size_t)(wl->n_items - c.nc) * sizeof *items);
    {
        dfa_acu_worklist tmp = *wl;
        tmp.items = items;
        tmp.n_items = n_new;
        dfa_acu_sched_sim(&tmp, &m, b->n_ctas, c.batch, &r.after);
    }
    r.changed = 1;
    r.k = k;
    r.mode = cands[0].mode;
    r.n_pieces = n_new - wl->n_items;
    *items_out = items;
    *n_out = n_new;
    items = NULL;
done:
    if (rep) *rep = r;
    free(items);
    free(c.cost);
    free(c.lead);
    free(c.tail);
    free(c.seg);
    free(ks);
    free(cands);
    free(snap);
    return st;
}

dfa_status dfa_acu_balance_mode(int balance, int variant, int *on, int *split128, dfa_error *err) {
    *on = 0;
    *split128 = 0;
    if (balance != DFA_ATTN_CUDA_BALANCE_ON && balance != DFA_ATTN_CUDA_BALANCE_OFF &&
        balance != DFA_ATTN_CUDA_BALANCE_SPLIT128)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG,
                 "attn_cuda plan: unknown balance option %d (expected DFA_ATTN_CUDA_BALANCE_ON = %d, _OFF = %d or "
                 "_SPLIT128 = %d)",
                 balance, DFA_ATTN_CUDA_BALANCE_ON, DFA_ATTN_CUDA_BALANCE_OFF, DFA_ATTN_CUDA_BALANCE_SPLIT128);
    if (balance == DFA_ATTN_CUDA_BALANCE_OFF || variant == DFA_ATTN_CUDA_V_MMA || variant == DFA_ATTN_CUDA_V_WGMMA_GRID)
        return DFA_OK;
    *on = 1;
    *split128 = balance == DFA_ATTN_CUDA_BALANCE_SPLIT128;
    return DFA_OK;
}
