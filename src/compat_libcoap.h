/*
 * compat_libcoap.h - work-arounds for what libcoap 4.3.1 (Debian 12) does
 * not offer through its API, kept in one room so that the logic around
 * them reads as if the library were right, and so they can go when the
 * library is fixed.  Each says which releases it applies to.
 *
 * Layer: base (knows libcoap and nothing of ours)
 */
#ifndef COAP2MQTT_COMPAT_LIBCOAP_H
#define COAP2MQTT_COMPAT_LIBCOAP_H

#include <sys/epoll.h>
#include <openssl/ssl.h>
#include <coap3/coap.h>

/* State of the #1306 work-around (see compat_libcoap.c). */
struct compat_libcoap {
    long con_mid_offset;    /* of last_con_mid in coap_session_t; -1 unknown, -2 off */
};

void compat_libcoap_init(struct compat_libcoap *c);
/* After a CON response was handled (ACK or RST): let libcoap see its
 * retransmission again, so a lost answer is sent again (#1306). */
void compat_forget_last_con_mid(struct compat_libcoap *c, coap_session_t *s,
                                const coap_pdu_t *rcvd);
/* A batch found sockets empty: learn the field's place again. */
void compat_libcoap_relearn(struct compat_libcoap *c);
/* The socket behind one of libcoap's epoll events, or -1. */
int compat_endpoint_fd(const struct epoll_event *ev);
/* Inside an OpenSSL callback on one of libcoap's DTLS objects (the
 * listening one included): the session whose datagram is being read, or
 * NULL when that cannot be known. */
coap_session_t *compat_dtls_session_of(SSL *ssl);

#endif
