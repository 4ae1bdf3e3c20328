/*
 * mqtt_side.c - libmosquitto without its thread.  The socket sits in our
 * epoll set (EPOLLOUT only while libmosquitto has bytes to write); a 1 s
 * timer runs mosquitto_loop_misc for keepalives.  This file sets the
 * client up (MQTT v5 or 3.1.1, will, credentials, TLS), connects and reconnects
 * with backoff, follows the socket in the loop, passes libmosquitto's
 * callbacks on and answers the accessors.  The outbound drain (publishing,
 * PUBACKs, refused readings) is mqtt_side_publish.c; the state both share
 * is in mqtt_side_internal.h.
 *
 * Layer: transport (calls base; calls up only through the message and
 * connected callbacks the wiring registered)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <uthash.h>

#include "coap2mqtt/log.h"
#include "coap2mqtt/mqtt_side.h"
#include "compat_mosq.h"
#include "coap2mqtt/outq.h"
#include "coap2mqtt/topics.h"
#include "mqtt_side_internal.h"

void
mqtt_side_set_handlers(mqtt_side_t *m, mqtt_message_fn on_message, void *message_arg,
                       mqtt_connected_fn on_connected, void *connected_arg)
{
    m->on_message = on_message;
    m->message_arg = message_arg;
    m->on_connected = on_connected;
    m->connected_arg = connected_arg;
}

void
mqtt_side_set_source(mqtt_side_t *m, outq_t *src, size_t below,
                     mqtt_refill_fn fn, void *arg)
{
    m->src = src;
    m->refill_below = below;
    m->refill = fn;
    m->refill_arg = arg;
}

static void arm_reconnect(mqtt_side_t *m);
static int connect_first(mqtt_side_t *m);

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
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        /* libmosquitto reads as many packets as it has messages in flight;
         * more may wait in compat_mosq's buffer, which epoll cannot see.
         * Bounded: a broker sending without end still lets the loop turn. */
        int rounds = 0;

        do
            mosquitto_loop_read(m->mosq, 1);
        while (++rounds < 64 && compat_mosq_buffered(mosquitto_socket(m->mosq)));
    }
    if (m->fd >= 0 && (events & EPOLLOUT)) {
        compat_mosq_flush(m->fd);       /* collected publishes go first */
        mosquitto_loop_write(m->mosq, 1);
    }
    mqtt_side__sync_fd(m);
    mqtt_side_flush(m);
}

/* Follows libmosquitto's socket: registers a new fd, wants EPOLLOUT only
 * while there is something to write. */
void
mqtt_side__sync_fd(mqtt_side_t *m)
{
    int fd = mosquitto_socket(m->mosq);
    uint32_t ev = EPOLLIN;

    if (fd != m->fd && m->fd >= 0) {
        loop_del_fd(m->gw->loop, m->fd);
        m->fd = -1;
    }
    if (fd < 0)
        return;
    if (mosquitto_want_write(m->mosq) || compat_mosq_unsent(fd))
        ev |= EPOLLOUT;
    if (m->fd < 0) {
        compat_mosq_buffer(fd);
        if (loop_add_fd(m->gw->loop, fd, ev, on_socket, m) < 0) {
            log_warn("%s: cannot watch socket", m->name);
            return;
        }
        m->fd = fd;
    } else {
        loop_mod_fd(m->gw->loop, fd, ev);
    }
}

/* --- connection -------------------------------------------------------- */

/* --- protocol version ---------------------------------------------------- */

static bool
protocol_auto(const mqtt_side_t *m)
{
    return strcmp(m->gw->cfg->mqtt.protocol, "auto") == 0;
}

static const char *
protocol_name(bool v311)
{
    return v311 ? "3.1.1" : "5";
}

static void
use_protocol(mqtt_side_t *m, bool v311)
{
    m->v311 = v311;
    mosquitto_int_option(m->mosq, MOSQ_OPT_PROTOCOL_VERSION,
                         v311 ? MQTT_PROTOCOL_V311 : MQTT_PROTOCOL_V5);
}

/*
 * mqtt.protocol "auto": a broker that answers an MQTT v5 CONNECT by closing
 * the connection before any CONNACK (RabbitMQ 3.10 does) or with "unsupported
 * protocol version" gets the other version at the next attempt.  Alternating
 * (rather than settling on 3.1.1 for good) lets a broker that only hiccuped
 * get v5 again one attempt later.
 */
