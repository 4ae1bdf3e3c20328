/*
 * compat_mosq.h - system calls libmosquitto 2.0 makes per message that a
 * client with its own event loop does without (see compat_mosq.c).
 *
 * Layer: base (knows libc and nothing of ours)
 */
#ifndef COAP2MQTT_COMPAT_MOSQ_H
#define COAP2MQTT_COMPAT_MOSQ_H

#include <stdbool.h>

/* On around mosquitto_new(): the socketpair it makes to wake a threaded
 * loop is recorded, and writes to it succeed without a syscall. */
void compat_mosq_capture(bool on);
/* Reads of socket fd are served from a buffer (one read() of up to 16 KiB
 * for many packets) until it is closed.  False if no slot is left (plain
 * reads then). */
bool compat_mosq_buffer(int fd);
/* Bytes of fd are held in the buffer: epoll will not report them, so the
 * caller reads again (mosquitto_loop_read) while this holds. */
bool compat_mosq_buffered(int fd);

/* While on, writes to buffered socket fd collect and go out in one
 * write() when it is turned off (a burst of publishes).  False if fd is
 * not buffered (the caller may use TCP_CORK instead). */
bool compat_mosq_hold(int fd, bool on);
/* Collected bytes the socket did not take yet: wait for EPOLLOUT, then
 * compat_mosq_flush(), before libmosquitto's own writes. */
bool compat_mosq_unsent(int fd);
void compat_mosq_flush(int fd);

#endif
