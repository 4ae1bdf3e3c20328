/*
 * fuzz_handlers.c - the device-facing /rd and /ps handlers, fed raw CoAP
 * datagrams through a real gateway, wired by gw_open() as the daemon's is:
 * config, devices, observe, commands, outq, status, an MQTT side that is
 * created but never started (so publishes wait in the queue), and
 * the CoAP transport with a plain CoAP endpoint; no spool (nothing on disk).
 *
 * libcoap 4.3.1 does not export coap_handle_dgram(), so datagrams travel
 * the supported way: sent over a real UDP socket on a loopback address of
 * this process (127.x.y.z, derived from the pid) to the gateway's
 * endpoint, then coap_io_process(ctx, COAP_IO_NO_WAIT).  The transport keeps
 * its context private; the link flag below wraps coap_new_context() so the
 * harness learns it.  Each input gets a fresh gateway, so a crash
 * reproduces from its input alone.  It links libcoap's "notls" flavour:
 * the same library without a TLS back-end, which plain CoAP does not use,
 * and without the OpenSSL context set-up per input that made this target
 * 13 times slower.  DTLS itself is OpenSSL's and libcoap's, not fuzzed here.
 *
 * An input is a sequence of records  op:u8  len:u16be  bytes[len]:
 * op bits 5-6 pick one of four device addresses (a plain CoAP session is
 * bound to the ep it registered), (op & 0x1f) % 6 the action:
 *            0  DGRAM  bytes are one datagram from the device
 *            1  REPLY  answer the last request the gateway sent that
 *                       device: bytes[0] low 2 bits = type, bytes[1] = code,
 *                       the rest options and payload; token (and for ACK
 *                       or RST the message id) copied from the request
 *            2  ACKED  the broker acknowledged every queued message
 *            3  LOST   every queued message was dropped (shutdown)
 *            4  MQTT   a message from the broker, "topic\0payload": a
 *                       command, or a request of the request API (the
 *                       wiring's dispatch, as the daemon has it)
 *            5  TIME   time passes: bytes (up to 4, big-endian) are the
 *                       seconds; none means until every timer pending now
 *                       is due.  Registration lifetimes, observe retries,
 *                       silence checks, command expiry fire, in order
 * After every record the gateway runs: libcoap I/O, then one pass of the
 * gateway's loop (timers that are due: observe requests, ...).
 *
 * FUZZ_TRACE=1 in the environment prints each record, the gateway's log and
 * what it sent back: build/fuzz/fuzz_handlers FILE shows what an input does.
 *
 * Checked beyond "no crash / leak / UB": every message that reaches the
 * outbound queue has a topic the broker can take (below the base, no '+',
 * '#' or empty level, bounded depth) - hostile paths never reach MQTT.
 */
/* fuzz-ldflags: -Wl,--wrap=coap_new_context,--wrap=loop_add_timer,--wrap=loop_cancel_timer */
/* fuzz-libcoap: notls */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include <coap3/coap.h>
#include <mosquitto.h>

#include "coap2mqtt/commands.h"
#include "coap2mqtt/config.h"
#include "coap2mqtt/gateway.h"
#include "coap2mqtt/keystore.h"
#include "coap2mqtt/log.h"
#include "coap2mqtt/outq.h"
#include "coap2mqtt/topics.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);
coap_context_t *__real_coap_new_context(const coap_address_t *listen_addr);
coap_context_t *__wrap_coap_new_context(const coap_address_t *listen_addr);

#define MAX_RECORDS 64
#define N_DEVICES   4     /* more than rd.max_devices and its plain-CoAP share */
/* A PSK identity (so plain CoAP may not claim it: 4.03). */
#define DTLS_ID     "dtls-only"

enum op { OP_DGRAM, OP_REPLY, OP_ACKED, OP_LOST, OP_MQTT, OP_TIME, OP_COUNT };

