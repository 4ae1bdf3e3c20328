/*
 * intake_blocks.c - request bodies sent block-wise (RFC 7959 Block1), put
 * together here rather than by libcoap, so that the limits hold at every
 * block.
 *
 * Why not libcoap: in 4.3.1 with COAP_BLOCK_SINGLE_BODY it reassembles a
 * Block1 body before any handler runs (block.c,
 * coap_handle_request_put_block): it allocates the size the first block
 * announces in Size1 (up to 4 GiB, coap_block_build_body), answers 2.31
 * to every further block itself, keeps one body per session, resource and
 * Request-Tag until 93 s after its first block, and without Size1 (or
 * once that body has expired) hands the handler a single block as if it
 * were the whole body.  It offers no hook before that, and its block mode
 * is one per session, copied from the context, while the same session
 * carries the requests a device sends us and the requests we send it.  So
 * the transport turns SINGLE_BODY off (transport.c).  libcoap then still
 * parses Block1 and turns our 2.xx to a non-final block into 2.31, but
 * allocates no body and calls the handler with every block: the request
 * rate (coap.max_request_rate) counts each one before it gets here, and
 * the body is put together here:
 *
 *   - a Size1 over coap.max_payload, or blocks adding up past it: 4.13
 *     with Size1 = the limit (RFC 7959 2.9.3), at that block, and the
 *     transfer is dropped;
 *   - in order only: a block with no transfer to continue (never started,
 *     refused, expired), a gap, or a changed Content-Format: 4.08
 *     (2.9.2); a non-final block shorter than its size: 4.00;
 *   - a block sent again (its answer was lost) is answered again and not
 *     added twice; the last block sent again hands out the same body
 *     again, so the handler's own rules for repeats apply (a push's
 *     Message ID);
 *   - memory grows with the bytes received, never with what a device
 *     announces: at most UPLOADS_PER_SESSION transfers per session (a
 *     new one replaces the session's oldest), UPLOADS_MAX in all (a new
 *     one replaces the least recently active), each dropped once idle
 *     for UPLOAD_IDLE_MS (a timer of its own, re-armed at every block).
 *
 * A transfer is keyed by session, identity, handler, path and Request-Tag
 * (RFC 9175).  Session pointers are compared, never followed: a transfer
 * may outlive its session until it goes idle, and the identity in the key
 * keeps a session that later gets the same address from continuing it.
 *
 * Layer: services
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utlist.h>

#include "coap2mqtt/log.h"
#include "coap2mqtt/topics.h"
#include "coap2mqtt/transport.h"
#include "intake_internal.h"

#define UPLOADS_PER_SESSION 2
#define UPLOADS_MAX         64
#define UPLOAD_IDLE_MS      93000   /* RFC 7252 MAX_TRANSMIT_WAIT */
#define TAG_MAX             8       /* Request-Tag bytes (RFC 9175) */

struct upload {
    struct upload *prev, *next;     /* least recently active first */
    intake_t *in;
    const coap_session_t *session;  /* compared, never followed */
    char id[TOPIC_ID_MAX + 1];
    char kind;
    char path[TOPIC_PATH_MAX + 1];
    uint8_t tag[TAG_MAX];
    size_t tag_len;
    int ct;                         /* Content-Format of block 0, -1 none */
    uint8_t *buf;                   /* the body so far */
    size_t len, cap;
    size_t last_offset;             /* where the last block taken starts */
    int first_mid;                  /* Message ID of block 0 */
    bool done;                      /* the last block is in: buf is the body */
    uint64_t idle_timer;
};

/* What one Block1 request brings. */
struct block_req {
    coap_block_b_t b;
    size_t offset;
    const uint8_t *data;
    size_t len;
    bool has_size1;
    uint64_t size1;
    int ct;
    const uint8_t *tag;
    size_t tag_len;
};

intake_t *
intake__new(struct gw *gw)
{
    intake_t *in = calloc(1, sizeof(*in));

    if (in)
        in->gw = gw;
    return in;
}

