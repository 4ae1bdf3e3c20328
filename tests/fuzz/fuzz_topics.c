/*
 * fuzz_topics.c - the validators and the topic mapping of src/topics.c.
 *
 * The input is used three ways:
 *  1. as one id / path / base candidate, exactly 'size' bytes, unterminated
 *     (ASan catches a validator reading past the length it was given);
 *  2. split at NUL bytes into A, B, C: B is parsed as a command topic under
 *     base A (or "coap2mqtt" when A is not a valid base); whatever
 *     topic_parse_command() accepts must be a valid id and path and must
 *     build back to exactly the same topic;
 *  3. B as id and C as path: when both validate, topic_build() of
 *     ".../set" and ".../get" must parse back to the same id, path, kind.
 * Every topic built from validated parts must be safe for the broker: no
 * '+', '#', empty level, and far fewer than mosquitto's 200 levels.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "coap2mqtt/topics.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DEFAULT_BASE "coap2mqtt"

static void
broker_safe(const char *topic)
{
    size_t levels = 1, len = strlen(topic);

    if (len == 0 || topic[0] == '/' || topic[len - 1] == '/' ||
        strpbrk(topic, "+#") || strstr(topic, "//"))
        abort();
    for (const char *p = topic; *p; p++)
        levels += *p == '/';
    /* base (16) + id (1) + path (16) + "set/result" (2) */
    if (levels > 2 * TOPIC_PATH_DEPTH + 3)
        abort();
}

/* (2): what parses must be valid and round-trip. */
static void
parse_side(const char *base, const char *topic)
{
    char id[TOPIC_ID_MAX + 1], path[TOPIC_PATH_MAX + 1], again[TOPIC_MAX];
    enum topic_kind kind;

    if (topic_parse_command(base, topic, id, sizeof(id), path, sizeof(path), &kind) < 0)
        return;
    if (!topic_id_valid(id, strlen(id)) || !topic_path_valid(path, strlen(path)))
        abort();
    if (topic_build(again, sizeof(again), base, id, path,
                    kind == TOPIC_KIND_SET ? "set" : "get") < 0 ||
        strcmp(again, topic) != 0)
        abort();
    broker_safe(topic);
}

/* (3): what validates must build into a parseable, safe topic. */
static void
build_side(const char *base, const char *id, const char *path)
{
    char topic[TOPIC_MAX], pid[TOPIC_ID_MAX + 1], ppath[TOPIC_PATH_MAX + 1];
    static const char *const suffix[] = { "set", "get" };
    enum topic_kind kind;

    if (!topic_id_valid(id, strlen(id)) || !topic_path_valid(path, strlen(path)))
        return;
    for (int k = 0; k < 2; k++) {
        if (topic_build(topic, sizeof(topic), base, id, path, suffix[k]) < 0)
            abort();    /* validated parts always fit TOPIC_MAX */
        broker_safe(topic);
        if (topic_parse_command(base, topic, pid, sizeof(pid), ppath,
                                sizeof(ppath), &kind) < 0 ||
            strcmp(pid, id) != 0 || strcmp(ppath, path) != 0 ||
            kind != (k ? TOPIC_KIND_GET : TOPIC_KIND_SET))
            abort();
    }
    if (topic_build(topic, sizeof(topic), base, id, path, "set/result") < 0)
        abort();
    broker_safe(topic);
    /* Too small a buffer is refused, never overrun. */
    if (topic_build(topic, strlen(base) + 1, base, id, path, NULL) != -1)
        abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text, *a, *b, *c;
    const char *base;

    /* (1) exactly 'size' bytes, no terminator. */
    (void)topic_id_valid((const char *)data, size);
    (void)topic_path_valid((const char *)data, size);

    if (!(text = malloc(size + 3)))
        return 0;
    memcpy(text, data, size);
    memset(text + size, 0, 3);     /* so B and C always exist */
    a = text;
    b = a + strlen(a) + 1;
    c = b + strlen(b) + 1;         /* at most text + size + 2 */
    base = topic_base_valid(a) ? a : DEFAULT_BASE;
    if (base == a)
        broker_safe(a);
    parse_side(base, b);
    parse_side(DEFAULT_BASE, a);
    build_side(base, b, c);
    free(text);
    return 0;
}