/*
 * The gateway's timers pass through here (link-time wrap of the loop's
 * timer API): each one is armed in the real loop with a trampoline, and
 * remembered, so that TIME can fire the pending ones early, in deadline
 * order, exactly as the loop would once they fall due.
 */
struct fz_timer {
    struct fz_timer *next;
    uint64_t id;            /* the loop's id, which the gateway holds */
    uint64_t seq;           /* arming order, the tie-break */
    uint64_t ms;            /* delay asked for, from arming */
    uint64_t armed_at;      /* harness clock when armed */
    loop_timer_cb cb;
    void *arg;
    bool live;
};
uint64_t __real_loop_add_timer(loop_t *loop, uint64_t ms, loop_timer_cb cb, void *arg);
uint64_t __wrap_loop_add_timer(loop_t *loop, uint64_t ms, loop_timer_cb cb, void *arg);
void __real_loop_cancel_timer(loop_t *loop, uint64_t id);
void __wrap_loop_cancel_timer(loop_t *loop, uint64_t id);

/* What the harness keeps for the whole run (set up once). */
struct harness {
    bool trace;                     /* FUZZ_TRACE=1: print what comes back */
    struct config cfg;
    keystore_t *keys;
    struct sockaddr_in gw_addr;     /* the gateway's plain CoAP endpoint */
    int dev_fd[N_DEVICES];          /* the devices' sockets */
    coap_context_t *ctx;            /* the one the transport made, via the wrap */
    struct fz_timer *timers;        /* this input's, freed at its end */
    uint64_t timer_seq;
    uint64_t clock_ms;              /* advanced by TIME */
};

/* The last request the gateway sent to one device. */
struct last_req {
    bool valid;
    uint16_t mid;
    uint8_t tkl;
    uint8_t token[8];
};

static struct harness H;

coap_context_t *
__wrap_coap_new_context(const coap_address_t *listen_addr)
{
    H.ctx = __real_coap_new_context(listen_addr);
    return H.ctx;
}

static void
timer_trampoline(loop_t *loop, void *arg)
{
    struct fz_timer *t = arg;

    t->live = false;
    t->cb(loop, t->arg);
}

uint64_t
__wrap_loop_add_timer(loop_t *loop, uint64_t ms, loop_timer_cb cb, void *arg)
{
    struct fz_timer *t = calloc(1, sizeof(*t));

    if (!t)
        return 0;
    if (!(t->id = __real_loop_add_timer(loop, ms, timer_trampoline, t))) {
        free(t);
        return 0;
    }
    t->seq = ++H.timer_seq;
    t->ms = ms;
    t->armed_at = H.clock_ms;
    t->cb = cb;
    t->arg = arg;
    t->live = true;
    t->next = H.timers;
    H.timers = t;
    return t->id;
}

void
__wrap_loop_cancel_timer(loop_t *loop, uint64_t id)
{
    for (struct fz_timer *t = H.timers; t && id; t = t->next)
        if (t->id == id)
            t->live = false;
    __real_loop_cancel_timer(loop, id);
}

/* The live timer armed by 'last' that is due first, or NULL. */
static struct fz_timer *
next_due(uint64_t last)
{
    struct fz_timer *best = NULL;

    for (struct fz_timer *t = H.timers; t; t = t->next) {
        if (!t->live || t->seq > last)
            continue;
        if (!best || t->armed_at + t->ms < best->armed_at + best->ms ||
            (t->armed_at + t->ms == best->armed_at + best->ms && t->seq < best->seq))
            best = t;
    }
    return best;
}

/* TIME: fires what falls due within the seconds in p (all of it when
 * len is 0); what those timers arm waits for the next TIME. */
