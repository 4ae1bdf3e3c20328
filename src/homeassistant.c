/*
 * homeassistant.c - Home Assistant MQTT discovery, in zigbee2mqtt's
 * manner: the gateway is one device (the bridge), every registered CoAP
 * device another one "via" it, and each resource the device declared an
 * entity of that device.
 *
 * What a resource becomes (docs/CONFIG.md, "homeassistant"):
 *   - nothing, when it is a link list (ct=40);
 *   - writable when its if= names an actuator or a read-write parameter
 *     (core.a, core.p, oic.if.a, oic.if.rw) or its rt= names something one
 *     sets (a switch, a setpoint): a "switch" when rt= names an on/off
 *     thing (payloads "1"/"0"), else a "number"; the command topic is
 *     <base>/<id>/<path>/set, and the state topic, when the resource is
 *     observable, <base>/<id>/<path>;
 *   - otherwise a "sensor" on <base>/<id>/<path>, with device class, unit
 *     and state class when rt= names a known quantity (temperature,
 *     oic.r.temperature, IPSO 3303 ...).  A resource without obs is a
 *     sensor too: a device that pushes declares its paths without obs.
 * Every entity is available while both its device's availability and
 * bridge/state say "online" (availability_mode "all").
 *
 * Configs are retained.  They are published when a device registers or
 * its links change, again after every connection and when Home Assistant
 * says "online" on <prefix>/status, and removed (an empty retained
 * message) when the registration ends (DELETE /rd, or its lifetime runs
 * out) or the registry forgets the device.  A gateway that stops leaves
 * them: its entities show unavailable, as zigbee2mqtt's do.
 *
 * Layer: status (calls devices, mqtt_side and base; hears of devices
 * through its device listener)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <uthash.h>

#include "coap2mqtt/devices.h"
#include "coap2mqtt/homeassistant.h"
#include "coap2mqtt/log.h"
#include "coap2mqtt/mqtt_side.h"
#include "coap2mqtt/topics.h"

#ifndef COAP2MQTT_VERSION
#define COAP2MQTT_VERSION "0.1"
#endif

#define HA_TOPIC_MAX 600
#define CT_LINK_FORMAT 40

enum component { HA_NONE, HA_SENSOR, HA_NUMBER, HA_SWITCH };

static const char *const component_names[] = {
    [HA_NONE] = "", [HA_SENSOR] = "sensor", [HA_NUMBER] = "number",
    [HA_SWITCH] = "switch",
};

/* One config published (retained) for a device, and what it said. */
struct ha_entity {
    char *topic;
    char *payload;
};

struct ha_dev {
    char id[TOPIC_ID_MAX + 1];
    struct ha_entity ent[LINKFORMAT_MAX_LINKS];
    size_t n;
    UT_hash_handle hh;
};

/* A config to remove once the broker is back. */
struct ha_gone {
    struct ha_gone *next;
    char topic[];
};

struct homeassistant {
    struct gw *gw;
    char status_topic[TOPIC_BASE_MAX + 16];
    char bridge_id[96];         /* device identifier of the gateway */
    struct ha_dev *devs;
    struct ha_gone *gone;
};

/* --- what a resource is ------------------------------------------------- */

/* Whether the space-separated list 'list' holds 'token'. */
static bool
has_token(const char *list, const char *token)
{
    size_t n = strlen(token);

    for (const char *p = list; *p; ) {
        size_t len = strcspn(p, " ");

        if (len == n && strncmp(p, token, n) == 0)
            return true;
        p += len;
        p += strspn(p, " ");
    }
    return false;
}

static bool
has_any(const char *list, const char *const *tokens)
{
    for (; *tokens; tokens++)
        if (has_token(list, *tokens))
            return true;
    return false;
}

