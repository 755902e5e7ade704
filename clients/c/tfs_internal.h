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
typedef struct tfs_xxh64_state {
    uint64_t v[4];
    uint64_t seed;
    uint64_t total;
    uint8_t buf[32];
    size_t buf_len;
} tfs_xxh64_state;
TFS_HIDDEN void tfs_xxh64_init(tfs_xxh64_state *s, uint64_t seed);
TFS_HIDDEN void tfs_xxh64_update(tfs_xxh64_state *s, const void *data, size_t len);
/* Feeds v as 8 little-endian bytes (part and manifest checksums hash checksums this way). */
TFS_HIDDEN void tfs_xxh64_update_u64(tfs_xxh64_state *s, uint64_t v);
/* The hash of everything fed so far; the state may be fed further. */
TFS_HIDDEN uint64_t tfs_xxh64_digest(const tfs_xxh64_state *s);

/* --- MD5, RFC 1321 (md5.c) */

typedef struct tfs_md5 {
    uint32_t state[4];
    uint64_t bytes;
    uint8_t buf[64];
} tfs_md5;
TFS_HIDDEN void tfs_md5_init(tfs_md5 *m);
TFS_HIDDEN void tfs_md5_update(tfs_md5 *m, const void *data, size_t len);
TFS_HIDDEN void tfs_md5_final(tfs_md5 *m, uint8_t out[16]);

/* --- Wire format (wire.c): docs/PROTOCOL.md §1.4, §2, §3 */

#define TFS_HEADER_SIZE 128u
#define TFS_WIRE_MAGIC 0x31534654u
#define TFS_PROTOCOL_VERSION 1u
#define TFS_MESSAGE_SIZE_MAX 16778560u /* 128 + 64 + (64 + 1088) + 16 MiB */
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
/* The same for a body whose last tail_len bytes are sent from elsewhere (a block of the caller's). */
TFS_HIDDEN void tfs_seal_body_tail(uint8_t *msg, size_t head_len, const uint8_t *tail, size_t tail_len);
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

/* --- Large-object bodies (wire_large.c): docs/PROTOCOL.md §3.15, lib/store/large_bodies.ts */

enum {
    TFS_OP_CREATE_UPLOAD = 7,
    TFS_OP_WRITE_BLOCK = 8,
    TFS_OP_COMPLETE_UPLOAD = 9,
    TFS_OP_ABORT_UPLOAD = 10,
    TFS_OP_READ = 11,
    TFS_OP_PUT_OBJECT = 12
};
enum {
    TFS_RESULT_OBJECT_CHANGED = 12,
    TFS_RESULT_UPLOAD_NOT_FOUND = 13,
    TFS_RESULT_RANGE_INVALID = 14,
    TFS_RESULT_UPLOAD_INCOMPLETE = 15,
    TFS_RESULT_SIZE_MISMATCH = 16,
    TFS_RESULT_TOO_MANY_UPLOADS = 17
};

#define TFS_BLOCK_SIZE_MIN 16u
#define TFS_READ_SIZE_MAX 4194304u
#define TFS_UPLOAD_PARTS_MAX 10000u
#define TFS_PART_BLOCKS_MAX 1048576u
#define TFS_BLOCK_MAP_ENTRIES_MAX (TFS_READ_SIZE_MAX / TFS_BLOCK_SIZE_MIN + 2u)
#define TFS_CREATE_UPLOAD_FIXED 32u
#define TFS_CREATE_UPLOAD_REPLY 24u
#define TFS_WRITE_BLOCK_FIXED 32u
#define TFS_COMPLETE_UPLOAD_FIXED 48u
#define TFS_UPLOAD_PART_SIZE 32u
#define TFS_COMPLETE_UPLOAD_REPLY 16u
#define TFS_ABORT_UPLOAD_SIZE 8u
#define TFS_READ_REQUEST_FIXED 24u
#define TFS_PUT_OBJECT_FIXED 32u
#define TFS_OBJECT_HEADER_FIXED 64u
#define TFS_BLOCK_MAP_FIXED 8u
#define TFS_BLOCK_MAP_ENTRY 24u
#define TFS_MD5_SIZE 16u
#define TFS_READ_FLAG_METADATA 1u
#define TFS_READ_FLAG_BLOCK_MAP 2u
#define TFS_KIND_INLINE 0u
#define TFS_KIND_CHUNKED 1u

