/*
 * linkformat.h - RFC 6690 link-format parser for registration bodies such as
 * "</temperature>;obs;ct=0,</setpoint>;rt=\"x\"".  Pure, bounded, no
 * allocation.
 */
#ifndef COAP2MQTT_LINKFORMAT_H
#define COAP2MQTT_LINKFORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include "coap2mqtt/topics.h"

#define LINKFORMAT_MAX_LINKS 32
#define LINKFORMAT_ATTR_MAX  63    /* bytes kept of an "rt" or "if" value */

struct lf_link {
    char path[TOPIC_PATH_MAX + 1]; /* target without the leading '/', NUL-terminated */
    bool obs;                      /* "obs" attribute present */
    int ct;                        /* first value of "ct", or -1 when absent */
    /* The first "rt" and "if" values as written (space-separated lists
     * stay lists); "" when absent, or when a value is longer than
     * LINKFORMAT_ATTR_MAX or holds a byte outside printable ASCII or a
     * backslash: such a value is ignored, not an error. */
    char rt[LINKFORMAT_ATTR_MAX + 1];
    char iface[LINKFORMAT_ATTR_MAX + 1];
};

/*
 * Parses 'len' bytes of 'body' into at most 'max' links.  Every target must
 * be a relative reference starting with '/' and a valid path by
 * topic_path_valid().  Returns the number of links, or -1 on a syntax
 * error, an invalid path, or more than 'max' links; then 'err' (if not NULL)
 * points to a static string saying why.
 */
int linkformat_parse(const char *body, size_t len, struct lf_link *links,
                     size_t max, const char **err);

#endif
