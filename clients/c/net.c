/*
 * Sockets, streams, time and randomness: POSIX only. Every socket is non-blocking and every wait is
 * a poll() with a deadline, so no call can hang past the operation timeout. A stream is plain TCP
 * or TLS (tls.c) over it; reading and writing either look the same to the client core.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "tfs_internal.h"

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0 /* macOS: SO_NOSIGPIPE is set on the socket instead */
#endif

int64_t tfs_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void tfs_sleep_ms(int64_t ms)
{
    struct timespec ts;
    if (ms <= 0) return;
    ts.tv_sec = (time_t)(ms / 1000);
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int tfs_random_bytes(uint8_t *out, size_t len)
{
    size_t got = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    while (got < len) {
        ssize_t n = read(fd, out + got, len - got);
        if (n > 0) got += (size_t)n;
        else if (n < 0 && errno == EINTR) continue;
        else break;
    }
    close(fd);
    return got == len ? 0 : -1;
}

uint64_t tfs_random64(void)
{
    static uint64_t counter;
    uint8_t bytes[8];
    size_t got = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        while (got < sizeof bytes) {
            ssize_t n = read(fd, bytes + got, sizeof bytes - got);
            if (n > 0) got += (size_t)n;
            else if (n < 0 && errno == EINTR) continue;
            else break;
        }
        close(fd);
    }
    if (got == sizeof bytes) return tfs_get_u64(bytes);
    {
        /* No /dev/urandom (a chroot?): hash what differs between processes and calls. */
        struct timespec rt, mt;
        uint64_t mix[6];
        clock_gettime(CLOCK_REALTIME, &rt);
        clock_gettime(CLOCK_MONOTONIC, &mt);
        mix[0] = (uint64_t)rt.tv_sec;
        mix[1] = (uint64_t)rt.tv_nsec;
        mix[2] = (uint64_t)mt.tv_nsec;
        mix[3] = (uint64_t)getpid();
        mix[4] = (uint64_t)(uintptr_t)&mix;
        mix[5] = ++counter;
        return tfs_xxh64(mix, sizeof mix, 0);
    }
}

static int remaining_ms(int64_t deadline_ms)
{
    int64_t left = deadline_ms - tfs_now_ms();
    if (left <= 0) return 0;
    return left > 60000 ? 60000 : (int)left;
}

static int connect_one(const struct addrinfo *ai, int64_t deadline_ms)
{
    int fd, flags, one = 1, error = 0;
    socklen_t error_len = sizeof error;
    struct pollfd pfd;

    fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0) return -1;
    flags = fcntl(fd, F_GETFL, 0);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
        close(fd);
        return -1;
    }
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
#ifdef SO_NOSIGPIPE
    (void)setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) return fd;
    if (errno != EINPROGRESS && errno != EINTR) {
        close(fd);
        return -1;
    }
    for (;;) {
        int timeout = remaining_ms(deadline_ms), ready;
        if (timeout == 0) break;
        pfd.fd = fd;
        pfd.events = POLLOUT;
        pfd.revents = 0;
        ready = poll(&pfd, 1, timeout);
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) break;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &error_len) != 0 || error != 0) break;
        return fd;
    }
    close(fd);
    return -1;
}

int tfs_connect(const tfs_address *address, int64_t deadline_ms)
{
    struct addrinfo hints, *list = NULL, *ai;
    char port[8];
    int fd = -1;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    snprintf(port, sizeof port, "%u", (unsigned)address->port);
    if (getaddrinfo(address->host, port, &hints, &list) != 0 || list == NULL) return -1;
    for (ai = list; ai != NULL && fd < 0; ai = ai->ai_next) {
        if (remaining_ms(deadline_ms) == 0) break;
        fd = connect_one(ai, deadline_ms);
    }
    freeaddrinfo(list);
    return fd;
}

int tfs_wait_ready(int fd, short events, int64_t until)
{
    struct pollfd pfd;
    int timeout = remaining_ms(until), ready;
    if (timeout == 0) return -1;
    pfd.fd = fd;
    pfd.events = events;
    pfd.revents = 0;
    ready = poll(&pfd, 1, timeout);
    if (ready < 0) return errno == EINTR ? 0 : -1;
    return ready > 0 ? pfd.revents : 0;
}

long tfs_stream_read(tfs_stream *s, uint8_t *buf, size_t len)
{
    ssize_t n;
    if (s->tls != NULL) return tfs_tls_read(s, buf, len);
    do n = recv(s->fd, buf, len, 0);
    while (n < 0 && errno == EINTR);
    if (n >= 0) return (long)n;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        s->wait = POLLIN;
        return TFS_IO_AGAIN;
    }
    return TFS_IO_ERROR;
}

long tfs_stream_write(tfs_stream *s, const uint8_t *buf, size_t len)
{
    ssize_t n;
    if (s->tls != NULL) return tfs_tls_write(s, buf, len);
    do n = send(s->fd, buf, len, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n > 0) return (long)n;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        s->wait = POLLOUT;
        return TFS_IO_AGAIN;
    }
    return TFS_IO_ERROR; /* EPIPE, ECONNRESET, ... */
}

size_t tfs_stream_buffered(const tfs_stream *s) { return s->tls != NULL ? tfs_tls_buffered(s) : 0; }

int tfs_send_all(tfs_stream *s, const uint8_t *data, size_t len, int64_t idle_ms, int64_t deadline_ms)
{
    size_t sent = 0;
    int64_t idle_deadline = tfs_now_ms() + idle_ms;
    while (sent < len) {
        long n = tfs_stream_write(s, data + sent, len - sent);
        if (n > 0) {
            sent += (size_t)n;
            idle_deadline = tfs_now_ms() + idle_ms;
            continue;
        }
        if (n == TFS_IO_AGAIN) {
            int revents = tfs_wait_ready(s->fd, s->wait, idle_deadline < deadline_ms ? idle_deadline : deadline_ms);
            if (revents < 0 || (revents & (POLLERR | POLLNVAL))) return -1;
            continue;
        }
        return -1;
    }
    s->wait = POLLIN;
    return 0;
}

long tfs_recv_exact(tfs_stream *s, uint8_t *out, size_t len, int64_t deadline_ms)
{
    size_t got = 0;
    while (got < len) {
        long n = tfs_stream_read(s, out + got, len - got);
        if (n > 0) {
            got += (size_t)n;
            continue;
        }
        if (n == 0) return (long)got;
        if (n == TFS_IO_AGAIN) {
            if (tfs_wait_ready(s->fd, s->wait, deadline_ms) < 0) return -1;
            continue;
        }
        return got > 0 ? (long)got : -1; /* ECONNRESET after a refusal still shows what arrived */
    }
    return (long)got;
}

void tfs_stream_close(tfs_stream *s)
{
    tfs_tls_free(s);
    if (s->fd >= 0) close(s->fd);
    s->fd = -1;
    s->wait = POLLIN;
    s->eof = 0;
}
