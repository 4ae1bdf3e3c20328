/*
 * config.c - libconfig file -> validated struct config, in stages (like
 * mosquitto's config__check and ntpd's -n): libconfig parses, a table-driven
 * walk type- and range-checks every setting with its line and rejects the
 * unknown ones, a cross-field pass follows, and config_check_files() opens
 * the files the config names.  Every problem is one line
 * "file:line: setting: reason", and loading goes on to find them all.
 *
 * This file holds the defaults, the walk, the cross-field checks and the
 * loading; the error lines, libconfig's flaws and the schema are in the
 * other files of the room (config_internal.h lists them).
 *
 * Layer: base (calls keystore and libconfig)
 */
#include <errno.h>
#include <fcntl.h>
#include <libconfig.h>
#include <limits.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "coap2mqtt/config.h"
#include "coap2mqtt/keystore.h"
#include "config_internal.h"

/* --- defaults and ownership ---------------------------------------------- */

static bool
set_str(char **field, const char *value)
{
    char *dup = value ? strdup(value) : NULL;

    if (value && dup == NULL)
        return false;
    free(*field);
    *field = dup;
    return true;
}

static bool
config_defaults(struct config *cfg, const char *path)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->coap.max_sessions = 0;
    cfg->coap.max_handshakes = 1000;
    cfg->coap.listen_sockets = 1;
    cfg->coap.session_timeout = 300;
    cfg->coap.max_payload = 65536;
    cfg->coap.max_request_rate = 100;
    cfg->rd.default_lifetime = 90000;
    cfg->rd.min_lifetime = 1;
    cfg->rd.max_lifetime = 31536000;
    cfg->rd.max_devices = 100000;
    cfg->rd.max_unauthenticated = -1;   /* resolved in check_cross */
    cfg->rd.forget_after = 86400;
    cfg->mqtt.port = 1883;
    cfg->mqtt.keepalive = 30;
    cfg->mqtt.qos_con = 1;
    cfg->mqtt.qos_non = 0;
    cfg->mqtt.stats_interval = 60;
    cfg->mqtt.devices_interval = 30;
    cfg->mqtt.reconnect_min = 1;
    cfg->mqtt.reconnect_max = 60;
    cfg->mqtt.session_expiry = 86400;
    cfg->mqtt.max_inflight = 256;
    cfg->mqtt.connections = 1;
    cfg->mqtt.refused_retries = 5;
    cfg->commands.ttl = 300;
    cfg->commands.max_queued = 16;
    cfg->queue.max_messages = 100000;
    cfg->queue.spool = true;
    cfg->queue.spool_max_mb = 1024;
    cfg->queue.fsync_interval = 100;
    cfg->audit.journal = true;
    cfg->discovery.interval = 300;
    return set_str(&cfg->path, path) &&
           set_str(&cfg->state_dir, "/var/lib/coap2mqtt") &&
           set_str(&cfg->mqtt.host, "localhost") &&
           set_str(&cfg->mqtt.protocol, "auto") &&
           set_str(&cfg->mqtt.base_topic, "coap2mqtt") &&
           set_str(&cfg->mqtt.client_id, "coap2mqtt") &&
           set_str(&cfg->commands.offline, "queue") &&
           set_str(&cfg->homeassistant.prefix, "homeassistant");
}

static void
free_list(char ***list, int *n)
{
    int i;

    for (i = 0; i < *n; i++)
        free((*list)[i]);
    free(*list);
    *list = NULL;
    *n = 0;
}

