/*
 * parked.c - readings the broker refuses for good, kept on disk: one JSON
 * line each in state_dir/refused.jsonl, written with one write() and
 * synced before the caller gives up the reading's place in the spool.
 * Parking is rare (one reading per refusal bound), so the sync runs on
 * the loop.
 *
 * Layer: base (calls log)
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>

#include "coap2mqtt/bytes.h"
#include "coap2mqtt/log.h"
#include "coap2mqtt/parked.h"

/* RFC 4648 base64 of 'len' bytes, NUL-terminated; NULL without memory. */
static char *
base64(const uint8_t *p, size_t len)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc((len + 2) / 3 * 4 + 1), *o = out;

    if (!out)
        return NULL;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;

        if (i + 1 < len)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < len)
            v |= p[i + 2];
        *o++ = alphabet[v >> 18 & 63];
        *o++ = alphabet[v >> 12 & 63];
        *o++ = i + 1 < len ? alphabet[v >> 6 & 63] : '=';
        *o++ = i + 2 < len ? alphabet[v & 63] : '=';
    }
    *o = '\0';
    return out;
}

static int
set_base64(json_t *o, const char *key, const uint8_t *p, size_t len)
{
    char *b = base64(p, len);
    int rc;

    if (!b)
        return -1;
    rc = json_object_set_new(o, key, json_string(b));
    free(b);
    return rc;
}

/* The line for 'm', with its newline; NULL without memory. */
static char *
line_for(const outmsg_t *m, const char *reason, unsigned refusals)
{
    json_t *o = json_object();
    char *text = NULL, *line = NULL;

    if (!o)
        return NULL;
    if (json_object_set_new(o, "time", json_integer((json_int_t)time(NULL))) == 0 &&
        json_object_set_new(o, "topic", json_string(m->topic)) == 0 &&
        json_object_set_new(o, "qos", json_integer(m->qos)) == 0 &&
        json_object_set_new(o, "retain", json_boolean(m->retain)) == 0 &&
        (m->ct < 0 || json_object_set_new(o, "ct", json_integer(m->ct)) == 0) &&
        set_base64(o, "payload", m->payload, m->len) == 0 &&
        (!m->corr || set_base64(o, "correlation", m->corr, m->corr_len) == 0) &&
        json_object_set_new(o, "reason", json_string(reason)) == 0 &&
        json_object_set_new(o, "refusals", json_integer(refusals)) == 0)
        text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (text && asprintf(&line, "%s\n", text) < 0)
        line = NULL;
    free(text);
    return line;
}


int
parked_write(const char *state_dir, const outmsg_t *m, const char *reason,
             unsigned refusals)
{
    char path[4096];
    char *line = line_for(m, reason, refusals);
    int fd = -1, rc = -1;
    struct stat st;

    if (!line) {
        log_warnx("cannot park a refused reading for %s: out of memory", m->topic);
        return -1;
    }
    snprintf(path, sizeof(path), "%s/%s", state_dir, PARKED_FILE);
    if (mkdir(state_dir, 0700) < 0 && errno != EEXIST)
        goto out;
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || fstat(fd, &st) < 0)
        goto out;
    /* A line cut by a full disk is taken back, so the file stays lines. */
    if (bytes_write_all(fd, line, strlen(line)) < 0) {
        int e = errno;

        if (ftruncate(fd, st.st_size) < 0)
            log_warn("%s: cannot take back a partial line", path);
        errno = e;
        goto out;
    }
    if (fdatasync(fd) < 0)
        goto out;
    rc = 0;
out:
    if (rc < 0)
        log_warn("cannot park a refused reading for %s in %s", m->topic, path);
    if (fd >= 0)
        close(fd);
    free(line);
    return rc;
}
