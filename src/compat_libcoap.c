/*
 * compat_libcoap.c - what libcoap 4.3.1 lacks, done from outside.
 *
 * Layer: base (calls libcoap and log only)
 */
#include <stdbool.h>
#include <string.h>

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
 * The state starts at 0, not -1 (unknown), and every batch that found a
 * socket empty sets it to -1 again (compat_libcoap_relearn): that is how
 * the code behaved when it was moved here.  The review of main (issue 12,
 * item 12) names both as a defect; they are kept as they were so that the
 * structure step changes no behaviour, and are to be fixed with a test.
 */
void
compat_libcoap_init(struct compat_libcoap *c)
{
    c->con_mid_offset = 0;
}

void
compat_libcoap_relearn(struct compat_libcoap *c)
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
 * libcoap's epoll events carry its coap_socket_t, whose first member is
 * the fd (4.3.1 through 4.3.4); its timerfd's event carries NULL.
 */
int
compat_endpoint_fd(const struct epoll_event *ev)
{
    return ev->data.ptr ? *(const int *)ev->data.ptr : -1;
}

/*
 * libcoap 4.3.1 through 4.3.5 (OpenSSL) read a ClientHello through the one
 * listening SSL object of the context, whose app data is NULL: the session
 * is only in the data of its BIO ("coapdgram"), a coap_ssl_data whose first
 * member is the coap_session_t pointer (the same in all those releases).
 * libcoap's own cookie callbacks read it from there; ours need it too.
 */
coap_session_t *
compat_dtls_session_of(SSL *ssl)
{
#if defined(LIBCOAP_VERSION) && LIBCOAP_VERSION >= 4003001U && LIBCOAP_VERSION <= 4003005U
    BIO *bio = ssl ? SSL_get_rbio(ssl) : NULL;
    const char *name = bio ? BIO_method_name(bio) : NULL;
    coap_session_t *const *data;

    if (!name || strcmp(name, "coapdgram") != 0 || !(data = BIO_get_data(bio)))
        return NULL;
    return *data;
#else
    (void)ssl;
    return NULL;
#endif
}
