/*
 * The large-object bodies of the client side (docs/PROTOCOL.md §3.15): create_upload, write_block,
 * complete_upload, abort_upload, read and put_object requests out; create_upload, complete_upload
 * and read replies in. Byte for byte what lib/store/large_bodies.ts encodes and decodes
 * (tests/c_client_large.test.ts compares them). Pure: no I/O, no allocation.
 */
#include <string.h>

#include "tfs_internal.h"

static int meta_name_char(uint8_t c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'; }

int tfs_metadata_encode(const char *content_type, const char *const *names, const char *const *values,
                        const size_t *value_lens, int count, tfs_metadata *meta, const char **problem)
{
    /* Each entry takes at least 4 bytes (3 fixed, a 1-byte name), so more than 512 cannot fit. */
    int order[TOASTYFS_USER_META_SIZE_MAX / 4];
    size_t total = 0, i;
    int n;

    meta->content_type = content_type;
    meta->content_type_len = content_type == NULL ? 0 : strlen(content_type);
    meta->user_meta_len = 0;
    if (meta->content_type_len > TOASTYFS_CONTENT_TYPE_SIZE_MAX) {
        *problem = "the content type is over 255 bytes";
        return -1;
    }
    for (i = 0; i < meta->content_type_len; i++) {
        uint8_t c = (uint8_t)content_type[i];
        if (c < 0x20 || c > 0x7e) {
            *problem = "the content type is not printable ASCII (0x20..0x7e)";
            return -1;
        }
    }
    if (count < 0 || (count > 0 && (names == NULL || values == NULL))) {
        *problem = "the metadata count is negative, or its names or values are NULL";
        return -1;
    }
    if (count > (int)(sizeof order / sizeof order[0])) {
        *problem = "user metadata is over 2048 bytes encoded";
        return -1;
    }
    for (n = 0; n < count; n++) {
        size_t name_len, value_len;
        if (names[n] == NULL || (values[n] == NULL && (value_lens == NULL || value_lens[n] > 0))) {
            *problem = "a metadata name or value is NULL";
            return -1;
        }
        name_len = strlen(names[n]);
        value_len = value_lens == NULL ? strlen(values[n]) : value_lens[n];
        if (name_len < 1 || name_len > TOASTYFS_META_NAME_SIZE_MAX) {
            *problem = "a metadata name is 1 to 128 bytes";
            return -1;
        }
        for (i = 0; i < name_len; i++)
            if (!meta_name_char((uint8_t)names[n][i])) {
                *problem = "a metadata name may hold only a-z, 0-9 and -";
                return -1;
            }
        if (value_len > TOASTYFS_USER_META_SIZE_MAX) {
            *problem = "user metadata is over 2048 bytes encoded";
            return -1;
        }
        total += 3 + name_len + value_len;
        if (total > TOASTYFS_USER_META_SIZE_MAX) {
            *problem = "user metadata is over 2048 bytes encoded";
            return -1;
        }
        /* Insertion sort by name (at most 512 entries). */
        {
            int j = n;
            while (j > 0 && strcmp(names[order[j - 1]], names[n]) > 0) {
                order[j] = order[j - 1];
                j--;
            }
            if (j > 0 && strcmp(names[order[j - 1]], names[n]) == 0) {
                *problem = "a metadata name is given twice";
                return -1;
            }
            order[j] = n;
        }
    }
    for (n = 0; n < count; n++) {
        int e = order[n];
        size_t name_len = strlen(names[e]);
        size_t value_len = value_lens == NULL ? strlen(values[e]) : value_lens[e];
        uint8_t *p = meta->user_meta + meta->user_meta_len;
        p[0] = (uint8_t)name_len;
        tfs_put_u16(p + 1, (uint16_t)value_len);
        memcpy(p + 3, names[e], name_len);
        if (value_len > 0) memcpy(p + 3 + name_len, values[e], value_len);
        meta->user_meta_len += 3 + name_len + value_len;
    }
    return 0;
}

/* The layout create_upload and put_object share (§3.15.3, §3.15.6): the fixed fields at 0..15,
 * then after `fixed` bytes the key, the content type and the user metadata. */
static size_t keyed(uint8_t *body, size_t fixed, const char *key, size_t key_len, uint8_t condition,
                    uint64_t if_version, uint8_t flags, const tfs_metadata *meta)
{
    memset(body, 0, fixed);
    tfs_put_u16(body, (uint16_t)key_len);
    body[2] = condition;
    body[3] = flags;
    body[4] = (uint8_t)meta->content_type_len;
    tfs_put_u16(body + 6, (uint16_t)meta->user_meta_len);
    tfs_put_u64(body + 8, if_version);
    memcpy(body + fixed, key, key_len);
    if (meta->content_type_len > 0) memcpy(body + fixed + key_len, meta->content_type, meta->content_type_len);
    if (meta->user_meta_len > 0)
        memcpy(body + fixed + key_len + meta->content_type_len, meta->user_meta, meta->user_meta_len);
    return fixed + key_len + meta->content_type_len + meta->user_meta_len;
}

size_t tfs_create_upload_request(uint8_t *body, const char *key, size_t key_len, uint8_t condition, uint64_t if_version,
                                 int has_declared, uint64_t declared, const tfs_metadata *meta)
{
    size_t len = keyed(body, TFS_CREATE_UPLOAD_FIXED, key, key_len, condition, if_version, has_declared ? 1 : 0, meta);
    tfs_put_u64(body + 16, has_declared ? declared : 0);
    return len;
}

size_t tfs_put_object_head(uint8_t *body, const char *key, size_t key_len, uint8_t condition, uint64_t if_version,
                           const uint8_t *md5, const tfs_metadata *meta)
{
    size_t len = keyed(body, TFS_PUT_OBJECT_FIXED, key, key_len, condition, if_version, md5 != NULL ? 1 : 0, meta);
    if (md5 != NULL) memcpy(body + 16, md5, TFS_MD5_SIZE);
    return len;
}

void tfs_write_block_head(uint8_t *head, uint64_t upload_id, uint32_t part, uint32_t index, uint64_t attempt,
                          uint64_t checksum)
{
    tfs_put_u64(head, upload_id);
    tfs_put_u32(head + 8, part);
    tfs_put_u32(head + 12, index);
    tfs_put_u64(head + 16, attempt);
    tfs_put_u64(head + 24, checksum);
}

size_t tfs_complete_upload_request(uint8_t *body, uint64_t upload_id, uint8_t condition, uint64_t if_version,
                                   int has_declared, uint64_t declared, const uint8_t *md5, const tfs_part *parts,
                                   uint32_t count)
{
    uint32_t i;
    memset(body, 0, TFS_COMPLETE_UPLOAD_FIXED);
    tfs_put_u64(body, upload_id);
    body[8] = condition;
    body[9] = (uint8_t)((md5 != NULL ? 1 : 0) | (has_declared ? 2 : 0));
    tfs_put_u32(body + 12, count);
    tfs_put_u64(body + 16, if_version);
    tfs_put_u64(body + 24, has_declared ? declared : 0);
    if (md5 != NULL) memcpy(body + 32, md5, TFS_MD5_SIZE);
    for (i = 0; i < count; i++) {
        uint8_t *p = body + TFS_COMPLETE_UPLOAD_FIXED + (size_t)TFS_UPLOAD_PART_SIZE * i;
        tfs_put_u32(p, parts[i].number);
        tfs_put_u32(p + 4, parts[i].block_count);
        tfs_put_u64(p + 8, parts[i].attempt);
        tfs_put_u64(p + 16, parts[i].size);
        tfs_put_u64(p + 24, parts[i].checksum);
    }
    return TFS_COMPLETE_UPLOAD_FIXED + (size_t)TFS_UPLOAD_PART_SIZE * count;
}

void tfs_abort_upload_request(uint8_t *body, uint64_t upload_id) { tfs_put_u64(body, upload_id); }

size_t tfs_read_request(uint8_t *body, const char *key, size_t key_len, uint8_t flags, uint32_t length,
                        uint64_t version, uint64_t offset)
{
    memset(body, 0, TFS_READ_REQUEST_FIXED);
    tfs_put_u16(body, (uint16_t)key_len);
    body[2] = flags;
    tfs_put_u32(body + 4, length);
    tfs_put_u64(body + 8, version);
    tfs_put_u64(body + 16, offset);
    memcpy(body + TFS_READ_REQUEST_FIXED, key, key_len);
    return TFS_READ_REQUEST_FIXED + key_len;
}

int tfs_read_create_upload_reply(const uint8_t *body, size_t len, uint64_t *upload_id, uint64_t *block_size_max,
                                 uint64_t *object_size_max)
{
    if (len != TFS_CREATE_UPLOAD_REPLY) return -1;
    *upload_id = tfs_get_u64(body);
    *block_size_max = tfs_get_u64(body + 8);
    *object_size_max = tfs_get_u64(body + 16);
    if (*upload_id < 1 || *upload_id >= TFS_U53) return -1;
    if (*block_size_max < TFS_BLOCK_SIZE_MIN || *block_size_max > TOASTYFS_BLOCK_SIZE_MAX) return -1;
    if (*object_size_max < 1 || *object_size_max >= TFS_U53) return -1;
    return 0;
}

int tfs_read_complete_upload_reply(const uint8_t *body, size_t len, uint64_t *version, uint64_t *checksum)
{
    if (len != TFS_COMPLETE_UPLOAD_REPLY) return -1;
    *version = tfs_get_u64(body);
    *checksum = tfs_get_u64(body + 8);
    return *version >= 1 && *version < TFS_U53 ? 0 : -1;
}

static int all_zero(const uint8_t *p, size_t len)
{
    size_t i;
    for (i = 0; i < len; i++)
        if (p[i] != 0) return 0;
    return 1;
}

/* Checks the shape of canonical user metadata: entries that fill it exactly, names of [a-z0-9-]
 * strictly ascending. */
static int user_meta_valid(const uint8_t *p, size_t len)
{
    size_t offset = 0;
    const uint8_t *previous = NULL;
    size_t previous_len = 0;
    while (offset < len) {
        size_t name_len, value_len, i;
        int cmp;
        if (len - offset < 3) return 0;
        name_len = p[offset];
        value_len = tfs_get_u16(p + offset + 1);
        if (name_len < 1 || name_len > TOASTYFS_META_NAME_SIZE_MAX || len - offset - 3 < name_len + value_len) return 0;
        for (i = 0; i < name_len; i++)
            if (!meta_name_char(p[offset + 3 + i])) return 0;
        if (previous != NULL) {
            cmp = memcmp(previous, p + offset + 3, previous_len < name_len ? previous_len : name_len);
            if (cmp > 0 || (cmp == 0 && previous_len >= name_len)) return 0;
        }
        previous = p + offset + 3;
        previous_len = name_len;
        offset += 3 + name_len + value_len;
    }
    return 1;
}

int tfs_read_read_reply(const uint8_t *body, size_t len, tfs_read_reply *out)
{
    uint8_t flags;
    size_t ct_size, meta_size, offset = TFS_OBJECT_HEADER_FIXED, i;
    uint64_t end = 0;

    memset(out, 0, sizeof *out);
    if (len < TFS_OBJECT_HEADER_FIXED || tfs_read_object_info(body, &out->info) != 0) return -1;
    out->kind = body[32];
    flags = body[33];
    ct_size = body[34];
    meta_size = tfs_get_u16(body + 36);
    out->block_count = tfs_get_u32(body + 40);
    if ((flags & ~7u) != 0) return -1;
    out->has_md5 = (flags & 1) != 0;
    memcpy(out->md5, body + 48, TFS_MD5_SIZE);
    if (!out->has_md5 && !all_zero(out->md5, TFS_MD5_SIZE)) return -1;
    if (out->kind == TFS_KIND_INLINE) {
        if (out->info.size > TOASTYFS_VALUE_SIZE_MAX || out->block_count != (out->info.size > 0 ? 1u : 0u)) return -1;
    } else if (out->kind == TFS_KIND_CHUNKED) {
        if (out->info.size > TOASTYFS_OBJECT_SIZE_MAX || (out->block_count > 0) != (out->info.size > 0) ||
            out->block_count > out->info.size)
            return -1;
    } else {
        return -1;
    }
    if (flags & 2) {
        size_t padded = (ct_size + meta_size + 7) & ~(size_t)7;
        if (meta_size > TOASTYFS_USER_META_SIZE_MAX || len - offset < padded) return -1;
        for (i = 0; i < ct_size; i++)
            if (body[offset + i] < 0x20 || body[offset + i] > 0x7e) return -1;
        if (!user_meta_valid(body + offset + ct_size, meta_size)) return -1;
        offset += padded;
    } else if (ct_size != 0 || meta_size != 0) {
        return -1;
    }
    if (flags & 4) {
        uint32_t count;
        if (len - offset < TFS_BLOCK_MAP_FIXED) return -1;
        count = tfs_get_u32(body + offset);
        if (count > TFS_BLOCK_MAP_ENTRIES_MAX || count > out->block_count) return -1;
        offset += TFS_BLOCK_MAP_FIXED;
        if ((len - offset) / TFS_BLOCK_MAP_ENTRY < count) return -1;
        for (i = 0; i < count; i++) {
            const uint8_t *e = body + offset + TFS_BLOCK_MAP_ENTRY * i;
            uint64_t start = tfs_get_u64(e), size = tfs_get_u64(e + 8);
            if (start >= TFS_U53 || size >= TFS_U53 || size < 1 || start + size > out->info.size) return -1;
            if (i > 0 && start != end) return -1;
            if (out->kind == TFS_KIND_INLINE && (start != 0 || size != out->info.size)) return -1;
            end = start + size;
        }
        out->has_map = 1;
        out->map_count = count;
        out->map = body + offset;
        offset += (size_t)TFS_BLOCK_MAP_ENTRY * count;
    }
    out->data = body + offset;
    out->data_len = len - offset;
    if (out->data_len > TFS_READ_SIZE_MAX || out->data_len > out->info.size) return -1;
    return 0;
}
