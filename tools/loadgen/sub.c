/*
 * sub.c - the MQTT subscriber: counts what reaches the broker, checks each
 * device's order, and measures latency from the send time in the payload.
 *
 * It is the measuring instrument, so it must cost as little as possible on
 * a box whose two cores it shares with the server under test.  libmosquitto
 * reads every packet with three read() calls plus a select(); under load
 * that was 38 % of this process's CPU and the subscriber fell seconds
 * behind.  So it speaks just enough MQTT 3.1.1 itself: CONNECT (keepalive
 * off), one SUBSCRIBE, then PUBLISH frames parsed out of 256 KiB reads.
 * Anything else the broker sends is skipped by its length.  QoS 0 by
 * default; with --sub-qos 1 (what operators run: a QoS 1 subscriber holds
 * the broker's in-flight window) the PUBACKs of one read go out in one
 * write, with Nagle off: Debian's mosquitto keeps Nagle on towards its
 * clients, and with Nagle on at both ends a PUBACK and the next PUBLISH
 * each wait for the other's ACK, which Linux delays up to 40 ms.  One
 * reading in a thousand waited so (CON p99.9 at 7,500/s 40-42 ms against
 * 7-10 ms with Nagle off here, bench/ab.sh): a stall between the broker
 * and the subscriber, in no gateway.  LG_SUB_NAGLE=1 in the environment
 * keeps Nagle on, to see it.
 *
 * The same stall hits QoS 0 the other way round: a subscriber that only
 * receives answers nothing, and above about 21,000 messages/s (NON
 * notifications, 1,000 sensors) the broker's segments grew until the
 * kernel here delayed its ACK for them (up to 40 ms) and the broker's
 * Nagle held the next segment until then: sensor -> subscriber p50 19 ms,
 * p99 38 ms, against 0.55 / 1.0 ms at 20,000/s.  tcpdump of that run:
 * 100 segments in 2 s from the broker to the subscriber, about 440
 * messages each; the gateway's connections sent 3,800 each.  So after
 * every read the subscriber asks for its ACK at once (TCP_QUICKACK, which
 * Linux clears again as it sees fit); LG_SUB_DELACK=1 leaves the kernel's
 * delayed ACK on, to see the stall (the bench's labelled row).
 *
 * It runs in its own thread, so that it never waits behind the sensors'
 * loop.  That thread alone writes the figures; the main thread reads them
 * only after sub_stop().  The window bounds and the received counter are
 * atomics shared by both.
 */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "coap2mqtt/log.h"
#include "lg.h"

#define RBUF (256u * 1024)

struct lg_sub {
    int fd;
    pthread_t thread;
    bool running;
    char topic[256];
    int qos;
    bool quickack;              /* TCP_QUICKACK after each read (see above) */
    uint8_t *acks;              /* PUBACKs of the current read, QoS 1 */
    size_t nacks;
    _Atomic int64_t win_start, win_end;
    atomic_bool subscribed;
    atomic_ulong received;
    /* reader thread only, until sub_stop() */
    uint32_t *last_seq;
    unsigned ndev;
    unsigned long in_window, dup, reordered, bad, recv_window;
    struct lg_samples lat;
};

static void
on_message(struct lg_sub *s, const uint8_t *payload, size_t n)
{
    char buf[80];
    unsigned dev;
    uint32_t seq;
    int64_t t, now = tool_now_us();
    int64_t ws = atomic_load(&s->win_start), we = atomic_load(&s->win_end);

    atomic_fetch_add(&s->received, 1);
    if (n >= sizeof(buf))
        n = sizeof(buf) - 1;
    memcpy(buf, payload, n);
    buf[n] = '\0';
    if (sscanf(buf, "d=%u s=%" SCNu32 " t=%" SCNd64, &dev, &seq, &t) != 3 ||
        dev >= s->ndev) {
        s->bad++;
        return;
    }
    if (seq == s->last_seq[dev])
        s->dup++;
    else if (seq < s->last_seq[dev])
        s->reordered++;
    else
        s->last_seq[dev] = seq;
    if (now >= ws && now < we)
        s->recv_window++;
    if (t >= ws && t < we) {
        s->in_window++;
        samples_add(&s->lat, (uint64_t)(now - t));
    }
}

/* --- the wire ----------------------------------------------------------- */

