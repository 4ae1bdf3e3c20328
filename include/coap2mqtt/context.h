/*
 * context.h - the one context pointer every room of the daemon is given:
 * the configuration, the event loop, the counters, and the handles of the
 * rooms, so that a room can call the rooms below it without globals.
 * Filled by gw_open() (gateway.c), read by everyone.  Each room's own state
 * stays behind its opaque type; this header says nothing of what is inside.
 *
 * Layer: base (plain data; names no function of any room)
 */
#ifndef COAP2MQTT_CONTEXT_H
#define COAP2MQTT_CONTEXT_H

#include <stdbool.h>
#include <stdint.h>

#include "coap2mqtt/config.h"
#include "coap2mqtt/loop.h"
#include "coap2mqtt/stats.h"

typedef struct keystore keystore_t;
typedef struct transport transport_t;
typedef struct mqtt_side mqtt_side_t;
typedef struct mqtt_pool mqtt_pool_t;
typedef struct devices devices_t;
typedef struct outq outq_t;
typedef struct status status_t;
typedef struct health health_t;
typedef struct spool spool_t;
typedef struct commands commands_t;
typedef struct intake intake_t;
typedef struct homeassistant homeassistant_t;
typedef struct ownership ownership_t;
typedef struct dialout dialout_t;
typedef struct discovery discovery_t;

struct gw {
    struct config *cfg;
    loop_t *loop;
    keystore_t *keys;
    transport_t *coap;      /* CoAP transport: endpoints, sessions, tokens */
    mqtt_pool_t *mqtt_pool; /* the broker connections (mqtt.connections) */
    mqtt_side_t *mqtt;      /* the primary one of them: state, subscriptions */
    devices_t *devices;
    commands_t *commands;
    intake_t *intake;       /* request bodies sent block-wise, in progress */
    outq_t *outq;
    spool_t *spool;         /* NULL when queue.spool is off */
    status_t *status;
    homeassistant_t *ha;    /* NULL unless homeassistant.enabled */
    ownership_t *ownership; /* NULL unless mqtt.instance */
    dialout_t *dialout;     /* the devices list: the devices we dial */
    discovery_t *discovery; /* NULL unless discovery.multicast */
    health_t *health;       /* state_dir/health, for container health checks */
    struct stats stats;
    bool stopping;          /* graceful stop in progress: no new work */
};

#endif
