/*
 * The C client against a real cluster (or a fake replica), driven by tests/c_client.test.ts.
 * Exit status: 0 when every check passed, 2 when a check failed (valgrind uses 1).
 *
 *   client_test roundtrip ADDRS   put/get/stat/delete/list round trips (0 B, 1 B, 1 MiB, 16 MiB
 *                                 values), not found, conditions, bad inputs
 *   client_test failover ADDRS    puts continuously (printing "progress N") until a line arrives on
 *                                 stdin, then reads every key back; every put must succeed
 *   client_test fake-error ADDRS  every operation must fail cleanly (the replicas send garbage)
 *   client_test fake-recover ADDRS  a put and a get must succeed (one replica is good)
 *   client_test fake-evict ADDRS  the first put is answered "evicted": it reports an unknown
 *                                 outcome, and the next put registers anew and succeeds
 *   client_test long-lived ADDRS  one client puts "long/c" (printing "wrote VERSION"), waits for a
 *                                 line on stdin, then puts it again with the same client: that put
 *                                 must succeed (its session must not have been evicted meanwhile)
 *   client_test reads ADDRS N KEY N fresh clients, each reading KEY once (get, stat or list in
 *                                 turn) and freed: reads that must not cost a session each
 *   client_test resume ADDRS PID same|fresh [HOLE_PORT]  one client puts until 10 puts have
 *                                 succeeded, sends SIGKILL to PID (the primary, found by the caller)
 *                                 and times the next put, by the same client or by a new one (which
 *                                 registers first, as a CLI does): "resume: ... N ms". With
 *                                 HOLE_PORT (the killed replica's), connects to it then get no
 *                                 answer, as if its host had gone away
 *   client_test hole-put ADDRS HOLE_PORT  makes 127.0.0.1:HOLE_PORT a black hole (connects get no
 *                                 answer), then times one put by a new client: "hole-put: took N ms"
 *
 * ADDRS is a comma-separated list of host:port.
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <toastyfs.h>

#include "client_support.h"

static void round_trip(ToastyFS *tfs, size_t size, unsigned seed)
{
    char key[64];
    ToastyFS_Result res;
    char *value = pattern(size, seed);
    uint64_t version;
    double start = now_s();
    CHECK(value != NULL);
    if (value == NULL) return;
    snprintf(key, sizeof key, "size/%lu", (unsigned long)size);

    CHECK_STATUS(toastyfs_put(tfs, key, (int)strlen(key), value, (int)size, &res), TOASTYFS_OK, res);
    CHECK(res.version > 0 && res.data == NULL);
    version = res.version;
    CHECK_STATUS(toastyfs_get(tfs, key, (int)strlen(key), &res), TOASTYFS_OK, res);
    CHECK(res.version == version && res.size == size && res.data_len == (int)size && res.data != NULL);
    if (res.data != NULL && res.data_len == (int)size) {
        CHECK(memcmp(res.data, value, size) == 0);
        CHECK(res.data[size] == '\0');
    }
    toastyfs_result_free(&res);
    CHECK(res.data == NULL && res.data_len == 0);
    toastyfs_result_free(&res); /* twice is fine */
    CHECK_STATUS(toastyfs_stat(tfs, key, (int)strlen(key), &res), TOASTYFS_OK, res);
    CHECK(res.version == version && res.size == size && res.data == NULL && res.timestamp > 1600000000000ULL);
    CHECK_STATUS(toastyfs_delete(tfs, key, (int)strlen(key), &res), TOASTYFS_OK, res);
    CHECK(res.version == version);
    CHECK_STATUS(toastyfs_get(tfs, key, (int)strlen(key), &res), TOASTYFS_NOT_FOUND, res);
    CHECK(res.data == NULL);
    toastyfs_result_free(&res);
    free(value);
    printf("round trip of %lu bytes: ok (%.2f s)\n", (unsigned long)size, now_s() - start);
}

