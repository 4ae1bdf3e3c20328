/*
 * discovery.h - multicast discovery for plain CoAP labs (discovery.*):
 * every discovery.interval seconds a NON GET /.well-known/core goes to
 * 224.0.1.187 and FF02::FD port 5683 on discovery.interface, and each
 * server that answers is handed to the dial-out (dialout_add_discovered)
 * as device "mc-<address>-<port>", '.' and ':' written '-'.
 *
 * Layer: services (calls dialout, loop, base)
 */
#ifndef COAP2MQTT_DISCOVERY_H
#define COAP2MQTT_DISCOVERY_H

#include <stddef.h>
#include <sys/socket.h>

#include "coap2mqtt/context.h"

typedef struct discovery discovery_t;

/* Opens the probe sockets on gw->cfg->discovery.interface (IPv6 is
 * optional: without it only IPv4 is probed) and probes at once, then every
 * interval, from the loop; needs gw->dialout.  NULL when the interface is
 * missing or no socket can be had (logged). */
discovery_t *discovery_new(struct gw *gw);
/* Closes the sockets and the timer; the devices found stay with the
 * dial-out.  NULL is ignored. */
void discovery_free(discovery_t *d);

/* The id of the server at 'sa' (AF_INET or AF_INET6): "mc-10-0-0-2-5683",
 * "mc-fe80--1-5683" (no scope).  -1 when it does not fit 'cap' or is no
 * valid device id. */
int discovery_id(const struct sockaddr *sa, char *buf, size_t cap);

#endif
