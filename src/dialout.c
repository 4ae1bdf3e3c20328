/*
 * dialout.c - the gateway dials out: each device of the devices list gets
 * a client session on the gateway's own context, its /.well-known/core is
 * fetched (or its observe list taken), and it is registered in the device
 * registry for as long as that session lasts (lifetime 0).  From there on
 * it is an ordinary device: observe.c observes it, commands.c sends it
 * commands, status.c publishes its availability and bridge/devices entry.
 *
 * What this file adds is the client's side of being there:
 *
 *   - silence is probed: after keepalive seconds with nothing from the
 *     device, a NON GET /.well-known/core; nothing by the next tick and the
 *     device is gone.  Readings keep a chatty device alive without probes.
 *   - a device that goes (probe unanswered, RST or retransmissions out on
 *     the discovery GET, DTLS alert, session closed, record removed) is
 *     marked offline and dialled again after 0.5..1 s, then twice as long
 *     each time up to 60 s, jittered (half to all of the nominal delay), so
 *     a plant of devices does not come back in lock step.
 *
 * Sessions are closed from a timer, never inside a libcoap callback (a
 * NACK or an event), because libcoap still uses the session after it.
 *
 * Layer: services (calls devices, transport, base)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <uthash.h>

#include "coap2mqtt/dialout.h"
#include "coap2mqtt/linkformat.h"
#include "coap2mqtt/log.h"
#include "coap2mqtt/transport.h"

#define DIAL_TIMEOUT_MS     10000   /* for the session and the discovery GET */
#define BACKOFF_FIRST_MS    1000    /* nominal first retry (jittered: 0.5..1 s) */
#define BACKOFF_MAX_MS      60000
#define DISCOVERED_KEEPALIVE_S 10   /* as a devices entry's default */
/* Anyone on the lab's link can answer a probe, from any source address it
 * likes; the devices found are kept until the gateway stops, so they are
 * bounded (as the devices list is, config_devices.c). */
#define DISCOVERED_MAX      1024

enum peer_state {
    PEER_IDLE,          /* no session; dialled when 'timer' fires */
    PEER_DIALLING,      /* session open, /.well-known/core asked for */
    PEER_UP,            /* registered; 'timer' is the keepalive tick */
    PEER_CLOSING,       /* gone; its session is closed from 'timer' */
};

struct peer {
    struct dialout *dl;
    const struct config_device *cd;     /* &own */
    struct config_device own;
    char host[256];
    int port;
    bool secure;
    coap_session_t *session;
    enum peer_state state;
    uint64_t timer;
    uint64_t wkc_token;         /* the discovery GET in flight */
    uint64_t probe_token;       /* the keepalive probe in flight */
    bool heard;                 /* something came since the last tick */
    unsigned failures;          /* attempts failed since it was last up */
    bool discovered;            /* found by multicast (discovery.c), not listed:
                                   a reload's devices list leaves it alone */
    UT_hash_handle hh;          /* by own.id */
};

struct dialout {
    struct gw *gw;
    uint64_t rng;               /* xorshift state for the jitter */
    struct peer *by_id;
    unsigned n_discovered;      /* peers of by_id found by multicast */
};

static void dial(loop_t *loop, void *arg);
static void tick(loop_t *loop, void *arg);

static const char *
nack_text(coap_nack_reason_t reason)
{
    switch (reason) {
    case COAP_NACK_TOO_MANY_RETRIES: return "no answer (retransmissions exhausted)";
    case COAP_NACK_NOT_DELIVERABLE: return "not deliverable";
    case COAP_NACK_RST: return "reset (RST)";
    case COAP_NACK_TLS_FAILED: return "DTLS handshake failed";
    case COAP_NACK_ICMP_ISSUE: return "unreachable (ICMP)";
    default: return "refused";
    }
}

static loop_t *
loop_of(struct peer *p)
{
    return p->dl->gw->loop;
}

static void
set_timer(struct peer *p, uint64_t ms, loop_timer_cb cb)
{
    loop_cancel_timer(loop_of(p), p->timer);
    p->timer = loop_add_timer(loop_of(p), ms, cb, p);
}

static void
forget_tokens(struct peer *p)
{
    transport_forget(p->dl->gw->coap, p->wkc_token);
    transport_forget(p->dl->gw->coap, p->probe_token);
    p->wkc_token = p->probe_token = 0;
}

