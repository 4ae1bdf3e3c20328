/*
 * requests.c - the broker request API (zigbee2mqtt's bridge/request
 * convention, so the same tooling and habits work): an operator, or a
 * dashboard, asks the gateway over the one channel it already has, the
 * broker.  Every request gets exactly one response, an error included;
 * nothing in a request can make the gateway do more than answer it.
 *
 * Responses go out directly (mqtt_side_publish_now, QoS 1, never retained):
 * a request only arrives while the broker connection is up, and an answer
 * that missed its asker is not worth keeping in the spool.
 *
 * Layer: status (calls devices, services (commands), mqtt_side, log and
 * status_stats_json; called by the wiring's MQTT message dispatch)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "coap2mqtt/commands.h"
#include "coap2mqtt/devices.h"
#include "coap2mqtt/log.h"
#include "coap2mqtt/mqtt_pool.h"
#include "coap2mqtt/mqtt_side.h"
#include "coap2mqtt/outq.h"
#include "coap2mqtt/requests.h"
#include "coap2mqtt/spool.h"
#include "coap2mqtt/status.h"
#include "coap2mqtt/topics.h"
#include "coap2mqtt/transport.h"

#define REQUEST_MAX_BYTES 65536

/* One request being answered.  A handler fills 'data' (ok) or returns an
 * error text; the dispatcher publishes the response. */
struct req {
    struct gw *gw;
    json_t *args;               /* the request's JSON object (borrowed) */
    json_t *data;               /* the response's "data" (owned) */
};

typedef const char *(*req_fn)(struct req *r);

/* "id": a device id, checked as a topic level would be. */
static const char *
arg_id(struct req *r, const char **id)
{
    json_t *v = json_object_get(r->args, "id");

    if (!json_is_string(v))
        return "\"id\" (a device id string) is required";
    *id = json_string_value(v);
    if (!topic_id_valid(*id, json_string_length(v)))
        return "\"id\" is not a valid device id";
    return NULL;
}

static const char *
req_health_check(struct req *r)
{
    struct gw *gw = r->gw;
    bool healthy = !gw->stopping && mqtt_pool_connected(gw->mqtt_pool);

    r->data = json_pack("{sbsbsIsIsIsI}", "healthy", healthy,
                        "mqtt_connected", mqtt_pool_connected(gw->mqtt_pool),
                        "devices", (json_int_t)devices_count(gw->devices),
                        "sessions", (json_int_t)transport_sessions(gw->coap),
                        "queue_depth", (json_int_t)outq_len(gw->outq),
                        "spool_backlog", (json_int_t)spool_backlog(gw->spool));
    return NULL;
}

static const char *
req_devices(struct req *r)
{
    r->data = devices_to_json(r->gw->devices);
    return NULL;
}

static const char *
req_stats(struct req *r)
{
    char *text = status_stats_json(r->gw->status);

    r->data = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    return NULL;
}

static const char *
req_device_remove(struct req *r)
{
    const char *id, *why;
    device_t *dev;
    size_t n;

    if ((why = arg_id(r, &id)))
        return why;
    dev = devices_find(r->gw->devices, id);
    /* Queued commands get their one result ("device removed") before the
     * record goes, so nothing is silently dropped; a device that never
     * showed up since a restart may still have commands waiting. */
    n = commands_cancel(r->gw->commands, id, true, "device removed");
    if (!dev && n == 0)
        return "unknown device";
    if (dev)
        devices_remove(dev);
    log_notice("device %s removed on request (%zu queued command%s answered)",
               id, n, n == 1 ? "" : "s");
    r->data = json_pack("{sssI}", "id", id, "commands_cancelled", (json_int_t)n);
    return NULL;
}

static const char *
req_commands_cancel(struct req *r)
{
    const char *id, *why;
    size_t n;

    if ((why = arg_id(r, &id)))
        return why;
    n = commands_cancel(r->gw->commands, id, false, "cancelled");
    if (n == 0 && !devices_find(r->gw->devices, id))
        return "unknown device";
    log_notice("device %s: %zu queued command%s cancelled on request", id, n,
               n == 1 ? "" : "s");
    r->data = json_pack("{sssI}", "id", id, "cancelled", (json_int_t)n);
    return NULL;
}

