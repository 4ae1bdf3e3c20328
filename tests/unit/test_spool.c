/*
 * test_spool.c - the durable outbound queue (src/spool.c): append, replay
 * after a crash from the acknowledged position, a torn last record, the
 * size limit, overflow to disk and read-back in order, the acknowledged
 * watermark over out-of-order deliveries, and deletion of acknowledged
 * segments.
 *
 * A crash is a forked child that appends and then _exit()s without
 * spool_close(): the file descriptors die with it exactly as under
 * kill -9, and the parent reopens the directory as the restarted daemon.
 * Children report failures through their exit status (cmocka's longjmp
 * must not run in a child).
 *
 * Needs src/spool.c src/outq.c src/loop.c src/log.c and -lz (see the
 * Makefile's PURE_SRC).
 */
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "coap2mqtt/config.h"
#include "coap2mqtt/gateway.h"
#include "coap2mqtt/loop.h"
#include "coap2mqtt/outq.h"
#include "coap2mqtt/spool.h"

#define TOPIC "c2m/dev-1/energy"

struct fix {
    char dir[64];
    char spool[96];
    struct config cfg;
    struct gw gw;
    spool_t *sp;
    unsigned done_true, done_false;
};

/* --- fixture ------------------------------------------------------------- */

static void
gw_up(struct fix *f)
{
    f->gw.cfg = &f->cfg;
    f->gw.loop = loop_new();
    assert_non_null(f->gw.loop);
    f->gw.outq = outq_new((size_t)f->cfg.queue.max_messages);
    assert_non_null(f->gw.outq);
    f->sp = spool_open(&f->gw, f->spool);
    assert_non_null(f->sp);
}

static void
gw_down(struct fix *f)
{
    spool_close(f->sp);
    f->sp = NULL;
    outq_free(f->gw.outq);
    loop_free(f->gw.loop);
    memset(&f->gw, 0, sizeof(f->gw));
}

static struct fix *
fix_new(int max_messages, int spool_max_mb, int fsync_interval)
{
    struct fix *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/c2m-spool-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->spool, sizeof(f->spool), "%s/spool", f->dir);
    f->cfg.queue.max_messages = max_messages;
    f->cfg.queue.spool = true;
    f->cfg.queue.spool_max_mb = spool_max_mb;
    f->cfg.queue.fsync_interval = fsync_interval;
    return f;
}

static void
fix_free(struct fix *f)
{
    char cmd[128];

    if (f->sp)
        gw_down(f);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
}

/* --- messages -------------------------------------------------------------- */

static void
count_done(void *arg, bool delivered)
{
    struct fix *f = arg;

    if (delivered)
        f->done_true++;
    else
        f->done_false++;
}

static outmsg_t *
msg(struct fix *f, unsigned n, size_t pad)
{
    char *buf = malloc(pad + 16);
    int len;
    outmsg_t *m;

    if (!buf)
        return NULL;
    len = snprintf(buf, 16, "%u", n);
    memset(buf + len, ' ', pad);
    m = outmsg_new(TOPIC, buf, (size_t)len + pad, 1, false, 0);
    free(buf);
    if (m) {
        m->done = count_done;
        m->done_arg = f;
    }
    return m;
}

static enum spool_put_result
put(struct fix *f, unsigned n, size_t pad)
{
    outmsg_t *m = msg(f, n, pad);
    enum spool_put_result r;

    if (!m)
        return SPOOL_FULL;
    r = spool_put(f->sp, f->gw.outq, m);
    if (r == SPOOL_FULL)
        outmsg_finish(m, false);     /* ownership stayed with us */
    return r;
}

/* The reading number at the front of a payload. */
static unsigned
num(const outmsg_t *m)
{
    char buf[16];
    size_t n = m->len < sizeof(buf) - 1 ? m->len : sizeof(buf) - 1;

    memcpy(buf, m->payload, n);
    buf[n] = '\0';
    return (unsigned)strtoul(buf, NULL, 10);
}

/* Pops the head; its reading number in *n, its seq in *seq. */
static bool
pop(struct fix *f, unsigned *n, uint64_t *seq)
{
    outmsg_t *m = outq_pop(f->gw.outq);

    if (!m)
        return false;
    *n = num(m);
    *seq = m->seq;
    m->done = NULL;
    outmsg_finish(m, true);
    return true;
}

