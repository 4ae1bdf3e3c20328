/*
 * intake.c - what devices can ask of the gateway.
 *
 *   POST   /rd?ep=<id>&lt=<s>   register (link-format body)      2.01
 *   POST   /rd/<id>[?lt=<s>]    refresh (optional new body)     2.04
 *   DELETE /rd/<id>             leave                           2.02
 *   POST|PUT /ps/<path...>      push one reading                2.04
 *
 * Every request is judged by the DTLS identity of its session, never by
 * what the packet claims.  Path segments are validated as the device sent
 * them (raw Uri-Path options), not after libcoap's percent-encoding.
 * A CON push is answered 2.04 only when the reading is safe (on stable
 * storage, or at the broker): in the request's ACK once it is, a sync
 * later (intake_separate.c).
 * Bodies sent block-wise reach these handlers block by block, and
 * intake_blocks.c puts them together under the limits.
 *
 * Layer: services (calls base, the transport's identities, the device
 * registry and the outbound path; libcoap calls it for each request)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coap2mqtt/devices.h"
#include "coap2mqtt/intake.h"
#include "coap2mqtt/keystore.h"
#include "coap2mqtt/linkformat.h"
#include "coap2mqtt/log.h"
#include "coap2mqtt/outbound.h"
#include "coap2mqtt/readings.h"
#include "coap2mqtt/spool.h"
#include "coap2mqtt/topics.h"
#include "coap2mqtt/transport.h"
#include "intake_internal.h"

#define MAX_SEGMENTS (TOPIC_PATH_DEPTH + 1)
#define RETRY_AFTER_S 10        /* Max-Age on 5.03: when to try again */

struct seg {
    const uint8_t *s;
    size_t len;
};

/* --- request parsing --------------------------------------------------- */

/* Raw Uri-Path segments; -1 when there are too many. */
static int
uri_segments(const coap_pdu_t *req, struct seg *segs, size_t max)
{
    coap_opt_iterator_t it;
    coap_opt_filter_t f;
    coap_opt_t *opt;
    size_t n = 0;

    coap_option_filter_clear(&f);
    coap_option_filter_set(&f, COAP_OPTION_URI_PATH);
    coap_option_iterator_init(req, &it, &f);
    while ((opt = coap_option_next(&it))) {
        if (n == max)
            return -1;
        segs[n].s = coap_opt_value(opt);
        segs[n].len = coap_opt_length(opt);
        n++;
    }
    return (int)n;
}

static bool
seg_is(const struct seg *s, const char *lit)
{
    return s->len == strlen(lit) && memcmp(s->s, lit, s->len) == 0;
}

/* Joins segments into "a/b/c" and validates it as a resource path. */
static int
join_path(const struct seg *segs, size_t n, char *out, size_t cap)
{
    size_t o = 0;

    if (n == 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        /* A '/' or NUL inside one segment would forge extra topic levels. */
        if (memchr(segs[i].s, '/', segs[i].len) || memchr(segs[i].s, 0, segs[i].len))
            return -1;
        if (o + segs[i].len + 2 > cap)
            return -1;
        if (i)
            out[o++] = '/';
        memcpy(out + o, segs[i].s, segs[i].len);
        o += segs[i].len;
    }
    out[o] = '\0';
    return topic_path_valid(out, o) ? 0 : -1;
}

/* Finds "name=value" among the Uri-Query options; copies value. */
static int
query_value(const coap_pdu_t *req, const char *name, char *out, size_t cap)
{
    coap_opt_iterator_t it;
    coap_opt_filter_t f;
    coap_opt_t *opt;
    size_t nl = strlen(name);

    coap_option_filter_clear(&f);
    coap_option_filter_set(&f, COAP_OPTION_URI_QUERY);
    coap_option_iterator_init(req, &it, &f);
    while ((opt = coap_option_next(&it))) {
        const uint8_t *v = coap_opt_value(opt);
        size_t len = coap_opt_length(opt);

        if (len > nl && memcmp(v, name, nl) == 0 && v[nl] == '=') {
            if (len - nl - 1 >= cap || memchr(v + nl + 1, 0, len - nl - 1))
                return -1;
            memcpy(out, v + nl + 1, len - nl - 1);
            out[len - nl - 1] = '\0';
            return 1;
        }
    }
    return 0;
}