static int roundtrip(void)
{
    ToastyFS *tfs = toastyfs_init((uint64_t)rand(), addr_list, addr_count);
    ToastyFS_Result res;
    char big_key[TOASTYFS_KEY_SIZE_MAX + 1];
    char binary_key[] = {'b', 0, 'i', 0, 'n', (char)0xff};
    uint64_t v1, v2;
    char *bad1[] = {"127.0.0.1"}, *bad2[] = {"127.0.0.1:0"}, *bad3[] = {"127.0.0.1:99999"}, *bad4[] = {"a:b:c"};
    char *bad5[] = {"127.0.0.1:8081", NULL};

    CHECK(tfs != NULL);
    if (tfs == NULL) return 2;
    CHECK(toastyfs_set_timeouts(tfs, 2000, 60000) == TOASTYFS_OK);
    memset(big_key, 'K', sizeof big_key);

    /* Bad addresses. */
    CHECK(toastyfs_init(1, bad1, 1) == NULL);
    CHECK(toastyfs_init(1, bad2, 1) == NULL);
    CHECK(toastyfs_init(1, bad3, 1) == NULL);
    CHECK(toastyfs_init(1, bad4, 1) == NULL);
    CHECK(toastyfs_init(1, bad5, 2) == NULL);
    CHECK(toastyfs_init(1, NULL, 1) == NULL);
    CHECK(toastyfs_init(1, addr_list, -3) == NULL);

    round_trip(tfs, 0, 1);
    round_trip(tfs, 1, 2);
    round_trip(tfs, 1 << 20, 3);
    round_trip(tfs, TOASTYFS_VALUE_SIZE_MAX, 4);

    /* Not found. */
    CHECK_STATUS(toastyfs_get(tfs, "missing", 7, &res), TOASTYFS_NOT_FOUND, res);
    CHECK_STATUS(toastyfs_stat(tfs, "missing", 7, &res), TOASTYFS_NOT_FOUND, res);
    CHECK_STATUS(toastyfs_delete(tfs, "missing", 7, &res), TOASTYFS_NOT_FOUND, res);
    CHECK(res.outcome_unknown == 0);

    /* Keys: any bytes, up to TOASTYFS_KEY_SIZE_MAX (1088). */
    CHECK_STATUS(toastyfs_put(tfs, binary_key, (int)sizeof binary_key, "bin", 3, &res), TOASTYFS_OK, res);
    CHECK_STATUS(toastyfs_get(tfs, binary_key, (int)sizeof binary_key, &res), TOASTYFS_OK, res);
    CHECK(res.data_len == 3 && res.data != NULL && memcmp(res.data, "bin", 3) == 0);
    toastyfs_result_free(&res);
    CHECK_STATUS(toastyfs_put(tfs, big_key, TOASTYFS_KEY_SIZE_MAX, "max", 3, &res), TOASTYFS_OK, res);
    CHECK_STATUS(toastyfs_get(tfs, big_key, TOASTYFS_KEY_SIZE_MAX, &res), TOASTYFS_OK, res);
    CHECK(res.data_len == 3);
    toastyfs_result_free(&res);

    /* Conditional writes. */
    CHECK_STATUS(toastyfs_put_if(tfs, "cas", 3, "one", 3, TOASTYFS_IF_ABSENT, 0, &res), TOASTYFS_OK, res);
    v1 = res.version;
    CHECK_STATUS(toastyfs_put_if(tfs, "cas", 3, "two", 3, TOASTYFS_IF_ABSENT, 0, &res), TOASTYFS_CONDITION_FAILED, res);
    CHECK(res.version == v1);
    CHECK_STATUS(toastyfs_put_if(tfs, "cas", 3, "two", 3, TOASTYFS_IF_VERSION, v1 + 1000, &res),
                 TOASTYFS_CONDITION_FAILED, res);
    CHECK(res.version == v1);
    CHECK_STATUS(toastyfs_put_if(tfs, "cas", 3, "two", 3, TOASTYFS_IF_VERSION, v1, &res), TOASTYFS_OK, res);
    v2 = res.version;
    CHECK(v2 > v1);
    CHECK_STATUS(toastyfs_put_if(tfs, "cas-absent", 10, "x", 1, TOASTYFS_IF_VERSION, 5, &res),
                 TOASTYFS_CONDITION_FAILED, res);
    CHECK(res.version == 0);
    CHECK_STATUS(toastyfs_delete_if(tfs, "cas", 3, v1, &res), TOASTYFS_CONDITION_FAILED, res);
    CHECK(res.version == v2);
    CHECK_STATUS(toastyfs_delete_if(tfs, "cas", 3, v2, &res), TOASTYFS_OK, res);
    CHECK(res.version == v2);
    CHECK_STATUS(toastyfs_delete_if(tfs, "cas", 3, v2, &res), TOASTYFS_NOT_FOUND, res);

    /* List, page by page. */
    CHECK_STATUS(toastyfs_put(tfs, "list/a", 6, "1", 1, &res), TOASTYFS_OK, res);
    CHECK_STATUS(toastyfs_put(tfs, "list/b", 6, "22", 2, &res), TOASTYFS_OK, res);
    CHECK_STATUS(toastyfs_put(tfs, "list/c", 6, "", 0, &res), TOASTYFS_OK, res);
    CHECK_STATUS(toastyfs_put(tfs, "lisu", 4, "x", 1, &res), TOASTYFS_OK, res);
    CHECK_STATUS(toastyfs_list(tfs, "list/", 5, NULL, 0, 2, &res), TOASTYFS_OK, res);
    CHECK(res.num_entries == 2 && res.truncated == 1);
    if (res.num_entries == 2) {
        CHECK(res.entries[0].key_len == 6 && strcmp(res.entries[0].key, "list/a") == 0 && res.entries[0].size == 1);
        CHECK(strcmp(res.entries[1].key, "list/b") == 0 && res.entries[1].size == 2 && res.entries[1].version > 0);
    }
    toastyfs_result_free(&res);
    CHECK_STATUS(toastyfs_list(tfs, "list/", 5, "list/b", 6, 2, &res), TOASTYFS_OK, res);
    CHECK(res.num_entries == 1 && res.truncated == 0);
    if (res.num_entries == 1) CHECK(strcmp(res.entries[0].key, "list/c") == 0 && res.entries[0].size == 0);
    toastyfs_result_free(&res);
    CHECK_STATUS(toastyfs_list(tfs, "nothing/", 8, "", 0, 1000, &res), TOASTYFS_OK, res);
    CHECK(res.num_entries == 0 && res.entries == NULL && res.truncated == 0);
    toastyfs_result_free(&res);

    /* Bad inputs on a live handle: errors, no crash, and the handle still works afterwards. (A value
     * above 16 MiB is no longer one: it is uploaded in blocks, tests/c_client_large.test.ts.) */
    CHECK_STATUS(toastyfs_put(tfs, NULL, 3, "x", 1, &res), TOASTYFS_INVALID_ARGUMENT, res);
    CHECK_STATUS(toastyfs_put(tfs, "k", -1, "x", 1, &res), TOASTYFS_INVALID_ARGUMENT, res);
    CHECK_STATUS(toastyfs_put(tfs, "k", 1, "x", -1, &res), TOASTYFS_INVALID_ARGUMENT, res);
    CHECK_STATUS(toastyfs_put(tfs, "k", 1, NULL, 1, &res), TOASTYFS_INVALID_ARGUMENT, res);
    CHECK_STATUS(toastyfs_put(tfs, big_key, TOASTYFS_KEY_SIZE_MAX + 1, "x", 1, &res), TOASTYFS_KEY_INVALID, res);
    CHECK_STATUS(toastyfs_put(tfs, "", 0, "x", 1, &res), TOASTYFS_KEY_INVALID, res);
    CHECK_STATUS(toastyfs_get(tfs, NULL, 1, &res), TOASTYFS_INVALID_ARGUMENT, res);
    CHECK_STATUS(toastyfs_get(tfs, "k", -7, &res), TOASTYFS_INVALID_ARGUMENT, res);
    CHECK_STATUS(toastyfs_get(tfs, big_key, TOASTYFS_KEY_SIZE_MAX + 1, &res), TOASTYFS_KEY_INVALID, res);
    CHECK_STATUS(toastyfs_delete(tfs, NULL, 1, &res), TOASTYFS_INVALID_ARGUMENT, res);
    CHECK_STATUS(toastyfs_delete(tfs, "k", -1, &res), TOASTYFS_INVALID_ARGUMENT, res);
    CHECK_STATUS(toastyfs_get(NULL, "k", 1, &res), TOASTYFS_INVALID_ARGUMENT, res);
    CHECK(toastyfs_put(tfs, "k", 1, "x", 1, NULL) == TOASTYFS_INVALID_ARGUMENT);
    CHECK_STATUS(toastyfs_put(tfs, "after-bad-inputs", 16, "fine", 4, &res), TOASTYFS_OK, res);
    CHECK_STATUS(toastyfs_get(tfs, "after-bad-inputs", 16, &res), TOASTYFS_OK, res);
    CHECK(res.data_len == 4 && res.data != NULL && strcmp(res.data, "fine") == 0);
    toastyfs_result_free(&res);

    toastyfs_free(tfs);
    printf("roundtrip: %s\n", failures == 0 ? "ok" : "FAILED");
    return failures == 0 ? 0 : 2;
}

