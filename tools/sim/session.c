/*
 * session.c - one sensor's libcoap context (tools/common's tool_ctx) and
 * DTLS-PSK client session, the requests the sensor makes (registration,
 * refresh, pushes) and the callbacks that report their outcome.
 *
 * Callbacks run inside coap_io_process(); they never free the context they
 * run in: a lost session goes up to sensor.c through the sensor's events
 * (s->ev->lost), which only schedules the reconnect for sensor_tick().
 * This file calls nothing in sensor.c.
 *
 * Our request tokens carry what the response is about, so no table of
 * outstanding requests is needed: kind, resource index, seq, a counter.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/ssl.h>

#include "coap2mqtt/log.h"
#include "sim.h"

enum { TK_REGISTER = 0xA1, TK_REFRESH, TK_PUSH_CON, TK_PUSH_NON };
#define TOKEN_LEN 8

static void
make_token(struct sensor *s, uint8_t tok[TOKEN_LEN], int kind, unsigned idx,
           uint32_t seq)
{
    tok[0] = (uint8_t)kind;
    tok[1] = (uint8_t)idx;
    tok[2] = (uint8_t)(seq >> 24);
    tok[3] = (uint8_t)(seq >> 16);
    tok[4] = (uint8_t)(seq >> 8);
    tok[5] = (uint8_t)seq;
    s->token_ctr++;
    tok[6] = (uint8_t)(s->token_ctr >> 8);
    tok[7] = (uint8_t)s->token_ctr;
}

static uint32_t
token_seq(const uint8_t *tok)
{
    return (uint32_t)tok[2] << 24 | (uint32_t)tok[3] << 16 |
           (uint32_t)tok[4] << 8 | tok[5];
}

/* ---- callbacks ---- */

/* Remembers the Location-Path of a 2.01 ("rd/<id>") for refreshes. */
static void
save_location(struct sensor *s, const coap_pdu_t *pdu)
{
    coap_opt_iterator_t it;
    coap_opt_filter_t f;
    coap_opt_t *opt;
    size_t n = 0;

    coap_option_filter_clear(&f);
    coap_option_filter_set(&f, COAP_OPTION_LOCATION_PATH);
    coap_option_iterator_init(pdu, &it, &f);
    while ((opt = coap_option_next(&it))) {
        size_t len = coap_opt_length(opt);
        if (n + len + 2 > sizeof(s->location))
            return;
        if (n)
            s->location[n++] = '/';
        memcpy(s->location + n, coap_opt_value(opt), len);
        n += len;
        s->location[n] = '\0';
    }
}

static void
on_register_response(struct sensor *s, bool refresh, const coap_pdu_t *rcvd)
{
    coap_pdu_code_t code = coap_pdu_get_code(rcvd);
    int64_t now = tool_now_ms();
    char c[8];

    out_code(c, code);
    out_event(s->sim, true, "REGISTERED %s %s", s->id, c);
    s->reg_inflight = false;
    if (COAP_RESPONSE_CLASS(code) == 2) {
        bool first = !s->registered;
        s->sim->cnt.registered++;
        s->registered = true;
        s->backoff_s = 0;
        if (!refresh)
            save_location(s, rcvd);
        s->refresh_ms = now + (int64_t)s->sim->opts.lifetime_s * 800;
        s->reg_retry_ms = SIM_NEVER;
        s->ev->registered(s, first, refresh);
        return;
    }
    s->registered = false;
    s->location[0] = '\0';
    /* A refresh the gateway forgot: register again at once. */
    s->reg_retry_ms = refresh && code == COAP_RESPONSE_CODE(404) ? now
                      : now + 5000 + (int64_t)(s->rng % 1000);
}

static void
on_push_response(struct sensor *s, const uint8_t *tok, const coap_pdu_t *rcvd)
{
    coap_pdu_code_t code = coap_pdu_get_code(rcvd);
    bool con = tok[0] == TK_PUSH_CON;
    bool failed = COAP_RESPONSE_CLASS(code) != 2;
    const char *path = tok[1] < s->nres ? s->res[tok[1]].def->path : "?";
    char c[8];

    if (con && s->push_inflight)
        s->push_inflight--;
    if (!con && !failed)
        return;   /* NON pushes were reported when sent */
    if (failed)
        s->sim->cnt.push_errors++;
    out_code(c, code);
    out_event(s->sim, failed, "PUSH %s %s %u %s", s->id, path, token_seq(tok), c);
}

/* An answer to one of our requests: the token says which. */
static void
on_response(void *app, const coap_pdu_t *sent, const coap_pdu_t *rcvd)
{
    struct sensor *s = app;
    coap_bin_const_t tok = coap_pdu_get_token(rcvd);

    (void)sent;
    if (tok.length != TOKEN_LEN)
        return;
    switch (tok.s[0]) {
    case TK_REGISTER: on_register_response(s, false, rcvd); break;
    case TK_REFRESH:  on_register_response(s, true, rcvd); break;
    case TK_PUSH_CON:
    case TK_PUSH_NON: on_push_response(s, tok.s, rcvd); break;
    default: break;
    }
}

