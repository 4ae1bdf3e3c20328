/*
 * observe.h - the gateway's observations of device resources (RFC 7641):
 * GET Observe=0 over the device's own session, freshness of notifications
 * (section 3.4) so reordered or replayed ones are not republished,
 * re-registration when Max-Age plus a grace passes in silence, retries with
 * backoff when a device refuses, cancellation when it leaves.
 */
#ifndef COAP2MQTT_OBSERVE_H
#define COAP2MQTT_OBSERVE_H

#include <stdbool.h>
#include <stdint.h>
#include <coap3/coap.h>

struct device;
struct resource;

/* (Re)starts observing every observable resource of the device. */
void observe_start_all(struct device *dev);
/* Cancels every observation (NON GET Observe=1) and forgets the tokens. */
void observe_cancel_all(struct device *dev, bool on_wire);

/*
 * A response or notification for an observation token.  False when a CON
 * notification could not be stored: it must not be acknowledged (RST),
 * so the device keeps it; the observation is re-established later.
 */
bool observe_on_response(struct resource *res, coap_session_t *session,
                         const coap_pdu_t *rcvd);
/* The observe request itself was not delivered. */
void observe_on_nack(struct resource *res, coap_nack_reason_t reason);

/*
 * RFC 7641 section 3.4: is notification (v2 at t2 ms) newer than the last
 * accepted one (v1 at t1 ms)?  Pure, exposed for unit tests.
 */
bool observe_is_fresh(uint32_t v1, uint64_t t1, uint32_t v2, uint64_t t2);

#endif