static void
time_passes(loop_t *loop, const uint8_t *p, size_t len)
{
    uint64_t last = H.timer_seq, until = UINT64_MAX, secs = 0;
    struct fz_timer *t;

    for (size_t i = 0; i < len && i < 4; i++)
        secs = secs << 8 | p[i];
    if (len)
        until = H.clock_ms + secs * 1000;
    while ((t = next_due(last)) && t->armed_at + t->ms <= until) {
        if (t->armed_at + t->ms > H.clock_ms)
            H.clock_ms = t->armed_at + t->ms;
        __real_loop_cancel_timer(loop, t->id);
        if (H.trace)
            fprintf(stderr, "  timer of %llu ms fires\n", (unsigned long long)t->ms);
        timer_trampoline(loop, t);
    }
    if (until != UINT64_MAX && until > H.clock_ms)
        H.clock_ms = until;
}

static void
timers_free(void)
{
    while (H.timers) {
        struct fz_timer *t = H.timers;

        H.timers = t->next;
        free(t);
    }
    H.timer_seq = 0;
    H.clock_ms = 0;
}

/* --- one-time setup -------------------------------------------------------- */

static void
quiet(void *arg, const char *line)
{
    (void)arg;
    (void)line;
}

static int
bound_socket(struct sockaddr_in *addr)
{
    socklen_t len = sizeof(*addr);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

    if (fd < 0 || bind(fd, (struct sockaddr *)addr, sizeof(*addr)) < 0 ||
        getsockname(fd, (struct sockaddr *)addr, &len) < 0) {
        perror("fuzz_handlers: socket");
        exit(1);
    }
    return fd;
}

/* Writes 'text' to a per-process file and returns its path (static). */
static const char *
write_file(const char *name, const char *text)
{
    static char path[128];
    FILE *f;

    snprintf(path, sizeof(path), "/tmp/c2m-fuzz-handlers-%ld.%s", (long)getpid(), name);
    if (!(f = fopen(path, "we")) || fputs(text, f) < 0 || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
    return path;
}

/*
 * Small limits, so that "registry full", "queue full", "payload too
 * large" and "too many commands" are reachable in a few records.
 */
static void
load_config(void)
{
    char text[1024], ip[INET_ADDRSTRLEN];
    const char *path;

    inet_ntop(AF_INET, &H.gw_addr.sin_addr, ip, sizeof(ip));
    snprintf(text, sizeof(text),
             "coap = { plain_listen = [ \"%s:%u\" ]; max_payload = 256; max_sessions = 2; };\n"
             "rd = { max_devices = 3; max_unauthenticated = 2; forget_after = 30;\n"
             "       min_lifetime = 10; max_lifetime = 100000; };\n"
             "mqtt = { stats_interval = 0; };\n"
             "commands = { max_queued = 3; ttl = 60; };\n"
             "queue = { max_messages = 6; spool = false; };\n"
             /* Audit records on bridge/audit, not in the journal of the
              * machine that fuzzes. */
             "audit = { journal = false; mqtt = true; };\n"
             /* never /var/lib/coap2mqtt: the gateway writes its health
              * file there (src/health.c); this directory does not exist,
              * so nothing is written at all */
             "state_dir = \"/tmp/c2m-fuzz-handlers-%ld.no-state\";\n",
             ip, ntohs(H.gw_addr.sin_port), (long)getpid());
    path = write_file("conf", text);
    if (config_load(path, &H.cfg, quiet, NULL) != 0) {
        fprintf(stderr, "fuzz_handlers: config rejected\n");
        exit(1);
    }
    unlink(path);
    path = write_file("psk", DTLS_ID ":secret\n");
    H.keys = keystore_load(path, quiet, NULL);
    unlink(path);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    uint32_t pid = (uint32_t)getpid();
    struct sockaddr_in a = { .sin_family = AF_INET };
    int probe;

    (void)argc;
    (void)argv;
    H.trace = getenv("FUZZ_TRACE") != NULL;
    log_init(H.trace ? LOG_LVL_DEBUG : LOG_LVL_ERR);
    coap_startup();
    coap_set_log_level(0);
    mosquitto_lib_init();
    /* 127.200.x.y: ours alone, so a fixed port cannot collide. */
    a.sin_addr.s_addr = htonl(0x7fc80000u | (pid & 0xffff));
    for (int i = 0; i < N_DEVICES; i++) {
        struct sockaddr_in d = a;

        H.dev_fd[i] = bound_socket(&d);
    }
    /* The gateway binds afresh for every input: learn a free port once. */
    probe = bound_socket(&a);
    close(probe);
    H.gw_addr = a;
    load_config();
    return 0;
}

/* --- the gateway, per input ------------------------------------------------ */

static void
stop_cb(loop_t *loop, int fd, uint32_t events, void *arg)
{
    (void)fd;
    (void)events;
    (void)arg;
    loop_stop(loop);
}

/* The daemon's wiring, without signals, systemd and the broker. */
static int
gw_start(struct gw *gw, int *stop_fd)
{
    H.ctx = NULL;
    *stop_fd = -1;
    if (gw_open(gw, &H.cfg, H.keys) < 0 || !H.ctx)
        return -1;
    /* Always readable: a loop_run() pass ends after one epoll_wait. */
    *stop_fd = eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK);
    if (*stop_fd < 0 || loop_add_fd(gw->loop, *stop_fd, EPOLLIN, stop_cb, NULL) < 0)
        return -1;
    return 0;
}

