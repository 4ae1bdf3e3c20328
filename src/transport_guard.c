/*
 * transport_guard.c - the DTLS sessions' guards: handshakes that never
 * complete (a wrong key fails silently), floods of ClientHellos from
 * spoofed addresses, and devices that handshake again on a session we
 * still hold (a reboot from the same address and port).
 *
 * Layer: transport (calls base and libcoap)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netdb.h>
#include <utlist.h>
#include <uthash.h>

#include "coap2mqtt/hash_free.h"
#include "coap2mqtt/keystore.h"
#include "coap2mqtt/log.h"
#include "transport_internal.h"

#define HANDSHAKE_SUSPECT_MS 5000
#define HANDSHAKE_SWEEP_MS   1000

/*
 * A handshake whose identity we know but which has not completed.  With a
 * wrong key the client's Finished fails its MAC and DTLS drops it silently
 * (RFC 6347 4.1.2.7): no error ever reaches us, so the only sign is a
 * handshake that never completes.  We watch for exactly that: a PSK
 * handshake is 3 round trips, on a good link well under a second; past
 * HANDSHAKE_SUSPECT_MS we say so (once), and a lossy link may still
 * finish it later.
 */
struct handshake {
    coap_session_t *session;
    uint64_t started_ms;
    char id[KEYSTORE_ID_MAX * 4 + 1];
    char peer[64];
    UT_hash_handle hh;
};

/*
 * Established DTLS sessions by peer address, to spot a device that reboots
 * and handshakes again from the same address and port: OpenSSL lacks RFC
 * 6347 4.2.8 and would drop its ClientHello on the old session (~31 s
 * stuck, measured).  Anyone can send a ClientHello with a device's address,
 * so the old session is retired only once the peer proved it receives at
 * that address (libcoap's cookie round trip, see check_rehandshake); then
 * libcoap reads the hello and a fresh handshake starts at once.
 *
 * The same holds for a handshake that stopped half-way (the cookie
 * answered, then a wrong key, a lost flight, a device that gave up):
 * libcoap hands a new ClientHello from that address to the unfinished
 * session, OpenSSL drops it, and a device with a fixed source port was
 * locked out until libcoap's 30 s partial-session timeout (measured: a
 * retry with the right key after a wrong one failed for 31 s).  So the
 * table holds every session from its first ClientHello, 'up' once
 * established; a half-open one is retired the same way.
 */
struct established {
    struct transport_addr_key key;
    coap_session_t *session;
    bool up;                        /* DTLS_CONNECTED seen */
    bool have_random;               /* the random of the ClientHello
                                     * that started it (kept once up) */
    uint8_t random[32];
    UT_hash_handle hh;
};

/*
 * Hello sessions: what libcoap allocates for every ClientHello from a new
 * address, before the cookie exchange proves the address is real.  libcoap
 * keeps each 30 s and refuses all new hellos once max_handshakes are open,
 * so 1,000 spoofed ClientHellos locked a real sensor out for 20 s
 * (measured).  We evict the oldest beyond half the limit: a real client
 * answers the HelloVerifyRequest within a round trip and leaves this list.
 */
struct hello {
    coap_session_t *session;
    struct hello *prev, *next;
    UT_hash_handle hh;
};

/* --- handshakes that never complete ------------------------------------- */

void
transport__handshake_track(transport_t *t, coap_session_t *session,
                           const coap_bin_const_t *identity)
{
    struct handshake *h;

    HASH_FIND_PTR(t->handshakes, &session, h);
    if (h)
        return;
    if (!(h = calloc(1, sizeof(*h))))
        return;
    h->session = session;
    h->started_ms = loop_now_ms(t->gw->loop);
    transport__sanitize(identity->s, identity->length, h->id, sizeof(h->id));
    transport_peer(session, h->peer, sizeof(h->peer));
    HASH_ADD_PTR(t->handshakes, session, h);
}

