/*
 * fleet.c - the simulated sensors' libcoap contexts and DTLS client
 * sessions: bounded ramp-up of handshakes, registration, the GET handler
 * that accepts the gateway's observation, and the callbacks.
 *
 * Sensors are grouped LG_PER_CTX to a context.  The observation is not
 * libcoap's (a resource marked observable would make libcoap notify every
 * observer of the context at once): the gateway's GET and the answers to
 * pushes go up to the emitter through the fleet_events it registered, and
 * emit.c builds each notification itself.  This file calls nothing above
 * it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coap2mqtt/keystore.h"
#include "coap2mqtt/log.h"
#include "lg.h"

#define HS_TIMEOUT_US 20000000   /* a handshake that takes longer failed */
#define HS_TRIES 3

static void
hs_done(struct sensor *s, bool ok)
{
    struct fleet *f = s->f;
    int64_t now = tool_now_us();

    if (s->state != SS_HANDSHAKE)
        return;
    if (f->hs_inflight)
        f->hs_inflight--;
    if (ok) {
        f->cnt.hs_ok++;
        f->hs_last_us = now;
        s->state = s->idx < f->active && !f->o->handshake_only ? SS_REGISTERING
                                                                : SS_CONNECTED;
        return;
    }
    f->cnt.hs_failed++;
    s->state = SS_FAILED;
    s->retry_us = now + 500000;
}

/* Handshake over, or a session lost (no reconnect mid-measurement). */
static void
on_event(void *app, coap_event_t event)
{
    struct sensor *s = app;

    switch (event) {
    case COAP_EVENT_DTLS_CONNECTED:
        hs_done(s, true);
        break;
    case COAP_EVENT_DTLS_ERROR:
    case COAP_EVENT_DTLS_CLOSED:
    case COAP_EVENT_SESSION_FAILED:
    case COAP_EVENT_SESSION_CLOSED:
        if (s->state == SS_HANDSHAKE) {
            hs_done(s, false);
        } else if (s->state != SS_FAILED) {
            s->f->cnt.errors++;
            log_ratelimited(s->f, "%s: session lost (event 0x%x)", s->id, event);
            s->state = SS_FAILED;
            s->retry_us = INT64_MAX;   /* no reconnect mid-measurement */
        }
        break;
    default:
        break;
    }
}

/* The registration's answer, or a push's (to the emitter). */
static void
on_response(void *app, const coap_pdu_t *sent, const coap_pdu_t *rcvd)
{
    struct sensor *s = app;
    coap_bin_const_t tok = coap_pdu_get_token(rcvd);
    coap_pdu_code_t code = coap_pdu_get_code(rcvd);
    bool ok = COAP_RESPONSE_CLASS(code) == 2;

    (void)sent;
    if (tok.length != LG_TOKEN_LEN)
        return;
    if (tok.s[0] == TK_REGISTER && s->state == SS_REGISTERING) {
        if (!ok) {
            s->f->cnt.reg_failed++;
            log_ratelimited(&s->f->cnt.reg_failed, "%s: registration answered %d.%02d",
                            s->id, COAP_RESPONSE_CLASS(code), code & 0x1f);
            s->state = SS_FAILED;
            s->retry_us = INT64_MAX;
            return;
        }
        s->f->cnt.reg_ok++;
        s->state = s->f->o->observe ? SS_REGISTERED : SS_READY;
    } else if (tok.s[0] == TK_PUSH) {
        s->f->ev->push_answered(s, tok.s, ok);
    }
}

/* A request unanswered: counted; a push's goes to the emitter too. */
static void
on_nack(void *app, const coap_pdu_t *sent, coap_nack_reason_t reason)
{
    struct sensor *s = app;
    coap_bin_const_t tok = coap_pdu_get_token(sent);

    s->f->cnt.errors++;
    log_ratelimited(&s->f->cnt.errors, "%s: NACK %d", s->id, (int)reason);
    if (tok.length == LG_TOKEN_LEN && tok.s[0] == TK_PUSH)
        s->f->ev->push_answered(s, tok.s, false);
}

