/*
 * commands_internal.h - the command room's state, shared by its files and
 * by nobody else (as transport_internal.h does for the transport):
 *
 *   commands.c          MQTT in (checks, redeliveries, MQTT v5
 *                       properties), the per-device queue, sending,
 *                       answers, the time to live, the device listener
 *   commands_journal.c  what ties commands to the command journal:
 *                       journalling them accepted and done, restoring them
 *                       after a crash, the table of restored commands
 *                       waiting for their device
 *   commands_results.c  publishing the one result of a command (and the
 *                       value a GET brought back)
 *
 * Internal calls between these files are named commands__verb.
 *
 * Layer: services
 */
#ifndef COAP2MQTT_COMMANDS_INTERNAL_H
#define COAP2MQTT_COMMANDS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include <uthash.h>

#include "coap2mqtt/cmdjournal.h"
#include "coap2mqtt/commands.h"
#include "coap2mqtt/loop.h"
#include "devices_internal.h"

#define RECENT_COMMANDS 256
#define TAKEN_COMMANDS 1024     /* mqtt.instance: commands taken directly,
                                 * remembered for forwarded copies */

/* Commands read back from the journal at start, waiting for their device
 * to show up: after a restart the registry knows no device. */
struct waiting {
    char id[TOPIC_ID_MAX + 1];
    struct command *head, *tail;
    size_t n;
    UT_hash_handle hh;
};

struct commands {
    struct gw *gw;
    /* (packet id, topic+payload hash) of recent QoS 1 commands, so a
     * broker redelivery (lost PUBACK) is not PUT twice. */
    uint64_t recent[RECENT_COMMANDS];
    unsigned recent_pos;
    uint64_t taken[TAKEN_COMMANDS];
    unsigned taken_pos;
    uint64_t taken_seq;         /* last sequence written to commands.taken */
    int taken_fd;               /* state_dir/commands.taken, -1 none */
    cmdjournal_t *journal;      /* NULL without queue.spool */
    struct waiting *waiting;    /* by device id */
    uint64_t *unusable;         /* journal records that cannot be restored */
    size_t n_unusable;
};

struct command {
    struct command *next;
    commands_t *c;
    struct device *dev;         /* NULL while it waits in 'wait' */
    struct waiting *wait;
    enum topic_kind kind;
    char path[TOPIC_PATH_MAX + 1];
    uint8_t *payload;
    size_t len;
    int ct;                     /* Content-Format to send, -1 none */
    char *response_topic;       /* MQTT v5, or NULL */
    uint8_t *corr;
    size_t corr_len;
    uint64_t token;             /* while in flight */
    uint64_t sent_ms;
    uint64_t expiry_timer;
    uint64_t ttl_ms;
    int64_t expiry_wall_ms;     /* wall clock: it must survive a restart */
    uint64_t jseq;              /* its number in the journal, 0 = none */
    char audit_id[33];          /* random 128-bit id in the audit trail */
    unsigned attempts;          /* times sent (a lost session sends again) */
};

/* commands.c */
void commands__command_free(struct command *cmd);
void commands__expired(loop_t *loop, void *arg);

/* commands_journal.c */
int64_t commands__wall_ms(void);
int commands__journal_accept(commands_t *c, struct command *cmd);
void commands__waiting_remove(commands_t *c, struct command *cmd);
int commands__journal_open(commands_t *c);
void commands__finish(struct command *cmd);
void commands__adopt(commands_t *c, struct device *dev);
size_t commands__drain_waiting(commands_t *c, const char *id,
                               void (*end)(struct command *cmd, void *arg), void *arg);
size_t commands__cancel_waiting(commands_t *c, const char *id, const char *why);

/* commands_forward.c */
/* True for a forwarded copy of a command taken here directly (dropped);
 * a direct one ('forwarded' false) is remembered. */
bool commands__forward_seen(commands_t *c, const char *id, const char *path,
                            enum topic_kind kind, const struct mosquitto_message *msg,
                            const uint8_t *corr, size_t corr_len, bool forwarded);
void commands__taken_open(commands_t *c);
void commands__taken_close(commands_t *c);
int commands__parse_forwarded(const struct gw *gw, const char *topic, char *id,
                              size_t id_cap, char *path, size_t path_cap,
                              enum topic_kind *kind);
void commands__waiting_add(commands_t *c, const char *id, struct command *cmd);
bool commands__forward_one(commands_t *c, const char *id, struct command *cmd,
                           const char *to);

/* commands_audit.c */
void commands__audit_new_id(struct command *cmd);
void commands__audit_accepted(struct command *cmd, const char *event);
void commands__audit_rejected(struct gw *gw, const char *id, const char *path,
                              enum topic_kind kind, const char *rt, const uint8_t *corr,
                              size_t corr_len, const char *why);
void commands__audit_attempt(struct command *cmd, uint16_t mid);
void commands__audit_result(struct command *cmd, const char *result, int64_t rtt_ms);

/* commands_results.c */
void commands__enqueue_json(struct gw *gw, const char *topic, json_t *body,
                            const uint8_t *corr, size_t corr_len);
void commands__publish_result(struct gw *gw, const char *id, const char *path,
                              enum topic_kind kind, const char *response_topic,
                              const uint8_t *corr, size_t corr_len, json_t *body);
void commands__result_error(struct command *cmd, const char *error);
void commands__publish_get_value(struct command *cmd, const coap_pdu_t *rcvd);

#endif
