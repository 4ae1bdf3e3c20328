/*
 * coap_side.h - the libcoap context: DTLS-PSK endpoints, per-identity key
 * lookup, the /rd and /ps handlers, and the routing of responses to the
 * request that caused them.  Token matching is ours (libcoap hands
 * notifications over with sent == NULL): every request we send gets an
 * 8-byte token registered here with its owner.
 */
#ifndef COAP2MQTT_COAP_SIDE_H
#define COAP2MQTT_COAP_SIDE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <coap3/coap.h>

#include "coap2mqtt/gateway.h"

enum req_kind { REQ_OBSERVE, REQ_COMMAND };

/* Opens the endpoints and joins the loop.  NULL on failure, logged. */
coap_side_t *coap_side_new(struct gw *gw);
void coap_side_free(coap_side_t *c);

/* Swaps in a new keystore (SIGHUP); the caller frees the old one. */
void coap_side_set_keystore(coap_side_t *c, keystore_t *ks);
/* Reloads certificate, key, CA and CRL files (SIGHUP).  -1 on failure
 * (logged; the old ones stay). */
int coap_side_reload_pki(coap_side_t *c);

/*
 * A new request PDU for 'session' (type CON or NON) with the Uri-Path
 * options of 'path'.  If *token is 0, a fresh token is made, registered
 * for (kind, owner) and stored in *token; otherwise *token, registered
 * before, is reused as is (an observation registering again).  NULL on
 * allocation failure.
 */
coap_pdu_t *coap_side_new_request(coap_side_t *c, coap_session_t *session,
                                  coap_pdu_type_t type, coap_pdu_code_t code,
                                  const char *path, enum req_kind kind,
                                  void *owner, uint64_t *token);
/* Sends; on failure the token is forgotten and -1 returned. */
int coap_side_send(coap_side_t *c, coap_session_t *session, coap_pdu_t *pdu,
                   uint64_t token);
/* Stops routing responses with this token (0 is ignored). */
void coap_side_forget(coap_side_t *c, uint64_t token);
/* RFC 7641 3.6 deregistration of the observation 'token', sent NON;
 * nothing is sent when the device never answered the registration. */
void coap_side_cancel_observe(coap_session_t *session, uint64_t token);
/* An empty ACK with Message ID 'mid'. */
void coap_side_send_ack(coap_session_t *session, uint16_t mid);
/* Whether 'token' is registered and was made for 'session'. */
bool coap_side_token_live(coap_side_t *c, uint64_t token, coap_session_t *session);

/* Authenticated identity of a session as a C string, or NULL. */
const char *coap_side_identity(coap_session_t *session, char *buf, size_t cap);
/* "addr:port" of the peer, for logs. */
const char *coap_side_peer(coap_session_t *session, char *buf, size_t cap);

size_t coap_side_sessions(const coap_side_t *c);

#endif
