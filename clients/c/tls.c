/*
 * Mutual TLS for the client (docs/PROTOCOL.md §6.8) on the system's OpenSSL (1.1.0 or later),
 * compiled only when the Makefile found it (TOASTYFS_HAVE_TLS). As the TypeScript client does
 * (lib/net/tls.ts): TLS 1.2 or later; the replica's certificate must chain to the CA file and name
 * the address dialed (an IP subjectAltName for a numeric host, a DNS name otherwise); the client
 * presents its own certificate. Sockets stay non-blocking: OpenSSL's "want read" and "want write"
 * become TFS_IO_AGAIN with the event to poll for, so every wait keeps its deadline.
 *
 * OpenSSL's own socket layer writes with write(), which raises SIGPIPE on a connection the peer has
 * closed; a library must neither kill its caller nor change its signal handling, so each SSL talks
 * to its socket through a small BIO of ours that sends with MSG_NOSIGNAL, as net.c does.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "tfs_internal.h"

int tfs_is_tls_alert(const uint8_t *b, size_t len)
{
    return len >= 5 && b[0] == 21 && b[1] == 3 && b[2] <= 4 && b[3] == 0 && b[4] == 2;
}

#ifdef TOASTYFS_HAVE_TLS

#include <arpa/inet.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#if OPENSSL_VERSION_NUMBER < 0x10100000L
#error "TLS needs OpenSSL 1.1.0 or later: build with TLS=no, or install a newer OpenSSL"
#endif

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0 /* macOS: SO_NOSIGPIPE is set on the socket instead (net.c) */
#endif

struct tfs_tls_config {
    SSL_CTX *ctx;
    BIO_METHOD *bio_method;
    char ca_file[256]; /* for messages */
};

int tfs_tls_built_in(void) { return 1; }

/* --- The socket layer under each SSL: the stream's fd, non-blocking, without SIGPIPE */

static int bio_write(BIO *b, const char *data, int len)
{
    tfs_stream *s = (tfs_stream *)BIO_get_data(b);
    ssize_t n;
    BIO_clear_retry_flags(b);
    do n = send(s->fd, data, (size_t)len, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) BIO_set_retry_write(b);
    return (int)n;
}

static int bio_read(BIO *b, char *out, int len)
{
    tfs_stream *s = (tfs_stream *)BIO_get_data(b);
    ssize_t n;
    BIO_clear_retry_flags(b);
    do n = recv(s->fd, out, (size_t)len, 0);
    while (n < 0 && errno == EINTR);
    if (n == 0) s->eof = 1;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) BIO_set_retry_read(b);
    return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    const tfs_stream *s = (const tfs_stream *)BIO_get_data(b);
    (void)num;
    (void)ptr;
    if (cmd == BIO_CTRL_FLUSH) return 1; /* nothing is buffered here */
    if (cmd == BIO_CTRL_EOF) return s != NULL && s->eof;
    return 0;
}

/* --- Messages */

/* OpenSSL's reason for the first error queued ("unknown" if none), into buf; clears the queue. Its
 * code in *code (0 if none). */
static const char *openssl_reason(char *buf, size_t len, int *code)
{
    unsigned long e = ERR_get_error();
    const char *reason = e != 0 ? ERR_reason_error_string(e) : NULL;
    if (code != NULL) *code = e != 0 ? ERR_GET_REASON(e) : 0;
    if (reason != NULL) (void)snprintf(buf, len, "%s", reason);
    else if (e != 0) ERR_error_string_n(e, buf, len);
    else (void)snprintf(buf, len, "unknown");
    ERR_clear_error();
    return buf;
}

/* 0 if path can be opened for reading; else -1 with a message naming the file, as lib/net/tls.ts. */
static int readable(const char *path, const char *what, char *err, size_t err_len)
{
    FILE *f = fopen(path, "rb");
    if (f != NULL) {
        fclose(f);
        return 0;
    }
    (void)snprintf(err, err_len, "TLS: cannot read the TLS %s %s: %s", what, path,
                   errno == ENOENT ? "no such file" : errno == EACCES ? "permission denied" : strerror(errno));
    return -1;
}

