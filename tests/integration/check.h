/*
 * check.h - what the integration test programs share: CHECK (a failed
 * condition prints where and why, and exits the test; atexit handlers clean
 * up the processes it started) and a monotonic clock.
 */
#ifndef CXM_TEST_CHECK_H
#define CXM_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* Milliseconds on a monotonic clock. */
static inline double test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

#endif
