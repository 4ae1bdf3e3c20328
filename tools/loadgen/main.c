/*
 * main.c - coap2mqtt-loadgen: the phases of one run and the one epoll loop.
 *
 *   connect   --sensors DTLS sessions, --ramp handshakes at a time
 *             (handshakes/s; VmRSS of --watch-pid before and after)
 *   ready     the --active sensors register (and are observed)
 *   emit      --warmup, then the --duration measurement window
 *   drain     --drain s for the last answers and MQTT messages
 *
 * Figures go to stdout and, with --json, to a file (report.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coap2mqtt/log.h"
#include "lg.h"
#include "report.h"

/* One socket per session plus two fds per context. */
static void
raise_fd_limit(unsigned sessions)
{
    unsigned long need = sessions + 3 * (sessions / LG_PER_CTX + 1) + 64;
    unsigned long long have;

    if (tool_raise_fd_limit(need, &have) < 0)
        log_warnx("open-file limit %llu is too low for %u sessions (ulimit -n)",
                  have, sessions);
}

/* One pass of the loop: wait up to 'wait_us' (10 ms at most); false: stop. */
static bool
pump(struct fleet *f, int64_t wait_us)
{
    int ms = wait_us <= 0 ? 0 : (int)((wait_us + 999) / 1000);

    return tool_loop_wait(f->loop, ms > 10 ? 10 : ms) == 0;
}

static bool
phase_connect(struct fleet *f, struct run_figures *rf)
{
    int64_t deadline = tool_now_us() + 60000000 + (int64_t)f->n * 2000;

    proc_sample(f->o->watch_pid, &rf->before);
    while (tool_now_us() < deadline) {
        if (fleet_connect_more(f, tool_now_us()))
            break;
        if (!pump(f, 10000))
            return false;
    }
    /* Let the server settle (its last handshakes, our registrations). */
    for (int64_t end = tool_now_us() + 1000000; tool_now_us() < end;)
        if (!pump(f, 10000))
            return false;
    proc_sample(f->o->watch_pid, &rf->connected);
    return true;
}

static bool
phase_ready(struct fleet *f)
{
    int64_t deadline = tool_now_us() + 30000000;

    while (tool_now_us() < deadline &&
           fleet_count(f, SS_READY, f->active) < fleet_count(f, SS_CONNECTED, f->active))
        if (!pump(f, 10000))
            return false;
    return true;
}

static bool
phase_emit(struct fleet *f, struct lg_sub *sub, struct run_figures *rf)
{
    const struct lg_opts *o = f->o;
    bool in = false, done = false;

    f->t0_us = tool_now_us();
    f->win_start_us = f->t0_us + (int64_t)(o->warmup_s * 1e6);
    f->win_end_us = f->win_start_us + (int64_t)(o->duration_s * 1e6);
    f->emitting = true;
    if (sub)
        sub_set_window(sub, f->win_start_us, f->win_end_us);
    while (!done) {
        int64_t now = tool_now_us(), wait = emit_due(f, now);
        if (!in && now >= f->win_start_us) {
            proc_sample(o->watch_pid, &rf->win_start);
            proc_sample(getpid(), &rf->self_start);
            in = true;
        }
        if (now >= f->win_end_us) {
            proc_sample(o->watch_pid, &rf->win_end);
            proc_sample(getpid(), &rf->self_end);
            done = true;
        }
        if (wait > f->win_end_us - now)
            wait = f->win_end_us - now;
        if (!pump(f, wait))
            return false;
    }
    return true;
}

static void
phase_drain(struct fleet *f, struct lg_sub *sub)
{
    int64_t end = tool_now_us() + (int64_t)(f->o->drain_s * 1e6);

    while (tool_now_us() < end) {
        unsigned long inflight = f->cnt.sent - f->cnt.acked - f->cnt.errors;
        bool coap_done = !f->o->con || f->o->observe || inflight == 0;
        if (coap_done && (!sub || sub_received(sub) >= f->cnt.sent))
            break;
        if (!pump(f, 10000))
            break;
    }
}

static int
run_coap(const struct lg_opts *o, tool_loop_t *loop)
{
    struct fleet f;
    struct lg_sub *sub = NULL;
    struct run_figures rf;
    int rc = 1;

    memset(&rf, 0, sizeof(rf));
    raise_fd_limit(o->sensors);
    if (fleet_init(&f, o, loop, &emit_events) < 0)
        goto out;
    if (o->mqtt_port && !o->handshake_only && !(sub = sub_start(o, o->active)))
        goto out;
    if (!phase_connect(&f, &rf))
        goto out;
    if (o->handshake_only) {
        /* For scripts that hold many sessions open from several
         * processes: the moment this one's are all up. */
        printf("connected %lu of %u sessions\n", f.cnt.hs_ok, o->sensors);
        fflush(stdout);
        for (int64_t end = tool_now_us() + (int64_t)(o->hold_s * 1e6); tool_now_us() < end;)
            if (!pump(&f, 10000))
                break;
    } else if (!phase_ready(&f) || !phase_emit(&f, sub, &rf)) {
        goto out;
    } else {
        phase_drain(&f, sub);
    }
    if (sub)
        sub_stop(sub);
    rc = report_coap(o, &f, sub, &rf);
out:
    sub_free(sub);
    fleet_free(&f);
    return rc;
}

static int
run_mqtt(const struct lg_opts *o)
{
    struct lg_sub *sub = sub_start(o, o->publishers);
    struct pub_result pr;
    int64_t ws = 0, we = 0;
    int rc = 1;

    if (!sub)
        return 1;
    if (pub_run(o, sub, &pr, &ws, &we) == 0) {
        sub_stop(sub);
        rc = report_mqtt(o, sub, &pr);
    }
    sub_free(sub);
    return rc;
}

int
main(int argc, char **argv)
{
    struct lg_opts o;
    tool_loop_t *loop;
    int rc;

    setvbuf(stdout, NULL, _IOLBF, 0);
    rc = opts_parse(&o, argc, argv);
    if (rc)
        return rc > 0 ? 0 : 2;
    log_init(o.verbose ? LOG_LVL_DEBUG : LOG_LVL_NOTICE);
    coap_startup();
    log_hook_libraries();
    if (o.verbose >= 2)
        log_library_packets();
    if (o.selftest)
        return selftest(argv[0]);
    loop = tool_loop_new();
    if (!loop) {
        log_warn("epoll/signalfd");
        return 1;
    }
    rc = o.mqtt_mode ? run_mqtt(&o) : run_coap(&o, loop);
    coap_cleanup();
    tool_loop_free(loop);
    return rc;
}
