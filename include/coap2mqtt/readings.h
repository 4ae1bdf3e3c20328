/*
 * readings.h - one reading from a device (notification or push) turned
 * into an outbound message for <base>/<id>/<path>: the payload as sent, or
 * as JSON when mqtt.json is on and its format converts.
 */
#ifndef COAP2MQTT_READINGS_H
#define COAP2MQTT_READINGS_H

#include <stddef.h>
#include <stdint.h>

#include "coap2mqtt/context.h"
#include "coap2mqtt/outq.h"

/* NULL on allocation failure or when the topic does not fit. */
outmsg_t *reading_message(struct gw *gw, const char *id, const char *path,
                          const uint8_t *data, size_t len, int qos, int ct);

#endif
