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
 * record (see persist_acked and sync_tick for where that sync runs).  (And at open the watermark is never left below the oldest
 * surviving record, nor in front of a hole in the sequence: a spool left
 * that way by an older version, or by a power cut, frees itself again.)
 * Nothing here blocks on the network; disk writes are plain write()s, made
 * durable by an fdatasync() every queue.fsync_interval ms on the syncer
 * thread (syncer.h).
 *
 * Layer: base (calls outq, syncer, loop, log)
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "coap2mqtt/log.h"
#include "coap2mqtt/spool.h"
#include "coap2mqtt/syncer.h"

#define SEG_MAX_BYTES   (16u << 20)
#define SEG_MIN_BYTES   (64u << 10)
#define REC_MAGIC_V1    0x43324d31u     /* "C2M1": CRC of the body (read only) */
#define REC_MAGIC       0x43324d32u     /* "C2M2": CRC of length, flags, seq, body */
#define REC_HDR         24
#define REC_BODY_FIXED  16
#define REC_MAX_BODY    (REC_BODY_FIXED + 65535 + 65535 + (64u << 20))
#define SCAN_CHUNK      (64u << 10)     /* resynchronising after a damaged record */

struct segment {
    struct segment *next;
    uint64_t first_seq;
    uint64_t bytes;
    char name[32];
};

struct spool {
    struct gw *gw;
    int dirfd;
    struct segment *segs, *tail;    /* oldest first */
    int wfd;                        /* the tail segment, append only */
    uint64_t next_seq;
    uint64_t acked;                 /* everything <= acked is delivered */
    uint64_t acked_on_disk;         /* last written to <dir>/acked */
    uint64_t acked_durable;         /* ... and made durable there */
    int ackfd;
    uint8_t *done;                  /* ring over (acked, next_seq) */
    size_t cap;
    uint64_t bytes, max_bytes;
    uint64_t seg_max;               /* rotate beyond this */
    bool dirty;                     /* written since the last sync began */
    uint64_t sync_timer;
    syncer_t *syncer;               /* NULL: sync on the loop thread */
    enum { REQ_NONE, REQ_DATA, REQ_ACKED, REQ_PROBE } req;    /* the syncer's last job */
    uint64_t req_acked;             /* REQ_ACKED, REQ_PROBE: the position it syncs */
    bool sync_broken;               /* a sync failed: no new readings (sync_failed) */
    /* disk-only backlog, read back in order */
    uint64_t backlog;               /* messages on disk only */
    struct segment *rseg;
    int rfd;
    uint64_t roff;
    uint64_t rnext;                 /* the number the next record should have */
};

/* --- little-endian encoding ------------------------------------------- */

static void
put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void
put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void
put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t
get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t
get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static uint64_t
get64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* --- records ------------------------------------------------------------ */

/*
 * A record: a 24-byte header (magic, body length, CRC-32, flags, sequence
 * number, all little-endian) and the body.  In "C2M2" records the CRC
 * covers the header's length, flags and sequence number too, so that a
 * damaged number is caught like a damaged body.  "C2M1" records (the
 * previous version's, CRC of the body only) are still read, so that an
 * upgrade replays the spool it finds.
 */
static uint32_t
rec_crc(const uint8_t *hdr, const uint8_t *body, size_t len)
{
    uLong crc = crc32(0, NULL, 0);

    if (get32(hdr) == REC_MAGIC) {
        crc = crc32(crc, hdr + 4, 4);
        crc = crc32(crc, hdr + 12, 12);
    }
    return (uint32_t)crc32(crc, body, (uInt)len);
}

/* The size of m's record, 0 when it cannot be one. */
static size_t
rec_size(const outmsg_t *m)
{
    size_t tlen = strlen(m->topic);
    size_t body = REC_BODY_FIXED + tlen + m->corr_len + m->len;

    if (tlen > 65535 || m->corr_len > 65535 || body > REC_MAX_BODY)
        return 0;
    return REC_HDR + body;
}

