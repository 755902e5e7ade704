/*
 * The wire codec of the client side (docs/PROTOCOL.md §1.5, §2, §3): request headers and bodies
 * out, frame validation and reply bodies in. Pure: no I/O, no allocation except the list result.
 */
#include <stdlib.h>
#include <string.h>

#include "tfs_internal.h"

const char *tfs_frame_error_name(int reason)
{
    switch (reason) {
    case TFS_FRAME_OK: return "ok";
    case TFS_FRAME_MAGIC: return "bad magic (not a ToastyFS peer, or a corrupt stream)";
    case TFS_FRAME_PROTOCOL: return "unsupported protocol version";
    case TFS_FRAME_CHECKSUM_HEADER: return "header checksum mismatch";
    case TFS_FRAME_SIZE: return "frame size out of bounds";
    case TFS_FRAME_CHECKSUM_BODY: return "body checksum mismatch";
    case TFS_FRAME_FIELD: return "header field out of range";
    case TFS_FRAME_CLUSTER: return "message for another cluster (are all replica addresses the same as the replicas were started with?)";
    case TFS_FRAME_COMMAND: return "unknown command";
    case TFS_FRAME_REPLICA: return "bad sender replica index";
    default: return "invalid frame";
    }
}

void tfs_request_header(uint8_t *h, uint64_t cluster, uint64_t client, uint64_t session, uint32_t request,
                        uint8_t operation)
{
    memset(h, 0, TFS_HEADER_SIZE);
    tfs_put_u64(h + TFS_OFF_CLUSTER, cluster);
    tfs_put_u64(h + TFS_OFF_CLIENT, client);
    tfs_put_u32(h + TFS_OFF_MAGIC, TFS_WIRE_MAGIC);
    tfs_put_u32(h + TFS_OFF_SIZE, TFS_HEADER_SIZE);
    tfs_put_u32(h + TFS_OFF_REQUEST, request);
    tfs_put_u16(h + TFS_OFF_PROTOCOL, (uint16_t)TFS_PROTOCOL_VERSION);
    h[TFS_OFF_COMMAND] = (uint8_t)TFS_COMMAND_REQUEST;
    h[TFS_OFF_REPLICA] = (uint8_t)TFS_SENDER_CLIENT;
    h[TFS_OFF_OPERATION] = operation;
    tfs_put_u64(h + TFS_OFF_SESSION, session);
}

void tfs_seal_body(uint8_t *msg, size_t body_len)
{
    tfs_put_u32(msg + TFS_OFF_SIZE, (uint32_t)(TFS_HEADER_SIZE + body_len));
    tfs_put_u64(msg + TFS_OFF_CHECKSUM_BODY, tfs_xxh64(msg + TFS_HEADER_SIZE, body_len, 0));
}

void tfs_seal_body_tail(uint8_t *msg, size_t head_len, const uint8_t *tail, size_t tail_len)
{
    tfs_xxh64_state s;
    tfs_xxh64_init(&s, 0);
    tfs_xxh64_update(&s, msg + TFS_HEADER_SIZE, head_len);
    tfs_xxh64_update(&s, tail, tail_len);
    tfs_put_u32(msg + TFS_OFF_SIZE, (uint32_t)(TFS_HEADER_SIZE + head_len + tail_len));
    tfs_put_u64(msg + TFS_OFF_CHECKSUM_BODY, tfs_xxh64_digest(&s));
}

void tfs_seal_header(uint8_t *msg, uint32_t view)
{
    tfs_put_u32(msg + TFS_OFF_VIEW, view);
    tfs_put_u64(msg + TFS_OFF_CHECKSUM, tfs_xxh64(msg + 8, TFS_HEADER_SIZE - 8, 0));
}

int tfs_check_header(const uint8_t *h, uint64_t cluster, uint32_t *size)
{
    uint32_t s;
    uint8_t replica;
    if (tfs_get_u32(h + TFS_OFF_MAGIC) != TFS_WIRE_MAGIC) return TFS_FRAME_MAGIC;
    if (tfs_get_u16(h + TFS_OFF_PROTOCOL) != TFS_PROTOCOL_VERSION) return TFS_FRAME_PROTOCOL;
    if (tfs_xxh64(h + 8, TFS_HEADER_SIZE - 8, 0) != tfs_get_u64(h + TFS_OFF_CHECKSUM)) return TFS_FRAME_CHECKSUM_HEADER;
    /* Only now are the fields trusted. The size is checked before a single body byte is buffered. */
    s = tfs_get_u32(h + TFS_OFF_SIZE);
    if (s < TFS_HEADER_SIZE || s > TFS_MESSAGE_SIZE_MAX) return TFS_FRAME_SIZE;
    if (tfs_get_u64(h + TFS_OFF_OP) >= TFS_U53 || tfs_get_u64(h + TFS_OFF_COMMIT) >= TFS_U53 ||
        tfs_get_u64(h + TFS_OFF_TIMESTAMP) >= TFS_U53 || tfs_get_u64(h + TFS_OFF_CHECKPOINT_OP) >= TFS_U53 ||
        tfs_get_u64(h + TFS_OFF_SESSION) >= TFS_U53)
        return TFS_FRAME_FIELD;
    if (tfs_get_u64(h + TFS_OFF_CLUSTER) != cluster) return TFS_FRAME_CLUSTER;
    if (h[TFS_OFF_COMMAND] < 1 || h[TFS_OFF_COMMAND] > TFS_COMMAND_MAX) return TFS_FRAME_COMMAND;
    replica = h[TFS_OFF_REPLICA];
    if (replica >= TOASTYFS_REPLICAS_MAX && replica != TFS_SENDER_CLIENT) return TFS_FRAME_REPLICA;
    *size = s;
    return TFS_FRAME_OK;
}

