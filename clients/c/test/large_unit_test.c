/*
 * Unit tests of the C client's large-object pieces that need no cluster: streaming xxHash64, MD5
 * against the test suite of RFC 1321 §A.5, the bodies of docs/PROTOCOL.md §3.15 against its test
 * vectors (§5.11, §5.12), metadata encoding, part and manifest checksums, and read replies that
 * must be refused. Exit status 0 when every check passed, 2 otherwise.
 *
 *   large_unit_test             run every test
 *   large_unit_test bodies      print fixed request bodies and checksums, "name hex" per line
 *                               (tests/c_client_large.test.ts encodes the same with large_bodies.ts)
 *   large_unit_test read-reply  parse stdin as a read reply body: "malformed", or its fields
 *   large_unit_test md5         print the MD5 of stdin, fed in pieces of varying size
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tfs_internal.h"

#include "check.h"

static void hex(const uint8_t *p, size_t len, char *out)
{
    size_t i;
    for (i = 0; i < len; i++) sprintf(out + 2 * i, "%02x", p[i]);
    out[2 * len] = '\0';
}

static void test_xxh64_streaming(void)
{
    uint8_t data[300];
    size_t i, a, b;
    int mismatches = 0;
    for (i = 0; i < sizeof data; i++) data[i] = (uint8_t)(i * 7 + 3);
    for (a = 0; a <= sizeof data; a += 3)
        for (b = a; b <= sizeof data; b += 17) {
            tfs_xxh64_state s;
            tfs_xxh64_init(&s, 0);
            tfs_xxh64_update(&s, data, a);
            tfs_xxh64_update(&s, data + a, b - a);
            tfs_xxh64_update(&s, data + b, sizeof data - b);
            if (tfs_xxh64_digest(&s) != tfs_xxh64(data, sizeof data, 0)) mismatches++;
        }
    CHECK(mismatches == 0);
    /* The empty object's manifest checksum, PROTOCOL.md §3.15.2: xxh64 of a u64 size of 0. */
    {
        tfs_xxh64_state s;
        tfs_xxh64_init(&s, 0);
        tfs_xxh64_update_u64(&s, 0);
        CHECK_EQ_U64(tfs_xxh64_digest(&s), 0x34c96acdcadb1bbbULL);
    }
}

static void md5_hex(const char *text, size_t piece, char *out)
{
    tfs_md5 m;
    uint8_t digest[16];
    size_t len = strlen(text), at = 0;
    tfs_md5_init(&m);
    while (at < len) {
        size_t n = len - at < piece ? len - at : piece;
        tfs_md5_update(&m, text + at, n);
        at += n;
    }
    tfs_md5_final(&m, digest);
    hex(digest, 16, out);
}

static void test_md5(void)
{
    /* RFC 1321 §A.5, the test suite. */
    static const char *const suite[][2] = {
        {"", "d41d8cd98f00b204e9800998ecf8427e"},
        {"a", "0cc175b9c0f1b6a831c399e269772661"},
        {"abc", "900150983cd24fb0d6963f7d28e17f72"},
        {"message digest", "f96b697d7cb7938d525a2f31aaf161d0"},
        {"abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"},
        {"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", "d174ab98d277d9f5a5611c2c9f419d9f"},
        {"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
         "57edf4a22be3c955ac49da2e2107b67a"},
    };
    size_t i, piece;
    char out[33];
    for (i = 0; i < sizeof suite / sizeof suite[0]; i++)
        for (piece = 1; piece <= 80; piece += 13) {
            md5_hex(suite[i][0], piece, out);
            if (strcmp(out, suite[i][1]) != 0)
                fprintf(stderr, "MD5(\"%s\") in pieces of %lu = %s, expected %s\n", suite[i][0], (unsigned long)piece,
                        out, suite[i][1]);
            CHECK(strcmp(out, suite[i][1]) == 0);
        }
}

