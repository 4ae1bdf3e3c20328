/*
 * spool_segments.c - the spool's files: the segments (listed at open,
 * rotated when the tail is full, deleted once wholly behind the watermark,
 * the tail retired when everything is delivered) and <dir>/acked, the
 * acknowledged position, with the syncs that make data and position
 * durable (on the syncer thread at every tick, here and now at rotation
 * and close) and the refusal of new readings while syncs fail.
 *
 * Layer: base (calls syncer, loop, log)
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "coap2mqtt/log.h"
#include "spool_internal.h"

/* --- the acknowledged position on disk, and failed syncs ---------------- */

#define FAULT_QUIET_MS 1000

/*
 * A failed fdatasync() (EIO: a dying disk; and Linux marks the pages clean
 * after a failed writeback, so a retry proves nothing about them) means
 * that what was written may not survive a power cut.  From then on the
 * spool takes no new reading (spool_put() returns SPOOL_FULL: a CON push
 * is answered 5.03 and the device keeps its reading) and deletes no
 * segment, until a sync of a fresh write succeeds: every sync tick probes
 * by writing acked again and syncing it.  Logged once each way.
 */
void
spool__sync_failed(spool_t *sp, int err)
{
    if (!sp->sync_broken)
        log_warnx("spool: fdatasync failed (%s); refusing new readings until a sync works "
                  "again", strerror(err));
    sp->sync_broken = true;
    spool__fault(sp, err);
}

/*
 * The spool cannot store readings (a write, a new segment or a sync
 * failed: ENOSPC, EIO): said once in the log, counted (spool_faults) and
 * shown in bridge/stats (spool_fault) until a write works again.  CON
 * readings are refused meanwhile (5.03 with Max-Age; a CON notification
 * is not acknowledged), so the devices keep them and send them again.
 */
static uint64_t
now_ms(const spool_t *sp)
{
    return sp->gw->loop ? loop_now_ms(sp->gw->loop) : 0;
}

void
spool__fault(spool_t *sp, int err)
{
    sp->fault_ms = now_ms(sp);
    if (!sp->fault) {
        log_warnx("spool: cannot store readings (%s); CON readings are refused until "
                  "it works again", strerror(err));
        sp->gw->stats.spool_faults++;
    }
    sp->fault = err;
}

/* A write worked.  On a nearly full disk a small record still fits where
 * a large one did not: the fault is over only after a second without a
 * failure, so that the log and bridge/stats do not flap. */
void
spool__fault_cleared(spool_t *sp, bool at_once)
{
    if (sp->fault && !sp->sync_broken &&
        (at_once || now_ms(sp) >= sp->fault_ms + FAULT_QUIET_MS || !sp->gw->loop)) {
        log_notice("spool: storing readings again");
        sp->fault = 0;
    }
}

const char *
spool_fault(const spool_t *sp)
{
    return sp && sp->fault ? strerror(sp->fault) : NULL;
}

void
spool__sync_works(spool_t *sp)
{
    if (sp->sync_broken)
        log_notice("spool: fdatasync works again; accepting readings");
    sp->sync_broken = false;
    spool__fault_cleared(sp, true);     /* the probe proved it */
}

/*
 * <dir>/acked: the position (8 bytes), its CRC-32 (4) and "C2MA" (4), all
 * little-endian, written in place.  The CRC tells a damaged file from a
 * position: a wrong position above the records would skip readings never
 * delivered.  The previous version's 8-byte file is still read.
 */
#define ACKED_LEN   16
#define ACKED_MAGIC 0x414d3243u     /* "C2MA" */

static void
encode_acked(uint8_t *b, uint64_t acked)
{
    bytes_put64(b, acked);
    bytes_put32(b + 8, (uint32_t)crc32(0, b, 8));
    bytes_put32(b + 12, ACKED_MAGIC);
}

