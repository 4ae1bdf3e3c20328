/*
 * sensor.c - one simulated sensor's life: boot, periodic readings, a deep
 * sleep, a reboot, reconnects.  It sits above session.c and resources.c:
 * it calls them, and what they see inside libcoap's callbacks (a lost
 * session, a registration answered, a PUT) comes back through the
 * sensor_events it gives each sensor; those only set state and timers.
 * Everything else here runs from the main loop, so it may free and
 * recreate the sensor's context.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coap2mqtt/log.h"
#include "sim.h"

#define BACKOFF_MAX_S 30

static const struct sensor_events sensor_events;

/* bind + n, carrying across octets (127.0.1.255 + 1 = 127.0.2.0). */
static void
local_address(const struct sim_opts *o, unsigned n, coap_address_t *a)
{
    if (o->have_bind) {
        tool_addr_step(&o->bind, n, a);
        return;
    }
    /* Any address of the gateway's family; only --port may be set. */
    coap_address_init(a);
    a->addr.sa.sa_family = o->gateway.addr.sa.sa_family;
    a->size = o->gateway.size;
}

int
sensor_init(struct sensor *s, struct sim *sim, unsigned n,
            const struct psk_table *psk)
{
    const struct sim_opts *o = &sim->opts;
    int klen;

    memset(s, 0, sizeof(*s));
    s->sim = sim;
    s->ev = &sensor_events;
    s->index = o->first + n;
    snprintf(s->id, sizeof(s->id), "%s%u", o->prefix, s->index);
    if (psk) {
        klen = psk_table_lookup(psk, s->id, s->key, sizeof(s->key));
        if (klen < 0)
            return -1;
        s->key_len = (size_t)klen;
    } else {
        memcpy(s->key, o->key, o->key_len);
        s->key_len = o->key_len;
    }
    local_address(o, n, &s->local);
    s->rng = 0x9E3779B97F4A7C15ULL * (s->index + 1);
    s->nres = o->kind->nres;
    for (size_t i = 0; i < s->nres; i++) {
        s->res[i].sensor = s;
        s->res[i].def = &o->kind->res[i];
        s->res[i].idx = (unsigned)i;
        s->res[i].next_ms = SIM_NEVER;
    }
    s->refresh_ms = s->retry_ms = s->wake_ms = SIM_NEVER;
    s->sleep_ms = s->reboot_ms = s->reg_retry_ms = s->roam_ms = SIM_NEVER;
    if (resources_reset(s) < 0) {
        resources_free(s);
        return -1;
    }
    return 0;
}

/* Push mode: next readings from now, resources staggered over an interval. */
static void
schedule_pushes(struct sensor *s, int64_t now)
{
    double interval = s->sim->opts.interval_ms;
    size_t periodic = 0, j = 0;

    for (size_t i = 0; i < s->nres; i++)
        periodic += !s->res[i].def->writable;
    /* Stagger the resources over one interval. */
    for (size_t i = 0; i < s->nres; i++) {
        struct res_state *r = &s->res[i];
        if (!r->def->writable)
            r->next_ms = now + (int64_t)(interval * (double)j++ / (double)periodic);
    }
}

/* Session trouble: an ERROR line, then a reconnect after a growing backoff. */
static void
lost(struct sensor *s, const char *why)
{
    unsigned b;

    if (s->state != SS_ACTIVE)
        return;
    s->sim->cnt.errors++;
    out_event(s->sim, true, "ERROR %s %s", s->id, why);
    s->state = SS_BACKOFF;
    b = s->backoff_s ? s->backoff_s : 1;
    s->retry_ms = tool_now_ms() + (int64_t)b * 1000 + (int64_t)(s->rng % 500);
    s->backoff_s = b * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S : b * 2;
}

/* The gateway has our registration: pushes start (again) where due. */
static void
registered(struct sensor *s, bool first, bool refresh)
{
    if (s->sim->opts.push && (first || !refresh))
        schedule_pushes(s, tool_now_ms());
}

/* The gateway wrote a resource: in push mode the new value goes out at once. */
static void
written(struct res_state *r)
{
    if (r->sensor->sim->opts.push)
        session_push(r->sensor, r);
}

