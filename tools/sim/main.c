/*
 * main.c - coap2mqtt-sim: wiring and the one epoll loop.
 *
 * The loop watches each sensor's libcoap context fd (libcoap's own epoll
 * set, which also holds its retransmission timer) plus a signalfd; the
 * sensors' own timers (readings, refreshes, sleep, reboot) become the
 * epoll_wait timeout.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/resource.h>

#include "coap2mqtt/log.h"
#include "sim.h"

#define MAX_EVENTS 256

/* Each sensor needs three fds (socket, libcoap epoll, libcoap timer). */
static void
raise_fd_limit(size_t sensors)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < sensors * 3 + 32)
        log_warnx("open-file limit %llu is low for %zu sensors",
                  (unsigned long long)rl.rlim_cur, sensors);
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
            resources_free(&sim->sensors[i]);
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
run(struct sim *sim, int sigfd)
{
    struct epoll_event evs[MAX_EVENTS];
    int64_t now = tool_now_ms(), deadline = SIM_NEVER;
    bool stop = false;

    if (sim->opts.duration_s > 0)
        deadline = now + (int64_t)(sim->opts.duration_s * 1000);
    for (size_t i = 0; i < sim->nsensors; i++)
        sensor_start(&sim->sensors[i], now);
    while (!stop) {
        int64_t next = deadline, wait;
        int n;

        now = tool_now_ms();
        if (now >= deadline)
            break;
        for (size_t i = 0; i < sim->nsensors; i++) {
            int64_t t = sensor_tick(&sim->sensors[i], now);
            next = t < next ? t : next;
        }
        wait = next - tool_now_ms();
        wait = wait < 0 ? 0 : wait > 1000 ? 1000 : wait;
        n = epoll_wait(sim->epfd, evs, MAX_EVENTS, (int)wait);
        if (n < 0 && errno != EINTR) {
            log_warn("epoll_wait");
            break;
        }
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL)
                stop = true;   /* the signalfd */
            else
                sensor_io(evs[i].data.ptr);
        }
    }
    (void)sigfd;
}

int
main(int argc, char **argv)
{
    struct sim sim;
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
    int rc, sigfd = -1, status = 1;

    setvbuf(stdout, NULL, _IOLBF, 0);
    memset(&sim, 0, sizeof(sim));
    sim.epfd = -1;
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
    sim.epfd = epoll_create1(EPOLL_CLOEXEC);
    sigfd = tool_signal_fd();
    if (sim.epfd < 0 || sigfd < 0 ||
        epoll_ctl(sim.epfd, EPOLL_CTL_ADD, sigfd, &ev) < 0) {
        log_warn("epoll/signalfd");
        goto out;
    }
    if (sensors_create(&sim) < 0)
        goto out;
    run(&sim, sigfd);
    status = 0;
out:
    sensors_destroy(&sim);
    coap_cleanup();
    if (status == 0)
        out_summary(&sim);
    if (sigfd >= 0)
        close(sigfd);
    if (sim.epfd >= 0)
        close(sim.epfd);
    return status;
}
