/*
 * coap_side.c - the libcoap context: DTLS endpoints, the PSK lookup,
 * session events, and the routing of every response to the request that
 * caused it by our own token table.
 *
 * Driving libcoap: its epoll fd sits in our epoll set; when readable we
 * drain it with epoll_wait(0) and hand the batch to coap_io_do_epoll(),
 * which ends with one coap_io_prepare_epoll() (the walk over sessions) per
 * batch instead of one per datagram as coap_io_process() would do.  Timers
 * (retransmissions, session expiry) arrive through libcoap's own timerfd in
 * that same epoll fd.
 */
#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <time.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stddef.h>
#include <utlist.h>
#include <uthash.h>

#include "coap2mqtt/coap_side.h"
#include "coap2mqtt/commands.h"
#include "coap2mqtt/devices.h"
#include "coap2mqtt/keystore.h"
#include "coap2mqtt/log.h"
#include "coap2mqtt/mqtt_side.h"
#include "coap2mqtt/observe.h"
#include "coap2mqtt/outq.h"
#include "coap2mqtt/spool.h"
#include "coap2mqtt/topics.h"
#include "coap_handlers.h"

#define COAP_EPOLL_BATCH 16
#define COAP_READS_MAX   256    /* datagrams read per endpoint event */

struct pending {
    uint64_t token;
    enum req_kind kind;
    void *owner;
    coap_session_t *session;    /* responses must come back on it */
    UT_hash_handle hh;
};

/*
 * A handshake whose identity we know but which has not completed.  With a
 * wrong key the client's Finished fails its MAC and DTLS drops it silently
 * (RFC 6347 4.1.2.7): no error ever reaches us, so the only sign is a
 * handshake that never completes.  We watch for exactly that.
 */
struct handshake {
    coap_session_t *session;
    uint64_t started_ms;
    char id[KEYSTORE_ID_MAX * 4 + 1];
    char peer[64];
    UT_hash_handle hh;
};

/* A PSK handshake is 3 round trips: on a good link well under a second.
 * Past this, say so (once); a lossy link may still finish it later. */
/*
 * Established DTLS sessions by peer address, to spot a device that reboots
 * and handshakes again from the same address and port: OpenSSL lacks RFC
 * 6347 4.2.8 and would drop its ClientHello on the old session (~31 s
 * stuck, measured).  We retire the old session before libcoap reads the
 * datagram, so the hello starts a fresh handshake at once.
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

/* The device id a certificate gave a session (subject CN / first DNS SAN). */
struct cert_id {
    coap_session_t *session;
    char id[TOPIC_ID_MAX + 1];
    UT_hash_handle hh;
};

#define HANDSHAKE_SUSPECT_MS 5000
#define HANDSHAKE_SWEEP_MS   1000

struct coap_side {
    struct gw *gw;
    coap_context_t *ctx;
    int fd;
    keystore_t *keys;
    coap_bin_const_t key;           /* points into keys, for the callback */
    struct pending *pending;        /* by token */
    uint64_t token_base;            /* random, so tokens are not guessable */
    uint64_t token_next;
    size_t sessions;
    struct handshake *handshakes;   /* by session pointer */
    struct established *established; /* by peer address */
    struct hello *hellos;           /* by session pointer */
    struct cert_id *cert_ids;       /* by session pointer */
    coap_dtls_pki_t pki;
    X509_STORE *store;              /* device trust: ca_file + crl_file */
    uint8_t unused_key[32];
    struct hello *hello_fifo;       /* oldest first */
    size_t n_hellos;
    unsigned reads_per_event;       /* learnt, 1..COAP_READS_MAX */
    long con_mid_offset;            /* libcoap 4.3.1 last_con_mid; -1 unknown, -2 off */
    int tuned_fds[16];              /* endpoint sockets given a big SO_RCVBUF */
    size_t n_tuned;
    uint64_t last_batch_ns;         /* duration of the last batch */
    size_t last_batch_reads;        /* datagrams it handled */
    bool resumed;                   /* coalescing pause just ended */
    uint64_t resume_timer;
    uint64_t yield_target;          /* back-pressure: resume at this backlog */
    uint64_t yield_until_ms;        /* ... or at this time at the latest */
    uint64_t sweep_timer;
};

/* --- tokens ------------------------------------------------------------ */

static uint64_t
token_from_pdu(const coap_pdu_t *pdu, bool *ok)
{
    coap_bin_const_t t = coap_pdu_get_token(pdu);
    uint64_t v = 0;

    *ok = t.length == 8;
    for (size_t i = 0; *ok && i < 8; i++)
        v = v << 8 | t.s[i];
    return v;
}

static uint64_t
next_token(coap_side_t *c)
{
    /* A counter mixed with a random base: unique for 2^64 requests, and
     * not predictable by a device wanting to answer for another. */
    uint64_t x = c->token_base + ++c->token_next * 0x9E3779B97F4A7C15ULL;

    x ^= x >> 31;
    return x ? x : 1;
}

static bool
token_in_use(coap_side_t *c, uint64_t token)
{
    struct pending *p;

    HASH_FIND(hh, c->pending, &token, 8, p);
    return p != NULL;
}

/* Our tokens on the wire: 8 bytes, big-endian. */
static void
token_bytes(uint64_t token, uint8_t tok[8])
{
    for (int i = 0; i < 8; i++)
        tok[i] = (uint8_t)(token >> (8 * (7 - i)));
}

