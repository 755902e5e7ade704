/*
 * Which replica the next send goes to, and how long to wait first: docs/PROTOCOL.md §3.9, without
 * I/O. toastyfs.c's retry loop asks it after every attempt; test/unit_test.c drives it with a made-up
 * clock. Names follow the pseudo-code of §3.9 (target, view_hint, redirected, down, T, B).
 *
 * Why `down` matters here although this client has no reconnect backoff (a refused connect costs it
 * nothing): a connect that gets no answer (a host that went away, a firewall that drops) costs a
 * whole attempt timeout, and backups changing views keep naming the dead primary until the view
 * change is over. Following each of those hints paid that timeout again, growing to four times T.
 */
#include "tfs_internal.h"

/* A replica that could not be reached is skipped for this many attempt timeouts, unless heard from
 * sooner: long enough to outlast a view change that replaces it, short enough that one that came
 * back is tried again. */
#define DOWN_ATTEMPT_TIMEOUTS 2

void tfs_route_init(tfs_route *r, int n, int first_target, int64_t attempt_timeout_ms, int64_t backoff_ms)
{
    int i;
    r->n = n;
    r->target = first_target;
    r->view_hint = 0;
    r->heard = 0;
    r->attempt_timeout_ms = attempt_timeout_ms;
    r->backoff_ms = backoff_ms;
    for (i = 0; i < TOASTYFS_REPLICAS_MAX; i++) r->down[i].marked = 0;
}

int tfs_route_up(tfs_route *r, int i, int64_t now)
{
    tfs_down *d = &r->down[i];
    if (!d->marked) return 1;
    if (now - d->since < r->attempt_timeout_ms * DOWN_ATTEMPT_TIMEOUTS) return 0;
    d->marked = 0; /* expired: forget it, its view too */
    return 1;
}

int tfs_route_next_up(tfs_route *r, int i, int64_t now)
{
    int k;
    for (k = 1; k <= r->n; k++) {
        int j = (i + k) % r->n;
        if (tfs_route_up(r, j, now)) return j;
    }
    return (i + 1) % r->n; /* every replica down: plain rotation (the caller paces it) */
}

void tfs_route_begin(tfs_route *r, tfs_attempts *a, int64_t now)
{
    a->sends = 0;
    a->polls = 0;
    a->redirected = 0;
    if (!tfs_route_up(r, r->target, now)) r->target = tfs_route_next_up(r, r->target, now);
}

int64_t tfs_route_send(tfs_route *r, tfs_attempts *a)
{
    int factor = 1 + (a->sends - a->polls) / r->n;
    if (factor > 4) factor = 4;
    a->sends += 1;
    return r->attempt_timeout_ms * factor;
}

void tfs_route_resend(tfs_route *r, tfs_attempts *a, int64_t now)
{
    /* Retry once where a reply pointed; otherwise that replica had its chance: the next live one. */
    if (!(a->redirected && tfs_route_up(r, r->target, now))) r->target = tfs_route_next_up(r, r->target, now);
    a->redirected = 0;
}

int tfs_route_unreachable(tfs_route *r, int i, int64_t now)
{
    tfs_down *d = &r->down[i];
    int known = tfs_route_up(r, i, now) ? 0 : d->has_view;
    uint32_t view = d->view;
    if (!known && r->heard && r->view_hint % (uint32_t)r->n == (uint32_t)i) {
        known = 1;
        view = r->view_hint;
    }
    d->marked = 1;
    d->since = now;
    d->has_view = known;
    d->view = view;
    return i == r->target;
}

void tfs_route_reachable(tfs_route *r, int i) { r->down[i].marked = 0; }

int64_t tfs_route_reply(tfs_route *r, tfs_attempts *a, int from, int replica, uint32_t view, uint8_t result,
                        int64_t now)
{
    int n = r->n;
    if (view > r->view_hint) r->view_hint = view;
    r->heard = 1;
    if (from >= 0) r->down[from].marked = 0;
    switch (result) {
    case TFS_RESULT_NOT_PRIMARY: {
        int p = (int)(view % (uint32_t)n);
        tfs_down *d = &r->down[p];
        if (p == replica) {
            /* The replier is changing views: the next replica, after a pause (it is most likely in the
             * same view change, and hammering it only slows the election). */
            r->target = (replica + 1) % n;
            a->redirected = 1;
            return r->backoff_ms;
        }
        if (!tfs_route_up(r, p, now) && (!d->has_view || view <= d->view)) {
            /* It names a primary this client could not reach, in a view no later than the one it was
             * down in: the view change that replaces it is not over. Ask the live replicas again,
             * starting after the replier, rather than the dead one. */
            if (!d->has_view || view > d->view) d->view = view;
            d->has_view = 1;
            r->target = replica;
            a->polls += 1;
            return r->backoff_ms;
        }
        d->marked = 0; /* primary of a later view: elected since */
        r->target = p;
        a->redirected = 1;
        /* Once every replica has been tried, the hints go round in circles: pause. */
        return a->sends - a->polls > n ? r->backoff_ms : 0;
    }
    case TFS_RESULT_BUSY:
    case TFS_RESULT_UNAVAILABLE:
        a->redirected = 1; /* the same target */
        return r->backoff_ms * (a->sends < 10 ? a->sends : 10);
    default:
        /* A final answer: the replier executed it, so it is the primary. */
        if (replica >= 0 && replica < n) r->target = replica;
        return 0;
    }
}