static int stdin_has_line(void)
{
    struct pollfd p;
    p.fd = 0;
    p.events = POLLIN;
    p.revents = 0;
    return poll(&p, 1, 0) > 0;
}

static int failover(void)
{
    enum { value_size = 64 * 1024, max_keys = 100000 };
    ToastyFS *tfs = toastyfs_init(0, addr_list, addr_count);
    ToastyFS_Result res;
    char key[64];
    char *value;
    int count = 0, i, bad = 0;
    double slowest = 0;

    CHECK(tfs != NULL);
    if (tfs == NULL) return 2;
    toastyfs_set_timeouts(tfs, 1000, 20000);
    while (!stdin_has_line() && count < max_keys) {
        double start = now_s(), took;
        int code;
        value = pattern(value_size, (unsigned)count);
        snprintf(key, sizeof key, "failover/%d", count);
        code = toastyfs_put(tfs, key, (int)strlen(key), value, value_size, &res);
        free(value);
        took = now_s() - start;
        if (took > slowest) slowest = took;
        if (code != TOASTYFS_OK) {
            fprintf(stderr, "put %s failed: %d %s\n", key, code, res.message);
            failures++;
            break;
        }
        count++;
        printf("progress %d %.3f\n", count, took);
        fflush(stdout);
    }
    for (i = 0; i < count; i++) {
        int code;
        snprintf(key, sizeof key, "failover/%d", i);
        value = pattern(value_size, (unsigned)i);
        code = toastyfs_get(tfs, key, (int)strlen(key), &res);
        if (code != TOASTYFS_OK || res.data_len != value_size || memcmp(res.data, value, value_size) != 0) {
            fprintf(stderr, "get %s: %d %s\n", key, code, res.message);
            bad++;
        }
        toastyfs_result_free(&res);
        free(value);
    }
    CHECK(bad == 0);
    toastyfs_free(tfs);
    printf("failover: %d puts, all read back: %s, slowest put %.3f s\n", count, bad == 0 ? "yes" : "NO", slowest);
    return failures == 0 ? 0 : 2;
}

