/*
 * mqtt_side_internal.h - the MQTT side's state, shared by its files and by
 * nobody else (as transport_internal.h does for the transport):
 *
 *   mqtt_side.c          lifecycle, configuration, TLS, connect and
 *                        reconnect with backoff, the socket in the loop,
 *                        the connect/disconnect/message/log callbacks,
 *                        the accessors
 *   mqtt_side_publish.c  the outbound drain: publishing, the in-flight
 *                        table and PUBACKs, the window from Receive
 *                        Maximum, pushing the bytes out (TCP_CORK,
 *                        TCP_NODELAY), refused readings held with backoff
 *                        and parked, state publishes
 *
 * Internal calls between these files are named mqtt_side__verb.
 *
 * Layer: transport
 */
#ifndef COAP2MQTT_MQTT_SIDE_INTERNAL_H
#define COAP2MQTT_MQTT_SIDE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <mosquitto.h>
#include <uthash.h>

#include "coap2mqtt/mqtt_side.h"
#include "coap2mqtt/outq.h"

struct inflight {
    int mid;
    outmsg_t *msg;
    UT_hash_handle hh;
};

/* A QoS 1 state publish (bridge/state, availability, the device list)
 * awaiting its PUBACK. */
struct state_mid {
    int mid;
    UT_hash_handle hh;
};

#define MQTT_SIDE_EXTRA_SUBS 4

struct mqtt_side {
    struct gw *gw;
    struct mosquitto *mosq;
    int index;                  /* 0: the primary connection; k > 0: the
                                 * publish-only connection k + 1 of
                                 * mqtt.connections (no will, no
                                 * subscription, no state publishes) */
    char name[24];              /* in the log: "mqtt", "mqtt[2]" ... */
    outq_t *src;                /* where the drain takes readings from:
                                 * gw->outq, or the pool's share for us */
    size_t refill_below;        /* ask for more at this length or less */
    mqtt_refill_fn refill;      /* NULL: spool_refill into gw->outq */
    void *refill_arg;
    int fd;                     /* registered in the loop, -1 when none */
    bool connected;             /* CONNACK success seen */
    bool closing;               /* mqtt_side_disconnect() called */
    bool v311;                  /* the next/current CONNECT speaks 3.1.1 */
    bool reconnect_full;        /* the protocol changed: the next attempt
                                 * must set libmosquitto's CONNECT up anew */
    unsigned attempts;          /* failed attempts since last success */
    uint64_t reconnect_timer;
    uint64_t misc_timer;
    uint64_t kick_timer;
    struct inflight *inflight;
    size_t n_inflight;
    size_t inflight_peak;       /* the most n_inflight has been */
    struct state_mid *state_mids; /* QoS 1 state publishes awaiting PUBACK */
    size_t state_pending;       /* how many */
    size_t window;              /* QoS 1 in flight: max_inflight, or less if
                                 * the broker's Receive Maximum says so */
    bool push_pending;          /* QoS 0 bytes Nagle may be holding back */
    outmsg_t *held, *held_tail; /* refused, to be published again; in the
                                 * order they were refused */
    size_t n_held;
    uint64_t retry_timer;
    mqtt_message_fn on_message;
    void *message_arg;
    mqtt_connected_fn on_connected;
    void *connected_arg;
    mqtt_suback_fn on_suback;
    void *suback_arg;
    bool session_resumed;       /* the last CONNACK's session present flag */
    char password[256];
    /* Topics subscribed to at every connect besides <base>/# (Home
     * Assistant's <prefix>/status), mqtt_side_add_subscription(). */
    char *extra_subs[MQTT_SIDE_EXTRA_SUBS];
    size_t n_extra_subs;
};

/* mqtt_side.c */
void mqtt_side__sync_fd(mqtt_side_t *m);

/* mqtt_side_publish.c */
void mqtt_side__set_window(mqtt_side_t *m, const mosquitto_property *props);
void mqtt_side__on_publish(struct mosquitto *mosq, void *arg, int mid, int reason,
                           const mosquitto_property *props);

#endif
