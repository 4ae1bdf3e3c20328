/*
 * mqtt_pool.c - mqtt.connections broker connections behind one front.
 *
 * Why: a broker grants each connection its own Receive Maximum (Debian's
 * mosquitto: 20), so one connection has at most 20 QoS 1 readings awaiting
 * PUBACK; N connections have N times that.
 *
 * How, with N > 1: the outbound queue (gw->outq, and the spool's disk
 * backlog behind it) stays the one FIFO everything is put into.  This
 * file moves readings from its head into a small queue per connection
 * (its share: at most mqtt.max_inflight readings), chosen by a stable
 * hash (FNV-1a) of the device id, the topic level after mqtt.base_topic
 * (a topic outside it hashes whole).  Each connection drains its share
 * with its own window exactly as the single connection drains gw->outq
 * (mqtt_side_publish.c), and asks for more when its share is half empty.
 * When the head of gw->outq belongs to a connection whose share is full
 * (it is down, or its broker is slow), the hand-out stops there: nothing
 * overtakes anything in the FIFO beyond the shares, so a connection's
 * outage holds the others back by at most one share each, and the rest
 * waits in gw->outq and on disk as in any outage.
 *
 * Order: one device always maps to the same connection, and its readings
 * enter that connection's share, and are published, in FIFO order; MQTT
 * keeps the order within a connection (libmosquitto resends the
 * unacknowledged ones in order after a reconnect).
 *
 * No loss: nothing changes in the spool.  Its acknowledged position
 * already moves only across contiguous records the broker has (a ring of
 * per-record flags, spool.c), so PUBACKs arriving in another order per
 * connection simply leave the position at the oldest record some
 * connection has not finished.  After a restart everything above it is
 * published again, in spool order: per device in order, a reading another
 * connection had delivered possibly twice (at least once, as before).
 *
 * Layer: transport (calls the MQTT side, the queue, the spool)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "coap2mqtt/log.h"
#include "coap2mqtt/mqtt_pool.h"
#include "coap2mqtt/mqtt_side.h"
#include "coap2mqtt/outq.h"
#include "coap2mqtt/spool.h"

#define POOL_MAX 16

struct mqtt_pool {
    struct gw *gw;
    size_t n;
    mqtt_side_t *conn[POOL_MAX];
    outq_t *share[POOL_MAX];    /* N > 1: each connection's readings */
    uint64_t kick_timer;
};

/* FNV-1a over the device id of the topic <base>/<id>/... */
static size_t
shard(const mqtt_pool_t *p, const char *topic)
{
    const char *base = p->gw->cfg->mqtt.base_topic;
    size_t blen = strlen(base), len;
    uint32_t h = 2166136261u;

    if (strncmp(topic, base, blen) == 0 && topic[blen] == '/') {
        topic += blen + 1;
        len = strcspn(topic, "/");
    } else {
        len = strlen(topic);
    }
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)topic[i];
        h *= 16777619u;
    }
    return h % p->n;
}

/*
 * Moves readings from the head of gw->outq (refilled from the disk
 * backlog) into the shares, until the queue is empty or the head's share
 * is full.  The connections that got some are kicked.
 */
static void
hand_out(void *arg)
{
    mqtt_pool_t *p = arg;
    struct gw *gw = p->gw;
    bool got[POOL_MAX] = { false };
    outmsg_t *msg;

    if (!gw->outq)
        return;                 /* teardown */
    for (;;) {
        size_t k;

        if (!(msg = outq_pop(gw->outq))) {
            spool_refill(gw->spool, gw->outq);
            if (!(msg = outq_pop(gw->outq)))
                break;
        }
        k = shard(p, msg->topic);
        if (!outq_push(p->share[k], msg)) {
            outq_push_front(gw->outq, msg);
            break;
        }
        got[k] = true;
    }
    for (size_t i = 0; i < p->n; i++)
        if (got[i])
            mqtt_side_kick(p->conn[i]);
}

static void
kicked(loop_t *loop, void *arg)
{
    mqtt_pool_t *p = arg;

    (void)loop;
    p->kick_timer = 0;
    hand_out(p);
}

