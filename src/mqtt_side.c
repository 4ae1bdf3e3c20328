/*
 * mqtt_side.c - libmosquitto without its thread.  The socket sits in our
 * epoll set (EPOLLOUT only while libmosquitto has bytes to write); a 1 s
 * timer runs mosquitto_loop_misc for keepalives.  libmosquitto keeps QoS 1
 * messages it has accepted across reconnects and resends them, so a
 * message handed over stays in our in-flight table (by mid) until its
 * PUBACK.  QoS 0 is at most once by definition: done when handed over.
 * Nothing is handed over while disconnected: readings wait in the queue.
 * A publish the broker refuses (a PUBACK reason >= 0x80, or libmosquitto
 * refusing it for the broker, e.g. over its Maximum Packet Size) is not
 * delivered: it is held and published again with backoff, and after
 * mqtt.refused_retries more refusals parked on disk (parked.h).
 *
 * Layer: transport (calls base; calls up only through the message and
 * connected callbacks the wiring registered)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
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
#include "coap2mqtt/topics.h"

#define REFUSED_FIRST_MS 1000   /* a refused publish: again after 1 s, */
#define REFUSED_MAX_MS   60000  /* doubling up to a minute */

struct inflight {
    int mid;
    outmsg_t *msg;
    UT_hash_handle hh;
};

/* A QoS 1 state publish (bridge/state, availability, the device list)
 * awaiting its PUBACK. */
struct state_mid {
    int mid;
    UT_hash_handle hh;
};

struct mqtt_side {
    struct gw *gw;
    struct mosquitto *mosq;
    int fd;                     /* registered in the loop, -1 when none */
    bool connected;             /* CONNACK success seen */
    bool closing;               /* mqtt_side_disconnect() called */
    unsigned attempts;          /* failed attempts since last success */
    uint64_t reconnect_timer;
    uint64_t misc_timer;
    uint64_t kick_timer;
    struct inflight *inflight;
    size_t n_inflight;
    struct state_mid *state_mids; /* QoS 1 state publishes awaiting PUBACK */
    size_t state_pending;       /* how many */
    size_t window;              /* QoS 1 in flight: max_inflight, or less if
                                 * the broker's Receive Maximum says so */
    bool push_pending;          /* QoS 0 bytes Nagle may be holding back */
    outmsg_t *held, *held_tail; /* refused, to be published again; in the
                                 * order they were refused */
    size_t n_held;
    uint64_t retry_timer;
    mqtt_message_fn on_message;
    void *message_arg;
    mqtt_connected_fn on_connected;
    void *connected_arg;
    char password[256];
};

void
mqtt_side_set_handlers(mqtt_side_t *m, mqtt_message_fn on_message, void *message_arg,
                       mqtt_connected_fn on_connected, void *connected_arg)
{
    m->on_message = on_message;
    m->message_arg = message_arg;
    m->on_connected = on_connected;
    m->connected_arg = connected_arg;
}

static void arm_reconnect(mqtt_side_t *m);
static void retry_refused(loop_t *loop, void *arg);
static void sync_fd(mqtt_side_t *m);

static void
forget_state_mids(mqtt_side_t *m)
{
    struct state_mid *sm, *tmp;

    HASH_ITER(hh, m->state_mids, sm, tmp) {
        HASH_DEL(m->state_mids, sm);
        free(sm);
    }
    m->state_pending = 0;
}

/* --- socket in the loop ---------------------------------------------- */

static void
on_socket(loop_t *loop, int fd, uint32_t events, void *arg)
{
    mqtt_side_t *m = arg;

    (void)loop;
    (void)fd;
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        mosquitto_loop_read(m->mosq, 1);
    if (m->fd >= 0 && (events & EPOLLOUT))
        mosquitto_loop_write(m->mosq, 1);
    sync_fd(m);
    mqtt_side_flush(m);
}

/* Follows libmosquitto's socket: registers a new fd, wants EPOLLOUT only
 * while there is something to write. */
static void
sync_fd(mqtt_side_t *m)
{
    int fd = mosquitto_socket(m->mosq);
    uint32_t ev = EPOLLIN;

    if (fd != m->fd && m->fd >= 0) {
        loop_del_fd(m->gw->loop, m->fd);
        m->fd = -1;
    }
    if (fd < 0)
        return;
    if (mosquitto_want_write(m->mosq))
        ev |= EPOLLOUT;
    if (m->fd < 0) {
        if (loop_add_fd(m->gw->loop, fd, ev, on_socket, m) < 0) {
            log_warn("mqtt: cannot watch socket");
            return;
        }
        m->fd = fd;
    } else {
        loop_mod_fd(m->gw->loop, fd, ev);
    }
}

