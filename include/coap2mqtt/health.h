/*
 * health.h - state_dir/health: the gateway's own view of its health, for a
 * container's HEALTHCHECK (docker/Dockerfile) and for anyone on the box.
 *
 * Layer: status
 */
#ifndef COAP2MQTT_HEALTH_H
#define COAP2MQTT_HEALTH_H

#include "coap2mqtt/context.h"


/* Rewrites the file every HEALTH_INTERVAL_MS (10 s) from the event loop,
 * the first time at once.  NULL on allocation failure. */
health_t *health_new(struct gw *gw);
/* Rewrites it now (the broker has just connected), then every 10 s again.
 * NULL: nothing (the gateway is being built or taken apart). */
void health_update(health_t *h);
/* Removes the file: a stopped gateway has no health to report. */
void health_free(health_t *h);

#endif
