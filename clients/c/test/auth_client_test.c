/*
 * The C client against a cluster with a secret (docs/PROTOCOL.md §6), with mutual TLS (§6.8), or
 * both, run by tests/c_client.test.ts and tests/c_client_tls.test.ts, natively and under valgrind.
 * Exit status 0 when every check passed.
 *
 *   auth_client_test roundtrip ADDRS FILE   toastyfs_init_secret(FILE): put, get, list, stat, delete of
 *                                           small values and of a value large enough to be uploaded
 *   auth_client_test env ADDRS FILE         the same with toastyfs_init and TOASTYFS_SECRET_FILE=FILE
 *   auth_client_test refused ADDRS FILE|none  every call fails at once with TOASTYFS_AUTH_FAILED
 *   auth_client_test absent ADDRS FILE      the key the refused calls tried to write does not exist
 *   auth_client_test bad-tag ADDRS FILE     against a fake replica whose register reply is tagged right
 *                                           and every later reply wrong: the put fails with
 *                                           TOASTYFS_PROTOCOL, its reply never taken
 *   auth_client_test tls-files ADDRS none CERT KEY CA
 *                                           toastyfs_init_tls refuses the files with TOASTYFS_AUTH_FAILED
 *                                           (printed), and every call then fails the same way
 *
 * FILE is a secret or client key file, or none. Three more arguments CERT KEY CA (CERT and KEY may
 * be none: no client certificate) add TLS: toastyfs_init_tls after the init, or in mode env the
 * variables TOASTYFS_TLS_CERT, TOASTYFS_TLS_KEY and TOASTYFS_TLS_CA.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdlib.h>

#include "client_support.h"

#define REFUSED_KEY "auth/refused"
/* Above the 4 MiB block size: an upload of two blocks, each frame tagged and its tail sent apart. */
#define LARGE_SIZE (5u * 1024u * 1024u + 123u)

/* An argument, or NULL for "none". */
static const char *optional(const char *arg) { return strcmp(arg, "none") == 0 ? NULL : arg; }

/* tls: NULL, or CERT KEY CA. */
static ToastyFS *open_handle(const char *mode, const char *file, char **tls)
{
    char error[400];
    ToastyFS *tfs;
    if (strcmp(mode, "env") == 0) {
        if (optional(file) != NULL && setenv("TOASTYFS_SECRET_FILE", file, 1) != 0) return NULL;
        if (tls != NULL && (setenv("TOASTYFS_TLS_CERT", tls[0], 1) != 0 || setenv("TOASTYFS_TLS_KEY", tls[1], 1) != 0 ||
                            setenv("TOASTYFS_TLS_CA", tls[2], 1) != 0))
            return NULL;
        return toastyfs_init(7, addr_list, addr_count);
    }
    tfs = toastyfs_init_secret(7, addr_list, addr_count, optional(file), error, sizeof error);
    if (tfs == NULL) fprintf(stderr, "toastyfs_init_secret: %s\n", error);
    if (tfs != NULL && tls != NULL && strcmp(mode, "tls-files") != 0) {
        int status = toastyfs_init_tls(tfs, optional(tls[0]), optional(tls[1]), tls[2], error, sizeof error);
        CHECK(status == TOASTYFS_OK);
        if (status != TOASTYFS_OK) fprintf(stderr, "toastyfs_init_tls: %d %s\n", status, error);
    }
    return tfs;
}

/* toastyfs_init_tls refuses the files: TOASTYFS_AUTH_FAILED, the reason printed, and every call then
 * fails the same way at once (never over plain TCP). */
static void tls_files(ToastyFS *tfs, char **tls)
{
    char error[400];
    ToastyFS_Result res;
    CHECK(tls != NULL);
    if (tls == NULL) return;
    CHECK(toastyfs_init_tls(tfs, optional(tls[0]), optional(tls[1]), tls[2], error, sizeof error) ==
          TOASTYFS_AUTH_FAILED);
    printf("toastyfs_init_tls: %s\n", error);
    CHECK_STATUS(toastyfs_put(tfs, REFUSED_KEY, (int)strlen(REFUSED_KEY), "x", 1, &res), TOASTYFS_AUTH_FAILED, res);
    CHECK(strstr(res.message, error) != NULL);
    toastyfs_result_free(&res);
}

