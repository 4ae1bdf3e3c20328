/*
 * textfile.c - the Prometheus text exposition format of the stats, for
 * node_exporter's textfile collector.  The collector reads every *.prom
 * file of its directory whenever it is scraped, at any moment: the file is
 * written under a temporary name in the same directory (a rename across
 * file systems is not atomic) and renamed over the old one, so a scrape
 * sees the old file or the new one, never a torn one.  The temporary name
 * does not end in .prom, so the collector never reads it either.
 *
 * Counters and gauges are told apart by stats.h: what is a member of
 * struct stats only ever grows (counter), the rest of the bridge/stats
 * document is a level (gauge).  So a gauge added to bridge/stats appears
 * here without a change.
 *
 * Layer: base (pure: JSON in, a file out)
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "coap2mqtt/stats.h"
#include "coap2mqtt/textfile.h"

static bool
is_counter(const char *name)
{
#define STATS_NAME(n) #n,
    static const char *const counters[] = { STATS_FIELDS(STATS_NAME) };
#undef STATS_NAME

    for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++)
        if (strcmp(counters[i], name) == 0)
            return true;
    return false;
}

/* Metric names are [a-zA-Z_:][a-zA-Z0-9_:]*; stats names are C
 * identifiers, but a member someone adds later is checked all the same. */
static bool
name_ok(const char *name)
{
    size_t n = strlen(name);

    return n > 0 && n < 128 &&
           strspn(name, "abcdefghijklmnopqrstuvwxyz_0123456789") == n;
}

static int
format_one(FILE *out, const char *name, json_t *v)
{
    bool counter = is_counter(name);
    const char *suffix = counter ? "_total" : "";
    const char *type = counter ? "counter" : "gauge";

    if (!(json_is_integer(v) || json_is_boolean(v)) || !name_ok(name) ||
        strcmp(name, "time") == 0)
        return 0;
    if (fprintf(out, "# HELP coap2mqtt_%s%s coap2mqtt %s \"%s\" of <base>/bridge/stats.\n"
                "# TYPE coap2mqtt_%s%s %s\n",
                name, suffix, type, name, name, suffix, type) < 0)
        return -1;
    if (json_is_boolean(v))
        return fprintf(out, "coap2mqtt_%s %d\n", name, json_is_true(v) ? 1 : 0) < 0 ? -1 : 0;
    return fprintf(out, "coap2mqtt_%s%s %" JSON_INTEGER_FORMAT "\n", name, suffix,
                   json_integer_value(v)) < 0 ? -1 : 0;
}

int
textfile_format(FILE *out, json_t *stats)
{
    const char *name;
    json_t *v;

    if (!json_is_object(stats))
        return -1;
    json_object_foreach(stats, name, v)
        if (format_one(out, name, v) < 0)
            return -1;
    return 0;
}

int
textfile_write(const char *path, json_t *stats)
{
    size_t n = strlen(path);
    char *tmp = malloc(n + 16);
    FILE *f;
    int fd, err;

    if (!tmp)
        return -1;
    snprintf(tmp, n + 16, "%s.tmp.XXXXXX", path);
    if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0 || !(f = fdopen(fd, "w"))) {
        err = errno;
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
        }
        goto fail;
    }
    /* mkostemp makes it 0600; the collector runs as another user. */
    errno = 0;
    if (fchmod(fd, 0644) < 0 || textfile_format(f, stats) < 0 || fflush(f) != 0) {
        err = errno ? errno : EIO;
        fclose(f);
        unlink(tmp);
        goto fail;
    }
    if (fclose(f) != 0 || rename(tmp, path) < 0) {
        err = errno;
        unlink(tmp);
        goto fail;
    }
    free(tmp);
    return 0;
fail:
    free(tmp);
    errno = err;
    return -1;
}
