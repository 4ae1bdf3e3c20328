/*
 * mqtt_side.h - the libmosquitto client, driven by our loop (no mosquitto
 * thread): connect with backoff and jitter, MQTT v5 with a persistent
 * session, the bridge/state will, the command subscription (No Local, so
 * the gateway never hears its own publications), and the drain of the
 * outbound queue with QoS 1 PUBACK tracking.  It knows nothing of
 * commands or status: what arrives, and each new connection, are told
 * through the callbacks registered with mqtt_side_set_handlers().
 *
 * Layer: transport
 */
#ifndef COAP2MQTT_MQTT_SIDE_H
#define COAP2MQTT_MQTT_SIDE_H

#include <stdbool.h>
#include <stddef.h>

#include <mosquitto.h>

#include "coap2mqtt/context.h"

/* A message arrived on a subscribed topic. */
typedef void (*mqtt_message_fn)(void *arg, const struct mosquitto_message *msg,
                                const mosquitto_property *props);
/* A (re)connection succeeded: retained state is to be published again. */
typedef void (*mqtt_connected_fn)(void *arg);

/* The broker acknowledged the SUBSCRIBE with packet id 'mid'. */
typedef void (*mqtt_suback_fn)(void *arg, int mid);

/*
 * Creates connection 'index' of mqtt.connections (no network yet): 0 is
 * the primary, with client id mqtt.client_id, the bridge/state will and
 * the subscriptions; index k > 0 only publishes readings, with client id
 * "<client_id>-<k+1>" and no will.  NULL on failure, logged.
 */
mqtt_side_t *mqtt_side_new(struct gw *gw, int index);

/* Asked for more readings: the drain's source runs low. */
typedef void (*mqtt_refill_fn)(void *arg);
/*
 * Where the drain takes its readings from (mqtt_pool.c): 'src', and
 * fn(arg) is called when it holds 'below' messages or fewer.  Without
 * this call: gw->outq, refilled from the spool's disk backlog when empty.
 */
void mqtt_side_set_source(mqtt_side_t *m, outq_t *src, size_t below,
                          mqtt_refill_fn fn, void *arg);
/* Who hears messages and connections (either may be NULL). */
void mqtt_side_set_handlers(mqtt_side_t *m, mqtt_message_fn on_message, void *message_arg,
                            mqtt_connected_fn on_connected, void *connected_arg);
/* One more topic filter to subscribe to at every connection (No Local,
 * QoS 1), besides <base>/#; its messages go to the same on_message.  At
 * most 4; -1 when full or out of memory. */
int mqtt_side_add_subscription(mqtt_side_t *m, const char *topic);

/*
 * Subscriptions of their own (mqtt.instance: one device's command topics):
 * sent now, QoS 1, No Local with MQTT v5.  Not repeated at a reconnect:
 * the broker keeps them in our session, and the caller renews them from
 * its connected callback when it may not have.  The packet id (> 0), or
 * -1 when not connected or refused by libmosquitto.
 */
int mqtt_side_subscribe(mqtt_side_t *m, int n, char *const *filters);
int mqtt_side_unsubscribe(mqtt_side_t *m, int n, char *const *filters);
void mqtt_side_set_suback_handler(mqtt_side_t *m, mqtt_suback_fn fn, void *arg);
/* Whether the current connection speaks MQTT 3.1.1 (no properties). */
bool mqtt_side_v311(const mqtt_side_t *m);
/* Whether No Local keeps every reading the gateway publishes away from
 * its subscriptions: MQTT v5 and one connection (No Local spares only the
 * connection's own publications; mqtt.connections > 1 publishes readings
 * on the others).  Otherwise subscribe to command topics only. */
bool mqtt_side_no_local(const mqtt_side_t *m);
/* Whether the broker kept our session at the last connect. */
bool mqtt_side_session_resumed(const mqtt_side_t *m);
/* A QoS 1 publish with MQTT v5 properties (left out on 3.1.1), outside
 * the queue and the spool.  -1 when not connected. */
int mqtt_side_publish_props(mqtt_side_t *m, const char *topic, const void *payload,
                            size_t len, const mosquitto_property *props);

/* First connection attempt; failures only schedule retries.  Never fails. */
void mqtt_side_start(mqtt_side_t *m);
void mqtt_side_free(mqtt_side_t *m);

bool mqtt_side_connected(const mqtt_side_t *m);
/* Messages handed to libmosquitto and not yet acknowledged. */
size_t mqtt_side_inflight(const mqtt_side_t *m);
/* The most that were at once since the start. */
size_t mqtt_side_inflight_peak(const mqtt_side_t *m);
/* Messages the broker refused, waiting to be published again. */
size_t mqtt_side_held(const mqtt_side_t *m);

/* Moves queued messages from gw->outq to the broker, as far as allowed. */
void mqtt_side_flush(mqtt_side_t *m);
/*
 * Something was queued: flush once the current batch of work is done, so
 * that a burst of readings leaves in a few large TCP writes instead of one
 * per reading (each write woke the broker: 69 % of the CPU was kernel).
 */
void mqtt_side_kick(mqtt_side_t *m);

/*
 * Publishes gateway state directly, bypassing the queue: state is
 * re-published in full after every reconnect, so while disconnected this
 * just returns -1.
 */
int mqtt_side_publish_now(mqtt_side_t *m, const char *topic,
                          const char *payload, int qos, bool retain);

/* Nothing left to hand to or hear back from the broker (or not connected):
 * no queued message in flight, no state publish unacknowledged, no bytes
 * waiting in libmosquitto.  Refused messages waiting for their retry do
 * not count: at a stop they stay in the spool for the next start. */
bool mqtt_side_idle(const mqtt_side_t *m);

/* Clean DISCONNECT (the will is not sent).  No reconnect afterwards. */
void mqtt_side_disconnect(mqtt_side_t *m);

#endif