/* The keystore and config live on for the next input. */
static void
gw_stop(struct gw *gw, int stop_fd)
{
    if (stop_fd >= 0) {
        loop_del_fd(gw->loop, stop_fd);
        close(stop_fd);
    }
    gw_close(gw);
}

/* --- what reaches the broker must be safe ------------------------------------ */

static void
check_topic(const char *topic)
{
    const char *base = H.cfg.mqtt.base_topic;
    size_t blen = strlen(base), levels = 1;

    if (strncmp(topic, base, blen) != 0 || topic[blen] != '/' ||
        strpbrk(topic, "+#") || strstr(topic, "//") ||
        topic[strlen(topic) - 1] == '/')
        abort();
    for (const char *p = topic; *p; p++)
        levels += *p == '/';
    if (levels > 2 * TOPIC_PATH_DEPTH + 3)
        abort();
}

/* Pops everything: finishes it (ACKED/LOST), or checks it and puts it back. */
static void
walk_queue(struct gw *gw, int how)
{
    outmsg_t *keep[64], *m;
    size_t n = 0;

    while ((m = outq_pop(gw->outq))) {
        check_topic(m->topic);
        if (how == OP_ACKED || how == OP_LOST)
            outmsg_finish(m, how == OP_ACKED);
        else if (n < sizeof(keep) / sizeof(keep[0]))
            keep[n++] = m;
        else
            outmsg_finish(m, false);
    }
    for (size_t i = 0; i < n; i++)
        if (!outq_push(gw->outq, keep[i]))
            outmsg_finish(keep[i], false);
}

/* --- the device side ------------------------------------------------------- */

/* Reads what the gateway sent a device; remembers its last request. */
static void
drain(int dev, struct last_req *last)
{
    uint8_t buf[2048];
    ssize_t n;

    while ((n = recv(H.dev_fd[dev], buf, sizeof(buf), 0)) >= 0) {
        uint8_t tkl = buf[0] & 0x0f;

        if (H.trace && n >= 4)
            fprintf(stderr, "  dev%d <- type %d code %d.%02d mid %u (%zd bytes)\n",
                    dev, buf[0] >> 4 & 3, buf[1] >> 5, buf[1] & 31,
                    buf[2] << 8 | buf[3], n);

        if (n < 4 || (size_t)n < 4u + tkl || tkl > 8 || buf[1] == 0 || buf[1] >= 32)
            continue;       /* not a request */
        last->valid = true;
        last->mid = (uint16_t)(buf[2] << 8 | buf[3]);
        last->tkl = tkl;
        memcpy(last->token, buf + 4, tkl);
    }
}