/* An encrypted key must fail to load, never prompt on the terminal of a library's caller. */
static int no_passphrase(char *buf, int size, int rwflag, void *user)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)user;
    return 0;
}

/* --- Configuration */

void tfs_tls_config_free(tfs_tls_config *c)
{
    if (c == NULL) return;
    SSL_CTX_free(c->ctx);
    if (c->bio_method != NULL) BIO_meth_free(c->bio_method);
    free(c);
}

/* Frees c and says what failed (`file` NULL: no file to name), with OpenSSL's reason. NULL. */
static tfs_tls_config *config_failed(tfs_tls_config *c, char *err, size_t err_len, const char *file,
                                     const char *problem)
{
    char reason[160];
    (void)openssl_reason(reason, sizeof reason, NULL);
    (void)snprintf(err, err_len, "TLS: %s%s%s (%s)", file != NULL ? file : "", file != NULL ? ": " : "", problem,
                   reason);
    tfs_tls_config_free(c);
    return NULL;
}

/* Loads the key of cert_file; a key that is another certificate's is named as such. 0 or -1. */
static int load_key(tfs_tls_config *c, const char *cert_file, const char *key_file, char *err, size_t err_len)
{
    char reason[160];
    int code = 0;
    if (SSL_CTX_use_PrivateKey_file(c->ctx, key_file, SSL_FILETYPE_PEM) == 1 && SSL_CTX_check_private_key(c->ctx) == 1)
        return 0;
    (void)openssl_reason(reason, sizeof reason, &code);
    if (code == X509_R_KEY_VALUES_MISMATCH || code == X509_R_KEY_TYPE_MISMATCH || code == 0)
        (void)snprintf(err, err_len, "TLS: %s is not the private key of the certificate %s", key_file, cert_file);
    else
        (void)snprintf(err, err_len,
                       "TLS: %s: the TLS key is not an unencrypted PEM private key (%s); give ToastyFS an unencrypted "
                       "key (kept mode 0600)",
                       key_file, reason);
    return -1;
}

tfs_tls_config *tfs_tls_config_new(const char *cert_file, const char *key_file, const char *ca_file, char *err,
                                   size_t err_len)
{
    tfs_tls_config *c;
    uint64_t options = 0;

    if (readable(ca_file, "CA", err, err_len) != 0) return NULL;
    if (cert_file != NULL && (readable(cert_file, "certificate", err, err_len) != 0 ||
                              readable(key_file, "key", err, err_len) != 0))
        return NULL;
    c = (tfs_tls_config *)calloc(1, sizeof *c);
    if (c == NULL) {
        (void)snprintf(err, err_len, "TLS: out of memory");
        return NULL;
    }
    ERR_clear_error();
    c->ctx = SSL_CTX_new(TLS_client_method());
    c->bio_method = BIO_meth_new(BIO_TYPE_SOURCE_SINK | BIO_get_new_index(), "toastyfs socket");
    if (c->ctx == NULL || c->bio_method == NULL || BIO_meth_set_write(c->bio_method, bio_write) != 1 ||
        BIO_meth_set_read(c->bio_method, bio_read) != 1 || BIO_meth_set_ctrl(c->bio_method, bio_ctrl) != 1)
        return config_failed(c, err, err_len, NULL, "OpenSSL could not set up a client");
    if (SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION) != 1)
        return config_failed(c, err, err_len, NULL, "OpenSSL refused TLS 1.2 as the lowest version");
    /* A write that would block is retried with the rest of the bytes, from where they are. */
    SSL_CTX_set_mode(c->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
    /* A replica may close without close_notify; frames carry their sizes, so a stream cut short is a
     * frame cut short, seen as such. */
    options |= SSL_OP_IGNORE_UNEXPECTED_EOF;
#endif
#ifdef SSL_OP_NO_RENEGOTIATION
    options |= SSL_OP_NO_RENEGOTIATION;
#endif
    (void)SSL_CTX_set_options(c->ctx, options);
    SSL_CTX_set_default_passwd_cb(c->ctx, no_passphrase);
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_load_verify_locations(c->ctx, ca_file, NULL) != 1)
        return config_failed(c, err, err_len, ca_file, "the TLS CA holds no PEM certificate");
    if (cert_file != NULL) {
        if (SSL_CTX_use_certificate_chain_file(c->ctx, cert_file) != 1)
            return config_failed(c, err, err_len, cert_file, "the TLS certificate holds no PEM certificate");
        if (load_key(c, cert_file, key_file, err, err_len) != 0) {
            tfs_tls_config_free(c);
            return NULL;
        }
    }
    (void)snprintf(c->ca_file, sizeof c->ca_file, "%s", ca_file);
    return c;
}