static void
upload_free(intake_t *in, struct upload *u)
{
    loop_cancel_timer(in->gw->loop, u->idle_timer);
    DL_DELETE(in->uploads, u);
    in->n--;
    free(u->buf);
    free(u);
}

void
intake_free(intake_t *in)
{
    struct upload *u, *tmp;

    if (!in)
        return;
    DL_FOREACH_SAFE(in->uploads, u, tmp)
        upload_free(in, u);
    intake__waits_free(in);
    free(in);
}

static void
idle_expired(loop_t *loop, void *arg)
{
    struct upload *u = arg;

    (void)loop;
    u->idle_timer = 0;
    upload_free(u->in, u);
}

/* A block came: the transfer is the most recently active, and idle only
 * UPLOAD_IDLE_MS from now. */
static void
upload_touch(intake_t *in, struct upload *u)
{
    DL_DELETE(in->uploads, u);
    DL_APPEND(in->uploads, u);
    loop_cancel_timer(in->gw->loop, u->idle_timer);
    u->idle_timer = loop_add_timer(in->gw->loop, UPLOAD_IDLE_MS, idle_expired, u);
}

/* --- the request ---------------------------------------------------------- */

/* False when the request has no Block1 option; -1 when it is malformed. */
static int
block_req_parse(coap_session_t *session, const coap_pdu_t *req, struct block_req *br)
{
    coap_opt_iterator_t it;
    coap_opt_t *opt;

    if (!coap_check_option(req, COAP_OPTION_BLOCK1, &it))
        return 0;
    memset(br, 0, sizeof(*br));
    /* 0 for SZX 7 (BERT, not over UDP) and block numbers past 2^20 - 1. */
    if (!coap_get_block_b(session, req, COAP_OPTION_BLOCK1, &br->b) || br->b.bert)
        return -1;
    br->offset = (size_t)br->b.num << (br->b.szx + 4);
    if (!coap_get_data(req, &br->len, &br->data)) {
        br->len = 0;
        br->data = NULL;
    }
    if ((opt = coap_check_option(req, COAP_OPTION_SIZE1, &it))) {
        br->has_size1 = true;
        br->size1 = coap_decode_var_bytes8(coap_opt_value(opt), coap_opt_length(opt));
    }
    br->ct = (opt = coap_check_option(req, COAP_OPTION_CONTENT_FORMAT, &it))
                 ? (int)coap_decode_var_bytes(coap_opt_value(opt), coap_opt_length(opt))
                 : -1;
    if ((opt = coap_check_option(req, COAP_OPTION_RTAG, &it))) {
        br->tag = coap_opt_value(opt);
        br->tag_len = coap_opt_length(opt);
        if (br->tag_len > TAG_MAX)
            return -1;
    }
    /* Every block but the last is exactly its size (RFC 7959 2.2). */
    if (br->b.m && br->len != (size_t)1 << (br->b.szx + 4))
        return -1;
    return 1;
}

static struct upload *
upload_find(intake_t *in, coap_session_t *session, const char *id, char kind,
            const char *path, const struct block_req *br)
{
    struct upload *u;

    DL_FOREACH(in->uploads, u) {
        if (u->session == session && u->kind == kind && strcmp(u->id, id) == 0 &&
            strcmp(u->path, path) == 0 && u->tag_len == br->tag_len &&
            (!br->tag_len || memcmp(u->tag, br->tag, br->tag_len) == 0))
            return u;
    }
    return NULL;
}

/* Room for one more transfer on 'session': the session's oldest, or the
 * least recently active of all, gives way. */
static void
make_room(intake_t *in, coap_session_t *session)
{
    struct upload *u, *oldest = NULL;
    size_t mine = 0;

    DL_FOREACH(in->uploads, u) {
        if (u->session == session) {
            if (!oldest)
                oldest = u;
            mine++;
        }
    }
    if (mine >= UPLOADS_PER_SESSION) {
        upload_free(in, oldest);
        return;
    }
    if (in->n >= UPLOADS_MAX) {
        log_ratelimited(&in->n, "coap: over %d block-wise transfers at once: "
                        "the least recently active one is dropped", UPLOADS_MAX);
        upload_free(in, in->uploads);
    }
}

