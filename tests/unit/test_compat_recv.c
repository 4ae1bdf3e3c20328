/*
 * test_compat_recv.c - src/compat_recv.c on real UDP sockets: a watched
 * socket's datagrams are shown to the filter, one refused is gone and the
 * next is read in its place (with its own sender and ancillary data);
 * when only refused ones wait, the caller gets EAGAIN; MSG_PEEK, sockets
 * not watched and a process without a filter are untouched; the filter
 * can ask how long each datagram waited in the socket.
 *
 * The file is included, so that the interposed recvmsg() is the one called.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "../../src/compat_recv.c"

struct pair {
    int rx, tx_keep, tx_drop;
    struct sockaddr_in keep_addr;
};

static int refused;

/* Refuses datagrams whose first byte is 'D'. */
static bool
keep_unless_d(void *arg, int fd, const struct sockaddr *from, const uint8_t *data, size_t len)
{
    (void)arg;
    (void)fd;
    (void)from;
    if (len && data[0] == 'D') {
        refused++;
        return false;
    }
    return true;
}

/* Keeps everything, noting how long each datagram waited (by its first
 * byte: A, B, or C for the probes of stamps_on). */
static int64_t age_of[3];

static bool
keep_noting_age(void *arg, int fd, const struct sockaddr *from, const uint8_t *data, size_t len)
{
    (void)arg;
    (void)from;
    if (len && data[0] >= 'A' && data[0] <= 'C')
        age_of[data[0] - 'A'] = compat_recv_age_ms(fd);
    return true;
}

static int
udp_bound(struct sockaddr_in *a)
{
    socklen_t l = sizeof(*a);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    int on = 1;

    memset(a, 0, sizeof(*a));
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)a, sizeof(*a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)a, &l), 0);
    setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &on, sizeof(on));
    return fd;
}

static void
pair_open(struct pair *p)
{
    struct sockaddr_in rx, a;

    p->rx = udp_bound(&rx);
    p->tx_keep = udp_bound(&p->keep_addr);
    p->tx_drop = udp_bound(&a);
    assert_int_equal(connect(p->tx_keep, (struct sockaddr *)&rx, sizeof(rx)), 0);
    assert_int_equal(connect(p->tx_drop, (struct sockaddr *)&rx, sizeof(rx)), 0);
}

static void
pair_close(struct pair *p)
{
    compat_recv_watch(p->rx, false);
    close(p->rx);
    close(p->tx_keep);
    close(p->tx_drop);
}

/* As libcoap reads: a name, one iovec, a small control buffer. */
static ssize_t
read_like_libcoap(int fd, char *buf, size_t cap, struct sockaddr_in *from, bool *pktinfo)
{
    char control[CMSG_SPACE(sizeof(struct in6_pktinfo))];
    struct iovec iov = { buf, cap };
    struct msghdr m = {
        .msg_name = from, .msg_namelen = sizeof(*from), .msg_iov = &iov, .msg_iovlen = 1,
        .msg_control = control, .msg_controllen = sizeof(control),
    };
    ssize_t n = recvmsg(fd, &m, 0);

    *pktinfo = false;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); n > 0 && c; c = CMSG_NXTHDR(&m, c))
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO)
            *pktinfo = true;
    return n;
}

static void
test_refused_datagrams_are_skipped(void **state)
{
    struct pair p;
    struct sockaddr_in from;
    char buf[64];
    bool pktinfo;

    (void)state;
    pair_open(&p);
    compat_recv_filter(keep_unless_d, NULL);
    compat_recv_watch(p.rx, true);
    refused = 0;
    assert_int_equal(send(p.tx_drop, "D1", 2, 0), 2);
    assert_int_equal(send(p.tx_drop, "D2", 2, 0), 2);
    assert_int_equal(send(p.tx_keep, "keep", 4, 0), 4);
    assert_int_equal(send(p.tx_drop, "D3", 2, 0), 2);

    /* One read: two refused, then the kept one with its own sender and
     * its ancillary data (the kernel shortened both for the refused). */
    assert_int_equal(read_like_libcoap(p.rx, buf, sizeof(buf), &from, &pktinfo), 4);
    assert_memory_equal(buf, "keep", 4);
    assert_int_equal(from.sin_port, p.keep_addr.sin_port);
    assert_true(pktinfo);
    assert_int_equal(refused, 2);

    /* Only a refused one left: EAGAIN, and the socket is empty. */
    assert_int_equal(read_like_libcoap(p.rx, buf, sizeof(buf), &from, &pktinfo), -1);
    assert_int_equal(errno, EAGAIN);
    assert_int_equal(refused, 3);
    assert_int_equal(recv(p.rx, buf, sizeof(buf), MSG_DONTWAIT), -1);
    compat_recv_filter(NULL, NULL);
    pair_close(&p);
}

