/*
 * homeassistant.h - Home Assistant MQTT discovery (homeassistant.enabled):
 * each resource a device declared at registration becomes an entity from
 * its link attributes (rt, if, obs, ct): a reading a sensor, a writable
 * resource a number or a switch whose command topic is the resource's
 * <path>/set.  Configs are retained under <prefix>/<component>/<node>/
 * <object>/config, published again after every connection and whenever
 * Home Assistant announces itself ("online" on <prefix>/status), and
 * removed when the device's registration ends.  zigbee2mqtt's behaviour
 * is the model; docs/CONFIG.md ("homeassistant") has the rules.
 *
 * Layer: status
 */
#ifndef COAP2MQTT_HOMEASSISTANT_H
#define COAP2MQTT_HOMEASSISTANT_H

#include <stdbool.h>
#include <mosquitto.h>

#include "coap2mqtt/context.h"
#include "coap2mqtt/devices.h"

/* Made only when homeassistant.enabled: subscribes to <prefix>/status.
 * NULL on allocation failure. */
homeassistant_t *homeassistant_new(struct gw *gw);
void homeassistant_free(homeassistant_t *ha);

/* The device listener (arg: the homeassistant_t): a device's entities
 * follow its registration. */
void homeassistant_device_event(void *arg, device_t *dev, enum device_event ev);

/* After every (re)connect: every config published again (and removals
 * that could not be sent while disconnected). */
void homeassistant_on_connected(homeassistant_t *ha);

/* A message from the broker: true if it was Home Assistant's status topic
 * (and taken care of), false if it is somebody else's. */
bool homeassistant_on_message(homeassistant_t *ha, const struct mosquitto_message *msg);

#endif
