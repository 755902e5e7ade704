/*
 * Uploads (docs/LARGE_OBJECTS.md §11.3): content above the block size goes as create_upload, one
 * write_block per block, then complete_upload, which installs the object atomically; abort_upload
 * on any failure, so nothing is stored. Sources are the caller's memory (blocks are slices of it,
 * nothing is copied), a callback, or a file descriptor, read into one block buffer. One request is
 * in flight at a time (the handle's one client id), so the complete names only acknowledged blocks.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "tfs_internal.h"

/* What a put stores besides the bytes. */
typedef struct put_args {
    uint8_t condition;
    uint64_t if_version;
    tfs_metadata meta;
} put_args;

static int has_metadata(const put_args *a) { return a->meta.content_type_len > 0 || a->meta.user_meta_len > 0; }

/* --- Sources: where a put's bytes come from */

typedef struct fd_source {
    int fd;
    int error; /* errno of a failed read */
} fd_source;

typedef struct source {
    const uint8_t *mem; /* memory: the caller's buffer; blocks are slices of it */
    uint64_t mem_len;
    toastyfs_source_fn fn; /* else a callback, read into buf */
    void *ctx;
    fd_source *fd; /* the callback reads this descriptor (put_fd): a size change is SOURCE_CHANGED */
    uint8_t *buf;
    size_t cap;
    size_t have;    /* bytes [0, have) of buf read and not yet sent */
    uint64_t taken; /* bytes taken from the source (memory: sent) */
    int eof;
    int has_declared;
    uint64_t declared;
} source;

static int pull(source *s, uint8_t *into, size_t room, size_t *got, ToastyFS_Result *res)
{
    int rc;
    *got = 0;
    rc = s->fn(s->ctx, (char *)into, room, got);
    if (rc != 0 && s->fd != NULL)
        return tfs_fail(res, TOASTYFS_CALLBACK, "reading the file descriptor failed after %llu bytes: %s",
                        (unsigned long long)s->taken, strerror(s->fd->error));
    if (rc != 0)
        return tfs_fail(res, TOASTYFS_CALLBACK, "the source callback returned %d after %llu bytes", rc,
                        (unsigned long long)s->taken);
    if (*got > room)
        return tfs_fail(res, TOASTYFS_CALLBACK, "the source callback reported %lu bytes in a buffer of %lu",
                        (unsigned long)*got, (unsigned long)room);
    return 0;
}

static int size_changed(const source *s, int grew, ToastyFS_Result *res)
{
    res->size = s->taken;
    if (s->fd != NULL && grew)
        return tfs_fail(res, TOASTYFS_SOURCE_CHANGED, "the file grew past its %llu bytes while it was read",
                        (unsigned long long)s->declared);
    if (s->fd != NULL)
        return tfs_fail(res, TOASTYFS_SOURCE_CHANGED, "the file shrank from %llu to %llu bytes while it was read",
                        (unsigned long long)s->declared, (unsigned long long)s->taken);
    if (grew)
        return tfs_fail(res, TOASTYFS_SIZE_MISMATCH, "the source gave more than the declared %llu bytes",
                        (unsigned long long)s->declared);
    return tfs_fail(res, TOASTYFS_SIZE_MISMATCH, "the source gave %llu bytes, not the declared %llu",
                    (unsigned long long)s->taken, (unsigned long long)s->declared);
}

/* Reads from a callback source until buf holds want bytes (at most cap), or the end. With a declared
 * size, reading stops there and one more read must find the end. */
static int fill(source *s, size_t want, ToastyFS_Result *res)
{
    while (s->fn != NULL && s->have < want && !s->eof) {
        size_t room = want - s->have, got;
        int status;
        if (s->cap - s->have < room) room = s->cap - s->have;
        if (s->has_declared && s->declared - s->taken < room) room = (size_t)(s->declared - s->taken);
        if (room == 0 && !(s->has_declared && s->taken == s->declared)) break; /* the buffer is full */
        if (room == 0) {
            uint8_t probe;
            if ((status = pull(s, &probe, 1, &got, res)) != 0) return status;
            if (got > 0) return size_changed(s, 1, res);
            s->eof = 1;
            break;
        }
        if ((status = pull(s, s->buf + s->have, room, &got, res)) != 0) return status;
        if (got == 0) {
            s->eof = 1;
            if (s->has_declared && s->taken != s->declared) return size_changed(s, 0, res);
            break;
        }
        s->have += got;
        s->taken += got;
    }
    return 0;
}