static int fake_error(void)
{
    ToastyFS *tfs = toastyfs_init(7, addr_list, addr_count);
    ToastyFS_Result res;
    int code, round;
    CHECK(tfs != NULL);
    if (tfs == NULL) return 2;
    toastyfs_set_timeouts(tfs, 200, 1200);
    for (round = 0; round < 2; round++) {
        code = toastyfs_put(tfs, "k", 1, "value", 5, &res);
        printf("put: %d (%s) unknown=%d %s\n", code, toastyfs_strerror(code), res.outcome_unknown, res.message);
        CHECK(code == TOASTYFS_PROTOCOL || code == TOASTYFS_NO_QUORUM);
        CHECK(code == res.status && res.data == NULL);
        /* Either registering failed (the put was never sent: its outcome is known) or the put
         * itself was sent and got no final answer (it may have happened). */
        CHECK(res.outcome_unknown == (strstr(res.message, "registering") == NULL));
        code = toastyfs_get(tfs, "k", 1, &res);
        printf("get: %d (%s) %s\n", code, toastyfs_strerror(code), res.message);
        CHECK(code == TOASTYFS_PROTOCOL || code == TOASTYFS_NO_QUORUM);
        CHECK(res.data == NULL && res.outcome_unknown == 0);
        toastyfs_result_free(&res);
        code = toastyfs_list(tfs, "", 0, "", 0, 10, &res);
        printf("list: %d (%s)\n", code, toastyfs_strerror(code));
        CHECK(code < 0 && res.entries == NULL);
        toastyfs_result_free(&res);
    }
    toastyfs_free(tfs);
    printf("fake-error: %s\n", failures == 0 ? "ok" : "FAILED");
    return failures == 0 ? 0 : 2;
}

