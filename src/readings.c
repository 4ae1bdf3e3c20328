/*
 * readings.c - the shape of a reading on MQTT.  Kept in one place so that
 * notifications and pushes publish the same way.
 *
 * Layer: base (calls topics, payload_json, outq)
 */
#include <stdlib.h>
#include <string.h>

#include "coap2mqtt/log.h"
#include "coap2mqtt/payload_json.h"
#include "coap2mqtt/readings.h"
#include "coap2mqtt/topics.h"

#define CT_JSON 50

outmsg_t *
reading_message(struct gw *gw, const char *id, const char *path,
                const uint8_t *data, size_t len, int qos, int ct)
{
    char topic[TOPIC_MAX];
    const char *err = NULL;
    char *json = NULL;
    outmsg_t *m;

    if (topic_build(topic, sizeof(topic), gw->cfg->mqtt.base_topic, id, path, NULL) < 0)
        return NULL;
    if (gw->cfg->mqtt.json && ct >= 0) {
        int rc = payload_to_json(ct, data, len, &json, &err);

        if (rc == 0) {
            m = outmsg_new(topic, json, strlen(json), qos, false, CT_JSON);
            free(json);
            return m;
        }
        if (rc < 0) {
            gw->stats.json_failed++;
            log_ratelimited(&gw->stats.json_failed,
                            "device %s: /%s: ct %d payload not converted to JSON: %s",
                            id, path, ct, err ? err : "invalid");
        }
    }
    return outmsg_new(topic, data, len, qos, false, ct);
}
