/*
 * config.h - the validated configuration.  Loading happens in stages
 * (mosquitto's config__check, ntpd's -n): libconfig parses the file, each
 * setting is type- and range-checked with its line number, then a
 * cross-field pass runs, then (for -t and at start) the files it names are
 * checked.  Every problem is reported as one "file:line: setting: reason"
 * line through the caller's callback; loading goes on to find them all.
 */
#ifndef COAP2MQTT_CONFIG_H
#define COAP2MQTT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#define CONFIG_DEFAULT_PATH "/etc/coap2mqtt/coap2mqtt.conf"

struct config_coap {
    char **listen;          /* "host:port" / "[v6]:port" DTLS endpoints */
    int n_listen;
    char **plain_listen;    /* plain CoAP endpoints; none when absent */
    int n_plain_listen;
    char *psk_file;         /* IDENTITY:SECRET lines; NULL when absent */
    char *ca_file;          /* X.509: CA for device certificates; may be NULL */
    char *cert_file;        /* X.509: gateway certificate; may be NULL */
    char *key_file;         /* X.509: gateway key; may be NULL */
    char *crl_file;         /* X.509: PEM CRLs of ca_file's CA; NULL = no revocation check */
    int max_sessions;       /* DTLS sessions kept (0 = libcoap default) */
    int max_handshakes;     /* half-open handshakes, default 1000 */
    int listen_sockets;     /* sockets per DTLS listen address (1); 0 = auto */
    int session_timeout;    /* s an idle session is kept (default 300) */
    int max_payload;        /* bytes accepted in one reassembled body (default 65536) */
    int max_request_rate;   /* requests/s per device (burst 2x), default 100; 0 = no limit */
};

struct config_rd {
    int default_lifetime;   /* s when "lt" is absent (RFC 9176: 90000) */
    int min_lifetime;       /* s, smallest "lt" accepted (default 1) */
    int max_lifetime;       /* s, largest "lt" accepted (default 31536000) */
    int max_devices;        /* registered devices (default 100000) */
    int max_unauthenticated; /* of those, entries plain CoAP may hold
                               (default half of max_devices) */
    int forget_after;       /* s a gone device's record is kept (default
                               86400; 0 = never forgotten) */
};

struct config_mqtt {
    char *host;             /* default "localhost" */
    char *protocol;         /* "5", "3.1.1" or "auto" (default: 5, and 3.1.1
                               when a broker closes on a v5 CONNECT) */
    int port;               /* default 1883 */
    char *base_topic;       /* default "coap2mqtt" */
    char *response_topic_prefix; /* MQTT v5 Response Topics allowed only at or
                               below it; NULL: any but under base_topic */
    char *client_id;        /* default "coap2mqtt"; "coap2mqtt-<instance>"
                               when mqtt.instance is set */
    char *instance;         /* this gateway's name among several on one
                               broker (docs/SCALING.md); NULL: the only one */
    char *username;         /* NULL when absent */
    char *password_file;    /* first line is the password; NULL when absent */
    int keepalive;          /* s, default 30 */
    int qos_con;            /* QoS for CON-originated readings, default 1 */
    int qos_non;            /* QoS for NON-originated readings, default 0 */
    int devices_interval;   /* s between bridge/devices lists (default 30;
                               0 = not published) */
    int stats_interval;     /* s between bridge/stats, default 60; 0 = off */
    int reconnect_min;      /* s, first reconnect delay, default 1 */
    int reconnect_max;      /* s, reconnect delay cap, default 60 */
    int session_expiry;     /* s the broker keeps our session, default 86400 */
    int max_inflight;       /* QoS 1 publishes awaiting PUBACK, default 256
                             * (per connection) */
    int connections;        /* broker connections, readings sharded over
                             * them by device, default 1 (1..16) */
    int refused_retries;    /* a refused publish is retried this often, then
                             * parked (state_dir/refused.jsonl), default 5 */
    bool json;              /* publish CBOR/SenML/JSON readings as JSON, default false */
    char *tls_ca_file;      /* TLS to the broker: CA to verify it; NULL = plain TCP */
    char *tls_cert_file;    /* client certificate (optional) */
    char *tls_key_file;     /* its key */
    char *tls_version;      /* minimum: "tlsv1.2" (default) or "tlsv1.3" */
    char *tls_ciphers;      /* OpenSSL cipher list for TLS 1.2; NULL = OpenSSL's */
};

