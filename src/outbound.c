/*
 * outbound.c - the enqueue policy, once: spool, queue, count, kick.
 *
 * Layer: services (calls base and the MQTT side)
 */
#include "coap2mqtt/log.h"
#include "coap2mqtt/mqtt_pool.h"
#include "coap2mqtt/outbound.h"
#include "coap2mqtt/spool.h"

bool
outbound_put(struct gw *gw, outmsg_t *m, const char *what, const char *id)
{
    enum spool_put_result put;

    if (!gw->outq) {
        /* Teardown: the queue went first; results of commands flushed
         * now would only be spooled for the next start. */
        if (m)
            outmsg_finish(m, false);
        return false;
    }
    put = m ? spool_put(gw->spool, gw->outq, m) : SPOOL_FULL;
    if (put == SPOOL_DROPPED_OLDEST)
        gw->stats.drops_oldest_non++;
    if (put == SPOOL_FULL) {
        if (m)
            outmsg_finish(m, false);
        gw->stats.drops_queue_full++;
        log_ratelimited(&gw->stats.drops_queue_full,
                        "outbound queue and spool full: %s %s refused", what, id);
        return false;
    }
    mqtt_pool_kick(gw->mqtt_pool);
    return true;
}

bool
outbound_flowing(const struct gw *gw)
{
    return gw->mqtt_pool && mqtt_pool_connected(gw->mqtt_pool);
}
