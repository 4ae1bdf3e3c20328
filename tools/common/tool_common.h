/*
 * tool_common.h - what the tools (coap2mqtt-sim, -loadgen, -bareserver)
 * share: the one event loop with the libcoap contexts it drives and the
 * events those report (loop.c), DTLS client sessions and credentials
 * (loop.c, dtls.c), the requests a sensor makes (coap_util.c), a monotonic
 * clock, the signalfd and the open-file limit, numeric addresses and the
 * stepping of a source address per simulated sensor.
 *
 * Built from tools/common/ and linked into every tool; never into the
 * gateway.  Each function keeps the exact behaviour the tools had before
 * they shared it: the tools' command lines and output must not change.
 */
#ifndef COAP2MQTT_TOOL_COMMON_H
#define COAP2MQTT_TOOL_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <coap3/coap.h>

/* ---- clock.c ---- */

/* CLOCK_MONOTONIC in microseconds / milliseconds. */
int64_t tool_now_us(void);
int64_t tool_now_ms(void);

/* ---- proc.c ---- */

/*
 * Blocks SIGINT and SIGTERM and returns a CLOEXEC, non-blocking signalfd
 * that reads them (the loop stops when it is readable); SIGPIPE is ignored.
 * -1 on failure.  tool_loop_new() makes its own.
 */
int tool_signal_fd(void);

/*
 * Raises the soft RLIMIT_NOFILE to 'need' if it is lower (no further than
 * the hard limit) and sets *have to the limit now.  0, or -1 when it is
 * still below 'need' (the caller warns; left unset if getrlimit failed).
 */
int tool_raise_fd_limit(unsigned long need, unsigned long long *have);

/* ---- loop.c: the event loop and the libcoap contexts it drives ---- */

typedef struct tool_loop tool_loop_t;
typedef struct tool_ctx tool_ctx_t;

/*
 * A new loop: an epoll set with a signalfd for TERM and INT in it (see
 * tool_signal_fd).  NULL on failure (errno).  The caller frees it, after
 * every context in it.
 */
tool_loop_t *tool_loop_new(void);
void tool_loop_free(tool_loop_t *l);

/*
 * One turn: re-arms libcoap's timer of every context that sent since it
 * last ran (tool_ctx_sent), waits up to 'timeout_ms' and lets each ready
 * context work, which runs the tool's callbacks.  1 when TERM or INT came,
 * 0 otherwise (also on EINTR), -1 when epoll_wait failed (errno).
 */
int tool_loop_wait(tool_loop_t *l, int timeout_ms);

/* Flags of tool_ctx_new(). */
#define TOOL_CTX_BLOCKWISE 1u   /* libcoap does block-wise transfer, single body */
#define TOOL_CTX_PROCESS   2u   /* ready: coap_io_process() instead of a batched drain */

/*
 * What a context reports, to the owner ('app') of the session concerned:
 * the app given to tool_ctx_connect_*() for a client session, the
 * context's app for a session a server context accepted.  Nothing is
 * reported once the context is muted or the session released.  Any member
 * may be NULL.  They run inside libcoap: they must not free the context.
 */
struct tool_ctx_events {
    /* An answer to one of our requests (or a notification we observe). */
    void (*response)(void *app, const coap_pdu_t *sent, const coap_pdu_t *rcvd);
    /* A request or CON notification we sent ('sent', never NULL) failed. */
    void (*nack)(void *app, const coap_pdu_t *sent, coap_nack_reason_t reason);
    /* DTLS connected, closed, failed; a server session new or deleted ... */
    void (*event)(void *app, coap_event_t event);
};

/*
 * A new libcoap context in loop 'l', its events to 'ev' (referenced, not
 * copied) with 'app' as the owner of its server sessions.  NULL on failure.
 * The context's own app data is ours: use tool_session_app().
 */
tool_ctx_t *tool_ctx_new(tool_loop_t *l, const struct tool_ctx_events *ev,
                         void *app, unsigned flags);

/* The libcoap context, for resources, endpoints and server security. */
coap_context_t *tool_ctx_coap(const tool_ctx_t *c);

/*
 * A DTLS client session from 'local' (NULL: any) to 'peer' whose events go
 * to 'app'; the handshake starts at once.  PSK: identity and key are
 * referenced only during the call.  PKI: see tool_dtls_pki().  NULL on
 * failure.  The context owns the session (freed with it).
 */
coap_session_t *tool_ctx_connect_psk(tool_ctx_t *c, const coap_address_t *local,
                                     const coap_address_t *peer,
                                     const char *identity, const uint8_t *key,
                                     size_t key_len, void *app);