/* PROTOCOL.md §5.11 and §5.12. */
static const char write_block_body[] = "0000  01 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00\n"
                                       "0010  08 07 06 05 04 03 02 01 a3 6d 9f 88 7d 82 c7 26\n"
                                       "0020  68 65 6c 6c 6f\n";
static const char read_request_body[] = "0000  05 00 03 00 03 00 00 00 00 00 00 00 00 00 00 00\n"
                                        "0010  01 00 00 00 00 00 00 00 68 65 6c 6c 6f\n";
static const char read_reply_body[] = "0000  01 00 00 00 00 00 00 00 2d 69 e5 cf 8b 01 00 00\n"
                                      "0010  05 00 00 00 00 00 00 00 ef 51 ee 66 fe fb 78 e7\n"
                                      "0020  00 06 0a 00 05 00 00 00 01 00 00 00 00 00 00 00\n"
                                      "0030  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00\n"
                                      "0040  74 65 78 74 2f 70 6c 61 69 6e 01 01 00 61 62 00\n"
                                      "0050  01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00\n"
                                      "0060  05 00 00 00 00 00 00 00 ef 51 ee 66 fe fb 78 e7\n"
                                      "0070  6f 72 6c\n";

static void test_vectors(void)
{
    uint8_t expected[256], body[256];
    size_t n, len;
    tfs_read_reply rr;

    n = parse_dump(write_block_body, expected, sizeof expected);
    CHECK(n == 37);
    tfs_write_block_head(body, 1, 1, 0, 0x0102030405060708ULL, tfs_xxh64("hello", 5, 0));
    memcpy(body + 32, "hello", 5);
    CHECK(memcmp(body, expected, 37) == 0);

    n = parse_dump(read_request_body, expected, sizeof expected);
    len = tfs_read_request(body, "hello", 5, TFS_READ_FLAG_METADATA | TFS_READ_FLAG_BLOCK_MAP, 3, 0, 1);
    CHECK(n == 29 && len == 29 && memcmp(body, expected, 29) == 0);

    n = parse_dump(read_reply_body, expected, sizeof expected);
    CHECK(n == 115);
    CHECK(tfs_read_read_reply(expected, n, &rr) == 0);
    CHECK(rr.info.version == 1 && rr.info.timestamp == 1700000000301ULL && rr.info.size == 5);
    CHECK_EQ_U64(rr.info.checksum, tfs_xxh64("world", 5, 0));
    CHECK(rr.kind == TFS_KIND_INLINE && !rr.has_md5 && rr.block_count == 1 && rr.has_map && rr.map_count == 1);
    CHECK(tfs_get_u64(rr.map) == 0 && tfs_get_u64(rr.map + 8) == 5 && tfs_get_u64(rr.map + 16) == rr.info.checksum);
    CHECK(rr.data_len == 3 && memcmp(rr.data, "orl", 3) == 0);

    /* A body cut inside its header, metadata or block map is malformed; cut inside the data, it is
     * the reply of a shorter read. */
    for (len = 0; len < 112; len++)
        if (tfs_read_read_reply(expected, len, &rr) == 0) {
            fprintf(stderr, "a %lu-byte prefix parsed\n", (unsigned long)len);
            CHECK(0);
        }
    for (len = 112; len <= n; len++) CHECK(tfs_read_read_reply(expected, len, &rr) == 0 && rr.data_len == len - 112);

    /* Each of these single-field changes makes it malformed. */
    {
        static const struct {
            size_t at;
            uint8_t value;
            const char *what;
        } bad[] = {
            {32, 2, "kind 2"},
            {33, 0x0e, "an undefined flag"},
            {33, 0x04, "metadata sizes without the metadata flag"},
            {48, 1, "an md5 byte without the md5 flag"},
            {40, 2, "an inline object of two blocks"},
            {0x40, 0x07, "a content type byte that is not printable"},
            {0x4d, 0x41, "a metadata name with an upper-case letter"},
            {0x50, 2, "a block map of two entries for one block"},
            {0x60, 4, "an inline block shorter than the value"},
            {0x16, 0x20, "a size of 2^53 or more"},
            {0x10, 2, "data longer than the object"},
        };
        size_t i;
        for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            memcpy(body, expected, n);
            body[bad[i].at] = bad[i].value;
            if (tfs_read_read_reply(body, n, &rr) == 0) fprintf(stderr, "accepted: %s\n", bad[i].what);
            CHECK(tfs_read_read_reply(body, n, &rr) != 0);
        }
    }
}

