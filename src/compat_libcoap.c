/*
 * compat_libcoap.c - what libcoap 4.3.1 lacks, done from outside.
 *
 * Layer: base (calls libcoap and log only)
 */
#include <stdbool.h>
#include <string.h>

#include <openssl/err.h>

#include "coap2mqtt/log.h"
#include "compat_libcoap.h"

/*
 * libcoap <= 4.3.4 (issue #1306, fixed in 4.3.5 by c7c3275e) drops a
 * repeated CON response whose Message ID equals session->last_con_mid
 * *without acknowledging it again*.  When our ACK of a CON notification is
 * lost, the device retransmits in vain, holds back its other CON
 * notifications for 62-93 s and then drops the observation: measured at
 * 20 % loss, observations went silent for 30-90 s at a time.
 *
 * The fix is to forget last_con_mid once we have handled the notification,
 * so that a retransmission reaches our handler (which drops it as stale by
 * RFC 7641 3.4) and is acknowledged.  The field is internal.  For 4.3.1
 * only, we locate it from the layout of struct coap_session_t in that
 * release: 76 bytes after the app-data pointer (which we set, so we can
 * find it), and we check that layout against three fields the public API
 * reads - ack_timeout (app + 8), max_retransmit (app + 16) - and against
 * the Message ID libcoap has just stored.  Any mismatch turns the
 * workaround off, with one log line.
 */
#define COAP431_ACK_TIMEOUT_OFF     8
#define COAP431_MAX_RETRANSMIT_OFF  16
#define COAP431_LAST_CON_MID_OFF    76
#define COAP431_SCAN_MAX            4096

/*
 * The state starts unknown (-1) and is learnt once, from the first CON
 * response on a session we know: found (the offset) or off (-2, after one
 * log line).  The layout is the library's and does not change while the
 * process runs, so neither is ever learnt again.  (Until issue 12 it
 * started at 0, taken for a found offset, and every batch of reads that
 * found a socket empty reset it to unknown: a false alarm at start, and
 * after a real mismatch a warning and a rescan again and again.)
 */
void
compat_libcoap_init(struct compat_libcoap *c)
{
    c->con_mid_offset = -1;
}

#if defined(LIBCOAP_VERSION) && LIBCOAP_VERSION == 4003001U
/* Finds the app-data pointer in the session; false when it is not there. */
static bool
find_app_pointer(struct compat_libcoap *c, const char *base, const void *app)
{
    /* The app pointer is 8-aligned and inside the struct: the scan stops
     * there and never reads past it. */
    for (long off = 0; off < COAP431_SCAN_MAX; off += 8) {
        void *v;

        memcpy(&v, base + off, sizeof(v));
        if (v == app) {
            c->con_mid_offset = off + 8 /* sizeof app */;
            return true;
        }
    }
    return false;
}
#endif

static int *
last_con_mid_field(struct compat_libcoap *c, coap_session_t *s, int mid)
{
#if defined(LIBCOAP_VERSION) && LIBCOAP_VERSION == 4003001U
    void *app = coap_session_get_app_data(s);
    coap_fixed_point_t at = coap_session_get_ack_timeout(s);
    uint16_t mr = coap_session_get_max_retransmit(s);
    char *base = (char *)s;
    coap_fixed_point_t at_seen;
    uint16_t mr_seen;
    int mid_seen;

    if (c->con_mid_offset == -2 || !app)
        return NULL;
    if (c->con_mid_offset == -1 && !find_app_pointer(c, base, app))
        goto off;
    memcpy(&at_seen, base + c->con_mid_offset - 8 + COAP431_ACK_TIMEOUT_OFF, sizeof(at_seen));
    memcpy(&mr_seen, base + c->con_mid_offset - 8 + COAP431_MAX_RETRANSMIT_OFF, sizeof(mr_seen));
    memcpy(&mid_seen, base + c->con_mid_offset - 8 + COAP431_LAST_CON_MID_OFF, sizeof(mid_seen));
    if (memcmp(&at, &at_seen, sizeof(at)) != 0 || mr != mr_seen || mid != mid_seen)
        goto off;
    return (int *)(base + c->con_mid_offset - 8 + COAP431_LAST_CON_MID_OFF);
off:
    if (c->con_mid_offset != -2)
        log_warnx("coap: libcoap session layout not as expected; lost ACKs of CON "
                  "notifications will stall observations (libcoap issue #1306)");
    c->con_mid_offset = -2;
    return NULL;
#else
    (void)c;
    (void)s;
    (void)mid;
    return NULL;
#endif
}

