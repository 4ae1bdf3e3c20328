/*
 * bare.h - coap2mqtt-bareserver: the CoAP ceiling of the benchmarks.
 *
 * A bare libcoap 4.3.1 DTLS server (PSK and/or an ECDSA certificate) driven
 * exactly as the gateway drives libcoap (its epoll fd drained in batches of
 * up to 64 into coap_io_do_epoll), that answers registrations 2.01 and
 * pushes 2.04 at once, optionally observes every "obs" link of a
 * registration like the gateway does, and only counts what it receives: no
 * MQTT, no queue, no topics.
 */
#ifndef COAP2MQTT_BARE_H
#define COAP2MQTT_BARE_H

#include <stdbool.h>
#include <stdint.h>
#include <coap3/coap.h>

#include "coap2mqtt/keystore.h"
#include "../common/tool_common.h"

struct bare_opts {
    coap_address_t listen;
    const char *psk_file;        /* per-identity keys, as the gateway */
    uint8_t key[KEYSTORE_KEY_MAX];   /* or one key for any identity */
    size_t key_len;
    const char *cert, *certkey, *ca;   /* PKI: client certificates required */
    bool observe;
    unsigned max_handshakes;
    double warmup_s, window_s;   /* measured from the first reading */
    double duration_s;           /* exit after this (safety bound) */
    const char *json;
    int verbose;
};

struct bare {
    const struct bare_opts *o;
    tool_ctx_t *ctx;
    keystore_t *keys;
    coap_bin_const_t key;        /* returned by the PSK callback */
    uint64_t token_ctr;
    unsigned long registrations, pushes, notifications, observes_sent;
    unsigned long hs_ok, hs_failed, sessions, sessions_max;
    int64_t first_us;            /* first reading */
    unsigned long count_at_start, count_at_end;
    double cpu_at_start, cpu_at_end;
    bool win_started, win_ended;
};

/* handlers.c */
/* The DTLS server context in 'loop', its resources and handlers; 0 or -1. */
int bare_setup(struct bare *b, tool_loop_t *loop);
unsigned long bare_readings(const struct bare *b);

/* main.c */
double bare_cpu_s(void);

#endif
