/*
 * payload_json.c - the JSON mode: CBOR (ct 60) and SenML CBOR (ct 112) to
 * JSON, JSON (ct 50) and SenML JSON (ct 110) validated and compacted.
 *
 * This file holds the entry point and the JSON pass; CBOR goes through
 * payload_json_cbor.c, which writes with payload_json_buf.c
 * (payload_json_internal.h lists the room).  The rules of the mapping are
 * listed in payload_json.h.
 *
 * Layer: base (pure)
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "coap2mqtt/payload_json.h"
#include "payload_json_internal.h"

/* ---- JSON and SenML JSON ---------------------------------------------- */

static const char *
json_reason(const json_error_t *e)
{
    switch (json_error_code(e)) {
    case json_error_invalid_utf8: return "invalid UTF-8 in JSON";
    case json_error_numeric_overflow: return "JSON number out of range";
    case json_error_end_of_input_expected: return "trailing data after JSON";
    case json_error_premature_end_of_input: return "truncated JSON";
    case json_error_out_of_memory: return "out of memory";
    default: return "invalid JSON";
    }
}

/* The text the device sent minus whitespace outside strings: numbers keep
 * their digits (jansson would print 21.7 as 21.699999999999999). Only run
 * on text jansson has validated. */
static int
json_compact(const uint8_t *s, size_t len, char **out, const char **err)
{
    char *o = malloc(len + 1);
    size_t i, n = 0;
    int in_str = 0, esc = 0;
    unsigned depth = 0;

    if (!o)
        return *err = "out of memory", -1;
    for (i = 0; i < len; i++) {
        uint8_t c = s[i];

        if (in_str) {
            if (esc)
                esc = 0;
            else if (c == '\\')
                esc = 1;
            else if (c == '"')
                in_str = 0;
        } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            continue;
        } else if (c == '"') {
            in_str = 1;
        } else if ((c == '[' || c == '{') && ++depth > PAYLOAD_JSON_MAX_DEPTH) {
            free(o);
            return *err = "JSON nested too deep", -1;
        } else if (c == ']' || c == '}') {
            depth--;
        }
        o[n++] = (char)c;
    }
    o[n] = '\0';
    *out = o;
    return 0;
}

static int
json_pass(const uint8_t *data, size_t len, int senml, char **out,
          const char **err)
{
    json_error_t e;
    json_t *j, *rec;
    size_t i;
    int ok = 1;

    if (len == 0)
        return *err = "empty JSON payload", -1;
    /* Never valid JSON, yet jansson 2.14 skips a raw NUL between tokens
     * ("[5\0]" loads as [5]); found by fuzzing. */
    if (memchr(data, 0, len))
        return *err = "NUL byte in JSON", -1;
    /* INT_AS_REAL: integers beyond int64 are valid JSON; we only validate. */
    j = json_loadb((const char *)data, len,
                   JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL,
                   &e);
    if (!j)
        return *err = json_reason(&e), -1;
    if (senml) {
        ok = json_is_array(j);
        json_array_foreach(j, i, rec)
            ok = ok && json_is_object(rec);
    }
    json_decref(j);
    if (!ok)
        return *err = "SenML JSON is not an array of records", -1;
    return json_compact(data, len, out, err);
}

int
payload_to_json(int ct, const uint8_t *data, size_t len, char **out,
                const char **err)
{
    switch (ct) {
    case 50: return json_pass(data, len, 0, out, err);
    case 110: return json_pass(data, len, 1, out, err);
    case 60: return payload_json__cbor_to_json(data, len, 0, out, err);
    case 112: return payload_json__cbor_to_json(data, len, 1, out, err);
    default: return 1;
    }
}
