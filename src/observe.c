/*
 * observe.c - observations of device resources over the device's own DTLS
 * session (the gateway is the CoAP client on a server-side session).
 * Every notification is checked for freshness (RFC 7641 3.4), turned into
 * an outbound message, and re-arms a silence timer: Max-Age plus a grace
 * without a notification means the device forgot us, so we register again.
 *
 * Layer: services (calls base, the device session and the outbound path;
 * hears of devices through its device listener, of answers through the
 * handler registered with each observe request)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utlist.h>

#include "coap2mqtt/log.h"
#include "coap2mqtt/observe.h"
#include "coap2mqtt/outbound.h"
#include "coap2mqtt/readings.h"
#include "coap2mqtt/spool.h"
#include "devices_internal.h"

#define OBS_GRACE_MS       10000   /* on top of Max-Age before re-registering */
#define OBS_RETRY_MIN_MS   5000
#define OBS_RETRY_MAX_MS   300000
#define OBS_SEQ_HALF       (1u << 23)
#define OBS_FRESH_MS       128000  /* RFC 7641 3.4: 128 s */
#define OBS_SILENT_GAPS    8       /* missed notifications before re-observing */
#define OBS_SILENT_MIN_MS  5000
#define OBS_GET_WAIT_MS    93000   /* RFC 7252 MAX_TRANSMIT_WAIT: a CON's life */
#define OBS_REREG_FIRST_MS 2000    /* RFC 7252 ACK_TIMEOUT */
#define OBS_REREG_PATIENT  8       /* NON tries at the silence pace, then back off */
#define OBS_WINDOW         256     /* CON observe GETs unanswered at once, gateway-wide */
#define OBS_WINDOW_HOLD_MS 2000    /* ... for at most RFC 7252 ACK_TIMEOUT each */

static void start_one(struct resource *r);
static void start_now(struct resource *r);
static bool con_get_in_flight(const struct resource *r);
static void reregister(struct resource *r);
static void arm_silence(struct resource *r, uint32_t max_age_s);
static bool on_answer(void *owner, coap_session_t *session, const coap_pdu_t *rcvd);
static void on_nack(void *owner, coap_nack_reason_t reason);

/* Observations keep their token: every notification comes back by it. */
static const struct transport_handler observe_handler = {
    .on_response = on_answer,
    .on_nack = on_nack,
    .one_shot = false,
};

bool
observe_is_fresh(uint32_t v1, uint64_t t1, uint32_t v2, uint64_t t2)
{
    return (v1 < v2 && v2 - v1 < OBS_SEQ_HALF) ||
           (v1 > v2 && v1 - v2 > OBS_SEQ_HALF) ||
           t2 > t1 + OBS_FRESH_MS;
}

static struct gw *
gw_of(struct resource *r)
{
    return r->dev->gw;
}

/*
 * The window.  libcoap 4.3.1 keeps every CON of every session in one
 * time-ordered list (the send queue), walked on each insertion and on each
 * answer that comes in.  After a restart the whole fleet registers at once
 * and each registration starts a CON GET per observable resource: the
 * queue held up to 2,242 of them (gdb, bench/reconnect.sh), their answers
 * unread behind the storm in our own sockets, its walks were 16-20 % of
 * the gateway's time, handshakes went stale waiting behind them and
 * devices timed out whole handshakes.  So at most OBS_WINDOW observe GETs
 * sent in the last ACK_TIMEOUT are unanswered at once; the others wait in
 * order and go as answers come.  A GET unanswered after ACK_TIMEOUT frees
 * its place (libcoap goes on retransmitting it): devices far away or
 * asleep cannot hold the window, and whatever their round trip, at least
 * OBS_WINDOW GETs go out every ACK_TIMEOUT.  Only a storm fills it.
 */
static void window_pump(devices_t *d);

static devices_t *
registry_of(struct resource *r)
{
    return r->dev->gw->devices;
}

