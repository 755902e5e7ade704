/*
 * toastyfs.h: the C client library of ToastyFS, a replicated object store.
 *
 * C99, blocking, no dependencies beyond libc and POSIX sockets, and OpenSSL (libssl, libcrypto) for
 * mutual TLS when the library was built with it (the Makefile uses it when it finds it; see
 * toastyfs_tls_available). Link with libtoasty.so, or with libtoasty.a plus, when built with TLS,
 * -lssl -lcrypto (`make -s -C clients/c link-flags` prints what is needed; no -lpthread, no -lm).
 *
 *     char *addrs[] = { "127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:8083" };
 *     ToastyFS *tfs = toastyfs_init(0, addrs, 3);
 *     ToastyFS_Result res;
 *     if (toastyfs_put(tfs, "hello", 5, "world", 5, &res) < 0)
 *         fprintf(stderr, "put: %s\n", res.message);
 *     if (toastyfs_get(tfs, "hello", 5, &res) == 0)
 *         printf("%.*s (version %llu)\n", res.data_len, res.data, (unsigned long long)res.version);
 *     toastyfs_result_free(&res);
 *     toastyfs_free(tfs);
 *
 * Every operation returns 0 (TOASTYFS_OK) on success and a negative TOASTYFS_* status otherwise;
 * the same value is in res->status, and res->message says what happened in words. Invalid
 * arguments (NULL pointers, negative lengths, a key outside 1..1088 bytes)
 * are rejected before anything is sent.
 *
 * Every operation is retried internally, with the same request number, until a replica gives a
 * final answer or the operation timeout (default 15 s) passes: on a timeout the library moves to
 * the next replica, it follows "not primary" hints, backs off when the cluster is busy, and closes
 * any connection that delivers a malformed frame. The cluster executes each write at most once, so
 * these retries are safe. When no final answer comes in time the operation fails with
 * TOASTYFS_NO_QUORUM; for a put or delete its outcome is then unknown (res->outcome_unknown = 1).
 *
 * Versions: the cluster keeps one revision counter for the whole namespace, which every successful
 * put or delete (of any key) advances by one; a put's version is the revision it made, 1 for the
 * first write to a new cluster. A key's versions only grow and are never reused after a delete, and
 * a higher version was written later whatever the key; they need not be consecutive per key, and
 * they are not the replicas' op numbers. A write that fails (condition failed, not found) advances
 * nothing.
 *
 * A handle is not thread-safe: it has one request in flight at a time. Use one handle per thread
 * (each gets its own client id and session); a cluster keeps up to 256 sessions by default, and
 * registering a new one evicts the one whose last write is the oldest. A handle registers its
 * session at its first put or delete: handles that only read take none.
 */
#ifndef TOASTYFS_H
#define TOASTYFS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && !defined(TOASTYFS_NO_VISIBILITY)
#define TOASTYFS_API __attribute__((visibility("default")))
#else
#define TOASTYFS_API
#endif

/* Limits (docs/PROTOCOL.md §1.4). A cluster may be configured with a lower value limit; it then
 * answers TOASTYFS_VALUE_TOO_LARGE. */
#define TOASTYFS_KEY_SIZE_MAX 1088
#define TOASTYFS_VALUE_SIZE_MAX (16 * 1024 * 1024)
#define TOASTYFS_LIST_LIMIT_MAX 1000
#define TOASTYFS_REPLICAS_MAX 15
/* Large objects (docs/PROTOCOL.md §3.15). Objects above a cluster's block size (4 MiB unless the
 * cluster was started with a smaller --block-size-max) are uploaded in blocks of that size. */
#define TOASTYFS_BLOCK_SIZE_MAX (4 * 1024 * 1024)
#define TOASTYFS_OBJECT_SIZE_MAX 5497558138880ULL /* 5 TiB */
#define TOASTYFS_CONTENT_TYPE_SIZE_MAX 255
#define TOASTYFS_USER_META_SIZE_MAX 2048 /* encoded: 3 bytes + name + value per entry */
#define TOASTYFS_META_NAME_SIZE_MAX 128

/* Status codes: the return value of every operation, and ToastyFS_Result.status. */
#define TOASTYFS_OK 0
#define TOASTYFS_NOT_FOUND (-1)          /* get, stat, delete: no such key */
#define TOASTYFS_CONDITION_FAILED (-2)   /* put_if / delete_if: res->version = current version (0 = absent) */
#define TOASTYFS_KEY_INVALID (-3)        /* key empty or longer than 1088 bytes */
#define TOASTYFS_VALUE_TOO_LARGE (-4)    /* over the cluster's limit (16 MiB in one request, 5 TiB uploaded), or a
                                            get of more than INT_MAX bytes */