static void
handshake_report(transport_t *t, struct handshake *h)
{
    t->gw->stats.handshakes_failed++;
    log_ratelimited(&t->handshakes,
                    "dtls: handshake from %s (identity \"%s\") not completed after 5 s: wrong key?",
                    h->peer, h->id);
}

/* Done with a handshake: 'failed' reports it if it never completed. */
void
transport__handshake_end(transport_t *t, coap_session_t *session, bool failed)
{
    struct handshake *h;

    HASH_FIND_PTR(t->handshakes, &session, h);
    if (!h)
        return;
    if (failed && !t->gw->stopping)
        handshake_report(t, h);
    HASH_DEL(t->handshakes, h);
    free(h);
}

static void
handshake_sweep(loop_t *loop, void *arg)
{
    transport_t *t = arg;
    struct handshake *h, *tmp;
    uint64_t now = loop_now_ms(loop);

    HASH_ITER(hh, t->handshakes, h, tmp) {
        if (now - h->started_ms >= HANDSHAKE_SUSPECT_MS) {
            handshake_report(t, h);
            HASH_DEL(t->handshakes, h);
            free(h);
        }
    }
    t->sweep_timer = loop_add_timer(loop, HANDSHAKE_SWEEP_MS, handshake_sweep, t);
}

/* A handshake libcoap saw fail: a wrong key or a protocol error. */
void
transport__handshake_failed(transport_t *t, coap_session_t *session)
{
    const coap_bin_const_t *identity = coap_session_get_psk_identity(session);
    char id[200] = "", peer[64];
    size_t len;

    t->gw->stats.handshakes_failed++;
    if (identity && t->keys &&
        !keystore_lookup(t->keys, identity->s, identity->length, &len))
        return;     /* unknown identity: already said in the PSK lookup */
    if (identity)
        transport__sanitize(identity->s, identity->length, id, sizeof(id));
    log_ratelimited(&t->gw->stats.handshakes_failed,
                    "dtls: handshake from %s failed (identity \"%s\"): wrong key or protocol error",
                    transport_peer(session, peer, sizeof(peer)), id);
}

/* --- devices that re-handshake on a live session ---------------------------- */

bool
transport__addr_key(const struct sockaddr *sa, struct transport_addr_key *k)
{
    memset(k, 0, sizeof(*k));
    k->family = sa->sa_family;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

        k->port = in->sin_port;
        memcpy(k->addr, &in->sin_addr, 4);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

        k->port = in6->sin6_port;
        memcpy(k->addr, &in6->sin6_addr, 16);
        return true;
    }
    return false;
}

/* The entry for the session's peer address (NULL if none); false when the
 * address cannot be a key at all. */
static bool
established_find(transport_t *t, coap_session_t *session, struct transport_addr_key *k,
                 struct established **e)
{
    const coap_address_t *a = coap_session_get_addr_remote(session);

    *e = NULL;
    if (!a || !transport__addr_key(&a->addr.sa, k))
        return false;
    HASH_FIND(hh, t->established, k, sizeof(*k), *e);
    return true;
}

static void
session_add(transport_t *t, coap_session_t *session, bool up)
{
    struct established *e;
    struct transport_addr_key k;

    if (!established_find(t, session, &k, &e))
        return;
    if (e && e->up && !up)
        return;     /* never hide an established session behind a hello */
    if (!e) {
        if (!(e = calloc(1, sizeof(*e)))) {
            /* The filter would drop this session's data: off for good. */
            if (!t->filter_off)
                log_warnx("dtls: out of memory: application data from unknown "
                          "addresses is no longer dropped before libcoap");
            t->filter_off = true;
            return;
        }
        e->key = k;
        HASH_ADD(hh, t->established, key, sizeof(k), e);
    }
    /* Up, the same session keeps the random of its hello: a late copy
     * of that hello is still known (transport__check_rehandshake). */
    if (e->session != session || !up)
        e->have_random = false;
    e->session = session;
    e->up = up;
    if (!up && t->last_hello_set && memcmp(&t->last_hello_key, &k, sizeof(k)) == 0) {
        memcpy(e->random, t->last_hello_random, sizeof(e->random));
        e->have_random = true;
    }
}

