/*
 * commands.c - MQTT -> device.  A command is parsed from its topic, checked
 * against the device's declared resources, queued per device (FIFO, one in
 * flight, so a device sees its commands in the order they were published)
 * and sent as a CON PUT (or GET) on the device's current session when it
 * has one.  libcoap does the RFC 7252 retransmissions and block-wise
 * transfer; we turn its answer, or its giving up, into exactly one result
 * (published by commands_results.c).
 *
 * With queue.spool on, every queued command is also in the command journal
 * (state_dir/commands.journal, cmdjournal.h) from the moment it is queued
 * until its one result has been handed to the outbound path.  The broker
 * had its PUBACK before we saw the command, so after a crash the journal
 * is the only copy: at start the commands in it wait, with what is left of
 * their time to live, for their device to show up (the registry starts
 * empty), and then go in front of its queue (commands_journal.c).
 *
 * Layer: services (calls base, the device session and the outbound path;
 * hears of MQTT messages through the MQTT side's message callback, of
 * devices through its device listener, of answers through the handler
 * registered with each request)
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <mqtt_protocol.h>
#include <uthash.h>

#include "coap2mqtt/commands.h"
#include "coap2mqtt/devices.h"
#include "coap2mqtt/log.h"
#include "coap2mqtt/payload.h"
#include "commands_internal.h"

static void send_next(struct device *dev);
static bool on_answer(void *owner, coap_session_t *session, const coap_pdu_t *rcvd);
static void on_nack(void *owner, coap_nack_reason_t reason);

/* One answer per command: the transport forgets the token at the first. */
static const struct transport_handler command_handler = {
    .on_response = on_answer,
    .on_nack = on_nack,
    .one_shot = true,
};

/* Frees a command that is off every list; the journal keeps it. */
void
commands__command_free(struct command *cmd)
{
    if (!cmd)
        return;
    loop_cancel_timer(cmd->c->gw->loop, cmd->expiry_timer);
    if (cmd->dev)
        device_forget_token(cmd->dev, cmd->token);
    free(cmd->payload);
    free(cmd->response_topic);
    free(cmd->corr);
    free(cmd);
}

commands_t *
commands_new(struct gw *gw)
{
    commands_t *c = calloc(1, sizeof(*c));

    if (!c) {
        log_warnx("out of memory");
        return NULL;
    }
    c->gw = gw;
    commands__taken_open(c);
    if (gw->cfg->queue.spool && commands__journal_open(c) < 0) {
        commands_free(c);
        return NULL;
    }
    return c;
}

void
commands_free(commands_t *c)
{
    struct waiting *w, *tmp;

    if (!c)
        return;
    /* Unanswered: they stay in the journal for the next start. */
    HASH_ITER(hh, c->waiting, w, tmp) {
        struct command *cmd;

        while ((cmd = w->head)) {
            w->head = cmd->next;
            cmd->wait = NULL;
            commands__command_free(cmd);
        }
        HASH_DEL(c->waiting, w);
        free(w);
    }
    cmdjournal_close(c->journal);
    commands__taken_close(c);
    free(c->unusable);
    free(c);
}

/* --- the per-device queue ------------------------------------------------- */

static void
queue_remove(struct device *dev, struct command *cmd)
{
    struct command **pp = &dev->cmd_head, *prev = NULL;

    while (*pp && *pp != cmd) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (!*pp)
        return;
    *pp = cmd->next;
    if (dev->cmd_tail == cmd)
        dev->cmd_tail = prev;
    dev->n_cmds--;
    cmd->next = NULL;
}

void
commands__expired(loop_t *loop, void *arg)
{
    struct command *cmd = arg;
    struct device *dev = cmd->dev;

    (void)loop;
    cmd->expiry_timer = 0;
    if (!dev) {
        /* From the journal; its device never showed up. */
        struct gw *gw = cmd->c->gw;

        gw->stats.commands_expired++;
        commands__result_error(cmd, "expired");
        commands__waiting_remove(cmd->c, cmd);
        commands__finish(cmd);
        return;
    }
    if (dev->cmd_inflight == cmd) {
        /* On the wire to a device that has not answered within the TTL
         * (asleep on a session it has lost, or out of radio range).  The
         * result must come within the TTL, so it is "expired" now; libcoap
         * may still retransmit it for the rest of EXCHANGE_LIFETIME, and
         * an answer then is ignored (its token is forgotten). */
        dev->cmd_inflight = NULL;
        dev->gw->stats.commands_expired++;
        commands__result_error(cmd, "expired");
        commands__finish(cmd);
        send_next(dev);
        return;
    }
    queue_remove(dev, cmd);
    dev->gw->stats.commands_expired++;
    commands__result_error(cmd, "expired");
    commands__finish(cmd);
}

