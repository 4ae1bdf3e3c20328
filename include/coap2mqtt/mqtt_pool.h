/*
 * mqtt_pool.h - mqtt.connections broker connections as one: the primary
 * (mqtt_side.h: the will, the subscriptions, every state publish) and up
 * to 15 publish-only ones.  Readings are sharded over them by a stable
 * hash of the device id in their topic, so all of one device's readings
 * take the same connection, where MQTT keeps their order; each connection
 * has its own window (the broker's Receive Maximum counts per
 * connection).  With mqtt.connections = 1 it is the primary alone,
 * draining the outbound queue as it always did.
 *
 * Layer: transport
 */
#ifndef COAP2MQTT_MQTT_POOL_H
#define COAP2MQTT_MQTT_POOL_H

#include <stdbool.h>
#include <stddef.h>

#include "coap2mqtt/context.h"

/* Creates the connections (no network yet).  NULL on failure, logged. */
mqtt_pool_t *mqtt_pool_new(struct gw *gw);
/* The primary connection (the pool keeps it; valid until the free). */
mqtt_side_t *mqtt_pool_primary(const mqtt_pool_t *p);
/* First connection attempts; failures only schedule retries. */
void mqtt_pool_start(mqtt_pool_t *p);
/* Clean DISCONNECT on every connection; no reconnect afterwards. */
void mqtt_pool_disconnect(mqtt_pool_t *p);
/* Frees; readings not acknowledged are finished undelivered (they stay
 * in the spool for the next start). */
void mqtt_pool_free(mqtt_pool_t *p);

/* Something was queued: hand it on once the current batch is done. */
void mqtt_pool_kick(mqtt_pool_t *p);
/* Hands queued readings on to the connections, as far as they take them. */
void mqtt_pool_flush(mqtt_pool_t *p);

size_t mqtt_pool_size(const mqtt_pool_t *p);
/* How many connections are up; mqtt_pool_connected(): all of them. */
size_t mqtt_pool_up(const mqtt_pool_t *p);
bool mqtt_pool_connected(const mqtt_pool_t *p);
/* Connection i (0 = the primary), i < mqtt_pool_size(). */
const mqtt_side_t *mqtt_pool_connection(const mqtt_pool_t *p, size_t i);
/* Sums over the connections (mqtt_side_inflight, mqtt_side_held). */
size_t mqtt_pool_inflight(const mqtt_pool_t *p);
size_t mqtt_pool_held(const mqtt_pool_t *p);
/* Readings taken from the outbound queue and waiting for their
 * connection (0 with one connection). */
size_t mqtt_pool_queued(const mqtt_pool_t *p);
/* Nothing handed on waits for the broker on any connection, and nothing
 * waits for a connection (see mqtt_side_idle). */
bool mqtt_pool_idle(const mqtt_pool_t *p);

#endif