static const struct {
    const char *name;
    enum log_level level;
} levels[] = {
    { "error", LOG_LVL_ERR }, { "warning", LOG_LVL_WARNING }, { "warn", LOG_LVL_WARNING },
    { "notice", LOG_LVL_NOTICE }, { "info", LOG_LVL_INFO }, { "debug", LOG_LVL_DEBUG },
};

static const char *
req_log_level(struct req *r)
{
    json_t *v = json_object_get(r->args, "level");

    if (!json_is_string(v))
        return "\"level\" is required: error, warning, notice, info or debug";
    for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
        if (strcmp(json_string_value(v), levels[i].name) == 0) {
            log_init(levels[i].level);
            log_hook_libraries();
            log_notice("log level set to %s on request", levels[i].name);
            r->data = json_pack("{ss}", "level", levels[i].name);
            return NULL;
        }
    }
    return "unknown \"level\": use error, warning, notice, info or debug";
}

static const struct {
    const char *name;
    req_fn fn;
} handlers[] = {
    { "health_check", req_health_check },
    { "devices", req_devices },
    { "stats", req_stats },
    { "device/remove", req_device_remove },
    { "device/commands/cancel", req_commands_cancel },
    { "options/log_level", req_log_level },
    { "log_level", req_log_level },
};

static void
respond(struct gw *gw, const char *name, json_t *transaction, json_t *data,
        const char *error)
{
    char topic[TOPIC_MAX], leaf[96];
    json_t *o = json_pack("{ssso}", "status", error ? "error" : "ok",
                          "data", data ? json_incref(data) : json_object());
    char *text;

    if (!o)
        return;
    if (error)
        json_object_set_new(o, "error", json_string(error));
    if (transaction)
        json_object_set(o, "transaction", transaction);
    text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!text)
        return;
    if ((size_t)snprintf(leaf, sizeof(leaf), "response/%s", name) < sizeof(leaf) &&
        topic_bridge(topic, sizeof(topic), gw->cfg->mqtt.base_topic,
                     gw->cfg->mqtt.instance, leaf) >= 0)
        mqtt_side_publish_now(gw->mqtt, topic, text, 1, false);
    free(text);
}

/* The request's JSON: an object, or nothing at all (an empty payload, as
 * for health_check).  NULL with *why set when it is anything else. */
static json_t *
parse_args(const struct mosquitto_message *msg, const char **why)
{
    json_error_t err;
    json_t *args;

    if (msg->payloadlen == 0)
        return json_object();
    if (msg->payloadlen > REQUEST_MAX_BYTES) {
        *why = "request too large";
        return NULL;
    }
    args = json_loadb(msg->payload, (size_t)msg->payloadlen,
                      JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (!args) {
        log_info("request on %s: invalid JSON: %s (column %d)", msg->topic, err.text,
                 err.column);
        *why = "invalid JSON";
        return NULL;
    }
    if (!json_is_object(args)) {
        json_decref(args);
        *why = "the request must be a JSON object";
        return NULL;
    }
    return args;
}

static req_fn
find_handler(const char *name)
{
    for (size_t i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++)
        if (strcmp(handlers[i].name, name) == 0)
            return handlers[i].fn;
    return NULL;
}

bool
requests_on_message(struct gw *gw, const struct mosquitto_message *msg)
{
    char prefix[TOPIC_MAX];
    const char *name, *why = NULL;
    size_t n;
    struct req r = { .gw = gw };
    json_t *transaction = NULL;
    req_fn fn = NULL;

    /* <base>/bridge/request/<name>, or <base>/bridge/<instance>/request/<name> */
    if (topic_bridge(prefix, sizeof(prefix), gw->cfg->mqtt.base_topic,
                     gw->cfg->mqtt.instance, "request/") < 0)
        return false;
    n = strlen(prefix);
    if (strncmp(msg->topic, prefix, n) != 0)
        return false;
    name = msg->topic + n;
    if (msg->retain) {
        /* A retained request would be carried out again at every start. */
        log_warnx("request on %s ignored: retained", msg->topic);
        return true;
    }
    if ((r.args = parse_args(msg, &why)))
        transaction = json_object_get(r.args, "transaction");
    if (!why && !(fn = find_handler(name)))
        why = "unknown request";
    if (!why)
        why = fn(&r);
    if (why)
        log_info("request %s: %s", name, why);
    respond(gw, name, transaction, why ? NULL : r.data, why);
    json_decref(r.data);
    json_decref(r.args);
    return true;
}