/* lt= within the configured bounds; *lt untouched when absent. */
static int
parse_lifetime(struct gw *gw, const coap_pdu_t *req, uint32_t *lt)
{
    char buf[16], *end;
    unsigned long v;
    int rc = query_value(req, "lt", buf, sizeof(buf));

    if (rc <= 0)
        return rc;
    v = strtoul(buf, &end, 10);
    if (*end || end == buf || v < (unsigned long)gw->cfg->rd.min_lifetime ||
        v > (unsigned long)gw->cfg->rd.max_lifetime)
        return -1;
    *lt = (uint32_t)v;
    return 1;
}

static bool
option_uint(const coap_pdu_t *pdu, coap_option_num_t num, uint32_t *v)
{
    coap_opt_iterator_t it;
    coap_opt_t *opt = coap_check_option(pdu, num, &it);

    if (!opt)
        return false;
    *v = coap_decode_var_bytes(coap_opt_value(opt), coap_opt_length(opt));
    return true;
}

/* --- responses ------------------------------------------------------------ */

/* An error code with a short diagnostic payload (RFC 7252 5.5.2). */
void
intake__reply(coap_pdu_t *response, int code, const char *diag)
{
    coap_pdu_set_code(response, COAP_RESPONSE_CODE(code));
    if (diag)
        coap_add_data(response, strlen(diag), (const uint8_t *)diag);
}

static void
reply_busy(coap_pdu_t *response, const char *diag)
{
    uint8_t buf[4];

    coap_add_option(response, COAP_OPTION_MAXAGE,
                    coap_encode_var_safe(buf, sizeof(buf), RETRY_AFTER_S), buf);
    intake__reply(response, 503, diag);
}

/* coap.max_request_rate: false (after answering 5.03) when over it. */
static bool
within_rate(struct gw *gw, const char *id, coap_pdu_t *response)
{
    device_t *dev = devices_find(gw->devices, id);
    uint8_t buf[4];

    if (!dev || device_allow_request(dev, loop_now_ms(gw->loop)))
        return true;
    gw->stats.requests_throttled++;
    log_ratelimited(&gw->stats.requests_throttled,
                    "coap: %s over coap.max_request_rate (%d/s): 5.03", id,
                    gw->cfg->coap.max_request_rate);
    coap_add_option(response, COAP_OPTION_MAXAGE,
                    coap_encode_var_safe(buf, sizeof(buf), 1), buf);
    intake__reply(response, 503, "too many requests");
    return false;
}

/* The session's authenticated identity, usable as a device id; else
 * answers 4.01 and returns NULL. */
static const char *
identity_or_reply(struct gw *gw, coap_session_t *session, char *buf, size_t cap,
                  coap_pdu_t *response)
{
    const char *id = transport_identity(session, buf, cap);

    /* Plain CoAP (lab use only) has no authentication: the session is
     * bound to the ep it registered with. */
    if (!id && coap_session_get_proto(session) == COAP_PROTO_UDP &&
        coap_session_get_app_data(session)) {
        snprintf(buf, cap, "%s", device_id(coap_session_get_app_data(session)));
        id = buf;
    }
    if (!id || !topic_id_valid(id, strlen(id))) {
        char peer[64];

        gw->stats.rejected_unauthenticated++;
        log_ratelimited(&gw->stats.rejected_unauthenticated,
                        "coap: request from %s without a usable identity refused",
                        transport_peer(session, peer, sizeof(peer)));
        intake__reply(response, 401, "no usable identity");
        return NULL;
    }
    return id;
}

/* A malformed request: counted, logged (rate-limited), answered 'code'
 * (4.00, or 4.08 for a block-wise transfer out of order). */