static const char *const writable_ifs[] = {
    "core.a", "core.p", "oic.if.a", "oic.if.rw", NULL
};
static const char *const switch_rts[] = {
    "switch", "onoff", "relay", "oic.r.switch.binary", "3312", NULL
};
static const char *const setpoint_rts[] = {
    "setpoint", "oic.r.temperature.setpoint", "3308", NULL
};

static enum component
classify(const struct lf_link *l)
{
    bool writable;

    if (l->ct == CT_LINK_FORMAT)
        return HA_NONE;
    writable = has_any(l->iface, writable_ifs) || has_any(l->rt, switch_rts) ||
               has_any(l->rt, setpoint_rts);
    if (!writable)
        return HA_SENSOR;
    return has_any(l->rt, switch_rts) ? HA_SWITCH : HA_NUMBER;
}

/* A quantity Home Assistant knows, named by rt= (the word, OCF's
 * oic.r.<word>, or the IPSO object number). */
struct quantity {
    const char *rt[4];
    const char *device_class, *unit, *state_class;
};

static const struct quantity quantities[] = {
    { { "temperature", "oic.r.temperature", "3303", "setpoint" },
      "temperature", "°C", "measurement" },
    { { "humidity", "oic.r.humidity", "3304", NULL }, "humidity", "%", "measurement" },
    { { "illuminance", "oic.r.illuminance", "3301", NULL }, "illuminance", "lx",
      "measurement" },
    { { "pressure", "oic.r.pressure", "3323", NULL }, "pressure", "hPa", "measurement" },
    { { "power", "oic.r.energy.electrical", "3328", NULL }, "power", "W", "measurement" },
    { { "energy", "oic.r.energy.consumption", "3331", NULL }, "energy", "kWh",
      "total_increasing" },
    { { "voltage", "3316", NULL, NULL }, "voltage", "V", "measurement" },
    { { "current", "3317", NULL, NULL }, "current", "A", "measurement" },
    { { "co2", "carbon_dioxide", "oic.r.carbondioxide", NULL }, "carbon_dioxide", "ppm",
      "measurement" },
    { { "battery", "oic.r.energy.battery", NULL, NULL }, "battery", "%", "measurement" },
};

static const struct quantity *
quantity_of(const char *rt)
{
    for (size_t i = 0; i < sizeof(quantities) / sizeof(quantities[0]); i++)
        for (size_t j = 0; j < 4 && quantities[i].rt[j]; j++)
            if (has_token(rt, quantities[i].rt[j]))
                return &quantities[i];
    return NULL;
}

/* --- the config documents -------------------------------------------------- */

/* Home Assistant's node_id and object_id: [a-zA-Z0-9_-] only. */
static void
sanitize(char *out, size_t cap, const char *in)
{
    size_t i;

    for (i = 0; in[i] && i + 1 < cap; i++) {
        char c = in[i];

        out[i] = ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  (c >= '0' && c <= '9') || c == '-') ? c : '_';
    }
    out[i] = '\0';
}

static json_t *
origin(void)
{
    return json_pack("{s:s, s:s}", "name", "coap2mqtt", "sw_version", COAP2MQTT_VERSION);
}

static json_t *
device_block(homeassistant_t *ha, const char *id)
{
    char ident[TOPIC_ID_MAX + 16];

    snprintf(ident, sizeof(ident), "coap2mqtt_%s", id);
    return json_pack("{s:[s], s:s, s:s, s:s}", "identifiers", ident, "name", id,
                     "model", "CoAP device", "via_device", ha->bridge_id);
}

static json_t *
availability(homeassistant_t *ha, const char *id)
{
    const char *base = ha->gw->cfg->mqtt.base_topic;
    char dev_topic[TOPIC_MAX], bridge[TOPIC_MAX];

    if (topic_build(dev_topic, sizeof(dev_topic), base, id, NULL, "availability") < 0)
        return NULL;
    topic_bridge(bridge, sizeof(bridge), base, ha->gw->cfg->mqtt.instance, "state");
    return json_pack("[{s:s}, {s:s}]", "topic", dev_topic, "topic", bridge);
}

