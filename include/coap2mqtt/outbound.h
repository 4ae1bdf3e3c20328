/*
 * outbound.h - the one way into the outbound path: a reading, a GET answer
 * or a command result is made safe (spool, when on) and queued in arrival
 * order for the broker, or refused and counted.  One policy for everyone
 * who publishes, so counting and logging cannot drift apart.
 *
 * Layer: services
 */
#ifndef COAP2MQTT_OUTBOUND_H
#define COAP2MQTT_OUTBOUND_H

#include <stdbool.h>

#include "coap2mqtt/context.h"
#include "coap2mqtt/outq.h"

/*
 * Takes 'm' (NULL: the caller could not build it, counted as refused).
 * True when it is queued (written to the spool first, if on); a NON
 * reading may have been dropped to make room (drops_oldest_non).  False
 * when queue and spool are full: 'm' is finished with delivered = false
 * (its done callback answers a waiting device), drops_queue_full counted
 * and "<what> <id> refused" logged (rate-limited).  During teardown (no queue) it is
 * finished silently.
 */
bool outbound_put(struct gw *gw, outmsg_t *m, const char *what, const char *id);
/* True while every broker connection is up: a reading put now reaches
 * the broker in milliseconds, unless a backlog is ahead of it. */
bool outbound_flowing(const struct gw *gw);

#endif
