/*
 * discovery.c - multicast discovery for plain CoAP labs (RFC 7252 8 and
 * 12.8: 224.0.1.187 and FF02::FD, "All CoAP Nodes", port 5683).
 *
 * Why a socket of our own and not a libcoap multicast client session
 * (read in libcoap v4.3.1):
 *   - coap_socket_connect_udp() (src/coap_io.c) sets neither
 *     IP_MULTICAST_IF nor IPV6_MULTICAST_IF: the kernel's routing picks
 *     the interface, which for 224.0.1.187 is rarely the lab's;
 *   - coap_read_session() (src/net.c, line 1690) copies each datagram's
 *     addresses over the session's own, so after the first answer the
 *     "multicast" session points at that server and the next probe would
 *     go to it alone;
 *   - our token routing (transport_tokens.c) ends a one-shot request at
 *     its first response, and a group answers many times.
 * What we need of an answer is who sent it, which recvfrom() gives.  The
 * probe is one fixed NON GET; the answers are read only as far as their
 * header and token.  Each server that answers is handed to the dial-out,
 * which opens an ordinary unicast session to it, fetches its
 * /.well-known/core and observes its obs links, probes its silence and
 * dials it again when it goes: a discovered device is a dial-out device
 * that was not listed.
 *
 * Answers may come late (a server waits a random Leisure, 5 s by
 * default, before it answers a multicast request), so the token of the
 * previous probe is still accepted.
 *
 * Layer: services (calls dialout, loop, base)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "coap2mqtt/dialout.h"
#include "coap2mqtt/discovery.h"
#include "coap2mqtt/log.h"
#include "coap2mqtt/topics.h"

#define COAP_PORT       5683
#define GROUP_V4        "224.0.1.187"
#define GROUP_V6        "ff02::fd"
#define TOKEN_LEN       8
#define READS_PER_WAKE  64      /* then the loop serves the others */

struct discovery {
    struct gw *gw;
    unsigned ifindex;
    int fd4, fd6;               /* -1 when that family is not probed */
    uint64_t timer;
    uint16_t mid;
    uint8_t token[TOKEN_LEN];   /* the last probe's */
    uint8_t prev[TOKEN_LEN];    /* the one before: late answers */
};

/* --- the id ------------------------------------------------------------------ */

int
discovery_id(const struct sockaddr *sa, char *buf, size_t cap)
{
    char addr[INET6_ADDRSTRLEN];
    int port, n;

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

        inet_ntop(AF_INET, &in->sin_addr, addr, sizeof(addr));
        port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

        inet_ntop(AF_INET6, &in6->sin6_addr, addr, sizeof(addr));
        port = ntohs(in6->sin6_port);
    } else {
        return -1;
    }
    n = snprintf(buf, cap, "mc-%s-%d", addr, port);
    if (n < 0 || (size_t)n >= cap)
        return -1;
    /* A topic level wants neither '.' nor ':' to mean something. */
    for (char *p = buf; *p; p++)
        if (*p == '.' || *p == ':')
            *p = '-';
    return topic_id_valid(buf, (size_t)n) ? 0 : -1;
}

/* --- probing ----------------------------------------------------------------- */

/* NON GET /.well-known/core: header, token, Uri-Path "well-known" (11),
 * Uri-Path "core" (delta 0). */
static size_t
build_probe(struct discovery *d, uint8_t *buf)
{
    size_t n = 0;

    buf[n++] = 0x40 | 0x10 | TOKEN_LEN;     /* version 1, NON, TKL */
    buf[n++] = 0x01;                        /* 0.01 GET */
    buf[n++] = (uint8_t)(d->mid >> 8);
    buf[n++] = (uint8_t)d->mid;
    memcpy(buf + n, d->token, TOKEN_LEN);
    n += TOKEN_LEN;
    buf[n++] = 0xbb;                        /* Uri-Path, 11 bytes */
    memcpy(buf + n, ".well-known", 11);
    n += 11;
    buf[n++] = 0x04;                        /* Uri-Path, 4 bytes */
    memcpy(buf + n, "core", 4);
    return n + 4;
}

