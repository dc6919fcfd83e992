/* unit.h - the assertion macros and the test registry our unit-test programs share.
 *
 * Checks: each failed check prints the file, line, the expression and both sides, then the test
 * goes on so one run shows every failure. A program's exit status is 0 only when every check
 * passed; automake's test driver reads that, and scripts/test reads the closing line
 * "<program>: N checks, M failed".
 *
 * Registry (the model is libuv's test list and runner timeouts; the code is ours): UNIT_TEST(name)
 * defines `static void test_name(void)` and registers it. The runner runs the registered tests in
 * the order they appear in the file:
 *     ./test_x                 every test
 *     ./test_x name [name...]  only those ("name" or "test_name"); an unknown name is an error
 *     ./test_x --list          the names, one a line
 * Each test runs under alarm(): UNIT_TEST_TIMEOUT(name, seconds) sets its limit, UNIT_TEST's is
 * UNIT_DEFAULT_TIMEOUT; the environment's UNIT_TIMEOUT=seconds replaces every limit (0: none, for
 * a debugger). A test that hits its limit ends the program: it prints the test's name, the closing
 * line with the failure counted, and exits 1 (a hung test leaves no state to go on from).
 *
 * A program with no setup ends with UNIT_MAIN("test_x"). One with setup calls unit_args() first
 * (before starting anything, since --list and a bad name exit there), then unit_run(), then its
 * teardown and unit_done(). The header alone is the whole runner: its state is one weak (shared)
 * definition per program, so helper files linked into a program may use CHECK too. The older form,
 * a main() that calls its test functions and unit_done(), still works.
 */
#ifndef UTURN_UNIT_H
#define UTURN_UNIT_H

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Seconds a test may run when it names no limit of its own. */
#define UNIT_DEFAULT_TIMEOUT 60

/* One registered test; UNIT_TEST fills it in, the runner reads it. */
typedef struct unit_test {
    const char *name;
    void (*fn)(void);
    unsigned timeout_s; /* 0: UNIT_DEFAULT_TIMEOUT */
    const char *file;   /* file and line: the run order */
    int line;
    int selected;
    struct unit_test *next;
} unit_test_t;

/* The runner's state: one copy per program (weak, so every file including this header shares it).
 * unit_checks and unit_failures count over the whole program, as they always have. */
__attribute__((weak)) int unit_failures;
__attribute__((weak)) int unit_checks;
__attribute__((weak)) unit_test_t *unit_tests;           /* registered, in constructor order */
__attribute__((weak)) const char *unit_prog = "unit";    /* argv[0]'s last part */
__attribute__((weak)) const char *volatile unit_current; /* the test running, for the alarm */
__attribute__((weak)) volatile unsigned unit_current_limit;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        unit_checks++;                                                                             \
        if (!(cond)) {                                                                             \
            unit_failures++;                                                                       \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);               \
        }                                                                                          \
    } while (0)

#define CHECK_INT(a, b)                                                                            \
    do {                                                                                           \
        long long unit_a_ = (long long)(a), unit_b_ = (long long)(b);                              \
        unit_checks++;                                                                             \
        if (unit_a_ != unit_b_) {                                                                  \
            unit_failures++;                                                                       \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a, #b,  \
                    unit_a_, unit_b_);                                                             \
        }                                                                                          \
    } while (0)

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *unit_a_ = (a), *unit_b_ = (b);                                                 \
        unit_checks++;                                                                             \
        if (!unit_a_ || !unit_b_ || strcmp(unit_a_, unit_b_) != 0) {                               \
            unit_failures++;                                                                       \
            fprintf(stderr, "%s:%d: %s == %s failed: \"%s\" != \"%s\"\n", __FILE__, __LINE__, #a,  \
                    #b, unit_a_ ? unit_a_ : "(null)", unit_b_ ? unit_b_ : "(null)");               \
        }                                                                                          \
    } while (0)

static inline void unit_hexdump(const char *label, const uint8_t *p, size_t n)
{
    fprintf(stderr, "  %s (%zu bytes):", label, n);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, "%s%02x", (i % 16) ? " " : "\n    ", p[i]);
    fprintf(stderr, "\n");
}