/* The next block of at most block_size bytes (*len 0: the source is done). */
static int next_block(source *s, size_t block_size, const uint8_t **block, size_t *len, ToastyFS_Result *res)
{
    int status;
    if (s->mem != NULL || s->fn == NULL) {
        uint64_t left = s->mem_len - s->taken;
        *block = s->mem + s->taken;
        *len = left < block_size ? (size_t)left : block_size;
        return 0;
    }
    if ((status = fill(s, block_size, res)) != 0) return status;
    *block = s->buf;
    *len = s->have < block_size ? s->have : block_size;
    return 0;
}

static void consume(source *s, size_t len)
{
    if (s->fn == NULL) {
        s->taken += len;
        return;
    }
    memmove(s->buf, s->buf + len, s->have - len);
    s->have -= len;
}

/* --- Uploads */

static int abort_upload(ToastyFS *t, uint64_t upload_id, ToastyFS_Result *res)
{
    ToastyFS_Result aborted;
    uint8_t body[TFS_ABORT_UPLOAD_SIZE];
    char first[sizeof res->message];
    int status = res->status;

    memcpy(first, res->message, sizeof first);
    memset(&aborted, 0, sizeof aborted);
    tfs_abort_upload_request(body, upload_id);
    if (tfs_execute(t, TFS_OP_ABORT_UPLOAD, body, sizeof body, NULL, 0, NULL, &aborted) == TOASTYFS_OK)
        (void)tfs_fail(res, status, "%s; upload %llu aborted, nothing stored", first, (unsigned long long)upload_id);
    else if (aborted.status == TOASTYFS_UPLOAD_NOT_FOUND && res->outcome_unknown)
        /* The complete whose answer was lost may have installed the object, which ended the upload. */
        (void)tfs_fail(res, status, "%s; upload %llu is no longer open: the object may have been stored", first,
                       (unsigned long long)upload_id);
    else if (aborted.status == TOASTYFS_UPLOAD_NOT_FOUND)
        (void)tfs_fail(res, status, "%s; upload %llu was already gone, nothing stored", first,
                       (unsigned long long)upload_id);
    else
        (void)tfs_fail(res, status, "%s; aborting upload %llu failed too (%s): the cluster expires it", first,
                       (unsigned long long)upload_id, aborted.message);
    return status;
}

/* Closes the part being written and starts the next one. */
static int close_part(tfs_part **parts, uint32_t *count, uint32_t *cap, tfs_part *part, tfs_xxh64_state *sums,
                      ToastyFS_Result *res)
{
    if (part->block_count == 0) return 0;
    if (*count == *cap) {
        uint32_t bigger = *cap == 0 ? 4 : *cap * 2;
        tfs_part *grown;
        if (bigger > TFS_UPLOAD_PARTS_MAX) bigger = TFS_UPLOAD_PARTS_MAX;
        grown = (tfs_part *)realloc(*parts, bigger * sizeof **parts);
        if (grown == NULL) return tfs_fail(res, TOASTYFS_NO_MEMORY, "out of memory for the part list");
        *parts = grown;
        *cap = bigger;
    }
    part->checksum = tfs_xxh64_digest(sums);
    (*parts)[(*count)++] = *part;
    part->number++;
    part->block_count = 0;
    part->size = 0;
    part->attempt = tfs_random64() | 1; /* nonzero */
    tfs_xxh64_init(sums, 0);
    return 0;
}

