/*
 * addr.c - numeric addresses on the tools' command lines (no name lookups:
 * a benchmark must not wait on a resolver) and the per-sensor source
 * address, base + n, that lets thousands of sensors share one port range.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "coap2mqtt/hostport.h"
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
tool_parse_addr(const char *spec, coap_address_t *a, uint16_t default_port)
{
    char host[128];
    const char *port;
    bool v6;
    int p = default_port;

    coap_address_init(a);
    if (hostport_split(spec, host, sizeof(host), &port, &v6) < 0)
        return -1;
    if (port && (p = hostport_port(port, 0)) < 0)
        return -1;
    return tool_addr_ip(host, (uint16_t)p, a);
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
