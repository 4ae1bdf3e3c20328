/*
 * test_compat_mosq.c - the system calls src/compat_mosq.c saves
 * libmosquitto, on real sockets: the wake pair taken at mosquitto_new()
 * swallows writes without passing them on; a buffered socket hands many
 * small packets out of one read(), in order, with nothing lost between
 * the buffer and the kernel; close() forgets, so a reused descriptor
 * number is plain again; and libmosquitto's own calls come here (its
 * mosquitto_new() makes the pair while capturing).
 *
 * The file is included, so that its state can be looked at.
 */
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>
#include <mosquitto.h>

#include "../../src/compat_mosq.c"

static int
marked_wake_fds(void)
{
    int n = 0;

    for (size_t i = 0; i < WAKE_MAX; i++)
        n += atomic_load(&wake[i]) != 0;
    return n;
}

static void
test_wake_pair_writes_go_nowhere(void **state)
{
    int sv[2], plain[2];
    char c = 'x';

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, plain), 0);   /* not captured */
    compat_mosq_capture(true);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    compat_mosq_capture(false);
    assert_int_equal(marked_wake_fds(), 2);

    /* Far more than the pair holds (a few hundred KiB): never EAGAIN. */
    for (int i = 0; i < 300000; i++)
        assert_int_equal(write(sv[1], &c, 1), 1);
    assert_int_equal(recv(sv[0], &c, 1, MSG_DONTWAIT), -1);
    assert_int_equal(errno, EAGAIN);

    /* An uncaptured pair is a pair. */
    assert_int_equal(write(plain[1], &c, 1), 1);
    assert_int_equal(recv(plain[0], &c, 1, MSG_DONTWAIT), 1);

    close(sv[0]);
    close(sv[1]);
    assert_int_equal(marked_wake_fds(), 0);
    close(plain[0]);
    close(plain[1]);
}

static void
test_buffered_reads_keep_order_and_bytes(void **state)
{
    int sv[2];
    uint8_t out[3 * 4096], in[sizeof(out)];
    size_t got = 0;

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    for (size_t i = 0; i < sizeof(out); i++)
        out[i] = (uint8_t)(i * 7 + i / 251);
    assert_true(compat_mosq_buffer(sv[0]));
    assert_false(compat_mosq_buffered(sv[0]));
    assert_int_equal(send(sv[1], out, sizeof(out), 0), (ssize_t)sizeof(out));

    /* libmosquitto's pattern: one byte, one byte, then the rest. */
    assert_int_equal(read(sv[0], in, 1), 1);
    got = 1;
    /* One read() took it all from the kernel; the rest waits here. */
    assert_true(compat_mosq_buffered(sv[0]));
    assert_int_equal(recv(sv[0], in + 1, 1, MSG_DONTWAIT), -1);
    assert_int_equal(errno, EAGAIN);
    while (got < sizeof(in)) {
        size_t want = got % 3 ? 2 : 1000;
        ssize_t n = read(sv[0], in + got, want > sizeof(in) - got ? sizeof(in) - got : want);

        assert_true(n > 0);
        got += (size_t)n;
    }
    assert_memory_equal(in, out, sizeof(out));
    assert_false(compat_mosq_buffered(sv[0]));

    /* Empty buffer, empty socket: the socket's own answer. */
    assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
    assert_int_equal(read(sv[0], in, 1), -1);
    assert_int_equal(errno, EAGAIN);

    /* The peer closes: end of file comes through. */
    close(sv[1]);
    assert_int_equal(read(sv[0], in, 1), 0);
    close(sv[0]);
}

static void
test_close_forgets_so_a_reused_number_is_plain(void **state)
{
    int sv[2], again[2];
    char buf[8];

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_true(compat_mosq_buffer(sv[0]));
    assert_int_equal(send(sv[1], "abcd", 4, 0), 4);
    assert_int_equal(read(sv[0], buf, 1), 1);
    assert_true(compat_mosq_buffered(sv[0]));      /* "bcd" held */
    close(sv[0]);
    close(sv[1]);

    /* The lowest free numbers come back: the same ones. */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, again), 0);
    assert_int_equal(again[0], sv[0]);
    assert_false(compat_mosq_buffered(again[0]));
    assert_int_equal(send(again[1], "xy", 2, 0), 2);
    assert_int_equal(read(again[0], buf, sizeof(buf)), 2);
    assert_memory_equal(buf, "xy", 2);
    /* Plain: a one-byte read leaves the rest in the kernel. */
    assert_int_equal(send(again[1], "pq", 2, 0), 2);
    assert_int_equal(read(again[0], buf, 1), 1);
    assert_int_equal(recv(again[0], buf, 1, MSG_DONTWAIT), 1);
    assert_int_equal(buf[0], 'q');
    close(again[0]);
    close(again[1]);
}

