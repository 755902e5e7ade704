/*
 * Internal interfaces of the C client: the checksum, the wire codec (docs/PROTOCOL.md), address
 * parsing and membership, and the socket helpers. Not installed; test/unit_test.c uses it.
 */
#ifndef TFS_INTERNAL_H
#define TFS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "toastyfs.h"

#if defined(__GNUC__)
#define TFS_HIDDEN __attribute__((visibility("hidden")))
#else
#define TFS_HIDDEN
#endif

/* --- Byte order: every integer on the wire is little-endian. */

static inline uint16_t tfs_get_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t tfs_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t tfs_get_u64(const uint8_t *p)
{
    return (uint64_t)tfs_get_u32(p) | ((uint64_t)tfs_get_u32(p + 4) << 32);
}
static inline void tfs_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void tfs_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}
static inline void tfs_put_u64(uint8_t *p, uint64_t v)
{
    tfs_put_u32(p, (uint32_t)v);
    tfs_put_u32(p + 4, (uint32_t)(v >> 32));
}

/* --- xxHash64 (xxhash64.c) */

TFS_HIDDEN uint64_t tfs_xxh64(const void *data, size_t len, uint64_t seed);

/* --- Wire format (wire.c): docs/PROTOCOL.md §1.4, §2, §3 */

#define TFS_HEADER_SIZE 128u
#define TFS_WIRE_MAGIC 0x31534654u
#define TFS_PROTOCOL_VERSION 1u
#define TFS_MESSAGE_SIZE_MAX 16778496u /* 128 + 64 + (64 + 1024) + 16 MiB */
#define TFS_SENDER_CLIENT 255u
#define TFS_COMMAND_REQUEST 3u
#define TFS_COMMAND_REPLY 6u
/* The highest command code the replicas' codec accepts (17 VSR commands, then request_status and
 * status, which lib/net/codec.ts adds for `toastyfs status`). */
#define TFS_COMMAND_MAX 19u
#define TFS_U53 (1ULL << 53)
#define TFS_KEY_REQUEST_FIXED 16u
#define TFS_LIST_REQUEST_FIXED 16u
#define TFS_OBJECT_INFO_SIZE 32u
#define TFS_LIST_REPLY_FIXED 8u
#define TFS_LIST_ENTRY_FIXED 34u

/* Header field offsets (§2.1). */
enum {
    TFS_OFF_CHECKSUM = 0,
    TFS_OFF_CHECKSUM_BODY = 8,
    TFS_OFF_CLUSTER = 16,
    TFS_OFF_PARENT = 24,
    TFS_OFF_CLIENT = 32,
    TFS_OFF_CONTEXT = 40,
    TFS_OFF_OP = 48,
    TFS_OFF_COMMIT = 56,
    TFS_OFF_TIMESTAMP = 64,
    TFS_OFF_CHECKPOINT_DIGEST = 72,
    TFS_OFF_CHECKPOINT_OP = 80,
    TFS_OFF_MAGIC = 88,
    TFS_OFF_SIZE = 92,
    TFS_OFF_VIEW = 96,
    TFS_OFF_LOG_VIEW = 100,
    TFS_OFF_REQUEST = 104,
    TFS_OFF_EPOCH = 108,
    TFS_OFF_PROTOCOL = 112,
    TFS_OFF_COMMAND = 114,
    TFS_OFF_REPLICA = 115,
    TFS_OFF_OPERATION = 116,
    TFS_OFF_RESULT = 117,
    TFS_OFF_REPLICA_COUNT = 118,
    TFS_OFF_SESSION = 120
};

/* Operations (§3.3) and results (§3.7). */
enum { TFS_OP_REGISTER = 1, TFS_OP_PUT = 2, TFS_OP_GET = 3, TFS_OP_DELETE = 4, TFS_OP_LIST = 5, TFS_OP_STAT = 6 };
enum {
    TFS_RESULT_OK = 0,
    TFS_RESULT_NOT_FOUND = 1,
    TFS_RESULT_CONDITION_FAILED = 2,
    TFS_RESULT_KEY_INVALID = 3,
    TFS_RESULT_VALUE_TOO_LARGE = 4,
    TFS_RESULT_BAD_REQUEST = 5,
    TFS_RESULT_EVICTED = 6,
    TFS_RESULT_NOT_PRIMARY = 7,
    TFS_RESULT_BUSY = 8,
    TFS_RESULT_UNAVAILABLE = 9,
    TFS_RESULT_NO_SPACE = 10,
    TFS_RESULT_WRONG_CLUSTER = 11
};

