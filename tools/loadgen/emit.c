/*
 * emit.c - readings: pushes (POST /ps/<path>) and observe notifications,
 * open loop at a total rate spread round-robin over the active sensors, or
 * closed loop (each sensor keeps --window CON pushes in flight, the next one
 * leaving when a 2.xx comes back).
 *
 * Every payload is "d=<dev> s=<seq> t=<us> " padded with 'x': the MQTT
 * subscriber takes latency and per-device order from it.  CON push tokens
 * carry the send time too, for the CoAP-side round trip.
 *
 * The answers come up from fleet.c through emit_events, which main.c
 * hands to fleet_init().
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coap2mqtt/log.h"
#include "lg.h"

#define BURST_MAX   4000      /* sends per call before the loop reads again */

size_t
emit_payload(char *buf, size_t cap, size_t pad_to, unsigned dev, uint32_t seq,
             int64_t t_us)
{
    int n = snprintf(buf, cap, "d=%u s=%" PRIu32 " t=%" PRId64 " ", dev, seq, t_us);
    size_t len;

    if (n < 0)
        return 0;
    len = (size_t)n < cap ? (size_t)n : cap - 1;
    if (pad_to > cap)
        pad_to = cap;
    while (len < pad_to)
        buf[len++] = 'x';
    return len;
}

static bool
in_window(const struct fleet *f, int64_t t)
{
    return f->emitting && t >= f->win_start_us && t < f->win_end_us;
}

static void
count_sent(struct sensor *s, int64_t now)
{
    s->f->cnt.sent++;
    if (in_window(s->f, now))
        s->f->cnt.sent_window++;
}

/* POST /ps/<path> with the next reading; CON ones count as in flight. */
static void
emit_push(struct sensor *s, int64_t now)
{
    const struct lg_opts *o = s->f->o;
    char body[LG_PAYLOAD_MAX + 1];
    uint8_t tok[LG_TOKEN_LEN];
    size_t len;
    coap_pdu_t *pdu;

    fleet_token(s, tok, TK_PUSH, now);
    pdu = tool_push_request(s->session, o->con ? COAP_MESSAGE_CON : COAP_MESSAGE_NON,
                            tok, sizeof(tok), o->path, COAP_MEDIATYPE_TEXT_PLAIN);
    if (!pdu)
        return;
    len = emit_payload(body, sizeof(body), o->payload_size, s->idx, ++s->seq, now);
    coap_add_data(pdu, len, (const uint8_t *)body);
    if (coap_send(s->session, pdu) == COAP_INVALID_MID) {
        s->f->cnt.errors++;
        return;
    }
    tool_ctx_sent(s->c);
    count_sent(s, now);
    if (o->con)
        s->inflight++;
}

/* Fills a notification (or the first answer) with the next reading. */
static void
fill_reading(struct sensor *s, coap_pdu_t *pdu, int64_t now)
{
    char body[LG_PAYLOAD_MAX + 1];
    size_t len = emit_payload(body, sizeof(body), s->f->o->payload_size, s->idx,
                              ++s->seq, now);

    tool_add_uint_option(pdu, COAP_OPTION_OBSERVE, ++s->obs_seq & 0xffffff);
    tool_add_uint_option(pdu, COAP_OPTION_CONTENT_FORMAT, COAP_MEDIATYPE_TEXT_PLAIN);
    coap_add_data(pdu, len, (const uint8_t *)body);
    count_sent(s, now);
}

/* A 2.05 notification on the gateway's observation, our own Observe count. */
static void
emit_notify(struct sensor *s, int64_t now)
{
    coap_pdu_t *pdu;

    if (!s->obs_token_len)
        return;
    pdu = tool_request(s->session, s->f->o->con ? COAP_MESSAGE_CON : COAP_MESSAGE_NON,
                       COAP_RESPONSE_CODE(205), s->obs_token, s->obs_token_len);
    if (!pdu)
        return;
    fill_reading(s, pdu, now);
    if (coap_send(s->session, pdu) == COAP_INVALID_MID)
        s->f->cnt.errors++;
    tool_ctx_sent(s->c);
}

