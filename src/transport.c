/*
 * transport.c - the libcoap context: its settings, the DTLS and plain
 * endpoints, the session events (told to the guards, the token table and
 * the listener above), and the small accessors the rooms above use.
 *
 * Layer: transport (calls base and libcoap; calls up only through the
 * session listener and the handlers registered with each request)
 */
#include <netdb.h>
#include <stdlib.h>
#include <string.h>

#include "coap2mqtt/hostport.h"
#include "coap2mqtt/log.h"
#include "transport_internal.h"

/* --- strings for logs and identities -------------------------------------- */

const char *
transport_peer(coap_session_t *session, char *buf, size_t cap)
{
    const coap_address_t *a = coap_session_get_addr_remote(session);
    size_t n = a ? coap_print_addr(a, (unsigned char *)buf, cap - 1) : 0;

    buf[n] = '\0';
    return buf;
}

const char *
transport_identity(coap_session_t *session, char *buf, size_t cap)
{
    const coap_bin_const_t *id = coap_session_get_psk_identity(session);
    transport_t *t = coap_get_app_data(coap_session_get_context(session));
    const char *cert = NULL;

    if ((!id || !id->length) && t)
        cert = transport__cert_identity(t, session);
    if ((!id || !id->length) && !cert && t)
        cert = transport__oscore_identity(t, session);
    if (cert) {
        if (strlen(cert) >= cap)
            return NULL;
        memcpy(buf, cert, strlen(cert) + 1);
        return buf;
    }
    if (!id || !id->length || id->length >= cap)
        return NULL;
    memcpy(buf, id->s, id->length);
    buf[id->length] = '\0';
    /* An identity with a NUL inside cannot be one of ours. */
    return strlen(buf) == id->length ? buf : NULL;
}

size_t
transport_sessions(const transport_t *t)
{
    return t->sessions;
}

coap_context_t *
transport_context(transport_t *t)
{
    return t->ctx;
}

void
transport_set_session_listener(transport_t *t, transport_session_gone_fn fn, void *arg)
{
    t->session_gone = fn;
    t->session_gone_arg = arg;
}

void
transport_set_established_listener(transport_t *t, transport_session_new_fn fn, void *arg)
{
    t->session_new = fn;
    t->session_new_arg = arg;
}

void
transport_set_backlog(transport_t *t, transport_backlog_fn fn, void *arg)
{
    t->backlog = fn;
    t->backlog_arg = arg;
}

/* --- session events ---------------------------------------------------------- */

void
transport__session_gone(transport_t *t, coap_session_t *session)
{
    if (t->session_gone)
        t->session_gone(t->session_gone_arg, session);
}

static int
on_event(coap_session_t *session, const coap_event_t event)
{
    transport_t *t = coap_get_app_data(coap_session_get_context(session));

    if (coap_session_get_type(session) == COAP_SESSION_TYPE_CLIENT)
        return transport__client_event(t, session, event);
    switch (event) {
    case COAP_EVENT_DTLS_CONNECTED:
        t->gw->stats.handshakes_ok++;
        transport__hello_forget(t, session);
        transport__handshake_end(t, session, false);
        transport__established_add(t, session);
        if (t->session_new && coap_session_get_type(session) == COAP_SESSION_TYPE_SERVER)
            t->session_new(t->session_new_arg, session);
        break;
    case COAP_EVENT_DTLS_ERROR:
        if (coap_session_get_state(session) != COAP_SESSION_STATE_ESTABLISHED) {
            transport__handshake_end(t, session, false);
            transport__handshake_failed(t, session);
        }
        break;
    case COAP_EVENT_SERVER_SESSION_NEW:
        t->sessions++;
        transport__hello_track(t, session);
        if (coap_session_get_proto(session) == COAP_PROTO_DTLS)
            transport__halfopen_add(t, session);
        break;
    case COAP_EVENT_SERVER_SESSION_DEL:
        if (t->sessions)
            t->sessions--;
        t->gw->stats.sessions_closed++;
        transport__hello_forget(t, session);
        transport__cert_forget(t, session);
        transport__handshake_end(t, session, true);
        transport__established_del(t, session);
        transport__tokens_session_gone(t, session);
        transport__oscore_session_gone(t, session);
        transport__session_gone(t, session);
        break;
    case COAP_EVENT_DTLS_CLOSED:
    case COAP_EVENT_SESSION_CLOSED:
        transport__established_del(t, session);
        transport__session_gone(t, session);
        break;
    default:
        break;
    }
    return 0;
}

