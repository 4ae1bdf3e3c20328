/*
 * commands_audit.c - the audit trail of commands: every command, where it
 * came from (its MQTT topic, Response Topic and Correlation Data), its
 * device and path, each attempt on the wire (CoAP Message ID and token)
 * and its one result, as structured journal records (sd_journal_sendv,
 * one MESSAGE_ID for all of them, fields C2M_*), and with audit.mqtt as
 * JSON on the non-retained <base>/bridge/audit through the outbound path
 * (spooled like a reading: an audit record is not lost to a broker
 * outage).  docs/AUDIT.md shows how to query it.
 *
 * The journal is written through its native socket, not stderr: the
 * fields stay fields (journalctl C2M_DEVICE=meter-7), which the "<N>"
 * lines of log.c cannot carry.  Without journald (a terminal, a container)
 * sd_journal_sendv fails and the records go only where else they are
 * configured to.
 *
 * Layer: services (part of the commands room; calls libsystemd, the
 * outbound path)
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <systemd/sd-id128.h>
#include <systemd/sd-journal.h>

#include "coap2mqtt/log.h"
#include "commands_internal.h"

/* The one MESSAGE_ID of every command audit record (systemd-id128 new). */
#define AUDIT_MESSAGE_ID "7c7ee3153fea4ec895b90fcc2c6422bc"
#define AUDIT_MAX_FIELDS 24
#define LOG_PRI_INFO 6
#define LOG_PRI_WARNING 4

/* One audit record being put together for both destinations. */
struct audit {
    struct gw *gw;
    struct iovec iov[AUDIT_MAX_FIELDS];
    size_t n;
    json_t *json;               /* NULL without audit.mqtt */
    bool journal;
};

static void
raw_field(struct audit *a, const char *key, const char *value)
{
    char *s;

    if (!a->journal || a->n == AUDIT_MAX_FIELDS || asprintf(&s, "%s=%s", key, value) < 0)
        return;
    a->iov[a->n].iov_base = s;
    a->iov[a->n].iov_len = strlen(s);
    a->n++;
}

/* The JSON name of journal field C2M_<KEY>: <key> in lower case. */
static void
json_key(const char *key, char *out, size_t cap)
{
    size_t i;

    for (i = 0; key[i] && i < cap - 1; i++)
        out[i] = (char)(key[i] >= 'A' && key[i] <= 'Z' ? key[i] - 'A' + 'a' : key[i]);
    out[i] = '\0';
}

/* C2M_<KEY>=value in the journal, "<key>":"value" in the JSON. */
static void
field(struct audit *a, const char *key, const char *value)
{
    char jkey[32], name[40];

    if (!value)
        return;
    snprintf(name, sizeof(name), "C2M_%s", key);
    raw_field(a, name, value);
    if (a->json) {
        json_key(key, jkey, sizeof(jkey));
        json_object_set_new(a->json, jkey, json_string(value));
    }
}

/* The same for a number, which the JSON keeps a number. */
static void
field_u64(struct audit *a, const char *key, uint64_t v)
{
    char buf[24], jkey[32];

    snprintf(buf, sizeof(buf), "%" PRIu64, v);
    field(a, key, buf);
    if (a->json) {
        json_key(key, jkey, sizeof(jkey));
        json_object_set_new(a->json, jkey, json_integer((json_int_t)v));
    }
}

static void
field_hex(struct audit *a, const char *key, const uint8_t *p, size_t len)
{
    char *hex;

    if (!p || !(hex = malloc(len * 2 + 1)))
        return;
    for (size_t i = 0; i < len; i++)
        snprintf(hex + 2 * i, 3, "%02x", p[i]);
    hex[len * 2] = '\0';
    field(a, key, hex);
    free(hex);
}

static bool
audit_begin(struct audit *a, struct gw *gw, const char *event)
{
    memset(a, 0, sizeof(*a));
    a->gw = gw;
    a->journal = gw->cfg->audit.journal;
    if (gw->cfg->audit.mqtt)
        a->json = json_object();
    if (!a->journal && !a->json)
        return false;
    raw_field(a, "MESSAGE_ID", AUDIT_MESSAGE_ID);
    raw_field(a, "SYSLOG_IDENTIFIER", "coap2mqtt");
    field(a, "EVENT", event);
    return true;
}

/* The command's identity: where it came from and what it is for. */
static void
audit_command(struct audit *a, const char *audit_id, uint64_t jseq, const char *id,
              const char *path, enum topic_kind kind, const char *rt,
              const uint8_t *corr, size_t corr_len)
{
    char origin[TOPIC_MAX];

    field(a, "COMMAND", audit_id);
    if (jseq)
        field_u64(a, "JOURNAL_SEQ", jseq);
    field(a, "DEVICE", id);
    field(a, "PATH", path);
    field(a, "METHOD", kind == TOPIC_KIND_SET ? "PUT" : "GET");
    if (topic_build(origin, sizeof(origin), a->gw->cfg->mqtt.base_topic, id, path,
                    kind == TOPIC_KIND_SET ? "set" : "get") >= 0)
        field(a, "ORIGIN_TOPIC", origin);
    field(a, "RESPONSE_TOPIC", rt);
    field_hex(a, "CORRELATION", corr, corr_len);
}

/* The last error sd_journal_sendv gave, so that it is logged once. */
static int journal_error;