void
config_free(struct config *cfg)
{
    if (cfg == NULL)
        return;
    free_list(&cfg->coap.listen, &cfg->coap.n_listen);
    free_list(&cfg->coap.plain_listen, &cfg->coap.n_plain_listen);
    free(cfg->coap.psk_file);
    free(cfg->coap.ca_file);
    free(cfg->coap.cert_file);
    free(cfg->coap.key_file);
    free(cfg->coap.crl_file);
    free(cfg->mqtt.host);
    free(cfg->mqtt.protocol);
    free(cfg->mqtt.base_topic);
    free(cfg->mqtt.response_topic_prefix);
    free(cfg->mqtt.client_id);
    free(cfg->mqtt.instance);
    free(cfg->commands.offline);
    free(cfg->mqtt.username);
    free(cfg->mqtt.password_file);
    free(cfg->mqtt.tls_ca_file);
    free(cfg->mqtt.tls_cert_file);
    free(cfg->mqtt.tls_key_file);
    free(cfg->mqtt.tls_version);
    free(cfg->mqtt.tls_ciphers);
    free(cfg->homeassistant.prefix);
    free(cfg->log_level);
    free(cfg->stats.textfile);
    free(cfg->queue.durability);
    free(cfg->state_dir);
    free(cfg->discovery.interface);
    free(cfg->path);
    config__free_devices(cfg);
    config__free_oscore(cfg);
    memset(cfg, 0, sizeof(*cfg));
}

/* --- the walk -------------------------------------------------------------- */

static void *
field(struct ctx *c, size_t off)
{
    return (char *)c->cfg + off;
}

static void
load_int(struct ctx *c, const config_setting_t *s, const char *name,
         const struct item *it)
{
    int type = config_setting_type(s);
    const char *big = NULL;
    long long v;

    if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64) {
        config__serr(c, s, name, "must be an integer, got %s",
                     config__type_name(type));
        return;
    }
    if (type == CONFIG_TYPE_INT) {
        v = config_setting_get_int(s);
        big = config__truncated_literal(c, s, (int)v);
    } else {
        v = config_setting_get_int64(s);
    }
    if (big || v < it->min || v > it->max) {
        if (big)
            config__serr(c, s, name, "must be %lld..%lld, got %s", it->min,
                         it->max, big);
        else
            config__serr(c, s, name, "must be %lld..%lld, got %lld", it->min,
                         it->max, v);
        return;
    }
    *(int *)field(c, it->off) = (int)v;
}

static void
load_str(struct ctx *c, const config_setting_t *s, const char *name,
         const struct item *it)
{
    int type = config_setting_type(s);
    const char *v, *why;
    char q[128];

    if (type != CONFIG_TYPE_STRING) {
        config__serr(c, s, name, "must be a string, got %s",
                     config__type_name(type));
        return;
    }
    v = config_setting_get_string(s);
    if ((why = it->check(v)) != NULL) {
        config__serr(c, s, name, "%s, got %s", why,
                     config__quote(v, q, sizeof(q)));
        return;
    }
    if (!set_str(field(c, it->off), v))
        config__serr(c, s, name, "out of memory");
}

/* Checks one element of a listen list; returns its string or NULL. */
static const char *
addr_elem(struct ctx *c, const config_setting_t *e, const char *name, int i)
{
    const config_setting_t *prev;
    char ename[160], q[128];
    const char *v, *why;
    int j;

    snprintf(ename, sizeof(ename), "%s[%d]", name, i);
    if (config_setting_type(e) != CONFIG_TYPE_STRING) {
        config__serr(c, e, ename, "must be a string, got %s",
                     config__type_name(config_setting_type(e)));
        return NULL;
    }
    v = config_setting_get_string(e);
    if ((why = config__check_addr(v)) != NULL) {
        config__serr(c, e, ename, "%s, got %s", why,
                     config__quote(v, q, sizeof(q)));
        return NULL;
    }
    for (j = 0; j < i; j++) {
        prev = config_setting_get_elem(config_setting_parent(e), (unsigned)j);
        if (config_setting_type(prev) == CONFIG_TYPE_STRING &&
            strcmp(config_setting_get_string(prev), v) == 0) {
            config__serr(c, e, ename, "%s is listed twice",
                         config__quote(v, q, sizeof(q)));
            return NULL;
        }
    }
    return v;
}

