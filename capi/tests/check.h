/* Minimal assertions for the C tests: on failure, print where, the status
 * text and the library's last error message, and exit non-zero. */
#ifndef SNP_TEST_CHECK_H
#define SNP_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#include "softnet_persistence.h"

static int check_count;

static void check_fail(const char *file, int line, const char *what, snp_status st) {
    char message[1024];
    snp_last_error_message(message, sizeof message);
    fprintf(stderr, "%s:%d: check failed: %s (status %d: %s; last error: %s)\n", file, line,
            what, (int)st, snp_status_str(st), message);
    exit(1);
}

/* CHECK(condition) */
#define CHECK(cond)                                                                 \
    do {                                                                            \
        check_count++;                                                              \
        if (!(cond)) check_fail(__FILE__, __LINE__, #cond, 0);                      \
    } while (0)

/* CHECK_STATUS(expression returning snp_status, expected status) */
#define CHECK_STATUS(expr, expected)                                                \
    do {                                                                            \
        snp_status check_st_ = (expr);                                              \
        check_count++;                                                              \
        if (check_st_ != (expected)) check_fail(__FILE__, __LINE__, #expr, check_st_); \
    } while (0)

#define CHECK_OK(expr) CHECK_STATUS(expr, SNP_OK)

#define CHECK_DONE(name) printf("%s: %d checks passed\n", (name), check_count)

#endif
