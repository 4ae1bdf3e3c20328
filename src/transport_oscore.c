/*
 * transport_oscore.c - OSCORE (RFC 8613) on plain CoAP, with libcoap's
 * own implementation (4.3.2 and later, built with it; C2M_HAVE_OSCORE):
 *
 *   - each context of the oscore list gets its Sender Sequence Number
 *     from state_dir/oscore/<id>.seq and saves it there (fdatasync, then
 *     rename) before a message that uses a number beyond the saved one
 *     leaves, so a restart never reuses a nonce (RFC 8613 7.2.1);
 *   - the contexts no devices entry names are devices that dial in: they
 *     go to libcoap as server contexts (coap_context_oscore_server);
 *   - a devices entry that names one is dialled with
 *     coap_new_client_session_oscore() (transport_client_open_oscore);
 *   - who sent a protected request: libcoap 4.3.4 decrypts it and hands
 *     the handler the inner request, without the OSCORE option and with no
 *     API that says which context verified it.  So each plain datagram is
 *     peeked before libcoap reads it: a request's OSCORE option names the
 *     Recipient ID (kid, and kid context) that libcoap looks the context
 *     up by; the handler runs only when it verified.  An endpoint with
 *     plain datagrams is then read one datagram per event, so the one
 *     peeked is the one libcoap reads.  An address an OSCORE device has
 *     used gets no unprotected request through afterwards (dropped,
 *     counted), else the plain-CoAP fallback would take them as that
 *     device's.
 *
 * Layer: transport
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uthash.h>

#include "coap2mqtt/log.h"
#include "coap2mqtt/topics.h"
#include "transport_internal.h"

#ifdef C2M_HAVE_OSCORE

/* Saved every this many numbers: a restart skips at most as many. */
#define SSN_FREQ        16
#define CONF_TEXT_MAX   1024

struct osc_rec {
    transport_t *t;
    char id[TOPIC_ID_MAX + 1];
    char conf[CONF_TEXT_MAX];       /* libcoap's oscore_conf text */
    uint8_t rid[CONFIG_OSCORE_ID_MAX];
    size_t rid_len;
    uint8_t idctx[CONFIG_OSCORE_CONTEXT_MAX];
    size_t idctx_len;
    bool has_idctx;
    bool dialin;
    uint64_t seq;                   /* the number saved last: next start */
    char path[PATH_MAX];
};

/* What the last request peeked from one address was. */
enum { PEER_PLAIN = -1, PEER_FOREIGN = -2, PEER_AMBIGUOUS = -3 };

struct osc_peer {
    struct transport_addr_key key;
    int current;                    /* index of a dial-in context, or PEER_* */
    bool bound;                     /* an OSCORE device was verified here */
    int owner;                      /* ... this one (index) */
    struct osc_rec *dialout;        /* a device dialled with this context */
    uint8_t piv[3];                 /* the last response's Partial IV (low */
    size_t piv_len;                 /* 3 bytes), peeked in batch piv_batch */
    uint64_t piv_batch;
    uint64_t batch;                 /* the batch it was last peeked in */
    UT_hash_handle hh;
};

struct transport_oscore {
    struct osc_rec *recs;
    size_t n, n_dialin;
    struct osc_peer *peers;
    size_t n_dialling;              /* peers with a dialout */
};

static struct osc_peer *peer_of(struct transport_oscore *o, const struct transport_addr_key *k,
                                bool make);

/* --- sequence numbers ----------------------------------------------------- */

