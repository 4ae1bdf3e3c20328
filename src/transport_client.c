/*
 * transport_client.c - client sessions on the gateway's own context, for
 * the devices it dials out to: plain CoAP, DTLS with a PSK identity of
 * ours (its key from coap.psk_file), or DTLS with the gateway's
 * certificate, the device's checked against coap.ca_file.  Responses on
 * them are routed by token like any others (transport_tokens.c), and
 * their end reaches the session listener like a device's session.
 *
 * Layer: transport
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>

#include "coap2mqtt/keystore.h"
#include "coap2mqtt/log.h"
#include "transport_internal.h"

/*
 * getaddrinfo() blocks the loop while the resolver works.  That is
 * accepted: once per attempt, and attempts are spaced by the dial-out
 * backoff (first retry within 5 s, then up to 60 s).  A numeric address
 * never asks the resolver.
 */
static int
resolve(const char *host, int port, unsigned pick, coap_address_t *addr)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM,
                              .ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG };
    struct addrinfo *res, *ai;
    unsigned n = 0;
    char serv[8];
    int rc;

    snprintf(serv, sizeof(serv), "%d", port);
    if ((rc = getaddrinfo(host, serv, &hints, &res)) != 0) {
        log_warnx("coap: cannot resolve %s: %s", host, gai_strerror(rc));
        return -1;
    }
    /* A name with several addresses (IPv6 and IPv4) gets each in turn,
     * one per attempt: UDP does not say which one the device is on. */
    for (ai = res; ai; ai = ai->ai_next)
        n++;
    for (ai = res, pick %= n; pick; pick--)
        ai = ai->ai_next;
    coap_address_init(addr);
    addr->size = ai->ai_addrlen;
    memcpy(&addr->addr, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

static bool
numeric(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];

    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static coap_session_t *
open_psk(transport_t *t, const coap_address_t *dst, const char *host,
         const char *identity)
{
    coap_dtls_cpsk_t setup = { .version = COAP_DTLS_CPSK_SETUP_VERSION };
    size_t klen;
    const uint8_t *key = t->keys ? keystore_lookup(t->keys, (const uint8_t *)identity,
                                                   strlen(identity), &klen) : NULL;
    char sni[256];

    if (!key) {
        log_warnx("coap: PSK identity \"%s\" is not in coap.psk_file", identity);
        return NULL;
    }
    /* RFC 6066 3: a host name only, never an address. */
    snprintf(sni, sizeof(sni), "%s", host);
    if (!numeric(host))
        setup.client_sni = sni;
    setup.psk_info.identity.s = (const uint8_t *)identity;
    setup.psk_info.identity.length = strlen(identity);
    setup.psk_info.key.s = key;
    setup.psk_info.key.length = klen;
    return coap_new_client_session_psk2(t->ctx, NULL, dst, COAP_PROTO_DTLS, &setup);
}

/*
 * The gateway's own X.509 settings (transport_dtls.c), device trust and
 * all: libcoap 4.3 keeps one PKI setup per context and a client session
 * overwrites it with its own, so anything else would change how devices
 * that dial in are checked.  The id the device's certificate names is
 * recorded as for those, and the one who dialled compares it.  No SNI: it
 * would go into that shared setup as well.
 */
static coap_session_t *
open_pki(transport_t *t, const coap_address_t *dst)
{
    if (!t->pki.version) {
        log_warnx("coap: X.509 dial-out needs coap.cert_file and coap.key_file");
        return NULL;
    }
    return coap_new_client_session_pki(t->ctx, NULL, dst, COAP_PROTO_DTLS, &t->pki);
}

/* An OSCORE session when 'oscore_id', else as 'secure' and 'psk_identity'
 * say. */
static coap_session_t *
open_session(transport_t *t, const char *host, int port, unsigned attempt,
             bool secure, const char *psk_identity, const char *oscore_id)
{
    coap_address_t dst;
    coap_session_t *s;

    if (resolve(host, port, attempt, &dst) < 0)
        return NULL;
    if (oscore_id)
        s = transport__oscore_client(t, &dst, oscore_id);
    else if (!secure)
        s = coap_new_client_session(t->ctx, NULL, &dst, COAP_PROTO_UDP);
    else if (psk_identity)
        s = open_psk(t, &dst, host, psk_identity);
    else
        s = open_pki(t, &dst);
    if (!s) {
        log_warnx("coap: cannot open a session to %s port %d", host, port);
        return NULL;
    }
    /* Observations are ended by observe.c, on the wire when it still
     * can; libcoap's own NON cancel when the session is freed queued a
     * node that was never freed (LeakSanitizer, 4.3.1). */
    coap_session_set_no_observe_cancel(s);
    return s;
}

coap_session_t *
transport_client_open(transport_t *t, const char *host, int port, unsigned attempt,
                      bool secure, const char *psk_identity)
{
    return open_session(t, host, port, attempt, secure, psk_identity, NULL);
}

coap_session_t *
transport_client_open_oscore(transport_t *t, const char *host, int port,
                             unsigned attempt, const char *oscore_id)
{
    return open_session(t, host, port, attempt, false, NULL, oscore_id);
}

void
transport_client_close(transport_t *t, coap_session_t *session)
{
    if (!session)
        return;
    transport__tokens_session_gone(t, session);
    transport__session_gone(t, session);
    transport__cert_forget(t, session);
    transport__oscore_session_gone(t, session);
    /* What is queued on it goes first (its NACKs match no token of ours
     * any more): a CON queued for retransmission holds a reference, and
     * one re-queued on a DTLS session that died of ICMP was never freed
     * (LeakSanitizer, 4.3.1).  Then the last reference: libcoap frees it. */
    coap_session_disconnected(session, COAP_NACK_NOT_DELIVERABLE);
    coap_session_release(session);
}

/* Events of a client session: its end reaches the listener, once
 * established; before that, the request waiting for the handshake is
 * NACKed by libcoap, and that tells the one who dialled. */
int
transport__client_event(transport_t *t, coap_session_t *session, coap_event_t event)
{
    switch (event) {
    case COAP_EVENT_DTLS_CONNECTED:
        t->gw->stats.handshakes_ok++;
        break;
    case COAP_EVENT_DTLS_ERROR:
        if (coap_session_get_state(session) != COAP_SESSION_STATE_ESTABLISHED)
            t->gw->stats.handshakes_failed++;
        transport__session_gone(t, session);
        break;
    case COAP_EVENT_DTLS_CLOSED:
    case COAP_EVENT_SESSION_CLOSED:
    case COAP_EVENT_SESSION_FAILED:
        transport__session_gone(t, session);
        break;
    default:
        break;
    }
    return 0;
}
