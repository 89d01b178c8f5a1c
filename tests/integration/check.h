/*
 * check.h - CHECK for the integration test programs: a failed condition
 * prints where and why, and exits the test (atexit handlers clean up the
 * processes it started).
 */
#ifndef CXM_TEST_CHECK_H
#define CXM_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#endif
