/*
 * gateway.h - builds and takes apart the whole gateway: every room, in the
 * order they depend on each other, and the callbacks through which the
 * lower rooms report to the higher ones.  The daemon (main.c) and the
 * handler fuzzer (tests/fuzz/fuzz_handlers.c) both wire the gateway here,
 * so what is fuzzed is what runs.
 *
 * Layer: wiring
 */
#ifndef COAP2MQTT_GATEWAY_H
#define COAP2MQTT_GATEWAY_H

#include <mosquitto.h>

#include "coap2mqtt/context.h"

/*
 * Fills *gw for cfg: the event loop, then the outbound queue, the spool
 * (when queue.spool is on; state_dir is made if missing), devices, the
 * MQTT side (created, not started: gw_start_mqtt() is the caller's),
 * status, observations, commands and the CoAP transport with its
 * endpoints and the device-facing resources.  keys (NULL: no PSK file)
 * and cfg stay the caller's and must outlive the gateway; the caller may
 * swap keys with gw_set_keystore() on reload.  Returns 0, or -1 after
 * logging why, with *gw half built: gw_close() it all the same.
 */
int gw_open(struct gw *gw, struct config *cfg, keystore_t *keys);

/* Frees what gw_open() made, in the order the rooms need (the spool keeps
 * what the broker did not acknowledge); not keys or cfg. */
void gw_close(struct gw *gw);

/* The MQTT side's message callback (arg: the struct gw): requests on
 * <base>/bridge/request/... to the request API, the rest to commands.
 * Public for the handler fuzzer, which delivers MQTT messages through it. */
void gw_on_mqtt_message(void *arg, const struct mosquitto_message *msg,
                        const mosquitto_property *props);

#endif
