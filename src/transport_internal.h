/*
 * transport_internal.h - the transport's state, shared by its files and by
 * nobody else (as libcoap does with its *_internal.h headers):
 *
 *   transport.c         context, endpoints, session events, accessors
 *   transport_client.c  client sessions: the devices the gateway dials
 *   transport_dtls.c    PSK lookup, certificates and their trust store
 *   transport_guard.c   handshakes that never finish, hello floods,
 *                       devices that re-handshake on a live session
 *   transport_io.c      driving libcoap's epoll fd in batches, back-pressure
 *   transport_tokens.c  our tokens and the routing of responses by them
 *   transport_blocks.c  answers sent block-wise, put together for the handler
 *   transport_oscore.c  OSCORE contexts, their sequence numbers, and who
 *                       sent a protected request
 *
 * Internal calls between these files are named transport__verb.
 *
 * Layer: transport
 */
#ifndef COAP2MQTT_TRANSPORT_INTERNAL_H
#define COAP2MQTT_TRANSPORT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <openssl/ssl.h>
#include <coap3/coap.h>

#include "coap2mqtt/transport.h"
#include "compat_libcoap.h"

struct pending;
struct session_tokens;
struct answer_body;
struct handshake;

/*
 * A peer's address as a hash key (family, port, the address bytes; all
 * else zeroed): the sessions that re-handshake (transport_guard.c) and
 * the OSCORE senders (transport_oscore.c) are found by it.  False when
 * the address is neither IPv4 nor IPv6.
 */
struct transport_addr_key {
    uint16_t family, port;
    uint8_t addr[16];
};

struct established;
struct hello;
struct cert_id;
struct transport_oscore;

struct transport {
    struct gw *gw;
    coap_context_t *ctx;
    int fd;
    unsigned dtls_sockets;          /* endpoints per DTLS listen address */
    keystore_t *keys;
    coap_bin_const_t key;           /* points into keys, for the callback */
    transport_session_gone_fn session_gone;
    void *session_gone_arg;
    transport_session_new_fn session_new;
    void *session_new_arg;
    transport_backlog_fn backlog;
    void *backlog_arg;
    /* tokens */
    struct pending *pending;        /* by token */
    struct session_tokens *by_session; /* the same, per session */
    uint64_t token_base;            /* random, so tokens are not guessable */
    uint64_t token_next;
    size_t sessions;
    /* guards */
    struct handshake *handshakes;   /* by session pointer */
    struct established *established; /* by peer address */
    struct hello *hellos;           /* by session pointer */
    struct hello *hello_fifo;       /* oldest first */
    size_t n_hellos;
    bool cookie_warned;             /* the re-handshake check cannot run */
    /* The last ClientHello libcoap was let read: the handshake it starts
     * is known by its random (transport_guard.c). */
    struct transport_addr_key last_hello_key;
    uint8_t last_hello_random[32];
    bool last_hello_set;
    int tuned_fds[128];             /* endpoint sockets given a big SO_RCVBUF */
    size_t n_tuned;
    int filtered_fds[128];          /* DTLS endpoint sockets (compat_recv.c) */
    size_t n_filtered;
    bool filter_off;                /* 'established' may miss a session */
    uint64_t sweep_timer;
    /* DTLS */
    struct cert_id *cert_ids;       /* by session pointer */
    coap_dtls_pki_t pki;
    X509_STORE *store;              /* device trust: ca_file + crl_file */
    uint8_t unused_key[32];
    /* I/O */
    struct compat_libcoap compat;
    unsigned reads_per_event;       /* learnt, 1..TRANSPORT_READS_MAX, for
                                     * sockets beyond reads[] */
    struct { int fd; unsigned k; } reads[64]; /* per endpoint socket (transport_io.c) */
    size_t n_reads;
    uint64_t last_batch_ns;         /* duration of the last batch */
    size_t last_batch_reads;        /* datagrams it handled */
    bool resumed;                   /* coalescing pause just ended */
    uint64_t resume_timer;
    uint64_t backstop_timer;        /* libcoap's lost wake-ups (transport_io.c) */
    uint64_t walk_timer;            /* a session walk owed (compat_walk.c) */
    uint64_t last_io_ms;            /* when coap_io_do_epoll() last ran */
    uint64_t yield_target;          /* back-pressure: resume at this backlog */
    uint64_t yield_until_ms;        /* ... or at this time at the latest */
    /* ACKs held back (transport_acks.c) */
    struct transport_ack *held_acks; /* by session and Message ID */
    const coap_pdu_t *handling;     /* the response a handler is given */
    bool hold_handling;             /* ... and its ACK is to be held */
    /* OSCORE (transport_oscore.c); NULL without an oscore list */
    struct transport_oscore *oscore;
    uint64_t batches;               /* coap_io_do_epoll() calls so far */
    unsigned oscore_refused_seen;   /* libcoap's refusals already counted */
};

/* transport.c */
/* Tells the session listener that 'session' ends. */
void transport__session_gone(transport_t *t, coap_session_t *session);

