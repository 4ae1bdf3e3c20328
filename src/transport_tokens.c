/*
 * transport_tokens.c - our tokens, and the routing of every response to
 * the handler its request was registered with.  Tokens are 8 bytes, made
 * from a counter mixed with a random base, and valid only on the session
 * they were sent on: a device cannot answer for another.
 *
 * Layer: transport (calls base and libcoap; calls up only through the
 * handlers registered with each request)
 */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <uthash.h>
#include <utlist.h>

#include "coap2mqtt/log.h"
#include "transport_internal.h"

struct pending {
    uint64_t token;
    const struct transport_handler *h;
    void *owner;
    coap_session_t *session;    /* responses must come back on it */
    struct answer_body *body;   /* a block-wise answer coming in, or NULL */
    UT_hash_handle hh;
    struct pending *prev, *next;    /* the session's tokens */
};

/*
 * The tokens of one session, so that a session's end touches its own
 * tokens only.  Walking every token instead (two observations per device)
 * cost 20,000 visits for each of the thousands of half-open sessions freed
 * a second in a reconnect storm: 9.5 % of the gateway's time, the largest
 * single item, with 10,000 devices (bench/reconnect.sh).
 */
struct session_tokens {
    coap_session_t *session;
    struct pending *list;
    UT_hash_handle hh;
};

/* -1 without memory: a token the session's end could not reach would
 * match a later session that libcoap allocates at the same address. */
static int
session_link(transport_t *t, struct pending *p)
{
    struct session_tokens *st;

    HASH_FIND_PTR(t->by_session, &p->session, st);
    if (!st) {
        if (!(st = calloc(1, sizeof(*st))))
            return -1;
        st->session = p->session;
        HASH_ADD_PTR(t->by_session, session, st);
    }
    DL_APPEND(st->list, p);
    return 0;
}

static void
session_unlink(transport_t *t, struct pending *p)
{
    struct session_tokens *st;

    if (!p->session || !p->prev)
        return;             /* detached from its ended session */
    HASH_FIND_PTR(t->by_session, &p->session, st);
    if (!st)
        return;
    DL_DELETE(st->list, p);
    p->prev = p->next = NULL;
    if (!st->list) {
        HASH_DEL(t->by_session, st);
        free(st);
    }
}

void
transport__tokens_init(transport_t *t)
{
    if (getrandom(&t->token_base, sizeof(t->token_base), 0) != sizeof(t->token_base))
        t->token_base = (uint64_t)loop_wall_s() * 2654435761u;
}

static void
pending_free(transport_t *t, struct pending *p)
{
    session_unlink(t, p);
    HASH_DEL(t->pending, p);
    transport__blocks_free(p->body);
    free(p);
}

void
transport__tokens_free(transport_t *t)
{
    struct pending *p, *tmp;

    HASH_ITER(hh, t->pending, p, tmp)
        pending_free(t, p);
}

static uint64_t
token_from_pdu(const coap_pdu_t *pdu, bool *ok)
{
    coap_bin_const_t tok = coap_pdu_get_token(pdu);
    uint64_t v = 0;

    *ok = tok.length == 8;
    for (size_t i = 0; *ok && i < 8; i++)
        v = v << 8 | tok.s[i];
    return v;
}

static uint64_t
next_token(transport_t *t)
{
    /* A counter mixed with a random base: unique for 2^64 requests, and
     * not predictable by a device wanting to answer for another. */
    uint64_t x = t->token_base + ++t->token_next * 0x9E3779B97F4A7C15ULL;

    x ^= x >> 31;
    return x ? x : 1;
}

static struct pending *
find_token(transport_t *t, uint64_t token)
{
    struct pending *p;

    HASH_FIND(hh, t->pending, &token, 8, p);
    return p;
}

/* Our tokens on the wire: 8 bytes, big-endian. */
static void
token_bytes(uint64_t token, uint8_t tok[8])
{
    for (int i = 0; i < 8; i++)
        tok[i] = (uint8_t)(token >> (8 * (7 - i)));
}

