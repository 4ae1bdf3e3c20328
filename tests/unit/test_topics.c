/*
 * test_topics.c - the topic mapping and the validation that stands between
 * hostile device ids / paths and the broker.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "coap2mqtt/topics.h"

#define ID_OK(s)     assert_true(topic_id_valid((s), strlen(s)))
#define ID_BAD(s)    assert_false(topic_id_valid((s), strlen(s)))
#define PATH_OK(s)   assert_true(topic_path_valid((s), strlen(s)))
#define PATH_BAD(s)  assert_false(topic_path_valid((s), strlen(s)))

static char *
repeat(const char *unit, size_t times, const char *sep)
{
    size_t ul = strlen(unit), sl = strlen(sep), i;
    char *s = malloc(times * (ul + sl) + 1), *p = s;

    assert_non_null(s);
    for (i = 0; i < times; i++) {
        if (i > 0) {
            memcpy(p, sep, sl);
            p += sl;
        }
        memcpy(p, unit, ul);
        p += ul;
    }
    *p = '\0';
    return s;
}

static void
test_id_valid(void **state)
{
    (void)state;
    ID_OK("meter-0001");
    ID_OK("a");
    ID_OK("Bridge");                 /* case matters on MQTT */
    ID_OK("bridge2");
    ID_OK("...");
    ID_OK("$dev");                   /* not the first level, harmless */
    ID_OK("sensor.kitchen");
    ID_OK("capteur-\xc3\xa9t\xc3\xa9");   /* UTF-8 e-acute */
    ID_OK("\xf0\x9f\x8c\xa1");            /* U+1F321, 4 bytes */
    ID_OK("\xef\xbf\xbd");                /* U+FFFD replacement char */
    ID_BAD("");
    ID_BAD("bridge");
    ID_BAD(".");
    ID_BAD("..");
    ID_BAD("a/b");
    ID_BAD("/");
    ID_BAD("a+");
    ID_BAD("+");
    ID_BAD("#");
    ID_BAD("dev#1");
    ID_BAD("tab\there");
    ID_BAD("nl\n");
    ID_BAD("del\x7f");
    ID_BAD("c1\xc2\x85");                 /* U+0085 NEL, a C1 control */
    ID_BAD("\xef\xbf\xbf");               /* U+FFFF noncharacter */
    ID_BAD("\xef\xb7\x90");               /* U+FDD0 noncharacter */
    ID_BAD("\xf4\x8f\xbf\xbe");           /* U+10FFFE noncharacter */
    assert_false(topic_id_valid(NULL, 3));
}

static void
test_id_nul_and_length(void **state)
{
    char id[TOPIC_ID_MAX + 2];

    (void)state;
    /* DTLS identities carry a length; a NUL inside must not truncate. */
    assert_false(topic_id_valid("abc\0def", 7));
    assert_false(topic_id_valid("\0", 1));
    assert_true(topic_id_valid("abc\0def", 3));
    memset(id, 'x', sizeof(id));
    assert_true(topic_id_valid(id, TOPIC_ID_MAX));
    assert_false(topic_id_valid(id, TOPIC_ID_MAX + 1));
    assert_false(topic_id_valid(id, 0));
}

static void
test_id_huge(void **state)
{
    size_t n = 64 * 1024;
    char *big = malloc(n);

    (void)state;
    assert_non_null(big);
    memset(big, 'a', n);
    assert_false(topic_id_valid(big, n));
    assert_false(topic_path_valid(big, n));
    free(big);
}

