/*
 * Streamed reads (docs/LARGE_OBJECTS.md §7, §11.3): a first read of the current version, then
 * reads pinned to the version it returned, so the bytes are one version's or the call fails with
 * object_changed. Every block is verified against the block map before any of its bytes is handed
 * over; a whole-object read then checks the manifest checksum and the MD5. One reply (at most 4 MiB
 * of data) is held at a time.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "tfs_internal.h"

typedef struct sink {
    toastyfs_sink_fn fn;
    void *ctx;
    int *fd_error; /* the sink writes a descriptor (get_fd): its errno, for the message */
} sink;

/* What a read of a range has established so far. */
typedef struct reading {
    int started;      /* a reply has set the fields below */
    uint64_t version; /* 0 until the first reply, unless the caller pinned one */
    uint64_t size, checksum, timestamp;
    uint8_t kind;
    int has_md5;
    uint8_t md5[TFS_MD5_SIZE];
    uint64_t pos, end; /* the next byte to hand over; the end of the range */
    int whole;         /* the range is the whole object: its checksum and MD5 are checked at the end */
    uint64_t fed_end;  /* whole: the end of the blocks hashed so far */
    tfs_xxh64_state manifest;
    tfs_md5 md5_state;
} reading;

static int protocol(ToastyFS_Result *res, const char *what, uint64_t at)
{
    return tfs_fail(res, TOASTYFS_PROTOCOL, "the read reply at offset %llu is inconsistent: %s",
                    (unsigned long long)at, what);
}

/* Takes the header of a reply: the first sets the version read, the others must repeat it. */
static int take_header(reading *g, const tfs_read_reply *rr, uint64_t offset, uint64_t length, ToastyFS_Result *res)
{
    if (g->started) {
        if (rr->info.version != g->version || rr->info.size != g->size || rr->info.checksum != g->checksum ||
            rr->kind != g->kind)
            return protocol(res, "the object's header differs from the first reply's", offset);
        return 0;
    }
    {
        uint64_t left;
        if (g->version != 0 && rr->info.version != g->version)
            return protocol(res, "the reply is of another version than asked", offset);
        if (offset > rr->info.size) return protocol(res, "the offset is past the end, yet the read succeeded", offset);
        g->started = 1;
        g->version = rr->info.version;
        g->size = rr->info.size;
        g->checksum = rr->info.checksum;
        g->timestamp = rr->info.timestamp;
        g->kind = rr->kind;
        g->has_md5 = rr->has_md5;
        memcpy(g->md5, rr->md5, TFS_MD5_SIZE);
        left = g->size - offset;
        g->pos = offset;
        g->end = offset + (length < left ? length : left);
        g->whole = offset == 0 && g->end == g->size;
    }
    return 0;
}

/* Hands over [lo, hi) of the object, which is at data + (lo - r). */
static int deliver(const sink *k, const uint8_t *data, size_t len, ToastyFS_Result *res)
{
    int rc;
    if (len == 0) return 0;
    rc = k->fn(k->ctx, (const char *)data, len);
    if (rc == 0) return 0;
    if (k->fd_error != NULL)
        return tfs_fail(res, TOASTYFS_CALLBACK, "writing to the file descriptor failed: %s", strerror(*k->fd_error));
    return tfs_fail(res, TOASTYFS_CALLBACK, "the sink callback returned %d", rc);
}

/*
 * Processes a reply to a read at r: verifies and hands over every block it holds whole, in order,
 * and says where to read next (*next: the start of the first block it holds only part of, else the
 * end of its data) and a good length for reads (*hint: the size of a whole block seen, else 0).
 */
static int take_blocks(reading *g, const sink *k, const tfs_read_reply *rr, uint64_t r, uint64_t *next,
                       uint64_t *partial_size, uint64_t *hint, ToastyFS_Result *res)
{
    uint64_t n = rr->data_len;
    uint32_t i;
    *next = r + n;
    *partial_size = 0;
    if (n == 0) return 0;
    if (!rr->has_map || rr->map_count == 0) return protocol(res, "data without a block map", r);
    if (tfs_get_u64(rr->map) > r) return protocol(res, "the block map starts after the data", r);
    {
        const uint8_t *last = rr->map + (size_t)TFS_BLOCK_MAP_ENTRY * (rr->map_count - 1);
        if (tfs_get_u64(last) + tfs_get_u64(last + 8) < r + n) return protocol(res, "the block map ends before the data", r);
    }
    for (i = 0; i < rr->map_count; i++) {
        const uint8_t *e = rr->map + (size_t)TFS_BLOCK_MAP_ENTRY * i;
        uint64_t s = tfs_get_u64(e), z = tfs_get_u64(e + 8), c = tfs_get_u64(e + 16), lo, hi;
        const uint8_t *bytes;
        int status;
        if (s < r || s + z > r + n) {
            /* Held in part: read again from its start (a block fits one read). */
            if (z > TFS_READ_SIZE_MAX) return protocol(res, "a block larger than a read", s);
            *next = s;
            *partial_size = z;
            return 0;
        }
        bytes = rr->data + (s - r);
        if (tfs_xxh64(bytes, (size_t)z, 0) != c) return protocol(res, "a block does not match its checksum", s);
        if (g->kind == TFS_KIND_INLINE && c != g->checksum)
            return protocol(res, "the value does not match the object's checksum", s);
        if (*hint == 0) *hint = z;
        if (g->whole) {
            if (s != g->fed_end) return protocol(res, "the blocks are not contiguous", s);
            tfs_xxh64_update_u64(&g->manifest, c);
            if (g->has_md5) tfs_md5_update(&g->md5_state, bytes, (size_t)z);
            g->fed_end = s + z;
        }
        lo = s > g->pos ? s : g->pos;
        hi = s + z < g->end ? s + z : g->end;
        if (hi > lo) {
            if (lo != g->pos) return protocol(res, "a gap between blocks", s);
            if ((status = deliver(k, rr->data + (lo - r), (size_t)(hi - lo), res)) != 0) return status;
            g->pos = hi;
        }
    }
    return 0;
}