void
intake__bad_request(struct gw *gw, coap_session_t *session, coap_pdu_t *response,
                    const char *id, int code, const char *why)
{
    char peer[64];

    gw->stats.rejected_bad_request++;
    log_ratelimited(&gw->stats.rejected_bad_request, "coap: %s (%s): %s%s", id,
                    transport_peer(session, peer, sizeof(peer)), why,
                    code == 408 ? ": 4.08" : "");
    intake__reply(response, code, why);
}

/* Parses a link-format body; returns the count or -1 after replying. */
static int
parse_links(struct gw *gw, coap_session_t *session, const coap_pdu_t *req,
            coap_pdu_t *response, const char *id, const uint8_t *data, size_t len,
            struct lf_link *links)
{
    uint32_t ct;
    const char *err = NULL;
    int n;

    if (option_uint(req, COAP_OPTION_CONTENT_FORMAT, &ct) &&
        ct != COAP_MEDIATYPE_APPLICATION_LINK_FORMAT) {
        gw->stats.rejected_bad_request++;
        intake__reply(response, 415, "registration body must be link-format (ct 40)");
        return -1;
    }
    n = linkformat_parse((const char *)data, len, links, LINKFORMAT_MAX_LINKS, &err);
    if (n < 0) {
        intake__bad_request(gw, session, response, id, 400, err ? err : "bad link-format");
        return -1;
    }
    return n;
}

/* --- /rd --------------------------------------------------------------------- */

/* An id that an authenticated identity owns: one of the PSK file, or one
 * that has been on a DTLS session (a certificate's too), even if its
 * record has been forgotten since. */
static bool
owned_by_dtls(struct gw *gw, const char *id)
{
    size_t klen;

    return devices_id_authenticated(gw->devices, id) ||
           (gw->keys && keystore_lookup(gw->keys, (const uint8_t *)id, strlen(id), &klen));
}

/*
 * Who is registering: on DTLS the session's identity (answers 4.01 when it
 * has none).  On plain CoAP (lab use) nothing can be checked, so a valid
 * ep= becomes the id - but never one that a DTLS device owns (4.03).
 * NULL after replying.  *ep_rc is query_value()'s result for ep=.
 */
static const char *
registrant(struct gw *gw, coap_session_t *session, const coap_pdu_t *req,
           coap_pdu_t *response, char *ep, char *idbuf, size_t cap, int *ep_rc)
{
    char peer[64];

    *ep_rc = query_value(req, "ep", ep, TOPIC_ID_MAX + 1);
    /* (transport_identity: an OSCORE device's is authenticated too) */
    if (*ep_rc <= 0 || coap_session_get_proto(session) != COAP_PROTO_UDP ||
        transport_identity(session, idbuf, cap) ||
        coap_session_get_app_data(session) || !topic_id_valid(ep, strlen(ep)))
        return identity_or_reply(gw, session, idbuf, cap, response);
    if (owned_by_dtls(gw, ep)) {
        gw->stats.rejected_identity++;
        log_ratelimited(&gw->stats.rejected_identity,
                        "coap: plain CoAP registration from %s as \"%s\" refused: "
                        "an authenticated identity", transport_peer(session, peer, sizeof(peer)),
                        ep);
        intake__reply(response, 403, "this identity must use DTLS");
        return NULL;
    }
    snprintf(idbuf, cap, "%s", ep);
    return idbuf;
}

/* An id of the devices list is the device the gateway dials; anyone
 * registering or pushing under it on a session of its own is refused
 * (4.03), so the two can never share a record. */
static bool
not_dialled(struct gw *gw, coap_session_t *session, coap_pdu_t *response,
            const char *id)
{
    char peer[64];

    if (!devices_reserved(gw->devices, id))
        return true;
    gw->stats.rejected_dialout_id++;
    log_ratelimited(&gw->stats.rejected_dialout_id,
                    "coap: request from %s as \"%s\" refused: the gateway dials "
                    "that device out (devices list)",
                    transport_peer(session, peer, sizeof(peer)), id);
    intake__reply(response, 403, "a device the gateway dials out to");
    return false;
}

