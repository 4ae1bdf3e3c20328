/*
 * compat_walk.c - libcoap's walk over every session, run as often as it
 * is needed rather than once per batch of datagrams.
 *
 * libcoap 4.3.1 (through 4.3.5) ends every coap_io_do_epoll() with
 * coap_io_prepare_epoll(), whose coap_io_prepare_io() visits every
 * session of every endpoint: idle ones to free, DTLS handshake timers,
 * block-wise timeouts, then the retransmission queue, and arms the
 * timerfd for the next thing due.  Its cost grows with the sessions, not
 * with the traffic: at 84,700 sessions one walk took milliseconds, and
 * 100 busy sensors among them got 0.26 of what they get alone
 * (docs/BENCHMARKS.md).  Nothing in the walk is urgent to the
 * millisecond: the timers it serves are 1 s (DTLS) and 2 s (CoAP) and
 * longer, the idle timeout minutes.
 *
 * So the call libcoap makes through its PLT is interposed here (the
 * executable's definition wins; the real one is found with dlsym
 * RTLD_NEXT) and, once compat_walk_throttle() turned this on, a walk runs
 * at most once per fifty times its own last cost (at most 1 s apart):
 * the walk takes no more than about 2 % of the time whatever the session
 * count, and costs nothing extra with few sessions.  (Twenty, 5 %, was
 * still 9 % of the gateway's samples among 100,000 sessions and left 100
 * busy sensors there 0.72-0.92 of what they got alone; fifty: 0.86-1.17,
 * docs/BENCHMARKS.md.  At 100,000 a walk costs about 13 ms, so a timer
 * started meanwhile is armed within 650 ms: still under DTLS's 1 s.)
 * (With a 100 ms cap a walk over 100,000 sessions, 30-40 ms of cache
 * misses, still took 44 % of the gateway's time; 1 s is the shortest
 * timer the walk serves, DTLS's first retransmission, and half of CoAP's
 * ACK_TIMEOUT.)  A walk the timerfd
 * asked for (compat_walk_due) runs at once.  A skipped walk is owed:
 * compat_walk_owed() says by when, and the caller runs compat_walk_now()
 * then, so that a timer started meanwhile (a new handshake, a CON) is
 * armed in the timerfd within that delay.  Explicit walks (to free
 * sessions just closed) use compat_walk_now() and are never skipped.
 *
 * Checked against libcoap 4.3.1 through 4.3.5: coap_io_prepare_epoll is
 * exported and called through the PLT (objdump -d of Debian's
 * libcoap-3-openssl.so.3: "call coap_io_prepare_epoll@plt" in
 * coap_io_do_epoll and coap_io_process_with_fds).  Another release gets
 * the plain pass-through: the throttle is only enabled for those.
 *
 * Layer: base (calls libcoap only)
 */
#include <dlfcn.h>     /* RTLD_NEXT: _GNU_SOURCE, from the Makefile */
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "compat_libcoap.h"

#define WALK_COST_FACTOR 50             /* walk at most 1/50 of the time */
#define WALK_GAP_MAX_NS  1000000000ull  /* ... and at least every second */

typedef unsigned int (*prepare_fn)(coap_context_t *, coap_tick_t);

static struct {
    bool on;            /* throttle enabled (the gateway) */
    bool due;           /* the timerfd fired: the next walk must run */
    bool owed;          /* a walk was skipped since the last one */
    uint64_t next_ns;   /* the earliest time for the next walk */
    unsigned last;      /* what the last walk returned */
} walk;

static uint64_t
walk_clock_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static unsigned int
real_walk(coap_context_t *ctx, coap_tick_t now)
{
    static prepare_fn real;
    uint64_t t0, cost;

    if (!real)
        *(void **)&real = dlsym(RTLD_NEXT, "coap_io_prepare_epoll");
    t0 = walk_clock_ns();
    walk.last = real(ctx, now);
    cost = walk_clock_ns() - t0;
    cost *= WALK_COST_FACTOR;
    walk.next_ns = walk_clock_ns() + (cost < WALK_GAP_MAX_NS ? cost : WALK_GAP_MAX_NS);
    walk.due = false;
    walk.owed = false;
    return walk.last;
}

/* The interposer: libcoap's own calls come here. */
unsigned int
coap_io_prepare_epoll(coap_context_t *ctx, coap_tick_t now)
{
    if (walk.on && !walk.due && walk_clock_ns() < walk.next_ns) {
        walk.owed = true;
        return walk.last;
    }
    return real_walk(ctx, now);
}

void
compat_walk_throttle(bool on)
{
#if LIBCOAP_VERSION >= 4003001U && LIBCOAP_VERSION <= 4003005U
    walk.on = on;
#else
    (void)on;
#endif
}

void
compat_walk_due(void)
{
    walk.due = true;
}

bool
compat_walk_owed(uint64_t *in_ms)
{
    uint64_t now = walk_clock_ns();

    if (!walk.owed)
        return false;
    *in_ms = walk.next_ns > now ? (walk.next_ns - now + 999999) / 1000000 : 0;
    return true;
}

unsigned int
compat_walk_now(coap_context_t *ctx)
{
    coap_tick_t now;

    coap_ticks(&now);
    return real_walk(ctx, now);
}