static const struct tool_ctx_events fleet_ctx_events = {
    .response = on_response,
    .nack = on_nack,
    .event = on_event,
};

/* GET <path> with Observe=0 from the gateway: the observation. */
static void
on_get(coap_resource_t *r, coap_session_t *session, const coap_pdu_t *req,
       const coap_string_t *query, coap_pdu_t *response)
{
    struct sensor *s = tool_session_app(session);

    (void)r;
    (void)query;
    if (!s) {
        coap_pdu_set_code(response, COAP_RESPONSE_CODE(503));
        return;
    }
    s->f->ev->get(s, req, response);
}

/* A context for LG_PER_CTX sensors, with the one resource they serve. */
static tool_ctx_t *
new_ctx(struct fleet *f, tool_loop_t *loop)
{
    tool_ctx_t *c = tool_ctx_new(loop, &fleet_ctx_events, NULL, 0);
    coap_resource_t *r;

    if (!c)
        return NULL;
    r = coap_resource_init(coap_make_str_const(f->o->path), 0);
    if (!r) {
        tool_ctx_free(c);
        return NULL;
    }
    coap_register_request_handler(r, COAP_REQUEST_GET, on_get);
    coap_add_resource(tool_ctx_coap(c), r);
    return c;
}

static int
load_keys(struct fleet *f)
{
    keystore_t *ks = NULL;

    if (f->o->psk_file && !(ks = keystore_load(f->o->psk_file, NULL, NULL))) {
        log_warnx("%s: cannot load the PSK file", f->o->psk_file);
        return -1;
    }
    for (unsigned i = 0; i < f->n; i++) {
        struct sensor *s = &f->s[i];
        const uint8_t *k = NULL;
        size_t len = f->o->key_len;

        if (ks) {
            k = keystore_lookup(ks, (const uint8_t *)s->id, strlen(s->id), &len);
            if (!k || len > LG_KEY_MAX) {
                log_warnx("%s: no key for identity %s", f->o->psk_file, s->id);
                keystore_free(ks);
                return -1;
            }
        }
        memcpy(s->key, k ? k : f->o->key, len);
        s->key_len = len;
    }
    keystore_free(ks);
    return 0;
}

int
fleet_init(struct fleet *f, const struct lg_opts *o, tool_loop_t *loop,
           const struct fleet_events *ev)
{
    memset(f, 0, sizeof(*f));
    f->o = o;
    f->ev = ev;
    f->loop = loop;
    f->n = o->sensors;
    f->active = o->active;
    f->s = calloc(f->n, sizeof(*f->s));
    f->nctx = (f->n + LG_PER_CTX - 1) / LG_PER_CTX;
    f->ctxs = calloc(f->nctx, sizeof(*f->ctxs));
    if (!f->s || !f->ctxs)
        return -1;
    for (unsigned i = 0; i < f->nctx; i++)
        if (!(f->ctxs[i] = new_ctx(f, loop))) {
            log_warnx("cannot create libcoap context %u", i);
            return -1;
        }
    for (unsigned i = 0; i < f->n; i++) {
        struct sensor *s = &f->s[i];
        s->f = f;
        s->idx = i;
        s->c = f->ctxs[i / LG_PER_CTX];
        snprintf(s->id, sizeof(s->id), "%s%u", o->prefix, i);
        tool_addr_step(&o->bind, i, &s->local);
    }
    return o->cert ? 0 : load_keys(f);
}

/* A session with the sensor's certificate or key; NULL on failure. */
static coap_session_t *
open_session(struct sensor *s)
{
    const struct lg_opts *o = s->f->o;

    if (o->cert)
        return tool_ctx_connect_pki(s->c, &s->local, &o->target, o->ca, o->cert,
                                    o->certkey, s);
    return tool_ctx_connect_psk(s->c, &s->local, &o->target, s->id, s->key,
                                s->key_len, s);
}

