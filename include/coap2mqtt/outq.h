/*
 * outq.h - the outbound queue between the CoAP side and the MQTT side.
 * Every reading, push and command result becomes an outmsg, is appended
 * here in arrival order (so per-device order is kept), and is handed to the
 * broker by mqtt_side as fast as the connection allows.  The queue is
 * bounded by message count; the caller decides what a refusal means
 * (5.03 for a CON push, a counted drop for a NON reading).
 */
#ifndef COAP2MQTT_OUTQ_H
#define COAP2MQTT_OUTQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct outq outq_t;
typedef struct outmsg outmsg_t;

/*
 * Called exactly once per message: delivered = true when the broker has it
 * (PUBACK for QoS 1, written to the socket for QoS 0), false when it is
 * dropped (shutdown).  The message is freed right after the call.
 */
typedef void (*outmsg_done_fn)(void *arg, bool delivered);

struct outmsg {
    outmsg_t *next;
    char *topic;
    uint8_t *payload;
    size_t len;
    int qos;
    bool retain;
    int ct;                 /* CoAP Content-Format, -1 when unknown */
    uint8_t *corr;          /* MQTT v5 Correlation Data, or NULL */
    size_t corr_len;
    outmsg_done_fn done;
    void *done_arg;
    uint64_t seq;           /* spool sequence number, 0 = not spooled */
    unsigned refusals;      /* times the broker refused it (mqtt_side) */
    uint64_t retry_ms;      /* refused: publish again at this loop time */
};

/* One allocation holding topic and payload.  NULL on failure. */
outmsg_t *outmsg_new(const char *topic, const void *payload, size_t len,
                     int qos, bool retain, int ct);
/* Copies the correlation data; -1 on allocation failure. */
int outmsg_set_correlation(outmsg_t *m, const void *data, size_t len);
/* Runs the done callback (if any) with 'delivered', then frees. */
void outmsg_finish(outmsg_t *m, bool delivered);

outq_t *outq_new(size_t max_messages);
/* A new bound (reload): a queue already longer keeps what it holds and
 * takes nothing more until it is below the bound. */
void outq_set_max(outq_t *q, size_t max_messages);
/* Drops every queued message (done(false)) and frees the queue. */
void outq_free(outq_t *q);

/* Appends; false (ownership stays with the caller) when full. */
bool outq_push(outq_t *q, outmsg_t *m);
/* Puts a message back at the head (after a lost connection). */
void outq_push_front(outq_t *q, outmsg_t *m);
/* Removes and returns the oldest QoS 0 message, or NULL if there is none
 * (O(n): only used when the queue is full). */
outmsg_t *outq_take_oldest_qos0(outq_t *q);
/* Removes and returns the head, or NULL when empty. */
outmsg_t *outq_pop(outq_t *q);
size_t outq_len(const outq_t *q);
size_t outq_max(const outq_t *q);

#endif
