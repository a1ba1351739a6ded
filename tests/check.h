/*
 * check.h - the test programs' assertions.  A failed check prints file,
 * line and the expression (with both values for the _EQ forms), counts
 * the failure and carries on; the program's exit status is the verdict:
 * `return check_exit();` at the end of main.
 */
#ifndef CD_CHECK_H
#define CD_CHECK_H

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_failures;
static int check_count;

#define CHECK_FAILED_(...)                                                   \
    do {                                                                     \
        check_failures++;                                                    \
        fprintf(stderr, "%s:%d: FAILED: ", __FILE__, __LINE__);              \
        fprintf(stderr, __VA_ARGS__);                                        \
        fputc('\n', stderr);                                                 \
    } while (0)

/* expr is true. */
#define CHECK(expr)                                                          \
    do {                                                                     \
        check_count++;                                                       \
        if (!(expr))                                                         \
            CHECK_FAILED_("%s", #expr);                                      \
    } while (0)

/* Two integers are equal. */
#define CHECK_EQ(a, b)                                                       \
    do {                                                                     \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);      \
        check_count++;                                                       \
        if (check_a_ != check_b_)                                            \
            CHECK_FAILED_("%s == %s (%lld != %lld)", #a, #b, check_a_,       \
                          check_b_);                                         \
    } while (0)

/* Two strings are equal (NULL equals only NULL). */
#define CHECK_STREQ(a, b)                                                    \
    do {                                                                     \
        const char *check_a_ = (a), *check_b_ = (b);                         \
        check_count++;                                                       \
        if ((check_a_ == NULL) != (check_b_ == NULL) ||                      \
            (check_a_ && strcmp(check_a_, check_b_) != 0))                   \
            CHECK_FAILED_("%s == %s (\"%s\" != \"%s\")", #a, #b,            \
                          check_a_ ? check_a_ : "(null)",                    \
                          check_b_ ? check_b_ : "(null)");                   \
    } while (0)

/* Two doubles are within tol of each other. */
#define CHECK_NEAR(a, b, tol)                                                \
    do {                                                                     \
        double check_a_ = (double)(a), check_b_ = (double)(b);               \
        check_count++;                                                       \
        if (!(fabs(check_a_ - check_b_) <= (tol)))                           \
            CHECK_FAILED_("%s ~ %s (%.9g vs %.9g, tol %g)", #a, #b,          \
                          check_a_, check_b_, (double)(tol));                \
    } while (0)

/* A core call returned CD_OK; on failure prints the message of errp, the
 * (non-NULL) cd_error the call filled. */
#define CHECK_OK(call, errp)                                                 \
    do {                                                                     \
        int check_rc_ = (int)(call);                                         \
        check_count++;                                                       \
        if (check_rc_ != 0)                                                  \
            CHECK_FAILED_("%s returned %d: %s", #call, check_rc_,            \
                          (errp)->message);                                  \
    } while (0)

/* Stops the program now when expr is false (later checks depend on it). */
#define REQUIRE(expr)                                                        \
    do {                                                                     \
        check_count++;                                                       \
        if (!(expr)) {                                                       \
            CHECK_FAILED_("required: %s", #expr);                            \
            exit(1);                                                         \
        }                                                                    \
    } while (0)

static inline int check_exit(void)
{
    if (check_count == 0) {
        fprintf(stderr, "no checks ran\n");
        return 1;
    }
    fprintf(stderr, "%d checks, %d failed\n", check_count, check_failures);
    return check_failures ? 1 : 0;
}

#endif
