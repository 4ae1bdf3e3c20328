/*
 * payload.h - CoAP Content-Formats (RFC 7252 12.3 registry) and their MIME
 * names, for the MQTT v5 content-type property both ways.
 */
#ifndef COAP2MQTT_PAYLOAD_H
#define COAP2MQTT_PAYLOAD_H

/* MIME type for a Content-Format, or NULL when we have no name for it. */
const char *payload_ct_to_mime(int ct);
/* Content-Format for a MIME type (parameters compared too), or -1. */
int payload_mime_to_ct(const char *mime);

#endif
