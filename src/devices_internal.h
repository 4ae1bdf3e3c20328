/*
 * devices_internal.h - the device record, shared by the registry
 * (devices.c) and the rooms that keep per-device state in it (observe.c:
 * the observation of each resource; commands*.c: the command queue) and by
 * nobody else, as libcoap does with its *_internal.h headers.
 *
 * Layer: devices
 */
#ifndef COAP2MQTT_DEVICE_INTERNAL_H
#define COAP2MQTT_DEVICE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <coap3/coap.h>
#include <uthash.h>

#include "coap2mqtt/devices.h"
#include "coap2mqtt/linkformat.h"
#include "coap2mqtt/topics.h"

struct command;

#define DEVICE_RECENT_MIDS 16

/* Message IDs of recent CONs from a device, with when they came. */
struct mid_ring {
    uint16_t mid[DEVICE_RECENT_MIDS];
    uint64_t ms[DEVICE_RECENT_MIDS];
    unsigned pos;
};

/* One resource the device declared, and our observation of it. */
struct resource {
    struct device *dev;
    char path[TOPIC_PATH_MAX + 1];
    bool obs;                   /* declared observable */
    int ct;                     /* declared Content-Format, -1 unknown */
    char *rt, *iface;           /* declared rt= and if=, NULL when absent
                                 * (on the heap: most devices send none) */
    uint64_t token;             /* current observation token, 0 = none */
    bool active;                /* a notification confirmed the observation */
    bool have_seq;              /* last_seq/last_ms are valid */
    uint32_t last_seq;          /* last Observe value accepted (24 bit) */
    uint64_t last_ms;           /* when it was accepted (monotonic) */
    uint64_t interval_ms;       /* learnt gap between notifications, 0 = unknown */
    uint64_t refresh_timer;     /* Max-Age + grace re-registration */
    uint64_t retry_timer;       /* retry after a refused observation */
    unsigned failures;          /* consecutive failures, for backoff */
    uint64_t get_ms;            /* when the observe GET of 'token' was sent */
    bool con_get_pending;       /* that GET was CON and is still unanswered
                                 * (libcoap retransmits it) */
    unsigned rereg_tries;       /* NON re-registrations sent unanswered */
    /* In the gateway-wide window of CON observe GETs (observe.c): holding
     * a place (con_get_pending), or waiting for one. */
    bool in_window, waiting;
    struct resource *win_prev, *win_next;
};

struct device {
    char id[TOPIC_ID_MAX + 1];
    struct gw *gw;
    coap_session_t *session;    /* current DTLS session, NULL when none */
    bool registered;            /* has a live /rd registration */
    bool online;                /* availability as last published */
    bool moved;                 /* another gateway instance holds it now */
    bool authenticated;         /* has been on a DTLS session (PSK or
                                 * certificate): plain CoAP may not claim it */
    /* Gone (offline, no session): in the registry's idle queue since
     * idle_ms (monotonic), forgotten rd.forget_after later. */
    bool idle;
    uint64_t idle_ms;
    struct device *idle_prev, *idle_next;
    uint32_t lifetime;          /* s, from lt= */
    int64_t registered_at;      /* wall clock s */
    int64_t last_seen;          /* wall clock s */
    uint64_t expiry_timer;
    uint64_t observe_timer;     /* deferred observe_start_all */
    /* As many as the registration declared (at most LINKFORMAT_MAX_LINKS),
     * so a record is ~0.6 KiB plus 344 B a resource, not 11.4 KiB. */
    struct resource *res;
    size_t n_res;
    /* Message IDs of recent CON pushes taken on this session: libcoap remembers
     * only the last one, and a device whose ACK got lost sends again. */
    struct mid_ring pushes;
    /* The same for CON responses (notifications), and the ACK we send
     * again when one comes twice (device_con_response_seen). */
    struct mid_ring responses;
    uint64_t reack_timer;
    uint16_t reack_mid;
    unsigned reack_left;
    /* token bucket for coap.max_request_rate */
    double tokens;
    uint64_t tokens_ms;
    /* command queue (commands.c) */
    struct command *cmd_head, *cmd_tail;
    struct command *cmd_inflight;
    size_t n_cmds;
    UT_hash_handle hh;
};

/* Finds a declared resource by path; NULL when the device lacks it. */
struct resource *device_resource(struct device *dev, const char *path);

/* --- the registry, shared by devices.c and devices_forget.c --------------- */

#define DEVICES_LISTENERS 8

struct listener {
    device_listener_fn fn;
    void *arg;
};

/* An id that has been on a DTLS session: it stays owned after its record
 * is forgotten, so plain CoAP can never claim it (item 7 of issue 12). */
struct owned_id {
    UT_hash_handle hh;
    char id[TOPIC_ID_MAX + 1];
};

struct devices {
    struct gw *gw;
    struct device *by_id;
    size_t count;
    size_t n_unauth;            /* records never on a DTLS session */
    struct owned_id *owned;
    struct owned_id *dialout;   /* ids the gateway dials out to (devices_reserve) */
    /* Gone devices, oldest first (idle_ms grows along it). */
    struct device *idle;
    uint64_t sweep_timer;
    struct listener listeners[DEVICES_LISTENERS];
    size_t n_listeners;
    /* CON observe GETs unanswered, gateway-wide (observe.c): those in
     * flight, oldest first, and the resources waiting for a place. */
    struct resource *obs_in_flight, *obs_waiting;
    size_t n_obs_in_flight, n_obs_waiting;
    uint64_t obs_pump_timer;
};

/* Tells every listener (devices.c). */
void devices__emit(struct device *dev, enum device_event ev);
/* DEVICE_FREED, then frees the record; the caller took it out of by_id. */
void devices__free_one(devices_t *d, struct device *dev);

/* devices_forget.c */
bool devices__plain(coap_session_t *session);
/* The device was seen on DTLS: its id is owned by an authenticated identity. */
void devices__own_id(devices_t *d, struct device *dev);
/* It is gone (offline, no session): its rd.forget_after countdown starts. */
void devices__idle_enter(struct device *dev);
/* It showed up again (or is being freed): no countdown. */
void devices__idle_leave(struct device *dev);
/* At devices_free(): the owned ids and the sweep timer. */
void devices__forget_free(devices_t *d);

#endif