/* Unit, device class and state class (a sensor's) when rt= names them. */
static void
add_quantity(json_t *o, const struct lf_link *l, bool state_class)
{
    const struct quantity *q = quantity_of(l->rt);

    /* Only a plain-text number can carry a unit: Home Assistant refuses
     * other states for a sensor with one. */
    if (!q || (l->ct != 0 && l->ct != -1))
        return;
    json_object_set_new(o, "device_class", json_string(q->device_class));
    json_object_set_new(o, "unit_of_measurement", json_string(q->unit));
    if (state_class)
        json_object_set_new(o, "state_class", json_string(q->state_class));
}

/* What only a number or a switch has: the command topic and its state. */
static void
add_writable(json_t *o, enum component comp, const struct lf_link *l,
             const char *state, const char *set)
{
    json_object_set_new(o, "command_topic", json_string(set));
    if (l->obs)
        json_object_set_new(o, "state_topic", json_string(state));
    if (comp == HA_SWITCH) {
        json_object_set_new(o, "payload_on", json_string("1"));
        json_object_set_new(o, "payload_off", json_string("0"));
        if (l->obs) {
            json_object_set_new(o, "state_on", json_string("1"));
            json_object_set_new(o, "state_off", json_string("0"));
        }
        return;
    }
    json_object_set_new(o, "mode", json_string("box"));
    json_object_set_new(o, "min", json_real(-1000000.0));
    json_object_set_new(o, "max", json_real(1000000.0));
    json_object_set_new(o, "step", json_real(0.001));
    add_quantity(o, l, false);
}

/* The config document of one resource (new reference), or NULL. */
static json_t *
entity_config(homeassistant_t *ha, const char *id, const struct lf_link *l,
              enum component comp)
{
    const char *base = ha->gw->cfg->mqtt.base_topic;
    char state[TOPIC_MAX], set[TOPIC_MAX], uid[TOPIC_ID_MAX + TOPIC_PATH_MAX + 16];
    json_t *o;

    if (topic_build(state, sizeof(state), base, id, l->path, NULL) < 0 ||
        topic_build(set, sizeof(set), base, id, l->path, "set") < 0 ||
        (size_t)snprintf(uid, sizeof(uid), "coap2mqtt_%s_%s", id, l->path) >= sizeof(uid))
        return NULL;
    o = json_pack("{s:s, s:s, s:o, s:o*, s:s, s:o}", "name", l->path, "unique_id", uid,
                  "device", device_block(ha, id), "availability", availability(ha, id),
                  "availability_mode", "all", "origin", origin());
    if (!o)
        return NULL;
    if (comp == HA_SENSOR) {
        json_object_set_new(o, "state_topic", json_string(state));
        add_quantity(o, l, true);
    } else {
        add_writable(o, comp, l, state, set);
    }
    return o;
}

static int
config_topic(homeassistant_t *ha, char *buf, size_t cap, const char *component,
             const char *node, const char *object)
{
    char n[TOPIC_ID_MAX + 64], obj[TOPIC_PATH_MAX + 1];

    sanitize(n, sizeof(n), node);
    sanitize(obj, sizeof(obj), object);
    if ((size_t)snprintf(buf, cap, "%s/%s/%s/%s/config", ha->gw->cfg->homeassistant.prefix,
                         component, n, obj) >= cap)
        return -1;
    return 0;
}

/* --- publishing ------------------------------------------------------------- */

/* Not connected: nothing is lost, every config goes out again on the
 * next connection. */
static void
publish(homeassistant_t *ha, const char *topic, const char *payload)
{
    if (ha->gw->mqtt)
        mqtt_side_publish_now(ha->gw->mqtt, topic, payload, 1, true);
}

