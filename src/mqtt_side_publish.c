/*
 * mqtt_side_publish.c - the outbound drain: readings from the queue (and
 * the spool behind it) handed to libmosquitto, no more QoS 1 in flight
 * than the window.  libmosquitto keeps QoS 1 messages it has accepted
 * across reconnects and resends them, so a message handed over stays in
 * our in-flight table (by mid) until its PUBACK.  QoS 0 is at most once by
 * definition: done when handed over.  Nothing is handed over while
 * disconnected: readings wait in the queue.  A publish the broker refuses
 * (a PUBACK reason >= 0x80, or libmosquitto refusing it for the broker,
 * e.g. over its Maximum Packet Size) is not delivered: it is held and
 * published again with backoff, and after mqtt.refused_retries more
 * refusals parked on disk (parked.h).  State publishes (bridge/state,
 * availability, the device list) take from the same window.
 *
 * Layer: transport (calls base: the queue, the spool, parked, payload, the
 * loop; calls up only through the done callbacks of the messages)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <uthash.h>

#include "coap2mqtt/log.h"
#include "coap2mqtt/mqtt_side.h"
#include "coap2mqtt/outq.h"
#include "coap2mqtt/parked.h"
#include "coap2mqtt/payload.h"
#include "coap2mqtt/spool.h"
#include "compat_mosq.h"
#include "mqtt_side_internal.h"

#define REFUSED_FIRST_MS 1000   /* a refused publish: again after 1 s, */
#define REFUSED_MAX_MS   60000  /* doubling up to a minute */

static void retry_refused(loop_t *loop, void *arg);

/* --- the window -------------------------------------------------------- */

/*
 * libmosquitto sends at most Receive Maximum QoS 1 messages (the broker's,
 * or MOSQ_OPT_SEND_MAXIMUM) and queues the rest inside itself, while QoS 0
 * messages go straight out: a NON reading would overtake the CON reading
 * before it (100 of them per run did in the bench).  So our own window is
 * never wider than the broker's, and mqtt_side_flush() stops the whole
 * FIFO, QoS 0 included, when it is full.
 */
void
mqtt_side__set_window(mqtt_side_t *m, const mosquitto_property *props)
{
    uint16_t receive_max = 0;

    m->window = (size_t)m->gw->cfg->mqtt.max_inflight;
    if (mosquitto_property_read_int16(props, MQTT_PROP_RECEIVE_MAXIMUM, &receive_max,
                                      false) && receive_max > 0 && receive_max < m->window) {
        log_notice("%s: broker takes %u QoS 1 messages in flight (mqtt.max_inflight %d)",
                   m->name, receive_max, m->gw->cfg->mqtt.max_inflight);
        m->window = receive_max;
    }
}

/* --- refused publishes -------------------------------------------------- */

/*
 * Reason codes that say the broker takes nothing just now, whatever the
 * message (its quota of messages in flight): those are retried without a
 * bound, like an outage.  Every other refusal (0x87 not authorised, 0x90
 * topic invalid, 0x95 too large, 0x99 payload format, 0x80/0x83 errors,
 * libmosquitto's own refusals) is about the message and may be for ever.
 */
static bool
refusal_transient(int reason)
{
    return reason == MQTT_RC_QUOTA_EXCEEDED || reason == MQTT_RC_PACKET_ID_IN_USE ||
           reason == MQTT_RC_SERVER_BUSY;
}

static void
arm_retry(mqtt_side_t *m)
{
    uint64_t now = loop_now_ms(m->gw->loop), first = UINT64_MAX;

    loop_cancel_timer(m->gw->loop, m->retry_timer);
    m->retry_timer = 0;
    for (outmsg_t *msg = m->held; msg; msg = msg->next)
        if (msg->retry_ms < first)
            first = msg->retry_ms;
    if (m->held)
        m->retry_timer = loop_add_timer(m->gw->loop, first > now ? first - now : 0,
                                        retry_refused, m);
}

/* Puts 'list' back at the head of the queue, in its own order. */
static void
requeue_front(mqtt_side_t *m, outmsg_t *list)
{
    outmsg_t *rev = NULL, *next;

    for (; list; list = next) {
        next = list->next;
        list->next = rev;
        rev = list;
    }
    for (; rev; rev = next) {
        next = rev->next;
        outq_push_front(m->src, rev);
    }
}