/* ep= (when given) must be the authenticated identity; else 4.03. */
static bool
ep_matches(struct gw *gw, coap_session_t *session, coap_pdu_t *response,
           int ep_rc, const char *ep, const char *id)
{
    char peer[64];

    if (ep_rc == 0 || (ep_rc > 0 && strcmp(ep, id) == 0))
        return true;
    gw->stats.rejected_identity++;
    log_ratelimited(&gw->stats.rejected_identity,
                    "coap: registration from %s refused: ep is not the DTLS identity \"%s\"",
                    transport_peer(session, peer, sizeof(peer)), id);
    intake__reply(response, 403, "ep must equal the DTLS identity");
    return false;
}

/* Room in the registry for 'id' (new ones only); else 5.03 after counting
 * and logging why. */
static bool
admitted(struct gw *gw, coap_session_t *session, coap_pdu_t *response, const char *id)
{
    char peer[64];

    switch (devices_room(gw->devices, id, session)) {
    case DEVICES_ROOM:
        return true;
    case DEVICES_FULL_UNAUTHENTICATED:
        gw->stats.registrations_refused_unauthenticated++;
        log_ratelimited(&gw->stats.registrations_refused_unauthenticated,
                        "coap: plain CoAP registration of \"%s\" from %s refused: "
                        "its share of the registry (rd.max_unauthenticated = %d) is taken",
                        id, transport_peer(session, peer, sizeof(peer)),
                        gw->cfg->rd.max_unauthenticated);
        reply_busy(response, "registry full for plain CoAP");
        return false;
    default:
        gw->stats.rejected_capacity++;
        reply_busy(response, "device registry full");
        return false;
    }
}

static void
register_device(struct gw *gw, coap_session_t *session, const coap_pdu_t *req,
                coap_pdu_t *response)
{
    struct lf_link links[LINKFORMAT_MAX_LINKS];
    char idbuf[TOPIC_ID_MAX + 1], ep[TOPIC_ID_MAX + 1];
    uint32_t lt = (uint32_t)gw->cfg->rd.default_lifetime;
    const uint8_t *data;
    size_t len;
    const char *id;
    int n, ep_rc;

    if (gw->stopping) {
        reply_busy(response, "gateway stopping");
        return;
    }
    if (!(id = registrant(gw, session, req, response, ep, idbuf, sizeof(idbuf), &ep_rc)) ||
        !not_dialled(gw, session, response, id) ||
        !within_rate(gw, id, response) ||
        !ep_matches(gw, session, response, ep_rc, ep, id))
        return;
    if (parse_lifetime(gw, req, &lt) < 0) {
        intake__bad_request(gw, session, response, id, 400, "lt out of range");
        return;
    }
    if (intake__body(gw, session, req, response, id, 'r', "", &data, &len) !=
            INTAKE_BODY_WHOLE ||
        (n = parse_links(gw, session, req, response, id, data, len, links)) < 0 ||
        !admitted(gw, session, response, id))
        return;
    if (!devices_register(gw->devices, id, session, lt, links, (size_t)n)) {
        gw->stats.rejected_capacity++;
        reply_busy(response, "device registry full");
        return;
    }
    gw->stats.registrations++;
    coap_pdu_set_code(response, COAP_RESPONSE_CODE(201));
    coap_add_option(response, COAP_OPTION_LOCATION_PATH, 2, (const uint8_t *)"rd");
    coap_add_option(response, COAP_OPTION_LOCATION_PATH, strlen(id),
                    (const uint8_t *)id);
}

static void
hnd_register(coap_resource_t *resource, coap_session_t *session,
             const coap_pdu_t *req, const coap_string_t *query,
             coap_pdu_t *response)
{
    struct gw *gw = coap_resource_get_userdata(resource);

    (void)query;
    register_device(gw, session, req, response);
    intake__answered(gw, req, response);
}