/* Removes a retained config now, or once the broker is back. */
static void
remove_config(homeassistant_t *ha, const char *topic)
{
    struct ha_gone *g;

    if (ha->gw->mqtt &&
        mqtt_side_publish_now(ha->gw->mqtt, topic, "", 1, true) == 0)
        return;
    if (!(g = malloc(sizeof(*g) + strlen(topic) + 1)))
        return;
    strcpy(g->topic, topic);
    g->next = ha->gone;
    ha->gone = g;
}

static void
publish_bridge(homeassistant_t *ha)
{
    char topic[HA_TOPIC_MAX], state[TOPIC_MAX], uid[128];
    json_t *o;
    char *text;

    topic_bridge(state, sizeof(state), ha->gw->cfg->mqtt.base_topic,
                 ha->gw->cfg->mqtt.instance, "state");
    snprintf(uid, sizeof(uid), "%s_connection_state", ha->bridge_id);
    if (config_topic(ha, topic, sizeof(topic), "binary_sensor", ha->bridge_id,
                     "connection_state") < 0)
        return;
    o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:{s:[s], s:s, s:s, s:s, s:s}, s:o}",
                  "name", "Connection state", "unique_id", uid, "state_topic", state,
                  "payload_on", "online", "payload_off", "offline",
                  "device_class", "connectivity", "entity_category", "diagnostic",
                  "device", "identifiers", ha->bridge_id, "name", "coap2mqtt bridge",
                  "model", "CoAP/DTLS to MQTT gateway", "manufacturer", "coap2mqtt",
                  "sw_version", COAP2MQTT_VERSION, "origin", origin());
    if (o && (text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS))) {
        publish(ha, topic, text);
        free(text);
    }
    json_decref(o);
}

static void
entity_clear(struct ha_entity *e)
{
    free(e->topic);
    free(e->payload);
    e->topic = e->payload = NULL;
}

/* The entities the device should have now, into 'out' (topic and payload
 * allocated); how many. */
static size_t
build_entities(homeassistant_t *ha, device_t *dev, struct ha_entity *out)
{
    struct lf_link links[LINKFORMAT_MAX_LINKS];
    size_t n = 0, n_links;
    char topic[HA_TOPIC_MAX];

    if (!device_registered(dev))
        return 0;
    n_links = device_links(dev, links, LINKFORMAT_MAX_LINKS);
    for (size_t i = 0; i < n_links; i++) {
        enum component comp = classify(&links[i]);
        json_t *o;

        if (comp == HA_NONE || config_topic(ha, topic, sizeof(topic), component_names[comp],
                                            device_id(dev), links[i].path) < 0 ||
            !(o = entity_config(ha, device_id(dev), &links[i], comp)))
            continue;
        out[n].payload = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
        out[n].topic = strdup(topic);
        json_decref(o);
        if (!out[n].payload || !out[n].topic) {
            entity_clear(&out[n]);
            continue;
        }
        n++;
    }
    return n;
}

static const struct ha_entity *
find_entity(const struct ha_entity *ents, size_t n, const char *topic)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(ents[i].topic, topic) == 0)
            return &ents[i];
    return NULL;
}

/* Brings the device's configs on the broker to what it declares now:
 * new or changed ones published ('force': all of them), vanished ones
 * removed. */
static void
sync_device(homeassistant_t *ha, device_t *dev, bool force)
{
    struct ha_entity now[LINKFORMAT_MAX_LINKS];
    struct ha_dev *hd;
    const struct ha_entity *was;
    size_t n = build_entities(ha, dev, now);

    HASH_FIND_STR(ha->devs, device_id(dev), hd);
    if (!hd && n == 0)
        return;
    if (!hd) {
        if (!(hd = calloc(1, sizeof(*hd)))) {
            while (n)
                entity_clear(&now[--n]);
            return;
        }
        snprintf(hd->id, sizeof(hd->id), "%s", device_id(dev));
        HASH_ADD_STR(ha->devs, id, hd);
    }
    for (size_t i = 0; i < n; i++) {
        was = find_entity(hd->ent, hd->n, now[i].topic);
        if (force || !was || strcmp(was->payload, now[i].payload) != 0)
            publish(ha, now[i].topic, now[i].payload);
    }
    for (size_t i = 0; i < hd->n; i++) {
        if (!find_entity(now, n, hd->ent[i].topic))
            remove_config(ha, hd->ent[i].topic);
        entity_clear(&hd->ent[i]);
    }
    memcpy(hd->ent, now, n * sizeof(now[0]));
    hd->n = n;
    if (n == 0) {
        HASH_DEL(ha->devs, hd);
        free(hd);
    }
}

