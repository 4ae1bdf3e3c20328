/*
 * sim.h - coap2mqtt-sim: many simulated CoAP/DTLS sensors in one process.
 *
 * Each sensor owns one libcoap context (its resources, its one DTLS client
 * session, its own observers), so that notifying one sensor's observers
 * never touches another's: libcoap 4.3.1 marks a resource dirty for every
 * observing session of a context at once.  All contexts are driven from
 * one loop (tools/common's tool_loop) in main.c.
 *
 * Calls go one way: main.c -> sensor.c -> session.c -> resources.c (sensor.c
 * calls resources.c too), and down to kinds.c, payload.c, psk.c, out.c and
 * tools/common.  What session.c and resources.c see inside libcoap comes up
 * through struct sensor_events.
 *
 * The stdout lines (REGISTERED, OBSERVED, OBSERVE_GET, NOTIFY, PUT, PUSH,
 * SLEEP, WAKE, REBOOT, ERROR, SUMMARY) are a protocol parsed by the
 * integration tests.
 */
#ifndef COAP2MQTT_SIM_H
#define COAP2MQTT_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <coap3/coap.h>

#include "coap2mqtt/topics.h"
#include "../common/tool_common.h"

#define SIM_MAX_RES      4       /* resources per sensor kind */
#define SIM_KEY_MAX      64      /* bytes in a PSK */
#define SIM_PAYLOAD_MAX  (1024 * 1024)
#define SIM_PUT_MAX      (64 * 1024)
#define SIM_PUSH_INFLIGHT 64     /* CON pushes queued per sensor before skipping */
#define SIM_MID_RING     8       /* recent request MIDs remembered for dedup */
/* Writable resources notify on change, and with this period to stay fresh
 * within the default Max-Age of 60 s. */
#define SIM_KEEPFRESH_MS 50000

/* ---- sensor kinds (kinds.c) ---- */

enum gen_kind { GEN_ENERGY, GEN_POWER, GEN_TEMPERATURE, GEN_HUMIDITY,
                GEN_VIBRATION, GEN_STORED };

struct kind_res {
    const char *path;       /* without leading '/' */
    uint16_t ct;            /* Content-Format */
    bool con;               /* notifications / pushes are CON */
    bool writable;          /* accepts PUT; notified on change only */
    enum gen_kind gen;
    const char *field;      /* JSON/CBOR value key ("kwh"); NULL for text */
    int decimals;           /* printed precision of the value */
    const char *initial;    /* initial value of a writable resource */
};

struct kind {
    const char *name;
    const struct kind_res *res;
    size_t nres;
};

/* Returns the kind called 'name', or NULL. */
const struct kind *kind_find(const char *name);
/* Comma-separated kind names, for usage messages. */
const char *kind_names(void);

/* Starting level of a generator for sensor number n. */
double kind_initial_level(enum gen_kind gen, unsigned n);
/* Next value of a generator: moves *level, 'dt_s' seconds after the last. */
double kind_next_value(enum gen_kind gen, double *level, uint64_t *rng,
                       double dt_s);

/* ---- options (options.c) ---- */

enum msg_type_force { FORCE_NONE, FORCE_CON, FORCE_NON };

struct sim_opts {
    const struct kind *kind;
    coap_address_t gateway;
    coap_address_t bind;       /* sensor i binds bind + i (port from --port or 0) */
    bool have_bind;
    unsigned count;
    unsigned first;
    char prefix[TOPIC_ID_MAX];
    int port;                  /* fixed source port, or 0 for ephemeral */
    const char *psk_file;
    uint8_t key[SIM_KEY_MAX];  /* --key: same key for all sensors */
    size_t key_len;
    bool have_key;
    unsigned lifetime_s;
    double interval_ms;        /* between readings of one resource */
    size_t payload_size;
    bool push;
    enum msg_type_force force;
    unsigned long count_readings;  /* 0 = unlimited */
    double duration_s;             /* 0 = run until signalled */
    double sleep_after_s, sleep_for_s;
    double reboot_after_s;
    double roam_after_s;
    bool no_register;
    int max_retransmit;        /* --max-retransmit, -1 = libcoap's (4) */
    const char *ep;            /* --ep override of the registration ep= */
    bool quiet;
    int verbose;
};

/*
 * Parses argv into 'o'.  Returns 0 on success, 1 if the program should exit
 * 0 (--help), -1 on a usage error (already reported on stderr).
 */
int options_parse(struct sim_opts *o, int argc, char **argv);

/* ---- PSK (psk.c); a secret is decoded by tool_psk_decode ---- */

struct psk_table;

/* Reads the stunnel-style PSK file 'path'; NULL (reason on stderr) on error. */
struct psk_table *psk_table_load(const char *path);
/*
 * Copies the key of 'identity' into key; returns its length, or -1 with a
 * reason on stderr (missing identity, bad secret).
 */
int psk_table_lookup(const struct psk_table *t, const char *identity,
                     uint8_t *key, size_t cap);
void psk_table_free(struct psk_table *t);

/* ---- run-wide counters and stdout protocol (out.c) ---- */

struct sim_counters {
    unsigned long registered;     /* 2.xx answers to register / refresh */
    unsigned long notifications;  /* observe responses + notifications sent */
    unsigned long pushes;         /* pushes sent */
    unsigned long push_errors;    /* pushes answered >= 4.00, timed out or lost */
    unsigned long puts;           /* PUT requests accepted */
    unsigned long errors;         /* ERROR lines */
    unsigned long sleeps, reboots;
};

struct sim;   /* forward */

