/*
 * config.c - libconfig file -> validated struct config, in stages (like
 * mosquitto's config__check and ntpd's -n): libconfig parses, a table-driven
 * walk type- and range-checks every setting with its line and rejects the
 * unknown ones, a cross-field pass follows, and config_check_files() opens
 * the files the config names.  Every problem is one line
 * "file:line: setting: reason", and loading goes on to find them all.
 *
 * libconfig 1.5 (Debian 12) stores an integer literal that does not fit an
 * int truncated, silently ("port = 4294967297;" reads as 1).  A small scan
 * of the source finds such literals so they are reported, not believed.
 *
 * Layer: base (calls log and keystore)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libconfig.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "coap2mqtt/config.h"
#include "coap2mqtt/keystore.h"
#include "coap2mqtt/topics.h"

#define CONF_MAX_BYTES   (1024 * 1024)  /* a config is text, not a dump */
#define CONF_MAX_ADDRS   16             /* endpoints per listen list */
#define LINE_MAX_OUT     8192

/* An integer literal libconfig 1.5 would have truncated to 'as_int'. */
struct bigint {
    char *file;             /* libconfig's name for the file, "" = main */
    unsigned line;
    char name[64];          /* the setting name written before it */
    int as_int;
    bool used;
    char text[32];
};

struct ctx {
    const char *path;
    config_report_fn report;
    void *arg;
    int errors;
    config_t lc;
    struct config *cfg;
    struct bigint *big;
    size_t n_big;
    char **scanned;         /* files already scanned for big literals */
    size_t n_scanned;
};

#if defined(__has_feature)
#if __has_feature(address_sanitizer) && !defined(__SANITIZE_ADDRESS__)
#define __SANITIZE_ADDRESS__ 1      /* clang < 15 spells it this way */
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
/*
 * libconfig 1.5's parser leaks a string token that appears where the
 * grammar has no place for it ('host "x";', a typo an operator makes), and
 * in the sanitized build LeakSanitizer would turn "-t" exit 78 into 23.
 * The leak is in the library, bounded by the file size, and happens once
 * per load, so it is suppressed rather than allowed to mask real ones.
 */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_options(void);

const char *
__lsan_default_suppressions(void)
{
    return "leak:libconfig.so\n";
}

/* ...and quietly: "-t" output is the error lines, nothing else. */
const char *
__lsan_default_options(void)
{
    return "print_suppressions=0";
}
#endif

/* --- error lines --------------------------------------------------------- */

/* Error lines are exactly one line: control bytes from names become '?'. */
static void
emit(struct ctx *c, char *line)
{
    char *p;

    c->errors++;
    if (c->report == NULL)
        return;
    for (p = line; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    c->report(c->arg, line);
}

/* The file a setting came from: libconfig names included files as written,
 * relative to the include directory, and the main file not at all. */
static const char *
setting_file(const struct ctx *c, const config_setting_t *s, char *buf,
             size_t cap)
{
    const char *f = s ? config_setting_source_file(s) : NULL;
    const char *dir = config_get_include_dir(&c->lc);

    if (f == NULL || *f == '\0')
        return c->path;
    if (f[0] == '/' || dir == NULL)
        return f;
    snprintf(buf, cap, "%s/%s", dir, f);
    return buf;
}

/* Reports "file:line: name: reason" for setting s (no line when s is NULL
 * or the root, which has none). */
__attribute__((format(printf, 4, 5)))
static void
serr(struct ctx *c, const config_setting_t *s, const char *name,
     const char *fmt, ...)
{
    char file[PATH_MAX + 64], msg[1024], line[LINE_MAX_OUT];
    const char *f = setting_file(c, s, file, sizeof(file));
    unsigned ln = s ? config_setting_source_line(s) : 0;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (ln > 0)
        snprintf(line, sizeof(line), "%s:%u: %s: %s", f, ln, name, msg);
    else
        snprintf(line, sizeof(line), "%s: %s: %s", f, name, msg);
    emit(c, line);
}

/* A user's string for an error line: quoted, escaped, cut when long. */
static const char *
quote(const char *s, char *buf, size_t cap)
{
    size_t n = 0;
    unsigned char ch;

    buf[n++] = '"';
    for (; *s && n + 8 < cap; s++) {
        ch = (unsigned char)*s;
        if (ch < 0x20 || ch == 0x7f || ch == '"' || ch == '\\')
            n += (size_t)snprintf(buf + n, cap - n, "\\x%02x", ch);
        else
            buf[n++] = (char)ch;
    }
    if (*s)
        n += (size_t)snprintf(buf + n, cap - n, "...");
    snprintf(buf + n, cap - n, "\"");
    return buf;
}

static const char *
type_name(int type)
{
    switch (type) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:  return "an integer";
    case CONFIG_TYPE_FLOAT:  return "a float";
    case CONFIG_TYPE_STRING: return "a string";
    case CONFIG_TYPE_BOOL:   return "a boolean";
    case CONFIG_TYPE_ARRAY:  return "an array";
    case CONFIG_TYPE_LIST:   return "a list";
    case CONFIG_TYPE_GROUP:  return "a group";
    default:                 return "nothing";
    }
}

