/*
 * compat_mosq.c - two kinds of system call libmosquitto 2.0 makes for
 * every message that a client driving the socket from its own epoll loop
 * does not need.  Syscalls are the dear part on the boxes this runs on
 * (a VM: entry and exit were a quarter of the gateway's samples under
 * load, perf), and these were more than half of the gateway's:
 *
 * 1. packet__queue() writes one byte to an internal socketpair after every
 *    packet it queues, to wake the select() of mosquitto_loop() in
 *    threaded mode (lib/packet_mosq.c).  Nobody reads that pair here: it
 *    fills after a few thousand publishes and from then on each publish
 *    costs a write() that fails with EAGAIN (perf trace: 7,801 of 24,055
 *    write()s in 3 s at 8,500 pushes/s).
 * 2. packet__read() reads a packet's command byte, each byte of its
 *    remaining length, then the rest, each with its own read()
 *    (lib/packet_mosq.c, net__read): three read()s for a 4-byte PUBACK,
 *    2.8 per message measured.
 *
 * So, as compat_bind.c does for bind(): the executable's socketpair(),
 * write(), read() and close() are the ones libmosquitto's PLT calls reach
 * (the real ones found with dlsym RTLD_NEXT).  socketpair() while
 * compat_mosq_capture() is on (around mosquitto_new) records the wake
 * pair, and write() to it succeeds without a syscall.  read() on a socket
 * given to compat_mosq_buffer() is served from a buffer filled by one
 * read() of up to 16 KiB: epoll no longer sees bytes we hold, so the
 * caller asks compat_mosq_buffered() after mosquitto_loop_read() and
 * reads again while it says so.  close() forgets the descriptor, so a
 * number reused by a later socket starts clean; libmosquitto closes its
 * sockets with close() (COMPAT_CLOSE).  TLS reads come through here too
 * (OpenSSL's socket BIO uses read()), below OpenSSL's own record buffer.
 *
 * 3. Each packet libmosquitto queues is written at once, one write() per
 *    publish.  While compat_mosq_hold() is on (the caller's burst of
 *    publishes) writes to a buffered socket collect here and go out in
 *    one write() when it is turned off, as TCP_CORK would send them in
 *    full segments but without a syscall each.  What the socket does not
 *    take stays here, in order: later writes queue behind it (or see
 *    EAGAIN when the buffer is full, which libmosquitto handles as from
 *    the socket), compat_mosq_unsent() says so, and compat_mosq_flush()
 *    sends it when the socket is writable again.  A write error is kept
 *    and given to the next write().
 *
 * Everything else passes straight through: a slot lookup is a few
 * compares.  The tables are read from any thread (the syncer thread
 * closes files) and written from the loop's, hence the atomics.
 *
 * Checked against libmosquitto 2.0.11 (Debian 12) through 2.0.20.
 *
 * Layer: base (calls libc only)
 */
#include <dlfcn.h>     /* RTLD_NEXT: _GNU_SOURCE, from the Makefile */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "compat_mosq.h"

#define WAKE_MAX    (2 * 32)        /* both ends, up to 32 clients */
#define BUFFER_MAX  32              /* buffered sockets */
#define BUFFER_SIZE (16u << 10)
#define OUT_SIZE    (32u << 10)

typedef ssize_t (*rw_fn)(int, void *, size_t);
typedef ssize_t (*w_fn)(int, const void *, size_t);
typedef int (*close_fn)(int);
typedef int (*socketpair_fn)(int, int, int, int[2]);

static struct {
    rw_fn read;
    w_fn write;
    close_fn close;
    socketpair_fn socketpair;
} real;

static bool capturing;
static _Atomic int wake[WAKE_MAX];          /* fd + 1; 0 = free */
static _Atomic int n_marked;                /* wake + buffered, for the fast path */

struct rbuf {
    _Atomic int fd;                         /* fd + 1; 0 = free */
    size_t off, len;
    uint8_t data[BUFFER_SIZE];
    bool held;                              /* collecting writes */
    int werr;                               /* a failed flush's errno */
    size_t wlen;
    uint8_t out[OUT_SIZE];
};
static struct rbuf bufs[BUFFER_MAX];

/* At load, before any thread; later calls find it done. */
__attribute__((constructor)) static void
resolve(void)
{
    if (real.read)
        return;
    *(void **)&real.write = dlsym(RTLD_NEXT, "write");
    *(void **)&real.close = dlsym(RTLD_NEXT, "close");
    *(void **)&real.socketpair = dlsym(RTLD_NEXT, "socketpair");
    *(void **)&real.read = dlsym(RTLD_NEXT, "read");
}

static bool
is_wake(int fd)
{
    for (size_t i = 0; i < WAKE_MAX; i++)
        if (atomic_load_explicit(&wake[i], memory_order_relaxed) == fd + 1)
            return true;
    return false;
}

static struct rbuf *
buffer_of(int fd)
{
    for (size_t i = 0; i < BUFFER_MAX; i++)
        if (atomic_load_explicit(&bufs[i].fd, memory_order_relaxed) == fd + 1)
            return &bufs[i];
    return NULL;
}

