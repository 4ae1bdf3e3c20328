/*
 * log.c - stderr logging with "<N>" priority prefixes (sd-daemon(3)), which
 * journald turns back into levels.  libcoap and libmosquitto are routed here
 * so one -v controls all of it.
 *
 * Layer: base (the bottom: calls nothing of ours)
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <coap3/coap.h>

#include "coap2mqtt/log.h"

static enum log_level max_level = LOG_LVL_INFO;

void
log_init(enum log_level level)
{
    max_level = level;
}

enum log_level
log_get_level(void)
{
    return max_level;
}

void
log_vmsg(enum log_level lvl, const char *fmt, va_list ap)
{
    char buf[1024];

    if (lvl > max_level)
        return;
    vsnprintf(buf, sizeof(buf), fmt, ap);
    /* One write per line, so lines from a crash don't interleave. */
    fprintf(stderr, "<%d>%s\n", (int)lvl, buf);
}

void
log_msg(enum log_level lvl, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vmsg(lvl, fmt, ap);
    va_end(ap);
}

void
log_warn(const char *fmt, ...)
{
    char buf[900];
    int saved = errno;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    log_msg(LOG_LVL_WARNING, "%s: %s", buf, strerror(saved));
}

#define LOG_FN(name, lvl)                       \
    void name(const char *fmt, ...)             \
    {                                           \
        va_list ap;                             \
        va_start(ap, fmt);                      \
        log_vmsg(lvl, fmt, ap);                 \
        va_end(ap);                             \
    }

LOG_FN(log_warnx, LOG_LVL_WARNING)
LOG_FN(log_info, LOG_LVL_INFO)
LOG_FN(log_notice, LOG_LVL_NOTICE)
LOG_FN(log_debug, LOG_LVL_DEBUG)
LOG_FN(log_err, LOG_LVL_ERR)

/*
 * A small fixed table is enough: keys are the few static call sites that
 * can be driven by the network.  Collisions only merge two limits.
 */
#define RL_SLOTS 64
#define RL_PERIOD_S 10

static struct {
    const void *key;
    time_t window;
    unsigned suppressed;
} rl[RL_SLOTS];

bool
log_ratelimit_due(const void *key)
{
    unsigned slot = (unsigned)(((uintptr_t)key >> 3) % RL_SLOTS);

    if (rl[slot].key == key && time(NULL) - rl[slot].window < RL_PERIOD_S) {
        rl[slot].suppressed++;
        return false;
    }
    return true;
}

void
log_ratelimited(const void *key, const char *fmt, ...)
{
    unsigned slot = (unsigned)(((uintptr_t)key >> 3) % RL_SLOTS);
    time_t now = time(NULL);
    char buf[900];
    va_list ap;

    if (!log_ratelimit_due(key))
        return;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (rl[slot].key == key && rl[slot].suppressed)
        log_warnx("%s (%u similar suppressed)", buf, rl[slot].suppressed);
    else
        log_warnx("%s", buf);
    rl[slot].key = key;
    rl[slot].window = now;
    rl[slot].suppressed = 0;
}

static bool eagain_muted;
static unsigned eagain_count;
static unsigned oscore_refused;

unsigned
log_coap_oscore_refused(void)
{
    return oscore_refused;
}

/* libcoap 4.3.4's one line per protected message it refuses (coap_oscore.c,
 * coap_oscore_decrypt_pdu); its summary "PDU could not be decrypted"
 * follows only some of them. */
static bool
oscore_refusal(const char *message)
{
    static const char *const causes[] = {
        "OSCORE: Decryption Failure",
        "OSCORE: Security Context not found",
        "OSCORE: Security Context association not found",
        "OSCORE: Replayed or old message",
        "OSCORE: OSCORE Option cannot be decoded",
        "OSCORE Replay protection, SEQ larger than SEQ_MAX",
    };

    for (size_t i = 0; i < sizeof(causes) / sizeof(causes[0]); i++)
        if (strncmp(message, causes[i], strlen(causes[i])) == 0)
            return true;
    return false;
}

void
log_coap_eagain_begin(void)
{
    eagain_muted = true;
    eagain_count = 0;
}

unsigned
log_coap_eagain_end(void)
{
    eagain_muted = false;
    return eagain_count;
}

static void
coap_log_to_ours(coap_log_t level, const char *message)
{
    size_t n = strlen(message);
    enum log_level lvl;

    /* Each empty read logs two lines: "coap_network_read: <EAGAIN text>"
     * and "...: read failed" on an endpoint, "...: read error" on a
     * client session's socket (the devices we dial).  Count the first,
     * drop both. */
    if (eagain_muted && level == LOG_WARNING) {
        if (strstr(message, "coap_network_read: ") && strstr(message, strerror(EAGAIN))) {
            eagain_count++;
            return;
        }
        if (strstr(message, ": read failed") || strstr(message, ": read error"))
            return;
    }

    /* The one 5.08 the gateway "sends" is the response it asks libcoap
     * to drop when it answers a CON push itself, later
     * (compat_answer_later): not a proxy loop, and not worth a line per
     * reading. */
    if (level == LOG_WARNING && strstr(message, "Proxy loop detected"))
        return;

    if (strncmp(message, "OSCORE", 6) == 0 && oscore_refusal(message))
        oscore_refused++;
    while (n && (message[n - 1] == '\n' || message[n - 1] == '\r'))
        n--;
    if (level <= LOG_ERR)
        lvl = LOG_LVL_ERR;
    else if (level == LOG_WARNING)
        lvl = LOG_LVL_WARNING;
    else if (level <= LOG_INFO)
        lvl = LOG_LVL_INFO;
    else
        lvl = LOG_LVL_DEBUG;
    log_msg(lvl, "libcoap: %.*s", (int)n, message);
}

void
log_hook_libraries(void)
{
    coap_set_log_handler(coap_log_to_ours);
    /* libcoap's debug output is per packet: only at -vv. */
    coap_set_log_level(max_level >= LOG_LVL_DEBUG ? LOG_INFO : LOG_WARNING);
    coap_dtls_set_log_level(max_level >= LOG_LVL_DEBUG ? LOG_INFO : LOG_WARNING);
}

void
log_library_packets(void)
{
    coap_set_log_level(LOG_DEBUG);
    /* Through our handler, not fprintf() to stdout: the gateway's stdout
     * goes nowhere, and the simulator's carries its event protocol. */
    coap_set_show_pdu_output(0);
}
