/*
 * ownership.c - several gateway instances on one broker (mqtt.instance).
 * A UDP balancer with source affinity sends each device to one instance;
 * that instance holds the device: it subscribes to the device's command
 * topics only (so a command reaches the one instance that can deliver it)
 * and, once the broker has acknowledged that subscription, claims the
 * device on the retained <base>/bridge/owner/<id> ({"instance", "since"}).
 * Every instance follows those topics.  When a device held here is claimed
 * by another (failover, rebalancing), the newest claim wins: this instance
 * hands its commands on (commands_hand_over), drops its record without a
 * word on the broker (devices_hand_over) and unsubscribes.  A command that
 * still reaches us for a device another instance holds is forwarded to it:
 * it may have been published before that instance subscribed.
 *
 * Claim before subscribing, and a command published in between would reach
 * nobody; subscribing first means a command published around the hand-over
 * may reach both instances: the old one forwards its copy to the new one's
 * inbox, which drops a copy of a command it took itself
 * (commands_forward.c).
 *
 * A killed instance leaves its devices' retained availability "online";
 * its will turns <base>/bridge/<instance>/state "offline", and then every
 * other instance marks the devices that instance held offline (and an
 * instance that took one over from it says "online" again, in case its
 * claim and that mark crossed).
 *
 * Layer: status (calls devices, services (commands), mqtt_side and base;
 * hears of devices through its device listener, of the broker through the
 * wiring's message dispatch and the SUBACK handler)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <jansson.h>
#include <uthash.h>

#include "coap2mqtt/commands.h"
#include "coap2mqtt/devices.h"
#include "coap2mqtt/log.h"
#include "coap2mqtt/mqtt_side.h"
#include "coap2mqtt/ownership.h"
#include "coap2mqtt/topics.h"

#define INSTANCE_MAX 32

/* One device and the instance that holds it, as far as we know. */
struct holder {
    UT_hash_handle hh;
    char id[TOPIC_ID_MAX + 1];
    char instance[INSTANCE_MAX + 1];   /* "" when not known */
    char prev[INSTANCE_MAX + 1];       /* who held it before we claimed it */
    int64_t since_ms;                  /* wall clock of that holder's claim */
    int sub_mid;                       /* our SUBSCRIBE awaiting its SUBACK */
    int depth;                         /* path depths subscribed (3.1.1),
                                        * 1 for <base>/<id>/# (v5), 0 none */
    bool claim_pending;                /* to publish once subscribed */
    bool stale_dropped;                /* a leftover subscription of ours
                                        * was unsubscribed */
};

/* A SUBSCRIBE in flight, by packet id. */
struct sub_wait {
    UT_hash_handle hh;
    int mid;
    char id[TOPIC_ID_MAX + 1];
};

struct ownership {
    struct gw *gw;
    const char *self;
    struct holder *by_id;
    struct sub_wait *subs;
    char owner_prefix[TOPIC_MAX];      /* "<base>/bridge/owner/" */
    char bridge_prefix[TOPIC_MAX];     /* "<base>/bridge/" */
};

static int64_t
wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct holder *
holder_find(ownership_t *o, const char *id)
{
    struct holder *h;

    HASH_FIND_STR(o->by_id, id, h);
    return h;
}

static struct holder *
holder_get(ownership_t *o, const char *id)
{
    struct holder *h = holder_find(o, id);

    if (h || !(h = calloc(1, sizeof(*h))))
        return h;
    snprintf(h->id, sizeof(h->id), "%s", id);
    HASH_ADD_STR(o->by_id, id, h);
    return h;
}

static bool
held_here(const ownership_t *o, const struct holder *h)
{
    return strcmp(h->instance, o->self) == 0;
}

/* --- the device's command topics ------------------------------------------------ */

/* MQTT v5: <base>/<id>/# (No Local keeps our readings away).  3.1.1 has no
 * No Local (and with mqtt.connections > 1 it does not cover the readings
 * of the other connections): one filter per path depth and verb, depths
 * from+1..to, so that none of our readings comes back (a path never ends
 * in set or get). */
static int
build_filters(ownership_t *o, const char *id, int from, int to,
              char buf[][TOPIC_MAX], char **filters)
{
    const char *base = o->gw->cfg->mqtt.base_topic;
    int n = 0;

    if (mqtt_side_no_local(o->gw->mqtt)) {
        if (from > 0 || topic_build(buf[0], TOPIC_MAX, base, id, NULL, "#") < 0)
            return 0;
        filters[0] = buf[0];
        return 1;
    }
    for (int depth = from + 1; depth <= to && depth <= TOPIC_PATH_DEPTH; depth++)
        for (int verb = 0; verb < 2; verb++) {
            char path[2 * TOPIC_PATH_DEPTH];
            size_t len = 0;

            for (int i = 0; i < depth; i++)
                len += (size_t)snprintf(path + len, sizeof(path) - len, i ? "/+" : "+");
            if (topic_build(buf[n], TOPIC_MAX, base, id, path, verb ? "get" : "set") < 0)
                return n;
            filters[n] = buf[n];
            n++;
        }
    return n;
}