void
compat_forget_last_con_mid(struct compat_libcoap *c, coap_session_t *s,
                           const coap_pdu_t *rcvd)
{
    int *field;

    if (coap_pdu_get_type(rcvd) != COAP_MESSAGE_CON)
        return;
    if ((field = last_con_mid_field(c, s, (int)coap_pdu_get_mid(rcvd)))) {
        int none = -1;      /* no Message ID is -1 */

        memcpy(field, &none, sizeof(none));
    }
}

/*
 * handle_response() (net.c, 4.3.1 through 4.3.5) ends with
 * coap_send_ack(session, rcvd), which sends an ACK only for a PDU of type
 * CON; the received PDU is freed right after (coap_dispatch), and nothing
 * else reads its type in between.  So turning it into a NON once the
 * handler is done is the one way to acknowledge later: the library's API
 * offers none for responses.
 */
void
compat_hold_ack(const coap_pdu_t *rcvd)
{
    coap_pdu_set_type((coap_pdu_t *)rcvd, COAP_MESSAGE_NON);
}

/*
 * A request handler cannot tell libcoap "no answer now" (4.3.1 through
 * 4.3.5, net.c handle_request): after it returns, libcoap sends its
 * response, or the empty ACK if it left it empty; only a No-Response
 * option in the request (which the device did not send, and which cannot
 * be added to a request that carries a payload through the API) lets a
 * response be dropped.  One other path drops a response: a 5.08 (Hop
 * Limit Reached) that carries Hop-Limit 1 is taken for a proxy loop by
 * coap_send_internal(), which deletes it, sends nothing and logs "Proxy
 * loop detected" (log.c drops that line: the gateway is no proxy).  That
 * check comes before anything else the send does, also OSCORE's
 * encryption (4.3.4, 4.3.5).  A device's own No-Response makes
 * no_response() turn a dropped class into an empty ACK that is sent, so
 * such a request keeps the empty ACK and a separate answer.
 */
bool
compat_answer_later(const coap_pdu_t *req, coap_pdu_t *response)
{
#if LIBCOAP_VERSION >= 4003001U && LIBCOAP_VERSION <= 4003005U
    coap_opt_iterator_t it;
    uint8_t one = 1;

    if (coap_pdu_get_type(req) != COAP_MESSAGE_CON ||
        coap_check_option(req, COAP_OPTION_NORESPONSE, &it))
        return false;
    if (!coap_add_option(response, COAP_OPTION_HOP_LIMIT, 1, &one))
        return false;
    coap_pdu_set_code(response, COAP_RESPONSE_CODE(508));
    return true;
#else
    (void)req;
    (void)response;
    return false;
#endif
}

/*
 * libcoap's epoll events carry its coap_socket_t, whose first member is
 * the fd (4.3.1 through 4.3.4); its timerfd's event carries NULL.
 */
int
compat_endpoint_fd(const struct epoll_event *ev)
{
    return ev->data.ptr ? *(const int *)ev->data.ptr : -1;
}

/*
 * libcoap 4.3.1 through 4.3.5 (OpenSSL) answer a ClientHello from a new
 * address with DTLSv1_listen() on a listening SSL object of their SSL_CTX,
 * and their cookie callbacks (an HMAC over the session's local and remote
 * addresses, with a secret of the context) find the session in the data of
 * the SSL's BIO: a coap_ssl_data whose first member is the coap_session_t
 * pointer, the same in all those releases.  libcoap never runs that
 * exchange for an address that has a session, so it is run here on an SSL
 * object of the same SSL_CTX whose BIO (ours) reads the one hello, keeps
 * what OpenSSL answers, and carries the established session first, so that
 * libcoap's callbacks make and check the cookie for that address.
 */
#if defined(LIBCOAP_VERSION) && LIBCOAP_VERSION >= 4003001U && LIBCOAP_VERSION <= 4003005U
struct cookie_bio {
    coap_session_t *session;    /* first: libcoap's cookie callbacks read it */
    const uint8_t *in;
    size_t in_len;
    bool read;
    uint8_t *out;
    size_t cap, out_len;
};

