/*
 * config_schema.c - what the config may hold: every setting with its type
 * and range, or the check its string must pass, in tables the walk in
 * config.c follows (a group's table names its settings; anything else is
 * an unknown setting).  A check returns NULL when the value is fine, else
 * the reason it is not, for the error line.
 *
 * Layer: base (calls topics)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "coap2mqtt/config.h"
#include "coap2mqtt/hostport.h"
#include "coap2mqtt/topics.h"
#include "config_internal.h"

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
check_protocol(const char *v)
{
    if (strcmp(v, "auto") != 0 && strcmp(v, "5") != 0 && strcmp(v, "3.1.1") != 0)
        return "must be \"5\", \"3.1.1\" or \"auto\" (5, falling back to 3.1.1 "
               "when the broker refuses it)";
    return NULL;
}

/* Instance names are one topic level under <base>/bridge/, next to the
 * gateway's own leaves there, so those are refused. */
static const char *
check_instance(const char *v)
{
    static const char *const reserved[] = {
        "devices", "owner", "request", "response", "audit", "state", "stats", NULL
    };
    size_t n = strlen(v);

    if (n == 0 || n > 32 || strspn(v, "abcdefghijklmnopqrstuvwxyz"
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") != n)
        return "must be 1..32 of [A-Za-z0-9_-]";
    for (size_t i = 0; reserved[i]; i++)
        if (strcmp(v, reserved[i]) == 0)
            return "is a name the gateway uses under <base>/bridge/ "
                   "(devices, owner, request, response, audit, state, stats)";
    return NULL;
}

static const char *
check_offline(const char *v)
{
    if (strcmp(v, "queue") != 0 && strcmp(v, "reject") != 0)
        return "must be \"queue\" (wait up to commands.ttl) or \"reject\" "
               "(answer {\"error\":\"offline\"} at once)";
    return NULL;
}

static const char *
check_durability(const char *v)
{
    if (strcmp(v, "power") != 0 && strcmp(v, "process") != 0)
        return "must be \"power\" (acknowledge after fdatasync) or \"process\" "
               "(acknowledge after write)";
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

static const char *
check_log_level(const char *v)
{
    if (config_log_level(v) < 0)
        return "must be \"error\", \"warning\", \"notice\", \"info\" or \"debug\"";
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

/* node_exporter's textfile collector reads only *.prom files of its
 * directory, and our temporary file must land next to it for rename(). */
static const char *
check_textfile(const char *v)
{
    size_t n = strlen(v);

    if (v[0] != '/' || n >= PATH_MAX || n < 7 || strcmp(v + n - 5, ".prom") != 0 ||
        v[n - 6] == '/')
        return "must be an absolute path ending in \".prom\" (node_exporter's "
               "textfile collector reads only those)";
    return NULL;
}

/* A network interface's name as the kernel takes it (IFNAMSIZ 16 with its
 * NUL; no '/', blanks or ':').  That it exists is checked with the files. */
static const char *
check_ifname(const char *v)
{
    size_t n = strlen(v), i;

    for (i = 0; i < n; i++)
        if ((unsigned char)v[i] <= 0x20 || (unsigned char)v[i] >= 0x7f ||
            v[i] == '/' || v[i] == ':')
            break;
    if (n == 0 || n > 15 || i < n || strcmp(v, ".") == 0 || strcmp(v, "..") == 0)
        return "must be a network interface name (1..15 printable characters, "
               "no '/', ':' or blanks)";
    return NULL;
}

/* "a.b.c.d:port" or "[v6]:port", port 1..65535. */
const char *
config__check_addr(const char *v)
{
    char host[INET6_ADDRSTRLEN + 1];
    unsigned char bin[sizeof(struct in6_addr)];
    const char *port;
    bool v6;

    if (hostport_split(v, host, sizeof(host), &port, &v6) < 0 || !port)
        return "must be \"a.b.c.d:port\" or \"[v6]:port\"";
    if (inet_pton(v6 ? AF_INET6 : AF_INET, host, bin) != 1)
        return v6 ? "not an IPv6 address in \"[v6]:port\""
                  : "must be \"a.b.c.d:port\" or \"[v6]:port\"";
    if (hostport_port(port, 1) < 0)
        return "port must be 1..65535";
    return NULL;
}

/* --- the schema ------------------------------------------------------------ */

#define F(field)            offsetof(struct config, field)
#define INT(n, f, lo, hi)   { n, K_INT, F(f), 0, lo, hi, NULL, NULL }
#define BOOL(n, f)          { n, K_BOOL, F(f), 0, 0, 0, NULL, NULL }
#define STR(n, f, chk)      { n, K_STR, F(f), 0, 0, 0, chk, NULL }
#define ADDRS(n, f, fn)     { n, K_ADDRS, F(f), F(fn), 0, 0, NULL, NULL }
#define GROUP(n, items)     { n, K_GROUP, 0, 0, 0, 0, NULL, items }
#define DEVICES(n)          { n, K_DEVICES, 0, 0, 0, 0, NULL, NULL }
#define OSCORE(n)           { n, K_OSCORE, 0, 0, 0, 0, NULL, NULL }
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
    INT("listen_sockets", coap.listen_sockets, 0, 64),
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
    INT("max_unauthenticated", rd.max_unauthenticated, 0, 10000000),
    INT("forget_after", rd.forget_after, 0, INT_MAX),
    END
};

static const struct item mqtt_items[] = {
    STR("host", mqtt.host, check_host),
    STR("protocol", mqtt.protocol, check_protocol),
    INT("port", mqtt.port, 1, 65535),
    STR("base_topic", mqtt.base_topic, check_base),
    STR("response_topic_prefix", mqtt.response_topic_prefix, check_base),
    STR("client_id", mqtt.client_id, check_client_id),
    STR("instance", mqtt.instance, check_instance),
    STR("username", mqtt.username, check_username),
    STR("password_file", mqtt.password_file, check_path),
    INT("keepalive", mqtt.keepalive, 5, 65535),
    INT("qos_con", mqtt.qos_con, 0, 1),
    INT("qos_non", mqtt.qos_non, 0, 1),
    INT("stats_interval", mqtt.stats_interval, 0, 86400),
    INT("devices_interval", mqtt.devices_interval, 0, 86400),
    INT("reconnect_min", mqtt.reconnect_min, 1, 3600),
    INT("reconnect_max", mqtt.reconnect_max, 1, 86400),
    INT("session_expiry", mqtt.session_expiry, 0, INT_MAX),
    INT("max_inflight", mqtt.max_inflight, 1, 65535),
    INT("connections", mqtt.connections, 1, 16),
    INT("refused_retries", mqtt.refused_retries, 0, 100),
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
    STR("offline", commands.offline, check_offline),
    END
};

static const struct item queue_items[] = {
    INT("max_messages", queue.max_messages, 1, 100000000),
    BOOL("spool", queue.spool),
    INT("spool_max_mb", queue.spool_max_mb, 1, 16777216),
    INT("fsync_interval", queue.fsync_interval, 0, 60000),
    STR("durability", queue.durability, check_durability),
    END
};

static const struct item homeassistant_items[] = {
    BOOL("enabled", homeassistant.enabled),
    STR("prefix", homeassistant.prefix, check_base),
    END
};

static const struct item stats_items[] = {
    STR("textfile", stats.textfile, check_textfile),
    END
};

static const struct item audit_items[] = {
    BOOL("journal", audit.journal),
    BOOL("mqtt", audit.mqtt),
    END
};

static const struct item discovery_items[] = {
    BOOL("multicast", discovery.multicast),
    STR("interface", discovery.interface, check_ifname),
    INT("interval", discovery.interval, 10, 86400),
    END
};

const struct item config__root_items[] = {
    STR("state_dir", state_dir, check_path),
    STR("log_level", log_level, check_log_level),
    GROUP("coap", coap_items),
    GROUP("rd", rd_items),
    GROUP("mqtt", mqtt_items),
    GROUP("commands", commands_items),
    GROUP("queue", queue_items),
    GROUP("homeassistant", homeassistant_items),
    GROUP("stats", stats_items),
    GROUP("audit", audit_items),
    DEVICES("devices"),
    GROUP("discovery", discovery_items),
    OSCORE("oscore"),
    END
};
