/*
 * payload.c - the Content-Format <-> MIME table (IANA "CoAP
 * Content-Formats", the entries sensors actually send).
 *
 * Layer: base (pure)
 */
#include <stddef.h>
#include <strings.h>

#include "coap2mqtt/payload.h"

static const struct {
    int ct;
    const char *mime;
} formats[] = {
    { 0, "text/plain;charset=utf-8" },
    { 16, "application/cose;cose-type=\"cose-encrypt0\"" },
    { 40, "application/link-format" },
    { 41, "application/xml" },
    { 42, "application/octet-stream" },
    { 47, "application/exi" },
    { 50, "application/json" },
    { 51, "application/json-patch+json" },
    { 52, "application/merge-patch+json" },
    { 60, "application/cbor" },
    { 61, "application/cwt" },
    { 110, "application/senml+json" },
    { 111, "application/sensml+json" },
    { 112, "application/senml+cbor" },
    { 113, "application/sensml+cbor" },
    { 11542, "application/vnd.oma.lwm2m+tlv" },
    { 11543, "application/vnd.oma.lwm2m+json" },
};

const char *
payload_ct_to_mime(int ct)
{
    for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++)
        if (formats[i].ct == ct)
            return formats[i].mime;
    return NULL;
}

int
payload_mime_to_ct(const char *mime)
{
    if (!mime)
        return -1;
    /* "text/plain" without charset is what most MQTT tools send. */
    if (strcasecmp(mime, "text/plain") == 0)
        return 0;
    for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++)
        if (strcasecmp(formats[i].mime, mime) == 0)
            return formats[i].ct;
    return -1;
}