/* The rename into 'path' survives a power cut once its directory is synced. */
static int
sync_dir(const char *path)
{
    char dir[PATH_MAX];
    char *slash;
    int fd, rc;

    snprintf(dir, sizeof(dir), "%s", path);
    if (!(slash = strrchr(dir, '/')))
        return 0;
    *slash = '\0';
    if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

static int
seq_save(uint64_t seq, void *param)
{
    struct osc_rec *r = param;
    char tmp[PATH_MAX + 8], text[32];
    int fd, n, ok;

    /* A session dialled later in this run starts here even when the file
     * cannot be written. */
    r->seq = seq;
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", r->path) >= (int)sizeof(tmp))
        return 0;
    n = snprintf(text, sizeof(text), "%" PRIu64 "\n", seq);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ok = fd >= 0 && write(fd, text, (size_t)n) == n && fdatasync(fd) == 0;
    if (fd >= 0 && close(fd) < 0)
        ok = 0;
    if (!ok || rename(tmp, r->path) < 0 || sync_dir(r->path) < 0) {
        /* libcoap sends the message anyway (4.3.4 ignores the result). */
        log_err("oscore %s: cannot save the sequence number to %s: %s", r->id,
                r->path, strerror(errno));
        return 0;
    }
    return 1;
}

static int
seq_load(struct osc_rec *r)
{
    char text[32], *end;
    ssize_t n;
    int fd = open(r->path, O_RDONLY | O_CLOEXEC);

    if (fd < 0 && errno == ENOENT) {
        log_notice("oscore %s: no %s yet: sequence numbers start at 0 (a new "
                   "context)", r->id, r->path);
        r->seq = 0;
        return 0;
    }
    if (fd < 0) {
        log_err("oscore %s: cannot read %s: %s", r->id, r->path, strerror(errno));
        return -1;
    }
    n = read(fd, text, sizeof(text) - 1);
    close(fd);
    text[n > 0 ? n : 0] = '\0';
    errno = 0;
    r->seq = strtoull(text, &end, 10);
    if (n <= 0 || errno || end == text || (*end && *end != '\n')) {
        /* Starting anywhere could reuse nonces: refuse instead. */
        log_err("oscore %s: %s is damaged; refusing to guess the sequence "
                "number (restore it, or give the context a new master_secret, "
                "master_salt or id_context)", r->id, r->path);
        return -1;
    }
    return 0;
}

/* --- the contexts ------------------------------------------------------------ */

static size_t
unhex(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = strlen(hex) / 2;

    for (size_t i = 0; i < n && i < cap; i++) {
        unsigned v;

        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
    return n < cap ? n : cap;
}

/* libcoap's configuration text (coap-oscore-conf(5)); the values were
 * checked by config_oscore.c (hex only, so nothing needs quoting). */
static int
conf_text(struct osc_rec *r, const struct config_oscore *o)
{
    int n = snprintf(r->conf, sizeof(r->conf),
                     "master_secret,hex,\"%s\"\nsender_id,hex,\"%s\"\n"
                     "recipient_id,hex,\"%s\"\nreplay_window,integer,%d\n"
                     "ssn_freq,integer,%d\naead_alg,text,%s\n"
                     "%s%s%s%s%s%s",
                     o->master_secret, o->sender_id, o->recipient_id,
                     o->replay_window, SSN_FREQ, o->aead,
                     o->master_salt ? "master_salt,hex,\"" : "",
                     o->master_salt ? o->master_salt : "",
                     o->master_salt ? "\"\n" : "",
                     o->id_context ? "id_context,hex,\"" : "",
                     o->id_context ? o->id_context : "",
                     o->id_context ? "\"\n" : "");

    return n > 0 && (size_t)n < sizeof(r->conf) ? 0 : -1;
}

static coap_oscore_conf_t *
new_conf(struct osc_rec *r)
{
    coap_str_const_t text = { strlen(r->conf), (const uint8_t *)r->conf };

    return coap_new_oscore_conf(text, seq_save, r, r->seq);
}

static int
rec_init(transport_t *t, struct osc_rec *r, const struct config_oscore *o,
         const char *dir)
{
    const struct config *cfg = t->gw->cfg;

    r->t = t;
    snprintf(r->id, sizeof(r->id), "%s", o->id);
    r->dialin = config_oscore_dialin(cfg, o);
    r->rid_len = unhex(o->recipient_id, r->rid, sizeof(r->rid));
    if ((r->has_idctx = o->id_context != NULL))
        r->idctx_len = unhex(o->id_context, r->idctx, sizeof(r->idctx));
    if (snprintf(r->path, sizeof(r->path), "%s/%s.seq", dir, o->id) >= (int)sizeof(r->path) ||
        conf_text(r, o) < 0) {
        log_err("oscore %s: settings too long", o->id);
        return -1;
    }
    return seq_load(r);
}

static int
server_context(transport_t *t, struct osc_rec *r)
{
    coap_oscore_conf_t *conf = new_conf(r);

    if (!conf || !coap_context_oscore_server(t->ctx, conf)) {
        log_err("oscore %s: libcoap refused the context (see its message above)", r->id);
        return -1;
    }
    log_notice("oscore %s: devices that dial in with recipient id of %zu bytes "
               "are \"%s\" (sequence number from %" PRIu64 ")", r->id, r->rid_len,
               r->id, r->seq);
    return 0;
}

int
transport__oscore_start(transport_t *t)
{
    const struct config *cfg = t->gw->cfg;
    struct transport_oscore *o;
    char dir[PATH_MAX];

    if (!cfg->n_oscore)
        return 0;
    if (!coap_oscore_is_supported()) {
        log_err("oscore: this libcoap (%s) was built without OSCORE",
                coap_package_version());
        return -1;
    }
    if (snprintf(dir, sizeof(dir), "%s/oscore", cfg->state_dir) >= (int)sizeof(dir) ||
        (mkdir(dir, 0700) < 0 && errno != EEXIST)) {
        log_err("oscore: cannot make %s/oscore: %s", cfg->state_dir, strerror(errno));
        return -1;
    }
    if (!(o = t->oscore = calloc(1, sizeof(*o))) ||
        !(o->recs = calloc((size_t)cfg->n_oscore, sizeof(*o->recs)))) {
        log_err("oscore: out of memory");
        return -1;
    }
    /* Dial-in contexts first: libcoap looks a request's context up in
     * this order (oscore_find_context), as the peek does. */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < cfg->n_oscore; i++) {
            struct osc_rec *r = &o->recs[o->n];

            if (config_oscore_dialin(cfg, &cfg->oscore[i]) != (pass == 0))
                continue;
            if (rec_init(t, r, &cfg->oscore[i], dir) < 0 ||
                (r->dialin && server_context(t, r) < 0))
                return -1;
            o->n++;
            o->n_dialin += r->dialin;
        }
    return 0;
}

void
transport__oscore_free(transport_t *t)
{
    struct transport_oscore *o = t->oscore;
    struct osc_peer *p, *tmp;

    if (!o)
        return;
    HASH_ITER(hh, o->peers, p, tmp) {
        HASH_DEL(o->peers, p);
        free(p);
    }
    free(o->recs);
    free(o);
    t->oscore = NULL;
}

static struct osc_rec *
find_rec(transport_t *t, const char *id)
{
    for (size_t i = 0; t->oscore && i < t->oscore->n; i++)
        if (strcmp(t->oscore->recs[i].id, id) == 0)
            return &t->oscore->recs[i];
    return NULL;
}

/*
 * libcoap 4.3.4 adds the context each client session derives to the
 * context's list for good (coap_oscore_initiate: nothing removes it when
 * the session goes), so every dial leaves one behind until exit; each
 * starts at the number saved last, so none reuses a nonce.
 */
coap_session_t *
transport__oscore_client(transport_t *t, const coap_address_t *dst, const char *id)
{
    struct osc_rec *r = find_rec(t, id);
    coap_oscore_conf_t *conf;
    coap_session_t *s;
    struct osc_peer *p;
    struct transport_addr_key k;

    if (!r || r->dialin) {
        log_warnx("oscore: no context \"%s\" for dialling", id);
        return NULL;
    }
    if (!(conf = new_conf(r)))
        return NULL;
    /* The conf is freed by the call, except when the session itself
     * cannot be made (4.3.4, a socket error): then it leaks. */
    if (!(s = coap_new_client_session_oscore(t->ctx, NULL, dst, COAP_PROTO_UDP, conf)))
        return NULL;
    /* Its answers must come protected: libcoap (4.3.4, and 4.3.5) hands
     * an unprotected one to the handler as if it were (coap_dispatch
     * decrypts only what carries the option), which would let anyone who
     * can send from the device's address write readings.  The peek drops
     * them. */
    if (transport__addr_key(&dst->addr.sa, &k) && (p = peer_of(t->oscore, &k, true))) {
        if (!p->dialout)
            t->oscore->n_dialling++;
        p->dialout = r;
    }
    return s;
}

/* --- who sent a protected request ------------------------------------------------ */

static struct osc_peer *
peer_of(struct transport_oscore *o, const struct transport_addr_key *k, bool make)
{
    struct osc_peer *p;

    HASH_FIND(hh, o->peers, k, sizeof(*k), p);
    if (p || !make)
        return p;
    if (!(p = calloc(1, sizeof(*p))))
        return NULL;
    p->key = *k;
    p->current = PEER_PLAIN;
    HASH_ADD(hh, o->peers, key, sizeof(p->key), p);
    return p;
}

static const char *
addr_text(const struct sockaddr_storage *ss, char *buf, size_t cap)
{
    coap_address_t a;

    coap_address_init(&a);
    a.size = ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                       : sizeof(struct sockaddr_in);
    memcpy(&a.addr, ss, a.size);
    buf[coap_print_addr(&a, (unsigned char *)buf, cap - 1)] = '\0';
    return buf;
}

/* The OSCORE option's value of a CoAP message with a code (a request or
 * a response), if it has one: 1 and *opt and *len; 0 without; -1 when the
 * datagram is none such (or malformed: libcoap refuses it then). */
static int
oscore_option(const uint8_t *b, size_t n, const uint8_t **opt, size_t *len)
{
    size_t i, tkl, number = 0;

    if (n < 4 || (b[0] >> 6) != 1 || (tkl = b[0] & 0x0f) > 8 || b[1] == 0)
        return -1;
    for (i = 4 + tkl; i < n && b[i] != 0xff;) {
        size_t delta = b[i] >> 4, olen = b[i] & 0x0f;

        i++;
        for (int f = 0; f < 2; f++) {
            size_t *v = f ? &olen : &delta;

            if (*v == 13 && i < n)
                *v = 13 + b[i++];
            else if (*v == 14 && i + 1 < n) {
                *v = 269 + ((size_t)b[i] << 8) + b[i + 1];
                i += 2;
            } else if (*v >= 13)
                return -1;
        }
        number += delta;
        if (i + olen > n)
            return -1;
        if (number == COAP_OPTION_OSCORE) {
            *opt = b + i;
            *len = olen;
            return 1;
        }
        if (number > COAP_OPTION_OSCORE)
            return 0;
        i += olen;
    }
    return 0;
}

/* The dial-in context a request's OSCORE option names (its kid and kid
 * context, RFC 8613 6.1), as libcoap 4.3.4's oscore_find_context() would
 * find it; PEER_FOREIGN when none. */
static int
context_named(struct transport_oscore *o, const uint8_t *v, size_t len)
{
    size_t n = len ? v[0] & 0x07 : 0, i = 1, ctx_len = 0;
    const uint8_t *ctx = NULL;
    bool has_kid = len && (v[0] & 0x08), has_ctx = len && (v[0] & 0x10);

    if (!has_kid || (v[0] & 0xe0) || 1 + n > len)
        return PEER_FOREIGN;
    i += n;
    if (has_ctx) {
        if (i >= len || i + 1 + v[i] > len)
            return PEER_FOREIGN;
        ctx_len = v[i];
        ctx = v + i + 1;
        i += 1 + ctx_len;
    }
    for (size_t r = 0; r < o->n_dialin; r++) {
        const struct osc_rec *rec = &o->recs[r];

        if (rec->rid_len != len - i || memcmp(rec->rid, v + i, len - i) != 0)
            continue;
        if (rec->has_idctx ? (ctx_len == rec->idctx_len &&
                              (!ctx_len || memcmp(ctx, rec->idctx, ctx_len) == 0))
                           : ctx_len == 0)
            return (int)r;
    }
    return PEER_FOREIGN;
}

/* The Partial IV of a response's OSCORE option (RFC 8613 6.1), its low
 * three bytes as an Observe value would be. */
static void
note_piv(struct osc_peer *p, const uint8_t *v, size_t len, uint64_t batch)
{
    size_t n = len ? v[0] & 0x07 : 0;

    p->piv_len = 0;
    p->piv_batch = batch;
    if (n == 0 || n > 5 || 1 + n > len)
        return;
    p->piv_len = n > 3 ? 3 : n;
    memcpy(p->piv, v + 1 + (n - p->piv_len), p->piv_len);
}

/* Reads the peeked datagram off the socket, so libcoap never sees it. */
static enum transport_peek
drop(transport_t *t, int fd, const struct sockaddr_storage *ss, const char *what,
     const char *id)
{
    uint8_t byte;
    char peer[64];

    if (recv(fd, &byte, sizeof(byte), MSG_DONTWAIT) < 0)
        return PEEK_ONE;
    t->gw->stats.oscore_unprotected++;
    log_ratelimited(&t->gw->stats.oscore_unprotected,
                    "oscore: unprotected %s from %s (OSCORE device \"%s\") dropped",
                    what, addr_text(ss, peer, sizeof(peer)), id);
    return PEEK_SKIP;
}

enum transport_peek
transport__oscore_peek(transport_t *t, const struct epoll_event *ev, uint64_t batch)
{
    struct transport_oscore *o = t->oscore;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    uint8_t buf[1500];
    const uint8_t *opt = NULL;
    size_t olen = 0;
    struct transport_addr_key k;
    struct osc_peer *p;
    int fd = compat_endpoint_fd(ev), rc;
    ssize_t n;

    if (!o || (!o->n_dialin && !o->n_dialling) || fd < 0 || !(ev->events & EPOLLIN))
        return PEEK_ANY;
    n = recvfrom(fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT,
                 (struct sockaddr *)&ss, &sl);
    if (n < 4 || (buf[0] >> 6) != 1 || !transport__addr_key((struct sockaddr *)&ss, &k))
        return PEEK_ANY;                /* DTLS, or nothing to read */
    /* Empty messages (ACK, RST, ping) are never protected. */
    if ((rc = oscore_option(buf, (size_t)n, &opt, &olen)) < 0)
        return PEEK_ONE;
    p = peer_of(o, &k, false);
    if (p && p->dialout && rc == 0)
        return drop(t, fd, &ss, (buf[1] >> 5) ? "response" : "request", p->dialout->id);
    if ((buf[1] >> 5) != 0) {           /* a response: libcoap matches it */
        if (p && rc > 0)
            note_piv(p, opt, olen, batch);
        return PEEK_ONE;
    }
    if (!o->n_dialin)
        return PEEK_ONE;
    if (!p && rc > 0)
        p = peer_of(o, &k, true);
    if (!p)
        return PEEK_ONE;
    /* Unprotected, from where an OSCORE device is: not let through, else
     * the plain-CoAP fallback would take it as that device's. */
    if (rc == 0 && p->bound)
        return drop(t, fd, &ss, "request", o->recs[p->owner].id);
    /* The same address on two endpoints in one batch: which one libcoap
     * reads first is not known, so neither names anybody. */
    if (p->batch == batch)
        p->current = PEER_AMBIGUOUS;
    else
        p->current = rc > 0 ? context_named(o, opt, olen) : PEER_PLAIN;
    p->batch = batch;
    return PEEK_ONE;
}

const char *
transport__oscore_identity(transport_t *t, coap_session_t *session)
{
    struct transport_oscore *o = t->oscore;
    const coap_address_t *a;
    struct transport_addr_key k;
    struct osc_peer *p;

    if (!o || !o->n_dialin || coap_session_get_proto(session) != COAP_PROTO_UDP ||
        coap_session_get_type(session) != COAP_SESSION_TYPE_SERVER ||
        !(a = coap_session_get_addr_remote(session)) || !transport__addr_key(&a->addr.sa, &k) ||
        !(p = peer_of(o, &k, false)) || p->current < 0)
        return NULL;
    /* Asked while its request is handled: libcoap verified it. */
    p->bound = true;
    p->owner = p->current;
    return o->recs[p->current].id;
}

/* 'rcvd' with 'value' as its Observe option. */
static coap_pdu_t *
with_observe(const coap_pdu_t *rcvd, const uint8_t *value, size_t len)
{
    coap_bin_const_t tok = coap_pdu_get_token(rcvd);
    const uint8_t *data = NULL;
    size_t dlen = 0;
    coap_opt_iterator_t it;
    coap_opt_t *opt;
    coap_pdu_t *pdu;

    coap_get_data(rcvd, &dlen, &data);
    /* A cap, not an allocation: a datagram's options are below 64 KiB. */
    pdu = coap_pdu_init(coap_pdu_get_type(rcvd), coap_pdu_get_code(rcvd),
                        coap_pdu_get_mid(rcvd), dlen + 65536);
    if (!pdu || !coap_add_token(pdu, tok.length, tok.s))
        goto fail;
    coap_option_iterator_init(rcvd, &it, COAP_OPT_ALL);
    while ((opt = coap_option_next(&it)))
        if (!(it.number == COAP_OPTION_OBSERVE
                  ? coap_add_option(pdu, it.number, len, value)
                  : coap_add_option(pdu, it.number, coap_opt_length(opt),
                                    coap_opt_value(opt))))
            goto fail;
    if (dlen && !coap_add_data(pdu, dlen, data))
        goto fail;
    return pdu;
fail:
    coap_delete_pdu(pdu);
    return NULL;
}

coap_pdu_t *
transport__oscore_fix_observe(transport_t *t, coap_session_t *session,
                              const coap_pdu_t *rcvd)
{
    struct transport_oscore *o = t->oscore;
    const coap_address_t *a;
    coap_opt_iterator_t it;
    struct transport_addr_key k;
    struct osc_peer *p;

    if (!o || !o->n || coap_session_get_proto(session) != COAP_PROTO_UDP ||
        !coap_check_option(rcvd, COAP_OPTION_OBSERVE, &it) ||
        !(a = coap_session_get_addr_remote(session)) || !transport__addr_key(&a->addr.sa, &k) ||
        !(p = peer_of(o, &k, false)) || p->piv_batch != t->batches || !p->piv_len)
        return NULL;
    return with_observe(rcvd, p->piv, p->piv_len);
}

void
transport__oscore_session_gone(transport_t *t, coap_session_t *session)
{
    struct transport_oscore *o = t->oscore;
    const coap_address_t *a;
    struct transport_addr_key k;
    struct osc_peer *p;

    if (!o || !(a = coap_session_get_addr_remote(session)) || !transport__addr_key(&a->addr.sa, &k) ||
        !(p = peer_of(o, &k, false)))
        return;
    if (p->dialout)
        o->n_dialling--;
    HASH_DEL(o->peers, p);
    free(p);
}

#else /* !C2M_HAVE_OSCORE: config.c refused every oscore setting */

coap_pdu_t *
transport__oscore_fix_observe(transport_t *t, coap_session_t *session,
                              const coap_pdu_t *rcvd)
{
    (void)t;
    (void)session;
    (void)rcvd;
    return NULL;
}

int
transport__oscore_start(transport_t *t)
{
    (void)t;
    return 0;
}

void
transport__oscore_free(transport_t *t)
{
    (void)t;
}

coap_session_t *
transport__oscore_client(transport_t *t, const coap_address_t *dst, const char *id)
{
    (void)t;
    (void)dst;
    log_warnx("oscore: \"%s\": this build has no OSCORE", id);
    return NULL;
}

enum transport_peek
transport__oscore_peek(transport_t *t, const struct epoll_event *ev, uint64_t batch)
{
    (void)t;
    (void)ev;
    (void)batch;
    return PEEK_ANY;
}

const char *
transport__oscore_identity(transport_t *t, coap_session_t *session)
{
    (void)t;
    (void)session;
    return NULL;
}

void
transport__oscore_session_gone(transport_t *t, coap_session_t *session)
{
    (void)t;
    (void)session;
}

#endif
