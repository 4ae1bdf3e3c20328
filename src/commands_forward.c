/*
 * commands_forward.c - commands of a device that another gateway instance
 * holds now (mqtt.instance; ownership.c decides).  Its queued commands go
 * to the new holder through the broker, on that instance's inbox
 * <base>/bridge/<instance>/forward/<id>/<path>/<set|get>, with their MQTT
 * v5 properties and what is left of their time to live as Message Expiry.
 * The inbox, not the command topic: the new holder subscribed to the
 * device's command topics before it claimed the device, so a command
 * published around the hand-over may have reached both of us; the inbox
 * tells it which copies are forwarded, and it drops a forwarded copy of a
 * command it took itself (commands__forward_seen).  The command on the
 * wire is not passed on: the device may have carried it out already, and
 * a command must not run twice, so it is answered {"error":"device moved"}.
 *
 * Layer: services
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>

#include "coap2mqtt/log.h"
#include "coap2mqtt/mqtt_side.h"
#include "coap2mqtt/payload.h"
#include "coap2mqtt/topics.h"
#include "commands_internal.h"

#define FORWARD_USER_PROPERTY "coap2mqtt-forwarded-by"

static mosquitto_property *
forward_props(const struct command *cmd, const char *self)
{
    mosquitto_property *props = NULL;
    int64_t left_ms = cmd->expiry_wall_ms - commands__wall_ms();
    const char *mime = cmd->ct >= 0 ? payload_ct_to_mime(cmd->ct) : NULL;
    int rc = MOSQ_ERR_SUCCESS;

    if (cmd->response_topic)
        rc = mosquitto_property_add_string(&props, MQTT_PROP_RESPONSE_TOPIC,
                                           cmd->response_topic);
    if (rc == MOSQ_ERR_SUCCESS && cmd->corr)
        rc = mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA,
                                           cmd->corr, (uint16_t)cmd->corr_len);
    if (rc == MOSQ_ERR_SUCCESS && mime)
        rc = mosquitto_property_add_string(&props, MQTT_PROP_CONTENT_TYPE, mime);
    if (rc == MOSQ_ERR_SUCCESS)
        rc = mosquitto_property_add_int32(&props, MQTT_PROP_MESSAGE_EXPIRY_INTERVAL,
                                          left_ms > 1000 ? (uint32_t)(left_ms / 1000) : 1);
    if (rc == MOSQ_ERR_SUCCESS)
        rc = mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY,
                                                FORWARD_USER_PROPERTY, self);
    if (rc != MOSQ_ERR_SUCCESS)
        mosquitto_property_free_all(&props);
    return props;
}

/* Publishes one command to 'to''s inbox; false when it could not. */
bool
commands__forward_one(commands_t *c, const char *id, struct command *cmd, const char *to)
{
    struct gw *gw = c->gw;
    char prefix[TOPIC_MAX], topic[TOPIC_MAX];
    mosquitto_property *props = forward_props(cmd, gw->cfg->mqtt.instance);
    int rc = -1;

    if (topic_bridge(prefix, sizeof(prefix), gw->cfg->mqtt.base_topic, to, "forward") >= 0 &&
        topic_build(topic, sizeof(topic), prefix, id, cmd->path,
                    cmd->kind == TOPIC_KIND_SET ? "set" : "get") >= 0)
        rc = mqtt_side_publish_props(gw->mqtt, topic, cmd->payload, cmd->len, props);
    mosquitto_property_free_all(&props);
    if (rc < 0)
        return false;
    gw->stats.commands_forwarded++;
    /* A command accepted here ends here; one only passing through
     * (commands_forward_message) is audited by the holder alone. */
    if (cmd->dev || cmd->wait)
        commands__audit_result(cmd, "forwarded", -1);
    log_info("command for %s/%s forwarded to instance %s", id, cmd->path, to);
    return true;
}

static void
forward_or_answer(commands_t *c, const char *id, struct command *cmd, const char *to)
{
    if (!commands__forward_one(c, id, cmd, to))
        commands__result_error(cmd, "device moved");
    commands__finish(cmd);
}

/* The one on the wire is answered, the queued ones go. */
void
commands_hand_over(commands_t *c, device_t *dev, const char *to)
{
    struct command *cmd = dev->cmd_inflight;

    if (cmd) {
        device_forget_token(dev, cmd->token);
        dev->cmd_inflight = NULL;
        commands__result_error(cmd, "device moved");
        commands__finish(cmd);
    }
    while ((cmd = dev->cmd_head)) {
        dev->cmd_head = cmd->next;
        if (!dev->cmd_head)
            dev->cmd_tail = NULL;
        dev->n_cmds--;
        cmd->next = NULL;
        loop_cancel_timer(dev->gw->loop, cmd->expiry_timer);
        cmd->expiry_timer = 0;
        forward_or_answer(c, dev->id, cmd, to);
    }
}

struct hand_over {
    commands_t *c;
    const char *id, *to;
};

static void
hand_over_one(struct command *cmd, void *arg)
{
    struct hand_over *h = arg;

    forward_or_answer(h->c, h->id, cmd, h->to);
}

