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

#endif