static void
audit_send(struct audit *a, int priority, const char *fmt, ...)
{
    char prio[4], *msg = NULL, topic[TOPIC_MAX];
    va_list ap;
    int rc;

    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    snprintf(prio, sizeof(prio), "%d", priority);
    raw_field(a, "PRIORITY", prio);
    raw_field(a, "MESSAGE", msg ? msg : "command audit");
    if (a->journal && (rc = sd_journal_sendv(a->iov, (int)a->n)) < 0 && rc != journal_error) {
        /* Said once per cause: without journald (a terminal, a container)
         * every record would fail the same way. */
        log_warnx("audit: cannot write to the journal: %s", strerror(-rc));
        journal_error = rc;
    }
    for (size_t i = 0; i < a->n; i++)
        free(a->iov[i].iov_base);
    if (a->json) {
        json_object_set_new(a->json, "time_ms", json_integer(commands__wall_ms()));
        snprintf(topic, sizeof(topic), "%s/bridge/audit", a->gw->cfg->mqtt.base_topic);
        commands__enqueue_json(a->gw, topic, a->json, NULL, 0);
    }
    free(msg);
}

/* --- the events ------------------------------------------------------------ */

void
commands__audit_new_id(struct command *cmd)
{
    sd_id128_t id;

    if (sd_id128_randomize(&id) < 0)
        snprintf(cmd->audit_id, sizeof(cmd->audit_id), "%016" PRIx64 "%016" PRIx64,
                 (uint64_t)commands__wall_ms(), (uint64_t)(uintptr_t)cmd);
    else
        sd_id128_to_string(id, cmd->audit_id);
}

static const char *
command_device(const struct command *cmd)
{
    return cmd->dev ? cmd->dev->id : cmd->wait ? cmd->wait->id : "?";
}

static void
audit_of(struct audit *a, const struct command *cmd)
{
    audit_command(a, cmd->audit_id, cmd->jseq, command_device(cmd), cmd->path, cmd->kind,
                  cmd->response_topic, cmd->corr, cmd->corr_len);
}

void
commands__audit_accepted(struct command *cmd, const char *event)
{
    struct audit a;

    if (!audit_begin(&a, cmd->c->gw, event))
        return;
    audit_of(&a, cmd);
    field_u64(&a, "PAYLOAD_BYTES", cmd->len);
    field_u64(&a, "TTL_MS", cmd->ttl_ms);
    audit_send(&a, LOG_PRI_INFO, "command %s %s %s/%s: %s", cmd->audit_id,
               cmd->kind == TOPIC_KIND_SET ? "PUT" : "GET", command_device(cmd), cmd->path,
               event);
}

void
commands__audit_rejected(struct gw *gw, const char *id, const char *path,
                         enum topic_kind kind, const char *rt, const uint8_t *corr,
                         size_t corr_len, const char *why)
{
    struct audit a;
    struct command tmp;

    if (!audit_begin(&a, gw, "rejected"))
        return;
    commands__audit_new_id(&tmp);
    audit_command(&a, tmp.audit_id, 0, id, path, kind, rt, corr, corr_len);
    field(&a, "RESULT", why);
    audit_send(&a, LOG_PRI_WARNING, "command %s for %s/%s rejected: %s", tmp.audit_id,
               id, path, why);
}

void
commands__audit_attempt(struct command *cmd, uint16_t mid)
{
    struct audit a;
    uint8_t tok[8];

    cmd->attempts++;
    if (!audit_begin(&a, cmd->c->gw, "attempt"))
        return;
    audit_of(&a, cmd);
    field_u64(&a, "ATTEMPT", cmd->attempts);
    field_u64(&a, "COAP_MID", mid);
    for (int i = 0; i < 8; i++)
        tok[i] = (uint8_t)(cmd->token >> (56 - 8 * i));
    field_hex(&a, "COAP_TOKEN", tok, sizeof(tok));
    audit_send(&a, LOG_PRI_INFO, "command %s %s %s/%s: attempt %u, CON mid %u",
               cmd->audit_id, cmd->kind == TOPIC_KIND_SET ? "PUT" : "GET",
               command_device(cmd), cmd->path, cmd->attempts, mid);
}

/* 'result' is a CoAP code ("2.04") or an error ("timeout", "expired", ...);
 * rtt_ms < 0 when there was no answer. */
void
commands__audit_result(struct command *cmd, const char *result, int64_t rtt_ms)
{
    struct audit a;
    bool ok = result[0] == '2' && result[1] == '.';

    if (!audit_begin(&a, cmd->c->gw, "result"))
        return;
    audit_of(&a, cmd);
    field(&a, "RESULT", result);
    field_u64(&a, "ATTEMPTS", cmd->attempts);
    if (rtt_ms >= 0)
        field_u64(&a, "RTT_MS", (uint64_t)rtt_ms);
    /* libcoap 4.3.1 retransmits on its own and reports only the end: a
     * timeout means every one of the RFC 7252 retransmissions went out. */
    if (strcmp(result, "timeout") == 0)
        field_u64(&a, "RETRANSMISSIONS", COAP_DEFAULT_MAX_RETRANSMIT);
    audit_send(&a, ok ? LOG_PRI_INFO : LOG_PRI_WARNING, "command %s %s %s/%s: %s",
               cmd->audit_id, cmd->kind == TOPIC_KIND_SET ? "PUT" : "GET",
               command_device(cmd), cmd->path, result);
}
