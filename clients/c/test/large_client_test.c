/*
 * The C client's large objects against a real cluster started with --block-size-max 1048576, driven
 * by tests/c_client_large.test.ts (under valgrind). Exit status: 0 when every check passed, 2 when
 * a check failed (valgrind uses 1).
 *
 *   large_client_test ADDRS   64 MiB put_fd/get_fd round trip through files; toastyfs_put/get above
 *                             the block size and above 16 MiB; get_stream ranges; a source that
 *                             fails mid-way, a declared size the source does not keep, conditions,
 *                             metadata; an object replaced while it is read
 *
 *   large_client_test forged ADDRS  against one fake replica (tests/c_client_large.test.ts) that
 *                             forges replies: prints the status of a whole get_stream, a ranged one,
 *                             a toastyfs_get and a 5 MiB toastyfs_put, one line each; they must fail
 *                             cleanly, and the test checks which status each gets
 *
 *   large_client_test memory ADDRS FILE  put_fd FILE as "memory", get_fd it into a temporary file,
 *                             compare, and print the peak resident set ("VmHWM N KiB"): the library
 *                             holds one block and one message, whatever the object's size
 *
 * ADDRS is a comma-separated list of host:port.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <fcntl.h>

#include <toastyfs.h>

#include "client_support.h"

#define MIB (1024 * 1024)

/* A source that hands out a buffer in pieces of at most `piece` bytes, and fails with 7 once it has
 * handed out fail_after bytes (0: never). */
typedef struct buffer_source {
    const char *data;
    size_t len, at, piece, fail_after;
} buffer_source;

static int buffer_read(void *ctx, char *buf, size_t cap, size_t *got)
{
    buffer_source *s = (buffer_source *)ctx;
    size_t n = s->len - s->at;
    if (s->fail_after > 0 && s->at >= s->fail_after) return 7;
    if (n > cap) n = cap;
    if (n > s->piece) n = s->piece;
    memcpy(buf, s->data + s->at, n);
    s->at += n;
    *got = n;
    return 0;
}

/* A sink that collects into a buffer; on its first call it may overwrite a key with another handle. */
typedef struct collector {
    char *data;
    size_t len, cap;
    int calls;
    ToastyFS *overwrite_with;
    const char *overwrite_key;
} collector;

static int collect(void *ctx, const char *buf, size_t len)
{
    collector *c = (collector *)ctx;
    if (c->calls++ == 0 && c->overwrite_with != NULL) {
        ToastyFS_Result res;
        CHECK_STATUS(toastyfs_put(c->overwrite_with, c->overwrite_key, (int)strlen(c->overwrite_key), "new", 3, &res),
                     TOASTYFS_OK, res);
    }
    if (len > c->cap - c->len) return 1;
    memcpy(c->data + c->len, buf, len);
    c->len += len;
    return 0;
}

static int write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Does the file at fd hold exactly expected (len bytes)? Read back 1 MiB at a time. */
static int file_equals(int fd, const char *expected, size_t len)
{
    char *chunk = (char *)malloc(MIB);
    size_t at = 0;
    int same = chunk != NULL && lseek(fd, 0, SEEK_SET) == 0;
    while (same) {
        ssize_t n = read(fd, chunk, MIB);
        if (n <= 0) {
            same = n == 0 && at == len;
            break;
        }
        same = at + (size_t)n <= len && memcmp(chunk, expected + at, (size_t)n) == 0;
        at += (size_t)n;
    }
    free(chunk);
    return same;
}

static int temp_file(char *path_template)
{
    int fd = mkstemp(path_template);
    if (fd >= 0) unlink(path_template);
    return fd;
}

/* The range [offset, offset + length) of key must read back as value's bytes there. */
static void check_range(ToastyFS *tfs, const char *key, const char *value, size_t size, uint64_t offset, uint64_t length)
{
    ToastyFS_Result res;
    collector c;
    size_t expected = offset >= size ? 0 : (length < size - offset ? (size_t)length : size - (size_t)offset);
    memset(&c, 0, sizeof c);
    c.cap = expected;
    c.data = (char *)malloc(expected + 1);
    CHECK_STATUS(toastyfs_get_stream(tfs, key, (int)strlen(key), offset, length, collect, &c, &res), TOASTYFS_OK, res);
    CHECK(res.size == size && c.len == expected && memcmp(c.data, value + offset, expected) == 0);
    if (c.len != expected)
        fprintf(stderr, "range %llu+%llu of %s: %lu bytes, expected %lu\n", (unsigned long long)offset,
                (unsigned long long)length, key, (unsigned long)c.len, (unsigned long)expected);
    free(c.data);
}

