/*
 * devices.h - the device registry: identity, current DTLS session,
 * registration lifetime, declared resources and availability.  A device is
 * known by its authenticated identity; its record lives until the gateway
 * stops (a device that left keeps its entry, offline, so its topics and
 * queued commands stay meaningful).
 */
#ifndef COAP2MQTT_DEVICES_H
#define COAP2MQTT_DEVICES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <coap3/coap.h>
#include <jansson.h>

#include "coap2mqtt/gateway.h"
#include "coap2mqtt/linkformat.h"

typedef struct device device_t;

devices_t *devices_new(struct gw *gw);
/* Frees every device (cancels nothing on the network: see devices_shutdown). */
void devices_free(devices_t *d);

device_t *devices_find(devices_t *d, const char *id);
size_t devices_count(const devices_t *d);

/*
 * Registers (or re-registers) 'id' on 'session' with a lifetime and the
 * declared links: replaces the resources, (re)starts the observations,
 * marks the device online, delivers queued commands.  NULL when the
 * registry is full (rd.max_devices).
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
 * A device showed up on 'session' (push, notification, refresh): adopts the
 * session if it is new (re-observing everything), updates last seen,
 * delivers queued commands.  For a push from an unknown identity, creates
 * an unregistered entry; NULL only when the registry is full.
 */
device_t *devices_seen(devices_t *d, const char *id, coap_session_t *session);

/* libcoap is about to free 'session': forget it wherever it is used. */
void devices_session_gone(devices_t *d, coap_session_t *session);

const char *device_id(const device_t *dev);
coap_session_t *device_session(const device_t *dev);
bool device_online(const device_t *dev);
bool device_registered(const device_t *dev);
/* Token bucket of coap.max_request_rate (burst: twice the rate). */
bool device_allow_request(device_t *dev, uint64_t now_ms);
/* True if a CON with this Message ID came on the current session within
 * EXCHANGE_LIFETIME; otherwise remembers it and returns false. */
bool device_duplicate_mid(device_t *dev, uint16_t mid, uint64_t now_ms);
/* A CON response from the device was acknowledged; when it is a repeat
 * (the device missed our ACK), the ACK is sent again twice, 1 s apart. */
void device_con_response_seen(device_t *dev, uint16_t mid, uint64_t now_ms);
uint32_t device_lifetime(const device_t *dev);

/* Calls fn for every device, in no particular order. */
void devices_foreach(devices_t *d, void (*fn)(device_t *dev, void *arg), void *arg);

/* JSON array for <base>/bridge/devices (new reference). */
json_t *devices_to_json(devices_t *d);

/* Graceful stop: cancel all observations on the wire. */
void devices_shutdown(devices_t *d);

#endif