static void
push_front(struct device *dev, struct command *cmd)
{
    cmd->next = dev->cmd_head;
    dev->cmd_head = cmd;
    if (!dev->cmd_tail)
        dev->cmd_tail = cmd;
    dev->n_cmds++;
}

static void
push_back(struct device *dev, struct command *cmd)
{
    cmd->next = NULL;
    if (dev->cmd_tail)
        dev->cmd_tail->next = cmd;
    else
        dev->cmd_head = cmd;
    dev->cmd_tail = cmd;
    dev->n_cmds++;
}

static void
release_copy(coap_session_t *session, void *app_ptr)
{
    (void)session;
    free(app_ptr);
}

static int
send_one(struct device *dev, struct command *cmd)
{
    struct gw *gw = dev->gw;
    coap_pdu_t *pdu;
    uint64_t token = 0;
    uint8_t buf[4];
    uint16_t mid;

    pdu = device_request_new(dev, COAP_MESSAGE_CON,
                             cmd->kind == TOPIC_KIND_SET ? COAP_REQUEST_CODE_PUT
                                                         : COAP_REQUEST_CODE_GET,
                             cmd->path, &command_handler, cmd, &token);
    if (!pdu)
        return -1;
    if (cmd->ct >= 0)
        coap_add_option(pdu, COAP_OPTION_CONTENT_FORMAT,
                        coap_encode_var_safe(buf, sizeof(buf), (unsigned)cmd->ct), buf);
    if (cmd->kind == TOPIC_KIND_SET) {
        /* libcoap keeps the data until the transfer ends: give it a copy. */
        uint8_t *copy = malloc(cmd->len ? cmd->len : 1);

        if (!copy) {
            device_forget_token(dev, token);
            coap_delete_pdu(pdu);
            return -1;
        }
        memcpy(copy, cmd->payload, cmd->len);
        if (!coap_add_data_large_request(dev->session, pdu, cmd->len, copy,
                                         release_copy, copy)) {
            device_forget_token(dev, token);
            coap_delete_pdu(pdu);
            return -1;
        }
    }
    cmd->token = token;
    cmd->sent_ms = loop_now_ms(gw->loop);
    dev->cmd_inflight = cmd;
    mid = (uint16_t)coap_pdu_get_mid(pdu);     /* the send takes the PDU */
    if (device_send(dev, pdu, token) < 0) {
        dev->cmd_inflight = NULL;
        cmd->token = 0;
        return -1;
    }
    commands__audit_attempt(cmd, mid);
    return 0;
}

static void
send_next(struct device *dev)
{
    while (dev->session && !dev->cmd_inflight && dev->cmd_head &&
           !dev->gw->stopping) {
        struct command *cmd = dev->cmd_head;

        queue_remove(dev, cmd);
        if (send_one(dev, cmd) < 0) {
            push_front(dev, cmd);
            return;     /* session trouble: wait for the device */
        }
    }
}

/* --- answers --------------------------------------------------------------- */

static void
handle_answer(struct command *cmd, const coap_pdu_t *rcvd)
{
    struct device *dev = cmd->dev;
    struct gw *gw = dev->gw;
    coap_pdu_code_t code = coap_pdu_get_code(rcvd);
    char codestr[8];
    unsigned cls = COAP_RESPONSE_CLASS(code);

    cmd->token = 0;     /* the transport forgot it already */
    dev->cmd_inflight = NULL;
    dev->last_seen = loop_wall_s();
    snprintf(codestr, sizeof(codestr), "%u.%02u", cls, code & 0x1f);
    commands__audit_result(cmd, codestr, (int64_t)(loop_now_ms(gw->loop) - cmd->sent_ms));
    if (cls == 2)
        gw->stats.commands_ok++;
    else
        gw->stats.commands_error++;
    if (cmd->kind == TOPIC_KIND_GET && cls == 2) {
        commands__publish_get_value(cmd, rcvd);
    } else {
        commands__publish_result(gw, dev->id, cmd->path, cmd->kind, cmd->response_topic,
                                 cmd->corr, cmd->corr_len,
                                 json_pack("{sssI}", "code", codestr, "rtt_ms",
                                           (json_int_t)(loop_now_ms(gw->loop) - cmd->sent_ms)));
    }
    commands__finish(cmd);
    send_next(dev);
}