static void
new_token(struct discovery *d)
{
    memcpy(d->prev, d->token, TOKEN_LEN);
    if (getrandom(d->token, TOKEN_LEN, 0) != TOKEN_LEN)
        for (size_t i = 0; i < TOKEN_LEN; i++)      /* never seen on Linux */
            d->token[i] = (uint8_t)(d->token[i] * 31 + d->mid + i);
    d->mid++;
}

/* A failure (the interface down, no address on it yet) is logged and
 * the next probe tries again. */
static void
send_to(const int *fd, const struct sockaddr *to, socklen_t len, const uint8_t *pdu,
        size_t n, const char *group)
{
    if (*fd < 0)
        return;
    if (sendto(*fd, pdu, n, 0, to, len) < 0)
        log_ratelimited(fd, "discovery: cannot send to %s: %s", group,
                        strerror(errno));
}

static void
probe(loop_t *loop, void *arg)
{
    struct discovery *d = arg;
    struct sockaddr_in g4 = { .sin_family = AF_INET, .sin_port = htons(COAP_PORT) };
    struct sockaddr_in6 g6 = { .sin6_family = AF_INET6, .sin6_port = htons(COAP_PORT),
                               .sin6_scope_id = d->ifindex };
    uint8_t pdu[64];
    size_t n;

    d->timer = 0;
    if (d->gw->stopping)
        return;
    inet_pton(AF_INET, GROUP_V4, &g4.sin_addr);
    inet_pton(AF_INET6, GROUP_V6, &g6.sin6_addr);
    new_token(d);
    n = build_probe(d, pdu);
    log_info("discovery: GET /.well-known/core to %s and %s on %s", GROUP_V4,
             GROUP_V6, d->gw->cfg->discovery.interface);
    send_to(&d->fd4, (struct sockaddr *)&g4, sizeof(g4), pdu, n, GROUP_V4);
    send_to(&d->fd6, (struct sockaddr *)&g6, sizeof(g6), pdu, n, GROUP_V6);
    d->timer = loop_add_timer(loop, (uint64_t)d->gw->cfg->discovery.interval * 1000,
                              probe, d);
}

/* --- answers ------------------------------------------------------------------ */

/* A response (2.xx..5.xx) to one of our last two probes; every packet is
 * hostile, so the header is checked before the token is looked at. */
static bool
answers_us(const struct discovery *d, const uint8_t *p, size_t n)
{
    unsigned tkl, cls;

    if (n < 4 || (p[0] >> 6) != 1)
        return false;
    tkl = p[0] & 0x0f;
    cls = p[1] >> 5;
    if (tkl != TOKEN_LEN || n < 4 + tkl || cls < 2 || cls > 5)
        return false;
    return memcmp(p + 4, d->token, TOKEN_LEN) == 0 ||
           memcmp(p + 4, d->prev, TOKEN_LEN) == 0;
}

/* A confirmable answer wants its empty ACK, or the server retransmits it. */
static void
ack_if_con(int fd, const uint8_t *p, const struct sockaddr *from, socklen_t len)
{
    uint8_t ack[4] = { 0x60, 0x00, p[2], p[3] };

    if ((p[0] & 0x30) == 0x00)
        (void)sendto(fd, ack, sizeof(ack), 0, from, len);
}

/* The dial-out's host: numeric, a link-local IPv6 address with its scope
 * (a unicast session to it needs the interface as much as the probe). */
static int
host_of(const struct sockaddr_storage *ss, char *host, size_t cap, int *port)
{
    char addr[INET6_ADDRSTRLEN], ifname[IF_NAMESIZE];

    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;

        inet_ntop(AF_INET, &in->sin_addr, host, (socklen_t)cap);
        *port = ntohs(in->sin_port);
        return 0;
    }
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;

    inet_ntop(AF_INET6, &in6->sin6_addr, addr, sizeof(addr));
    *port = ntohs(in6->sin6_port);
    if (in6->sin6_scope_id && if_indextoname(in6->sin6_scope_id, ifname))
        snprintf(host, cap, "%s%%%s", addr, ifname);
    else
        snprintf(host, cap, "%s", addr);
    return 0;
}