static const struct sensor_events sensor_events = {
    .lost = lost,
    .registered = registered,
    .written = written,
};

/* The session and with it the libcoap resources (their values stay). */
static void
close_session(struct sensor *s, bool quiet)
{
    session_close(s, quiet);
    resources_detach(s);
}

/* A new session with the sensor's resources in its context. */
static int
open_session(struct sensor *s)
{
    if (session_open(s) < 0)
        return -1;
    if (resources_add(s) < 0) {
        close_session(s, true);
        return -1;
    }
    return 0;
}

/* Opens a session and registers (fresh) or refreshes (known to the gateway). */
static void
connect_and_register(struct sensor *s, int64_t now)
{
    const struct sim_opts *o = &s->sim->opts;

    if (open_session(s) < 0) {
        s->state = SS_ACTIVE;
        lost(s, "session-open-failed");
        return;
    }
    s->state = SS_ACTIVE;
    for (size_t i = 0; i < s->nres; i++)
        if (!o->push)
            s->res[i].next_ms = SIM_NEVER;   /* starts when observed */
    if (o->no_register) {
        if (o->push)
            schedule_pushes(s, now);
        return;
    }
    /* Pushes wait for the registration answer; a known sensor resumes. */
    if (o->push && s->registered)
        schedule_pushes(s, now);
    session_register(s, s->registered);
}

void
sensor_start(struct sensor *s, int64_t now)
{
    const struct sim_opts *o = &s->sim->opts;

    s->start_ms = now;
    if (o->sleep_after_s > 0)
        s->sleep_ms = now + (int64_t)(o->sleep_after_s * 1000);
    if (o->reboot_after_s > 0)
        s->reboot_ms = now + (int64_t)(o->reboot_after_s * 1000);
    if (o->roam_after_s > 0)
        s->roam_ms = now + (int64_t)(o->roam_after_s * 1000);
    connect_and_register(s, now);
}

static void
do_sleep(struct sensor *s, int64_t now)
{
    const struct sim_opts *o = &s->sim->opts;

    out_event(s->sim, true, "SLEEP %s", s->id);
    s->sim->cnt.sleeps++;
    close_session(s, true);
    s->state = SS_SLEEPING;
    s->wake_ms = now + (int64_t)(o->sleep_for_s * 1000);
    /* One sleep per run: tests need the sensor awake after it. */
    s->sleep_ms = SIM_NEVER;
}

static void
do_wake(struct sensor *s, int64_t now)
{
    out_event(s->sim, true, "WAKE %s", s->id);
    s->wake_ms = SIM_NEVER;
    connect_and_register(s, now);
}

static void
do_reboot(struct sensor *s, int64_t now)
{
    int port = session_local_port(s);

    out_event(s->sim, true, "REBOOT %s", s->id);
    s->sim->cnt.reboots++;
    s->reboot_ms = SIM_NEVER;
    close_session(s, true);
    /* RAM is gone: registration, seq counters, written values. */
    s->registered = false;
    s->location[0] = '\0';
    s->refresh_ms = s->reg_retry_ms = SIM_NEVER;
    s->backoff_s = 0;
    if (resources_reset(s) < 0)
        log_warnx("%s: out of memory resetting resources", s->id);
    s->reuse_port = port;
    connect_and_register(s, now);
}

/*
 * A NAT rebinding (or a tracker that changed networks): the old session
 * is dropped without a word, a new one opened from another source port,
 * and nothing registered: the gateway has to know the identity again.
 * Observed resources wait to be observed on the new session.
 */
static void
do_roam(struct sensor *s, int64_t now)
{
    const struct sim_opts *o = &s->sim->opts;

    out_event(s->sim, true, "ROAM %s", s->id);
    s->roam_ms = SIM_NEVER;
    close_session(s, true);
    if (open_session(s) < 0) {
        lost(s, "session-open-failed");
        return;
    }
    for (size_t i = 0; i < s->nres; i++)
        if (!o->push)
            s->res[i].next_ms = SIM_NEVER;   /* starts when observed */
    if (o->push)
        schedule_pushes(s, now);
}

