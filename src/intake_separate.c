/*
 * intake_separate.c - answers that leave after the request's empty ACK
 * (RFC 7252 5.2.2, "separate response"): the 2.04 of a CON push that
 * waits for its reading to be safe (queue.durability = "power": the
 * sync that covers its record; without a spool: the broker's PUBACK).
 *
 * Why not libcoap's async API (coap_register_async): in 4.3.1 every
 * pending async of a context sits in one list, which coap_find_async()
 * walks for every request handle_request() sees, coap_check_async()
 * walks on every I/O pass, and LL_DELETE walks again.  With one push
 * waiting per NSTART = 1 sensor that is O(sensors) per reading: at 1,000
 * sensors it cost two to three times the CPU of the push itself, at
 * 10,000 nothing was answered at all (docs/BENCHMARKS.md, field rows).
 *
 * So the handler leaves its response empty (libcoap then sends the empty
 * ACK), the wait is kept here in a hash by session and Message ID, and
 * the answer is our own CON with the request's token (and, for the last
 * block of a body, its Block1 echoed, RFC 7959 2.3).  A CON repeat of a
 * request still waiting (its empty ACK was lost) is found by the same
 * key and gets the empty ACK again, never a second reading.  libcoap
 * retransmits our CON like any other; a device that never acknowledges
 * it sends its reading again later (at least once).
 *
 * Session pointers are keys and references: a wait holds its session
 * (coap_session_reference) until it is answered, so the key cannot be
 * reused by another session meanwhile.
 *
 * Layer: services
 */
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "intake_internal.h"

struct wait_key {
    coap_session_t *session;
    uint16_t mid;
};

struct intake_wait {
    UT_hash_handle hh;
    struct wait_key key;        /* zeroed first: hashed as bytes */
    intake_t *in;
    uint8_t token[8];
    size_t token_len;
    bool has_block1;
    unsigned block1;            /* the last block's Block1, M clear */
};

static void
key_of(struct wait_key *k, coap_session_t *session, uint16_t mid)
{
    memset(k, 0, sizeof(*k));
    k->session = session;
    k->mid = mid;
}

struct intake_wait *
intake__wait_new(intake_t *in, coap_session_t *session, const coap_pdu_t *req)
{
    coap_bin_const_t token = coap_pdu_get_token(req);
    coap_opt_iterator_t it;
    coap_opt_t *opt;
    struct intake_wait *w;

    if (token.length > sizeof(w->token) || intake__waiting(in, session, req) ||
        !(w = calloc(1, sizeof(*w))))
        return NULL;
    key_of(&w->key, coap_session_reference(session), (uint16_t)coap_pdu_get_mid(req));
    w->in = in;
    memcpy(w->token, token.s, token.length);
    w->token_len = token.length;
    if ((opt = coap_check_option(req, COAP_OPTION_BLOCK1, &it))) {
        w->has_block1 = true;
        w->block1 = coap_decode_var_bytes(coap_opt_value(opt), coap_opt_length(opt)) & ~8u;
    }
    HASH_ADD(hh, in->waits, key, sizeof(w->key), w);
    return w;
}

bool
intake__waiting(intake_t *in, coap_session_t *session, const coap_pdu_t *req)
{
    struct intake_wait *w;
    struct wait_key k;

    if (coap_pdu_get_type(req) != COAP_MESSAGE_CON)
        return false;
    key_of(&k, session, (uint16_t)coap_pdu_get_mid(req));
    HASH_FIND(hh, in->waits, &k, sizeof(k), w);
    return w != NULL;
}

struct gw *
intake__wait_gw(const struct intake_wait *w)
{
    return w->in->gw;
}

coap_session_t *
intake__wait_session(const struct intake_wait *w)
{
    return w->key.session;
}

uint16_t
intake__wait_mid(const struct intake_wait *w)
{
    return w->key.mid;
}

coap_pdu_t *
intake__wait_answer_pdu(const struct intake_wait *w)
{
    coap_session_t *s = w->key.session;
    coap_pdu_t *pdu;

    /* A session that ended (closed, timed out, handshake lost) has nobody
     * to answer: the device sends its reading again on a new one. */
    if (coap_session_get_state(s) != COAP_SESSION_STATE_ESTABLISHED)
        return NULL;
    pdu = coap_pdu_init(COAP_MESSAGE_CON, COAP_EMPTY_CODE, coap_new_message_id(s),
                        coap_session_max_pdu_size(s));
    if (pdu && !coap_add_token(pdu, w->token_len, w->token)) {
        coap_delete_pdu(pdu);
        pdu = NULL;
    }
    return pdu;
}

void
intake__wait_end(struct intake_wait *w, coap_pdu_t *answer)
{
    uint8_t buf[4];

    if (answer) {
        /* Options go in number order before the payload: Block1 (27)
         * after Max-Age (14); a diagnostic payload only on errors. */
        if (w->has_block1 && COAP_RESPONSE_CLASS(coap_pdu_get_code(answer)) == 2)
            coap_add_option(answer, COAP_OPTION_BLOCK1,
                            coap_encode_var_safe(buf, sizeof(buf), w->block1), buf);
        coap_send(w->key.session, answer);  /* takes the PDU, sent or not */
    }
    HASH_DEL(w->in->waits, w);
    coap_session_release(w->key.session);
    free(w);
}

void
intake__waits_free(intake_t *in)
{
    struct intake_wait *w, *tmp;

    /* Every wait ended when the queue and the spool closed (they call
     * their done callbacks); one left here has lost its session with the
     * CoAP context already, so only its memory remains. */
    HASH_ITER(hh, in->waits, w, tmp) {
        HASH_DEL(in->waits, w);
        free(w);
    }
}
