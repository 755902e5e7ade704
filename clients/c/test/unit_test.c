/*
 * Unit tests of the C client that need no cluster: xxHash64 and the wire codec against the vectors
 * of docs/PROTOCOL.md, address parsing and the cluster id, and argument validation of every API
 * call. Exit status 0 when every check passed, 2 otherwise.
 *
 *   unit_test                run every test
 *   unit_test xxh64-prefixes print xxh64 of every prefix (0..300 bytes) of stdin, then of all of it,
 *                            one hex value per line (tests/c_client.test.ts compares with Bun's)
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../tfs_internal.h"

#include "check.h"

static const uint64_t CLUSTER = 0x0123456789abcdefULL;
static const uint64_t CLIENT = 0xfedcba9876543210ULL;

static void test_xxh64(void)
{
    uint8_t seq[32], zeros[24];
    const char *fox = "The quick brown fox jumps over the lazy dog";
    int i;
    for (i = 0; i < 32; i++) seq[i] = (uint8_t)i;
    memset(zeros, 0, sizeof zeros);
    CHECK_EQ_U64(tfs_xxh64("", 0, 0), 0xef46db3751d8e999ULL);
    CHECK_EQ_U64(tfs_xxh64(NULL, 0, 0), 0xef46db3751d8e999ULL);
    CHECK_EQ_U64(tfs_xxh64("a", 1, 0), 0xd24ec4f1a98c6e5bULL);
    CHECK_EQ_U64(tfs_xxh64("abc", 3, 0), 0x44bc2cf5ad770999ULL);
    CHECK_EQ_U64(tfs_xxh64("hello", 5, 0), 0x26c7827d889f6da3ULL);
    CHECK_EQ_U64(tfs_xxh64("world", 5, 0), 0xe778fbfe66ee51efULL);
    CHECK_EQ_U64(tfs_xxh64(fox, strlen(fox), 0), 0x0b242d361fda71bcULL);
    CHECK_EQ_U64(tfs_xxh64(seq, 32, 0), 0xcbf59c5116ff32b4ULL);
    CHECK_EQ_U64(tfs_xxh64(zeros, 24, 0), 0xbb3302e8a9608868ULL);
}

static void test_addresses(void)
{
    tfs_address a;
    tfs_address sorted[TOASTYFS_REPLICAS_MAX];
    uint64_t cluster = 0;
    char long_host[300];
    char *good[] = {"127.0.0.1:8083", "127.0.0.1:8081", "127.0.0.1:8082"};
    char *dup[] = {"127.0.0.1:8081", " 127.0.0.1:08081 "};
    char *textual[] = {"10.0.0.2:80", "10.0.0.10:80"};
    char *bad_one[] = {"127.0.0.1:8081", "127.0.0.1"};
    char *many[16];
    const char *bad[] = {"", "   ", "127.0.0.1", "127.0.0.1:", ":8081", "127.0.0.1:0", "127.0.0.1:65536",
                         "127.0.0.1:123456", "127.0.0.1:80x", "127.0.0.1:-1", "a b:80", "[::1]", "[::1]8081",
                         "[zz]:80", "[]:80", "host:80:90", "host:+80", "h\xc3\xa9:80", "[::1]:"};
    size_t i;

    CHECK(tfs_parse_address("127.0.0.1:8081", &a) == 0 && a.port == 8081 && strcmp(a.host, "127.0.0.1") == 0 &&
          strcmp(a.text, "127.0.0.1:8081") == 0);
    CHECK(tfs_parse_address("  my-host.example_1:1\n", &a) == 0 && a.port == 1 &&
          strcmp(a.text, "my-host.example_1:1") == 0);
    CHECK(tfs_parse_address("[::1]:8081", &a) == 0 && strcmp(a.host, "::1") == 0 && strcmp(a.text, "[::1]:8081") == 0);
    CHECK(tfs_parse_address("[1.2.3.4]:80", &a) == 0 && strcmp(a.text, "1.2.3.4:80") == 0);
    CHECK(tfs_parse_address("h:08081", &a) == 0 && strcmp(a.text, "h:8081") == 0);
    CHECK(tfs_parse_address("h:65535", &a) == 0 && a.port == 65535);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int r = tfs_parse_address(bad[i], &a);
        if (r == 0) fprintf(stderr, "accepted bad address \"%s\"\n", bad[i]);
        CHECK(r != 0);
    }
    CHECK(tfs_parse_address(NULL, &a) != 0);
    memset(long_host, 'h', sizeof long_host);
    strcpy(long_host + 256, ":80"); /* a 256-character host */
    CHECK(tfs_parse_address(long_host, &a) != 0);
    strcpy(long_host + 255, ":80"); /* 255 characters: the maximum */
    CHECK(tfs_parse_address(long_host, &a) == 0);

    /* PROTOCOL §3.1: the dev cluster's id, whatever the order given. */
    CHECK(tfs_membership(good, 3, sorted, &cluster) == 0);
    CHECK_EQ_U64(cluster, 0xd39adf00e3ddf7abULL);
    CHECK(strcmp(sorted[0].text, "127.0.0.1:8081") == 0 && strcmp(sorted[2].text, "127.0.0.1:8083") == 0);
    /* Textual order: 10.0.0.10 sorts before 10.0.0.2. */
    CHECK(tfs_membership(textual, 2, sorted, &cluster) == 0 && strcmp(sorted[0].text, "10.0.0.10:80") == 0);
    CHECK(tfs_membership(dup, 2, sorted, &cluster) != 0);
    CHECK(tfs_membership(bad_one, 2, sorted, &cluster) != 0);
    CHECK(tfs_membership(good, 0, sorted, &cluster) != 0);
    CHECK(tfs_membership(NULL, 3, sorted, &cluster) != 0);
    for (i = 0; i < 16; i++) {
        many[i] = (char *)malloc(32);
        snprintf(many[i], 32, "127.0.0.1:%u", (unsigned)(9000 + i));
    }
    CHECK(tfs_membership(many, 15, sorted, &cluster) == 0);
    CHECK(tfs_membership(many, 16, sorted, &cluster) != 0);
    for (i = 0; i < 16; i++) free(many[i]);
}

static const char register_request[] =
    "0000  ce 84 47 51 52 2d 59 25 99 e9 d8 51 37 db 46 ef\n"
    "0010  ef cd ab 89 67 45 23 01 00 00 00 00 00 00 00 00\n"
    "0020  10 32 54 76 98 ba dc fe 00 00 00 00 00 00 00 00\n"
    "0030  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00\n"
    "0040  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00\n"
    "0050  00 00 00 00 00 00 00 00 54 46 53 31 80 00 00 00\n"
    "0060  00 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00\n"
    "0070  01 00 03 ff 01 00 00 00 00 00 00 00 00 00 00 00\n";

static const char register_reply[] =
    "0000  3b 0b 98 55 82 24 90 fb 99 e9 d8 51 37 db 46 ef\n"
    "0010  ef cd ab 89 67 45 23 01 00 00 00 00 00 00 00 00\n"
    "0020  10 32 54 76 98 ba dc fe 00 00 00 00 00 00 00 00\n"
    "0030  01 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00\n"
    "0040  2c 69 e5 cf 8b 01 00 00 00 00 00 00 00 00 00 00\n"
    "0050  00 00 00 00 00 00 00 00 54 46 53 31 80 00 00 00\n"
    "0060  00 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00\n"
    "0070  01 00 06 00 01 00 03 00 01 00 00 00 00 00 00 00\n";

