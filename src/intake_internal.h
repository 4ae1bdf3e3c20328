/*
 * intake_internal.h - what the intake's files share, and nobody else:
 *
 *   intake.c          the handlers: /rd register, refresh, leave; /ps pushes
 *   intake_blocks.c   request bodies sent block-wise (RFC 7959 Block1),
 *                     put together under the limits
 *   intake_separate.c answers that leave after the empty ACK (a CON push
 *                     waiting for its reading to be safe)
 *
 * Layer: services
 */
#ifndef COAP2MQTT_INTAKE_INTERNAL_H
#define COAP2MQTT_INTAKE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <coap3/coap.h>

#include "coap2mqtt/intake.h"

/* What intake__body() did with a request. */
enum intake_body {
    INTAKE_BODY_WHOLE,      /* *data, *len: the whole body, to be handled */
    INTAKE_BODY_ANSWERED,   /* 'response' is filled: 2.31 (a block taken,
                             * send the next) or an error */
};

struct upload;
struct intake_wait;

struct intake {
    struct gw *gw;
    struct upload *uploads;     /* intake_blocks.c */
    size_t n;
    /* The request whose last block completed a body, for intake__answered(). */
    const coap_pdu_t *final_req;
    coap_block_b_t final_block;
    struct intake_wait *waits;  /* intake_separate.c, by session and MID */
};

intake_t *intake__new(struct gw *gw);

/*
 * The body of 'req' for the handler of 'kind' ('r' register, 'u' refresh,
 * 'p' push) and 'path' (the push path, "" otherwise) from the device 'id'.
 * A request without Block1 is its own body.  A Block1 block is added to
 * its transfer and answered 2.31 until the last one, which hands out the
 * whole body; coap.max_payload (the announced Size1 as well as the blocks
 * so far) and the rules of RFC 7959 are checked at every block, and
 * refused with 4.13, 4.08 or 4.00 in 'response'.  The body stays valid
 * until the handler returns.  Call once per request.
 */
enum intake_body intake__body(struct gw *gw, coap_session_t *session,
                              const coap_pdu_t *req, coap_pdu_t *response,
                              const char *id, char kind, const char *path,
                              const uint8_t **data, size_t *len);

/* After the handler of 'req' filled 'response': a 2.xx answer to the last
 * block of a transfer says which block it answers (Block1, M=0). */
void intake__answered(struct gw *gw, const coap_pdu_t *req, coap_pdu_t *response);

/*
 * intake_separate.c: a CON request to be answered later.  The handler
 * gives its response to intake__wait_new() and touches it no more (it is
 * dropped, or stays empty: libcoap sends the empty ACK); NULL instead of
 * the response asks for the empty ACK now (a long wait); the answer is
 * made with intake__wait_answer_pdu() (NULL when the session ended or
 * memory ran out), given its code, and sent by intake__wait_end(), which
 * also frees the wait (the answer may be NULL: nothing is sent).
 * intake__wait_new() returns NULL if the request is already waiting or
 * memory ran out; intake__waiting() says whether a CON request (a repeat
 * that ran out of patience) is, and lets its response be the empty ACK.
 */
struct intake_wait *intake__wait_new(intake_t *in, coap_session_t *session,
                                     const coap_pdu_t *req, coap_pdu_t *response);
bool intake__waiting(intake_t *in, coap_session_t *session, const coap_pdu_t *req);
struct gw *intake__wait_gw(const struct intake_wait *w);
coap_session_t *intake__wait_session(const struct intake_wait *w);
uint16_t intake__wait_mid(const struct intake_wait *w);
coap_pdu_t *intake__wait_answer_pdu(const struct intake_wait *w);
void intake__wait_end(struct intake_wait *w, coap_pdu_t *answer);
void intake__waits_free(intake_t *in);

/* intake.c: an error code with a short diagnostic payload (RFC 7252
 * 5.5.2); a malformed request counted, logged and answered 'code'. */
void intake__reply(coap_pdu_t *response, int code, const char *diag);
void intake__bad_request(struct gw *gw, coap_session_t *session, coap_pdu_t *response,
                         const char *id, int code, const char *why);

#endif
