/*
 * observe.h - the gateway's observations of device resources (RFC 7641):
 * GET Observe=0 over the device's own session, freshness of notifications
 * (section 3.4) so reordered or replayed ones are not republished,
 * re-registration when Max-Age plus a grace passes in silence, retries with
 * backoff when a device refuses, cancellation when it leaves.
 *
 * Layer: services
 */
#ifndef COAP2MQTT_OBSERVE_H
#define COAP2MQTT_OBSERVE_H

#include <stdbool.h>
#include <stdint.h>

#include "coap2mqtt/devices.h"

/* The device listener (devices_add_listener; arg unused): starts,
 * forgets and cancels observations as devices come and go. */
void observe_device_event(void *arg, device_t *dev, enum device_event ev);

/*
 * RFC 7641 section 3.4: is notification (v2 at t2 ms) newer than the last
 * accepted one (v1 at t1 ms)?  Pure; unit-tested.
 */
bool observe_is_fresh(uint32_t v1, uint64_t t1, uint32_t v2, uint64_t t2);

#endif