coap_session_t *tool_ctx_connect_pki(tool_ctx_t *c, const coap_address_t *local,
                                     const coap_address_t *peer, const char *ca,
                                     const char *cert, const char *key, void *app);

/* Who owns 'session' (see struct tool_ctx_events); NULL if nobody. */
void *tool_session_app(const coap_session_t *session);

/* Lets a client session go; it reports nothing more to its app. */
void tool_session_release(coap_session_t *session);

/*
 * We sent on c outside a callback: the loop re-arms libcoap's timer before
 * it next waits (a drained context does so itself).
 */
void tool_ctx_sent(tool_ctx_t *c);

/* Runs libcoap's due work on c now (coap_io_process, no waiting). */
void tool_ctx_process(tool_ctx_t *c);

/*
 * Takes c out of the loop and silences its events, before a teardown that
 * would raise some (tool_ctx_free mutes by itself).
 */
void tool_ctx_mute(tool_ctx_t *c);

/* Mutes and frees c with its sessions and resources.  NULL is a no-op. */
void tool_ctx_free(tool_ctx_t *c);

/* ---- addr.c ---- */

/*
 * Fills *a from a numeric IPv4 or IPv6 address and a port (no names, no
 * brackets).  0, or -1 if 'host' is neither.
 */
int tool_addr_ip(const char *host, uint16_t port, coap_address_t *a);

/*
 * Numeric "HOST[:PORT]" or "[V6][:PORT]" (split by src/hostport.c, as the
 * gateway's own configuration is), port 0..65535, 'default_port' when
 * absent.  0, or -1.
 */
int tool_parse_addr(const char *spec, coap_address_t *a, uint16_t default_port);

/*
 * *a = *base + n, the address counted as one big-endian number (carrying
 * across octets: 127.1.0.255 + 1 = 127.1.1.0); the port is kept.  Sensor n
 * of a fleet binds its own loopback address this way.
 */
void tool_addr_step(const coap_address_t *base, unsigned n, coap_address_t *a);

/* ---- dtls.c ---- */

/*
 * Client PSK set-up: identity and key are referenced, not copied; they must
 * outlive the coap_new_client_session_psk2() call.  (tool_ctx_connect_psk
 * does this.)
 */
void tool_dtls_cpsk(coap_dtls_cpsk_t *psk, const char *identity,
                    const uint8_t *key, size_t key_len);

/*
 * ECDSA/RSA certificates from PEM files, the peer's certificate required
 * and verified against 'ca' (chain depth 2): the same for the bare server
 * and the sensors.  The strings are referenced, not copied.
 */
void tool_dtls_pki(coap_dtls_pki_t *pki, const char *ca, const char *cert,
                   const char *key);

/*
 * A pre-shared key as written on command lines and in key files: raw text,
 * or "hex:" and hex digits.  Returns its length in bytes, or -1 when it is
 * empty, bad hex or longer than 'cap'.
 */
int tool_psk_decode(const char *secret, uint8_t *key, size_t cap);

/* ---- coap_util.c ---- */

/*
 * A new request on 'session' with the next Message ID and the token 'tok';
 * NULL if libcoap is out of memory.  The caller sends or deletes it.
 */
coap_pdu_t *tool_request(coap_session_t *session, coap_pdu_type_t type,
                         coap_pdu_code_t code, const uint8_t *tok, size_t len);

/*
 * libcoap's release callback for a malloc'd body handed to
 * coap_add_data_large_request/_response: frees it once sent.
 */
void tool_release_body(coap_session_t *session, void *body);

/* Adds one Uri-Path option per '/'-separated segment of 'path'. */
void tool_add_uri_path(coap_pdu_t *pdu, const char *path);

/* Adds option 'num' with v in the shortest encoding. */
void tool_add_uint_option(coap_pdu_t *pdu, coap_option_num_t num, unsigned v);

/*
 * The registration: CON POST /rd?ep=<ep>&lt=<lifetime>, Content-Format
 * link-format, token 'tok'; the caller adds the links and sends it.  NULL
 * if libcoap is out of memory.
 */
coap_pdu_t *tool_rd_request(coap_session_t *session, const uint8_t *tok,
                            size_t len, const char *ep, unsigned lifetime);

/*
 * A push of one reading: POST /ps/<path> of 'type' with Content-Format
 * 'ct' and token 'tok'; the caller adds the reading and sends it.  NULL if
 * libcoap is out of memory.
 */
coap_pdu_t *tool_push_request(coap_session_t *session, coap_pdu_type_t type,
                              const uint8_t *tok, size_t len, const char *path,
                              unsigned ct);

#endif
