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

#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <openssl/ssl.h>
#include <coap3/coap.h>

/* State of the #1306 work-around (see compat_libcoap.c). */
struct compat_libcoap {
    long con_mid_offset;    /* of last_con_mid in coap_session_t; -1 unknown
                             * (at start), -2 off; learnt once */
};

void compat_libcoap_init(struct compat_libcoap *c);
/* After a CON response was handled (ACK or RST): let libcoap see its
 * retransmission again, so a lost answer is sent again (#1306). */
void compat_forget_last_con_mid(struct compat_libcoap *c, coap_session_t *s,
                                const coap_pdu_t *rcvd);
/* Called after the response handler saw 'rcvd' (a CON response): libcoap
 * 4.3.1 through 4.3.5 will not acknowledge it when the handler returns,
 * the caller sends the ACK later (transport_acks.c). */
void compat_hold_ack(const coap_pdu_t *rcvd);
/* Called by a request handler that will send the piggybacked answer of
 * CON request 'req' itself, later (an ACK with the request's Message ID):
 * arranges that libcoap sends nothing when the handler returns.  False
 * when this libcoap cannot be kept from answering: the handler then
 * leaves 'response' as it was (libcoap sends the empty ACK). */
bool compat_answer_later(const coap_pdu_t *req, coap_pdu_t *response);
/* compat_bind.c: while on, every bind() (libcoap's coap_new_endpoint
 * included) sets SO_REUSEPORT on the socket first, so several endpoints
 * can share one port. */
void compat_bind_share(bool on);
/* compat_recv.c: on the sockets watched, each datagram libcoap reads is
 * first shown to 'keep' (its socket, its sender, its bytes: at least the
 * first iovec's worth); one refused is dropped and the next read in its
 * place.  One filter for the process; NULL turns it off.
 * compat_recv_age_ms(): inside 'keep', how long the datagram shown waited
 * in its socket (ms), -1 if the kernel did not say. */
typedef bool (*compat_recv_keep_fn)(void *arg, int fd, const struct sockaddr *from,
                                    const uint8_t *data, size_t len);
void compat_recv_filter(compat_recv_keep_fn keep, void *arg);
void compat_recv_watch(int fd, bool on);
int64_t compat_recv_age_ms(int fd);
/* compat_bind.c: the socket of the last bind() of any caller, -1 if none
 * (its getsockname() tells the port when 0 was asked for). */
int compat_bind_last_fd(void);
/* compat_walk.c: libcoap's walk over all sessions at the end of each
 * coap_io_do_epoll(), taken at most once per 50 times its cost once
 * throttled (the gateway; off elsewhere).  compat_walk_due(): the timerfd
 * fired, the next walk runs.  compat_walk_owed(): a walk was skipped and
 * should run (compat_walk_now) in *in_ms.  compat_walk_now(): a walk,
 * never skipped (to free sessions just closed, say). */
void compat_walk_throttle(bool on);
void compat_walk_due(void);
bool compat_walk_owed(uint64_t *in_ms);
unsigned int compat_walk_now(coap_context_t *ctx);

/* The socket behind one of libcoap's epoll events, or -1. */
int compat_endpoint_fd(const struct epoll_event *ev);

/* compat_dtls_cookie_check's verdicts. */
enum compat_cookie {
    COMPAT_COOKIE_UNKNOWN = -2, /* cannot be checked with this libcoap */
    COMPAT_COOKIE_BAD = -1,     /* not a hello OpenSSL would answer */
    COMPAT_COOKIE_ASKED = 0,    /* no valid cookie: *out holds the answer */
    COMPAT_COOKIE_VALID = 1,    /* libcoap will accept this hello's cookie */
};

/*
 * The cookie exchange (RFC 6347 4.2.1) libcoap runs for a ClientHello
 * from a new address, run for 'hello' (one datagram) from the address of
 * 'established', a DTLS session libcoap holds there, with libcoap's own
 * cookies: whether the hello carries a cookie libcoap will accept from
 * that address, else the HelloVerifyRequest libcoap would have sent (in
 * 'out', *out_len bytes).  Nothing is sent and libcoap's state is left
 * alone.
 */
enum compat_cookie compat_dtls_cookie_check(coap_session_t *established,
                                            const uint8_t *hello, size_t len,
                                            uint8_t *out, size_t cap,
                                            size_t *out_len);

#endif