/* Writes the watermark to acked (no sync); 'force' even when unchanged. */
int
spool__write_acked(spool_t *sp, bool force)
{
    uint8_t b[ACKED_LEN];

    if (sp->acked == sp->acked_on_disk && !force)
        return 0;
    encode_acked(b, sp->acked);
    if (pwrite(sp->ackfd, b, ACKED_LEN, 0) != ACKED_LEN) {
        spool__sync_failed(sp, errno ? errno : EIO);
        return -1;
    }
    sp->acked_on_disk = sp->acked;
    return 0;
}

/*
 * Makes the watermark durable (at least 'need') here and now, before half
 * a segment or more is deleted: rare (every 32 KiB to 8 MiB of delivered
 * data at most).  Less (the tail closed at a sync tick in good times, see
 * spool__sync_tick) waits for the syncer thread to make the position durable.
 * While syncs fail, nothing is deleted (the tick probes).
 */
static int
persist_acked(spool_t *sp, uint64_t need)
{
    if (sp->acked_durable >= need)
        return 0;
    if (sp->sync_broken || spool__write_acked(sp, false) < 0)
        return -1;
    if (fdatasync(sp->ackfd) < 0) {
        spool__sync_failed(sp, errno);
        return -1;
    }
    sp->acked_durable = sp->acked_on_disk;
    return 0;
}

/* The probe while syncs fail, on the loop (no syncer thread). */
static void
probe_inline(spool_t *sp)
{
    if (spool__write_acked(sp, true) < 0)
        return;
    if (fdatasync(sp->ackfd) < 0) {
        spool__sync_failed(sp, errno);
        return;
    }
    sp->acked_durable = sp->acked_on_disk;
    spool__sync_works(sp);
}

static bool
deletable(const spool_t *sp, const struct segment *s)
{
    return s->next && s->next->first_seq <= sp->acked + 1 && s != sp->rseg;
}

/*
 * Deletes the segments wholly behind the watermark, once it is durable.
 * When they add up to half a segment or more, the position is synced here
 * (rare); less waits for the syncer thread to sync it at a tick.
 */
void
spool__drop_acked_segments(spool_t *sp)
{
    uint64_t bytes = 0, need = 0;
    struct segment *s;

    for (s = sp->segs; s && deletable(sp, s); s = s->next) {
        bytes += s->bytes;
        need = s->next->first_seq - 1;
    }
    if (s == sp->segs)
        return;
    if (sp->acked_durable < need && (bytes >= sp->seg_max / 2 || !sp->syncer))
        persist_acked(sp, need);
    while ((s = sp->segs) && deletable(sp, s) && s->next->first_seq - 1 <= sp->acked_durable) {
        unlinkat(sp->dirfd, s->name, 0);
        sp->dir_dirty = true;
        sp->bytes -= s->bytes;
        sp->segs = s->next;
        free(s);
    }
}

static bool
retire_due(const spool_t *sp)
{
    return sp->tail && !sp->backlog && sp->acked + 1 == sp->next_seq && sp->tail->bytes;
}

/* Everything is delivered: the tail segment can go too, so that a
 * gateway in good times holds (almost) nothing on disk. */
void
spool__retire_tail(spool_t *sp)
{
    struct segment **pp = &sp->segs;

    if (!retire_due(sp) || persist_acked(sp, sp->next_seq - 1) < 0)
        return;
    if (sp->wfd >= 0) {
        close(sp->wfd);
        sp->wfd = -1;
    }
    /* Everything is delivered: nothing unsynced is needed any more. */
    if (sp->prev_fd >= 0) {
        close(sp->prev_fd);
        sp->prev_fd = -1;
    }
    sp->dirty = false;
    unlinkat(sp->dirfd, sp->tail->name, 0);
    sp->dir_dirty = true;
    sp->bytes -= sp->tail->bytes;
    while (*pp != sp->tail)
        pp = &(*pp)->next;
    *pp = NULL;
    free(sp->tail);
    sp->tail = NULL;
    for (struct segment *s = sp->segs; s; s = s->next)
        sp->tail = s;
}

/* --- syncs, and rotation of the tail ---------------------------------- */

