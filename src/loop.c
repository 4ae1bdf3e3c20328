/*
 * loop.c - one epoll set, one timer heap.  Timers are served through the
 * epoll_wait timeout, so there is no timerfd per timer.  A timer's heap
 * slot index is kept in the timer so cancelling is O(log n); ids are looked
 * up in a hash (uthash) so stale ids are harmless.
 *
 * Layer: base (calls log)
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>
#include <uthash.h>

#include "coap2mqtt/log.h"
#include "coap2mqtt/loop.h"

#define LOOP_MAX_EVENTS 64

struct fd_entry {
    int fd;
    loop_fd_cb cb;
    void *arg;
    UT_hash_handle hh;
};

struct timer {
    uint64_t id;
    uint64_t when;          /* monotonic ms */
    size_t slot;            /* index in the heap */
    loop_timer_cb cb;
    void *arg;
    UT_hash_handle hh;
};

struct loop {
    int epfd;
    bool running;
    uint64_t now;
    uint64_t next_id;
    struct fd_entry *fds;   /* hash by fd */
    struct timer *timers;   /* hash by id */
    struct timer **heap;
    size_t heap_len, heap_cap;
};

static uint64_t
mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int64_t
loop_wall_s(void)
{
    return (int64_t)time(NULL);
}

uint64_t
loop_now_ms(const loop_t *loop)
{
    return loop->now;
}

loop_t *
loop_new(void)
{
    loop_t *loop = calloc(1, sizeof(*loop));

    if (!loop)
        return NULL;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0) {
        free(loop);
        return NULL;
    }
    loop->now = mono_ms();
    return loop;
}

void
loop_free(loop_t *loop)
{
    struct fd_entry *f, *ftmp;
    struct timer *t, *ttmp;

    if (!loop)
        return;
    HASH_ITER(hh, loop->fds, f, ftmp) {
        HASH_DEL(loop->fds, f);
        free(f);
    }
    HASH_ITER(hh, loop->timers, t, ttmp) {
        HASH_DEL(loop->timers, t);
        free(t);
    }
    free(loop->heap);
    close(loop->epfd);
    free(loop);
}

int
loop_add_fd(loop_t *loop, int fd, uint32_t events, loop_fd_cb cb, void *arg)
{
    struct epoll_event ev = { .events = events, .data.fd = fd };
    struct fd_entry *f;

    HASH_FIND_INT(loop->fds, &fd, f);
    if (f) {
        errno = EEXIST;
        return -1;
    }
    if (!(f = calloc(1, sizeof(*f))))
        return -1;
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        free(f);
        return -1;
    }
    f->fd = fd;
    f->cb = cb;
    f->arg = arg;
    HASH_ADD_INT(loop->fds, fd, f);
    return 0;
}

int
loop_mod_fd(loop_t *loop, int fd, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.fd = fd };

    return epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev);
}

int
loop_del_fd(loop_t *loop, int fd)
{
    struct fd_entry *f;

    HASH_FIND_INT(loop->fds, &fd, f);
    if (!f) {
        errno = ENOENT;
        return -1;
    }
    HASH_DEL(loop->fds, f);
    free(f);
    /* The fd may already be closed by its owner: ignore EBADF. */
    epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
    return 0;
}

/* --- timer heap ------------------------------------------------------- */

static void
heap_swap(loop_t *loop, size_t a, size_t b)
{
    struct timer *t = loop->heap[a];

    loop->heap[a] = loop->heap[b];
    loop->heap[b] = t;
    loop->heap[a]->slot = a;
    loop->heap[b]->slot = b;
}

static void
heap_up(loop_t *loop, size_t i)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;

        if (loop->heap[parent]->when <= loop->heap[i]->when)
            break;
        heap_swap(loop, parent, i);
        i = parent;
    }
}

static void
heap_down(loop_t *loop, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;

        if (l < loop->heap_len && loop->heap[l]->when < loop->heap[m]->when)
            m = l;
        if (r < loop->heap_len && loop->heap[r]->when < loop->heap[m]->when)
            m = r;
        if (m == i)
            break;
        heap_swap(loop, i, m);
        i = m;
    }
}

static void
heap_remove(loop_t *loop, size_t i)
{
    size_t last = --loop->heap_len;

    if (i != last) {
        heap_swap(loop, i, last);
        heap_down(loop, i);
        heap_up(loop, i);
    }
}

uint64_t
loop_add_timer(loop_t *loop, uint64_t ms, loop_timer_cb cb, void *arg)
{
    struct timer *t;

    if (loop->heap_len == loop->heap_cap) {
        size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
        struct timer **heap = realloc(loop->heap, cap * sizeof(*heap));

        if (!heap)
            return 0;
        loop->heap = heap;
        loop->heap_cap = cap;
    }
    if (!(t = calloc(1, sizeof(*t))))
        return 0;
    t->id = ++loop->next_id;
    t->when = mono_ms() + ms;
    t->cb = cb;
    t->arg = arg;
    t->slot = loop->heap_len++;
    loop->heap[t->slot] = t;
    heap_up(loop, t->slot);
    HASH_ADD(hh, loop->timers, id, sizeof(t->id), t);
    return t->id;
}

void
loop_cancel_timer(loop_t *loop, uint64_t id)
{
    struct timer *t;

    if (!id)
        return;
    HASH_FIND(hh, loop->timers, &id, sizeof(id), t);
    if (!t)
        return;
    heap_remove(loop, t->slot);
    HASH_DEL(loop->timers, t);
    free(t);
}

/* Runs every due timer; returns the epoll_wait timeout for the next one. */
static int
run_timers(loop_t *loop)
{
    while (loop->heap_len) {
        struct timer *t = loop->heap[0];
        loop_timer_cb cb;
        void *arg;

        loop->now = mono_ms();
        if (t->when > loop->now) {
            uint64_t wait = t->when - loop->now;
            return wait > 60000 ? 60000 : (int)wait;
        }
        cb = t->cb;
        arg = t->arg;
        heap_remove(loop, 0);
        HASH_DEL(loop->timers, t);
        free(t);
        cb(loop, arg);
        if (!loop->running)
            return 0;
    }
    return -1;
}

int
loop_run(loop_t *loop)
{
    struct epoll_event events[LOOP_MAX_EVENTS];

    loop->running = true;
    while (loop->running) {
        int timeout = run_timers(loop);
        int n;

        if (!loop->running)
            break;
        n = epoll_wait(loop->epfd, events, LOOP_MAX_EVENTS, timeout);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            log_warn("epoll_wait");
            return -1;
        }
        loop->now = mono_ms();
        for (int i = 0; i < n && loop->running; i++) {
            int fd = events[i].data.fd;
            struct fd_entry *f;

            /* Looked up per event: an earlier callback may have removed it. */
            HASH_FIND_INT(loop->fds, &fd, f);
            if (f)
                f->cb(loop, fd, events[i].events, f->arg);
        }
    }
    return 0;
}

void
loop_stop(loop_t *loop)
{
    loop->running = false;
}
