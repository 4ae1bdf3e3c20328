/*
 * lg.h - coap2mqtt-loadgen: the benchmark load generator.
 *
 * One process, one epoll loop.  Mode "coap": M simulated DTLS sensors, each
 * with its own 127.x source address and identity, connect (a bounded number
 * of handshakes at a time), register, then push (POST /ps/<path>) or answer
 * the gateway's observation and emit notifications, CON or NON, at a set
 * total rate or closed-loop.  Mode "mqtt": one or more libmosquitto QoS 1
 * publishers straight to the broker (the MQTT ceiling).  In both modes an
 * optional MQTT subscriber (libmosquitto's own thread) counts what reaches
 * the broker, checks per-device order and measures latency from the send
 * timestamp carried in every payload ("d=<dev> s=<seq> t=<us>").
 *
 * Sensors share libcoap contexts in groups (LG_PER_CTX), so that libcoap's
 * per-wake-up walk over a context's sessions stays short however many
 * sessions the run holds: the generator must not be what slows down at
 * 10,000 sessions.
 */
#ifndef COAP2MQTT_LOADGEN_H
#define COAP2MQTT_LOADGEN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <coap3/coap.h>

#include "../common/tool_common.h"

#define LG_KEY_MAX     64
#define LG_ID_MAX      64
#define LG_TOKEN_LEN   8
#define LG_PER_CTX     64       /* client sessions per libcoap context */
#define LG_PAYLOAD_MAX 1024
#define LG_INFLIGHT_CAP 64      /* open loop: CON pushes queued per sensor */

/* ---- options (opts.c) ---- */

struct lg_opts {
    bool mqtt_mode;             /* publishers instead of CoAP sensors */
    coap_address_t target;      /* gateway or bare server */
    bool have_target;
    coap_address_t bind;        /* sensor i binds bind + i */
    unsigned sensors;           /* sessions opened */
    unsigned active;            /* of which register and emit (0 = all) */
    char prefix[32];            /* identity = prefix + index */
    const char *psk_file;       /* per-identity keys */
    uint8_t key[LG_KEY_MAX];    /* or one key for all */
    size_t key_len;
    const char *cert, *certkey, *ca;   /* PKI (ECDSA) instead of PSK */
    bool observe;               /* notifications instead of pushes */
    bool con;                   /* CON (else NON) */
    double rate;                /* total messages/s; 0 = closed loop */
    unsigned window;            /* closed loop: pushes in flight per sensor */
    double warmup_s, duration_s, drain_s, hold_s;
    unsigned ramp;              /* handshakes in progress at once */
    bool handshake_only;        /* connect, measure, hold; no traffic */
    unsigned lifetime;          /* registration lt= */
    size_t payload_size;
    const char *path;           /* resource path, "temperature" */
    /* MQTT */
    const char *mqtt_host;
    int mqtt_port;              /* 0 = no subscriber */
    const char *base;           /* base topic */
    unsigned publishers;        /* mqtt mode */
    unsigned pub_inflight;      /* mqtt mode, QoS 1 window per publisher */
    int sub_qos;                /* the subscriber's QoS: 0 (default) or 1 */
    /* reporting */
    int watch_pid;              /* CPU and RSS of this process */
    const char *json;
    const char *label;
    bool selftest;
    int verbose;
};

/* Parses argv; 0 ok, 1 exit 0 (--help), -1 usage error (reported). */
int opts_parse(struct lg_opts *o, int argc, char **argv);

/* ---- the sensors (fleet.c, emit.c) ---- */

enum sensor_state {
    SS_IDLE,          /* no session yet */
    SS_HANDSHAKE,     /* ClientHello sent */
    SS_CONNECTED,     /* DTLS up */
    SS_REGISTERING,   /* POST /rd sent */
    SS_REGISTERED,    /* 2.01 seen; observe mode waits for the GET */
    SS_READY,         /* emitting */
    SS_FAILED,
};

struct fleet;

struct sensor {
    struct fleet *f;
    tool_ctx_t *c;                /* shared with LG_PER_CTX - 1 others */
    unsigned idx;
    char id[LG_ID_MAX];
    uint8_t key[LG_KEY_MAX];
    size_t key_len;
    coap_address_t local;
    coap_session_t *session;
    enum sensor_state state;
    unsigned tries;
    int64_t hs_start_us;
    int64_t retry_us;
    uint8_t obs_token[LG_TOKEN_LEN];
    size_t obs_token_len;
    uint32_t seq;               /* last reading sent */
    uint32_t obs_seq;           /* Observe option value */
    unsigned inflight;          /* CON pushes awaiting their 2.xx */
    uint16_t token_ctr;
};

struct lg_counters {
    unsigned long hs_ok, hs_failed, hs_retries;
    unsigned long reg_ok, reg_failed, observed;
    unsigned long sent, sent_window;           /* readings emitted */
    unsigned long acked, acked_window;         /* 2.xx to CON pushes */
    unsigned long errors;                      /* >= 4.00, NACKs */
    unsigned long skipped;                     /* open loop: sensor busy */
};

/* ---- reporting (stats.c) ---- */