struct config_commands {
    int ttl;                /* s a queued command lives, default 300 */
    int max_queued;         /* commands queued per device, default 16 */
    char *offline;          /* a command for a device with no session:
                               "queue" (default, waits up to ttl) or "reject" */
};

struct config_queue {
    int max_messages;       /* readings held in memory, default 100000 */
    bool spool;             /* keep a durable log in state_dir/spool, default true */
    int spool_max_mb;       /* disk the spool may use, MiB, default 1024 */
    int fsync_interval;     /* ms between fdatasync of the spool, default 100;
                               0 = every record (slow, no power-loss window) */
    char *durability;       /* "power" (NULL, the default): a reading is
                               acknowledged once fdatasync'ed (group commit);
                               "process": once written (survives kill -9 only) */
};

struct config_homeassistant {
    bool enabled;           /* publish Home Assistant MQTT discovery, default false */
    char *prefix;           /* discovery prefix, default "homeassistant" */
};

struct config_stats {
    char *textfile;         /* node_exporter textfile-collector file (*.prom),
                               rewritten every mqtt.stats_interval; NULL = off */
};

struct config_audit {
    bool journal;           /* command audit records to the journal, default true */
    bool mqtt;              /* and as JSON on <base>/bridge/audit, default false */
};

/* Multicast discovery (plain CoAP labs): GET /.well-known/core to
 * 224.0.1.187 and FF02::FD on one interface; who answers is dialled out
 * to like a devices entry (docs/CONFIG.md, "discovery"). */
struct config_discovery {
    bool multicast;         /* default false */
    char *interface;        /* where the probes go; required with multicast */
    int interval;           /* s between probes, default 300 */
};

/* One device the gateway dials out to (the devices list). */
struct config_device {
    char *id;               /* its topic id; never claimable by a dial-in device */
    char *uri;              /* "coap://host[:port]" or "coaps://host[:port]" */
    char *psk_identity;     /* coaps with PSK: our identity, key in coap.psk_file;
                               NULL: X.509 (coaps) or none (coap) */
    char **observe;         /* paths to observe; NULL: every obs link of its
                               /.well-known/core */
    int n_observe;
    int keepalive;          /* s of silence before it is probed, default 10 */
    unsigned line;          /* where the entry starts in the file, for logs */
    char *oscore;           /* coap:// with OSCORE: the id of its oscore
                               context; NULL: none */
};

/*
 * One OSCORE security context (RFC 8613) of the oscore list.  Byte strings
 * are kept as the lower-case hex they were written in (checked: even
 * length, within the sizes below); NULL when absent.  A context named by a
 * devices entry (its oscore) is used for dialling that device; every
 * other one is a device that dials in, and its id is that device's id.
 */
#define CONFIG_OSCORE_ID_MAX      7     /* sender/recipient id bytes (libcoap, AES-CCM nonce) */
#define CONFIG_OSCORE_SECRET_MIN  16
#define CONFIG_OSCORE_SECRET_MAX  64
#define CONFIG_OSCORE_SALT_MAX    64
#define CONFIG_OSCORE_CONTEXT_MAX 32    /* id_context bytes */

struct config_oscore {
    char *id;               /* a name, and for a dial-in device its topic id */
    char *master_secret;    /* hex, 16..64 bytes */
    char *master_salt;      /* hex, 0..64 bytes; NULL: none (empty) */
    char *sender_id;        /* hex, 0..7 bytes: the gateway's Sender ID */
    char *recipient_id;     /* hex, 0..7 bytes: the device's Sender ID */
    char *id_context;       /* hex, 0..32 bytes; NULL: none */
    char *aead;             /* "AES-CCM-16-64-128" (default) or "AES-CCM-16-64-256" */
    int replay_window;      /* 1..63, default 32 */
    unsigned line;          /* where the entry starts in the file, for logs */
};