/* --- Connections */

/* Why a handshake failed, for the caller's message (lib/net/tls.ts tlsHandshakeFailure). */
static void describe_failure(const tfs_tls_config *c, SSL *ssl, int error, const tfs_stream *s,
                             const tfs_address *address, char *err, size_t err_len)
{
    char reason[160];
    long verified = SSL_get_verify_result(ssl);
    if (verified != X509_V_OK) {
        (void)snprintf(err, err_len,
                       "TLS: the replica's certificate was not accepted (%s): it must be issued by the CA in %s and "
                       "name %s (subjectAltName)",
                       X509_verify_cert_error_string(verified), c->ca_file, address->host);
    } else if (error == SSL_ERROR_SSL) {
        (void)snprintf(err, err_len,
                       "TLS: the TLS handshake failed (%s): does the replica run TLS (--tls-cert, --tls-key and "
                       "--tls-ca)?",
                       openssl_reason(reason, sizeof reason, NULL));
    } else {
        /* A replica without TLS closes a connection whose first bytes are a ClientHello (§6.8). */
        (void)snprintf(err, err_len,
                       "TLS: the replica %s during the TLS handshake: does it run TLS (--tls-cert, --tls-key and "
                       "--tls-ca)?",
                       s->eof ? "closed the connection" : "reset the connection");
    }
    ERR_clear_error();
}

int tfs_tls_handshake(tfs_tls_config *c, tfs_stream *s, const tfs_address *address, int64_t deadline_ms, char *err,
                      size_t err_len)
{
    unsigned char ip[16];
    int numeric = inet_pton(AF_INET, address->host, ip) == 1 || inet_pton(AF_INET6, address->host, ip) == 1;
    int status = TFS_TLS_NO_ANSWER;
    SSL *ssl;
    BIO *bio;

    ERR_clear_error();
    s->eof = 0;
    ssl = SSL_new(c->ctx);
    bio = ssl != NULL ? BIO_new(c->bio_method) : NULL;
    if (bio == NULL) {
        (void)snprintf(err, err_len, "TLS: out of memory for a connection to %s", address->text);
        SSL_free(ssl);
        ERR_clear_error();
        tfs_stream_close(s);
        return TFS_TLS_NO_ANSWER;
    }
    BIO_set_data(bio, s);
    BIO_set_init(bio, 1);
    SSL_set_bio(ssl, bio, bio); /* the SSL owns it now */
    /* The name check of lib/net/tls.ts: an IP subjectAltName for a numeric host, else a DNS name;
     * a DNS name also goes out as SNI. */
    if (numeric ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), address->host) != 1
                : (SSL_set1_host(ssl, address->host) != 1 || SSL_set_tlsext_host_name(ssl, address->host) != 1)) {
        char reason[160];
        (void)snprintf(err, err_len, "TLS: cannot check certificates against the name %s (%s)", address->host,
                       openssl_reason(reason, sizeof reason, NULL));
        status = TFS_TLS_REFUSED;
    } else {
        for (;;) {
            int r, error, revents;
            ERR_clear_error();
            r = SSL_connect(ssl);
            if (r == 1) {
                s->tls = ssl;
                s->wait = POLLIN;
                return TFS_TLS_OK;
            }
            error = SSL_get_error(ssl, r);
            if (error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE) {
                describe_failure(c, ssl, error, s, address, err, err_len);
                status = TFS_TLS_REFUSED;
                break;
            }
            /* POLLERR or POLLHUP: the next SSL_connect meets the error itself. */
            revents = tfs_wait_ready(s->fd, error == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline_ms);
            if (revents < 0) {
                (void)snprintf(err, err_len, "no TLS handshake from %s in time", address->text);
                break;
            }
        }
    }
    SSL_free(ssl);
    ERR_clear_error();
    tfs_stream_close(s);
    return status;
}

