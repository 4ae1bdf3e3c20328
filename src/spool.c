/*
 * spool.c - an append-only log of outbound messages in segment files
 * (<dir>/<first seq, 16 hex digits>.seg), plus <dir>/acked holding the
 * highest sequence number below which the broker has everything.
 *
 * Acknowledgements arrive out of order (QoS 0 at hand-over, QoS 1 at
 * PUBACK), so a ring of per-message flags over the unacknowledged window
 * moves the watermark forward only across contiguous deliveries.  Whole
 * segments behind the watermark are deleted, but only once the watermark
 * that makes them unnecessary is durable in <dir>/acked: a crash right
 * after a deletion must not leave the file below the oldest surviving
 * record (see persist_acked and spool__sync_tick in spool_segments.c for
 * where that sync runs).  (And at open the watermark is never left below
 * the oldest surviving record, nor in front of a hole in the sequence: a
 * spool left that way by an older version, or by a power cut, frees
 * itself again.)  Nothing here blocks on the network; disk writes are
 * plain write()s, made durable by an fdatasync() every
 * queue.fsync_interval ms on the syncer thread (syncer.h).
 *
 * This file: open and close, put, delivered, refill, the replay at open
 * and the window of acknowledgements; the record format is in
 * spool_records.c, the segment files and the durable position in
 * spool_segments.c (spool_internal.h lists the room).
 *
 * Layer: base (calls outq, syncer, loop, log)
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "coap2mqtt/log.h"
#include "spool_internal.h"

#define SEG_MAX_BYTES   (16u << 20)
#define SEG_MIN_BYTES   (64u << 10)

/* --- the acknowledged window ------------------------------------------- */

static int
window_fit(spool_t *sp, uint64_t seq)
{
    size_t need = (size_t)(seq - sp->acked) + 1, cap;
    uint8_t *ring;

    if (need <= sp->cap)
        return 0;
    for (cap = sp->cap ? sp->cap : 1024; cap < need; cap *= 2)
        ;
    if (!(ring = calloc(cap, 1)))
        return -1;
    for (uint64_t s = sp->acked + 1; s < sp->next_seq; s++)
        ring[s % cap] = sp->done[s % sp->cap];
    free(sp->done);
    sp->done = ring;
    sp->cap = cap;
    return 0;
}

/* Moves the watermark across contiguous deliveries. */
static void
advance(spool_t *sp)
{
    while (sp->acked + 1 < sp->next_seq && sp->done[(sp->acked + 1) % sp->cap]) {
        sp->done[(sp->acked + 1) % sp->cap] = 0;
        sp->acked++;
    }
}

/*
 * Gives up the number next_seq: a torn record had it, or a file of that
 * name is in the way.  It is never used again, and the watermark passes
 * it as if it had been delivered.
 */
int
spool__skip_seq(spool_t *sp)
{
    if (window_fit(sp, sp->next_seq) < 0)
        return -1;
    sp->done[sp->next_seq % sp->cap] = 1;
    sp->next_seq++;
    advance(sp);
    return 0;
}

void
spool_delivered(spool_t *sp, uint64_t seq)
{
    if (!sp || seq <= sp->acked || seq >= sp->next_seq)
        return;
    sp->done[seq % sp->cap] = 1;
    advance(sp);
    spool__release(sp, false);      /* the broker has it: safe, synced or not */
    spool__drop_acked_segments(sp);
    if (sp->tail && sp->tail->bytes >= sp->seg_max / 2)
        spool__retire_tail(sp);
}

/* --- writing ------------------------------------------------------------- */

/*
 * A failed append left 'torn' bytes of a record at the end of the tail
 * (a short write: the disk is full).  They are cut off; when even that
 * fails, the segment is closed as it is (the replay cuts the torn end),
 * the record's number is given up and the next record starts a segment
 * of a new name.
 */