/* The held messages whose time has come go back to the head of the
 * queue: they are older than anything in it. */
static void
retry_refused(loop_t *loop, void *arg)
{
    mqtt_side_t *m = arg;
    uint64_t now = loop_now_ms(loop);
    outmsg_t *due = NULL, **due_tail = &due, **pp = &m->held, *msg;

    m->retry_timer = 0;
    m->held_tail = NULL;
    while ((msg = *pp)) {
        if (msg->retry_ms <= now) {
            *pp = msg->next;
            msg->next = NULL;
            *due_tail = msg;
            due_tail = &msg->next;
            m->n_held--;
        } else {
            m->held_tail = msg;
            pp = &msg->next;
        }
    }
    requeue_front(m, due);
    arm_retry(m);
    mqtt_side_flush(m);
}

/* After its retries: on disk, and its place in the spool given up. */
static bool
park(mqtt_side_t *m, outmsg_t *msg, const char *why)
{
    struct gw *gw = m->gw;

    if (parked_write(gw->cfg->state_dir, msg, why, msg->refusals) < 0)
        return false;
    gw->stats.drops_refused++;
    log_warnx("mqtt: parked %s after %u refusals (%s) in %s/%s", msg->topic,
              msg->refusals, why, gw->cfg->state_dir, PARKED_FILE);
    spool_delivered(gw->spool, msg->seq);
    outmsg_finish(msg, false);
    return true;
}

/*
 * The broker, or libmosquitto on its behalf, refused 'msg'.  Its device
 * was told it is safe, so it is neither dropped nor taken for delivered:
 * it is held, published again after 1, 2, 4 ... s (a minute at most) at
 * the head of the queue, and the readings behind it go on meanwhile.
 * After mqtt.refused_retries more refusals it is parked (unless the
 * broker only said it is busy).  A push whose device still waits for the
 * answer (no spool) is answered 5.03 at once: the device keeps it and is
 * the one to send it again.
 */
static void
refused(mqtt_side_t *m, outmsg_t *msg, const char *why, bool transient)
{
    static int warned;
    struct gw *gw = m->gw;
    unsigned shift;
    uint64_t delay;

    gw->stats.publish_refused++;
    msg->refusals++;
    if (msg->done) {
        log_ratelimited(&warned, "mqtt: broker refused publish to %s (%s): "
                        "the device is answered 5.03", msg->topic, why);
        spool_delivered(gw->spool, msg->seq);
        outmsg_finish(msg, false);
        return;
    }
    if (!transient && msg->refusals > (unsigned)gw->cfg->mqtt.refused_retries &&
        park(m, msg, why))
        return;
    shift = msg->refusals - 1 < 6 ? msg->refusals - 1 : 6;
    delay = (uint64_t)REFUSED_FIRST_MS << shift;
    if (delay > REFUSED_MAX_MS)
        delay = REFUSED_MAX_MS;
    log_ratelimited(&warned, "mqtt: broker refused publish to %s (%s): kept, "
                    "again in %u s", msg->topic, why, (unsigned)(delay / 1000));
    msg->retry_ms = loop_now_ms(gw->loop) + delay;
    msg->next = NULL;
    if (m->held_tail)
        m->held_tail->next = msg;
    else
        m->held = msg;
    m->held_tail = msg;
    m->n_held++;
    arm_retry(m);
}

/* --- publishing -------------------------------------------------------- */

void
mqtt_side__on_publish(struct mosquitto *mosq, void *arg, int mid, int reason,
                      const mosquitto_property *props)
{
    mqtt_side_t *m = arg;
    struct inflight *f;
    outmsg_t *msg;

    (void)mosq;
    (void)props;
    HASH_FIND_INT(m->inflight, &mid, f);
    if (!f) {
        struct state_mid *sm;

        /* Not a queued message: a state publish's PUBACK, or a QoS 0
         * publish written out (libmosquitto reports those too, with
         * reason 0).  Only the first frees a place in the window. */
        HASH_FIND_INT(m->state_mids, &mid, sm);
        if (sm) {
            HASH_DEL(m->state_mids, sm);
            free(sm);
            m->state_pending--;
            if (reason >= 0x80)
                log_warnx("mqtt: broker refused a state publish: %s",
                          mosquitto_reason_string(reason));
        }
        return;
    }
    HASH_DEL(m->inflight, f);
    m->n_inflight--;
    msg = f->msg;
    free(f);
    if (reason >= 0x80) {
        refused(m, msg, mosquitto_reason_string(reason), refusal_transient(reason));
        return;
    }
    m->gw->stats.puback++;
    spool_delivered(m->gw->spool, msg->seq);
    outmsg_finish(msg, true);
}

