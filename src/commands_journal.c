/*
 * commands_journal.c - what ties commands to the command journal
 * (cmdjournal.h): a command is journalled when it is accepted and marked
 * done when its one result has been handed to the outbound path; at start
 * the journal's commands are restored, with what is left of their time to
 * live, into a table where they wait for their device (after a restart
 * the registry knows none) and from which they go in front of its queue.
 *
 * Layer: services (calls base: the command journal, the loop, log)
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uthash.h>

#include "coap2mqtt/cmdjournal.h"
#include "coap2mqtt/log.h"
#include "commands_internal.h"

int64_t
commands__wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- the journal ---------------------------------------------------------- */

int
commands__journal_accept(commands_t *c, struct command *cmd)
{
    struct cj_command jc = {
        .kind = (uint8_t)cmd->kind, .ct = cmd->ct,
        .expiry_ms = cmd->expiry_wall_ms, .ttl_ms = cmd->ttl_ms,
        .id = cmd->dev ? cmd->dev->id : cmd->wait->id,
        .id_len = strlen(cmd->dev ? cmd->dev->id : cmd->wait->id),
        .path = cmd->path, .path_len = strlen(cmd->path),
        .rt = cmd->response_topic,
        .rt_len = cmd->response_topic ? strlen(cmd->response_topic) : 0,
        .corr = cmd->corr, .corr_len = cmd->corr_len,
        .payload = cmd->payload, .len = cmd->len,
    };

    cmd->jseq = cmdjournal_accept(c->journal, &jc);
    return cmd->jseq ? 0 : -1;
}

void
commands__waiting_add(commands_t *c, const char *id, struct command *cmd)
{
    struct waiting *w;

    HASH_FIND_STR(c->waiting, id, w);
    if (!w) {
        if (!(w = calloc(1, sizeof(*w))))
            return;
        snprintf(w->id, sizeof(w->id), "%s", id);
        HASH_ADD_STR(c->waiting, id, w);
    }
    cmd->wait = w;
    cmd->next = NULL;
    if (w->tail)
        w->tail->next = cmd;
    else
        w->head = cmd;
    w->tail = cmd;
    w->n++;
}

void
commands__waiting_remove(commands_t *c, struct command *cmd)
{
    struct waiting *w = cmd->wait;
    struct command **pp = &w->head, *prev = NULL;

    while (*pp && *pp != cmd) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp) {
        *pp = cmd->next;
        if (w->tail == cmd)
            w->tail = prev;
        w->n--;
    }
    cmd->next = NULL;
    cmd->wait = NULL;
    if (!w->head) {
        HASH_DEL(c->waiting, w);
        free(w);
    }
}

/* A command from the journal: it waits for its device with what is left
 * of its time to live (at most the whole of it, should the clock have
 * gone back).  False when it cannot be used. */
/* The command a journal record holds, copied; NULL when memory is short
 * (the record then stays in the journal for the next start). */
static struct command *
command_from_record(commands_t *c, const struct cj_command *jc)
{
    struct command *cmd = calloc(1, sizeof(*cmd));

    if (!cmd)
        return NULL;
    cmd->c = c;
    cmd->kind = jc->kind ? TOPIC_KIND_GET : TOPIC_KIND_SET;
    snprintf(cmd->path, sizeof(cmd->path), "%.*s", (int)jc->path_len, jc->path);
    cmd->len = jc->len;
    cmd->payload = malloc(jc->len ? jc->len : 1);
    if (jc->rt)
        cmd->response_topic = strndup(jc->rt, jc->rt_len);
    if (jc->corr) {
        cmd->corr = malloc(jc->corr_len ? jc->corr_len : 1);
        cmd->corr_len = jc->corr_len;
    }
    if (!cmd->payload || (jc->rt && !cmd->response_topic) || (jc->corr && !cmd->corr)) {
        free(cmd->payload);
        free(cmd->response_topic);
        free(cmd->corr);
        free(cmd);
        return NULL;
    }
    if (jc->len)
        memcpy(cmd->payload, jc->payload, jc->len);
    if (jc->corr_len)
        memcpy(cmd->corr, jc->corr, jc->corr_len);
    if (cmd->response_topic && !topic_base_valid(cmd->response_topic)) {
        free(cmd->response_topic);
        cmd->response_topic = NULL;
    }
    cmd->ct = jc->ct;
    cmd->ttl_ms = jc->ttl_ms;
    cmd->expiry_wall_ms = jc->expiry_ms;
    cmd->jseq = jc->seq;
    commands__audit_new_id(cmd);
    return cmd;
}