coap_pdu_t *
coap_side_new_request(coap_side_t *c, coap_session_t *session,
                      coap_pdu_type_t type, coap_pdu_code_t code,
                      const char *path, enum req_kind kind, void *owner,
                      uint64_t *token)
{
    coap_pdu_t *pdu = coap_pdu_init(type, code, coap_new_message_id(session),
                                    coap_session_max_pdu_size(session));
    uint8_t tok[8];
    const char *seg = path;

    if (!pdu)
        return NULL;
    if (!*token) {
        struct pending *p = calloc(1, sizeof(*p));

        if (!p) {
            coap_delete_pdu(pdu);
            return NULL;
        }
        do
            p->token = next_token(c);
        while (token_in_use(c, p->token));
        p->kind = kind;
        p->owner = owner;
        p->session = session;
        HASH_ADD(hh, c->pending, token, 8, p);
        *token = p->token;
    }
    token_bytes(*token, tok);
    coap_add_token(pdu, sizeof(tok), tok);
    while (seg && *seg) {
        size_t n = strcspn(seg, "/");

        coap_add_option(pdu, COAP_OPTION_URI_PATH, n, (const uint8_t *)seg);
        seg += n;
        if (*seg == '/')
            seg++;
    }
    return pdu;
}

void
coap_side_forget(coap_side_t *c, uint64_t token)
{
    struct pending *p;

    if (!token || !c)
        return;
    HASH_FIND(hh, c->pending, &token, 8, p);
    if (p) {
        HASH_DEL(c->pending, p);
        free(p);
    }
}

/*
 * Through libcoap's own call: coap_send() of a GET with Observe=1 (4.3.1)
 * put libcoap's internal token on the wire, which the device did not know,
 * and coap_cancel_observe() also lets libcoap drop its record of the
 * observation.
 */
void
coap_side_cancel_observe(coap_session_t *session, uint64_t token)
{
    uint8_t tok[8];
    coap_binary_t bin = { sizeof(tok), tok };

    token_bytes(token, tok);
    coap_cancel_observe(session, &bin, COAP_MESSAGE_NON);
}

void
coap_side_send_ack(coap_session_t *session, uint16_t mid)
{
    /* coap_send_ack() takes the CON it answers; only its Message ID and
     * type are read. */
    coap_pdu_t *con = coap_pdu_init(COAP_MESSAGE_CON, COAP_EMPTY_CODE, mid, 4);

    if (con) {
        coap_send_ack(session, con);
        coap_delete_pdu(con);
    }
}

bool
coap_side_token_live(coap_side_t *c, uint64_t token, coap_session_t *session)
{
    struct pending *p;

    if (!token || !c || !session)
        return false;
    HASH_FIND(hh, c->pending, &token, 8, p);
    return p && p->session == session;
}

int
coap_side_send(coap_side_t *c, coap_session_t *session, coap_pdu_t *pdu,
               uint64_t token)
{
    if (coap_send(session, pdu) == COAP_INVALID_MID) {
        coap_side_forget(c, token);
        return -1;
    }
    return 0;
}

static struct pending *
find_pending(coap_side_t *c, const coap_pdu_t *pdu, coap_session_t *session)
{
    struct pending *p;
    bool ok;
    uint64_t token = token_from_pdu(pdu, &ok);

    if (!ok)
        return NULL;
    HASH_FIND(hh, c->pending, &token, 8, p);
    /* A token is only valid on the session it was sent on. */
    return p && p->session == session ? p : NULL;
}

/* Forgets every token of a session libcoap is about to free. */
static void
forget_session(coap_side_t *c, coap_session_t *session)
{
    struct pending *p, *tmp;

    HASH_ITER(hh, c->pending, p, tmp) {
        if (p->session == session)
            p->session = NULL;  /* owners forget them; never match again */
    }
}

/* --- strings for logs -------------------------------------------------- */

const char *
coap_side_peer(coap_session_t *session, char *buf, size_t cap)
{
    const coap_address_t *a = coap_session_get_addr_remote(session);
    size_t n = a ? coap_print_addr(a, (unsigned char *)buf, cap - 1) : 0;

    buf[n] = '\0';
    return buf;
}

const char *
coap_side_identity(coap_session_t *session, char *buf, size_t cap)
{
    const coap_bin_const_t *id = coap_session_get_psk_identity(session);
    coap_side_t *c = coap_get_app_data(coap_session_get_context(session));
    struct cert_id *ci = NULL;

    if ((!id || !id->length) && c)
        HASH_FIND_PTR(c->cert_ids, &session, ci);
    if (ci) {
        if (strlen(ci->id) >= cap)
            return NULL;
        memcpy(buf, ci->id, strlen(ci->id) + 1);
        return buf;
    }
    if (!id || !id->length || id->length >= cap)
        return NULL;
    memcpy(buf, id->s, id->length);
    buf[id->length] = '\0';
    /* An identity with a NUL inside cannot be one of ours. */
    return strlen(buf) == id->length ? buf : NULL;
}

/* Printable form of untrusted identity bytes: never logs raw control
 * characters, and never anything but the identity (keys stay out). */
