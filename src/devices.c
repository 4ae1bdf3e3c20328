/*
 * devices.c - the registry of devices by identity (uthash), their session,
 * lifetime and availability.  A device is "online" while it holds a live
 * registration or, for push-only devices, while it has a session.  What
 * happens to a device is told to the rooms above through their listeners.
 * How much of the registry a device may take and when a gone one is
 * forgotten is devices_forget.c's.
 *
 * Layer: devices (calls base and the transport; calls up only through the
 * listeners registered with devices_add_listener)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coap2mqtt/log.h"
#include "coap2mqtt/transport.h"
#include "devices_internal.h"

#define REACK_FIRST_MS 1000    /* the ACK again, this long after the repeat */
#define REACK_AGAIN_MS 2000
#define REACK_TIMES    2

int
devices_add_listener(devices_t *d, device_listener_fn fn, void *arg)
{
    if (d->n_listeners == DEVICES_LISTENERS)
        return -1;
    d->listeners[d->n_listeners].fn = fn;
    d->listeners[d->n_listeners].arg = arg;
    d->n_listeners++;
    return 0;
}

void
devices__emit(struct device *dev, enum device_event ev)
{
    devices_t *d = dev->gw->devices;

    for (size_t i = 0; d && i < d->n_listeners; i++)
        d->listeners[i].fn(d->listeners[i].arg, dev, ev);
}

devices_t *
devices_new(struct gw *gw)
{
    devices_t *d = calloc(1, sizeof(*d));

    if (d)
        d->gw = gw;
    return d;
}

static void
free_links(struct device *dev)
{
    for (size_t i = 0; i < dev->n_res; i++) {
        free(dev->res[i].rt);
        free(dev->res[i].iface);
        dev->res[i].rt = dev->res[i].iface = NULL;
    }
}

/* --- records: added, freed ----------------------------------------------------- */

void
devices__free_one(devices_t *d, struct device *dev)
{
    devices__emit(dev, DEVICE_FREED);
    devices__idle_leave(dev);
    free_links(dev);
    loop_cancel_timer(d->gw->loop, dev->expiry_timer);
    loop_cancel_timer(d->gw->loop, dev->observe_timer);
    loop_cancel_timer(d->gw->loop, dev->reack_timer);
    if (dev->session)
        coap_session_set_app_data(dev->session, NULL);
    if (!dev->authenticated)
        d->n_unauth--;
    d->count--;
    free(dev->res);
    free(dev);
}

void
devices_free(devices_t *d)
{
    struct device *dev, *tmp;

    if (!d)
        return;
    HASH_ITER(hh, d->by_id, dev, tmp) {
        HASH_DEL(d->by_id, dev);
        devices__free_one(d, dev);
    }
    devices__forget_free(d);
    loop_cancel_timer(d->gw->loop, d->obs_pump_timer);
    free(d);
}

size_t
devices_observe_gets(const devices_t *d, size_t *waiting)
{
    *waiting = d->n_obs_waiting;
    return d->n_obs_in_flight;
}

device_t *
devices_find(devices_t *d, const char *id)
{
    struct device *dev;

    HASH_FIND_STR(d->by_id, id, dev);
    return dev;
}

size_t
devices_count(const devices_t *d)
{
    return d->count;
}

/* A new record, counted as unauthenticated until adopt_session() sees it
 * on DTLS. */
static struct device *
device_add(devices_t *d, const char *id, coap_session_t *session)
{
    struct device *dev;

    if (devices_room(d, id, session) != DEVICES_ROOM)
        return NULL;
    if (!(dev = calloc(1, sizeof(*dev))))
        return NULL;
    snprintf(dev->id, sizeof(dev->id), "%s", id);
    dev->gw = d->gw;
    HASH_ADD_STR(d->by_id, id, dev);
    d->count++;
    d->n_unauth++;
    return dev;
}

struct resource *
device_resource(struct device *dev, const char *path)
{
    for (size_t i = 0; i < dev->n_res; i++)
        if (strcmp(dev->res[i].path, path) == 0)
            return &dev->res[i];
    return NULL;
}

static void
set_online(struct device *dev, bool online)
{
    if (dev->online == online)
        return;
    dev->online = online;
    log_info("device %s %s", dev->id, online ? "online" : "offline");
    if (online)
        devices__idle_leave(dev);
    devices__emit(dev, DEVICE_AVAILABILITY);
    if (!online)
        devices__idle_enter(dev);
}