/* Pops 'count' messages, checks they are first..first+count-1, delivers. */
static void
drain_expect(struct fix *f, unsigned first, unsigned count)
{
    for (unsigned i = 0; i < count; i++) {
        unsigned n;
        uint64_t seq;

        spool_refill(f->sp, f->gw.outq);
        assert_true(pop(f, &n, &seq));
        assert_int_equal(n, first + i);
        assert_true(seq != 0);
        spool_delivered(f->sp, seq);
    }
}

static size_t
count_segments(const struct fix *f)
{
    DIR *d = opendir(f->spool);
    struct dirent *e;
    size_t n = 0;

    assert_non_null(d);
    while ((e = readdir(d)))
        n += strstr(e->d_name, ".seg") != NULL;
    closedir(d);
    return n;
}

/* Path of the only (or the newest) segment file. */
static void
last_segment(const struct fix *f, char *path, size_t cap)
{
    DIR *d = opendir(f->spool);
    struct dirent *e;
    char best[256] = "";

    assert_non_null(d);
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".seg") && strcmp(e->d_name, best) > 0)
            snprintf(best, sizeof(best), "%s", e->d_name);
    closedir(d);
    assert_true(best[0] != '\0');
    assert_true(strlen(f->spool) + strlen(best) + 2 <= cap);
    snprintf(path, cap, "%s/%.*s", f->spool, 32, best);
}

/* --- crashes ----------------------------------------------------------------- */