static int
write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Remaining Length, 1..4 bytes; returns bytes used, 0 = need more, -1 bad. */
static int
get_varint(const uint8_t *p, size_t avail, size_t *value)
{
    size_t v = 0;

    for (int i = 0; i < 4; i++) {
        if ((size_t)i >= avail)
            return 0;
        v |= (size_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) {
            *value = v;
            return i + 1;
        }
    }
    return -1;
}

static size_t
put_varint(uint8_t *p, size_t v)
{
    size_t n = 0;

    do {
        p[n] = v & 0x7f;
        v >>= 7;
        if (v)
            p[n] |= 0x80;
        n++;
    } while (v);
    return n;
}

static size_t
put_string(uint8_t *p, const char *str)
{
    size_t len = strlen(str);

    p[0] = (uint8_t)(len >> 8);
    p[1] = (uint8_t)len;
    memcpy(p + 2, str, len);
    return len + 2;
}

/* One packet: fixed header byte, Remaining Length, body. */
static int
send_packet(int fd, uint8_t type, const uint8_t *body, size_t len)
{
    uint8_t pkt[600];
    size_t n = 0;

    if (len > sizeof(pkt) - 5)
        return -1;
    pkt[n++] = type;
    n += put_varint(pkt + n, len);
    memcpy(pkt + n, body, len);
    return write_all(fd, pkt, n + len);
}

static int
send_connect(struct lg_sub *s, const char *id)
{
    uint8_t body[300];
    size_t n = put_string(body, "MQTT");

    body[n++] = 4;          /* MQTT 3.1.1 */
    body[n++] = 0x02;       /* clean session */
    body[n++] = 0;          /* keepalive 0: no PINGREQ to schedule */
    body[n++] = 0;
    n += put_string(body + n, id);
    return send_packet(s->fd, 0x10, body, n);
}

static int
send_subscribe(struct lg_sub *s)
{
    uint8_t body[300];
    size_t n = 0;

    body[n++] = 0;          /* packet id 1 */
    body[n++] = 1;
    n += put_string(body + n, s->topic);
    body[n++] = (uint8_t)s->qos;
    return send_packet(s->fd, 0x82, body, n);
}

/* A PUBLISH body: topic, packet id if QoS > 0, payload. */
static void
on_publish(struct lg_sub *s, uint8_t flags, const uint8_t *p, size_t len)
{
    size_t tlen, off;

    if (len < 2)
        return;
    tlen = (size_t)p[0] << 8 | p[1];
    off = 2 + tlen + (((flags >> 1) & 3) ? 2 : 0);
    if (off > len)
        return;
    if (((flags >> 1) & 3) == 1 && s->acks) {
        uint8_t *a = s->acks + 4 * s->nacks++;

        a[0] = 0x40;
        a[1] = 2;
        a[2] = p[2 + tlen];
        a[3] = p[2 + tlen + 1];
    }
    on_message(s, p + off, len - off);
}

/*
 * Parses whole packets out of buf; returns bytes consumed, or -1 when the
 * stream makes no sense.  CONNACK and SUBACK are checked during start-up.
 */
static long
parse(struct lg_sub *s, const uint8_t *buf, size_t avail)
{
    size_t used = 0;

    while (avail - used >= 2) {
        const uint8_t *p = buf + used;
        size_t rl;
        int hl = get_varint(p + 1, avail - used - 1, &rl);

        if (hl < 0)
            return -1;
        if (hl == 0 || avail - used < 1 + (size_t)hl + rl)
            break;
        switch (p[0] >> 4) {
        case 3:
            on_publish(s, p[0] & 0x0f, p + 1 + hl, rl);
            break;
        case 2:             /* CONNACK: return code 0 */
            if (rl < 2 || p[1 + hl + 1] != 0)
                return -1;
            break;
        case 9:             /* SUBACK: granted QoS <= 2 */
            if (rl < 3 || p[1 + hl + 2] > 2)
                return -1;
            atomic_store(&s->subscribed, true);
            break;
        default:
            break;
        }
        used += 1 + (size_t)hl + rl;
    }
    return (long)used;
}