/* The registry forgets the device: its configs go (unless the gateway is
 * stopping: then they stay, and show unavailable). */
static void
forget_device(homeassistant_t *ha, device_t *dev)
{
    struct ha_dev *hd;

    HASH_FIND_STR(ha->devs, device_id(dev), hd);
    if (!hd)
        return;
    for (size_t i = 0; i < hd->n; i++) {
        /* A device another instance holds now keeps its configs: that
         * instance publishes them. */
        if (!ha->gw->stopping && ha->gw->mqtt && !device_moved(dev))
            remove_config(ha, hd->ent[i].topic);
        entity_clear(&hd->ent[i]);
    }
    HASH_DEL(ha->devs, hd);
    free(hd);
}

/* --- the room's API ----------------------------------------------------------- */

homeassistant_t *
homeassistant_new(struct gw *gw)
{
    homeassistant_t *ha = calloc(1, sizeof(*ha));

    if (!ha)
        return NULL;
    ha->gw = gw;
    snprintf(ha->status_topic, sizeof(ha->status_topic), "%s/status",
             gw->cfg->homeassistant.prefix);
    snprintf(ha->bridge_id, sizeof(ha->bridge_id), "coap2mqtt_bridge_%s",
             gw->cfg->mqtt.client_id);
    if (mqtt_side_add_subscription(gw->mqtt, ha->status_topic) < 0) {
        free(ha);
        return NULL;
    }
    return ha;
}

void
homeassistant_free(homeassistant_t *ha)
{
    struct ha_dev *hd, *tmp;

    if (!ha)
        return;
    HASH_ITER(hh, ha->devs, hd, tmp) {
        for (size_t i = 0; i < hd->n; i++)
            entity_clear(&hd->ent[i]);
        HASH_DEL(ha->devs, hd);
        free(hd);
    }
    while (ha->gone) {
        struct ha_gone *g = ha->gone;

        ha->gone = g->next;
        free(g);
    }
    free(ha);
}

void
homeassistant_device_event(void *arg, device_t *dev, enum device_event ev)
{
    homeassistant_t *ha = arg;

    if (ev == DEVICE_FREED)
        forget_device(ha, dev);
    else if ((ev == DEVICE_LIST_CHANGED || ev == DEVICE_AVAILABILITY) && !ha->gw->stopping)
        sync_device(ha, dev, false);
}

static void
republish_one(device_t *dev, void *arg)
{
    sync_device(arg, dev, true);
}

static void
republish_all(homeassistant_t *ha)
{
    publish_bridge(ha);
    devices_foreach(ha->gw->devices, republish_one, ha);
}

void
homeassistant_on_connected(homeassistant_t *ha)
{
    struct ha_gone *g = ha->gone;

    ha->gone = NULL;
    while (g) {
        struct ha_gone *next = g->next;

        remove_config(ha, g->topic);
        free(g);
        g = next;
    }
    republish_all(ha);
}

bool
homeassistant_on_message(homeassistant_t *ha, const struct mosquitto_message *msg)
{
    if (strcmp(msg->topic, ha->status_topic) != 0)
        return false;
    if (msg->payloadlen == 6 && memcmp(msg->payload, "online", 6) == 0) {
        log_info("homeassistant: %s says online, publishing discovery again",
                 ha->status_topic);
        republish_all(ha);
    }
    return true;
}