static bool
on_answer(void *owner, coap_session_t *session, const coap_pdu_t *rcvd)
{
    handle_answer(owner, rcvd);
    devices_con_response_seen(session, rcvd);
    return true;
}

static void
on_nack(void *owner, coap_nack_reason_t reason)
{
    struct command *cmd = owner;
    struct device *dev = cmd->dev;

    cmd->token = 0;
    dev->cmd_inflight = NULL;
    if (reason == COAP_NACK_TOO_MANY_RETRIES || reason == COAP_NACK_RST) {
        dev->gw->stats.commands_timeout += reason == COAP_NACK_TOO_MANY_RETRIES;
        dev->gw->stats.commands_error += reason == COAP_NACK_RST;
        commands__result_error(cmd, reason == COAP_NACK_RST ? "reset" : "timeout");
        commands__finish(cmd);
        send_next(dev);
        return;
    }
    /* The session died under it (deep sleep, reboot): keep it for when the
     * device shows up again, unless its TTL says otherwise. */
    push_front(dev, cmd);
}

/* The device's session is gone: the in-flight command goes back in front. */
static void
session_lost(struct device *dev)
{
    struct command *cmd = dev->cmd_inflight;

    if (!cmd)
        return;
    device_forget_token(dev, cmd->token);
    cmd->token = 0;
    dev->cmd_inflight = NULL;
    push_front(dev, cmd);
}

/* Answers every queued command with {"error":why} and frees them. */
static void
flush(struct device *dev, const char *why)
{
    struct command *cmd;

    session_lost(dev);
    while ((cmd = dev->cmd_head)) {
        queue_remove(dev, cmd);
        commands__result_error(cmd, why);
        commands__finish(cmd);
    }
}

size_t
commands_cancel(commands_t *c, const char *id, bool inflight, const char *why)
{
    struct device *dev = devices_find(c->gw->devices, id);
    size_t n = commands__cancel_waiting(c, id, why);
    struct command *cmd;

    if (!dev)
        return n;
    if (inflight)
        session_lost(dev);      /* back in front of the queue, token forgotten */
    while ((cmd = dev->cmd_head)) {
        queue_remove(dev, cmd);
        commands__result_error(cmd, why);
        commands__finish(cmd);
        n++;
    }
    return n;
}

/* --- MQTT in ------------------------------------------------------------------ */

static void
reject(struct gw *gw, const char *id, const char *path, enum topic_kind kind,
       const char *rt, const uint8_t *corr, size_t corr_len, const char *why)
{
    gw->stats.commands_rejected++;
    log_ratelimited(&gw->stats.commands_rejected, "command for %s/%s rejected: %s",
                    id, path, why);
    commands__audit_rejected(gw, id, path, kind, rt, corr, corr_len, why);
    commands__publish_result(gw, id, path, kind, rt, corr, corr_len,
                             json_pack("{ss}", "error", why));
}

static struct command *
command_new(commands_t *c, struct device *dev, enum topic_kind kind, const char *path,
            const struct mosquitto_message *msg, char *rt, uint8_t *corr,
            uint16_t corr_len, int ct)
{
    struct command *cmd = calloc(1, sizeof(*cmd));

    if (!cmd)
        return NULL;
    cmd->c = c;
    cmd->dev = dev;
    cmd->kind = kind;
    snprintf(cmd->path, sizeof(cmd->path), "%s", path);
    cmd->len = (size_t)msg->payloadlen;
    cmd->payload = malloc(cmd->len ? cmd->len : 1);
    if (!cmd->payload) {
        free(cmd);
        return NULL;
    }
    if (cmd->len)
        memcpy(cmd->payload, msg->payload, cmd->len);
    cmd->ct = ct;
    cmd->response_topic = rt;
    cmd->corr = corr;
    cmd->corr_len = corr_len;
    commands__audit_new_id(cmd);
    return cmd;
}