static void
window_leave(devices_t *d, struct resource *r)
{
    if (r->waiting) {
        DL_DELETE2(d->obs_waiting, r, win_prev, win_next);
        r->waiting = false;
        d->n_obs_waiting--;
    }
    if (r->in_window) {
        DL_DELETE2(d->obs_in_flight, r, win_prev, win_next);
        r->in_window = false;
        d->n_obs_in_flight--;
    }
}

/* Our CON GET for 'r' went out (it takes a place), or ended (frees it). */
static void
set_get_pending(struct resource *r, bool pending)
{
    devices_t *d = registry_of(r);
    bool freed = r->in_window && !pending;

    r->con_get_pending = pending;
    window_leave(d, r);
    if (pending) {
        DL_APPEND2(d->obs_in_flight, r, win_prev, win_next);    /* oldest first */
        r->in_window = true;
        d->n_obs_in_flight++;
    }
    if (freed)
        window_pump(d);
}

/* GETs sent OBS_WINDOW_HOLD_MS ago and still unanswered leave the window
 * (they stay pending: libcoap retransmits them). */
static void
window_expire(devices_t *d, uint64_t now)
{
    while (d->obs_in_flight && now - d->obs_in_flight->get_ms >= OBS_WINDOW_HOLD_MS)
        window_leave(d, d->obs_in_flight);
}

static void window_pumped(loop_t *loop, void *arg);

/* Waiting resources and a place free now, or when the oldest GET's
 * ACK_TIMEOUT is over: the pump's timer. */
static void
window_arm(devices_t *d, uint64_t now)
{
    uint64_t at = 0;

    if (!d->obs_waiting || d->obs_pump_timer)
        return;
    if (d->n_obs_in_flight >= OBS_WINDOW && d->obs_in_flight) {
        at = d->obs_in_flight->get_ms + OBS_WINDOW_HOLD_MS;
        at = at > now ? at - now : 0;
    }
    d->obs_pump_timer = loop_add_timer(d->gw->loop, at, window_pumped, d);
}

/* Places free: the waiting resources go, oldest first.  From a timer:
 * places free up inside libcoap's answer and NACK handlers, and sessions
 * may be going away around them. */
static void
window_pumped(loop_t *loop, void *arg)
{
    devices_t *d = arg;
    uint64_t now = loop_now_ms(loop);

    d->obs_pump_timer = 0;
    window_expire(d, now);
    while (d->n_obs_in_flight < OBS_WINDOW && d->obs_waiting) {
        struct resource *r = d->obs_waiting;

        window_leave(d, r);
        if (!con_get_in_flight(r))
            start_now(r);
    }
    window_arm(d, now);
}

/* A place was freed: pump now rather than at the oldest GET's timeout. */
static void
window_pump(devices_t *d)
{
    if (!d->obs_waiting)
        return;
    if (d->obs_pump_timer) {
        loop_cancel_timer(d->gw->loop, d->obs_pump_timer);
        d->obs_pump_timer = 0;
    }
    d->obs_pump_timer = loop_add_timer(d->gw->loop, 0, window_pumped, d);
}

/* Full (or others already wait): 'r' waits for a place, true. */
static bool
window_wait(struct resource *r)
{
    devices_t *d = registry_of(r);
    uint64_t now = loop_now_ms(gw_of(r)->loop);

    if (r->waiting)
        return true;
    window_expire(d, now);
    if (d->n_obs_in_flight < OBS_WINDOW && !d->obs_waiting)
        return false;
    DL_APPEND2(d->obs_waiting, r, win_prev, win_next);
    r->waiting = true;
    d->n_obs_waiting++;
    window_arm(d, now);
    return true;
}

static void
forget(struct resource *r)
{
    struct gw *gw = gw_of(r);

    device_forget_token(r->dev, r->token);
    r->token = 0;
    r->active = false;
    r->have_seq = false;
    set_get_pending(r, false);
    /* interval_ms is kept: it belongs to the resource, not the token. */
    loop_cancel_timer(gw->loop, r->refresh_timer);
    loop_cancel_timer(gw->loop, r->retry_timer);
    r->refresh_timer = r->retry_timer = 0;
}

