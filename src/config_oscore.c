/*
 * config_oscore.c - the oscore list: OSCORE security contexts (RFC 8613),
 * and the oscore member of a devices entry that names one.  Each entry is
 * checked where it is written (id, the hex byte strings and their sizes,
 * aead, replay_window), then across entries and the devices list (names
 * that exist, a context dialled by one device only, recipient ids that
 * tell the devices that dial in apart).  A build whose libcoap has no
 * OSCORE (Debian 12's 4.3.1) refuses every oscore setting with the reason.
 * The names are a contract (docs/CONFIG.md): extend, never rename.
 *
 * Layer: base (calls topics)
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coap2mqtt/config.h"
#include "coap2mqtt/topics.h"
#include "config_internal.h"

#ifndef C2M_LIBCOAP_VERSION
#define C2M_LIBCOAP_VERSION "(unknown)"
#endif

#define OSCORE_MAX              1024    /* contexts: one per device at most */
#define REPLAY_WINDOW_DEFAULT   32      /* libcoap's and RFC 8613's */
#define AEAD_DEFAULT            "AES-CCM-16-64-128"

bool
config_oscore_available(void)
{
#ifdef C2M_HAVE_OSCORE
    return true;
#else
    return false;
#endif
}

static bool
refused_here(struct ctx *c, const config_setting_t *s, const char *name)
{
    if (config_oscore_available())
        return false;
#ifdef C2M_OSCORE_OFF
    config__serr(c, s, name, "this build was made without OSCORE (make OSCORE=0; "
                 "libcoap %s)", C2M_LIBCOAP_VERSION);
#else
    config__serr(c, s, name, "needs libcoap >= 4.3.2 built with OSCORE (this "
                 "build has libcoap %s)", C2M_LIBCOAP_VERSION);
#endif
    return true;
}

static void
free_entry(struct config_oscore *o)
{
    free(o->id);
    free(o->master_secret);
    free(o->master_salt);
    free(o->sender_id);
    free(o->recipient_id);
    free(o->id_context);
    free(o->aead);
}

void
config__free_oscore(struct config *cfg)
{
    for (int i = 0; i < cfg->n_oscore; i++)
        free_entry(&cfg->oscore[i]);
    free(cfg->oscore);
    cfg->oscore = NULL;
    cfg->n_oscore = 0;
}

/* --- one entry ------------------------------------------------------------ */

/* "hex" of min..max bytes, lower-cased into a new string; NULL (after
 * reporting) when it is not. */
