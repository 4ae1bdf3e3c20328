/*
 * status.h - what the gateway tells the broker about itself: retained
 * <base>/bridge/state (online; the will says offline), retained
 * <base>/<id>/availability, retained <base>/bridge/devices (debounced),
 * and <base>/bridge/stats every mqtt.stats_interval seconds.
 */
#ifndef COAP2MQTT_STATUS_H
#define COAP2MQTT_STATUS_H

#include "coap2mqtt/gateway.h"

struct device;

status_t *status_new(struct gw *gw);
void status_free(status_t *s);

/* After every (re)connect: re-publish all retained state. */
void status_on_connected(status_t *s);
/* A device's availability changed (publishes it, and the devices list). */
void status_device_changed(status_t *s, struct device *dev);
/* Only the devices list changed (resources, registration details). */
void status_devices_changed(status_t *s);
/* Graceful stop: every device offline, then bridge/state offline. */
void status_publish_offline(status_t *s);
/* The stats JSON document (new reference), also used by tests and -v. */
char *status_stats_json(status_t *s);

#endif
