/*
 * config_devices.c - the devices list: the devices the gateway dials out
 * to.  Each entry is checked where it is written (id, uri, psk_identity,
 * observe, keepalive), then across entries and settings (a repeated id,
 * coaps without credentials), and against the PSK file by -t.  The names
 * in an entry are a contract (docs/CONFIG.md): extend, never rename.
 *
 * Layer: base (calls topics, hostport, keystore)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coap2mqtt/config.h"
#include "coap2mqtt/hostport.h"
#include "coap2mqtt/keystore.h"
#include "coap2mqtt/topics.h"
#include "config_internal.h"

#define DEVICES_MAX         1024    /* dialled out to: a lab, a plant floor */
#define OBSERVE_MAX         64      /* paths named in one observe list */
#define KEEPALIVE_DEFAULT   10

static void
free_device(struct config_device *d)
{
    for (int i = 0; i < d->n_observe; i++)
        free(d->observe[i]);
    free(d->observe);
    free(d->id);
    free(d->uri);
    free(d->psk_identity);
    free(d->oscore);
}

void
config_device_free(struct config_device *d)
{
    free_device(d);
    memset(d, 0, sizeof(*d));
}

static bool
copy_str(char **to, const char *from)
{
    return !from || (*to = strdup(from)) != NULL;
}

int
config_device_copy(struct config_device *to, const struct config_device *from)
{
    memset(to, 0, sizeof(*to));
    to->keepalive = from->keepalive;
    to->line = from->line;
    if (!copy_str(&to->id, from->id) || !copy_str(&to->uri, from->uri) ||
        !copy_str(&to->psk_identity, from->psk_identity) ||
        !copy_str(&to->oscore, from->oscore) ||
        (from->n_observe &&
         !(to->observe = calloc((size_t)from->n_observe, sizeof(*to->observe)))))
        goto fail;
    for (; to->n_observe < from->n_observe; to->n_observe++)
        if (!(to->observe[to->n_observe] = strdup(from->observe[to->n_observe])))
            goto fail;
    return 0;
fail:
    config_device_free(to);
    return -1;
}

void
config__free_devices(struct config *cfg)
{
    for (int i = 0; i < cfg->n_devices; i++)
        free_device(&cfg->devices[i]);
    free(cfg->devices);
    cfg->devices = NULL;
    cfg->n_devices = 0;
}

/* --- the URI ----------------------------------------------------------------- */

const char *
config_device_uri(const char *uri, bool *secure, char *host, size_t cap,
                         int *port)
{
    const char *rest, *p;
    char hp[300];
    bool v6;
    size_t n;

    if (strncmp(uri, "coaps://", 8) == 0) {
        *secure = true;
        rest = uri + 8;
    } else if (strncmp(uri, "coap://", 7) == 0) {
        *secure = false;
        rest = uri + 7;
    } else {
        return "must start with coap:// or coaps:// (no other scheme is "
               "supported)";
    }
    n = strcspn(rest, "/?#");
    if (rest[n] && strcmp(rest + n, "/") != 0)
        return "must name only a host and a port (no path, query or fragment): "
               "the resources come from /.well-known/core or observe";
    if (n == 0 || n >= sizeof(hp))
        return "has no host";
    memcpy(hp, rest, n);
    hp[n] = '\0';
    if (hostport_split(hp, host, cap, &p, &v6) < 0 || !*host)
        return "has a malformed host (an IPv6 address goes in brackets)";
    if (!v6 && strchr(host, ':'))
        return "has a malformed host (an IPv6 address goes in brackets)";
    if (strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                     "0123456789.-_:%") != strlen(host))
        return "has a malformed host";
    if (p && (*port = hostport_port(p, 1)) < 0)
        return "has a port outside 1..65535";
    if (!p)
        *port = *secure ? 5684 : 5683;
    return NULL;
}

/* --- one entry ----------------------------------------------------------------- */

static bool
dup_str(struct ctx *c, const config_setting_t *s, const char *name, char **to,
        const char *v)
{
    if ((*to = strdup(v)) == NULL)
        config__serr(c, s, name, "out of memory");
    return *to != NULL;
}

