/*
 * transport_blocks.c - answers sent block-wise (RFC 7959 Block2: a
 * notification or a GET answer too big for one datagram), put together
 * here and handed to the request's handler once, whole, up to
 * coap.max_payload.
 *
 * libcoap asks the device for each next block itself.  It could also put
 * the body together (COAP_BLOCK_SINGLE_BODY), but that mode is one per
 * session, and on a session it also makes libcoap put together the
 * requests devices send us before any handler sees them, allocating
 * whatever size they announce (see intake_blocks.c).  So it is off, and
 * libcoap hands us each block of an answer, with the token of our
 * request.  The handler gets one PDU as the single-body mode made it: the
 * header and options of the last block without Block2 and Size2, the
 * Observe number of the first block (RFC 7959 2.6: only the first block
 * of a notification carries it), and the whole body.
 *
 * Blocks are taken in order only (libcoap asks for them in order).  A body
 * that grows past coap.max_payload is dropped and counted as
 * drops_too_large: a notification is then not published (the observation
 * goes on), and a command's GET whose answer is dropped ends "expired"
 * at its time to live.
 *
 * Layer: transport
 */
#include <stdlib.h>
#include <string.h>

#include "coap2mqtt/log.h"
#include "transport_internal.h"

struct answer_body {
    uint8_t *buf;
    size_t len, cap;
    bool has_obs;
    uint32_t obs;               /* Observe of the first block */
};

void
transport__blocks_free(struct answer_body *b)
{
    if (b) {
        free(b->buf);
        free(b);
    }
}

static void
drop(struct answer_body **bp)
{
    transport__blocks_free(*bp);
    *bp = NULL;
}

static bool
append(struct answer_body *b, const uint8_t *data, size_t len)
{
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        uint8_t *nb;

        while (cap < b->len + len)
            cap *= 2;
        if (!(nb = realloc(b->buf, cap)))
            return false;
        b->buf = nb;
        b->cap = cap;
    }
    if (len)
        memcpy(b->buf + b->len, data, len);
    b->len += len;
    return true;
}

/* The last block 'last' with the whole body instead of its own. */
static coap_pdu_t *
whole_pdu(const coap_pdu_t *last, const struct answer_body *b)
{
    coap_bin_const_t tok = coap_pdu_get_token(last);
    coap_opt_iterator_t it;
    coap_opt_t *opt;
    uint8_t buf[4];
    /* A cap, not an allocation: a datagram's options are below 64 KiB. */
    coap_pdu_t *pdu = coap_pdu_init(coap_pdu_get_type(last), coap_pdu_get_code(last),
                                    coap_pdu_get_mid(last), b->len + 65536);

    if (!pdu || !coap_add_token(pdu, tok.length, tok.s))
        goto fail;
    coap_option_iterator_init(last, &it, COAP_OPT_ALL);
    while ((opt = coap_option_next(&it))) {
        if (it.number == COAP_OPTION_BLOCK2 || it.number == COAP_OPTION_SIZE2 ||
            (it.number == COAP_OPTION_OBSERVE && b->has_obs))
            continue;
        if (!coap_add_option(pdu, it.number, coap_opt_length(opt), coap_opt_value(opt)))
            goto fail;
    }
    if (b->has_obs &&
        !coap_add_option(pdu, COAP_OPTION_OBSERVE,
                         coap_encode_var_safe(buf, sizeof(buf), b->obs), buf))
        goto fail;
    if (b->len && !coap_add_data(pdu, b->len, b->buf))
        goto fail;
    return pdu;
fail:
    coap_delete_pdu(pdu);
    return NULL;
}

static void
too_large(transport_t *t, coap_session_t *session, size_t len)
{
    char peer[64];

    t->gw->stats.drops_too_large++;
    log_ratelimited(&t->gw->stats.drops_too_large,
                    "coap: block-wise answer from %s over coap.max_payload (%d): "
                    "%zu bytes or more, dropped",
                    transport_peer(session, peer, sizeof(peer)),
                    t->gw->cfg->coap.max_payload, len);
}

const coap_pdu_t *
transport__blocks_take(transport_t *t, struct answer_body **bp, coap_session_t *session,
                       const coap_pdu_t *rcvd, coap_pdu_t **made)
{
    size_t max = (size_t)t->gw->cfg->coap.max_payload;
    const uint8_t *data = NULL;
    size_t len = 0, offset;
    coap_block_b_t b;
    struct answer_body *body;

    *made = NULL;
    if (COAP_RESPONSE_CLASS(coap_pdu_get_code(rcvd)) != 2 ||
        !coap_get_block_b(session, rcvd, COAP_OPTION_BLOCK2, &b) ||
        (b.num == 0 && !b.m)) {
        drop(bp);
        return rcvd;        /* not block-wise: as it is */
    }
    if (!coap_get_data(rcvd, &len, &data))
        len = 0;
    offset = (size_t)b.num << (b.szx + 4);
    if (b.num == 0) {
        coap_opt_iterator_t it;
        coap_opt_t *obs = coap_check_option(rcvd, COAP_OPTION_OBSERVE, &it);

        drop(bp);
        if (!(*bp = calloc(1, sizeof(**bp))))
            return NULL;
        (*bp)->has_obs = obs != NULL;
        (*bp)->obs = obs ? coap_decode_var_bytes(coap_opt_value(obs), coap_opt_length(obs))
                         : 0;
    }
    body = *bp;
    if (!body || offset != body->len) {
        drop(bp);           /* not the next block (or one of a dropped body) */
        return NULL;
    }
    if (body->len + len > max) {
        too_large(t, session, body->len + len);
        drop(bp);
        return NULL;
    }
    if (!append(body, data, len)) {
        drop(bp);
        return NULL;
    }
    if (b.m)
        return NULL;        /* libcoap has asked for the next one */
    *made = whole_pdu(rcvd, body);
    drop(bp);
    return *made;
}