static int
register_token(transport_t *t, coap_session_t *session,
               const struct transport_handler *h, void *owner, uint64_t *token)
{
    struct pending *p = calloc(1, sizeof(*p));

    if (!p)
        return -1;
    do
        p->token = next_token(t);
    while (find_token(t, p->token));
    p->h = h;
    p->owner = owner;
    p->session = session;
    if (session && session_link(t, p) < 0) {
        free(p);
        return -1;
    }
    HASH_ADD(hh, t->pending, token, 8, p);
    *token = p->token;
    return 0;
}

static void
add_uri_path(coap_pdu_t *pdu, const char *path)
{
    const char *seg = path;

    while (seg && *seg) {
        size_t n = strcspn(seg, "/");

        coap_add_option(pdu, COAP_OPTION_URI_PATH, n, (const uint8_t *)seg);
        seg += n;
        if (*seg == '/')
            seg++;
    }
}

coap_pdu_t *
transport_request_new(transport_t *t, coap_session_t *session,
                      coap_pdu_type_t type, coap_pdu_code_t code,
                      const char *path, const struct transport_handler *h,
                      void *owner, uint64_t *token)
{
    coap_pdu_t *pdu = coap_pdu_init(type, code, coap_new_message_id(session),
                                    coap_session_max_pdu_size(session));
    uint8_t tok[8];

    if (!pdu)
        return NULL;
    if (!*token && register_token(t, session, h, owner, token) < 0) {
        coap_delete_pdu(pdu);
        return NULL;
    }
    token_bytes(*token, tok);
    coap_add_token(pdu, sizeof(tok), tok);
    add_uri_path(pdu, path);
    return pdu;
}

void
transport_forget(transport_t *t, uint64_t token)
{
    struct pending *p;

    if (!token || !t)
        return;
    if ((p = find_token(t, token)))
        pending_free(t, p);
}

/*
 * Through libcoap's own call: coap_send() of a GET with Observe=1 (4.3.1)
 * put libcoap's internal token on the wire, which the device did not know,
 * and coap_cancel_observe() also lets libcoap drop its record of the
 * observation.
 */
void
transport_cancel_observe(coap_session_t *session, uint64_t token)
{
    uint8_t tok[8];
    coap_binary_t bin = { sizeof(tok), tok };

    token_bytes(token, tok);
    coap_cancel_observe(session, &bin, COAP_MESSAGE_NON);
}

void
transport_send_ack(coap_session_t *session, uint16_t mid)
{
    /* coap_send_ack() takes the CON it answers; only its Message ID and
     * type are read. */
    coap_pdu_t *con = coap_pdu_init(COAP_MESSAGE_CON, COAP_EMPTY_CODE, mid, 4);

    if (con) {
        coap_send_ack(session, con);
        coap_delete_pdu(con);
    }
}

bool
transport_token_live(transport_t *t, uint64_t token, coap_session_t *session)
{
    struct pending *p;

    if (!token || !t || !session)
        return false;
    p = find_token(t, token);
    return p && p->session == session;
}

int
transport_send(transport_t *t, coap_session_t *session, coap_pdu_t *pdu,
               uint64_t token)
{
    if (coap_send(session, pdu) == COAP_INVALID_MID) {
        transport_forget(t, token);
        return -1;
    }
    return 0;
}

static struct pending *
find_pending(transport_t *t, const coap_pdu_t *pdu, coap_session_t *session)
{
    struct pending *p;
    bool ok;
    uint64_t token = token_from_pdu(pdu, &ok);

    if (!ok)
        return NULL;
    p = find_token(t, token);
    /* A token is only valid on the session it was sent on. */
    return p && p->session == session ? p : NULL;
}

/* A session libcoap is about to free: its tokens never match again (their
 * owners forget them). */
void
transport__tokens_session_gone(transport_t *t, coap_session_t *session)
{
    struct session_tokens *st;
    struct pending *p, *tmp;

    HASH_FIND_PTR(t->by_session, &session, st);
    if (!st)
        return;
    DL_FOREACH_SAFE(st->list, p, tmp) {
        p->prev = p->next = NULL;
        p->session = NULL;
        transport__blocks_free(p->body);
        p->body = NULL;
    }
    HASH_DEL(t->by_session, st);
    free(st);
}

