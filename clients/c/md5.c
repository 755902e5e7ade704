/*
 * MD5 (RFC 1321), streaming. The cluster stores the MD5 of an uploaded object as its uploader
 * computed it (docs/LARGE_OBJECTS.md §1: S3's ETag needs it) and never verifies it, so the client
 * computes it as the bytes pass, one block at a time. Written from the RFC's description: four
 * rounds of sixteen steps over each 64-byte chunk, little-endian words, the length in bits
 * appended after a 0x80 byte and zero padding.
 */
#include <string.h>

#include "tfs_internal.h"

/* T[i] = floor(2^32 * |sin(i + 1)|), RFC 1321 §3.4 (tabulated: the library links no -lm). */
static const uint32_t T[64] = {
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391};

/* Left-rotation amounts, four per round (each used for steps i, i + 4, i + 8, i + 12). */
static const int S[4][4] = {{7, 12, 17, 22}, {5, 9, 14, 20}, {4, 11, 16, 23}, {6, 10, 15, 21}};

static uint32_t rotl32(uint32_t x, int r) { return (x << r) | (x >> (32 - r)); }

static void chunk(uint32_t state[4], const uint8_t *p)
{
    uint32_t x[16], a = state[0], b = state[1], c = state[2], d = state[3];
    int i;
    for (i = 0; i < 16; i++) x[i] = tfs_get_u32(p + 4 * i);
    for (i = 0; i < 64; i++) {
        int round = i / 16;
        uint32_t f, next;
        int k;
        switch (round) {
        case 0:
            f = (b & c) | (~b & d);
            k = i;
            break;
        case 1:
            f = (b & d) | (c & ~d);
            k = (5 * i + 1) % 16;
            break;
        case 2:
            f = b ^ c ^ d;
            k = (3 * i + 5) % 16;
            break;
        default:
            f = c ^ (b | ~d);
            k = (7 * i) % 16;
            break;
        }
        next = b + rotl32(a + f + x[k] + T[i], S[round][i % 4]);
        a = d;
        d = c;
        c = b;
        b = next;
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
}

void tfs_md5_init(tfs_md5 *m)
{
    m->state[0] = 0x67452301;
    m->state[1] = 0xefcdab89;
    m->state[2] = 0x98badcfe;
    m->state[3] = 0x10325476;
    m->bytes = 0;
}

void tfs_md5_update(tfs_md5 *m, const void *data, size_t len)
{
    const uint8_t *p = (const uint8_t *)data;
    size_t have = (size_t)(m->bytes % 64);
    if (len == 0) return;
    m->bytes += len;
    if (have > 0) {
        size_t fill = 64 - have;
        if (len < fill) {
            memcpy(m->buf + have, p, len);
            return;
        }
        memcpy(m->buf + have, p, fill);
        chunk(m->state, m->buf);
        p += fill;
        len -= fill;
    }
    while (len >= 64) {
        chunk(m->state, p);
        p += 64;
        len -= 64;
    }
    if (len > 0) memcpy(m->buf, p, len);
}

void tfs_md5_final(tfs_md5 *m, uint8_t out[16])
{
    uint8_t pad[72];
    uint64_t bits = m->bytes * 8;
    size_t have = (size_t)(m->bytes % 64);
    size_t pad_len = (have < 56 ? 56 - have : 120 - have);
    int i;
    memset(pad, 0, sizeof pad);
    pad[0] = 0x80;
    tfs_put_u64(pad + pad_len, bits);
    tfs_md5_update(m, pad, pad_len + 8);
    for (i = 0; i < 4; i++) tfs_put_u32(out + 4 * i, m->state[i]);
}