static void
retry_fired(loop_t *loop, void *arg)
{
    struct resource *r = arg;

    (void)loop;
    r->retry_timer = 0;
    start_one(r);
}

/* Exponential backoff, so a device that refuses costs little. */
static void
schedule_retry(struct resource *r)
{
    uint64_t ms = OBS_RETRY_MIN_MS;

    for (unsigned i = 0; i < r->failures && ms < OBS_RETRY_MAX_MS; i++)
        ms *= 2;
    if (ms > OBS_RETRY_MAX_MS)
        ms = OBS_RETRY_MAX_MS;
    r->failures++;
    loop_cancel_timer(gw_of(r)->loop, r->retry_timer);
    r->retry_timer = loop_add_timer(gw_of(r)->loop, ms, retry_fired, r);
}

/* Our CON GET is unanswered and libcoap may still be retransmitting it
 * (the flag is cleared by its answer, its timeout, and forget()). */
static bool
con_get_in_flight(const struct resource *r)
{
    return r->con_get_pending &&
           loop_now_ms(r->dev->gw->loop) - r->get_ms < OBS_GET_WAIT_MS;
}

static void
silence_fired(loop_t *loop, void *arg)
{
    struct resource *r = arg;

    (void)loop;
    r->refresh_timer = 0;
    /*
     * Our CON GET is still unanswered and libcoap is still retransmitting
     * it.  Another CON would not overtake it: libcoap keeps one CON in
     * flight per session (NSTART = 1) and queues the rest.  Its answer or
     * its timeout (observe_on_nack) decides what comes next.
     */
    if (con_get_in_flight(r)) {
        arm_silence(r, COAP_DEFAULT_MAX_AGE);
        return;
    }
    if (r->active)
        log_info("device %s: /%s silent for longer than expected, re-observing",
                 r->dev->id, r->path);
    reregister(r);
}

/* How long a resource may stay silent: Max-Age plus a grace (RFC 7641
 * 3.3.1), or less when it notifies regularly (see arm_silence). */
static uint64_t
silence_ms(const struct resource *r, uint32_t max_age_s)
{
    uint64_t ms = (uint64_t)max_age_s * 1000 + OBS_GRACE_MS;

    if (r->interval_ms) {
        uint64_t early = r->interval_ms * OBS_SILENT_GAPS;

        if (early < OBS_SILENT_MIN_MS)
            early = OBS_SILENT_MIN_MS;
        if (early < ms)
            ms = early;
    }
    return ms;
}

/*
 * Re-register when Max-Age plus a grace passes in silence (RFC 7641 3.3.1),
 * or sooner when a resource that notifies regularly misses several of its
 * notifications in a row.  The second case matters on lossy links: the
 * device holds back every notification while one CON notification is
 * unacknowledged (NSTART = 1), and when all its retransmissions are lost
 * (0.6 % of them at 20 % loss each way) it goes quiet for 62-93 s and then
 * drops us.  A fresh GET is answered at once and carries the current value.
 */
static void
arm_silence(struct resource *r, uint32_t max_age_s)
{
    loop_t *loop = gw_of(r)->loop;

    loop_cancel_timer(loop, r->refresh_timer);
    r->refresh_timer = loop_add_timer(loop, silence_ms(r, max_age_s), silence_fired, r);
}

/*
 * Sends a GET with Observe=0 for 'r'.  On the session its token was made
 * for, the token is kept: RFC 7641 3.3.1 re-registers with the same token,
 * the device then renews the registration it has instead of adding one,
 * late notifications of it still count, and libcoap 4.3.1 replaces its
 * client-side state for the token - with a new token it kept one more
 * record (a copy of the request) per re-registration until the session
 * ended.  -1 when nothing was sent (a retry is scheduled).
 */
