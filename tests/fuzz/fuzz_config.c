/*
 * fuzz_config.c - config_load() on arbitrary file contents.
 *
 * Each input is written to a file in a private directory of this process
 * (/tmp/c2m-fuzz-config-<pid>/), because config_load() takes a path and
 * resolves @include next to it.  The directory also holds "inc.conf", so
 * seeds can exercise includes.  An @include whose name holds a '/' is not
 * run: it could name /dev/zero or a FIFO, which is the operator's business
 * and would only hang the fuzzer.
 *
 * Checked beyond "no crash": every report line is one line without control
 * bytes and names a file of our directory; a config with no errors satisfies the
 * ranges docs/CONFIG.md promises; config_free() is always safe.
 *
 * config_libconfig.c declares __lsan_default_suppressions() (libconfig 1.5's
 * parser leaks a token on some syntax errors): leaks inside libconfig.so
 * are not reported, leaks in config*.c still are.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "coap2mqtt/config.h"
#include "coap2mqtt/topics.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static char dir[64], conf_path[96];

static void
cleanup(void)
{
    char p[128];

    unlink(conf_path);
    snprintf(p, sizeof(p), "%s/inc.conf", dir);
    unlink(p);
    rmdir(dir);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char inc[] = "mqtt = { port = 1884; };\n";
    char p[128];
    FILE *f;

    (void)argc;
    (void)argv;
    snprintf(dir, sizeof(dir), "/tmp/c2m-fuzz-config-%ld", (long)getpid());
    snprintf(conf_path, sizeof(conf_path), "%s/c.conf", dir);
    if (mkdir(dir, 0700) < 0)
        return 0;
    snprintf(p, sizeof(p), "%s/inc.conf", dir);
    if ((f = fopen(p, "we"))) {
        fputs(inc, f);
        fclose(f);
    }
    atexit(cleanup);
    return 0;
}

static void
report(void *arg, const char *line)
{
    size_t *n = arg;

    (*n)++;
    /* The config or its inc.conf: both live in dir. */
    if (strncmp(line, dir, strlen(dir)) != 0 || line[strlen(dir)] != '/')
        abort();
    for (const char *p = line; *p; p++)
        if ((unsigned char)*p < 0x20 && *p != '\t')
            abort();
}

/* Only includes that stay in our directory. */
static int
includes_ok(const uint8_t *data, size_t size)
{
    static const char kw[] = "@include";
    const uint8_t *p = data, *end = data + size;

    while ((p = memmem(p, (size_t)(end - p), kw, sizeof(kw) - 1))) {
        const uint8_t *q = p + sizeof(kw) - 1;

        while (q < end && *q != '\n') {
            if (*q == '/' || *q == '\\')
                return 0;
            q++;
        }
        p = q;
    }
    return 1;
}

static int
in_range(int v, int lo, int hi)
{
    return v >= lo && v <= hi;
}

/* What a valid config promises its users (main.c, transport.c, ...). */
static void
check_valid(const struct config *c)
{
    /* A gateway that only dials out (the devices list) needs no endpoint. */
    if (c->coap.n_listen + c->coap.n_plain_listen + c->n_devices < 1 ||
        !c->mqtt.host || !c->mqtt.client_id || !c->state_dir ||
        !topic_base_valid(c->mqtt.base_topic) ||
        !in_range(c->mqtt.port, 1, 65535) || !in_range(c->mqtt.qos_con, 0, 1) ||
        !in_range(c->mqtt.qos_non, 0, 1) ||
        c->mqtt.reconnect_min > c->mqtt.reconnect_max ||
        c->rd.min_lifetime > c->rd.default_lifetime ||
        c->rd.default_lifetime > c->rd.max_lifetime || c->rd.min_lifetime < 1 ||
        c->coap.max_payload < 64 || c->mqtt.max_inflight < 1 ||
        c->queue.max_messages < 1 || c->commands.max_queued < 1 ||
        c->commands.ttl < 1 || c->rd.max_devices < 1)
        abort();
    for (int i = 0; i < c->coap.n_listen; i++)
        if (!c->coap.listen[i])
            abort();
    for (int i = 0; i < c->coap.n_plain_listen; i++)
        if (!c->coap.plain_listen[i])
            abort();
    for (int i = 0; i < c->n_devices; i++)
        if (!c->devices[i].id || !c->devices[i].uri)
            abort();
    /* Multicast discovery only with plain CoAP on and an interface named. */
    if (!in_range(c->discovery.interval, 10, 86400) ||
        (c->discovery.multicast &&
         (c->coap.n_plain_listen < 1 || !c->discovery.interface)))
        abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config cfg;
    size_t lines = 0;
    int fd, errors;

    if (!includes_ok(data, size))
        return -1;      /* not added to the corpus */
    fd = open(conf_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return 0;
    if (write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    close(fd);
    errors = config_load(conf_path, &cfg, report, &lines);
    if (errors < 0 || (size_t)errors != lines)
        abort();
    if (errors == 0)
        check_valid(&cfg);
    config_free(&cfg);
    return 0;
}