/* --- connection -------------------------------------------------------- */

/*
 * libmosquitto sends at most Receive Maximum QoS 1 messages (the broker's,
 * or MOSQ_OPT_SEND_MAXIMUM) and queues the rest inside itself, while QoS 0
 * messages go straight out: a NON reading would overtake the CON reading
 * before it (100 of them per run did in the bench).  So our own window is
 * never wider than the broker's, and mqtt_side_flush() stops the whole
 * FIFO, QoS 0 included, when it is full.
 */
static void
set_window(mqtt_side_t *m, const mosquitto_property *props)
{
    uint16_t receive_max = 0;

    m->window = (size_t)m->gw->cfg->mqtt.max_inflight;
    if (mosquitto_property_read_int16(props, MQTT_PROP_RECEIVE_MAXIMUM, &receive_max,
                                      false) && receive_max > 0 && receive_max < m->window) {
        log_notice("mqtt: broker takes %u QoS 1 messages in flight (mqtt.max_inflight %d)",
                   receive_max, m->gw->cfg->mqtt.max_inflight);
        m->window = receive_max;
    }
}

static void
on_connect(struct mosquitto *mosq, void *arg, int rc, int flags,
           const mosquitto_property *props)
{
    mqtt_side_t *m = arg;
    struct config_mqtt *mc = &m->gw->cfg->mqtt;
    char topic[TOPIC_MAX];
    mosquitto_property *sprops = NULL;

    if (rc != 0) {
        log_warnx("mqtt: broker %s:%d refused the connection: %s",
                  mc->host, mc->port, mosquitto_reason_string(rc));
        return;     /* the broker closes; on_disconnect arms a retry */
    }
    m->connected = true;
    set_window(m, props);
    m->attempts = 0;
    m->gw->stats.mqtt_connects++;
    log_notice("mqtt: connected to %s:%d (session %s)", mc->host, mc->port,
               (flags & 1) ? "resumed" : "new");
    /* No Local: the gateway must never take its own readings for commands. */
    snprintf(topic, sizeof(topic), "%s/#", mc->base_topic);
    rc = mosquitto_subscribe_v5(mosq, NULL, topic, 1, MQTT_SUB_OPT_NO_LOCAL,
                                sprops);
    if (rc != MOSQ_ERR_SUCCESS)
        log_warnx("mqtt: subscribe %s: %s", topic, mosquitto_strerror(rc));
    if (m->on_connected)
        m->on_connected(m->connected_arg);
    mqtt_side_flush(m);
}

static void
on_disconnect(struct mosquitto *mosq, void *arg, int rc,
              const mosquitto_property *props)
{
    mqtt_side_t *m = arg;

    (void)mosq;
    (void)props;
    if (m->connected && !m->closing) {
        m->gw->stats.mqtt_disconnects++;
        log_warnx("mqtt: connection lost: %s",
                  rc == 0 ? "closed" : mosquitto_strerror(rc));
    }
    m->connected = false;
    forget_state_mids(m);   /* resent by status_on_connected() anyway */
    /* libmosquitto has closed the socket already. */
    if (m->fd >= 0) {
        loop_del_fd(m->gw->loop, m->fd);
        m->fd = -1;
    }
    if (!m->closing)
        arm_reconnect(m);
}

