/*
 * devices_forget.c - how much of the registry a device may take, and how
 * long it keeps it.  Plain CoAP (no authentication) holds at most
 * rd.max_unauthenticated entries; ids seen on DTLS stay owned by their
 * authenticated identity even after their record is gone.  A device that
 * is gone (offline, no session) waits in an idle queue, oldest first, and
 * is forgotten rd.forget_after later unless commands still wait for it:
 * one timer, for the oldest, whatever the size of the fleet.
 *
 * Layer: devices (the registry's second file; shares devices_internal.h)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utlist.h>

#include "coap2mqtt/log.h"
#include "devices_internal.h"

/* Devices looked at per sweep: a fleet that went away at once is
 * forgotten over several loop turns, and readings are served between. */
#define SWEEP_BATCH 1000

/* --- ids owned by authenticated identities ---------------------------------- */

void
devices__own_id(devices_t *d, struct device *dev)
{
    struct owned_id *o;

    if (dev->authenticated)
        return;
    dev->authenticated = true;
    d->n_unauth--;
    HASH_FIND_STR(d->owned, dev->id, o);
    if (o)
        return;
    if (!(o = calloc(1, sizeof(*o)))) {
        log_warnx("device %s: out of memory: once forgotten, its id would be "
                  "free for plain CoAP", dev->id);
        return;
    }
    snprintf(o->id, sizeof(o->id), "%s", dev->id);
    HASH_ADD_STR(d->owned, id, o);
}

bool
devices_id_authenticated(devices_t *d, const char *id)
{
    struct owned_id *o;

    HASH_FIND_STR(d->owned, id, o);
    return o != NULL;
}

size_t
devices_count_unauthenticated(const devices_t *d)
{
    return d->n_unauth;
}

bool
devices__plain(coap_session_t *session)
{
    return coap_session_get_proto(session) == COAP_PROTO_UDP;
}

enum devices_room
devices_room(devices_t *d, const char *id, coap_session_t *session)
{
    const struct config_rd *rd = &d->gw->cfg->rd;

    if (devices_find(d, id))
        return DEVICES_ROOM;
    if (d->count >= (size_t)rd->max_devices)
        return DEVICES_FULL;
    /* Plain CoAP proves nothing: whoever can send datagrams could fill
     * the registry, so it gets a share and authenticated devices the rest. */
    if (devices__plain(session) && d->n_unauth >= (size_t)rd->max_unauthenticated)
        return DEVICES_FULL_UNAUTHENTICATED;
    return DEVICES_ROOM;
}

/* --- forgetting: records of devices gone for rd.forget_after ------------------ */

/* Nothing refers to the device any more and nothing waits for it. */
static bool
forgettable(const struct device *dev)
{
    return !dev->online && !dev->registered && !dev->session &&
           !dev->cmd_head && !dev->cmd_inflight;
}

static void sweep(loop_t *loop, void *arg);

/* The timer for the oldest idle device (the queue is in idle_ms order). */
static void
arm_sweep(devices_t *d)
{
    uint64_t due, now = loop_now_ms(d->gw->loop);

    if (d->sweep_timer || !d->idle)
        return;
    due = d->idle->idle_ms + (uint64_t)d->gw->cfg->rd.forget_after * 1000;
    d->sweep_timer = loop_add_timer(d->gw->loop, due > now ? due - now : 0, sweep, d);
}

static void
idle_append(devices_t *d, struct device *dev)
{
    dev->idle = true;
    dev->idle_ms = loop_now_ms(d->gw->loop);
    DL_APPEND2(d->idle, dev, idle_prev, idle_next);
}

/* The device is gone (offline, no session): its countdown starts. */
void
devices__idle_enter(struct device *dev)
{
    devices_t *d = dev->gw->devices;

    /* A device of the devices list stays while it is configured. */
    if (!d || dev->idle || dev->online || dev->session ||
        d->gw->cfg->rd.forget_after <= 0 || d->gw->stopping ||
        devices_reserved(d, dev->id))
        return;
    idle_append(d, dev);
    arm_sweep(d);
}

/* It showed up again (or is being freed). */
void
devices__idle_leave(struct device *dev)
{
    devices_t *d = dev->gw->devices;

    if (!dev->idle || !d)
        return;
    DL_DELETE2(d->idle, dev, idle_prev, idle_next);
    dev->idle = false;
}

static void
forget(devices_t *d, struct device *dev)
{
    d->gw->stats.devices_forgotten++;
    log_info("device %s forgotten: gone for %d s", dev->id,
             d->gw->cfg->rd.forget_after);
    devices__emit(dev, DEVICE_FORGOTTEN);
    HASH_DEL(d->by_id, dev);
    devices__free_one(d, dev);
}

/*
 * Forgets the devices idle for rd.forget_after (SWEEP_BATCH a turn; the
 * timer comes back at once for the rest).  One still holding commands
 * (they wait for it until their time to live) starts another countdown
 * instead.
 */
static void
sweep(loop_t *loop, void *arg)
{
    devices_t *d = arg;
    uint64_t now = loop_now_ms(loop);
    uint64_t keep = (uint64_t)d->gw->cfg->rd.forget_after * 1000;
    struct device *dev;
    unsigned n = 0;

    d->sweep_timer = 0;
    while ((dev = d->idle) && now - dev->idle_ms >= keep && n++ < SWEEP_BATCH) {
        devices__idle_leave(dev);
        if (forgettable(dev))
            forget(d, dev);
        else
            idle_append(d, dev);
    }
    arm_sweep(d);
}

/* --- ids the gateway dials out to ------------------------------------------- */

int
devices_reserve(devices_t *d, const char *id)
{
    struct owned_id *o;

    if (devices_reserved(d, id))
        return 0;
    if (!(o = calloc(1, sizeof(*o))))
        return -1;
    snprintf(o->id, sizeof(o->id), "%s", id);
    HASH_ADD_STR(d->dialout, id, o);
    return 0;
}

bool
devices_reserved(devices_t *d, const char *id)
{
    struct owned_id *o;

    HASH_FIND_STR(d->dialout, id, o);
    return o != NULL;
}

void
devices_release(devices_t *d, const char *id)
{
    struct owned_id *o;
    struct device *dev;

    HASH_FIND_STR(d->dialout, id, o);
    if (!o)
        return;
    HASH_DEL(d->dialout, o);
    free(o);
    if ((dev = devices_find(d, id)))
        devices__idle_enter(dev);
}

static void
free_ids(struct owned_id **set)
{
    struct owned_id *o, *otmp;

    HASH_ITER(hh, *set, o, otmp) {
        HASH_DEL(*set, o);
        free(o);
    }
}

void
devices__forget_free(devices_t *d)
{
    free_ids(&d->owned);
    free_ids(&d->dialout);
    loop_cancel_timer(d->gw->loop, d->sweep_timer);
}