/* Why a frame was rejected (§1.5). Each closes the connection it came on. */
enum {
    TFS_FRAME_OK = 0,
    TFS_FRAME_MAGIC,
    TFS_FRAME_PROTOCOL,
    TFS_FRAME_CHECKSUM_HEADER,
    TFS_FRAME_SIZE,
    TFS_FRAME_CHECKSUM_BODY,
    TFS_FRAME_FIELD,   /* a u64 field that must be below 2^53 is not */
    TFS_FRAME_CLUSTER,
    TFS_FRAME_COMMAND,
    TFS_FRAME_REPLICA
};
TFS_HIDDEN const char *tfs_frame_error_name(int reason);

/* Zeroes the header and fills a client request's fields (§3.2). */
TFS_HIDDEN void tfs_request_header(uint8_t *header, uint64_t cluster, uint64_t client, uint64_t session,
                                   uint32_t request, uint8_t operation);
/* Sets size and checksum_body for the body that follows the header in msg (§2.3 step 2). */
TFS_HIDDEN void tfs_seal_body(uint8_t *msg, size_t body_len);
/* Sets the view hint and then the header checksum (§2.3 step 3); cheap, done per send. */
TFS_HIDDEN void tfs_seal_header(uint8_t *msg, uint32_t view);

/* Steps 2-5 and 7-10 of §1.5 on a received header; on success *size is the whole frame's size
 * (128..TFS_MESSAGE_SIZE_MAX), so the body may be allocated. */
TFS_HIDDEN int tfs_check_header(const uint8_t *header, uint64_t cluster, uint32_t *size);
/* Step 6: the body checksum. */
TFS_HIDDEN int tfs_check_body(const uint8_t *header, const uint8_t *body, size_t body_len);

/* Key request body (§3.4.1) into body, which has room for 16 + key_len + value_len bytes. */
TFS_HIDDEN void tfs_key_request(uint8_t *body, const char *key, size_t key_len, uint8_t condition, uint64_t if_version,
                                const char *value, size_t value_len);
/* List request body (§3.4.2) into body, which has room for 16 + prefix_len + after_len bytes. */
TFS_HIDDEN void tfs_list_request(uint8_t *body, const char *prefix, size_t prefix_len, const char *after,
                                 size_t after_len, uint32_t limit);

typedef struct tfs_object_info {
    uint64_t version, timestamp, size, checksum;
} tfs_object_info;
/* Object info (§3.6.2) at p (32 bytes). 0, or -1 if a field is not below 2^53 or version is 0. */
TFS_HIDDEN int tfs_read_object_info(const uint8_t *p, tfs_object_info *info);
/* A version reply body (§3.6.1): exactly 8 bytes, below 2^53. 0 or -1. */
TFS_HIDDEN int tfs_read_version(const uint8_t *body, size_t len, uint64_t *version);
/* A list reply body (§3.6.4), validated completely, into res->entries (one allocation holding the
 * array and the keys). 0, -1 if malformed, -2 if out of memory. */
TFS_HIDDEN int tfs_read_list(const uint8_t *body, size_t len, ToastyFS_Result *res);

/* --- Addresses and membership (address.c): lib/net/address.ts, PROTOCOL §3.1 */

#define TFS_HOST_MAX 255
typedef struct tfs_address {
    char host[TFS_HOST_MAX + 1]; /* without brackets */
    uint16_t port;
    char text[TFS_HOST_MAX + 10]; /* canonical "host:port" or "[v6]:port" */
} tfs_address;

/* Parses "host:port" or "[ipv6]:port" (surrounding whitespace ignored). 0 or -1. */
TFS_HIDDEN int tfs_parse_address(const char *text, tfs_address *out);
/* Parses and sorts the addresses (bytewise, by canonical text) and derives the cluster id.
 * 0, or -1 for a bad address, a duplicate, or a count outside 1..15. */
TFS_HIDDEN int tfs_membership(char **addrs, int count, tfs_address *sorted, uint64_t *cluster);

/* --- Sockets and time (net.c) */

/* Milliseconds on a monotonic clock. */
TFS_HIDDEN int64_t tfs_now_ms(void);
TFS_HIDDEN void tfs_sleep_ms(int64_t ms);
/* 64 bits from /dev/urandom, or (if that fails) a hash of the time, the pid and addresses. */
TFS_HIDDEN uint64_t tfs_random64(void);
/* A non-blocking TCP connection to address, established before deadline_ms: the fd, or -1. */
TFS_HIDDEN int tfs_connect(const tfs_address *address, int64_t deadline_ms);
/* Sends all len bytes on a non-blocking fd; gives up when no byte could be sent for idle_ms, or at
 * deadline_ms. 0, or -1 (the connection is then out of sync and must be closed). */
TFS_HIDDEN int tfs_send_all(int fd, const uint8_t *data, size_t len, int64_t idle_ms, int64_t deadline_ms);
TFS_HIDDEN void tfs_close_fd(int fd);

#endif /* TFS_INTERNAL_H */