static int
send_register(struct resource *r, coap_pdu_type_t type)
{
    struct gw *gw = gw_of(r);
    uint64_t token = r->token;
    coap_pdu_t *pdu;
    uint8_t buf[4];

    loop_cancel_timer(gw->loop, r->refresh_timer);
    loop_cancel_timer(gw->loop, r->retry_timer);
    r->refresh_timer = r->retry_timer = 0;
    r->active = false;
    r->have_seq = false;        /* the answer is the first of a registration */
    if (!device_session(r->dev) || gw->stopping) {
        forget(r);
        return -1;
    }
    if (token && !device_token_live(r->dev, token)) {
        device_forget_token(r->dev, token);
        token = 0;
    }
    r->token = 0;
    pdu = device_request_new(r->dev, type, COAP_REQUEST_CODE_GET, r->path,
                             &observe_handler, r, &token);
    if (!pdu) {
        device_forget_token(r->dev, token);
        schedule_retry(r);
        return -1;
    }
    /* Observe sorts before Uri-Path (6 < 11): libcoap inserts in order. */
    coap_add_option(pdu, COAP_OPTION_OBSERVE,
                       coap_encode_var_safe(buf, sizeof(buf), COAP_OBSERVE_ESTABLISH),
                       buf);
    if (device_send(r->dev, pdu, token) < 0) {
        schedule_retry(r);
        return -1;
    }
    r->token = token;
    r->get_ms = loop_now_ms(gw->loop);
    set_get_pending(r, type == COAP_MESSAGE_CON);
    gw->stats.observations_started++;
    return 0;
}

/* The CON GET of a registration; 'r' has its place in the window. */
static void
start_now(struct resource *r)
{
    r->rereg_tries = 0;
    /* If the device never answers, libcoap tells us (observe_on_nack);
     * until then the silence timer waits for it. */
    if (send_register(r, COAP_MESSAGE_CON) == 0)
        arm_silence(r, COAP_DEFAULT_MAX_AGE);
}

static void
start_one(struct resource *r)
{
    /* Our CON GET for this observation is still queued or retransmitting
     * (a device whose registration was retransmitted registers twice or
     * three times): another would only queue behind it (NSTART = 1), and
     * at 20 % loss nine GETs of three registrations held a device's
     * observations for 32 s. */
    if (con_get_in_flight(r) || window_wait(r))
        return;
    start_now(r);
}

/*
 * Re-registration, as a NON GET.  The CON GET of the first version queued
 * behind every other CON to the device (NSTART = 1): at 20 % loss one slow
 * exchange - a command, another resource's GET - held all of a device's
 * re-registrations for 15 s and more, and a device that had gone quiet
 * stayed quiet (test_packet_loss_short).  A NON GET goes out at once; an
 * unanswered one is sent again, same token, after ACK_TIMEOUT doubling up
 * to the silence period; after OBS_REREG_PATIENT tries the pause goes on
 * doubling up to OBS_RETRY_MAX_MS, so a device that is gone costs little.
 */
static void
reregister(struct resource *r)
{
    struct gw *gw = gw_of(r);
    unsigned n = r->rereg_tries;
    uint64_t silence = silence_ms(r, COAP_DEFAULT_MAX_AGE);
    uint64_t ms;

    if (send_register(r, COAP_MESSAGE_NON) < 0)
        return;
    if (n < OBS_REREG_PATIENT) {
        ms = (uint64_t)OBS_REREG_FIRST_MS << n;
        if (ms > silence)
            ms = silence;
    } else {
        n -= OBS_REREG_PATIENT - 1;
        ms = silence << (n < 16 ? n : 16);
        if (ms > OBS_RETRY_MAX_MS)
            ms = OBS_RETRY_MAX_MS;
    }
    r->rereg_tries++;
    r->refresh_timer = loop_add_timer(gw->loop, ms, silence_fired, r);
}

static void
start_all(struct device *dev)
{
    for (size_t i = 0; i < dev->n_res; i++)
        if (dev->res[i].obs) {
            dev->res[i].failures = 0;
            start_one(&dev->res[i]);
        }
}

/* RFC 7641 3.6: a GET with Observe=1 and the same token.  Sent NON:
 * nobody waits for its answer, and if it is lost the device's next
 * notification gets a RST (unknown token), which also ends it. */
