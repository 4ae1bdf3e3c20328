/*
 * commands_results.c - the one result of a command, published as JSON on
 * its MQTT v5 Response Topic or on <base>/<id>/<path>/set/result
 * (.../get/result), and the value a GET brought back, both through the
 * outbound path.
 *
 * Layer: services (calls the outbound path, topics, jansson)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "coap2mqtt/outbound.h"
#include "commands_internal.h"

static const char *
command_id(const struct command *cmd)
{
    return cmd->dev ? cmd->dev->id : cmd->wait->id;
}

/* --- results ------------------------------------------------------------ */

/* Queues 'body' (the reference is taken) as QoS 1 JSON on 'topic'. */
void
commands__enqueue_json(struct gw *gw, const char *topic, json_t *body,
             const uint8_t *corr, size_t corr_len)
{
    char *text = json_dumps(body, JSON_COMPACT);
    outmsg_t *m;

    json_decref(body);
    if (!text || !gw->outq)
        goto out;
    m = outmsg_new(topic, text, strlen(text), 1, false, 50);
    if (m && corr && outmsg_set_correlation(m, corr, corr_len) < 0) {
        outmsg_finish(m, false);
        m = NULL;
    }
    outbound_put(gw, m, "command result for", topic);
out:
    free(text);
}

/* Publishes the one result of a command on its Response Topic, or on
 * <base>/<id>/<path>/set/result (.../get/result for a failed GET). */
void
commands__publish_result(struct gw *gw, const char *id, const char *path,
                         enum topic_kind kind, const char *response_topic,
                         const uint8_t *corr, size_t corr_len, json_t *body)
{
    char topic[TOPIC_MAX];

    if (response_topic)
        snprintf(topic, sizeof(topic), "%s", response_topic);
    else if (topic_build(topic, sizeof(topic), gw->cfg->mqtt.base_topic, id, path,
                         kind == TOPIC_KIND_SET ? "set/result" : "get/result") < 0) {
        json_decref(body);
        return;
    }
    commands__enqueue_json(gw, topic, body, corr, corr_len);
}

void
commands__result_error(struct command *cmd, const char *error)
{
    struct gw *gw = cmd->c->gw;

    commands__audit_result(cmd, error, -1);
    commands__publish_result(gw, command_id(cmd), cmd->path, cmd->kind, cmd->response_topic,
                             cmd->corr, cmd->corr_len, json_pack("{ss}", "error", error));
}

void
commands__publish_get_value(struct command *cmd, const coap_pdu_t *rcvd)
{
    struct gw *gw = cmd->dev->gw;
    char topic[TOPIC_MAX];
    const uint8_t *data = NULL;
    size_t len = 0, offset, total;
    coap_opt_iterator_t it;
    coap_opt_t *opt = coap_check_option(rcvd, COAP_OPTION_CONTENT_FORMAT, &it);
    int ct = opt ? (int)coap_decode_var_bytes(coap_opt_value(opt), coap_opt_length(opt)) : -1;
    outmsg_t *m;

    if (!coap_get_data_large(rcvd, &len, &data, &offset, &total))
        len = 0;
    if (cmd->response_topic)
        snprintf(topic, sizeof(topic), "%s", cmd->response_topic);
    else if (topic_build(topic, sizeof(topic), gw->cfg->mqtt.base_topic,
                         cmd->dev->id, cmd->path, NULL) < 0)
        return;
    m = outmsg_new(topic, data, len, 1, false, ct);
    if (m && cmd->corr && outmsg_set_correlation(m, cmd->corr, cmd->corr_len) < 0) {
        outmsg_finish(m, false);
        return;
    }
    outbound_put(gw, m, "GET answer from", cmd->dev->id);
}