static void
test_utf8_hostile(void **state)
{
    (void)state;
    ID_BAD("\xc0\xaf");                   /* overlong '/' */
    ID_BAD("\xc1\xbf");                   /* overlong */
    ID_BAD("\xe0\x80\xaf");               /* overlong '/' in 3 bytes */
    ID_BAD("\xe0\x9f\xbf");               /* overlong U+07FF */
    ID_BAD("\xf0\x80\x80\xaf");           /* overlong '/' in 4 bytes */
    ID_BAD("\xf0\x8f\xbf\xbf");           /* overlong U+FFFF */
    ID_BAD("\xc0\x80");                   /* modified-UTF-8 NUL */
    ID_BAD("\xed\xa0\x80");               /* U+D800 surrogate */
    ID_BAD("\xed\xbf\xbf");               /* U+DFFF surrogate */
    ID_BAD("\xf4\x90\x80\x80");           /* U+110000 */
    ID_BAD("\xf5\x80\x80\x80");
    ID_BAD("\xff");
    ID_BAD("\xfe");
    ID_BAD("\x80");                       /* lone continuation */
    ID_BAD("a\xbf");
    ID_BAD("\xc3");                       /* truncated at the end */
    ID_BAD("\xe2\x82");
    ID_BAD("\xf0\x9f\x8c");
    ID_BAD("\xc3" "a");                   /* truncated mid-string */
    ID_BAD("\xe2\x82" "a");
    /* truncated by the explicit length, though the bytes follow */
    assert_false(topic_id_valid("\xe2\x82\xac", 2));
    assert_true(topic_id_valid("\xe2\x82\xac", 3));   /* euro sign */
    PATH_BAD("a/\xc0\xaf/b");
    PATH_BAD("\xed\xa0\x80/x");
    assert_false(topic_base_valid("base\xc0\xaf"));
}

static void
test_path_valid(void **state)
{
    (void)state;
    PATH_OK("temperature");
    PATH_OK("sensors/temp/1");
    PATH_OK("a");
    PATH_OK("settings");
    PATH_OK("set/x");                /* only the last level is reserved */
    PATH_OK("x/availability");
    PATH_OK("availability/x");
    PATH_OK("bridge");               /* reserved as an id, fine as a path */
    PATH_OK("resultat");
    PATH_OK("a b");
    PATH_OK("Set");
    PATH_BAD("");
    PATH_BAD("/temp");
    PATH_BAD("temp/");
    PATH_BAD("a//b");
    PATH_BAD("/");
    PATH_BAD("..");
    PATH_BAD("a/../b");
    PATH_BAD("a/./b");
    PATH_BAD(".");
    PATH_BAD("a/+/b");
    PATH_BAD("a/#");
    PATH_BAD("#");
    PATH_BAD("te+mp");
    PATH_BAD("a\nb");
    PATH_BAD("a\rb");
    PATH_BAD("x/set");
    PATH_BAD("set");
    PATH_BAD("get");
    PATH_BAD("x/get");
    PATH_BAD("x/set/result");
    PATH_BAD("result");
    PATH_BAD("availability");
    assert_false(topic_path_valid("temp\0/x", 7));
    assert_false(topic_path_valid(NULL, 1));
}

static void
test_path_depth_and_length(void **state)
{
    char *s;

    (void)state;
    s = repeat("a", TOPIC_PATH_DEPTH, "/");
    PATH_OK(s);
    free(s);
    s = repeat("a", TOPIC_PATH_DEPTH + 1, "/");
    PATH_BAD(s);
    free(s);
    s = repeat("a", 300, "/");       /* beyond mosquitto's 200 levels */
    PATH_BAD(s);
    free(s);
    s = repeat("x", TOPIC_PATH_MAX, "");
    PATH_OK(s);
    free(s);
    s = repeat("x", TOPIC_PATH_MAX + 1, "");
    PATH_BAD(s);
    free(s);
    s = repeat("", 300, "/");        /* 299 slashes, all empty levels */
    PATH_BAD(s);
    free(s);
}

