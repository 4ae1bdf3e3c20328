/*
 * tool_common.h - what the tools (coap2mqtt-sim, -loadgen, -bareserver)
 * share: a monotonic clock, the signalfd, numeric addresses and the stepping
 * of a source address per simulated sensor, DTLS credentials for libcoap,
 * the gateway's batched epoll drain and small CoAP option helpers.
 *
 * Built from tools/common/ and linked into every tool; never into the
 * gateway.  Each function keeps the exact behaviour the tools had before
 * they shared it: the tools' command lines and output must not change.
 */
#ifndef COAP2MQTT_TOOL_COMMON_H
#define COAP2MQTT_TOOL_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <coap3/coap.h>

/* ---- clock.c ---- */

/* CLOCK_MONOTONIC in microseconds / milliseconds. */
int64_t tool_now_us(void);
int64_t tool_now_ms(void);

/* ---- signals.c ---- */

/*
 * Blocks SIGINT and SIGTERM and returns a CLOEXEC, non-blocking signalfd
 * that reads them (the loop stops when it is readable); SIGPIPE is ignored.
 * -1 on failure.
 */
int tool_signal_fd(void);

/* ---- addr.c ---- */

/*
 * Fills *a from a numeric IPv4 or IPv6 address and a port (no names, no
 * brackets).  0, or -1 if 'host' is neither.
 */
int tool_addr_ip(const char *host, uint16_t port, coap_address_t *a);

/*
 * Splits "HOST", "HOST:PORT", "[V6]" or "[V6]:PORT" (the port after the
 * last ':' when there are no brackets): the host into 'host' (cap bytes,
 * NUL-terminated), *port to the port text or NULL when there is none.
 * Returns 0; 1 when text after ']' other than ":PORT" was ignored (strict
 * callers refuse that); -1 when ']' is missing or the host is cap bytes or
 * longer.
 */
int tool_split_hostport(const char *spec, char *host, size_t cap,
                        const char **port);

/*
 * Port text to a number in min..65535 (strtol: an empty text is 0).
 * 0, or -1 on trailing junk or out of range.
 */
int tool_parse_port(const char *s, long min, uint16_t *port);

/*
 * Numeric "HOST[:PORT]" or "[V6][:PORT]" (text after ']' ignored), port
 * 0..65535, 'default_port' when absent.  0, or -1.
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
 * outlive the coap_new_client_session_psk2() call.
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

/* ---- coap_util.c ---- */

/*
 * Lets libcoap handle what is ready on its epoll fd 'fd' (from
 * coap_context_get_coap_fd), up to 64 events a call, as the bare server
 * and the load generator have always driven it.
 */
void tool_coap_drain(coap_context_t *ctx, int fd);

/*
 * A new request on 'session' with the next Message ID and the token 'tok';
 * NULL if libcoap is out of memory.  The caller sends or deletes it.
 */
coap_pdu_t *tool_request(coap_session_t *session, coap_pdu_type_t type,
                         coap_pdu_code_t code, const uint8_t *tok, size_t len);

/* Adds one Uri-Path option per '/'-separated segment of 'path'. */
void tool_add_uri_path(coap_pdu_t *pdu, const char *path);

/* Adds option 'num' with v in the shortest encoding. */
void tool_add_uint_option(coap_pdu_t *pdu, coap_option_num_t num, unsigned v);

#endif
