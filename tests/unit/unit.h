/* unit.h - the few assertion macros our unit-test programs share.
 *
 * Each failed check prints the file, line, the expression and both sides, then the test goes on so
 * one run shows every failure. A program's exit status is 0 only when every check passed;
 * automake's test driver reads that.
 */
#ifndef UTURN_UNIT_H
#define UTURN_UNIT_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int unit_failures;
static int unit_checks;

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

/* Call at the end of main: prints a summary and gives the exit status. */
static inline int unit_done(const char *name)
{
    printf("%s: %d checks, %d failed\n", name, unit_checks, unit_failures);
    return unit_failures ? 1 : 0;
}

#endif