static void
test_base_valid(void **state)
{
    char *s;

    (void)state;
    assert_true(topic_base_valid("coap2mqtt"));
    assert_true(topic_base_valid("site/hall-3/coap"));
    assert_true(topic_base_valid("a$b"));
    assert_false(topic_base_valid(""));
    assert_false(topic_base_valid(NULL));
    assert_false(topic_base_valid("/coap2mqtt"));
    assert_false(topic_base_valid("coap2mqtt/"));
    assert_false(topic_base_valid("a//b"));
    assert_false(topic_base_valid("a/../b"));
    assert_false(topic_base_valid("a/+"));
    assert_false(topic_base_valid("#"));
    assert_false(topic_base_valid("$SYS"));
    assert_false(topic_base_valid("a\tb"));
    s = repeat("b", TOPIC_BASE_MAX, "");
    assert_true(topic_base_valid(s));
    free(s);
    s = repeat("b", TOPIC_BASE_MAX + 1, "");
    assert_false(topic_base_valid(s));
    free(s);
    s = repeat("b", 64 * 1024, "");
    assert_false(topic_base_valid(s));
    free(s);
    s = repeat("b", TOPIC_PATH_DEPTH + 1, "/");
    assert_false(topic_base_valid(s));
    free(s);
}

static void
test_build(void **state)
{
    char buf[TOPIC_MAX];

    (void)state;
    assert_int_equal(topic_build(buf, sizeof(buf), "coap2mqtt", "dev1",
                                 NULL, NULL), 14);
    assert_string_equal(buf, "coap2mqtt/dev1");
    assert_int_equal(topic_build(buf, sizeof(buf), "b", "d", "temp", NULL), 8);
    assert_string_equal(buf, "b/d/temp");
    topic_build(buf, sizeof(buf), "b", "d", "a/b", "set");
    assert_string_equal(buf, "b/d/a/b/set");
    topic_build(buf, sizeof(buf), "b", "d", "t", "set/result");
    assert_string_equal(buf, "b/d/t/set/result");
    topic_build(buf, sizeof(buf), "site/gw", "d", NULL, "availability");
    assert_string_equal(buf, "site/gw/d/availability");
    topic_build(buf, sizeof(buf), "b", "bridge", NULL, "state");
    assert_string_equal(buf, "b/bridge/state");
}

static void
test_build_too_small(void **state)
{
    char buf[16];
    char big[TOPIC_MAX], *base, *id, *path;

    (void)state;
    /* "b/d/temp" is 8 bytes + NUL: 9 fits, 8 does not */
    assert_int_equal(topic_build(buf, 9, "b", "d", "temp", NULL), 8);
    memset(buf, 'Z', sizeof(buf));
    assert_int_equal(topic_build(buf, 8, "b", "d", "temp", NULL), -1);
    assert_int_equal(buf[0], '\0');
    assert_int_equal((unsigned char)buf[8], 'Z');   /* nothing past cap */
    assert_int_equal(topic_build(buf, 1, "b", "d", NULL, NULL), -1);
    assert_int_equal(topic_build(buf, 0, "b", "d", NULL, NULL), -1);
    assert_int_equal(topic_build(NULL, 10, "b", "d", NULL, NULL), -1);
    assert_int_equal(topic_build(buf, sizeof(buf), "b", "d", "temp", "set/result"), -1);

    /* The largest valid names fit TOPIC_MAX with the longest suffix. */
    base = repeat("b", TOPIC_BASE_MAX, "");
    id = repeat("i", TOPIC_ID_MAX, "");
    path = repeat("p", TOPIC_PATH_MAX, "");
    assert_int_equal(topic_build(big, sizeof(big), base, id, path, "set/result"),
                     TOPIC_BASE_MAX + TOPIC_ID_MAX + TOPIC_PATH_MAX + 13);
    free(base);
    free(id);
    free(path);
}