static void
test_held_writes_go_out_together_and_in_order(void **state)
{
    int sv[2], small = 4096;
    uint8_t in[OUT_SIZE], chunk[1000];
    size_t sent = 0, got = 0;
    ssize_t n;
    int eagain = 0;

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
    assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
    assert_false(compat_mosq_hold(sv[1], true));    /* not buffered: caller corks */
    assert_true(compat_mosq_buffer(sv[1]));

    /* Held: nothing reaches the peer until released. */
    assert_true(compat_mosq_hold(sv[1], true));
    assert_int_equal(write(sv[1], "ab", 2), 2);
    assert_int_equal(write(sv[1], "cd", 2), 2);
    assert_int_equal(recv(sv[0], in, sizeof(in), MSG_DONTWAIT), -1);
    assert_true(compat_mosq_unsent(sv[1]));
    assert_true(compat_mosq_hold(sv[1], false));
    assert_false(compat_mosq_unsent(sv[1]));
    assert_int_equal(recv(sv[0], in, sizeof(in), MSG_DONTWAIT), 4);
    assert_memory_equal(in, "abcd", 4);

    /* A peer that reads nothing: the socket fills, the rest stays here in
     * order, and once the buffer is full too a write sees EAGAIN. */
    assert_int_equal(setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    assert_true(compat_mosq_hold(sv[1], true));
    while (eagain == 0) {
        for (size_t i = 0; i < sizeof(chunk); i++)
            chunk[i] = (uint8_t)(sent + i);
        n = write(sv[1], chunk, sizeof(chunk));
        if (n < 0) {
            assert_int_equal(errno, EAGAIN);
            eagain++;
        } else {
            assert_int_equal(n, (ssize_t)sizeof(chunk));
            sent += (size_t)n;
        }
    }
    assert_true(compat_mosq_hold(sv[1], false));
    assert_true(compat_mosq_unsent(sv[1]));
    /* The peer drains; flushes (as on EPOLLOUT) send the rest. */
    while (got < sent) {
        uint8_t buf[8192];

        compat_mosq_flush(sv[1]);
        n = recv(sv[0], buf, sizeof(buf), MSG_DONTWAIT);
        if (n <= 0)
            continue;
        for (ssize_t i = 0; i < n; i++)
            assert_int_equal(buf[i], (uint8_t)(got + (size_t)i));     /* byte k is k % 256 */
        got += (size_t)n;
    }
    assert_int_equal(got, sent);
    assert_false(compat_mosq_unsent(sv[1]));

    /* Not held, nothing waiting: straight through. */
    assert_int_equal(write(sv[1], "z", 1), 1);
    assert_int_equal(recv(sv[0], in, 1, MSG_DONTWAIT), 1);

    /* A broken connection: the error reaches the next write. */
    close(sv[0]);
    assert_true(compat_mosq_hold(sv[1], true));
    assert_int_equal(write(sv[1], "y", 1), 1);
    assert_true(compat_mosq_hold(sv[1], false));
    assert_int_equal(write(sv[1], "x", 1), -1);
    assert_int_equal(errno, EPIPE);
    close(sv[1]);
}

static void
test_mosquitto_new_makes_the_pair_here(void **state)
{
    struct mosquitto *mosq;

    (void)state;
    mosquitto_lib_init();
    compat_mosq_capture(true);
    mosq = mosquitto_new("test", true, NULL);
    compat_mosq_capture(false);
    assert_non_null(mosq);
    assert_int_equal(marked_wake_fds(), 2);
    mosquitto_destroy(mosq);
    assert_int_equal(marked_wake_fds(), 0);
    mosquitto_lib_cleanup();
}

int
main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wake_pair_writes_go_nowhere),
        cmocka_unit_test(test_buffered_reads_keep_order_and_bytes),
        cmocka_unit_test(test_close_forgets_so_a_reused_number_is_plain),
        cmocka_unit_test(test_held_writes_go_out_together_and_in_order),
        cmocka_unit_test(test_mosquitto_new_makes_the_pair_here),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
