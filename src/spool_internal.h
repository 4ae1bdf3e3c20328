/*
 * spool_internal.h - the spool's state, shared by its files and by nobody
 * else (as transport_internal.h does for the transport):
 *
 *   spool.c             open and close, put, delivered, refill, replay at
 *                       open, the window of acknowledgements
 *   spool_records.c     the record format on disk ("C2M1", "C2M2"), its
 *                       CRC, encoding and decoding, reading a record and
 *                       finding the next intact one after a damaged one
 *   spool_segments.c    the segment files (listing, rotation, deletion,
 *                       retiring the tail), the acknowledged position in
 *                       <dir>/acked and the syncs that make both durable
 *   spool_durable.c     group commit (queue.durability = "power"): the
 *                       sync jobs, what a finished one made durable, and
 *                       the acknowledgements that wait for it
 *
 * Internal calls between these files are named spool__verb.
 *
 * Layer: base
 */
#ifndef COAP2MQTT_SPOOL_INTERNAL_H
#define COAP2MQTT_SPOOL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "coap2mqtt/loop.h"
#include "coap2mqtt/outq.h"
#include "coap2mqtt/bytes.h"
#include "coap2mqtt/spool.h"
#include "coap2mqtt/syncer.h"

/* The smallest record on disk: header and fixed body, no topic. */
#define SPOOL_REC_MIN_BYTES     40
/* Record numbers stay below this, far from wrapping (2^62). */
#define SPOOL_SEQ_LIMIT         (UINT64_C(1) << 62)

struct segment {
    struct segment *next;
    uint64_t first_seq;
    uint64_t bytes;
    char name[32];
};

enum {
    REQ_DATA = 1,                   /* segments: records <= req_seq */
    REQ_DIR = 2,                    /* the directory: created, deleted segments */
    REQ_ACKED = 4,                  /* acked at req_acked */
    REQ_PROBE = 8,                  /* acked again while syncs fail */
};

struct spool_waiter {
    uint64_t seq;
    spool_safe_fn fn;
    void *arg;
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
    unsigned req;                   /* the syncer's job: REQ_* flags, 0 = none */
    uint64_t req_acked;             /* REQ_ACKED, REQ_PROBE: the position it syncs */
    uint64_t req_seq;               /* REQ_DATA: the records it makes durable */
    bool power;                     /* queue.durability = "power" */
    uint64_t synced_seq;            /* every record <= it is on stable storage */
    int prev_fd;                    /* a closed tail with unsynced records, or -1 */
    bool dir_dirty;                 /* a segment created or deleted since the last
                                     * fsync of the directory began */
    int notify_fd;                  /* the syncer's eventfd in the loop, or -1 */
    uint64_t job_start_ms;          /* loop time the last job started */
    uint64_t gap_timer;             /* the next job, once SYNC_PERIOD_MS is over */
    struct spool_waiter *waiters;   /* ring, in record order */
    size_t w_head, w_len, w_cap;
    int fault;                      /* errno while readings cannot be stored */
    uint64_t fault_ms;              /* loop time of the last failure */
    bool sync_broken;               /* a sync failed: no new readings (spool__sync_failed) */
    /* disk-only backlog, read back in order */
    uint64_t backlog;               /* messages on disk only */
    struct segment *rseg;
    int rfd;
    uint64_t roff;
    uint64_t rnext;                 /* the number the next record should have */
};

/* spool_records.c */
size_t spool__rec_size(const outmsg_t *m);
uint8_t *spool__encode(const outmsg_t *m, uint64_t seq, size_t *len);
ssize_t spool__read_record(int fd, uint64_t off, uint64_t *seq, outmsg_t **m);
int64_t spool__next_intact(int fd, uint64_t off, uint64_t after);

/* spool_segments.c */
void spool__sync_failed(spool_t *sp, int err);
void spool__sync_works(spool_t *sp);
void spool__fault(spool_t *sp, int err);
void spool__fault_cleared(spool_t *sp, bool at_once);
int spool__write_acked(spool_t *sp, bool force);
void spool__drop_acked_segments(spool_t *sp);
void spool__retire_tail(spool_t *sp);
void spool__sync_now(spool_t *sp, bool wait);
void spool__close_tail(spool_t *sp);
void spool__sync_tick(loop_t *loop, void *arg);
int spool__rotate(spool_t *sp);
int spool__list_segments(spool_t *sp);
void spool__drop_empty_segments(spool_t *sp);
void spool__read_acked(spool_t *sp);

/* spool_durable.c */
void spool__start_job(spool_t *sp);
void spool__collect(spool_t *sp);
int spool__sync_inline(spool_t *sp);
void spool__release(spool_t *sp, bool failed);
void spool__fail_waiters(spool_t *sp);
int spool__watch_syncer(spool_t *sp);

/* spool.c */
int spool__skip_seq(spool_t *sp);

#endif
