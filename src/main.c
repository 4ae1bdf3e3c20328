/*
 * main.c - command line, signals, systemd notification, reload, graceful
 * stop, exit codes.  The modules are wired by gw_open() (gateway.c).
 *
 *   coap2mqtt [-c FILE] [-t] [-v] [-V]
 *
 * Exit codes: 0 clean stop, 78 (EX_CONFIG) invalid configuration, 1 any
 * other failure to start.  Never forks.
 *
 * Layer: wiring (may call every room)
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>
#include <coap3/coap.h>
#include <mosquitto.h>
#include <systemd/sd-daemon.h>

#include "coap2mqtt/commands.h"
#include "coap2mqtt/config.h"
#include "coap2mqtt/devices.h"
#include "coap2mqtt/gateway.h"
#include "coap2mqtt/keystore.h"
#include "coap2mqtt/log.h"
#include "coap2mqtt/mqtt_pool.h"
#include "coap2mqtt/outq.h"
#include "coap2mqtt/reload.h"
#include "coap2mqtt/spool.h"
#include "coap2mqtt/status.h"
#include "coap2mqtt/transport.h"

#ifndef COAP2MQTT_VERSION
#define COAP2MQTT_VERSION "0.1"
#endif

#define STOP_DEADLINE_MS   1500    /* flush budget on SIGTERM (limit: 2 s) */
#define READY_FALLBACK_MS  30000   /* READY=1 even without a broker by then */

struct daemon {
    struct gw gw;
    int sigfd;
    bool ready;
    uint64_t deadline_timer;
    uint64_t ready_timer;
    uint64_t watchdog_timer;
    uint64_t watchdog_ms;
    int verbose;            /* -v count: a floor under log_level */
};

static void
usage(void)
{
    fprintf(stderr,
            "usage: coap2mqtt [-c FILE] [-t] [-v] [-V]\n"
            "  -c FILE  configuration (default %s)\n"
            "  -t       check the configuration and the files it names, then exit\n"
            "  -v       more logging (twice: debug; three times: every CoAP PDU)\n"
            "  -V       print the version and exit\n", CONFIG_DEFAULT_PATH);
}

static void
report_line(void *arg, const char *line)
{
    (void)arg;
    fprintf(stderr, "%s\n", line);
}

/* --- readiness, watchdog ------------------------------------------------- */

static void
notify_ready(struct daemon *d, const char *why)
{
    if (d->ready)
        return;
    d->ready = true;
    loop_cancel_timer(d->gw.loop, d->ready_timer);
    sd_notifyf(0, "READY=1\nSTATUS=%s", why);
    log_notice("ready: %s", why);
}

static void
ready_fallback(loop_t *loop, void *arg)
{
    struct daemon *d = arg;

    (void)loop;
    d->ready_timer = 0;
    notify_ready(d, "serving devices; broker unreachable, readings are queued");
}

/* Polled: the MQTT side does not know about systemd. */
static void
watch_ready(loop_t *loop, void *arg)
{
    struct daemon *d = arg;

    if (d->ready)
        return;
    if (mqtt_pool_connected(d->gw.mqtt_pool))
        notify_ready(d, "serving devices, connected to the broker");
    else
        loop_add_timer(loop, 50, watch_ready, d);
}

static void
watchdog_tick(loop_t *loop, void *arg)
{
    struct daemon *d = arg;

    sd_notify(0, "WATCHDOG=1");
    d->watchdog_timer = loop_add_timer(loop, d->watchdog_ms, watchdog_tick, d);
}

/* --- stop and reload ----------------------------------------------------- */

static void
stop_now(loop_t *loop, void *arg)
{
    (void)arg;
    loop_stop(loop);
}

/* Ends the loop as soon as everything queued is at the broker. */
static void
drain_check(loop_t *loop, void *arg)
{
    struct daemon *d = arg;

    mqtt_pool_flush(d->gw.mqtt_pool);
    if (!mqtt_pool_connected(d->gw.mqtt_pool) ||
        (outq_len(d->gw.outq) == 0 && spool_backlog(d->gw.spool) == 0 &&
         mqtt_pool_idle(d->gw.mqtt_pool))) {
        loop_stop(loop);
        return;
    }
    loop_add_timer(loop, 10, drain_check, d);
}

static void
begin_stop(struct daemon *d, const char *why)
{
    struct gw *gw = &d->gw;

    if (gw->stopping)
        return;
    log_notice("stopping (%s)", why);
    sd_notify(0, "STOPPING=1");
    gw->stopping = true;
    devices_shutdown(gw->devices);
    commands_stop(gw->commands);
    status_publish_offline(gw->status);
    d->deadline_timer = loop_add_timer(gw->loop, STOP_DEADLINE_MS, stop_now, d);
    drain_check(gw->loop, d);
}

/* systemd's reload protocol (sd_notify(3)): RELOADING=1 with the
 * monotonic time it began, then READY=1 once done, refused or not. */