/* A string member; NULL (after reporting) when it is not a string. */
static const char *
member_str(struct ctx *c, const config_setting_t *m, const char *name)
{
    if (config_setting_type(m) != CONFIG_TYPE_STRING) {
        config__serr(c, m, name, "must be a string, got %s",
                     config__type_name(config_setting_type(m)));
        return NULL;
    }
    return config_setting_get_string(m);
}

static void
load_observe(struct ctx *c, const config_setting_t *m, const char *name,
             struct config_device *d)
{
    int type = config_setting_type(m), n = config_setting_length(m);
    char ename[200], q[128];
    const char *v;

    if (type != CONFIG_TYPE_ARRAY && type != CONFIG_TYPE_LIST) {
        config__serr(c, m, name, "must be a list of resource paths like "
                     "[ \"temperature\" ], got %s", config__type_name(type));
        return;
    }
    if (n < 1 || n > OBSERVE_MAX) {
        config__serr(c, m, name, "must list 1..%d paths, got %d", OBSERVE_MAX, n);
        return;
    }
    if (!(d->observe = calloc((size_t)n, sizeof(*d->observe)))) {
        config__serr(c, m, name, "out of memory");
        return;
    }
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(m, (unsigned)i);

        snprintf(ename, sizeof(ename), "%s[%d]", name, i);
        if (!(v = member_str(c, e, ename)))
            continue;
        if (!topic_path_valid(v, strlen(v))) {
            config__serr(c, e, ename, "must be a resource path like \"a/b\" "
                         "(no leading '/', no empty, '.' or '..' level, no '+' "
                         "or '#', not ending in set, get or result), got %s",
                         config__quote(v, q, sizeof(q)));
            continue;
        }
        if (dup_str(c, e, ename, &d->observe[d->n_observe], v))
            d->n_observe++;
    }
}

static void
load_member(struct ctx *c, const config_setting_t *m, const char *prefix,
            struct config_device *d)
{
    const char *mname = config_setting_name(m), *v, *why;
    char name[160], host[256], q[128];
    bool secure;
    int port;

    snprintf(name, sizeof(name), "%s.%s", prefix, mname ? mname : "?");
    if (mname && strcmp(mname, "observe") == 0) {
        load_observe(c, m, name, d);
    } else if (mname && strcmp(mname, "keepalive") == 0) {
        if (config_setting_type(m) != CONFIG_TYPE_INT ||
            config_setting_get_int(m) < 1 || config_setting_get_int(m) > 3600)
            config__serr(c, m, name, "must be an integer 1..3600 (seconds)");
        else
            d->keepalive = config_setting_get_int(m);
    } else if (mname && strcmp(mname, "oscore") == 0) {
        config__load_device_oscore(c, m, name, &d->oscore);
    } else if (!mname || (strcmp(mname, "id") != 0 && strcmp(mname, "uri") != 0 &&
                          strcmp(mname, "psk_identity") != 0)) {
        config__serr(c, m, name, "unknown setting (a device has id, uri, "
                     "psk_identity, oscore, observe, keepalive)");
    } else if (!(v = member_str(c, m, name))) {
        return;
    } else if (strcmp(mname, "id") == 0) {
        if (!topic_id_valid(v, strlen(v)))
            config__serr(c, m, name, "must be a device id as a topic level "
                         "(1..%d bytes, no '/', '+', '#', control characters, "
                         "not \"bridge\"), got %s", TOPIC_ID_MAX,
                         config__quote(v, q, sizeof(q)));
        else
            dup_str(c, m, name, &d->id, v);
    } else if (strcmp(mname, "uri") == 0) {
        if ((why = config_device_uri(v, &secure, host, sizeof(host), &port)))
            config__serr(c, m, name, "%s, got %s", why, config__quote(v, q, sizeof(q)));
        else
            dup_str(c, m, name, &d->uri, v);
    } else if (*v == '\0' || strlen(v) > 255) {
        config__serr(c, m, name, "must be 1..255 bytes");
    } else {
        dup_str(c, m, name, &d->psk_identity, v);
    }
}

/* A repeated id: the second one is the error, judged on the file (an
 * earlier entry with that id may have been refused for something else). */
