/*
 * loop.h - the one event loop: an epoll set of file descriptors with
 * callbacks, and one-shot timers (kept in a min-heap, served through the
 * epoll_wait timeout).  Like redis' ae: create, add/modify/delete fd,
 * add/cancel timer, run, stop.  Deleting an fd or cancelling a timer from
 * inside a callback is safe.
 */
#ifndef COAP2MQTT_LOOP_H
#define COAP2MQTT_LOOP_H

#include <stdint.h>

typedef struct loop loop_t;

/* 'events' is the EPOLLIN/EPOLLOUT/... mask that fired. */
typedef void (*loop_fd_cb)(loop_t *loop, int fd, uint32_t events, void *arg);
typedef void (*loop_timer_cb)(loop_t *loop, void *arg);

/* Returns NULL on failure (errno set). */
loop_t *loop_new(void);
void loop_free(loop_t *loop);

/* 0 on success, -1 with errno.  One registration per fd. */
int loop_add_fd(loop_t *loop, int fd, uint32_t events, loop_fd_cb cb, void *arg);
int loop_mod_fd(loop_t *loop, int fd, uint32_t events);
int loop_del_fd(loop_t *loop, int fd);

/*
 * Calls cb(arg) once, 'ms' milliseconds from now.  Returns a timer id (> 0)
 * for loop_cancel_timer(), or 0 on allocation failure.
 */
uint64_t loop_add_timer(loop_t *loop, uint64_t ms, loop_timer_cb cb, void *arg);
/* Cancelling an id that already fired or was cancelled is harmless. */
void loop_cancel_timer(loop_t *loop, uint64_t id);

/* Monotonic milliseconds, cached once per loop iteration. */
uint64_t loop_now_ms(const loop_t *loop);
/* Wall-clock seconds since the epoch (for "last seen" fields). */
int64_t loop_wall_s(void);

/* Runs until loop_stop(); returns 0, or -1 if epoll_wait failed. */
int loop_run(loop_t *loop);
void loop_stop(loop_t *loop);

#endif
