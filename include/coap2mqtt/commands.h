/*
 * commands.h - MQTT commands to devices: <base>/<id>/<path>/set becomes a
 * CON PUT of the payload, .../get a one-shot GET.  Each device has a FIFO
 * of commands with a time to live (MQTT v5 Message Expiry, else
 * commands.ttl); one is in flight at a time, in order.  Every command gets
 * exactly one result, published as JSON on .../set/result or on the
 * command's Response Topic with its Correlation Data.
 *
 * With queue.spool on, queued commands are kept in state_dir/commands.journal
 * until their result is out, so that a crash does not lose them: the next
 * start queues them again for their devices (see docs/RELIABILITY.md).
 *
 * Layer: services
 */
#ifndef COAP2MQTT_COMMANDS_H
#define COAP2MQTT_COMMANDS_H

#include <mosquitto.h>

#include "coap2mqtt/context.h"
#include "coap2mqtt/devices.h"

/* With queue.spool, opens the command journal and restores what it holds.
 * NULL on failure, logged. */
commands_t *commands_new(struct gw *gw);
void commands_free(commands_t *c);

/* The MQTT side's message callback (arg: the commands_t): a message
 * arrived on a subscribed topic. */
void commands_on_message(void *arg, const struct mosquitto_message *msg,
                         const mosquitto_property *props);
/* The device listener (arg: the commands_t): delivers queued commands when
 * a device shows up (those restored from the journal first), puts the one
 * in flight back when its session goes, answers every queued one when the
 * gateway stops. */
void commands_device_event(void *arg, device_t *dev, enum device_event ev);
/* Graceful stop: answers {"error":"gateway stopping"} for every restored
 * command whose device has not shown up since the start (the device
 * listener answers the others). */
void commands_stop(commands_t *c);
/*
 * Answers {"error": why} for every command queued for device 'id' (and the
 * one in flight too when 'inflight': its answer, should it come, is then
 * ignored), restored ones still waiting for the device included.  Returns
 * how many were answered.
 */
size_t commands_cancel(commands_t *c, const char *id, bool inflight, const char *why);

/*
 * mqtt.instance: 'to', another gateway instance, holds the device now (or
 * device 'id', of which only commands restored or parked here wait).  The
 * command in flight is answered {"error":"device moved"} (it must not run
 * twice); the queued ones are published to that instance's inbox,
 * <base>/bridge/<to>/forward/<id>/<path>/<set|get>, and are its from then
 * on.  Returns how many went.
 */
void commands_hand_over(commands_t *c, device_t *dev, const char *to);
/* A command on a device's topic for a device instance 'to' holds: to its
 * inbox, as it came (redeliveries and retained ones dropped first). */
void commands_forward_message(commands_t *c, const struct mosquitto_message *msg,
                              const mosquitto_property *props, const char *to);
size_t commands_hand_over_waiting(commands_t *c, const char *id, const char *to);

#endif