/* Takes 'session' as the device's current one; the previous one (a reboot,
 * a new port after deep sleep) is retired: nothing of ours uses it again.
 * When the device proved its identity on the new one (DTLS), what we
 * still had queued on the old one is dropped (transport_session_end);
 * a plain CoAP session names its device by what it says and idles out. */
static bool
adopt_session(struct device *dev, coap_session_t *session)
{
    if (dev->session == session)
        return false;
    if (dev->session) {
        coap_session_t *old = dev->session;

        log_info("device %s: new session, retiring the previous one", dev->id);
        coap_session_set_app_data(old, NULL);
        devices__emit(dev, DEVICE_SESSION_LOST);
        if (!devices__plain(session) && !devices__plain(old))
            transport_session_end(dev->gw->coap, old);
    }
    dev->session = session;
    coap_session_set_app_data(session, dev);
    devices__idle_leave(dev);
    if (!devices__plain(session))
        devices__own_id(dev->gw->devices, dev);
    /* Message IDs start over on a new session. */
    memset(&dev->pushes, 0, sizeof(dev->pushes));
    memset(&dev->responses, 0, sizeof(dev->responses));
    loop_cancel_timer(dev->gw->loop, dev->reack_timer);
    dev->reack_timer = 0;
    return true;
}

static void
observe_now(loop_t *loop, void *arg)
{
    struct device *dev = arg;

    (void)loop;
    dev->observe_timer = 0;
    devices__emit(dev, DEVICE_OBSERVE);
}

/* Observations start after the current handler returned, so the device
 * sees its 2.01/2.04 before our GETs. */
static void
schedule_observe(struct device *dev)
{
    if (!dev->observe_timer)
        dev->observe_timer = loop_add_timer(dev->gw->loop, 0, observe_now, dev);
}

static void
lifetime_expired(loop_t *loop, void *arg)
{
    struct device *dev = arg;

    (void)loop;
    dev->expiry_timer = 0;
    dev->registered = false;
    dev->gw->stats.expirations++;
    log_info("device %s: registration lifetime (%u s) expired", dev->id,
             dev->lifetime);
    devices__emit(dev, DEVICE_UNOBSERVE);
    set_online(dev, false);
}

static void
arm_lifetime(struct device *dev, uint32_t lifetime)
{
    dev->lifetime = lifetime;
    loop_cancel_timer(dev->gw->loop, dev->expiry_timer);
    dev->expiry_timer = 0;
    if (!lifetime)          /* dialled: there while its session is */
        return;
    dev->expiry_timer = loop_add_timer(dev->gw->loop, (uint64_t)lifetime * 1000,
                                       lifetime_expired, dev);
}

/* The same resources as now, in the same order, with the same attributes. */
static bool
links_unchanged(const struct device *dev, const struct lf_link *links, size_t n)
{
    if (n > LINKFORMAT_MAX_LINKS)
        n = LINKFORMAT_MAX_LINKS;
    if (n != dev->n_res)
        return false;
    for (size_t i = 0; i < n; i++) {
        const struct resource *r = &dev->res[i];

        if (strcmp(r->path, links[i].path) != 0 || r->obs != links[i].obs ||
            r->ct != links[i].ct || strcmp(r->rt ? r->rt : "", links[i].rt) != 0 ||
            strcmp(r->iface ? r->iface : "", links[i].iface) != 0)
            return false;
    }
    return true;
}

/*
 * A registration that lists what the device already has keeps the
 * observations (their tokens, their pending GETs): a refresh, or a POST
 * retransmitted because our 2.01 got lost, renews them instead of
 * cancelling them and queueing new GETs behind the old ones.
 */