/* Latency samples in microseconds, as many as 20 million. */
struct lg_samples {
    uint64_t *v;
    size_t n, cap;
};

/* Appends one sample; past the limit or out of memory it is dropped. */
void samples_add(struct lg_samples *s, uint64_t us);
void samples_free(struct lg_samples *s);

/* The quantiles the latency CDF is drawn from (bench/plot.py). */
#define LG_CDF_POINTS 24
extern const double lg_cdf_q[LG_CDF_POINTS];

struct lg_latency {
    double p50_ms, p99_ms, p999_ms, max_ms, mean_ms;
    double cdf_ms[LG_CDF_POINTS];   /* at lg_cdf_q */
    size_t samples;
};

/* Sorts the samples and sums them up in ms (all 0 when there are none). */
void samples_latency(struct lg_samples *s, struct lg_latency *l);

struct proc_sample {
    double cpu_s;      /* utime + stime */
    long rss_kib;      /* VmRSS */
    bool ok;
};

/* CPU time and VmRSS of process 'pid' now (ok false if unreadable or pid <= 0). */
void proc_sample(int pid, struct proc_sample *p);

/* ---- the sensors (fleet.c) ---- */

/*
 * What fleet.c reports up to the layer that emits readings (emit.c's
 * emit_events).  Both run inside libcoap's callbacks.
 */
struct fleet_events {
    /* A push was answered (ok: 2.xx) or failed; its token holds the send time. */
    void (*push_answered)(struct sensor *s, const uint8_t *tok, bool ok);
    /* The gateway's GET of the resource: fills 'response'. */
    void (*get)(struct sensor *s, const coap_pdu_t *req, coap_pdu_t *response);
};

struct fleet {
    const struct lg_opts *o;
    const struct fleet_events *ev;
    tool_loop_t *loop;          /* where the contexts are */
    struct sensor *s;
    unsigned n, active;
    tool_ctx_t **ctxs;
    unsigned nctx;
    unsigned hs_inflight, next_connect;
    int64_t hs_first_us, hs_last_us, scan_us;
    int64_t t0_us, win_start_us, win_end_us;   /* emission phase */
    bool emitting, kicked;
    uint64_t emitted;           /* open loop: readings scheduled so far */
    unsigned rr;                /* open loop: next sensor */
    struct lg_counters cnt;
    struct lg_samples rtt;      /* CON push round trips in the window */
};

/*
 * The sensors of 'o', their contexts in 'loop', their events up to 'ev';
 * no session yet.  0, or -1 (fleet_free cleans up either way).
 */
int fleet_init(struct fleet *f, const struct lg_opts *o, tool_loop_t *loop,
               const struct fleet_events *ev);
void fleet_free(struct fleet *f);
/*
 * Starts handshakes up to the ramp limit and retries failed ones; true once
 * every sensor's handshake is over (connected or out of tries).
 */
bool fleet_connect_more(struct fleet *f, int64_t now);
/* Sensors in state st or beyond (up to READY), among the first 'upto'. */
unsigned fleet_count(const struct fleet *f, enum sensor_state st, unsigned upto);
/* Token kinds: byte 0 of our 8-byte tokens; bytes 2..7 carry the send time. */
enum { TK_REGISTER = 0xB1, TK_PUSH };
/* Our token for a request of 'kind' sent at t_us (a counter in byte 1). */
void fleet_token(struct sensor *s, uint8_t tok[LG_TOKEN_LEN], int kind,
                 int64_t t_us);

/* ---- readings (emit.c) ---- */

/* Formats a reading; returns its length. */
size_t emit_payload(char *buf, size_t cap, size_t pad_to, unsigned dev,
                    uint32_t seq, int64_t t_us);
/* Sends everything due at 'now'; returns the us until the next is due. */
int64_t emit_due(struct fleet *f, int64_t now);
/* The answers to the readings, for fleet_init(). */
extern const struct fleet_events emit_events;

/* ---- the MQTT side (sub.c, pub.c) ---- */

struct lg_sub;

/* Connects and subscribes to <base>/+/<path> at QoS 0; NULL on failure. */
struct lg_sub *sub_start(const struct lg_opts *o, unsigned devices);
/* Messages sent in [start, end) are the measurement window. */
void sub_set_window(struct lg_sub *s, int64_t start_us, int64_t end_us);
unsigned long sub_received(struct lg_sub *s);
/* Stops the thread; the figures are final after this. */
void sub_stop(struct lg_sub *s);
void sub_free(struct lg_sub *s);

struct sub_result {
    unsigned long received, in_window, dup, reordered, bad;
    unsigned long recv_window;   /* received with arrival time in the window */
    struct lg_latency lat;       /* of the readings sent in the window */
};
void sub_result(struct lg_sub *s, struct sub_result *r);

struct pub_result {
    unsigned long sent, acked, acked_window, sent_window;
    /* --watch-pid (the broker) and this process over the window */
    struct proc_sample srv_start, srv_end, self_start, self_end;
};
/* Runs the MQTT ceiling: publishers + subscriber; fills *r. */
int pub_run(const struct lg_opts *o, struct lg_sub *sub, struct pub_result *r,
            int64_t *win_start, int64_t *win_end);

#endif
