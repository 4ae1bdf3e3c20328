/*
 * health.c - state_dir/health, rewritten every 10 s from the event loop,
 * and at once after every connection to the broker:
 *
 *   mqtt=connected            (or "disconnected")
 *   devices=12                (registered)
 *   pid=4711
 *   updated=1796315021        (Unix seconds)
 *
 * It is the daemon's own word, not a guess from outside: the file's age
 * says the loop is turning (a hung loop stops rewriting it), its mqtt line
 * whether readings can reach the broker.  The container image's
 * HEALTHCHECK reads it; the broker's retained bridge/state could not tell
 * a hung gateway from a live one until the keepalive ran out, and would
 * need a client and the broker's address in the image.  Under systemd the
 * watchdog covers the loop, and the file is there all the same.  Written
 * to a temporary name and renamed, so a reader never sees half a file;
 * never synced (it says nothing after a power cut).
 *
 * Layer: status (reads the MQTT side and the devices)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "coap2mqtt/config.h"
#include "coap2mqtt/devices.h"
#include "coap2mqtt/health.h"
#include "coap2mqtt/log.h"
#include "coap2mqtt/mqtt_pool.h"

#define HEALTH_INTERVAL_MS 10000

struct health {
    struct gw *gw;
    uint64_t timer;
    bool warned;            /* one warning for a state_dir we cannot write */
    char path[4096];
    char tmp[4096 + 8];
};

static int
write_file(health_t *h)
{
    FILE *f = fopen(h->tmp, "w");
    int rc;

    if (!f)
        return -1;
    fprintf(f, "mqtt=%s\ndevices=%zu\npid=%ld\nupdated=%lld\n",
            mqtt_pool_connected(h->gw->mqtt_pool) ? "connected" : "disconnected",
            devices_count(h->gw->devices), (long)getpid(),
            (long long)time(NULL));
    rc = ferror(f) ? -1 : 0;
    if (fclose(f) != 0)
        rc = -1;
    if (rc == 0 && rename(h->tmp, h->path) == 0)
        return 0;
    unlink(h->tmp);
    return -1;
}

static void
tick(loop_t *loop, void *arg)
{
    health_t *h = arg;

    if (write_file(h) == 0) {
        h->warned = false;
    } else if (!h->warned) {
        h->warned = true;
        log_warn("cannot write %s (the container's health check reads it)", h->path);
    }
    h->timer = loop_add_timer(loop, HEALTH_INTERVAL_MS, tick, h);
}

void
health_update(health_t *h)
{
    if (!h)
        return;
    loop_cancel_timer(h->gw->loop, h->timer);
    tick(h->gw->loop, h);
}

health_t *
health_new(struct gw *gw)
{
    health_t *h = calloc(1, sizeof(*h));

    if (!h)
        return NULL;
    h->gw = gw;
    snprintf(h->path, sizeof(h->path), "%s/health", gw->cfg->state_dir);
    snprintf(h->tmp, sizeof(h->tmp), "%s.tmp", h->path);
    tick(gw->loop, h);
    return h;
}

void
health_free(health_t *h)
{
    if (!h)
        return;
    loop_cancel_timer(h->gw->loop, h->timer);
    unlink(h->path);
    free(h);
}