void
transport__established_add(transport_t *t, coap_session_t *session)
{
    session_add(t, session, true);
}

void
transport__halfopen_add(transport_t *t, coap_session_t *session)
{
    session_add(t, session, false);
}

/* The established sessions now (a copy: closing them changes the table);
 * NULL with *n 0 when there are none or on allocation failure. */
coap_session_t **
transport__established_list(transport_t *t, size_t *n)
{
    struct established *e, *tmp;
    coap_session_t **list;
    size_t i = 0;

    *n = HASH_COUNT(t->established);
    if (!*n || !(list = calloc(*n, sizeof(*list)))) {
        *n = 0;
        return NULL;
    }
    HASH_ITER(hh, t->established, e, tmp)
        if (e->up)
            list[i++] = e->session;
    *n = i;
    return list;
}

void
transport__established_del(transport_t *t, coap_session_t *session)
{
    struct established *e;
    struct transport_addr_key k;

    if (established_find(t, session, &k, &e) && e && e->session == session) {
        HASH_DEL(t->established, e);
        free(e);
    }
}

/*
 * A reconnect burst (2,000 sensors after a gateway restart) or a hello
 * flood overflows the default 208 KiB receive buffer, and the kernel then
 * drops genuine datagrams too (137k RcvbufErrors measured).  Endpoint
 * sockets get 4 MiB: SO_RCVBUFFORCE when we may, else as much as
 * net.core.rmem_max allows.  Done once per socket, on its first event.
 */
static void
tune_socket(transport_t *t, int fd)
{
    int size = 4 << 20;

    for (size_t i = 0; i < t->n_tuned; i++)
        if (t->tuned_fds[i] == fd)
            return;
    if (t->n_tuned == sizeof(t->tuned_fds) / sizeof(t->tuned_fds[0]))
        return;
    t->tuned_fds[t->n_tuned++] = fd;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
}

/* DTLS record: content type 22 (handshake), epoch 0, handshake type 1. */
static bool
is_client_hello(const uint8_t *b, ssize_t n)
{
    return n >= 25 && b[0] == 22 && b[3] == 0 && b[4] == 0 && b[13] == 1;
}

/*
 * A ClientHello's first fragment, after the record header (13 bytes) and
 * the handshake header (12): client_version (2), random (32),
 * session_id (1 + n), cookie (1 + n) - RFC 6347 4.2.1.
 */
#define HELLO_RANDOM_AT 27
#define HELLO_SID_AT    59

static const uint8_t *
hello_random(const uint8_t *b, ssize_t n)
{
    if (!is_client_hello(b, n) || n <= HELLO_SID_AT || (b[19] | b[20] | b[21]))
        return NULL;    /* not the first fragment */
    return b + HELLO_RANDOM_AT;
}

/* The hello answers a HelloVerifyRequest of ours: the sender has been
 * through the cookie exchange and waits for our ServerHello. */
static bool
hello_has_cookie(const uint8_t *b, ssize_t n)
{
    size_t at;

    if (!hello_random(b, n))
        return false;
    at = HELLO_SID_AT + 1 + b[HELLO_SID_AT];
    return (ssize_t)at < n && b[at] > 0;
}

static void
retire_session(transport_t *t, struct established *e)
{
    coap_session_t *old = e->session;
    char peer[64];

    t->gw->stats.sessions_reset++;
    if (e->up)
        log_info("dtls: %s handshakes again on its established session "
                 "(rebooted?): retiring the old session",
                 transport_peer(old, peer, sizeof(peer)));
    else
        log_info("dtls: %s starts a new handshake over its unfinished one: "
                 "dropping the unfinished one", transport_peer(old, peer, sizeof(peer)));
    HASH_DEL(t->established, e);
    free(e);
    coap_session_disconnected(old, COAP_NACK_TLS_FAILED);
    /* Frees sessions in state NONE now, before the hello is read. */
    compat_walk_now(t->ctx);
}