static void
cancel_all(struct device *dev, bool on_wire)
{
    for (size_t i = 0; i < dev->n_res; i++) {
        struct resource *r = &dev->res[i];

        if (on_wire)
            device_cancel_observe(dev, r->token);
        forget(r);
    }
}

void
observe_device_event(void *arg, device_t *dev, enum device_event ev)
{
    (void)arg;
    switch (ev) {
    case DEVICE_OBSERVE:
        start_all(dev);
        break;
    case DEVICE_SESSION_LOST:
    case DEVICE_FREED:
        cancel_all(dev, false);
        break;
    case DEVICE_UNOBSERVE:
    case DEVICE_STOPPING:
        cancel_all(dev, true);
        break;
    default:
        break;
    }
}

static uint32_t
option_uint(const coap_pdu_t *pdu, coap_option_num_t num, bool *present)
{
    coap_opt_iterator_t it;
    coap_opt_t *opt = coap_check_option(pdu, num, &it);

    *present = opt != NULL;
    return opt ? coap_decode_var_bytes(coap_opt_value(opt), coap_opt_length(opt)) : 0;
}

/* The sync covering a CON notification ended: its held ACK goes (or,
 * not safe, none does: the device's retransmission is a new chance). */
static void
notification_safe(void *arg, bool safe)
{
    struct transport_ack *a = arg;

    transport_ack_end(a, safe);
}

/*
 * queue.durability = "power": the CON notification's record 'seq' is
 * written, not yet synced.  Its ACK waits for the sync that covers it
 * (group commit, with the pushes and the other notifications); where it
 * cannot be held, the record is synced here, on the loop.  False when it
 * cannot be made safe (not to be acknowledged).
 */
static bool
ack_when_durable(struct gw *gw, coap_session_t *session, const coap_pdu_t *rcvd,
                 uint64_t seq)
{
    struct transport_ack *a;

    if (spool_is_safe(gw->spool, seq))
        return true;
    if ((a = transport_ack_later(gw->coap, session, rcvd))) {
        if (spool_when_safe(gw->spool, seq, notification_safe, a) < 0)
            transport_ack_end(a, spool_make_safe(gw->spool, seq) == 0);
        return true;
    }
    return spool_make_safe(gw->spool, seq) == 0;
}

/* False when the reading could not be stored (queue and spool full). */
static bool
publish_reading(struct resource *r, coap_session_t *session, const coap_pdu_t *rcvd, int ct)
{
    struct gw *gw = gw_of(r);
    const uint8_t *data = NULL;
    size_t len = 0, offset, total;
    uint64_t before;
    int qos;

    if (!coap_get_data_large(rcvd, &len, &data, &offset, &total))
        len = 0;
    if (len > (size_t)gw->cfg->coap.max_payload) {
        gw->stats.drops_too_large++;
        log_ratelimited(&gw->stats.drops_too_large,
                        "device %s: /%s: %zu-byte notification over coap.max_payload, dropped",
                        r->dev->id, r->path, len);
        return true;    /* refused for good: retrying would not help */
    }
    /* A NON notification gets QoS 0; a CON one (or the piggybacked first
     * answer) QoS 1: the device asked for reliability, so do we. */
    qos = coap_pdu_get_type(rcvd) == COAP_MESSAGE_NON ? gw->cfg->mqtt.qos_non
                                                       : gw->cfg->mqtt.qos_con;
    before = spool_last_seq(gw->spool);
    if (!outbound_put(gw, reading_message(gw, r->dev->id, r->path, data, len, qos, ct),
                      "reading from", r->dev->id))
        return false;
    if (coap_pdu_get_type(rcvd) != COAP_MESSAGE_CON || !gw->spool)
        return true;
    /* With queue.durability = "power" the ACK of a CON notification waits
     * for the sync of its record (ack_when_durable).  A reading held in
     * memory only (the spool could not take it) is not acknowledged in
     * that mode. */
    if (spool_last_seq(gw->spool) == before)
        return !config_durability_power(gw->cfg);
    if (!ack_when_durable(gw, session, rcvd, spool_last_seq(gw->spool))) {
        gw->stats.acks_withheld++;
        return false;
    }
    return true;
}

