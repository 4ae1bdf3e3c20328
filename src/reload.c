/*
 * reload.c - SIGHUP: the configuration file read again, and whatever can
 * change under a running gateway changes, without a DTLS session or an
 * observation lost.
 *
 * The new file is loaded and checked as for -t, the files it names
 * included.  With errors it is refused whole: every error line is logged
 * and nothing changes.  Otherwise it is compared with the running one
 * setting by setting (config_diff).  A setting in the table below is
 * moved into the running configuration, which the rooms read at the
 * moment of use, and the few that a room copied get a hook.  Any other
 * setting that changed keeps its old value and is logged by name as
 * needing a restart: sockets, files held open, the broker connection and
 * its will, and the topics retained state lives under.  Then the
 * credential files are read again, and sessions they no longer admit end.
 *
 * Layer: wiring (may call every room)
 */
#include <stdio.h>
#include <string.h>

#include "coap2mqtt/config.h"
#include "coap2mqtt/dialout.h"
#include "coap2mqtt/keystore.h"
#include "coap2mqtt/log.h"
#include "coap2mqtt/outq.h"
#include "coap2mqtt/reload.h"
#include "coap2mqtt/status.h"
#include "coap2mqtt/transport.h"

/* What a room must be told after its settings moved. */
enum hook {
    HOOK_NONE = 0,
    HOOK_LOG = 1 << 0,          /* the level log.c and the libraries use */
    HOOK_STATS = 1 << 1,        /* the bridge/stats timer */
    HOOK_COAP_LIMITS = 1 << 2,  /* libcoap's session and handshake limits */
    HOOK_OUTQ = 1 << 3,         /* the in-memory queue's bound */
    HOOK_DIALOUT = 1 << 4,      /* the devices dialled out to */
};

/* The settings a reload applies.  Everything else needs a restart.
 * Settings that a cross-field rule ties together (rd.*_lifetime,
 * mqtt.reconnect_min/max; the credential files; the broker's TLS files)
 * are all live or all restart-only, so the mix in force after a reload
 * still passes config.c's rules.  A new live setting goes here and in
 * docs/CONFIG.md's "Reload" tables. */
static const struct live {
    const char *name;
    enum hook hook;
} live_settings[] = {
    { "log_level", HOOK_LOG },
    { "coap.max_sessions", HOOK_COAP_LIMITS },
    { "coap.max_handshakes", HOOK_COAP_LIMITS },
    { "coap.session_timeout", HOOK_COAP_LIMITS },
    { "coap.max_payload", HOOK_NONE },
    { "coap.max_request_rate", HOOK_NONE },
    { "rd.default_lifetime", HOOK_NONE },
    { "rd.min_lifetime", HOOK_NONE },
    { "rd.max_lifetime", HOOK_NONE },
    { "rd.max_devices", HOOK_NONE },
    /* tied to rd.max_devices by a cross-field rule: live as it is */
    { "rd.max_unauthenticated", HOOK_NONE },
    { "rd.forget_after", HOOK_NONE },   /* read at every countdown and sweep */
    { "mqtt.response_topic_prefix", HOOK_NONE },
    { "mqtt.qos_con", HOOK_NONE },
    { "mqtt.qos_non", HOOK_NONE },
    { "mqtt.stats_interval", HOOK_STATS },
    { "mqtt.reconnect_min", HOOK_NONE },
    { "mqtt.reconnect_max", HOOK_NONE },
    { "mqtt.refused_retries", HOOK_NONE },
    { "mqtt.json", HOOK_NONE },
    { "commands.ttl", HOOK_NONE },
    { "commands.max_queued", HOOK_NONE },
    { "commands.offline", HOOK_NONE },  /* read at every command */
    { "queue.max_messages", HOOK_OUTQ },
    { "stats.textfile", HOOK_NONE },    /* read at every write */
    { "audit.journal", HOOK_NONE },     /* read at every record */
    { "audit.mqtt", HOOK_NONE },
    /* checked against the names of the credential files (restart-only):
     * live only while those stay (credential_names_kept) */
    { "devices", HOOK_DIALOUT },
};

struct reload {
    struct gw *gw;
    struct config *fresh;
    unsigned hooks;
    unsigned applied, restart;
};

static void
report_error(void *arg, const char *line)
{
    unsigned *n = arg;

    (*n)++;
    log_err("reload: %s", line);
}

static const struct live *
find_live(const char *name)
{
    for (size_t i = 0; i < sizeof(live_settings) / sizeof(live_settings[0]); i++)
        if (strcmp(live_settings[i].name, name) == 0)
            return &live_settings[i];
    return NULL;
}

static bool
same_name(const char *a, const char *b)
{
    return a && b ? strcmp(a, b) == 0 : a == b;
}

