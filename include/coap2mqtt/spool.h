/*
 * spool.h - the durable half of the outbound queue.  Every message bound
 * for the broker is appended to an on-disk log in state_dir/spool before
 * the device is told it was accepted (a write() survives kill -9; with
 * queue.durability = "power" the acknowledgement also waits for the
 * group-committed fdatasync, see spool_when_safe; with "process" the
 * fdatasync follows every queue.fsync_interval ms).  The log
 * is replayed in order after a restart from the last message the broker
 * acknowledged.  When the in-memory queue is full, messages live on disk
 * only and are read back in order as the broker catches up, so memory
 * stays bounded whatever the outage.
 *
 * Records: a 24-byte header (magic "C2M2", body length, CRC-32, flags,
 * sequence number) and the body (QoS, retain, Content-Format, topic,
 * correlation data, payload).  The CRC covers the length, flags, sequence
 * number and body; records of the previous version ("C2M1", CRC of the
 * body only) are still read.  A torn last record (crash or full disk
 * mid-write) fails its CRC and is cut off; a damaged record with intact
 * ones behind it is skipped, and the replay goes on behind it.
 */
#ifndef COAP2MQTT_SPOOL_H
#define COAP2MQTT_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coap2mqtt/context.h"
#include "coap2mqtt/outq.h"

typedef struct spool spool_t;

/*
 * Opens (creating) the spool directory and replays what the broker had
 * not acknowledged into gw->outq (and the disk backlog).  NULL on failure,
 * logged.
 */
spool_t *spool_open(struct gw *gw, const char *dir);
/* Flushes, syncs, records the acknowledged position, closes. */
void spool_close(spool_t *sp);

enum spool_put_result {
    SPOOL_QUEUED,       /* in the memory queue (and on disk when enabled) */
    SPOOL_ON_DISK,      /* on disk only: the memory queue is full */
    SPOOL_DROPPED_OLDEST, /* queued; without a spool, the oldest QoS 0
                           * message was dropped to make room */
    SPOOL_FULL,         /* refused: memory queue full and spool full/off */
};

/*
 * The one way into the outbound queue.  Takes ownership of 'm' unless
 * SPOOL_FULL is returned.  With sp == NULL (no spool) this is the bounded
 * memory queue alone.
 */
enum spool_put_result spool_put(spool_t *sp, outq_t *q, outmsg_t *m);

/* The broker has message 'seq' (PUBACK, or QoS 0 handed over). */
void spool_delivered(spool_t *sp, uint64_t seq);

/* Moves disk-only messages back into the memory queue as room allows. */
void spool_refill(spool_t *sp, outq_t *q);

/*
 * Group commit (queue.durability = "power"): an acknowledgement waits
 * until the record it covers is on stable storage.  Called with
 * safe = true once it is (synced, or delivered to the broker), false when
 * it cannot be (a sync failed, or the spool closes first).
 */
typedef void (*spool_safe_fn)(void *arg, bool safe);

/* The number of the record appended last (0: none yet). */
uint64_t spool_last_seq(const spool_t *sp);
/* True when record 'seq' may be acknowledged now: "process" mode, or it
 * is synced or delivered. */
bool spool_is_safe(const spool_t *sp, uint64_t seq);
/*
 * Calls fn(arg, ...) once record 'seq' is safe or cannot be; the sync
 * that covers it starts at once if none runs.  -1 (nothing registered)
 * on allocation failure.
 */
int spool_when_safe(spool_t *sp, uint64_t seq, spool_safe_fn fn, void *arg);
/*
 * Makes record 'seq' safe here and now, on the loop (for what must be
 * acknowledged before the handler returns: a CON notification).  0 when
 * it is, -1 when the sync failed (then it must not be acknowledged).
 */
int spool_make_safe(spool_t *sp, uint64_t seq);

/* Why the spool takes no readings now (disk full, failed syncs: a
 * strerror text), or NULL when it does. */
const char *spool_fault(const spool_t *sp);

uint64_t spool_bytes(const spool_t *sp);       /* on disk now */
uint64_t spool_backlog(const spool_t *sp);     /* messages on disk only */

#endif
