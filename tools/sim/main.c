/*
 * main.c - coap2mqtt-sim: wiring and the one loop.
 *
 * The loop (tools/common's tool_loop) watches each sensor's libcoap context
 * fd (libcoap's own epoll set, which also holds its retransmission timer)
 * plus a signalfd; the sensors' own timers (readings, refreshes, sleep,
 * reboot) become its timeout.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coap2mqtt/log.h"
#include "sim.h"

/* Each sensor needs three fds (socket, libcoap epoll, libcoap timer). */
static void
raise_fd_limit(size_t sensors)
{
    unsigned long long have;

    if (tool_raise_fd_limit(sensors * 3 + 32, &have) < 0)
        log_warnx("open-file limit %llu is low for %zu sensors", have, sensors);
}

static void
setup_logging(const struct sim_opts *o)
{
    log_init(o->verbose ? LOG_LVL_DEBUG : LOG_LVL_NOTICE);
    log_hook_libraries();
    if (o->verbose) {
        log_library_packets();
        coap_dtls_set_log_level(LOG_DEBUG);
    }
}

static int
sensors_create(struct sim *sim)
{
    struct psk_table *psk = NULL;
    int rc = 0;

    if (sim->opts.psk_file && !(psk = psk_table_load(sim->opts.psk_file)))
        return -1;
    sim->sensors = calloc(sim->opts.count, sizeof(*sim->sensors));
    if (!sim->sensors)
        rc = -1;
    for (unsigned i = 0; rc == 0 && i < sim->opts.count; i++) {
        if (sensor_init(&sim->sensors[i], sim, i, psk) < 0) {
            rc = -1;
        } else {
            sim->nsensors++;
        }
    }
    psk_table_free(psk);
    return rc;
}

static void
sensors_destroy(struct sim *sim)
{
    for (size_t i = 0; i < sim->nsensors; i++)
        sensor_free(&sim->sensors[i]);
    free(sim->sensors);
    sim->sensors = NULL;
}

/* Runs until a signal or the --duration deadline. */
static void
run(struct sim *sim)
{
    int64_t now = tool_now_ms(), deadline = SIM_NEVER;
    bool stop = false;

    if (sim->opts.duration_s > 0)
        deadline = now + (int64_t)(sim->opts.duration_s * 1000);
    for (size_t i = 0; i < sim->nsensors; i++)
        sensor_start(&sim->sensors[i], now);
    while (!stop) {
        int64_t next = deadline, wait;
        int rc;

        now = tool_now_ms();
        if (now >= deadline)
            break;
        for (size_t i = 0; i < sim->nsensors; i++) {
            int64_t t = sensor_tick(&sim->sensors[i], now);
            next = t < next ? t : next;
        }
        wait = next - tool_now_ms();
        wait = wait < 0 ? 0 : wait > 1000 ? 1000 : wait;
        rc = tool_loop_wait(sim->loop, (int)wait);
        if (rc < 0) {
            log_warn("epoll_wait");
            break;
        }
        stop = rc > 0;   /* TERM or INT */
    }
}

int
main(int argc, char **argv)
{
    struct sim sim;
    int rc, status = 1;

    setvbuf(stdout, NULL, _IOLBF, 0);
    memset(&sim, 0, sizeof(sim));
    rc = options_parse(&sim.opts, argc, argv);
    if (rc)
        return rc > 0 ? 0 : 2;
    coap_startup();
    setup_logging(&sim.opts);
    if (!coap_dtls_is_supported()) {
        log_err("libcoap was built without DTLS");
        goto out;
    }
    raise_fd_limit(sim.opts.count);
    sim.loop = tool_loop_new();
    if (!sim.loop) {
        log_warn("epoll/signalfd");
        goto out;
    }
    if (sensors_create(&sim) < 0)
        goto out;
    run(&sim);
    status = 0;
out:
    sensors_destroy(&sim);
    coap_cleanup();
    if (status == 0)
        out_summary(&sim);
    tool_loop_free(sim.loop);
    return status;
}