coap_response_t
transport__on_response(coap_session_t *session, const coap_pdu_t *sent,
                       const coap_pdu_t *rcvd, const coap_mid_t mid)
{
    transport_t *t = coap_get_app_data(coap_session_get_context(session));
    struct pending *p = find_pending(t, rcvd, session);
    const struct transport_handler *h;
    const coap_pdu_t *whole;
    coap_pdu_t *made, *fixed;
    void *owner;
    bool ok;

    (void)sent;
    (void)mid;
    /*
     * Whatever we answer (ACK, or RST), a retransmission of this CON must
     * reach us again, or a lost answer stalls the device (#1306).  That
     * includes the RST for a notification of an observation we have
     * replaced: without it the device retried in vain for up to 93 s, its
     * other notifications queued behind (NSTART = 1), and the observations
     * of that device stayed dead (test_packet_loss_short, 2 runs in 9).
     */
    compat_forget_last_con_mid(&t->compat, session, rcvd);
    /* A repeat of a CON notification whose ACK waits for its sync
     * (transport_acks.c): one reading, one ACK. */
    if (transport__ack_held(t, session, rcvd)) {
        t->gw->stats.notifications_stale++;
        compat_hold_ack(rcvd);
        return COAP_RESPONSE_OK;
    }
    if (!p || !p->owner) {
        t->gw->stats.unknown_token++;
        /* RFC 7641 3.6: reject a notification we did not ask for, so the
         * device stops sending it. */
        return coap_pdu_get_type(rcvd) == COAP_MESSAGE_CON ||
               coap_pdu_get_type(rcvd) == COAP_MESSAGE_NON
                   ? COAP_RESPONSE_FAIL : COAP_RESPONSE_OK;
    }
    if (!(whole = transport__blocks_take(t, &p->body, session, rcvd, &made)))
        return COAP_RESPONSE_OK;        /* a block: libcoap asks for the next */
    h = p->h;
    owner = p->owner;
    if (h->one_shot)
        transport_forget(t, p->token);  /* one answer per request */
    if ((fixed = transport__oscore_fix_observe(t, session, whole)))
        whole = fixed;
    t->handling = rcvd;
    ok = h->on_response(owner, session, whole);
    if (t->hold_handling)
        compat_hold_ack(rcvd);      /* transport_ack_later() was called */
    t->handling = NULL;
    t->hold_handling = false;
    coap_delete_pdu(made);
    coap_delete_pdu(fixed);
    return ok ? COAP_RESPONSE_OK : COAP_RESPONSE_FAIL;
}

void
transport__on_nack(coap_session_t *session, const coap_pdu_t *sent,
                   const coap_nack_reason_t reason, const coap_mid_t mid)
{
    transport_t *t = coap_get_app_data(coap_session_get_context(session));
    const struct transport_handler *h;
    struct pending *p;
    void *owner;

    (void)mid;
#if defined(LIBCOAP_VERSION) && LIBCOAP_VERSION >= 4003002U
    /*
     * libcoap 4.3.2 and later (4.3.4 checked) hand an ICMP NACK, when no
     * CON of the session is queued, the skeleton it keeps of an Observe or
     * OSCORE request (coap_session_disconnected: &session->lg_crcv->pdu),
     * whose token still points into the request PDU freed long before
     * (coap_block_new_lg_crcv copies the struct): reading it was a
     * use-after-free (ASan, an OSCORE device that went away).  Which
     * request it was cannot be told apart, so none is: the loss is noticed
     * by what waits for an answer (the dial-out probe, retransmissions).
     */
    if (reason == COAP_NACK_ICMP_ISSUE)
        return;
#endif
    /* Our separate answers to pushes (intake_separate.c) carry the
     * device's token, not ours: whatever becomes of them, no request of
     * ours is concerned. */
    if (!sent || COAP_RESPONSE_CLASS(coap_pdu_get_code(sent)) >= 2 ||
        !(p = find_pending(t, sent, session)) || !p->owner)
        return;
    h = p->h;
    owner = p->owner;
    if (h->one_shot)
        transport_forget(t, p->token);
    h->on_nack(owner, reason);
}