/* --- integer literals libconfig 1.5 truncates ----------------------------- */

static const char *
skip_string(const char *p, const char *end, unsigned *line)
{
    for (p++; p < end && *p != '"'; p++) {
        if (*p == '\n')
            (*line)++;
        if (*p == '\\' && p + 1 < end)
            p++;
    }
    return p < end ? p + 1 : end;
}

static const char *
skip_comment(const char *p, const char *end, unsigned *line)
{
    if (*p == '/' && p + 1 < end && p[1] == '*') {
        for (p += 2; p + 1 < end && !(p[0] == '*' && p[1] == '/'); p++)
            if (*p == '\n')
                (*line)++;
        return p + 1 < end ? p + 2 : end;
    }
    while (p < end && *p != '\n')
        p++;
    return p;
}

static void
note_big(struct ctx *c, const char *file, unsigned line, const char *name,
         size_t name_len, const char *tok, size_t len)
{
    char text[32];
    long long v;
    bool hex;
    struct bigint *nb;

    if (len >= sizeof(text) || tok[len - 1] == 'L' ||
        name_len >= sizeof(nb->name))
        return;     /* int64 literals keep their value; long names are unknown */
    memcpy(text, tok, len);
    text[len] = '\0';
    hex = len > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X');
    errno = 0;
    v = hex ? (long long)strtoull(text, NULL, 16) : strtoll(text, NULL, 10);
    if (errno == 0 && v >= INT_MIN && v <= INT_MAX)
        return;
    if ((nb = realloc(c->big, (c->n_big + 1) * sizeof(*nb))) == NULL)
        return;
    c->big = nb;
    nb += c->n_big;
    if ((nb->file = strdup(file)) == NULL)
        return;
    c->n_big++;
    nb->line = line;
    memcpy(nb->name, name, name_len);
    nb->name[name_len] = '\0';
    nb->used = false;
    /* what libconfig 1.5 stores: atoi() resp. (int)strtoul() */
    nb->as_int = hex ? (int)(uint32_t)strtoul(text, NULL, 16)
                     : (int)(uint32_t)(unsigned long)strtol(text, NULL, 10);
    memcpy(nb->text, text, len + 1);
}

static bool
is_num_start(const char *p, const char *end)
{
    if (*p >= '0' && *p <= '9')
        return true;
    return (*p == '-' || *p == '+') && p + 1 < end && p[1] >= '0' && p[1] <= '9';
}

/* Finds integer literals (not names, strings, comments or floats), each
 * with the name last written before it. */