/* SSL_read and SSL_write take an int length. */
static int io_len(size_t len) { return len > (size_t)INT_MAX ? INT_MAX : (int)len; }

/* After SSL_read or SSL_write returned r <= 0: TFS_IO_AGAIN (s->wait set), 0 (read: the peer closed)
 * or TFS_IO_ERROR. */
static long io_result(tfs_stream *s, int r, int reading)
{
    int error = SSL_get_error((SSL *)s->tls, r);
    if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
        s->wait = error == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        return TFS_IO_AGAIN;
    }
    ERR_clear_error();
    if (reading && (error == SSL_ERROR_ZERO_RETURN || (error == SSL_ERROR_SYSCALL && s->eof))) return 0;
    return TFS_IO_ERROR;
}

long tfs_tls_read(tfs_stream *s, uint8_t *buf, size_t len)
{
    int r;
    ERR_clear_error();
    r = SSL_read((SSL *)s->tls, buf, io_len(len));
    return r > 0 ? (long)r : io_result(s, r, 1);
}

long tfs_tls_write(tfs_stream *s, const uint8_t *buf, size_t len)
{
    int r;
    ERR_clear_error();
    r = SSL_write((SSL *)s->tls, buf, io_len(len));
    return r > 0 ? (long)r : io_result(s, r, 0);
}

size_t tfs_tls_buffered(const tfs_stream *s)
{
    int n = SSL_pending((const SSL *)s->tls);
    return n > 0 ? (size_t)n : 0;
}

/* No close_notify: the replica forgets a client connection on its close either way, and a
 * connection is closed here mostly because it failed, when writing more would only block. */
void tfs_tls_free(tfs_stream *s)
{
    if (s->tls == NULL) return;
    SSL_free((SSL *)s->tls);
    s->tls = NULL;
}

#else /* !TOASTYFS_HAVE_TLS: no TLS built in; every entry point says so */

static const char no_tls[] =
    "TLS is unavailable: this libtoasty was built without OpenSSL (install its headers, e.g. Debian's libssl-dev, "
    "and rebuild; clients/c/README.md)";

int tfs_tls_built_in(void) { return 0; }

tfs_tls_config *tfs_tls_config_new(const char *cert_file, const char *key_file, const char *ca_file, char *err,
                                   size_t err_len)
{
    (void)cert_file;
    (void)key_file;
    (void)ca_file;
    (void)snprintf(err, err_len, "%s", no_tls);
    return NULL;
}

void tfs_tls_config_free(tfs_tls_config *config) { (void)config; }

int tfs_tls_handshake(tfs_tls_config *config, tfs_stream *s, const tfs_address *address, int64_t deadline_ms,
                      char *err, size_t err_len)
{
    (void)config;
    (void)address;
    (void)deadline_ms;
    (void)snprintf(err, err_len, "%s", no_tls);
    tfs_stream_close(s);
    return TFS_TLS_REFUSED;
}

long tfs_tls_read(tfs_stream *s, uint8_t *buf, size_t len)
{
    (void)s;
    (void)buf;
    (void)len;
    return TFS_IO_ERROR;
}

long tfs_tls_write(tfs_stream *s, const uint8_t *buf, size_t len)
{
    (void)s;
    (void)buf;
    (void)len;
    return TFS_IO_ERROR;
}

size_t tfs_tls_buffered(const tfs_stream *s)
{
    (void)s;
    return 0;
}

void tfs_tls_free(tfs_stream *s) { s->tls = NULL; }

#endif
