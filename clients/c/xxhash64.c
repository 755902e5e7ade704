/*
 * xxHash64, the checksum of every ToastyFS message (docs/PROTOCOL.md §1.3). Produces the same
 * values as XXH64(data, length, seed) of the reference xxHash library, on any host byte order:
 * input words are read as little-endian. Streaming (init, update, digest) because a write_block
 * body is checksummed as its 32-byte head followed by the caller's data, which is never copied
 * next to it; the one-shot form is the same code.
 */
#include <string.h>

#include "tfs_internal.h"

#define P1 0x9E3779B185EBCA87ULL
#define P2 0xC2B2AE3D27D4EB4FULL
#define P3 0x165667B19E3779F9ULL
#define P4 0x85EBCA77C2B2AE63ULL
#define P5 0x27D4EB2F165667C5ULL

static uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static uint64_t round64(uint64_t acc, uint64_t input)
{
    acc += input * P2;
    acc = rotl64(acc, 31);
    return acc * P1;
}

static uint64_t merge64(uint64_t acc, uint64_t v)
{
    acc ^= round64(0, v);
    return acc * P1 + P4;
}

static void stripe(tfs_xxh64_state *s, const uint8_t *p)
{
    s->v[0] = round64(s->v[0], tfs_get_u64(p));
    s->v[1] = round64(s->v[1], tfs_get_u64(p + 8));
    s->v[2] = round64(s->v[2], tfs_get_u64(p + 16));
    s->v[3] = round64(s->v[3], tfs_get_u64(p + 24));
}

void tfs_xxh64_init(tfs_xxh64_state *s, uint64_t seed)
{
    s->v[0] = seed + P1 + P2;
    s->v[1] = seed + P2;
    s->v[2] = seed;
    s->v[3] = seed - P1;
    s->seed = seed;
    s->total = 0;
    s->buf_len = 0;
}

void tfs_xxh64_update(tfs_xxh64_state *s, const void *data, size_t len)
{
    const uint8_t *p = (const uint8_t *)data;
    if (len == 0) return;
    s->total += len;
    if (s->buf_len + len < 32) {
        memcpy(s->buf + s->buf_len, p, len);
        s->buf_len += len;
        return;
    }
    if (s->buf_len > 0) {
        size_t fill = 32 - s->buf_len;
        memcpy(s->buf + s->buf_len, p, fill);
        stripe(s, s->buf);
        p += fill;
        len -= fill;
        s->buf_len = 0;
    }
    while (len >= 32) {
        stripe(s, p);
        p += 32;
        len -= 32;
    }
    if (len > 0) memcpy(s->buf, p, len);
    s->buf_len = len;
}

uint64_t tfs_xxh64_digest(const tfs_xxh64_state *s)
{
    const uint8_t *p = s->buf;
    const uint8_t *end = s->buf + s->buf_len;
    uint64_t h;

    if (s->total >= 32) {
        h = rotl64(s->v[0], 1) + rotl64(s->v[1], 7) + rotl64(s->v[2], 12) + rotl64(s->v[3], 18);
        h = merge64(h, s->v[0]);
        h = merge64(h, s->v[1]);
        h = merge64(h, s->v[2]);
        h = merge64(h, s->v[3]);
    } else {
        h = s->seed + P5;
    }
    h += s->total;

    while (end - p >= 8) {
        h ^= round64(0, tfs_get_u64(p));
        h = rotl64(h, 27) * P1 + P4;
        p += 8;
    }
    if (end - p >= 4) {
        h ^= (uint64_t)tfs_get_u32(p) * P1;
        h = rotl64(h, 23) * P2 + P3;
        p += 4;
    }
    while (p < end) {
        h ^= (uint64_t)(*p) * P5;
        h = rotl64(h, 11) * P1;
        p++;
    }

    h ^= h >> 33;
    h *= P2;
    h ^= h >> 29;
    h *= P3;
    h ^= h >> 32;
    return h;
}

uint64_t tfs_xxh64(const void *data, size_t len, uint64_t seed)
{
    tfs_xxh64_state s;
    tfs_xxh64_init(&s, seed);
    tfs_xxh64_update(&s, data, len);
    return tfs_xxh64_digest(&s);
}

void tfs_xxh64_update_u64(tfs_xxh64_state *s, uint64_t v)
{
    uint8_t b[8];
    tfs_put_u64(b, v);
    tfs_xxh64_update(s, b, sizeof b);
}