void
fleet_token(struct sensor *s, uint8_t tok[LG_TOKEN_LEN], int kind, int64_t t_us)
{
    uint64_t t = (uint64_t)t_us;

    tok[0] = (uint8_t)kind;
    s->token_ctr++;
    tok[1] = (uint8_t)s->token_ctr;
    for (int i = 0; i < 6; i++)
        tok[2 + i] = (uint8_t)(t >> (8 * (5 - i)));
}

/* POST /rd with the one resource; queued by libcoap until the handshake is done. */
static void
fleet_register(struct sensor *s)
{
    const struct lg_opts *o = s->f->o;
    uint8_t tok[LG_TOKEN_LEN];
    char body[160];
    coap_pdu_t *pdu;
    int blen;

    fleet_token(s, tok, TK_REGISTER, 0);
    pdu = tool_rd_request(s->session, tok, sizeof(tok), s->id, o->lifetime);
    if (!pdu)
        return;
    blen = snprintf(body, sizeof(body), "</%s>;%sct=0", o->path,
                    o->observe ? "obs;" : "");
    coap_add_data(pdu, (size_t)blen, (const uint8_t *)body);
    if (coap_send(s->session, pdu) == COAP_INVALID_MID)
        log_warnx("%s: cannot send the registration", s->id);
    tool_ctx_sent(s->c);
}

static void
connect_one(struct fleet *f, struct sensor *s, int64_t now)
{
    if (s->session) {
        tool_session_release(s->session);
        s->session = NULL;
    }
    s->tries++;
    s->session = open_session(s);
    if (!s->session) {
        f->cnt.hs_failed++;
        s->state = SS_FAILED;
        s->retry_us = INT64_MAX;
        log_ratelimited(f, "%s: cannot open a session", s->id);
        return;
    }
    s->state = SS_HANDSHAKE;
    s->hs_start_us = now;
    if (!f->hs_first_us)
        f->hs_first_us = now;
    f->hs_inflight++;
    tool_ctx_sent(s->c);
    /* Queued by libcoap until the handshake completes. */
    if (s->idx < f->active && !f->o->handshake_only)
        fleet_register(s);
}

/* A sensor whose handshake is over for good (done, or out of tries). */
static bool
settled(const struct sensor *s)
{
    if (s->state == SS_IDLE || s->state == SS_HANDSHAKE)
        return false;
    return s->state != SS_FAILED || s->tries >= HS_TRIES || s->retry_us == INT64_MAX;
}

bool
fleet_connect_more(struct fleet *f, int64_t now)
{
    bool all = f->next_connect == f->n;

    /* Retries, timeouts, completion: a scan every 100 ms. */
    if (now - f->scan_us >= 100000) {
        f->scan_us = now;
        for (unsigned i = 0; i < f->next_connect; i++) {
            struct sensor *s = &f->s[i];
            if (s->state == SS_HANDSHAKE && now - s->hs_start_us > HS_TIMEOUT_US)
                hs_done(s, false);
            if (s->state == SS_FAILED && s->retry_us <= now &&
                s->tries < HS_TRIES && f->hs_inflight < f->o->ramp) {
                f->cnt.hs_retries++;
                connect_one(f, s, now);
            }
            all = all && settled(s);
        }
    } else {
        all = false;
    }
    while (f->next_connect < f->n && f->hs_inflight < f->o->ramp)
        connect_one(f, &f->s[f->next_connect++], now);
    return all;
}

unsigned
fleet_count(const struct fleet *f, enum sensor_state st, unsigned upto)
{
    unsigned n = 0;

    for (unsigned i = 0; i < upto && i < f->n; i++)
        n += f->s[i].state >= st && f->s[i].state <= SS_READY;
    return n;
}

void
fleet_free(struct fleet *f)
{
    for (unsigned i = 0; i < f->nctx && f->ctxs; i++)
        tool_ctx_free(f->ctxs[i]);
    free(f->ctxs);
    free(f->s);
    samples_free(&f->rtt);
}