static const char put_request[] =
    "0000  66 77 8e a2 92 9f 75 a9 a1 ab e9 36 77 63 bd e1\n"
    "0010  ef cd ab 89 67 45 23 01 00 00 00 00 00 00 00 00\n"
    "0020  10 32 54 76 98 ba dc fe 00 00 00 00 00 00 00 00\n"
    "0030  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00\n"
    "0040  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00\n"
    "0050  00 00 00 00 00 00 00 00 54 46 53 31 9a 00 00 00\n"
    "0060  00 00 00 00 00 00 00 00 02 00 00 00 00 00 00 00\n"
    "0070  01 00 03 ff 02 00 00 00 01 00 00 00 00 00 00 00\n"
    "0080  05 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00\n"
    "0090  68 65 6c 6c 6f 77 6f 72 6c 64\n";

static const char put_reply[] =
    "0000  ff 37 dd 57 81 af b6 25 95 99 a4 a2 17 cb 29 9f\n"
    "0010  ef cd ab 89 67 45 23 01 00 00 00 00 00 00 00 00\n"
    "0020  10 32 54 76 98 ba dc fe 00 00 00 00 00 00 00 00\n"
    "0030  02 00 00 00 00 00 00 00 02 00 00 00 00 00 00 00\n"
    "0040  2d 69 e5 cf 8b 01 00 00 00 00 00 00 00 00 00 00\n"
    "0050  00 00 00 00 00 00 00 00 54 46 53 31 88 00 00 00\n"
    "0060  00 00 00 00 00 00 00 00 02 00 00 00 00 00 00 00\n"
    "0070  01 00 06 00 02 00 03 00 01 00 00 00 00 00 00 00\n"
    "0080  01 00 00 00 00 00 00 00\n";

static const char get_reply_body[] =
    "0000  01 00 00 00 00 00 00 00 2d 69 e5 cf 8b 01 00 00\n"
    "0010  05 00 00 00 00 00 00 00 ef 51 ee 66 fe fb 78 e7\n"
    "0020  77 6f 72 6c 64\n";

static const char not_primary_reply[] =
    "0000  94 fc ae 43 31 8b ea da 99 e9 d8 51 37 db 46 ef\n"
    "0010  ef cd ab 89 67 45 23 01 00 00 00 00 00 00 00 00\n"
    "0020  10 32 54 76 98 ba dc fe 00 00 00 00 00 00 00 00\n"
    "0030  00 00 00 00 00 00 00 00 02 00 00 00 00 00 00 00\n"
    "0040  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00\n"
    "0050  00 00 00 00 00 00 00 00 54 46 53 31 80 00 00 00\n"
    "0060  00 00 00 00 00 00 00 00 04 00 00 00 00 00 00 00\n"
    "0070  01 00 06 01 03 07 03 00 01 00 00 00 00 00 00 00\n";

static const char list_reply_body[] =
    "0000  01 00 00 00 01 00 00 00 04 00 00 00 00 00 00 00\n"
    "0010  a7 69 e5 cf 8b 01 00 00 00 00 00 00 00 00 00 00\n"
    "0020  99 e9 d8 51 37 db 46 ef 03 00 61 2f 62\n";

/* Re-seals a header after a field was changed, so only the change itself is tested. */
static void reseal(uint8_t *h) { tfs_put_u64(h, tfs_xxh64(h + 8, 120, 0)); }

static void test_requests(void)
{
    uint8_t expected[256], msg[256];
    size_t n;

    n = parse_dump(register_request, expected, sizeof expected);
    CHECK(n == 128);
    tfs_request_header(msg, CLUSTER, CLIENT, 0, 1, TFS_OP_REGISTER);
    tfs_seal_body(msg, 0);
    tfs_seal_header(msg, 0);
    CHECK(memcmp(msg, expected, 128) == 0);
    CHECK_EQ_U64(tfs_get_u64(msg), 0x25592d52514784ceULL);

    n = parse_dump(put_request, expected, sizeof expected);
    CHECK(n == 154);
    tfs_request_header(msg, CLUSTER, CLIENT, 1, 2, TFS_OP_PUT);
    tfs_key_request(msg + 128, "hello", 5, 0, 0, "world", 5);
    tfs_seal_body(msg, 26);
    tfs_seal_header(msg, 0);
    CHECK(memcmp(msg, expected, 154) == 0);
    CHECK_EQ_U64(tfs_get_u64(msg + 8), 0xe1bd637736e9aba1ULL);
    CHECK_EQ_U64(tfs_get_u64(msg), 0xa9759f92a28e7766ULL);

    /* §5.5: the get request body for "hello". */
    tfs_key_request(msg, "hello", 5, 0, 0, NULL, 0);
    CHECK_EQ_U64(tfs_xxh64(msg, 21, 0), 0x698506e36dc78e20ULL);

    /* A list request: prefix "a/", after "a/1", limit 10. */
    tfs_list_request(msg, "a/", 2, "a/1", 3, 10);
    CHECK(tfs_get_u16(msg) == 2 && tfs_get_u16(msg + 2) == 3 && tfs_get_u32(msg + 4) == 10);
    CHECK(tfs_get_u64(msg + 8) == 0 && memcmp(msg + 16, "a/a/1", 5) == 0);
}

