/*
 * parked.h - where a reading goes that the broker refuses for good.  A
 * device was told it is safe, so it may not vanish; after its retries
 * (mqtt.refused_retries) it is appended to state_dir/refused.jsonl, one
 * JSON object a line, and synced before its place in the spool is given
 * up.  The operator reads the file, mends the cause, and publishes again
 * what matters (docs/RELIABILITY.md shows how).
 *
 * Layer: base
 */
#ifndef COAP2MQTT_PARKED_H
#define COAP2MQTT_PARKED_H

#include "coap2mqtt/outq.h"

#define PARKED_FILE "refused.jsonl"

/*
 * Appends 'm' to <state_dir>/refused.jsonl and syncs it:
 *   {"time":<unix s>,"topic":"...","qos":1,"retain":false,"ct":0,
 *    "payload":"<base64>","correlation":"<base64>","reason":"...",
 *    "refusals":6}
 * ("ct" and "correlation" only when the message has them).  Creates
 * state_dir (0700) if needed.  0 when the line is on disk, -1 (logged)
 * otherwise: the caller keeps the message.
 */
int parked_write(const char *state_dir, const outmsg_t *m, const char *reason,
                 unsigned refusals);

#endif