/*
 * A device authenticated again on a new session (a new port after deep
 * sleep or a reboot, a NAT rebinding): the old one is dead to it, but our
 * CONs on it (observe registrations) would be retransmitted for up to
 * 93 s (MAX_TRANSMIT_WAIT).  libcoap 4.3.1 keeps every CON of every
 * session in one time-ordered list, walked on each insertion and each
 * ACK: in a reconnect storm of 10,000 devices those walks were 47 % of
 * the gateway's time and its intake stalled (bench/reconnect.sh).  So the
 * old session's messages go now; libcoap frees the session at its next
 * walk over the sessions.
 */
void
transport_session_end(transport_t *t, coap_session_t *session)
{
    if (coap_session_get_type(session) != COAP_SESSION_TYPE_SERVER ||
        coap_session_get_state(session) == COAP_SESSION_STATE_NONE)
        return;
    transport__established_del(t, session);
    coap_session_disconnected(session, COAP_NACK_NOT_DELIVERABLE);
}

/*
 * Looks at the next datagram on an endpoint socket without taking it.  A
 * ClientHello from the address of an established session is either a
 * device that rebooted or anybody with that address in a forged header,
 * and only the cookie exchange of RFC 6347 4.2.1 tells them apart: libcoap
 * would hand the hello to the live session (which drops it), so its cookie
 * check is run here, with libcoap's own cookies.  Without a valid cookie
 * the hello is answered with libcoap's HelloVerifyRequest and taken off
 * the socket; the session stays.  With one, the peer received that answer
 * at this address: the old session is retired and libcoap reads the hello,
 * whose cookie it accepts, into a fresh handshake at once.
 */
void
transport__check_rehandshake(transport_t *t, const struct epoll_event *ev)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    uint8_t buf[4096], hvr[512];
    size_t hvr_len = 0;
    struct established *e;
    struct transport_addr_key k;
    const uint8_t *random;
    int fd = compat_endpoint_fd(ev);
    ssize_t n;

    if (fd < 0 || !(ev->events & EPOLLIN))
        return;
    tune_socket(t, fd);
    if (!t->established)
        return;
    n = recvfrom(fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT | MSG_TRUNC,
                 (struct sockaddr *)&ss, &sl);
    if (!is_client_hello(buf, n) || n > (ssize_t)sizeof(buf) ||
        !transport__addr_key((struct sockaddr *)&ss, &k))
        return;
    HASH_FIND(hh, t->established, &k, sizeof(k), e);
    /* A hello session is in its own cookie exchange: libcoap's to finish. */
    if (!e || (!e->up && (coap_session_get_type(e->session) != COAP_SESSION_TYPE_SERVER ||
                          coap_session_get_state(e->session) != COAP_SESSION_STATE_HANDSHAKE)))
        return;
    /* The same random: a copy of the hello that started this session
     * (the device's retransmission timer fired before our ServerHello
     * came).  Half-open, starting over would answer it with a second
     * ServerHello the device ignores, and its Finished, made with the
     * first, would fail: under load that cost whole handshakes; OpenSSL
     * treats the copy as the retransmission it is.  Up, the copy came
     * late (it waited in a socket behind a storm): its cookie is valid,
     * so it retired the session the device goes on using, and a device
     * with nothing to send (no observation yet) never noticed - one unit
     * in a reconnect storm of 10,000 stayed unobserved until its
     * registration refresh.  The live session drops it.  A device that
     * rebooted sends a new random. */
    if (e->have_random && (random = hello_random(buf, n)) &&
        memcmp(random, e->random, sizeof(e->random)) == 0)
        return;
    switch (compat_dtls_cookie_check(e->session, buf, (size_t)n, hvr, sizeof(hvr),
                                     &hvr_len)) {
    case COMPAT_COOKIE_VALID:
        retire_session(t, e);
        break;
    case COMPAT_COOKIE_ASKED:
        t->gw->stats.rehandshake_cookies++;
        (void)sendto(fd, hvr, hvr_len, MSG_DONTWAIT, (struct sockaddr *)&ss, sl);
        (void)recv(fd, buf, 1, MSG_DONTWAIT);   /* taken: it was answered */
        break;
    case COMPAT_COOKIE_BAD:
        break;          /* the live session drops it */
    case COMPAT_COOKIE_UNKNOWN:
        /* Cannot check (another libcoap): as before, trust the hello. */
        if (!t->cookie_warned) {
            t->cookie_warned = true;
            log_warnx("dtls: cannot run libcoap's cookie check (libcoap %s): a "
                      "ClientHello from a device's address ends its session unchecked",
                      coap_package_version());
        }
        retire_session(t, e);
        break;
    }
}