/* Seeded from getrandom(): gateways started together (a power cut on a
 * site) must not draw the same delays either. */
static uint64_t
next_random(struct dialout *dl)
{
    dl->rng ^= dl->rng << 13;
    dl->rng ^= dl->rng >> 7;
    dl->rng ^= dl->rng << 17;
    return dl->rng;
}

/* Half to all of min(60 s, 1 s << failures). */
static uint64_t
backoff_ms(struct dialout *dl, unsigned failures)
{
    uint64_t ms = failures >= 6 ? BACKOFF_MAX_MS
                                : (uint64_t)BACKOFF_FIRST_MS << failures;

    if (ms > BACKOFF_MAX_MS)
        ms = BACKOFF_MAX_MS;
    return ms / 2 + next_random(dl) % (ms / 2 + 1);
}

/* --- going away -------------------------------------------------------------- */

static void
teardown(loop_t *loop, void *arg)
{
    struct peer *p = arg;
    coap_session_t *s = p->session;
    uint64_t ms;

    (void)loop;
    p->timer = 0;
    p->session = NULL;
    p->state = PEER_IDLE;
    /* The registry hears the session end: the device goes offline. */
    transport_client_close(p->dl->gw->coap, s);
    if (p->dl->gw->stopping)
        return;
    ms = backoff_ms(p->dl, p->failures++);
    log_info("device %s: dialling again in %llu ms", p->cd->id,
             (unsigned long long)ms);
    set_timer(p, ms, dial);
}

/* The device is gone, or never came: its session is closed next turn
 * and it is dialled again after the backoff. */
static void
give_up(struct peer *p, const char *why)
{
    if (p->state == PEER_IDLE || p->state == PEER_CLOSING)
        return;
    if (p->state == PEER_UP)
        p->dl->gw->stats.dialout_lost++;
    if (p->state == PEER_UP || p->failures == 0)
        log_warnx("device %s (%s): %s", p->cd->id, p->cd->uri, why);
    else
        log_info("device %s (%s): %s", p->cd->id, p->cd->uri, why);
    forget_tokens(p);
    p->state = PEER_CLOSING;
    set_timer(p, 0, teardown);
}

/* --- what it serves ------------------------------------------------------------ */

static bool
named(const struct config_device *cd, const char *path)
{
    for (int i = 0; i < cd->n_observe; i++)
        if (strcmp(cd->observe[i], path) == 0)
            return true;
    return false;
}

/*
 * Link by link: a device's /.well-known/core may list targets that are no
 * resource path of ours ("</>", absolute URIs); those are skipped, not a
 * reason to take none.  Commas inside quoted values or <...> do not split.
 */
static size_t
parse_links(const char *body, size_t len, struct lf_link *links, size_t max,
            size_t *skipped)
{
    size_t n = 0, start = 0;
    bool quoted = false, angle = false;

    *skipped = 0;
    for (size_t i = 0; i <= len && n < max; i++) {
        char ch = i < len ? body[i] : ',';

        if (ch == '"' && !angle)
            quoted = !quoted;
        else if (ch == '<' && !quoted)
            angle = true;
        else if (ch == '>' && !quoted)
            angle = false;
        if (ch != ',' || quoted || angle)
            continue;
        if (i > start) {
            if (linkformat_parse(body + start, i - start, &links[n], 1, NULL) == 1)
                n++;
            else
                (*skipped)++;
        }
        start = i + 1;
    }
    return n;
}

/* The observe list, when given, decides what is observed: links it names
 * are marked obs, the others not, and paths missing from the device's
 * list are added. */
static size_t
apply_observe(const struct config_device *cd, struct lf_link *links, size_t n,
              size_t max)
{
    if (!cd->n_observe)
        return n;
    for (size_t i = 0; i < n; i++)
        links[i].obs = named(cd, links[i].path);
    for (int j = 0; j < cd->n_observe && n < max; j++) {
        size_t i;

        for (i = 0; i < n && strcmp(links[i].path, cd->observe[j]) != 0; i++)
            ;
        if (i < n)
            continue;
        memset(&links[n], 0, sizeof(links[n]));
        snprintf(links[n].path, sizeof(links[n].path), "%s", cd->observe[j]);
        links[n].obs = true;
        links[n].ct = -1;
        n++;
    }
    return n;
}