static const char *
nack_text(coap_nack_reason_t reason)
{
    switch (reason) {
    case COAP_NACK_TOO_MANY_RETRIES: return "timeout";
    case COAP_NACK_NOT_DELIVERABLE:  return "not-deliverable";
    case COAP_NACK_RST:              return "rst";
    case COAP_NACK_TLS_FAILED:       return "tls-failed";
    case COAP_NACK_ICMP_ISSUE:       return "icmp";
    default:                         break;   /* newer libcoap has more */
    }
    return "nack";
}

/* A CON of ours unanswered: a notification, a registration or a push. */
static void
on_nack(void *app, const coap_pdu_t *sent, coap_nack_reason_t reason)
{
    struct sensor *s = app;
    coap_bin_const_t tok;
    char why[64];

    if (COAP_RESPONSE_CLASS(coap_pdu_get_code(sent)) >= 2) {
        /*
         * A CON notification nobody acknowledged: the gateway lost our
         * session (restart, reboot).  Like a real device, start over with a
         * new handshake and a registration refresh.
         */
        if (reason == COAP_NACK_TOO_MANY_RETRIES)
            s->ev->lost(s, "notification timeout");
        return;
    }
    tok = coap_pdu_get_token(sent);
    if (tok.length != TOKEN_LEN)
        return;
    if (tok.s[0] == TK_REGISTER || tok.s[0] == TK_REFRESH) {
        s->reg_inflight = false;
        snprintf(why, sizeof(why), "registration %s", nack_text(reason));
        s->ev->lost(s, why);
    } else if (tok.s[0] == TK_PUSH_CON) {
        if (s->push_inflight)
            s->push_inflight--;
        s->sim->cnt.push_errors++;
        out_event(s->sim, true, "PUSH %s %s %u %s", s->id,
                  tok.s[1] < s->nres ? s->res[tok.s[1]].def->path : "?",
                  token_seq(tok.s), nack_text(reason));
        if (reason == COAP_NACK_TOO_MANY_RETRIES && s->sim->opts.max_retransmit >= 0)
            s->ev->lost(s, "push timeout");
    }
}

/* The handshake done, or the session gone. */
static void
on_event(void *app, coap_event_t event)
{
    struct sensor *s = app;

    switch (event) {
    case COAP_EVENT_DTLS_CONNECTED:
        s->connected = true;
        /* CoAP's retransmissions from now on (see session_open). */
        if (s->sim->opts.max_retransmit >= 0)
            coap_session_set_max_retransmit(s->session, (unsigned)s->sim->opts.max_retransmit);
        log_info("%s: DTLS connected", s->id);
        break;
    case COAP_EVENT_DTLS_CLOSED:     s->ev->lost(s, "dtls-closed"); break;
    case COAP_EVENT_DTLS_ERROR:      s->ev->lost(s, "dtls-error"); break;
    case COAP_EVENT_SESSION_CLOSED:  s->ev->lost(s, "session-closed"); break;
    case COAP_EVENT_SESSION_FAILED:  s->ev->lost(s, "session-failed"); break;
    case COAP_EVENT_XMIT_BLOCK_FAIL:
        /*
         * Not an ERROR line: libcoap 4.3.1 also raises it when a new large
         * notification replaces the previous, completely sent body.
         */
        log_info("%s: block-wise transfer dropped", s->id);
        break;
    default:
        break;
    }
}

static const struct tool_ctx_events session_events = {
    .response = on_response,
    .nack = on_nack,
    .event = on_event,
};

/* ---- context and session ---- */

int
session_open(struct sensor *s)
{
    const struct sim_opts *o = &s->sim->opts;
    coap_address_t local = s->local;
    int port = s->reuse_port ? s->reuse_port : o->port;

    s->ctx = tool_ctx_new(s->sim->loop, &session_events, NULL,
                          TOOL_CTX_BLOCKWISE | TOOL_CTX_PROCESS);
    if (!s->ctx)
        return -1;
    coap_address_set_port(&local, (uint16_t)port);
    s->session = tool_ctx_connect_psk(s->ctx, o->have_bind || port ? &local : NULL,
                                      &o->gateway, s->id, s->key, s->key_len, s);
    s->reuse_port = 0;
    if (!s->session) {
        log_warnx("%s: cannot open a session from the bind address", s->id);
        tool_ctx_free(s->ctx);
        s->ctx = NULL;
        return -1;
    }
    /*
     * --max-retransmit is CoAP's MAX_RETRANSMIT, set once the handshake is
     * done: libcoap 4.3.1 counts the DTLS handshake's retransmissions
     * against the same number (coap_dtls_handle_timeout), and a device's
     * DTLS stack keeps its own schedule (RFC 6347 4.2.4.1: 1 s doubling,
     * libcoap's default 4: 31 s).  Set here, a handshake gave up after
     * 3 s, and a gateway restart's storm of 10,000 handshakes, each a few
     * seconds in the gateway's queue, never converged.
     */
    s->gen++;
    s->connected = false;
    s->connect_deadline_ms = tool_now_ms() + 30000;
    s->push_inflight = 0;
    s->reg_inflight = false;
    return 0;
}