static void
reconnect_now(loop_t *loop, void *arg)
{
    mqtt_side_t *m = arg;
    int rc;

    (void)loop;
    m->reconnect_timer = 0;
    if (m->closing || m->connected)
        return;
    rc = mosquitto_reconnect_async(m->mosq);
    if (rc != MOSQ_ERR_SUCCESS) {
        if (m->attempts == 0 || log_get_level() >= LOG_LVL_DEBUG)
            log_warnx("mqtt: cannot reach %s:%d: %s", m->gw->cfg->mqtt.host,
                      m->gw->cfg->mqtt.port,
                      rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
        arm_reconnect(m);
        return;
    }
    sync_fd(m);
}

/* Exponential backoff from reconnect_min to reconnect_max, with +-25 %
 * jitter so a fleet of gateways does not reconnect in lock step. */
static void
arm_reconnect(mqtt_side_t *m)
{
    const struct config_mqtt *mc = &m->gw->cfg->mqtt;
    uint64_t ms = (uint64_t)mc->reconnect_min * 1000;
    uint64_t cap = (uint64_t)mc->reconnect_max * 1000;

    if (m->reconnect_timer)
        return;
    for (unsigned i = 0; i < m->attempts && ms < cap; i++)
        ms *= 2;
    if (ms > cap)
        ms = cap;
    ms = ms * 3 / 4 + (uint64_t)(random() % (long)(ms / 2 + 1));
    m->attempts++;
    m->reconnect_timer = loop_add_timer(m->gw->loop, ms, reconnect_now, m);
}

static void
misc_tick(loop_t *loop, void *arg)
{
    mqtt_side_t *m = arg;

    if (m->fd >= 0)
        mosquitto_loop_misc(m->mosq);
    sync_fd(m);
    m->misc_timer = loop_add_timer(loop, 1000, misc_tick, m);
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
        outq_push_front(m->gw->outq, rev);
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

static void
on_publish(struct mosquitto *mosq, void *arg, int mid, int reason,
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
message_props(const outmsg_t *msg)
{
    mosquitto_property *props = NULL;
    const char *mime = payload_ct_to_mime(msg->ct);
    char ct[16];

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
    mosquitto_property *props = message_props(msg);
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
         * have written it and fired on_publish inside the call above.) */
        free(f);
        spool_delivered(m->gw->spool, msg->seq);
        outmsg_finish(msg, true);
        return 0;
    }
    f->mid = mid;
    f->msg = msg;
    HASH_ADD_INT(m->inflight, mid, f);
    m->n_inflight++;
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

    if (!m->push_pending || m->fd < 0 || mosquitto_want_write(m->mosq))
        return;
    setsockopt(m->fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    setsockopt(m->fd, IPPROTO_TCP, TCP_NODELAY, &off, sizeof(off));
    m->push_pending = false;
}

/* TCP_CORK around a burst of publishes: the kernel sends full segments. */
static void
cork(mqtt_side_t *m, int on)
{
    if (m->fd >= 0)
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

        if (!(msg = outq_pop(m->gw->outq))) {
            /* Memory drained: read the next part of a disk backlog. */
            spool_refill(m->gw->spool, m->gw->outq);
            if (!(msg = outq_pop(m->gw->outq)))
                break;
        }
        if (!corked && outq_len(m->gw->outq) > 0) {
            cork(m, 1);
            corked = true;
        }
        rc = publish_one(m, msg);
        if (rc > 0) {
            outq_push_front(m->gw->outq, msg);
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
        sync_fd(m);
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
    sync_fd(m);
    return 0;
}

bool
mqtt_side_idle(const mqtt_side_t *m)
{
    return !m->connected ||
           (m->n_inflight == 0 && m->state_pending == 0 && !mosquitto_want_write(m->mosq));
}

static void
on_message(struct mosquitto *mosq, void *arg, const struct mosquitto_message *msg,
           const mosquitto_property *props)
{
    mqtt_side_t *m = arg;

    (void)mosq;
    if (m->on_message)
        m->on_message(m->message_arg, msg, props);
}

static void
on_log(struct mosquitto *mosq, void *arg, int level, const char *str)
{
    (void)mosq;
    (void)arg;
    if (level & (MOSQ_LOG_ERR | MOSQ_LOG_WARNING))
        log_warnx("libmosquitto: %s", str);
    else
        log_debug("libmosquitto: %s", str);
}

/* --- lifecycle --------------------------------------------------------- */

static int
read_password(mqtt_side_t *m, const char *path)
{
    FILE *f = fopen(path, "re");
    size_t n;

    if (!f) {
        log_warn("mqtt: password_file %s", path);
        return -1;
    }
    if (!fgets(m->password, sizeof(m->password), f))
        m->password[0] = '\0';
    fclose(f);
    n = strcspn(m->password, "\r\n");
    m->password[n] = '\0';
    return 0;
}

/* TLS to the broker: its certificate must chain to tls_ca_file and name
 * mqtt.host (hostname verification is never turned off). */
static int
configure_tls(mqtt_side_t *m)
{
    const struct config_mqtt *mc = &m->gw->cfg->mqtt;
    int rc;

    if (!mc->tls_ca_file)
        return 0;
    rc = mosquitto_tls_set(m->mosq, mc->tls_ca_file, NULL, mc->tls_cert_file,
                           mc->tls_key_file, NULL);
    if (rc == MOSQ_ERR_SUCCESS)
        rc = mosquitto_tls_opts_set(m->mosq, 1 /* SSL_VERIFY_PEER */,
                                    mc->tls_version ? mc->tls_version : "tlsv1.2",
                                    mc->tls_ciphers);
    if (rc == MOSQ_ERR_SUCCESS)
        rc = mosquitto_tls_insecure_set(m->mosq, false);
    if (rc != MOSQ_ERR_SUCCESS) {
        log_warnx("mqtt: TLS setup: %s", mosquitto_strerror(rc));
        return -1;
    }
    return 0;
}

static int
configure(mqtt_side_t *m)
{
    const struct config_mqtt *mc = &m->gw->cfg->mqtt;
    char topic[TOPIC_MAX];

    mosquitto_int_option(m->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    /* Without a Receive Maximum from the broker, libmosquitto would allow 20. */
    mosquitto_int_option(m->mosq, MOSQ_OPT_SEND_MAXIMUM, mc->max_inflight);
    if (configure_tls(m) < 0)
        return -1;
    snprintf(topic, sizeof(topic), "%s/bridge/state", mc->base_topic);
    if (mosquitto_will_set_v5(m->mosq, topic, 7, "offline", 1, true, NULL))
        return -1;
    if (mc->username) {
        if (mc->password_file && read_password(m, mc->password_file) < 0)
            return -1;
        if (mosquitto_username_pw_set(m->mosq, mc->username,
                                      mc->password_file ? m->password : NULL))
            return -1;
    }
    mosquitto_connect_v5_callback_set(m->mosq, on_connect);
    mosquitto_disconnect_v5_callback_set(m->mosq, on_disconnect);
    mosquitto_publish_v5_callback_set(m->mosq, on_publish);
    mosquitto_message_v5_callback_set(m->mosq, on_message);
    mosquitto_log_callback_set(m->mosq, on_log);
    return 0;
}

mqtt_side_t *
mqtt_side_new(struct gw *gw)
{
    mqtt_side_t *m = calloc(1, sizeof(*m));

    if (!m)
        return NULL;
    m->gw = gw;
    m->fd = -1;
    /* clean_start = false: the broker keeps our subscription and queues
     * commands while we are away (session expiry set at connect). */
    m->mosq = mosquitto_new(gw->cfg->mqtt.client_id, false, m);
    if (!m->mosq || configure(m) < 0) {
        log_warnx("mqtt: cannot set up the client");
        mqtt_side_free(m);
        return NULL;
    }
    return m;
}

void
mqtt_side_start(mqtt_side_t *m)
{
    const struct config_mqtt *mc = &m->gw->cfg->mqtt;
    mosquitto_property *props = NULL;
    int rc;

    mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL,
                                 (uint32_t)mc->session_expiry);
    /* The first attempt stores host and properties in libmosquitto (only
     * the v5 call takes properties); it connects blocking, which at start
     * costs at most the TCP connect.  Retries are non-blocking. */
    rc = mosquitto_connect_bind_v5(m->mosq, mc->host, mc->port, mc->keepalive,
                                   NULL, props);
    mosquitto_property_free_all(&props);
    if (rc != MOSQ_ERR_SUCCESS) {
        log_warnx("mqtt: cannot reach %s:%d: %s; retrying", mc->host, mc->port,
                  rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
        arm_reconnect(m);
    } else {
        sync_fd(m);
    }
    m->misc_timer = loop_add_timer(m->gw->loop, 1000, misc_tick, m);
}

bool
mqtt_side_connected(const mqtt_side_t *m)
{
    return m->connected;
}

size_t
mqtt_side_inflight(const mqtt_side_t *m)
{
    return m->n_inflight;
}

size_t
mqtt_side_held(const mqtt_side_t *m)
{
    return m->n_held;
}

void
mqtt_side_disconnect(mqtt_side_t *m)
{
    m->closing = true;
    loop_cancel_timer(m->gw->loop, m->reconnect_timer);
    m->reconnect_timer = 0;
    if (m->fd >= 0) {
        mosquitto_disconnect_v5(m->mosq, 0, NULL);
        /* Push the DISCONNECT out now; the loop may not run again. */
        mosquitto_loop_write(m->mosq, 1);
    }
    m->connected = false;
}

void
mqtt_side_free(mqtt_side_t *m)
{
    struct inflight *f, *tmp;

    if (!m)
        return;
    loop_cancel_timer(m->gw->loop, m->reconnect_timer);
    loop_cancel_timer(m->gw->loop, m->misc_timer);
    loop_cancel_timer(m->gw->loop, m->kick_timer);
    loop_cancel_timer(m->gw->loop, m->retry_timer);
    if (m->fd >= 0)
        loop_del_fd(m->gw->loop, m->fd);
    HASH_ITER(hh, m->inflight, f, tmp) {
        HASH_DEL(m->inflight, f);
        outmsg_finish(f->msg, false);
        free(f);
    }
    /* Held ones stay in the spool for the next start. */
    while (m->held) {
        outmsg_t *msg = m->held;

        m->held = msg->next;
        outmsg_finish(msg, false);
    }
    forget_state_mids(m);
    if (m->mosq)
        mosquitto_destroy(m->mosq);
    explicit_bzero(m->password, sizeof(m->password));
    free(m);
}
