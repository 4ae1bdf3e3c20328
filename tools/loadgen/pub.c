/*
 * pub.c - the MQTT ceiling: libmosquitto QoS 1 publishers straight to the
 * broker, each keeping --pub-inflight messages awaiting PUBACK (the
 * gateway's mqtt.max_inflight default is 256), or paced at --rate.
 *
 * Each publisher runs libmosquitto's thread; the main thread publishes and
 * waits on a condition variable that the PUBACK callback signals.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <mosquitto.h>

#include "coap2mqtt/log.h"
#include "lg.h"

struct publisher {
    struct mosquitto *m;
    unsigned idx;
    char topic[256];
    uint32_t seq;
    unsigned inflight;            /* guarded by the shared mutex */
    int64_t sent_at[65536];       /* by message id */
    atomic_bool connected;
};

struct pubs {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int64_t win_start, win_end;
    unsigned long acked, acked_window;
};

static struct pubs P = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
                         INT64_MAX, INT64_MAX, 0, 0 };

static void
on_publish(struct mosquitto *m, void *arg, int mid)
{
    struct publisher *p = arg;
    int64_t t = p->sent_at[(uint16_t)mid];

    (void)m;
    pthread_mutex_lock(&P.mu);
    if (p->inflight)
        p->inflight--;
    P.acked++;
    if (t >= P.win_start && t < P.win_end)
        P.acked_window++;
    pthread_cond_signal(&P.cv);
    pthread_mutex_unlock(&P.mu);
}

static void
on_connect(struct mosquitto *m, void *arg, int rc)
{
    struct publisher *p = arg;

    (void)m;
    if (rc == 0)
        atomic_store(&p->connected, true);
}

static int
pub_open(struct publisher *p, const struct lg_opts *o, unsigned idx)
{
    char id[64];

    p->idx = idx;
    snprintf(p->topic, sizeof(p->topic), "%s/pub%u/%s", o->base, idx, o->path);
    snprintf(id, sizeof(id), "lg-pub-%d-%u", (int)getpid(), idx);
    p->m = mosquitto_new(id, true, p);
    if (!p->m)
        return -1;
    mosquitto_int_option(p->m, MOSQ_OPT_SEND_MAXIMUM, (int)o->pub_inflight);
    mosquitto_max_inflight_messages_set(p->m, o->pub_inflight);
    mosquitto_connect_callback_set(p->m, on_connect);
    mosquitto_publish_callback_set(p->m, on_publish);
    if (mosquitto_connect(p->m, o->mqtt_host, o->mqtt_port, 60) != MOSQ_ERR_SUCCESS ||
        mosquitto_loop_start(p->m) != MOSQ_ERR_SUCCESS)
        return -1;
    for (int i = 0; i < 500 && !atomic_load(&p->connected); i++)
        usleep(10000);
    return atomic_load(&p->connected) ? 0 : -1;
}

/* Publishes one reading; called with P.mu held. */
static void
pub_one(struct publisher *p, const struct lg_opts *o, int64_t now,
        struct pub_result *r)
{
    char body[LG_PAYLOAD_MAX + 1];
    size_t len = emit_payload(body, sizeof(body), o->payload_size, p->idx,
                              ++p->seq, now);
    int mid = 0;

    /* The callback may run before publish returns: note the time first. */
    if (mosquitto_publish(p->m, &mid, p->topic, (int)len, body, 1, false) != MOSQ_ERR_SUCCESS) {
        p->seq--;
        return;
    }
    p->sent_at[(uint16_t)mid] = now;
    p->inflight++;
    r->sent++;
    if (now >= P.win_start && now < P.win_end)
        r->sent_window++;
}

static void
wait_a_little(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&P.cv, &P.mu, &ts);
}

/* The emission phase: closed loop, or paced at o->rate. */
static void
pub_loop(struct publisher *ps, unsigned n, const struct lg_opts *o,
         int64_t t0, int64_t start, int64_t end, struct pub_result *r)
{
    uint64_t emitted = 0;
    bool in = false;

    pthread_mutex_lock(&P.mu);
    for (;;) {
        int64_t now = tool_now_us();
        bool any = false;
        if (!in && now >= start) {
            proc_sample(o->watch_pid, &r->srv_start);
            proc_sample(getpid(), &r->self_start);
            in = true;
        }
        if (now >= end) {
            proc_sample(o->watch_pid, &r->srv_end);
            proc_sample(getpid(), &r->self_end);
            break;
        }
        for (unsigned i = 0; i < n; i++) {
            struct publisher *p = &ps[i];
            while (p->inflight < o->pub_inflight) {
                if (o->rate > 0 &&
                    emitted >= (uint64_t)((double)(now - t0) * o->rate / 1e6))
                    break;
                pub_one(p, o, now, r);
                emitted++;
                any = true;
            }
        }
        if (!any)
            wait_a_little();
    }
    pthread_mutex_unlock(&P.mu);
}

int
pub_run(const struct lg_opts *o, struct lg_sub *sub, struct pub_result *r,
        int64_t *win_start, int64_t *win_end)
{
    struct publisher *ps = calloc(o->publishers, sizeof(*ps));
    int64_t t0, drain_end;
    int rc = -1;

    memset(r, 0, sizeof(*r));
    mosquitto_lib_init();
    if (!ps)
        return -1;
    for (unsigned i = 0; i < o->publishers; i++)
        if (pub_open(&ps[i], o, i) < 0) {
            log_warnx("publisher %u: cannot connect to %s:%d", i, o->mqtt_host, o->mqtt_port);
            goto out;
        }
    t0 = tool_now_us();
    *win_start = t0 + (int64_t)(o->warmup_s * 1e6);
    *win_end = *win_start + (int64_t)(o->duration_s * 1e6);
    pthread_mutex_lock(&P.mu);
    P.win_start = *win_start;
    P.win_end = *win_end;
    pthread_mutex_unlock(&P.mu);
    if (sub)
        sub_set_window(sub, *win_start, *win_end);
    pub_loop(ps, o->publishers, o, t0, *win_start, *win_end, r);
    drain_end = tool_now_us() + (int64_t)(o->drain_s * 1e6);
    while (tool_now_us() < drain_end &&
           (!sub || sub_received(sub) < r->sent))
        usleep(10000);
    rc = 0;
out:
    pthread_mutex_lock(&P.mu);
    r->acked = P.acked;
    r->acked_window = P.acked_window;
    pthread_mutex_unlock(&P.mu);
    for (unsigned i = 0; i < o->publishers; i++)
        if (ps[i].m) {
            mosquitto_disconnect(ps[i].m);
            mosquitto_loop_stop(ps[i].m, false);
            mosquitto_destroy(ps[i].m);
        }
    free(ps);
    return rc;
}
