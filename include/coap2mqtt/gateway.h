/*
 * gateway.h - the wiring between the rooms of the daemon.  One struct gw is
 * filled by gw_open() and passed to every module as its context pointer
 * (no file-level globals).  Each module's own state stays behind its
 * opaque type; this header only says who is connected to whom.
 */
#ifndef COAP2MQTT_GATEWAY_H
#define COAP2MQTT_GATEWAY_H

#include <stdbool.h>
#include <stdint.h>

#include "coap2mqtt/config.h"
#include "coap2mqtt/loop.h"
#include "coap2mqtt/stats.h"

typedef struct keystore keystore_t;
typedef struct coap_side coap_side_t;
typedef struct mqtt_side mqtt_side_t;
typedef struct devices devices_t;
typedef struct outq outq_t;
typedef struct status status_t;
typedef struct spool spool_t;

struct gw {
    struct config *cfg;
    loop_t *loop;
    keystore_t *keys;
    coap_side_t *coap;
    mqtt_side_t *mqtt;
    devices_t *devices;
    outq_t *outq;
    spool_t *spool;         /* NULL when queue.spool is off */
    status_t *status;
    struct stats stats;
    /* (packet id, topic+payload hash) of recent QoS 1 commands, so a
     * broker redelivery (lost PUBACK) is not PUT twice. */
    uint64_t recent_cmds[256];
    unsigned recent_cmds_pos;
    bool stopping;          /* graceful stop in progress: no new work */
};

/*
 * Fills *gw for cfg: the event loop, then the outbound queue, the spool
 * (when queue.spool is on; state_dir is made if missing), devices, the
 * MQTT side (created, not started: mqtt_side_start() is the caller's),
 * status and the CoAP side with its endpoints.  keys (NULL: no PSK file)
 * and cfg stay the caller's and must outlive the gateway; the caller may
 * swap gw->keys on reload.  Returns 0, or -1 after logging why, with *gw
 * half built: gw_close() it all the same.
 */
int gw_open(struct gw *gw, struct config *cfg, keystore_t *keys);

/* Frees what gw_open() made, in the order the modules need (the spool keeps
 * what the broker did not acknowledge); not keys or cfg. */
void gw_close(struct gw *gw);

#endif