/* Forgets fd wherever it is marked (closed, or given up). */
static void
forget(int fd)
{
    struct rbuf *b;

    for (size_t i = 0; i < WAKE_MAX; i++)
        if (atomic_load_explicit(&wake[i], memory_order_relaxed) == fd + 1) {
            atomic_store(&wake[i], 0);
            atomic_fetch_sub(&n_marked, 1);
        }
    if ((b = buffer_of(fd))) {
        b->off = b->len = b->wlen = 0;
        b->held = false;
        b->werr = 0;
        atomic_store(&b->fd, 0);
        atomic_fetch_sub(&n_marked, 1);
    }
}

void
compat_mosq_capture(bool on)
{
    resolve();
    capturing = on;
}

bool
compat_mosq_buffer(int fd)
{
    resolve();
    if (fd < 0 || buffer_of(fd))
        return fd >= 0;
    for (size_t i = 0; i < BUFFER_MAX; i++) {
        int free_slot = 0;

        if (atomic_compare_exchange_strong(&bufs[i].fd, &free_slot, fd + 1)) {
            bufs[i].off = bufs[i].len = bufs[i].wlen = 0;
            bufs[i].held = false;
            bufs[i].werr = 0;
            atomic_fetch_add(&n_marked, 1);
            return true;
        }
    }
    return false;       /* more clients than slots: plain reads */
}

bool
compat_mosq_buffered(int fd)
{
    struct rbuf *b = fd >= 0 ? buffer_of(fd) : NULL;

    return b && b->off < b->len;
}

/* Sends what the socket takes of the collected bytes. */
static void
flush_out(int fd, struct rbuf *b)
{
    ssize_t n;

    while (b->wlen && !b->werr) {
        if ((n = real.write(fd, b->out, b->wlen)) < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                b->werr = errno;
            if (errno != EINTR)
                return;
            continue;
        }
        memmove(b->out, b->out + n, b->wlen - (size_t)n);
        b->wlen -= (size_t)n;
    }
}

bool
compat_mosq_hold(int fd, bool on)
{
    struct rbuf *b = fd >= 0 ? buffer_of(fd) : NULL;

    if (!b)
        return false;
    b->held = on;
    if (!on)
        flush_out(fd, b);
    return true;
}

bool
compat_mosq_unsent(int fd)
{
    struct rbuf *b = fd >= 0 ? buffer_of(fd) : NULL;

    return b && b->wlen && !b->werr;
}

void
compat_mosq_flush(int fd)
{
    struct rbuf *b = fd >= 0 ? buffer_of(fd) : NULL;

    if (b)
        flush_out(fd, b);
}

/* A write to a buffered socket: collected while held or behind unsent
 * bytes, else straight through. */
static ssize_t
write_buffered(int fd, struct rbuf *b, const void *buf, size_t count)
{
    if (b->werr) {
        errno = b->werr;
        return -1;
    }
    if (!b->held && !b->wlen)
        return real.write(fd, buf, count);
    if (b->wlen + count > OUT_SIZE) {
        flush_out(fd, b);
        if (b->werr) {
            errno = b->werr;
            return -1;
        }
        if (b->wlen + count > OUT_SIZE) {
            if (b->wlen) {
                errno = EAGAIN;     /* behind unsent bytes: the socket is full */
                return -1;
            }
            return real.write(fd, buf, count);      /* larger than the buffer */
        }
    }
    memcpy(b->out + b->wlen, buf, count);
    b->wlen += count;
    if (!b->held)
        flush_out(fd, b);
    return (ssize_t)count;
}

int
socketpair(int domain, int type, int protocol, int sv[2])
{
    int rc;

    resolve();
    rc = real.socketpair(domain, type, protocol, sv);
    if (rc == 0 && capturing) {
        for (int end = 0; end < 2; end++)
            for (size_t i = 0; i < WAKE_MAX; i++) {
                int free_slot = 0;

                if (atomic_compare_exchange_strong(&wake[i], &free_slot, sv[end] + 1)) {
                    atomic_fetch_add(&n_marked, 1);
                    break;
                }
            }
    }
    return rc;
}

ssize_t
write(int fd, const void *buf, size_t count)
{
    struct rbuf *b;

    resolve();
    if (!atomic_load_explicit(&n_marked, memory_order_relaxed))
        return real.write(fd, buf, count);
    if (is_wake(fd))
        return count ? 1 : 0;       /* the byte that wakes nobody */
    if ((b = buffer_of(fd)))
        return write_buffered(fd, b, buf, count);
    return real.write(fd, buf, count);
}

ssize_t
read(int fd, void *buf, size_t count)
{
    struct rbuf *b;
    size_t k;
    ssize_t n;

    resolve();
    if (!atomic_load_explicit(&n_marked, memory_order_relaxed) || !(b = buffer_of(fd)))
        return real.read(fd, buf, count);
    if (b->off == b->len) {
        if (count >= BUFFER_SIZE)
            return real.read(fd, buf, count);
        if ((n = real.read(fd, b->data, BUFFER_SIZE)) <= 0)
            return n;
        b->off = 0;
        b->len = (size_t)n;
    }
    k = b->len - b->off < count ? b->len - b->off : count;
    memcpy(buf, b->data + b->off, k);
    b->off += k;
    return (ssize_t)k;
}

int
close(int fd)
{
    resolve();
    if (atomic_load_explicit(&n_marked, memory_order_relaxed))
        forget(fd);
    return real.close(fd);
}