/* Content type and canonical user metadata, as they go on the wire. */
typedef struct tfs_metadata {
    const char *content_type;
    size_t content_type_len;
    uint8_t user_meta[TOASTYFS_USER_META_SIZE_MAX];
    size_t user_meta_len;
} tfs_metadata;

/* Checks and encodes the caller's metadata into meta (sorted by name, §3.15.2). 0, or -1 with
 * *problem saying which limit or rule was broken. value_lens NULL: values are NUL-terminated. */
TFS_HIDDEN int tfs_metadata_encode(const char *content_type, const char *const *names, const char *const *values,
                                   const size_t *value_lens, int count, tfs_metadata *meta, const char **problem);

/* create_upload body (§3.15.3) into body (room for 32 + key + metadata): its length. */
TFS_HIDDEN size_t tfs_create_upload_request(uint8_t *body, const char *key, size_t key_len, uint8_t condition,
                                            uint64_t if_version, int has_declared, uint64_t declared,
                                            const tfs_metadata *meta);
/* put_object body (§3.15.6) up to the value, which follows it on the wire: its length. md5 NULL:
 * absent. */
TFS_HIDDEN size_t tfs_put_object_head(uint8_t *body, const char *key, size_t key_len, uint8_t condition,
                                      uint64_t if_version, const uint8_t *md5, const tfs_metadata *meta);
/* The 32 bytes of a write_block body (§3.15.4) before its data. */
TFS_HIDDEN void tfs_write_block_head(uint8_t *head, uint64_t upload_id, uint32_t part, uint32_t index, uint64_t attempt,
                                     uint64_t checksum);

typedef struct tfs_part {
    uint32_t number, block_count;
    uint64_t attempt, size, checksum;
} tfs_part;
/* complete_upload body (§3.15.5) into body (room for 48 + 32 * count): its length. */
TFS_HIDDEN size_t tfs_complete_upload_request(uint8_t *body, uint64_t upload_id, uint8_t condition, uint64_t if_version,
                                              int has_declared, uint64_t declared, const uint8_t *md5,
                                              const tfs_part *parts, uint32_t count);
TFS_HIDDEN void tfs_abort_upload_request(uint8_t *body, uint64_t upload_id);
/* read body (§3.15.7) into body (room for 24 + key): its length. */
TFS_HIDDEN size_t tfs_read_request(uint8_t *body, const char *key, size_t key_len, uint8_t flags, uint32_t length,
                                   uint64_t version, uint64_t offset);

/* create_upload's and complete_upload's ok replies. 0, or -1 if malformed. */
TFS_HIDDEN int tfs_read_create_upload_reply(const uint8_t *body, size_t len, uint64_t *upload_id,
                                            uint64_t *block_size_max, uint64_t *object_size_max);
TFS_HIDDEN int tfs_read_complete_upload_reply(const uint8_t *body, size_t len, uint64_t *version, uint64_t *checksum);

/* A read reply (§3.15.8), pointing into the body it was parsed from. */
typedef struct tfs_read_reply {
    tfs_object_info info;
    uint8_t kind;
    int has_md5;
    uint8_t md5[TFS_MD5_SIZE];
    uint32_t block_count;
    int has_map;
    uint32_t map_count;
    const uint8_t *map; /* map_count entries of TFS_BLOCK_MAP_ENTRY bytes: u64 start, size, checksum */
    const uint8_t *data;
    size_t data_len;
} tfs_read_reply;
/* Validates a whole read reply body as lib/store/large_bodies.ts decodeReadReply does: 0, or -1. */
TFS_HIDDEN int tfs_read_read_reply(const uint8_t *body, size_t len, tfs_read_reply *out);