static char *
hex_value(struct ctx *c, const config_setting_t *m, const char *name, size_t min,
          size_t max)
{
    const char *v;
    char *out;
    size_t n;

    if (config_setting_type(m) != CONFIG_TYPE_STRING) {
        config__serr(c, m, name, "must be a string of hex digits, got %s",
                     config__type_name(config_setting_type(m)));
        return NULL;
    }
    v = config_setting_get_string(m);
    n = strlen(v);
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)v[i])) {
            config__serr(c, m, name, "must be hex digits (two per byte), "
                         "found '%c'", isprint((unsigned char)v[i]) ? v[i] : '?');
            return NULL;
        }
    if (n % 2 || n / 2 < min || n / 2 > max) {
        config__serr(c, m, name, "must be %zu..%zu bytes written as hex (two "
                     "digits a byte), got %zu digits", min, max, n);
        return NULL;
    }
    if (!(out = strdup(v))) {
        config__serr(c, m, name, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = (char)tolower((unsigned char)out[i]);
    return out;
}

static void
set_hex(struct ctx *c, const config_setting_t *m, const char *name, char **to,
        size_t min, size_t max)
{
    char *v = hex_value(c, m, name, min, max);

    if (v) {
        free(*to);
        *to = v;
    }
}

static void
load_id(struct ctx *c, const config_setting_t *m, const char *name,
        struct config_oscore *o)
{
    const char *v;
    char q[128];

    if (config_setting_type(m) != CONFIG_TYPE_STRING) {
        config__serr(c, m, name, "must be a string, got %s",
                     config__type_name(config_setting_type(m)));
        return;
    }
    v = config_setting_get_string(m);
    if (!topic_id_valid(v, strlen(v)))
        config__serr(c, m, name, "must be a device id as a topic level (1..%d "
                     "bytes, no '/', '+', '#', control characters, not "
                     "\"bridge\"), got %s", TOPIC_ID_MAX,
                     config__quote(v, q, sizeof(q)));
    else if (!(o->id = strdup(v)))
        config__serr(c, m, name, "out of memory");
}

static void
load_aead(struct ctx *c, const config_setting_t *m, const char *name,
          struct config_oscore *o)
{
    const char *v = config_setting_type(m) == CONFIG_TYPE_STRING
                        ? config_setting_get_string(m) : NULL;

    if (!v || (strcmp(v, "AES-CCM-16-64-128") != 0 &&
               strcmp(v, "AES-CCM-16-64-256") != 0)) {
        config__serr(c, m, name, "must be \"AES-CCM-16-64-128\" (the default) "
                     "or \"AES-CCM-16-64-256\"");
        return;
    }
    free(o->aead);
    if (!(o->aead = strdup(v)))
        config__serr(c, m, name, "out of memory");
}

static void
load_member(struct ctx *c, const config_setting_t *m, const char *prefix,
            struct config_oscore *o)
{
    const char *mname = config_setting_name(m);
    char name[160];

    snprintf(name, sizeof(name), "%s.%s", prefix, mname ? mname : "?");
    if (!mname)
        config__serr(c, m, name, "unknown setting");
    else if (strcmp(mname, "id") == 0)
        load_id(c, m, name, o);
    else if (strcmp(mname, "master_secret") == 0)
        set_hex(c, m, name, &o->master_secret, CONFIG_OSCORE_SECRET_MIN,
                CONFIG_OSCORE_SECRET_MAX);
    else if (strcmp(mname, "master_salt") == 0)
        set_hex(c, m, name, &o->master_salt, 0, CONFIG_OSCORE_SALT_MAX);
    else if (strcmp(mname, "sender_id") == 0)
        set_hex(c, m, name, &o->sender_id, 0, CONFIG_OSCORE_ID_MAX);
    else if (strcmp(mname, "recipient_id") == 0)
        set_hex(c, m, name, &o->recipient_id, 0, CONFIG_OSCORE_ID_MAX);
    else if (strcmp(mname, "id_context") == 0)
        set_hex(c, m, name, &o->id_context, 0, CONFIG_OSCORE_CONTEXT_MAX);
    else if (strcmp(mname, "aead") == 0)
        load_aead(c, m, name, o);
    else if (strcmp(mname, "replay_window") == 0) {
        if (config_setting_type(m) != CONFIG_TYPE_INT ||
            config_setting_get_int(m) < 1 || config_setting_get_int(m) > 63)
            config__serr(c, m, name, "must be an integer 1..63 (sequence numbers "
                         "remembered below the highest seen)");
        else
            o->replay_window = config_setting_get_int(m);
    } else
        config__serr(c, m, name, "unknown setting (an oscore context has id, "
                     "master_secret, master_salt, sender_id, recipient_id, "
                     "id_context, aead, replay_window)");
}

static void
load_entry(struct ctx *c, const config_setting_t *e, const char *prefix)
{
    struct config_oscore o = { .replay_window = REPLAY_WINDOW_DEFAULT,
                               .line = config_setting_source_line(e) };
    const config_setting_t *m;
    int errors = c->errors;

    if (config_setting_type(e) != CONFIG_TYPE_GROUP) {
        config__serr(c, e, prefix, "must be a group { id = ...; master_secret = "
                     "...; sender_id = ...; recipient_id = ...; }, got %s",
                     config__type_name(config_setting_type(e)));
        return;
    }
    for (unsigned i = 0; (m = config_setting_get_elem(e, i)) != NULL; i++)
        load_member(c, m, prefix, &o);
    if (errors == c->errors && (!o.id || !o.master_secret || !o.sender_id ||
                                !o.recipient_id))
        config__serr(c, e, prefix, "needs id, master_secret, sender_id and "
                     "recipient_id");
    else if (errors == c->errors && strcmp(o.sender_id, o.recipient_id) == 0)
        config__serr(c, e, prefix, "sender_id and recipient_id must differ "
                     "(RFC 8613 3.3: they are the two ends' keys)");
    if (errors == c->errors && !o.aead && !(o.aead = strdup(AEAD_DEFAULT)))
        config__serr(c, e, prefix, "out of memory");
    if (errors != c->errors) {
        free_entry(&o);
        return;
    }
    c->cfg->oscore[c->cfg->n_oscore++] = o;
}

void
config__load_oscore(struct ctx *c, const config_setting_t *s, const char *name)
{
    int type = config_setting_type(s), n = config_setting_length(s);
    char prefix[64];

    if (refused_here(c, s, name))
        return;
    if (type != CONFIG_TYPE_LIST) {
        config__serr(c, s, name, "must be a list ( { id = ...; master_secret = "
                     "...; ... }, ... ), got %s", config__type_name(type));
        return;
    }
    if (n > OSCORE_MAX) {
        config__serr(c, s, name, "at most %d contexts, got %d", OSCORE_MAX, n);
        return;
    }
    config__free_oscore(c->cfg);
    if (n > 0 && !(c->cfg->oscore = calloc((size_t)n, sizeof(*c->cfg->oscore)))) {
        config__serr(c, s, name, "out of memory");
        return;
    }
    for (int i = 0; i < n; i++) {
        snprintf(prefix, sizeof(prefix), "%s[%d]", name, i);
        load_entry(c, config_setting_get_elem(s, (unsigned)i), prefix);
    }
}

void
config__load_device_oscore(struct ctx *c, const config_setting_t *m,
                           const char *name, char **to)
{
    const char *v;

    if (refused_here(c, m, name))
        return;
    if (config_setting_type(m) != CONFIG_TYPE_STRING) {
        config__serr(c, m, name, "must be the id of an oscore context, got %s",
                     config__type_name(config_setting_type(m)));
        return;
    }
    v = config_setting_get_string(m);
    free(*to);
    if (!(*to = strdup(v)))
        config__serr(c, m, name, "out of memory");
}

/* --- across settings ---------------------------------------------------------- */

const struct config_oscore *
config_oscore_find(const struct config *cfg, const char *id)
{
    for (int i = 0; id && i < cfg->n_oscore; i++)
        if (strcmp(cfg->oscore[i].id, id) == 0)
            return &cfg->oscore[i];
    return NULL;
}

bool
config_oscore_dialin(const struct config *cfg, const struct config_oscore *o)
{
    for (int i = 0; i < cfg->n_devices; i++)
        if (cfg->devices[i].oscore && strcmp(cfg->devices[i].oscore, o->id) == 0)
            return false;
    return true;
}

/* The file's setting for entry i of a list, for error lines. */
static const config_setting_t *
file_entry(struct ctx *c, const char *list, const char *key, const char *value)
{
    const config_setting_t *l = config_lookup(&c->lc, list), *e, *m;

    for (unsigned i = 0; l && (e = config_setting_get_elem(l, i)) != NULL; i++)
        if ((m = config_setting_get_member(e, key)) &&
            config_setting_type(m) == CONFIG_TYPE_STRING &&
            strcmp(config_setting_get_string(m), value) == 0)
            return e;
    return NULL;
}

static bool
str_same(const char *a, const char *b)
{
    return a && b ? strcmp(a, b) == 0 : a == b;
}

/* Devices that dial in are told apart by the Recipient ID (and ID
 * Context) of the request: two such contexts must differ in them. */
static void
check_dialin_pair(struct ctx *c, const struct config_oscore *a,
                  const struct config_oscore *b)
{
    const config_setting_t *e = file_entry(c, "oscore", "id", b->id);
    char name[64];

    if (strcmp(a->id, b->id) == 0) {
        snprintf(name, sizeof(name), "oscore[%d].id", e ? config_setting_index(e) : 0);
        config__serr(c, e ? config_setting_get_member(e, "id") : NULL, name,
                     "id \"%s\" is listed twice", b->id);
    } else if (config_oscore_dialin(c->cfg, a) && config_oscore_dialin(c->cfg, b) &&
               strcmp(a->recipient_id, b->recipient_id) == 0 &&
               str_same(a->id_context, b->id_context)) {
        snprintf(name, sizeof(name), "oscore[%d].recipient_id",
                 e ? config_setting_index(e) : 0);
        config__serr(c, e ? config_setting_get_member(e, "recipient_id") : NULL, name,
                     "\"%s\" is also the recipient_id of \"%s\": devices that dial "
                     "in are told apart by it (and id_context)", b->recipient_id,
                     a->id);
    }
}

static void
check_device_ref(struct ctx *c, int i)
{
    const struct config_device *d = &c->cfg->devices[i];
    const config_setting_t *e = file_entry(c, "devices", "id", d->id), *m;
    char name[64], q[128];

    if (!d->oscore)
        return;
    m = e ? config_setting_get_member(e, "oscore") : NULL;
    snprintf(name, sizeof(name), "devices[%d].oscore", e ? config_setting_index(e) : i);
    if (!config_oscore_find(c->cfg, d->oscore)) {
        config__serr(c, m ? m : e, name, "%s is not the id of an entry of the "
                     "oscore list", config__quote(d->oscore, q, sizeof(q)));
        return;
    }
    /* Two sessions on one context would send under the same key from the
     * same sequence numbers: nonce reuse (RFC 8613 7.2.1). */
    for (int j = 0; j < i; j++)
        if (c->cfg->devices[j].oscore &&
            strcmp(c->cfg->devices[j].oscore, d->oscore) == 0)
            config__serr(c, m ? m : e, name, "context %s is already used by "
                         "device \"%s\": one context, one device",
                         config__quote(d->oscore, q, sizeof(q)),
                         c->cfg->devices[j].id);
}

void
config__check_oscore(struct ctx *c)
{
    const struct config *cfg = c->cfg;
    bool dialin = false;

    for (int i = 0; i < cfg->n_devices; i++)
        check_device_ref(c, i);
    for (int i = 0; i < cfg->n_oscore; i++) {
        const struct config_oscore *o = &cfg->oscore[i];
        const config_setting_t *e = file_entry(c, "oscore", "id", o->id);
        char name[64];

        for (int j = 0; j < i; j++)
            check_dialin_pair(c, &cfg->oscore[j], o);
        if (!config_oscore_dialin(cfg, o))
            continue;
        dialin = true;
        snprintf(name, sizeof(name), "oscore[%d].id", e ? config_setting_index(e) : i);
        for (int j = 0; j < cfg->n_devices; j++)
            if (strcmp(cfg->devices[j].id, o->id) == 0)
                config__serr(c, e ? config_setting_get_member(e, "id") : NULL, name,
                             "\"%s\" is the id of a device the gateway dials (the "
                             "devices list): a device that dials in needs an id "
                             "of its own", o->id);
    }
    if (dialin && cfg->coap.n_plain_listen == 0)
        config__serr(c, config_lookup(&c->lc, "oscore"), "oscore",
                     "devices that dial in with OSCORE need coap.plain_listen "
                     "(OSCORE protects plain CoAP)");
}

/* --- for a reload ----------------------------------------------------------------- */

static bool
entry_same(const struct config_oscore *a, const struct config_oscore *b)
{
    return str_same(a->id, b->id) && str_same(a->master_secret, b->master_secret) &&
           str_same(a->master_salt, b->master_salt) &&
           str_same(a->sender_id, b->sender_id) &&
           str_same(a->recipient_id, b->recipient_id) &&
           str_same(a->id_context, b->id_context) && str_same(a->aead, b->aead) &&
           a->replay_window == b->replay_window;
}

bool
config_oscore_same(const struct config *a, const struct config *b)
{
    if (a->n_oscore != b->n_oscore)
        return false;
    for (int i = 0; i < a->n_oscore; i++)
        if (!entry_same(&a->oscore[i], &b->oscore[i]))
            return false;
    return true;
}

/* ( "soil-1", "pump-3" ) by id - never a key - cut short with "...". */
void
config__oscore_text(const struct config *cfg, char *buf, size_t cap)
{
    size_t len = (size_t)snprintf(buf, cap, "(");

    for (int i = 0; i < cfg->n_oscore && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s\"%s\"", i ? ", " : " ",
                                cfg->oscore[i].id);
    if (len < cap)
        snprintf(buf + len, cap - len, " )");
    if (len + 3 >= cap && cap > 4)
        memcpy(buf + cap - 4, "...", 4);
}
