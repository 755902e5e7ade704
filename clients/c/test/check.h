/*
 * The checks and the PROTOCOL.md hex-dump parser the unit test programs share. Included once per
 * program (the definitions are static).
 */
#ifndef TFS_TEST_CHECK_H
#define TFS_TEST_CHECK_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int failures = 0;
static int checks = 0;

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        checks++;                                                                                                      \
        if (!(cond)) {                                                                                                 \
            failures++;                                                                                                \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);                                 \
        }                                                                                                              \
    } while (0)

#define CHECK_EQ_U64(a, b)                                                                                             \
    do {                                                                                                               \
        unsigned long long a_ = (unsigned long long)(a), b_ = (unsigned long long)(b);                                 \
        checks++;                                                                                                      \
        if (a_ != b_) {                                                                                                \
            failures++;                                                                                                \
            fprintf(stderr, "%s:%d: %s = %016llx, expected %016llx\n", __FILE__, __LINE__, #a, a_, b_);              \
        }                                                                                                              \
    } while (0)

/* Parses the hex dumps of PROTOCOL.md ("0000  ce 84 ..." lines): returns the byte count. */
static inline size_t parse_dump(const char *dump, uint8_t *out, size_t cap)
{
    size_t n = 0;
    const char *line = dump;
    while (*line) {
        const char *end = strchr(line, '\n');
        const char *p = line + 4; /* skip the offset */
        if (end == NULL) end = line + strlen(line);
        while (p + 2 < end + 1 && p < end) {
            unsigned v;
            while (p < end && *p == ' ') p++;
            if (p + 1 >= end + 1 || p >= end) break;
            if (sscanf(p, "%2x", &v) != 1) break;
            if (n < cap) out[n] = (uint8_t)v;
            n++;
            p += 2;
        }
        line = *end ? end + 1 : end;
    }
    return n;
}

/* Prints "NAME: N checks, F failed" and gives the exit status: 0 if every check passed, else 2. */
static inline int check_report(const char *name)
{
    printf("%s: %d checks, %d failed\n", name, checks, failures);
    return failures == 0 ? 0 : 2;
}

#endif /* TFS_TEST_CHECK_H */
