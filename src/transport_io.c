/*
 * transport_io.c - driving libcoap by its epoll fd.  libcoap's fd sits in
 * our epoll set; when readable we drain it with epoll_wait(0) and hand the
 * batch to coap_io_do_epoll(), which ends with one coap_io_prepare_epoll()
 * (the walk over sessions) per batch instead of one per datagram as
 * coap_io_process() would do; with many sessions even that is too often,
 * and compat_walk.c spaces the walks out (the owed one runs from a timer
 * here).  Timers (retransmissions, session expiry)
 * arrive through libcoap's own timerfd in that same epoll fd.
 *
 * Layer: transport (calls base and libcoap; asks the broker's backlog
 * through the callback the wiring registered)
 */
#include <sys/socket.h>
#include <time.h>

#include "coap2mqtt/log.h"
#include "transport_internal.h"

#define TRANSPORT_EPOLL_BATCH 16
#define TRANSPORT_READS_MAX   256   /* datagrams read per endpoint event */

#define BACKLOG_HIGH 1024     /* readings waiting for the broker: yield */
#define BACKLOG_LOW  256      /* ... and always resume below this */
#define YIELD_MAX_MS 20
#define BACKSTOP_MS  1000     /* libcoap's timers looked at, when idle */

static uint64_t
mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t
broker_backlog(const transport_t *t)
{
    return t->backlog ? t->backlog(t->backlog_arg) : 0;
}

static void
resume_reading(loop_t *loop, void *arg)
{
    transport_t *t = arg;
    uint64_t backlog = broker_backlog(t);

    t->resume_timer = 0;
    /* Yielding to the broker: wait until it took what the last batch gave. */
    if (t->yield_until_ms && backlog > t->yield_target && backlog > BACKLOG_LOW &&
        loop_now_ms(loop) < t->yield_until_ms) {
        t->resume_timer = loop_add_timer(loop, 1, resume_reading, t);
        return;
    }
    t->yield_until_ms = 0;
    t->resumed = true;
    loop_mod_fd(loop, t->fd, EPOLLIN);
}

/*
 * When a batch was cheap in datagrams but dear in time, the session walk
 * dominates (thousands of sessions, datagrams arriving one by one).  Then
 * the next batch waits 1 ms so datagrams pile up and share one walk:
 * throughput no longer falls with the number of sessions, at the price of
 * at most 1 ms of latency, and only under that load.
 */
static bool
should_coalesce(const transport_t *t)
{
    return !t->resumed && t->last_batch_reads <= 4 && t->last_batch_ns >= 150000;
}

/*
 * Back-pressure: when more readings wait for the broker than it takes in,
 * reading faster only grows the queue (and end-to-end latency: 41,000
 * readings and 2 s, measured, with a 1 ms pause per batch) while the broker
 * side starves of CPU.  So intake pauses until the MQTT side has published
 * as many readings as the last batch brought in: under overload intake
 * matches what the broker carries and the queue stays near BACKLOG_HIGH.
 * Datagrams wait in the socket buffer and devices see a slower answer;
 * nothing acknowledged is at risk.  The pause is bounded (YIELD_MAX_MS), so
 * while a long disk backlog drains after an outage, fresh readings are
 * still taken in, one batch at a time.  (The backlog callback says 0 while
 * the broker is away: waiting for it would not help.)
 */
static bool
should_yield_to_broker(const transport_t *t)
{
    return !t->resumed && broker_backlog(t) > BACKLOG_HIGH;
}

static void
start_yield(transport_t *t, loop_t *loop)
{
    uint64_t backlog = broker_backlog(t);

    t->yield_target = backlog > t->last_batch_reads ? backlog - t->last_batch_reads : 0;
    t->yield_until_ms = loop_now_ms(loop) + YIELD_MAX_MS;
}

/* Pauses reading for 1 ms (coalescing) or until the broker caught up. */
static bool
pause_reading(transport_t *t, loop_t *loop, int fd)
{
    bool yield = should_yield_to_broker(t);

    if (!(yield || should_coalesce(t)) || t->resume_timer)
        return false;
    if (yield)
        start_yield(t, loop);
    loop_mod_fd(loop, fd, 0);
    t->resume_timer = loop_add_timer(loop, 1, resume_reading, t);
    return true;
}