static void
sanitize(const uint8_t *s, size_t len, char *out, size_t cap)
{
    size_t o = 0;

    for (size_t i = 0; i < len && o + 5 < cap; i++) {
        if (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' && s[i] != '\\')
            out[o++] = (char)s[i];
        else
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", s[i]);
    }
    out[o] = '\0';
}

/* --- DTLS -------------------------------------------------------------- */

static void
handshake_track(coap_side_t *c, coap_session_t *session,
                const coap_bin_const_t *identity)
{
    struct handshake *h;

    HASH_FIND_PTR(c->handshakes, &session, h);
    if (h)
        return;
    if (!(h = calloc(1, sizeof(*h))))
        return;
    h->session = session;
    h->started_ms = loop_now_ms(c->gw->loop);
    sanitize(identity->s, identity->length, h->id, sizeof(h->id));
    coap_side_peer(session, h->peer, sizeof(h->peer));
    HASH_ADD_PTR(c->handshakes, session, h);
}

static void
handshake_report(coap_side_t *c, struct handshake *h)
{
    c->gw->stats.handshakes_failed++;
    log_ratelimited(&c->handshakes,
                    "dtls: handshake from %s (identity \"%s\") not completed after 5 s: wrong key?",
                    h->peer, h->id);
}

/* Done with a handshake: 'failed' reports it if it never completed. */
static void
handshake_end(coap_side_t *c, coap_session_t *session, bool failed)
{
    struct handshake *h;

    HASH_FIND_PTR(c->handshakes, &session, h);
    if (!h)
        return;
    if (failed && !c->gw->stopping)
        handshake_report(c, h);
    HASH_DEL(c->handshakes, h);
    free(h);
}

static void
handshake_sweep(loop_t *loop, void *arg)
{
    coap_side_t *c = arg;
    struct handshake *h, *tmp;
    uint64_t now = loop_now_ms(loop);

    HASH_ITER(hh, c->handshakes, h, tmp) {
        if (now - h->started_ms >= HANDSHAKE_SUSPECT_MS) {
            handshake_report(c, h);
            HASH_DEL(c->handshakes, h);
            free(h);
        }
    }
    c->sweep_timer = loop_add_timer(loop, HANDSHAKE_SWEEP_MS, handshake_sweep, c);
}

static const coap_bin_const_t *
psk_lookup(coap_bin_const_t *identity, coap_session_t *session, void *arg)
{
    coap_side_t *c = arg;
    size_t len = 0;
    const uint8_t *key = c->keys ? keystore_lookup(c->keys, identity->s,
                                                   identity->length, &len) : NULL;

    if (!key) {
        char id[200], peer[64];

        c->gw->stats.psk_unknown_identity++;
        sanitize(identity->s, identity->length, id, sizeof(id));
        log_ratelimited(&c->gw->stats.psk_unknown_identity,
                        "dtls: handshake from %s refused: unknown PSK identity \"%s\"",
                        coap_side_peer(session, peer, sizeof(peer)), id);
        return NULL;
    }
    c->key.s = key;
    c->key.length = len;
    handshake_track(c, session, identity);
    return &c->key;
}

/* Copies an ASN.1 string as UTF-8 if it holds no NUL; false otherwise. */
static bool
asn1_text(ASN1_STRING *s, char *out, size_t cap)
{
    unsigned char *utf8 = NULL;
    int n = ASN1_STRING_to_UTF8(&utf8, s);
    bool ok = n > 0 && (size_t)n < cap && memchr(utf8, 0, (size_t)n) == NULL;

    if (ok) {
        memcpy(out, utf8, (size_t)n);
        out[n] = '\0';
    }
    OPENSSL_free(utf8);
    return ok;
}

/*
 * The device id a certificate names: its first DNS subjectAltName, else its
 * subject commonName - read from the certificate itself, not from the
 * one-line text of the subject (where "O=CN=meter-2" would pass for a CN).
 * A subject with more than one CN names nobody.
 */
static bool
cert_identity(const uint8_t *der, size_t len, char *out, size_t cap)
{
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    GENERAL_NAMES *sans;
    X509_NAME *subject;
    bool ok = false;
    int i;

    if (!x)
        return false;
    if ((sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL))) {
        int n = sk_GENERAL_NAME_num(sans);
        bool found = false;

        for (i = 0; i < n; i++) {
            GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);

            if (gn->type == GEN_DNS) {
                /* The first DNS name decides, usable or not. */
                found = true;
                ok = asn1_text(gn->d.dNSName, out, cap);
                break;
            }
        }
        GENERAL_NAMES_free(sans);
        if (found)
            goto out;
    }
    subject = X509_get_subject_name(x);
    i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (i >= 0 && X509_NAME_get_index_by_NID(subject, NID_commonName, i) < 0)
        ok = asn1_text(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i)),
                       out, cap);
out:
    X509_free(x);
    ERR_clear_error();
    return ok;
}

/*
 * Called by libcoap for each certificate of the chain once OpenSSL has
 * checked it against our store (expiry, signature, CRL).  The device's own
 * certificate (depth 0) names the device.
 */
static int
cert_cn(const char *cn_text, const uint8_t *asn1, size_t asn1_len,
        coap_session_t *session, unsigned depth, int validated, void *arg)
{
    coap_side_t *c = arg;
    struct cert_id *ci;
    char peer[64], cn[TOPIC_ID_MAX + 1];
    bool named;

    (void)cn_text;
    if (depth > 0)
        return validated;
    named = asn1 && cert_identity(asn1, asn1_len, cn, sizeof(cn));
    if (!validated || !named || !topic_id_valid(cn, strlen(cn))) {
        c->gw->stats.handshakes_failed++;
        log_ratelimited(&c->cert_ids, "dtls: certificate from %s refused: %s",
                        coap_side_peer(session, peer, sizeof(peer)),
                        !validated ? "not valid for coap.ca_file"
                                   : "its CN/DNS name is not a usable device id");
        return 0;
    }
    HASH_FIND_PTR(c->cert_ids, &session, ci);
    if (!ci && !(ci = calloc(1, sizeof(*ci))))
        return 0;
    if (!ci->session) {
        ci->session = session;
        HASH_ADD_PTR(c->cert_ids, session, ci);
    }
    snprintf(ci->id, sizeof(ci->id), "%s", cn);
    return 1;
}

static void
cert_forget(coap_side_t *c, coap_session_t *session)
{
    struct cert_id *ci;

    HASH_FIND_PTR(c->cert_ids, &session, ci);
    if (ci) {
        HASH_DEL(c->cert_ids, ci);
        free(ci);
    }
}

