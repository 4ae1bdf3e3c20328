/*
 * spool_durable.c - group commit.  With queue.durability = "power" (the
 * default) a reading is acknowledged (the 2.04 of a CON push) only once
 * the record that holds it is on stable storage: its segment
 * fdatasync'ed, and the directory fsync'ed if the segment is new.
 *
 * There is no interval to wait out: an append starts a sync job on the
 * syncer thread at once when none is running; appends made while it runs
 * wait for the next job, which starts as soon as this one ends (the
 * syncer's eventfd wakes the loop).  A finished job releases every
 * acknowledgement it covers, in record order.  One fdatasync thus covers
 * every reading that arrived during the previous one: the busier the
 * gateway, the more readings per sync.
 *
 * A job is up to four files: the closed tail still holding unsynced
 * records (after a rotation), the tail, the directory (segments created
 * or deleted) and acked (the delivered position).  A record delivered to
 * the broker is safe too, synced or not.  A failed job fails every
 * waiting acknowledgement (the device is answered 5.03 and sends again)
 * and spool__sync_failed() stops the spool taking readings until a sync
 * works again.
 *
 * Layer: base (calls syncer, loop, log)
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "coap2mqtt/log.h"
#include "spool_internal.h"

uint64_t
spool_last_seq(const spool_t *sp)
{
    return sp && sp->next_seq ? sp->next_seq - 1 : 0;
}

bool
spool_is_safe(const spool_t *sp, uint64_t seq)
{
    return !sp || !sp->power || seq <= sp->synced_seq || seq <= sp->acked;
}

/* Answers the waiters at the head that are safe now (all, with
 * safe = false, when 'failed'). */
void
spool__release(spool_t *sp, bool failed)
{
    while (sp->w_len) {
        struct spool_waiter w = sp->waiters[sp->w_head];
        bool safe = spool_is_safe(sp, w.seq);

        if (!safe && !failed)
            break;
        sp->w_head = (sp->w_head + 1) % sp->w_cap;
        sp->w_len--;
        w.fn(w.arg, safe);
    }
}

void
spool__fail_waiters(spool_t *sp)
{
    spool__release(sp, true);
    free(sp->waiters);
    sp->waiters = NULL;
    sp->w_cap = sp->w_head = 0;
}

static int
waiters_fit(spool_t *sp)
{
    struct spool_waiter *w;
    size_t cap = sp->w_cap ? sp->w_cap * 2 : 256;

    if (sp->w_len < sp->w_cap)
        return 0;
    if (!(w = malloc(cap * sizeof(*w))))
        return -1;
    for (size_t i = 0; i < sp->w_len; i++)
        w[i] = sp->waiters[(sp->w_head + i) % sp->w_cap];
    free(sp->waiters);
    sp->waiters = w;
    sp->w_cap = cap;
    sp->w_head = 0;
    return 0;
}

int
spool_when_safe(spool_t *sp, uint64_t seq, spool_safe_fn fn, void *arg)
{
    if (spool_is_safe(sp, seq)) {
        fn(arg, true);
        return 0;
    }
    if (waiters_fit(sp) < 0)
        return -1;
    sp->waiters[(sp->w_head + sp->w_len) % sp->w_cap] = (struct spool_waiter){ seq, fn, arg };
    sp->w_len++;
    spool__start_job(sp);
    return 0;
}

/* What the syncer's job achieved, once it is done; answers the waiters
 * it covered. */
void
spool__collect(spool_t *sp)
{
    int err;

    if (!sp->syncer || !sp->req || !syncer_idle(sp->syncer))
        return;
    if ((err = syncer_take_error(sp->syncer))) {
        sp->req = 0;
        spool__sync_failed(sp, err);
        spool__release(sp, true);
        return;
    }
    sp->gw->stats.spool_syncs++;
    if ((sp->req & REQ_DATA) && sp->req_seq > sp->synced_seq)
        sp->synced_seq = sp->req_seq;
    if ((sp->req & (REQ_ACKED | REQ_PROBE)) && sp->req_acked > sp->acked_durable)
        sp->acked_durable = sp->req_acked;
    if (sp->req & REQ_PROBE)
        spool__sync_works(sp);
    sp->req = 0;
    spool__release(sp, false);
}

/* The records not yet synced are needed: not all of them delivered. */
static bool
data_needed(const spool_t *sp)
{
    return (sp->dirty || sp->prev_fd >= 0) && sp->acked + 1 < sp->next_seq &&
           sp->synced_seq + 1 < sp->next_seq;
}

static int
job_files(spool_t *sp, struct syncer_file *f, unsigned *what)
{
    int n = 0;

    *what = 0;
    if (data_needed(sp)) {
        if (sp->prev_fd >= 0)
            f[n++] = (struct syncer_file){ sp->prev_fd, false };
        if (sp->dirty && sp->wfd >= 0)
            f[n++] = (struct syncer_file){ sp->wfd, false };
        *what |= REQ_DATA;
    }
    if (sp->dir_dirty) {
        f[n++] = (struct syncer_file){ sp->dirfd, true };
        *what |= REQ_DIR;
    }
    if (sp->acked_on_disk > sp->acked_durable) {
        f[n++] = (struct syncer_file){ sp->ackfd, false };
        *what |= REQ_ACKED;
    }
    return n;
}

/* While syncs fail: acked written again and synced; its success says
 * the disk works again. */
static void
start_probe(spool_t *sp)
{
    if (spool__write_acked(sp, true) < 0)
        return;
    sp->req_acked = sp->acked_on_disk;
    if (syncer_request(sp->syncer, sp->ackfd))
        sp->req = REQ_PROBE;
}