static void
set_links(struct device *dev, const struct lf_link *links, size_t n)
{
    if (links_unchanged(dev, links, n))
        return;
    devices__emit(dev, DEVICE_UNOBSERVE);
    /* Nothing refers to the old resources now (their observations ended
     * with their tokens and timers). */
    free_links(dev);
    free(dev->res);
    dev->res = NULL;
    dev->n_res = 0;
    if (n > LINKFORMAT_MAX_LINKS)
        n = LINKFORMAT_MAX_LINKS;
    if (n && !(dev->res = calloc(n, sizeof(*dev->res)))) {
        log_warnx("device %s: out of memory: its %zu resources are not kept",
                  dev->id, n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        struct resource *r = &dev->res[dev->n_res++];

        r->dev = dev;
        snprintf(r->path, sizeof(r->path), "%s", links[i].path);
        r->obs = links[i].obs;
        r->ct = links[i].ct;
        /* Without memory the attribute is left out: it only describes. */
        r->rt = links[i].rt[0] ? strdup(links[i].rt) : NULL;
        r->iface = links[i].iface[0] ? strdup(links[i].iface) : NULL;
    }
}

device_t *
devices_register(devices_t *d, const char *id, coap_session_t *session,
                 uint32_t lifetime, const struct lf_link *links, size_t n_links)
{
    struct device *dev = devices_find(d, id);

    if (!dev && !(dev = device_add(d, id, session)))
        return NULL;
    adopt_session(dev, session);
    set_links(dev, links, n_links);
    dev->registered = true;
    dev->registered_at = dev->last_seen = loop_wall_s();
    arm_lifetime(dev, lifetime);
    log_info("device %s registered: %zu resources, lifetime %u s", id,
             dev->n_res, lifetime);
    schedule_observe(dev);
    set_online(dev, true);
    devices__emit(dev, DEVICE_LIST_CHANGED);
    devices__emit(dev, DEVICE_AWAKE);
    return dev;
}

void
devices_refresh(device_t *dev, coap_session_t *session, uint32_t lifetime,
                const struct lf_link *links, int n_links)
{
    bool new_session = adopt_session(dev, session);

    dev->last_seen = loop_wall_s();
    arm_lifetime(dev, lifetime);
    if (n_links >= 0)
        set_links(dev, links, (size_t)n_links);
    if (new_session || n_links >= 0)
        schedule_observe(dev);
    set_online(dev, true);
    devices__emit(dev, DEVICE_LIST_CHANGED);
    devices__emit(dev, DEVICE_AWAKE);
}

void
devices_deregister(device_t *dev)
{
    dev->registered = false;
    loop_cancel_timer(dev->gw->loop, dev->expiry_timer);
    dev->expiry_timer = 0;
    devices__emit(dev, DEVICE_UNOBSERVE);
    log_info("device %s deregistered", dev->id);
    set_online(dev, false);
}

void
devices_remove(device_t *dev)
{
    devices_t *d = dev->gw->devices;

    if (dev->registered)
        devices_deregister(dev);
    else
        devices__emit(dev, DEVICE_UNOBSERVE);
    set_online(dev, false);
    log_info("device %s removed", dev->id);
    /* As when forgotten: its retained topics are cleared, then it is freed
     * (devices__free_one counts it out). */
    devices__emit(dev, DEVICE_FORGOTTEN);
    HASH_DEL(d->by_id, dev);
    devices__emit(dev, DEVICE_LIST_CHANGED);
    devices__free_one(d, dev);
}

void
devices_hand_over(device_t *dev)
{
    devices_t *d = dev->gw->devices;

    dev->moved = true;
    log_info("device %s handed over", dev->id);
    devices__emit(dev, DEVICE_MOVED);
    HASH_DEL(d->by_id, dev);
    devices__free_one(d, dev);
}

device_t *
devices_seen(devices_t *d, const char *id, coap_session_t *session)
{
    struct device *dev = devices_find(d, id);
    bool new_session;

    if (!dev && !(dev = device_add(d, id, session)))
        return NULL;
    new_session = adopt_session(dev, session);
    dev->last_seen = loop_wall_s();
    if (new_session && dev->registered)
        schedule_observe(dev);
    if (dev->registered || new_session)
        set_online(dev, true);
    devices__emit(dev, DEVICE_AWAKE);
    return dev;
}

void
device_awake(device_t *dev)
{
    devices__emit(dev, DEVICE_AWAKE);
}

/* The device's session ends: nothing of ours refers to it afterwards. */
static void
let_go_session(struct device *dev)
{
    coap_session_set_app_data(dev->session, NULL);
    dev->session = NULL;
    loop_cancel_timer(dev->gw->loop, dev->reack_timer);
    dev->reack_timer = 0;
    devices__emit(dev, DEVICE_SESSION_LOST);
}

void
devices_session_gone(void *devices, coap_session_t *session)
{
    struct device *dev = coap_session_get_app_data(session);

    (void)devices;
    if (!dev || dev->session != session)
        return;
    let_go_session(dev);
    /* A push-only device has nothing else telling us it is there, and a
     * dialled one (no lifetime) is registered only while its session is. */
    if (dev->registered && !dev->lifetime) {
        dev->registered = false;
        devices__emit(dev, DEVICE_LIST_CHANGED);
    }
    if (!dev->registered)
        set_online(dev, false);
    devices__idle_enter(dev);
}

void
devices_session_established(void *devices, coap_session_t *session)
{
    devices_t *d = devices;
    char buf[TOPIC_ID_MAX + 1];
    const char *id = transport_identity(session, buf, sizeof(buf));
    struct device *dev = id ? devices_find(d, id) : NULL;
    char peer[64];

    /* Only a registered device: a push-only one is re-associated by its
     * next push, and an identity never seen is nobody yet. */
    if (!dev || !dev->registered || dev->session == session)
        return;
    d->gw->stats.sessions_reassociated++;
    log_info("device %s: back on a new session from %s, re-associated", dev->id,
             transport_peer(session, peer, sizeof(peer)));
    devices_seen(d, id, session);
}

void
devices_release_sessions(devices_t *d)
{
    struct device *dev, *tmp;

    if (!d)
        return;
    HASH_ITER(hh, d->by_id, dev, tmp)
        if (dev->session)
            let_go_session(dev);
}

/* --- the device session ------------------------------------------------------ */

coap_pdu_t *
device_request_new(device_t *dev, coap_pdu_type_t type, coap_pdu_code_t code,
                   const char *path, const struct transport_handler *h,
                   void *owner, uint64_t *token)
{
    if (!dev->session)
        return NULL;
    return transport_request_new(dev->gw->coap, dev->session, type, code, path,
                                 h, owner, token);
}

int
device_send(device_t *dev, coap_pdu_t *pdu, uint64_t token)
{
    return transport_send(dev->gw->coap, dev->session, pdu, token);
}

bool
device_token_live(device_t *dev, uint64_t token)
{
    return transport_token_live(dev->gw->coap, token, dev->session);
}

void
device_forget_token(device_t *dev, uint64_t token)
{
    transport_forget(dev->gw->coap, token);
}

void
device_cancel_observe(device_t *dev, uint64_t token)
{
    if (dev->session && token)
        transport_cancel_observe(dev->session, token);
}

bool
device_allow_request(device_t *dev, uint64_t now_ms)
{
    int rate = dev->gw->cfg->coap.max_request_rate;
    double burst = 2.0 * rate;

    if (rate <= 0)
        return true;
    if (!dev->tokens_ms) {
        dev->tokens = burst;
    } else {
        dev->tokens += (double)(now_ms - dev->tokens_ms) * rate / 1000.0;
        if (dev->tokens > burst)
            dev->tokens = burst;
    }
    dev->tokens_ms = now_ms ? now_ms : 1;
    if (dev->tokens < 1.0)
        return false;
    dev->tokens -= 1.0;
    return true;
}

/* RFC 7252 EXCHANGE_LIFETIME: a retransmission comes within 247 s. */
#define MID_LIFETIME_MS 247000

/* True if 'mid' is in the ring and recent enough to be a retransmission. */
static bool
mid_ring_has(const struct mid_ring *r, uint16_t mid, uint64_t now_ms)
{
    for (unsigned i = 0; i < DEVICE_RECENT_MIDS; i++)
        if (r->ms[i] && r->mid[i] == mid && now_ms - r->ms[i] < MID_LIFETIME_MS)
            return true;
    return false;
}

static void
mid_ring_add(struct mid_ring *r, uint16_t mid, uint64_t now_ms)
{
    r->mid[r->pos] = mid;
    r->ms[r->pos] = now_ms ? now_ms : 1;
    r->pos = (r->pos + 1) % DEVICE_RECENT_MIDS;
}

/* mid_ring_has(); otherwise remembers 'mid' and returns false. */
static bool
mid_ring_seen(struct mid_ring *r, uint16_t mid, uint64_t now_ms)
{
    if (mid_ring_has(r, mid, now_ms))
        return true;
    mid_ring_add(r, mid, now_ms);
    return false;
}

bool
device_duplicate_mid(device_t *dev, uint16_t mid, uint64_t now_ms)
{
    return mid_ring_has(&dev->pushes, mid, now_ms);
}

void
device_mid_taken(device_t *dev, uint16_t mid, uint64_t now_ms)
{
    if (!mid_ring_has(&dev->pushes, mid, now_ms))
        mid_ring_add(&dev->pushes, mid, now_ms);
}

static void
reack_fired(loop_t *loop, void *arg)
{
    struct device *dev = arg;

    dev->reack_timer = 0;
    if (!dev->session)
        return;
    transport_send_ack(dev->session, dev->reack_mid);
    dev->gw->stats.acks_repeated++;
    if (--dev->reack_left)
        dev->reack_timer = loop_add_timer(loop, REACK_AGAIN_MS, reack_fired, dev);
}

/*
 * A CON response (a notification) came a second time: the device missed
 * our ACK.  libcoap acknowledges the retransmission, and that ACK can be
 * lost too; meanwhile the device holds back every other CON (NSTART = 1),
 * and its next retransmission comes only after twice the last wait (4,
 * 8, 16 s ...).  At 20 % loss that stall, not the network, kept
 * observations silent for 20-90 s.  So the same empty ACK goes out again
 * after 1 s and 3 s: two datagrams of 4 bytes, and only for a device
 * that has shown it lost one.  A device that already has the ACK ignores
 * a second one (RFC 7252 4.5).
 */
void
devices_con_response_seen(coap_session_t *session, const coap_pdu_t *rcvd)
{
    struct device *dev = coap_session_get_app_data(session);
    uint16_t mid = (uint16_t)coap_pdu_get_mid(rcvd);

    if (coap_pdu_get_type(rcvd) != COAP_MESSAGE_CON || !dev ||
        !mid_ring_seen(&dev->responses, mid, loop_now_ms(dev->gw->loop)))
        return;
    loop_cancel_timer(dev->gw->loop, dev->reack_timer);
    dev->reack_mid = mid;
    dev->reack_left = REACK_TIMES;
    dev->reack_timer = loop_add_timer(dev->gw->loop, REACK_FIRST_MS, reack_fired, dev);
}

size_t
device_links(const device_t *dev, struct lf_link *out, size_t max)
{
    size_t i;

    for (i = 0; i < dev->n_res && i < max; i++) {
        const struct resource *r = &dev->res[i];

        memset(&out[i], 0, sizeof(out[i]));
        snprintf(out[i].path, sizeof(out[i].path), "%s", r->path);
        out[i].obs = r->obs;
        out[i].ct = r->ct;
        snprintf(out[i].rt, sizeof(out[i].rt), "%s", r->rt ? r->rt : "");
        snprintf(out[i].iface, sizeof(out[i].iface), "%s", r->iface ? r->iface : "");
    }
    return i;
}

const char *
device_id(const device_t *dev)
{
    return dev->id;
}

coap_session_t *
device_session(const device_t *dev)
{
    return dev->session;
}

bool
device_online(const device_t *dev)
{
    return dev->online;
}

bool
device_moved(const device_t *dev)
{
    return dev->moved;
}

int
device_path_depth(const device_t *dev)
{
    int deepest = 1;

    for (size_t i = 0; i < dev->n_res; i++) {
        int depth = 1;

        for (const char *p = dev->res[i].path; *p; p++)
            depth += *p == '/';
        if (depth > deepest)
            deepest = depth;
    }
    return deepest;
}

bool
device_authenticated(const device_t *dev)
{
    return dev->authenticated;
}

bool
device_registered(const device_t *dev)
{
    return dev->registered;
}

uint32_t
device_lifetime(const device_t *dev)
{
    return dev->lifetime;
}

void
devices_foreach(devices_t *d, void (*fn)(device_t *dev, void *arg), void *arg)
{
    struct device *dev, *tmp;

    HASH_ITER(hh, d->by_id, dev, tmp)
        fn(dev, arg);
}

json_t *
device_to_json(const device_t *dev)
{
    json_t *o = json_object();
    json_t *res = json_array();

    for (size_t i = 0; i < dev->n_res; i++) {
        const struct resource *r = &dev->res[i];
        json_t *jr = json_object();

        json_object_set_new(jr, "path", json_string(r->path));
        json_object_set_new(jr, "obs", json_boolean(r->obs));
        if (r->ct >= 0)
            json_object_set_new(jr, "ct", json_integer(r->ct));
        if (r->rt)
            json_object_set_new(jr, "rt", json_string(r->rt));
        if (r->iface)
            json_object_set_new(jr, "if", json_string(r->iface));
        if (r->obs)
            json_object_set_new(jr, "observing", json_boolean(r->active));
        json_array_append_new(res, jr);
    }
    json_object_set_new(o, "id", json_string(dev->id));
    json_object_set_new(o, "online", json_boolean(dev->online));
    json_object_set_new(o, "registered", json_boolean(dev->registered));
    json_object_set_new(o, "lifetime", json_integer(dev->lifetime));
    json_object_set_new(o, "last_seen", json_integer(dev->last_seen));
    json_object_set_new(o, "resources", res);
    return o;
}

json_t *
devices_to_json(devices_t *d)
{
    json_t *list = json_array();
    struct device *dev, *tmp;

    if (!list)
        return NULL;
    HASH_ITER(hh, d->by_id, dev, tmp)
        json_array_append_new(list, device_to_json(dev));
    return list;
}

void
devices_shutdown(devices_t *d)
{
    struct device *dev, *tmp;

    HASH_ITER(hh, d->by_id, dev, tmp) {
        devices__emit(dev, DEVICE_STOPPING);
        dev->online = false;
    }
}
