/*
 * devices.h - the device registry and the device session: identity,
 * current session, registration lifetime, declared resources and
 * availability.  A device is known by its authenticated identity.  A
 * device that left keeps its entry, offline, so its topics and queued
 * commands stay meaningful, until it has been gone (offline, no session,
 * no command waiting for it) for rd.forget_after: then it is forgotten
 * (DEVICE_FORGOTTEN) and its record freed.  Plain CoAP (no
 * authentication) holds at most rd.max_unauthenticated entries.
 *
 * The rooms above (observations, commands, status) never touch a device's
 * CoAP session: they send through device_request_new()/device_send(),
 * which hide whether the device dialled in (a server-side session, today)
 * or was dialled (a client session: where dial-out plugs in).  What
 * happens to a device reaches them as events (devices_add_listener).
 *
 * Layer: devices
 */
#ifndef COAP2MQTT_DEVICES_H
#define COAP2MQTT_DEVICES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <coap3/coap.h>
#include <jansson.h>

#include "coap2mqtt/context.h"
#include "coap2mqtt/linkformat.h"
#include "coap2mqtt/transport.h"

typedef struct device device_t;

/* What happens to a device, in the order the rooms above must hear it. */
enum device_event {
    DEVICE_SESSION_LOST,  /* its session ended or was replaced: requests in
                           * flight on it are gone (tokens forgotten) */
    DEVICE_OBSERVE,       /* (re)start observing its observable resources */
    DEVICE_UNOBSERVE,     /* stop observing and tell the device (left,
                           * expired, or its resources are replaced) */
    DEVICE_AWAKE,         /* it showed up: deliver what waits for it */
    DEVICE_AVAILABILITY,  /* device_online() changed */
    DEVICE_LIST_CHANGED,  /* registration details changed (bridge/devices) */
    DEVICE_STOPPING,      /* graceful stop: cancel on the wire, answer
                           * whatever waits */
    DEVICE_FORGOTTEN,     /* gone for rd.forget_after: the record is freed
                           * next (DEVICE_FREED), not at a stop */
    DEVICE_MOVED,         /* another gateway instance holds it now: hand
                           * on what waits for it, say nothing on the
                           * broker; the record is freed next */
    DEVICE_FREED,         /* the record is about to be freed */
};

/* Whether a new device fits (devices_room). */
enum devices_room {
    DEVICES_ROOM,                 /* known already, or there is room */
    DEVICES_FULL,                 /* rd.max_devices */
    DEVICES_FULL_UNAUTHENTICATED, /* plain CoAP's share, rd.max_unauthenticated */
};

typedef void (*device_listener_fn)(void *arg, device_t *dev, enum device_event ev);

devices_t *devices_new(struct gw *gw);
/* Frees every device (DEVICE_FREED first; nothing is sent). */
void devices_free(devices_t *d);
/* Listeners are called in the order they were added.  -1 when full. */
int devices_add_listener(devices_t *d, device_listener_fn fn, void *arg);

device_t *devices_find(devices_t *d, const char *id);
size_t devices_count(const devices_t *d);
/* Records of ids never seen on a DTLS session (plain CoAP). */
size_t devices_count_unauthenticated(const devices_t *d);
/* CON observe GETs unanswered now, and those waiting for a place in the
 * gateway-wide window (observe.c). */
size_t devices_observe_gets(const devices_t *d, size_t *waiting);
/* Whether 'id' arriving on 'session' would fit in the registry. */
enum devices_room devices_room(devices_t *d, const char *id, coap_session_t *session);
/* Whether 'id' has been on a DTLS session since the gateway started, its
 * record forgotten or not: plain CoAP may never claim it. */
bool devices_id_authenticated(devices_t *d, const char *id);

/*
 * The devices list: 'id' is dialled out to, and no device may register or
 * push under it (intake answers 4.03), nor is its record forgotten.
 * -1 when out of memory.
 */
int devices_reserve(devices_t *d, const char *id);
bool devices_reserved(devices_t *d, const char *id);
/* No longer dialled out to (a reload): the id is free again, and its
 * record, if gone, starts its rd.forget_after countdown. */
void devices_release(devices_t *d, const char *id);

/*
 * Registers (or re-registers) 'id' on 'session' with a lifetime and the
 * declared links (lifetime 0: a device the gateway dialled, registered
 * while that session lasts): replaces the resources, (re)starts the observations,
 * marks the device online, delivers queued commands.  NULL when the
 * registry has no room for it (devices_room) or memory ran out.
 */
device_t *devices_register(devices_t *d, const char *id, coap_session_t *session,
                           uint32_t lifetime, const struct lf_link *links,
                           size_t n_links);
/* POST /rd/<id>: new lifetime, optionally new links (n_links < 0: keep). */
void devices_refresh(device_t *dev, coap_session_t *session, uint32_t lifetime,
                     const struct lf_link *links, int n_links);
/* DELETE /rd/<id>: cancels observations, marks offline. */
void devices_deregister(device_t *dev);
/*
 * Forgets the device (the request API's device/remove): its observations
 * are cancelled on the wire, it goes offline, and the record is freed
 * (DEVICE_FREED: whatever still waits for it is answered).  Its session,
 * if any, stays open: should the device come back, it is a new device
 * that registers (or pushes) again.  'dev' is invalid afterwards.
 */
