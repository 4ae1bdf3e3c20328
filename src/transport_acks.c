/*
 * transport_acks.c - the ACK of a CON response (a CON notification) held
 * back until its reading is safe (queue.durability = "power": the sync
 * that covers its record), so that one fdatasync() covers the
 * notifications of many devices (group commit) instead of one sync per
 * notification on the loop.
 *
 * libcoap 4.3.1 acknowledges a CON response when the response handler
 * returns (net.c, handle_response: coap_send_ack(), which sends only for
 * a PDU of type CON), with no way to say "later".  So the handler asks
 * for the ACK to be held (transport_ack_later), and once it returned, the
 * received PDU's type is turned to NON (compat_hold_ack): libcoap's
 * coap_send_ack() then sends nothing, and the PDU is freed right after.
 * The ACK leaves with transport_ack_end().
 *
 * A repeat of a held CON (the device's ACK_TIMEOUT ran out first: a sync
 * slower than 2 s) is swallowed here, by session and Message ID, without
 * reaching the handler: one reading, one ACK.  When the reading could not
 * be made safe, no ACK goes at all, and the device's next retransmission
 * is a new chance to store it.
 *
 * Layer: transport
 */
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "transport_internal.h"

struct held_key {
    coap_session_t *session;
    uint16_t mid;
};

struct transport_ack {
    UT_hash_handle hh;
    struct held_key key;        /* zeroed first: hashed as bytes */
    transport_t *t;
};

static void
key_of(struct held_key *k, coap_session_t *session, uint16_t mid)
{
    memset(k, 0, sizeof(*k));
    k->session = session;
    k->mid = mid;
}

static struct transport_ack *
find_held(transport_t *t, coap_session_t *session, uint16_t mid)
{
    struct transport_ack *a;
    struct held_key k;

    key_of(&k, session, mid);
    HASH_FIND(hh, t->held_acks, &k, sizeof(k), a);
    return a;
}

struct transport_ack *
transport_ack_later(transport_t *t, coap_session_t *session, const coap_pdu_t *rcvd)
{
    struct transport_ack *a;

    /* Only the datagram being handled (not a body put together from
     * blocks, whose last block was no CON notification) and only once. */
    if (!t || rcvd != t->handling || t->hold_handling ||
        coap_pdu_get_type(rcvd) != COAP_MESSAGE_CON ||
        !(a = calloc(1, sizeof(*a))))
        return NULL;
    key_of(&a->key, coap_session_reference(session), (uint16_t)coap_pdu_get_mid(rcvd));
    a->t = t;
    HASH_ADD(hh, t->held_acks, key, sizeof(a->key), a);
    t->hold_handling = true;
    return a;
}

void
transport_ack_end(struct transport_ack *a, bool ok)
{
    coap_session_t *s = a->key.session;

    if (ok && coap_session_get_state(s) == COAP_SESSION_STATE_ESTABLISHED)
        transport_send_ack(s, a->key.mid);
    HASH_DEL(a->t->held_acks, a);
    coap_session_release(s);
    free(a);
}

bool
transport__ack_held(transport_t *t, coap_session_t *session, const coap_pdu_t *rcvd)
{
    return coap_pdu_get_type(rcvd) == COAP_MESSAGE_CON &&
           find_held(t, session, (uint16_t)coap_pdu_get_mid(rcvd)) != NULL;
}

void
transport__acks_free(transport_t *t)
{
    struct transport_ack *a, *tmp;

    /* Every hold ended when the spool closed (its waiters are called);
     * one left here lost its session with the CoAP context. */
    HASH_ITER(hh, t->held_acks, a, tmp) {
        HASH_DEL(t->held_acks, a);
        free(a);
    }
}
