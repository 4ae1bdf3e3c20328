/*
 * log.h - leveled logging to stderr with sd-daemon "<N>" priority prefixes,
 * so journald keeps the levels when run under systemd.  Modelled on OpenBSD
 * ntpd's log.h: log_warn appends strerror(errno), log_warnx does not.
 */
#ifndef COAP2MQTT_LOG_H
#define COAP2MQTT_LOG_H

#include <stdarg.h>
#include <stdbool.h>

enum log_level { LOG_LVL_ERR = 3, LOG_LVL_WARNING = 4, LOG_LVL_NOTICE = 5,
                 LOG_LVL_INFO = 6, LOG_LVL_DEBUG = 7 };

#define LOG_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* Messages above 'max_level' are discarded. */
void log_init(enum log_level max_level);
enum log_level log_get_level(void);

void log_msg(enum log_level lvl, const char *fmt, ...) LOG_PRINTF(2, 3);
void log_vmsg(enum log_level lvl, const char *fmt, va_list ap);
void log_warn(const char *fmt, ...) LOG_PRINTF(1, 2);   /* + ": strerror" */
void log_warnx(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_info(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_notice(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_debug(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_err(const char *fmt, ...) LOG_PRINTF(1, 2);

/*
 * Rate-limited warning: at most one line per 'key' per 10 s; the number of
 * suppressed lines is reported with the next one.  'key' is any stable
 * pointer (typically the address of a static counter).
 */
void log_ratelimited(const void *key, const char *fmt, ...) LOG_PRINTF(2, 3);
/* Whether log_ratelimited(key, ...) would print now; false counts the
 * line as suppressed.  For callers whose arguments cost to format. */
bool log_ratelimit_due(const void *key);

/* Route libcoap's and libmosquitto's logs through this module. */
void log_hook_libraries(void);
/* libcoap at debug level: a dump of every PDU sent and received (-vvv). */
void log_library_packets(void);

/*
 * While on, libcoap's warnings about a read that found no datagram
 * (EAGAIN: we asked for one more than was queued, on purpose, see
 * transport_io.c) are counted instead of logged.  log_coap_eagain_end()
 * returns how many there were.
 */
void log_coap_eagain_begin(void);
unsigned log_coap_eagain_end(void);
/* How many messages libcoap refused to decrypt with OSCORE so far (the
 * warning it logs for each: wrong key, unknown kid, replay, bad option;
 * not its Echo challenge after a restart, which it does not log). */
unsigned log_coap_oscore_refused(void);

#endif