static mosquitto_property *
message_props(const mqtt_side_t *m, const outmsg_t *msg)
{
    mosquitto_property *props = NULL;
    const char *mime = payload_ct_to_mime(msg->ct);
    char ct[16];

    /* MQTT 3.1.1 has no properties: libmosquitto would refuse the publish
     * with them.  The substitutes are in docs/CONFIG.md (mqtt.protocol). */
    if (m->v311)
        return NULL;
    if (mime)
        mosquitto_property_add_string(&props, MQTT_PROP_CONTENT_TYPE, mime);
    else if (msg->ct >= 0) {
        /* No registered name: keep the number so nothing is lost. */
        snprintf(ct, sizeof(ct), "%d", msg->ct);
        mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY,
                                           "coap-ct", ct);
    }
    if (msg->corr)
        mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA,
                                      msg->corr, (uint16_t)msg->corr_len);
    return props;
}

/* Hands one message to libmosquitto.  0 = accepted, 1 = try again later
 * (message untouched), -1 = refused (message held or parked). */
static int
publish_one(mqtt_side_t *m, outmsg_t *msg)
{
    mosquitto_property *props = message_props(m, msg);
    struct inflight *f = calloc(1, sizeof(*f));
    int mid = 0, rc;

    if (!f) {
        mosquitto_property_free_all(&props);
        return 1;
    }
    rc = mosquitto_publish_v5(m->mosq, &mid, msg->topic, (int)msg->len,
                              msg->payload, msg->qos, msg->retain, props);
    mosquitto_property_free_all(&props);
    /*
     * A QoS 1 message that fails only when written is in libmosquitto's
     * queue already (it has its mid): libmosquitto sends it again after
     * the reconnect, and its PUBACK comes under this mid.
     */
    if (msg->qos > 0 && mid != 0 && (rc == MOSQ_ERR_NO_CONN ||
                                     rc == MOSQ_ERR_CONN_LOST || rc == MOSQ_ERR_ERRNO))
        rc = MOSQ_ERR_SUCCESS;
    /* Not sent: no connection (for QoS 0: it broke under the write), or
     * no memory.  Try again later; this is not the broker's refusal. */
    if (rc == MOSQ_ERR_NO_CONN || rc == MOSQ_ERR_NOMEM || rc == MOSQ_ERR_CONN_LOST ||
        rc == MOSQ_ERR_ERRNO) {
        free(f);
        return 1;
    }
    if (rc != MOSQ_ERR_SUCCESS) {
        free(f);
        refused(m, msg, mosquitto_strerror(rc), false);
        return -1;
    }
    m->gw->stats.published++;
    if (msg->qos == 0) {
        m->push_pending = true;
        /* At most once: done when handed over.  (libmosquitto may already
         * have written it and fired mqtt_side__on_publish inside the call above.) */
        free(f);
        spool_delivered(m->gw->spool, msg->seq);
        outmsg_finish(msg, true);
        return 0;
    }
    f->mid = mid;
    f->msg = msg;
    HASH_ADD_INT(m->inflight, mid, f);
    if (++m->n_inflight > m->inflight_peak)
        m->inflight_peak = m->n_inflight;
    return 0;
}

static void
kicked(loop_t *loop, void *arg)
{
    mqtt_side_t *m = arg;

    (void)loop;
    m->kick_timer = 0;
    mqtt_side_flush(m);
}

void
mqtt_side_kick(mqtt_side_t *m)
{
    if (!m->kick_timer && m->connected)
        m->kick_timer = loop_add_timer(m->gw->loop, 0, kicked, m);
}