static void test_replies(void)
{
    uint8_t b[24];
    uint64_t id, block, object, version, checksum;
    tfs_put_u64(b, 7);
    tfs_put_u64(b + 8, 1048576);
    tfs_put_u64(b + 16, TOASTYFS_OBJECT_SIZE_MAX);
    CHECK(tfs_read_create_upload_reply(b, 24, &id, &block, &object) == 0 && id == 7 && block == 1048576);
    CHECK(tfs_read_create_upload_reply(b, 23, &id, &block, &object) != 0);
    tfs_put_u64(b + 8, 15);
    CHECK(tfs_read_create_upload_reply(b, 24, &id, &block, &object) != 0);
    tfs_put_u64(b + 8, TOASTYFS_BLOCK_SIZE_MAX + 1);
    CHECK(tfs_read_create_upload_reply(b, 24, &id, &block, &object) != 0);
    tfs_put_u64(b + 8, 16);
    tfs_put_u64(b, 0);
    CHECK(tfs_read_create_upload_reply(b, 24, &id, &block, &object) != 0);
    tfs_put_u64(b, 3);
    tfs_put_u64(b + 8, 0xfeedULL);
    CHECK(tfs_read_complete_upload_reply(b, 16, &version, &checksum) == 0 && version == 3 && checksum == 0xfeed);
    CHECK(tfs_read_complete_upload_reply(b, 17, &version, &checksum) != 0);
    tfs_put_u64(b, 1ULL << 53);
    CHECK(tfs_read_complete_upload_reply(b, 16, &version, &checksum) != 0);
}