static void
undo_append(spool_t *sp, uint64_t torn)
{
    if (!torn || ftruncate(sp->wfd, (off_t)sp->tail->bytes) == 0)
        return;
    log_warn("spool: cannot cut a torn record from %s; starting a new segment", sp->tail->name);
    sp->tail->bytes += torn;
    sp->bytes += torn;
    spool__close_tail(sp);
    spool__skip_seq(sp);
}

/* Appends; *off gets the record's offset in the tail segment. */
static int
append(spool_t *sp, outmsg_t *m, uint64_t *off)
{
    size_t len = spool__rec_size(m);
    uint8_t *rec;
    ssize_t n;

    if (sp->sync_broken && sp->power)
        spool__start_job(sp);       /* the probe: does the disk work again? */
    if (!len || sp->bytes + len > sp->max_bytes || sp->sync_broken)
        return -1;
    /* An empty tail takes any record, however large. */
    if ((sp->wfd < 0 || (sp->tail->bytes && sp->tail->bytes + len > sp->seg_max)) &&
        (spool__rotate(sp) < 0 || sp->sync_broken))
        return -1;
    if (window_fit(sp, sp->next_seq) < 0 || !(rec = spool__encode(m, sp->next_seq, &len)))
        return -1;
    n = write(sp->wfd, rec, len);
    free(rec);
    if (n != (ssize_t)len) {
        spool__fault(sp, n < 0 ? errno : ENOSPC);
        undo_append(sp, n > 0 ? (uint64_t)n : 0);
        return -1;
    }
    spool__fault_cleared(sp, false);
    /* "process" with fsync_interval 0: durable before it is acknowledged,
     * or refused (and cut off again, so that it is not replayed either).
     * "power" syncs in groups (spool_durable.c). */
    if (!sp->power && sp->gw->cfg->queue.fsync_interval == 0 && fdatasync(sp->wfd) < 0) {
        spool__sync_failed(sp, errno);
        undo_append(sp, len);
        return -1;
    }
    *off = sp->tail->bytes;
    m->seq = sp->next_seq++;
    sp->done[m->seq % sp->cap] = 0;
    sp->tail->bytes += len;
    sp->bytes += len;
    sp->dirty = sp->power || sp->gw->cfg->queue.fsync_interval != 0;
    if (!sp->dirty)
        spool__write_acked(sp, false);
    else if (sp->power)
        spool__start_job(sp);       /* none running: this record's sync starts now */
    return 0;
}

/* The backlog reader, at 'off' of 'seg', where record 'seq' is. */
static int
open_reader(spool_t *sp, struct segment *seg, uint64_t off, uint64_t seq)
{
    if (sp->rfd >= 0)
        close(sp->rfd);
    sp->rseg = seg;
    sp->roff = off;
    sp->rnext = seq;
    sp->rfd = openat(sp->dirfd, seg->name, O_RDONLY | O_CLOEXEC);
    if (sp->rfd < 0)
        log_warn("spool: cannot read %s", seg->name);
    return sp->rfd < 0 ? -1 : 0;
}

/*
 * Memory only (no spool, or the spool is full): a QoS 0 (NON) reading is
 * best effort anyway, so when the queue is full it takes the place of the
 * oldest QoS 0 one - fresher telemetry wins, and the drop is counted.
 * Never while a disk backlog exists: the new reading would overtake it.
 */
static enum spool_put_result
put_in_memory(spool_t *sp, outq_t *q, outmsg_t *m)
{
    outmsg_t *old;

    if (outq_push(q, m))
        return SPOOL_QUEUED;
    if (m->qos != 0 || !(old = outq_take_oldest_qos0(q)))
        return SPOOL_FULL;
    spool_delivered(sp, old->seq);      /* gone for good: let the watermark pass */
    outmsg_finish(old, false);
    outq_push(q, m);
    return SPOOL_DROPPED_OLDEST;
}