static bool
restore(commands_t *c, const struct cj_command *jc)
{
    struct gw *gw = c->gw;
    char id[TOPIC_ID_MAX + 1];
    struct command *cmd;
    int64_t left;

    snprintf(id, sizeof(id), "%.*s", (int)jc->id_len, jc->id);
    if (!topic_id_valid(jc->id, jc->id_len) || !topic_path_valid(jc->path, jc->path_len))
        return false;
    if (!(cmd = command_from_record(c, jc)))
        return true;            /* stays in the journal for the next start */
    left = jc->expiry_ms - commands__wall_ms();
    if (left < 0)
        left = 0;
    if ((uint64_t)left > jc->ttl_ms)
        left = (int64_t)jc->ttl_ms;
    commands__waiting_add(c, id, cmd);
    if (!cmd->wait) {
        commands__command_free(cmd);
        return true;
    }
    /* Already expired: answered from the first turn of the loop, when the
     * broker connection is being made. */
    cmd->expiry_timer = loop_add_timer(gw->loop, (uint64_t)left, commands__expired, cmd);
    gw->stats.commands_restored++;
    commands__audit_accepted(cmd, "restored");
    return true;
}

static void
restore_cb(void *arg, const struct cj_command *jc)
{
    commands_t *c = arg;
    uint64_t *n;

    if (restore(c, jc))
        return;
    log_warnx("commands journal: command %" PRIu64 " for %.*s cannot be restored (bad id "
              "or path); dropped", jc->seq, (int)jc->id_len, jc->id);
    if ((n = realloc(c->unusable, (c->n_unusable + 1) * sizeof(*n)))) {
        c->unusable = n;
        c->unusable[c->n_unusable++] = jc->seq;
    }
}

int
commands__journal_open(commands_t *c)
{
    struct gw *gw = c->gw;
    struct cj_load_stats st;
    char path[4096];

    snprintf(path, sizeof(path), "%s/commands.journal", gw->cfg->state_dir);
    c->journal = cmdjournal_open(path, gw->loop, gw->cfg->queue.fsync_interval,
                                 CJ_COMPACT_MIN, restore_cb, c, &st);
    if (!c->journal)
        return -1;
    gw->stats.commands_journal_skipped += st.damaged + (st.torn_tail ? 1 : 0);
    for (size_t i = 0; i < c->n_unusable; i++)
        cmdjournal_done(c->journal, c->unusable[i]);
    free(c->unusable);
    c->unusable = NULL;
    c->n_unusable = 0;
    if (gw->stats.commands_restored)
        log_notice("commands journal: %" PRIu64 " commands from before the restart wait "
                   "for their devices", gw->stats.commands_restored);
    return 0;
}

/* The command's one result has just been handed to the outbound path
 * (spooled first): the journal forgets it, then it is freed.  During
 * teardown there is no queue, nothing was published, and the journal
 * keeps it for the next start. */
void
commands__finish(struct command *cmd)
{
    commands_t *c = cmd->c;

    if (cmd->jseq && c->journal && c->gw->outq)
        cmdjournal_done(c->journal, cmd->jseq);
    commands__command_free(cmd);
}

/* Commands from the journal for this device go in front of its queue, in
 * their order: they are older than anything queued since. */
void
commands__adopt(commands_t *c, struct device *dev)
{
    struct waiting *w;

    HASH_FIND_STR(c->waiting, dev->id, w);
    if (!w)
        return;
    HASH_DEL(c->waiting, w);
    for (struct command *cmd = w->head; cmd; cmd = cmd->next) {
        cmd->dev = dev;
        cmd->wait = NULL;
    }
    w->tail->next = dev->cmd_head;
    dev->cmd_head = w->head;
    if (!dev->cmd_tail)
        dev->cmd_tail = w->tail;
    dev->n_cmds += w->n;
    free(w);
}

void
commands_stop(commands_t *c)
{
    struct waiting *w, *tmp;

    HASH_ITER(hh, c->waiting, w, tmp) {
        struct command *cmd;

        while ((cmd = w->head)) {
            w->head = cmd->next;
            cmd->next = NULL;
            commands__result_error(cmd, "gateway stopping");
            cmd->wait = NULL;
            commands__finish(cmd);
        }
        HASH_DEL(c->waiting, w);
        free(w);
    }
}

/* Takes a device's waiting commands off the table and ends each with
 * 'end' (cmd->wait still names the device then; the entry goes last).
 * Returns how many there were. */
size_t
commands__drain_waiting(commands_t *c, const char *id,
                        void (*end)(struct command *cmd, void *arg), void *arg)
{
    struct waiting *w;
    struct command *cmd;
    size_t n = 0;

    HASH_FIND_STR(c->waiting, id, w);
    if (!w)
        return 0;
    HASH_DEL(c->waiting, w);
    while ((cmd = w->head)) {
        w->head = cmd->next;
        cmd->next = NULL;
        end(cmd, arg);
        n++;
    }
    free(w);
    return n;
}

static void
cancel_one(struct command *cmd, void *why)
{
    commands__result_error(cmd, why);
    cmd->wait = NULL;
    commands__finish(cmd);
}

/* Restored commands waiting for device 'id' are answered {"error": why}. */
size_t
commands__cancel_waiting(commands_t *c, const char *id, const char *why)
{
    return commands__drain_waiting(c, id, cancel_one, (void *)why);
}