static void test_metadata(void)
{
    static const uint8_t example[] = {0x03, 0x00, 0x00, 0x61, 0x2d, 0x31, 0x01, 0x01, 0x00, 0x62, 0xff};
    const char *names[] = {"b", "a-1"}, *values[] = {"\xff", ""};
    const size_t lens[] = {1, 0};
    const char *dup[] = {"x", "x"}, *upper[] = {"Name"}, *empty[] = {""};
    char long_name[130], long_type[257], big_value[2100];
    const char *long_names[] = {long_name}, *big_values[] = {big_value};
    tfs_metadata m;
    const char *problem = NULL;

    /* PROTOCOL.md §3.15.2: {b: ff, a-1: ""}. */
    CHECK(tfs_metadata_encode("text/plain", names, values, lens, 2, &m, &problem) == 0);
    CHECK(m.user_meta_len == sizeof example && memcmp(m.user_meta, example, sizeof example) == 0);
    CHECK(m.content_type_len == 10);
    CHECK(tfs_metadata_encode(NULL, names, values, NULL, 2, &m, &problem) == 0 && m.user_meta_len == 11);
    CHECK(tfs_metadata_encode(NULL, NULL, NULL, NULL, 0, &m, &problem) == 0 && m.user_meta_len == 0);

    memset(long_name, 'a', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    memset(long_type, 'a', sizeof long_type - 1);
    long_type[sizeof long_type - 1] = '\0';
    memset(big_value, 'v', sizeof big_value - 1);
    big_value[sizeof big_value - 1] = '\0';
    CHECK(tfs_metadata_encode(NULL, dup, values, NULL, 2, &m, &problem) != 0 && strstr(problem, "twice") != NULL);
    CHECK(tfs_metadata_encode(NULL, upper, values, NULL, 1, &m, &problem) != 0 && strstr(problem, "a-z") != NULL);
    CHECK(tfs_metadata_encode(NULL, empty, values, NULL, 1, &m, &problem) != 0 && strstr(problem, "128") != NULL);
    CHECK(tfs_metadata_encode(NULL, long_names, values, NULL, 1, &m, &problem) != 0 && strstr(problem, "128") != NULL);
    CHECK(tfs_metadata_encode(NULL, names, big_values, NULL, 1, &m, &problem) != 0 && strstr(problem, "2048") != NULL);
    CHECK(tfs_metadata_encode(long_type, NULL, NULL, NULL, 0, &m, &problem) != 0 && strstr(problem, "255") != NULL);
    CHECK(tfs_metadata_encode("a\nb", NULL, NULL, NULL, 0, &m, &problem) != 0 && strstr(problem, "ASCII") != NULL);
    CHECK(tfs_metadata_encode(NULL, NULL, NULL, NULL, -1, &m, &problem) != 0);
    long_type[255] = '\0';
    CHECK(tfs_metadata_encode(long_type, NULL, NULL, NULL, 0, &m, &problem) == 0 && m.content_type_len == 255);
}

static void print_hex(const char *name, const uint8_t *p, size_t len)
{
    char *out = (char *)malloc(2 * len + 1);
    if (out == NULL) exit(1);
    hex(p, len, out);
    printf("%s %s\n", name, out);
    free(out);
}

static void print_u64(const char *name, uint64_t v) { printf("%s %016llx\n", name, (unsigned long long)v); }

/* The cases tests/c_client_large.test.ts encodes with lib/store/large_bodies.ts. */
static int bodies(void)
{
    static uint8_t body[TFS_COMPLETE_UPLOAD_FIXED + 2 * TFS_UPLOAD_PART_SIZE + 4096];
    const char *names[] = {"zeta", "alpha-1", "m"}, *values[] = {"last", "\x00\x01\x02", ""};
    const size_t lens[] = {4, 3, 0};
    tfs_metadata meta, none;
    const char *problem;
    tfs_part parts[2];
    uint8_t md5[16];
    tfs_md5 m;
    tfs_xxh64_state sums;
    size_t len;
    const uint64_t checksums[] = {1, 2, 0xffffffffffffffffULL};
    int i;

    if (tfs_metadata_encode("text/plain; charset=utf-8", names, values, lens, 3, &meta, &problem) != 0 ||
        tfs_metadata_encode(NULL, NULL, NULL, NULL, 0, &none, &problem) != 0)
        return 1;
    tfs_md5_init(&m);
    tfs_md5_update(&m, "hello", 5);
    tfs_md5_final(&m, md5);

    len = tfs_create_upload_request(body, "big/object", 10, 1, 7, 1, 123456789, &meta);
    print_hex("create_upload", body, len);
    len = tfs_create_upload_request(body, "k", 1, 2, 0, 0, 0, &none);
    print_hex("create_upload_plain", body, len);
    tfs_write_block_head(body, (1ULL << 53) - 1, 10000, TFS_PART_BLOCKS_MAX - 1, 0xffffffffffffffffULL,
                         tfs_xxh64("xyz", 3, 0));
    memcpy(body + 32, "xyz", 3);
    print_hex("write_block", body, 35);
    parts[0].number = 1;
    parts[0].block_count = 3;
    parts[0].attempt = 0x0102030405060708ULL;
    parts[0].size = 300;
    parts[0].checksum = 0xdeadbeefcafef00dULL;
    parts[1].number = 10000;
    parts[1].block_count = TFS_PART_BLOCKS_MAX;
    parts[1].attempt = 0xffffffffffffffffULL;
    parts[1].size = 5;
    parts[1].checksum = 7;
    len = tfs_complete_upload_request(body, 42, 1, 9, 1, 305, md5, parts, 2);
    print_hex("complete_upload", body, len);
    len = tfs_complete_upload_request(body, 43, 0, 0, 0, 0, NULL, parts, 0);
    print_hex("complete_upload_empty", body, len);
    tfs_abort_upload_request(body, 42);
    print_hex("abort_upload", body, TFS_ABORT_UPLOAD_SIZE);
    len = tfs_put_object_head(body, "k", 1, 0, 0, md5, &meta);
    memcpy(body + len, "hello", 5);
    print_hex("put_object", body, len + 5);
    len = tfs_put_object_head(body, "key", 3, 1, 3, NULL, &none);
    print_hex("put_object_plain", body, len);
    len = tfs_read_request(body, "big/object", 10, TFS_READ_FLAG_BLOCK_MAP, TFS_READ_SIZE_MAX, 9, 1ULL << 40);
    print_hex("read", body, len);
    tfs_xxh64_init(&sums, 0);
    for (i = 0; i < 3; i++) tfs_xxh64_update_u64(&sums, checksums[i]);
    print_u64("part_checksum", tfs_xxh64_digest(&sums));
    tfs_xxh64_update_u64(&sums, 12345);
    print_u64("manifest_checksum", tfs_xxh64_digest(&sums));
    return 0;
}

static uint8_t *read_stdin(size_t *len)
{
    size_t cap = 1 << 16, got;
    uint8_t *data = (uint8_t *)malloc(cap);
    *len = 0;
    if (data == NULL) return NULL;
    while ((got = fread(data + *len, 1, cap - *len, stdin)) > 0) {
        *len += got;
        if (*len == cap) {
            uint8_t *bigger = (uint8_t *)realloc(data, cap * 2);
            if (bigger == NULL) {
                free(data);
                return NULL;
            }
            data = bigger;
            cap *= 2;
        }
    }
    return data;
}

static int read_reply(void)
{
    size_t len;
    uint8_t *body = read_stdin(&len);
    tfs_read_reply rr;
    char md5[33];
    if (body == NULL) return 1;
    if (tfs_read_read_reply(body, len, &rr) != 0) {
        printf("malformed\n");
    } else {
        uint32_t i;
        hex(rr.md5, 16, md5);
        printf("version %llu timestamp %llu size %llu checksum %016llx kind %u blocks %u md5 %s data %lu map",
               (unsigned long long)rr.info.version, (unsigned long long)rr.info.timestamp,
               (unsigned long long)rr.info.size, (unsigned long long)rr.info.checksum, rr.kind, rr.block_count,
               rr.has_md5 ? md5 : "none", (unsigned long)rr.data_len);
        if (!rr.has_map) printf(" none");
        for (i = 0; rr.has_map && i < rr.map_count; i++) {
            const uint8_t *e = rr.map + (size_t)TFS_BLOCK_MAP_ENTRY * i;
            printf(" %llu+%llu:%016llx", (unsigned long long)tfs_get_u64(e), (unsigned long long)tfs_get_u64(e + 8),
                   (unsigned long long)tfs_get_u64(e + 16));
        }
        printf("\n");
    }
    free(body);
    return 0;
}

static int md5_stdin(void)
{
    size_t len, at = 0, piece = 1;
    uint8_t *data = read_stdin(&len), digest[16];
    char out[33];
    tfs_md5 m;
    if (data == NULL) return 1;
    tfs_md5_init(&m);
    while (at < len) {
        size_t n = len - at < piece ? len - at : piece;
        tfs_md5_update(&m, data + at, n);
        at += n;
        piece = piece * 3 % 1021 + 1;
    }
    tfs_md5_final(&m, digest);
    hex(digest, 16, out);
    printf("%s\n", out);
    free(data);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "bodies") == 0) return bodies();
    if (argc > 1 && strcmp(argv[1], "read-reply") == 0) return read_reply();
    if (argc > 1 && strcmp(argv[1], "md5") == 0) return md5_stdin();
    test_xxh64_streaming();
    test_md5();
    test_vectors();
    test_replies();
    test_metadata();
    return check_report("large_unit_test");
}