/* One event line on stdout; 'always' bypasses -q. */
void out_event(const struct sim *sim, bool always, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void out_summary(const struct sim *sim);

/* "2.05" style code of a PDU. */
void out_code(char buf[8], coap_pdu_code_t code);

/* ---- a sensor (sensor.c, session.c, resources.c) ---- */

struct sensor;
struct res_state;

/*
 * What session.c and resources.c report up to sensor.c, which gives every
 * sensor its own (sensor_init).  Called inside libcoap's callbacks: they
 * set state and timers only.
 */
struct sensor_events {
    /* The session failed ('why' ends up in an ERROR line): reconnect later. */
    void (*lost)(struct sensor *s, const char *why);
    /* The gateway answered a registration (refresh: of a refresh) 2.xx;
     * first: the sensor was not registered before. */
    void (*registered)(struct sensor *s, bool first, bool refresh);
    /* The gateway PUT a new value into a writable resource. */
    void (*written)(struct res_state *r);
};

struct res_state {
    struct sensor *sensor;
    const struct kind_res *def;
    unsigned idx;
    coap_resource_t *resource;    /* owned by the sensor's context */
    uint32_t seq;                 /* seq of the last reading */
    unsigned long readings;       /* readings made, for --count-readings */
    double level;                 /* generator state (kWh total, degrees ...) */
    uint8_t *value;               /* current payload (malloc) */
    size_t value_len;
    bool notify_pending;          /* a tick asked libcoap to notify */
    unsigned observed_gen;        /* session generation that printed OBSERVED */
    int64_t next_ms;              /* next periodic reading */
};

enum sensor_state {
    SS_ACTIVE,      /* a session exists (maybe still handshaking) */
    SS_BACKOFF,     /* session lost; reconnect at retry_ms */
    SS_SLEEPING,    /* deep sleep until wake_ms */
};

struct sensor {
    struct sim *sim;
    const struct sensor_events *ev;
    unsigned index;
    char id[TOPIC_ID_MAX + 1];
    uint8_t key[SIM_KEY_MAX];
    size_t key_len;
    coap_address_t local;
    tool_ctx_t *ctx;              /* in the sim's loop; NULL between sessions */
    coap_session_t *session;
    unsigned gen;                 /* bumped with every new session */
    enum sensor_state state;
    bool registered;              /* the gateway has a registration */
    bool reg_inflight;
    bool connected;               /* DTLS handshake done */
    int reuse_port;               /* next session binds this port (reboot) */
    char location[TOPIC_ID_MAX + 16];  /* Location-Path of the registration */
    unsigned backoff_s;
    int64_t start_ms;             /* of this boot (reboot restarts) */
    int64_t refresh_ms, retry_ms, wake_ms, sleep_ms, reboot_ms, reg_retry_ms;
    int64_t roam_ms;
    int64_t connect_deadline_ms;
    int64_t io_ms;                /* next forced coap_io_process() */
    unsigned push_inflight;
    uint16_t token_ctr;
    uint64_t rng;
    uint16_t mids[SIM_MID_RING];  /* recent request MIDs on this session */
    unsigned mid_pos, mid_n;
    struct res_state res[SIM_MAX_RES];
    size_t nres;
};

struct sim {
    struct sim_opts opts;
    struct sensor *sensors;
    size_t nsensors;
    tool_loop_t *loop;
    struct sim_counters cnt;
};

#define SIM_NEVER INT64_MAX

/* sensor.c: life cycle driven by the main loop */
/*
 * Sensor n of the run, no session yet.  'psk' may be NULL when --key gives
 * every sensor the same key.  0, or -1 (reason on stderr; nothing to free).
 */
int sensor_init(struct sensor *s, struct sim *sim, unsigned n,
                const struct psk_table *psk);
void sensor_start(struct sensor *s, int64_t now);
/* Runs what is due; returns the next time it wants to run. */
int64_t sensor_tick(struct sensor *s, int64_t now);
void sensor_free(struct sensor *s);

/* session.c: context + DTLS session, registration, pushes */
/* A new context in the sim's loop and a DTLS session to the gateway; 0 or -1. */
int session_open(struct sensor *s);
/* Frees context and session; 'quiet' sends nothing (no close_notify). */
void session_close(struct sensor *s, bool quiet);
/* The source port of the current session (for a reboot onto the same one). */
int session_local_port(const struct sensor *s);
/* POST /rd with the links, or (refresh) an empty POST to its location. */
void session_register(struct sensor *s, bool refresh);
/* POST /ps/<path> with the current value of r. */
void session_push(struct sensor *s, struct res_state *r);

/* resources.c */
/* Whether the resource's pushes and notifications are CON: --con/--non,
 * else its kind's. */
bool resources_con(const struct res_state *r);
/* Adds the sensor's resources to its (new) context; 0 or -1. */
int resources_add(struct sensor *s);
/* The context is gone: forget its libcoap resources (values are kept). */
void resources_detach(struct sensor *s);
/* Makes a new reading of a periodic resource (seq + 1, new payload). */
int resources_new_reading(struct res_state *r);
/* Between notifications: the interval, or SIM_KEEPFRESH_MS if writable. */
int64_t resources_period_ms(const struct res_state *r);
/* Link-format body for the registration into buf; returns its length. */
size_t resources_linkformat(const struct sensor *s, char *buf, size_t cap);
void resources_free(struct sensor *s);
/* Resets seq counters and writable values (reboot). */
int resources_reset(struct sensor *s);

/* payload.c: encoded readings */
/* Encodes the reading of 'r' with value 'v' into a malloc'd buffer. */
uint8_t *payload_encode(const struct res_state *r, double v, size_t pad_to,
                        size_t *len);

#endif
