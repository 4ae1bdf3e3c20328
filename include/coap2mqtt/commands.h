/*
 * commands.h - MQTT commands to devices: <base>/<id>/<path>/set becomes a
 * CON PUT of the payload, .../get a one-shot GET.  Each device has a FIFO
 * of commands with a time to live (MQTT v5 Message Expiry, else
 * commands.ttl); one is in flight at a time, in order.  Every command gets
 * exactly one result, published as JSON on .../set/result or on the
 * command's Response Topic with its Correlation Data.
 */
#ifndef COAP2MQTT_COMMANDS_H
#define COAP2MQTT_COMMANDS_H

#include <stdbool.h>
#include <stddef.h>
#include <coap3/coap.h>
#include <mosquitto.h>

#include "coap2mqtt/gateway.h"

struct device;
struct command;

/* An MQTT message arrived on a subscribed topic. */
void commands_on_message(struct gw *gw, const struct mosquitto_message *msg,
                         const mosquitto_property *props);
/* The device has a session again: send what is queued. */
void commands_kick(struct device *dev);
/* Response / failure for a command token. */
void commands_on_response(struct command *cmd, const coap_pdu_t *rcvd);
void commands_on_nack(struct command *cmd, coap_nack_reason_t reason);
/* The device's session is gone: put the in-flight command back in front. */
void commands_session_lost(struct device *dev);
/* Answers every queued command with {"error":why} and frees them. */
void commands_flush(struct device *dev, const char *why);

#endif