static void
switch_protocol(mqtt_side_t *m, const char *what)
{
    const struct config_mqtt *mc = &m->gw->cfg->mqtt;

    if (m->reconnect_full)
        return;
    if (!protocol_auto(m)) {
        if (m->attempts == 0)   /* once per outage */
            log_warnx("%s: broker %s:%d %s an MQTT %s CONNECT before any CONNACK "
                      "(a broker for the other version? see mqtt.protocol)",
                      m->name, mc->host, mc->port, what, protocol_name(m->v311));
        return;
    }
    log_notice("%s: broker %s:%d %s an MQTT %s CONNECT; trying %s next "
               "(mqtt.protocol \"auto\")", m->name, mc->host, mc->port, what,
               protocol_name(m->v311), protocol_name(!m->v311));
    use_protocol(m, !m->v311);
    m->reconnect_full = true;
}

/*
 * The command topics.  With v5, '<base>/#' with No Local: the gateway never
 * takes its own readings for commands.  3.1.1 has no No Local, and '<base>/#'
 * would bring every reading we publish back to us (twice the broker's
 * traffic), so there it is one filter per path depth and verb, which match
 * exactly the topics topic_parse_command() accepts: a path never ends in
 * set or get (topic_path_valid), so no reading matches them; plus the
 * request API's <base>/bridge/request/#.
 */
static void
subscribe_commands(mqtt_side_t *m)
{
    const char *base = m->gw->cfg->mqtt.base_topic;
    char filters[2 * TOPIC_PATH_DEPTH + 1][TOPIC_BASE_MAX + 2 * TOPIC_PATH_DEPTH + 48];
    char *subs[2 * TOPIC_PATH_DEPTH + 1];
    int n = 0, rc;

    if (m->gw->cfg->mqtt.instance) {
        /* One of several: the device command topics are subscribed device
         * by device (ownership.c); here the instance's request API, the
         * owners of devices and the state of the other instances. */
        const char *inst = m->gw->cfg->mqtt.instance;

        topic_bridge(filters[n++], sizeof(filters[0]), base, inst, "request/#");
        topic_bridge(filters[n++], sizeof(filters[0]), base, inst, "forward/#");
        topic_bridge(filters[n++], sizeof(filters[0]), base, "owner", "+");
        topic_bridge(filters[n++], sizeof(filters[0]), base, "+", "state");
        for (int i = 0; i < n; i++)
            subs[i] = filters[i];
        rc = mosquitto_subscribe_multiple(m->mosq, NULL, n, subs, 1,
                                          m->v311 ? 0 : MQTT_SUB_OPT_NO_LOCAL, NULL);
    } else if (mqtt_side_no_local(m)) {
        snprintf(filters[0], sizeof(filters[0]), "%s/#", base);
        rc = mosquitto_subscribe_v5(m->mosq, NULL, filters[0], 1,
                                    MQTT_SUB_OPT_NO_LOCAL, NULL);
    } else {
        if (!m->v311) {
            /* mqtt.connections > 1: the readings of the other connections
             * would come back through a <base>/# our session may hold
             * from a run with one connection. */
            snprintf(filters[0], sizeof(filters[0]), "%s/#", base);
            mosquitto_unsubscribe(m->mosq, NULL, filters[0]);
        }
        for (int depth = 1; depth <= TOPIC_PATH_DEPTH; depth++) {
            for (int verb = 0; verb < 2; verb++, n++) {
                int len = snprintf(filters[n], sizeof(filters[n]), "%s/+", base);

                for (int i = 0; i < depth; i++)
                    len += snprintf(filters[n] + len, sizeof(filters[n]) - (size_t)len, "/+");
                snprintf(filters[n] + len, sizeof(filters[n]) - (size_t)len,
                         verb ? "/get" : "/set");
                subs[n] = filters[n];
            }
        }
        /* and the broker request API (requests.c) */
        snprintf(filters[n], sizeof(filters[n]), "%s/bridge/request/#", base);
        subs[n] = filters[n];
        n++;
        rc = mosquitto_subscribe_multiple(m->mosq, NULL, n, subs, 1,
                                          m->v311 ? 0 : MQTT_SUB_OPT_NO_LOCAL, NULL);
    }
    if (rc != MOSQ_ERR_SUCCESS)
        log_warnx("mqtt: subscribe to the command topics: %s", mosquitto_strerror(rc));
}

/* --- connection -------------------------------------------------------- */

static void
subscribe_extra(mqtt_side_t *m, const char *topic)
{
    /* No Local means nothing to 3.1.1 (and libmosquitto would send it as
     * a reserved bit): there, such topics are never ours to publish on. */
    int rc = mosquitto_subscribe_v5(m->mosq, NULL, topic, 1,
                                    m->v311 ? 0 : MQTT_SUB_OPT_NO_LOCAL, NULL);

    if (rc != MOSQ_ERR_SUCCESS)
        log_warnx("mqtt: subscribe %s: %s", topic, mosquitto_strerror(rc));
}