struct config {
    char *path;                 /* the file this came from */
    char *state_dir;            /* default "/var/lib/coap2mqtt" */
    char *log_level;            /* "error".."debug"; NULL: notice (-v raises it) */
    struct config_coap coap;
    struct config_rd rd;
    struct config_mqtt mqtt;
    struct config_commands commands;
    struct config_queue queue;
    struct config_homeassistant homeassistant;
    struct config_stats stats;
    struct config_audit audit;
    struct config_device *devices;  /* dialled out to; n_devices of them */
    int n_devices;
    struct config_discovery discovery;
    struct config_oscore *oscore;   /* OSCORE contexts; n_oscore of them */
    int n_oscore;
};

/* True unless queue.durability = "process". */
/*
 * Splits a devices[].uri: *secure for coaps, the host (brackets of an IPv6
 * address removed) and the port (5683 / 5684 when absent).  NULL when the
 * URI is fine, else why not.
 */
const char *config_device_uri(const char *uri, bool *secure, char *host,
                              size_t cap, int *port);

/* A deep copy of a devices entry (for a room that outlives a reload);
 * -1 when out of memory, 'to' then empty.  Freed by config_device_free. */
int config_device_copy(struct config_device *to, const struct config_device *from);
void config_device_free(struct config_device *d);
bool config_device_same(const struct config_device *a, const struct config_device *b);

/* The oscore entry named 'id', or NULL. */
const struct config_oscore *config_oscore_find(const struct config *cfg, const char *id);
/* True when no devices entry names it: a device that dials in. */
bool config_oscore_dialin(const struct config *cfg, const struct config_oscore *o);
/* The two oscore lists are the same. */
bool config_oscore_same(const struct config *a, const struct config *b);
/* True when this build has OSCORE (libcoap >= 4.3.2 built with it). */
bool config_oscore_available(void);

bool config_durability_power(const struct config *cfg);

/* Receives one complete error line, without trailing newline. */
typedef void (*config_report_fn)(void *arg, const char *line);

/*
 * Loads and validates 'path' into 'cfg' (which is fully initialised, with
 * defaults, even on failure so that config_free() is always safe).  Unknown
 * settings, wrong types and out-of-range numbers are errors.  Returns the
 * number of errors reported (0 = valid).
 */
int config_load(const char *path, struct config *cfg,
                config_report_fn report, void *arg);

/*
 * Checks the files a valid config names: the PSK file parses (via
 * keystore_load) and is not readable by group or others; CA, certificate,
 * key and MQTT password files exist and are readable.  Errors name the
 * config setting's line: "conf:12: coap.psk_file: /x: No such file".
 * Returns the number of errors.
 */
int config_check_files(const struct config *cfg,
                       config_report_fn report, void *arg);

void config_free(struct config *cfg);

/* The level a log_level value names (LOG_LVL_* of log.h), or -1 when
 * 'name' is not one of "error", "warning", "notice", "info", "debug". */
int config_log_level(const char *name);

/*
 * Calls fn with the dotted name ("mqtt.stats_interval") of every setting
 * whose value differs between 'a' and 'b', in schema order.
 */
typedef void (*config_diff_fn)(void *arg, const char *name);
void config_diff(const struct config *a, const struct config *b,
                 config_diff_fn fn, void *arg);

/*
 * Moves the value of setting 'name' from 'from' into 'to': a string or a
 * list changes hands (each config still frees what it then holds).
 * Returns -1 when no setting has that name.
 */
int config_take(struct config *to, struct config *from, const char *name);

/* The value of setting 'name' as text for a log line ("60", "true",
 * "\"x\"", "[2 addresses]", "(unset)"); "?" when there is no such name. */
const char *config_value_text(const struct config *cfg, const char *name,
                              char *buf, size_t cap);

#endif
