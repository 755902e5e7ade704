/*
 * Authentication of docs/PROTOCOL.md §6 as a client does it, the same as lib/net/auth/ (secret.ts,
 * handshake.ts, frame_tag.ts): reading a secret or client key file into K_client, the HELLO, the
 * check of the CHALLENGE and the PROOF with the per-direction session keys, and the 16-byte tag of
 * a frame. toastyfs.c runs them on its sockets.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "tfs_internal.h"

static const char label_client[] = "toastyfs client v1";
static const char client_prefix[] = "client ";

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int tfs_auth_parse(const char *text, size_t len, const char *path, uint8_t client_key[TFS_AUTH_KEY_SIZE], char *err,
                   size_t err_len)
{
    size_t start = 0, end = len, i;
    int client_only;
    uint8_t bytes[TFS_AUTH_KEY_SIZE];
    const char *what;

    while (start < end && is_space(text[start])) start++;
    while (end > start && is_space(text[end - 1])) end--;
    client_only = end - start >= sizeof client_prefix - 1 && memcmp(text + start, client_prefix, sizeof client_prefix - 1) == 0;
    if (client_only) {
        start += sizeof client_prefix - 1;
        while (start < end && is_space(text[start])) start++;
    }
    what = client_only ? "a client key file" : "a secret file";
    if (end - start != 2 * TFS_AUTH_KEY_SIZE) {
        (void)snprintf(err, err_len,
                       "%s: %s holds exactly %u hex digits, this one has %lu characters (create one with `toastyfs "
                       "secret new FILE`)",
                       path, what, 2 * TFS_AUTH_KEY_SIZE, (unsigned long)(end - start));
        return -1;
    }
    for (i = 0; i < 2 * TFS_AUTH_KEY_SIZE; i++) {
        if (hex_value(text[start + i]) < 0) {
            (void)snprintf(err, err_len, "%s: character %lu of the key, '%c', is not a hex digit", path,
                           (unsigned long)(i + 1), text[start + i]);
            return -1;
        }
    }
    for (i = 0; i < TFS_AUTH_KEY_SIZE; i++)
        bytes[i] = (uint8_t)(hex_value(text[start + 2 * i]) << 4 | hex_value(text[start + 2 * i + 1]));
    if (client_only) {
        memcpy(client_key, bytes, TFS_AUTH_KEY_SIZE);
    } else {
        /* K_client = HMAC(secret, "toastyfs client v1"): a client never needs K_replica. */
        tfs_hmac h;
        tfs_hmac_init(&h, bytes, sizeof bytes);
        tfs_hmac_update(&h, label_client, sizeof label_client - 1);
        tfs_hmac_final(&h, client_key);
    }
    memset(bytes, 0, sizeof bytes);
    return 0;
}