int
mqtt_side_add_subscription(mqtt_side_t *m, const char *topic)
{
    char *dup;

    if (m->n_extra_subs == MQTT_SIDE_EXTRA_SUBS || !(dup = strdup(topic)))
        return -1;
    m->extra_subs[m->n_extra_subs++] = dup;
    if (m->connected)
        subscribe_extra(m, dup);
    return 0;
}

static void
on_connect(struct mosquitto *mosq, void *arg, int rc, int flags,
           const mosquitto_property *props)
{
    mqtt_side_t *m = arg;
    struct config_mqtt *mc = &m->gw->cfg->mqtt;

    (void)mosq;
    if (rc != 0) {
        log_warnx("%s: broker %s:%d refused the connection: %s",
                  m->name, mc->host, mc->port, mosquitto_reason_string(rc));
        if (rc == MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION ||
            (m->v311 && rc == CONNACK_REFUSED_PROTOCOL_VERSION))
            switch_protocol(m, "refused");
        return;     /* the broker closes; on_disconnect arms a retry */
    }
    m->connected = true;
    m->session_resumed = (flags & 1) != 0;
    mqtt_side__set_window(m, props);
    m->attempts = 0;
    m->gw->stats.mqtt_connects++;
    log_notice("%s: connected to %s:%d (MQTT %s, session %s)", m->name, mc->host, mc->port,
               protocol_name(m->v311), (flags & 1) ? "resumed" : "new");
    if (m->index > 0) {
        /* Publish-only: readings, nothing else (mqtt_pool.c). */
        mqtt_side_flush(m);
        return;
    }
    if (m->v311 && protocol_auto(m))
        log_warnx("mqtt: the broker speaks MQTT 3.1.1 only: no Response Topic, "
                  "Correlation Data, content type or message expiry (set "
                  "mqtt.protocol = \"3.1.1\" to skip the v5 attempt)");
    subscribe_commands(m);
    for (size_t i = 0; i < m->n_extra_subs; i++)
        subscribe_extra(m, m->extra_subs[i]);
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
    /* Closed by the broker before any CONNACK: the protocol, probably. */
    if (!m->connected && !m->closing && rc == MOSQ_ERR_CONN_LOST)
        switch_protocol(m, "closed the connection on");
    if (m->connected && !m->closing) {
        m->gw->stats.mqtt_disconnects++;
        log_warnx("%s: connection lost: %s", m->name,
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
    if (m->reconnect_full) {
        m->reconnect_full = false;
        rc = connect_first(m);
    } else {
        rc = mosquitto_reconnect_async(m->mosq);
    }
    if (rc != MOSQ_ERR_SUCCESS) {
        if (m->attempts == 0 || log_get_level() >= LOG_LVL_DEBUG)
            log_warnx("%s: cannot reach %s:%d: %s", m->name, m->gw->cfg->mqtt.host,
                      m->gw->cfg->mqtt.port,
                      rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
        arm_reconnect(m);
        return;
    }
    mqtt_side__sync_fd(m);
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
    mqtt_side__sync_fd(m);
    m->misc_timer = loop_add_timer(loop, 1000, misc_tick, m);
}

/* --- messages and libmosquitto's log ---------------------------------- */

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
on_subscribe(struct mosquitto *mosq, void *arg, int mid, int qos_count,
             const int *granted_qos, const mosquitto_property *props)
{
    mqtt_side_t *m = arg;

    (void)mosq;
    (void)props;
    for (int i = 0; i < qos_count; i++)
        if (granted_qos[i] >= 0x80) {
            log_warnx("mqtt: the broker refused a subscription (reason 0x%02x)",
                      granted_qos[i]);
            break;
        }
    if (m->on_suback)
        m->on_suback(m->suback_arg, mid);
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

    use_protocol(m, strcmp(mc->protocol, "3.1.1") == 0);
    /* Without a Receive Maximum from the broker, libmosquitto would allow 20. */
    mosquitto_int_option(m->mosq, MOSQ_OPT_SEND_MAXIMUM, mc->max_inflight);
    if (configure_tls(m) < 0)
        return -1;
    /* The will is the primary's: a publish-only connection that drops
     * takes no state with it (its readings wait for it). */
    topic_bridge(topic, sizeof(topic), mc->base_topic, mc->instance, "state");
    if (m->index == 0 &&
        mosquitto_will_set_v5(m->mosq, topic, 7, "offline", 1, true, NULL))
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
    mosquitto_publish_v5_callback_set(m->mosq, mqtt_side__on_publish);
    mosquitto_message_v5_callback_set(m->mosq, on_message);
    mosquitto_subscribe_v5_callback_set(m->mosq, on_subscribe);
    mosquitto_log_callback_set(m->mosq, on_log);
    return 0;
}

mqtt_side_t *
mqtt_side_new(struct gw *gw, int index)
{
    mqtt_side_t *m = calloc(1, sizeof(*m));
    char id[96];

    if (!m)
        return NULL;
    m->gw = gw;
    m->fd = -1;
    m->index = index;
    m->src = gw->outq;
    if (index == 0) {
        snprintf(m->name, sizeof(m->name), "mqtt");
        snprintf(id, sizeof(id), "%s", gw->cfg->mqtt.client_id);
    } else {
        snprintf(m->name, sizeof(m->name), "mqtt[%d]", index + 1);
        snprintf(id, sizeof(id), "%s-%d", gw->cfg->mqtt.client_id, index + 1);
    }
    /* clean_start = false: the broker keeps our subscription and queues
     * commands while we are away (session expiry set at connect).  The
     * publish-only connections keep theirs the same way: libmosquitto
     * sends their unacknowledged readings again after a reconnect. */
    compat_mosq_capture(true);
    m->mosq = mosquitto_new(id, false, m);
    compat_mosq_capture(false);
    if (!m->mosq || configure(m) < 0) {
        log_warnx("%s: cannot set up the client", m->name);
        mqtt_side_free(m);
        return NULL;
    }
    return m;
}

/*
 * Sets libmosquitto's CONNECT up and makes an attempt, blocking for the TCP
 * connect only.  libmosquitto keeps the CONNECT properties given here for
 * every reconnect and refuses to send them in a 3.1.1 CONNECT, so a change
 * of protocol goes through here again (reconnect_full) to drop them.
 */
static int
connect_first(mqtt_side_t *m)
{
    const struct config_mqtt *mc = &m->gw->cfg->mqtt;
    mosquitto_property *props = NULL;
    int rc;

    /* 3.1.1: clean_session false in mosquitto_new() keeps the session; the
     * broker decides for how long. */
    if (!m->v311)
        mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL,
                                     (uint32_t)mc->session_expiry);
    rc = mosquitto_connect_bind_v5(m->mosq, mc->host, mc->port, mc->keepalive,
                                   NULL, props);
    mosquitto_property_free_all(&props);
    return rc;
}

void
mqtt_side_start(mqtt_side_t *m)
{
    const struct config_mqtt *mc = &m->gw->cfg->mqtt;
    int rc;

    /* The first attempt stores host and properties in libmosquitto (only
     * the v5 call takes properties); it connects blocking, which at start
     * costs at most the TCP connect.  Retries are non-blocking. */
    rc = connect_first(m);
    if (rc != MOSQ_ERR_SUCCESS) {
        log_warnx("%s: cannot reach %s:%d: %s; retrying", m->name, mc->host, mc->port,
                  rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
        arm_reconnect(m);
    } else {
        mqtt_side__sync_fd(m);
    }
    m->misc_timer = loop_add_timer(m->gw->loop, 1000, misc_tick, m);
}

void
mqtt_side_set_suback_handler(mqtt_side_t *m, mqtt_suback_fn fn, void *arg)
{
    m->on_suback = fn;
    m->suback_arg = arg;
}

int
mqtt_side_subscribe(mqtt_side_t *m, int n, char *const *filters)
{
    int mid = 0;

    if (!m->connected ||
        mosquitto_subscribe_multiple(m->mosq, &mid, n, filters, 1,
                                     m->v311 ? 0 : MQTT_SUB_OPT_NO_LOCAL,
                                     NULL) != MOSQ_ERR_SUCCESS)
        return -1;
    mqtt_side__sync_fd(m);
    return mid;
}

int
mqtt_side_unsubscribe(mqtt_side_t *m, int n, char *const *filters)
{
    int mid = 0;

    if (!m->connected ||
        mosquitto_unsubscribe_multiple(m->mosq, &mid, n, filters, NULL) != MOSQ_ERR_SUCCESS)
        return -1;
    mqtt_side__sync_fd(m);
    return mid;
}

bool
mqtt_side_v311(const mqtt_side_t *m)
{
    return m->v311;
}

bool
mqtt_side_no_local(const mqtt_side_t *m)
{
    return !m->v311 && m->gw->cfg->mqtt.connections <= 1;
}

bool
mqtt_side_session_resumed(const mqtt_side_t *m)
{
    return m->session_resumed;
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
mqtt_side_inflight_peak(const mqtt_side_t *m)
{
    return m->inflight_peak;
}

size_t
mqtt_side_held(const mqtt_side_t *m)
{
    return m->n_held;
}


bool
mqtt_side_idle(const mqtt_side_t *m)
{
    return !m->connected ||
           (m->n_inflight == 0 && m->state_pending == 0 && !mosquitto_want_write(m->mosq) &&
            !compat_mosq_unsent(m->fd));
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
    for (size_t i = 0; i < m->n_extra_subs; i++)
        free(m->extra_subs[i]);
    if (m->mosq)
        mosquitto_destroy(m->mosq);
    explicit_bzero(m->password, sizeof(m->password));
    free(m);
}