/* Sends every block of the source, then the complete with the part list and the MD5. */
static int send_blocks_and_complete(ToastyFS *t, uint64_t upload_id, size_t block_size, const put_args *a,
                                    source *s, ToastyFS_Result *res)
{
    tfs_part *parts = NULL, part;
    uint32_t count = 0, cap = 0;
    tfs_xxh64_state sums, manifest;
    tfs_md5 md5;
    uint8_t digest[TFS_MD5_SIZE];
    uint64_t total = 0, checksum;
    uint8_t *body;
    size_t body_len;
    int status;

    memset(&part, 0, sizeof part);
    part.number = 1;
    part.attempt = tfs_random64() | 1;
    tfs_xxh64_init(&sums, 0);
    tfs_xxh64_init(&manifest, 0);
    tfs_md5_init(&md5);
    for (;;) {
        const uint8_t *block;
        size_t len;
        uint8_t head[TFS_WRITE_BLOCK_FIXED];
        if ((status = next_block(s, block_size, &block, &len, res)) != 0) goto done;
        if (len == 0) break;
        if (total + len > TOASTYFS_OBJECT_SIZE_MAX) {
            status = tfs_fail(res, TOASTYFS_VALUE_TOO_LARGE, "the object is over the limit of %llu bytes",
                              (unsigned long long)TOASTYFS_OBJECT_SIZE_MAX);
            goto done;
        }
        if (part.block_count == TFS_PART_BLOCKS_MAX &&
            (status = close_part(&parts, &count, &cap, &part, &sums, res)) != 0)
            goto done;
        if (part.number > TFS_UPLOAD_PARTS_MAX) {
            status = tfs_fail(res, TOASTYFS_VALUE_TOO_LARGE, "the object needs more than %u parts of %u blocks",
                              TFS_UPLOAD_PARTS_MAX, TFS_PART_BLOCKS_MAX);
            goto done;
        }
        checksum = tfs_xxh64(block, len, 0);
        tfs_write_block_head(head, upload_id, part.number, part.block_count, part.attempt, checksum);
        status = tfs_execute(t, TFS_OP_WRITE_BLOCK, head, sizeof head, block, len, NULL, res);
        if (status != TOASTYFS_OK) goto done;
        tfs_md5_update(&md5, block, len);
        tfs_xxh64_update_u64(&sums, checksum);
        tfs_xxh64_update_u64(&manifest, checksum);
        part.block_count++;
        part.size += len;
        total += len;
        consume(s, len);
    }
    if ((status = close_part(&parts, &count, &cap, &part, &sums, res)) != 0) goto done;
    tfs_md5_final(&md5, digest);
    tfs_xxh64_update_u64(&manifest, total);

    body_len = TFS_COMPLETE_UPLOAD_FIXED + (size_t)TFS_UPLOAD_PART_SIZE * count;
    body = (uint8_t *)malloc(body_len);
    if (body == NULL) {
        status = tfs_fail(res, TOASTYFS_NO_MEMORY, "out of memory for the complete request");
        goto done;
    }
    (void)tfs_complete_upload_request(body, upload_id, a->condition, a->if_version, 1, total, digest, parts, count);
    status = tfs_execute(t, TFS_OP_COMPLETE_UPLOAD, body, body_len, NULL, 0, NULL, res);
    free(body);
    if (status == TOASTYFS_OK && res->checksum != tfs_xxh64_digest(&manifest)) {
        /* Installed, but not what was sent: nothing to abort any more. */
        status = tfs_fail(res, TOASTYFS_PROTOCOL,
                          "the cluster installed version %llu with manifest checksum %016llx, not the %016llx of the "
                          "blocks sent",
                          (unsigned long long)res->version, (unsigned long long)res->checksum,
                          (unsigned long long)tfs_xxh64_digest(&manifest));
        free(parts);
        return status;
    }
    if (status == TOASTYFS_OK) res->size = total;
done:
    free(parts);
    if (status != TOASTYFS_OK) return abort_upload(t, upload_id, res);
    return status;
}

/* An upload: create_upload, the blocks, complete_upload. Returns TOASTYFS_BAD_REQUEST untouched if
 * the cluster refuses create_upload as malformed (it predates uploads), so the caller can fall back. */
static int upload(ToastyFS *t, const char *key, size_t key_len, const put_args *a, source *s, int *created,
                  ToastyFS_Result *res)
{
    uint8_t body[TFS_CREATE_UPLOAD_FIXED + TOASTYFS_KEY_SIZE_MAX + TOASTYFS_CONTENT_TYPE_SIZE_MAX +
                 TOASTYFS_USER_META_SIZE_MAX];
    size_t len = tfs_create_upload_request(body, key, key_len, a->condition, a->if_version, s->has_declared,
                                           s->declared, &a->meta);
    tfs_out out;
    int status;

    memset(&out, 0, sizeof out);
    status = tfs_execute(t, TFS_OP_CREATE_UPLOAD, body, len, NULL, 0, &out, res);
    if (status != TOASTYFS_OK) {
        /* At most an upload was opened, which the cluster expires: the object is untouched. */
        res->outcome_unknown = 0;
        return status;
    }
    *created = 1;
    tfs_learn_block_size(t, (uint32_t)out.block_size_max);
    if (s->fn != NULL && s->cap < out.block_size_max) {
        /* A cluster with larger blocks than the buffer was sized for. */
        uint8_t *bigger = (uint8_t *)realloc(s->buf, (size_t)out.block_size_max);
        if (bigger == NULL) {
            (void)tfs_fail(res, TOASTYFS_NO_MEMORY, "out of memory for a block of %llu bytes",
                           (unsigned long long)out.block_size_max);
            return abort_upload(t, out.upload_id, res);
        }
        s->buf = bigger;
        s->cap = (size_t)out.block_size_max;
    }
    return send_blocks_and_complete(t, out.upload_id, (size_t)out.block_size_max, a, s, res);
}