static void
test_peek_unwatched_and_no_filter_are_untouched(void **state)
{
    struct pair p;
    struct sockaddr_in from;
    char buf[64];
    bool pktinfo;
    struct iovec iov = { buf, sizeof(buf) };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };

    (void)state;
    pair_open(&p);
    refused = 0;
    compat_recv_filter(keep_unless_d, NULL);

    /* Not watched: a refused byte is read like any other. */
    assert_int_equal(send(p.tx_drop, "D", 1, 0), 1);
    assert_int_equal(read_like_libcoap(p.rx, buf, sizeof(buf), &from, &pktinfo), 1);
    assert_int_equal(refused, 0);

    /* Watched, but peeking: shown as it is, left in place. */
    compat_recv_watch(p.rx, true);
    assert_int_equal(send(p.tx_drop, "D", 1, 0), 1);
    assert_int_equal(recvmsg(p.rx, &m, MSG_PEEK), 1);
    assert_int_equal(refused, 0);

    /* No filter: nothing refused. */
    compat_recv_filter(NULL, NULL);
    assert_int_equal(read_like_libcoap(p.rx, buf, sizeof(buf), &from, &pktinfo), 1);
    assert_int_equal(buf[0], 'D');
    pair_close(&p);
}

/*
 * Waits until the kernel stamps the datagrams of a watched socket. The
 * first socket on a box to ask turns the stamps on through deferred work
 * (net_enable_timestamp), and a datagram that arrives before that work has
 * run carries no stamp: its age reads as 0. So a probe waits 20 ms in the
 * socket until its age shows it (a poll: there is no event to await).
 */
static bool
stamps_on(struct pair *p)
{
    const struct timespec probe_wait = { 0, 20 * 1000000L };
    struct sockaddr_in from;
    char buf[64];
    bool pktinfo;

    for (int tries = 0; tries < 250; tries++) {
        age_of[2] = -2;
        if (send(p->tx_keep, "C", 1, 0) != 1)
            return false;
        nanosleep(&probe_wait, NULL);
        if (read_like_libcoap(p->rx, buf, sizeof(buf), &from, &pktinfo) != 1)
            return false;
        if (age_of[2] >= 20)
            return true;
    }
    return false;
}

static void
test_the_filter_knows_how_long_a_datagram_waited(void **state)
{
    const struct timespec wait = { 0, 150 * 1000000L };
    struct pair p;
    struct sockaddr_in from;
    char buf[64];
    bool pktinfo;

    (void)state;
    pair_open(&p);
    compat_recv_filter(keep_noting_age, NULL);
    compat_recv_watch(p.rx, true);
    assert_true(stamps_on(&p));
    age_of[0] = age_of[1] = -2;
    /* The age to measure: A is sent 150 ms before anything is read. */
    assert_int_equal(send(p.tx_keep, "A", 1, 0), 1);
    nanosleep(&wait, NULL);
    assert_int_equal(send(p.tx_keep, "B", 1, 0), 1);
    assert_int_equal(read_like_libcoap(p.rx, buf, sizeof(buf), &from, &pktinfo), 1);
    assert_true(pktinfo);       /* libcoap's own control data still fits */
    assert_int_equal(read_like_libcoap(p.rx, buf, sizeof(buf), &from, &pktinfo), 1);
    assert_true(pktinfo);
    assert_true(age_of[0] >= 150);
    assert_true(age_of[1] >= 0 && age_of[1] < age_of[0]);
    compat_recv_filter(NULL, NULL);
    pair_close(&p);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refused_datagrams_are_skipped),
        cmocka_unit_test(test_peek_unwatched_and_no_filter_are_untouched),
        cmocka_unit_test(test_the_filter_knows_how_long_a_datagram_waited),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
