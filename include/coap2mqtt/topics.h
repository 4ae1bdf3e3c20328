/*
 * topics.h - the pure mapping between (device id, resource path) and MQTT
 * topics, and the validation that keeps hostile names away from the broker.
 * No allocation, no I/O: every function works on caller buffers.
 */
#ifndef COAP2MQTT_TOPICS_H
#define COAP2MQTT_TOPICS_H

#include <stdbool.h>
#include <stddef.h>

#define TOPIC_ID_MAX      64    /* bytes in a device id */
#define TOPIC_PATH_MAX    255   /* bytes in a resource path, without the leading '/' */
#define TOPIC_PATH_DEPTH  16    /* segments in a resource path */
#define TOPIC_BASE_MAX    128   /* bytes in the base topic */
/* base + '/' + id + '/' + path + "/set/result" + NUL, rounded up */
#define TOPIC_MAX         (TOPIC_BASE_MAX + TOPIC_ID_MAX + TOPIC_PATH_MAX + 32)

enum topic_kind { TOPIC_KIND_SET, TOPIC_KIND_GET };

/*
 * A device id is one topic level: 1..TOPIC_ID_MAX bytes of valid UTF-8, no
 * control characters, no '/', '+', '#', not "." or "..", and not the
 * reserved "bridge".  'len' is explicit because identities come from DTLS.
 */
bool topic_id_valid(const char *id, size_t len);

/*
 * A resource path is 1..TOPIC_PATH_DEPTH segments joined by '/', no leading
 * or trailing '/', no empty, "." or ".." segment, each segment valid UTF-8
 * without control characters, '+' or '#'; total 1..TOPIC_PATH_MAX bytes.
 * Reserved, because they would read as gateway topics: a last segment of
 * "set", "get" or "result", and the whole path "availability".
 */
bool topic_path_valid(const char *path, size_t len);

/* Same rules for the base topic (1..TOPIC_BASE_MAX bytes, may hold '/'). */
bool topic_base_valid(const char *base);

/*
 * Writes "<base>/<id>" [ "/" path ] [ "/" suffix ] into buf.  path and suffix
 * may be NULL.  Returns the length written, or -1 if it does not fit.
 * Inputs are assumed already validated.
 */
int topic_build(char *buf, size_t cap, const char *base, const char *id,
                const char *path, const char *suffix);

/*
 * The gateway's own topic 'leaf' ("state", "stats", "request/x"):
 * "<base>/bridge/<instance>/<leaf>" when the gateway is one instance of
 * several (mqtt.instance), "<base>/bridge/<leaf>" when instance is NULL.
 */
int topic_bridge(char *buf, size_t cap, const char *base, const char *instance,
                 const char *leaf);

/*
 * Splits a command topic "<base>/<id>/<path>/set" or ".../get" into its id
 * and path (copied, NUL-terminated, into the caller's buffers).  Returns 0
 * on success, -1 if the topic is not a command topic or id/path are invalid.
 */
int topic_parse_command(const char *base, const char *topic,
                        char *id, size_t id_cap, char *path, size_t path_cap,
                        enum topic_kind *kind);

#endif
