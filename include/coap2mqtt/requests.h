/*
 * requests.h - the broker request API, in zigbee2mqtt's style: a JSON
 * request on <base>/bridge/request/<name> is answered on
 * <base>/bridge/response/<name> with {"status":"ok","data":{...}} or
 * {"status":"error","error":"...","data":{}}, and the request's
 * "transaction" echoed back.  Requests: health_check, devices, stats,
 * device/remove, device/commands/cancel, options/log_level (log_level).
 * See docs/REQUESTS.md.
 *
 * Layer: status (reads every room below; removes devices and cancels
 * commands through their own APIs)
 */
#ifndef COAP2MQTT_REQUESTS_H
#define COAP2MQTT_REQUESTS_H

#include <stdbool.h>
#include <mosquitto.h>

#include "coap2mqtt/context.h"

/*
 * A message arrived from the broker: when its topic is under
 * <base>/bridge/request/, it is answered (whatever it holds: bad JSON and
 * unknown names get an error response) and true is returned; otherwise
 * false and the message is someone else's (commands).
 */
bool requests_on_message(struct gw *gw, const struct mosquitto_message *msg);

#endif