#define TOASTYFS_BAD_REQUEST (-5)        /* the cluster rejected the request as malformed */
#define TOASTYFS_EVICTED (-6)            /* session evicted (too many clients); the write may or may not have happened */
#define TOASTYFS_NO_SPACE (-7)           /* the cluster's disk is full: writes refused */
#define TOASTYFS_NO_QUORUM (-8)          /* no final answer within the operation timeout: is a majority up? */
#define TOASTYFS_PROTOCOL (-9)           /* replicas answered with malformed or invalid messages */
#define TOASTYFS_INVALID_ARGUMENT (-10)  /* NULL pointer, negative length, bad limit or condition */
#define TOASTYFS_NO_MEMORY (-11)         /* malloc failed */
#define TOASTYFS_WRONG_CLUSTER (-12)     /* a replica belongs to another cluster: the addresses given to
                                            toastyfs_init differ from the replicas' (pass the same set) */
#define TOASTYFS_OBJECT_CHANGED (-13)   /* the object was replaced while it was read in several requests:
                                            res->version = the version now current (0 = deleted) */
#define TOASTYFS_UPLOAD_NOT_FOUND (-14) /* the cluster no longer knows the upload (expired, aborted) */
#define TOASTYFS_RANGE_INVALID (-15)    /* get_stream/get_fd: offset is past the end; res->size = the size */
#define TOASTYFS_SIZE_MISMATCH (-16)    /* the bytes given differ from the declared size; res->size = actual */
#define TOASTYFS_SOURCE_CHANGED (-17)   /* put_fd: the file shrank or grew while it was read */
#define TOASTYFS_CALLBACK (-18)         /* a source or sink callback returned nonzero, or reading or writing the
                                            file descriptor failed (res->message says which) */
#define TOASTYFS_TOO_MANY_UPLOADS (-19) /* the cluster has its limit of open uploads */
#define TOASTYFS_AUTH_FAILED (-20)      /* "authentication failed: ...": a replica refused us (it requires a secret,
                                            or has none), the handshake failed (wrong secret), or the secret file
                                            of TOASTYFS_SECRET_FILE is unusable; or TLS (the message then says
                                            "TLS"): the replica refused our certificate, we refused its, the TLS
                                            handshake failed, the replica requires TLS and we have none, or a TLS
                                            file is unusable. Retrying does not help. */
#define TOASTYFS_TLS_UNAVAILABLE (-21)  /* TLS was asked for (toastyfs_init_tls, TOASTYFS_TLS_*), but this library
                                            was built without OpenSSL */

/* Conditions of toastyfs_put_if (the values are the wire codes). */
#define TOASTYFS_IF_VERSION 1  /* succeed only if the key exists with version == if_version */
#define TOASTYFS_IF_ABSENT 2   /* succeed only if the key does not exist */

typedef struct ToastyFS ToastyFS;

/* One key of a list result. */
typedef struct ToastyFS_Entry {
    char *key;          /* key_len bytes plus a terminating NUL; owned by the result */
    int key_len;
    uint64_t version;
    uint64_t timestamp; /* ms since the Unix epoch when this version was written */
    uint64_t size;      /* value size in bytes */
    uint64_t checksum;  /* xxHash64 (seed 0) of the value */
} ToastyFS_Entry;

/*
 * The outcome of one operation. Every operation initializes the whole struct first (even when it
 * rejects its arguments), so toastyfs_result_free() is always safe after a call, and twice.
 * Only get and list results own memory (data, entries); a put, delete or stat result owns nothing.
 */
typedef struct ToastyFS_Result {
    int status;           /* TOASTYFS_OK or a negative TOASTYFS_* code (= the return value) */
    int outcome_unknown;  /* put/delete that failed after being sent (no quorum, evicted, protocol):
                             it may or may not have been executed */
    uint64_t version;     /* put: the new version (the namespace revision it made); delete: the
                             version deleted; get/stat: the object's version; condition failed:
                             the current version (0 = absent) */
    uint64_t timestamp;   /* get/stat: ms since the Unix epoch when this version was written */
    uint64_t size;        /* get/stat: the value's size in bytes */
    uint64_t checksum;    /* get/stat: xxHash64 (seed 0) of the value (get: verified) */
    char *data;           /* get: the value, data_len bytes plus a terminating NUL (not counted);
                             owned by the result; NULL for other operations */
    int data_len;
    ToastyFS_Entry *entries; /* list: num_entries keys in ascending byte order; owned by the result */
    int num_entries;
    int truncated;        /* list: 1 if more keys follow the last entry (list again with after = it) */
    char message[512];    /* what happened, in words ("" on success) */
} ToastyFS_Result;

