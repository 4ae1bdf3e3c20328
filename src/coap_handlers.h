/*
 * coap_handlers.h - the device-facing resources: /rd (registration,
 * RFC 9176 style) and /ps (pushes).  Internal to the CoAP side.
 */
#ifndef COAP2MQTT_COAP_HANDLERS_H
#define COAP2MQTT_COAP_HANDLERS_H

#include <coap3/coap.h>

/* Adds the resources to the context.  -1 on allocation failure. */
int coap_handlers_register(coap_context_t *ctx);

/* The gateway behind a context (coap_side.c). */
struct gw *coap_side_gw(coap_context_t *ctx);

#endif