/* POST or DELETE /rd/<id>; 'id' is the authenticated identity. */
static void
rd_entry(struct gw *gw, coap_session_t *session, const coap_pdu_t *req,
         coap_pdu_t *response, const char *id, const struct seg *target)
{
    device_t *dev;

    if (target->len != strlen(id) || memcmp(target->s, id, target->len) != 0) {
        gw->stats.rejected_identity++;
        intake__reply(response, 403, "not your registration");
        return;
    }
    dev = devices_find(gw->devices, id);
    if (!dev || !device_registered(dev)) {
        intake__reply(response, 404, "not registered");
        return;
    }
    if (coap_pdu_get_code(req) == COAP_REQUEST_CODE_DELETE) {
        gw->stats.deregistrations++;
        devices_deregister(dev);
        coap_pdu_set_code(response, COAP_RESPONSE_CODE(202));
        return;
    }
    {
        struct lf_link links[LINKFORMAT_MAX_LINKS];
        uint32_t lt = device_lifetime(dev);
        const uint8_t *data;
        size_t len;
        int n = -1;

        if (parse_lifetime(gw, req, &lt) < 0) {
            intake__bad_request(gw, session, response, id, 400, "lt out of range");
            return;
        }
        if (intake__body(gw, session, req, response, id, 'u', "", &data, &len) !=
            INTAKE_BODY_WHOLE)
            return;
        if (len && (n = parse_links(gw, session, req, response, id, data, len, links)) < 0)
            return;
        gw->stats.refreshes++;
        devices_refresh(dev, session, lt, links, n);
        coap_pdu_set_code(response, COAP_RESPONSE_CODE(204));
    }
}

/* --- /ps ---------------------------------------------------------------------- */

/* The end of a CON push's wait: its 2.04 once the reading is safe, else
 * 5.03 (the device sends it again). */
static void
push_done(void *arg, bool delivered)
{
    struct intake_wait *w = arg;
    coap_session_t *session = intake__wait_session(w);
    device_t *dev = coap_session_get_app_data(session);
    struct gw *gw = intake__wait_gw(w);
    coap_pdu_t *answer = intake__wait_answer_pdu(w);

    /* Until now repeats were the wait's (intake__waiting); from
     * now on a repeat is ours to judge: a duplicate only if the reading is
     * safe, else a new attempt. */
    if (delivered && dev)
        device_mid_taken(dev, intake__wait_mid(w), loop_now_ms(gw->loop));
    if (answer) {
        if (delivered)
            coap_pdu_set_code(answer, COAP_RESPONSE_CODE(204));
        else
            reply_busy(answer, "reading not stored, send again");
    }
    intake__wait_end(w, answer);
}

/* A CON push to be answered later (its response is no longer the
 * handler's: see intake__wait_new), its wait for push_done().  NULL when
 * it cannot be. */
static struct intake_wait *
push_wait_new(struct gw *gw, coap_session_t *session, const coap_pdu_t *req,
              coap_pdu_t *response)
{
    return intake__wait_new(gw->intake, session, req, response);
}

/* Arranges for a CON push to be answered when 'm' is safe.  -1 if not. */
static int
await_safe(struct gw *gw, coap_session_t *session, const coap_pdu_t *req,
           coap_pdu_t *response, outmsg_t *m)
{
    /* The PUBACK comes in milliseconds while the broker is there: then
     * the 2.04 rides in the ACK; in an outage the empty ACK goes now. */
    struct intake_wait *w = push_wait_new(gw, session, req,
                                          outbound_flowing(gw) ? response : NULL);

    if (!w)
        return -1;
    m->done = push_done;
    m->done_arg = w;
    return 0;
}

/*
 * The outbound message of a push, or NULL when it cannot be taken.  The
 * room is checked first: once its wait is set up, the push must not
 * fail.  Without a spool, "safe" means the broker's PUBACK, so a CON push
 * waits for it (its done callback answers the device).
 */
static outmsg_t *
push_message(struct gw *gw, coap_session_t *session, const coap_pdu_t *req,
             coap_pdu_t *response, const char *id, const char *path, const uint8_t *data, size_t len)
{
    bool con = coap_pdu_get_type(req) == COAP_MESSAGE_CON;
    uint32_t ct;
    outmsg_t *m;

    if (!gw->spool && con && outq_len(gw->outq) >= outq_max(gw->outq))
        return NULL;
    m = reading_message(gw, id, path, data, len,
                        con ? gw->cfg->mqtt.qos_con : gw->cfg->mqtt.qos_non,
                        option_uint(req, COAP_OPTION_CONTENT_FORMAT, &ct) ? (int)ct : -1);
    if (m && con && !gw->spool && await_safe(gw, session, req, response, m) < 0) {
        free(m);
        m = NULL;
    }
    return m;
}