/* X.509: the certificate (verified against coap.ca_file) must name the
 * device id or the host of its URI, as its first DNS name or its CN. */
static bool
certified(struct peer *p, coap_session_t *session)
{
    char buf[TOPIC_ID_MAX + 1], why[512];
    const char *named;

    if (!p->secure || p->cd->psk_identity)
        return true;
    named = transport_identity(session, buf, sizeof(buf));
    if (named && (strcmp(named, p->cd->id) == 0 || strcmp(named, p->host) == 0))
        return true;
    snprintf(why, sizeof(why), "its certificate names \"%s\", expected \"%s\" or \"%s\"",
             named ? named : "", p->cd->id, p->host);
    give_up(p, why);
    return false;
}

static void
register_peer(struct peer *p, coap_session_t *session, const coap_pdu_t *rcvd)
{
    struct gw *gw = p->dl->gw;
    struct lf_link *links = calloc(LINKFORMAT_MAX_LINKS, sizeof(*links));
    size_t n = 0, skipped = 0, len = 0;
    const uint8_t *data = NULL;

    if (!links) {
        give_up(p, "out of memory");
        return;
    }
    if (COAP_RESPONSE_CLASS(coap_pdu_get_code(rcvd)) == 2 &&
        coap_get_data(rcvd, &len, &data))
        n = parse_links((const char *)data, len, links, LINKFORMAT_MAX_LINKS, &skipped);
    if (skipped)
        log_info("device %s: %zu links of its /.well-known/core are no "
                 "resource path here, skipped", p->cd->id, skipped);
    n = apply_observe(p->cd, links, n, LINKFORMAT_MAX_LINKS);
    if (!devices_register(gw->devices, p->cd->id, session, 0, links, n)) {
        free(links);
        give_up(p, "no room in the device registry (rd.max_devices, "
                   "or rd.max_unauthenticated for plain CoAP)");
        return;
    }
    free(links);
    p->state = PEER_UP;
    p->failures = 0;
    p->heard = true;
    gw->stats.dialout_up++;
    log_notice("device %s dialled at %s: %zu resources", p->cd->id, p->cd->uri, n);
    set_timer(p, (uint64_t)p->cd->keepalive * 1000, tick);
}

/* The discovery GET's answer: any answer means the device is there (a
 * 4.04 too: a device without /.well-known/core is observed by its
 * observe list, or offers commands only). */
static bool
on_wkc(void *owner, coap_session_t *session, const coap_pdu_t *rcvd)
{
    struct peer *p = owner;
    char why[64];

    p->wkc_token = 0;
    if (p->state != PEER_DIALLING || session != p->session)
        return true;
    if (COAP_RESPONSE_CLASS(coap_pdu_get_code(rcvd)) == 5) {
        snprintf(why, sizeof(why), "/.well-known/core answered %d.%02d",
                 COAP_RESPONSE_CLASS(coap_pdu_get_code(rcvd)),
                 coap_pdu_get_code(rcvd) & 0x1f);
        give_up(p, why);
        return true;
    }
    if (certified(p, session))
        register_peer(p, session, rcvd);
    return true;
}

static void
on_wkc_nack(void *owner, coap_nack_reason_t reason)
{
    struct peer *p = owner;

    p->wkc_token = 0;
    if (p->state == PEER_DIALLING)
        give_up(p, nack_text(reason));
}

static const struct transport_handler wkc_handler = {
    .on_response = on_wkc, .on_nack = on_wkc_nack, .one_shot = true,
};

/* --- silence ------------------------------------------------------------------- */

static bool
on_probe(void *owner, coap_session_t *session, const coap_pdu_t *rcvd)
{
    struct peer *p = owner;

    (void)session;
    (void)rcvd;
    p->probe_token = 0;
    p->heard = true;
    return true;
}

/* A NON probe is not NACKed for lack of an answer: the next tick judges. */
static void
on_probe_nack(void *owner, coap_nack_reason_t reason)
{
    struct peer *p = owner;

    (void)reason;
    p->probe_token = 0;
}

static const struct transport_handler probe_handler = {
    .on_response = on_probe, .on_nack = on_probe_nack, .one_shot = true,
};

static void
send_get(struct peer *p, coap_pdu_type_t type, const struct transport_handler *h,
         uint64_t *token)
{
    transport_t *t = p->dl->gw->coap;
    coap_pdu_t *pdu;

    *token = 0;
    pdu = transport_request_new(t, p->session, type, COAP_REQUEST_CODE_GET,
                                ".well-known/core", h, p, token);
    if (!pdu || transport_send(t, p->session, pdu, *token) < 0)
        *token = 0;
}