/* Encodes header + body into a malloc'd buffer; *len gets its size. */
static uint8_t *
encode(const outmsg_t *m, uint64_t seq, size_t *len)
{
    size_t tlen = strlen(m->topic);
    size_t body = REC_BODY_FIXED + tlen + m->corr_len + m->len;
    uint8_t *buf, *b;

    if (tlen > 65535 || m->corr_len > 65535 || body > REC_MAX_BODY)
        return NULL;
    if (!(buf = malloc(REC_HDR + body)))
        return NULL;
    b = buf + REC_HDR;
    b[0] = (uint8_t)m->qos;
    b[1] = m->retain;
    put16(b + 2, 0);
    put32(b + 4, (uint32_t)m->ct);
    put16(b + 8, (uint16_t)tlen);
    put16(b + 10, (uint16_t)m->corr_len);
    put32(b + 12, (uint32_t)m->len);
    memcpy(b + REC_BODY_FIXED, m->topic, tlen);
    if (m->corr_len)
        memcpy(b + REC_BODY_FIXED + tlen, m->corr, m->corr_len);
    if (m->len)
        memcpy(b + REC_BODY_FIXED + tlen + m->corr_len, m->payload, m->len);
    put32(buf, REC_MAGIC);
    put32(buf + 4, (uint32_t)body);
    put32(buf + 12, 0);
    put64(buf + 16, seq);
    put32(buf + 8, rec_crc(buf, b, body));
    *len = REC_HDR + body;
    return buf;
}

/* Rebuilds a message from a verified body. */
static outmsg_t *
decode(const uint8_t *b, size_t body, uint64_t seq)
{
    size_t tlen, clen, plen;
    char topic[65536];
    outmsg_t *m;

    if (body < REC_BODY_FIXED)
        return NULL;
    tlen = get16(b + 8);
    clen = get16(b + 10);
    plen = get32(b + 12);
    if (REC_BODY_FIXED + tlen + clen + plen != body || b[0] > 2)
        return NULL;
    memcpy(topic, b + REC_BODY_FIXED, tlen);
    topic[tlen] = '\0';
    m = outmsg_new(topic, b + REC_BODY_FIXED + tlen + clen, plen, b[0], b[1] != 0,
                   (int)get32(b + 4));
    if (m && clen && outmsg_set_correlation(m, b + REC_BODY_FIXED + tlen, clen) < 0) {
        outmsg_finish(m, false);
        return NULL;
    }
    if (m)
        m->seq = seq;
    return m;
}

/*
 * Reads the record at 'off' of fd.  Returns its total size and fills *seq
 * and *m (if m != NULL), 0 at a clean end, -1 for a torn or corrupt record.
 */
static ssize_t
read_record(int fd, uint64_t off, uint64_t *seq, outmsg_t **m)
{
    uint8_t hdr[REC_HDR], *body;
    uint32_t len;
    ssize_t n = pread(fd, hdr, sizeof(hdr), (off_t)off);

    if (n == 0)
        return 0;
    if (n != REC_HDR || (get32(hdr) != REC_MAGIC && get32(hdr) != REC_MAGIC_V1))
        return -1;
    len = get32(hdr + 4);
    if (len < REC_BODY_FIXED || len > REC_MAX_BODY || !(body = malloc(len)))
        return -1;
    if (pread(fd, body, len, (off_t)(off + REC_HDR)) != (ssize_t)len ||
        rec_crc(hdr, body, len) != get32(hdr + 8)) {
        free(body);
        return -1;
    }
    *seq = get64(hdr + 16);
    if (m && !(*m = decode(body, len, *seq))) {
        free(body);
        return -1;
    }
    free(body);
    return (ssize_t)(REC_HDR + len);
}

/*
 * After a damaged record at 'off' (torn by a short write or a crash, or a
 * bad sector): the offset of the next intact record numbered above
 * 'after' (numbers only grow in a segment), or -1 when none follows and
 * the rest is a torn end.  Every place a magic appears is tried ("C2M1"
 * and "C2M2" share their last three bytes); the CRC decides.
 */
