/*
 * syncer.h - fdatasync() on a thread of its own.  The spool appends on the
 * loop thread and makes its writes durable every queue.fsync_interval ms;
 * a journal commit can take milliseconds, and on the loop thread every
 * reading that arrived meanwhile waited for it (strace: up to 3.7 ms, a
 * visible share of the CON p99).  The loop hands over a duplicate of the
 * file descriptor and goes on; the thread syncs it and closes it.  One
 * sync at a time: a request while the previous one runs is refused, and
 * the caller keeps its data marked dirty for the next job.
 */
#ifndef COAP2MQTT_SYNCER_H
#define COAP2MQTT_SYNCER_H

#include <stdbool.h>

#define SYNCER_MAX_FDS 4

typedef struct syncer syncer_t;

/* NULL when the thread cannot be started (the caller syncs inline). */
syncer_t *syncer_new(void);
/* Waits for a running sync, then stops the thread. */
void syncer_free(syncer_t *s);

/*
 * Starts an fdatasync() of the file behind 'fd' (a duplicate is taken, so
 * the caller may close or rotate 'fd' at once).  False when a sync is
 * still running or the duplicate cannot be made: nothing was started.
 */
bool syncer_request(syncer_t *s, int fd);

/* One file of a job: fsync() when 'full' (a directory), else fdatasync(). */
struct syncer_file {
    int fd;
    bool full;
};

/*
 * Starts one job over 1..SYNCER_MAX_FDS files (duplicates taken), synced
 * in order; the job fails if any of them fails.  False as for
 * syncer_request().
 */
bool syncer_request_set(syncer_t *s, const struct syncer_file *files, int n);

/*
 * An eventfd that becomes readable after every finished job (read it to
 * clear it), so that the loop learns at once that a sync is done instead
 * of at its next tick.  Created on the first call; -1 when it cannot be.
 * Owned by the syncer.
 */
int syncer_notify_fd(syncer_t *s);

/* Waits until no sync is running or pending. */
void syncer_drain(syncer_t *s);

/*
 * True when no sync is running or pending, without waiting: the last
 * request is done, and its error (if any) is waiting in
 * syncer_take_error().  The spool asks this on its timer to learn that
 * its acknowledged position is durable before it deletes a segment.
 */
bool syncer_idle(syncer_t *s);

/* The errno of the last failed sync since the previous call, else 0. */
int syncer_take_error(syncer_t *s);

#endif
