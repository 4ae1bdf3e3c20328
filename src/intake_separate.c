/*
 * intake_separate.c - answers that leave after the handler returned: the
 * 2.04 of a CON push that waits for its reading to be safe
 * (queue.durability = "power": the sync that covers its record; without
 * a spool: the broker's PUBACK).
 *
 * The answer is piggybacked (RFC 7252 5.2.1): the ACK of the request,
 * with its Message ID and token, sent when the wait ends, a sync later
 * (milliseconds; the device's ACK_TIMEOUT is 2 to 3 s).  One datagram
 * each way, as for a reading answered at once, and nothing for libcoap
 * to retransmit.  libcoap is kept from answering when the handler
 * returns by compat_answer_later().  A CON repeat of a request still
 * waiting (the wait outlived the device's ACK_TIMEOUT: a stalled disk, a
 * broker away) is found here by session and Message ID and gets the
 * empty ACK, never a second reading; from then on the answer is a
 * separate response (5.2.2): our own CON with the request's token.  So
 * is every answer where libcoap cannot be kept quiet.  For the last block
 * of a body either answer echoes its Block1 (RFC 7959 2.3).  libcoap
 * retransmits our CON like any other; a device that never acknowledges
 * it sends its reading again later (at least once).
 *
 * Why not libcoap's async API (coap_register_async): in 4.3.1 every
 * pending async of a context sits in one list, which coap_find_async()
 * walks for every request handle_request() sees, coap_check_async()
 * walks on every I/O pass, and LL_DELETE walks again.  With one push
 * waiting per NSTART = 1 sensor that is O(sensors) per reading: at 1,000
 * sensors it cost two to three times the CPU of the push itself, at
 * 10,000 nothing was answered at all (docs/BENCHMARKS.md, field rows).
 * A separate CON answer costs the same in libcoap's retransmission queue
 * (a sorted list, O(sensors) per insert): hence piggybacked first.
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

#include "compat_libcoap.h"
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
    bool piggybacked;           /* the answer is the request's ACK */
};

static void
key_of(struct wait_key *k, coap_session_t *session, uint16_t mid)
{
    memset(k, 0, sizeof(*k));
    k->session = session;
    k->mid = mid;
}

static struct intake_wait *
find_wait(intake_t *in, coap_session_t *session, const coap_pdu_t *req)
{
    struct intake_wait *w;
    struct wait_key k;

    if (coap_pdu_get_type(req) != COAP_MESSAGE_CON)
        return NULL;
    key_of(&k, session, (uint16_t)coap_pdu_get_mid(req));
    HASH_FIND(hh, in->waits, &k, sizeof(k), w);
    return w;
}

struct intake_wait *
intake__wait_new(intake_t *in, coap_session_t *session, const coap_pdu_t *req,
                 coap_pdu_t *response)
{
    coap_bin_const_t token = coap_pdu_get_token(req);
    coap_opt_iterator_t it;
    coap_opt_t *opt;
    struct intake_wait *w;

    if (token.length > sizeof(w->token) || find_wait(in, session, req) ||
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
    w->piggybacked = response && compat_answer_later(req, response);
    HASH_ADD(hh, in->waits, key, sizeof(w->key), w);
    return w;
}

bool
intake__waiting(intake_t *in, coap_session_t *session, const coap_pdu_t *req)
{
    struct intake_wait *w = find_wait(in, session, req);

    /* The repeat's response stays empty: libcoap sends the empty ACK,
     * which ends the piggybacked answer's chance. */
    if (w)
        w->piggybacked = false;
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
    if (w->piggybacked)
        pdu = coap_pdu_init(COAP_MESSAGE_ACK, COAP_EMPTY_CODE, w->key.mid,
                            coap_session_max_pdu_size(s));
    else
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