/* One periodic resource falls due: notify observers or push. */
static void
reading_due(struct sensor *s, struct res_state *r, int64_t now)
{
    const struct sim_opts *o = &s->sim->opts;
    static int inflight_key;

    int64_t period = resources_period_ms(r);

    r->next_ms += period;
    /* After a stall (sleep, slow gateway) do not burst to catch up. */
    if (r->next_ms < now - period)
        r->next_ms = now + period;
    if (!r->def->writable && o->count_readings && r->readings >= o->count_readings) {
        r->next_ms = SIM_NEVER;
        return;
    }
    if (!o->push) {
        if (r->resource && coap_resource_notify_observers(r->resource, NULL))
            r->notify_pending = true;
        return;
    }
    if ((!s->registered && !o->no_register) || r->def->writable)
        return;
    if (s->push_inflight >= SIM_PUSH_INFLIGHT) {
        log_ratelimited(&inflight_key, "%s: %u pushes unanswered, skipping readings",
                        s->id, s->push_inflight);
        return;
    }
    if (resources_new_reading(r) == 0)
        session_push(s, r);
}

static int64_t
min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* Timers of a sensor that has a session; returns whether it did anything. */
static bool
active_tick(struct sensor *s, int64_t now)
{
    bool acted = false;

    if (!s->connected && now >= s->connect_deadline_ms) {
        lost(s, "handshake-timeout");
        return true;
    }
    if (now >= s->reboot_ms) {
        do_reboot(s, now);
        return true;
    }
    if (now >= s->roam_ms) {
        do_roam(s, now);
        return true;
    }
    if (now >= s->sleep_ms) {
        do_sleep(s, now);
        return true;
    }
    if (now >= s->reg_retry_ms && !s->reg_inflight) {
        session_register(s, false);
        acted = true;
    }
    if (s->registered && now >= s->refresh_ms && !s->reg_inflight) {
        s->refresh_ms = now + (int64_t)s->sim->opts.lifetime_s * 800;
        session_register(s, true);
        acted = true;
    }
    for (size_t i = 0; i < s->nres && s->state == SS_ACTIVE; i++) {
        if (now >= s->res[i].next_ms) {
            reading_due(s, &s->res[i], now);
            acted = true;
        }
    }
    return acted;
}

/* Runs the timers that are due; returns whether anything happened. */
static bool
sensor_timers(struct sensor *s, int64_t now)
{
    if (s->state == SS_BACKOFF && now >= s->retry_ms) {
        close_session(s, true);
        connect_and_register(s, now);
        return true;
    }
    if (s->state == SS_SLEEPING && now >= s->wake_ms) {
        do_wake(s, now);
        return true;
    }
    return s->state == SS_ACTIVE && active_tick(s, now);
}

/* When the next timer falls due. */
static int64_t
sensor_next(const struct sensor *s)
{
    int64_t next;

    switch (s->state) {
    case SS_BACKOFF:  return s->retry_ms;
    case SS_SLEEPING: return s->wake_ms;
    case SS_ACTIVE:   break;
    }
    next = min64(min64(s->reboot_ms, s->roam_ms), s->sleep_ms);
    if (!s->reg_inflight)
        next = min64(next, s->reg_retry_ms);
    if (!s->connected)
        next = min64(next, s->connect_deadline_ms);
    if (s->registered && !s->reg_inflight)
        next = min64(next, s->refresh_ms);
    for (size_t i = 0; i < s->nres; i++)
        next = min64(next, s->res[i].next_ms);
    if (s->ctx)
        next = min64(next, s->io_ms);
    return next;
}

/*
 * libcoap arms its context timer (DTLS handshake retransmissions, block
 * expiry) only inside coap_io_process(): run it after our own actions and
 * at least once a second, or a lost ClientHello would never be resent.
 */
int64_t
sensor_tick(struct sensor *s, int64_t now)
{
    bool acted = sensor_timers(s, now);

    if (s->ctx && (acted || now >= s->io_ms)) {
        s->io_ms = now + 1000;
        tool_ctx_process(s->ctx);
    }
    return sensor_next(s);
}

void
sensor_free(struct sensor *s)
{
    close_session(s, false);
    resources_free(s);
}