/* Content that fits one request: put, or put_object when it carries metadata (with its MD5). */
static int put_one(ToastyFS *t, const char *key, size_t key_len, const put_args *a, const uint8_t *data, size_t len,
                   ToastyFS_Result *res)
{
    int status;
    if (!has_metadata(a)) {
        status = tfs_put_inline(t, key, key_len, (const char *)data, len, a->condition, a->if_version, res);
    } else {
        uint8_t head[TFS_PUT_OBJECT_FIXED + TOASTYFS_KEY_SIZE_MAX + TOASTYFS_CONTENT_TYPE_SIZE_MAX +
                     TOASTYFS_USER_META_SIZE_MAX];
        uint8_t digest[TFS_MD5_SIZE];
        tfs_md5 md5;
        size_t head_len;
        tfs_md5_init(&md5);
        tfs_md5_update(&md5, data, len);
        tfs_md5_final(&md5, digest);
        head_len = tfs_put_object_head(head, key, key_len, a->condition, a->if_version, digest, &a->meta);
        status = tfs_execute(t, TFS_OP_PUT_OBJECT, head, head_len, data, len, NULL, res);
    }
    if (status == TOASTYFS_OK) {
        res->size = len;
        res->checksum = tfs_xxh64(data, len, 0);
    }
    return status;
}

/* create_upload answered bad_request before anything was created: an older cluster. */
static int predates_uploads(ToastyFS_Result *res, size_t limit)
{
    return tfs_fail(res, TOASTYFS_BAD_REQUEST,
                    "the cluster refused create_upload as malformed: it predates uploads, and takes at most %lu bytes "
                    "in one put",
                    (unsigned long)limit);
}

int tfs_put_large(ToastyFS *t, const char *key, size_t key_len, const char *data, size_t data_len, uint8_t condition,
                  uint64_t if_version, ToastyFS_Result *res)
{
    put_args a;
    source s;
    int status, created = 0;
    memset(&a, 0, sizeof a);
    memset(&s, 0, sizeof s);
    a.condition = condition;
    a.if_version = if_version;
    s.mem = (const uint8_t *)data;
    s.mem_len = data_len;
    s.has_declared = 1;
    s.declared = data_len;
    status = upload(t, key, key_len, &a, &s, &created, res);
    /* A cluster that predates uploads still takes a value of up to 16 MiB in one put. */
    if (status == TOASTYFS_BAD_REQUEST && !created && data_len <= TOASTYFS_VALUE_SIZE_MAX)
        return tfs_put_inline(t, key, key_len, data, data_len, condition, if_version, res);
    if (status == TOASTYFS_BAD_REQUEST && !created) return predates_uploads(res, TOASTYFS_VALUE_SIZE_MAX);
    return status;
}

static int check_put_options(const ToastyFS_PutOptions *opts, put_args *a, ToastyFS_Result *res)
{
    const char *problem = NULL;
    memset(a, 0, sizeof *a);
    if (opts == NULL) return tfs_metadata_encode(NULL, NULL, NULL, NULL, 0, &a->meta, &problem);
    if (opts->condition != 0 && opts->condition != TOASTYFS_IF_VERSION && opts->condition != TOASTYFS_IF_ABSENT)
        return tfs_fail(res, TOASTYFS_INVALID_ARGUMENT,
                        "invalid argument: the condition must be 0, TOASTYFS_IF_VERSION or TOASTYFS_IF_ABSENT");
    if (opts->condition == TOASTYFS_IF_VERSION && opts->if_version >= TFS_U53)
        return tfs_fail(res, TOASTYFS_INVALID_ARGUMENT, "invalid argument: if_version must be below 2^53");
    if (opts->has_declared_size && opts->declared_size > TOASTYFS_OBJECT_SIZE_MAX)
        return tfs_fail(res, TOASTYFS_VALUE_TOO_LARGE, "a declared size of %llu bytes is over the limit of %llu",
                        (unsigned long long)opts->declared_size, (unsigned long long)TOASTYFS_OBJECT_SIZE_MAX);
    a->condition = (uint8_t)opts->condition;
    a->if_version = opts->condition == TOASTYFS_IF_VERSION ? opts->if_version : 0;
    if (tfs_metadata_encode(opts->content_type, opts->meta_names, opts->meta_values, opts->meta_value_lens,
                            opts->meta_count, &a->meta, &problem) != 0)
        return tfs_fail(res, TOASTYFS_INVALID_ARGUMENT, "invalid argument: %s", problem);
    return 0;
}

