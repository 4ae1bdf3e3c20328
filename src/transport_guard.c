/*
 * transport_guard.c - the DTLS sessions' guards: handshakes that never
 * complete (a wrong key fails silently), floods of ClientHellos from
 * spoofed addresses, and devices that handshake again on a session we
 * still hold (a reboot from the same address and port).
 *
 * Layer: transport (calls base and libcoap)
 */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
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
 * that address (a cookie round trip of our own, see check_rehandshake);
 * then libcoap reads the hello and a fresh handshake starts at once.
 */
struct peer_key {
    uint16_t family, port;
    uint8_t addr[16];
};

struct established {
    struct peer_key key;
    coap_session_t *session;
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

static void cookies_install(transport_t *t, coap_session_t *session);

static bool
peer_key_of(const struct sockaddr *sa, struct peer_key *k)
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
established_find(transport_t *t, coap_session_t *session, struct peer_key *k,
                 struct established **e)
{
    const coap_address_t *a = coap_session_get_addr_remote(session);

    *e = NULL;
    if (!a || !peer_key_of(&a->addr.sa, k))
        return false;
    HASH_FIND(hh, t->established, k, sizeof(*k), *e);
    return true;
}

void
transport__established_add(transport_t *t, coap_session_t *session)
{
    struct established *e;
    struct peer_key k;

    cookies_install(t, session);
    if (!established_find(t, session, &k, &e))
        return;
    if (!e) {
        if (!(e = calloc(1, sizeof(*e))))
            return;
        e->key = k;
        HASH_ADD(hh, t->established, key, sizeof(k), e);
    }
    e->session = session;
}

void
transport__established_del(transport_t *t, coap_session_t *session)
{
    struct established *e;
    struct peer_key k;

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

/*
 * A ClientHello in one unfragmented record: content type 22 (handshake),
 * epoch 0, handshake type 1.  Finds the cookie: after the record header
 * (13), the handshake header (12), client_version (2), random (32) and
 * the session id (1 + up to 32 bytes).
 */
struct client_hello {
    const uint8_t *record_seq;      /* 6 bytes, echoed in our answer */
    const uint8_t *message_seq;     /* 2 bytes, echoed too */
    const uint8_t *cookie;
    size_t cookie_len;
};

static bool
parse_client_hello(const uint8_t *b, size_t n, struct client_hello *ch)
{
    size_t body, at;

    if (n < 61 || b[0] != 22 || b[3] != 0 || b[4] != 0 || b[13] != 1)
        return false;
    body = (size_t)b[14] << 16 | (size_t)b[15] << 8 | b[16];
    /* fragment offset 0, fragment length = message length */
    if (b[19] || b[20] || b[21] ||
        ((size_t)b[22] << 16 | (size_t)b[23] << 8 | b[24]) != body)
        return false;
    if (b[59] > 32)
        return false;
    at = 60 + b[59];
    if (at >= n || at + 1 + b[at] > n || at + 1 + b[at] > 25 + body)
        return false;
    ch->record_seq = b + 5;
    ch->message_seq = b + 18;
    ch->cookie = b + at + 1;
    ch->cookie_len = b[at];
    return true;
}

/*
 * Cookies (RFC 6347 4.2.1): HMAC-SHA-256 over the peer's address and a
 * minute counter; 'age' 0 is the current minute, 1 the one before.  They
 * are libcoap's cookies too (cookies_install): a device that answered our
 * HelloVerifyRequest sends a hello libcoap's DTLSv1_listen() accepts as
 * it is.  With a cookie of its own libcoap would answer a second
 * HelloVerifyRequest, and OpenSSL clients drop that one (its message_seq
 * is 0 again): the device would be stuck until its handshake timed out.
 */
#define COOKIE_LEN 32
#define COOKIE_PERIOD_MS 60000

static bool
make_cookie(transport_t *t, const struct peer_key *k, unsigned age,
            uint8_t out[COOKIE_LEN])
{
    uint8_t msg[sizeof(*k) + 8];
    uint64_t period = loop_now_ms(t->gw->loop) / COOKIE_PERIOD_MS - age;
    unsigned len = COOKIE_LEN;

    memcpy(msg, k, sizeof(*k));
    memcpy(msg + sizeof(*k), &period, sizeof(period));
    return HMAC(EVP_sha256(), t->cookie_secret, sizeof(t->cookie_secret), msg,
                sizeof(msg), out, &len) != NULL && len == COOKIE_LEN;
}

static bool
cookie_valid(transport_t *t, const struct peer_key *k, const uint8_t *cookie,
             size_t len)
{
    uint8_t c[COOKIE_LEN];

    if (len != COOKIE_LEN)
        return false;
    for (unsigned age = 0; age < 2; age++)
        if (make_cookie(t, k, age, c) && CRYPTO_memcmp(c, cookie, COOKIE_LEN) == 0)
            return true;
    return false;
}

/* The transport and peer of the datagram libcoap's SSL object reads. */
static transport_t *
cookie_peer(SSL *ssl, struct peer_key *k)
{
    coap_session_t *session = compat_dtls_session_of(ssl);
    const coap_address_t *a = session ? coap_session_get_addr_remote(session) : NULL;

    if (!a || !peer_key_of(&a->addr.sa, k))
        return NULL;
    return coap_get_app_data(coap_session_get_context(session));
}

static int
cookie_generate(SSL *ssl, unsigned char *cookie, unsigned int *len)
{
    struct peer_key k;
    transport_t *t = cookie_peer(ssl, &k);

    if (!t || !make_cookie(t, &k, 0, cookie))
        return 0;
    *len = COOKIE_LEN;
    return 1;
}

static int
cookie_verify(SSL *ssl, const unsigned char *cookie, unsigned int len)
{
    struct peer_key k;
    transport_t *t = cookie_peer(ssl, &k);

    return t && cookie_valid(t, &k, cookie, len);
}

/* Once, on the first DTLS session: libcoap's SSL_CTX makes our cookies. */
static void
cookies_install(transport_t *t, coap_session_t *session)
{
    coap_tls_library_t lib = COAP_TLS_LIBRARY_NOTLS;
    SSL *ssl;

    if (t->cookies)
        return;
    ssl = coap_session_get_tls(session, &lib);
    if (lib != COAP_TLS_LIBRARY_OPENSSL || !ssl ||
        compat_dtls_session_of(ssl) != session) {
        t->cookies = -1;
        log_warnx("dtls: cannot reach libcoap's cookies (libcoap %s): a ClientHello "
                  "from a device's address and port ends its session unchecked",
                  coap_package_version());
        return;
    }
    SSL_CTX_set_cookie_generate_cb(SSL_get_SSL_CTX(ssl), cookie_generate);
    SSL_CTX_set_cookie_verify_cb(SSL_get_SSL_CTX(ssl), cookie_verify);
    t->cookies = 1;
}

/*
 * RFC 6347 4.2.1: a HelloVerifyRequest with our cookie, sent to the
 * address the hello claims.  It is smaller than the hello (no
 * amplification), and the device's live session ignores it (epoch 0).
 */
static void
send_hello_verify(transport_t *t, int fd, const struct peer_key *k,
                  const struct client_hello *ch, const struct sockaddr *to,
                  socklen_t tolen)
{
    uint8_t m[13 + 12 + 3 + COOKIE_LEN];
    size_t body = 3 + COOKIE_LEN;

    if (!make_cookie(t, k, 0, m + 13 + 12 + 3))
        return;
    m[0] = 22;                          /* handshake */
    m[1] = 0xfe;                        /* DTLS 1.0, as RFC 6347 4.2.1 asks */
    m[2] = 0xff;
    m[3] = m[4] = 0;                    /* epoch 0 */
    memcpy(m + 5, ch->record_seq, 6);   /* the hello's sequence number */
    m[11] = (uint8_t)((12 + body) >> 8);
    m[12] = (uint8_t)(12 + body);
    m[13] = 3;                          /* hello_verify_request */
    m[14] = 0;
    m[15] = (uint8_t)(body >> 8);
    m[16] = (uint8_t)body;
    memcpy(m + 17, ch->message_seq, 2);
    m[19] = m[20] = m[21] = 0;          /* fragment offset */
    m[22] = 0;
    m[23] = (uint8_t)(body >> 8);
    m[24] = (uint8_t)body;
    m[25] = 0xfe;                       /* server_version */
    m[26] = 0xff;
    m[27] = COOKIE_LEN;
    (void)sendto(fd, m, sizeof(m), MSG_DONTWAIT, to, tolen);
}

static void
retire_session(transport_t *t, struct established *e)
{
    coap_session_t *old = e->session;
    coap_tick_t now;
    char peer[64];

    t->gw->stats.sessions_reset++;
    log_info("dtls: %s handshakes again on its established session "
             "(rebooted?): retiring the old session",
             transport_peer(old, peer, sizeof(peer)));
    HASH_DEL(t->established, e);
    free(e);
    coap_session_disconnected(old, COAP_NACK_TLS_FAILED);
    /* Frees sessions in state NONE now, before the hello is read. */
    coap_ticks(&now);
    coap_io_prepare_epoll(t->ctx, now);
}

/*
 * Looks at the next datagram on an endpoint socket without taking it.  A
 * ClientHello from the address of an established session is either a
 * device that rebooted or anybody with that address in a forged header.
 * Without a valid cookie it is answered with a HelloVerifyRequest and
 * taken off the socket (libcoap would hand it to the live session, which
 * drops it), and the session stays.  With one, the peer received our
 * answer at that address: the old session is retired and libcoap reads
 * the hello, whose cookie it accepts, into a fresh handshake.
 */
void
transport__check_rehandshake(transport_t *t, const struct epoll_event *ev)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    uint8_t buf[512];
    struct client_hello ch;
    struct established *e;
    struct peer_key k;
    int fd = compat_endpoint_fd(ev);
    ssize_t n;

    if (fd < 0 || !(ev->events & EPOLLIN))
        return;
    tune_socket(t, fd);
    if (!t->established)
        return;
    n = recvfrom(fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT,
                 (struct sockaddr *)&ss, &sl);
    if (n <= 0 || !parse_client_hello(buf, (size_t)n, &ch) ||
        !peer_key_of((struct sockaddr *)&ss, &k))
        return;
    HASH_FIND(hh, t->established, &k, sizeof(k), e);
    if (!e)
        return;
    if (t->cookies < 0 || cookie_valid(t, &k, ch.cookie, ch.cookie_len)) {
        retire_session(t, e);
        return;
    }
    t->gw->stats.rehandshake_cookies++;
    send_hello_verify(t, fd, &k, &ch, (struct sockaddr *)&ss, sl);
    (void)recv(fd, buf, 1, MSG_DONTWAIT);       /* taken: it was ours */
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

/* --- life ------------------------------------------------------------------- */

int
transport__guard_start(transport_t *t)
{
    if (getrandom(t->cookie_secret, sizeof(t->cookie_secret), 0) !=
        (ssize_t)sizeof(t->cookie_secret))
        return -1;
    t->sweep_timer = loop_add_timer(t->gw->loop, HANDSHAKE_SWEEP_MS, handshake_sweep, t);
    return 0;
}

void
transport__guard_free(transport_t *t)
{
    loop_cancel_timer(t->gw->loop, t->sweep_timer);
    HASH_FREE_ALL(t->handshakes, struct handshake);
    HASH_FREE_ALL(t->hellos, struct hello);
    t->hello_fifo = NULL;
    t->n_hellos = 0;
    HASH_FREE_ALL(t->established, struct established);
}
