/*
 * addr.c - numeric addresses on the tools' command lines (no name lookups:
 * a benchmark must not wait on a resolver) and the per-sensor source
 * address, base + n, that lets thousands of sensors share one port range.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "tool_common.h"

int
tool_addr_ip(const char *host, uint16_t port, coap_address_t *a)
{
    coap_address_init(a);
    if (inet_pton(AF_INET, host, &a->addr.sin.sin_addr) == 1) {
        a->addr.sin.sin_family = AF_INET;
        a->addr.sin.sin_port = htons(port);
        a->size = sizeof(a->addr.sin);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &a->addr.sin6.sin6_addr) == 1) {
        a->addr.sin6.sin6_family = AF_INET6;
        a->addr.sin6.sin6_port = htons(port);
        a->size = sizeof(a->addr.sin6);
        return 0;
    }
    return -1;
}

int
tool_split_hostport(const char *spec, char *host, size_t cap,
                    const char **port)
{
    const char *end;
    int rc = 0;

    if (spec[0] == '[') {
        end = strchr(spec, ']');
        if (!end)
            return -1;
        *port = end[1] == ':' ? end + 2 : NULL;
        rc = end[1] && end[1] != ':';
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
    return rc;
}

int
tool_parse_port(const char *s, long min, uint16_t *port)
{
    char *end;
    long p = strtol(s, &end, 10);

    if (*end || p < min || p > 65535)
        return -1;
    *port = (uint16_t)p;
    return 0;
}

int
tool_parse_addr(const char *spec, coap_address_t *a, uint16_t default_port)
{
    char host[128];
    const char *port;
    uint16_t p = default_port;

    coap_address_init(a);
    if (tool_split_hostport(spec, host, sizeof(host), &port) < 0)
        return -1;
    if (port && tool_parse_port(port, 0, &p) < 0)
        return -1;
    return tool_addr_ip(host, p, a);
}

void
tool_addr_step(const coap_address_t *base, unsigned n, coap_address_t *a)
{
    uint8_t *p;
    size_t len;
    unsigned carry = n;

    *a = *base;
    if (a->addr.sa.sa_family == AF_INET) {
        p = (uint8_t *)&a->addr.sin.sin_addr;
        len = 4;
    } else {
        p = (uint8_t *)&a->addr.sin6.sin6_addr;
        len = 16;
    }
    /* Add n byte by byte from the last octet, carrying into the ones before. */
    for (size_t i = len; i-- > 0 && carry;) {
        unsigned v = p[i] + (carry & 0xff);
        p[i] = (uint8_t)v;
        carry = (carry >> 8) + (v >> 8);
    }
}