static int fake_recover(void)
{
    ToastyFS *tfs = toastyfs_init(9, addr_list, addr_count);
    ToastyFS_Result res;
    CHECK(tfs != NULL);
    if (tfs == NULL) return 2;
    toastyfs_set_timeouts(tfs, 500, 20000);
    CHECK_STATUS(toastyfs_put(tfs, "hello", 5, "world", 5, &res), TOASTYFS_OK, res);
    CHECK(res.version == 1);
    CHECK_STATUS(toastyfs_get(tfs, "hello", 5, &res), TOASTYFS_OK, res);
    CHECK(res.data_len == 5 && res.data != NULL && strcmp(res.data, "world") == 0);
    toastyfs_result_free(&res);
    toastyfs_free(tfs);
    printf("fake-recover: %s\n", failures == 0 ? "ok" : "FAILED");
    return failures == 0 ? 0 : 2;
}

static int fake_evict(void)
{
    ToastyFS *tfs = toastyfs_init(11, addr_list, addr_count);
    ToastyFS_Result res;
    CHECK(tfs != NULL);
    if (tfs == NULL) return 2;
    toastyfs_set_timeouts(tfs, 500, 20000);
    CHECK_STATUS(toastyfs_put(tfs, "k", 1, "first", 5, &res), TOASTYFS_EVICTED, res);
    CHECK(res.outcome_unknown == 1);
    printf("evicted: %s\n", res.message);
    CHECK_STATUS(toastyfs_put(tfs, "k", 1, "second", 6, &res), TOASTYFS_OK, res);
    CHECK(res.outcome_unknown == 0);
    CHECK_STATUS(toastyfs_get(tfs, "k", 1, &res), TOASTYFS_OK, res);
    CHECK(res.data != NULL && strcmp(res.data, "second") == 0);
    toastyfs_result_free(&res);
    toastyfs_free(tfs);
    printf("fake-evict: %s\n", failures == 0 ? "ok" : "FAILED");
    return failures == 0 ? 0 : 2;
}

static int long_lived(void)
{
    ToastyFS *tfs = toastyfs_init(0, addr_list, addr_count);
    ToastyFS_Result res;
    char line[64];
    int code;
    CHECK(tfs != NULL);
    if (tfs == NULL) return 2;
    toastyfs_set_timeouts(tfs, 1000, 20000);
    CHECK_STATUS(toastyfs_put(tfs, "long/c", 6, "one", 3, &res), TOASTYFS_OK, res);
    printf("wrote %llu\n", (unsigned long long)res.version);
    fflush(stdout);
    if (fgets(line, sizeof line, stdin) == NULL) return 2;
    code = toastyfs_put(tfs, "long/c", 6, "two", 3, &res);
    printf("second put: %d (%s) %s\n", code, toastyfs_strerror(code), res.message);
    CHECK(code == TOASTYFS_OK);
    CHECK_STATUS(toastyfs_get(tfs, "long/c", 6, &res), TOASTYFS_OK, res);
    CHECK(res.data != NULL && strcmp(res.data, "two") == 0);
    toastyfs_result_free(&res);
    toastyfs_free(tfs);
    printf("long-lived: %s\n", failures == 0 ? "ok" : "FAILED");
    return failures == 0 ? 0 : 2;
}

static int reads(int count, const char *key)
{
    int i, key_len = (int)strlen(key);
    for (i = 0; i < count; i++) {
        ToastyFS *tfs = toastyfs_init(0, addr_list, addr_count);
        ToastyFS_Result res;
        CHECK(tfs != NULL);
        if (tfs == NULL) return 2;
        toastyfs_set_timeouts(tfs, 1000, 20000);
        switch (i % 3) {
        case 0: CHECK_STATUS(toastyfs_get(tfs, key, key_len, &res), TOASTYFS_OK, res); break;
        case 1: CHECK_STATUS(toastyfs_stat(tfs, key, key_len, &res), TOASTYFS_OK, res); break;
        default:
            CHECK_STATUS(toastyfs_list(tfs, key, key_len, "", 0, 10, &res), TOASTYFS_OK, res);
            CHECK(res.num_entries == 1);
        }
        toastyfs_result_free(&res);
        toastyfs_free(tfs);
    }
    printf("reads: %d by fresh clients, %s\n", count, failures == 0 ? "ok" : "FAILED");
    return failures == 0 ? 0 : 2;
}