static int
wanted_depth(ownership_t *o, const device_t *dev)
{
    return mqtt_side_no_local(o->gw->mqtt) ? 1 : device_path_depth(dev);
}

/* Subscribes whatever of the device's command topics is not yet. */
static void
subscribe_device(ownership_t *o, struct holder *h, const device_t *dev)
{
    char buf[2 * TOPIC_PATH_DEPTH][TOPIC_MAX];
    char *filters[2 * TOPIC_PATH_DEPTH];
    int want = wanted_depth(o, dev), n, mid;
    struct sub_wait *w;

    if (h->depth >= want || !mqtt_side_connected(o->gw->mqtt))
        return;
    n = build_filters(o, h->id, h->depth, want, buf, filters);
    if (n == 0 || (mid = mqtt_side_subscribe(o->gw->mqtt, n, filters)) < 0) {
        log_warnx("device %s: cannot subscribe to its command topics", h->id);
        return;
    }
    h->depth = want;
    h->sub_mid = mid;
    h->stale_dropped = false;
    if ((w = calloc(1, sizeof(*w)))) {
        w->mid = mid;
        snprintf(w->id, sizeof(w->id), "%s", h->id);
        HASH_ADD_INT(o->subs, mid, w);
    }
}

static void
unsubscribe_device(ownership_t *o, struct holder *h, int depth)
{
    char buf[2 * TOPIC_PATH_DEPTH][TOPIC_MAX];
    char *filters[2 * TOPIC_PATH_DEPTH];
    int n = build_filters(o, h->id, 0, depth, buf, filters);

    h->depth = 0;
    h->sub_mid = 0;
    if (n <= 0)
        return;
    /* RabbitMQ 3.10 (3.1.1) removes only what was subscribed on the
     * current connection, and acknowledges the rest without removing it:
     * a filter left from an earlier connection of our session would go on
     * bringing commands.  Subscribing first makes it the connection's own
     * (the broker takes the two in order); elsewhere it is harmless. */
    if (mqtt_side_v311(o->gw->mqtt))
        (void)mqtt_side_subscribe(o->gw->mqtt, n, filters);
    mqtt_side_unsubscribe(o->gw->mqtt, n, filters);
}

/* A device we do not hold, whose command topics our broker session may
 * still be subscribed to from before a restart: unsubscribed once.  3.1.1:
 * we do not know how deep the old filters went, so all depths. */
static void
drop_stale_subscription(ownership_t *o, struct holder *h)
{
    if (h->stale_dropped)
        return;
    h->stale_dropped = true;
    unsubscribe_device(o, h, mqtt_side_no_local(o->gw->mqtt) ? 1 : TOPIC_PATH_DEPTH);
}

/* --- claims ----------------------------------------------------------------------- */

static void
owner_topic(ownership_t *o, char *buf, size_t cap, const char *id)
{
    if ((size_t)snprintf(buf, cap, "%s%s", o->owner_prefix, id) >= cap)
        buf[0] = '\0';     /* cannot happen: base and id are bounded */
}

static void
publish_claim(ownership_t *o, struct holder *h)
{
    char topic[TOPIC_MAX], payload[INSTANCE_MAX + 64];

    owner_topic(o, topic, sizeof(topic), h->id);
    snprintf(payload, sizeof(payload), "{\"instance\":\"%s\",\"since\":%lld}",
             o->self, (long long)h->since_ms);
    if (mqtt_side_publish_now(o->gw->mqtt, topic, payload, 1, true) == 0)
        h->claim_pending = false;
}

/* The device showed up here: it is ours from now on. */
static void
hold(ownership_t *o, device_t *dev)
{
    struct holder *h;

    if (devices_find(o->gw->devices, device_id(dev)) != dev ||
        !(h = holder_get(o, device_id(dev))))
        return;     /* on its way out of the registry */
    if (!held_here(o, h)) {
        if (h->instance[0])
            log_notice("device %s: taking it over from instance %s", h->id, h->instance);
        snprintf(h->prev, sizeof(h->prev), "%s", h->instance);
        snprintf(h->instance, sizeof(h->instance), "%s", o->self);
        h->since_ms = wall_ms();
        h->claim_pending = true;
        h->depth = 0;   /* whatever was subscribed belonged to an old claim */
        o->gw->stats.devices_claimed++;
    }
    subscribe_device(o, h, dev);
}

