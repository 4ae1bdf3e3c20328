/*
 * payload_json.h - the JSON mode: CoAP payloads in CBOR (ct 60), SenML CBOR
 * (ct 112), SenML JSON (ct 110) and JSON (ct 50) turned into compact JSON
 * text for MQTT. Pure: no I/O, no state.
 *
 * CBOR -> JSON (RFC 8949 6.1, with these choices):
 *  - integers inside int64 are numbers; beyond (up to 2^64-1, down to
 *    -2^64) strings of decimal digits: "18446744073709551615". Many JSON
 *    parsers, jansson included, refuse or round bigger integers.
 *  - bignums (tags 2/3) the same; magnitudes over 64 bytes as base64url,
 *    "~" first when negative (the RFC 8949 6.1 form).
 *  - floats: shortest decimal that reads back as the same value at the
 *    width sent (half floats at single precision), always with a fraction
 *    or exponent ("65504.0", "1e+300"); NaN and infinities -> null.
 *  - byte strings: base64url without padding; under tag 22 base64, under
 *    tag 23 base16 (RFC 8949 3.4.5.2 hints, innermost wins).
 *  - text: UTF-8 checked (each chunk of an indefinite string on its own).
 *  - tags: the content (dates 0/1 too: text stays text, epoch a number).
 *  - undefined and unassigned simple values -> null.
 *  - map keys: text as is; other keys become the JSON string of their JSON
 *    text (1 -> "1", [1,2] -> "[1,2]", h'01' -> "\"AQ\""). Refused:
 *    duplicate keys, including those made by the mapping (1 and "1"), and
 *    text keys holding NUL (C consumers cannot keep them).
 *  - nesting of arrays, maps and tags up to PAYLOAD_JSON_MAX_DEPTH; at most
 *    PAYLOAD_JSON_MAX_ITEMS items; output at most 16x the input + 4 KiB.
 *  - one item exactly: trailing bytes are an error.
 * SenML CBOR (RFC 8428 6): an array of maps; integer labels of the records
 * become their names (bver bn bt bu bv bs n u v vs vb s t ut vd), other
 * keys follow the rules above. No base values are resolved.
 * JSON and SenML JSON: validated with jansson, then the bytes as sent minus
 * whitespace outside strings (numbers keep their digits). SenML JSON must
 * be an array of objects. Refused besides invalid JSON: raw NUL bytes,
 * "\u0000" in object keys, numbers overflowing a double (jansson), nesting
 * beyond PAYLOAD_JSON_MAX_DEPTH.
 */
#ifndef COAP2MQTT_PAYLOAD_JSON_H
#define COAP2MQTT_PAYLOAD_JSON_H

#include <stddef.h>
#include <stdint.h>

/* Deepest nesting of arrays, maps and tags accepted (JSON: arrays/objects). */
#define PAYLOAD_JSON_MAX_DEPTH 32
/* Most CBOR data items (heads) in one payload. */
#define PAYLOAD_JSON_MAX_ITEMS 65536

/*
 * Converts a payload of Content-Format 'ct' to JSON text.
 * Returns 0 and a malloc'd NUL-terminated string in *out (caller frees);
 * -1 with a static reason in *err when the payload is not valid for its
 * format (the caller then publishes the original bytes); 1 when 'ct' is not
 * one we convert (*out and *err untouched). The caller bounds 'len'.
 */
int payload_to_json(int ct, const uint8_t *data, size_t len, char **out,
                    const char **err);

#endif
