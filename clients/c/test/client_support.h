/*
 * What the test programs that run against a cluster share: the checks of check.h, a status check
 * that prints the result's message, the address list from argv, a clock and a pseudo-random value.
 */
#ifndef TFS_TEST_CLIENT_SUPPORT_H
#define TFS_TEST_CLIENT_SUPPORT_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <toastyfs.h>

#include "check.h"

#define CHECK_STATUS(call, expected, res)                                                                              \
    do {                                                                                                               \
        int code_ = (call);                                                                                            \
        if (code_ != (expected) || (res).status != code_) {                                                            \
            failures++;                                                                                                \
            fprintf(stderr, "%s:%d: %s returned %d (%s: %s), expected %d\n", __FILE__, __LINE__, #call, code_,         \
                    toastyfs_strerror(code_), (res).message, (expected));                                              \
        }                                                                                                              \
    } while (0)

static char *addr_list[TOASTYFS_REPLICAS_MAX + 1];
static int addr_count = 0;

static inline void parse_addrs(char *arg)
{
    char *p = strtok(arg, ",");
    while (p != NULL && addr_count < TOASTYFS_REPLICAS_MAX + 1) {
        addr_list[addr_count++] = p;
        p = strtok(NULL, ",");
    }
}

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static inline char *pattern(size_t size, unsigned seed)
{
    char *p = (char *)malloc(size + 1);
    size_t i;
    uint32_t x = seed * 2654435761u + 1;
    if (p == NULL) return NULL;
    for (i = 0; i < size; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (char)(x & 0xff);
    }
    return p;
}

#endif /* TFS_TEST_CLIENT_SUPPORT_H */
