/*
 * payload_json_internal.h - the JSON mode's state, shared by its files and
 * by nobody else (as transport_internal.h does for the transport):
 *
 *   payload_json.c       the entry point, and JSON and SenML JSON: validated
 *                        and compacted
 *   payload_json_buf.c   the output buffer and the JSON forms of strings,
 *                        bytes and numbers
 *   payload_json_cbor.c  CBOR and SenML CBOR: scanned, loaded by libcbor,
 *                        emitted as JSON
 *
 * Internal calls between these files are named payload_json__verb.
 *
 * Layer: base
 */
#ifndef COAP2MQTT_PAYLOAD_JSON_INTERNAL_H
#define COAP2MQTT_PAYLOAD_JSON_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "coap2mqtt/payload_json.h"

/* JSON text being written; the first failure sticks and later puts are
 * no-ops, so a caller may check 'err' once at the end. */
struct jbuf {
    char *p;
    size_t len, cap, max;
    const char *err;            /* first failure; later puts are no-ops */
};

enum hint { HINT_B64URL, HINT_B64, HINT_B16 };     /* RFC 8949 3.4.5.2 */

/* payload_json_buf.c - each returns 0, or -1 with b->err set */
int payload_json__jb_fail(struct jbuf *b, const char *why);
int payload_json__jb_puts(struct jbuf *b, const char *s);
/* The inside of a JSON string: UTF-8 checked, quote, backslash and control
 * characters escaped, everything else copied. */
int payload_json__jb_escaped(struct jbuf *b, const uint8_t *s, size_t n);
/* A byte string as a JSON string in the encoding 'hint' asks for, with
 * 'prefix' inside the quotes. */
int payload_json__jb_bytes(struct jbuf *b, const uint8_t *s, size_t n,
                           enum hint hint, const char *prefix);
/* The integer 'v' (neg: -1 - v): a number inside int64, else a string. */
int payload_json__jb_int(struct jbuf *b, uint64_t v, int neg);
/* A float, shortest first ('single': at single precision); NaN and the
 * infinities as null. */
int payload_json__jb_float(struct jbuf *b, double d, int single);
/* Magnitude m (big-endian, no leading zeros, n <= 64 bytes) as a quoted
 * decimal: m, or -1 - m when neg. */
int payload_json__jb_bigdec(struct jbuf *b, const uint8_t *m, size_t n,
                            int neg);

/* payload_json_cbor.c */
/* As payload_to_json() for ct 60 ('senml' 0) and ct 112 ('senml' 1). */
int payload_json__cbor_to_json(const uint8_t *data, size_t len, int senml,
                               char **out, const char **err);

#endif
