/*
 * status.h - what the gateway tells the broker about itself: retained
 * <base>/bridge/state (online; the will says offline), retained
 * <base>/<id>/availability, retained <base>/bridge/devices (debounced),
 * and <base>/bridge/stats every mqtt.stats_interval seconds.
 *
 * Layer: status
 */
#ifndef COAP2MQTT_STATUS_H
#define COAP2MQTT_STATUS_H

#include "coap2mqtt/context.h"
#include "coap2mqtt/devices.h"

status_t *status_new(struct gw *gw);
void status_free(status_t *s);

/* The MQTT side's connected callback (arg: the status_t): after every
 * (re)connect, re-publish all retained state. */
void status_on_connected(void *arg);
/* The device listener (arg: the status_t): availability and the devices
 * list follow the devices. */
void status_device_event(void *arg, device_t *dev, enum device_event ev);
/* Graceful stop: every device offline, then bridge/state offline. */
void status_publish_offline(status_t *s);
/* Reload: mqtt.stats_interval changed; the next bridge/stats comes one new
 * interval from now (none when it is 0). */
void status_restart_stats(status_t *s);

/* The stats JSON document (new reference), also used by tests and -v. */
char *status_stats_json(status_t *s);

#endif
