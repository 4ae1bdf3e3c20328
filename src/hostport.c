/*
 * hostport.c - splitting "host:port" and "[v6]:port".
 *
 * Layer: base (pure)
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "coap2mqtt/hostport.h"

int
hostport_split(const char *spec, char *host, size_t cap, const char **port,
               bool *bracketed)
{
    const char *end;

    *bracketed = spec[0] == '[';
    if (*bracketed) {
        if (!(end = strchr(spec, ']')) || (end[1] && end[1] != ':'))
            return -1;
        *port = end[1] ? end + 2 : NULL;
        spec++;
    } else {
        const char *colon = strrchr(spec, ':');

        end = colon ? colon : spec + strlen(spec);
        *port = colon ? colon + 1 : NULL;
    }
    if ((size_t)(end - spec) >= cap)
        return -1;
    memcpy(host, spec, (size_t)(end - spec));
    host[end - spec] = '\0';
    return 0;
}

int
hostport_port(const char *s, long min)
{
    char *end;
    long p;

    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    p = strtol(s, &end, 10);
    if (*end || errno || p < min || p > 65535)
        return -1;
    return (int)p;
}