static void
test_parse_command(void **state)
{
    char id[TOPIC_ID_MAX + 1], path[TOPIC_PATH_MAX + 1];
    enum topic_kind kind = TOPIC_KIND_GET;

    (void)state;
    assert_int_equal(topic_parse_command("coap2mqtt", "coap2mqtt/dev1/setpoint/set",
                                         id, sizeof(id), path, sizeof(path), &kind), 0);
    assert_string_equal(id, "dev1");
    assert_string_equal(path, "setpoint");
    assert_int_equal(kind, TOPIC_KIND_SET);
    assert_int_equal(topic_parse_command("site/gw", "site/gw/d/a/b/c/get",
                                         id, sizeof(id), path, sizeof(path), &kind), 0);
    assert_string_equal(id, "d");
    assert_string_equal(path, "a/b/c");
    assert_int_equal(kind, TOPIC_KIND_GET);
    /* a path may hold "set" as an inner level */
    assert_int_equal(topic_parse_command("b", "b/d/set/x/set",
                                         id, sizeof(id), path, sizeof(path), NULL), 0);
    assert_string_equal(path, "set/x");
}

static void
test_parse_command_rejects(void **state)
{
    static const char *bad[] = {
        "b/d/temp",                 /* no command suffix */
        "b/d/set",                  /* no path */
        "b/d//set",                 /* empty path */
        "b//temp/set",              /* empty id */
        "b/bridge/state/set",       /* reserved id */
        "b/bridge/devices/set",     /* the record of a device named "set" */
        "b/bridge/devices/get",     /* ... or "get" (issue 12, item 11) */
        "b/bridge/devices/x/set",
        "b/d/availability/set",     /* reserved path */
        "b/d/temp/set/set",         /* path ending in set */
        "b/d/temp/get/set",
        "b/d/temp/set/result",      /* our own result topic */
        "b/d/temp/result/set",
        "b/d/../set",
        "b/d/a/../b/set",
        "b/d/./set",
        "b/+/temp/set",
        "b/#/temp/set",
        "b/d/+/set",
        "b/d/temp/",
        "b/d/temp/Set",
        "b/d/temp/sett",
        "bb/d/temp/set",            /* other base */
        "x/d/temp/set",
        "b",
        "b/",
        "b/set",
        "/set",
        "",
        "b/d/temp/set/",
        "b/d/te\xc0\xafmp/set",     /* overlong '/' */
        "b/d\xed\xa0\x80/t/set",    /* surrogate in id */
        "b/d/a\x01/set",
        "b/set/get",
        "b/d/x/",
    };
    char id[TOPIC_ID_MAX + 1], path[TOPIC_PATH_MAX + 1];
    enum topic_kind kind;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (topic_parse_command("b", bad[i], id, sizeof(id), path,
                                sizeof(path), &kind) != -1)
            fail_msg("accepted \"%s\"", bad[i]);
    }
    assert_int_equal(topic_parse_command(NULL, "b/d/t/set", id, sizeof(id),
                                         path, sizeof(path), &kind), -1);
    assert_int_equal(topic_parse_command("b", NULL, id, sizeof(id),
                                         path, sizeof(path), &kind), -1);
}

static void
test_parse_command_deep_and_long(void **state)
{
    char id[TOPIC_ID_MAX + 1], path[TOPIC_PATH_MAX + 1];
    char *levels, *topic;
    size_t n;

    (void)state;
    levels = repeat("a", 300, "/");
    n = strlen(levels) + 32;
    topic = malloc(n);
    assert_non_null(topic);
    snprintf(topic, n, "b/d/%s/set", levels);
    assert_int_equal(topic_parse_command("b", topic, id, sizeof(id), path,
                                         sizeof(path), NULL), -1);
    free(topic);
    free(levels);

    levels = repeat("x", 64 * 1024, "");
    n = strlen(levels) + 32;
    topic = malloc(n);
    assert_non_null(topic);
    snprintf(topic, n, "b/%s/t/set", levels);   /* 64 KiB id */
    assert_int_equal(topic_parse_command("b", topic, id, sizeof(id), path,
                                         sizeof(path), NULL), -1);
    snprintf(topic, n, "b/d/%s/set", levels);   /* 64 KiB path */
    assert_int_equal(topic_parse_command("b", topic, id, sizeof(id), path,
                                         sizeof(path), NULL), -1);
    free(topic);
    free(levels);
}