/* Given a subset of a real cluster's addresses: the replicas answer wrong_cluster, at once. */
static int wrong_cluster(void)
{
    ToastyFS *tfs = toastyfs_init(13, addr_list, addr_count);
    ToastyFS_Result res;
    double started;
    CHECK(tfs != NULL);
    if (tfs == NULL) return 2;
    toastyfs_set_timeouts(tfs, 1000, 10000);
    started = now_s();
    CHECK_STATUS(toastyfs_put(tfs, "k", 1, "v", 1, &res), TOASTYFS_WRONG_CLUSTER, res);
    printf("put: %s (%.3f s)\n", res.message, now_s() - started);
    CHECK(strstr(res.message, "belongs to another cluster (its address list differs from yours: pass the same addresses as the replicas, in any order)") != NULL);
    CHECK(now_s() - started < 5.0);
    CHECK(res.outcome_unknown == 0);
    CHECK_STATUS(toastyfs_get(tfs, "k", 1, &res), TOASTYFS_WRONG_CLUSTER, res);
    toastyfs_result_free(&res);
    toastyfs_free(tfs);
    printf("wrong-cluster: %s\n", failures == 0 ? "ok" : "FAILED");
    return failures == 0 ? 0 : 2;
}

/*
 * Makes connects to 127.0.0.1:port get no answer, as a host that went away or a firewall that drops
 * does: a listener with a backlog of 0 holding one connection it never accepts, so the kernel drops
 * every further SYN (Linux). Waits (up to 5 s) for the port to be free: a replica just killed still
 * holds it until its process is gone. fds[0] and fds[1] are closed by the caller. 0, or -1.
 */
static int black_hole(int port, int fds[2])
{
    struct sockaddr_in at;
    struct pollfd p;
    double until = now_s() + 5;
    int one = 1, probe;

    memset(&at, 0, sizeof at);
    at.sin_family = AF_INET;
    at.sin_port = htons((uint16_t)port);
    at.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (;;) {
        fds[0] = socket(AF_INET, SOCK_STREAM, 0);
        if (fds[0] < 0) return -1;
        (void)setsockopt(fds[0], SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fds[0], (struct sockaddr *)&at, sizeof at) == 0 && listen(fds[0], 0) == 0) break;
        close(fds[0]);
        if (errno != EADDRINUSE || now_s() > until) return -1;
        (void)poll(NULL, 0, 1); /* the port frees when the killed process is reaped: look again */
    }
    fds[1] = socket(AF_INET, SOCK_STREAM, 0);
    if (fds[1] < 0 || connect(fds[1], (struct sockaddr *)&at, sizeof at) != 0) return -1;
    /* The queue is full now: a further connect must get no answer. */
    probe = socket(AF_INET, SOCK_STREAM, 0);
    if (probe < 0 || fcntl(probe, F_SETFL, O_NONBLOCK) != 0) return -1;
    if (connect(probe, (struct sockaddr *)&at, sizeof at) == 0 || errno != EINPROGRESS) {
        close(probe);
        fprintf(stderr, "black hole on port %d: a connect did not hang\n", port);
        return -1;
    }
    p.fd = probe;
    p.events = POLLOUT;
    p.revents = 0;
    one = poll(&p, 1, 200);
    close(probe);
    if (one != 0) {
        fprintf(stderr, "black hole on port %d: a connect was answered\n", port);
        return -1;
    }
    return 0;
}

/* The first put after kill -9 of the primary (docs/PROTOCOL.md §3.9: backups changing views keep
 * naming it; the client must not keep going back there). With hole_port, the dead primary's port is
 * made a black hole before the put, as if its host had gone away. */