/*
 * Connects to a cluster given all its replica addresses ("host:port", "[ipv6]:port"), in any order
 * (the cluster id and replica order are derived from the sorted list, exactly as the replicas do).
 * 64 random bits from the OS are mixed into client_id (XOR), so callers may pass any value, even
 * rand() or 0. Nothing is sent until the first operation. Returns NULL (errno EINVAL or ENOMEM) if
 * addrs is NULL, num_addrs is not 1..15, an address is malformed, has no port or a port outside
 * 1..65535, or is listed twice.
 *
 * A cluster with a secret (docs/PROTOCOL.md §6): when the environment variable TOASTYFS_SECRET_FILE
 * names a file, every connection authenticates with it, as toastyfs_init_secret does. If that file
 * cannot be used (missing, not 64 hex digits, readable by group or others) the handle is still
 * returned, and every operation fails with TOASTYFS_AUTH_FAILED and a message naming the file.
 *
 * A cluster with mutual TLS (docs/PROTOCOL.md §6.8): when TOASTYFS_TLS_CERT, TOASTYFS_TLS_KEY and
 * TOASTYFS_TLS_CA name the client's certificate, its key and the cluster's CA (PEM files), every
 * connection is TLS, as after toastyfs_init_tls. If only some are set, or a file cannot be used, the
 * handle is still returned and every operation fails with TOASTYFS_AUTH_FAILED saying why; if the
 * library was built without TLS, with TOASTYFS_TLS_UNAVAILABLE. With both, the secret's handshake
 * runs inside TLS.
 */
TOASTYFS_API ToastyFS *toastyfs_init(uint64_t client_id, char **addrs, int num_addrs);

/*
 * toastyfs_init for a cluster with a secret, named explicitly (TOASTYFS_SECRET_FILE is ignored):
 * secret_file is either the cluster's secret file (`toastyfs secret new FILE`: 64 hex digits) or a
 * client key file (`toastyfs secret client SECRET_FILE OUT`: "client " and 64 hex digits), which
 * lets a process authenticate as a client and never as a replica. The file must not be readable or
 * writable by group or others (chmod 600). secret_file NULL: no secret. Returns NULL with errno
 * EINVAL (addresses, as toastyfs_init), ENOMEM, or EACCES (the file is unusable), and, if error is
 * not NULL, a message of at most error_len bytes (NUL included) saying why.
 *
 * Every connection then starts with the handshake of §6.2 and every frame carries a tag (§6.3).
 * A replica that refuses the client, or a failed handshake, fails the operation at once with
 * TOASTYFS_AUTH_FAILED ("authentication failed: ..."), never TOASTYFS_NO_QUORUM.
 */
TOASTYFS_API ToastyFS *toastyfs_init_secret(uint64_t client_id, char **addrs, int num_addrs, const char *secret_file,
                                            char *error, size_t error_len);

/*
 * Mutual TLS to every replica (docs/PROTOCOL.md §6.8), for a cluster whose replicas run with
 * --tls-cert, --tls-key and --tls-ca: cert_file is this client's certificate (PEM, optionally
 * followed by intermediates), key_file its unencrypted private key, ca_file the CA certificate(s)
 * the cluster trusts. Replaces what TOASTYFS_TLS_* set in toastyfs_init; combine it with
 * toastyfs_init_secret for TLS and a secret (the secret's handshake then runs inside TLS). All
 * three NULL: plain TCP again. cert_file and key_file both NULL with a ca_file: TLS without a
 * client certificate, which ToastyFS replicas refuse (useful only behind something else).
 *
 * Every connection then negotiates TLS 1.2 or later, checks that the replica's certificate chains
 * to ca_file and names the address dialed (an IP subjectAltName for a numeric host, a DNS name
 * otherwise), and presents the client's certificate. A certificate refused either way, or a TLS
 * handshake that fails, fails the operation at once with TOASTYFS_AUTH_FAILED and a message that
 * says TLS; nothing is sent to a replica before its certificate verified.
 *
 * Returns TOASTYFS_OK; TOASTYFS_INVALID_ARGUMENT (tfs NULL, no ca_file, a certificate without its
 * key or the reverse); TOASTYFS_AUTH_FAILED (a file is missing, unreadable, holds no PEM
 * certificate or key, or the key is not the certificate's); or TOASTYFS_TLS_UNAVAILABLE (built
 * without OpenSSL). If error is not NULL it gets the reason (at most error_len bytes, NUL
 * included). On a failure (tfs not NULL) every operation of the handle fails with the same status
 * and reason until a later call succeeds: it never falls back to plain TCP. Open connections are
 * closed either way.
 */
