/*
 * The client: sessions, request numbers and retries (docs/PROTOCOL.md §3.8-§3.10, the same policy
 * as lib/client/client.ts), over one lazily opened TCP connection per replica (TLS over it when
 * the handle has TLS files, then the secret's handshake when it has a secret: docs/PROTOCOL.md §6).
 *
 * One operation = (for a write, register if there is no session: reads need none) + one request,
 * retried with the same request number until a final answer or the operation deadline. Where each
 * retry goes and after what pause is route.c's (docs/PROTOCOL.md §3.9):
 *   - no reply within the attempt timeout, a closed connection, or a malformed frame: the next
 *     replica not known to be down (a connection that delivered a malformed frame is closed: the
 *     stream can no longer be trusted to be in sync);
 *   - a connection that could not be made (refused, or no answer before the attempt's deadline):
 *     that replica is down for two attempt timeouts, and the next live one is tried at once;
 *   - not_primary: the hinted primary (view % n), unless it is down (the live replicas are asked
 *     again after a pause), or the next replica if the replier names itself;
 *   - busy, unavailable: back off, then the same replica;
 *   - evicted: forget the session (the next operation registers again); the write's outcome is
 *     unknown.
 * Replies are read on every open connection, and only a reply whose client id, request number and
 * operation match the pending request is used; anything else is a late or duplicate reply.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include "tfs_internal.h"

#define ATTEMPT_TIMEOUT_MS_DEFAULT 1000
#define OPERATION_TIMEOUT_MS_DEFAULT 15000
/* Extra patience per MiB of request on one attempt (a large value takes a while to replicate). */
#define ATTEMPT_MS_PER_MIB 100
#define BACKOFF_MS 50
/* What a plain client reports when a replica answers it with a TLS alert (§6.8). */
#define TLS_REQUIRED                                                                                                   \
    "TLS: the replica requires TLS and answered our plain connection with a TLS alert (set TOASTYFS_TLS_CERT, "     \
    "TOASTYFS_TLS_KEY and TOASTYFS_TLS_CA, or call toastyfs_init_tls)"
/* Give up early with TOASTYFS_PROTOCOL after this many malformed replies per replica. */
#define PROTOCOL_ERRORS_PER_REPLICA_MAX 2

/* A connection to one replica and the frame being received on it. */
typedef struct tfs_conn {
    tfs_stream stream; /* stream.fd -1: not connected */
    uint8_t header[TFS_HEADER_SIZE];
    uint32_t header_have;
    uint8_t *body; /* body_len + 1 bytes, allocated once the header is validated */
    uint32_t body_len;
    uint32_t body_have;
    int64_t progress_ms; /* when bytes last arrived */
    /* With a secret (docs/PROTOCOL.md §6): the session keys of this connection, the sequence
     * numbers of the next frame each way, and the tag that follows the frame being received. */
    uint8_t send_key[TFS_AUTH_KEY_SIZE], receive_key[TFS_AUTH_KEY_SIZE];
    uint64_t send_seq, receive_seq;
    uint8_t tag[TFS_AUTH_TAG_SIZE];
    uint32_t tag_have;
} tfs_conn;

/* A validated frame; the body (body_len + 1 bytes) is owned by whoever holds it. */
typedef struct tfs_frame {
    uint8_t header[TFS_HEADER_SIZE];
    uint8_t *body;
    uint32_t body_len;
    int conn;
} tfs_frame;

struct ToastyFS {
    uint64_t caller_id; /* as given to toastyfs_init */
    uint64_t id;        /* caller_id XOR 64 random bits */
    uint64_t cluster;
    int n;
    tfs_address replicas[TOASTYFS_REPLICAS_MAX];
    tfs_conn conns[TOASTYFS_REPLICAS_MAX];
    uint64_t session; /* 0: not registered */
    uint32_t request_number;
    tfs_route route; /* target, view hint, replicas found down, attempt timeout (route.c) */
    int operation_timeout_ms;
    uint32_t block_size; /* the block size uploads use: 4 MiB until a create_upload reply says otherwise */
    int auth;                              /* 1: every connection authenticates with client_key (§6) */
    uint8_t client_key[TFS_AUTH_KEY_SIZE]; /* K_client */
    char auth_error[240]; /* TOASTYFS_SECRET_FILE could not be used: every operation fails with this */
    tfs_tls_config *tls;  /* mutual TLS on every connection (§6.8); NULL: plain TCP */
    int tls_status;       /* nonzero: TLS was asked for and cannot be used; every operation fails with it */
    char tls_error[300];  /* and says this */
};

/* One request being retried. */
typedef struct tfs_call {
    uint8_t operation;
    uint8_t *msg; /* header + body (without the tail) */
    size_t msg_len;
    const uint8_t *tail; /* the rest of the body, sent from where it is (a block of the caller's) */
    size_t tail_len;
    tfs_out *out;
    uint32_t request;
    int64_t deadline;
    tfs_attempts attempts;
    int sent;            /* sent at least once: a write's outcome is then unknown on failure */
    int protocol_errors; /* malformed frames or replies while this call was pending */
    int no_memory;
    int auth_failed;   /* a replica refused us or failed the handshake: problem says why */
    char problem[400]; /* the last thing that went wrong, for the final message */
} tfs_call;

static void set_message(ToastyFS_Result *res, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(res->message, sizeof res->message, fmt, ap);
    va_end(ap);
}

static void set_problem(tfs_call *call, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(call->problem, sizeof call->problem, fmt, ap);
    va_end(ap);
}

static int fail(ToastyFS_Result *res, int status, const char *message)
{
    res->status = status;
    set_message(res, "%s", message);
    return status;
}