static void
scan_big(struct ctx *c, const char *file, const char *p, size_t len)
{
    const char *end = p + len, *tok, *name = "";
    size_t name_len = 0;
    unsigned line = 1;

    while (p < end) {
        if (*p == '\n') {
            line++;
            p++;
        } else if (*p == '"') {
            p = skip_string(p, end, &line);
        } else if (*p == '#' || (*p == '/' && p + 1 < end &&
                                 (p[1] == '/' || p[1] == '*'))) {
            p = skip_comment(p, end, &line);
        } else if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                   *p == '*' || *p == '@') {
            name = p;
            while (p < end && (strchr("-_*@", *p) || (*p >= '0' && *p <= '9') ||
                   (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')))
                p++;
            name_len = (size_t)(p - name);
        } else if (is_num_start(p, end)) {
            tok = p++;
            while (p < end && (strchr(".+-_xX", *p) || (*p >= '0' && *p <= '9') ||
                   (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')))
                p++;
            if (!memchr(tok, '.', (size_t)(p - tok)) &&
                (memchr(tok, 'x', (size_t)(p - tok)) || memchr(tok, 'X', (size_t)(p - tok)) ||
                 (!memchr(tok, 'e', (size_t)(p - tok)) && !memchr(tok, 'E', (size_t)(p - tok)))))
                note_big(c, file, line, name, name_len, tok, (size_t)(p - tok));
        } else {
            p++;
        }
    }
}

/* Reads a whole (small) file; NULL and errno on failure. */
static char *
slurp(const char *path, size_t *len)
{
    struct stat st;
    char *buf = NULL;
    ssize_t n;
    int fd;

    if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) < 0)
        return NULL;
    if (fstat(fd, &st) < 0)
        goto fail;
    if (!S_ISREG(st.st_mode)) {
        errno = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
        goto fail;
    }
    if (st.st_size > CONF_MAX_BYTES) {
        errno = EFBIG;
        goto fail;
    }
    if ((buf = malloc((size_t)st.st_size + 1)) == NULL)
        goto fail;
    *len = 0;
    while ((n = read(fd, buf + *len, (size_t)st.st_size - *len)) > 0)
        *len += (size_t)n;
    if (n < 0)
        goto fail;
    buf[*len] = '\0';
    close(fd);
    return buf;
fail:
    n = errno;
    free(buf);
    close(fd);
    errno = (int)n;
    return NULL;
}

/* Scans an included file the first time one of its settings is checked. */
static void
scan_include(struct ctx *c, const config_setting_t *s, const char *label)
{
    char buf[PATH_MAX + 64], *text, **ns;
    size_t i, len;

    for (i = 0; i < c->n_scanned; i++)
        if (strcmp(c->scanned[i], label) == 0)
            return;
    if ((ns = realloc(c->scanned, (c->n_scanned + 1) * sizeof(*ns))) == NULL)
        return;
    c->scanned = ns;
    if ((ns[c->n_scanned] = strdup(label)) == NULL)
        return;
    c->n_scanned++;
    if ((text = slurp(setting_file(c, s, buf, sizeof(buf)), &len)) != NULL)
        scan_big(c, label, text, len);
    free(text);
}

/* The source text of an int setting if libconfig truncated it, else NULL. */
static const char *
truncated_literal(struct ctx *c, const config_setting_t *s, int value)
{
    const char *label = config_setting_source_file(s);
    const char *name = config_setting_name(s);
    unsigned line = config_setting_source_line(s);
    size_t i;

    if (label == NULL)
        label = "";
    if (*label)
        scan_include(c, s, label);
    for (i = 0; i < c->n_big; i++) {
        struct bigint *b = &c->big[i];

        if (!b->used && b->line == line && b->as_int == value &&
            name && strcmp(b->name, name) == 0 && strcmp(b->file, label) == 0) {
            b->used = true;
            return b->text;
        }
    }
    return NULL;
}

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
    cfg->coap.session_timeout = 300;
    cfg->coap.max_payload = 65536;
    cfg->coap.max_request_rate = 100;
    cfg->rd.default_lifetime = 90000;
    cfg->rd.min_lifetime = 1;
    cfg->rd.max_lifetime = 31536000;
    cfg->rd.max_devices = 100000;
    cfg->mqtt.port = 1883;
    cfg->mqtt.keepalive = 30;
    cfg->mqtt.qos_con = 1;
    cfg->mqtt.qos_non = 0;
    cfg->mqtt.stats_interval = 60;
    cfg->mqtt.reconnect_min = 1;
    cfg->mqtt.reconnect_max = 60;
    cfg->mqtt.session_expiry = 86400;
    cfg->mqtt.max_inflight = 256;
    cfg->commands.ttl = 300;
    cfg->commands.max_queued = 16;
    cfg->queue.max_messages = 100000;
    cfg->queue.spool = true;
    cfg->queue.spool_max_mb = 1024;
    cfg->queue.fsync_interval = 100;
    return set_str(&cfg->path, path) &&
           set_str(&cfg->state_dir, "/var/lib/coap2mqtt") &&
           set_str(&cfg->mqtt.host, "localhost") &&
           set_str(&cfg->mqtt.base_topic, "coap2mqtt") &&
           set_str(&cfg->mqtt.client_id, "coap2mqtt");
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
    free(cfg->mqtt.base_topic);
    free(cfg->mqtt.response_topic_prefix);
    free(cfg->mqtt.client_id);
    free(cfg->mqtt.username);
    free(cfg->mqtt.password_file);
    free(cfg->mqtt.tls_ca_file);
    free(cfg->mqtt.tls_cert_file);
    free(cfg->mqtt.tls_key_file);
    free(cfg->mqtt.tls_version);
    free(cfg->mqtt.tls_ciphers);
    free(cfg->state_dir);
    free(cfg->path);
    memset(cfg, 0, sizeof(*cfg));
}

/* --- value checks: NULL if fine, else why -------------------------------- */

static const char *
check_path(const char *v)
{
    if (*v == '\0' || strlen(v) >= PATH_MAX)
        return "must be a non-empty path";
    return NULL;
}

static const char *
check_tls_version(const char *v)
{
    if (strcmp(v, "tlsv1.2") != 0 && strcmp(v, "tlsv1.3") != 0)
        return "must be \"tlsv1.2\" or \"tlsv1.3\" (the minimum accepted)";
    return NULL;
}

static const char *
check_ciphers(const char *v)
{
    size_t n = strlen(v);

    if (n == 0 || n > 1024 || strspn(v, "abcdefghijklmnopqrstuvwxyz"
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_:+!@=,. ") != n)
        return "must be an OpenSSL cipher list such as \"ECDHE-ECDSA-AES128-GCM-SHA256\"";
    return NULL;
}

static const char *
check_host(const char *v)
{
    size_t n = strlen(v);

    if (n == 0 || n > 253 || strspn(v, "abcdefghijklmnopqrstuvwxyz"
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:%") != n)
        return "must be a host name or an IP address";
    return NULL;
}

static const char *
check_base(const char *v)
{
    if (!topic_base_valid(v))
        return "must be 1..128 bytes of UTF-8 in at most 16 levels, without "
               "'+', '#', control characters, empty or dot levels, or a "
               "leading '$'";
    return NULL;
}

/* MQTT 3.1.1 servers must take 1..23 of [0-9a-zA-Z]; most take more. */
static const char *
check_client_id(const char *v)
{
    size_t n = strlen(v), i;

    for (i = 0; i < n; i++)
        if ((unsigned char)v[i] <= 0x20 || (unsigned char)v[i] >= 0x7f)
            break;
    if (n == 0 || n > 64 || i < n)
        return "must be 1..64 printable ASCII characters without spaces";
    return NULL;
}

static const char *
check_username(const char *v)
{
    size_t n = strlen(v), i;

    for (i = 0; i < n; i++)
        if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
            break;
    if (n == 0 || n > 256 || i < n)
        return "must be 1..256 characters without control characters";
    return NULL;
}

/* "a.b.c.d:port" or "[v6]:port", port 1..65535. */
static const char *
check_addr(const char *v)
{
    char host[INET6_ADDRSTRLEN + 1];
    unsigned char bin[sizeof(struct in6_addr)];
    const char *port, *close;
    size_t hlen;
    long p;
    char *end;
    int af = AF_INET;

    if (v[0] == '[') {
        if ((close = strchr(v, ']')) == NULL || close[1] != ':')
            return "must be \"a.b.c.d:port\" or \"[v6]:port\"";
        af = AF_INET6;
        hlen = (size_t)(close - v - 1);
        port = close + 2;
        v++;
    } else {
        if ((port = strrchr(v, ':')) == NULL)
            return "must be \"a.b.c.d:port\" or \"[v6]:port\"";
        hlen = (size_t)(port++ - v);
    }
    if (hlen >= sizeof(host))
        return "must be \"a.b.c.d:port\" or \"[v6]:port\"";
    memcpy(host, v, hlen);
    host[hlen] = '\0';
    if (inet_pton(af, host, bin) != 1)
        return af == AF_INET ? "must be \"a.b.c.d:port\" or \"[v6]:port\""
                             : "not an IPv6 address in \"[v6]:port\"";
    errno = 0;
    p = strtol(port, &end, 10);
    if (*port < '0' || *port > '9' || *end || errno || p < 1 || p > 65535)
        return "port must be 1..65535";
    return NULL;
}

/* --- the schema ------------------------------------------------------------ */

enum kind { K_INT, K_BOOL, K_STR, K_ADDRS, K_GROUP };

struct item {
    const char *name;
    enum kind kind;
    size_t off;                     /* field in struct config */
    size_t off_n;                   /* K_ADDRS: the count field */
    long long min, max;             /* K_INT */
    const char *(*check)(const char *);     /* K_STR */
    const struct item *sub;         /* K_GROUP */
};

#define F(field)            offsetof(struct config, field)
#define INT(n, f, lo, hi)   { n, K_INT, F(f), 0, lo, hi, NULL, NULL }
#define BOOL(n, f)          { n, K_BOOL, F(f), 0, 0, 0, NULL, NULL }
#define STR(n, f, chk)      { n, K_STR, F(f), 0, 0, 0, chk, NULL }
#define ADDRS(n, f, fn)     { n, K_ADDRS, F(f), F(fn), 0, 0, NULL, NULL }
#define GROUP(n, items)     { n, K_GROUP, 0, 0, 0, 0, NULL, items }
#define END                 { NULL, K_INT, 0, 0, 0, 0, NULL, NULL }

static const struct item coap_items[] = {
    ADDRS("listen", coap.listen, coap.n_listen),
    ADDRS("plain_listen", coap.plain_listen, coap.n_plain_listen),
    STR("psk_file", coap.psk_file, check_path),
    STR("ca_file", coap.ca_file, check_path),
    STR("cert_file", coap.cert_file, check_path),
    STR("key_file", coap.key_file, check_path),
    STR("crl_file", coap.crl_file, check_path),
    INT("max_sessions", coap.max_sessions, 0, 10000000),
    INT("max_handshakes", coap.max_handshakes, 16, 1000000),
    INT("session_timeout", coap.session_timeout, 10, 604800),
    INT("max_payload", coap.max_payload, 64, 16777216),
    INT("max_request_rate", coap.max_request_rate, 0, 1000000),
    END
};

static const struct item rd_items[] = {
    INT("default_lifetime", rd.default_lifetime, 1, INT_MAX),
    INT("min_lifetime", rd.min_lifetime, 1, INT_MAX),
    INT("max_lifetime", rd.max_lifetime, 1, INT_MAX),
    INT("max_devices", rd.max_devices, 1, 10000000),
    END
};

static const struct item mqtt_items[] = {
    STR("host", mqtt.host, check_host),
    INT("port", mqtt.port, 1, 65535),
    STR("base_topic", mqtt.base_topic, check_base),
    STR("response_topic_prefix", mqtt.response_topic_prefix, check_base),
    STR("client_id", mqtt.client_id, check_client_id),
    STR("username", mqtt.username, check_username),
    STR("password_file", mqtt.password_file, check_path),
    INT("keepalive", mqtt.keepalive, 5, 65535),
    INT("qos_con", mqtt.qos_con, 0, 1),
    INT("qos_non", mqtt.qos_non, 0, 1),
    INT("stats_interval", mqtt.stats_interval, 0, 86400),
    INT("reconnect_min", mqtt.reconnect_min, 1, 3600),
    INT("reconnect_max", mqtt.reconnect_max, 1, 86400),
    INT("session_expiry", mqtt.session_expiry, 0, INT_MAX),
    INT("max_inflight", mqtt.max_inflight, 1, 65535),
    BOOL("json", mqtt.json),
    STR("tls_ca_file", mqtt.tls_ca_file, check_path),
    STR("tls_cert_file", mqtt.tls_cert_file, check_path),
    STR("tls_key_file", mqtt.tls_key_file, check_path),
    STR("tls_version", mqtt.tls_version, check_tls_version),
    STR("tls_ciphers", mqtt.tls_ciphers, check_ciphers),
    END
};

static const struct item commands_items[] = {
    INT("ttl", commands.ttl, 1, 604800),
    INT("max_queued", commands.max_queued, 1, 10000),
    END
};

static const struct item queue_items[] = {
    INT("max_messages", queue.max_messages, 1, 100000000),
    BOOL("spool", queue.spool),
    INT("spool_max_mb", queue.spool_max_mb, 1, 16777216),
    INT("fsync_interval", queue.fsync_interval, 0, 60000),
    END
};

static const struct item root_items[] = {
    STR("state_dir", state_dir, check_path),
    GROUP("coap", coap_items),
    GROUP("rd", rd_items),
    GROUP("mqtt", mqtt_items),
    GROUP("commands", commands_items),
    GROUP("queue", queue_items),
    END
};

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
        serr(c, s, name, "must be an integer, got %s", type_name(type));
        return;
    }
    if (type == CONFIG_TYPE_INT) {
        v = config_setting_get_int(s);
        big = truncated_literal(c, s, (int)v);
    } else {
        v = config_setting_get_int64(s);
    }
    if (big || v < it->min || v > it->max) {
        if (big)
            serr(c, s, name, "must be %lld..%lld, got %s", it->min, it->max, big);
        else
            serr(c, s, name, "must be %lld..%lld, got %lld", it->min, it->max, v);
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
        serr(c, s, name, "must be a string, got %s", type_name(type));
        return;
    }
    v = config_setting_get_string(s);
    if ((why = it->check(v)) != NULL) {
        serr(c, s, name, "%s, got %s", why, quote(v, q, sizeof(q)));
        return;
    }
    if (!set_str(field(c, it->off), v))
        serr(c, s, name, "out of memory");
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
        serr(c, e, ename, "must be a string, got %s",
             type_name(config_setting_type(e)));
        return NULL;
    }
    v = config_setting_get_string(e);
    if ((why = check_addr(v)) != NULL) {
        serr(c, e, ename, "%s, got %s", why, quote(v, q, sizeof(q)));
        return NULL;
    }
    for (j = 0; j < i; j++) {
        prev = config_setting_get_elem(config_setting_parent(e), (unsigned)j);
        if (config_setting_type(prev) == CONFIG_TYPE_STRING &&
            strcmp(config_setting_get_string(prev), v) == 0) {
            serr(c, e, ename, "%s is listed twice", quote(v, q, sizeof(q)));
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
        serr(c, s, name, "must be a list of addresses like "
             "[ \"0.0.0.0:5684\", \"[::]:5684\" ], got %s", type_name(type));
        return;
    }
    if (n > CONF_MAX_ADDRS) {
        serr(c, s, name, "at most %d addresses, got %d", CONF_MAX_ADDRS, n);
        return;
    }
    free_list(list, count);
    if (n > 0 && (*list = calloc((size_t)n, sizeof(**list))) == NULL) {
        serr(c, s, name, "out of memory");
        return;
    }
    for (i = 0; i < n; i++) {
        if ((v = addr_elem(c, config_setting_get_elem(s, (unsigned)i), name, i)) == NULL)
            continue;
        if (((*list)[ok] = strdup(v)) == NULL) {
            serr(c, s, name, "out of memory");
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
            serr(c, s, name, "must be true or false, got %s", type_name(type));
        else
            *(bool *)field(c, it->off) = config_setting_get_bool(s);
        break;
    case K_STR:
        load_str(c, s, name, it);
        break;
    case K_ADDRS:
        load_addrs(c, s, name, it);
        break;
    case K_GROUP:
        if (type != CONFIG_TYPE_GROUP)
            serr(c, s, name, "must be a group { ... }, got %s", type_name(type));
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
            serr(c, s, name, "unknown setting");
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

    if (list_len(c, "coap.listen") == 0 && list_len(c, "coap.plain_listen") == 0)
        serr(c, near(c, "coap.listen"), "coap.listen",
             "no CoAP endpoint: set coap.listen (DTLS) or coap.plain_listen");
    if (cert && !key)
        serr(c, near(c, "coap.cert_file"), "coap.cert_file",
             "needs coap.key_file as well");
    if (key && !cert)
        serr(c, near(c, "coap.key_file"), "coap.key_file",
             "needs coap.cert_file as well");
    if (ca && !cert && !key)
        serr(c, near(c, "coap.ca_file"), "coap.ca_file", "needs the gateway's "
             "own coap.cert_file and coap.key_file");
    if (is_set(c, "mqtt.tls_cert_file") != is_set(c, "mqtt.tls_key_file"))
        serr(c, near(c, "mqtt.tls_cert_file"), "mqtt.tls_cert_file",
             "mqtt.tls_cert_file and mqtt.tls_key_file go together");
    if ((is_set(c, "mqtt.tls_cert_file") || is_set(c, "mqtt.tls_version") ||
         is_set(c, "mqtt.tls_ciphers")) && !is_set(c, "mqtt.tls_ca_file"))
        serr(c, near(c, "mqtt.tls_ca_file"), "mqtt.tls_ca_file",
             "TLS to the broker needs mqtt.tls_ca_file (the CA to verify it with)");
    if (is_set(c, "coap.crl_file") && !ca)
        serr(c, near(c, "coap.crl_file"), "coap.crl_file",
             "needs coap.ca_file (the CA whose revocations it lists)");
    if (list_len(c, "coap.listen") > 0 && !psk && !(cert && key))
        serr(c, near(c, "coap.listen"), "coap.listen", "DTLS needs "
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
        serr(c, near(c, lo_name), lo_name, "must not exceed %s (%d), got %d",
             hi_name, hi, lo);
    else
        serr(c, near(c, hi_name), hi_name, "must be at least %s (%d), got %d",
             lo_name, lo, hi);
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
            serr(c, near(c, "rd.default_lifetime"), "rd.default_lifetime",
                 "must be within rd.min_lifetime..rd.max_lifetime (%d..%d), "
                 "got %d", rd->min_lifetime, rd->max_lifetime,
                 rd->default_lifetime);
        else {
            check_order(c, "rd.min_lifetime", rd->min_lifetime,
                        "rd.default_lifetime", rd->default_lifetime);
            check_order(c, "rd.default_lifetime", rd->default_lifetime,
                        "rd.max_lifetime", rd->max_lifetime);
        }
    }
    check_order(c, "mqtt.reconnect_min", mq->reconnect_min,
                "mqtt.reconnect_max", mq->reconnect_max);
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
    emit(c, line);
}

static void
report_unreadable(struct ctx *c, int err)
{
    char line[LINE_MAX_OUT];

    snprintf(line, sizeof(line), "%s: cannot read: %s", c->path,
             err == EFBIG ? "larger than 1 MiB" : strerror(err));
    emit(c, line);
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
        emit(c, line);
        return;
    }
    scan_big(c, "", text, len);
    if (config_read_string(&c->lc, text) != CONFIG_TRUE) {
        report_syntax(c);
        return;
    }
    load_group(c, config_root_setting(&c->lc), "", root_items);
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
        emit(&c, line);
        return c.errors;
    }
    if ((text = slurp(path, &len)) == NULL) {
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

    serr(p->c, p->s, p->name, "%s", line);
}

static void
check_psk_file(struct ctx *c, const char *path)
{
    struct prefixed p = { c, near(c, "coap.psk_file"), "coap.psk_file" };
    int before = c->errors;
    keystore_t *ks = keystore_load(path, prefixed_report, &p);

    if (ks == NULL && c->errors == before)
        serr(c, p.s, p.name, "%s: cannot load", path);
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
        serr(c, s, name, "%s: %s", path, strerror(errno));
        return;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        serr(c, s, name, "%s: not a regular file", path);
    else if (first_line && (read(fd, buf, 1) != 1 || buf[0] == '\n' ||
                            buf[0] == '\r'))
        serr(c, s, name, "%s: the first line (the password) is empty", path);
    close(fd);
}

static void
check_state_dir(struct ctx *c, const char *path)
{
    struct stat st;

    /* Missing is fine (systemd's StateDirectory= or the daemon makes it). */
    if (stat(path, &st) == 0 && !S_ISDIR(st.st_mode))
        serr(c, near(c, "state_dir"), "state_dir", "%s: not a directory", path);
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
    if ((text = slurp(c.path, &len)) != NULL &&
        memchr(text, '\0', len) == NULL)
        config_read_string(&c.lc, text);
    free(text);
    if (cfg->coap.psk_file)
        check_psk_file(&c, cfg->coap.psk_file);
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
    ctx_done(&c);
    return c.errors;
}
