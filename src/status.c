/*
 * status.c - the gateway's own topics.  Retained state is published
 * directly (not through the reading queue) and in full after every
 * reconnect, so a broker that lost its retained store is repaired.  A
 * change of one device is published on its own retained topic,
 * <base>/bridge/devices/<id> (changes within one loop turn coalesced); a
 * forgotten device's topics are cleared there, and those clears wait for
 * the broker if it is away.  The whole list, <base>/bridge/devices, is
 * debounced to once per mqtt.devices_interval: at 100,000 devices it is
 * megabytes, and a fleet registering at once must not send it thousands
 * of times.
 *
 * Layer: status (calls every room below it to read their state; hears of
 * devices through its device listener, of connections through the MQTT
 * side's connected callback)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <uthash.h>

#include "coap2mqtt/devices.h"
#include "coap2mqtt/health.h"
#include "coap2mqtt/log.h"
#include "coap2mqtt/mqtt_pool.h"
#include "coap2mqtt/mqtt_side.h"
#include "coap2mqtt/outq.h"
#include "coap2mqtt/spool.h"
#include "coap2mqtt/status.h"
#include "coap2mqtt/textfile.h"
#include "coap2mqtt/topics.h"
#include "coap2mqtt/transport.h"

#define DEVICES_FIRST_MS 200   /* the list after a lone change */
#define PENDING_EXTRA 1024     /* clears kept beyond rd.max_devices */

/* A device whose topic is to be published (or cleared, once forgotten). */
struct pending {
    UT_hash_handle hh;
    char id[TOPIC_ID_MAX + 1];
};

struct status {
    struct gw *gw;
    uint64_t devices_timer;
    uint64_t devices_last_ms;   /* when the list last went out, 0 = never */
    struct pending *pending;
    uint64_t pending_timer;
    uint64_t stats_timer;
};