/* --- hello floods ------------------------------------------------------------ */

void
transport__hello_forget(transport_t *t, coap_session_t *session)
{
    struct hello *h;

    HASH_FIND_PTR(t->hellos, &session, h);
    if (!h)
        return;
    HASH_DEL(t->hellos, h);
    DL_DELETE(t->hello_fifo, h);
    t->n_hellos--;
    free(h);
}

void
transport__hello_track(transport_t *t, coap_session_t *session)
{
    size_t limit = (size_t)t->gw->cfg->coap.max_handshakes / 2;
    struct hello *h;

    if (coap_session_get_type(session) != COAP_SESSION_TYPE_HELLO)
        return;
    if ((h = calloc(1, sizeof(*h)))) {
        h->session = session;
        HASH_ADD_PTR(t->hellos, session, h);
        DL_APPEND(t->hello_fifo, h);
        t->n_hellos++;
    }
    while (t->n_hellos > limit && t->hello_fifo) {
        coap_session_t *old = t->hello_fifo->session;

        transport__hello_forget(t, old);
        if (old == session || coap_session_get_type(old) != COAP_SESSION_TYPE_HELLO)
            continue;
        t->gw->stats.handshakes_evicted++;
        log_ratelimited(&t->gw->stats.handshakes_evicted,
                        "dtls: over %zu unanswered ClientHellos (spoofed flood?): "
                        "evicting the oldest", limit);
        /* State NONE: libcoap frees it at the end of this batch. */
        coap_session_disconnected(old, COAP_NACK_TLS_FAILED);
    }
}

/* --- overload and lost sessions ---------------------------------------------- */

/* The sender's address, for a log line. */
static const char *
sender_name(const struct sockaddr *from, char *buf, size_t size)
{
    if (getnameinfo(from, from->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                     : sizeof(struct sockaddr_in),
                    buf, (socklen_t)size, NULL, 0, NI_NUMERICHOST) != 0)
        snprintf(buf, size, "?");
    return buf;
}

/*
 * A ClientHello that waited in the socket longer than a DTLS client's
 * first retransmission timer (1 s, RFC 6347 4.2.4.1) was already sent
 * again, or given up: answering this copy only adds work.  Under overload
 * (a reconnect storm of the whole fleet after a restart) the 4 MiB
 * receive buffers held seconds of datagrams; every handshake flight was
 * answered after its sender had retransmitted it, duplicates doubled the
 * load, devices gave up handshakes and registrations half-way and started
 * over, and the gateway stopped completing any (bench/reconnect.sh).
 * Dropping stale hellos is nearly free, so the queue drains to what is
 * fresh: handshakes under way and established devices' data, which are
 * never dropped here, go first, and new devices are let in at the rate
 * the gateway completes them, as their retries come.  A hello with a
 * cookie is kept at any age: it is the second step of a handshake under
 * way, whose sender waits for our ServerHello, and its copies are known
 * by their random (transport__check_rehandshake).  While the sockets stay
 * more than a second behind (the gateway yielding to a slow broker),
 * shedding those too would let no handshake finish at all.
 */