enum spool_put_result
spool_put(spool_t *sp, outq_t *q, outmsg_t *m)
{
    uint64_t off;

    if (!sp)
        return put_in_memory(NULL, q, m);
    if (append(sp, m, &off) < 0)
        return m->qos == 0 && !sp->backlog ? put_in_memory(sp, q, m) : SPOOL_FULL;
    if (!sp->backlog && outq_push(q, m))
        return SPOOL_QUEUED;
    /* Memory is full: from here on everything waits on disk, in order,
     * until spool_refill() has read the backlog back. */
    if (!sp->backlog && open_reader(sp, sp->tail, off, m->seq) < 0) {
        /* Cannot read it back: keep it in memory beyond the bound rather
         * than lose a reading that is already acknowledged. */
        outq_push_front(q, m);
        return SPOOL_QUEUED;
    }
    sp->backlog++;
    outmsg_finish(m, true);
    return SPOOL_ON_DISK;
}

void
spool_refill(spool_t *sp, outq_t *q)
{
    while (sp && sp->backlog && outq_len(q) < outq_max(q)) {
        outmsg_t *m = NULL;
        uint64_t seq;
        ssize_t n = spool__read_record(sp->rfd, sp->roff, &seq, &m);

        if (n > 0) {
            sp->roff += (uint64_t)n;
            if (seq < sp->rnext) {          /* a number read already */
                outmsg_finish(m, false);
                continue;
            }
            /* A hole (a damaged record, a number given up): the
             * watermark must not wait for it. */
            for (; sp->rnext < seq; sp->rnext++)
                spool_delivered(sp, sp->rnext);
            sp->rnext = seq + 1;
            sp->backlog--;
            outq_push(q, m);
            continue;
        }
        if (n < 0) {
            int64_t next = spool__next_intact(sp->rfd, sp->roff, sp->rnext - 1);

            if (next >= 0) {
                log_warnx("spool: %s: damaged record at offset %" PRIu64 "; %" PRIu64
                          " bytes skipped", sp->rseg->name, sp->roff,
                          (uint64_t)next - sp->roff);
                sp->roff = (uint64_t)next;
                continue;
            }
        }
        /* The end of a segment, or its torn end: on to the next one. */
        if (sp->rseg->next) {
            if (open_reader(sp, sp->rseg->next, 0, sp->rnext) < 0)
                break;
            continue;
        }
        /* A record we wrote cannot be read back: give up on the rest. */
        log_warnx("spool: %s unreadable at offset %" PRIu64 "; %" PRIu64
                  " spooled messages lost", sp->rseg->name, sp->roff, sp->backlog);
        sp->backlog = 0;
    }
    if (sp && !sp->backlog && sp->rfd >= 0) {
        close(sp->rfd);
        sp->rfd = -1;
        sp->rseg = NULL;
    }
}

uint64_t
spool_bytes(const spool_t *sp)
{
    return sp ? sp->bytes : 0;
}

uint64_t
spool_backlog(const spool_t *sp)
{
    return sp ? sp->backlog : 0;
}

/* --- recovery ------------------------------------------------------------- */

/*
 * Whether the number of the record at 'off' of 'seg' can be real.  A
 * segment is named after its first record and its numbers run on one by
 * one (a number given up starts a new segment, spool__rotate), and no
 * record is smaller than SPOOL_REC_MIN_BYTES: so the number lies between
 * the name and the name plus the records that fit before 'off'.  A number
 * outside is a damaged one that passed its check (a "C2M1" record's CRC
 * does not cover it).  Taken, it would size the window of
 * acknowledgements to the jump (gigabytes for one bad number), or, as
 * the first record after the watermark, move the watermark past every
 * later reading.  A hole between segments (one lost in the middle) is
 * bounded by what queue.spool_max_mb holds; and no number comes near
 * wrapping.
 */
static bool
seq_plausible(const spool_t *sp, const struct segment *seg, uint64_t off, uint64_t seq)
{
    uint64_t most = sp->max_bytes / SPOOL_REC_MIN_BYTES + 1024;

    if (seq >= SPOOL_SEQ_LIMIT || seq < seg->first_seq ||
        seq - seg->first_seq > off / SPOOL_REC_MIN_BYTES)
        return false;
    /* The first record above an empty window moves the watermark up to
     * it (replay_record): no hole to hold. */
    return sp->next_seq == sp->acked + 1 || seq - sp->acked <= most;
}