/* The device refused the observation, or answered without Observe (it
 * will not notify): count, say so, and try again later with backoff. */
static void
not_observed(struct resource *r, const char *why)
{
    gw_of(r)->stats.observations_failed++;
    log_warnx("device %s: %s", r->dev->id, why);
    forget(r);
    schedule_retry(r);
}

/* An accepted notification (Observe number 'seq' at 'now'): the
 * observation is confirmed and its silence timer re-armed. */
static void
observed(struct resource *r, uint32_t seq, uint64_t now, uint32_t max_age_s)
{
    if (!r->active)
        log_debug("device %s: observing /%s", r->dev->id, r->path);
    /* Learn the notification interval (moving average of the gaps). */
    if (r->have_seq && now > r->last_ms) {
        uint64_t gap = now - r->last_ms;

        r->interval_ms = r->interval_ms ? (r->interval_ms * 7 + gap) / 8 : gap;
    }
    r->active = true;
    r->failures = 0;
    r->rereg_tries = 0;
    set_get_pending(r, false);
    /* A notification shows the device is awake: deliver what waits. */
    device_awake(r->dev);
    r->have_seq = true;
    r->last_seq = seq;
    r->last_ms = now;
    arm_silence(r, max_age_s);
}

/* A response or notification for an observation token.  False when a CON
 * notification could not be stored: it must not be acknowledged (RST), so
 * the device keeps it; the observation is re-established later. */
static bool
handle_answer(struct resource *r, coap_session_t *session, const coap_pdu_t *rcvd)
{
    struct gw *gw = gw_of(r);
    coap_pdu_code_t code = coap_pdu_get_code(rcvd);
    bool has_obs, has_ct, has_age;
    uint32_t seq = option_uint(rcvd, COAP_OPTION_OBSERVE, &has_obs);
    uint32_t ct = option_uint(rcvd, COAP_OPTION_CONTENT_FORMAT, &has_ct);
    uint32_t max_age = option_uint(rcvd, COAP_OPTION_MAXAGE, &has_age);
    uint64_t now = loop_now_ms(gw->loop);
    char why[TOPIC_PATH_MAX + 48];

    if (COAP_RESPONSE_CLASS(code) != 2) {
        snprintf(why, sizeof(why), "observe /%s refused: %d.%02d", r->path,
                 COAP_RESPONSE_CLASS(code), code & 0x1f);
        not_observed(r, why);
        return true;
    }
    gw->stats.notifications_in++;
    r->dev->last_seen = loop_wall_s();
    if (has_obs && r->have_seq && !observe_is_fresh(r->last_seq, r->last_ms, seq, now)) {
        gw->stats.notifications_stale++;
        return true;
    }
    if (!publish_reading(r, session, rcvd, has_ct ? (int)ct : r->ct) &&
        coap_pdu_get_type(rcvd) == COAP_MESSAGE_CON)
        return false;   /* not stored: do not acknowledge it */
    if (!has_obs) {
        snprintf(why, sizeof(why), "/%s is not observable after all", r->path);
        not_observed(r, why);
        return true;
    }
    observed(r, seq, now, has_age ? max_age : COAP_DEFAULT_MAX_AGE);
    return true;
}

static bool
on_answer(void *owner, coap_session_t *session, const coap_pdu_t *rcvd)
{
    if (!handle_answer(owner, session, rcvd))
        return false;
    devices_con_response_seen(session, rcvd);
    return true;
}

/* The observe request itself was not delivered. */
static void
on_nack(void *owner, coap_nack_reason_t reason)
{
    struct resource *r = owner;

    set_get_pending(r, false);
    if (reason == COAP_NACK_RST) {
        gw_of(r)->stats.observations_failed++;
        forget(r);
        schedule_retry(r);
        return;
    }
    /* Timeouts and lost sessions: the silence timer or the device's next
     * appearance restarts the observation. */
    if (reason == COAP_NACK_TOO_MANY_RETRIES)
        schedule_retry(r);
}