/*
 * Nagle stays on: with QoS 1 the broker's PUBACKs release it within a
 * round trip, and it packs the publishes of successive flushes into few
 * segments (TCP_NODELAY cost 15-20 % of CON throughput, measured).  But
 * nothing answers a QoS 0 publish, so Nagle would hold its segment until
 * the broker's delayed ACK, 40 ms on Linux (NON latency p50 was 26 ms at
 * 15k/s).  After QoS 0 bytes, toggling TCP_NODELAY pushes them out once.
 */
static void
push_qos0(mqtt_side_t *m)
{
    int on = 1, off = 0;

    if (!m->push_pending || m->fd < 0 || mosquitto_want_write(m->mosq) ||
        compat_mosq_unsent(m->fd))
        return;
    setsockopt(m->fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    setsockopt(m->fd, IPPROTO_TCP, TCP_NODELAY, &off, sizeof(off));
    m->push_pending = false;
}

/* Around a burst of publishes: one write() for all of them
 * (compat_mosq.c), or TCP_CORK (full segments) if the socket has no
 * buffer there. */
static void
cork(mqtt_side_t *m, int on)
{
    if (m->fd >= 0 && !compat_mosq_hold(m->fd, on))
        setsockopt(m->fd, IPPROTO_TCP, TCP_CORK, &on, sizeof(on));
}

void
mqtt_side_flush(mqtt_side_t *m)
{
    bool any = false, corked = false;
    outmsg_t *msg;

    /* State publishes at QoS 1 take from the same Receive Maximum.  A
     * broker that refuses everything would move the whole queue into the
     * held list: it holds a window's worth at most. */
    while (m->connected && m->n_inflight + m->state_pending < m->window &&
           m->n_held < m->window && !mosquitto_want_write(m->mosq)) {
        int rc;

        if (outq_len(m->src) <= m->refill_below) {
            /* Memory drained: read the next part of a disk backlog (or
             * the pool hands on our share of the queue). */
            if (m->refill)
                m->refill(m->refill_arg);
            else
                spool_refill(m->gw->spool, m->src);
        }
        if (!(msg = outq_pop(m->src)))
            break;
        if (!corked && outq_len(m->src) > 0) {
            cork(m, 1);
            corked = true;
        }
        rc = publish_one(m, msg);
        if (rc > 0) {
            outq_push_front(m->src, msg);
            break;
        }
        any = true;
        /*
         * The socket is full (libmosquitto kept bytes back): every further
         * publish would cost a write() that fails with EAGAIN -- half of
         * all writes under load.  The rest waits in our queue for EPOLLOUT.
         */
        if (mosquitto_want_write(m->mosq))
            break;
    }
    if (corked)
        cork(m, 0);
    push_qos0(m);
    if (any)
        mqtt_side__sync_fd(m);
}

int
mqtt_side_publish_props(mqtt_side_t *m, const char *topic, const void *payload,
                        size_t len, const mosquitto_property *props)
{
    int mid = 0;
    struct state_mid *sm;

    if (!m->connected ||
        mosquitto_publish_v5(m->mosq, &mid, topic, (int)len, payload, 1, false,
                             m->v311 ? NULL : props) != MOSQ_ERR_SUCCESS)
        return -1;
    /* Counted with the state publishes: the window and a graceful stop
     * wait for its PUBACK the same way. */
    if ((sm = calloc(1, sizeof(*sm)))) {
        sm->mid = mid;
        HASH_ADD_INT(m->state_mids, mid, sm);
        m->state_pending++;
    }
    mqtt_side__sync_fd(m);
    return 0;
}

int
mqtt_side_publish_now(mqtt_side_t *m, const char *topic, const char *payload,
                      int qos, bool retain)
{
    int mid = 0, rc;

    if (!m->connected)
        return -1;
    rc = mosquitto_publish_v5(m->mosq, &mid, topic, (int)strlen(payload),
                              payload, qos, retain, NULL);
    if (rc != MOSQ_ERR_SUCCESS)
        return -1;
    if (qos > 0) {
        struct state_mid *sm = calloc(1, sizeof(*sm));

        /* Without memory it is not counted: the window is one wider
         * until then, which libmosquitto absorbs by queueing. */
        if (sm) {
            sm->mid = mid;
            HASH_ADD_INT(m->state_mids, mid, sm);
            m->state_pending++;
        }
    } else {
        m->push_pending = true;
    }
    push_qos0(m);
    mqtt_side__sync_fd(m);
    return 0;
}