/* The source port of the current session (for a reboot onto the same one). */
int
session_local_port(const struct sensor *s)
{
    const coap_address_t *a = s->session ? coap_session_get_addr_local(s->session)
                                         : NULL;

    return a ? coap_address_get_port(a) : 0;
}

void
session_close(struct sensor *s, bool quiet)
{
    coap_tls_library_t lib;
    SSL *ssl;

    if (!s->ctx)
        return;
    tool_ctx_mute(s->ctx);   /* what the teardown raises is not news */
    if (s->session) {
        ssl = coap_session_get_tls(s->session, &lib);
        /*
         * Quiet: the device lost its state.  With SENT_SHUTDOWN set OpenSSL
         * neither writes a close_notify nor any other record.
         */
        if (quiet && ssl && lib == COAP_TLS_LIBRARY_OPENSSL)
            SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
        /* Drops observers silently (no 4.04 per resource as freeing would). */
        coap_session_disconnected(s->session, COAP_NACK_NOT_DELIVERABLE);
    }
    tool_ctx_free(s->ctx);
    s->ctx = NULL;
    s->session = NULL;
    s->reg_inflight = false;
    s->push_inflight = 0;
}

/* ---- requests ---- */

/* Attaches a copy of data (block-wise if large) and sends. */
static int
send_with_body(struct sensor *s, coap_pdu_t *pdu, const void *data, size_t len)
{
    uint8_t *copy = NULL;

    if (len) {
        copy = malloc(len);
        if (!copy) {
            coap_delete_pdu(pdu);
            return -1;
        }
        memcpy(copy, data, len);
        if (!coap_add_data_large_request(s->session, pdu, len, copy,
                                         tool_release_body, copy)) {
            coap_delete_pdu(pdu);
            return -1;
        }
    }
    return coap_send(s->session, pdu) == COAP_INVALID_MID ? -1 : 0;
}

/* The refresh: an empty POST to the registration's location. */
static coap_pdu_t *
refresh_request(struct sensor *s, const uint8_t *tok, size_t len)
{
    char path[sizeof(s->location) + 8];
    coap_pdu_t *pdu = tool_request(s->session, COAP_MESSAGE_CON,
                                   COAP_REQUEST_CODE_POST, tok, len);

    if (!pdu)
        return NULL;
    if (s->location[0])
        snprintf(path, sizeof(path), "%s", s->location);
    else
        snprintf(path, sizeof(path), "rd/%s", s->id);
    tool_add_uri_path(pdu, path);
    return pdu;
}

void
session_register(struct sensor *s, bool refresh)
{
    const struct sim_opts *o = &s->sim->opts;
    uint8_t tok[TOKEN_LEN];
    char body[512];
    size_t blen = 0;
    coap_pdu_t *pdu;

    if (!s->session || s->reg_inflight)
        return;
    s->reg_retry_ms = tool_now_ms() + 5000;   /* unless sent below */
    make_token(s, tok, refresh ? TK_REFRESH : TK_REGISTER, 0, 0);
    if (refresh) {
        pdu = refresh_request(s, tok, sizeof(tok));
    } else {
        pdu = tool_rd_request(s->session, tok, sizeof(tok), o->ep ? o->ep : s->id,
                              o->lifetime_s);
        blen = resources_linkformat(s, body, sizeof(body));
    }
    if (!pdu)
        return;
    if (send_with_body(s, pdu, body, blen) < 0) {
        log_warnx("%s: cannot send the registration", s->id);
        return;
    }
    s->reg_inflight = true;
    s->reg_retry_ms = SIM_NEVER;
}

void
session_push(struct sensor *s, struct res_state *r)
{
    bool con = resources_con(r);
    uint8_t tok[TOKEN_LEN];
    coap_pdu_t *pdu;

    if (!s->session)
        return;
    make_token(s, tok, con ? TK_PUSH_CON : TK_PUSH_NON, r->idx, r->seq);
    pdu = tool_push_request(s->session, con ? COAP_MESSAGE_CON : COAP_MESSAGE_NON,
                            tok, sizeof(tok), r->def->path, r->def->ct);
    if (!pdu)
        return;
    if (send_with_body(s, pdu, r->value, r->value_len) < 0) {
        s->sim->cnt.push_errors++;
        out_event(s->sim, true, "PUSH %s %s %u send-failed", s->id, r->def->path, r->seq);
        return;
    }
    s->sim->cnt.pushes++;
    if (con)
        s->push_inflight++;
    else
        out_event(s->sim, false, "PUSH %s %s %u NON", s->id, r->def->path, r->seq);
}