static void
tick(loop_t *loop, void *arg)
{
    struct peer *p = arg;
    char why[96];

    (void)loop;
    p->timer = 0;
    if (p->state != PEER_UP)
        return;
    if (p->heard) {
        p->heard = false;
    } else if (p->probe_token) {
        snprintf(why, sizeof(why), "silent, and no answer to a probe within %d s",
                 p->cd->keepalive);
        give_up(p, why);
        return;
    } else {
        send_get(p, COAP_MESSAGE_NON, &probe_handler, &p->probe_token);
        /* A session libcoap will not send on is as good as gone. */
        if (!p->probe_token) {
            give_up(p, "cannot send a probe on its session");
            return;
        }
    }
    set_timer(p, (uint64_t)p->cd->keepalive * 1000, tick);
}

/* --- dialling --------------------------------------------------------------------- */

static void
dial_timeout(loop_t *loop, void *arg)
{
    struct peer *p = arg;

    (void)loop;
    p->timer = 0;
    give_up(p, "no answer to GET /.well-known/core within 10 s");
}

static void
dial(loop_t *loop, void *arg)
{
    struct peer *p = arg;
    struct gw *gw = p->dl->gw;

    (void)loop;
    p->timer = 0;
    if (gw->stopping || p->state != PEER_IDLE)
        return;
    p->session = p->cd->oscore
        ? transport_client_open_oscore(gw->coap, p->host, p->port, p->failures,
                                       p->cd->oscore)
        : transport_client_open(gw->coap, p->host, p->port, p->failures,
                                p->secure, p->cd->psk_identity);
    p->state = PEER_DIALLING;
    if (p->session)
        send_get(p, COAP_MESSAGE_CON, &wkc_handler, &p->wkc_token);
    if (!p->wkc_token) {
        give_up(p, p->session ? "cannot send GET /.well-known/core"
                              : "cannot open a session");
        return;
    }
    set_timer(p, DIAL_TIMEOUT_MS, dial_timeout);
}

/* --- the device listener ------------------------------------------------------------ */

void
dialout_device_event(void *arg, device_t *dev, enum device_event ev)
{
    struct gw *gw = arg;
    struct peer *p;

    if (!gw->dialout)
        return;
    HASH_FIND_STR(gw->dialout->by_id, device_id(dev), p);
    if (!p || p->state != PEER_UP)
        return;
    switch (ev) {
    case DEVICE_AWAKE:
        p->heard = true;
        break;
    case DEVICE_SESSION_LOST:
        give_up(p, "its session ended (DTLS alert or closed)");
        break;
    case DEVICE_FREED:
    case DEVICE_MOVED:
        give_up(p, "its record was removed");
        break;
    default:
        break;
    }
}

/* --- life ------------------------------------------------------------------------- */

/* Closes its session (the device goes offline) and forgets it; 'release'
 * also gives its id back to devices that dial in. */
static void
peer_free(struct dialout *dl, struct peer *p, bool release)
{
    coap_session_t *s = p->session;

    HASH_DEL(dl->by_id, p);
    if (p->discovered)
        dl->n_discovered--;
    loop_cancel_timer(loop_of(p), p->timer);
    forget_tokens(p);
    p->session = NULL;
    p->state = PEER_IDLE;
    transport_client_close(dl->gw->coap, s);
    if (release)
        devices_release(dl->gw->devices, p->own.id);
    config_device_free(&p->own);
    free(p);
}

/* Takes 'p' (its own filled) into the table and dials it from the loop;
 * frees it when its id cannot be reserved. */
static int
peer_start(struct dialout *dl, struct peer *p)
{
    p->dl = dl;
    p->cd = &p->own;
    if (devices_reserve(dl->gw->devices, p->own.id) < 0) {
        log_warnx("device %s: cannot dial %s", p->own.id, p->own.uri);
        config_device_free(&p->own);
        free(p);
        return -1;
    }
    HASH_ADD_KEYPTR(hh, dl->by_id, p->own.id, strlen(p->own.id), p);
    set_timer(p, 0, dial);
    return 0;
}

/* A peer for 'cd' (copied: the configuration it came from may go at a
 * reload), dialled from the loop. */
