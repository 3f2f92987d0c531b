/* test.h - a minimal test harness: CHECK records a failure and goes on; each test file's
 * main() runs its cases with RUN and returns test_summary(). ctest runs the executables. */
#ifndef DFA_TESTS_TEST_H
#define DFA_TESTS_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct test_state {
    int checks, failures, cases, failed_cases;
} test_state;

static test_state test_g; /* per-executable counters; tests are single-threaded */

#define CHECK(cond)                                                                 \
    do {                                                                            \
        test_g.checks++;                                                            \
        if (!(cond)) {                                                              \
            test_g.failures++;                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                           \
    } while (0)

#define CHECKF(cond, ...)                                                  \
    do {                                                                   \
        test_g.checks++;                                                   \
        if (!(cond)) {                                                     \
            test_g.failures++;                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                  \
            fprintf(stderr, "\n");                                         \
        }                                                                  \
    } while (0)

/* |a-b| <= tol */
#define CHECK_NEAR(a, b, tol) \
    CHECKF(fabs((double)(a) - (double)(b)) <= (tol), "%.9g vs %.9g (tol %.3g)", (double)(a), (double)(b), (double)(tol))

#define RUN(fn)                                              \
    do {                                                     \
        int before_ = test_g.failures;                       \
        test_g.cases++;                                      \
        fn();                                                \
        if (test_g.failures != before_) {                    \
            test_g.failed_cases++;                           \
            fprintf(stderr, "FAIL %s\n", #fn);               \
        } else {                                             \
            printf("ok   %s\n", #fn);                        \
        }                                                    \
    } while (0)

static inline int test_summary(void) {
    printf("%d cases, %d checks: %d cases failed\n", test_g.cases, test_g.checks, test_g.failed_cases);
    return test_g.failures ? 1 : 0;
}

/* Deterministic xorshift random numbers for tests (state passed explicitly). */
static inline unsigned long long test_rng_next(unsigned long long *s) {
    unsigned long long x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}
/* uniform in [-1, 1) */
static inline float test_rng_uniform(unsigned long long *s) {
    return (float)((double)(test_rng_next(s) >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0);
}
/* A fresh seed per run (fresh random inputs), or DFA_TEST_SEED to repeat a run; odd, never 0. */
static inline unsigned long long test_seed(void) {
    const char *env = getenv("DFA_TEST_SEED");
    if (env) return strtoull(env, NULL, 10) | 1ULL;
    return (unsigned long long)time(NULL) * 2654435761ULL | 1ULL;
}

#endif