static bool
id_taken(const config_setting_t *e, const char *id)
{
    const config_setting_t *list = config_setting_parent(e), *prev, *m;

    for (int i = 0; i < config_setting_index(e); i++) {
        prev = config_setting_get_elem(list, (unsigned)i);
        if (prev && (m = config_setting_get_member(prev, "id")) &&
            config_setting_type(m) == CONFIG_TYPE_STRING &&
            strcmp(config_setting_get_string(m), id) == 0)
            return true;
    }
    return false;
}

static void
load_device(struct ctx *c, const config_setting_t *e, const char *prefix)
{
    struct config_device d = { .keepalive = KEEPALIVE_DEFAULT,
                               .line = config_setting_source_line(e) };
    const config_setting_t *m;
    char q[128], idname[80];
    int errors = c->errors;

    snprintf(idname, sizeof(idname), "%s.id", prefix);

    if (config_setting_type(e) != CONFIG_TYPE_GROUP) {
        config__serr(c, e, prefix, "must be a group { id = ...; uri = ...; }, got %s",
                     config__type_name(config_setting_type(e)));
        return;
    }
    for (unsigned i = 0; (m = config_setting_get_elem(e, i)) != NULL; i++)
        load_member(c, m, prefix, &d);
    if (errors == c->errors && (!d.id || !d.uri))
        config__serr(c, e, prefix, "needs both id and uri");
    else if (d.id && id_taken(e, d.id))
        config__serr(c, config_setting_get_member(e, "id"), idname,
                     "id %s is listed twice", config__quote(d.id, q, sizeof(q)));
    if (errors != c->errors) {
        free_device(&d);
        return;
    }
    c->cfg->devices[c->cfg->n_devices++] = d;
}

void
config__load_devices(struct ctx *c, const config_setting_t *s, const char *name)
{
    int type = config_setting_type(s), n = config_setting_length(s);
    char prefix[64];

    if (type != CONFIG_TYPE_LIST) {
        config__serr(c, s, name, "must be a list ( { id = ...; uri = ...; }, ... ), "
                     "got %s", config__type_name(type));
        return;
    }
    if (n > DEVICES_MAX) {
        config__serr(c, s, name, "at most %d devices, got %d", DEVICES_MAX, n);
        return;
    }
    config__free_devices(c->cfg);
    if (n > 0 && !(c->cfg->devices = calloc((size_t)n, sizeof(*c->cfg->devices)))) {
        config__serr(c, s, name, "out of memory");
        return;
    }
    for (int i = 0; i < n; i++) {
        snprintf(prefix, sizeof(prefix), "%s[%d]", name, i);
        load_device(c, config_setting_get_elem(s, (unsigned)i), prefix);
    }
}

/* --- across settings ------------------------------------------------------------- */

/* The file's entry i, for error lines (NULL when the file has none). */
static const config_setting_t *
entry(struct ctx *c, int i)
{
    const config_setting_t *list = config_lookup(&c->lc, "devices");

    return list ? config_setting_get_elem(list, (unsigned)i) : NULL;
}

/* Entries are matched to the file by id: bad entries were left out. */
static const config_setting_t *
entry_of(struct ctx *c, const char *id)
{
    const config_setting_t *e, *m;

    for (int i = 0; (e = entry(c, i)) != NULL; i++)
        if ((m = config_setting_get_member(e, "id")) &&
            config_setting_type(m) == CONFIG_TYPE_STRING &&
            strcmp(config_setting_get_string(m), id) == 0)
            return e;
    return NULL;
}

/*
 * X.509 on a client session takes the context's one PKI setup (the
 * gateway's, with ca_file to verify the device).  And libcoap 4.3 (4.3.1
 * to 4.3.5 checked) offers only PSK cipher suites on every client session
 * once PSK is configured on the context, by coap.psk_file or by a PSK
 * device of this list: a certificate handshake then fails ("no shared
 * cipher").  So the two do not mix, and -t says so.
 */