static struct upload *
upload_new(intake_t *in, coap_session_t *session, const char *id, char kind,
           const char *path, const struct block_req *br)
{
    struct upload *u;

    make_room(in, session);
    if (!(u = calloc(1, sizeof(*u))))
        return NULL;
    u->in = in;
    u->session = session;
    snprintf(u->id, sizeof(u->id), "%s", id);
    u->kind = kind;
    snprintf(u->path, sizeof(u->path), "%s", path);
    if (br->tag_len)
        memcpy(u->tag, br->tag, br->tag_len);
    u->tag_len = br->tag_len;
    DL_APPEND(in->uploads, u);
    in->n++;
    return u;
}

/* Starts 'u' over with block 0 of 'br'. */
static void
upload_reset(struct upload *u, const struct block_req *br, const coap_pdu_t *req)
{
    u->len = 0;
    u->done = false;
    u->ct = br->ct;
    u->first_mid = coap_pdu_get_mid(req);
}

static bool
upload_append(struct upload *u, const struct block_req *br, size_t max)
{
    size_t need = u->len + br->len;

    if (need > u->cap) {
        size_t cap = u->cap ? u->cap : 1024;
        uint8_t *nb;

        while (cap < need)
            cap *= 2;
        if (cap > max)
            cap = max;
        if (!(nb = realloc(u->buf, cap)))
            return false;
        u->buf = nb;
        u->cap = cap;
    }
    if (br->len)
        memcpy(u->buf + u->len, br->data, br->len);
    u->last_offset = u->len;
    u->len = need;
    return true;
}

/* --- answers -------------------------------------------------------------- */

static void
add_block1(coap_pdu_t *response, const coap_block_b_t *b, bool more)
{
    coap_opt_iterator_t it;
    uint8_t buf[4];

    /* libcoap adds it to a 2.31 when it tracks the transfer too. */
    if (coap_check_option(response, COAP_OPTION_BLOCK1, &it))
        return;
    coap_add_option(response, COAP_OPTION_BLOCK1,
                    coap_encode_var_safe(buf, sizeof(buf),
                                         b->num << 4 | (more ? 8u : 0u) | b->szx),
                    buf);
}

/* 2.31 Continue: the block is in, send the next one. */
static enum intake_body
next_please(coap_pdu_t *response, const struct block_req *br)
{
    coap_pdu_set_code(response, COAP_RESPONSE_CODE(231));
    add_block1(response, &br->b, true);
    return INTAKE_BODY_ANSWERED;
}


/* 4.13 with Size1 = the limit (RFC 7959 2.9.3). */
static enum intake_body
too_large(struct gw *gw, coap_pdu_t *response, const char *id, uint64_t size)
{
    uint8_t buf[4];

    gw->stats.drops_too_large++;
    log_ratelimited(&gw->stats.drops_too_large,
                    "coap: %s: body of %llu bytes or more over coap.max_payload (%d): 4.13",
                    id, (unsigned long long)size, gw->cfg->coap.max_payload);
    coap_add_option(response, COAP_OPTION_SIZE1,
                    coap_encode_var_safe(buf, sizeof(buf),
                                         (unsigned)gw->cfg->coap.max_payload), buf);
    intake__reply(response, 413, "payload over coap.max_payload");
    return INTAKE_BODY_ANSWERED;
}

static enum intake_body
incomplete(struct gw *gw, coap_session_t *session, coap_pdu_t *response,
           const char *id, const char *why)
{
    intake__bad_request(gw, session, response, id, 408, why);
    return INTAKE_BODY_ANSWERED;
}

/* --- the body --------------------------------------------------------------- */

static enum intake_body
whole(intake_t *in, const coap_pdu_t *req, const struct block_req *br,
      const uint8_t *data, size_t len, const uint8_t **out, size_t *out_len)
{
    in->final_req = req;
    in->final_block = br->b;
    *out = data;
    *out_len = len;
    return INTAKE_BODY_WHOLE;
}