static void
load_addrs(struct ctx *c, const config_setting_t *s, const char *name,
           const struct item *it)
{
    int type = config_setting_type(s), n = config_setting_length(s), i, ok = 0;
    char ***list = field(c, it->off);
    int *count = field(c, it->off_n);
    const char *v;

    if (type != CONFIG_TYPE_ARRAY && type != CONFIG_TYPE_LIST) {
        config__serr(c, s, name, "must be a list of addresses like "
                     "[ \"0.0.0.0:5684\", \"[::]:5684\" ], got %s",
                     config__type_name(type));
        return;
    }
    if (n > CONF_MAX_ADDRS) {
        config__serr(c, s, name, "at most %d addresses, got %d",
                     CONF_MAX_ADDRS, n);
        return;
    }
    free_list(list, count);
    if (n > 0 && (*list = calloc((size_t)n, sizeof(**list))) == NULL) {
        config__serr(c, s, name, "out of memory");
        return;
    }
    for (i = 0; i < n; i++) {
        if ((v = addr_elem(c, config_setting_get_elem(s, (unsigned)i), name, i)) == NULL)
            continue;
        if (((*list)[ok] = strdup(v)) == NULL) {
            config__serr(c, s, name, "out of memory");
            break;
        }
        *count = ++ok;
    }
}

static void load_group(struct ctx *c, const config_setting_t *g,
                       const char *prefix, const struct item *items);

static void
load_item(struct ctx *c, const config_setting_t *s, const char *name,
          const struct item *it)
{
    int type = config_setting_type(s);

    switch (it->kind) {
    case K_INT:
        load_int(c, s, name, it);
        break;
    case K_BOOL:
        if (type != CONFIG_TYPE_BOOL)
            config__serr(c, s, name, "must be true or false, got %s",
                         config__type_name(type));
        else
            *(bool *)field(c, it->off) = config_setting_get_bool(s);
        break;
    case K_STR:
        load_str(c, s, name, it);
        break;
    case K_ADDRS:
        load_addrs(c, s, name, it);
        break;
    case K_DEVICES:
        config__load_devices(c, s, name);
        break;
    case K_OSCORE:
        config__load_oscore(c, s, name);
        break;
    case K_GROUP:
        if (type != CONFIG_TYPE_GROUP)
            config__serr(c, s, name, "must be a group { ... }, got %s",
                         config__type_name(type));
        else
            load_group(c, s, name, it->sub);
        break;
    }
}

static void
load_group(struct ctx *c, const config_setting_t *g, const char *prefix,
           const struct item *items)
{
    const config_setting_t *s;
    const struct item *it;
    const char *sname;
    char name[128];
    unsigned i;

    for (i = 0; (s = config_setting_get_elem(g, i)) != NULL; i++) {
        sname = config_setting_name(s);
        snprintf(name, sizeof(name), "%s%s%s", prefix, *prefix ? "." : "",
                 sname ? sname : "?");
        for (it = items; it->name; it++)
            if (sname && strcmp(it->name, sname) == 0)
                break;
        if (it->name == NULL)
            config__serr(c, s, name, "unknown setting");
        else
            load_item(c, s, name, it);
    }
}

/* --- cross-field checks --------------------------------------------------- */

/* The setting at 'name', or the closest enclosing group that exists. */
static const config_setting_t *
near(struct ctx *c, const char *name)
{
    const config_setting_t *s = config_lookup(&c->lc, name);
    char group[64];
    const char *dot;

    if (s == NULL && (dot = strchr(name, '.')) != NULL &&
        (size_t)(dot - name) < sizeof(group)) {
        memcpy(group, name, (size_t)(dot - name));
        group[dot - name] = '\0';
        s = config_lookup(&c->lc, group);
    }
    return s;
}

static bool
is_set(struct ctx *c, const char *name)
{
    return config_lookup(&c->lc, name) != NULL;
}