static int64_t
next_intact(int fd, uint64_t off, uint64_t after)
{
    static const uint8_t tail3[3] = { 0x4d, 0x32, 0x43 };       /* "M2C": bytes 1..3 */
    uint8_t *buf = malloc(SCAN_CHUNK);
    uint64_t pos = off + 1;
    int64_t found = -1;
    ssize_t n;

    if (!buf)
        return -1;
    while (found < 0 && (n = pread(fd, buf, SCAN_CHUNK, (off_t)pos)) >= 4) {
        const uint8_t *p = buf + 1, *end = buf + n;

        while (found < 0 && (p = memmem(p, (size_t)(end - p), tail3, sizeof(tail3)))) {
            uint64_t at = pos + (uint64_t)(p - 1 - buf), seq;

            if ((p[-1] == 0x31 || p[-1] == 0x32) && read_record(fd, at, &seq, NULL) > 0 &&
                seq > after)
                found = (int64_t)at;
            p++;
        }
        pos += (uint64_t)n - 3;                     /* a magic across the chunk edge */
    }
    free(buf);
    return found;
}

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

/* --- the acknowledged position on disk, and failed syncs ---------------- */

/*
 * A failed fdatasync() (EIO: a dying disk; and Linux marks the pages clean
 * after a failed writeback, so a retry proves nothing about them) means
 * that what was written may not survive a power cut.  From then on the
 * spool takes no new reading (spool_put() returns SPOOL_FULL: a CON push
 * is answered 5.03 and the device keeps its reading) and deletes no
 * segment, until a sync of a fresh write succeeds: every sync tick probes
 * by writing acked again and syncing it.  Logged once each way.
 */
static void
sync_failed(spool_t *sp, int err)
{
    if (!sp->sync_broken)
        log_warnx("spool: fdatasync failed (%s); refusing new readings until a sync works "
                  "again", strerror(err));
    sp->sync_broken = true;
}

static void
sync_works(spool_t *sp)
{
    if (sp->sync_broken)
        log_notice("spool: fdatasync works again; accepting readings");
    sp->sync_broken = false;
}

