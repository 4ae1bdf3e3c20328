/*
 * hostport.h - "host:port" and "[v6]:port" as written in the configuration
 * and on the tools' command lines, split once for everybody (the config
 * check, the CoAP endpoints, the tools).
 *
 * Layer: base
 */
#ifndef COAP2MQTT_HOSTPORT_H
#define COAP2MQTT_HOSTPORT_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Copies the host part of 'spec' into host (NUL-terminated, brackets of
 * "[v6]" removed) and points *port at what follows its ':', or sets it NULL
 * when there is no port.  *bracketed says whether the host was "[...]".
 * -1 when 'spec' is malformed: an unclosed '[', anything but ':' after
 * ']', or a host that does not fit in cap.
 */
int hostport_split(const char *spec, char *host, size_t cap, const char **port,
                   bool *bracketed);

/* A port as written: digits only, min..65535.  -1 otherwise. */
int hostport_port(const char *s, long min);

#endif
