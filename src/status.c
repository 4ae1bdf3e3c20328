/*
 * status.c - the gateway's own topics.  Retained state is published
 * directly (not through the reading queue) and in full after every
 * reconnect, so a broker that lost its retained store is repaired.  The
 * devices list is debounced: a fleet registering at once makes one
 * publication, not thousands.
 *
 * Layer: status (calls every room below it to read their state; hears of
 * devices through its device listener, of connections through the MQTT
 * side's connected callback)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "coap2mqtt/devices.h"
#include "coap2mqtt/log.h"
#include "coap2mqtt/mqtt_side.h"
#include "coap2mqtt/outq.h"
#include "coap2mqtt/spool.h"
#include "coap2mqtt/status.h"
#include "coap2mqtt/topics.h"
#include "coap2mqtt/transport.h"

#define DEVICES_DEBOUNCE_MS 200

struct status {
    struct gw *gw;
    uint64_t devices_timer;
    uint64_t stats_timer;
};

static void
bridge_topic(status_t *s, char *buf, size_t cap, const char *leaf)
{
    snprintf(buf, cap, "%s/bridge/%s", s->gw->cfg->mqtt.base_topic, leaf);
}

static void
publish_availability(status_t *s, device_t *dev, bool online)
{
    char topic[TOPIC_MAX];

    if (topic_build(topic, sizeof(topic), s->gw->cfg->mqtt.base_topic,
                    device_id(dev), NULL, "availability") < 0)
        return;
    mqtt_side_publish_now(s->gw->mqtt, topic, online ? "online" : "offline",
                          1, true);
}

static void
publish_devices(loop_t *loop, void *arg)
{
    status_t *s = arg;
    json_t *list = devices_to_json(s->gw->devices);
    char topic[TOPIC_MAX];
    char *text;

    (void)loop;
    s->devices_timer = 0;
    if (!list)
        return;
    text = json_dumps(list, JSON_COMPACT);
    json_decref(list);
    if (!text)
        return;
    bridge_topic(s, topic, sizeof(topic), "devices");
    mqtt_side_publish_now(s->gw->mqtt, topic, text, 1, true);
    free(text);
}

static void
schedule_devices(status_t *s)
{
    if (!s->devices_timer)
        s->devices_timer = loop_add_timer(s->gw->loop, DEVICES_DEBOUNCE_MS,
                                          publish_devices, s);
}

char *
status_stats_json(status_t *s)
{
    struct gw *gw = s->gw;
    json_t *o = json_object();
    char *text;

#define STATS_JSON(name) json_object_set_new(o, #name, json_integer((json_int_t)gw->stats.name));
    STATS_FIELDS(STATS_JSON)
#undef STATS_JSON
    json_object_set_new(o, "devices", json_integer((json_int_t)devices_count(gw->devices)));
    json_object_set_new(o, "sessions", json_integer((json_int_t)transport_sessions(gw->coap)));
    json_object_set_new(o, "queue_depth", json_integer((json_int_t)outq_len(gw->outq)));
    json_object_set_new(o, "queue_max", json_integer((json_int_t)outq_max(gw->outq)));
    json_object_set_new(o, "spool_bytes", json_integer((json_int_t)spool_bytes(gw->spool)));
    json_object_set_new(o, "spool_backlog", json_integer((json_int_t)spool_backlog(gw->spool)));
    json_object_set_new(o, "spool_fault", spool_fault(gw->spool) ? json_string(spool_fault(gw->spool))
                                                                 : json_null());
    json_object_set_new(o, "durability", json_string(config_durability_power(gw->cfg) ? "power"
                                                                                     : "process"));
    json_object_set_new(o, "mqtt_inflight", json_integer((json_int_t)mqtt_side_inflight(gw->mqtt)));
    json_object_set_new(o, "refused_held", json_integer((json_int_t)mqtt_side_held(gw->mqtt)));
    json_object_set_new(o, "mqtt_connected", json_boolean(mqtt_side_connected(gw->mqtt)));
    json_object_set_new(o, "time", json_integer((json_int_t)loop_wall_s()));
    text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}

static void
publish_stats(loop_t *loop, void *arg)
{
    status_t *s = arg;
    char topic[TOPIC_MAX];
    char *text = status_stats_json(s);

    if (text) {
        bridge_topic(s, topic, sizeof(topic), "stats");
        mqtt_side_publish_now(s->gw->mqtt, topic, text, 0, false);
        free(text);
    }
    s->stats_timer = loop_add_timer(loop,
                                    (uint64_t)s->gw->cfg->mqtt.stats_interval * 1000,
                                    publish_stats, s);
}

status_t *
status_new(struct gw *gw)
{
    status_t *s = calloc(1, sizeof(*s));

    if (!s)
        return NULL;
    s->gw = gw;
    if (gw->cfg->mqtt.stats_interval > 0)
        s->stats_timer = loop_add_timer(gw->loop,
                                        (uint64_t)gw->cfg->mqtt.stats_interval * 1000,
                                        publish_stats, s);
    return s;
}

void
status_free(status_t *s)
{
    if (!s)
        return;
    loop_cancel_timer(s->gw->loop, s->devices_timer);
    loop_cancel_timer(s->gw->loop, s->stats_timer);
    free(s);
}

static void
republish_one(device_t *dev, void *arg)
{
    publish_availability(arg, dev, device_online(dev));
}

void
status_on_connected(void *arg)
{
    status_t *s = arg;
    char topic[TOPIC_MAX];

    bridge_topic(s, topic, sizeof(topic), "state");
    mqtt_side_publish_now(s->gw->mqtt, topic, s->gw->stopping ? "offline" : "online",
                          1, true);
    devices_foreach(s->gw->devices, republish_one, s);
    schedule_devices(s);
}

void
status_device_event(void *arg, device_t *dev, enum device_event ev)
{
    status_t *s = arg;

    if (ev == DEVICE_AVAILABILITY)
        publish_availability(s, dev, device_online(dev));
    if (ev == DEVICE_AVAILABILITY || ev == DEVICE_LIST_CHANGED)
        schedule_devices(s);
}

static void
offline_one(device_t *dev, void *arg)
{
    publish_availability(arg, dev, false);
}

void
status_publish_offline(status_t *s)
{
    char topic[TOPIC_MAX];

    devices_foreach(s->gw->devices, offline_one, s);
    loop_cancel_timer(s->gw->loop, s->devices_timer);
    s->devices_timer = 0;
    publish_devices(s->gw->loop, s);
    bridge_topic(s, topic, sizeof(topic), "state");
    mqtt_side_publish_now(s->gw->mqtt, topic, "offline", 1, true);
}