/* A put from a callback source: content that turns out to fit one request goes in one; anything
 * larger is uploaded, starting with the bytes already read. */
static int put_source(ToastyFS *t, const char *key, size_t key_len, const put_args *a, source *s,
                      ToastyFS_Result *res)
{
    size_t threshold = tfs_block_size(t);
    int status, created = 0;

    /* Up to one byte more than fits one request: reading it says which way to go. */
    s->cap = s->has_declared && s->declared <= threshold ? (size_t)s->declared : threshold + 1;
    s->buf = (uint8_t *)malloc(s->cap > 0 ? s->cap : 1);
    if (s->buf == NULL) return tfs_fail(res, TOASTYFS_NO_MEMORY, "out of memory for a block");
    status = fill(s, s->cap + 1, res);
    if (status == 0 && s->eof && s->have <= threshold) {
        status = put_one(t, key, key_len, a, s->buf, s->have, res);
    } else if (status == 0) {
        status = upload(t, key, key_len, a, s, &created, res);
        if (status == TOASTYFS_BAD_REQUEST && !created) status = predates_uploads(res, threshold);
    }
    free(s->buf);
    s->buf = NULL;
    return status;
}

static int put_prologue(ToastyFS *tfs, const char *key, int key_len, const ToastyFS_PutOptions *opts, put_args *a,
                        ToastyFS_Result *res)
{
    int status = tfs_check_common(tfs, res);
    if (status != 0) return status;
    if ((status = tfs_check_key(key, key_len, res)) != 0) return status;
    return check_put_options(opts, a, res);
}

int toastyfs_put_stream(ToastyFS *tfs, const char *key, int key_len, toastyfs_source_fn fn, void *ctx,
                        const ToastyFS_PutOptions *opts, ToastyFS_Result *res)
{
    put_args a;
    source s;
    int status = put_prologue(tfs, key, key_len, opts, &a, res);
    if (status != 0) return status;
    if (fn == NULL) return tfs_fail(res, TOASTYFS_INVALID_ARGUMENT, "invalid argument: the source callback is NULL");
    memset(&s, 0, sizeof s);
    s.fn = fn;
    s.ctx = ctx;
    if (opts != NULL && opts->has_declared_size) {
        s.has_declared = 1;
        s.declared = opts->declared_size;
    }
    return put_source(tfs, key, (size_t)key_len, &a, &s, res);
}

static int read_fd(void *ctx, char *buf, size_t cap, size_t *got)
{
    fd_source *f = (fd_source *)ctx;
    for (;;) {
        ssize_t n = read(f->fd, buf, cap);
        if (n >= 0) {
            *got = (size_t)n;
            return 0;
        }
        if (errno != EINTR) {
            f->error = errno;
            return 1;
        }
    }
}

int toastyfs_put_fd(ToastyFS *tfs, const char *key, int key_len, int fd, const ToastyFS_PutOptions *opts,
                    ToastyFS_Result *res)
{
    put_args a;
    source s;
    fd_source f;
    struct stat st;
    int status = put_prologue(tfs, key, key_len, opts, &a, res);
    if (status != 0) return status;
    if (fd < 0 || fstat(fd, &st) != 0)
        return tfs_fail(res, TOASTYFS_INVALID_ARGUMENT, "invalid argument: fd %d is not an open descriptor", fd);
    memset(&s, 0, sizeof s);
    f.fd = fd;
    f.error = 0;
    s.fn = read_fd;
    s.ctx = &f;
    if (S_ISREG(st.st_mode)) {
        /* A file's size is known: it is declared, and a file that changes size meanwhile is caught. */
        off_t at = lseek(fd, 0, SEEK_CUR);
        s.fd = &f;
        s.has_declared = 1;
        s.declared = at >= 0 && st.st_size > at ? (uint64_t)(st.st_size - at) : 0;
        if (opts != NULL && opts->has_declared_size && opts->declared_size != s.declared) {
            res->size = s.declared;
            return tfs_fail(res, TOASTYFS_SIZE_MISMATCH, "the file holds %llu bytes, not the declared %llu",
                            (unsigned long long)s.declared, (unsigned long long)opts->declared_size);
        }
    } else if (opts != NULL && opts->has_declared_size) {
        s.has_declared = 1;
        s.declared = opts->declared_size;
    }
    return put_source(tfs, key, (size_t)key_len, &a, &s, res);
}