static void *
reader(void *arg)
{
    struct lg_sub *s = arg;
    uint8_t *buf = malloc(RBUF);
    size_t have = 0;

    while (buf) {
        ssize_t n = read(s->fd, buf + have, RBUF - have);
        long used;

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        if (s->quickack) {
            int on = 1;

            setsockopt(s->fd, IPPROTO_TCP, TCP_QUICKACK, &on, sizeof(on));
        }
        have += (size_t)n;
        s->nacks = 0;
        if ((used = parse(s, buf, have)) < 0) {
            log_warnx("subscriber: the broker sent something that is not MQTT");
            break;
        }
        if (s->nacks && write_all(s->fd, s->acks, 4 * s->nacks) < 0) {
            log_warnx("subscriber: cannot acknowledge: %s", strerror(errno));
            break;
        }
        memmove(buf, buf + used, have - (size_t)used);
        have -= (size_t)used;
        if (have == RBUF) {
            log_warnx("subscriber: a packet larger than %u bytes", RBUF);
            break;
        }
    }
    free(buf);
    return NULL;
}

static int
connect_tcp(const char *host, int port)
{
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *ai;
    char ports[16];
    int fd = -1;

    snprintf(ports, sizeof(ports), "%d", port);
    if (getaddrinfo(host, ports, &hints, &res) != 0)
        return -1;
    for (ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd >= 0 && !getenv("LG_SUB_NAGLE")) {
            int on = 1;

            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
        }
        if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    return fd;
}

struct lg_sub *
sub_start(const struct lg_opts *o, unsigned devices)
{
    struct lg_sub *s = calloc(1, sizeof(*s));
    char id[64];

    if (!s)
        return NULL;
    s->fd = -1;
    s->ndev = devices;
    s->last_seq = calloc(devices ? devices : 1, sizeof(*s->last_seq));
    atomic_store(&s->win_start, INT64_MAX);
    atomic_store(&s->win_end, INT64_MAX);
    snprintf(s->topic, sizeof(s->topic), "%s/+/%s", o->base, o->path);
    s->qos = o->sub_qos;
    s->quickack = !getenv("LG_SUB_DELACK");
    /* A PUBLISH is at least 7 bytes: at most RBUF / 7 of them per read. */
    if (s->qos && !(s->acks = malloc(4 * (RBUF / 7 + 1))))
        goto fail;
    snprintf(id, sizeof(id), "lg-sub-%d", (int)getpid());
    if (!s->last_seq || (s->fd = connect_tcp(o->mqtt_host, o->mqtt_port)) < 0 ||
        send_connect(s, id) < 0 || send_subscribe(s) < 0) {
        log_warnx("subscriber: cannot connect to %s:%d", o->mqtt_host, o->mqtt_port);
        goto fail;
    }
    if (pthread_create(&s->thread, NULL, reader, s) != 0)
        goto fail;
    s->running = true;
    for (int i = 0; i < 500 && !atomic_load(&s->subscribed); i++)
        usleep(10000);
    if (!atomic_load(&s->subscribed)) {
        log_warnx("subscriber: no SUBACK within 5 s");
        sub_stop(s);
        goto fail;
    }
    return s;
fail:
    sub_free(s);
    return NULL;
}

void
sub_set_window(struct lg_sub *s, int64_t start_us, int64_t end_us)
{
    atomic_store(&s->win_start, start_us);
    atomic_store(&s->win_end, end_us);
}

unsigned long
sub_received(struct lg_sub *s)
{
    return atomic_load(&s->received);
}

void
sub_stop(struct lg_sub *s)
{
    static const uint8_t disconnect[2] = { 0xe0, 0 };

    if (!s->running)
        return;
    write_all(s->fd, disconnect, sizeof(disconnect));
    shutdown(s->fd, SHUT_RDWR);     /* the reader's read() returns 0 */
    pthread_join(s->thread, NULL);
    s->running = false;
}

void
sub_result(struct lg_sub *s, struct sub_result *r)
{
    memset(r, 0, sizeof(*r));
    r->received = atomic_load(&s->received);
    r->in_window = s->in_window;
    r->recv_window = s->recv_window;
    r->dup = s->dup;
    r->reordered = s->reordered;
    r->bad = s->bad;
    samples_latency(&s->lat, &r->lat);
}

void
sub_free(struct lg_sub *s)
{
    if (!s)
        return;
    if (s->running)
        sub_stop(s);
    if (s->fd >= 0)
        close(s->fd);
    free(s->last_seq);
    free(s->acks);
    samples_free(&s->lat);
    free(s);
}