/* Forgotten or removed here: nobody holds it. */
static void
release(ownership_t *o, const char *id)
{
    struct holder *h = holder_find(o, id);
    char topic[TOPIC_MAX];

    if (!h || !held_here(o, h))
        return;
    owner_topic(o, topic, sizeof(topic), id);
    mqtt_side_publish_now(o->gw->mqtt, topic, "", 1, true);
    unsubscribe_device(o, h, h->depth);
    HASH_DEL(o->by_id, h);
    free(h);
}

void
ownership_on_suback(void *arg, int mid)
{
    ownership_t *o = arg;
    struct sub_wait *w;
    struct holder *h;

    HASH_FIND_INT(o->subs, &mid, w);
    if (!w)
        return;
    HASH_DEL(o->subs, w);
    h = holder_find(o, w->id);
    free(w);
    if (!h || h->sub_mid != mid || !held_here(o, h))
        return;
    h->sub_mid = 0;
    if (h->claim_pending)
        publish_claim(o, h);
}

static void
forget_sub_waits(ownership_t *o)
{
    struct sub_wait *w, *tmp;

    HASH_ITER(hh, o->subs, w, tmp) {
        HASH_DEL(o->subs, w);
        free(w);
    }
}

void
ownership_on_connected(ownership_t *o)
{
    struct holder *h, *tmp;
    device_t *dev;

    /* SUBACKs of the last connection will not come. */
    forget_sub_waits(o);
    HASH_ITER(hh, o->by_id, h, tmp) {
        if (!held_here(o, h))
            continue;
        h->sub_mid = 0;
        h->depth = 0;
        if ((dev = devices_find(o->gw->devices, h->id)))
            subscribe_device(o, h, dev);
    }
}

/* --- what the other instances say ------------------------------------------------- */

/* Another instance claims 'h': the newest claim wins. */
static void
claimed_elsewhere(ownership_t *o, struct holder *h, const char *inst, int64_t since,
                  bool retained)
{
    device_t *dev = devices_find(o->gw->devices, h->id);
    bool was_ours = held_here(o, h);
    int depth = h->depth;
    size_t waited;

    if (was_ours && since <= h->since_ms)
        return;     /* ours is newer: it reaches that instance too */
    snprintf(h->instance, sizeof(h->instance), "%s", inst);
    h->since_ms = since;
    h->claim_pending = false;
    if (dev) {
        log_notice("device %s: instance %s holds it now; handing over", h->id, inst);
        commands_hand_over(o->gw->commands, dev, inst);
        devices_hand_over(dev);
        o->gw->stats.devices_handed_over++;
    }
    waited = commands_hand_over_waiting(o->gw->commands, h->id, inst);
    /* Ours, or perhaps left in the session the broker kept from before a
     * restart: certainly so when commands for it reached us and waited
     * for its holder (RabbitMQ keeps retained claims per node, so the
     * claim may come to us only as a live message queued in that
     * session). */
    if (was_ours || depth)
        unsubscribe_device(o, h, depth ? depth : 1);
    else if (waited || (retained && mqtt_side_session_resumed(o->gw->mqtt)))
        drop_stale_subscription(o, h);
}

static void
on_owner(ownership_t *o, const char *id, const struct mosquitto_message *msg)
{
    struct holder *h;
    json_t *j;
    const char *inst = NULL;
    json_int_t since = 0;

    if (!topic_id_valid(id, strlen(id)))
        return;
    if (msg->payloadlen == 0) {
        /* Its holder let it go. */
        if ((h = holder_find(o, id)) && !held_here(o, h)) {
            HASH_DEL(o->by_id, h);
            free(h);
        }
        return;
    }
    j = json_loadb(msg->payload, (size_t)msg->payloadlen, 0, NULL);
    if (!j || json_unpack(j, "{s:s, s:I}", "instance", &inst, "since", &since) < 0 ||
        strlen(inst) > INSTANCE_MAX || !(h = holder_get(o, id))) {
        log_info("%s: not an owner record", msg->topic);
        json_decref(j);
        return;
    }
    if (strcmp(inst, o->self) != 0)
        claimed_elsewhere(o, h, inst, (int64_t)since, msg->retain);
    else if (!h->instance[0]) {
        /* Ours from before a restart: the device has yet to show up. */
        snprintf(h->instance, sizeof(h->instance), "%s", inst);
        h->since_ms = (int64_t)since;
    }
    json_decref(j);
}

