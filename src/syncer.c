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
#include <stdlib.h>
#include <unistd.h>

#include "coap2mqtt/syncer.h"

struct syncer {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake;        /* a request, or quit */
    pthread_cond_t idle;        /* the sync ended */
    int pending;                /* our duplicate, -1 when none */
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
        int fd, err = 0;

        while (!s->quit && s->pending < 0)
            pthread_cond_wait(&s->wake, &s->mu);
        if (s->pending < 0)
            break;                  /* quit, nothing left to sync */
        fd = s->pending;
        s->pending = -1;
        s->busy = true;
        pthread_mutex_unlock(&s->mu);
        if (fdatasync(fd) < 0)
            err = errno;
        close(fd);
        pthread_mutex_lock(&s->mu);
        s->busy = false;
        if (err)
            s->error = err;
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
    s->pending = -1;
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
    pthread_cond_destroy(&s->idle);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

bool
syncer_request(syncer_t *s, int fd)
{
    bool started = false;

    pthread_mutex_lock(&s->mu);
    if (!s->busy && s->pending < 0) {
        s->pending = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (s->pending >= 0) {
            started = true;
            pthread_cond_signal(&s->wake);
        } else {
            s->error = errno;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return started;
}

void
syncer_drain(syncer_t *s)
{
    pthread_mutex_lock(&s->mu);
    while (s->busy || s->pending >= 0)
        pthread_cond_wait(&s->idle, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

bool
syncer_idle(syncer_t *s)
{
    bool idle;

    pthread_mutex_lock(&s->mu);
    idle = !s->busy && s->pending < 0;
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