size_t
commands_hand_over_waiting(commands_t *c, const char *id, const char *to)
{
    struct hand_over h = { c, id, to };

    return commands__drain_waiting(c, id, hand_over_one, &h);
}

/* --- the receiving end ------------------------------------------------------- */

/* FNV-1a over what makes two commands the same one. */
static uint64_t
content_key(const char *id, const char *path, enum topic_kind kind,
            const struct mosquitto_message *msg, const uint8_t *corr, size_t corr_len)
{
    uint64_t h = 1469598103934665603ULL;
    const uint8_t *parts[] = { (const uint8_t *)id, (const uint8_t *)path,
                               msg->payload, corr };
    size_t lens[] = { strlen(id) + 1, strlen(path) + 1, (size_t)msg->payloadlen, corr_len };

    for (size_t i = 0; i < 4; i++)
        for (size_t j = 0; j < lens[i]; j++)
            h = (h ^ parts[i][j]) * 1099511628211ULL;
    return h ^ (uint64_t)kind;
}

/*
 * The ring of commands taken directly lives in state_dir/commands.taken as
 * well: a forwarded copy can reach us after we restarted (it waited in our
 * broker session while we were down), and a ring in memory only would let
 * it run a second time.  One slot of 16 bytes per entry, {sequence, key}
 * in host order (the file never leaves this machine); the highest sequence
 * tells where writing goes on.  pwrite() without fsync: it survives a
 * crash of the process, and a lost slot costs at most one forwarded copy.
 */
struct taken_slot {
    uint64_t seq;
    uint64_t key;
};

void
commands__taken_open(commands_t *c)
{
    struct gw *gw = c->gw;
    struct taken_slot slots[TAKEN_COMMANDS];
    char path[4096];
    ssize_t n;
    uint64_t top = 0;

    c->taken_fd = -1;
    if (!gw->cfg->mqtt.instance || !gw->cfg->state_dir)
        return;
    snprintf(path, sizeof(path), "%s/commands.taken", gw->cfg->state_dir);
    if ((c->taken_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
        log_warn("%s: forwarded copies of commands taken before a restart "
                 "will not be recognised", path);
        return;
    }
    /* Slots never written read back as zeros, or not at all: the file
     * grows as the ring fills. */
    memset(slots, 0, sizeof(slots));
    n = pread(c->taken_fd, slots, sizeof(slots), 0);
    if (n >= 0 && n % (ssize_t)sizeof(slots[0]) == 0) {
        for (size_t i = 0; i < TAKEN_COMMANDS; i++) {
            c->taken[i] = slots[i].key;
            if (slots[i].seq > top) {
                top = slots[i].seq;
                c->taken_pos = (unsigned)((i + 1) % TAKEN_COMMANDS);
            }
        }
    } else if (n != 0) {
        log_warnx("%s: %zd bytes, not a whole number of %zu-byte slots: starting it afresh",
                  path, n, sizeof(slots[0]));
    }
    c->taken_seq = top;
}

void
commands__taken_close(commands_t *c)
{
    if (c->taken_fd >= 0)
        close(c->taken_fd);
    c->taken_fd = -1;
}

static void
taken_store(commands_t *c, size_t i)
{
    struct taken_slot slot = { ++c->taken_seq, c->taken[i] };

    if (c->taken_fd >= 0 &&
        pwrite(c->taken_fd, &slot, sizeof(slot), (off_t)(i * sizeof(slot))) != sizeof(slot))
        log_ratelimited(c, "commands.taken: write failed: %s", strerror(errno));
}

bool
commands__forward_seen(commands_t *c, const char *id, const char *path,
                       enum topic_kind kind, const struct mosquitto_message *msg,
                       const uint8_t *corr, size_t corr_len, bool forwarded)
{
    uint64_t key = content_key(id, path, kind, msg, corr, corr_len);

    if (!forwarded) {
        c->taken[c->taken_pos] = key;
        taken_store(c, c->taken_pos);
        c->taken_pos = (c->taken_pos + 1) % TAKEN_COMMANDS;
        return false;
    }
    for (size_t i = 0; i < TAKEN_COMMANDS; i++)
        if (c->taken[i] == key) {
            /* Kept: every instance whose session held the command may
             * forward a copy (one per restart with a stale subscription). */
            c->gw->stats.commands_duplicate_handover++;
            log_info("forwarded command for %s/%s dropped: taken here already",
                     id, path);
            return true;
        }
    return false;
}

/* "<base>/bridge/<self>/forward/<id>/<path>/<set|get>" -> id, path, kind. */
int
commands__parse_forwarded(const struct gw *gw, const char *topic, char *id, size_t id_cap,
                          char *path, size_t path_cap, enum topic_kind *kind)
{
    char prefix[TOPIC_MAX];

    if (!gw->cfg->mqtt.instance ||
        topic_bridge(prefix, sizeof(prefix), gw->cfg->mqtt.base_topic,
                     gw->cfg->mqtt.instance, "forward") < 0)
        return -1;
    return topic_parse_command(prefix, topic, id, id_cap, path, path_cap, kind);
}