static void
reload(struct daemon *d)
{
    struct timespec ts;
    const char *status;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu",
               (unsigned long long)ts.tv_sec * 1000000ULL +
               (unsigned long long)ts.tv_nsec / 1000);
    status = reload_run(&d->gw, d->verbose) < 0
             ? "configuration reload refused, see the log"
             : "serving devices, configuration reloaded";
    /* Before the first READY=1 (broker not yet reached), that one still
     * comes from notify_ready(). */
    sd_notifyf(0, "%sSTATUS=%s", d->ready ? "READY=1\n" : "", status);
}

static void
on_signal(loop_t *loop, int fd, uint32_t events, void *arg)
{
    struct daemon *d = arg;
    struct signalfd_siginfo si;

    (void)loop;
    (void)events;
    while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGHUP)
            reload(d);
        else
            begin_stop(d, strsignal((int)si.ssi_signo));
    }
}

/* Blocked before anything is built, so a signal during start-up waits in
 * the signalfd until the loop runs. */
static int
block_signals(struct daemon *d)
{
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        return -1;
    signal(SIGPIPE, SIG_IGN);
    d->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    return d->sigfd < 0 ? -1 : 0;
}

/* --- start and teardown ---------------------------------------------------- */

static int
start(struct daemon *d, struct config *cfg)
{
    keystore_t *keys = NULL;
    uint64_t wd_usec = 0;

    if (block_signals(d) < 0) {
        log_warn("cannot set up the event loop");
        return -1;
    }
    /* Ours, not the gateway's: reload() replaces it. */
    if (cfg->coap.psk_file &&
        !(keys = keystore_load(cfg->coap.psk_file, report_line, NULL)))
        return -1;
    if (gw_open(&d->gw, cfg, keys) < 0)
        return -1;
    if (loop_add_fd(d->gw.loop, d->sigfd, EPOLLIN, on_signal, d) < 0) {
        log_warn("cannot set up the event loop");
        return -1;
    }
    mqtt_pool_start(d->gw.mqtt_pool);
    d->ready_timer = loop_add_timer(d->gw.loop, READY_FALLBACK_MS, ready_fallback, d);
    watch_ready(d->gw.loop, d);
    if (sd_watchdog_enabled(0, &wd_usec) > 0 && wd_usec > 0) {
        d->watchdog_ms = wd_usec / 2000;
        watchdog_tick(d->gw.loop, d);
    }
    return 0;
}

static void
teardown(struct daemon *d)
{
    if (d->gw.mqtt_pool)
        mqtt_pool_disconnect(d->gw.mqtt_pool);
    gw_close(&d->gw);
    if (d->sigfd >= 0)
        close(d->sigfd);
    keystore_free(d->gw.keys);      /* the one reload() left, if any */
}

/* Runs the daemon on a valid configuration until it stops; its exit code. */
static int
run(struct config *cfg, int verbose)
{
    struct daemon d;
    int rc = 0;

    coap_startup();
    reload_apply_log_level(cfg, verbose);
    log_hook_libraries();
    if (verbose >= 3)
        log_library_packets();
    mosquitto_lib_init();
    memset(&d, 0, sizeof(d));
    d.sigfd = -1;
    d.verbose = verbose;
    log_notice("coap2mqtt %s starting (libcoap %s, DTLS)", COAP2MQTT_VERSION,
               coap_package_version());
    if (start(&d, cfg) < 0 || loop_run(d.gw.loop) < 0)
        rc = 1;
    teardown(&d);
    mosquitto_lib_cleanup();
    coap_cleanup();
    log_notice("stopped");
    return rc;
}

int
main(int argc, char **argv)
{
    const char *path = CONFIG_DEFAULT_PATH;
    bool check_only = false;
    int verbose = 0, opt, errors, rc;
    struct config cfg;

    while ((opt = getopt(argc, argv, "c:tvVh")) != -1) {
        switch (opt) {
        case 'c': path = optarg; break;
        case 't': check_only = true; break;
        case 'v': verbose++; break;
        case 'V': printf("coap2mqtt %s\n", COAP2MQTT_VERSION); return 0;
        default: usage(); return EX_USAGE;
        }
    }
    if (optind != argc) {
        usage();
        return EX_USAGE;
    }
    log_init(verbose >= 2 ? LOG_LVL_DEBUG : verbose ? LOG_LVL_INFO : LOG_LVL_NOTICE);
    errors = config_load(path, &cfg, report_line, NULL);
    if (!errors)
        errors = config_check_files(&cfg, report_line, NULL);
    if (errors || check_only) {
        if (!errors)
            fprintf(stderr, "%s: configuration valid\n", path);
        config_free(&cfg);
        return errors ? EX_CONFIG : 0;
    }
    rc = run(&cfg, verbose);
    config_free(&cfg);
    return rc;
}
