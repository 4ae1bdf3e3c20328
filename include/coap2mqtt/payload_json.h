/*
 * payload_json.h - the JSON mode: CoAP payloads in CBOR (ct 60), SenML CBOR
 * (ct 112), SenML JSON (ct 110) and JSON (ct 50) turned into compact JSON
 * text for MQTT. Pure: no I/O, no state; see docs/payload-json.md.
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
