/*
 * ownership.h - several gateway instances on one broker (mqtt.instance):
 * which instance holds which device, told through the retained
 * <base>/bridge/owner/<id>, and the hand-over when a device re-appears on
 * another instance.  docs/SCALING.md has the whole picture.
 *
 * Layer: status
 */
#ifndef COAP2MQTT_OWNERSHIP_H
#define COAP2MQTT_OWNERSHIP_H

#include <stdbool.h>
#include <mosquitto.h>

#include "coap2mqtt/context.h"
#include "coap2mqtt/devices.h"

/* NULL on allocation failure.  Only made when mqtt.instance is set. */
ownership_t *ownership_new(struct gw *gw);
void ownership_free(ownership_t *o);

/* The device listener: a device that shows up here is claimed; one that
 * is forgotten or removed is let go. */
void ownership_device_event(void *arg, device_t *dev, enum device_event ev);
/* The MQTT side's SUBACK handler: a device's subscription holds, so its
 * claim may go out. */
void ownership_on_suback(void *arg, int mid);
/* A (re)connection: the subscriptions of the devices held here again. */
void ownership_on_connected(ownership_t *o);
/* Owner and instance state topics; true when 'msg' was one of them. */
bool ownership_on_message(ownership_t *o, const struct mosquitto_message *msg);
/* For a command on a device's own topic when another instance holds the
 * device (a subscription left from before a restart, or the moment of a
 * hand-over): that instance's name, to forward the command to (it drops
 * the copy if it took the command itself); NULL otherwise.  Valid until
 * the next call into this room. */
const char *ownership_holder_elsewhere(ownership_t *o, const struct mosquitto_message *msg);

#endif
