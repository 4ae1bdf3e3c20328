/*
 * dialout.h - the devices the gateway dials out to (the devices list):
 * a client session to each, /.well-known/core fetched, the device
 * registered for as long as that session lasts (so observations,
 * commands, availability and bridge/devices work as for a device that
 * dialled in), silence probed, and a lost device dialled again with a
 * capped, jittered exponential backoff.
 *
 * Layer: services (calls devices, transport, base)
 */
#ifndef COAP2MQTT_DIALOUT_H
#define COAP2MQTT_DIALOUT_H

#include "coap2mqtt/context.h"
#include "coap2mqtt/devices.h"

typedef struct dialout dialout_t;

/* Reserves the ids of gw->cfg's devices list in the registry and starts
 * dialling each (from the loop).  NULL when out of memory, logged. */
dialout_t *dialout_new(struct gw *gw);
/* A reload: devices no longer listed are let go (session closed, offline,
 * their id free for devices that dial in again), changed ones dialled
 * anew, new ones dialled.  -1 if one could not be added (logged). */
int dialout_apply(dialout_t *dl, const struct config *cfg);
/* A device found by multicast discovery (discovery.c): dialled at
 * coap://host:port under 'id' and from then on kept like a listed device
 * (observed, probed, dialled again with the backoff when lost) until the
 * gateway stops; a reload's devices list does not remove it.  An id
 * already known is not added twice: a discovered one waiting for its next
 * attempt is dialled at once.  'host' is numeric (an IPv6 link-local one
 * with its "%interface").  0, or -1 when out of memory or its id is
 * taken (logged). */
int dialout_add_discovered(dialout_t *dl, const char *id, const char *host, int port);
/* Closes every client session (the devices hear DEVICE_SESSION_LOST) and
 * frees everything; before the transport is freed.  NULL is ignored. */
void dialout_free(dialout_t *dl);
/* The device listener (arg: the struct gw): a dialled device whose session
 * ended is dialled again; anything it answered counts as a sign of life. */
void dialout_device_event(void *arg, device_t *dev, enum device_event ev);

#endif
