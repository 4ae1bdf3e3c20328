/*
 * test_compat_libcoap.c - the latch of the libcoap #1306 work-around
 * (src/compat_libcoap.c) and the batched reads of the transport
 * (src/transport_io.c, learn_reads) that must leave it alone.
 *
 * The work-around finds libcoap 4.3.1's last_con_mid inside a session from
 * the app-data pointer, checks the layout, and either remembers the offset
 * (found) or turns itself off for good with one log line.  Its state must
 * start "unknown", and a batch of reads that found a socket empty has
 * nothing to do with it (issue 12, item 12).  A real libcoap session is
 * used: a client session on UDP (no datagram is sent), whose
 * last_con_mid is COAP_INVALID_MID until a CON response arrives.
 *
 * And the spacing of libcoap's session walk (src/compat_walk.c): this
 * binary defines coap_io_prepare_epoll() as the gateway does, so libcoap's
 * own calls come to it; throttled, a walk right after another is skipped
 * and owed, one the timerfd asked for is not, and an explicit one always
 * runs.  Whether a walk ran is seen in walk.next_ns, which only a real
 * walk moves.
 *
 * The files are included, so that their static functions can be called.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "../../src/compat_libcoap.c"
#include "../../src/compat_walk.c"
#include "../../src/transport_io.c"

#define LAYOUT_WARNING "libcoap session layout not as expected"

/* transport_io.c's one call into the guards; not reached here. */
void
transport__check_rehandshake(transport_t *t, const struct epoll_event *ev)
{
    (void)t;
    (void)ev;
}

/* ... and into transport_oscore.c: no OSCORE here. */
enum transport_peek
transport__oscore_peek(transport_t *t, const struct epoll_event *ev, uint64_t batch)
{
    (void)t;
    (void)ev;
    (void)batch;
    return PEEK_ANY;
}

struct fixture {
    coap_context_t *ctx;
    coap_session_t *session;
    int app;                    /* the app-data pointer points here */
    char log_path[64];
    int saved_stderr;
};

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    coap_address_t dst;
    int fd;

    assert_non_null(f);
    coap_startup();
    coap_set_log_level(LOG_EMERG);
    f->ctx = coap_new_context(NULL);
    assert_non_null(f->ctx);
    coap_address_init(&dst);
    dst.addr.sin.sin_family = AF_INET;
    dst.addr.sin.sin_port = htons(5683);
    dst.addr.sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    dst.size = sizeof(dst.addr.sin);
    f->session = coap_new_client_session(f->ctx, NULL, &dst, COAP_PROTO_UDP);
    assert_non_null(f->session);
    coap_session_set_app_data(f->session, &f->app);
    /* The gateway's log goes to stderr: keep it in a file to count lines. */
    snprintf(f->log_path, sizeof(f->log_path), "/tmp/c2m-compat-XXXXXX");
    fd = mkstemp(f->log_path);
    assert_true(fd >= 0);
    fflush(stderr);
    f->saved_stderr = dup(2);
    assert_true(dup2(fd, 2) == 2);
    close(fd);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    FILE *in;
    char line[512];

    /* Back to the real stderr, and what went to the file with it (a
     * failed assertion's message among it). */
    fflush(stderr);
    dup2(f->saved_stderr, 2);
    close(f->saved_stderr);
    if ((in = fopen(f->log_path, "r"))) {
        while (fgets(line, sizeof(line), in))
            fputs(line, stderr);
        fclose(in);
    }
    unlink(f->log_path);
    coap_session_release(f->session);
    coap_free_context(f->ctx);
    coap_cleanup();
    free(f);
    return 0;
}

/* Lines of the gateway's log so far that contain 'what'. */
static int
logged(const struct fixture *f, const char *what)
{
    FILE *in = fopen(f->log_path, "r");
    char line[512];
    int n = 0;

    assert_non_null(in);
    while (fgets(line, sizeof(line), in))
        if (strstr(line, what))
            n++;
    fclose(in);
    return n;
}

/* A transport whose only learnt state is the work-around's. */
static void
transport_with(transport_t *t, const struct compat_libcoap *c)
{
    memset(t, 0, sizeof(*t));
    t->compat = *c;
    t->reads_per_event = 4;
}

/* A batch in which two of four reads found the socket empty (a socket
 * with nothing waiting afterwards). */