/* The gateway's GET: with Observe, remember its token; answer a reading. */
static void
on_get(struct sensor *s, const coap_pdu_t *req, coap_pdu_t *response)
{
    coap_bin_const_t tok = coap_pdu_get_token(req);
    coap_opt_iterator_t it;

    coap_pdu_set_code(response, COAP_RESPONSE_CODE(205));
    if (!coap_check_option(req, COAP_OPTION_OBSERVE, &it) || tok.length == 0 ||
        tok.length > LG_TOKEN_LEN) {
        fill_reading(s, response, tool_now_us());   /* a plain GET */
        return;
    }
    memcpy(s->obs_token, tok.s, tok.length);
    s->obs_token_len = tok.length;
    fill_reading(s, response, tool_now_us());
    if (s->state == SS_REGISTERED || s->state == SS_REGISTERING) {
        s->state = SS_READY;
        s->f->cnt.observed++;
    }
}

static int64_t
token_time(const uint8_t *tok)
{
    uint64_t t = 0;

    for (int i = 0; i < 6; i++)
        t = t << 8 | tok[2 + i];
    return (int64_t)t;
}

/* A CON push answered (or failed): count it, its round trip; closed loop: the next. */
static void
on_push_answered(struct sensor *s, const uint8_t *tok, bool ok)
{
    struct fleet *f = s->f;
    int64_t now = tool_now_us(), sent = token_time(tok);

    if (!f->o->con)
        return;   /* NON pushes: answers are not tracked */
    if (s->inflight)
        s->inflight--;
    if (!ok) {
        f->cnt.errors++;
    } else {
        f->cnt.acked++;
        if (in_window(f, sent)) {
            f->cnt.acked_window++;
            samples_add(&f->rtt, (uint64_t)(now - sent));
        }
    }
    /* Closed loop: the answer releases the next push. */
    if (f->o->rate == 0 && f->emitting && now < f->win_end_us &&
        s->state == SS_READY)
        emit_push(s, now);
}

static void
emit_one(struct sensor *s, int64_t now)
{
    if (s->f->o->observe)
        emit_notify(s, now);
    else
        emit_push(s, now);
}

/* Closed loop: the first --window pushes of every ready sensor. */
static void
kick_closed_loop(struct fleet *f, int64_t now)
{
    for (unsigned i = 0; i < f->active; i++) {
        struct sensor *s = &f->s[i];
        while (s->state == SS_READY && s->inflight < f->o->window)
            emit_push(s, now);
    }
}

int64_t
emit_due(struct fleet *f, int64_t now)
{
    const struct lg_opts *o = f->o;
    uint64_t due;
    unsigned burst = 0, misses = 0;

    if (!f->emitting || now >= f->win_end_us)
        return 10000;
    if (o->rate == 0) {
        if (!f->kicked) {
            kick_closed_loop(f, now);
            f->kicked = true;
        }
        return 10000;
    }
    due = (uint64_t)((double)(now - f->t0_us) * o->rate / 1e6);
    while (f->emitted < due && burst < BURST_MAX && misses < f->active) {
        struct sensor *s = &f->s[f->rr];
        f->rr = (f->rr + 1) % f->active;
        if (s->state != SS_READY) {
            misses++;
            continue;
        }
        misses = 0;
        f->emitted++;
        burst++;
        if (o->con && !o->observe && s->inflight >= LG_INFLIGHT_CAP)
            f->cnt.skipped++;
        else
            emit_one(s, now);
    }
    if (f->emitted < due)
        return 0;
    return (int64_t)((double)(f->emitted + 1) * 1e6 / o->rate) + f->t0_us - now;
}

const struct fleet_events emit_events = {
    .push_answered = on_push_answered,
    .get = on_get,
};
