/*
 * session.c - one sensor's libcoap context and DTLS-PSK client session, the
 * requests the sensor makes (registration, refresh, pushes) and the
 * callbacks that report their outcome.
 *
 * Callbacks run inside coap_io_process(); they never free the context they
 * run in: trouble is flagged with session_lost() and the main loop tears
 * down and reconnects from sensor_tick().
 *
 * Our request tokens carry what the response is about, so no table of
 * outstanding requests is needed: kind, resource index, seq, a counter.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <openssl/ssl.h>

#include "coap2mqtt/log.h"
#include "sim.h"

enum { TK_REGISTER = 0xA1, TK_REFRESH, TK_PUSH_CON, TK_PUSH_NON };
#define TOKEN_LEN 8
#define BACKOFF_MAX_S 30

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

void
session_lost(struct sensor *s, const char *why)
{
    unsigned b;

    if (s->state != SS_ACTIVE || s->teardown)
        return;
    s->sim->cnt.errors++;
    out_event(s->sim, true, "ERROR %s %s", s->id, why);
    s->state = SS_BACKOFF;
    b = s->backoff_s ? s->backoff_s : 1;
    s->retry_ms = tool_now_ms() + (int64_t)b * 1000 + (int64_t)(s->rng % 500);
    s->backoff_s = b * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S : b * 2;
}

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
        if (s->sim->opts.push && (first || !refresh))
            sensor_schedule_pushes(s, now);
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

static coap_response_t
on_response(coap_session_t *session, const coap_pdu_t *sent,
            const coap_pdu_t *rcvd, const coap_mid_t mid)
{
    struct sensor *s = coap_session_get_app_data(session);
    coap_bin_const_t tok = coap_pdu_get_token(rcvd);

    (void)sent;
    (void)mid;
    if (!s || s->teardown || tok.length != TOKEN_LEN)
        return COAP_RESPONSE_OK;
    switch (tok.s[0]) {
    case TK_REGISTER: on_register_response(s, false, rcvd); break;
    case TK_REFRESH:  on_register_response(s, true, rcvd); break;
    case TK_PUSH_CON:
    case TK_PUSH_NON: on_push_response(s, tok.s, rcvd); break;
    default: break;
    }
    return COAP_RESPONSE_OK;
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

static void
on_nack(coap_session_t *session, const coap_pdu_t *sent,
        const coap_nack_reason_t reason, const coap_mid_t mid)
{
    struct sensor *s = coap_session_get_app_data(session);
    coap_bin_const_t tok;
    char why[64];

    (void)mid;
    if (!s || s->teardown || !sent)
        return;
    if (COAP_RESPONSE_CLASS(coap_pdu_get_code(sent)) >= 2) {
        /*
         * A CON notification nobody acknowledged: the gateway lost our
         * session (restart, reboot).  Like a real device, start over with a
         * new handshake and a registration refresh.
         */
        if (reason == COAP_NACK_TOO_MANY_RETRIES)
            session_lost(s, "notification timeout");
        return;
    }
    tok = coap_pdu_get_token(sent);
    if (tok.length != TOKEN_LEN)
        return;
    if (tok.s[0] == TK_REGISTER || tok.s[0] == TK_REFRESH) {
        s->reg_inflight = false;
        snprintf(why, sizeof(why), "registration %s", nack_text(reason));
        session_lost(s, why);
    } else if (tok.s[0] == TK_PUSH_CON) {
        if (s->push_inflight)
            s->push_inflight--;
        s->sim->cnt.push_errors++;
        out_event(s->sim, true, "PUSH %s %s %u %s", s->id,
                  tok.s[1] < s->nres ? s->res[tok.s[1]].def->path : "?",
                  token_seq(tok.s), nack_text(reason));
    }
}