static void
check_x509(struct ctx *c, const config_setting_t *e, const char *name, bool psk_used)
{
    if (!config_lookup(&c->lc, "coap.cert_file") || !config_lookup(&c->lc, "coap.key_file"))
        config__serr(c, e, name, "coaps needs psk_identity (its key in "
                     "coap.psk_file) or coap.cert_file and coap.key_file");
    else if (!config_lookup(&c->lc, "coap.ca_file"))
        config__serr(c, e, name, "coaps with a certificate needs coap.ca_file "
                     "(to verify the device's)");
    else if (psk_used)
        config__serr(c, e, name, "coaps with a certificate cannot be used "
                     "together with PSK (coap.psk_file, or a psk_identity): "
                     "libcoap 4.3 then offers only PSK cipher suites on "
                     "client sessions");
}

static bool
any_psk_identity(const struct config *cfg)
{
    for (int i = 0; i < cfg->n_devices; i++)
        if (cfg->devices[i].psk_identity)
            return true;
    return false;
}

void
config__check_devices(struct ctx *c)
{
    bool psk = config_lookup(&c->lc, "coap.psk_file") != NULL;
    bool psk_used = psk || any_psk_identity(c->cfg);
    char name[64];

    for (int i = 0; i < c->cfg->n_devices; i++) {
        const struct config_device *d = &c->cfg->devices[i];
        const config_setting_t *e = entry_of(c, d->id);
        bool secure = strncmp(d->uri, "coaps:", 6) == 0;

        snprintf(name, sizeof(name), "devices[%d]", e ? config_setting_index(e) : i);
        if (d->oscore && secure)
            config__serr(c, e, name, "oscore needs a coap:// uri (OSCORE is "
                         "not combined with DTLS here)");
        else if (secure && !d->psk_identity)
            check_x509(c, e, name, psk_used);
        else if (d->psk_identity && !secure)
            config__serr(c, e, name, "psk_identity needs a coaps:// uri");
        else if (d->psk_identity && !psk)
            config__serr(c, e, name, "psk_identity needs coap.psk_file (where "
                         "its key is)");
    }
}

/* -t: every psk_identity has its key in the PSK file. */
void
config__check_device_keys(struct ctx *c, const struct config *cfg,
                          const keystore_t *ks)
{
    char name[96], q[128];
    size_t klen;

    for (int i = 0; i < cfg->n_devices; i++) {
        const struct config_device *d = &cfg->devices[i];
        const config_setting_t *e = entry_of(c, d->id), *m;

        if (!d->psk_identity ||
            keystore_lookup(ks, (const uint8_t *)d->psk_identity,
                            strlen(d->psk_identity), &klen))
            continue;
        m = e ? config_setting_get_member(e, "psk_identity") : NULL;
        snprintf(name, sizeof(name), "devices[%d].psk_identity",
                 e ? config_setting_index(e) : i);
        config__serr(c, m ? m : e, name, "%s is not in coap.psk_file %s",
                     config__quote(d->psk_identity, q, sizeof(q)), cfg->coap.psk_file);
    }
}

/* --- for a reload ---------------------------------------------------------------- */

static bool
str_same(const char *a, const char *b)
{
    return a && b ? strcmp(a, b) == 0 : a == b;
}

bool
config_device_same(const struct config_device *a, const struct config_device *b)
{
    if (!str_same(a->id, b->id) || !str_same(a->uri, b->uri) ||
        !str_same(a->psk_identity, b->psk_identity) ||
        !str_same(a->oscore, b->oscore) ||
        a->keepalive != b->keepalive || a->n_observe != b->n_observe)
        return false;
    for (int i = 0; i < a->n_observe; i++)
        if (!str_same(a->observe[i], b->observe[i]))
            return false;
    return true;
}

bool
config__same_devices(const struct config *a, const struct config *b)
{
    if (a->n_devices != b->n_devices)
        return false;
    for (int i = 0; i < a->n_devices; i++)
        if (!config_device_same(&a->devices[i], &b->devices[i]))
            return false;
    return true;
}

/* ( "lab-1", "meter-7" ) by id, cut short with "..." when it does not fit. */
void
config__devices_text(const struct config *cfg, char *buf, size_t cap)
{
    size_t len = (size_t)snprintf(buf, cap, "(");

    for (int i = 0; i < cfg->n_devices && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s\"%s\"", i ? ", " : " ",
                                cfg->devices[i].id);
    if (len < cap)
        snprintf(buf + len, cap - len, " )");
    if (len + 3 >= cap && cap > 4)
        memcpy(buf + cap - 4, "...", 4);
}
