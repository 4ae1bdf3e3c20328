/*
 * transport.h - the CoAP transport: the libcoap context, the DTLS (and
 * plain CoAP) endpoints, the sessions and their guards, and the routing of
 * every response to whoever sent the request, by our own 8-byte tokens
 * (libcoap hands notifications over with sent == NULL, so token matching
 * is ours).  It knows nothing of devices, observations or commands: the
 * rooms above register handlers with each request and a listener for
 * sessions that end, and are called back through them.
 *
 * Layer: transport
 */
#ifndef COAP2MQTT_TRANSPORT_H
#define COAP2MQTT_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <coap3/coap.h>

#include "coap2mqtt/context.h"

/*
 * What to call when a request of ours is answered.  on_response returns
 * false to refuse the answer (a CON notification that could not be
 * stored: libcoap then sends RST and the device keeps it).  A one_shot
 * request (a command) is forgotten at its first answer or failure; an
 * observation's token keeps routing notifications until forgotten.
 */
struct transport_handler {
    bool (*on_response)(void *owner, coap_session_t *session, const coap_pdu_t *rcvd);
    void (*on_nack)(void *owner, coap_nack_reason_t reason);
    bool one_shot;
};

/* libcoap is about to free 'session' (or it closed). */
typedef void (*transport_session_gone_fn)(void *arg, coap_session_t *session);
/* A device's DTLS session has just been established (its handshake
 * ended), before it sent anything on it. */
typedef void (*transport_session_new_fn)(void *arg, coap_session_t *session);
/* Readings waiting for the broker, 0 when it is not connected (then
 * waiting for it would not help): intake yields to it under overload. */
typedef uint64_t (*transport_backlog_fn)(void *arg);

/* Opens the endpoints and joins the loop.  NULL on failure, logged. */
transport_t *transport_new(struct gw *gw);
void transport_free(transport_t *t);

/* Who is told about sessions that end, and who measures the broker's
 * backlog (both optional; set once while wiring). */
void transport_set_session_listener(transport_t *t, transport_session_gone_fn fn, void *arg);
void transport_set_backlog(transport_t *t, transport_backlog_fn fn, void *arg);
/* Who is told about new device sessions (optional; set once). */
void transport_set_established_listener(transport_t *t, transport_session_new_fn fn,
                                        void *arg);

/* The libcoap context, for the room that adds the device-facing resources. */
coap_context_t *transport_context(transport_t *t);

/* Swaps in a new keystore (SIGHUP); the caller frees the old one. */
void transport_set_keystore(transport_t *t, keystore_t *ks);
/* Reloads certificate, key, CA and CRL files (SIGHUP).  -1 on failure
 * (logged; the old ones stay). */
int transport_reload_pki(transport_t *t);

/* Reload: coap.max_sessions, max_handshakes and session_timeout from
 * gw->cfg handed to libcoap again (they govern sessions from now on). */
void transport_apply_limits(transport_t *t);
/* After those: closes every DTLS session that today's credentials would
 * refuse (PSK identity removed or its key changed, certificate revoked or
 * no longer verified by ca_file), each logged.  Returns how many. */
size_t transport_close_revoked(transport_t *t);

/*
 * A new request PDU for 'session' (type CON or NON) with the Uri-Path
 * options of 'path'.  If *token is 0, a fresh token is made, registered
 * for (h, owner) and stored in *token; otherwise *token, registered
 * before, is reused as is (an observation registering again).  NULL on
 * allocation failure.  'h' must outlive the token (a static const).
 */
coap_pdu_t *transport_request_new(transport_t *t, coap_session_t *session,
                                  coap_pdu_type_t type, coap_pdu_code_t code,
                                  const char *path, const struct transport_handler *h,
                                  void *owner, uint64_t *token);
/* Sends; on failure the token is forgotten and -1 returned. */
int transport_send(transport_t *t, coap_session_t *session, coap_pdu_t *pdu,
                   uint64_t token);
/* Stops routing responses with this token (0 is ignored). */
void transport_forget(transport_t *t, uint64_t token);
/* Whether 'token' is registered and was made for 'session'. */
bool transport_token_live(transport_t *t, uint64_t token, coap_session_t *session);
/* RFC 7641 3.6 deregistration of the observation 'token', sent NON;
 * nothing is sent when the device never answered the registration. */
void transport_cancel_observe(coap_session_t *session, uint64_t token);
/* An empty ACK with Message ID 'mid'. */
void transport_send_ack(coap_session_t *session, uint16_t mid);
/* A server session its device has left for another: what is still
 * queued on it is dropped, and libcoap frees it at its next walk. */
void transport_session_end(transport_t *t, coap_session_t *session);

/*
 * From a response handler (struct transport_handler.on_response): the ACK
 * of the CON response it was given ('rcvd', as given) is held back until
 * transport_ack_end(), which sends it if 'ok' (and the session lives),
 * else sends nothing (the device retransmits: a new chance), and frees
 * the hold.  Repeats meanwhile are swallowed.  NULL when it cannot be
 * held (not CON, put together from blocks, asked twice, out of memory):
 * then it is acknowledged as usual when the handler returns.
 */
struct transport_ack;
struct transport_ack *transport_ack_later(transport_t *t, coap_session_t *session,
                                          const coap_pdu_t *rcvd);
void transport_ack_end(struct transport_ack *a, bool ok);

/* Authenticated identity of a session (PSK identity, or the device id its
 * certificate names) as a C string, or NULL. */
const char *transport_identity(coap_session_t *session, char *buf, size_t cap);
/* "addr:port" of the peer, for logs. */
const char *transport_peer(coap_session_t *session, char *buf, size_t cap);

size_t transport_sessions(const transport_t *t);

/* --- client sessions: the devices the gateway dials out to --- */

/*
 * A client session to host:port on the gateway's context: plain CoAP
 * unless 'secure'; DTLS with 'psk_identity' (its key from the current
 * keystore, 'host' as SNI unless it is an address), or without one with the gateway's X.509
 * settings: its certificate, the device's verified against coap.ca_file
 * (and CRLs), the id it names then given by transport_identity().
 * Resolves the host first (blocking, see transport_client.c); of several
 * addresses, attempt number 'attempt' takes the next in turn.  The
 * handshake goes on in the loop; requests sent meanwhile wait for it, and
 * are NACKed if it fails.  NULL on failure, logged.
 */
coap_session_t *transport_client_open(transport_t *t, const char *host, int port,
                                      unsigned attempt, bool secure,
                                      const char *psk_identity);
/*
 * As transport_client_open() for a coap:// device, its messages protected
 * by OSCORE with the context 'oscore_id' of the oscore list (sequence
 * numbers saved in state_dir/oscore/).  NULL on failure, logged; also in
 * a build without OSCORE, whose configuration cannot name one.
 */
coap_session_t *transport_client_open_oscore(transport_t *t, const char *host,
                                             int port, unsigned attempt,
                                             const char *oscore_id);
/* Ends a client session: its tokens stop routing, the session listener is
 * told (as when libcoap ends one), and libcoap frees it.  NULL is ignored. */
void transport_client_close(transport_t *t, coap_session_t *session);

#endif