/* FNV-1a over topic and payload, mixed with the packet id. */
static uint64_t
command_key(const struct mosquitto_message *msg)
{
    uint64_t h = 1469598103934665603ULL;
    const uint8_t *p = (const uint8_t *)msg->topic;

    while (*p)
        h = (h ^ *p++) * 1099511628211ULL;
    p = msg->payload;
    for (int i = 0; i < msg->payloadlen; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    return h ^ ((uint64_t)(uint16_t)msg->mid << 48);
}

static bool
redelivered(commands_t *c, const struct mosquitto_message *msg)
{
    uint64_t key;

    if (msg->qos == 0)
        return false;
    key = command_key(msg);
    for (size_t i = 0; i < RECENT_COMMANDS; i++)
        if (c->recent[i] == key)
            return true;
    c->recent[c->recent_pos] = key;
    c->recent_pos = (c->recent_pos + 1) % RECENT_COMMANDS;
    return false;
}

void
commands_device_event(void *arg, device_t *dev, enum device_event ev)
{
    commands_t *c = arg;

    if (c && c->waiting)
        commands__adopt(c, dev);
    switch (ev) {
    case DEVICE_SESSION_LOST:
        session_lost(dev);
        break;
    case DEVICE_AWAKE:
        send_next(dev);
        break;
    case DEVICE_STOPPING:
    case DEVICE_FREED:
        flush(dev, "gateway stopping");
        break;
    default:
        break;
    }
}

/* The MQTT v5 properties a command may carry (absent: NULL / 0). */
struct cmd_props {
    char *rt;                   /* Response Topic, when usable */
    bool rt_refused;            /* one was given where we may not publish */
    uint8_t *corr;              /* Correlation Data */
    uint16_t corr_len;
    char *mime;                 /* content type */
    uint32_t expiry;            /* Message Expiry Interval, s */
};

/* 'topic' is 'prefix' or below it. */
static bool
topic_under(const char *topic, const char *prefix)
{
    size_t n = strlen(prefix);

    return strncmp(topic, prefix, n) == 0 && (topic[n] == '\0' || topic[n] == '/');
}

/*
 * Whoever may publish a command may name a Response Topic, and the
 * gateway publishes the answer there: under our base topic that would be
 * a forged reading, result or bridge/state.  With mqtt.response_topic_prefix
 * only topics at or below it are answered on; without, any topic outside
 * the base (the broker's ACL for our client decides the rest).
 */
static bool
response_topic_allowed(const struct gw *gw, const char *rt)
{
    const char *prefix = gw->cfg->mqtt.response_topic_prefix;

    if (prefix)
        return topic_under(rt, prefix);
    return !topic_under(rt, gw->cfg->mqtt.base_topic);
}

static void
read_props(const struct gw *gw, const mosquitto_property *props, struct cmd_props *p)
{
    memset(p, 0, sizeof(*p));
    mosquitto_property_read_string(props, MQTT_PROP_RESPONSE_TOPIC, &p->rt, false);
    mosquitto_property_read_binary(props, MQTT_PROP_CORRELATION_DATA,
                                   (void **)&p->corr, &p->corr_len, false);
    mosquitto_property_read_string(props, MQTT_PROP_CONTENT_TYPE, &p->mime, false);
    mosquitto_property_read_int32(props, MQTT_PROP_MESSAGE_EXPIRY_INTERVAL, &p->expiry, false);
    if (p->rt && (!topic_base_valid(p->rt) || !response_topic_allowed(gw, p->rt))) {
        p->rt_refused = topic_base_valid(p->rt);
        free(p->rt);
        p->rt = NULL;
    }
}

static void
free_props(struct cmd_props *p)
{
    free(p->rt);
    free(p->corr);
    free(p->mime);
}

/* Why a command for (dev, path) cannot be queued, or NULL.  With
 * mqtt.instance a device not known here is no refusal: the command waits
 * (commands__waiting_add) until the device shows up, or its holder is
 * known (commands_hand_over_waiting), or its time to live runs out. */
static const char *
refusal(struct gw *gw, struct device *dev, const char *path, const struct cmd_props *p)
{
    if (p->rt_refused)
        return "response topic not allowed";
    if (gw->stopping)
        return "gateway stopping";
    if (!dev)
        return gw->cfg->mqtt.instance ? NULL : "unknown device";
    if (!device_resource(dev, path))
        return "unknown resource";
    if (dev->n_cmds >= (size_t)gw->cfg->commands.max_queued)
        return "command queue full";
    if (!device_online(dev) && strcmp(gw->cfg->commands.offline, "reject") == 0) {
        gw->stats.commands_offline++;
        return "offline";
    }
    return NULL;
}

/* Redeliveries and retained commands are dropped before anything else. */
static bool
dropped_early(commands_t *c, const struct mosquitto_message *msg)
{
    struct gw *gw = c->gw;

    if (redelivered(c, msg)) {
        gw->stats.commands_duplicate++;
        return true;
    }
    if (msg->retain) {
        /* A retained command would be replayed at every restart. */
        log_warnx("command on %s ignored: retained", msg->topic);
        gw->stats.commands_rejected++;
        return true;
    }
    return false;
}

/* Queues (or, for a device not known here, parks) a command that passed
 * the checks; 'p''s response topic and correlation data are taken. */
static void
take_command(commands_t *c, struct device *dev, const char *id, enum topic_kind kind,
       const char *path, const struct mosquitto_message *msg, struct cmd_props *p)
{
    struct gw *gw = c->gw;
    struct command *cmd = command_new(c, dev, kind, path, msg, p->rt, p->corr,
                                      p->corr_len, payload_mime_to_ct(p->mime));
    uint64_t ttl_ms;

    if (!cmd)
        return;
    p->rt = NULL;               /* the command owns them now */
    p->corr = NULL;
    ttl_ms = (uint64_t)(p->expiry ? p->expiry : (uint32_t)gw->cfg->commands.ttl) * 1000;
    cmd->ttl_ms = ttl_ms;
    cmd->expiry_wall_ms = commands__wall_ms() + (int64_t)ttl_ms;
    if (!dev)
        commands__waiting_add(c, id, cmd);
    if (c->journal && commands__journal_accept(c, cmd) < 0) {
        /* Not safe across a crash: refused, so that it has a result. */
        if (!dev)
            commands__waiting_remove(c, cmd);
        reject(gw, id, path, kind, cmd->response_topic, cmd->corr, cmd->corr_len,
               "cannot store command");
        commands__command_free(cmd);
        return;
    }
    cmd->expiry_timer = loop_add_timer(gw->loop, ttl_ms, commands__expired, cmd);
    commands__audit_accepted(cmd, "accepted");
    if (dev) {
        push_back(dev, cmd);
        send_next(dev);
    }
}

void
commands_forward_message(commands_t *c, const struct mosquitto_message *msg,
                         const mosquitto_property *props, const char *to)
{
    struct gw *gw = c->gw;
    char id[TOPIC_ID_MAX + 1], path[TOPIC_PATH_MAX + 1];
    enum topic_kind kind;
    struct cmd_props p;
    struct command *cmd;

    if (topic_parse_command(gw->cfg->mqtt.base_topic, msg->topic, id, sizeof(id),
                            path, sizeof(path), &kind) < 0 || dropped_early(c, msg))
        return;
    read_props(gw, props, &p);
    if ((cmd = command_new(c, NULL, kind, path, msg, p.rt, p.corr, p.corr_len,
                           payload_mime_to_ct(p.mime)))) {
        p.rt = NULL;
        p.corr = NULL;
        cmd->ttl_ms = (uint64_t)(p.expiry ? p.expiry : (uint32_t)gw->cfg->commands.ttl) * 1000;
        cmd->expiry_wall_ms = commands__wall_ms() + (int64_t)cmd->ttl_ms;
        if (!commands__forward_one(c, id, cmd, to))
            log_warnx("command for %s/%s: cannot forward it to instance %s",
                      id, path, to);
        commands__command_free(cmd);
    }
    free_props(&p);
}

void
commands_on_message(void *arg, const struct mosquitto_message *msg,
                    const mosquitto_property *props)
{
    commands_t *c = arg;
    struct gw *gw = c->gw;
    char id[TOPIC_ID_MAX + 1], path[TOPIC_PATH_MAX + 1];
    enum topic_kind kind;
    struct cmd_props p;
    struct device *dev;
    const char *why;
    bool forwarded = false;

    if (topic_parse_command(gw->cfg->mqtt.base_topic, msg->topic, id, sizeof(id),
                            path, sizeof(path), &kind) < 0) {
        /* mqtt.instance: a command another instance handed on to us */
        if (commands__parse_forwarded(gw, msg->topic, id, sizeof(id), path,
                                      sizeof(path), &kind) < 0)
            return;     /* a reading or state under our base: not for us */
        forwarded = true;
    }
    gw->stats.commands_in++;
    if (dropped_early(c, msg))
        return;
    read_props(gw, props, &p);
    if (gw->cfg->mqtt.instance &&
        commands__forward_seen(c, id, path, kind, msg, p.corr, p.corr_len, forwarded)) {
        free_props(&p);
        return;
    }
    log_debug("command %.*s for %s/%s%s", msg->payloadlen > 32 ? 32 : msg->payloadlen,
              msg->payload ? (const char *)msg->payload : "", id, path,
              forwarded ? " (forwarded)" : "");
    dev = devices_find(gw->devices, id);
    if ((why = refusal(gw, dev, path, &p)))
        reject(gw, id, path, kind, p.rt, p.corr, p.corr_len, why);
    else
        take_command(c, dev, id, kind, path, msg, &p);
    free_props(&p);
}