static void test_replies(void)
{
    uint8_t f[256], g[256];
    uint32_t size = 0;
    uint64_t version = 0;
    size_t n;
    tfs_object_info info;
    ToastyFS_Result res;

    n = parse_dump(register_reply, f, sizeof f);
    CHECK(n == 128);
    CHECK(tfs_check_header(f, CLUSTER, &size) == TFS_FRAME_OK && size == 128);
    CHECK(tfs_check_body(f, f + 128, 0) == TFS_FRAME_OK);
    CHECK(tfs_get_u64(f + TFS_OFF_SESSION) == 1 && f[TFS_OFF_COMMAND] == TFS_COMMAND_REPLY && f[TFS_OFF_REPLICA] == 0);
    CHECK(tfs_check_header(f, CLUSTER + 1, &size) == TFS_FRAME_CLUSTER);

    n = parse_dump(put_reply, f, sizeof f);
    CHECK(n == 136);
    CHECK(tfs_check_header(f, CLUSTER, &size) == TFS_FRAME_OK && size == 136);
    CHECK(tfs_check_body(f, f + 128, 8) == TFS_FRAME_OK);
    CHECK(tfs_read_version(f + 128, 8, &version) == 0 && version == 1);
    CHECK(tfs_read_version(f + 128, 7, &version) != 0);
    CHECK(tfs_read_version(f + 128, 9, &version) != 0);
    /* Every corrupted body byte fails the body checksum. */
    memcpy(g, f, n);
    g[130] ^= 1;
    CHECK(tfs_check_body(g, g + 128, 8) == TFS_FRAME_CHECKSUM_BODY);

    /* Each validation step of §1.5, on a copy of the put reply. */
    memcpy(g, f, n);
    g[TFS_OFF_MAGIC] ^= 1;
    CHECK(tfs_check_header(g, CLUSTER, &size) == TFS_FRAME_MAGIC);
    memcpy(g, f, n);
    g[TFS_OFF_PROTOCOL] = 2;
    CHECK(tfs_check_header(g, CLUSTER, &size) == TFS_FRAME_PROTOCOL);
    memcpy(g, f, n);
    g[TFS_OFF_VIEW] = 1; /* any covered byte */
    CHECK(tfs_check_header(g, CLUSTER, &size) == TFS_FRAME_CHECKSUM_HEADER);
    memcpy(g, f, n);
    g[0] ^= 0x80; /* the checksum itself */
    CHECK(tfs_check_header(g, CLUSTER, &size) == TFS_FRAME_CHECKSUM_HEADER);
    memcpy(g, f, n);
    tfs_put_u32(g + TFS_OFF_SIZE, 127);
    reseal(g);
    CHECK(tfs_check_header(g, CLUSTER, &size) == TFS_FRAME_SIZE);
    tfs_put_u32(g + TFS_OFF_SIZE, TFS_MESSAGE_SIZE_MAX + 1);
    reseal(g);
    CHECK(tfs_check_header(g, CLUSTER, &size) == TFS_FRAME_SIZE);
    tfs_put_u32(g + TFS_OFF_SIZE, 0xffffffffu);
    reseal(g);
    CHECK(tfs_check_header(g, CLUSTER, &size) == TFS_FRAME_SIZE);
    tfs_put_u32(g + TFS_OFF_SIZE, TFS_MESSAGE_SIZE_MAX);
    reseal(g);
    CHECK(tfs_check_header(g, CLUSTER, &size) == TFS_FRAME_OK && size == TFS_MESSAGE_SIZE_MAX);
    memcpy(g, f, n);
    tfs_put_u64(g + TFS_OFF_TIMESTAMP, TFS_U53);
    reseal(g);
    CHECK(tfs_check_header(g, CLUSTER, &size) == TFS_FRAME_FIELD);
    tfs_put_u64(g + TFS_OFF_TIMESTAMP, TFS_U53 - 1);
    reseal(g);
    CHECK(tfs_check_header(g, CLUSTER, &size) == TFS_FRAME_OK);
    memcpy(g, f, n);
    tfs_put_u64(g + TFS_OFF_SESSION, ~0ULL);
    reseal(g);
    CHECK(tfs_check_header(g, CLUSTER, &size) == TFS_FRAME_FIELD);
    memcpy(g, f, n);
    g[TFS_OFF_COMMAND] = 0;
    reseal(g);
    CHECK(tfs_check_header(g, CLUSTER, &size) == TFS_FRAME_COMMAND);
    g[TFS_OFF_COMMAND] = TFS_COMMAND_MAX + 1;
    reseal(g);
    CHECK(tfs_check_header(g, CLUSTER, &size) == TFS_FRAME_COMMAND);
    memcpy(g, f, n);
    g[TFS_OFF_REPLICA] = 15;
    reseal(g);
    CHECK(tfs_check_header(g, CLUSTER, &size) == TFS_FRAME_REPLICA);
    g[TFS_OFF_REPLICA] = 255;
    reseal(g);
    CHECK(tfs_check_header(g, CLUSTER, &size) == TFS_FRAME_OK);

    n = parse_dump(not_primary_reply, f, sizeof f);
    CHECK(n == 128);
    CHECK(tfs_check_header(f, CLUSTER, &size) == TFS_FRAME_OK);
    CHECK(f[TFS_OFF_RESULT] == TFS_RESULT_NOT_PRIMARY && f[TFS_OFF_REPLICA] == 1 && tfs_get_u32(f + TFS_OFF_VIEW) == 0);
    CHECK(tfs_get_u32(f + TFS_OFF_REQUEST) == 4 && f[TFS_OFF_OPERATION] == TFS_OP_GET);

    n = parse_dump(get_reply_body, f, sizeof f);
    CHECK(n == 37);
    CHECK(tfs_read_object_info(f, &info) == 0);
    CHECK(info.version == 1 && info.timestamp == 1700000000301ULL && info.size == 5);
    CHECK_EQ_U64(info.checksum, tfs_xxh64(f + 32, 5, 0));
    tfs_put_u64(f, 0); /* version 0 is not a version */
    CHECK(tfs_read_object_info(f, &info) != 0);
    tfs_put_u64(f, 1);
    tfs_put_u64(f + 16, TFS_U53);
    CHECK(tfs_read_object_info(f, &info) != 0);

    n = parse_dump(list_reply_body, f, sizeof f);
    CHECK(n == 45);
    memset(&res, 0, sizeof res);
    CHECK(tfs_read_list(f, n, &res) == 0);
    CHECK(res.num_entries == 1 && res.truncated == 1 && res.entries != NULL);
    if (res.num_entries == 1) {
        CHECK(res.entries[0].key_len == 3 && strcmp(res.entries[0].key, "a/b") == 0);
        CHECK(res.entries[0].version == 4 && res.entries[0].size == 0 && res.entries[0].timestamp == 1700000000423ULL);
        CHECK_EQ_U64(res.entries[0].checksum, 0xef46db3751d8e999ULL);
    }
    toastyfs_result_free(&res);
    CHECK(res.entries == NULL && res.num_entries == 0);
    /* Malformed list bodies: every truncation, a trailing byte, a count too high, key size 0. */
    for (size = 0; size < n; size++) {
        memset(&res, 0, sizeof res);
        CHECK(tfs_read_list(f, size, &res) != 0 && res.entries == NULL);
    }
    f[n] = 0;
    CHECK(tfs_read_list(f, n + 1, &res) != 0);
    memcpy(g, f, n);
    tfs_put_u32(g, 2);
    CHECK(tfs_read_list(g, n, &res) != 0);
    tfs_put_u32(g, 0xffffffffu);
    CHECK(tfs_read_list(g, n, &res) != 0);
    memcpy(g, f, n);
    tfs_put_u16(g + 40, 0);
    CHECK(tfs_read_list(g, 42, &res) != 0);
    memcpy(g, f, n);
    tfs_put_u16(g + 40, 4);
    CHECK(tfs_read_list(g, n, &res) != 0);
    memcpy(g, f, n);
    g[4] = 2; /* truncated is 0 or 1 */
    CHECK(tfs_read_list(g, n, &res) != 0);
    /* An empty list. */
    memset(g, 0, 8);
    memset(&res, 0, sizeof res);
    CHECK(tfs_read_list(g, 8, &res) == 0 && res.num_entries == 0 && res.entries == NULL && res.truncated == 0);
}

/* Every call with bad arguments returns an error at once, without touching the network: the
 * handle points at a port nothing listens on, with short timeouts, so a call that went to the
 * network would come back TOASTYFS_NO_QUORUM instead of the expected code. */
