/*
 * stats.h - the counters published on <base>/bridge/stats.  Plain data:
 * every module increments its own fields directly.  Each refusal the
 * network can cause has its own counter, so operators see why.
 *
 * Layer: base (plain data)
 */
#ifndef COAP2MQTT_STATS_H
#define COAP2MQTT_STATS_H

#include <stdint.h>

#define STATS_FIELDS(X)                                                     \
    X(handshakes_ok)         /* DTLS sessions established */                \
    X(handshakes_failed)     /* DTLS handshakes that failed, any cause */   \
    X(psk_unknown_identity)  /* handshakes naming an identity we lack */    \
    X(handshakes_evicted)    /* unanswered ClientHellos dropped (flood) */  \
    X(dtls_no_session)       /* DTLS data from an address with no session (a device that lost it), dropped */ \
    X(handshakes_shed)       /* ClientHellos that waited over 1 s in the socket (overload), dropped */ \
    X(sessions_closed)       /* DTLS sessions closed or timed out */        \
    X(sessions_reset)        /* old session retired: same-port re-handshake */ \
    X(rehandshake_cookies)   /* hellos on a live session asked for a cookie */ \
    X(sessions_reassociated) /* a registered device back on a new session */ \
    X(sessions_revoked)      /* closed at reload: key removed, cert revoked */ \
    X(registrations)         /* POST /rd accepted */                        \
    X(refreshes)             /* POST /rd/<id> accepted */                   \
    X(deregistrations)       /* DELETE /rd/<id> */                          \
    X(expirations)           /* registrations whose lifetime ran out */     \
    X(devices_forgotten)     /* records freed: gone for rd.forget_after */  \
    X(registrations_refused_unauthenticated) /* plain CoAP over rd.max_unauthenticated: 5.03 */ \
    X(rejected_identity)     /* ep= not the DTLS identity: 4.03 */          \
    X(rejected_dialout_id)   /* dial-in under an id of the devices list: 4.03 */ \
    X(rejected_bad_request)  /* malformed query, body, path: 4.00 */        \
    X(rejected_unauthenticated) /* request on a session without identity */ \
    X(oscore_refused)        /* OSCORE messages libcoap could not verify: wrong key, unknown recipient id, replay */ \
    X(oscore_unprotected)    /* unprotected requests from an OSCORE device's address: dropped */ \
    X(rejected_capacity)     /* over max devices / queue full: 5.03 */      \
    X(requests_throttled)    /* over coap.max_request_rate: 5.03 */         \
    X(dialout_up)            /* dialled devices reached (registered) */     \
    X(dialout_lost)          /* ... and lost again (dialled anew) */        \
    X(observations_started)  /* GET Observe=0 sent */                       \
    X(observations_failed)   /* observe refused or ended by the device */   \
    X(notifications_in)      /* observe notifications received */           \
    X(notifications_stale)   /* dropped: stale or duplicate (RFC 7641 3.4) */ \
    X(unknown_token)         /* responses matching no request of ours */    \
    X(acks_repeated)         /* ACKs sent again: the device repeated a CON */ \
    X(pushes_in)             /* POST/PUT /ps/... readings received */       \
    X(duplicates_in)         /* CON pushes seen twice (lost ACK): once out */ \
    X(commands_duplicate)    /* QoS 1 redeliveries of a command: not re-sent */ \
    X(published)             /* messages handed to the broker */            \
    X(puback)                /* QoS 1 publishes acknowledged */             \
    X(publish_refused)       /* publishes the broker refused: kept, retried */ \
    X(drops_refused)         /* refused for good: parked in refused.jsonl */ \
    X(drops_queue_full)      /* readings refused: queue and spool full */   \
    X(drops_oldest_non)      /* no spool, queue full: oldest NON dropped */ \
    X(acks_withheld)         /* CON readings not acknowledged: not durable */ \
    X(spool_syncs)           /* sync jobs finished (group commits) */      \
    X(spool_faults)          /* times the spool stopped taking readings */ \
    X(spool_damaged)         /* at start: damaged records, torn ends, foreign files, a damaged acked */ \
    X(drops_too_large)       /* readings refused: payload over the cap */   \
    X(json_failed)           /* mqtt.json: payload did not parse, sent as is */ \
    X(commands_in)           /* /set and /get messages received */          \
    X(commands_ok)           /* answered 2.xx */                            \
    X(commands_error)        /* answered 4.xx/5.xx */                       \
    X(commands_timeout)      /* no answer after RFC 7252 retransmissions */ \
    X(commands_expired)      /* TTL ran out before delivery */              \
    X(commands_rejected)     /* bad topic, unknown device, queue full */    \
    X(commands_restored)     /* read back from the journal at start */      \
    X(commands_journal_skipped) /* damaged or torn journal records at start */ \
    X(commands_offline)      /* commands.offline "reject": device had no session */ \
    X(devices_claimed)       /* mqtt.instance: devices this instance took on */ \
    X(devices_handed_over)   /* ... and let go to the instance that claimed them */ \
    X(commands_forwarded)    /* queued commands passed on to the new holder */ \
    X(commands_duplicate_handover) /* one command reaching both holders at a hand-over */ \
    X(commands_not_ours)     /* commands for a device another instance holds */ \
    X(mqtt_connects)         /* successful broker connections */            \
    X(mqtt_disconnects)      /* lost broker connections */

struct stats {
#define STATS_DECLARE(name) uint64_t name;
    STATS_FIELDS(STATS_DECLARE)
#undef STATS_DECLARE
};

#endif