TOASTYFS_API int toastyfs_init_tls(ToastyFS *tfs, const char *cert_file, const char *key_file, const char *ca_file,
                                   char *error, size_t error_len);

/* 1 if this library was built with TLS (OpenSSL), 0 if not. */
TOASTYFS_API int toastyfs_tls_available(void);

/* Closes the connections and frees the handle. NULL is ignored. */
TOASTYFS_API void toastyfs_free(ToastyFS *tfs);

/*
 * Timeouts in milliseconds (defaults: 1000 per attempt, 15000 per operation). An attempt that
 * hears nothing for attempt_timeout_ms (longer for large values and after many attempts) is retried
 * on the next replica; an operation that has no final answer after operation_timeout_ms fails with
 * TOASTYFS_NO_QUORUM. Returns 0, or TOASTYFS_INVALID_ARGUMENT if a value is not positive.
 */
TOASTYFS_API int toastyfs_set_timeouts(ToastyFS *tfs, int attempt_timeout_ms, int operation_timeout_ms);

/* The client id actually used (the caller's id XOR 64 random bits); 0 if tfs is NULL. */
TOASTYFS_API uint64_t toastyfs_client_id(const ToastyFS *tfs);

/* Stores data (0..INT_MAX bytes; data may be NULL if data_len is 0) under key (1..1088 bytes, any
 * bytes). On success res->version is the new version. Above the cluster's block size (4 MiB by
 * default) the value is uploaded in blocks sliced from data (nothing is copied); a cluster that does
 * not know uploads yet still takes values up to 16 MiB in one request. */
TOASTYFS_API int toastyfs_put(ToastyFS *tfs, const char *key, int key_len, const char *data, int data_len,
                              ToastyFS_Result *res);

/* A linearizable compare-and-set: condition TOASTYFS_IF_VERSION (the key exists with version
 * if_version) or TOASTYFS_IF_ABSENT (if_version ignored). Fails with TOASTYFS_CONDITION_FAILED and
 * res->version = the current version (0 if absent) when the condition does not hold. */
TOASTYFS_API int toastyfs_put_if(ToastyFS *tfs, const char *key, int key_len, const char *data, int data_len,
                                 int condition, uint64_t if_version, ToastyFS_Result *res);

/* Reads a key: res->data / res->data_len (the value, checksum-verified), res->version,
 * res->timestamp, res->size. TOASTYFS_NOT_FOUND if absent. Free with toastyfs_result_free(). A value
 * above 16 MiB is read in 4 MiB reads of one version (TOASTYFS_OBJECT_CHANGED if it is replaced
 * meanwhile); above INT_MAX bytes it is refused with TOASTYFS_VALUE_TOO_LARGE: use
 * toastyfs_get_stream or toastyfs_get_fd. */
TOASTYFS_API int toastyfs_get(ToastyFS *tfs, const char *key, int key_len, ToastyFS_Result *res);

/* The metadata of a key (version, timestamp, size, checksum) without its value. */
TOASTYFS_API int toastyfs_stat(ToastyFS *tfs, const char *key, int key_len, ToastyFS_Result *res);

/* Deletes a key: res->version is the version deleted. TOASTYFS_NOT_FOUND if absent. */
TOASTYFS_API int toastyfs_delete(ToastyFS *tfs, const char *key, int key_len, ToastyFS_Result *res);

/* Deletes a key only if its current version is if_version (else TOASTYFS_CONDITION_FAILED with the
 * current version in res->version, or TOASTYFS_NOT_FOUND). */
TOASTYFS_API int toastyfs_delete_if(ToastyFS *tfs, const char *key, int key_len, uint64_t if_version,
                                    ToastyFS_Result *res);

/*
 * Lists up to limit (1..1000) keys starting with prefix (0..1088 bytes) and strictly greater than
 * after (0..1088 bytes; empty: from the start), in ascending byte order: res->entries,
 * res->num_entries. If res->truncated, list again with after = the last key returned. A reply also
 * stops below 1 MiB, so it may hold fewer than limit keys and still be truncated. prefix and after
 * may be NULL when their length is 0. Free with toastyfs_result_free().
 */
TOASTYFS_API int toastyfs_list(ToastyFS *tfs, const char *prefix, int prefix_len, const char *after, int after_len,
                               int limit, ToastyFS_Result *res);