/* Elements the file gives a list (valid or not; a list of the wrong type
 * counts as one), so one bad entry does not also read as "no endpoint". */
static int
list_len(struct ctx *c, const char *name)
{
    const config_setting_t *s = config_lookup(&c->lc, name);

    if (s == NULL)
        return 0;
    return config_setting_is_aggregate(s) ? config_setting_length(s) : 1;
}

/* Presence is judged on the file, not on what survived the checks, so a
 * bad value is reported once and not again as a missing one. */
static void
check_coap(struct ctx *c)
{
    bool psk = is_set(c, "coap.psk_file"), ca = is_set(c, "coap.ca_file");
    bool cert = is_set(c, "coap.cert_file"), key = is_set(c, "coap.key_file");

    /* A gateway that only dials out needs no endpoint of its own. */
    if (list_len(c, "coap.listen") == 0 && list_len(c, "coap.plain_listen") == 0 &&
        list_len(c, "devices") == 0)
        config__serr(c, near(c, "coap.listen"), "coap.listen",
                     "no CoAP endpoint: set coap.listen (DTLS) or "
                     "coap.plain_listen");
    if (cert && !key)
        config__serr(c, near(c, "coap.cert_file"), "coap.cert_file",
                     "needs coap.key_file as well");
    if (key && !cert)
        config__serr(c, near(c, "coap.key_file"), "coap.key_file",
                     "needs coap.cert_file as well");
    if (ca && !cert && !key)
        config__serr(c, near(c, "coap.ca_file"), "coap.ca_file",
                     "needs the gateway's own coap.cert_file and "
                     "coap.key_file");
    if (is_set(c, "mqtt.tls_cert_file") != is_set(c, "mqtt.tls_key_file"))
        config__serr(c, near(c, "mqtt.tls_cert_file"), "mqtt.tls_cert_file",
                     "mqtt.tls_cert_file and mqtt.tls_key_file go together");
    if ((is_set(c, "mqtt.tls_cert_file") || is_set(c, "mqtt.tls_version") ||
         is_set(c, "mqtt.tls_ciphers")) && !is_set(c, "mqtt.tls_ca_file"))
        config__serr(c, near(c, "mqtt.tls_ca_file"), "mqtt.tls_ca_file",
                     "TLS to the broker needs mqtt.tls_ca_file "
                     "(the CA to verify it with)");
    if (is_set(c, "coap.crl_file") && !ca)
        config__serr(c, near(c, "coap.crl_file"), "coap.crl_file",
                     "needs coap.ca_file (the CA whose revocations it lists)");
    if (list_len(c, "coap.listen") > 0 && !psk && !(cert && key))
        config__serr(c, near(c, "coap.listen"), "coap.listen", "DTLS needs "
                     "coap.psk_file, or coap.cert_file and coap.key_file");
}

/* lo <= hi, blaming whichever of the two the file sets (lo first). */
static void
check_order(struct ctx *c, const char *lo_name, int lo, const char *hi_name,
            int hi)
{
    if (lo <= hi)
        return;
    if (is_set(c, lo_name) || !is_set(c, hi_name))
        config__serr(c, near(c, lo_name), lo_name,
                     "must not exceed %s (%d), got %d", hi_name, hi, lo);
    else
        config__serr(c, near(c, hi_name), hi_name,
                     "must be at least %s (%d), got %d", lo_name, lo, hi);
}

/* Plain CoAP's share of the registry: at most all of it; half when unset,
 * so authenticated devices always keep room of their own. */
static void
check_share(struct ctx *c)
{
    struct config_rd *rd = &c->cfg->rd;

    if (rd->max_unauthenticated < 0)
        rd->max_unauthenticated = rd->max_devices / 2;
    else if (rd->max_unauthenticated > rd->max_devices)
        config__serr(c, near(c, "rd.max_unauthenticated"), "rd.max_unauthenticated",
                     "must not exceed rd.max_devices (%d), got %d",
                     rd->max_devices, rd->max_unauthenticated);
}