static void put_fd_get_fd(ToastyFS *tfs, const char *value, size_t size)
{
    char in_path[] = "/tmp/toastyfs-c-large-in-XXXXXX", out_path[] = "/tmp/toastyfs-c-large-out-XXXXXX";
    int in = temp_file(in_path), out = temp_file(out_path);
    ToastyFS_Result res;
    uint64_t version;
    double started;

    CHECK(in >= 0 && out >= 0 && write_all(in, value, size) == 0 && lseek(in, 0, SEEK_SET) == 0);
    started = now_s();
    CHECK_STATUS(toastyfs_put_fd(tfs, "large/64", 8, in, NULL, &res), TOASTYFS_OK, res);
    CHECK(res.size == size && res.version > 0);
    version = res.version;
    printf("put_fd of %lu MiB: version %llu, checksum %016llx (%.2f s)\n", (unsigned long)(size / MIB),
           (unsigned long long)version, (unsigned long long)res.checksum, now_s() - started);
    started = now_s();
    CHECK_STATUS(toastyfs_get_fd(tfs, "large/64", 8, 0, UINT64_MAX, out, &res), TOASTYFS_OK, res);
    CHECK(res.version == version && res.size == size);
    CHECK(file_equals(out, value, size));
    printf("get_fd of %lu MiB: identical (%.2f s)\n", (unsigned long)(size / MIB), now_s() - started);
    CHECK_STATUS(toastyfs_stat(tfs, "large/64", 8, &res), TOASTYFS_OK, res);
    CHECK(res.version == version && res.size == size);
    close(in);
    close(out);
}

static void memory_puts_and_gets(ToastyFS *tfs)
{
    /* 3 MiB: above the cluster's 1 MiB blocks (learned by the put_fd before), so an upload, and
     * small enough for the cluster to assemble in one get. 20 MiB: read back in pieces. */
    static const size_t sizes[] = {3 * MIB + 11, 20 * MIB + 1};
    ToastyFS_Result res;
    size_t i;
    for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char key[32];
        char *value = pattern(sizes[i], (unsigned)i + 100);
        snprintf(key, sizeof key, "large/memory/%lu", (unsigned long)i);
        CHECK_STATUS(toastyfs_put(tfs, key, (int)strlen(key), value, (int)sizes[i], &res), TOASTYFS_OK, res);
        CHECK(res.size == sizes[i]);
        CHECK_STATUS(toastyfs_get(tfs, key, (int)strlen(key), &res), TOASTYFS_OK, res);
        CHECK(res.data_len == (int)sizes[i] && res.data != NULL && memcmp(res.data, value, sizes[i]) == 0);
        CHECK(res.data != NULL && res.data[sizes[i]] == '\0');
        toastyfs_result_free(&res);
        free(value);
    }
    printf("toastyfs_put/toastyfs_get of 3 MiB and 20 MiB: ok\n");
}

static void ranges(ToastyFS *tfs, const char *value, size_t size)
{
    ToastyFS_Result res;
    collector c;
    check_range(tfs, "large/64", value, size, MIB + MIB / 2 + 17, 3 * MIB + 5); /* across 4 blocks, mid-block ends */
    check_range(tfs, "large/64", value, size, 5 * MIB, MIB);                    /* exactly one block */
    check_range(tfs, "large/64", value, size, 7, 1);
    check_range(tfs, "large/64", value, size, size - 10, UINT64_MAX); /* to the end */
    check_range(tfs, "large/64", value, size, 0, 9 * MIB + 3);        /* more than one read */
    check_range(tfs, "large/64", value, size, size, 100);             /* at the end: nothing */
    memset(&c, 0, sizeof c);
    CHECK_STATUS(toastyfs_get_stream(tfs, "large/64", 8, size + 1, 1, collect, &c, &res), TOASTYFS_RANGE_INVALID, res);
    CHECK(res.size == size && c.calls == 0);
    CHECK_STATUS(toastyfs_get_stream(tfs, "large/none", 10, 0, 1, collect, &c, &res), TOASTYFS_NOT_FOUND, res);
    printf("get_stream ranges: ok\n");
}