#define CHECK_MEM(a, b, n)                                                                         \
    do {                                                                                           \
        const uint8_t *unit_a_ = (const uint8_t *)(a), *unit_b_ = (const uint8_t *)(b);            \
        size_t unit_n_ = (n);                                                                      \
        unit_checks++;                                                                             \
        if (memcmp(unit_a_, unit_b_, unit_n_) != 0) {                                              \
            unit_failures++;                                                                       \
            fprintf(stderr, "%s:%d: memory %s == %s failed\n", __FILE__, __LINE__, #a, #b);        \
            unit_hexdump(#a, unit_a_, unit_n_);                                                    \
            unit_hexdump(#b, unit_b_, unit_n_);                                                    \
        }                                                                                          \
    } while (0)

/* Add a test to the registry (UNIT_TEST's constructor calls it before main). */
static inline void unit_register(unit_test_t *t)
{
    t->next = unit_tests;
    unit_tests = t;
}

/* Define and register `static void test_<name>(void)` with a limit of `seconds` (0: default). */
#define UNIT_TEST_TIMEOUT(name, seconds)                                                           \
    static void test_##name(void);                                                                 \
    static unit_test_t unit_entry_##name = {#name,    test_##name, (seconds), __FILE__,            \
                                            __LINE__, 0,           NULL};                          \
    __attribute__((constructor)) static void unit_register_##name(void)                            \
    {                                                                                              \
        unit_register(&unit_entry_##name);                                                         \
    }                                                                                              \
    static void test_##name(void)

/* Define and register `static void test_<name>(void)` with the default limit. */
#define UNIT_TEST(name) UNIT_TEST_TIMEOUT(name, 0)

/* Call at the end of main: prints a summary and gives the exit status. */
static inline int unit_done(const char *name)
{
    printf("%s: %d checks, %d failed\n", name, unit_checks, unit_failures);
    return unit_failures ? 1 : 0;
}

/* write(2) all of `s` (async-signal-safe; the alarm handler's only way out). */
static inline void unit_write(const char *s)
{
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t w = write(STDOUT_FILENO, s, n);
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

/* `v` in decimal into buf[32] (async-signal-safe). */
static inline const char *unit_itoa(long v, char *buf)
{
    char *p = buf + 31;
    int neg = v < 0;
    unsigned long u = neg ? 0UL - (unsigned long)v : (unsigned long)v;
    *p = '\0';
    do
        *--p = (char)('0' + u % 10);
    while ((u /= 10) > 0);
    if (neg)
        *--p = '-';
    return p;
}

/* SIGALRM: the running test took longer than its limit. Say which, count it, and exit. */
static inline void unit_on_alarm(int sig)
{
    char b[32];
    (void)sig;
    unit_write("FAIL ");
    unit_write(unit_current ? unit_current : "(between tests)");
    unit_write(": timed out after ");
    unit_write(unit_itoa((long)unit_current_limit, b));
    unit_write(" s\n");
    unit_write(unit_prog);
    unit_write(": ");
    unit_write(unit_itoa(unit_checks + 1, b));
    unit_write(" checks, ");
    unit_write(unit_itoa(unit_failures + 1, b));
    unit_write(" failed\n");
    _exit(1);
}

/* Registered tests in file order (constructors may run in any order): a simple insertion sort of
 * the list by (file, line). */
static inline void unit_sort(void)
{
    unit_test_t *sorted = NULL;
    while (unit_tests) {
        unit_test_t *t = unit_tests, **at = &sorted;
        unit_tests = t->next;
        while (*at) {
            int c = strcmp((*at)->file, t->file);
            if (c > 0 || (c == 0 && (*at)->line > t->line))
                break;
            at = &(*at)->next;
        }
        t->next = *at;
        *at = t;
    }
    unit_tests = sorted;
}

/* Read the command line: no names selects every test; `--list` prints the names and exits 0; an
 * unknown name or option exits 2 before any test or fixture has started. */
static inline void unit_args(int argc, char **argv)
{
    const char *slash = argc > 0 ? strrchr(argv[0], '/') : NULL;
    if (argc > 0)
        unit_prog = slash ? slash + 1 : argv[0];
    setvbuf(stdout, NULL, _IOLBF, 0); /* every line out before a timeout's _exit */
    unit_sort();
    int named = 0;
    for (int i = 1; i < argc; i++) {
        const char *want = argv[i];
        if (strcmp(want, "--list") == 0) {
            for (unit_test_t *t = unit_tests; t; t = t->next)
                printf("%s\n", t->name);
            exit(0);
        }
        if (strcmp(want, "--help") == 0 || want[0] == '-') {
            fprintf(stderr, "usage: %s [--list] [test name...]\n", unit_prog);
            exit(strcmp(want, "--help") == 0 ? 0 : 2);
        }
        if (strncmp(want, "test_", 5) == 0)
            want += 5;
        unit_test_t *t = unit_tests;
        while (t && strcmp(t->name, want) != 0)
            t = t->next;
        if (!t) {
            fprintf(stderr, "%s: no test named '%s' (--list shows them)\n", unit_prog, argv[i]);
            exit(2);
        }
        t->selected = 1;
        named = 1;
    }
    if (!named)
        for (unit_test_t *t = unit_tests; t; t = t->next)
            t->selected = 1;
}

/* Run the selected tests in order, each under its time limit; prints one line per test. */
static inline void unit_run(void)
{
    const char *env = getenv("UNIT_TIMEOUT");
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = unit_on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    for (unit_test_t *t = unit_tests; t; t = t->next) {
        if (!t->selected)
            continue;
        unsigned limit = t->timeout_s ? t->timeout_s : UNIT_DEFAULT_TIMEOUT;
        if (env && *env)
            limit = (unsigned)strtoul(env, NULL, 10);
        int checks = unit_checks, failures = unit_failures;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        unit_current = t->name;
        unit_current_limit = limit;
        alarm(limit);
        t->fn();
        alarm(0);
        unit_current = NULL;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        if (unit_failures == failures)
            printf("PASS %s (%d checks, %.2fs)\n", t->name, unit_checks - checks, secs);
        else
            printf("FAIL %s: %d of %d checks failed (%.2fs)\n", t->name, unit_failures - failures,
                   unit_checks - checks, secs);
    }
}

/* main() for a program with no setup of its own. */
#define UNIT_MAIN(prog)                                                                            \
    int main(int argc, char **argv)                                                                \
    {                                                                                              \
        unit_args(argc, argv);                                                                     \
        unit_run();                                                                                \
        return unit_done(prog);                                                                    \
    }

#endif