/*
 * queue.durability = "power": the push's record 'seq' is written but may
 * not be on stable storage yet.  Answered 2.04 now if it is; else the
 * 2.04 (or 5.03) goes when the sync that covers it ends (group commit, spool_durable.c); without a wait (out of memory)
 * the loop syncs here.  True: answer 2.04 now; false: the wait answers
 * later, or (none set up) the reading cannot be made safe.
 */
static bool
answer_when_durable(struct gw *gw, coap_session_t *session, const coap_pdu_t *req,
                    coap_pdu_t *response, uint64_t seq, bool *waiting)
{
    struct intake_wait *w;

    if (spool_is_safe(gw->spool, seq))
        return true;
    if (!(w = push_wait_new(gw, session, req, response)))
        return spool_make_safe(gw->spool, seq) == 0;
    *waiting = true;
    if (spool_when_safe(gw->spool, seq, push_done, w) < 0)
        push_done(w, spool_make_safe(gw->spool, seq) == 0);
    return false;
}

/*
 * A CON push the spool took ('before': the last record number before it).
 * "power": the 2.04 waits for the record's sync, unless it is already
 * safe; a reading queued in memory only (a QoS 0 CON push the spool could
 * not take) is not safe at all.  False when it is answered (5.03) or will
 * be (a wait).
 */
static bool
spooled_push_safe(struct gw *gw, coap_session_t *session, const coap_pdu_t *req,
                  coap_pdu_t *response, uint64_t before)
{
    bool waiting = false;

    if (spool_last_seq(gw->spool) == before) {
        if (!config_durability_power(gw->cfg))
            return true;
    } else if (answer_when_durable(gw, session, req, response, spool_last_seq(gw->spool),
                                   &waiting)) {
        return true;
    } else if (waiting) {
        return false;
    }
    reply_busy(response, "reading not stored, send again");
    return false;
}

static void
push(struct gw *gw, coap_session_t *session, const coap_pdu_t *req,
     coap_pdu_t *response, const char *id, const struct seg *segs, size_t n)
{
    bool con = coap_pdu_get_type(req) == COAP_MESSAGE_CON;
    char path[TOPIC_PATH_MAX + 1];
    const uint8_t *data;
    size_t len;
    outmsg_t *m;
    device_t *dev;
    bool waiting;
    uint64_t seq;

    if (join_path(segs, n, path, sizeof(path)) < 0) {
        intake__bad_request(gw, session, response, id, 400, "invalid push path");
        return;
    }
    /* A block of a longer body is answered by intake__body (2.31, or
     * 4.13 past coap.max_payload); its last block brings the whole body. */
    if (intake__body(gw, session, req, response, id, 'p', path, &data, &len) !=
        INTAKE_BODY_WHOLE)
        return;
    if (!(dev = devices_seen(gw->devices, id, session))) {
        gw->stats.rejected_capacity++;
        reply_busy(response, "device registry full");
        return;
    }
    /* A repeat of a push we took: our answer was lost, answer again and
     * publish once.  A repeat of a push we refused (5.03) is judged anew:
     * answered 2.04 it would make the device delete a reading never
     * stored (issue 12, item 2). */
    if (con && device_duplicate_mid(dev, (uint16_t)coap_pdu_get_mid(req),
                                    loop_now_ms(gw->loop))) {
        gw->stats.duplicates_in++;
        coap_pdu_set_code(response, COAP_RESPONSE_CODE(204));
        return;
    }
    gw->stats.pushes_in++;
    m = push_message(gw, session, req, response, id, path, data, len);
    waiting = m && m->done;
    seq = spool_last_seq(gw->spool);
    if (!outbound_put(gw, m, "push from", id)) {
        /* A waiting push is answered 5.03 by its done callback. */
        if (!waiting)
            reply_busy(response, "gateway queue full");
        return;
    }
    if (con && gw->spool && !spooled_push_safe(gw, session, req, response, seq))
        return;
    /* With the spool the reading is on disk now: 2.04 at once.  Without,
     * a CON push gets its 2.04 at PUBACK (push_done remembers its Message
     * ID then). */
    if (con && !waiting)
        device_mid_taken(dev, (uint16_t)coap_pdu_get_mid(req), loop_now_ms(gw->loop));
    if (!con || gw->spool)
        coap_pdu_set_code(response, COAP_RESPONSE_CODE(204));
}