/* The end checks of a whole-object read: every block, the object's checksum, its MD5. */
static int check_whole(reading *g, ToastyFS_Result *res)
{
    if (!g->whole) return 0;
    if (g->fed_end != g->size) return protocol(res, "the blocks do not cover the object", g->fed_end);
    if (g->kind == TFS_KIND_CHUNKED) {
        tfs_xxh64_update_u64(&g->manifest, g->size);
        if (tfs_xxh64_digest(&g->manifest) != g->checksum)
            return protocol(res, "the blocks do not match the object's manifest checksum", 0);
    } else if (g->size == 0 && tfs_xxh64(NULL, 0, 0) != g->checksum) {
        return protocol(res, "an empty value with the checksum of something else", 0);
    }
    if (g->has_md5) {
        uint8_t digest[TFS_MD5_SIZE];
        tfs_md5_final(&g->md5_state, digest);
        if (memcmp(digest, g->md5, TFS_MD5_SIZE) != 0) return protocol(res, "the bytes do not match the stored MD5", 0);
    }
    return 0;
}

/*
 * Reads [offset, offset + length) of key (length clipped at the end) and hands it to k in order.
 * version 0: the first read is of the current version (linearizable), the rest of the version it
 * returned; else every read is of that version. A range that starts inside a block first reads one
 * byte there, to learn where that block starts (a block is verified whole before any of it is
 * handed over); after that, reads start at block starts and end at block ends where they can.
 */
static int read_range(ToastyFS *t, const char *key, size_t key_len, uint64_t version, uint64_t offset,
                      uint64_t length, const sink *k, ToastyFS_Result *res)
{
    uint8_t body[TFS_READ_REQUEST_FIXED + TOASTYFS_KEY_SIZE_MAX];
    reading g;
    uint64_t r = offset, want, hint = 0;
    int status = TOASTYFS_OK, stalls = 0;

    memset(&g, 0, sizeof g);
    g.version = version;
    tfs_xxh64_init(&g.manifest, 0);
    tfs_md5_init(&g.md5_state);
    want = offset == 0 ? (length < TFS_READ_SIZE_MAX ? length : TFS_READ_SIZE_MAX) : (length > 0 ? 1 : 0);
    for (;;) {
        tfs_out out;
        uint64_t next = 0, partial = 0, expected, pos_before = g.pos;
        size_t len = tfs_read_request(body, key, key_len, TFS_READ_FLAG_BLOCK_MAP, (uint32_t)want, g.version, r);
        memset(&out, 0, sizeof out);
        status = tfs_execute(t, TFS_OP_READ, body, len, NULL, 0, &out, res);
        if (status != TOASTYFS_OK) break;
        if ((status = take_header(&g, &out.read, r, length, res)) == 0) {
            expected = g.size - r < want ? g.size - r : want;
            if (out.read.data_len != expected)
                status = protocol(res, "a reply with another length than asked", r);
            else
                status = take_blocks(&g, k, &out.read, r, &next, &partial, &hint, res);
        }
        free(out.body);
        if (status != 0) break;
        if (g.pos >= g.end) break;
        /* Replies that neither move the reads on nor hand anything over would repeat forever. */
        if (next == r && g.pos == pos_before && ++stalls >= 2) {
            status = protocol(res, "no progress", r);
            break;
        }
        if (next != r || g.pos != pos_before) stalls = 0;
        r = next;
        /* Up to the end of the range; with a block size seen, a whole number of blocks per read. */
        want = g.end - r;
        if (hint > 0 && want > hint) want = (want + hint - 1) / hint * hint;
        if (want > TFS_READ_SIZE_MAX) want = hint > 0 ? TFS_READ_SIZE_MAX / hint * hint : TFS_READ_SIZE_MAX;
        if (want < partial) want = partial;
        if (want > g.size - r) want = g.size - r;
    }
    if (status == TOASTYFS_OK) status = check_whole(&g, res);
    if (status == TOASTYFS_OBJECT_CHANGED) {
        char detail[sizeof res->message];
        memcpy(detail, res->message, sizeof detail);
        (void)tfs_fail(res, status, "%.*s changed while it was read (version %llu): %s", (int)(key_len > 64 ? 64 : key_len),
                       key, (unsigned long long)g.version, detail);
    }
    if (status == TOASTYFS_OK) res->message[0] = '\0';
    /* The version read (object_changed reports the one now current instead). */
    if (g.started && status != TOASTYFS_OBJECT_CHANGED) {
        res->version = g.version;
        res->size = g.size;
        res->checksum = g.checksum;
        res->timestamp = g.timestamp;
    }
    res->status = status;
    return status;
}