static void
batch_with_empty_reads(transport_t *t)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);

    assert_true(fd >= 0);
    *reads_of(t, fd) = 4;
    learn_reads(t, &fd, 1, 2);
    assert_int_equal(*reads_of(t, fd), 2);
    close(fd);
}

/* From a fresh start, the first CON response finds the field: no warning,
 * the workaround on.  (Starting at 0 took offset 0 for found, read the
 * wrong bytes and turned the workaround off with a false alarm.) */
static void
test_first_response_finds_the_field(void **state)
{
    struct fixture *f = *state;
    struct compat_libcoap c;

    compat_libcoap_init(&c);
    assert_non_null(last_con_mid_field(&c, f->session, COAP_INVALID_MID));
    assert_true(c.con_mid_offset > 0);
    assert_int_equal(logged(f, LAYOUT_WARNING), 0);
}

/* Once found, the offset stays: a batch with empty reads says nothing
 * about libcoap's struct layout. */
static void
test_empty_reads_keep_a_found_field(void **state)
{
    struct fixture *f = *state;
    struct compat_libcoap c = { .con_mid_offset = -1 };
    transport_t t;
    long found;

    assert_non_null(last_con_mid_field(&c, f->session, COAP_INVALID_MID));
    found = c.con_mid_offset;
    assert_true(found > 0);
    transport_with(&t, &c);
    batch_with_empty_reads(&t);
    assert_int_equal(t.compat.con_mid_offset, found);
    assert_non_null(last_con_mid_field(&t.compat, f->session, COAP_INVALID_MID));
    assert_int_equal(logged(f, LAYOUT_WARNING), 0);
}

/* A mismatch turns the workaround off once, with one log line, for the
 * rest of the process: batches with empty reads do not turn it back on. */
static void
test_off_stays_off_and_warns_once(void **state)
{
    struct fixture *f = *state;
    struct compat_libcoap c = { .con_mid_offset = -1 };
    transport_t t;

    /* libcoap's stored Message ID is not 4242: the layout check fails. */
    assert_null(last_con_mid_field(&c, f->session, 4242));
    assert_int_equal(c.con_mid_offset, -2);
    assert_int_equal(logged(f, LAYOUT_WARNING), 1);
    transport_with(&t, &c);
    for (int i = 0; i < 3; i++) {
        batch_with_empty_reads(&t);
        assert_int_equal(t.compat.con_mid_offset, -2);
        assert_null(last_con_mid_field(&t.compat, f->session, COAP_INVALID_MID));
    }
    assert_int_equal(logged(f, LAYOUT_WARNING), 1);
}

static void
test_walks_are_spaced_when_throttled(void **state)
{
    struct fixture *f = *state;
    uint64_t owed_in, before;
    coap_tick_t now;

    coap_ticks(&now);
    compat_walk_throttle(false);
    coap_io_prepare_epoll(f->ctx, now);     /* not throttled: runs */
    assert_false(compat_walk_owed(&owed_in));

    compat_walk_throttle(true);
    compat_walk_now(f->ctx);
    /* Pretend the last walk was dear: the next may not come for 50 ms. */
    walk.next_ns = walk_clock_ns() + 50000000ull;
    before = walk.next_ns;
    assert_int_equal(walk.last, coap_io_prepare_epoll(f->ctx, now));
    assert_int_equal(walk.next_ns, before);         /* skipped */
    assert_true(compat_walk_owed(&owed_in));
    assert_in_range(owed_in, 1, 50);

    compat_walk_due();                              /* the timerfd fired */
    coap_io_prepare_epoll(f->ctx, now);
    assert_true(walk.next_ns < before);             /* ran */
    assert_false(compat_walk_owed(&owed_in));

    walk.next_ns = walk_clock_ns() + 50000000ull;
    compat_walk_now(f->ctx);                        /* explicit: runs */
    assert_true(walk.next_ns < walk_clock_ns() + 50000000ull);
    assert_false(compat_walk_owed(&owed_in));

    /* libcoap's own call (coap_io_do_epoll ends with it, through the PLT)
     * reaches this definition: with no events it is just the walk. */
    walk.next_ns = walk_clock_ns() + 50000000ull;
    coap_io_do_epoll(f->ctx, NULL, 0);
    assert_true(compat_walk_owed(&owed_in));
    compat_walk_throttle(false);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_first_response_finds_the_field, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_reads_keep_a_found_field, setup, teardown),
        cmocka_unit_test_setup_teardown(test_off_stays_off_and_warns_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_walks_are_spaced_when_throttled, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