static void test_arguments(void)
{
    char a1[] = "127.0.0.1:1", a2[] = "127.0.0.1:2", a3[] = "127.0.0.1:3";
    char *addrs[] = {a1, a2, a3};
    char *bad_addrs[] = {a1, "127.0.0.1"};
    char *bad_port[] = {a1, "127.0.0.1:99999"};
    char *null_addr[] = {a1, NULL};
    char key[TOASTYFS_KEY_SIZE_MAX + 1];
    ToastyFS_Result res;
    ToastyFS *tfs, *other;
    int64_t start;
    int code;

    memset(key, 'k', sizeof key);
    CHECK(toastyfs_init(1, NULL, 3) == NULL);
    CHECK(toastyfs_init(1, addrs, 0) == NULL);
    CHECK(toastyfs_init(1, addrs, -1) == NULL);
    CHECK(toastyfs_init(1, addrs, 16) == NULL);
    CHECK(toastyfs_init(1, bad_addrs, 2) == NULL);
    CHECK(toastyfs_init(1, bad_port, 2) == NULL);
    CHECK(toastyfs_init(1, null_addr, 2) == NULL);
    tfs = toastyfs_init(42, addrs, 3);
    other = toastyfs_init(42, addrs, 3);
    CHECK(tfs != NULL && other != NULL);
    if (tfs == NULL || other == NULL) return;
    /* The same caller id gives different client ids (64 random bits mixed in). */
    CHECK(toastyfs_client_id(tfs) != toastyfs_client_id(other) && toastyfs_client_id(tfs) != 0);
    CHECK(toastyfs_client_id(NULL) == 0);
    toastyfs_free(other);
    CHECK(toastyfs_set_timeouts(tfs, 0, 100) == TOASTYFS_INVALID_ARGUMENT);
    CHECK(toastyfs_set_timeouts(tfs, 100, -1) == TOASTYFS_INVALID_ARGUMENT);
    CHECK(toastyfs_set_timeouts(NULL, 100, 100) == TOASTYFS_INVALID_ARGUMENT);
    CHECK(toastyfs_set_timeouts(tfs, 100, 300) == TOASTYFS_OK);

#define EXPECT(call, expected)                                                                                          \
    do {                                                                                                               \
        memset(&res, 0x5a, sizeof res);                                                                                \
        code = (call);                                                                                                 \
        if (code != (expected)) fprintf(stderr, "%s returned %d (%s)\n", #call, code, res.message);                    \
        CHECK(code == (expected) && res.status == (expected) && res.data == NULL && res.entries == NULL);                 \
        CHECK(res.message[0] != '\0' && strlen(res.message) < sizeof res.message);                                    \
        toastyfs_result_free(&res);                                                                                    \
    } while (0)

    EXPECT(toastyfs_put(NULL, "k", 1, "v", 1, &res), TOASTYFS_INVALID_ARGUMENT);
    EXPECT(toastyfs_put(tfs, NULL, 1, "v", 1, &res), TOASTYFS_INVALID_ARGUMENT);
    EXPECT(toastyfs_put(tfs, "k", -1, "v", 1, &res), TOASTYFS_INVALID_ARGUMENT);
    EXPECT(toastyfs_put(tfs, "k", 0, "v", 1, &res), TOASTYFS_KEY_INVALID);
    EXPECT(toastyfs_put(tfs, key, TOASTYFS_KEY_SIZE_MAX + 1, "v", 1, &res), TOASTYFS_KEY_INVALID);
    EXPECT(toastyfs_put(tfs, "k", 1, NULL, 1, &res), TOASTYFS_INVALID_ARGUMENT);
    EXPECT(toastyfs_put(tfs, "k", 1, "v", -1, &res), TOASTYFS_INVALID_ARGUMENT);
    {
        /* The streaming calls: bad arguments and options are refused before anything is sent. */
        const char *upper[] = {"Bad"}, *values[] = {"v"};
        ToastyFS_PutOptions o;
        memset(&o, 0, sizeof o);
        EXPECT(toastyfs_put_stream(tfs, "k", 1, NULL, NULL, NULL, &res), TOASTYFS_INVALID_ARGUMENT);
        EXPECT(toastyfs_put_stream(NULL, "k", 1, NULL, NULL, NULL, &res), TOASTYFS_INVALID_ARGUMENT);
        EXPECT(toastyfs_put_stream(tfs, "k", 0, NULL, NULL, NULL, &res), TOASTYFS_KEY_INVALID);
        EXPECT(toastyfs_put_fd(tfs, "k", 1, -1, NULL, &res), TOASTYFS_INVALID_ARGUMENT);
        EXPECT(toastyfs_put_fd(tfs, NULL, 1, 0, NULL, &res), TOASTYFS_INVALID_ARGUMENT);
        o.condition = 5;
        EXPECT(toastyfs_put_fd(tfs, "k", 1, 0, &o, &res), TOASTYFS_INVALID_ARGUMENT);
        o.condition = TOASTYFS_IF_VERSION;
        o.if_version = 1ULL << 53;
        EXPECT(toastyfs_put_fd(tfs, "k", 1, 0, &o, &res), TOASTYFS_INVALID_ARGUMENT);
        o.condition = 0;
        o.meta_names = upper;
        o.meta_values = values;
        o.meta_count = 1;
        EXPECT(toastyfs_put_fd(tfs, "k", 1, 0, &o, &res), TOASTYFS_INVALID_ARGUMENT);
        CHECK(strstr(res.message, "a-z") != NULL);
        o.meta_count = 0;
        o.content_type = "a\tb";
        EXPECT(toastyfs_put_fd(tfs, "k", 1, 0, &o, &res), TOASTYFS_INVALID_ARGUMENT);
        o.content_type = NULL;
        o.has_declared_size = 1;
        o.declared_size = TOASTYFS_OBJECT_SIZE_MAX + 1;
        EXPECT(toastyfs_put_fd(tfs, "k", 1, 0, &o, &res), TOASTYFS_VALUE_TOO_LARGE);
        EXPECT(toastyfs_get_stream(tfs, "k", 1, 0, 10, NULL, NULL, &res), TOASTYFS_INVALID_ARGUMENT);
        EXPECT(toastyfs_get_stream(NULL, "k", 1, 0, 10, NULL, NULL, &res), TOASTYFS_INVALID_ARGUMENT);
        EXPECT(toastyfs_get_fd(tfs, "k", 1, 0, 10, -1, &res), TOASTYFS_INVALID_ARGUMENT);
        EXPECT(toastyfs_get_fd(tfs, "k", 1, 1ULL << 53, 10, 1, &res), TOASTYFS_INVALID_ARGUMENT);
        EXPECT(toastyfs_get_fd(tfs, key, TOASTYFS_KEY_SIZE_MAX + 1, 0, 10, 1, &res), TOASTYFS_KEY_INVALID);
        CHECK(toastyfs_get_fd(tfs, "k", 1, 0, 1, 1, NULL) == TOASTYFS_INVALID_ARGUMENT);
        CHECK(toastyfs_put_fd(tfs, "k", 1, 0, NULL, NULL) == TOASTYFS_INVALID_ARGUMENT);
    }
    EXPECT(toastyfs_put_if(tfs, "k", 1, "v", 1, 0, 0, &res), TOASTYFS_INVALID_ARGUMENT);
    EXPECT(toastyfs_put_if(tfs, "k", 1, "v", 1, 3, 0, &res), TOASTYFS_INVALID_ARGUMENT);
    EXPECT(toastyfs_put_if(tfs, "k", 1, "v", 1, TOASTYFS_IF_VERSION, 1ULL << 53, &res), TOASTYFS_INVALID_ARGUMENT);
    EXPECT(toastyfs_put_if(NULL, "k", 1, "v", 1, TOASTYFS_IF_ABSENT, 0, &res), TOASTYFS_INVALID_ARGUMENT);
    EXPECT(toastyfs_put_if(tfs, "k", -5, "v", 1, TOASTYFS_IF_ABSENT, 0, &res), TOASTYFS_INVALID_ARGUMENT);
    EXPECT(toastyfs_get(NULL, "k", 1, &res), TOASTYFS_INVALID_ARGUMENT);
    EXPECT(toastyfs_get(tfs, NULL, 1, &res), TOASTYFS_INVALID_ARGUMENT);
    EXPECT(toastyfs_get(tfs, "k", -1, &res), TOASTYFS_INVALID_ARGUMENT);
    EXPECT(toastyfs_get(tfs, "k", 0, &res), TOASTYFS_KEY_INVALID);
    EXPECT(toastyfs_get(tfs, key, TOASTYFS_KEY_SIZE_MAX + 1, &res), TOASTYFS_KEY_INVALID);
    EXPECT(toastyfs_stat(tfs, NULL, 0, &res), TOASTYFS_INVALID_ARGUMENT);
    EXPECT(toastyfs_stat(tfs, key, 5000, &res), TOASTYFS_KEY_INVALID);
    EXPECT(toastyfs_delete(NULL, "k", 1, &res), TOASTYFS_INVALID_ARGUMENT);
    EXPECT(toastyfs_delete(tfs, "k", -100, &res), TOASTYFS_INVALID_ARGUMENT);
    EXPECT(toastyfs_delete(tfs, key, TOASTYFS_KEY_SIZE_MAX + 1, &res), TOASTYFS_KEY_INVALID);
    EXPECT(toastyfs_delete_if(tfs, "k", 1, 1ULL << 60, &res), TOASTYFS_INVALID_ARGUMENT);
    EXPECT(toastyfs_list(NULL, "", 0, "", 0, 10, &res), TOASTYFS_INVALID_ARGUMENT);
    EXPECT(toastyfs_list(tfs, "", 0, "", 0, 0, &res), TOASTYFS_INVALID_ARGUMENT);
    EXPECT(toastyfs_list(tfs, "", 0, "", 0, 1001, &res), TOASTYFS_INVALID_ARGUMENT);
    EXPECT(toastyfs_list(tfs, NULL, 1, "", 0, 10, &res), TOASTYFS_INVALID_ARGUMENT);
    EXPECT(toastyfs_list(tfs, "", -1, "", 0, 10, &res), TOASTYFS_INVALID_ARGUMENT);
    EXPECT(toastyfs_list(tfs, key, TOASTYFS_KEY_SIZE_MAX + 1, "", 0, 10, &res), TOASTYFS_INVALID_ARGUMENT);
    EXPECT(toastyfs_list(tfs, "", 0, key, TOASTYFS_KEY_SIZE_MAX + 1, 10, &res), TOASTYFS_INVALID_ARGUMENT);

    /* A NULL result cannot be filled: the status is still returned. */
    CHECK(toastyfs_put(tfs, "k", 1, "v", 1, NULL) == TOASTYFS_INVALID_ARGUMENT);
    CHECK(toastyfs_get(tfs, "k", 1, NULL) == TOASTYFS_INVALID_ARGUMENT);
    CHECK(toastyfs_delete(tfs, "k", 1, NULL) == TOASTYFS_INVALID_ARGUMENT);
    CHECK(toastyfs_stat(tfs, "k", 1, NULL) == TOASTYFS_INVALID_ARGUMENT);
    CHECK(toastyfs_list(tfs, "", 0, "", 0, 1, NULL) == TOASTYFS_INVALID_ARGUMENT);
    toastyfs_result_free(NULL);
    toastyfs_free(NULL);

    /* Nothing listens: the operation fails with no quorum once its 300 ms are up, not before,
     * not much later. */
    start = tfs_now_ms();
    EXPECT(toastyfs_put(tfs, "k", 1, "v", 1, &res), TOASTYFS_NO_QUORUM);
    CHECK(tfs_now_ms() - start >= 300 && tfs_now_ms() - start < 2000);
    start = tfs_now_ms();
    EXPECT(toastyfs_get(tfs, "k", 1, &res), TOASTYFS_NO_QUORUM);
    CHECK(tfs_now_ms() - start < 2000);
    toastyfs_free(tfs);

    for (code = 0; code >= TOASTYFS_TLS_UNAVAILABLE; code--)
        CHECK(toastyfs_strerror(code) != NULL && toastyfs_strerror(code)[0] != '\0' &&
              strcmp(toastyfs_strerror(code), "unknown error code") != 0);
    CHECK(strcmp(toastyfs_strerror(TOASTYFS_NOT_FOUND), "not found") == 0);
    CHECK(strcmp(toastyfs_strerror(12345), "unknown error code") == 0);
    CHECK(strcmp(toastyfs_strerror(TOASTYFS_TLS_UNAVAILABLE - 1), "unknown error code") == 0);
#undef EXPECT
}

static int xxh64_prefixes(void)
{
    size_t cap = 1 << 20, len = 0, i;
    uint8_t *data = (uint8_t *)malloc(cap);
    size_t got;
    if (data == NULL) return 1;
    while ((got = fread(data + len, 1, cap - len, stdin)) > 0) {
        len += got;
        if (len == cap) {
            uint8_t *bigger = (uint8_t *)realloc(data, cap * 2);
            if (bigger == NULL) {
                free(data);
                return 1;
            }
            data = bigger;
            cap *= 2;
        }
    }
    for (i = 0; i <= len && i <= 300; i++) printf("%016llx\n", (unsigned long long)tfs_xxh64(data, i, 0));
    printf("%016llx\n", (unsigned long long)tfs_xxh64(data, len, 0));
    free(data);
    return 0;
}

/* --- SHA-256, HMAC-SHA256 and the authentication of PROTOCOL.md §6 */

/* Compares bytes with a hex string (spaces ignored). */
static int hex_is(const uint8_t *bytes, size_t len, const char *hex)
{
    size_t i = 0;
    for (; *hex; hex++) {
        unsigned v;
        if (*hex == ' ') continue;
        if (i >= len || sscanf(hex, "%2x", &v) != 1 || bytes[i] != (uint8_t)v) return 0;
        i++;
        hex++;
    }
    return i == len;
}

static void sha256_of(const void *data, size_t len, uint8_t out[32])
{
    tfs_sha256 s;
    tfs_sha256_init(&s);
    tfs_sha256_update(&s, data, len);
    tfs_sha256_final(&s, out);
}

static void hmac_of(const uint8_t *key, size_t key_len, const void *data, size_t len, uint8_t out[32])
{
    tfs_hmac h;
    tfs_hmac_init(&h, key, key_len);
    tfs_hmac_update(&h, data, len);
    tfs_hmac_final(&h, out);
}

static void test_sha256(void)
{
    uint8_t out[32], key[131];
    static char million[1000000];
    tfs_sha256 s;
    size_t i;

    /* FIPS 180-4 examples (NIST CSRC "SHA256.pdf", "SHA2_Additional.pdf"). */
    sha256_of("abc", 3, out);
    CHECK(hex_is(out, 32, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    sha256_of("", 0, out);
    CHECK(hex_is(out, 32, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    sha256_of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56, out);
    CHECK(hex_is(out, 32, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
    memset(million, 'a', sizeof million);
    sha256_of(million, sizeof million, out);
    CHECK(hex_is(out, 32, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"));
    /* The same million fed in uneven pieces: the buffering across blocks. */
    tfs_sha256_init(&s);
    for (i = 0; i < sizeof million;) {
        size_t piece = 1 + (i * 7) % 131;
        if (piece > sizeof million - i) piece = sizeof million - i;
        tfs_sha256_update(&s, million + i, piece);
        i += piece;
    }
    tfs_sha256_final(&s, out);
    CHECK(hex_is(out, 32, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"));

    /* RFC 4231 test cases 1, 2, 4 and 6 (a key longer than the block). */
    memset(key, 0x0b, 20);
    hmac_of(key, 20, "Hi There", 8, out);
    CHECK(hex_is(out, 32, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"));
    hmac_of((const uint8_t *)"Jefe", 4, "what do ya want for nothing?", 28, out);
    CHECK(hex_is(out, 32, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"));
    {
        uint8_t data[50];
        for (i = 0; i < 25; i++) key[i] = (uint8_t)(i + 1);
        memset(data, 0xcd, sizeof data);
        hmac_of(key, 25, data, sizeof data, out);
        CHECK(hex_is(out, 32, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"));
    }
    memset(key, 0xaa, sizeof key);
    hmac_of(key, sizeof key, "Test Using Larger Than Block-Size Key - Hash Key First", 54, out);
    CHECK(hex_is(out, 32, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"));

    CHECK(tfs_equal_ct((const uint8_t *)"abcd", (const uint8_t *)"abcd", 4));
    CHECK(!tfs_equal_ct((const uint8_t *)"abcd", (const uint8_t *)"abce", 4));
}

static void test_auth_vectors(void)
{
    /* §6.7: secret 00..1f, cluster 0x0123456789abcdef, a client dialing replica 1 of 3. */
    char secret_text[80], err[256];
    uint8_t k_client[32], nonce_d[32], hello[48], challenge[72], proof[40], send[32], receive[32], tag[16];
    tfs_hmac h;
    int i;

    for (i = 0; i < 32; i++) (void)snprintf(secret_text + 2 * i, 3, "%02x", i);
    (void)strcat(secret_text, "\n");
    CHECK(tfs_auth_parse(secret_text, strlen(secret_text), "s", k_client, err, sizeof err) == 0);
    CHECK(hex_is(k_client, 32, "2a7488228b5e81beeb88c9991214290a73b2acf29af7ff580f82ac368cdd0cb7"));
    {
        /* K_replica, derived the same way: proves the HMAC matches the TypeScript side's too. */
        uint8_t secret[32], k_replica[32];
        for (i = 0; i < 32; i++) secret[i] = (uint8_t)i;
        hmac_of(secret, 32, "toastyfs replica v1", 19, k_replica);
        CHECK(hex_is(k_replica, 32, "cd462b49c101b37f38569e1e4ae4d7a4bd729a2a47e8547b97fc935b1ec14c41"));
    }
    /* A client key file holds K_client itself, either case, surrounded by whitespace. */
    {
        uint8_t k[32];
        CHECK(tfs_auth_parse("  client 2A7488228B5E81BEEB88C9991214290A73B2ACF29AF7FF580F82AC368CDD0CB7\n\n", 75, "c",
                             k, err, sizeof err) == 0);
        CHECK(memcmp(k, k_client, 32) == 0);
        CHECK(tfs_auth_parse("0011\n", 5, "short.key", k, err, sizeof err) == -1);
        CHECK(strstr(err, "short.key") != NULL && strstr(err, "64 hex digits") != NULL);
        memcpy(secret_text + 10, "zz", 2);
        CHECK(tfs_auth_parse(secret_text, strlen(secret_text), "bad.key", k, err, sizeof err) == -1);
        CHECK(strstr(err, "character 11") != NULL && strstr(err, "not a hex digit") != NULL);
    }

    memset(nonce_d, 0xd0, sizeof nonce_d);
    tfs_auth_hello(hello, CLUSTER, nonce_d);
    CHECK(hex_is(hello, 48, "54465348010100ffefcdab8967452301 "
                            "d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0"));
    /* The CHALLENGE replica 1 sends: its mac_a as the vector gives it. */
    memcpy(challenge, "\x54\x46\x53\x48\x01\x02\x01\x00", 8);
    memset(challenge + 8, 0xa0, 32);
    tfs_hmac_init(&h, k_client, 32);
    tfs_hmac_update(&h, "accept", 6);
    tfs_hmac_update(&h, hello, 48);
    tfs_hmac_update(&h, challenge, 40);
    tfs_hmac_final(&h, challenge + 40);
    CHECK(hex_is(challenge + 40, 32, "932d83ea9f64c33db587b0a423f6bbf890fc0d9a320d6297387e1c8234009d6d"));

    CHECK(tfs_auth_answer(k_client, hello, challenge, 1, 3, proof, send, receive, err, sizeof err) == 0);
    CHECK(hex_is(proof, 40, "5446534801030000 8464515691f8e39ed2213563d024ad8cb2bf371642d7243db137379b332fb80f"));
    CHECK(hex_is(send, 32, "80a3a417eb181260004c3a48b00be0eac23a950b789798b9ec9ee663490ffcaa"));
    CHECK(hex_is(receive, 32, "3d7639271cc65e80e0f582352555d98d474994cdcf47b9c3865bce4cea7cf805"));
    tfs_auth_tag(send, 0, (const uint8_t *)"abc", 3, NULL, 0, tag);
    CHECK(hex_is(tag, 16, "33eb7c1c730ab7c2075b207a12b6c65b"));
    tfs_auth_tag(send, 1, (const uint8_t *)"a", 1, (const uint8_t *)"bc", 2, tag);
    CHECK(hex_is(tag, 16, "c80c5276a1900bedc91f0d185d01b2cd"));

    /* The dialer refuses a CHALLENGE from another replica than it dialed, or with a wrong mac. */
    CHECK(tfs_auth_answer(k_client, hello, challenge, 2, 3, proof, send, receive, err, sizeof err) == -1);
    CHECK(strstr(err, "replica 1, expected 2") != NULL);
    challenge[71] ^= 1;
    CHECK(tfs_auth_answer(k_client, hello, challenge, 1, 3, proof, send, receive, err, sizeof err) == -1);
    CHECK(strstr(err, "does not hold our secret") != NULL);
}

/* Writes text to a new temporary file with mode `mode`; its path into path (a mkstemp template). */
static void write_temp(char *path, const char *text, mode_t mode)
{
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    CHECK(fchmod(fd, mode) == 0);
    close(fd);
}

static void test_secret_files(void)
{
    char *addrs[] = {"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"};
    char good[] = "/tmp/toastyfs-c-secret-XXXXXX", open_mode[] = "/tmp/toastyfs-c-secret-XXXXXX";
    char client_key[] = "/tmp/toastyfs-c-secret-XXXXXX", garbage[] = "/tmp/toastyfs-c-secret-XXXXXX";
    char error[300];
    ToastyFS *tfs;
    ToastyFS_Result res;

    write_temp(good, "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n", 0600);
    write_temp(open_mode, "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n", 0644);
    write_temp(client_key, "client 2a7488228b5e81beeb88c9991214290a73b2acf29af7ff580f82ac368cdd0cb7\n", 0400);
    write_temp(garbage, "not a secret\n", 0600);

    tfs = toastyfs_init_secret(0, addrs, 3, good, error, sizeof error);
    CHECK(tfs != NULL && error[0] == '\0');
    toastyfs_free(tfs);
    tfs = toastyfs_init_secret(0, addrs, 3, client_key, error, sizeof error);
    CHECK(tfs != NULL);
    toastyfs_free(tfs);
    tfs = toastyfs_init_secret(0, addrs, 3, NULL, error, sizeof error);
    CHECK(tfs != NULL);
    toastyfs_free(tfs);

    tfs = toastyfs_init_secret(0, addrs, 3, open_mode, error, sizeof error);
    CHECK(tfs == NULL && strstr(error, "readable or writable by group or others (mode 0644)") != NULL &&
          strstr(error, "chmod 600") != NULL);
    tfs = toastyfs_init_secret(0, addrs, 3, garbage, error, sizeof error);
    CHECK(tfs == NULL && strstr(error, garbage) != NULL && strstr(error, "64 hex digits") != NULL);
    tfs = toastyfs_init_secret(0, addrs, 3, "/nonexistent/secret", error, sizeof error);
    CHECK(tfs == NULL && strstr(error, "cannot read the secret file /nonexistent/secret") != NULL);
    tfs = toastyfs_init_secret(0, addrs, 0, good, error, sizeof error);
    CHECK(tfs == NULL && strstr(error, "invalid addresses") != NULL);
    CHECK(toastyfs_init_secret(0, addrs, 3, garbage, NULL, 0) == NULL);

    /* TOASTYFS_SECRET_FILE unusable: a handle, whose every operation says why, without connecting. */
    CHECK(setenv("TOASTYFS_SECRET_FILE", open_mode, 1) == 0);
    tfs = toastyfs_init(0, addrs, 3);
    CHECK(tfs != NULL);
    CHECK(toastyfs_get(tfs, "k", 1, &res) == TOASTYFS_AUTH_FAILED && res.status == TOASTYFS_AUTH_FAILED);
    CHECK(strncmp(res.message, "authentication failed: ", 23) == 0 && strstr(res.message, "chmod 600") != NULL);
    toastyfs_free(tfs);
    CHECK(unsetenv("TOASTYFS_SECRET_FILE") == 0);

    unlink(good);
    unlink(open_mode);
    unlink(client_key);
    unlink(garbage);
}

/* toastyfs_init_tls and TOASTYFS_TLS_* without a cluster: arguments, unusable files, and a library
 * built without TLS. Each failure fails every operation of the handle at once, the same way. */
static void test_tls_setup(void)
{
    char *addrs[] = {"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"};
    char garbage[] = "/tmp/toastyfs-c-tls-XXXXXX";
    char error[400];
    int built_in = toastyfs_tls_available(), unusable = built_in ? TOASTYFS_AUTH_FAILED : TOASTYFS_TLS_UNAVAILABLE;
    ToastyFS *tfs = toastyfs_init(0, addrs, 3);
    ToastyFS_Result res;

    CHECK(tfs != NULL);
    if (tfs == NULL) return;
    CHECK(built_in == tfs_tls_built_in() && (built_in == 0 || built_in == 1));
    printf("TLS built in: %s\n", built_in ? "yes" : "no");
    write_temp(garbage, "not a certificate\n", 0600);

    CHECK(toastyfs_init_tls(NULL, "c", "k", "ca", error, sizeof error) == TOASTYFS_INVALID_ARGUMENT);
    CHECK(toastyfs_init_tls(tfs, "c", NULL, "ca", error, sizeof error) == TOASTYFS_INVALID_ARGUMENT);
    CHECK(strstr(error, "a certificate with its key") != NULL);
    CHECK(toastyfs_get(tfs, "k", 1, &res) == TOASTYFS_INVALID_ARGUMENT && res.status == TOASTYFS_INVALID_ARGUMENT);
    CHECK(toastyfs_init_tls(tfs, "c", "k", NULL, NULL, 0) == TOASTYFS_INVALID_ARGUMENT);
    /* Plain TCP again: nothing listens, so an operation now gets as far as no quorum. */
    CHECK(toastyfs_init_tls(tfs, NULL, NULL, NULL, error, sizeof error) == TOASTYFS_OK && error[0] == '\0');
    CHECK(toastyfs_set_timeouts(tfs, 100, 200) == TOASTYFS_OK);
    CHECK(toastyfs_get(tfs, "k", 1, &res) == TOASTYFS_NO_QUORUM);

    /* A missing CA, a CA file that holds no certificate: named, and every call fails the same way
     * without connecting (TOASTYFS_TLS_UNAVAILABLE, before any file is read, without TLS). */
    CHECK(toastyfs_init_tls(tfs, "/nonexistent/c.crt", "/nonexistent/c.key", "/nonexistent/ca.crt", error,
                            sizeof error) == unusable);
    if (built_in) CHECK(strcmp(error, "TLS: cannot read the TLS CA /nonexistent/ca.crt: no such file") == 0);
    else CHECK(strstr(error, "built without OpenSSL") != NULL);
    CHECK(toastyfs_put(tfs, "k", 1, "v", 1, &res) == unusable && res.status == unusable);
    CHECK(strstr(res.message, error) != NULL);
    if (built_in) CHECK(strncmp(res.message, "authentication failed: TLS: ", 28) == 0);
    CHECK(toastyfs_init_tls(tfs, NULL, NULL, garbage, error, sizeof error) == unusable);
    if (built_in) CHECK(strstr(error, garbage) != NULL && strstr(error, "holds no PEM certificate") != NULL);
    CHECK(toastyfs_init_tls(tfs, garbage, garbage, "/nonexistent/ca.crt", error, sizeof error) == unusable);
    toastyfs_free(tfs);

    /* The environment: all three or none; a file that cannot be used fails every operation. */
    CHECK(setenv("TOASTYFS_TLS_CERT", garbage, 1) == 0);
    tfs = toastyfs_init(0, addrs, 3);
    CHECK(toastyfs_list(tfs, "", 0, NULL, 0, 10, &res) == TOASTYFS_AUTH_FAILED);
    CHECK(strstr(res.message, "TLS needs TOASTYFS_TLS_CERT, TOASTYFS_TLS_KEY and TOASTYFS_TLS_CA together: "
                              "TOASTYFS_TLS_KEY TOASTYFS_TLS_CA not set") != NULL);
    toastyfs_free(tfs);
    CHECK(setenv("TOASTYFS_TLS_KEY", garbage, 1) == 0 && setenv("TOASTYFS_TLS_CA", garbage, 1) == 0);
    tfs = toastyfs_init(0, addrs, 3);
    CHECK(toastyfs_stat(tfs, "k", 1, &res) == unusable);
    if (built_in) CHECK(strstr(res.message, garbage) != NULL && strstr(res.message, "TLS") != NULL);
    else CHECK(strstr(res.message, "built without OpenSSL") != NULL);
    /* An explicit call replaces what the environment said. */
    CHECK(toastyfs_init_tls(tfs, NULL, NULL, NULL, NULL, 0) == TOASTYFS_OK);
    CHECK(toastyfs_set_timeouts(tfs, 100, 200) == TOASTYFS_OK);
    CHECK(toastyfs_stat(tfs, "k", 1, &res) == TOASTYFS_NO_QUORUM);
    toastyfs_free(tfs);
    CHECK(unsetenv("TOASTYFS_TLS_CERT") == 0 && unsetenv("TOASTYFS_TLS_KEY") == 0 && unsetenv("TOASTYFS_TLS_CA") == 0);
    unlink(garbage);
}

/* The choice of replica, docs/PROTOCOL.md §3.9 (route.c), with T = 1000 and B = 50 on a made-up
 * clock; the cases of lib/client/session.test.ts that concern it. */
static void test_route(void)
{
    tfs_route r;
    tfs_attempts a;
    int i, replier = 1, polled[12];
    int64_t now, pause;

    /* An unreachable target: the next replica at once, and retries skip it. */
    tfs_route_init(&r, 3, 0, 1000, 50);
    tfs_route_begin(&r, &a, 0);
    CHECK(r.target == 0 && tfs_route_send(&r, &a) == 1000);
    CHECK(tfs_route_unreachable(&r, 0, 1) == 1);
    tfs_route_resend(&r, &a, 1);
    CHECK(r.target == 1 && tfs_route_send(&r, &a) == 1000);
    tfs_route_resend(&r, &a, 1001); /* 1 timed out: 2, not the dead 0 */
    CHECK(r.target == 2 && tfs_route_send(&r, &a) == 1000);
    tfs_route_resend(&r, &a, 1500);
    CHECK(r.target == 1 && tfs_route_send(&r, &a) == 2000); /* every replica had an attempt: 2T */
    CHECK(tfs_route_unreachable(&r, 2, 1600) == 0);         /* not the target: only noted */
    /* A new request does not start at a replica that is down. */
    r.target = 0;
    tfs_route_begin(&r, &a, 1700);
    CHECK(r.target == 1);

    /* Registered with 0 as primary of view 3; 0 is killed. The backups, changing views, name 0 of
     * view 3: not followed; 1 and 2 are polled every B, and polls do not lengthen the attempt. */
    tfs_route_init(&r, 3, 0, 1000, 50);
    tfs_route_begin(&r, &a, 0);
    (void)tfs_route_send(&r, &a);
    CHECK(tfs_route_reply(&r, &a, 0, 0, 3, TFS_RESULT_OK, 1) == 0 && r.target == 0);
    tfs_route_begin(&r, &a, 1); /* the put */
    (void)tfs_route_send(&r, &a);
    tfs_route_resend(&r, &a, 2); /* its connection closed */
    CHECK(r.target == 1);
    CHECK(tfs_route_unreachable(&r, 0, 3) == 0);
    CHECK(r.down[0].marked && r.down[0].has_view && r.down[0].view == 3);
    (void)tfs_route_send(&r, &a);
    now = 4;
    for (i = 0; i < 12; i++) {
        pause = tfs_route_reply(&r, &a, replier, replier, 3, TFS_RESULT_NOT_PRIMARY, now);
        CHECK(pause == 50);
        now += pause;
        tfs_route_resend(&r, &a, now);
        CHECK(tfs_route_send(&r, &a) == 1000);
        polled[i] = replier = r.target;
        now += 1;
    }
    for (i = 0; i < 12; i++) CHECK(polled[i] == (i % 2 == 0 ? 2 : 1));
    /* The view change is over: a backup of view 4 (later than 0's, 3) names 1, followed at once. */
    CHECK(tfs_route_reply(&r, &a, 2, 2, 4, TFS_RESULT_NOT_PRIMARY, now) == 0);
    tfs_route_resend(&r, &a, now);
    CHECK(r.target == 1);

    /* A fresh client (no reply yet) knows no view of 0: a hint naming it in any view is not followed;
     * named primary of a later view than the hints so far, it is (elected since). */
    tfs_route_init(&r, 3, 0, 1000, 50);
    tfs_route_begin(&r, &a, 0);
    (void)tfs_route_send(&r, &a);
    CHECK(tfs_route_unreachable(&r, 0, 0) == 1);
    CHECK(!r.down[0].has_view);
    tfs_route_resend(&r, &a, 0);
    CHECK(r.target == 1);
    (void)tfs_route_send(&r, &a);
    CHECK(tfs_route_reply(&r, &a, 1, 1, 6, TFS_RESULT_NOT_PRIMARY, 1) == 50);
    tfs_route_resend(&r, &a, 51);
    CHECK(r.target == 2);
    (void)tfs_route_send(&r, &a);
    CHECK(tfs_route_reply(&r, &a, 2, 2, 9, TFS_RESULT_NOT_PRIMARY, 60) == 0);
    tfs_route_resend(&r, &a, 60);
    CHECK(r.target == 0 && !r.down[0].marked);
    /* Refused again, then a reply on its connection: up. Marked again, then reconnected: up. */
    CHECK(tfs_route_unreachable(&r, 0, 70) == 1);
    CHECK(r.down[0].has_view && r.down[0].view == 9); /* view_hint 9 names it */
    CHECK(tfs_route_reply(&r, &a, 0, 0, 9, TFS_RESULT_OK, 71) == 0 && !r.down[0].marked && r.target == 0);
    (void)tfs_route_unreachable(&r, 0, 100);
    tfs_route_reachable(&r, 0);
    CHECK(tfs_route_up(&r, 0, 101));
    /* Marked: skipped until two attempt timeouts have passed. */
    (void)tfs_route_unreachable(&r, 0, 200);
    CHECK(!tfs_route_up(&r, 0, 2199) && tfs_route_next_up(&r, 2, 2199) == 1);
    CHECK(tfs_route_up(&r, 0, 2200) && tfs_route_next_up(&r, 2, 2200) == 0);

    /* A replier naming itself is changing views: the next replica after B. */
    tfs_route_init(&r, 3, 1, 1000, 50);
    tfs_route_begin(&r, &a, 0);
    (void)tfs_route_send(&r, &a);
    CHECK(tfs_route_reply(&r, &a, 1, 1, 4, TFS_RESULT_NOT_PRIMARY, 0) == 50);
    tfs_route_resend(&r, &a, 50);
    CHECK(r.target == 2);
    /* Hints going round in circles (more sends than replicas): even a backup's hint waits B. */
    a.sends = 4;
    CHECK(tfs_route_reply(&r, &a, 2, 2, 6, TFS_RESULT_NOT_PRIMARY, 60) == 50 && r.target == 0);
    tfs_route_resend(&r, &a, 110);
    CHECK(r.target == 0); /* retried once where it pointed */
    tfs_route_resend(&r, &a, 1110);
    CHECK(r.target == 1); /* then the next */

    /* Every replica down: plain rotation. */
    tfs_route_init(&r, 3, 0, 1000, 50);
    for (i = 0; i < 3; i++) (void)tfs_route_unreachable(&r, i, 0);
    CHECK(tfs_route_next_up(&r, 0, 1) == 1 && tfs_route_next_up(&r, 2, 1) == 0);

    /* busy and unavailable: the same replica after B * min(sends, 10). */
    tfs_route_init(&r, 3, 0, 1000, 50);
    tfs_route_begin(&r, &a, 0);
    (void)tfs_route_send(&r, &a);
    CHECK(tfs_route_reply(&r, &a, 0, 0, 0, TFS_RESULT_BUSY, 10) == 50);
    tfs_route_resend(&r, &a, 60);
    CHECK(r.target == 0);
    (void)tfs_route_send(&r, &a);
    CHECK(tfs_route_reply(&r, &a, 0, 0, 0, TFS_RESULT_UNAVAILABLE, 70) == 100);
    a.sends = 30;
    CHECK(tfs_route_reply(&r, &a, 0, 0, 0, TFS_RESULT_BUSY, 80) == 500);
    CHECK(tfs_route_send(&r, &a) == 4000); /* at most 4T */
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "xxh64-prefixes") == 0) return xxh64_prefixes();
    test_xxh64();
    test_addresses();
    test_requests();
    test_replies();
    test_arguments();
    test_sha256();
    test_auth_vectors();
    test_secret_files();
    test_tls_setup();
    test_route();
    return check_report("unit_test");
}