static int get_prologue(ToastyFS *tfs, const char *key, int key_len, uint64_t offset, ToastyFS_Result *res)
{
    int status = tfs_check_common(tfs, res);
    if (status != 0) return status;
    if ((status = tfs_check_key(key, key_len, res)) != 0) return status;
    if (offset >= TFS_U53) return tfs_fail(res, TOASTYFS_INVALID_ARGUMENT, "invalid argument: offset must be below 2^53");
    return 0;
}

int toastyfs_get_stream(ToastyFS *tfs, const char *key, int key_len, uint64_t offset, uint64_t length,
                        toastyfs_sink_fn fn, void *ctx, ToastyFS_Result *res)
{
    sink k;
    int status = get_prologue(tfs, key, key_len, offset, res);
    if (status != 0) return status;
    if (fn == NULL) return tfs_fail(res, TOASTYFS_INVALID_ARGUMENT, "invalid argument: the sink callback is NULL");
    k.fn = fn;
    k.ctx = ctx;
    k.fd_error = NULL;
    return read_range(tfs, key, (size_t)key_len, 0, offset, length, &k, res);
}

typedef struct fd_sink {
    int fd;
    int error;
} fd_sink;

static int write_fd(void *ctx, const char *buf, size_t len)
{
    fd_sink *f = (fd_sink *)ctx;
    while (len > 0) {
        ssize_t n = write(f->fd, buf, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            f->error = n < 0 ? errno : EIO;
            return 1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

int toastyfs_get_fd(ToastyFS *tfs, const char *key, int key_len, uint64_t offset, uint64_t length, int fd,
                    ToastyFS_Result *res)
{
    sink k;
    fd_sink f;
    int status = get_prologue(tfs, key, key_len, offset, res);
    if (status != 0) return status;
    if (fd < 0) return tfs_fail(res, TOASTYFS_INVALID_ARGUMENT, "invalid argument: fd %d is not a descriptor", fd);
    f.fd = fd;
    f.error = 0;
    k.fn = write_fd;
    k.ctx = &f;
    k.fd_error = &f.error;
    return read_range(tfs, key, (size_t)key_len, 0, offset, length, &k, res);
}

typedef struct memory_sink {
    char *data;
    size_t len, cap;
} memory_sink;

static int write_memory(void *ctx, const char *buf, size_t len)
{
    memory_sink *m = (memory_sink *)ctx;
    if (len > m->cap - m->len) return 1;
    memcpy(m->data + m->len, buf, len);
    m->len += len;
    return 0;
}

int tfs_get_large(ToastyFS *t, const char *key, size_t key_len, ToastyFS_Result *res)
{
    uint8_t body[TFS_READ_REQUEST_FIXED + TOASTYFS_KEY_SIZE_MAX];
    tfs_out out;
    memory_sink m;
    sink k;
    uint64_t version, size;
    int status;

    /* A head (a read of length 0) for the size, then reads of exactly that version. */
    memset(&out, 0, sizeof out);
    status = tfs_execute(t, TFS_OP_READ, body, tfs_read_request(body, key, key_len, 0, 0, 0, 0), NULL, 0, &out, res);
    if (status != TOASTYFS_OK) return status;
    version = out.read.info.version;
    size = out.read.info.size;
    free(out.body);
    if (size > (uint64_t)INT_MAX) {
        res->size = size;
        return tfs_fail(res, TOASTYFS_VALUE_TOO_LARGE,
                        "the value is %llu bytes, over toastyfs_get's limit of INT_MAX bytes: use toastyfs_get_stream "
                        "or toastyfs_get_fd",
                        (unsigned long long)size);
    }
    m.data = (char *)malloc((size_t)size + 1);
    if (m.data == NULL) return tfs_fail(res, TOASTYFS_NO_MEMORY, "out of memory for a value of %llu bytes", (unsigned long long)size);
    m.len = 0;
    m.cap = (size_t)size;
    k.fn = write_memory;
    k.ctx = &m;
    k.fd_error = NULL;
    status = read_range(t, key, key_len, version, 0, size, &k, res);
    if (status != TOASTYFS_OK || m.len != size) {
        free(m.data);
        if (status == TOASTYFS_OK) return tfs_fail(res, TOASTYFS_PROTOCOL, "the reads returned %lu of %llu bytes", (unsigned long)m.len, (unsigned long long)size);
        return status;
    }
    m.data[size] = '\0';
    res->data = m.data;
    res->data_len = (int)size;
    return TOASTYFS_OK;
}