/* --- The client core (toastyfs.c) as the large-object calls (upload.c, read_stream.c) use it */

/* What a reply carried besides res: toastyfs.c fills it, upload.c and read_stream.c read it. */
typedef struct tfs_out {
    uint64_t upload_id, block_size_max, object_size_max; /* create_upload */
    uint64_t checksum;                                   /* complete_upload: the manifest checksum */
    uint8_t *body;         /* read: the reply body, now the caller's to free */
    tfs_read_reply read;   /* read: the reply, parsed and validated, pointing into body */
    uint64_t limit;        /* value_too_large, too_many_uploads: the cluster's limit (0: not given) */
} tfs_out;

/* Runs one operation to a final answer (registering first if it is a write that needs a session):
 * body (body_len bytes) is copied into the request, tail (tail_len bytes, may be NULL) is sent after
 * it from where it is. out may be NULL. Returns res->status. */
TFS_HIDDEN int tfs_execute(ToastyFS *t, uint8_t operation, const uint8_t *body, size_t body_len, const uint8_t *tail,
                           size_t tail_len, tfs_out *out, ToastyFS_Result *res);
/* Clears res and checks the handle (res NULL, tfs NULL): 0 or the failing status. */
TFS_HIDDEN int tfs_check_common(ToastyFS *t, ToastyFS_Result *res);
TFS_HIDDEN int tfs_check_key(const char *key, int key_len, ToastyFS_Result *res);
/* Sets res->status and a printf-style res->message; returns status. */
TFS_HIDDEN int tfs_fail(ToastyFS_Result *res, int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* The block size this handle uploads with: 4 MiB until a cluster announces its own. */
TFS_HIDDEN uint32_t tfs_block_size(const ToastyFS *t);
TFS_HIDDEN void tfs_learn_block_size(ToastyFS *t, uint32_t block_size);
/* The put of one request (op 2), as toastyfs_put_if did before uploads. */
TFS_HIDDEN int tfs_put_inline(ToastyFS *t, const char *key, size_t key_len, const char *data, size_t data_len,
                              uint8_t condition, uint64_t if_version, ToastyFS_Result *res);

/* --- Choosing a replica (route.c): docs/PROTOCOL.md §3.9, without I/O. Times in ms on the caller's
 * clock; replica indexes 0..n-1. */

typedef struct tfs_down {
    int marked;      /* the replica could not be reached lately */
    int64_t since;   /* when */
    int has_view;    /* view is known: */
    uint32_t view;   /* the highest view this client knew it as primary of while it was down */
} tfs_down;

/* What the choice remembers between operations (one per handle). */
typedef struct tfs_route {
    int n;
    int target;         /* where the next send goes */
    uint32_t view_hint; /* the highest view seen in any reply */
    int heard;          /* any reply arrived: view_hint means something */
    int64_t attempt_timeout_ms, backoff_ms; /* T and B */
    tfs_down down[TOASTYFS_REPLICAS_MAX];
} tfs_route;

/* What it remembers of one request (the register before a write is a request of its own). */
typedef struct tfs_attempts {
    int sends;      /* sends so far */
    int polls;      /* of those, the ones after a pause because a backup named a down primary */
    int redirected; /* the target was set from a reply: the next retry goes there */
} tfs_attempts;

TFS_HIDDEN void tfs_route_init(tfs_route *r, int n, int first_target, int64_t attempt_timeout_ms, int64_t backoff_ms);
/* up(i): not marked down, or marked 2T ago or more (the mark is then forgotten). */
TFS_HIDDEN int tfs_route_up(tfs_route *r, int i, int64_t now);
/* The first of i+1, i+2, ... (mod n) that is up; i if it is the only one; i+1 if none is. */
TFS_HIDDEN int tfs_route_next_up(tfs_route *r, int i, int64_t now);
/* A new request: clears a, and moves the target off a replica that is down. */
TFS_HIDDEN void tfs_route_begin(tfs_route *r, tfs_attempts *a, int64_t now);
/* A send to r->target: counts it and returns its attempt timeout (T, up to 4T once every replica
 * has had one; polls do not count). */
TFS_HIDDEN int64_t tfs_route_send(tfs_route *r, tfs_attempts *a);
/* The attempt is over without a usable reply (timeout, the connection closed, or a pause a reply
 * asked for has passed): sets the target of the retry. */
TFS_HIDDEN void tfs_route_resend(tfs_route *r, tfs_attempts *a, int64_t now);
/* A connection to replica i could not be made (refused, or no answer before it opened): marks it
 * down. 1 if i is the target (the caller retries at once, tfs_route_resend). */
TFS_HIDDEN int tfs_route_unreachable(tfs_route *r, int i, int64_t now);
/* A connection to replica i opened: it is up. */
TFS_HIDDEN void tfs_route_reachable(tfs_route *r, int i);
/* A reply to the pending request (on the connection to replica `from`, -1 if unknown) from replica
 * `replica` in `view` with `result`. For not_primary, busy and unavailable: sets the target (and
 * a's flags) and returns how long to wait before tfs_route_resend. For any other result (final):
 * the target becomes the replier; returns 0. */
TFS_HIDDEN int64_t tfs_route_reply(tfs_route *r, tfs_attempts *a, int from, int replica, uint32_t view, uint8_t result,
                                   int64_t now);

/* --- Large objects (upload.c, read_stream.c) */

/* toastyfs_put of a value above the block size: an upload from memory, blocks sliced from data. */
TFS_HIDDEN int tfs_put_large(ToastyFS *t, const char *key, size_t key_len, const char *data, size_t data_len,
                             uint8_t condition, uint64_t if_version, ToastyFS_Result *res);
/* toastyfs_get of a value above what one get returns: head, allocate, read. */
TFS_HIDDEN int tfs_get_large(ToastyFS *t, const char *key, size_t key_len, ToastyFS_Result *res);

/* --- SHA-256 and HMAC-SHA256 (sha256.c): FIPS 180-4, RFC 2104 */

#define TFS_SHA256_SIZE 32u
typedef struct tfs_sha256 {
    uint32_t state[8];
    uint64_t bytes;
    uint8_t buf[64];
} tfs_sha256;
TFS_HIDDEN void tfs_sha256_init(tfs_sha256 *s);
TFS_HIDDEN void tfs_sha256_update(tfs_sha256 *s, const void *data, size_t len);
TFS_HIDDEN void tfs_sha256_final(tfs_sha256 *s, uint8_t out[TFS_SHA256_SIZE]);
typedef struct tfs_hmac {
    tfs_sha256 inner, outer;
} tfs_hmac;
TFS_HIDDEN void tfs_hmac_init(tfs_hmac *h, const uint8_t *key, size_t key_len);
TFS_HIDDEN void tfs_hmac_update(tfs_hmac *h, const void *data, size_t len);
TFS_HIDDEN void tfs_hmac_final(tfs_hmac *h, uint8_t out[TFS_SHA256_SIZE]);
/* 1 if the len bytes at a and b are equal, in time that does not depend on where they differ. */
TFS_HIDDEN int tfs_equal_ct(const uint8_t *a, const uint8_t *b, size_t len);

/* --- Authentication (auth.c): docs/PROTOCOL.md §6 */

#define TFS_AUTH_KEY_SIZE 32u
#define TFS_AUTH_NONCE_SIZE 32u
#define TFS_AUTH_HELLO_SIZE 48u
#define TFS_AUTH_CHALLENGE_SIZE 72u
#define TFS_AUTH_PROOF_SIZE 40u
#define TFS_AUTH_REFUSAL_SIZE 8u
#define TFS_AUTH_TAG_SIZE 16u
#define TFS_AUTH_HANDSHAKE_MAGIC 0x48534654u /* "TFSH" */
#define TFS_AUTH_REFUSAL_MAGIC 0x52534654u   /* "TFSR" */
/* A secret file holds 64 hex digits; what is read of one is bounded well above that (whitespace). */
#define TFS_AUTH_FILE_SIZE_MAX 4096u

/* Reads a secret file or a client key file (§6.1) into K_client. 0, or -1 with a message naming the
 * file in err (err_len bytes). */
TFS_HIDDEN int tfs_auth_read_file(const char *path, uint8_t client_key[TFS_AUTH_KEY_SIZE], char *err, size_t err_len);
/* Parses the text of such a file (len bytes); `path` names it in err. 0 or -1. */
TFS_HIDDEN int tfs_auth_parse(const char *text, size_t len, const char *path, uint8_t client_key[TFS_AUTH_KEY_SIZE],
                              char *err, size_t err_len);
/* The HELLO of a client (role 0, index 255) of cluster with nonce_d. */
TFS_HIDDEN void tfs_auth_hello(uint8_t hello[TFS_AUTH_HELLO_SIZE], uint64_t cluster,
                               const uint8_t nonce[TFS_AUTH_NONCE_SIZE]);
/* Checks a CHALLENGE from the replica `expected` of n: 0 with the PROOF and the session keys (send
 * = K_d2a, receive = K_a2d), or -1 with why in err. */
TFS_HIDDEN int tfs_auth_answer(const uint8_t key[TFS_AUTH_KEY_SIZE], const uint8_t hello[TFS_AUTH_HELLO_SIZE],
                               const uint8_t challenge[TFS_AUTH_CHALLENGE_SIZE], int expected, int n,
                               uint8_t proof[TFS_AUTH_PROOF_SIZE], uint8_t send_key[TFS_AUTH_KEY_SIZE],
                               uint8_t receive_key[TFS_AUTH_KEY_SIZE], char *err, size_t err_len);
/* What a refusal code means to the user (§6.4). */
TFS_HIDDEN const char *tfs_auth_refusal_message(int code);
/* The tag of a frame given in up to two parts (b may be NULL) at sequence number seq (§6.3). */
TFS_HIDDEN void tfs_auth_tag(const uint8_t key[TFS_AUTH_KEY_SIZE], uint64_t seq, const uint8_t *a, size_t a_len,
                             const uint8_t *b, size_t b_len, uint8_t tag[TFS_AUTH_TAG_SIZE]);

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

/* --- Sockets, streams and time (net.c) */

/* Milliseconds on a monotonic clock. */
TFS_HIDDEN int64_t tfs_now_ms(void);
TFS_HIDDEN void tfs_sleep_ms(int64_t ms);
/* 64 bits from /dev/urandom, or (if that fails) a hash of the time, the pid and addresses. */
TFS_HIDDEN uint64_t tfs_random64(void);
/* len bytes from /dev/urandom: 0, or -1 if it cannot be read (nonces must not be guessable). */
TFS_HIDDEN int tfs_random_bytes(uint8_t *out, size_t len);
/* A non-blocking TCP connection to address, established before deadline_ms: the fd, or -1. */
TFS_HIDDEN int tfs_connect(const tfs_address *address, int64_t deadline_ms);
/* Waits until fd is ready for events or until passes: its revents (0: interrupted), or -1 at the
 * deadline or on an error of poll itself. */
TFS_HIDDEN int tfs_wait_ready(int fd, short events, int64_t until);

/* A connection's byte stream: plain TCP, or TLS over it once tfs_tls_handshake succeeded. Every
 * read and write is non-blocking; one that cannot go on now returns TFS_IO_AGAIN and sets `wait`
 * to what to poll fd for (TLS can need to write in order to read, and the reverse). */
#define TFS_IO_ERROR (-1)
#define TFS_IO_AGAIN (-2)
typedef struct tfs_stream {
    int fd;     /* -1: closed */
    void *tls;  /* the OpenSSL SSL of this connection (tls.c); NULL: plain TCP */
    short wait; /* after TFS_IO_AGAIN: POLLIN or POLLOUT */
    int eof;    /* the peer closed its side (tls.c's socket layer notes it for OpenSSL) */
} tfs_stream;

/* Up to len bytes: how many (> 0), 0 if the peer closed, TFS_IO_AGAIN, or TFS_IO_ERROR. */
TFS_HIDDEN long tfs_stream_read(tfs_stream *s, uint8_t *buf, size_t len);
/* Up to len bytes written: how many (> 0), TFS_IO_AGAIN, or TFS_IO_ERROR. */
TFS_HIDDEN long tfs_stream_write(tfs_stream *s, const uint8_t *buf, size_t len);
/* Bytes already received and decrypted but not yet read: poll() cannot see them, so a reader must
 * not wait while there are any. Always 0 on plain TCP. */
TFS_HIDDEN size_t tfs_stream_buffered(const tfs_stream *s);
/* Receives exactly len bytes before deadline_ms: len, fewer if the peer closed first (how many
 * arrived), or -1 on an error or the deadline. */
TFS_HIDDEN long tfs_recv_exact(tfs_stream *s, uint8_t *out, size_t len, int64_t deadline_ms);
/* Sends all len bytes; gives up when no byte could be sent for idle_ms, or at deadline_ms. 0, or -1
 * (the connection is then out of sync and must be closed). */
TFS_HIDDEN int tfs_send_all(tfs_stream *s, const uint8_t *data, size_t len, int64_t idle_ms, int64_t deadline_ms);
/* Frees the TLS state, closes the socket; fd becomes -1. Safe on a closed stream. */
TFS_HIDDEN void tfs_stream_close(tfs_stream *s);

/* --- Mutual TLS (tls.c): docs/PROTOCOL.md §6.8. Built on OpenSSL when TOASTYFS_HAVE_TLS is
 * defined (the Makefile does when it finds OpenSSL); otherwise the same functions exist and say
 * that TLS is unavailable. */

/* The certificate, key and CA of a handle, loaded and checked once (an OpenSSL SSL_CTX). */
typedef struct tfs_tls_config tfs_tls_config;
/* 1 if this library was built with TLS. */
TFS_HIDDEN int tfs_tls_built_in(void);
/* Loads the PEM files (cert_file and key_file both NULL: present no certificate). NULL with a
 * message naming the file in err (err_len bytes) if one is unusable, or without TLS built in. */
TFS_HIDDEN tfs_tls_config *tfs_tls_config_new(const char *cert_file, const char *key_file, const char *ca_file,
                                              char *err, size_t err_len);
TFS_HIDDEN void tfs_tls_config_free(tfs_tls_config *config);
enum { TFS_TLS_OK = 0, TFS_TLS_REFUSED = -1, TFS_TLS_NO_ANSWER = -2 };
/* The TLS handshake on s (connected, plain) with the replica at address: TFS_TLS_OK (s is now TLS;
 * the replica's certificate chains to the CA and names address->host), TFS_TLS_REFUSED (a failed
 * handshake or a refused certificate: an authentication failure, why in err), or TFS_TLS_NO_ANSWER
 * (the deadline passed, or the socket failed). s is closed on failure. */
TFS_HIDDEN int tfs_tls_handshake(tfs_tls_config *config, tfs_stream *s, const tfs_address *address,
                                 int64_t deadline_ms, char *err, size_t err_len);
/* The TLS half of tfs_stream_read, _write, _buffered and _close. */
TFS_HIDDEN long tfs_tls_read(tfs_stream *s, uint8_t *buf, size_t len);
TFS_HIDDEN long tfs_tls_write(tfs_stream *s, const uint8_t *buf, size_t len);
TFS_HIDDEN size_t tfs_tls_buffered(const tfs_stream *s);
TFS_HIDDEN void tfs_tls_free(tfs_stream *s);
/* Whether a stream's first len bytes are a TLS alert record (content type 21, version 3.x, length
 * 2): what a replica that requires TLS answers a plain connection with (lib/net/tls.ts isTlsAlert). */
TFS_HIDDEN int tfs_is_tls_alert(const uint8_t *bytes, size_t len);

#endif /* TFS_INTERNAL_H */