int tfs_auth_read_file(const char *path, uint8_t client_key[TFS_AUTH_KEY_SIZE], char *err, size_t err_len)
{
    char text[TFS_AUTH_FILE_SIZE_MAX];
    struct stat st;
    size_t len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC), status;

    if (fd < 0) {
        (void)snprintf(err, err_len, "cannot read the secret file %s: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) != 0) {
        (void)snprintf(err, err_len, "cannot read the secret file %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    /* As ssh refuses such private keys: a secret any local user can read authenticates nothing. */
    if ((st.st_mode & 077) != 0) {
        (void)snprintf(err, err_len,
                       "%s is readable or writable by group or others (mode %04o): run `chmod 600 %s`", path,
                       (unsigned)(st.st_mode & 0777), path);
        close(fd);
        return -1;
    }
    for (;;) {
        ssize_t n = read(fd, text + len, sizeof text - len);
        if (n > 0) {
            len += (size_t)n;
            if (len == sizeof text) break;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            (void)snprintf(err, err_len, "cannot read the secret file %s: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
        break;
    }
    close(fd);
    if (len == sizeof text) {
        (void)snprintf(err, err_len, "%s: a secret file is 64 hex digits, this one is over %u bytes", path,
                       TFS_AUTH_FILE_SIZE_MAX - 1);
        return -1;
    }
    status = tfs_auth_parse(text, len, path, client_key, err, err_len);
    memset(text, 0, sizeof text);
    return status;
}

void tfs_auth_hello(uint8_t hello[TFS_AUTH_HELLO_SIZE], uint64_t cluster, const uint8_t nonce[TFS_AUTH_NONCE_SIZE])
{
    tfs_put_u32(hello, TFS_AUTH_HANDSHAKE_MAGIC);
    hello[4] = 1; /* handshake version */
    hello[5] = 1; /* hello */
    hello[6] = 0; /* role: client */
    hello[7] = TFS_SENDER_CLIENT;
    tfs_put_u64(hello + 8, cluster);
    memcpy(hello + 16, nonce, TFS_AUTH_NONCE_SIZE);
}

/* HMAC(key, label ‖ hello ‖ challenge[0..challenge_len)). */
static void transcript_mac(const uint8_t *key, const char *label, const uint8_t *hello, const uint8_t *challenge,
                           size_t challenge_len, uint8_t out[TFS_SHA256_SIZE])
{
    tfs_hmac h;
    tfs_hmac_init(&h, key, TFS_AUTH_KEY_SIZE);
    tfs_hmac_update(&h, label, strlen(label));
    tfs_hmac_update(&h, hello, TFS_AUTH_HELLO_SIZE);
    tfs_hmac_update(&h, challenge, challenge_len);
    tfs_hmac_final(&h, out);
}

int tfs_auth_answer(const uint8_t key[TFS_AUTH_KEY_SIZE], const uint8_t hello[TFS_AUTH_HELLO_SIZE],
                    const uint8_t challenge[TFS_AUTH_CHALLENGE_SIZE], int expected, int n,
                    uint8_t proof[TFS_AUTH_PROOF_SIZE], uint8_t send_key[TFS_AUTH_KEY_SIZE],
                    uint8_t receive_key[TFS_AUTH_KEY_SIZE], char *err, size_t err_len)
{
    uint8_t mac[TFS_SHA256_SIZE];
    const size_t signed_len = TFS_AUTH_CHALLENGE_SIZE - TFS_SHA256_SIZE;

    if (tfs_get_u32(challenge) != TFS_AUTH_HANDSHAKE_MAGIC) {
        (void)snprintf(err, err_len, "the replica sent an unknown magic 0x%08x", (unsigned)tfs_get_u32(challenge));
        return -1;
    }
    if (challenge[4] != 1) {
        (void)snprintf(err, err_len, "the replica speaks handshake version %u", (unsigned)challenge[4]);
        return -1;
    }
    if (challenge[5] != 2 || challenge[7] != 0) {
        (void)snprintf(err, err_len, "malformed challenge");
        return -1;
    }
    if ((int)challenge[6] >= n || (int)challenge[6] != expected) {
        (void)snprintf(err, err_len, "the acceptor says it is replica %u, expected %d", (unsigned)challenge[6],
                       expected);
        return -1;
    }
    transcript_mac(key, "accept", hello, challenge, signed_len, mac);
    if (!tfs_equal_ct(mac, challenge + signed_len, TFS_SHA256_SIZE)) {
        (void)snprintf(err, err_len,
                       "the replica does not hold our secret (wrong secret, or not the replica we meant)");
        return -1;
    }
    memset(proof, 0, TFS_AUTH_PROOF_SIZE);
    tfs_put_u32(proof, TFS_AUTH_HANDSHAKE_MAGIC);
    proof[4] = 1;
    proof[5] = 3; /* proof */
    transcript_mac(key, "dial", hello, challenge, TFS_AUTH_CHALLENGE_SIZE, proof + 8);
    transcript_mac(key, "d2a", hello, challenge, TFS_AUTH_CHALLENGE_SIZE, send_key);
    transcript_mac(key, "a2d", hello, challenge, TFS_AUTH_CHALLENGE_SIZE, receive_key);
    return 0;
}

const char *tfs_auth_refusal_message(int code)
{
    switch (code) {
    case 1: return "the replica requires a secret (toastyfs_init_secret, or TOASTYFS_SECRET_FILE)";
    case 2: return "the replica has no secret configured (start it with --secret-file, or connect without one)";
    case 3: return "the replica belongs to another cluster (its address list differs from ours)";
    case 4: return "the replica refused the role or replica index we claimed";
    case 5: return "the replica speaks another handshake version";
    case 6: return "the replica rejected our proof: wrong secret";
    case 7: return "the replica found our handshake malformed";
    case 8:
        return "TLS: the replica refused our certificate (none given, or not issued by the cluster's CA: check "
               "TOASTYFS_TLS_CERT, TOASTYFS_TLS_KEY and TOASTYFS_TLS_CA, or the files given to toastyfs_init_tls)";
    default: return "the replica refused the connection (unknown code)";
    }
}

void tfs_auth_tag(const uint8_t key[TFS_AUTH_KEY_SIZE], uint64_t seq, const uint8_t *a, size_t a_len,
                  const uint8_t *b, size_t b_len, uint8_t tag[TFS_AUTH_TAG_SIZE])
{
    uint8_t seq_bytes[8], mac[TFS_SHA256_SIZE];
    tfs_hmac h;
    tfs_put_u64(seq_bytes, seq);
    tfs_hmac_init(&h, key, TFS_AUTH_KEY_SIZE);
    tfs_hmac_update(&h, seq_bytes, sizeof seq_bytes);
    tfs_hmac_update(&h, a, a_len);
    if (b != NULL && b_len > 0) tfs_hmac_update(&h, b, b_len);
    tfs_hmac_final(&h, mac);
    memcpy(tag, mac, TFS_AUTH_TAG_SIZE);
}