/* A block of a transfer that has begun: 'u' (NULL when none). */
static enum intake_body
continue_upload(struct gw *gw, coap_session_t *session, const coap_pdu_t *req,
                coap_pdu_t *response, const char *id, struct upload *u,
                const struct block_req *br, const uint8_t **data, size_t *len)
{
    intake_t *in = gw->intake;
    size_t max = (size_t)gw->cfg->coap.max_payload;

    if (!u)
        return incomplete(gw, session, response, id, "no block-wise transfer to continue");
    upload_touch(in, u);
    if (br->offset < u->len && br->offset + br->len <= u->len) {
        /* Sent again (our answer was lost): answered again, not added. */
        if (br->b.m)
            return next_please(response, br);
        if (u->done && br->offset == u->last_offset)
            return whole(in, req, br, u->buf, u->len, data, len);
    }
    if (u->done || br->offset != u->len) {
        upload_free(in, u);
        return incomplete(gw, session, response, id, "block out of order");
    }
    if (br->ct != u->ct) {
        upload_free(in, u);
        return incomplete(gw, session, response, id, "Content-Format changed");
    }
    if (!upload_append(u, br, max)) {
        upload_free(in, u);
        intake__reply(response, 500, "out of memory");
        return INTAKE_BODY_ANSWERED;
    }
    if (br->b.m)
        return next_please(response, br);
    u->done = true;
    return whole(in, req, br, u->buf, u->len, data, len);
}

enum intake_body
intake__body(struct gw *gw, coap_session_t *session, const coap_pdu_t *req,
             coap_pdu_t *response, const char *id, char kind, const char *path,
             const uint8_t **data, size_t *len)
{
    intake_t *in = gw->intake;
    size_t max = (size_t)gw->cfg->coap.max_payload;
    struct block_req br;
    struct upload *u;
    int rc = block_req_parse(session, req, &br);

    in->final_req = NULL;
    if (rc == 0) {
        /* One datagram, one body. */
        if (!coap_get_data(req, len, data)) {
            *len = 0;
            *data = NULL;
        }
        if (*len > max)
            return too_large(gw, response, id, *len);
        return INTAKE_BODY_WHOLE;
    }
    if (rc < 0) {
        gw->stats.rejected_bad_request++;
        intake__reply(response, 400, "bad Block1 transfer");
        return INTAKE_BODY_ANSWERED;
    }
    u = upload_find(in, session, id, kind, path, &br);
    if ((br.has_size1 && br.size1 > max) || br.offset + br.len > max) {
        if (u)
            upload_free(in, u);
        return too_large(gw, response, id,
                         br.has_size1 && br.size1 > br.offset + br.len ? br.size1
                                                                      : br.offset + br.len);
    }
    if (br.b.num != 0)
        return continue_upload(gw, session, req, response, id, u, &br, data, len);
    if (!br.b.m) {
        /* Block 0 and the last: the whole body in one datagram. */
        if (u)
            upload_free(in, u);
        return whole(in, req, &br, br.data, br.len, data, len);
    }
    if (u && u->first_mid == coap_pdu_get_mid(req) && u->len >= br.len)
        return next_please(response, &br);    /* block 0 sent again */
    if (!u && !(u = upload_new(in, session, id, kind, path, &br))) {
        intake__reply(response, 500, "out of memory");
        return INTAKE_BODY_ANSWERED;
    }
    upload_reset(u, &br, req);
    return continue_upload(gw, session, req, response, id, u, &br, data, len);
}

void
intake__answered(struct gw *gw, const coap_pdu_t *req, coap_pdu_t *response)
{
    intake_t *in = gw->intake;
    bool final = in->final_req == req;

    in->final_req = NULL;
    if (final && COAP_RESPONSE_CLASS(coap_pdu_get_code(response)) == 2)
        add_block1(response, &in->final_block, false);
}
