/*
 * intake.h - the device-facing resources: /rd (registration, RFC 9176
 * style) and /ps (pushes), judged by the session's authenticated identity.
 *
 * Layer: services
 */
#ifndef COAP2MQTT_INTAKE_H
#define COAP2MQTT_INTAKE_H

#include "coap2mqtt/context.h"

/* Adds the resources to the transport's context.  -1 (logged) on failure. */
int intake_register(struct gw *gw);

#endif