static int
on_event(coap_session_t *session, const coap_event_t event)
{
    struct sensor *s = coap_session_get_app_data(session);

    if (!s || s->teardown)
        return 0;
    switch (event) {
    case COAP_EVENT_DTLS_CONNECTED:
        s->connected = true;
        log_info("%s: DTLS connected", s->id);
        break;
    case COAP_EVENT_DTLS_CLOSED:     session_lost(s, "dtls-closed"); break;
    case COAP_EVENT_DTLS_ERROR:      session_lost(s, "dtls-error"); break;
    case COAP_EVENT_SESSION_CLOSED:  session_lost(s, "session-closed"); break;
    case COAP_EVENT_SESSION_FAILED:  session_lost(s, "session-failed"); break;
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
    return 0;
}

/* ---- context and session ---- */

static coap_context_t *
new_context(struct sensor *s)
{
    coap_context_t *ctx = coap_new_context(NULL);

    if (!ctx)
        return NULL;
    coap_context_set_block_mode(ctx, COAP_BLOCK_USE_LIBCOAP | COAP_BLOCK_SINGLE_BODY);
    coap_register_response_handler(ctx, on_response);
    coap_register_nack_handler(ctx, on_nack);
    coap_register_event_handler(ctx, on_event);
    s->ctx = ctx;
    if (resources_add(s) < 0) {
        coap_free_context(ctx);
        s->ctx = NULL;
        return NULL;
    }
    return ctx;
}

int
session_open(struct sensor *s)
{
    const struct sim_opts *o = &s->sim->opts;
    coap_dtls_cpsk_t psk;
    struct epoll_event ev = { .events = EPOLLIN };
    coap_address_t local = s->local;
    int port = s->reuse_port ? s->reuse_port : o->port;

    if (!new_context(s))
        return -1;
    tool_dtls_cpsk(&psk, s->id, s->key, s->key_len);
    coap_address_set_port(&local, (uint16_t)port);
    s->session = coap_new_client_session_psk2(s->ctx, o->have_bind || port ? &local : NULL,
                                              &o->gateway, COAP_PROTO_DTLS, &psk);
    s->reuse_port = 0;
    s->ctx_fd = coap_context_get_coap_fd(s->ctx);
    ev.data.ptr = s;
    if (!s->session || s->ctx_fd < 0 ||
        epoll_ctl(s->sim->epfd, EPOLL_CTL_ADD, s->ctx_fd, &ev) < 0) {
        log_warnx("%s: cannot open a session from the bind address", s->id);
        s->session = NULL;
        coap_free_context(s->ctx);
        s->ctx = NULL;
        return -1;
    }
    coap_session_set_app_data(s->session, s);
    s->gen++;
    s->state = SS_ACTIVE;
    s->connected = false;
    s->connect_deadline_ms = tool_now_ms() + 30000;
    s->mid_n = s->mid_pos = 0;
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
    s->teardown = true;
    epoll_ctl(s->sim->epfd, EPOLL_CTL_DEL, s->ctx_fd, NULL);
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
    coap_free_context(s->ctx);
    s->ctx = NULL;
    s->session = NULL;
    s->ctx_fd = -1;
    s->teardown = false;
    s->reg_inflight = false;
    s->push_inflight = 0;
    for (size_t i = 0; i < s->nres; i++) {
        s->res[i].resource = NULL;
        s->res[i].notify_pending = false;
    }
}

void
sensor_io(struct sensor *s)
{
    if (s->ctx)
        coap_io_process(s->ctx, COAP_IO_NO_WAIT);
}

/* ---- requests ---- */

static void
release_buf(coap_session_t *session, void *app_ptr)
{
    (void)session;
    free(app_ptr);
}

static coap_pdu_t *
new_request(struct sensor *s, coap_pdu_type_t type, coap_pdu_code_t code,
            int kind, unsigned idx, uint32_t seq)
{
    uint8_t tok[TOKEN_LEN];

    make_token(s, tok, kind, idx, seq);
    return tool_request(s->session, type, code, tok, sizeof(tok));
}

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
                                         release_buf, copy)) {
            coap_delete_pdu(pdu);
            return -1;
        }
    }
    return coap_send(s->session, pdu) == COAP_INVALID_MID ? -1 : 0;
}

void
session_register(struct sensor *s, bool refresh)
{
    const struct sim_opts *o = &s->sim->opts;
    char path[sizeof(s->location) + 8], q[300], body[512];
    size_t blen = 0;
    coap_pdu_t *pdu;

    if (!s->session || s->reg_inflight)
        return;
    s->reg_retry_ms = tool_now_ms() + 5000;   /* unless sent below */
    pdu = new_request(s, COAP_MESSAGE_CON, COAP_REQUEST_CODE_POST,
                      refresh ? TK_REFRESH : TK_REGISTER, 0, 0);
    if (!pdu)
        return;
    if (refresh) {
        if (s->location[0])
            snprintf(path, sizeof(path), "%s", s->location);
        else
            snprintf(path, sizeof(path), "rd/%s", s->id);
        tool_add_uri_path(pdu, path);
    } else {
        tool_add_uri_path(pdu, "rd");
        blen = resources_linkformat(s, body, sizeof(body));
        tool_add_uint_option(pdu, COAP_OPTION_CONTENT_FORMAT,
                             COAP_MEDIATYPE_APPLICATION_LINK_FORMAT);
        snprintf(q, sizeof(q), "ep=%s", o->ep ? o->ep : s->id);
        coap_add_option(pdu, COAP_OPTION_URI_QUERY, strlen(q), (const uint8_t *)q);
        snprintf(q, sizeof(q), "lt=%u", o->lifetime_s);
        coap_add_option(pdu, COAP_OPTION_URI_QUERY, strlen(q), (const uint8_t *)q);
    }
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
    const struct sim_opts *o = &s->sim->opts;
    bool con = o->force == FORCE_CON || (o->force == FORCE_NONE && r->def->con);
    char path[TOPIC_PATH_MAX + 8];
    coap_pdu_t *pdu;

    if (!s->session)
        return;
    pdu = new_request(s, con ? COAP_MESSAGE_CON : COAP_MESSAGE_NON,
                      COAP_REQUEST_CODE_POST, con ? TK_PUSH_CON : TK_PUSH_NON,
                      r->idx, r->seq);
    if (!pdu)
        return;
    snprintf(path, sizeof(path), "ps/%s", r->def->path);
    tool_add_uri_path(pdu, path);
    tool_add_uint_option(pdu, COAP_OPTION_CONTENT_FORMAT, r->def->ct);
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