/* Two instances must never share a client id (the broker would kick one
 * out for the other, endlessly): left unset, it is derived from the
 * instance name. */
static void
check_instance_id(struct ctx *c)
{
    struct config_mqtt *mq = &c->cfg->mqtt;
    char *id;

    if (!mq->instance || is_set(c, "mqtt.client_id"))
        return;
    if (asprintf(&id, "%s-%s", mq->client_id, mq->instance) < 0)
        return;
    free(mq->client_id);
    mq->client_id = id;
}

/* Multicast discovery is for plain CoAP labs: nobody who answers a group
 * is authenticated, so it is refused unless plain CoAP is on already. */
static void
check_discovery(struct ctx *c)
{
    const struct config_discovery *d = &c->cfg->discovery;

    if (!d->multicast)
        return;
    if (list_len(c, "coap.plain_listen") == 0)
        config__serr(c, near(c, "discovery.multicast"), "discovery.multicast",
                     "needs plain CoAP (coap.plain_listen): devices found by "
                     "multicast are reached over unauthenticated CoAP");
    if (!is_set(c, "discovery.interface"))
        config__serr(c, near(c, "discovery.multicast"), "discovery.interface",
                     "required with discovery.multicast = true (the interface "
                     "the probes go out on)");
}

static void
check_cross(struct ctx *c)
{
    const struct config_rd *rd = &c->cfg->rd;
    const struct config_mqtt *mq = &c->cfg->mqtt;

    check_coap(c);
    check_order(c, "rd.min_lifetime", rd->min_lifetime,
                "rd.max_lifetime", rd->max_lifetime);
    if (rd->min_lifetime <= rd->max_lifetime) {
        if (is_set(c, "rd.default_lifetime") &&
            (rd->default_lifetime < rd->min_lifetime ||
             rd->default_lifetime > rd->max_lifetime))
            config__serr(c, near(c, "rd.default_lifetime"),
                         "rd.default_lifetime",
                         "must be within rd.min_lifetime..rd.max_lifetime "
                         "(%d..%d), got %d", rd->min_lifetime,
                         rd->max_lifetime, rd->default_lifetime);
        else {
            check_order(c, "rd.min_lifetime", rd->min_lifetime,
                        "rd.default_lifetime", rd->default_lifetime);
            check_order(c, "rd.default_lifetime", rd->default_lifetime,
                        "rd.max_lifetime", rd->max_lifetime);
        }
    }
    check_order(c, "mqtt.reconnect_min", mq->reconnect_min,
                "mqtt.reconnect_max", mq->reconnect_max);
    if (c->cfg->stats.textfile && mq->stats_interval == 0)
        config__serr(c, near(c, "stats.textfile"), "stats.textfile",
                     "needs mqtt.stats_interval > 0 (how often it is rewritten)");
    check_share(c);
    check_instance_id(c);
    config__check_devices(c);
    check_discovery(c);
    config__check_oscore(c);
}

/* --- loading --------------------------------------------------------------- */

static void
report_syntax(struct ctx *c)
{
    const char *f = config_error_file(&c->lc);
    char buf[PATH_MAX + 64], line[LINE_MAX_OUT];
    const char *dir = config_get_include_dir(&c->lc);

    if (f == NULL || *f == '\0')
        f = c->path;
    else if (f[0] != '/' && dir) {
        snprintf(buf, sizeof(buf), "%s/%s", dir, f);
        f = buf;
    }
    snprintf(line, sizeof(line), "%s:%d: syntax: %s", f,
             config_error_line(&c->lc), config_error_text(&c->lc));
    config__emit(c, line);
}

