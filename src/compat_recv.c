/*
 * compat_recv.c - datagrams libcoap should never see, dropped as they are
 * read.
 *
 * libcoap 4.3.1 (through 4.3.5) reads an endpoint's datagrams with
 * recvmsg() (coap_network_read in src/coap_io.c) and, for every one from
 * an address it holds no session for, coap_endpoint_get_session() visits
 * every session of the endpoint before it can drop it.  When a gateway
 * restarts, the whole fleet keeps writing on the sessions it lost, and
 * each of those datagrams cost that walk (compat_bind.c has the same walk
 * for handshakes).  libcoap has no hook between its recvmsg() and that
 * walk, so recvmsg() itself is interposed: the executable's definition is
 * the one libcoap's PLT call reaches (the real one is found with dlsym
 * RTLD_NEXT).  On a socket given to compat_recv_watch() each datagram is
 * shown to the filter first; one it refuses is gone and the next is read
 * (without waiting) in its place, so libcoap sees only what it should.
 * Every other socket, and everybody else's recvmsg(), is untouched.
 *
 * The filter may also ask how long a datagram waited in its socket
 * (compat_recv_age_ms): the kernel stamps each datagram as it arrives
 * once SIOCGSTAMPNS has been asked for on the socket (done when it is
 * watched), and the stamp of the last one read is one ioctl() away.  No
 * control message is added to libcoap's own buffer.
 *
 * Layer: base (calls libc only)
 */
#include <dlfcn.h>     /* RTLD_NEXT: _GNU_SOURCE, from the Makefile */
#include <errno.h>
#include <stdint.h>
#include <time.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/sockios.h>  /* SIOCGSTAMPNS */

#include "compat_libcoap.h"

#define WATCH_MAX_FD   65536
#define DROPS_PER_CALL 256      /* then EAGAIN: the loop gets its turn */

typedef ssize_t (*recvmsg_fn)(int, struct msghdr *, int);

static uint8_t watched[WATCH_MAX_FD / 8];
static compat_recv_keep_fn keep_fn;
static void *keep_arg;

void
compat_recv_filter(compat_recv_keep_fn keep, void *arg)
{
    keep_fn = keep;
    keep_arg = arg;
}

void
compat_recv_watch(int fd, bool on)
{
    struct timespec ts;

    if (fd < 0 || fd >= WATCH_MAX_FD)
        return;
    if (on) {
        watched[fd / 8] |= (uint8_t)(1u << (fd % 8));
        /* Turns the socket's arrival stamps on (this first call: ENOENT). */
        (void)ioctl(fd, SIOCGSTAMPNS, &ts);
    } else {
        watched[fd / 8] &= (uint8_t)~(1u << (fd % 8));
    }
}

int64_t
compat_recv_age_ms(int fd)
{
    struct timespec stamp, now;

    if (ioctl(fd, SIOCGSTAMPNS, &stamp) < 0 || clock_gettime(CLOCK_REALTIME, &now) < 0)
        return -1;
    return ((int64_t)now.tv_sec - stamp.tv_sec) * 1000 +
           ((int64_t)now.tv_nsec - stamp.tv_nsec) / 1000000;
}

static bool
is_watched(int fd)
{
    return fd >= 0 && fd < WATCH_MAX_FD && (watched[fd / 8] & (1u << (fd % 8)));
}

ssize_t
recvmsg(int fd, struct msghdr *msg, int flags)
{
    static recvmsg_fn real;
    socklen_t namelen = msg->msg_namelen;
    size_t controllen = msg->msg_controllen;
    ssize_t n;

    if (!real)
        *(void **)&real = dlsym(RTLD_NEXT, "recvmsg");
    n = real(fd, msg, flags);
    if (!keep_fn || !is_watched(fd) || (flags & MSG_PEEK))
        return n;
    for (int dropped = 0; n > 0 && msg->msg_name && msg->msg_iovlen > 0; dropped++) {
        if (keep_fn(keep_arg, fd, msg->msg_name, msg->msg_iov[0].iov_base,
                    (size_t)n < msg->msg_iov[0].iov_len ? (size_t)n : msg->msg_iov[0].iov_len))
            return n;
        if (dropped == DROPS_PER_CALL) {
            errno = EAGAIN;
            return -1;
        }
        /* The kernel shortened both for the datagram just refused. */
        msg->msg_namelen = namelen;
        msg->msg_controllen = controllen;
        n = real(fd, msg, flags | MSG_DONTWAIT);
    }
    return n;
}
