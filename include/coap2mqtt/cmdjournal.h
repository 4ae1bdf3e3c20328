/*
 * cmdjournal.h - the command journal: an append-only file
 * (state_dir/commands.journal) that makes MQTT commands queued for a device
 * survive a crash of the gateway.  libmosquitto acknowledges a command to
 * the broker (PUBACK) before the gateway sees it, so the broker never
 * sends it again: from then on the journal is its only copy.
 *
 * Two kinds of record: ACCEPTED (a command went into a device's queue: its
 * number, device, path, kind, payload, Content-Format, Response Topic,
 * Correlation Data, absolute expiry) and DONE (that command got its one
 * result).  At open, every ACCEPTED without a DONE is handed to the caller
 * to be queued again, and the file is rewritten with just those; it is
 * rewritten the same way whenever it grows past a bound.
 *
 * Writes are plain write()s, which survive kill -9; an fdatasync() follows
 * every fsync_interval ms on a syncer thread (every record when 0), as for
 * the spool.  A record torn by a crash, or damaged on disk, fails its
 * magic, length or CRC-32 (which covers type and number too) and is
 * skipped; the reader looks for the next intact record after it.
 *
 * Record: 12-byte header (magic "C2MJ", body length, CRC-32 of the body),
 * then the body, little-endian: type (1 ACCEPTED, 2 DONE), number (u64);
 * for ACCEPTED also kind, flags (1 Response Topic, 2 Correlation Data),
 * Content-Format (i32, -1 none), expiry (i64, wall-clock ms), time to live
 * (u64 ms), the lengths of id, path, Response Topic, Correlation Data
 * (u16 each) and payload (u32), then those bytes in that order.
 *
 * Layer: base (calls loop, syncer, log)
 */
#ifndef COAP2MQTT_CMDJOURNAL_H
#define COAP2MQTT_CMDJOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "coap2mqtt/loop.h"

#define CJ_HDR              12
#define CJ_DONE_BODY        9
#define CJ_ACCEPTED_FIXED   43
#define CJ_MAX_PAYLOAD      (64u << 20)
/* Rewrite when the file passes this (or twice its size after the last
 * rewrite, whichever is larger). */
#define CJ_COMPACT_MIN      (256u << 10)

enum cj_type { CJ_ACCEPTED = 1, CJ_DONE = 2 };

/* One command as journalled.  Strings are not NUL-terminated: their
 * lengths say where they end.  rt / corr NULL: absent. */
struct cj_command {
    uint64_t seq;           /* the journal's number for it, > 0 */
    uint8_t kind;           /* the caller's (0 set, 1 get), at most 1 */
    int32_t ct;             /* Content-Format to send, -1 none */
    int64_t expiry_ms;      /* wall clock, ms since the epoch */
    uint64_t ttl_ms;        /* its whole time to live */
    const char *id;
    size_t id_len;          /* 1..TOPIC_ID_MAX, no NUL */
    const char *path;
    size_t path_len;        /* 1..TOPIC_PATH_MAX, no NUL */
    const char *rt;
    size_t rt_len;          /* no NUL */
    const uint8_t *corr;
    size_t corr_len;        /* up to 65535 */
    const uint8_t *payload;
    size_t len;             /* up to CJ_MAX_PAYLOAD */
};

/* --- records (pure) -------------------------------------------------- */

/* A malloc'd ACCEPTED record for c (c->seq included); *len gets its size.
 * NULL when a field is out of range or on allocation failure. */
uint8_t *cj_encode_accepted(const struct cj_command *c, size_t *len);
/* Writes the DONE record of 'seq' into out; returns its size. */
size_t cj_encode_done(uint64_t seq, uint8_t out[CJ_HDR + CJ_DONE_BODY]);

/*
 * Decodes the record at the start of buf[0..len).  Returns its size (> 0)
 * and fills *type and *c (for DONE only c->seq; for ACCEPTED its pointers
 * point into buf).  Returns 0 when buf is a clean prefix of a record (a
 * write cut short at the end of the file), -1 when the bytes at buf are
 * no intact record.
 */
ssize_t cj_decode(const uint8_t *buf, size_t len, enum cj_type *type,
                  struct cj_command *c);

/* --- the journal file ---------------------------------------------------- */

typedef struct cmdjournal cmdjournal_t;

/* What cmdjournal_open() found. */
struct cj_load_stats {
    size_t pending;         /* ACCEPTED without DONE: handed to the caller */
    size_t answered;        /* ACCEPTED with DONE: dropped */
    size_t damaged;         /* stretches of bytes that were no record: skipped */
    uint64_t damaged_bytes;
    bool torn_tail;         /* the file ended in the middle of a record
                             * (not counted as damaged) */
};

typedef void (*cj_pending_fn)(void *arg, const struct cj_command *c);

/*
 * Opens (creating) the journal at 'path', calls fn(arg, c) for each
 * command that was accepted and never answered, oldest first (c and its
 * bytes are valid during the call only), then rewrites the file with just
 * those.  'loop' runs the sync timer (fsync_interval_ms, 0 = sync every
 * record); compact_min is CJ_COMPACT_MIN but for tests.  NULL on failure,
 * logged; *st (may be NULL) says what was found.
 */
cmdjournal_t *cmdjournal_open(const char *path, loop_t *loop, int fsync_interval_ms,
                              uint64_t compact_min, cj_pending_fn fn, void *arg,
                              struct cj_load_stats *st);
/* Syncs and closes; what is still pending stays for the next open. */
void cmdjournal_close(cmdjournal_t *j);

/* Appends the ACCEPTED record of c (c->seq is ignored).  Returns the
 * command's number (> 0), or 0 when nothing could be written (logged). */
uint64_t cmdjournal_accept(cmdjournal_t *j, const struct cj_command *c);
/* Appends the DONE record of 'seq'; -1 on failure (logged). */
int cmdjournal_done(cmdjournal_t *j, uint64_t seq);

/* Bytes in the file now, and commands accepted and not yet done. */
uint64_t cmdjournal_bytes(const cmdjournal_t *j);
size_t cmdjournal_open_count(const cmdjournal_t *j);

#endif