static void
handshake_failed(coap_side_t *c, coap_session_t *session)
{
    const coap_bin_const_t *identity = coap_session_get_psk_identity(session);
    char id[200] = "", peer[64];
    size_t len;

    c->gw->stats.handshakes_failed++;
    if (identity && c->keys &&
        !keystore_lookup(c->keys, identity->s, identity->length, &len))
        return;     /* unknown identity: already said in psk_lookup */
    if (identity)
        sanitize(identity->s, identity->length, id, sizeof(id));
    log_ratelimited(&c->gw->stats.handshakes_failed,
                    "dtls: handshake from %s failed (identity \"%s\"): wrong key or protocol error",
                    coap_side_peer(session, peer, sizeof(peer)), id);
}

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
established_find(coap_side_t *c, coap_session_t *session, struct peer_key *k,
                 struct established **e)
{
    const coap_address_t *a = coap_session_get_addr_remote(session);

    *e = NULL;
    if (!a || !peer_key_of(&a->addr.sa, k))
        return false;
    HASH_FIND(hh, c->established, k, sizeof(*k), *e);
    return true;
}

static void
established_add(coap_side_t *c, coap_session_t *session)
{
    struct established *e;
    struct peer_key k;

    if (!established_find(c, session, &k, &e))
        return;
    if (!e) {
        if (!(e = calloc(1, sizeof(*e))))
            return;
        e->key = k;
        HASH_ADD(hh, c->established, key, sizeof(k), e);
    }
    e->session = session;
}