static void
bridge_topic(status_t *s, char *buf, size_t cap, const char *leaf)
{
    topic_bridge(buf, cap, s->gw->cfg->mqtt.base_topic, s->gw->cfg->mqtt.instance, leaf);
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

/* --- the whole list, debounced -------------------------------------------- */

static void
publish_devices(loop_t *loop, void *arg)
{
    status_t *s = arg;
    json_t *list;
    char topic[TOPIC_MAX];
    char *text;

    s->devices_timer = 0;
    if (s->gw->cfg->mqtt.devices_interval <= 0 ||
        !(list = devices_to_json(s->gw->devices)))
        return;
    text = json_dumps(list, JSON_COMPACT);
    json_decref(list);
    if (!text)
        return;
    bridge_topic(s, topic, sizeof(topic), "devices");
    if (mqtt_side_publish_now(s->gw->mqtt, topic, text, 1, true) == 0)
        s->devices_last_ms = loop_now_ms(loop);
    free(text);
}

/* A lone change goes out after DEVICES_FIRST_MS; then at most one list
 * per mqtt.devices_interval, carrying every change made meanwhile. */
static void
schedule_devices(status_t *s)
{
    uint64_t every = (uint64_t)s->gw->cfg->mqtt.devices_interval * 1000;
    uint64_t now = loop_now_ms(s->gw->loop), wait = DEVICES_FIRST_MS;

    if (!every || s->devices_timer)
        return;
    if (s->devices_last_ms && s->devices_last_ms + every > now + wait)
        wait = s->devices_last_ms + every - now;
    s->devices_timer = loop_add_timer(s->gw->loop, wait, publish_devices, s);
}

/* --- one device: <base>/bridge/devices/<id> ---------------------------------- */

static void
device_topic(status_t *s, char *buf, size_t cap, const char *id)
{
    snprintf(buf, cap, "%s/bridge/devices/%s", s->gw->cfg->mqtt.base_topic, id);
}

static void
publish_device(status_t *s, device_t *dev)
{
    char topic[TOPIC_MAX];
    json_t *o = device_to_json(dev);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;

    json_decref(o);
    if (!text)
        return;
    device_topic(s, topic, sizeof(topic), device_id(dev));
    mqtt_side_publish_now(s->gw->mqtt, topic, text, 1, true);
    free(text);
}

/* A forgotten device: empty retained messages delete its record and its
 * availability at the broker.  -1 while the broker is away. */
static int
clear_device(status_t *s, const char *id)
{
    char topic[TOPIC_MAX];

    device_topic(s, topic, sizeof(topic), id);
    if (mqtt_side_publish_now(s->gw->mqtt, topic, "", 1, true) < 0)
        return -1;
    if (topic_build(topic, sizeof(topic), s->gw->cfg->mqtt.base_topic, id, NULL,
                    "availability") >= 0)
        mqtt_side_publish_now(s->gw->mqtt, topic, "", 1, true);
    return 0;
}

/*
 * Publishes what changed.  While the broker is away the devices that
 * still exist are dropped from the set (all are published at the
 * reconnect), the clears of forgotten ones are kept for it.
 */
static void
flush_pending(loop_t *loop, void *arg)
{
    status_t *s = arg;
    struct pending *p, *tmp;
    device_t *dev;

    (void)loop;
    s->pending_timer = 0;
    HASH_ITER(hh, s->pending, p, tmp) {
        if ((dev = devices_find(s->gw->devices, p->id)))
            publish_device(s, dev);
        else if (clear_device(s, p->id) < 0)
            continue;
        HASH_DEL(s->pending, p);
        free(p);
    }
}

static void
mark_pending(status_t *s, const char *id)
{
    struct pending *p;

    HASH_FIND_STR(s->pending, id, p);
    if (!p) {
        if (HASH_COUNT(s->pending) >= (size_t)s->gw->cfg->rd.max_devices + PENDING_EXTRA ||
            !(p = calloc(1, sizeof(*p)))) {
            log_ratelimited(s, "status: too many device changes waiting for the "
                            "broker: %s/bridge/devices/%s not updated",
                            s->gw->cfg->mqtt.base_topic, id);
            return;
        }
        snprintf(p->id, sizeof(p->id), "%s", id);
        HASH_ADD_STR(s->pending, id, p);
    }
    if (!s->pending_timer)
        s->pending_timer = loop_add_timer(s->gw->loop, 0, flush_pending, s);
}

/* mqtt.connections: how many are up, and each one's readings in flight
 * (the most at once, too) and waiting for it. */
static void
add_connections(json_t *o, const mqtt_pool_t *p)
{
    json_t *inflight = json_array(), *peak = json_array();

    json_object_set_new(o, "mqtt_connections", json_integer((json_int_t)mqtt_pool_size(p)));
    json_object_set_new(o, "mqtt_connections_up", json_integer((json_int_t)mqtt_pool_up(p)));
    json_object_set_new(o, "mqtt_queued", json_integer((json_int_t)mqtt_pool_queued(p)));
    for (size_t i = 0; i < mqtt_pool_size(p); i++) {
        const mqtt_side_t *m = mqtt_pool_connection(p, i);

        json_array_append_new(inflight, json_integer((json_int_t)mqtt_side_inflight(m)));
        json_array_append_new(peak, json_integer((json_int_t)mqtt_side_inflight_peak(m)));
    }
    json_object_set_new(o, "mqtt_inflight_per_connection", inflight);
    json_object_set_new(o, "mqtt_inflight_peak_per_connection", peak);
}

static json_t *
stats_object(status_t *s)
{
    struct gw *gw = s->gw;
    json_t *o = json_object();
    size_t gets, waiting;

#define STATS_JSON(name) json_object_set_new(o, #name, json_integer((json_int_t)gw->stats.name));
    STATS_FIELDS(STATS_JSON)
#undef STATS_JSON
    json_object_set_new(o, "devices", json_integer((json_int_t)devices_count(gw->devices)));
    json_object_set_new(o, "devices_unauthenticated",
                        json_integer((json_int_t)devices_count_unauthenticated(gw->devices)));
    json_object_set_new(o, "sessions", json_integer((json_int_t)transport_sessions(gw->coap)));
    gets = devices_observe_gets(gw->devices, &waiting);
    json_object_set_new(o, "observe_gets", json_integer((json_int_t)gets));
    json_object_set_new(o, "observe_gets_waiting", json_integer((json_int_t)waiting));
    json_object_set_new(o, "queue_depth", json_integer((json_int_t)outq_len(gw->outq)));
    json_object_set_new(o, "queue_max", json_integer((json_int_t)outq_max(gw->outq)));
    json_object_set_new(o, "spool_bytes", json_integer((json_int_t)spool_bytes(gw->spool)));
    json_object_set_new(o, "spool_backlog", json_integer((json_int_t)spool_backlog(gw->spool)));
    json_object_set_new(o, "spool_fault", spool_fault(gw->spool) ? json_string(spool_fault(gw->spool))
                                                                 : json_null());
    json_object_set_new(o, "durability", json_string(config_durability_power(gw->cfg) ? "power"
                                                                                     : "process"));
    json_object_set_new(o, "mqtt_inflight", json_integer((json_int_t)mqtt_pool_inflight(gw->mqtt_pool)));
    json_object_set_new(o, "refused_held", json_integer((json_int_t)mqtt_pool_held(gw->mqtt_pool)));
    json_object_set_new(o, "mqtt_connected", json_boolean(mqtt_pool_connected(gw->mqtt_pool)));
    add_connections(o, gw->mqtt_pool);
    json_object_set_new(o, "time", json_integer((json_int_t)loop_wall_s()));
    return o;
}

char *
status_stats_json(status_t *s)
{
    json_t *o = stats_object(s);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;

    json_decref(o);
    return text;
}

/* stats.textfile: the same counters for node_exporter's textfile collector. */
static void
write_textfile(status_t *s)
{
    const char *path = s->gw->cfg->stats.textfile;
    json_t *o;

    if (!path || !(o = stats_object(s)))
        return;
    if (textfile_write(path, o) < 0)
        log_ratelimited(s, "stats.textfile %s: %s", path, strerror(errno));
    json_decref(o);
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
    write_textfile(s);
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
status_restart_stats(status_t *s)
{
    int interval = s->gw->cfg->mqtt.stats_interval;

    loop_cancel_timer(s->gw->loop, s->stats_timer);
    s->stats_timer = interval > 0 ? loop_add_timer(s->gw->loop,
                                                   (uint64_t)interval * 1000,
                                                   publish_stats, s) : 0;
}

void
status_free(status_t *s)
{
    struct pending *p, *tmp;

    if (!s)
        return;
    HASH_ITER(hh, s->pending, p, tmp) {
        HASH_DEL(s->pending, p);
        free(p);
    }
    loop_cancel_timer(s->gw->loop, s->devices_timer);
    loop_cancel_timer(s->gw->loop, s->pending_timer);
    loop_cancel_timer(s->gw->loop, s->stats_timer);
    free(s);
}

static void
republish_one(device_t *dev, void *arg)
{
    publish_availability(arg, dev, device_online(dev));
    publish_device(arg, dev);
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
    flush_pending(s->gw->loop, s);
    if (s->gw->cfg->mqtt.devices_interval > 0) {
        schedule_devices(s);
    } else {
        /* Not published: no stale list of an earlier run stays either. */
        bridge_topic(s, topic, sizeof(topic), "devices");
        mqtt_side_publish_now(s->gw->mqtt, topic, "", 1, true);
    }
    health_update(s->gw->health);   /* healthy now, not at the next tick */
}

void
status_device_event(void *arg, device_t *dev, enum device_event ev)
{
    status_t *s = arg;

    /* Its topics are the new holder's now: only our own list changes. */
    if (ev == DEVICE_MOVED) {
        schedule_devices(s);
        return;
    }
    if (ev == DEVICE_AVAILABILITY)
        publish_availability(s, dev, device_online(dev));
    if (ev == DEVICE_AVAILABILITY || ev == DEVICE_LIST_CHANGED ||
        ev == DEVICE_FORGOTTEN) {
        mark_pending(s, device_id(dev));
        schedule_devices(s);
    }
}

static void
offline_one(device_t *dev, void *arg)
{
    publish_availability(arg, dev, false);
    publish_device(arg, dev);
}

void
status_publish_offline(status_t *s)
{
    char topic[TOPIC_MAX];

    devices_foreach(s->gw->devices, offline_one, s);
    loop_cancel_timer(s->gw->loop, s->pending_timer);
    flush_pending(s->gw->loop, s);
    loop_cancel_timer(s->gw->loop, s->devices_timer);
    s->devices_timer = 0;
    publish_devices(s->gw->loop, s);
    bridge_topic(s, topic, sizeof(topic), "state");
    mqtt_side_publish_now(s->gw->mqtt, topic, "offline", 1, true);
}