int tfs_check_body(const uint8_t *h, const uint8_t *body, size_t body_len)
{
    if (tfs_xxh64(body, body_len, 0) != tfs_get_u64(h + TFS_OFF_CHECKSUM_BODY)) return TFS_FRAME_CHECKSUM_BODY;
    return TFS_FRAME_OK;
}

void tfs_key_request(uint8_t *body, const char *key, size_t key_len, uint8_t condition, uint64_t if_version,
                     const char *value, size_t value_len)
{
    memset(body, 0, TFS_KEY_REQUEST_FIXED);
    tfs_put_u16(body, (uint16_t)key_len);
    body[2] = condition;
    tfs_put_u64(body + 8, if_version);
    memcpy(body + TFS_KEY_REQUEST_FIXED, key, key_len);
    if (value_len > 0) memcpy(body + TFS_KEY_REQUEST_FIXED + key_len, value, value_len);
}

void tfs_list_request(uint8_t *body, const char *prefix, size_t prefix_len, const char *after, size_t after_len,
                      uint32_t limit)
{
    memset(body, 0, TFS_LIST_REQUEST_FIXED);
    tfs_put_u16(body, (uint16_t)prefix_len);
    tfs_put_u16(body + 2, (uint16_t)after_len);
    tfs_put_u32(body + 4, limit);
    if (prefix_len > 0) memcpy(body + TFS_LIST_REQUEST_FIXED, prefix, prefix_len);
    if (after_len > 0) memcpy(body + TFS_LIST_REQUEST_FIXED + prefix_len, after, after_len);
}

int tfs_read_object_info(const uint8_t *p, tfs_object_info *info)
{
    info->version = tfs_get_u64(p);
    info->timestamp = tfs_get_u64(p + 8);
    info->size = tfs_get_u64(p + 16);
    info->checksum = tfs_get_u64(p + 24);
    if (info->version == 0 || info->version >= TFS_U53 || info->timestamp >= TFS_U53 || info->size >= TFS_U53) return -1;
    return 0;
}

int tfs_read_version(const uint8_t *body, size_t len, uint64_t *version)
{
    if (len != 8) return -1;
    *version = tfs_get_u64(body);
    return *version < TFS_U53 ? 0 : -1;
}

int tfs_read_list(const uint8_t *body, size_t len, ToastyFS_Result *res)
{
    uint32_t count, i;
    size_t offset, keys_total = 0;
    uint8_t *block;
    ToastyFS_Entry *entries;
    char *keys;

    if (len < TFS_LIST_REPLY_FIXED) return -1;
    count = tfs_get_u32(body);
    if (body[4] > 1) return -1;
    /* First pass: validate every entry and size the allocation. Each entry takes at least 34 bytes,
     * so a count larger than the body could hold is rejected before the loop runs long. */
    if (count > (len - TFS_LIST_REPLY_FIXED) / TFS_LIST_ENTRY_FIXED) return -1;
    offset = TFS_LIST_REPLY_FIXED;
    for (i = 0; i < count; i++) {
        tfs_object_info info;
        uint16_t key_size;
        if (len - offset < TFS_LIST_ENTRY_FIXED) return -1;
        if (tfs_read_object_info(body + offset, &info) != 0) return -1;
        key_size = tfs_get_u16(body + offset + TFS_OBJECT_INFO_SIZE);
        if (key_size < 1 || key_size > TOASTYFS_KEY_SIZE_MAX) return -1;
        if (len - offset - TFS_LIST_ENTRY_FIXED < key_size) return -1;
        offset += TFS_LIST_ENTRY_FIXED + key_size;
        keys_total += (size_t)key_size + 1;
    }
    if (offset != len) return -1;

    res->truncated = body[4];
    res->num_entries = 0;
    res->entries = NULL;
    if (count == 0) return 0;
    block = (uint8_t *)malloc(count * sizeof(ToastyFS_Entry) + keys_total);
    if (block == NULL) return -2;
    entries = (ToastyFS_Entry *)(void *)block;
    keys = (char *)(block + count * sizeof(ToastyFS_Entry));
    offset = TFS_LIST_REPLY_FIXED;
    for (i = 0; i < count; i++) {
        tfs_object_info info;
        uint16_t key_size;
        (void)tfs_read_object_info(body + offset, &info);
        key_size = tfs_get_u16(body + offset + TFS_OBJECT_INFO_SIZE);
        entries[i].version = info.version;
        entries[i].timestamp = info.timestamp;
        entries[i].size = info.size;
        entries[i].checksum = info.checksum;
        entries[i].key = keys;
        entries[i].key_len = key_size;
        memcpy(keys, body + offset + TFS_LIST_ENTRY_FIXED, key_size);
        keys[key_size] = '\0';
        keys += key_size + 1;
        offset += TFS_LIST_ENTRY_FIXED + key_size;
    }
    res->entries = entries;
    res->num_entries = (int)count;
    return 0;
}