static int
peer_add(struct dialout *dl, const struct config_device *cd)
{
    struct peer *p = calloc(1, sizeof(*p));

    if (!p || config_device_copy(&p->own, cd) < 0) {
        free(p);
        log_warnx("out of memory");
        return -1;
    }
    if (config_device_uri(cd->uri, &p->secure, p->host, sizeof(p->host), &p->port)) {
        log_warnx("device %s: cannot dial %s", cd->id, cd->uri);
        config_device_free(&p->own);
        free(p);
        return -1;
    }
    return peer_start(dl, p);
}

/* Found again: one waiting for its next attempt is dialled now, since it
 * has just answered; one dialling or up is left as it is. */
static void
peer_found_again(struct peer *p)
{
    if (p->state == PEER_IDLE && !p->dl->gw->stopping) {
        log_info("device %s: answered the multicast probe, dialling now",
                 p->own.id);
        set_timer(p, 0, dial);
    }
}

int
dialout_add_discovered(dialout_t *dl, const char *id, const char *host, int port)
{
    struct peer *p;
    bool v6 = strchr(host, ':') != NULL;

    HASH_FIND_STR(dl->by_id, id, p);
    if (p) {
        if (p->discovered)
            peer_found_again(p);
        return 0;
    }
    if (dl->n_discovered >= DISCOVERED_MAX) {
        log_ratelimited(&dl->n_discovered, "device %s: not taken, %d devices found "
                        "by multicast already", id, DISCOVERED_MAX);
        return -1;
    }
    if (!(p = calloc(1, sizeof(*p))) || !(p->own.id = strdup(id)) ||
        asprintf(&p->own.uri, v6 ? "coap://[%s]:%d" : "coap://%s:%d", host, port) < 0) {
        if (p)
            free(p->own.id);
        free(p);
        log_warnx("out of memory");
        return -1;
    }
    p->own.keepalive = DISCOVERED_KEEPALIVE_S;
    p->discovered = true;
    p->port = port;
    snprintf(p->host, sizeof(p->host), "%s", host);
    log_notice("device %s: found by multicast at %s", id, p->own.uri);
    if (peer_start(dl, p) < 0)
        return -1;
    dl->n_discovered++;
    return 0;
}

static const struct config_device *
listed(const struct config *cfg, const char *id)
{
    for (int i = 0; i < cfg->n_devices; i++)
        if (strcmp(cfg->devices[i].id, id) == 0)
            return &cfg->devices[i];
    return NULL;
}

int
dialout_apply(dialout_t *dl, const struct config *cfg)
{
    struct peer *p, *tmp;
    int rc = 0;

    HASH_ITER(hh, dl->by_id, p, tmp) {
        const struct config_device *cd = listed(cfg, p->own.id);

        /* Found by multicast: not the list's business, unless the list
         * now names it (then it is the list's entry from here on). */
        if (p->discovered && !cd)
            continue;
        if (cd && !p->discovered && config_device_same(cd, &p->own))
            continue;
        log_notice("device %s: %s", p->own.id, p->discovered ? "now in the devices "
                   "list, dialled as listed" : cd ? "changed in the devices list, "
                   "dialled anew" : "no longer in the devices list");
        peer_free(dl, p, !cd);
    }
    for (int i = 0; i < cfg->n_devices; i++) {
        HASH_FIND_STR(dl->by_id, cfg->devices[i].id, p);
        if (!p && peer_add(dl, &cfg->devices[i]) < 0)
            rc = -1;
    }
    return rc;
}

dialout_t *
dialout_new(struct gw *gw)
{
    struct dialout *dl = calloc(1, sizeof(*dl));

    if (!dl) {
        log_warnx("out of memory");
        return NULL;
    }
    dl->gw = gw;
    if (getrandom(&dl->rng, sizeof(dl->rng), 0) != sizeof(dl->rng) || !dl->rng)
        dl->rng = (uint64_t)loop_wall_s() * 2654435761u | 1;
    if (dialout_apply(dl, gw->cfg) < 0) {
        dialout_free(dl);
        return NULL;
    }
    return dl;
}

void
dialout_free(dialout_t *dl)
{
    struct peer *p, *tmp;

    if (!dl)
        return;
    HASH_ITER(hh, dl->by_id, p, tmp)
        peer_free(dl, p, false);
    free(dl);
}