/* --- dispatch ----------------------------------------------------------------- */

static void
dispatch(struct gw *gw, coap_session_t *session, const coap_pdu_t *req,
         coap_pdu_t *response)
{
    struct seg segs[MAX_SEGMENTS];
    char idbuf[TOPIC_ID_MAX + 1];
    const char *id;
    int n;

    if (!(id = identity_or_reply(gw, session, idbuf, sizeof(idbuf), response)) ||
        !not_dialled(gw, session, response, id))
        return;
    if (!within_rate(gw, id, response))
        return;
    n = uri_segments(req, segs, MAX_SEGMENTS);
    if (n < 0) {
        intake__bad_request(gw, session, response, id, 400, "path too deep");
        return;
    }
    if (n == 2 && seg_is(&segs[0], "rd") &&
        (coap_pdu_get_code(req) == COAP_REQUEST_CODE_POST ||
         coap_pdu_get_code(req) == COAP_REQUEST_CODE_DELETE)) {
        rd_entry(gw, session, req, response, id, &segs[1]);
    } else if (n >= 2 && seg_is(&segs[0], "ps") &&
               (coap_pdu_get_code(req) == COAP_REQUEST_CODE_POST ||
                coap_pdu_get_code(req) == COAP_REQUEST_CODE_PUT)) {
        if (gw->stopping)
            reply_busy(response, "gateway stopping");
        else
            push(gw, session, req, response, id, segs + 1, (size_t)n - 1);
    } else {
        intake__reply(response, 404, NULL);
    }
}

static void
hnd_dynamic(coap_resource_t *resource, coap_session_t *session,
            const coap_pdu_t *req, const coap_string_t *query,
            coap_pdu_t *response)
{
    struct gw *gw = coap_resource_get_userdata(resource);

    (void)query;
    /* A repeat of a push still waiting for its answer (the wait outlived
     * the device's patience, or our empty ACK was lost): the empty ACK
     * (the response left empty), and nothing else. */
    if (intake__waiting(gw->intake, session, req)) {
        gw->stats.duplicates_in++;
        return;
    }
    dispatch(gw, session, req, response);
    intake__answered(gw, req, response);
}

int
intake_register(struct gw *gw)
{
    coap_context_t *ctx = transport_context(gw->coap);
    coap_resource_t *rd = coap_resource_init(coap_make_str_const("rd"), 0);
    coap_resource_t *dyn = coap_resource_unknown_init2(hnd_dynamic, 0);

    if (!(gw->intake = intake__new(gw)) || !rd || !dyn) {
        log_warnx("coap: cannot add the /rd and /ps resources");
        return -1;
    }
    coap_resource_set_userdata(rd, gw);
    coap_resource_set_userdata(dyn, gw);
    coap_register_request_handler(rd, COAP_REQUEST_POST, hnd_register);
    coap_add_attr(rd, coap_make_str_const("rt"), coap_make_str_const("\"core.rd\""), 0);
    coap_add_attr(rd, coap_make_str_const("ct"), coap_make_str_const("40"), 0);
    coap_add_resource(ctx, rd);
    coap_register_request_handler(dyn, COAP_REQUEST_POST, hnd_dynamic);
    coap_register_request_handler(dyn, COAP_REQUEST_DELETE, hnd_dynamic);
    coap_add_resource(ctx, dyn);
    return 0;
}