/* --- endpoints ------------------------------------------------------------- */

static int
parse_listen(const char *spec, coap_address_t *addr)
{
    char host[256];
    const char *port;
    bool v6;
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM,
                              .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE };
    struct addrinfo *res;

    if (hostport_split(spec, host, sizeof(host), &port, &v6) < 0 || !port ||
        getaddrinfo(host, port, &hints, &res) != 0)
        return -1;
    coap_address_init(addr);
    addr->size = res->ai_addrlen;
    memcpy(&addr->addr, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

/*
 * How many endpoints share each DTLS listen address (compat_bind.c: each
 * endpoint's per-new-peer walk covers only its own sessions).  Auto: 8,
 * or fewer when coap.max_sessions is set, because libcoap applies that
 * limit per endpoint (divided here): a share of at least 1,000 sessions
 * keeps an uneven spread from mattering, and a small limit stays exact on
 * one socket.  max_handshakes is not divided: libcoap's per-endpoint count
 * only refuses hellos, while the guard (transport_guard.c) holds the
 * unanswered ones to half of it over all sockets and evicts the oldest,
 * which keeps a flood from locking sensors out; a lower per-socket
 * refusal would do the flood's work for it.
 */
static unsigned
dtls_sockets(const struct config_coap *cc)
{
    unsigned k = 8;

    if (cc->listen_sockets > 0)
        return (unsigned)cc->listen_sockets;
    if (cc->max_sessions > 0 && (unsigned)cc->max_sessions / 1000 < k)
        k = (unsigned)cc->max_sessions / 1000;
    return k ? k : 1;
}

/* A limit libcoap counts per endpoint, for one of t->dtls_sockets. */
static unsigned
per_socket(const transport_t *t, int limit)
{
    return ((unsigned)limit + t->dtls_sockets - 1) / t->dtls_sockets;
}

/* The k endpoints of one DTLS address, on one port (0: the first one's). */
static int
open_shared(transport_t *t, coap_address_t *addr, unsigned k)
{
    for (unsigned i = 0; i < k; i++) {
        coap_endpoint_t *ep;
        int fd;

        compat_bind_share(k > 1);
        ep = coap_new_endpoint(t->ctx, addr, COAP_PROTO_DTLS);
        fd = compat_bind_last_fd();
        compat_bind_share(false);
        if (!ep)
            return -1;
        transport__filter_endpoint(t, fd);
        if (i == 0 && k > 1 && coap_address_get_port(addr) == 0) {
            coap_address_t bound;

            bound.size = sizeof(bound.addr);
            if (fd < 0 || getsockname(fd, &bound.addr.sa, &bound.size) < 0)
                return -1;
            coap_address_set_port(addr, coap_address_get_port(&bound));
        }
    }
    return 0;
}

static int
open_endpoints(transport_t *t, char **list, int n, coap_proto_t proto)
{
    for (int i = 0; i < n; i++) {
        coap_address_t addr;
        int rc;

        if (parse_listen(list[i], &addr) < 0) {
            log_warnx("coap: bad listen address %s", list[i]);
            return -1;
        }
        if (proto == COAP_PROTO_DTLS)
            rc = open_shared(t, &addr, t->dtls_sockets);
        else
            rc = coap_new_endpoint(t->ctx, &addr, proto) ? 0 : -1;
        if (rc < 0) {
            log_warnx("coap: cannot listen on %s", list[i]);
            return -1;
        }
        if (proto == COAP_PROTO_DTLS && t->dtls_sockets > 1)
            log_notice("listening on %s (coaps, %u sockets)", list[i], t->dtls_sockets);
        else if (proto == COAP_PROTO_DTLS)
            log_notice("listening on %s (coaps)", list[i]);
        else
            log_warnx("listening on %s: plain CoAP, unencrypted and unauthenticated "
                      "(any host can claim any device id not in the PSK file)", list[i]);
    }
    return 0;
}

/* --- life ------------------------------------------------------------------ */

static void
apply_settings(transport_t *t, const struct config_coap *cc)
{
    coap_set_app_data(t->ctx, t);
    /* Not COAP_BLOCK_SINGLE_BODY: libcoap 4.3.1 would put a block-wise request
     * body together before any handler runs, allocating whatever size its
     * first block announces, and hand a lone block on as a whole body; it
     * has no hook before that, and the mode is one per session, which
     * carries requests both ways.  Bodies are put together by intake_blocks.c
     * (requests) and transport_blocks.c (answers), under coap.max_payload;
     * libcoap still asks for and sends the blocks. */
    coap_context_set_block_mode(t->ctx, COAP_BLOCK_USE_LIBCOAP);
    coap_context_set_max_handshake_sessions(t->ctx, (unsigned)cc->max_handshakes);
    coap_context_set_max_idle_sessions(t->ctx, per_socket(t, cc->max_sessions));
    coap_context_set_session_timeout(t->ctx, (unsigned)cc->session_timeout);
    coap_register_response_handler(t->ctx, transport__on_response);
    coap_register_nack_handler(t->ctx, transport__on_nack);
    coap_register_event_handler(t->ctx, on_event);
}

void
transport_apply_limits(transport_t *t)
{
    const struct config_coap *cc = &t->gw->cfg->coap;

    /* libcoap reads these when it next counts sessions or handshakes;
     * nothing established is closed by a lower limit. */
    coap_context_set_max_handshake_sessions(t->ctx, (unsigned)cc->max_handshakes);
    coap_context_set_max_idle_sessions(t->ctx, per_socket(t, cc->max_sessions));
    coap_context_set_session_timeout(t->ctx, (unsigned)cc->session_timeout);
}

transport_t *
transport_new(struct gw *gw)
{
    const struct config_coap *cc = &gw->cfg->coap;
    transport_t *t = calloc(1, sizeof(*t));

    if (!t) {
        log_warnx("coap: out of memory");
        return NULL;
    }
    t->gw = gw;
    t->fd = -1;
    t->keys = gw->keys;
    t->dtls_sockets = dtls_sockets(cc);
    transport__tokens_init(t);
    if (!(t->ctx = coap_new_context(NULL))) {
        log_warnx("coap: cannot create the libcoap context");
        goto fail;
    }
    apply_settings(t, cc);
    if (transport__oscore_start(t) < 0 || transport__setup_dtls(t) < 0 ||
        open_endpoints(t, cc->listen, cc->n_listen, COAP_PROTO_DTLS) < 0 ||
        open_endpoints(t, cc->plain_listen, cc->n_plain_listen, COAP_PROTO_UDP) < 0)
        goto fail;
    transport__guard_start(t);
    if (transport__io_start(t) < 0)
        goto fail;
    return t;
fail:
    transport_free(t);
    return NULL;
}

void
transport_free(transport_t *t)
{
    if (!t)
        return;
    transport__io_stop(t);
    if (t->ctx)
        coap_free_context(t->ctx);
    transport__guard_free(t);
    transport__cert_free_all(t);
    transport__tokens_free(t);
    transport__acks_free(t);
    transport__oscore_free(t);
    free(t);
}