/* The devices list passed its checks against the new file's credential
 * settings; in force with the old ones it might not. */
static bool
credential_names_kept(const struct config *a, const struct config *b)
{
    return same_name(a->coap.psk_file, b->coap.psk_file) &&
           same_name(a->coap.cert_file, b->coap.cert_file) &&
           same_name(a->coap.key_file, b->coap.key_file) &&
           same_name(a->coap.ca_file, b->coap.ca_file);
}

/* One setting that differs: in force now, or logged as waiting. */
static void
on_changed(void *arg, const char *name)
{
    struct reload *r = arg;
    const struct live *l = find_live(name);
    char was[160], now[160];

    config_value_text(r->gw->cfg, name, was, sizeof(was));
    config_value_text(r->fresh, name, now, sizeof(now));
    /* An oscore entry a device names is only in force after a restart. */
    if (l && l->hook == HOOK_DIALOUT && (!credential_names_kept(r->gw->cfg, r->fresh) ||
                                         !config_oscore_same(r->gw->cfg, r->fresh)))
        l = NULL;
    if (!l) {
        r->restart++;
        log_warnx("reload: %s changed (%s -> %s); needs a restart, keeping "
                  "the old value", name, was, now);
        return;
    }
    config_take(r->gw->cfg, r->fresh, name);
    r->hooks |= l->hook;
    r->applied++;
    log_notice("reload: %s changed: %s -> %s", name, was, now);
}

void
reload_apply_log_level(const struct config *cfg, int verbose)
{
    int lvl = cfg->log_level ? config_log_level(cfg->log_level) : LOG_LVL_NOTICE;
    int cli = verbose >= 2 ? LOG_LVL_DEBUG : verbose ? LOG_LVL_INFO : 0;

    log_init((enum log_level)(cli > lvl ? cli : lvl));
    if (verbose < 3)            /* -vvv keeps libcoap's packet dump */
        log_hook_libraries();
}

static void
run_hooks(struct gw *gw, unsigned hooks, int verbose)
{
    if (hooks & HOOK_LOG)
        reload_apply_log_level(gw->cfg, verbose);
    if (hooks & HOOK_STATS)
        status_restart_stats(gw->status);
    if (hooks & HOOK_COAP_LIMITS)
        transport_apply_limits(gw->coap);
    if (hooks & HOOK_OUTQ)
        outq_set_max(gw->outq, (size_t)gw->cfg->queue.max_messages);
    if (hooks & HOOK_DIALOUT)
        dialout_apply(gw->dialout, gw->cfg);
}

static void
reload_keys(struct gw *gw)
{
    keystore_t *ks;

    if (!gw->cfg->coap.psk_file)
        return;
    /* config_check_files() has just read it: a failure here is a race
     * with whoever writes the file. */
    ks = keystore_load(gw->cfg->coap.psk_file, report_error, &(unsigned){ 0 });
    if (!ks) {
        log_warnx("reload: keeping the old PSK file contents");
        return;
    }
    transport_set_keystore(gw->coap, ks);
    keystore_free(gw->keys);
    gw->keys = ks;
    log_notice("reload: %zu PSK identities", keystore_count(ks));
}

/* New credentials, then the live sessions they no longer admit end. */
static void
reload_credentials(struct gw *gw)
{
    size_t closed;

    if (transport_reload_pki(gw->coap) < 0)
        log_warnx("reload: certificates not reloaded, keeping the old ones");
    else if (gw->cfg->coap.cert_file)
        log_notice("reload: certificates reloaded");
    reload_keys(gw);
    if ((closed = transport_close_revoked(gw->coap)))
        log_notice("reload: %zu sessions closed (credentials taken back)", closed);
}

int
reload_run(struct gw *gw, int verbose)
{
    struct config fresh;
    struct reload r = { gw, &fresh, 0, 0, 0 };
    unsigned errors = 0;

    log_notice("reload: reading %s", gw->cfg->path);
    if (config_load(gw->cfg->path, &fresh, report_error, &errors) == 0)
        config_check_files(&fresh, report_error, &errors);
    if (errors) {
        log_err("reload: %s refused (%u error%s); the running configuration "
                "stays in force", gw->cfg->path, errors, errors == 1 ? "" : "s");
        config_free(&fresh);
        return -1;
    }
    config_diff(gw->cfg, &fresh, on_changed, &r);
    run_hooks(gw, r.hooks, verbose);
    config_free(&fresh);
    reload_credentials(gw);
    log_notice("reload: done, %u setting%s applied, %u waiting for a restart",
               r.applied, r.applied == 1 ? "" : "s", r.restart);
    return 0;
}
