/*
 * handlers.c - the bare server's libcoap set-up and handlers: DTLS (PSK with
 * a per-identity lookup as the gateway does, or ECDSA certificates), /rd
 * answered 2.01 (and observed), /ps answered 2.04, notifications counted.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coap2mqtt/linkformat.h"
#include "coap2mqtt/log.h"
#include "bare.h"

unsigned long
bare_readings(const struct bare *b)
{
    return b->pushes + b->notifications;
}

/* The first reading starts the clock of the measurement window. */
static void
reading(struct bare *b)
{
    if (!b->first_us)
        b->first_us = tool_now_us();
}

static void
observe_links(struct bare *b, coap_session_t *session, const struct lf_link *l,
              int n)
{
    for (int i = 0; i < n; i++) {
        uint8_t tok[8];
        uint64_t t = ++b->token_ctr;
        coap_pdu_t *pdu;

        if (!l[i].obs)
            continue;
        memcpy(tok, &t, sizeof(tok));
        pdu = tool_request(session, COAP_MESSAGE_CON, COAP_REQUEST_CODE_GET, tok,
                           sizeof(tok));
        if (!pdu)
            return;
        tool_add_uint_option(pdu, COAP_OPTION_OBSERVE, COAP_OBSERVE_ESTABLISH);
        tool_add_uri_path(pdu, l[i].path);
        if (coap_send(session, pdu) != COAP_INVALID_MID)
            b->observes_sent++;
    }
}

static void
on_rd(coap_resource_t *r, coap_session_t *session, const coap_pdu_t *req,
      const coap_string_t *query, coap_pdu_t *response)
{
    struct bare *b = tool_session_app(session);
    struct lf_link links[LINKFORMAT_MAX_LINKS];
    const uint8_t *data;
    size_t len = 0, off, total;
    const char *err;
    int n = 0;

    (void)r;
    (void)query;
    b->registrations++;
    if (coap_get_data_large(req, &len, &data, &off, &total) && len)
        n = linkformat_parse((const char *)data, len, links, LINKFORMAT_MAX_LINKS, &err);
    if (n < 0) {
        coap_pdu_set_code(response, COAP_RESPONSE_CODE(400));
        return;
    }
    if (b->o->observe)
        observe_links(b, session, links, n);
    coap_add_option(response, COAP_OPTION_LOCATION_PATH, 2, (const uint8_t *)"rd");
    coap_pdu_set_code(response, COAP_RESPONSE_CODE(201));
}

static void
on_ps(coap_resource_t *r, coap_session_t *session, const coap_pdu_t *req,
      const coap_string_t *query, coap_pdu_t *response)
{
    struct bare *b = tool_session_app(session);

    (void)r;
    (void)req;
    (void)query;
    b->pushes++;
    reading(b);
    coap_pdu_set_code(response, COAP_RESPONSE_CODE(204));
}

/* A notification of an observed sensor (or an answer to the GET). */
static void
on_response(void *app, const coap_pdu_t *sent, const coap_pdu_t *rcvd)
{
    struct bare *b = app;

    (void)sent;
    if (COAP_RESPONSE_CLASS(coap_pdu_get_code(rcvd)) == 2) {
        b->notifications++;
        reading(b);
    }
}

/* Handshakes and server sessions, counted. */
static void
on_event(void *app, coap_event_t event)
{
    struct bare *b = app;

    switch (event) {
    case COAP_EVENT_DTLS_CONNECTED:
        b->hs_ok++;
        break;
    case COAP_EVENT_DTLS_ERROR:
        b->hs_failed++;
        break;
    case COAP_EVENT_SERVER_SESSION_NEW:
        if (++b->sessions > b->sessions_max)
            b->sessions_max = b->sessions;
        break;
    case COAP_EVENT_SERVER_SESSION_DEL:
        if (b->sessions)
            b->sessions--;
        break;
    default:
        break;
    }
}

static const struct tool_ctx_events bare_events = {
    .response = on_response,
    .event = on_event,
};

static const coap_bin_const_t *
psk_lookup(coap_bin_const_t *identity, coap_session_t *session, void *arg)
{
    struct bare *b = arg;
    size_t len = 0;
    const uint8_t *k;

    (void)session;
    if (!b->keys) {
        b->key.s = b->o->key;
        b->key.length = b->o->key_len;
        return &b->key;
    }
    k = keystore_lookup(b->keys, identity->s, identity->length, &len);
    if (!k)
        return NULL;
    b->key.s = k;
    b->key.length = len;
    return &b->key;
}

static int
setup_security(struct bare *b)
{
    const struct bare_opts *o = b->o;

    if (o->psk_file || o->key_len) {
        coap_dtls_spsk_t spsk;
        memset(&spsk, 0, sizeof(spsk));
        spsk.version = COAP_DTLS_SPSK_SETUP_VERSION;
        spsk.validate_id_call_back = psk_lookup;
        spsk.id_call_back_arg = b;
        if (o->psk_file && !(b->keys = keystore_load(o->psk_file, NULL, NULL)))
            return -1;
        if (!coap_context_set_psk2(tool_ctx_coap(b->ctx), &spsk))
            return -1;
    }
    if (o->cert) {
        coap_dtls_pki_t pki;
        tool_dtls_pki(&pki, o->ca, o->cert, o->certkey);
        if (!coap_context_set_pki(tool_ctx_coap(b->ctx), &pki))
            return -1;
    }
    return 0;
}

static int
add_resource(struct bare *b, const char *path, coap_method_handler_t h,
             int flags)
{
    coap_resource_t *r = coap_resource_init(coap_make_str_const(path), flags);

    if (!r)
        return -1;
    coap_register_request_handler(r, COAP_REQUEST_POST, h);
    coap_register_request_handler(r, COAP_REQUEST_PUT, h);
    coap_add_resource(tool_ctx_coap(b->ctx), r);
    return 0;
}

int
bare_setup(struct bare *b, tool_loop_t *loop)
{
    coap_resource_t *ps;

    if (!(b->ctx = tool_ctx_new(loop, &bare_events, b, TOOL_CTX_BLOCKWISE)))
        return -1;
    coap_context_set_max_handshake_sessions(tool_ctx_coap(b->ctx),
                                            b->o->max_handshakes);
    if (setup_security(b) < 0) {
        log_warnx("cannot set up DTLS");
        return -1;
    }
    if (!coap_new_endpoint(tool_ctx_coap(b->ctx), &b->o->listen, COAP_PROTO_DTLS)) {
        log_warnx("cannot listen (DTLS)");
        return -1;
    }
    if (add_resource(b, "rd", on_rd, 0) < 0)
        return -1;
    /* /ps/<anything>: the unknown-resource handler sees every other path. */
    ps = coap_resource_unknown_init2(on_ps, 0);
    if (!ps)
        return -1;
    coap_register_request_handler(ps, COAP_REQUEST_POST, on_ps);
    coap_add_resource(tool_ctx_coap(b->ctx), ps);
    return 0;
}