static void
report_unreadable(struct ctx *c, int err)
{
    char line[LINE_MAX_OUT];

    snprintf(line, sizeof(line), "%s: cannot read: %s", c->path,
             err == EFBIG ? "larger than 1 MiB" : strerror(err));
    config__emit(c, line);
}

/* @include "x.conf" is resolved next to the config file, not the cwd. */
static void
set_include_dir(struct ctx *c)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(c->path, '/');

    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == c->path)
        snprintf(dir, sizeof(dir), "/");
    else
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - c->path), c->path);
    config_set_include_dir(&c->lc, dir);
}

static void
ctx_done(struct ctx *c)
{
    size_t i;

    for (i = 0; i < c->n_big; i++)
        free(c->big[i].file);
    for (i = 0; i < c->n_scanned; i++)
        free(c->scanned[i]);
    free(c->big);
    free(c->scanned);
    config_destroy(&c->lc);
}

/* Parses 'text' (already read from c->path) and walks it. */
static void
load_text(struct ctx *c, const char *text, size_t len)
{
    const char *nul = memchr(text, '\0', len);
    char line[LINE_MAX_OUT];
    unsigned ln = 1;
    const char *p;

    if (nul) {
        for (p = text; p < nul; p++)
            ln += *p == '\n';
        snprintf(line, sizeof(line), "%s:%u: syntax: NUL byte in file",
                 c->path, ln);
        config__emit(c, line);
        return;
    }
    config__scan_big(c, "", text, len);
    if (config__check_includes(c, c->path, text, len, 0) < 0)
        return;
    if (config_read_string(&c->lc, text) != CONFIG_TRUE) {
        report_syntax(c);
        return;
    }
    load_group(c, config_root_setting(&c->lc), "", config__root_items);
    check_cross(c);
}

int
config_load(const char *path, struct config *cfg, config_report_fn report,
            void *arg)
{
    struct ctx c = { path, report, arg, 0, { 0 }, cfg, NULL, 0, NULL, 0 };
    char line[LINE_MAX_OUT];
    size_t len;
    char *text;

    if (!config_defaults(cfg, path)) {
        snprintf(line, sizeof(line), "%s: out of memory", path);
        config__emit(&c, line);
        return c.errors;
    }
    if ((text = config__slurp(path, &len)) == NULL) {
        report_unreadable(&c, errno);
        return c.errors;
    }
    config_init(&c.lc);
    set_include_dir(&c);
    load_text(&c, text, len);
    free(text);
    ctx_done(&c);
    return c.errors;
}

/* --- the files a config names ---------------------------------------------- */

/* Carries a keystore's "path:line: reason" lines under the config's own
 * "conf:line: coap.psk_file: " prefix. */
struct prefixed {
    struct ctx *c;
    const config_setting_t *s;
    const char *name;
};

static void
prefixed_report(void *arg, const char *line)
{
    struct prefixed *p = arg;

    config__serr(p->c, p->s, p->name, "%s", line);
}

static void
check_psk_file(struct ctx *c, const struct config *cfg, const char *path)
{
    struct prefixed p = { c, near(c, "coap.psk_file"), "coap.psk_file" };
    int before = c->errors;
    keystore_t *ks = keystore_load(path, prefixed_report, &p);

    if (ks == NULL && c->errors == before)
        config__serr(c, p.s, p.name, "%s: cannot load", path);
    if (ks)
        config__check_device_keys(c, cfg, ks);
    keystore_free(ks);
}

/* Opens like the daemon will (a FIFO must not hang -t) and, for the MQTT
 * password, insists on a non-empty first line. */
static void
check_readable(struct ctx *c, const char *name, const char *path,
               bool first_line)
{
    const config_setting_t *s = near(c, name);
    struct stat st;
    char buf[2];
    int fd;

    if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) < 0) {
        config__serr(c, s, name, "%s: %s", path, strerror(errno));
        return;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        config__serr(c, s, name, "%s: not a regular file", path);
    else if (first_line && (read(fd, buf, 1) != 1 || buf[0] == '\n' ||
                            buf[0] == '\r'))
        config__serr(c, s, name, "%s: the first line (the password) is empty",
                     path);
    close(fd);
}

