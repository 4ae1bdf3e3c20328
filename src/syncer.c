/*
 * syncer.c - a background fdatasync() thread (see syncer.h for why).
 * The only thread besides the loop.  It touches nothing but the fields of
 * struct syncer, under its mutex, and a file descriptor it owns.
 *
 * Layer: base (a thread of its own; calls nothing of ours)
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "coap2mqtt/syncer.h"

struct syncer {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake;        /* a request, or quit */
    pthread_cond_t idle;        /* the sync ended */
    int pending[SYNCER_MAX_FDS];/* our duplicates; pending[0] < 0: none */
    bool full[SYNCER_MAX_FDS];  /* fsync (a directory), else fdatasync */
    int n;
    int notify;                 /* eventfd written after each job, -1 none */
    bool busy;
    bool quit;
    int error;
};

static void *
run(void *arg)
{
    syncer_t *s = arg;

    pthread_mutex_lock(&s->mu);
    for (;;) {
        int fds[SYNCER_MAX_FDS], n, err = 0;
        bool full[SYNCER_MAX_FDS];

        while (!s->quit && s->pending[0] < 0)
            pthread_cond_wait(&s->wake, &s->mu);
        if (s->pending[0] < 0)
            break;                  /* quit, nothing left to sync */
        n = s->n;
        for (int i = 0; i < n; i++) {
            fds[i] = s->pending[i];
            full[i] = s->full[i];
            s->pending[i] = -1;
        }
        s->busy = true;
        pthread_mutex_unlock(&s->mu);
        /* Every file of the job, each to the end even after a failure:
         * the caller counts the job as one. */
        for (int i = 0; i < n; i++) {
            if ((full[i] ? fsync(fds[i]) : fdatasync(fds[i])) < 0 && !err)
                err = errno;
            close(fds[i]);
        }
        pthread_mutex_lock(&s->mu);
        s->busy = false;
        if (err)
            s->error = err;
        if (s->notify >= 0) {
            uint64_t one = 1;

            if (write(s->notify, &one, sizeof(one)) < 0) {
                /* the counter is far from full: cannot fail */
            }
        }
        pthread_cond_broadcast(&s->idle);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

syncer_t *
syncer_new(void)
{
    syncer_t *s = calloc(1, sizeof(*s));

    if (!s)
        return NULL;
    for (int i = 0; i < SYNCER_MAX_FDS; i++)
        s->pending[i] = -1;
    s->notify = -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->wake, NULL);
    pthread_cond_init(&s->idle, NULL);
    if (pthread_create(&s->thread, NULL, run, s) != 0) {
        pthread_cond_destroy(&s->idle);
        pthread_cond_destroy(&s->wake);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return NULL;
    }
    return s;
}

void
syncer_free(syncer_t *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->quit = true;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->mu);
    /* The thread finishes a pending request before it sees quit. */
    pthread_join(s->thread, NULL);
    if (s->notify >= 0)
        close(s->notify);
    pthread_cond_destroy(&s->idle);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

int
syncer_notify_fd(syncer_t *s)
{
    pthread_mutex_lock(&s->mu);
    if (s->notify < 0)
        s->notify = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    pthread_mutex_unlock(&s->mu);
    return s->notify;
}

bool
syncer_request_set(syncer_t *s, const struct syncer_file *files, int n)
{
    bool started = false;
    int i;

    if (n < 1 || n > SYNCER_MAX_FDS)
        return false;
    pthread_mutex_lock(&s->mu);
    if (!s->busy && s->pending[0] < 0) {
        for (i = 0; i < n; i++) {
            if ((s->pending[i] = fcntl(files[i].fd, F_DUPFD_CLOEXEC, 0)) < 0)
                break;
            s->full[i] = files[i].full;
        }
        if (i == n) {
            s->n = n;
            started = true;
            pthread_cond_signal(&s->wake);
        } else {
            s->error = errno;
            while (i-- > 0) {
                close(s->pending[i]);
                s->pending[i] = -1;
            }
        }
    }
    pthread_mutex_unlock(&s->mu);
    return started;
}

bool
syncer_request(syncer_t *s, int fd)
{
    struct syncer_file f = { fd, false };

    return syncer_request_set(s, &f, 1);
}

void
syncer_drain(syncer_t *s)
{
    pthread_mutex_lock(&s->mu);
    while (s->busy || s->pending[0] >= 0)
        pthread_cond_wait(&s->idle, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

bool
syncer_idle(syncer_t *s)
{
    bool idle;

    pthread_mutex_lock(&s->mu);
    idle = !s->busy && s->pending[0] < 0;
    pthread_mutex_unlock(&s->mu);
    return idle;
}

int
syncer_take_error(syncer_t *s)
{
    int err;

    pthread_mutex_lock(&s->mu);
    err = s->error;
    s->error = 0;
    pthread_mutex_unlock(&s->mu);
    return err;
}