/*
 * libcoap reads one datagram per endpoint event and ends every
 * coap_io_do_epoll() with a walk over all sessions (coap_io_prepare_io):
 * per datagram, that walk was 24 % of the CPU at 2,000 sessions and made
 * throughput fall with the session count.  So an endpoint's event is
 * repeated in the batch as many times as datagrams are likely waiting.
 * That number is learnt per socket: a repeat that finds the socket empty
 * costs one EAGAIN recvmsg (counted, not logged, over the whole batch),
 * and a socket still readable after the batch had more than it was asked
 * for.  So after each batch a socket left readable gets twice its number,
 * and the sockets left empty share the empty reads out (one socket: the
 * number that was really there).  Per socket, because an address has
 * several (coap.listen_sockets) and the busy devices are not spread
 * evenly: one number for all of them left a busy socket's datagrams for
 * the next wake-up, up to a back-pressure pause (YIELD_MAX_MS) later, and
 * block-wise pushes overlapped and failed 4.08
 * (test_throttled_broker_memory_short).
 */
static unsigned *
reads_of(transport_t *t, int fd)
{
    for (size_t i = 0; i < t->n_reads; i++)
        if (t->reads[i].fd == fd)
            return &t->reads[i].k;
    if (t->n_reads == sizeof(t->reads) / sizeof(t->reads[0]))
        return &t->reads_per_event;     /* more sockets than slots: shared */
    t->reads[t->n_reads].fd = fd;
    t->reads[t->n_reads].k = 1;
    return &t->reads[t->n_reads++].k;
}

static bool
still_readable(int fd)
{
    char c;

    return recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) >= 0;
}

static void
learn_reads(transport_t *t, const int *fds, size_t sockets, size_t empty)
{
    unsigned *k[TRANSPORT_EPOLL_BATCH];
    size_t drained = 0;

    for (size_t i = 0; i < sockets; i++) {
        k[i] = reads_of(t, fds[i]);
        if (still_readable(fds[i])) {
            *k[i] = *k[i] * 2 > TRANSPORT_READS_MAX ? TRANSPORT_READS_MAX : *k[i] * 2;
            k[i] = NULL;
        } else {
            drained++;
        }
    }
    for (size_t i = 0; i < sockets && empty; i++) {
        unsigned share;

        if (!k[i])
            continue;
        share = (unsigned)((empty + drained - 1) / drained);
        *k[i] = *k[i] > share ? *k[i] - share : 1;
    }
}

/* The session walk the last batches skipped (compat_walk.c), now. */
static void
owed_walk(loop_t *loop, void *arg)
{
    transport_t *t = arg;

    (void)loop;
    t->walk_timer = 0;
    compat_walk_now(t->ctx);
}

static void
schedule_owed_walk(transport_t *t, loop_t *loop)
{
    uint64_t in_ms;

    if (!t->walk_timer && compat_walk_owed(&in_ms))
        t->walk_timer = loop_add_timer(loop, in_ms, owed_walk, t);
}