static void
check_state_dir(struct ctx *c, const char *path)
{
    struct stat st;

    /* Missing is fine (systemd's StateDirectory= or the daemon makes it). */
    if (stat(path, &st) == 0 && !S_ISDIR(st.st_mode))
        config__serr(c, near(c, "state_dir"), "state_dir",
                     "%s: not a directory", path);
}

/* stats.textfile is replaced by a rename in its directory, which must be
 * there: the daemon does not make it (it is node_exporter's). */
static void
check_textfile_dir(struct ctx *c, const char *path)
{
    char *dir = strdup(path), *slash;
    struct stat st;

    if (!dir)
        return;
    if ((slash = strrchr(dir, '/')))
        slash[slash == dir ? 1 : 0] = '\0';
    if (stat(dir, &st) < 0)
        config__serr(c, near(c, "stats.textfile"), "stats.textfile", "%s: %s", dir,
                     strerror(errno));
    else if (!S_ISDIR(st.st_mode))
        config__serr(c, near(c, "stats.textfile"), "stats.textfile",
                     "%s: not a directory", dir);
    free(dir);
}

int
config_check_files(const struct config *cfg, config_report_fn report,
                   void *arg)
{
    struct ctx c = { cfg->path, report, arg, 0, { 0 }, NULL, NULL, 0, NULL, 0 };
    size_t len;
    char *text;

    if (c.path == NULL)     /* config_load() ran out of memory */
        c.path = "(config)";
    /* Re-read only to find the lines the settings are on. */
    config_init(&c.lc);
    set_include_dir(&c);
    if ((text = config__slurp(c.path, &len)) != NULL &&
        memchr(text, '\0', len) == NULL &&
        config__check_includes(&c, c.path, text, len, 0) == 0)
        config_read_string(&c.lc, text);
    free(text);
    if (cfg->coap.psk_file)
        check_psk_file(&c, cfg, cfg->coap.psk_file);
    if (cfg->coap.ca_file)
        check_readable(&c, "coap.ca_file", cfg->coap.ca_file, false);
    if (cfg->coap.crl_file)
        check_readable(&c, "coap.crl_file", cfg->coap.crl_file, false);
    if (cfg->coap.cert_file)
        check_readable(&c, "coap.cert_file", cfg->coap.cert_file, false);
    if (cfg->coap.key_file)
        check_readable(&c, "coap.key_file", cfg->coap.key_file, false);
    if (cfg->mqtt.password_file)
        check_readable(&c, "mqtt.password_file", cfg->mqtt.password_file, true);
    if (cfg->mqtt.tls_ca_file)
        check_readable(&c, "mqtt.tls_ca_file", cfg->mqtt.tls_ca_file, false);
    if (cfg->mqtt.tls_cert_file)
        check_readable(&c, "mqtt.tls_cert_file", cfg->mqtt.tls_cert_file, false);
    if (cfg->mqtt.tls_key_file)
        check_readable(&c, "mqtt.tls_key_file", cfg->mqtt.tls_key_file, false);
    if (cfg->state_dir)
        check_state_dir(&c, cfg->state_dir);
    if (cfg->stats.textfile)
        check_textfile_dir(&c, cfg->stats.textfile);
    if (cfg->discovery.multicast && cfg->discovery.interface &&
        if_nametoindex(cfg->discovery.interface) == 0)
        config__serr(&c, near(&c, "discovery.interface"), "discovery.interface",
                     "%s: no such network interface", cfg->discovery.interface);
    ctx_done(&c);
    return c.errors;
}

bool
config_durability_power(const struct config *cfg)
{
    return !cfg->queue.durability || strcmp(cfg->queue.durability, "process") != 0;
}