static void roundtrip(ToastyFS *tfs, const char *prefix)
{
    ToastyFS_Result res;
    char key[64], key2[64];
    char *large = pattern(LARGE_SIZE, 3);
    uint64_t version;
    int i;

    (void)snprintf(key, sizeof key, "%s/small", prefix);
    (void)snprintf(key2, sizeof key2, "%s/large", prefix);
    CHECK_STATUS(toastyfs_put(tfs, key, (int)strlen(key), "secret value", 12, &res), TOASTYFS_OK, res);
    version = res.version;
    CHECK(version > 0);
    toastyfs_result_free(&res);
    /* Several operations on the same connections: the sequence numbers advance on both sides. */
    for (i = 0; i < 5; i++) {
        CHECK_STATUS(toastyfs_get(tfs, key, (int)strlen(key), &res), TOASTYFS_OK, res);
        CHECK(res.data_len == 12 && memcmp(res.data, "secret value", 12) == 0 && res.version == version);
        toastyfs_result_free(&res);
    }
    CHECK(large != NULL);
    if (large != NULL) {
        CHECK_STATUS(toastyfs_put(tfs, key2, (int)strlen(key2), large, (int)LARGE_SIZE, &res), TOASTYFS_OK, res);
        toastyfs_result_free(&res);
        CHECK_STATUS(toastyfs_get(tfs, key2, (int)strlen(key2), &res), TOASTYFS_OK, res);
        CHECK(res.data_len == (int)LARGE_SIZE && res.data != NULL && memcmp(res.data, large, LARGE_SIZE) == 0);
        toastyfs_result_free(&res);
        free(large);
    }
    CHECK_STATUS(toastyfs_list(tfs, prefix, (int)strlen(prefix), NULL, 0, 10, &res), TOASTYFS_OK, res);
    CHECK(res.num_entries == 2);
    toastyfs_result_free(&res);
    CHECK_STATUS(toastyfs_delete(tfs, key, (int)strlen(key), &res), TOASTYFS_OK, res);
    toastyfs_result_free(&res);
    CHECK_STATUS(toastyfs_delete(tfs, key2, (int)strlen(key2), &res), TOASTYFS_OK, res);
    toastyfs_result_free(&res);
    CHECK_STATUS(toastyfs_stat(tfs, key, (int)strlen(key), &res), TOASTYFS_NOT_FOUND, res);
    toastyfs_result_free(&res);
}

/* Each call fails with TOASTYFS_AUTH_FAILED, says so, and does not wait for the operation timeout. */
static void refused(ToastyFS *tfs)
{
    ToastyFS_Result res;
    double start;

    start = now_s();
    CHECK_STATUS(toastyfs_put(tfs, REFUSED_KEY, (int)strlen(REFUSED_KEY), "x", 1, &res), TOASTYFS_AUTH_FAILED, res);
    CHECK(now_s() - start < 3.0);
    CHECK(strncmp(res.message, "authentication failed: ", 23) == 0);
    printf("put: %s\n", res.message);
    toastyfs_result_free(&res);
    start = now_s();
    CHECK_STATUS(toastyfs_get(tfs, REFUSED_KEY, (int)strlen(REFUSED_KEY), &res), TOASTYFS_AUTH_FAILED, res);
    CHECK(now_s() - start < 3.0);
    toastyfs_result_free(&res);
    CHECK_STATUS(toastyfs_list(tfs, "", 0, NULL, 0, 10, &res), TOASTYFS_AUTH_FAILED, res);
    toastyfs_result_free(&res);
    CHECK(strstr(toastyfs_strerror(TOASTYFS_AUTH_FAILED), "authentication failed") != NULL);
}

int main(int argc, char **argv)
{
    ToastyFS *tfs;
    ToastyFS_Result res;
    const char *mode;

    if (argc != 4 && argc != 7) {
        fprintf(stderr, "usage: auth_client_test roundtrip|env|refused|absent|bad-tag|tls-files ADDRS FILE|none "
                        "[CERT|none KEY|none CA]\n");
        return 2;
    }
    mode = argv[1];
    parse_addrs(argv[2]);
    tfs = open_handle(mode, argv[3], argc == 7 ? argv + 4 : NULL);
    CHECK(tfs != NULL);
    if (tfs == NULL) return check_report("auth_client_test");
    /* Short enough that a refused call waiting for the operation timeout would fail the time checks. */
    CHECK(toastyfs_set_timeouts(tfs, 1000, 10000) == TOASTYFS_OK);
    if (strcmp(mode, "roundtrip") == 0 || strcmp(mode, "env") == 0) {
        roundtrip(tfs, mode);
    } else if (strcmp(mode, "refused") == 0) {
        refused(tfs);
    } else if (strcmp(mode, "bad-tag") == 0) {
        CHECK_STATUS(toastyfs_put(tfs, "k", 1, "v", 1, &res), TOASTYFS_PROTOCOL, res);
        CHECK(strstr(res.message, "a frame whose tag does not verify") != NULL);
        CHECK(strstr(res.message, "registering") == NULL); /* the register's reply was taken */
        printf("put: %s\n", res.message);
        toastyfs_result_free(&res);
    } else if (strcmp(mode, "tls-files") == 0) {
        tls_files(tfs, argc == 7 ? argv + 4 : NULL);
    } else if (strcmp(mode, "absent") == 0) {
        CHECK_STATUS(toastyfs_stat(tfs, REFUSED_KEY, (int)strlen(REFUSED_KEY), &res), TOASTYFS_NOT_FOUND, res);
        toastyfs_result_free(&res);
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        failures++;
    }
    toastyfs_free(tfs);
    return check_report("auth_client_test");
}