static void
on_coap_fd(loop_t *loop, int fd, uint32_t events, void *arg)
{
    transport_t *t = arg;
    struct epoll_event evs[TRANSPORT_EPOLL_BATCH];
    struct epoll_event batch[TRANSPORT_EPOLL_BATCH * TRANSPORT_READS_MAX];
    size_t m = 0, reads = 0, sockets = 0, empty;
    int fds[TRANSPORT_EPOLL_BATCH];
    unsigned want[TRANSPORT_EPOLL_BATCH];
    bool on_socket[TRANSPORT_EPOLL_BATCH];
    uint64_t t0;
    int n;

    (void)events;
    if (pause_reading(t, loop, fd))
        return;
    t->resumed = false;
    /* Bounded: one batch per wake-up, so MQTT and timers get their turn. */
    n = epoll_wait(fd, evs, TRANSPORT_EPOLL_BATCH, 0);
    t->batches++;
    for (int i = 0; i < n; i++) {
        enum transport_peek peek;

        want[i] = 1;
        on_socket[i] = false;
        transport__check_rehandshake(t, &evs[i]);
        if (!evs[i].data.ptr)
            compat_walk_due();      /* libcoap's timerfd: something is due */
        if ((peek = transport__oscore_peek(t, &evs[i], t->batches)) == PEEK_SKIP) {
            want[i] = 0;
            continue;
        }
        if (peek == PEEK_ANY && evs[i].data.ptr && (evs[i].events & EPOLLIN) &&
            !(evs[i].events & EPOLLOUT) && (fds[sockets] = compat_endpoint_fd(&evs[i])) >= 0) {
            want[i] = *reads_of(t, fds[sockets++]);
            on_socket[i] = true;
            reads += want[i];
        }
    }
    /* At most TRANSPORT_READS_MAX in all, shared out in proportion, as with
     * one socket: the batch is what back-pressure meters
     * (should_yield_to_broker), and eight sockets reading up to 256 each
     * outran the broker ten to one. */
    if (reads > TRANSPORT_READS_MAX) {
        size_t scaled = 0;

        for (int i = 0; i < n; i++) {
            if (!on_socket[i])
                continue;
            want[i] = (unsigned)((size_t)want[i] * TRANSPORT_READS_MAX / reads);
            if (!want[i])
                want[i] = 1;
            scaled += want[i];
        }
        reads = scaled;
    }
    for (int i = 0; i < n; i++)
        for (unsigned j = 0; j < want[i]; j++)
            batch[m++] = evs[i];
    if (!m)
        return;
    t0 = mono_ns();
    log_coap_eagain_begin();
    coap_io_do_epoll(t->ctx, batch, m);
    t->last_io_ms = loop_now_ms(loop);
    empty = log_coap_eagain_end();
    t->gw->stats.oscore_refused += log_coap_oscore_refused() - t->oscore_refused_seen;
    t->oscore_refused_seen = log_coap_oscore_refused();
    t->last_batch_ns = mono_ns() - t0;
    t->last_batch_reads = reads > empty ? reads - empty : 0;
    learn_reads(t, fds, sockets, empty);
    schedule_owed_walk(t, loop);
}

/*
 * libcoap 4.3.1 arms its timerfd at the end of coap_io_prepare_epoll() for
 * the next thing due, measured before its walk over the sessions; when
 * that walk (freeing idle sessions, with our callbacks for each) takes
 * longer than the time to the next one, the deadline has passed and the
 * timerfd is disarmed instead (coap_io.c: "next_timeout > now", else 0).
 * Nothing wakes libcoap again until a datagram comes: measured, 296 of 500
 * idle plain-CoAP sessions stayed for good after 204 were freed in one
 * walk, and their devices were never forgotten.  Retransmissions wait the
 * same way.  So, when libcoap has had no turn for a second, the walk is
 * run here, which also re-arms the timerfd: one walk a second at most,
 * and none while datagrams flow.
 */
static void
backstop(loop_t *loop, void *arg)
{
    transport_t *t = arg;

    t->backstop_timer = loop_add_timer(loop, BACKSTOP_MS, backstop, t);
    if (loop_now_ms(loop) - t->last_io_ms < BACKSTOP_MS)
        return;
    compat_walk_now(t->ctx);
    t->last_io_ms = loop_now_ms(loop);
}

int
transport__io_start(transport_t *t)
{
    t->reads_per_event = 1;
    compat_libcoap_init(&t->compat);
    t->fd = coap_context_get_coap_fd(t->ctx);
    if (t->fd < 0 || loop_add_fd(t->gw->loop, t->fd, EPOLLIN, on_coap_fd, t) < 0) {
        log_warnx("coap: libcoap has no epoll fd (built without epoll?)");
        t->fd = -1;
        return -1;
    }
    t->backstop_timer = loop_add_timer(t->gw->loop, BACKSTOP_MS, backstop, t);
    compat_walk_throttle(true);
    return 0;
}

void
transport__io_stop(transport_t *t)
{
    if (t->fd >= 0)
        loop_del_fd(t->gw->loop, t->fd);
    t->fd = -1;
    loop_cancel_timer(t->gw->loop, t->resume_timer);
    t->resume_timer = 0;
    loop_cancel_timer(t->gw->loop, t->backstop_timer);
    t->backstop_timer = 0;
    loop_cancel_timer(t->gw->loop, t->walk_timer);
    t->walk_timer = 0;
    /* Teardown walks (freeing sessions) run whole again. */
    compat_walk_throttle(false);
}