static int resume(long pid, int fresh, int hole_port)
{
    char value[1024];
    ToastyFS *tfs = toastyfs_init(0, addr_list, addr_count);
    ToastyFS_Result res;
    double start, took;
    int i, hole[2] = {-1, -1};
    CHECK(tfs != NULL && pid > 1);
    if (tfs == NULL || pid <= 1) return 2;
    memset(value, 'r', sizeof value);
    toastyfs_set_timeouts(tfs, 1000, 20000);
    for (i = 0; i < 10; i++)
        CHECK_STATUS(toastyfs_put(tfs, "resume/before", 13, value, (int)sizeof value, &res), TOASTYFS_OK, res);
    if (failures > 0) return 2;
    if (fresh) {
        toastyfs_free(tfs);
        tfs = toastyfs_init(0, addr_list, addr_count);
        CHECK(tfs != NULL);
        if (tfs == NULL) return 2;
        toastyfs_set_timeouts(tfs, 1000, 20000);
    }
    start = now_s();
    if (kill((pid_t)pid, SIGKILL) != 0) {
        perror("kill");
        return 2;
    }
    if (hole_port > 0 && black_hole(hole_port, hole) != 0) {
        perror("black hole");
        return 2;
    }
    CHECK_STATUS(toastyfs_put(tfs, "resume/after", 12, value, (int)sizeof value, &res), TOASTYFS_OK, res);
    took = now_s() - start;
    printf("resume: the first put after kill -9 of the primary (%s client%s) took %.0f ms\n", fresh ? "a new" : "the same",
           hole_port > 0 ? ", its port a black hole" : "", took * 1000);
    toastyfs_free(tfs);
    for (i = 0; i < 2; i++)
        if (hole[i] >= 0) close(hole[i]);
    return failures == 0 ? 0 : 2;
}

/* A put by a new client to a cluster whose replica at 127.0.0.1:hole_port has gone away (a black
 * hole, made here first) while the others are still changing views. */
static int hole_put(int hole_port)
{
    int hole[2] = {-1, -1}, i;
    ToastyFS *tfs;
    ToastyFS_Result res;
    double start;
    if (black_hole(hole_port, hole) != 0) {
        perror("black hole");
        return 2;
    }
    tfs = toastyfs_init(0, addr_list, addr_count);
    CHECK(tfs != NULL);
    if (tfs == NULL) return 2;
    toastyfs_set_timeouts(tfs, 1000, 20000);
    start = now_s();
    CHECK_STATUS(toastyfs_put(tfs, "hole", 4, "value", 5, &res), TOASTYFS_OK, res);
    printf("hole-put: took %.0f ms\n", (now_s() - start) * 1000);
    toastyfs_free(tfs);
    for (i = 0; i < 2; i++)
        if (hole[i] >= 0) close(hole[i]);
    return failures == 0 ? 0 : 2;
}

int main(int argc, char **argv)
{
    if (argc >= 5 && strcmp(argv[1], "resume") == 0) {
        parse_addrs(argv[2]);
        return resume(atol(argv[3]), strcmp(argv[4], "fresh") == 0, argc >= 6 ? atoi(argv[5]) : 0);
    }
    if (argc == 4 && strcmp(argv[1], "hole-put") == 0) {
        parse_addrs(argv[2]);
        return hole_put(atoi(argv[3]));
    }
    if (argc != 3 && !(argc == 5 && strcmp(argv[1], "reads") == 0)) {
        fprintf(stderr, "usage: client_test roundtrip|failover|fake-error|fake-recover|fake-evict|long-lived|wrong-cluster host:port,...\n"
                        "       client_test reads host:port,... COUNT KEY\n"
                        "       client_test resume host:port,... PID same|fresh [HOLE_PORT]\n"
                        "       client_test hole-put host:port,... HOLE_PORT\n");
        return 2;
    }
    srand((unsigned)time(NULL));
    parse_addrs(argv[2]);
    if (strcmp(argv[1], "roundtrip") == 0) return roundtrip();
    if (strcmp(argv[1], "failover") == 0) return failover();
    if (strcmp(argv[1], "fake-error") == 0) return fake_error();
    if (strcmp(argv[1], "fake-recover") == 0) return fake_recover();
    if (strcmp(argv[1], "fake-evict") == 0) return fake_evict();
    if (strcmp(argv[1], "long-lived") == 0) return long_lived();
    if (strcmp(argv[1], "reads") == 0 && argc == 5) return reads(atoi(argv[3]), argv[4]);
    if (strcmp(argv[1], "wrong-cluster") == 0) return wrong_cluster();
    fprintf(stderr, "unknown mode %s\n", argv[1]);
    return 2;
}
