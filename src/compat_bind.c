/*
 * compat_bind.c - several libcoap endpoints on one DTLS port, so that each
 * holds a share of the sessions.
 *
 * libcoap 4.3.1 (through 4.3.5) keeps an endpoint's sessions in one hash
 * and, for every datagram from an address it has no session for (both
 * ClientHellos of every handshake), coap_endpoint_get_session() visits
 * every one of them to count the idle and the half-open ones.  A
 * handshake therefore costs O(sessions): at 84,700 sessions the box did
 * 90 handshakes/s (docs/BENCHMARKS.md).  The endpoint's sessions are the
 * unit, and endpoints can share a port: with SO_REUSEPORT the kernel
 * spreads datagrams over the sockets by a hash of the 4-tuple, so one
 * device always reaches the same socket, and each endpoint's walk covers
 * 1/k of the fleet.
 *
 * libcoap has no hook between its socket() and its bind()
 * (coap_socket_bind_udp in src/coap_io.c sets SO_REUSEADDR and the
 * PKTINFO options, then binds), so bind() itself is interposed: the
 * executable's definition is the one libcoap's PLT call reaches, and
 * while compat_bind_share() is on it sets SO_REUSEPORT first.  Off, it is
 * the plain bind() (found with dlsym RTLD_NEXT) for everybody, our own
 * sockets included.
 *
 * Layer: base (calls libc only)
 */
#include <dlfcn.h>     /* RTLD_NEXT: _GNU_SOURCE, from the Makefile */
#include <stdbool.h>
#include <sys/socket.h>

#include "compat_libcoap.h"

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);

static bool share_next;
static int last_fd = -1;        /* the last socket bound */

void
compat_bind_share(bool on)
{
    share_next = on;
    last_fd = -1;
}

int
compat_bind_last_fd(void)
{
    return last_fd;
}

int
bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    static bind_fn real;
    int on = 1;

    if (!real)
        *(void **)&real = dlsym(RTLD_NEXT, "bind");
    if (share_next && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) < 0)
        return -1;
    last_fd = fd;
    return real(fd, addr, len);
}