void
mqtt_pool_kick(mqtt_pool_t *p)
{
    if (p->n == 1)
        mqtt_side_kick(p->conn[0]);
    else if (!p->kick_timer)
        p->kick_timer = loop_add_timer(p->gw->loop, 0, kicked, p);
}

void
mqtt_pool_flush(mqtt_pool_t *p)
{
    if (p->n > 1)
        hand_out(p);
    for (size_t i = 0; i < p->n; i++)
        mqtt_side_flush(p->conn[i]);
}

mqtt_pool_t *
mqtt_pool_new(struct gw *gw)
{
    mqtt_pool_t *p = calloc(1, sizeof(*p));
    size_t share = (size_t)gw->cfg->mqtt.max_inflight;

    if (!p) {
        log_warnx("mqtt: out of memory");
        return NULL;
    }
    p->gw = gw;
    p->n = (size_t)gw->cfg->mqtt.connections;
    if (p->n < 1 || p->n > POOL_MAX)
        p->n = 1;
    for (size_t i = 0; i < p->n; i++) {
        if (!(p->conn[i] = mqtt_side_new(gw, (int)i))) {
            mqtt_pool_free(p);
            return NULL;
        }
        if (p->n == 1)
            break;
        if (!(p->share[i] = outq_new(share))) {
            log_warnx("mqtt: out of memory");
            mqtt_pool_free(p);
            return NULL;
        }
        mqtt_side_set_source(p->conn[i], p->share[i], share / 2, hand_out, p);
    }
    if (p->n > 1)
        log_info("mqtt: %zu connections, readings sharded by device", p->n);
    return p;
}

mqtt_side_t *
mqtt_pool_primary(const mqtt_pool_t *p)
{
    return p->conn[0];
}

void
mqtt_pool_start(mqtt_pool_t *p)
{
    for (size_t i = 0; i < p->n; i++)
        mqtt_side_start(p->conn[i]);
}

void
mqtt_pool_disconnect(mqtt_pool_t *p)
{
    for (size_t i = 0; i < p->n; i++)
        mqtt_side_disconnect(p->conn[i]);
}

void
mqtt_pool_free(mqtt_pool_t *p)
{
    if (!p)
        return;
    loop_cancel_timer(p->gw->loop, p->kick_timer);
    for (size_t i = 0; i < p->n; i++) {
        mqtt_side_free(p->conn[i]);
        outq_free(p->share[i]);
    }
    free(p);
}

size_t
mqtt_pool_size(const mqtt_pool_t *p)
{
    return p->n;
}

size_t
mqtt_pool_up(const mqtt_pool_t *p)
{
    size_t up = 0;

    for (size_t i = 0; i < p->n; i++)
        up += mqtt_side_connected(p->conn[i]);
    return up;
}

bool
mqtt_pool_connected(const mqtt_pool_t *p)
{
    return mqtt_pool_up(p) == p->n;
}

const mqtt_side_t *
mqtt_pool_connection(const mqtt_pool_t *p, size_t i)
{
    return i < p->n ? p->conn[i] : NULL;
}

/* A figure of every connection, summed. */
static size_t
sum_over(const mqtt_pool_t *p, size_t (*figure)(const mqtt_side_t *))
{
    size_t sum = 0;

    for (size_t i = 0; i < p->n; i++)
        sum += figure(p->conn[i]);
    return sum;
}

size_t
mqtt_pool_inflight(const mqtt_pool_t *p)
{
    return sum_over(p, mqtt_side_inflight);
}

size_t
mqtt_pool_held(const mqtt_pool_t *p)
{
    return sum_over(p, mqtt_side_held);
}

size_t
mqtt_pool_queued(const mqtt_pool_t *p)
{
    size_t sum = 0;

    for (size_t i = 0; i < p->n; i++)
        sum += p->share[i] ? outq_len(p->share[i]) : 0;
    return sum;
}

bool
mqtt_pool_idle(const mqtt_pool_t *p)
{
    if (mqtt_pool_queued(p) > 0)
        return false;
    for (size_t i = 0; i < p->n; i++)
        if (!mqtt_side_idle(p->conn[i]))
            return false;
    return true;
}
