/*
 * outq.c - a bounded FIFO of outbound MQTT messages (singly linked, O(1)
 * at both ends).  Memory per message is one allocation sized to its topic
 * and payload.
 *
 * Layer: base (pure)
 */
#include <stdlib.h>
#include <string.h>

#include "coap2mqtt/outq.h"

struct outq {
    outmsg_t *head, *tail;
    size_t len, max;
};

outmsg_t *
outmsg_new(const char *topic, const void *payload, size_t len, int qos,
           bool retain, int ct)
{
    size_t tlen = strlen(topic) + 1;
    outmsg_t *m = malloc(sizeof(*m) + tlen + len);

    if (!m)
        return NULL;
    memset(m, 0, sizeof(*m));
    m->topic = (char *)(m + 1);
    memcpy(m->topic, topic, tlen);
    m->payload = (uint8_t *)m->topic + tlen;
    if (len)
        memcpy(m->payload, payload, len);
    m->len = len;
    m->qos = qos;
    m->retain = retain;
    m->ct = ct;
    return m;
}

int
outmsg_set_correlation(outmsg_t *m, const void *data, size_t len)
{
    free(m->corr);
    m->corr = NULL;
    m->corr_len = 0;
    if (!len)
        return 0;
    if (!(m->corr = malloc(len)))
        return -1;
    memcpy(m->corr, data, len);
    m->corr_len = len;
    return 0;
}

void
outmsg_finish(outmsg_t *m, bool delivered)
{
    if (m->done)
        m->done(m->done_arg, delivered);
    free(m->corr);
    free(m);
}

outq_t *
outq_new(size_t max_messages)
{
    outq_t *q = calloc(1, sizeof(*q));

    if (q)
        q->max = max_messages;
    return q;
}

void
outq_set_max(outq_t *q, size_t max_messages)
{
    q->max = max_messages;
}

void
outq_free(outq_t *q)
{
    outmsg_t *m;

    if (!q)
        return;
    while ((m = outq_pop(q)))
        outmsg_finish(m, false);
    free(q);
}

bool
outq_push(outq_t *q, outmsg_t *m)
{
    if (q->len >= q->max)
        return false;
    m->next = NULL;
    if (q->tail)
        q->tail->next = m;
    else
        q->head = m;
    q->tail = m;
    q->len++;
    return true;
}

void
outq_push_front(outq_t *q, outmsg_t *m)
{
    m->next = q->head;
    q->head = m;
    if (!q->tail)
        q->tail = m;
    q->len++;
}

outmsg_t *
outq_take_oldest_qos0(outq_t *q)
{
    outmsg_t **pp = &q->head, *prev = NULL, *m;

    while ((m = *pp) && m->qos != 0) {
        prev = m;
        pp = &m->next;
    }
    if (!m)
        return NULL;
    *pp = m->next;
    if (q->tail == m)
        q->tail = prev;
    q->len--;
    m->next = NULL;
    return m;
}

outmsg_t *
outq_pop(outq_t *q)
{
    outmsg_t *m = q->head;

    if (!m)
        return NULL;
    q->head = m->next;
    if (!q->head)
        q->tail = NULL;
    q->len--;
    m->next = NULL;
    return m;
}

size_t
outq_len(const outq_t *q)
{
    return q->len;
}

size_t
outq_max(const outq_t *q)
{
    return q->max;
}