/* transport_client.c */
int transport__client_event(transport_t *t, coap_session_t *session,
                            coap_event_t event);

/* transport_dtls.c */
int transport__setup_dtls(transport_t *t);
const char *transport__cert_identity(transport_t *t, coap_session_t *session);
void transport__cert_forget(transport_t *t, coap_session_t *session);
void transport__cert_free_all(transport_t *t);
/* Printable form of untrusted identity bytes (keys never logged). */
void transport__sanitize(const uint8_t *s, size_t len, char *out, size_t cap);

/* transport_guard.c */
void transport__guard_start(transport_t *t);
void transport__guard_free(transport_t *t);
void transport__handshake_track(transport_t *t, coap_session_t *session,
                                const coap_bin_const_t *identity);
void transport__handshake_end(transport_t *t, coap_session_t *session, bool failed);
void transport__handshake_failed(transport_t *t, coap_session_t *session);
void transport__hello_track(transport_t *t, coap_session_t *session);
void transport__hello_forget(transport_t *t, coap_session_t *session);
void transport__established_add(transport_t *t, coap_session_t *session);
void transport__established_del(transport_t *t, coap_session_t *session);
coap_session_t **transport__established_list(transport_t *t, size_t *n);
/* A session from its first ClientHello on, until established (then
 * transport__established_add) or gone (transport__established_del). */
void transport__halfopen_add(transport_t *t, coap_session_t *session);
/* Before libcoap reads an endpoint's datagram: a device re-handshaking on
 * its live session gets the old one retired first, once its hello carries
 * a valid cookie (a forged one gets a HelloVerifyRequest and no more). */
void transport__check_rehandshake(transport_t *t, const struct epoll_event *ev);

/* transport_io.c */
int transport__io_start(transport_t *t);
void transport__io_stop(transport_t *t);

/* transport_tokens.c */
void transport__tokens_init(transport_t *t);
void transport__tokens_free(transport_t *t);
void transport__tokens_session_gone(transport_t *t, coap_session_t *session);
/* transport_blocks.c */
/*
 * An answer to one of our requests, whose block-wise body so far is *body:
 * NULL when 'rcvd' was a block taken (more to come) or dropped; else what
 * to hand the handler: 'rcvd' itself, or (*made, deleted by the caller)
 * the whole body in one PDU.
 */
const coap_pdu_t *transport__blocks_take(transport_t *t, struct answer_body **body,
                                         coap_session_t *session, const coap_pdu_t *rcvd,
                                         coap_pdu_t **made);
void transport__blocks_free(struct answer_body *b);

/* transport_oscore.c */
/* The oscore list's contexts (their sequence numbers read back from
 * state_dir/oscore/); the dial-in ones handed to libcoap.  -1 on failure
 * (logged). */
int transport__oscore_start(transport_t *t);
void transport__oscore_free(transport_t *t);
/* A client session to 'dst' protected by the context 'id'; NULL (logged). */
coap_session_t *transport__oscore_client(transport_t *t, const coap_address_t *dst,
                                         const char *id);
/* How an event of libcoap's epoll fd is to be read, once its datagram is
 * peeked at: as many times as learnt, once (the one peeked is the one read),
 * or not at all (the datagram was dropped). */
enum transport_peek { PEEK_ANY, PEEK_ONE, PEEK_SKIP };
enum transport_peek transport__oscore_peek(transport_t *t, const struct epoll_event *ev,
                                           uint64_t batch);
/* The id of the OSCORE device whose request libcoap verified and is
 * handling on 'session'; NULL when it is none. */
const char *transport__oscore_identity(transport_t *t, coap_session_t *session);
void transport__oscore_session_gone(transport_t *t, coap_session_t *session);
/* A protected notification's Observe value, as libcoap 4.3.4 hands it
 * over, is the request's Partial IV, the same in every one: a copy of
 * 'rcvd' (deleted by the caller) with its own Partial IV instead (RFC 8613
 * 4.1.3.5.2), so RFC 7641 3.4 ordering holds; NULL when nothing is to be
 * changed (or no memory: then as it came). */
coap_pdu_t *transport__oscore_fix_observe(transport_t *t, coap_session_t *session,
                                          const coap_pdu_t *rcvd);

bool transport__ack_held(transport_t *t, coap_session_t *session, const coap_pdu_t *rcvd);
void transport__acks_free(transport_t *t);

coap_response_t transport__on_response(coap_session_t *session, const coap_pdu_t *sent,
                                       const coap_pdu_t *rcvd, const coap_mid_t mid);
void transport__on_nack(coap_session_t *session, const coap_pdu_t *sent,
                        const coap_nack_reason_t reason, const coap_mid_t mid);

bool transport__addr_key(const struct sockaddr *sa, struct transport_addr_key *k);
/* A DTLS endpoint's socket, just opened: its datagrams pass the filter. */
void transport__filter_endpoint(transport_t *t, int fd);

#endif