/*
 * Makes what was appended durable.  Without 'wait' a job starts on the
 * syncer thread (spool__start_job); when one still runs, the data stays
 * dirty for the next.  When everything written has been delivered the
 * data need not be durable, and the job makes the acknowledged position
 * durable instead (so that the tail can be retired); while syncs fail, it
 * is the probe.  'wait' (close; no syncer thread) syncs here and now.
 */
void
spool__sync_now(spool_t *sp, bool wait)
{
    if (!wait && sp->syncer)
        spool__start_job(sp);
    else
        spool__sync_inline(sp);
}

/*
 * Closes the tail segment; it stays in the list.  Its unsynced records
 * (if any are still needed) go with the next job: the descriptor is kept
 * as prev_fd until then.  Only when a previous closed tail still waits
 * (two rotations within one job: rare) does the loop sync it itself.
 */
void
spool__close_tail(spool_t *sp)
{
    if (sp->wfd < 0)
        return;
    spool__start_job(sp);
    if (sp->dirty && sp->acked + 1 < sp->next_seq) {
        if (sp->prev_fd >= 0)
            spool__sync_inline(sp);
        else
            sp->prev_fd = sp->wfd;
    }
    if (sp->prev_fd != sp->wfd)
        close(sp->wfd);
    sp->dirty = false;
    sp->wfd = -1;
}

/*
 * In good times everything written is delivered by the next tick, and the
 * tail goes, so that the disk holds (almost) nothing.  Its deletion waits
 * for the position to be durable, without an fdatasync on the loop: the
 * tick asks the syncer thread to sync acked (spool__sync_now) and closes the
 * tail, so that new readings go to a new segment and do not move the
 * position this one waits for; a later tick (or delivery) deletes it.
 * Without the syncer spool__retire_tail() makes the position durable itself.
 */
void
spool__sync_tick(loop_t *loop, void *arg)
{
    spool_t *sp = arg;
    bool seal = false;

    spool__collect(sp);
    if (sp->sync_broken && !sp->syncer)
        probe_inline(sp);
    spool__drop_acked_segments(sp);
    if (retire_due(sp)) {
        if (!sp->syncer || sp->acked_durable + 1 >= sp->next_seq)
            spool__retire_tail(sp);
        else
            seal = true;
    }
    spool__sync_now(sp, false);
    if (seal && sp->wfd >= 0 && (sp->req & REQ_ACKED) && sp->req_acked + 1 >= sp->next_seq)
        spool__close_tail(sp);
    sp->sync_timer = loop_add_timer(loop, (uint64_t)(sp->gw->cfg->queue.fsync_interval
                                                     ? sp->gw->cfg->queue.fsync_interval
                                                     : 100),
                                    spool__sync_tick, sp);
}

static struct segment *
segment_new(spool_t *sp, uint64_t first_seq)
{
    struct segment *s = calloc(1, sizeof(*s));

    if (!s)
        return NULL;
    s->first_seq = first_seq;
    snprintf(s->name, sizeof(s->name), "%016" PRIx64 ".seg", first_seq);
    if (sp->tail)
        sp->tail->next = s;
    else
        sp->segs = s;
    sp->tail = s;
    return s;
}

/*
 * Starts a new tail segment for appending, named after next_seq.  The file
 * must be new (O_EXCL): appending to a file of the same name, e.g. one a
 * torn record is in, would make two list entries of one file, offsets
 * that are wrong, and an unlink of one that deletes the other.
 */