static void failing_sources(ToastyFS *tfs, const char *value)
{
    ToastyFS_Result res;
    ToastyFS_PutOptions o;
    buffer_source s;
    uint64_t version;

    CHECK_STATUS(toastyfs_stat(tfs, "large/64", 8, &res), TOASTYFS_OK, res);
    version = res.version;

    /* The callback fails after 3 MiB and a bit: nothing stored, the upload aborted. */
    memset(&s, 0, sizeof s);
    s.data = value;
    s.len = 8 * MIB;
    s.piece = 300 * 1024;
    s.fail_after = 3 * MIB + 5;
    CHECK_STATUS(toastyfs_put_stream(tfs, "large/64", 8, buffer_read, &s, NULL, &res), TOASTYFS_CALLBACK, res);
    CHECK(strstr(res.message, "returned 7") != NULL && strstr(res.message, "aborted") != NULL);
    printf("failing source: %s\n", res.message);
    CHECK_STATUS(toastyfs_stat(tfs, "large/64", 8, &res), TOASTYFS_OK, res);
    CHECK(res.version == version);

    /* A declared size the source does not keep, short and long. */
    memset(&o, 0, sizeof o);
    o.has_declared_size = 1;
    o.declared_size = 5 * MIB;
    memset(&s, 0, sizeof s);
    s.data = value;
    s.len = 4 * MIB;
    s.piece = MIB;
    CHECK_STATUS(toastyfs_put_stream(tfs, "large/64", 8, buffer_read, &s, &o, &res), TOASTYFS_SIZE_MISMATCH, res);
    CHECK(res.size == 4 * MIB && strstr(res.message, "aborted") != NULL);
    s.at = 0;
    s.len = 6 * MIB;
    CHECK_STATUS(toastyfs_put_stream(tfs, "large/64", 8, buffer_read, &s, &o, &res), TOASTYFS_SIZE_MISMATCH, res);
    printf("declared size not kept: %s\n", res.message);

    /* Conditions: if_absent on a present key fails at create_upload; the right if_version works. */
    o.has_declared_size = 0;
    o.condition = TOASTYFS_IF_ABSENT;
    s.at = 0;
    CHECK_STATUS(toastyfs_put_stream(tfs, "large/64", 8, buffer_read, &s, &o, &res), TOASTYFS_CONDITION_FAILED, res);
    CHECK(res.version == version);
    CHECK_STATUS(toastyfs_stat(tfs, "large/64", 8, &res), TOASTYFS_OK, res);
    CHECK(res.version == version);
    printf("conditions and declared sizes: nothing stored\n");
}

static void metadata_puts(ToastyFS *tfs, const char *value)
{
    const char *names[] = {"owner", "a-b"}, *values[] = {"me", "x"};
    ToastyFS_PutOptions o;
    ToastyFS_Result res;
    buffer_source s;
    size_t i, sizes[] = {1000, 2 * MIB + 3, 0};
    memset(&o, 0, sizeof o);
    o.content_type = "application/octet-stream";
    o.meta_names = names;
    o.meta_values = values;
    o.meta_count = 2;
    for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        memset(&s, 0, sizeof s);
        s.data = value;
        s.len = sizes[i];
        s.piece = 64 * 1024;
        o.meta_count = i == 2 ? 0 : 2;
        o.content_type = i == 2 ? NULL : "application/octet-stream";
        CHECK_STATUS(toastyfs_put_stream(tfs, "large/meta", 10, buffer_read, &s, &o, &res), TOASTYFS_OK, res);
        CHECK(res.size == sizes[i]);
        check_range(tfs, "large/meta", value, sizes[i], 0, UINT64_MAX);
    }
    printf("put_stream with metadata (1000 B, 2 MiB) and of nothing: ok\n");
}

static void replaced_while_read(ToastyFS *tfs, size_t size)
{
    ToastyFS *other = toastyfs_init(0, addr_list, addr_count);
    ToastyFS_Result res;
    collector c;
    uint64_t version;
    CHECK(other != NULL);
    if (other == NULL) return;
    CHECK_STATUS(toastyfs_stat(tfs, "large/64", 8, &res), TOASTYFS_OK, res);
    version = res.version;
    memset(&c, 0, sizeof c);
    c.cap = size;
    c.data = (char *)malloc(size);
    c.overwrite_with = other;
    c.overwrite_key = "large/64";
    CHECK_STATUS(toastyfs_get_stream(tfs, "large/64", 8, 0, UINT64_MAX, collect, &c, &res), TOASTYFS_OBJECT_CHANGED,
                 res);
    CHECK(res.version > version && c.len < size);
    printf("replaced while read: %s\n", res.message);
    free(c.data);
    toastyfs_free(other);
}

/* A sink that only counts. */
static int count_bytes(void *ctx, const char *buf, size_t len)
{
    (void)buf;
    *(uint64_t *)ctx += len;
    return 0;
}