void devices_remove(device_t *dev);
/*
 * Another gateway instance holds the device now (ownership.c): DEVICE_MOVED
 * (its commands are handed on), then the record is freed without a word on
 * the broker and without cancelling anything on the wire: the device talks
 * to the other instance, which publishes its availability and topics.  The
 * session stays for libcoap to idle out.  'dev' is invalid afterwards.
 */
void devices_hand_over(device_t *dev);

/*
 * A device showed up on 'session' (push, notification, refresh): adopts the
 * session if it is new (re-observing everything), updates last seen,
 * delivers queued commands.  For a push from an unknown identity, creates
 * an unregistered entry; NULL only when the registry is full.
 */
device_t *devices_seen(devices_t *d, const char *id, coap_session_t *session);
/* The device answered on its session (a notification, a command's
 * answer): last seen now, and what waits for it is delivered. */
void device_awake(device_t *dev);

/* The transport's session listener: libcoap is about to free 'session'. */
void devices_session_gone(void *devices, coap_session_t *session);
/* A new DTLS session established (transport_session_new_fn): a registered
 * device whose identity it carries is moved onto it at once, with its
 * observations re-established and its queued commands delivered there,
 * not when its old state times out or it next sends a request (a device
 * behind a NAT that rebinds, or one that slept through its session). */
void devices_session_established(void *devices, coap_session_t *session);
/*
 * The transport is about to free every session: each device lets go of its
 * own (DEVICE_SESSION_LOST), with no availability change announced.
 * libcoap 4.3.1 frees plain-CoAP sessions with its context and tells
 * nobody (DTLS ones end with an event), so without this the records would
 * point into freed memory, and devices_free() would write into it.
 */
void devices_release_sessions(devices_t *d);

/* --- the device session: requests to the device, however it is reached --- */

/* A request on the device's current session (see transport_request_new);
 * NULL when it has none or on allocation failure. */
coap_pdu_t *device_request_new(device_t *dev, coap_pdu_type_t type,
                               coap_pdu_code_t code, const char *path,
                               const struct transport_handler *h, void *owner,
                               uint64_t *token);
/* Sends it; -1 (token forgotten) on failure. */
int device_send(device_t *dev, coap_pdu_t *pdu, uint64_t token);
/* Whether 'token' still routes answers from the device's current session. */
bool device_token_live(device_t *dev, uint64_t token);
/* Stops routing answers for 'token' (0 is ignored). */
void device_forget_token(device_t *dev, uint64_t token);
/* RFC 7641 3.6 deregistration of observation 'token', if it has a session. */
void device_cancel_observe(device_t *dev, uint64_t token);
/* A CON answer from the device was handled (and is being acknowledged):
 * when it is a repeat (the device missed our ACK), the ACK is sent again
 * twice, 1 s apart. */
void devices_con_response_seen(coap_session_t *session, const coap_pdu_t *rcvd);

const char *device_id(const device_t *dev);
/* Copies up to 'max' of the links the device declared when it registered
 * (path, obs, ct, rt, if), in its order; returns how many. */
size_t device_links(const device_t *dev, struct lf_link *out, size_t max);
coap_session_t *device_session(const device_t *dev);
bool device_online(const device_t *dev);
/* True from DEVICE_MOVED on: the record goes because another instance
 * holds the device, not because it left. */
bool device_moved(const device_t *dev);
/* Levels in the deepest of its resource paths ("a/b" is 2); 1 without any. */
int device_path_depth(const device_t *dev);
bool device_registered(const device_t *dev);
/* Whether the id has been used on a DTLS session (an authenticated PSK
 * identity or certificate) since the gateway started: plain CoAP may
 * never claim it. */
bool device_authenticated(const device_t *dev);
/* Token bucket of coap.max_request_rate (burst: twice the rate). */
bool device_allow_request(device_t *dev, uint64_t now_ms);
/* True if a CON push with this Message ID was taken on the current session
 * within EXCHANGE_LIFETIME (device_mid_taken): a repeat to answer again,
 * not to take twice.  A push that was refused is never remembered, so its
 * repeat is judged again. */
bool device_duplicate_mid(device_t *dev, uint16_t mid, uint64_t now_ms);
/* The CON push with this Message ID was taken (the reading is safe). */
void device_mid_taken(device_t *dev, uint16_t mid, uint64_t now_ms);
uint32_t device_lifetime(const device_t *dev);

/* Calls fn for every device, in no particular order. */
void devices_foreach(devices_t *d, void (*fn)(device_t *dev, void *arg), void *arg);

/* JSON array for <base>/bridge/devices (new reference). */
json_t *devices_to_json(devices_t *d);
/* One device's object in it, also <base>/bridge/devices/<id> (new reference). */
json_t *device_to_json(const device_t *dev);

/* Graceful stop: DEVICE_STOPPING for every device, all marked offline. */
void devices_shutdown(devices_t *d);

#endif