static void
test_parse_command_small_buffers(void **state)
{
    char id[8], path[8];

    (void)state;
    /* "dev1234" needs 8 bytes with its NUL */
    assert_int_equal(topic_parse_command("b", "b/dev1234/t/set", id, 8, path, 8, NULL), 0);
    assert_int_equal(topic_parse_command("b", "b/dev12345/t/set", id, 8, path, 8, NULL), -1);
    assert_int_equal(topic_parse_command("b", "b/d/temp1234/set", id, 8, path, 8, NULL), -1);
    assert_int_equal(topic_parse_command("b", "b/d/temp123/set", id, 8, path, 8, NULL), 0);
    assert_string_equal(path, "temp123");
    assert_int_equal(topic_parse_command("b", "b/d/t/set", id, 0, path, 8, NULL), -1);
    assert_int_equal(topic_parse_command("b", "b/d/t/set", NULL, 8, path, 8, NULL), -1);
    assert_int_equal(topic_parse_command("b", "b/d/t/set", id, 8, NULL, 8, NULL), -1);
}

/* What topic_build makes, topic_parse_command takes apart again. */
static void
test_round_trip(void **state)
{
    static const char *ids[] = { "d", "meter-7", "\xc3\xa9t\xc3\xa9", "Bridge", "a.b" };
    static const char *paths[] = { "t", "a/b/c", "set/x", "x/availability",
                                   "availability/x", "a b/c,d;e" };
    static const char *bases[] = { "coap2mqtt", "site/gw", "a/b/c/d" };
    static const char *sfx[] = { "set", "get" };
    char topic[TOPIC_MAX], id[TOPIC_ID_MAX + 1], path[TOPIC_PATH_MAX + 1];
    char *maxid, *maxpath, *maxbase;
    enum topic_kind kind;
    size_t b, i, p, s;

    (void)state;
    for (b = 0; b < 3; b++)
        for (i = 0; i < 5; i++)
            for (p = 0; p < 6; p++)
                for (s = 0; s < 2; s++) {
                    assert_true(topic_build(topic, sizeof(topic), bases[b],
                                            ids[i], paths[p], sfx[s]) > 0);
                    assert_int_equal(topic_parse_command(bases[b], topic, id,
                                     sizeof(id), path, sizeof(path), &kind), 0);
                    assert_string_equal(id, ids[i]);
                    assert_string_equal(path, paths[p]);
                    assert_int_equal(kind, s ? TOPIC_KIND_GET : TOPIC_KIND_SET);
                }
    maxbase = repeat("b", TOPIC_BASE_MAX, "");
    maxid = repeat("i", TOPIC_ID_MAX, "");
    maxpath = repeat("p", TOPIC_PATH_MAX, "");
    assert_true(topic_build(topic, sizeof(topic), maxbase, maxid, maxpath, "set") > 0);
    assert_int_equal(topic_parse_command(maxbase, topic, id, sizeof(id), path,
                                         sizeof(path), &kind), 0);
    assert_string_equal(id, maxid);
    assert_string_equal(path, maxpath);
    free(maxbase);
    free(maxid);
    free(maxpath);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_valid),
        cmocka_unit_test(test_id_nul_and_length),
        cmocka_unit_test(test_id_huge),
        cmocka_unit_test(test_utf8_hostile),
        cmocka_unit_test(test_path_valid),
        cmocka_unit_test(test_path_depth_and_length),
        cmocka_unit_test(test_base_valid),
        cmocka_unit_test(test_build),
        cmocka_unit_test(test_build_too_small),
        cmocka_unit_test(test_parse_command),
        cmocka_unit_test(test_parse_command_rejects),
        cmocka_unit_test(test_parse_command_deep_and_long),
        cmocka_unit_test(test_parse_command_small_buffers),
        cmocka_unit_test(test_round_trip),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