static void
publish_availability(ownership_t *o, const char *id, const char *state)
{
    char topic[TOPIC_MAX];

    if (topic_build(topic, sizeof(topic), o->gw->cfg->mqtt.base_topic, id, NULL,
                    "availability") >= 0)
        mqtt_side_publish_now(o->gw->mqtt, topic, state, 1, true);
}

/* <base>/bridge/<inst>/state went "offline" (its will, or a clean stop
 * that could not say so per device). */
static void
on_instance_offline(ownership_t *o, const char *inst)
{
    struct holder *h, *tmp;
    device_t *dev;
    size_t marked = 0;

    HASH_ITER(hh, o->by_id, h, tmp) {
        if (strcmp(h->instance, inst) == 0 && !devices_find(o->gw->devices, h->id)) {
            publish_availability(o, h->id, "offline");
            marked++;
        } else if (held_here(o, h) && strcmp(h->prev, inst) == 0 &&
                   (dev = devices_find(o->gw->devices, h->id)) && device_online(dev)) {
            publish_availability(o, h->id, "online");
        }
    }
    log_notice("instance %s is offline: %zu of its devices marked offline", inst, marked);
}

bool
ownership_on_message(ownership_t *o, const struct mosquitto_message *msg)
{
    size_t n = strlen(o->owner_prefix), b = strlen(o->bridge_prefix);
    const char *inst, *slash;
    char name[INSTANCE_MAX + 1];

    if (strncmp(msg->topic, o->owner_prefix, n) == 0) {
        on_owner(o, msg->topic + n, msg);
        return true;
    }
    /* <base>/bridge/<instance>/state */
    if (strncmp(msg->topic, o->bridge_prefix, b) != 0)
        return false;
    inst = msg->topic + b;
    if (!(slash = strchr(inst, '/')) || strcmp(slash, "/state") != 0 ||
        (size_t)(slash - inst) > INSTANCE_MAX)
        return false;
    snprintf(name, sizeof(name), "%.*s", (int)(slash - inst), inst);
    /* Live changes only: a retained "offline" is old news. */
    if (strcmp(name, o->self) != 0 && !msg->retain &&
        msg->payloadlen == 7 && memcmp(msg->payload, "offline", 7) == 0)
        on_instance_offline(o, name);
    return true;
}

const char *
ownership_holder_elsewhere(ownership_t *o, const struct mosquitto_message *msg)
{
    char id[TOPIC_ID_MAX + 1], path[TOPIC_PATH_MAX + 1];
    enum topic_kind kind;
    struct holder *h;

    if (topic_parse_command(o->gw->cfg->mqtt.base_topic, msg->topic, id, sizeof(id),
                            path, sizeof(path), &kind) < 0 ||
        devices_find(o->gw->devices, id) || !(h = holder_find(o, id)) ||
        !h->instance[0] || held_here(o, h))
        return NULL;
    o->gw->stats.commands_not_ours++;
    /* It reached us through a subscription the broker kept in our session
     * from before a restart: the holder got it too, or will have it
     * forwarded by us, and every later command would come both ways. */
    drop_stale_subscription(o, h);
    return h->instance;
}

/* --- the device listener, lifecycle --------------------------------------------- */

void
ownership_device_event(void *arg, device_t *dev, enum device_event ev)
{
    ownership_t *o = arg;

    if (o->gw->stopping)
        return;
    switch (ev) {
    case DEVICE_AWAKE:
    case DEVICE_LIST_CHANGED:   /* 3.1.1: deeper paths, more filters */
        hold(o, dev);
        break;
    case DEVICE_FORGOTTEN:
        release(o, device_id(dev));
        break;
    default:
        break;
    }
}

ownership_t *
ownership_new(struct gw *gw)
{
    ownership_t *o = calloc(1, sizeof(*o));

    if (!o)
        return NULL;
    o->gw = gw;
    o->self = gw->cfg->mqtt.instance;
    topic_bridge(o->owner_prefix, sizeof(o->owner_prefix), gw->cfg->mqtt.base_topic,
                 "owner", "");
    topic_bridge(o->bridge_prefix, sizeof(o->bridge_prefix), gw->cfg->mqtt.base_topic,
                 NULL, "");
    return o;
}

void
ownership_free(ownership_t *o)
{
    struct holder *h, *tmp;

    if (!o)
        return;
    HASH_ITER(hh, o->by_id, h, tmp) {
        HASH_DEL(o->by_id, h);
        free(h);
    }
    forget_sub_waits(o);
    free(o);
}
