/*
 * intake.h - the device-facing resources: /rd (registration, RFC 9176
 * style) and /ps (pushes), judged by the session's authenticated identity.
 *
 * Layer: services
 */
#ifndef COAP2MQTT_INTAKE_H
#define COAP2MQTT_INTAKE_H

#include "coap2mqtt/context.h"

/* Adds the resources to the transport's context, and sets up gw->intake
 * (block-wise bodies being put together).  -1 (logged) on failure. */
int intake_register(struct gw *gw);
/* Frees gw->intake's state (NULL is ignored). */
void intake_free(intake_t *in);

#endif
