/*
 * payload.c - one reading as the bytes a sensor sends: JSON (ct 50),
 * plain text (ct 0) or a CBOR map (ct 60).  With --payload-size the first
 * resource is padded to exactly that many bytes (JSON/CBOR with a "pad"
 * string, text with trailing spaces) so block-wise transfer gets exercised
 * while seq and value stay readable at the front.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cbor.h>

#include "sim.h"

static uint8_t *
encode_text(const struct res_state *r, double v, size_t pad_to, size_t *len)
{
    char num[64];
    int n = snprintf(num, sizeof(num), "%.*f", r->def->decimals, v);
    size_t total;
    uint8_t *buf;

    if (n < 0 || (size_t)n >= sizeof(num))
        return NULL;
    total = pad_to > (size_t)n ? pad_to : (size_t)n;
    buf = malloc(total);
    if (!buf)
        return NULL;
    memcpy(buf, num, (size_t)n);
    memset(buf + n, ' ', total - (size_t)n);
    *len = total;
    return buf;
}

static uint8_t *
encode_json(const struct res_state *r, double v, size_t pad_to, size_t *len)
{
    char head[128];
    int n = snprintf(head, sizeof(head), "{\"seq\":%u,\"%s\":%.*f", r->seq,
                     r->def->field, r->def->decimals, v);
    static const char pad_key[] = ",\"pad\":\"";
    size_t fixed, pad = 0, total;
    uint8_t *buf, *p;

    if (n < 0 || (size_t)n >= sizeof(head))
        return NULL;
    /* head + '}' unpadded; head + pad_key + pad + "\"}" padded */
    fixed = (size_t)n + strlen(pad_key) + 2;
    if (pad_to > fixed)
        pad = pad_to - fixed;
    total = pad ? fixed + pad : (size_t)n + 1;
    buf = p = malloc(total);
    if (!buf)
        return NULL;
    memcpy(p, head, (size_t)n);
    p += n;
    if (pad) {
        memcpy(p, pad_key, strlen(pad_key));
        p += strlen(pad_key);
        memset(p, 'x', pad);
        p += pad;
        *p++ = '"';
    }
    *p++ = '}';
    *len = total;
    return buf;
}

/* Bytes of a CBOR text string header for a string of 'n' bytes. */
static size_t
cbor_head_len(size_t n)
{
    return n < 24 ? 1 : n < 256 ? 2 : n < 65536 ? 3 : 5;
}

/* Pad string length that makes the map exactly 'pad_to' bytes, or 0. */
static size_t
cbor_pad_len(size_t base, size_t pad_to)
{
    static const size_t heads[] = { 1, 2, 3, 5 };
    const size_t key = 4;  /* text(3) "pad" */

    for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
        if (pad_to < base + key + heads[i])
            continue;
        size_t n = pad_to - base - key - heads[i];
        if (n > 0 && cbor_head_len(n) == heads[i])
            return n;
    }
    return 0;
}

static bool
cbor_put(cbor_item_t *map, cbor_item_t *key, cbor_item_t *val)
{
    bool ok = key && val &&
        cbor_map_add(map, (struct cbor_pair){ .key = key, .value = val });

    if (key)
        cbor_decref(&key);
    if (val)
        cbor_decref(&val);
    return ok;
}

static uint8_t *
cbor_build(const struct res_state *r, double v, size_t pad, size_t *len)
{
    cbor_item_t *map = cbor_new_definite_map(pad ? 3 : 2);
    unsigned char *buf = NULL;
    size_t cap = 0, n = 0;
    char *padstr = NULL;
    bool ok = map != NULL;

    ok = ok && cbor_put(map, cbor_build_string("seq"), cbor_build_uint32(r->seq));
    ok = ok && cbor_put(map, cbor_build_string(r->def->field), cbor_build_float8(v));
    if (ok && pad) {
        padstr = malloc(pad);
        ok = padstr != NULL;
        if (ok) {
            memset(padstr, 'x', pad);
            ok = cbor_put(map, cbor_build_string("pad"),
                          cbor_build_stringn(padstr, pad));
        }
    }
    if (ok)
        n = cbor_serialize_alloc(map, &buf, &cap);
    free(padstr);
    if (map)
        cbor_decref(&map);
    if (!n) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static uint8_t *
encode_cbor(const struct res_state *r, double v, size_t pad_to, size_t *len)
{
    uint8_t *buf = cbor_build(r, v, 0, len);
    size_t pad;

    if (!buf || pad_to <= *len)
        return buf;
    pad = cbor_pad_len(*len, pad_to);
    if (!pad)
        return buf;
    free(buf);
    return cbor_build(r, v, pad, len);
}

uint8_t *
payload_encode(const struct res_state *r, double v, size_t pad_to, size_t *len)
{
    if (pad_to > SIM_PAYLOAD_MAX)
        pad_to = SIM_PAYLOAD_MAX;
    switch (r->def->ct) {
    case 50: return encode_json(r, v, pad_to, len);
    case 60: return encode_cbor(r, v, pad_to, len);
    default: return encode_text(r, v, pad_to, len);
    }
}