/* Writes the watermark to acked (no sync); 'force' even when unchanged. */
static int
write_acked(spool_t *sp, bool force)
{
    uint8_t b[8];

    if (sp->acked == sp->acked_on_disk && !force)
        return 0;
    put64(b, sp->acked);
    if (pwrite(sp->ackfd, b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
        sync_failed(sp, errno ? errno : EIO);
        return -1;
    }
    sp->acked_on_disk = sp->acked;
    return 0;
}

/*
 * Makes the watermark durable (at least 'need') here and now, before half
 * a segment or more is deleted: rare (every 32 KiB to 8 MiB of delivered
 * data at most).  Less (the tail closed at a sync tick in good times, see
 * sync_tick) waits for the syncer thread to make the position durable.
 * While syncs fail, nothing is deleted (the tick probes).
 */
static int
persist_acked(spool_t *sp, uint64_t need)
{
    if (sp->acked_durable >= need)
        return 0;
    if (sp->sync_broken || write_acked(sp, false) < 0)
        return -1;
    if (fdatasync(sp->ackfd) < 0) {
        sync_failed(sp, errno);
        return -1;
    }
    sp->acked_durable = sp->acked_on_disk;
    return 0;
}

/* The probe while syncs fail, on the loop (no syncer thread). */
static void
probe_inline(spool_t *sp)
{
    if (write_acked(sp, true) < 0)
        return;
    if (fdatasync(sp->ackfd) < 0) {
        sync_failed(sp, errno);
        return;
    }
    sp->acked_durable = sp->acked_on_disk;
    sync_works(sp);
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
static void
drop_acked_segments(spool_t *sp)
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
static void
retire_tail(spool_t *sp)
{
    struct segment **pp = &sp->segs;

    if (!retire_due(sp) || persist_acked(sp, sp->next_seq - 1) < 0)
        return;
    if (sp->wfd >= 0) {
        close(sp->wfd);
        sp->wfd = -1;
    }
    unlinkat(sp->dirfd, sp->tail->name, 0);
    sp->bytes -= sp->tail->bytes;
    while (*pp != sp->tail)
        pp = &(*pp)->next;
    *pp = NULL;
    free(sp->tail);
    sp->tail = NULL;
    for (struct segment *s = sp->segs; s; s = s->next)
        sp->tail = s;
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
static int
skip_seq(spool_t *sp)
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
    drop_acked_segments(sp);
    if (sp->tail && sp->tail->bytes >= sp->seg_max / 2)
        retire_tail(sp);
}

/* --- writing ------------------------------------------------------------- */

/* What the syncer's last job achieved, once it is done. */
static void
sync_collect(spool_t *sp)
{
    int err;

    if (!sp->syncer || sp->req == REQ_NONE || !syncer_idle(sp->syncer))
        return;
    if ((err = syncer_take_error(sp->syncer))) {
        sync_failed(sp, err);
    } else if (sp->req != REQ_DATA) {      /* acked written, then synced */
        if (sp->req_acked > sp->acked_durable)
            sp->acked_durable = sp->req_acked;
        if (sp->req == REQ_PROBE)
            sync_works(sp);
    }
    sp->req = REQ_NONE;
}

static bool
sync_request(spool_t *sp, int fd, int what)
{
    int err;

    if (syncer_request(sp->syncer, fd)) {
        sp->req = what;
        return true;
    }
    if (syncer_idle(sp->syncer) && (err = syncer_take_error(sp->syncer)))
        sync_failed(sp, err);       /* no duplicate descriptor: nothing started */
    return false;
}

/*
 * Makes what was appended durable.  From the timer the fdatasync() runs on
 * the syncer thread; when that is still busy with the previous one, the
 * data stays dirty for the next tick.  When everything written has been
 * delivered the data need not be durable, and the syncer makes the
 * acknowledged position durable instead (so that the tail can be retired
 * at the next tick); while syncs fail, it runs the probe.  'wait'
 * (rotation, close) syncs the data here and now.
 */
static void
sync_now(spool_t *sp, bool wait)
{
    sync_collect(sp);
    if (!wait && sp->syncer) {
        if (sp->req != REQ_NONE)
            return;                 /* still busy: next tick */
        if (sp->sync_broken) {
            if (write_acked(sp, true) == 0) {
                sp->req_acked = sp->acked_on_disk;
                sync_request(sp, sp->ackfd, REQ_PROBE);
            }
            return;
        }
        write_acked(sp, false);
        if (sp->dirty && sp->wfd >= 0 && sp->acked + 1 < sp->next_seq) {
            if (sync_request(sp, sp->wfd, REQ_DATA))
                sp->dirty = false;
        } else if (sp->acked_on_disk > sp->acked_durable) {
            sp->req_acked = sp->acked_on_disk;
            sync_request(sp, sp->ackfd, REQ_ACKED);
        }
        return;
    }
    write_acked(sp, false);
    if (sp->dirty && sp->wfd >= 0) {
        if (fdatasync(sp->wfd) < 0)
            sync_failed(sp, errno);
        sp->dirty = false;
    }
}

/* Syncs (see sync_now) and closes the tail segment; it stays in the list. */
static void
close_tail(spool_t *sp)
{
    if (sp->wfd < 0)
        return;
    /* The syncer syncs its own duplicate, so closing at once is fine;
     * only when it is busy does the loop wait for the disk. */
    sync_now(sp, false);
    if (sp->dirty && sp->acked + 1 < sp->next_seq)
        sync_now(sp, true);
    sp->dirty = false;
    close(sp->wfd);
    sp->wfd = -1;
}

/*
 * In good times everything written is delivered by the next tick, and the
 * tail goes, so that the disk holds (almost) nothing.  Its deletion waits
 * for the position to be durable, without an fdatasync on the loop: the
 * tick asks the syncer thread to sync acked (sync_now) and closes the
 * tail, so that new readings go to a new segment and do not move the
 * position this one waits for; a later tick (or delivery) deletes it.
 * Without the syncer retire_tail() makes the position durable itself.
 */
static void
sync_tick(loop_t *loop, void *arg)
{
    spool_t *sp = arg;
    bool seal = false;

    sync_collect(sp);
    if (sp->sync_broken && !sp->syncer)
        probe_inline(sp);
    drop_acked_segments(sp);
    if (retire_due(sp)) {
        if (!sp->syncer || sp->acked_durable + 1 >= sp->next_seq)
            retire_tail(sp);
        else
            seal = true;
    }
    sync_now(sp, false);
    if (seal && sp->wfd >= 0 && sp->req == REQ_ACKED && sp->req_acked + 1 >= sp->next_seq)
        close_tail(sp);
    sp->sync_timer = loop_add_timer(loop, (uint64_t)(sp->gw->cfg->queue.fsync_interval
                                                     ? sp->gw->cfg->queue.fsync_interval
                                                     : 100),
                                    sync_tick, sp);
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
static int
rotate(spool_t *sp)
{
    struct segment *s;
    char name[32];
    int fd, err;

    close_tail(sp);
    for (int tries = 0;; tries++) {
        snprintf(name, sizeof(name), "%016" PRIx64 ".seg", sp->next_seq);
        fd = openat(sp->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
        if (fd >= 0)
            break;
        err = errno;
        if (err != EEXIST || tries == 8 || skip_seq(sp) < 0) {
            errno = err;
            log_warn("spool: cannot create %s", name);
            return -1;
        }
    }
    if (!(s = segment_new(sp, sp->next_seq))) {
        close(fd);
        unlinkat(sp->dirfd, name, 0);
        return -1;
    }
    sp->wfd = fd;
    return 0;
}

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
    close_tail(sp);
    skip_seq(sp);
}

/* Appends; *off gets the record's offset in the tail segment. */
static int
append(spool_t *sp, outmsg_t *m, uint64_t *off)
{
    size_t len = rec_size(m);
    uint8_t *rec;
    ssize_t n;

    if (!len || sp->bytes + len > sp->max_bytes || sp->sync_broken)
        return -1;
    /* An empty tail takes any record, however large. */
    if ((sp->wfd < 0 || (sp->tail->bytes && sp->tail->bytes + len > sp->seg_max)) &&
        (rotate(sp) < 0 || sp->sync_broken))
        return -1;
    if (window_fit(sp, sp->next_seq) < 0 || !(rec = encode(m, sp->next_seq, &len)))
        return -1;
    n = write(sp->wfd, rec, len);
    free(rec);
    if (n != (ssize_t)len) {
        static int warned;

        log_ratelimited(&warned, "spool: write failed (%s)", n < 0 ? strerror(errno) : "short");
        undo_append(sp, n > 0 ? (uint64_t)n : 0);
        return -1;
    }
    /* fsync_interval 0: durable before it is acknowledged, or refused
     * (and cut off again, so that it is not replayed either). */
    if (sp->gw->cfg->queue.fsync_interval == 0 && fdatasync(sp->wfd) < 0) {
        sync_failed(sp, errno);
        undo_append(sp, len);
        return -1;
    }
    *off = sp->tail->bytes;
    m->seq = sp->next_seq++;
    sp->done[m->seq % sp->cap] = 0;
    sp->tail->bytes += len;
    sp->bytes += len;
    sp->dirty = sp->gw->cfg->queue.fsync_interval != 0;
    if (!sp->dirty)
        write_acked(sp, false);
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
        ssize_t n = read_record(sp->rfd, sp->roff, &seq, &m);

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
            int64_t next = next_intact(sp->rfd, sp->roff, sp->rnext - 1);

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

static int
seg_cmp(const void *a, const void *b)
{
    uint64_t x = (*(struct segment *const *)a)->first_seq;
    uint64_t y = (*(struct segment *const *)b)->first_seq;

    return x < y ? -1 : x > y;
}

/* Lists *.seg files, oldest first, into sp->segs. */
static int
list_segments(spool_t *sp)
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
            strcmp(tail, ".seg") != 0 || strlen(e->d_name) != 20)
            continue;
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

/* Replays one segment: unacknowledged records go to the queue (or start
 * the backlog); a torn tail is cut off. */
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
    for (;;) {
        outmsg_t *m = NULL;
        bool want = true;

        n = read_record(fd, off, &seq, NULL);
        if (n < 0) {
            /* Damaged: never cut off intact records behind it. */
            int64_t next = next_intact(fd, off, last);

            if (next < 0)
                break;
            log_warnx("spool: %s: damaged record at offset %" PRIu64 "; %" PRIu64
                      " bytes skipped", seg->name, off, (uint64_t)next - off);
            off = (uint64_t)next;
            continue;
        }
        if (n == 0)
            break;
        last = seq;
        if (seq <= sp->acked || seq < sp->next_seq)
            want = false;           /* delivered, or a duplicate number */
        if (want && seq > sp->next_seq && sp->next_seq == sp->acked + 1) {
            /* The oldest surviving record is above the watermark: what
             * was below it is gone, i.e. was delivered (its segment was
             * deleted) or never written.  Waiting for it would stop the
             * watermark for good. */
            log_notice("spool: acknowledged position %" PRIu64 " is below the oldest "
                       "record %" PRIu64 "; moved up", sp->acked, seq);
            sp->acked = seq - 1;
            sp->next_seq = seq;
        }
        if (want) {
            if (window_fit(sp, seq) < 0)
                break;
            /* A hole (a record cut or lost, a number never written): the
             * watermark passes it as if it had been delivered. */
            for (uint64_t h = sp->next_seq; h < seq; h++)
                sp->done[h % sp->cap] = 1;
            sp->next_seq = seq + 1;
            sp->done[seq % sp->cap] = 0;
            if (!sp->backlog && outq_len(q) < outq_max(q) &&
                read_record(fd, off, &seq, &m) > 0) {
                outq_push(q, m);
            } else {
                if (!sp->backlog)
                    open_reader(sp, seg, off, seq);
                sp->backlog++;
            }
            (*replayed)++;
        }
        off += (uint64_t)n;
    }
    if (n < 0) {
        log_warnx("spool: %s: torn record at offset %" PRIu64 " (a crash or a full disk "
                  "during a write), cut", seg->name, off);
        if (ftruncate(fd, (off_t)off) < 0)
            log_warn("spool: truncate %s", seg->name);
    }
    seg->bytes = off;
    sp->bytes += off;
    close(fd);
}

/* A segment created just before a crash may hold nothing: remove it, so
 * that a new one of the same name cannot be mistaken for it. */
static void
drop_empty_segments(spool_t *sp)
{
    struct segment **pp = &sp->segs, *s;

    sp->tail = NULL;
    while ((s = *pp)) {
        if (s->bytes == 0 && s != sp->rseg) {
            unlinkat(sp->dirfd, s->name, 0);
            *pp = s->next;
            free(s);
            continue;
        }
        sp->tail = s;
        pp = &s->next;
    }
}

static void
read_acked(spool_t *sp)
{
    uint8_t b[8];

    sp->ackfd = openat(sp->dirfd, "acked", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (sp->ackfd < 0)
        return;
    if (pread(sp->ackfd, b, sizeof(b), 0) == (ssize_t)sizeof(b)) {
        sp->acked = get64(b);
    } else {
        /* A new file: its block now, while there is room, so that writing
         * the position (which every segment deletion waits for) never
         * needs space on a full disk. */
        put64(b, 0);
        if (pwrite(sp->ackfd, b, sizeof(b), 0) != (ssize_t)sizeof(b))
            log_warn("spool: writing the acknowledged position");
    }
    sp->acked_on_disk = sp->acked;
    sp->acked_durable = 0;          /* perhaps only in the page cache: sync before relying */
}

spool_t *
spool_open(struct gw *gw, const char *dir)
{
    spool_t *sp = calloc(1, sizeof(*sp));
    uint64_t replayed = 0;

    if (!sp)
        return NULL;
    sp->gw = gw;
    sp->wfd = sp->rfd = sp->ackfd = -1;
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
    if (sp->dirfd < 0 || (read_acked(sp), sp->ackfd < 0) || list_segments(sp) < 0) {
        log_warn("spool: cannot use %s", dir);
        spool_close(sp);
        return NULL;
    }
    sp->next_seq = sp->acked + 1;
    for (struct segment *s = sp->segs; s; s = s->next)
        replay_segment(sp, s, gw->outq, &replayed);
    drop_empty_segments(sp);
    drop_acked_segments(sp);
    if (replayed)
        log_notice("spool: %" PRIu64 " messages from before the restart will be "
                   "delivered (%" PRIu64 " waiting on disk)", replayed, sp->backlog);
    if (!(sp->syncer = syncer_new()))
        log_warnx("spool: no syncer thread; fdatasync() runs on the loop");
    sp->sync_timer = loop_add_timer(gw->loop, 100, sync_tick, sp);
    return sp;
}

void
spool_close(spool_t *sp)
{
    struct segment *s;

    if (!sp)
        return;
    if (sp->gw->loop)
        loop_cancel_timer(sp->gw->loop, sp->sync_timer);
    syncer_free(sp->syncer);        /* waits for a sync still running */
    sp->syncer = NULL;
    if (sp->ackfd >= 0) {
        sync_now(sp, true);
        fsync(sp->ackfd);
        close(sp->ackfd);
    }
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