static int forged(void)
{
    ToastyFS *tfs = toastyfs_init(0, addr_list, addr_count);
    ToastyFS_Result res;
    uint64_t bytes = 0;
    char *value = pattern(5 * MIB, 5);
    int code;
    CHECK(tfs != NULL && value != NULL);
    if (tfs == NULL || value == NULL) return 2;
    toastyfs_set_timeouts(tfs, 5000, 30000);
    code = toastyfs_get_stream(tfs, "obj", 3, 0, UINT64_MAX, count_bytes, &bytes, &res);
    printf("get_stream: %d bytes %llu version %llu: %s\n", code, (unsigned long long)bytes,
           (unsigned long long)res.version, res.message);
    bytes = 0;
    code = toastyfs_get_stream(tfs, "obj", 3, 3 * MIB + 5, 2 * MIB, count_bytes, &bytes, &res);
    printf("range: %d bytes %llu: %s\n", code, (unsigned long long)bytes, res.message);
    code = toastyfs_get(tfs, "obj", 3, &res);
    printf("get: %d size %llu data_len %d: %s\n", code, (unsigned long long)res.size, res.data_len, res.message);
    CHECK(code == res.status && (code == TOASTYFS_OK) == (res.data != NULL));
    toastyfs_result_free(&res);
    code = toastyfs_put(tfs, "obj2", 4, value, 5 * MIB, &res);
    printf("put: %d: %s\n", code, res.message);
    free(value);
    toastyfs_free(tfs);
    printf("forged: %s\n", failures == 0 ? "ok" : "FAILED");
    return failures == 0 ? 0 : 2;
}

/* Does the file at a hold what the file at b holds? */
static int files_equal(int a, int b)
{
    char *x = (char *)malloc(MIB), *y = (char *)malloc(MIB);
    int same = x != NULL && y != NULL && lseek(a, 0, SEEK_SET) == 0 && lseek(b, 0, SEEK_SET) == 0;
    while (same) {
        ssize_t n = read(a, x, MIB), m = n > 0 ? read(b, y, (size_t)n) : read(b, y, 1);
        if (n <= 0) {
            same = n == 0 && m == 0;
            break;
        }
        same = m == n && memcmp(x, y, (size_t)n) == 0;
    }
    free(x);
    free(y);
    return same;
}

static int memory(const char *file)
{
    ToastyFS *tfs = toastyfs_init(0, addr_list, addr_count);
    ToastyFS_Result res;
    char out_path[] = "/tmp/toastyfs-c-memory-XXXXXX";
    int in = open(file, O_RDONLY), out = temp_file(out_path);
    char line[256];
    long hwm_kib = -1;
    FILE *status;
    CHECK(tfs != NULL && in >= 0 && out >= 0);
    if (tfs == NULL || in < 0 || out < 0) return 2;
    CHECK(toastyfs_set_timeouts(tfs, 5000, 60000) == TOASTYFS_OK);
    CHECK_STATUS(toastyfs_put_fd(tfs, "memory", 6, in, NULL, &res), TOASTYFS_OK, res);
    CHECK_STATUS(toastyfs_get_fd(tfs, "memory", 6, 0, UINT64_MAX, out, &res), TOASTYFS_OK, res);
    CHECK(files_equal(in, out));
    /* VmHWM, not getrusage's ru_maxrss: that one also counts the parent's memory at fork when the
     * child was spawned by a large process (Bun). */
    status = fopen("/proc/self/status", "r");
    while (status != NULL && fgets(line, sizeof line, status) != NULL)
        if (strncmp(line, "VmHWM:", 6) == 0) hwm_kib = strtol(line + 6, NULL, 10);
    if (status != NULL) fclose(status);
    printf("memory: %llu bytes through put_fd and get_fd, VmHWM %ld KiB\n", (unsigned long long)res.size, hwm_kib);
    close(in);
    close(out);
    toastyfs_free(tfs);
    return failures == 0 ? 0 : 2;
}

int main(int argc, char **argv)
{
    const size_t size = 64 * MIB;
    ToastyFS *tfs;
    char *value;
    if (argc == 4 && strcmp(argv[1], "memory") == 0) {
        parse_addrs(argv[2]);
        return memory(argv[3]);
    }
    if (argc != 3 || (strcmp(argv[1], "large") != 0 && strcmp(argv[1], "forged") != 0)) {
        fprintf(stderr, "usage: large_client_test large|forged host:port,...\n       large_client_test memory host:port,... FILE\n");
        return 2;
    }
    parse_addrs(argv[2]);
    if (strcmp(argv[1], "forged") == 0) return forged();
    tfs = toastyfs_init(0, addr_list, addr_count);
    value = pattern(size, 64);
    CHECK(tfs != NULL && value != NULL);
    if (tfs == NULL || value == NULL) return 2;
    CHECK(toastyfs_set_timeouts(tfs, 5000, 60000) == TOASTYFS_OK);
    put_fd_get_fd(tfs, value, size);
    memory_puts_and_gets(tfs);
    ranges(tfs, value, size);
    failing_sources(tfs, value);
    metadata_puts(tfs, value);
    replaced_while_read(tfs, size);
    free(value);
    toastyfs_free(tfs);
    printf("large: %s\n", failures == 0 ? "ok" : "FAILED");
    return failures == 0 ? 0 : 2;
}