/*
 * Takes record 'seq' (found at 'off' of segment 'seg') back after a
 * restart, unless it was delivered or its number came already.  -1 when
 * the acknowledgement window cannot hold it (replay stops there).
 */
static int
replay_record(spool_t *sp, struct segment *seg, int fd, uint64_t off, uint64_t seq,
              outq_t *q, uint64_t *replayed)
{
    outmsg_t *m = NULL;

    if (seq <= sp->acked || seq < sp->next_seq)
        return 0;                   /* delivered, or a duplicate number */
    if (!seq_plausible(sp, seg, off, seq)) {
        log_warnx("spool: %s: record at offset %" PRIu64 " has number %" PRIu64
                  ", impossible after %" PRIu64 "; skipped as damaged",
                  seg->name, off, seq, sp->next_seq - 1);
        sp->gw->stats.spool_damaged++;
        return 0;
    }
    if (seq > sp->next_seq && sp->next_seq == sp->acked + 1) {
        /* The oldest surviving record is above the watermark: what
         * was below it is gone, i.e. was delivered (its segment was
         * deleted) or never written.  Waiting for it would stop the
         * watermark for good. */
        log_notice("spool: acknowledged position %" PRIu64 " is below the oldest "
                   "record %" PRIu64 "; moved up", sp->acked, seq);
        sp->acked = seq - 1;
        sp->next_seq = seq;
    }
    if (window_fit(sp, seq) < 0)
        return -1;
    /* A hole (a record cut or lost, a number never written): the
     * watermark passes it as if it had been delivered. */
    for (uint64_t h = sp->next_seq; h < seq; h++)
        sp->done[h % sp->cap] = 1;
    sp->next_seq = seq + 1;
    sp->done[seq % sp->cap] = 0;
    if (!sp->backlog && outq_len(q) < outq_max(q) &&
        spool__read_record(fd, off, &seq, &m) > 0) {
        outq_push(q, m);
    } else {
        if (!sp->backlog)
            open_reader(sp, seg, off, seq);
        sp->backlog++;
    }
    (*replayed)++;
    return 0;
}

/* Replays one segment: unacknowledged records go to the queue (or start
 * the backlog); damaged records are skipped, a torn tail is cut off. */
static void
replay_segment(spool_t *sp, struct segment *seg, outq_t *q, uint64_t *replayed)
{
    int fd = openat(sp->dirfd, seg->name, O_RDWR | O_CLOEXEC);
    uint64_t off = 0, seq, last = 0;
    ssize_t n;

    if (fd < 0) {
        log_warn("spool: cannot open %s", seg->name);
        return;
    }
    while ((n = spool__read_record(fd, off, &seq, NULL)) != 0) {
        if (n < 0) {
            /* Damaged: never cut off intact records behind it. */
            int64_t next = spool__next_intact(fd, off, last);

            if (next < 0)
                break;
            log_warnx("spool: %s: damaged record at offset %" PRIu64 "; %" PRIu64
                      " bytes skipped", seg->name, off, (uint64_t)next - off);
            sp->gw->stats.spool_damaged++;
            off = (uint64_t)next;
            continue;
        }
        last = seq;
        if (replay_record(sp, seg, fd, off, seq, q, replayed) < 0)
            break;
        off += (uint64_t)n;
    }
    if (n < 0) {
        log_warnx("spool: %s: torn record at offset %" PRIu64 " (a crash or a full disk "
                  "during a write), cut", seg->name, off);
        sp->gw->stats.spool_damaged++;
        if (ftruncate(fd, (off_t)off) < 0)
            log_warn("spool: truncate %s", seg->name);
    }
    seg->bytes = off;
    sp->bytes += off;
    close(fd);
}