static void
send_dgram(int dev, const uint8_t *p, size_t len)
{
    sendto(H.dev_fd[dev], p, len, 0, (const struct sockaddr *)&H.gw_addr,
           sizeof(H.gw_addr));
}

/* REPLY: a response/notification carrying the request's token. */
static void
send_reply(int dev, const struct last_req *last, const uint8_t *p, size_t len,
           uint16_t *next_mid)
{
    uint8_t pdu[4 + 8 + 1024];
    uint8_t type = len ? p[0] & 3 : 2, code = len > 1 ? p[1] : 0x45;
    uint16_t mid = type >= 2 ? last->mid : (*next_mid)++;
    size_t rest = len > 2 ? len - 2 : 0;

    if (!last->valid)
        return;
    if (rest > sizeof(pdu) - 12)
        rest = sizeof(pdu) - 12;
    pdu[0] = (uint8_t)(0x40 | type << 4 | last->tkl);
    pdu[1] = code;
    pdu[2] = (uint8_t)(mid >> 8);
    pdu[3] = (uint8_t)mid;
    memcpy(pdu + 4, last->token, last->tkl);
    if (rest)
        memcpy(pdu + 4 + last->tkl, p + 2, rest);
    send_dgram(dev, pdu, 4 + last->tkl + rest);
}

/* MQTT: "topic\0payload" as if the broker delivered it. */
static void
mqtt_command(struct gw *gw, const uint8_t *p, size_t len)
{
    char *copy = malloc(len + 1);
    struct mosquitto_message msg = { 0 };
    size_t tlen;

    if (!copy)
        return;
    memcpy(copy, p, len);
    copy[len] = '\0';
    tlen = strlen(copy);
    msg.mid = 1;
    msg.topic = copy;
    msg.payload = tlen < len ? copy + tlen + 1 : NULL;
    msg.payloadlen = tlen < len ? (int)(len - tlen - 1) : 0;
    msg.qos = 1;
    gw_on_mqtt_message(gw, &msg, NULL);
    free(copy);
}

/* libcoap I/O, then one pass of the gateway's loop, then what came back. */
static void
pump(struct gw *gw, struct last_req *last)
{
    for (int i = 0; i < 2; i++) {
        coap_io_process(H.ctx, COAP_IO_NO_WAIT);
        loop_run(gw->loop);
        for (int d = 0; d < N_DEVICES; d++)
            drain(d, &last[d]);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct last_req last[N_DEVICES] = { { 0 } };
    uint16_t next_mid = 0x7000;
    struct gw gw;
    int stop_fd, records = 0;

    for (int d = 0; d < N_DEVICES; d++)
        drain(d, &last[d]);     /* leftovers of the previous input */
    memset(last, 0, sizeof(last));
    if (gw_start(&gw, &stop_fd) < 0) {
        fprintf(stderr, "fuzz_handlers: cannot start the gateway\n");
        abort();
    }
    while (size >= 3 && records++ < MAX_RECORDS) {
        uint8_t op = data[0];
        size_t len = (size_t)data[1] << 8 | data[2];
        int dev = op >> 5 & (N_DEVICES - 1);

        data += 3;
        size -= 3;
        if (len > size)
            len = size;
        if (H.trace)
            fprintf(stderr, "record op %d dev %d len %zu\n", (op & 0x1f) % OP_COUNT, dev, len);
        switch ((op & 0x1f) % OP_COUNT) {
        case OP_DGRAM: send_dgram(dev, data, len); break;
        case OP_REPLY: send_reply(dev, &last[dev], data, len, &next_mid); break;
        case OP_ACKED: walk_queue(&gw, OP_ACKED); break;
        case OP_LOST: walk_queue(&gw, OP_LOST); break;
        case OP_MQTT: mqtt_command(&gw, data, len); break;
        default: time_passes(gw.loop, data, len); break;
        }
        pump(&gw, last);
        data += len;
        size -= len;
    }
    walk_queue(&gw, -1);
    gw_stop(&gw, stop_fd);
    timers_free();
    return 0;
}