int tfs_fail(ToastyFS_Result *res, int status, const char *fmt, ...)
{
    va_list ap;
    res->status = status;
    va_start(ap, fmt);
    (void)vsnprintf(res->message, sizeof res->message, fmt, ap);
    va_end(ap);
    return status;
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* --- Connections and frames */

static void conn_reset_frame(tfs_conn *c)
{
    free(c->body);
    c->body = NULL;
    c->header_have = 0;
    c->body_len = 0;
    c->body_have = 0;
    c->tag_have = 0;
}

static void conn_close(tfs_conn *c)
{
    tfs_stream_close(&c->stream);
    conn_reset_frame(c);
    /* A reconnection starts new keys and sequence 0 (§6.3). */
    memset(c->send_key, 0, sizeof c->send_key);
    memset(c->receive_key, 0, sizeof c->receive_key);
    c->send_seq = 0;
    c->receive_seq = 0;
}

/* Closes connection i after an authentication failure: the call ends with TOASTYFS_AUTH_FAILED. */
static void conn_auth_failed(ToastyFS *t, int i, tfs_call *call, const char *why)
{
    conn_close(&t->conns[i]);
    call->auth_failed = 1;
    set_problem(call, "%s: %s", t->replicas[i].text, why);
}

/*
 * The handshake of §6.2 on the new connection i, before its first frame: HELLO, the CHALLENGE
 * checked (the replica dialed, mac_a), PROOF, session keys. 0, or -1 with the connection closed: an
 * authentication failure sets call->auth_failed; a replica that closes or stays silent without a
 * refusal is just unreachable (the next replica is tried).
 */
static int conn_handshake(ToastyFS *t, int i, tfs_call *call, int64_t idle_ms, int64_t deadline)
{
    tfs_conn *c = &t->conns[i];
    uint8_t nonce[TFS_AUTH_NONCE_SIZE], hello[TFS_AUTH_HELLO_SIZE], challenge[TFS_AUTH_CHALLENGE_SIZE];
    uint8_t proof[TFS_AUTH_PROOF_SIZE];
    char why[160];
    long got;

    if (tfs_random_bytes(nonce, sizeof nonce) != 0) {
        conn_auth_failed(t, i, call, "cannot read /dev/urandom for a handshake nonce");
        return -1;
    }
    tfs_auth_hello(hello, t->cluster, nonce);
    if (tfs_send_all(&c->stream, hello, sizeof hello, idle_ms, deadline) != 0) {
        set_problem(call, "sending the handshake to %s failed", t->replicas[i].text);
        conn_close(c);
        return -1;
    }
    got = tfs_recv_exact(&c->stream, challenge, 4, deadline);
    if (got == 4 && tfs_get_u32(challenge) == TFS_AUTH_REFUSAL_MAGIC) {
        got = tfs_recv_exact(&c->stream, challenge + 4, TFS_AUTH_REFUSAL_SIZE - 4, deadline);
        conn_auth_failed(t, i, call, tfs_auth_refusal_message(got == 4 ? challenge[5] : 0));
        return -1;
    }
    if (got == 4) {
        got = tfs_recv_exact(&c->stream, challenge + 4, sizeof challenge - 4, deadline);
        if (got >= 0) got += 4;
    }
    if (t->tls == NULL && got >= 5 && tfs_is_tls_alert(challenge, (size_t)got)) {
        conn_auth_failed(t, i, call, TLS_REQUIRED);
        return -1;
    }
    if (got != (long)sizeof challenge) {
        set_problem(call, "%s %s during the handshake", t->replicas[i].text,
                    got < 0 ? "did not answer" : "closed the connection");
        conn_close(c);
        return -1;
    }
    if (tfs_auth_answer(t->client_key, hello, challenge, i, t->n, proof, c->send_key, c->receive_key, why,
                        sizeof why) != 0) {
        conn_auth_failed(t, i, call, why);
        return -1;
    }
    c->send_seq = 0;
    c->receive_seq = 0;
    if (tfs_send_all(&c->stream, proof, sizeof proof, idle_ms, deadline) != 0) {
        set_problem(call, "sending the handshake to %s failed", t->replicas[i].text);
        conn_close(c);
        return -1;
    }
    return 0;
}

/*
 * Opens the connection to replica i: TCP, then TLS (§6.8) if the handle has it, then the secret's
 * handshake (§6.2) if it has a secret. On failure the connection stays closed and call->problem
 * says why; a refused certificate or a failed TLS handshake sets call->auth_failed, as a refusal
 * does, while a replica that is down or silent is just unreachable (the next one is tried).
 * Returns 1 if it opened (ready for frames), 0 if not: refused, no answer before deadline, or
 * closed or failed before the handshakes were over (as the TypeScript transport counts "opened").
 */
static int conn_open(ToastyFS *t, int i, tfs_call *call, int64_t idle_ms, int64_t deadline)
{
    tfs_conn *c = &t->conns[i];
    char why[sizeof call->problem];
    c->stream.fd = tfs_connect(&t->replicas[i], deadline);
    if (c->stream.fd < 0) {
        set_problem(call, "could not connect to %s", t->replicas[i].text);
        return 0;
    }
    if (t->tls != NULL) {
        int r = tfs_tls_handshake(t->tls, &c->stream, &t->replicas[i], deadline, why, sizeof why);
        if (r == TFS_TLS_REFUSED) conn_auth_failed(t, i, call, why);
        else if (r != TFS_TLS_OK) set_problem(call, "%s", why);
        if (r != TFS_TLS_OK) return 0;
    }
    if (t->auth && conn_handshake(t, i, call, idle_ms, deadline) != 0) return 0;
    return 1;
}

/* Closes a connection that delivered something invalid and counts it against the call. */
static void conn_reject(ToastyFS *t, int i, tfs_call *call, const char *what)
{
    conn_close(&t->conns[i]);
    call->protocol_errors++;
    set_problem(call, "%s sent %s; connection closed", t->replicas[i].text, what);
}

enum { READ_FRAME = 1, READ_MORE = 0, READ_CLOSED = -1, READ_INVALID = -2 };

/* Reads what is available on connection i. READ_FRAME: a whole validated frame is in *out (the
 * caller owns its body). READ_MORE: nothing more to read now. READ_CLOSED / READ_INVALID: the
 * connection was closed (by the peer, an error, or because a frame failed validation). */
static int conn_read(ToastyFS *t, int i, tfs_call *call, tfs_frame *out)
{
    tfs_conn *c = &t->conns[i];
    for (;;) {
        uint8_t *into;
        size_t wanted;
        long got;

        if (c->header_have == TFS_HEADER_SIZE && c->body_have == c->body_len &&
            (!t->auth || c->tag_have == TFS_AUTH_TAG_SIZE)) {
            /* A whole frame: the header was validated, the body is complete, and (with a secret) its
             * tag is checked before anything else of the body (§6.3). */
            if (t->auth) {
                uint8_t expected[TFS_AUTH_TAG_SIZE];
                tfs_auth_tag(c->receive_key, c->receive_seq++, c->header, TFS_HEADER_SIZE, c->body, c->body_len,
                             expected);
                if (!tfs_equal_ct(expected, c->tag, TFS_AUTH_TAG_SIZE)) {
                    conn_reject(t, i, call, "a frame whose tag does not verify");
                    return READ_INVALID;
                }
            }
            if (tfs_check_body(c->header, c->body, c->body_len) != TFS_FRAME_OK) {
                conn_reject(t, i, call, tfs_frame_error_name(TFS_FRAME_CHECKSUM_BODY));
                return READ_INVALID;
            }
            memcpy(out->header, c->header, TFS_HEADER_SIZE);
            out->body = c->body;
            out->body_len = c->body_len;
            out->conn = i;
            c->body = NULL;
            conn_reset_frame(c);
            return READ_FRAME;
        }
        if (c->header_have < TFS_HEADER_SIZE) {
            into = c->header + c->header_have;
            wanted = TFS_HEADER_SIZE - c->header_have;
        } else if (c->body_have < c->body_len) {
            into = c->body + c->body_have;
            wanted = c->body_len - c->body_have;
        } else {
            into = c->tag + c->tag_have;
            wanted = TFS_AUTH_TAG_SIZE - c->tag_have;
        }
        got = tfs_stream_read(&c->stream, into, wanted);
        if (got == TFS_IO_AGAIN) return READ_MORE;
        if (got <= 0) {
            /* Without a secret, a replica that requires one answers our first frame with a refusal
             * (§6.4) where a frame's checksum would be, and closes; so does a replica with TLS that
             * refused our certificate. One that requires TLS of a plain client answers with a TLS
             * alert (§6.8). */
            if (!t->auth && c->header_have >= TFS_AUTH_REFUSAL_SIZE &&
                tfs_get_u32(c->header) == TFS_AUTH_REFUSAL_MAGIC) {
                conn_auth_failed(t, i, call, tfs_auth_refusal_message(c->header[5]));
                return READ_CLOSED;
            }
            if (!t->auth && t->tls == NULL && tfs_is_tls_alert(c->header, c->header_have)) {
                conn_auth_failed(t, i, call, TLS_REQUIRED);
                return READ_CLOSED;
            }
            set_problem(call, "%s closed the connection%s", t->replicas[i].text,
                        c->header_have > 0 ? " in the middle of a frame" : "");
            conn_close(c);
            return READ_CLOSED;
        }
        c->progress_ms = tfs_now_ms();
        if (c->header_have < TFS_HEADER_SIZE) {
            c->header_have += (uint32_t)got;
            if (c->header_have == TFS_HEADER_SIZE) {
                uint32_t size = 0;
                int reason = tfs_check_header(c->header, t->cluster, &size);
                if (reason != TFS_FRAME_OK) {
                    conn_reject(t, i, call, tfs_frame_error_name(reason));
                    return READ_INVALID;
                }
                /* Only now, with the size bounded, is the body allocated (one spare byte lets a get
                 * hand the buffer over NUL-terminated). */
                c->body_len = size - TFS_HEADER_SIZE;
                c->body_have = 0;
                c->body = (uint8_t *)malloc((size_t)c->body_len + 1);
                if (c->body == NULL) {
                    call->no_memory = 1;
                    conn_close(c);
                    return READ_CLOSED;
                }
            }
        } else if (c->body_have < c->body_len) {
            c->body_have += (uint32_t)got;
        } else {
            c->tag_have += (uint32_t)got;
        }
    }
}

/* Is this frame the reply to the pending request? Replies that are not (late, duplicate, for
 * another request) are dropped; a reply that is but breaks the protocol closes its connection. */
static int reply_matches(ToastyFS *t, tfs_call *call, const tfs_frame *f)
{
    const uint8_t *h = f->header;
    if (h[TFS_OFF_COMMAND] != TFS_COMMAND_REPLY) return 0;
    if (tfs_get_u64(h + TFS_OFF_CLIENT) != t->id) return 0;
    if (tfs_get_u32(h + TFS_OFF_REQUEST) != call->request) return 0;
    if (h[TFS_OFF_OPERATION] != call->operation) return 0;
    return 1;
}

enum { PUMP_REPLY = 1, PUMP_TIMEOUT = 0, PUMP_TARGET_FAILED = -1 };

/*
 * Reads every open connection until the reply to the pending request arrives (PUMP_REPLY, in
 * *reply), the connection to `target` fails (PUMP_TARGET_FAILED; target -1: none), or
 * *attempt_deadline passes. Bytes arriving on the target connection push *attempt_deadline to
 * idle_ms after them (a large reply keeps the attempt alive while it flows), never past the
 * operation deadline. With idle_ms 0 it only drains what is already there.
 */
static int pump(ToastyFS *t, tfs_call *call, int target, int64_t *attempt_deadline, int64_t idle_ms,
                tfs_frame *reply)
{
    for (;;) {
        struct pollfd fds[TOASTYFS_REPLICAS_MAX];
        int index[TOASTYFS_REPLICAS_MAX];
        int count = 0, i, ready, buffered = 0;
        int64_t now = tfs_now_ms(), wait;

        for (i = 0; i < t->n; i++) {
            const tfs_stream *s = &t->conns[i].stream;
            if (s->fd < 0) continue;
            fds[count].fd = s->fd;
            /* TLS may need to write before it can read on (s->wait after a read that could not). */
            fds[count].events = (short)(POLLIN | (s->wait & POLLOUT));
            fds[count].revents = 0;
            index[count++] = i;
            if (tfs_stream_buffered(s) > 0) buffered = 1;
        }
        if (target >= 0 && t->conns[target].stream.fd < 0) return PUMP_TARGET_FAILED;
        /* Bytes TLS already decrypted are ready though poll() cannot see them: do not wait. */
        wait = idle_ms > 0 && !buffered ? *attempt_deadline - now : 0;
        if (wait < 0) wait = 0;
        if (count == 0) {
            if (wait == 0) return PUMP_TIMEOUT;
            tfs_sleep_ms(wait);
            return PUMP_TIMEOUT;
        }
        ready = poll(fds, (nfds_t)count, (int)min64(wait, 60000));
        if (ready < 0 && errno == EINTR) continue;
        if (ready < 0) return PUMP_TIMEOUT;

        for (i = 0; i < count; i++) {
            int c = index[i], frames;
            if (fds[i].revents == 0 && tfs_stream_buffered(&t->conns[c].stream) == 0) continue;
            /* A bounded number of frames per round, so a peer that floods us with replies to other
             * requests cannot keep us here past the deadline. */
            for (frames = 0; frames < 64; frames++) {
                tfs_frame frame;
                int r = conn_read(t, c, call, &frame);
                if (r == READ_MORE) break;
                if (r != READ_FRAME) {
                    if (c == target) return PUMP_TARGET_FAILED;
                    break;
                }
                if (!reply_matches(t, call, &frame)) {
                    free(frame.body);
                    continue;
                }
                /* A wrong_cluster reply comes from a replica of another cluster, which has no index
                 * in ours: it carries 0 and 0 (docs/PROTOCOL.md §3.7). */
                if (frame.header[TFS_OFF_RESULT] != TFS_RESULT_WRONG_CLUSTER &&
                    (frame.header[TFS_OFF_REPLICA] >= t->n || frame.header[TFS_OFF_REPLICA_COUNT] != t->n)) {
                    free(frame.body);
                    conn_reject(t, c, call, "a reply with a replica index or count that does not fit this cluster");
                    if (c == target) return PUMP_TARGET_FAILED;
                    break;
                }
                *reply = frame;
                return PUMP_REPLY;
            }
        }
        if (call->no_memory) return PUMP_TARGET_FAILED;
        if (idle_ms <= 0) return PUMP_TIMEOUT;
        if (target >= 0 && t->conns[target].stream.fd >= 0) {
            int64_t extended = min64(t->conns[target].progress_ms + idle_ms, call->deadline);
            if (extended > *attempt_deadline) *attempt_deadline = extended;
        }
        if (tfs_now_ms() >= *attempt_deadline) return PUMP_TIMEOUT;
    }
}

/* --- Interpreting final replies */

static int operation_is_write(uint8_t operation)
{
    return operation == TFS_OP_REGISTER || operation == TFS_OP_PUT || operation == TFS_OP_DELETE ||
           operation == TFS_OP_CREATE_UPLOAD || operation == TFS_OP_COMPLETE_UPLOAD ||
           operation == TFS_OP_ABORT_UPLOAD || operation == TFS_OP_PUT_OBJECT;
}

/* Writes that the cluster records in its client table, and so need a session (write_block does not:
 * it is idempotent, docs/PROTOCOL.md §3.15.1). */
static int operation_needs_session(uint8_t operation)
{
    return operation_is_write(operation) && operation != TFS_OP_REGISTER;
}

/* A result that only operation `only` can get, whose body is a u64 below 2^53 (a version, a size, a
 * limit): *value, copied to *field unless it is NULL. 0, or -1 if the reply does not fit. */
static int u64_result(const tfs_frame *f, uint8_t op, uint8_t only, uint64_t *field, uint64_t *value)
{
    if (op != only || tfs_read_version(f->body, f->body_len, value) != 0) return -1;
    if (field != NULL) *field = *value;
    return 0;
}

/*
 * Fills res from a final reply. 0: done (res->status says how it went). -1: the reply is malformed
 * for this request (wrong body size, a result this operation cannot have, a value that does not
 * match its checksum): the caller closes the connection and retries elsewhere.
 */
static int interpret(ToastyFS *t, tfs_call *call, tfs_frame *f, ToastyFS_Result *res)
{
    const uint8_t *h = f->header;
    uint8_t result = h[TFS_OFF_RESULT], op = call->operation;
    uint64_t version = 0;
    tfs_object_info info;

    switch (result) {
    case TFS_RESULT_OK:
        switch (op) {
        case TFS_OP_REGISTER: {
            uint64_t session = tfs_get_u64(h + TFS_OFF_SESSION);
            if (f->body_len != 0 || session == 0) return -1;
            t->session = session;
            res->status = TOASTYFS_OK;
            return 0;
        }
        case TFS_OP_PUT:
        case TFS_OP_DELETE:
        case TFS_OP_PUT_OBJECT:
            if (tfs_read_version(f->body, f->body_len, &version) != 0 || version == 0) return -1;
            res->version = version;
            res->status = TOASTYFS_OK;
            return 0;
        case TFS_OP_CREATE_UPLOAD: {
            uint64_t id, block, object;
            if (tfs_read_create_upload_reply(f->body, f->body_len, &id, &block, &object) != 0) return -1;
            if (call->out != NULL) {
                call->out->upload_id = id;
                call->out->block_size_max = block;
                call->out->object_size_max = object;
            }
            res->status = TOASTYFS_OK;
            return 0;
        }
        case TFS_OP_WRITE_BLOCK:
        case TFS_OP_ABORT_UPLOAD:
            if (f->body_len != 0) return -1;
            res->status = TOASTYFS_OK;
            return 0;
        case TFS_OP_COMPLETE_UPLOAD: {
            uint64_t checksum;
            if (tfs_read_complete_upload_reply(f->body, f->body_len, &version, &checksum) != 0) return -1;
            if (call->out != NULL) call->out->checksum = checksum;
            res->version = version;
            res->checksum = checksum;
            res->status = TOASTYFS_OK;
            return 0;
        }
        case TFS_OP_READ: {
            tfs_read_reply read;
            if (call->out == NULL || tfs_read_read_reply(f->body, f->body_len, &read) != 0) return -1;
            call->out->read = read;
            call->out->body = f->body;
            f->body = NULL;
            info = read.info;
            break;
        }
        case TFS_OP_STAT:
            if (f->body_len != TFS_OBJECT_INFO_SIZE || tfs_read_object_info(f->body, &info) != 0) return -1;
            break;
        case TFS_OP_GET:
            if (f->body_len < TFS_OBJECT_INFO_SIZE || tfs_read_object_info(f->body, &info) != 0) return -1;
            if (info.size != f->body_len - TFS_OBJECT_INFO_SIZE) return -1;
            /* End to end: the value must be the one the replicas checksummed when it was written. */
            if (tfs_xxh64(f->body + TFS_OBJECT_INFO_SIZE, (size_t)info.size, 0) != info.checksum) return -1;
            /* Hand the frame's buffer to the result: the value moves to its start, NUL-terminated
             * (the buffer has one spare byte). */
            memmove(f->body, f->body + TFS_OBJECT_INFO_SIZE, (size_t)info.size);
            f->body[info.size] = '\0';
            res->data = (char *)f->body;
            res->data_len = (int)info.size;
            f->body = NULL;
            break;
        case TFS_OP_LIST: {
            int r = tfs_read_list(f->body, f->body_len, res);
            if (r == -2) {
                fail(res, TOASTYFS_NO_MEMORY, "out of memory for the list result");
                return 0;
            }
            if (r != 0) return -1;
            res->status = TOASTYFS_OK;
            return 0;
        }
        default:
            return -1;
        }
        res->version = info.version;
        res->timestamp = info.timestamp;
        res->size = info.size;
        res->checksum = info.checksum;
        res->status = TOASTYFS_OK;
        return 0;

    case TFS_RESULT_NOT_FOUND:
        if (op != TFS_OP_GET && op != TFS_OP_STAT && op != TFS_OP_DELETE && op != TFS_OP_READ) return -1;
        fail(res, TOASTYFS_NOT_FOUND, "not found");
        return 0;

    case TFS_RESULT_CONDITION_FAILED:
        if (op != TFS_OP_PUT && op != TFS_OP_DELETE && op != TFS_OP_CREATE_UPLOAD && op != TFS_OP_COMPLETE_UPLOAD &&
            op != TFS_OP_PUT_OBJECT)
            return -1;
        if (tfs_read_version(f->body, f->body_len, &version) != 0) return -1;
        res->version = version;
        res->status = TOASTYFS_CONDITION_FAILED;
        if (version == 0)
            set_message(res, "condition failed: the key is absent");
        else
            set_message(res, "condition failed: the current version is %llu", (unsigned long long)version);
        return 0;

    case TFS_RESULT_KEY_INVALID:
        fail(res, TOASTYFS_KEY_INVALID, "the cluster rejected the key: keys are 1 to 1088 bytes");
        return 0;

    case TFS_RESULT_VALUE_TOO_LARGE:
        if (f->body_len == 8 && call->out != NULL) call->out->limit = tfs_get_u64(f->body);
        if (f->body_len == 8)
            set_message(res, "the cluster rejected the value: its limit is %llu bytes",
                        (unsigned long long)tfs_get_u64(f->body));
        else
            set_message(res, "the cluster rejected the value as too large (over its configured limit)");
        res->status = TOASTYFS_VALUE_TOO_LARGE;
        return 0;

    case TFS_RESULT_BAD_REQUEST:
        fail(res, TOASTYFS_BAD_REQUEST, "the cluster rejected the request as malformed (a client bug)");
        return 0;

    case TFS_RESULT_EVICTED:
        /* Never sent for reads, nor for a register or a write_block. */
        if (!operation_needs_session(op)) return -1;
        t->session = 0;
        res->outcome_unknown = 1;
        fail(res, TOASTYFS_EVICTED,
             "the cluster evicted this client's session (too many clients): the write may or may not have "
             "happened; check and retry (the next call registers a new session)");
        return 0;

    case TFS_RESULT_NO_SPACE:
        fail(res, TOASTYFS_NO_SPACE, "the cluster's disk is full: writes are refused, reads work");
        return 0;

    case TFS_RESULT_WRONG_CLUSTER:
        /* Its cluster id (a checksum of the sorted address list) is not ours: the addresses this
         * handle was given differ from the ones the replicas were started with. */
        res->status = TOASTYFS_WRONG_CLUSTER;
        set_message(res,
                    "replica %s belongs to another cluster (its address list differs from yours: pass the same "
                    "addresses as the replicas, in any order)",
                    t->replicas[f->conn].text);
        return 0;

    case TFS_RESULT_OBJECT_CHANGED:
        if (u64_result(f, op, TFS_OP_READ, &res->version, &version) != 0) return -1;
        if (version == 0)
            tfs_fail(res, TOASTYFS_OBJECT_CHANGED, "the object was deleted while it was read");
        else
            tfs_fail(res, TOASTYFS_OBJECT_CHANGED, "the object was replaced by version %llu while it was read",
                     (unsigned long long)version);
        return 0;

    case TFS_RESULT_UPLOAD_NOT_FOUND:
        if ((op != TFS_OP_WRITE_BLOCK && op != TFS_OP_COMPLETE_UPLOAD && op != TFS_OP_ABORT_UPLOAD) || f->body_len != 0)
            return -1;
        fail(res, TOASTYFS_UPLOAD_NOT_FOUND, "the cluster no longer knows this upload (expired or aborted)");
        return 0;

    case TFS_RESULT_RANGE_INVALID:
        if (u64_result(f, op, TFS_OP_READ, &res->size, &version) != 0) return -1;
        tfs_fail(res, TOASTYFS_RANGE_INVALID, "the offset is past the end of the object (%llu bytes)",
                 (unsigned long long)version);
        return 0;

    case TFS_RESULT_UPLOAD_INCOMPLETE:
        /* Every block was acknowledged before the complete was sent: a cluster that then misses one
         * broke the protocol. */
        if (op != TFS_OP_COMPLETE_UPLOAD || f->body_len != 16) return -1;
        tfs_fail(res, TOASTYFS_PROTOCOL,
                 "the cluster says part %u block %u of the upload is missing, though it acknowledged it",
                 (unsigned)tfs_get_u32(f->body), (unsigned)tfs_get_u32(f->body + 4));
        return 0;

    case TFS_RESULT_SIZE_MISMATCH:
        if (u64_result(f, op, TFS_OP_COMPLETE_UPLOAD, &res->size, &version) != 0) return -1;
        tfs_fail(res, TOASTYFS_SIZE_MISMATCH, "the upload holds %llu bytes, not the declared size",
                 (unsigned long long)version);
        return 0;

    case TFS_RESULT_TOO_MANY_UPLOADS:
        if (u64_result(f, op, TFS_OP_CREATE_UPLOAD, call->out != NULL ? &call->out->limit : NULL, &version) != 0)
            return -1;
        tfs_fail(res, TOASTYFS_TOO_MANY_UPLOADS, "the cluster has its limit of %llu open uploads",
                 (unsigned long long)version);
        return 0;

    default:
        return -1; /* unknown result code, or not_primary/busy/unavailable handled by the caller */
    }
}

/* --- The retry loop */

/* The extra patience a large request gets on each attempt, on top of route.c's attempt timeout. */
static int64_t large_request_ms(const tfs_call *call)
{
    return (int64_t)((call->msg_len + call->tail_len) >> 20) * ATTEMPT_MS_PER_MIB;
}

static void sleep_until(int64_t until_ms) { tfs_sleep_ms(until_ms - tfs_now_ms()); }

static int give_up(ToastyFS *t, tfs_call *call, ToastyFS_Result *res, int status)
{
    char list[TOASTYFS_REPLICAS_MAX * 24];
    size_t used = 0;
    int i;
    list[0] = '\0';
    for (i = 0; i < t->n && used + 2 < sizeof list; i++) {
        int w = snprintf(list + used, sizeof list - used, "%s%s", i > 0 ? "," : "", t->replicas[i].text);
        if (w < 0) break;
        used += (size_t)w;
    }
    if (used >= sizeof list) used = sizeof list - 1;
    res->status = status;
    res->outcome_unknown = call->sent && operation_is_write(call->operation) && call->operation != TFS_OP_REGISTER;
    if (status == TOASTYFS_NO_MEMORY)
        set_message(res, "out of memory while receiving a reply");
    else if (status == TOASTYFS_AUTH_FAILED)
        set_message(res, "authentication failed: %s", call->problem);
    else if (status == TOASTYFS_PROTOCOL)
        set_message(res, "replicas sent %d malformed messages, giving up; the last: %s", call->protocol_errors,
                    call->problem);
    else
        set_message(res,
                    "no replica completed the request within %d ms after %d attempts: is a majority (%d of %d) "
                    "of %s running and reachable, and were the replicas started with exactly these addresses? "
                    "(last problem: %s)",
                    t->operation_timeout_ms, call->attempts.sends, t->n / 2 + 1, t->n, list,
                    call->problem[0] ? call->problem : "none");
    return status;
}

/* Sends call->msg until a final answer (0, res filled) or a failure (negative, res filled). */
static int run_call(ToastyFS *t, tfs_call *call, ToastyFS_Result *res)
{
    tfs_route *route = &t->route;
    tfs_attempts *a = &call->attempts;
    tfs_route_begin(route, a, tfs_now_ms());
    for (;;) {
        int64_t now = tfs_now_ms(), attempt_start = now, attempt_deadline = now, idle;
        int target = route->target, r;
        tfs_frame reply;
        tfs_conn *conn = &t->conns[target];

        if (call->no_memory) return give_up(t, call, res, TOASTYFS_NO_MEMORY);
        /* A refusal or a failed handshake will not heal by retrying: the secret is wrong or
         * missing on one side, which the caller must fix (§6.4, §6.6). */
        if (call->auth_failed) return give_up(t, call, res, TOASTYFS_AUTH_FAILED);
        if (call->protocol_errors >= PROTOCOL_ERRORS_PER_REPLICA_MAX * t->n)
            return give_up(t, call, res, TOASTYFS_PROTOCOL);
        if (now >= call->deadline) return give_up(t, call, res, TOASTYFS_NO_QUORUM);

        /* Drain what arrived since the last attempt: late replies, and closes of idle
         * connections (so a connection the replica dropped is redialed rather than written to). */
        r = pump(t, call, -1, &attempt_deadline, 0, &reply);
        if (r != PUMP_REPLY) {
            idle = tfs_route_send(route, a) + large_request_ms(call);
            attempt_deadline = min64(call->deadline, now + idle);
            if (conn->stream.fd < 0) {
                if (conn_open(t, target, call, idle, attempt_deadline))
                    tfs_route_reachable(route, target);
                else if (tfs_now_ms() < call->deadline) /* not cut short by the operation's end */
                    (void)tfs_route_unreachable(route, target, tfs_now_ms()); /* it is the target */
            }
            if (conn->stream.fd >= 0) {
                conn->progress_ms = tfs_now_ms();
                tfs_seal_header(call->msg, route->view_hint);
                uint8_t tag[TFS_AUTH_TAG_SIZE];
                if (t->auth)
                    tfs_auth_tag(conn->send_key, conn->send_seq++, call->msg, call->msg_len, call->tail, call->tail_len,
                                 tag);
                if (tfs_send_all(&conn->stream, call->msg, call->msg_len, idle, call->deadline) != 0 ||
                    (call->tail_len > 0 &&
                     tfs_send_all(&conn->stream, call->tail, call->tail_len, idle, call->deadline) != 0) ||
                    (t->auth && tfs_send_all(&conn->stream, tag, sizeof tag, idle, call->deadline) != 0)) {
                    set_problem(call, "sending to %s failed", t->replicas[target].text);
                    conn_close(conn); /* a partly sent frame leaves the stream out of sync */
                } else {
                    call->sent = 1;
                    attempt_deadline = min64(call->deadline, tfs_now_ms() + idle);
                    r = pump(t, call, target, &attempt_deadline, idle, &reply);
                    if (r == PUMP_TIMEOUT && conn->stream.fd >= 0)
                        set_problem(call, "no reply from %s within %lld ms", t->replicas[target].text,
                                    (long long)idle);
                }
            }
        }

        if (r != PUMP_REPLY) {
            /* Timed out, refused, closed or malformed: the next replica not known to be down. This
             * client has no reconnect backoff (the TypeScript transport's paces §3.9's rotation when
             * every replica is down), so once every replica has had an attempt, fast failures are
             * paced by B. */
            a->redirected = 0;
            tfs_route_resend(route, a, tfs_now_ms());
            if (a->sends - a->polls >= t->n) sleep_until(min64(call->deadline, attempt_start + BACKOFF_MS));
            continue;
        }

        {
            const uint8_t *h = reply.header;
            uint32_t view = tfs_get_u32(h + TFS_OFF_VIEW);
            int replica = h[TFS_OFF_REPLICA];
            uint8_t result = h[TFS_OFF_RESULT];

            if (result == TFS_RESULT_NOT_PRIMARY || result == TFS_RESULT_BUSY || result == TFS_RESULT_UNAVAILABLE) {
                int64_t pause = tfs_route_reply(route, a, reply.conn, replica, view, result, tfs_now_ms());
                free(reply.body);
                if (result == TFS_RESULT_NOT_PRIMARY)
                    set_problem(call, "%s is not the primary", t->replicas[replica].text);
                else
                    set_problem(call, "%s is %s", t->replicas[replica].text,
                                result == TFS_RESULT_BUSY ? "busy" : "unable to read the value right now");
                if (pause > 0) sleep_until(min64(call->deadline, tfs_now_ms() + pause));
                tfs_route_resend(route, a, tfs_now_ms());
                continue;
            }
            if (interpret(t, call, &reply, res) != 0) {
                char what[64];
                (void)snprintf(what, sizeof what, "a malformed reply (result %u)", (unsigned)result);
                free(reply.body);
                conn_reject(t, reply.conn, call, what);
                route->target = reply.conn;
                a->redirected = 0;
                tfs_route_resend(route, a, tfs_now_ms());
                continue;
            }
            free(reply.body); /* NULL if interpret took it */
            /* A wrong_cluster reply names no replica of ours (§3.7). */
            (void)tfs_route_reply(route, a, reply.conn, result == TFS_RESULT_WRONG_CLUSTER ? -1 : replica, view, result,
                                  tfs_now_ms());
            return res->status;
        }
    }
}

/* Builds a request of `operation` with a body of body_len bytes (filled by the caller into
 * call->msg + 128 afterwards) and the next request number. */
static int call_init(ToastyFS *t, tfs_call *call, uint8_t operation, size_t body_len, int64_t deadline)
{
    memset(call, 0, sizeof *call);
    call->operation = operation;
    call->msg_len = TFS_HEADER_SIZE + body_len;
    call->msg = (uint8_t *)malloc(call->msg_len);
    if (call->msg == NULL) return -1;
    t->request_number++;
    call->request = t->request_number;
    call->deadline = deadline;
    tfs_request_header(call->msg, t->cluster, t->id, operation == TFS_OP_REGISTER ? 0 : t->session, call->request,
                       operation);
    return 0;
}

static int ensure_session(ToastyFS *t, int64_t deadline, ToastyFS_Result *res)
{
    tfs_call call;
    int status;
    if (t->session != 0) return 0;
    if (call_init(t, &call, TFS_OP_REGISTER, 0, deadline) != 0)
        return fail(res, TOASTYFS_NO_MEMORY, "out of memory");
    tfs_seal_body(call.msg, 0);
    status = run_call(t, &call, res);
    free(call.msg);
    if (status == TOASTYFS_OK) {
        res->message[0] = '\0';
        return 0;
    }
    if (status != TOASTYFS_AUTH_FAILED) { /* that one says it all, and callers match its prefix */
        char detail[sizeof res->message];
        memcpy(detail, res->message, sizeof detail);
        set_message(res, "registering a session failed: %s", detail);
    }
    res->outcome_unknown = 0; /* the operation itself was never sent */
    return status;
}

/* Before the request number would wrap, take a new client id and register anew (§3.1). */
static void maybe_renew_id(ToastyFS *t)
{
    if (t->request_number < UINT32_MAX - 2) return;
    t->id = t->caller_id ^ tfs_random64();
    if (t->id == 0) t->id = 1;
    t->session = 0;
    t->request_number = 0;
}

typedef struct key_ctx {
    const char *key;
    size_t key_len;
    uint8_t condition;
    uint64_t if_version;
    const char *value;
    size_t value_len;
} key_ctx;

typedef struct list_ctx {
    const char *prefix, *after;
    size_t prefix_len, after_len;
    uint32_t limit;
} list_ctx;

static void build_key(void *ctx, uint8_t *body)
{
    key_ctx *k = (key_ctx *)ctx;
    tfs_key_request(body, k->key, k->key_len, k->condition, k->if_version, k->value, k->value_len);
}

static void build_list(void *ctx, uint8_t *body)
{
    list_ctx *l = (list_ctx *)ctx;
    tfs_list_request(body, l->prefix, l->prefix_len, l->after, l->after_len, l->limit);
}

/* Runs one operation: a write registers first if there is no session; then it sends a request
 * whose body is the body_len bytes `build` writes followed by tail (sent from where it is), and
 * retries it to a final answer or the deadline. */
static int execute_tail(ToastyFS *t, uint8_t operation, size_t body_len, void (*build)(void *ctx, uint8_t *body),
                        void *ctx, const uint8_t *tail, size_t tail_len, tfs_out *out, ToastyFS_Result *res)
{
    int64_t deadline = tfs_now_ms() + t->operation_timeout_ms;
    tfs_call call;
    int status;

    maybe_renew_id(t);
    /* Lazily, before the first write only: a register is a replicated, fsynced op, and the cluster
     * keeps a bounded number of sessions, so a session per reader would evict long-lived writers. */
    if (operation_needs_session(operation)) {
        status = ensure_session(t, deadline, res);
        if (status != 0) return status;
    }
    if (call_init(t, &call, operation, body_len, deadline) != 0) return fail(res, TOASTYFS_NO_MEMORY, "out of memory");
    build(ctx, call.msg + TFS_HEADER_SIZE);
    call.tail = tail;
    call.tail_len = tail_len;
    call.out = out;
    tfs_seal_body_tail(call.msg, body_len, tail, tail_len);
    status = run_call(t, &call, res);
    free(call.msg);
    if (status == TOASTYFS_OK) res->message[0] = '\0';
    return status;
}

static int execute(ToastyFS *t, uint8_t operation, size_t body_len, void (*build)(void *ctx, uint8_t *body), void *ctx,
                   ToastyFS_Result *res)
{
    return execute_tail(t, operation, body_len, build, ctx, NULL, 0, NULL, res);
}

typedef struct bytes_ctx {
    const uint8_t *body;
    size_t len;
} bytes_ctx;

static void build_bytes(void *ctx, uint8_t *body)
{
    bytes_ctx *b = (bytes_ctx *)ctx;
    if (b->len > 0) memcpy(body, b->body, b->len);
}

int tfs_execute(ToastyFS *t, uint8_t operation, const uint8_t *body, size_t body_len, const uint8_t *tail,
                size_t tail_len, tfs_out *out, ToastyFS_Result *res)
{
    bytes_ctx b;
    b.body = body;
    b.len = body_len;
    return execute_tail(t, operation, body_len, build_bytes, &b, tail, tail_len, out, res);
}

uint32_t tfs_block_size(const ToastyFS *t) { return t->block_size; }

void tfs_learn_block_size(ToastyFS *t, uint32_t block_size) { t->block_size = block_size; }

/* --- Public API */

int tfs_check_common(ToastyFS *tfs, ToastyFS_Result *res)
{
    if (res == NULL) return TOASTYFS_INVALID_ARGUMENT;
    memset(res, 0, sizeof *res);
    if (tfs == NULL) return fail(res, TOASTYFS_INVALID_ARGUMENT, "invalid argument: the ToastyFS handle is NULL");
    if (tfs->auth_error[0] != '\0') return tfs_fail(res, TOASTYFS_AUTH_FAILED, "authentication failed: %s", tfs->auth_error);
    if (tfs->tls_status != 0)
        return tfs_fail(res, tfs->tls_status, "%s%s",
                        tfs->tls_status == TOASTYFS_AUTH_FAILED ? "authentication failed: " : "", tfs->tls_error);
    return 0;
}

int tfs_check_key(const char *key, int key_len, ToastyFS_Result *res)
{
    if (key == NULL) return fail(res, TOASTYFS_INVALID_ARGUMENT, "invalid argument: the key is NULL");
    if (key_len < 0) return fail(res, TOASTYFS_INVALID_ARGUMENT, "invalid argument: negative key length");
    if (key_len < 1 || key_len > TOASTYFS_KEY_SIZE_MAX) {
        res->status = TOASTYFS_KEY_INVALID;
        set_message(res, "key of %d bytes: keys are 1 to %d bytes", key_len, TOASTYFS_KEY_SIZE_MAX);
        return res->status;
    }
    return 0;
}

static int put_common(ToastyFS *tfs, const char *key, int key_len, const char *data, int data_len, int condition,
                      uint64_t if_version, ToastyFS_Result *res)
{
    int status = tfs_check_common(tfs, res);
    if (status != 0) return status;
    if ((status = tfs_check_key(key, key_len, res)) != 0) return status;
    if (data_len < 0) return fail(res, TOASTYFS_INVALID_ARGUMENT, "invalid argument: negative value length");
    if (data == NULL && data_len > 0) return fail(res, TOASTYFS_INVALID_ARGUMENT, "invalid argument: the value is NULL");
    if (condition == TOASTYFS_IF_VERSION && if_version >= TFS_U53)
        return fail(res, TOASTYFS_INVALID_ARGUMENT, "invalid argument: if_version must be below 2^53");
    if (condition != TOASTYFS_IF_VERSION) if_version = 0;
    /* Above one block, an upload (docs/LARGE_OBJECTS.md §2: the inline boundary is the block size). */
    if ((uint32_t)data_len > tfs->block_size)
        return tfs_put_large(tfs, key, (size_t)key_len, data, (size_t)data_len, (uint8_t)condition, if_version, res);
    return tfs_put_inline(tfs, key, (size_t)key_len, data, (size_t)data_len, (uint8_t)condition, if_version, res);
}

int tfs_put_inline(ToastyFS *t, const char *key, size_t key_len, const char *data, size_t data_len, uint8_t condition,
                   uint64_t if_version, ToastyFS_Result *res)
{
    key_ctx k;
    k.key = key;
    k.key_len = key_len;
    k.condition = condition;
    k.if_version = if_version;
    k.value = data;
    k.value_len = data_len;
    return execute(t, TFS_OP_PUT, TFS_KEY_REQUEST_FIXED + k.key_len + k.value_len, build_key, &k, res);
}

static int key_op(ToastyFS *tfs, uint8_t operation, const char *key, int key_len, uint8_t condition,
                  uint64_t if_version, ToastyFS_Result *res)
{
    key_ctx k;
    int status = tfs_check_common(tfs, res);
    if (status != 0) return status;
    if ((status = tfs_check_key(key, key_len, res)) != 0) return status;
    if (condition == TOASTYFS_IF_VERSION && if_version >= TFS_U53)
        return fail(res, TOASTYFS_INVALID_ARGUMENT, "invalid argument: if_version must be below 2^53");
    k.key = key;
    k.key_len = (size_t)key_len;
    k.condition = condition;
    k.if_version = if_version;
    k.value = NULL;
    k.value_len = 0;
    return execute(tfs, operation, TFS_KEY_REQUEST_FIXED + k.key_len, build_key, &k, res);
}

static ToastyFS *init_common(uint64_t client_id, char **addrs, int num_addrs)
{
    tfs_address sorted[TOASTYFS_REPLICAS_MAX];
    uint64_t cluster, random;
    ToastyFS *t;
    int i;

    if (addrs == NULL || num_addrs < 1 || num_addrs > TOASTYFS_REPLICAS_MAX ||
        tfs_membership(addrs, num_addrs, sorted, &cluster) != 0) {
        errno = EINVAL;
        return NULL;
    }
    t = (ToastyFS *)calloc(1, sizeof *t);
    if (t == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    random = tfs_random64();
    t->caller_id = client_id;
    /* docs/DESIGN.md §4: callers often pass rand() after srand(time(NULL)); two processes started in the
     * same second would share an id, so 64 bits from the OS are mixed in. */
    t->id = client_id ^ random;
    if (t->id == 0) t->id = 1;
    t->cluster = cluster;
    t->n = num_addrs;
    for (i = 0; i < num_addrs; i++) {
        t->replicas[i] = sorted[i];
        t->conns[i].stream.fd = -1;
        t->conns[i].stream.wait = POLLIN;
    }
    tfs_route_init(&t->route, num_addrs, (int)((random >> 32) % (uint64_t)num_addrs), ATTEMPT_TIMEOUT_MS_DEFAULT,
                   BACKOFF_MS);
    t->operation_timeout_ms = OPERATION_TIMEOUT_MS_DEFAULT;
    t->block_size = TOASTYFS_BLOCK_SIZE_MAX;
    return t;
}

/* An environment variable's value; NULL if it is not set or empty. */
static const char *env(const char *name)
{
    const char *value = getenv(name);
    return value != NULL && value[0] != '\0' ? value : NULL;
}

/* TOASTYFS_TLS_CERT, TOASTYFS_TLS_KEY and TOASTYFS_TLS_CA, all three or none (lib/net/tls.ts). */
static void init_tls_from_env(ToastyFS *t)
{
    const char *cert = env("TOASTYFS_TLS_CERT"), *key = env("TOASTYFS_TLS_KEY"), *ca = env("TOASTYFS_TLS_CA");
    if (cert == NULL && key == NULL && ca == NULL) return;
    if (cert == NULL || key == NULL || ca == NULL) {
        t->tls_status = TOASTYFS_AUTH_FAILED;
        (void)snprintf(t->tls_error, sizeof t->tls_error,
                       "TLS needs TOASTYFS_TLS_CERT, TOASTYFS_TLS_KEY and TOASTYFS_TLS_CA together:%s%s%s not set",
                       cert == NULL ? " TOASTYFS_TLS_CERT" : "", key == NULL ? " TOASTYFS_TLS_KEY" : "",
                       ca == NULL ? " TOASTYFS_TLS_CA" : "");
        return;
    }
    (void)toastyfs_init_tls(t, cert, key, ca, NULL, 0);
}

ToastyFS *toastyfs_init(uint64_t client_id, char **addrs, int num_addrs)
{
    ToastyFS *t = init_common(client_id, addrs, num_addrs);
    const char *file = env("TOASTYFS_SECRET_FILE");
    if (t == NULL) return t;
    /* No way to report here without changing toastyfs_init: a file that cannot be used fails every
     * operation with TOASTYFS_AUTH_FAILED (or, for TLS asked of a library built without it,
     * TOASTYFS_TLS_UNAVAILABLE) and says why, rather than connecting without it. */
    init_tls_from_env(t);
    if (file == NULL) return t;
    if (tfs_auth_read_file(file, t->client_key, t->auth_error, sizeof t->auth_error) == 0) t->auth = 1;
    else if (t->auth_error[0] == '\0') (void)snprintf(t->auth_error, sizeof t->auth_error, "%s is unusable", file);
    return t;
}

int toastyfs_init_tls(ToastyFS *tfs, const char *cert_file, const char *key_file, const char *ca_file, char *error,
                      size_t error_len)
{
    tfs_tls_config *config = NULL;
    int i;
    if (error != NULL && error_len > 0) error[0] = '\0';
    if (tfs == NULL) {
        if (error != NULL && error_len > 0) (void)snprintf(error, error_len, "invalid argument: the handle is NULL");
        return TOASTYFS_INVALID_ARGUMENT;
    }
    /* Connections open now were made with the old settings. */
    for (i = 0; i < tfs->n; i++) conn_close(&tfs->conns[i]);
    tfs_tls_config_free(tfs->tls);
    tfs->tls = NULL;
    tfs->tls_status = 0;
    tfs->tls_error[0] = '\0';
    if (cert_file == NULL && key_file == NULL && ca_file == NULL) return TOASTYFS_OK;
    if (ca_file == NULL || (cert_file == NULL) != (key_file == NULL)) {
        tfs->tls_status = TOASTYFS_INVALID_ARGUMENT;
        (void)snprintf(tfs->tls_error, sizeof tfs->tls_error,
                       "invalid argument: toastyfs_init_tls needs a CA file, and a certificate with its key (or "
                       "neither)");
    } else if (!tfs_tls_built_in()) {
        tfs->tls_status = TOASTYFS_TLS_UNAVAILABLE;
        (void)tfs_tls_config_new(cert_file, key_file, ca_file, tfs->tls_error, sizeof tfs->tls_error);
    } else if ((config = tfs_tls_config_new(cert_file, key_file, ca_file, tfs->tls_error, sizeof tfs->tls_error)) ==
               NULL) {
        tfs->tls_status = TOASTYFS_AUTH_FAILED;
    }
    if (error != NULL && error_len > 0) (void)snprintf(error, error_len, "%s", tfs->tls_error);
    tfs->tls = config;
    return tfs->tls_status;
}

int toastyfs_tls_available(void) { return tfs_tls_built_in(); }

ToastyFS *toastyfs_init_secret(uint64_t client_id, char **addrs, int num_addrs, const char *secret_file, char *error,
                               size_t error_len)
{
    char why[240];
    ToastyFS *t;
    if (error != NULL && error_len > 0) error[0] = '\0';
    t = init_common(client_id, addrs, num_addrs);
    if (t == NULL) {
        if (error != NULL && error_len > 0)
            (void)snprintf(error, error_len, errno == ENOMEM ? "out of memory" : "invalid addresses: give 1 to 15 distinct host:port");
        return NULL;
    }
    if (secret_file == NULL) return t;
    why[0] = '\0';
    if (tfs_auth_read_file(secret_file, t->client_key, why, sizeof why) != 0) {
        if (error != NULL && error_len > 0) (void)snprintf(error, error_len, "%s", why);
        toastyfs_free(t);
        errno = EACCES;
        return NULL;
    }
    t->auth = 1;
    return t;
}

void toastyfs_free(ToastyFS *tfs)
{
    int i;
    if (tfs == NULL) return;
    for (i = 0; i < tfs->n; i++) conn_close(&tfs->conns[i]);
    tfs_tls_config_free(tfs->tls);
    memset(tfs->client_key, 0, sizeof tfs->client_key);
    free(tfs);
}

int toastyfs_set_timeouts(ToastyFS *tfs, int attempt_timeout_ms, int operation_timeout_ms)
{
    if (tfs == NULL || attempt_timeout_ms <= 0 || operation_timeout_ms <= 0) return TOASTYFS_INVALID_ARGUMENT;
    tfs->route.attempt_timeout_ms = attempt_timeout_ms;
    tfs->operation_timeout_ms = operation_timeout_ms;
    return TOASTYFS_OK;
}

uint64_t toastyfs_client_id(const ToastyFS *tfs) { return tfs == NULL ? 0 : tfs->id; }

int toastyfs_put(ToastyFS *tfs, const char *key, int key_len, const char *data, int data_len, ToastyFS_Result *res)
{
    return put_common(tfs, key, key_len, data, data_len, 0, 0, res);
}

int toastyfs_put_if(ToastyFS *tfs, const char *key, int key_len, const char *data, int data_len, int condition,
                    uint64_t if_version, ToastyFS_Result *res)
{
    int status = tfs_check_common(tfs, res);
    if (status != 0) return status;
    if (condition != TOASTYFS_IF_VERSION && condition != TOASTYFS_IF_ABSENT)
        return fail(res, TOASTYFS_INVALID_ARGUMENT,
                    "invalid argument: the condition must be TOASTYFS_IF_VERSION or TOASTYFS_IF_ABSENT");
    return put_common(tfs, key, key_len, data, data_len, condition, if_version, res);
}

int toastyfs_get(ToastyFS *tfs, const char *key, int key_len, ToastyFS_Result *res)
{
    int status = key_op(tfs, TFS_OP_GET, key, key_len, 0, 0, res);
    /* Too large for one get (docs/LARGE_OBJECTS.md §5.7): read it in pieces. */
    if (status == TOASTYFS_VALUE_TOO_LARGE) return tfs_get_large(tfs, key, (size_t)key_len, res);
    return status;
}

int toastyfs_stat(ToastyFS *tfs, const char *key, int key_len, ToastyFS_Result *res)
{
    return key_op(tfs, TFS_OP_STAT, key, key_len, 0, 0, res);
}

int toastyfs_delete(ToastyFS *tfs, const char *key, int key_len, ToastyFS_Result *res)
{
    return key_op(tfs, TFS_OP_DELETE, key, key_len, 0, 0, res);
}

int toastyfs_delete_if(ToastyFS *tfs, const char *key, int key_len, uint64_t if_version, ToastyFS_Result *res)
{
    return key_op(tfs, TFS_OP_DELETE, key, key_len, TOASTYFS_IF_VERSION, if_version, res);
}

int toastyfs_list(ToastyFS *tfs, const char *prefix, int prefix_len, const char *after, int after_len, int limit,
                  ToastyFS_Result *res)
{
    list_ctx l;
    int status = tfs_check_common(tfs, res);
    if (status != 0) return status;
    if (prefix_len < 0 || after_len < 0)
        return fail(res, TOASTYFS_INVALID_ARGUMENT, "invalid argument: negative prefix or after length");
    if ((prefix == NULL && prefix_len > 0) || (after == NULL && after_len > 0))
        return fail(res, TOASTYFS_INVALID_ARGUMENT, "invalid argument: the prefix or after is NULL");
    if (prefix_len > TOASTYFS_KEY_SIZE_MAX || after_len > TOASTYFS_KEY_SIZE_MAX)
        return fail(res, TOASTYFS_INVALID_ARGUMENT, "invalid argument: prefix and after are at most 1088 bytes");
    if (limit < 1 || limit > TOASTYFS_LIST_LIMIT_MAX)
        return fail(res, TOASTYFS_INVALID_ARGUMENT, "invalid argument: the limit must be 1 to 1000");
    l.prefix = prefix;
    l.prefix_len = (size_t)prefix_len;
    l.after = after;
    l.after_len = (size_t)after_len;
    l.limit = (uint32_t)limit;
    return execute(tfs, TFS_OP_LIST, TFS_LIST_REQUEST_FIXED + l.prefix_len + l.after_len, build_list, &l, res);
}

void toastyfs_result_free(ToastyFS_Result *res)
{
    if (res == NULL) return;
    free(res->data);
    res->data = NULL;
    res->data_len = 0;
    free(res->entries);
    res->entries = NULL;
    res->num_entries = 0;
}

const char *toastyfs_strerror(int code)
{
    switch (code) {
    case TOASTYFS_OK: return "ok";
    case TOASTYFS_NOT_FOUND: return "not found";
    case TOASTYFS_CONDITION_FAILED: return "condition failed";
    case TOASTYFS_KEY_INVALID: return "invalid key (keys are 1 to 1088 bytes)";
    case TOASTYFS_VALUE_TOO_LARGE: return "value too large";
    case TOASTYFS_BAD_REQUEST: return "bad request";
    case TOASTYFS_EVICTED: return "session evicted: the write may or may not have happened";
    case TOASTYFS_NO_SPACE: return "no space left on the cluster";
    case TOASTYFS_NO_QUORUM: return "no quorum: no majority of replicas answered in time";
    case TOASTYFS_PROTOCOL: return "protocol error: replicas sent malformed messages";
    case TOASTYFS_INVALID_ARGUMENT: return "invalid argument";
    case TOASTYFS_NO_MEMORY: return "out of memory";
    case TOASTYFS_WRONG_CLUSTER: return "wrong cluster: a replica belongs to another cluster (the address list differs from the replicas')";
    case TOASTYFS_OBJECT_CHANGED: return "object changed: it was replaced while it was read";
    case TOASTYFS_UPLOAD_NOT_FOUND: return "upload not found: the cluster no longer knows the upload (expired or aborted)";
    case TOASTYFS_RANGE_INVALID: return "range invalid: the offset is past the end of the object";
    case TOASTYFS_SIZE_MISMATCH: return "size mismatch: the bytes given differ from the declared size";
    case TOASTYFS_SOURCE_CHANGED: return "source changed: the file shrank or grew while it was read";
    case TOASTYFS_CALLBACK: return "callback failed: a source or sink stopped the operation, or the file descriptor failed";
    case TOASTYFS_TOO_MANY_UPLOADS: return "too many uploads: the cluster has its limit of open uploads";
    case TOASTYFS_AUTH_FAILED: return "authentication failed: the secret is missing, wrong, or not the cluster's (TOASTYFS_SECRET_FILE), or TLS failed (a certificate refused either way, a TLS handshake that failed, TLS files unusable)";
    case TOASTYFS_TLS_UNAVAILABLE: return "TLS unavailable: this libtoasty was built without OpenSSL";
    default: return "unknown error code";
    }
}
