/*
 * gateway.c - builds and takes apart the whole gateway, and is the one
 * place that knows who tells whom: the callbacks through which the lower
 * rooms report to the higher ones are registered here and nowhere else.
 * The daemon (main.c) and the handler fuzzer (tests/fuzz/fuzz_handlers.c)
 * both wire the gateway through here, so what is fuzzed is what runs.
 * Starting the MQTT side, signals and systemd are the caller's.
 *
 * Layer: wiring (may call every room)
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "coap2mqtt/commands.h"
#include "coap2mqtt/devices.h"
#include "coap2mqtt/dialout.h"
#include "coap2mqtt/discovery.h"
#include "coap2mqtt/gateway.h"
#include "coap2mqtt/homeassistant.h"
#include "coap2mqtt/health.h"
#include "coap2mqtt/intake.h"
#include "coap2mqtt/log.h"
#include "coap2mqtt/mqtt_pool.h"
#include "coap2mqtt/mqtt_side.h"
#include "coap2mqtt/observe.h"
#include "coap2mqtt/outq.h"
#include "coap2mqtt/ownership.h"
#include "coap2mqtt/requests.h"
#include "coap2mqtt/spool.h"
#include "coap2mqtt/status.h"
#include "coap2mqtt/transport.h"

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

/* The transport's back-pressure measure: readings the broker has yet to
 * take, and none while it is away (waiting for it would not help). */
static uint64_t
broker_backlog(void *arg)
{
    struct gw *gw = arg;

    if (!mqtt_pool_connected(gw->mqtt_pool))
        return 0;
    return outq_len(gw->outq) + mqtt_pool_queued(gw->mqtt_pool) + spool_backlog(gw->spool);
}

/* What the broker sends: Home Assistant's status to its room, requests
 * under <base>/bridge/request/ to theirs, the rest (commands under the base
 * topic) to commands.  Public for the fuzz harness, which feeds it. */
void
gw_on_mqtt_message(void *arg, const struct mosquitto_message *msg,
                   const mosquitto_property *props)
{
    struct gw *gw = arg;

    if (gw->ha && homeassistant_on_message(gw->ha, msg))
        return;
    if (gw->ownership) {
        const char *holder;

        if (ownership_on_message(gw->ownership, msg))
            return;
        if ((holder = ownership_holder_elsewhere(gw->ownership, msg))) {
            commands_forward_message(gw->commands, msg, props, holder);
            return;
        }
    }
    if (requests_on_message(gw, msg))
        return;
    commands_on_message(gw->commands, msg, props);
}

/* A (re)connection: the retained state first, then the discovery configs
 * that point at it. */
static void
on_mqtt_connected(void *arg)
{
    struct gw *gw = arg;

    status_on_connected(gw->status);
    if (gw->ownership)
        ownership_on_connected(gw->ownership);
    if (gw->ha)
        homeassistant_on_connected(gw->ha);
}

/* Events come up: each room above hears what the rooms below saw.  The
 * device listeners run in this order (observations before commands, as a
 * lost session must forget its observe tokens before the command in flight
 * goes back in its queue; status last). */
static int
wire(struct gw *gw)
{
    transport_set_session_listener(gw->coap, devices_session_gone, gw->devices);
    transport_set_established_listener(gw->coap, devices_session_established, gw->devices);
    transport_set_backlog(gw->coap, broker_backlog, gw);
    mqtt_side_set_handlers(gw->mqtt, gw_on_mqtt_message, gw, on_mqtt_connected, gw);
    if (gw->ownership)
        mqtt_side_set_suback_handler(gw->mqtt, ownership_on_suback, gw->ownership);
    if (devices_add_listener(gw->devices, observe_device_event, NULL) < 0 ||
        devices_add_listener(gw->devices, commands_device_event, gw->commands) < 0 ||
        devices_add_listener(gw->devices, status_device_event, gw->status) < 0 ||
        (gw->ha && devices_add_listener(gw->devices, homeassistant_device_event,
                                        gw->ha) < 0) ||
        (gw->ownership && devices_add_listener(gw->devices, ownership_device_event,
                                               gw->ownership) < 0) ||
        devices_add_listener(gw->devices, dialout_device_event, gw) < 0) {
        log_warnx("cannot wire the device listeners");
        return -1;
    }
    return 0;
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
    if (!(gw->outq = outq_new((size_t)cfg->queue.max_messages))) {
        log_warnx("cannot allocate the outbound queue");
        return -1;
    }
    if (cfg->queue.spool && !(gw->spool = open_spool(gw)))
        return -1;
    if (!(gw->devices = devices_new(gw))) {
        log_warnx("out of memory");
        return -1;
    }
    /* After the spool: the results of commands restored from the journal
     * queue behind what the spool replayed. */
    if (!(gw->commands = commands_new(gw)))
        return -1;
    if (!(gw->mqtt_pool = mqtt_pool_new(gw)))
        return -1;
    gw->mqtt = mqtt_pool_primary(gw->mqtt_pool);
    if (!(gw->status = status_new(gw)) || !(gw->health = health_new(gw)) ||
        (cfg->homeassistant.enabled && !(gw->ha = homeassistant_new(gw))) ||
        (cfg->mqtt.instance && !(gw->ownership = ownership_new(gw)))) {
        log_warnx("out of memory");
        return -1;
    }
    if (!(gw->coap = transport_new(gw)) || intake_register(gw) < 0)
        return -1;
    /* Wired before the first dial, which is a timer: the loop runs it. */
    if (wire(gw) < 0 || !(gw->dialout = dialout_new(gw)))
        return -1;
    /* After the dial-out, which takes the servers it finds. */
    if (cfg->discovery.multicast && !(gw->discovery = discovery_new(gw)))
        return -1;
    return 0;
}

void
gw_close(struct gw *gw)
{
    /* Order matters: pushes waiting in the queue hold libcoap sessions,
     * so the queue goes before the CoAP context; the context's session
     * events still need the device registry, and the device listeners
     * (observations, commands, status) outlive the registry.  A room that
     * a later free may call back into is cleared as soon as it is gone, so
     * it is found NULL, not freed. */
#define CLOSE(free_fn, room) do { free_fn(gw->room); gw->room = NULL; } while (0)
    CLOSE(outq_free, outq);
    gw->mqtt = NULL;                /* the pool's */
    CLOSE(mqtt_pool_free, mqtt_pool);
    /* What the broker did not acknowledge stays in the spool for the
     * next start. */
    CLOSE(spool_close, spool);
    /* The client sessions of the devices we dial: closed by their owner,
     * while the registry can still hear them end. */
    CLOSE(discovery_free, discovery);
    CLOSE(dialout_free, dialout);
    /* libcoap frees plain-CoAP sessions with the context without an
     * event: the devices let go of theirs while they are still alive. */
    devices_release_sessions(gw->devices);
    CLOSE(transport_free, coap);
    CLOSE(intake_free, intake);
    CLOSE(devices_free, devices);
    CLOSE(commands_free, commands);
    CLOSE(health_free, health);
    CLOSE(status_free, status);
    CLOSE(homeassistant_free, ha);
    CLOSE(ownership_free, ownership);
    CLOSE(loop_free, loop);
#undef CLOSE
}