int
spool__rotate(spool_t *sp)
{
    struct segment *s;
    char name[32];
    int fd, err;

    spool__close_tail(sp);
    for (int tries = 0;; tries++) {
        snprintf(name, sizeof(name), "%016" PRIx64 ".seg", sp->next_seq);
        fd = openat(sp->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
        if (fd >= 0)
            break;
        err = errno;
        if (err != EEXIST || tries == 8 || spool__skip_seq(sp) < 0) {
            spool__fault(sp, err);
            return -1;
        }
    }
    if (!(s = segment_new(sp, sp->next_seq))) {
        close(fd);
        unlinkat(sp->dirfd, name, 0);
        return -1;
    }
    sp->wfd = fd;
    sp->dir_dirty = true;       /* the new name is durable with the directory */
    return 0;
}

/* --- at open --------------------------------------------------------------- */

static int
seg_cmp(const void *a, const void *b)
{
    uint64_t x = (*(struct segment *const *)a)->first_seq;
    uint64_t y = (*(struct segment *const *)b)->first_seq;

    return x < y ? -1 : x > y;
}

/* Lists *.seg files, oldest first, into sp->segs. */
int
spool__list_segments(spool_t *sp)
{
    DIR *d = fdopendir(dup(sp->dirfd));
    struct segment **v = NULL, *s;
    size_t n = 0, cap = 0;
    struct dirent *e;

    if (!d)
        return -1;
    while ((e = readdir(d))) {
        uint64_t first;
        char tail[8];

        if (sscanf(e->d_name, "%16" SCNx64 "%7s", &first, tail) != 2 ||
            strcmp(tail, ".seg") != 0 || strlen(e->d_name) != 20) {
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, "acked")) {
                log_warnx("spool: %s: not a spool file, ignored", e->d_name);
                sp->gw->stats.spool_damaged++;
            }
            continue;
        }
        if (n == cap) {
            struct segment **nv = realloc(v, (cap = cap ? cap * 2 : 16) * sizeof(*v));

            if (!nv)
                break;
            v = nv;
        }
        if (!(s = calloc(1, sizeof(*s))))
            break;
        s->first_seq = first;
        memcpy(s->name, e->d_name, 21);     /* 20 characters, checked above */
        v[n++] = s;
    }
    closedir(d);
    if (n)
        qsort(v, n, sizeof(*v), seg_cmp);
    for (size_t i = 0; i < n; i++) {
        if (sp->tail)
            sp->tail->next = v[i];
        else
            sp->segs = v[i];
        sp->tail = v[i];
    }
    free(v);
    return 0;
}

/* A segment created just before a crash may hold nothing: remove it, so
 * that a new one of the same name cannot be mistaken for it. */
void
spool__drop_empty_segments(spool_t *sp)
{
    struct segment **pp = &sp->segs, *s;

    sp->tail = NULL;
    while ((s = *pp)) {
        if (s->bytes == 0 && s != sp->rseg) {
            log_notice("spool: %s: empty segment removed", s->name);
            unlinkat(sp->dirfd, s->name, 0);
            sp->dir_dirty = true;
            *pp = s->next;
            free(s);
            continue;
        }
        sp->tail = s;
        pp = &s->next;
    }
}

/*
 * A damaged position (wrong length, CRC, magic) is not trusted: the replay
 * starts at the oldest record (readings the broker had come again: at
 * least once, never lost), logged and counted (spool_damaged).
 */
void
spool__read_acked(spool_t *sp)
{
    uint8_t b[ACKED_LEN + 1];
    ssize_t n;

    sp->ackfd = openat(sp->dirfd, "acked", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (sp->ackfd < 0)
        return;
    n = pread(sp->ackfd, b, sizeof(b), 0);
    if (n == 8) {
        sp->acked = bytes_get64(b);                 /* the previous version's */
    } else if (n == ACKED_LEN && bytes_get32(b + 12) == ACKED_MAGIC &&
               bytes_get32(b + 8) == (uint32_t)crc32(0, b, 8)) {
        sp->acked = bytes_get64(b);
    } else {
        if (n != 0) {
            log_warnx("spool: acked: damaged acknowledged position (%zd bytes); replaying "
                      "from the oldest record", n);
            sp->gw->stats.spool_damaged++;
        }
        /* A new file: its block now, while there is room, so that writing
         * the position (which every segment deletion waits for) never
         * needs space on a full disk. */
        encode_acked(b, 0);
        if (pwrite(sp->ackfd, b, ACKED_LEN, 0) != ACKED_LEN || ftruncate(sp->ackfd, ACKED_LEN) < 0)
            log_warn("spool: writing the acknowledged position");
    }
    sp->acked_on_disk = sp->acked;
    sp->acked_durable = 0;          /* perhaps only in the page cache: sync before relying */
}