static int
cookie_bio_read(BIO *b, char *buf, int len)
{
    struct cookie_bio *c = BIO_get_data(b);

    BIO_clear_retry_flags(b);
    if (c->read || len < 0 || c->in_len > (size_t)len) {
        BIO_set_retry_read(b);
        return -1;
    }
    c->read = true;
    memcpy(buf, c->in, c->in_len);
    return (int)c->in_len;
}

static int
cookie_bio_write(BIO *b, const char *buf, int len)
{
    struct cookie_bio *c = BIO_get_data(b);

    if (len < 0 || c->out_len + (size_t)len > c->cap)
        return -1;
    memcpy(c->out + c->out_len, buf, (size_t)len);
    c->out_len += (size_t)len;
    return len;
}

static long
cookie_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    return cmd == BIO_CTRL_FLUSH || cmd == BIO_CTRL_DGRAM_SET_PEEK_MODE;
}

/* libcoap's info callback expects its session as the SSL's app data. */
static void
quiet_info(const SSL *ssl, int where, int ret)
{
    (void)ssl;
    (void)where;
    (void)ret;
}

/* The session whose datagram a libcoap SSL object reads, or NULL. */
static coap_session_t *
session_of(SSL *ssl)
{
    BIO *bio = SSL_get_rbio(ssl);
    const char *name = bio ? BIO_method_name(bio) : NULL;
    coap_session_t *const *data;

    if (!name || strcmp(name, "coapdgram") != 0 || !(data = BIO_get_data(bio)))
        return NULL;
    return *data;
}
#endif

enum compat_cookie
compat_dtls_cookie_check(coap_session_t *established, const uint8_t *hello,
                         size_t len, uint8_t *out, size_t cap, size_t *out_len)
{
#if defined(LIBCOAP_VERSION) && LIBCOAP_VERSION >= 4003001U && LIBCOAP_VERSION <= 4003005U
    coap_tls_library_t lib = COAP_TLS_LIBRARY_NOTLS;
    SSL *ref = coap_session_get_tls(established, &lib), *ssl = NULL;
    struct cookie_bio c = { established, hello, len, false, out, cap, 0 };
    enum compat_cookie verdict;
    BIO_METHOD *meth = NULL;
    BIO_ADDR *peer = NULL;
    BIO *bio;
    int rc;

    *out_len = 0;
    /* The layout check: libcoap's own BIO of this session names it. */
    if (lib != COAP_TLS_LIBRARY_OPENSSL || !ref || session_of(ref) != established)
        return COMPAT_COOKIE_UNKNOWN;
    verdict = COMPAT_COOKIE_BAD;        /* out of memory: nothing to do */
    if (!(peer = BIO_ADDR_new()) || !(meth = BIO_meth_new(BIO_TYPE_DGRAM, "c2m-cookie")) ||
        !BIO_meth_set_read(meth, cookie_bio_read) ||
        !BIO_meth_set_write(meth, cookie_bio_write) ||
        !BIO_meth_set_ctrl(meth, cookie_bio_ctrl) ||
        !(ssl = SSL_new(SSL_get_SSL_CTX(ref))))
        goto out;
    if (!(bio = BIO_new(meth)))
        goto out;
    BIO_set_data(bio, &c);
    BIO_set_init(bio, 1);
    SSL_set_bio(ssl, bio, bio);
    SSL_set_info_callback(ssl, quiet_info);
    SSL_set_options(ssl, SSL_OP_COOKIE_EXCHANGE);
    rc = DTLSv1_listen(ssl, peer);
    if (rc > 0) {
        verdict = COMPAT_COOKIE_VALID;
    } else if (c.out_len) {
        verdict = COMPAT_COOKIE_ASKED;
        *out_len = c.out_len;
    } else {
        verdict = COMPAT_COOKIE_BAD;    /* OpenSSL would not answer it */
    }
out:
    SSL_free(ssl);              /* and the BIO */
    BIO_ADDR_free(peer);
    BIO_meth_free(meth);
    ERR_clear_error();
    return verdict;
#else
    (void)established;
    (void)hello;
    (void)len;
    (void)out;
    (void)cap;
    *out_len = 0;
    return COMPAT_COOKIE_UNKNOWN;
#endif
}