/*
 * "power": what the restart found (replayed records, acked, segments cut
 * or removed, the directory itself) is made durable before anything new
 * is acknowledged on top of it; after a kill -9 it may still have been in
 * the page cache only.  One syncfs() of the spool's file system.
 */
static void
settle_at_open(spool_t *sp)
{
    if (syncfs(sp->dirfd) < 0) {
        log_warn("spool: syncfs");
        return;
    }
    sp->synced_seq = sp->next_seq - 1;
    sp->acked_durable = sp->acked_on_disk;
    sp->dir_dirty = false;
}

spool_t *
spool_open(struct gw *gw, const char *dir)
{
    spool_t *sp = calloc(1, sizeof(*sp));
    uint64_t replayed = 0;

    if (!sp)
        return NULL;
    sp->gw = gw;
    sp->wfd = sp->rfd = sp->ackfd = sp->prev_fd = sp->notify_fd = -1;
    sp->power = config_durability_power(gw->cfg);
    sp->max_bytes = (uint64_t)gw->cfg->queue.spool_max_mb << 20;
    /* Small enough that a spool of a few segments frees space as the
     * broker catches up; large enough that rotation is rare. */
    sp->seg_max = sp->max_bytes / 8;
    if (sp->seg_max < SEG_MIN_BYTES)
        sp->seg_max = SEG_MIN_BYTES;
    if (sp->seg_max > SEG_MAX_BYTES)
        sp->seg_max = SEG_MAX_BYTES;
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        log_warn("spool: cannot create %s", dir);
        free(sp);
        return NULL;
    }
    sp->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (sp->dirfd < 0 || (spool__read_acked(sp), sp->ackfd < 0) ||
        spool__list_segments(sp) < 0) {
        log_warn("spool: cannot use %s", dir);
        spool_close(sp);
        return NULL;
    }
    sp->next_seq = sp->acked + 1;
    for (struct segment *s = sp->segs; s; s = s->next)
        replay_segment(sp, s, gw->outq, &replayed);
    spool__drop_empty_segments(sp);
    spool__drop_acked_segments(sp);
    if (replayed)
        log_notice("spool: %" PRIu64 " messages from before the restart will be "
                   "delivered (%" PRIu64 " waiting on disk)", replayed, sp->backlog);
    if (sp->power)
        settle_at_open(sp);
    if (!(sp->syncer = syncer_new()))
        log_warnx("spool: no syncer thread; fdatasync() runs on the loop");
    else if (sp->power && gw->loop)
        spool__watch_syncer(sp);
    sp->sync_timer = loop_add_timer(gw->loop, 100, spool__sync_tick, sp);
    return sp;
}

void
spool_close(spool_t *sp)
{
    struct segment *s;

    if (!sp)
        return;
    if (sp->gw->loop) {
        loop_cancel_timer(sp->gw->loop, sp->sync_timer);
        loop_cancel_timer(sp->gw->loop, sp->gap_timer);
    }
    if (sp->notify_fd >= 0 && sp->gw->loop)
        loop_del_fd(sp->gw->loop, sp->notify_fd);
    if (sp->syncer)
        syncer_drain(sp->syncer);   /* a sync still running */
    spool__collect(sp);
    syncer_free(sp->syncer);
    sp->syncer = NULL;
    if (sp->ackfd >= 0) {
        spool__sync_now(sp, true);
        fsync(sp->ackfd);
        close(sp->ackfd);
    }
    spool__fail_waiters(sp);        /* none left once synced, unless it failed */
    if (sp->prev_fd >= 0)
        close(sp->prev_fd);
    if (sp->wfd >= 0)
        close(sp->wfd);
    if (sp->rfd >= 0)
        close(sp->rfd);
    if (sp->dirfd >= 0)
        close(sp->dirfd);
    while ((s = sp->segs)) {
        sp->segs = s->next;
        free(s);
    }
    free(sp->done);
    free(sp);
}