static void
gap_over(loop_t *loop, void *arg)
{
    spool_t *sp = arg;

    (void)loop;
    sp->gap_timer = 0;
    spool__start_job(sp);
}

/*
 * Jobs start at most every SYNC_PERIOD_MS.  Back to back, a busy gateway
 * ran one fdatasync() every 2.25 ms (444/s at 7,500 CON pushes/s), each a
 * flush of the disk's cache and, in a VM, exits to the host: 25 % of the
 * gateway's CPU, which the broker and the devices on the same box did
 * not get.  Spaced, each job covers more readings; a reading waits at
 * most that much longer for its 2.04, and not at all when the broker's
 * PUBACK comes first (it makes the reading safe too).  A quiet gateway
 * starts the job of a lone reading at once.
 */
#define SYNC_PERIOD_MS 5

static bool
wait_for_period(spool_t *sp)
{
    uint64_t now;

    if (!sp->gw->loop)
        return false;
    if (sp->gap_timer)
        return true;
    now = loop_now_ms(sp->gw->loop);
    if (!sp->job_start_ms || now >= sp->job_start_ms + SYNC_PERIOD_MS)
        return false;
    sp->gap_timer = loop_add_timer(sp->gw->loop, sp->job_start_ms + SYNC_PERIOD_MS - now,
                                   gap_over, sp);
    return sp->gap_timer != 0;
}

/*
 * Starts the next job on the syncer thread, unless one runs (it starts
 * again when that one ends), the last one started less than SYNC_PERIOD_MS
 * ago (it starts then) or nothing needs syncing.  Never blocks.
 */
void
spool__start_job(spool_t *sp)
{
    struct syncer_file f[SYNCER_MAX_FDS];
    unsigned what;
    int n, err;

    spool__collect(sp);
    if (!sp->syncer || sp->req)
        return;
    if (sp->sync_broken) {
        start_probe(sp);
        return;
    }
    spool__write_acked(sp, false);
    if (!(n = job_files(sp, f, &what)) || wait_for_period(sp))
        return;
    if (!syncer_request_set(sp->syncer, f, n)) {
        if (syncer_idle(sp->syncer) && (err = syncer_take_error(sp->syncer))) {
            spool__sync_failed(sp, err);    /* no duplicate descriptor: nothing started */
            spool__release(sp, true);
        }
        return;
    }
    sp->req = what;
    sp->job_start_ms = sp->gw->loop ? loop_now_ms(sp->gw->loop) : 0;
    sp->req_seq = sp->next_seq - 1;
    sp->req_acked = sp->acked_on_disk;
    if (what & REQ_DATA) {
        sp->dirty = false;
        if (sp->prev_fd >= 0)
            close(sp->prev_fd);
        sp->prev_fd = -1;
    }
    if (what & REQ_DIR)
        sp->dir_dirty = false;
}

/*
 * Everything written so far made durable here and now, on the loop
 * (after the job that runs, if any): rotation with a closed tail still
 * unsynced, close, a CON notification, no syncer thread.  0 or -1
 * (spool__sync_failed called, the waiters failed).
 */
int
spool__sync_inline(spool_t *sp)
{
    uint64_t upto = sp->next_seq - 1;
    int err = 0;

    if (sp->syncer) {
        syncer_drain(sp->syncer);
        spool__collect(sp);
    }
    if (sp->sync_broken)
        return -1;
    spool__write_acked(sp, false);
    if (sp->prev_fd >= 0) {
        if (fdatasync(sp->prev_fd) < 0)
            err = errno;
        close(sp->prev_fd);
        sp->prev_fd = -1;
    }
    if (!err && sp->dirty && sp->wfd >= 0 && fdatasync(sp->wfd) < 0)
        err = errno;
    if (!err && sp->dir_dirty && fsync(sp->dirfd) < 0)
        err = errno;
    if (err) {
        spool__sync_failed(sp, err);
        spool__release(sp, true);
        return -1;
    }
    sp->dirty = sp->dir_dirty = false;
    if (upto > sp->synced_seq)
        sp->synced_seq = upto;
    spool__release(sp, false);
    return 0;
}

int
spool_make_safe(spool_t *sp, uint64_t seq)
{
    if (spool_is_safe(sp, seq))
        return 0;
    return spool__sync_inline(sp) < 0 || !spool_is_safe(sp, seq) ? -1 : 0;
}

/* The syncer's eventfd: a job ended.  Take its result, start the next. */
static void
on_synced(loop_t *loop, int fd, uint32_t events, void *arg)
{
    spool_t *sp = arg;
    uint64_t n;

    (void)loop;
    (void)events;
    if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
        log_warn("spool: reading the syncer's eventfd");
    spool__collect(sp);
    spool__drop_acked_segments(sp);
    /* While syncs fail, the next probe waits for a reading or the tick
     * rather than spinning on a dead disk. */
    if (!sp->sync_broken)
        spool__start_job(sp);
}

/* Puts the syncer's eventfd in the loop.  -1 when it cannot be: the
 * jobs are then collected at the ticks (queue.fsync_interval). */
int
spool__watch_syncer(spool_t *sp)
{
    int fd = syncer_notify_fd(sp->syncer);

    if (fd < 0 || loop_add_fd(sp->gw->loop, fd, EPOLLIN, on_synced, sp) < 0) {
        log_warnx("spool: cannot watch the syncer; acknowledgements wait for the "
                  "next tick");
        return -1;
    }
    sp->notify_fd = fd;
    return 0;
}