#define HELLO_MAX_AGE_MS 1000

/* The hello about to be read: if it opens a session, its random is the
 * handshake's (session_add). */
static void
hello_note(transport_t *t, const struct sockaddr *from, const uint8_t *data, size_t len)
{
    const uint8_t *random = hello_random(data, (ssize_t)len);

    t->last_hello_set = random && transport__addr_key(from, &t->last_hello_key);
    if (t->last_hello_set)
        memcpy(t->last_hello_random, random, sizeof(t->last_hello_random));
}

/*
 * Application data (DTLS record type 23) from an address we hold no DTLS
 * session for: a device still writing on a session we no longer have (we
 * restarted, or closed it while it slept).  Nothing can be read from it,
 * and libcoap would drop it too, but only after walking every session of
 * the endpoint (compat_recv.c): after a restart the whole fleet's
 * readings did that until each device noticed.  So it is dropped as it is
 * read, counted and logged (rate-limited); the device learns at its next
 * unanswered CON and handshakes again.  Application data comes only after
 * the handshake's last flight, by which time the session is in the table
 * (DTLS_CONNECTED); everything else (handshakes, alerts) goes to libcoap.
 */
static bool
keep_datagram(void *arg, int fd, const struct sockaddr *from, const uint8_t *data, size_t len)
{
    transport_t *t = arg;
    struct transport_addr_key k;
    struct established *e;
    char peer[64];
    int64_t age;

    if (is_client_hello(data, (ssize_t)len)) {
        /* One with a cookie belongs to a handshake under way: kept. */
        if (hello_has_cookie(data, (ssize_t)len) ||
            (age = compat_recv_age_ms(fd)) <= HELLO_MAX_AGE_MS) {
            hello_note(t, from, data, len);
            return true;
        }
        t->gw->stats.handshakes_shed++;
        if (log_ratelimit_due(&t->gw->stats.handshakes_shed))
            log_ratelimited(&t->gw->stats.handshakes_shed,
                            "dtls: ClientHello from %s waited %lld ms to be read "
                            "(overloaded): dropped, the device sends it again",
                            sender_name(from, peer, sizeof(peer)), (long long)age);
        return false;
    }
    if (t->filter_off || len < 13 || data[0] != 23 || !transport__addr_key(from, &k))
        return true;
    HASH_FIND(hh, t->established, &k, sizeof(k), e);
    if (e)
        return true;
    t->gw->stats.dtls_no_session++;
    if (log_ratelimit_due(&t->gw->stats.dtls_no_session))   /* skips getnameinfo() */
        log_ratelimited(&t->gw->stats.dtls_no_session,
                        "dtls: data from %s, which has no session here (the device "
                        "must handshake again): dropped",
                        sender_name(from, peer, sizeof(peer)));
    return false;
}

void
transport__filter_endpoint(transport_t *t, int fd)
{
    if (fd < 0 || t->n_filtered == sizeof(t->filtered_fds) / sizeof(t->filtered_fds[0]))
        return;
    t->filtered_fds[t->n_filtered++] = fd;
    compat_recv_watch(fd, true);
    compat_recv_filter(keep_datagram, t);
}

void
transport__guard_start(transport_t *t)
{
    t->sweep_timer = loop_add_timer(t->gw->loop, HANDSHAKE_SWEEP_MS, handshake_sweep, t);
}

void
transport__guard_free(transport_t *t)
{
    loop_cancel_timer(t->gw->loop, t->sweep_timer);
    compat_recv_filter(NULL, NULL);
    for (size_t i = 0; i < t->n_filtered; i++)
        compat_recv_watch(t->filtered_fds[i], false);
    t->n_filtered = 0;
    HASH_FREE_ALL(t->handshakes, struct handshake);
    HASH_FREE_ALL(t->hellos, struct hello);
    t->hello_fifo = NULL;
    t->n_hellos = 0;
    HASH_FREE_ALL(t->established, struct established);
}