static void
found(struct discovery *d, const struct sockaddr_storage *from)
{
    char id[TOPIC_ID_MAX + 1], host[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
    int port;

    if (discovery_id((const struct sockaddr *)from, id, sizeof(id)) < 0 ||
        host_of(from, host, sizeof(host), &port) < 0 || port == 0)
        return;
    log_info("discovery: %s answered at %s port %d", id, host, port);
    dialout_add_discovered(d->gw->dialout, id, host, port);
}

static void
readable(loop_t *loop, int fd, uint32_t events, void *arg)
{
    struct discovery *d = arg;
    struct sockaddr_storage from;
    socklen_t len;
    uint8_t buf[1500];
    ssize_t n;

    (void)loop;
    (void)events;
    for (int i = 0; i < READS_PER_WAKE; i++) {
        len = sizeof(from);
        n = recvfrom(fd, buf, sizeof(buf), MSG_TRUNC, (struct sockaddr *)&from, &len);
        if (n < 0)
            return;         /* EAGAIN, or an ICMP error of no interest */
        if ((size_t)n > sizeof(buf))
            n = sizeof(buf);
        if (!answers_us(d, buf, (size_t)n))
            continue;
        ack_if_con(fd, buf, (struct sockaddr *)&from, len);
        if (!d->gw->stopping)
            found(d, &from);
    }
}

/* --- sockets ------------------------------------------------------------------ */

/* IP(V6)_MULTICAST_IF: the probe leaves by the lab's interface, not by
 * whichever the multicast route names. */
static int
open_v4(unsigned ifindex)
{
    struct ip_mreqn mreq = { .imr_ifindex = (int)ifindex };
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    if (setsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, &mreq, sizeof(mreq)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int
open_v6(unsigned ifindex)
{
    int one = 1, idx = (int)ifindex;
    int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0 ||
        setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, &idx, sizeof(idx)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int
watch(struct discovery *d, int *fd, const char *family)
{
    const char *ifname = d->gw->cfg->discovery.interface;

    if (*fd < 0) {
        log_info("discovery: no %s probes on %s: %s", family, ifname,
                 strerror(errno));
        return -1;
    }
    if (loop_add_fd(d->gw->loop, *fd, EPOLLIN, readable, d) < 0) {
        log_warn("discovery: cannot watch the %s socket", family);
        close(*fd);
        *fd = -1;
        return -1;
    }
    return 0;
}

static void
close_fd(struct discovery *d, int fd)
{
    if (fd < 0)
        return;
    loop_del_fd(d->gw->loop, fd);
    close(fd);
}

discovery_t *
discovery_new(struct gw *gw)
{
    const struct config_discovery *cfg = &gw->cfg->discovery;
    struct discovery *d = calloc(1, sizeof(*d));

    if (!d) {
        log_warnx("out of memory");
        return NULL;
    }
    d->gw = gw;
    d->fd4 = d->fd6 = -1;
    if (!(d->ifindex = if_nametoindex(cfg->interface))) {
        log_warn("discovery: interface %s", cfg->interface);
        free(d);
        return NULL;
    }
    d->fd4 = open_v4(d->ifindex);
    watch(d, &d->fd4, "IPv4");
    d->fd6 = open_v6(d->ifindex);
    /* IPv6 may be off on the host: IPv4 alone will do, and the reverse. */
    if (watch(d, &d->fd6, "IPv6") < 0 && d->fd4 < 0) {
        log_warnx("discovery: cannot probe on %s", cfg->interface);
        free(d);
        return NULL;
    }
    if (!(d->timer = loop_add_timer(gw->loop, 0, probe, d))) {
        discovery_free(d);
        return NULL;
    }
    log_notice("discovery: probing %s%s%s on %s every %d s", d->fd4 >= 0 ? GROUP_V4 : "",
               d->fd4 >= 0 && d->fd6 >= 0 ? " and " : "", d->fd6 >= 0 ? GROUP_V6 : "",
               cfg->interface, cfg->interval);
    return d;
}

void
discovery_free(discovery_t *d)
{
    if (!d)
        return;
    loop_cancel_timer(d->gw->loop, d->timer);
    close_fd(d, d->fd4);
    close_fd(d, d->fd6);
    free(d);
}