#define CHILD_CHECK(c) do { if (!(c)) { \
    fprintf(stderr, "child: %s:%d: %s\n", __FILE__, __LINE__, #c); _exit(2); } } while (0)

/*
 * Runs 'fn' in a child on a freshly opened spool and ends the child with
 * _exit(0) and no spool_close(): a kill -9 after the last write().
 */
static void
crash_after(struct fix *f, void (*fn)(struct fix *f))
{
    pid_t pid = fork();
    int st;

    assert_true(pid >= 0);
    if (pid == 0) {
        f->gw.cfg = &f->cfg;
        f->gw.loop = loop_new();
        f->gw.outq = outq_new((size_t)f->cfg.queue.max_messages);
        CHILD_CHECK(f->gw.loop && f->gw.outq);
        f->sp = spool_open(&f->gw, f->spool);
        CHILD_CHECK(f->sp);
        fn(f);
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

/* Child: the queue's head must be reading 'n'; delivers it. */
static void
child_deliver_head(struct fix *f, unsigned n)
{
    unsigned got;
    uint64_t seq;

    CHILD_CHECK(pop(f, &got, &seq));
    CHILD_CHECK(got == n);
    spool_delivered(f->sp, seq);
}

static void
child_put_1_to_10_deliver_4(struct fix *f)
{
    for (unsigned i = 1; i <= 10; i++)
        CHILD_CHECK(put(f, i, 0) == SPOOL_QUEUED);
    for (unsigned i = 1; i <= 4; i++)
        child_deliver_head(f, i);
    /* fsync_interval 0: the next append records the watermark too. */
    CHILD_CHECK(put(f, 11, 0) == SPOOL_QUEUED);
}

/* --- tests ---------------------------------------------------------------- */

static void
test_append_and_deliver(void **state)
{
    struct fix *f = fix_new(100, 16, 0);

    (void)state;
    gw_up(f);
    for (unsigned i = 1; i <= 20; i++)
        assert_int_equal(put(f, i, 0), SPOOL_QUEUED);
    assert_int_equal(outq_len(f->gw.outq), 20);
    assert_true(spool_bytes(f->sp) > 0);
    assert_int_equal(spool_backlog(f->sp), 0);
    drain_expect(f, 1, 20);
    assert_int_equal(outq_len(f->gw.outq), 0);
    /* A clean close and reopen replays nothing that was delivered. */
    gw_down(f);
    gw_up(f);
    assert_int_equal(outq_len(f->gw.outq), 0);
    fix_free(f);
}

static void
test_crash_replays_from_acked_in_order(void **state)
{
    struct fix *f = fix_new(100, 16, 0);

    (void)state;
    crash_after(f, child_put_1_to_10_deliver_4);
    gw_up(f);
    assert_int_equal(outq_len(f->gw.outq), 7);      /* 5..11 */
    drain_expect(f, 5, 7);
    /* New readings continue after the replayed ones, and a second restart
     * replays nothing more. */
    assert_int_equal(put(f, 12, 0), SPOOL_QUEUED);
    drain_expect(f, 12, 1);
    gw_down(f);
    gw_up(f);
    assert_int_equal(outq_len(f->gw.outq), 0);
    fix_free(f);
}

static void
child_put_1_to_5(struct fix *f)
{
    for (unsigned i = 1; i <= 5; i++)
        CHILD_CHECK(put(f, i, 100) == SPOOL_QUEUED);
}

static void
test_torn_last_record_is_cut(void **state)
{
    struct fix *f = fix_new(100, 16, 0);
    char seg[160];
    struct stat st;
    int fd;

    (void)state;
    crash_after(f, child_put_1_to_5);
    last_segment(f, seg, sizeof(seg));
    assert_int_equal(stat(seg, &st), 0);
    /* The crash hit in the middle of the fifth record's body. */
    fd = open(seg, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, st.st_size - 40), 0);
    close(fd);
    gw_up(f);
    assert_int_equal(outq_len(f->gw.outq), 4);
    assert_int_equal(stat(seg, &st), 0);
    assert_int_equal(st.st_size % (st.st_size / 4), 0);   /* cut at a record end */
    /* What comes after the cut is kept and replayed behind the rest. */
    assert_int_equal(put(f, 6, 100), SPOOL_QUEUED);
    gw_down(f);
    gw_up(f);
    assert_int_equal(outq_len(f->gw.outq), 5);
    drain_expect(f, 1, 4);
    drain_expect(f, 6, 1);
    fix_free(f);
}

static void
test_garbage_header_ends_replay(void **state)
{
    struct fix *f = fix_new(100, 16, 0);
    char seg[160];
    int fd;

    (void)state;
    crash_after(f, child_put_1_to_5);
    last_segment(f, seg, sizeof(seg));
    fd = open(seg, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    /* A half-written header: magic right, length absurd. */
    assert_int_equal(write(fd, "1M2C\xff\xff\xff\xff", 8), 8);
    close(fd);
    gw_up(f);
    assert_int_equal(outq_len(f->gw.outq), 5);
    drain_expect(f, 1, 5);
    fix_free(f);
}

static void
test_spool_full(void **state)
{
    struct fix *f = fix_new(100000, 1, 100);
    unsigned i, queued = 0;
    enum spool_put_result r = SPOOL_QUEUED;

    (void)state;
    gw_up(f);
    /* 1 MiB of 64 KiB readings: about 15 fit. */
    for (i = 1; i <= 40 && (r = put(f, i, 64 * 1024)) == SPOOL_QUEUED; i++)
        queued++;
    assert_int_equal(r, SPOOL_FULL);
    assert_in_range(queued, 10, 16);
    assert_true(spool_bytes(f->sp) <= 1u << 20);
    /* Refused readings are not on disk: replay holds the accepted ones. */
    assert_int_equal(outq_len(f->gw.outq), queued);
    drain_expect(f, 1, queued);
    fix_free(f);
}

/*
 * Spool full: NON (QoS 0) readings still get through in memory, and when
 * memory is full too, the oldest QoS 0 one makes way (issue 4: "NON
 * readings are dropped oldest-first"); CON ones stay refused.
 */
static void
test_spool_full_non_oldest_first(void **state)
{
    struct fix *f = fix_new(20, 1, 100);
    unsigned i;
    outmsg_t *m;

    (void)state;
    gw_up(f);
    for (i = 1; put(f, i, 64 * 1024) == SPOOL_QUEUED; i++)
        ;
    /* Disk full at reading i; memory (20) has room left. */
    while (outq_len(f->gw.outq) < outq_max(f->gw.outq)) {
        m = msg(f, 1000 + (unsigned)outq_len(f->gw.outq), 64 * 1024);
        m->qos = 0;
        assert_int_equal(spool_put(f->sp, f->gw.outq, m), SPOOL_QUEUED);
    }
    m = msg(f, 9999, 64 * 1024);
    m->qos = 0;
    assert_int_equal(spool_put(f->sp, f->gw.outq, m), SPOOL_DROPPED_OLDEST);
    assert_int_equal(outq_len(f->gw.outq), outq_max(f->gw.outq));
    m = msg(f, 9998, 64 * 1024);    /* QoS 1: no room, no drop */
    assert_int_equal(spool_put(f->sp, f->gw.outq, m), SPOOL_FULL);
    outmsg_finish(m, false);
    fix_free(f);
}

/*
 * Once the broker has everything, the space is free again.  (The segment
 * in use is only deleted behind a newer one, and segments rotate at
 * 16 MiB: with spool_max_mb below that, this is where it would stick.)
 */
static void
test_spool_space_comes_back(void **state)
{
    struct fix *f = fix_new(100000, 1, 100);
    unsigned i = 1, queued = 0, round;

    (void)state;
    gw_up(f);
    for (round = 0; round < 3; round++) {
        unsigned first = i;

        queued = 0;
        while (put(f, i, 64 * 1024) == SPOOL_QUEUED) {
            queued++;
            i++;
        }
        i++;                        /* the refused one */
        assert_true(queued >= 5);
        drain_expect(f, first, queued);
    }
    fix_free(f);
}

static void
test_memory_full_goes_to_disk_and_back_in_order(void **state)
{
    struct fix *f = fix_new(3, 16, 100);

    (void)state;
    gw_up(f);
    for (unsigned i = 1; i <= 3; i++)
        assert_int_equal(put(f, i, 0), SPOOL_QUEUED);
    for (unsigned i = 4; i <= 10; i++)
        assert_int_equal(put(f, i, 0), SPOOL_ON_DISK);
    /* On disk counts as accepted: the device may be told so. */
    assert_int_equal(f->done_true, 7);
    assert_int_equal(spool_backlog(f->sp), 7);
    assert_int_equal(outq_len(f->gw.outq), 3);
    /* Room in memory again, but the backlog is older: new ones queue
     * behind it on disk, or order would break. */
    drain_expect(f, 1, 1);
    assert_int_equal(put(f, 11, 0), SPOOL_ON_DISK);
    assert_int_equal(spool_backlog(f->sp), 8);
    spool_refill(f->sp, f->gw.outq);
    assert_int_equal(outq_len(f->gw.outq), 3);
    assert_int_equal(spool_backlog(f->sp), 7);
    drain_expect(f, 2, 10);
    assert_int_equal(spool_backlog(f->sp), 0);
    assert_int_equal(put(f, 12, 0), SPOOL_QUEUED);
    drain_expect(f, 12, 1);
    fix_free(f);
}

static void
child_backlog(struct fix *f)
{
    for (unsigned i = 1; i <= 3; i++)
        CHILD_CHECK(put(f, i, 0) == SPOOL_QUEUED);
    for (unsigned i = 4; i <= 9; i++)
        CHILD_CHECK(put(f, i, 0) == SPOOL_ON_DISK);
    child_deliver_head(f, 1);
    CHILD_CHECK(put(f, 10, 0) == SPOOL_ON_DISK);
}

static void
test_crash_with_disk_backlog(void **state)
{
    struct fix *f = fix_new(3, 16, 0);

    (void)state;
    crash_after(f, child_backlog);
    gw_up(f);
    assert_int_equal(outq_len(f->gw.outq), 3);
    assert_int_equal(spool_backlog(f->sp), 6);
    drain_expect(f, 2, 9);
    fix_free(f);
}

static void
child_out_of_order(struct fix *f)
{
    unsigned n;
    uint64_t seq[7];

    for (unsigned i = 1; i <= 6; i++)
        CHILD_CHECK(put(f, i, 0) == SPOOL_QUEUED);
    for (unsigned i = 1; i <= 6; i++)
        CHILD_CHECK(pop(f, &n, &seq[i]) && n == i);
    /* PUBACKs for 1, 2, 4, 5 and 6; 3 is still in flight. */
    spool_delivered(f->sp, seq[5]);
    spool_delivered(f->sp, seq[2]);
    spool_delivered(f->sp, seq[4]);
    spool_delivered(f->sp, seq[1]);
    spool_delivered(f->sp, seq[6]);
    spool_delivered(f->sp, seq[6]);     /* a duplicate PUBACK is harmless */
    CHILD_CHECK(put(f, 7, 0) == SPOOL_QUEUED);
}

static void
test_watermark_only_over_contiguous_deliveries(void **state)
{
    struct fix *f = fix_new(100, 16, 0);
    unsigned n;
    uint64_t seq3, seq;

    (void)state;
    crash_after(f, child_out_of_order);
    gw_up(f);
    /* The watermark stopped below 3: 3..7 come back (4..6 twice, which
     * is the at-least-once side of the promise). */
    assert_int_equal(outq_len(f->gw.outq), 5);
    assert_true(pop(f, &n, &seq3));
    assert_int_equal(n, 3);
    for (unsigned i = 4; i <= 7; i++) {
        assert_true(pop(f, &n, &seq));
        assert_int_equal(n, i);
        if (i != 5)
            spool_delivered(f->sp, seq);
    }
    /* 3 arrives: the watermark moves to 4 and stops at the missing 5. */
    spool_delivered(f->sp, seq3);
    assert_int_equal(put(f, 8, 0), SPOOL_QUEUED);   /* records it */
    assert_true(pop(f, &n, &seq));
    gw_down(f);
    gw_up(f);
    assert_int_equal(outq_len(f->gw.outq), 4);       /* 5..8 */
    drain_expect(f, 5, 1);
    fix_free(f);
}

static void
test_acknowledged_segments_deleted(void **state)
{
    /* 128 MiB of spool: segments of 16 MiB (an eighth, at most 16 MiB). */
    struct fix *f = fix_new(1000, 128, 100);
    const size_t big = 1u << 20;
    uint64_t before;

    (void)state;
    gw_up(f);
    /* 16 MiB segments: 40 readings of 1 MiB make three. */
    for (unsigned i = 1; i <= 40; i++)
        assert_int_equal(put(f, i, big), SPOOL_QUEUED);
    assert_int_equal(count_segments(f), 3);
    before = spool_bytes(f->sp);
    assert_true(before >= 40 * big);
    drain_expect(f, 1, 10);
    assert_int_equal(count_segments(f), 3);          /* first still needed */
    drain_expect(f, 11, 10);
    assert_int_equal(count_segments(f), 2);
    assert_true(spool_bytes(f->sp) < before - 14 * big);
    drain_expect(f, 21, 20);
    /* All delivered: the tail goes too once it is half full (or at the
     * next sync), so at most the one being written is left. */
    assert_true(count_segments(f) <= 1);
    /* Restart: nothing replays. */
    gw_down(f);
    gw_up(f);
    assert_int_equal(outq_len(f->gw.outq), 0);
    fix_free(f);
}

static void
test_no_spool_is_bounded_memory(void **state)
{
    struct fix *f = fix_new(2, 16, 100);
    outq_t *q = outq_new(2);
    outmsg_t *m;

    (void)state;
    assert_non_null(q);
    for (unsigned i = 1; i <= 2; i++)
        assert_int_equal(spool_put(NULL, q, msg(f, i, 0)), SPOOL_QUEUED);
    m = msg(f, 3, 0);
    assert_int_equal(spool_put(NULL, q, m), SPOOL_FULL);
    outmsg_finish(m, false);
    spool_delivered(NULL, 1);
    spool_refill(NULL, q);
    assert_int_equal(spool_bytes(NULL), 0);
    outq_free(q);
    assert_int_equal(f->done_false, 3);
    fix_free(f);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_and_deliver),
        cmocka_unit_test(test_crash_replays_from_acked_in_order),
        cmocka_unit_test(test_torn_last_record_is_cut),
        cmocka_unit_test(test_garbage_header_ends_replay),
        cmocka_unit_test(test_spool_full),
        cmocka_unit_test(test_spool_space_comes_back),
        cmocka_unit_test(test_spool_full_non_oldest_first),
        cmocka_unit_test(test_memory_full_goes_to_disk_and_back_in_order),
        cmocka_unit_test(test_crash_with_disk_backlog),
        cmocka_unit_test(test_watermark_only_over_contiguous_deliveries),
        cmocka_unit_test(test_acknowledged_segments_deleted),
        cmocka_unit_test(test_no_spool_is_bounded_memory),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