static void
established_del(coap_side_t *c, coap_session_t *session)
{
    struct established *e;
    struct peer_key k;

    if (established_find(c, session, &k, &e) && e && e->session == session) {
        HASH_DEL(c->established, e);
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
tune_socket(coap_side_t *c, int fd)
{
    int size = 4 << 20;

    for (size_t i = 0; i < c->n_tuned; i++)
        if (c->tuned_fds[i] == fd)
            return;
    if (c->n_tuned == sizeof(c->tuned_fds) / sizeof(c->tuned_fds[0]))
        return;
    c->tuned_fds[c->n_tuned++] = fd;
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
 * Looks at the next datagram on an endpoint socket without taking it.
 * libcoap's epoll events carry its coap_socket_t, whose first member is
 * the fd (4.3.1 through 4.3.4).
 */
static void
check_rehandshake(coap_side_t *c, const struct epoll_event *ev)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    uint8_t buf[32];
    struct established *e;
    struct peer_key k;
    ssize_t n;
    char peer[64];

    if (!ev->data.ptr || !(ev->events & EPOLLIN))
        return;
    tune_socket(c, *(const int *)ev->data.ptr);
    if (!c->established)
        return;
    n = recvfrom(*(const int *)ev->data.ptr, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT,
                 (struct sockaddr *)&ss, &sl);
    if (!is_client_hello(buf, n) || !peer_key_of((struct sockaddr *)&ss, &k))
        return;
    HASH_FIND(hh, c->established, &k, sizeof(k), e);
    if (!e)
        return;
    c->gw->stats.sessions_reset++;
    log_info("dtls: %s sent a new ClientHello on its established session "
             "(rebooted?): retiring the old session",
             coap_side_peer(e->session, peer, sizeof(peer)));
    coap_session_t *old = e->session;
    HASH_DEL(c->established, e);
    free(e);
    coap_session_disconnected(old, COAP_NACK_TLS_FAILED);
    /* Frees sessions in state NONE now, before the hello is read. */
    coap_tick_t now;
    coap_ticks(&now);
    coap_io_prepare_epoll(c->ctx, now);
}

static void
hello_forget(coap_side_t *c, coap_session_t *session)
{
    struct hello *h;

    HASH_FIND_PTR(c->hellos, &session, h);
    if (!h)
        return;
    HASH_DEL(c->hellos, h);
    DL_DELETE(c->hello_fifo, h);
    c->n_hellos--;
    free(h);
}

static void
hello_track(coap_side_t *c, coap_session_t *session)
{
    size_t limit = (size_t)c->gw->cfg->coap.max_handshakes / 2;
    struct hello *h;

    if (coap_session_get_type(session) != COAP_SESSION_TYPE_HELLO)
        return;
    if ((h = calloc(1, sizeof(*h)))) {
        h->session = session;
        HASH_ADD_PTR(c->hellos, session, h);
        DL_APPEND(c->hello_fifo, h);
        c->n_hellos++;
    }
    while (c->n_hellos > limit && c->hello_fifo) {
        coap_session_t *old = c->hello_fifo->session;

        hello_forget(c, old);
        if (old == session || coap_session_get_type(old) != COAP_SESSION_TYPE_HELLO)
            continue;
        c->gw->stats.handshakes_evicted++;
        log_ratelimited(&c->gw->stats.handshakes_evicted,
                        "dtls: over %zu unanswered ClientHellos (spoofed flood?): "
                        "evicting the oldest", limit);
        /* State NONE: libcoap frees it at the end of this batch. */
        coap_session_disconnected(old, COAP_NACK_TLS_FAILED);
    }
}

static int
on_event(coap_session_t *session, const coap_event_t event)
{
    coap_side_t *c = coap_get_app_data(coap_session_get_context(session));

    switch (event) {
    case COAP_EVENT_DTLS_CONNECTED:
        c->gw->stats.handshakes_ok++;
        hello_forget(c, session);
        handshake_end(c, session, false);
        established_add(c, session);
        break;
    case COAP_EVENT_DTLS_ERROR:
        if (coap_session_get_state(session) != COAP_SESSION_STATE_ESTABLISHED) {
            handshake_end(c, session, false);
            handshake_failed(c, session);
        }
        break;
    case COAP_EVENT_SERVER_SESSION_NEW:
        c->sessions++;
        hello_track(c, session);
        break;
    case COAP_EVENT_SERVER_SESSION_DEL:
        if (c->sessions)
            c->sessions--;
        c->gw->stats.sessions_closed++;
        hello_forget(c, session);
        cert_forget(c, session);
        handshake_end(c, session, true);
        established_del(c, session);
        forget_session(c, session);
        devices_session_gone(c->gw->devices, session);
        break;
    case COAP_EVENT_DTLS_CLOSED:
    case COAP_EVENT_SESSION_CLOSED:
        established_del(c, session);
        devices_session_gone(c->gw->devices, session);
        break;
    default:
        break;
    }
    return 0;
}

/* --- libcoap 4.3.1 duplicate-CON bug ------------------------------------- */

/*
 * libcoap <= 4.3.4 (issue #1306, fixed in 4.3.5 by c7c3275e) drops a
 * repeated CON response whose Message ID equals session->last_con_mid
 * *without acknowledging it again*.  When our ACK of a CON notification is
 * lost, the device retransmits in vain, holds back its other CON
 * notifications for 62-93 s and then drops the observation: measured at
 * 20 % loss, observations went silent for 30-90 s at a time.
 *
 * The fix is to forget last_con_mid once we have handled the notification,
 * so that a retransmission reaches our handler (which drops it as stale by
 * RFC 7641 3.4) and is acknowledged.  The field is internal.  For 4.3.1
 * only, we locate it from the layout of struct coap_session_t in that
 * release: 76 bytes after the app-data pointer (which we set, so we can
 * find it), and we check that layout against three fields the public API
 * reads - ack_timeout (app + 8), max_retransmit (app + 16) - and against
 * the Message ID libcoap has just stored.  Any mismatch turns the
 * workaround off for good, with one log line.
 */
#define COAP431_ACK_TIMEOUT_OFF     8
#define COAP431_MAX_RETRANSMIT_OFF  16
#define COAP431_LAST_CON_MID_OFF    76
#define COAP431_SCAN_MAX            4096

static int *
last_con_mid_field(coap_side_t *c, coap_session_t *s, int mid)
{
#if defined(LIBCOAP_VERSION) && LIBCOAP_VERSION == 4003001U
    void *app = coap_session_get_app_data(s);
    coap_fixed_point_t at = coap_session_get_ack_timeout(s);
    uint16_t mr = coap_session_get_max_retransmit(s);
    char *base = (char *)s;
    coap_fixed_point_t at_seen;
    uint16_t mr_seen;
    int mid_seen;

    if (c->con_mid_offset == -2 || !app)
        return NULL;
    if (c->con_mid_offset == -1) {
        /* The app pointer is 8-aligned and inside the struct: the scan
         * stops there and never reads past it. */
        for (long off = 0; off < COAP431_SCAN_MAX; off += 8) {
            void *v;

            memcpy(&v, base + off, sizeof(v));
            if (v == app) {
                c->con_mid_offset = off + 8 /* sizeof app */;
                break;
            }
        }
        if (c->con_mid_offset == -1)
            goto off;
    }
    memcpy(&at_seen, base + c->con_mid_offset - 8 + COAP431_ACK_TIMEOUT_OFF, sizeof(at_seen));
    memcpy(&mr_seen, base + c->con_mid_offset - 8 + COAP431_MAX_RETRANSMIT_OFF, sizeof(mr_seen));
    memcpy(&mid_seen, base + c->con_mid_offset - 8 + COAP431_LAST_CON_MID_OFF, sizeof(mid_seen));
    if (memcmp(&at, &at_seen, sizeof(at)) != 0 || mr != mr_seen || mid != mid_seen)
        goto off;
    return (int *)(base + c->con_mid_offset - 8 + COAP431_LAST_CON_MID_OFF);
off:
    if (c->con_mid_offset != -2)
        log_warnx("coap: libcoap session layout not as expected; lost ACKs of CON "
                  "notifications will stall observations (libcoap issue #1306)");
    c->con_mid_offset = -2;
    return NULL;
#else
    (void)c;
    (void)s;
    (void)mid;
    return NULL;
#endif
}

/* After a CON response was seen: let its retransmission through. */
static void
forget_last_con_mid(coap_side_t *c, coap_session_t *s, const coap_pdu_t *rcvd)
{
    int *field;

    if (coap_pdu_get_type(rcvd) != COAP_MESSAGE_CON)
        return;
    if ((field = last_con_mid_field(c, s, (int)coap_pdu_get_mid(rcvd)))) {
        int none = -1;      /* no Message ID is -1 */

        memcpy(field, &none, sizeof(none));
    }
}

/* --- responses ----------------------------------------------------------- */

static coap_response_t
on_response(coap_session_t *session, const coap_pdu_t *sent,
            const coap_pdu_t *rcvd, const coap_mid_t mid)
{
    coap_side_t *c = coap_get_app_data(coap_session_get_context(session));
    struct pending *p = find_pending(c, rcvd, session);

    (void)sent;
    (void)mid;
    /*
     * Whatever we answer (ACK, or RST), a retransmission of this CON must
     * reach us again, or a lost answer stalls the device (#1306 above).
     * That includes the RST for a notification of an observation we have
     * replaced: without it the device retried in vain for up to 93 s, its
     * other notifications queued behind (NSTART = 1), and the observations
     * of that device stayed dead (test_packet_loss_short, 2 runs in 9).
     */
    forget_last_con_mid(c, session, rcvd);
    if (!p || !p->owner) {
        c->gw->stats.unknown_token++;
        /* RFC 7641 3.6: reject a notification we did not ask for, so the
         * device stops sending it. */
        return coap_pdu_get_type(rcvd) == COAP_MESSAGE_CON ||
               coap_pdu_get_type(rcvd) == COAP_MESSAGE_NON
                   ? COAP_RESPONSE_FAIL : COAP_RESPONSE_OK;
    }
    if (p->kind == REQ_OBSERVE) {
        if (!observe_on_response(p->owner, session, rcvd))
            return COAP_RESPONSE_FAIL;
    } else {
        void *cmd = p->owner;

        coap_side_forget(c, p->token);   /* one answer per command */
        commands_on_response(cmd, rcvd);
    }
    if (coap_pdu_get_type(rcvd) == COAP_MESSAGE_CON && coap_session_get_app_data(session))
        device_con_response_seen(coap_session_get_app_data(session),
                                 (uint16_t)coap_pdu_get_mid(rcvd), loop_now_ms(c->gw->loop));
    return COAP_RESPONSE_OK;
}

static void
on_nack(coap_session_t *session, const coap_pdu_t *sent,
        const coap_nack_reason_t reason, const coap_mid_t mid)
{
    coap_side_t *c = coap_get_app_data(coap_session_get_context(session));
    struct pending *p;

    (void)mid;
    if (!sent || !(p = find_pending(c, sent, session)) || !p->owner)
        return;
    if (p->kind == REQ_OBSERVE) {
        observe_on_nack(p->owner, reason);
    } else {
        void *cmd = p->owner;

        coap_side_forget(c, p->token);
        commands_on_nack(cmd, reason);
    }
}

/* --- setup --------------------------------------------------------------- */

/*
 * libcoap reads one datagram per endpoint event and ends every
 * coap_io_do_epoll() with a walk over all sessions (coap_io_prepare_io):
 * per datagram, that walk was 24 % of the CPU at 2,000 sessions and made
 * throughput fall with the session count.  So an endpoint's event is
 * repeated in the batch as many times as datagrams are likely waiting.
 * That number is learnt: a repeat that finds the socket empty costs one
 * EAGAIN recvmsg (counted, not logged), and the next batch asks for the
 * number that were really there, doubled while every one was.
 */
static uint64_t
mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#define BACKLOG_HIGH 1024     /* readings waiting for the broker: yield */
#define BACKLOG_LOW  256      /* ... and always resume below this */

static uint64_t
broker_backlog(const coap_side_t *c)
{
    return outq_len(c->gw->outq) + spool_backlog(c->gw->spool);
}

static void
resume_reading(loop_t *loop, void *arg)
{
    coap_side_t *c = arg;
    uint64_t backlog = broker_backlog(c);

    c->resume_timer = 0;
    /* Yielding to the broker: wait until it took what the last batch gave. */
    if (c->yield_until_ms && backlog > c->yield_target && backlog > BACKLOG_LOW &&
        loop_now_ms(loop) < c->yield_until_ms && mqtt_side_connected(c->gw->mqtt)) {
        c->resume_timer = loop_add_timer(loop, 1, resume_reading, c);
        return;
    }
    c->yield_until_ms = 0;
    c->resumed = true;
    loop_mod_fd(loop, c->fd, EPOLLIN);
}

/*
 * When a batch was cheap in datagrams but dear in time, the session walk
 * dominates (thousands of sessions, datagrams arriving one by one).  Then
 * the next batch waits 1 ms so datagrams pile up and share one walk:
 * throughput no longer falls with the number of sessions, at the price of
 * at most 1 ms of latency, and only under that load.
 */
static bool
should_coalesce(const coap_side_t *c)
{
    return !c->resumed && c->last_batch_reads <= 4 && c->last_batch_ns >= 150000;
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
 * still taken in, one batch at a time.
 */
#define YIELD_MAX_MS 20

static bool
should_yield_to_broker(const coap_side_t *c)
{
    return !c->resumed && mqtt_side_connected(c->gw->mqtt) &&
           broker_backlog(c) > BACKLOG_HIGH;
}

static void
start_yield(coap_side_t *c, loop_t *loop)
{
    uint64_t backlog = broker_backlog(c);

    c->yield_target = backlog > c->last_batch_reads ? backlog - c->last_batch_reads : 0;
    c->yield_until_ms = loop_now_ms(loop) + YIELD_MAX_MS;
}

static void
on_coap_fd(loop_t *loop, int fd, uint32_t events, void *arg)
{
    coap_side_t *c = arg;
    struct epoll_event evs[COAP_EPOLL_BATCH];
    struct epoll_event batch[COAP_EPOLL_BATCH * COAP_READS_MAX];
    size_t m = 0, reads = 0, sockets = 0, empty;
    uint64_t t0;
    bool yield;
    int n;

    (void)events;
    yield = should_yield_to_broker(c);
    if ((yield || should_coalesce(c)) && !c->resume_timer) {
        if (yield)
            start_yield(c, loop);
        loop_mod_fd(loop, fd, 0);
        c->resume_timer = loop_add_timer(loop, 1, resume_reading, c);
        return;
    }
    c->resumed = false;
    /* Bounded: one batch per wake-up, so MQTT and timers get their turn. */
    n = epoll_wait(fd, evs, COAP_EPOLL_BATCH, 0);
    for (int i = 0; i < n; i++) {
        unsigned k = 1;

        check_rehandshake(c, &evs[i]);
        if (evs[i].data.ptr && (evs[i].events & EPOLLIN) && !(evs[i].events & EPOLLOUT)) {
            k = c->reads_per_event;
            reads += k;
            sockets++;
        }
        for (unsigned j = 0; j < k; j++)
            batch[m++] = evs[i];
    }
    if (!m)
        return;
    t0 = mono_ns();
    log_coap_eagain_begin();
    coap_io_do_epoll(c->ctx, batch, m);
    empty = log_coap_eagain_end();
    c->last_batch_ns = mono_ns() - t0;
    c->last_batch_reads = reads > empty ? reads - empty : 0;
    if (!sockets)
        return;
    if (empty == 0) {
        /* Every read found a datagram: there may be more next time. */
        c->reads_per_event *= 2;
        if (c->reads_per_event > COAP_READS_MAX)
            c->reads_per_event = COAP_READS_MAX;
    } else {
        size_t found = reads > empty ? reads - empty : 0;

        c->reads_per_event = (unsigned)(found / sockets);
        if (c->reads_per_event < 1)
            c->reads_per_event = 1;
    c->con_mid_offset = -1;
    }
}

static int
parse_listen(const char *spec, coap_address_t *addr)
{
    char host[256];
    const char *port;
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM,
                              .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE };
    struct addrinfo *res;
    size_t hl;

    if (spec[0] == '[') {
        const char *end = strchr(spec, ']');

        if (!end || end[1] != ':')
            return -1;
        hl = (size_t)(end - spec - 1);
        port = end + 2;
        spec++;
    } else {
        const char *colon = strrchr(spec, ':');

        if (!colon)
            return -1;
        hl = (size_t)(colon - spec);
        port = colon + 1;
    }
    if (hl >= sizeof(host))
        return -1;
    memcpy(host, spec, hl);
    host[hl] = '\0';
    if (getaddrinfo(host, port, &hints, &res) != 0)
        return -1;
    coap_address_init(addr);
    addr->size = res->ai_addrlen;
    memcpy(&addr->addr, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

static int
open_endpoints(coap_side_t *c, char **list, int n, coap_proto_t proto)
{
    for (int i = 0; i < n; i++) {
        coap_address_t addr;

        if (parse_listen(list[i], &addr) < 0) {
            log_warnx("coap: bad listen address %s", list[i]);
            return -1;
        }
        if (!coap_new_endpoint(c->ctx, &addr, proto)) {
            log_warnx("coap: cannot listen on %s", list[i]);
            return -1;
        }
        if (proto == COAP_PROTO_DTLS)
            log_notice("listening on %s (coaps)", list[i]);
        else
            log_warnx("listening on %s: plain CoAP, unencrypted and unauthenticated "
                      "(any host can claim any device id not in the PSK file)", list[i]);
    }
    return 0;
}

/*
 * The trust our device certificates are checked against: coap.ca_file and
 * the CRLs of coap.crl_file, in a store of our own.  libcoap 4.3.1 can only
 * add to the store of its SSL_CTX (a reload would never remove a CA or
 * replace a CRL), so every handshake is given this store instead, and a
 * reload simply builds a new one.  NULL on failure, logged.
 */
static X509_STORE *
build_store(const struct config_coap *cc)
{
    X509_STORE *store = X509_STORE_new();
    BIO *bio;
    X509_CRL *crl;
    int n = 0;

    if (!store || !X509_STORE_load_locations(store, cc->ca_file, NULL)) {
        log_warnx("coap: cannot load ca_file %s", cc->ca_file);
        goto fail;
    }
    if (!cc->crl_file)
        return store;
    if (!(bio = BIO_new_file(cc->crl_file, "r"))) {
        log_warnx("coap: cannot read crl_file %s", cc->crl_file);
        goto fail;
    }
    while ((crl = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL))) {
        X509_STORE_add_crl(store, crl);
        X509_CRL_free(crl);
        n++;
    }
    BIO_free(bio);
    ERR_clear_error();
    if (!n) {
        log_warnx("coap: no CRL in %s", cc->crl_file);
        goto fail;
    }
    X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
    return store;
fail:
    ERR_clear_error();
    X509_STORE_free(store);
    return NULL;
}

/* Called by libcoap for every handshake it sets up. */
static int
attach_store(void *tls_session, coap_dtls_pki_t *setup)
{
    /* libcoap passes its own copy of our settings; the callback argument
     * is copied along with it and is the way back to us. */
    coap_side_t *c = setup->cn_call_back_arg;

    if (c && c->store)
        SSL_set1_verify_cert_store(tls_session, c->store);
    return 1;
}

/* X.509: the gateway's certificate, and device certificates verified
 * against coap.ca_file (with the CRLs that file holds, if any). */
static int
setup_pki(coap_side_t *c)
{
    const struct config_coap *cc = &c->gw->cfg->coap;
    coap_dtls_pki_t *pki = &c->pki;

    if (!cc->cert_file)
        return 0;
    if (cc->ca_file && !(c->store = build_store(cc)))
        return -1;
    memset(pki, 0, sizeof(*pki));
    pki->version = COAP_DTLS_PKI_SETUP_VERSION;
    pki->verify_peer_cert = cc->ca_file != NULL;
    /* In libcoap's words "common CA": what loads ca_file into the store
     * device certificates are verified against. */
    pki->check_common_ca = cc->ca_file != NULL;
    pki->cert_chain_validation = 1;
    pki->cert_chain_verify_depth = 3;
    pki->check_cert_revocation = cc->ca_file && cc->crl_file;
    pki->allow_no_crl = 0;
    pki->validate_cn_call_back = cert_cn;
    pki->cn_call_back_arg = c;
    pki->additional_tls_setup_call_back = attach_store;
    pki->pki_key.key_type = COAP_PKI_KEY_PEM;
    pki->pki_key.key.pem.public_cert = cc->cert_file;
    pki->pki_key.key.pem.private_key = cc->key_file;
    pki->pki_key.key.pem.ca_file = cc->ca_file;
    if (!coap_context_set_pki(c->ctx, pki)) {
        log_warnx("coap: cannot load %s / %s", cc->cert_file, cc->key_file);
        return -1;
    }
    return 0;
}

static int
setup_dtls(coap_side_t *c)
{
    coap_dtls_spsk_t spsk;

    if (setup_pki(c) < 0)
        return -1;
    if (!c->gw->cfg->coap.psk_file)
        return 0;
    memset(&spsk, 0, sizeof(spsk));
    spsk.version = COAP_DTLS_SPSK_SETUP_VERSION;
    spsk.validate_id_call_back = psk_lookup;
    spsk.id_call_back_arg = c;
    /* libcoap 4.3.1 only tells PSK from certificate ClientHellos on one
     * port when a context-wide key is set; psk_lookup() always decides,
     * so this random one is never used to authenticate anybody. */
    if (getrandom(c->unused_key, sizeof(c->unused_key), 0) != sizeof(c->unused_key))
        return -1;
    spsk.psk_info.key.s = c->unused_key;
    spsk.psk_info.key.length = sizeof(c->unused_key);
    if (!coap_context_set_psk2(c->ctx, &spsk)) {
        log_warnx("coap: cannot set up DTLS-PSK");
        return -1;
    }
    return 0;
}

coap_side_t *
coap_side_new(struct gw *gw)
{
    const struct config_coap *cc = &gw->cfg->coap;
    coap_side_t *c = calloc(1, sizeof(*c));

    if (!c)
        return NULL;
    c->gw = gw;
    c->fd = -1;
    c->reads_per_event = 1;
    c->keys = gw->keys;
    if (getrandom(&c->token_base, sizeof(c->token_base), 0) != sizeof(c->token_base))
        c->token_base = (uint64_t)loop_wall_s() * 2654435761u;
    if (!(c->ctx = coap_new_context(NULL)))
        goto fail;
    coap_set_app_data(c->ctx, c);
    coap_context_set_block_mode(c->ctx, COAP_BLOCK_USE_LIBCOAP | COAP_BLOCK_SINGLE_BODY);
    coap_context_set_max_handshake_sessions(c->ctx, (unsigned)cc->max_handshakes);
    coap_context_set_max_idle_sessions(c->ctx, (unsigned)cc->max_sessions);
    coap_context_set_session_timeout(c->ctx, (unsigned)cc->session_timeout);
    coap_register_response_handler(c->ctx, on_response);
    coap_register_nack_handler(c->ctx, on_nack);
    coap_register_event_handler(c->ctx, on_event);
    if (setup_dtls(c) < 0 ||
        open_endpoints(c, cc->listen, cc->n_listen, COAP_PROTO_DTLS) < 0 ||
        open_endpoints(c, cc->plain_listen, cc->n_plain_listen, COAP_PROTO_UDP) < 0 ||
        coap_handlers_register(c->ctx) < 0)
        goto fail;
    c->sweep_timer = loop_add_timer(gw->loop, HANDSHAKE_SWEEP_MS, handshake_sweep, c);
    c->fd = coap_context_get_coap_fd(c->ctx);
    if (c->fd < 0 || loop_add_fd(gw->loop, c->fd, EPOLLIN, on_coap_fd, c) < 0) {
        log_warnx("coap: libcoap has no epoll fd (built without epoll?)");
        goto fail;
    }
    return c;
fail:
    coap_side_free(c);
    return NULL;
}

void
coap_side_set_keystore(coap_side_t *c, keystore_t *ks)
{
    c->keys = ks;
}

int
coap_side_reload_pki(coap_side_t *c)
{
    if (!c->gw->cfg->coap.cert_file)
        return 0;
    const struct config_coap *cc = &c->gw->cfg->coap;
    X509_STORE *store = NULL;

    /* New handshakes get the new certificate, CA and CRL; established
     * sessions keep what they were verified with. */
    if (cc->ca_file && !(store = build_store(cc)))
        return -1;
    if (!coap_context_set_pki(c->ctx, &c->pki)) {
        X509_STORE_free(store);
        return -1;
    }
    X509_STORE_free(c->store);  /* handshakes in progress hold their own reference */
    c->store = store;
    return 0;
}

size_t
coap_side_sessions(const coap_side_t *c)
{
    return c->sessions;
}

void
coap_side_free(coap_side_t *c)
{
    struct pending *p, *tmp;
    struct handshake *h, *htmp;

    if (!c)
        return;
    if (c->fd >= 0)
        loop_del_fd(c->gw->loop, c->fd);
    loop_cancel_timer(c->gw->loop, c->sweep_timer);
    loop_cancel_timer(c->gw->loop, c->resume_timer);
    X509_STORE_free(c->store);
    if (c->ctx)
        coap_free_context(c->ctx);
    HASH_ITER(hh, c->handshakes, h, htmp) {
        HASH_DEL(c->handshakes, h);
        free(h);
    }
    {
        struct cert_id *ci, *citmp;

        HASH_ITER(hh, c->cert_ids, ci, citmp) {
            HASH_DEL(c->cert_ids, ci);
            free(ci);
        }
    }
    {
        struct hello *hl, *hltmp;

        HASH_ITER(hh, c->hellos, hl, hltmp) {
            HASH_DEL(c->hellos, hl);
            free(hl);
        }
    }
    {
        struct established *e, *etmp;

        HASH_ITER(hh, c->established, e, etmp) {
            HASH_DEL(c->established, e);
            free(e);
        }
    }
    HASH_ITER(hh, c->pending, p, tmp) {
        HASH_DEL(c->pending, p);
        free(p);
    }
    free(c);
}

/* For the handlers: the gateway behind a libcoap context. */
struct gw *
coap_side_gw(coap_context_t *ctx)
{
    coap_side_t *c = coap_get_app_data(ctx);

    return c ? c->gw : NULL;
}
