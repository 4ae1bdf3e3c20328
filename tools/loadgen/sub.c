/*
 * sub.c - the MQTT subscriber: counts what reaches the broker, checks each
 * device's order, and measures latency from the send time in the payload.
 *
 * It runs in libmosquitto's own thread (mosquitto_loop_start), so that it
 * never waits behind the sensors' loop.  That thread alone writes the
 * figures; the main thread reads them only after sub_stop().  The window
 * bounds and the received counter are atomics shared by both.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <mosquitto.h>

#include "coap2mqtt/log.h"
#include "lg.h"

#define LAT_MAX (20u * 1000 * 1000)

struct lg_sub {
    struct mosquitto *m;
    char topic[256];
    _Atomic int64_t win_start, win_end;
    atomic_bool subscribed;
    atomic_ulong received;
    /* mosquitto thread only, until sub_stop() */
    uint32_t *last_seq;
    unsigned ndev;
    unsigned long in_window, dup, reordered, bad, recv_window;
    uint64_t *lat;
    size_t nlat, caplat;
};

static void
add_latency(struct lg_sub *s, uint64_t us)
{
    if (s->nlat == s->caplat) {
        size_t cap = s->caplat ? s->caplat * 2 : 65536;
        uint64_t *p;
        if (cap > LAT_MAX)
            return;
        p = realloc(s->lat, cap * sizeof(*p));
        if (!p)
            return;
        s->lat = p;
        s->caplat = cap;
    }
    s->lat[s->nlat++] = us;
}

static void
on_message(struct mosquitto *m, void *arg, const struct mosquitto_message *msg)
{
    struct lg_sub *s = arg;
    char buf[80];
    size_t n = msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0;
    unsigned dev;
    uint32_t seq;
    int64_t t, now = tool_now_us();
    int64_t ws = atomic_load(&s->win_start), we = atomic_load(&s->win_end);

    (void)m;
    atomic_fetch_add(&s->received, 1);
    if (n >= sizeof(buf))
        n = sizeof(buf) - 1;
    memcpy(buf, msg->payload, n);
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
        add_latency(s, (uint64_t)(now - t));
    }
}

static void
on_connect(struct mosquitto *m, void *arg, int rc)
{
    struct lg_sub *s = arg;

    if (rc == 0)
        mosquitto_subscribe(m, NULL, s->topic, 0);   /* the lightest instrument */
}

static void
on_subscribe(struct mosquitto *m, void *arg, int mid, int n, const int *granted)
{
    struct lg_sub *s = arg;

    (void)m;
    (void)mid;
    if (n > 0 && granted[0] <= 2)
        atomic_store(&s->subscribed, true);
}

struct lg_sub *
sub_start(const struct lg_opts *o, unsigned devices)
{
    struct lg_sub *s = calloc(1, sizeof(*s));
    char id[64];

    if (!s)
        return NULL;
    s->ndev = devices;
    s->last_seq = calloc(devices ? devices : 1, sizeof(*s->last_seq));
    atomic_store(&s->win_start, INT64_MAX);
    atomic_store(&s->win_end, INT64_MAX);
    snprintf(s->topic, sizeof(s->topic), "%s/+/%s", o->base, o->path);
    snprintf(id, sizeof(id), "lg-sub-%d", (int)getpid());
    mosquitto_lib_init();
    s->m = mosquitto_new(id, true, s);
    if (!s->last_seq || !s->m)
        goto fail;
    mosquitto_connect_callback_set(s->m, on_connect);
    mosquitto_subscribe_callback_set(s->m, on_subscribe);
    mosquitto_message_callback_set(s->m, on_message);
    if (mosquitto_connect(s->m, o->mqtt_host, o->mqtt_port, 60) != MOSQ_ERR_SUCCESS ||
        mosquitto_loop_start(s->m) != MOSQ_ERR_SUCCESS) {
        log_warnx("subscriber: cannot connect to %s:%d", o->mqtt_host, o->mqtt_port);
        goto fail;
    }
    for (int i = 0; i < 500 && !atomic_load(&s->subscribed); i++)
        usleep(10000);
    if (!atomic_load(&s->subscribed)) {
        log_warnx("subscriber: no SUBACK within 5 s");
        mosquitto_disconnect(s->m);
        mosquitto_loop_stop(s->m, true);
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
    mosquitto_disconnect(s->m);
    mosquitto_loop_stop(s->m, false);
}

void
sub_result(struct lg_sub *s, struct sub_result *r)
{
    double sum = 0;

    memset(r, 0, sizeof(*r));
    r->received = atomic_load(&s->received);
    r->in_window = s->in_window;
    r->recv_window = s->recv_window;
    r->dup = s->dup;
    r->reordered = s->reordered;
    r->bad = s->bad;
    r->samples = s->nlat;
    if (!s->nlat)
        return;
    qsort(s->lat, s->nlat, sizeof(*s->lat), cmp_u64);
    for (size_t i = 0; i < s->nlat; i++)
        sum += (double)s->lat[i];
    r->mean_ms = sum / (double)s->nlat / 1000.0;
    r->p50_ms = quantile_sorted(s->lat, s->nlat, 0.50) / 1000.0;
    r->p99_ms = quantile_sorted(s->lat, s->nlat, 0.99) / 1000.0;
    r->p999_ms = quantile_sorted(s->lat, s->nlat, 0.999) / 1000.0;
    r->max_ms = (double)s->lat[s->nlat - 1] / 1000.0;
}

void
sub_free(struct lg_sub *s)
{
    if (!s)
        return;
    if (s->m)
        mosquitto_destroy(s->m);
    free(s->last_seq);
    free(s->lat);
    free(s);
}