/*
 * Large objects and streaming (docs/LARGE_OBJECTS.md §11.3).
 *
 * Content up to the cluster's block size (4 MiB, or what the cluster announced in an earlier upload)
 * is sent in one request; above it, as an upload: the cluster hands out an upload id, the content
 * goes in blocks of the cluster's block size, one at a time (each with its xxHash64), and a final
 * request installs the object atomically (with the MD5 of the whole content), or nothing is
 * installed and the upload is aborted. A reader sees the old version or the new one, never a mix.
 * Each request of an upload or of a streamed read has its own operation timeout.
 *
 * Reading above 4 MiB is a sequence of reads: the first reads the current version, every later one
 * reads exactly that version, so the bytes returned are one version's; if the object is replaced
 * meanwhile the call fails with TOASTYFS_OBJECT_CHANGED. Each block is verified against its
 * checksum before any of its bytes is handed over, and a whole-object read also checks the object's
 * checksum (and its MD5 when the uploader stored one).
 *
 * Memory: one block buffer (none when uploading from memory) and one message of at most ~8 MiB.
 */

/* Fills buf with up to cap bytes and sets *got; *got = 0 means end of data. A nonzero return stops
 * the put: it fails with TOASTYFS_CALLBACK and any upload is aborted (nothing is stored). */
typedef int (*toastyfs_source_fn)(void *ctx, char *buf, size_t cap, size_t *got);
/* Receives the next len (>= 1) verified bytes. A nonzero return stops the get (TOASTYFS_CALLBACK). */
typedef int (*toastyfs_sink_fn)(void *ctx, const char *buf, size_t len);

/* Options of the streaming puts; a NULL pointer means all defaults (zeroed struct). */
typedef struct ToastyFS_PutOptions {
    int condition;               /* 0, TOASTYFS_IF_VERSION or TOASTYFS_IF_ABSENT (as toastyfs_put_if) */
    uint64_t if_version;         /* with TOASTYFS_IF_VERSION */
    const char *content_type;    /* NULL or "": none; printable ASCII, at most 255 bytes */
    const char *const *meta_names;   /* meta_count user metadata names: 1..128 bytes of a-z, 0-9, - each, distinct */
    const char *const *meta_values;  /* their values: any bytes */
    const size_t *meta_value_lens;   /* their lengths; NULL: the values are NUL-terminated strings */
    int meta_count;              /* encoded (3 bytes + name + value each) at most 2048 bytes */
    int has_declared_size;       /* 1: the source gives exactly declared_size bytes (checked; else
                                    TOASTYFS_SIZE_MISMATCH and nothing is stored) */
    uint64_t declared_size;
} ToastyFS_PutOptions;

/* Stores the bytes a source callback gives (any size up to 5 TiB) under key. res->version is the new
 * version, res->size the bytes stored, res->checksum the object's checksum (xxHash64 of the bytes for
 * content stored in one request, else the manifest checksum of docs/PROTOCOL.md §3.15.2). */
TOASTYFS_API int toastyfs_put_stream(ToastyFS *tfs, const char *key, int key_len, toastyfs_source_fn source, void *ctx,
                                     const ToastyFS_PutOptions *opts, ToastyFS_Result *res);

/* Stores what fd holds from its current position to its end. A regular file's size is taken by
 * fstat first; if the file shrinks or grows while it is read the put fails with
 * TOASTYFS_SOURCE_CHANGED and nothing is stored. Pipes and sockets are read to their end. */
TOASTYFS_API int toastyfs_put_fd(ToastyFS *tfs, const char *key, int key_len, int fd, const ToastyFS_PutOptions *opts,
                                 ToastyFS_Result *res);

/* Reads length bytes (UINT64_MAX: to the end) of key starting at offset and hands them to sink in
 * order. res->version, timestamp, size (of the whole object) and checksum describe the version read.
 * An offset past the end is TOASTYFS_RANGE_INVALID; a range that runs past the end stops at it. */
TOASTYFS_API int toastyfs_get_stream(ToastyFS *tfs, const char *key, int key_len, uint64_t offset, uint64_t length,
                                     toastyfs_sink_fn sink, void *ctx, ToastyFS_Result *res);

/* toastyfs_get_stream writing to fd (all of each chunk, retrying short writes). */
TOASTYFS_API int toastyfs_get_fd(ToastyFS *tfs, const char *key, int key_len, uint64_t offset, uint64_t length, int fd,
                                 ToastyFS_Result *res);

/* Frees what a result owns (get data, list entries) and clears those fields. NULL is ignored. */
TOASTYFS_API void toastyfs_result_free(ToastyFS_Result *res);

/* A short description of a status code ("not found", ...); never NULL. */
TOASTYFS_API const char *toastyfs_strerror(int code);

#ifdef __cplusplus
}
#endif

#endif /* TOASTYFS_H */
