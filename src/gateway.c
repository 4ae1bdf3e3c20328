/*
 * gateway.c - builds and takes apart one struct gw: the event loop and
 * every module, in the order they depend on each other.  The daemon
 * (main.c) and the handler fuzzer (tests/fuzz/fuzz_handlers.c) both wire
 * the gateway through here, so what is fuzzed is what runs.  Starting the
 * MQTT side, signals and systemd are the caller's.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "coap2mqtt/coap_side.h"
#include "coap2mqtt/devices.h"
#include "coap2mqtt/gateway.h"
#include "coap2mqtt/log.h"
#include "coap2mqtt/mqtt_side.h"
#include "coap2mqtt/outq.h"
#include "coap2mqtt/spool.h"
#include "coap2mqtt/status.h"

static spool_t *
open_spool(struct gw *gw)
{
    char dir[4096];

    /* systemd's StateDirectory= makes state_dir; by hand, we do. */
    if (mkdir(gw->cfg->state_dir, 0700) < 0 && errno != EEXIST) {
        log_warn("state_dir %s", gw->cfg->state_dir);
        return NULL;
    }
    snprintf(dir, sizeof(dir), "%s/spool", gw->cfg->state_dir);
    return spool_open(gw, dir);
}

int
gw_open(struct gw *gw, struct config *cfg, keystore_t *keys)
{
    memset(gw, 0, sizeof(*gw));
    gw->cfg = cfg;
    gw->keys = keys;
    if (!(gw->loop = loop_new())) {
        log_warn("cannot set up the event loop");
        return -1;
    }
    if (!(gw->outq = outq_new((size_t)cfg->queue.max_messages)))
        return -1;
    if (cfg->queue.spool && !(gw->spool = open_spool(gw)))
        return -1;
    if (!(gw->devices = devices_new(gw)) ||
        !(gw->mqtt = mqtt_side_new(gw)) ||
        !(gw->status = status_new(gw)) ||
        !(gw->coap = coap_side_new(gw)))
        return -1;
    return 0;
}

void
gw_close(struct gw *gw)
{
    /* Order matters: pushes waiting in the queue hold libcoap sessions,
     * so the queue goes before the CoAP context; the context's session
     * events still need the device registry.  A module that a later free
     * may call back into is cleared as soon as it is gone, so it is found
     * NULL, not freed. */
    outq_free(gw->outq);
    gw->outq = NULL;
    mqtt_side_free(gw->mqtt);
    gw->mqtt = NULL;
    /* What the broker did not acknowledge stays in the spool for the
     * next start. */
    spool_close(gw->spool);
    gw->spool = NULL;
    coap_side_free(gw->coap);
    gw->coap = NULL;
    devices_free(gw->devices);
    gw->devices = NULL;
    status_free(gw->status);
    loop_free(gw->loop);
}
