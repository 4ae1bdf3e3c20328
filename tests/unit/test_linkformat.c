/*
 * test_linkformat.c - RFC 6690 registration bodies, friendly and hostile.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "coap2mqtt/linkformat.h"

static struct lf_link links[LINKFORMAT_MAX_LINKS];

static int
parse(const char *body, const char **err)
{
    memset(links, 0xa5, sizeof(links));
    *err = NULL;
    return linkformat_parse(body, strlen(body), links, LINKFORMAT_MAX_LINKS, err);
}

/* Asserts that body is rejected with a reason containing 'why'. */
static void
rejects(const char *body, const char *why)
{
    const char *err;
    int n = parse(body, &err);

    if (n != -1)
        fail_msg("accepted [%s] (%d links)", body, n);
    assert_non_null(err);
    if (strstr(err, why) == NULL)
        fail_msg("[%s]: reason \"%s\", expected \"%s\"", body, err, why);
}

static void
test_basic(void **state)
{
    const char *err;

    (void)state;
    assert_int_equal(parse("</temperature>;obs;ct=0,</setpoint>", &err), 2);
    assert_null(err);
    assert_string_equal(links[0].path, "temperature");
    assert_true(links[0].obs);
    assert_int_equal(links[0].ct, 0);
    assert_string_equal(links[1].path, "setpoint");
    assert_false(links[1].obs);
    assert_int_equal(links[1].ct, -1);

    assert_int_equal(parse("</sensors/temp/1>;rt=\"temperature-c\";if=sensor;ct=50", &err), 1);
    assert_string_equal(links[0].path, "sensors/temp/1");
    assert_int_equal(links[0].ct, 50);
    assert_false(links[0].obs);
}

static void
test_empty_body(void **state)
{
    const char *err = NULL;

    (void)state;
    assert_int_equal(parse("", &err), 0);
    assert_int_equal(parse("  \r\n\t ", &err), 0);
    assert_int_equal(linkformat_parse(NULL, 0, NULL, 0, &err), 0);
    assert_int_equal(linkformat_parse(NULL, 5, NULL, 0, &err), -1);
}

static void
test_quoted_values(void **state)
{
    const char *err;

    (void)state;
    /* ',' and ';' inside quotes do not end the link or the attribute */
    assert_int_equal(parse("</a>;title=\"x, y; z\";obs,</b>;rt=\"p;q,r\";ct=40", &err), 2);
    assert_string_equal(links[0].path, "a");
    assert_true(links[0].obs);
    assert_string_equal(links[1].path, "b");
    assert_int_equal(links[1].ct, 40);
    /* escaped quote inside a quoted value */
    assert_int_equal(parse("</a>;title=\"say \\\"hi\\\", ok\";obs", &err), 1);
    assert_true(links[0].obs);
    assert_int_equal(parse("</a>;title=\"\"", &err), 1);
    /* a fake link inside a value is just text */
    assert_int_equal(parse("</a>;title=\"</evil>;obs\"", &err), 1);
    assert_false(links[0].obs);
}

static void
test_whitespace(void **state)
{
    const char *err;

    (void)state;
    assert_int_equal(parse("  </a> ; obs ; ct = 0 ,\r\n </b>;ct =\"40\"  \n", &err), 2);
    assert_string_equal(links[0].path, "a");
    assert_true(links[0].obs);
    assert_int_equal(links[0].ct, 0);
    assert_string_equal(links[1].path, "b");
    assert_int_equal(links[1].ct, 40);
}

static void
test_ct(void **state)
{
    const char *err;

    (void)state;
    assert_int_equal(parse("</a>;ct=\"0 40\"", &err), 1);
    assert_int_equal(links[0].ct, 0);
    assert_int_equal(parse("</a>;ct=\"  60   110 112 \"", &err), 1);
    assert_int_equal(links[0].ct, 60);
    assert_int_equal(parse("</a>;ct=65535", &err), 1);
    assert_int_equal(links[0].ct, 65535);
    assert_int_equal(parse("</a>;ct=00042", &err), 1);
    assert_int_equal(links[0].ct, 42);
    assert_int_equal(parse("</a>;CT=41", &err), 1);   /* names are case-insensitive */
    assert_int_equal(links[0].ct, 41);
    assert_int_equal(parse("</a>;ct=41;ct=50", &err), 1);   /* first wins */
    assert_int_equal(links[0].ct, 41);
    rejects("</a>;ct=65536", "range");
    rejects("</a>;ct=99999999999999999999999", "range");
    rejects("</a>;ct=-1", "integer");
    rejects("</a>;ct=abc", "integer");
    rejects("</a>;ct=4x", "integer");
    rejects("</a>;ct=\"0,40\"", "integer");
    rejects("</a>;ct=\"\"", "empty ct");
    rejects("</a>;ct=\"   \"", "empty ct");
    rejects("</a>;ct", "ct without a value");
    rejects("</a>;ct=", "missing attribute value");
    rejects("</a>;ct=;obs", "missing attribute value");
}

static void
test_obs_forms(void **state)
{
    const char *err;

    (void)state;
    assert_int_equal(parse("</a>;OBS", &err), 1);
    assert_true(links[0].obs);
    assert_int_equal(parse("</a>;obs=\"\"", &err), 1);
    assert_true(links[0].obs);
    assert_int_equal(parse("</a>;observe", &err), 1);   /* not obs */
    assert_false(links[0].obs);
    assert_int_equal(parse("</a>;title*=UTF-8'de'n%c3%a4chstes", &err), 1);
}

static void
test_percent_and_utf8(void **state)
{
    const char *err;

    (void)state;
    assert_int_equal(parse("</a%20b/%C3%A9t%c3%a9>", &err), 1);
    assert_string_equal(links[0].path, "a b/\xc3\xa9t\xc3\xa9");
    assert_int_equal(parse("</\xc3\xa9t\xc3\xa9>", &err), 1);
    rejects("</a%2Fb>", "encoded '/'");
    rejects("</a%2fb>", "encoded '/'");
    rejects("</a%>", "percent");
    rejects("</a%4>", "percent");
    rejects("</a%zz>", "percent");
    rejects("</a%00b>", "valid resource path");          /* NUL */
    rejects("</a%23b>", "valid resource path");          /* '#' */
    rejects("</a%2Bb>", "valid resource path");          /* '+' */
    rejects("</%C0%AF>", "valid resource path");         /* overlong '/' */
    rejects("</%ED%A0%80>", "valid resource path");      /* surrogate */
    rejects("</\xed\xa0\x80>", "valid resource path");
    rejects("</\xc3>", "valid resource path");           /* truncated */
    rejects("</a%0Ab>", "valid resource path");          /* newline */
}

static void
test_bad_targets(void **state)
{
    (void)state;
    rejects("<>", "starting with '/'");
    rejects("<temp>", "starting with '/'");
    rejects("<coap://host/temp>", "starting with '/'");
    rejects("</>", "valid resource path");
    rejects("<//host/temp>", "valid resource path");
    rejects("</a//b>", "valid resource path");
    rejects("</a/>", "valid resource path");
    rejects("</a/../b>", "valid resource path");
    rejects("</a/./b>", "valid resource path");
    rejects("</..>", "valid resource path");
    rejects("</a/+>", "valid resource path");
    rejects("</a/set>", "valid resource path");
    rejects("</a/get>", "valid resource path");
    rejects("</x/result>", "valid resource path");
    rejects("</availability>", "valid resource path");
    rejects("</a?x=1>", "query");
    rejects("</a#frag>", "query");
    rejects("</a b>", "bad character");
    rejects("</a\tb>", "bad character");
    rejects("</a<b>", "bad character");
    rejects("</a\"b>", "bad character");
    rejects("</a", "unterminated target");
    rejects("<", "unterminated target");
}

static void
test_garbage(void **state)
{
    (void)state;
    rejects("temperature", "expected '<'");
    rejects("/temperature", "expected '<'");
    rejects("</a>,", "nothing after");
    rejects("</a>,,</b>", "expected '<'");
    rejects(",</a>", "expected '<'");
    rejects("</a>;", "attribute name");
    rejects("</a>;;obs", "attribute name");
    rejects("</a>;=5", "attribute name");
    rejects("</a> </b>", "expected ','");
    rejects("</a>obs", "expected ','");
    rejects("</a>;obs x", "expected ','");
    rejects("</a>;rt=\"abc", "unterminated quoted");
    rejects("</a>;rt=\"abc\\", "unterminated quoted");
    rejects("</a>;rt=\"a\x01\"", "control character");
    rejects("</a>;rt=a,b", "expected '<'");
    rejects("</a>;rt=a b", "expected ','");
    rejects("</a>;rt=\"x\"y", "expected ','");
    rejects("</a>;r\xc3\xa9=1", "expected ','");
    rejects("\xef\xbb\xbf</a>", "expected '<'");   /* BOM */
}

static void
test_nul_inside(void **state)
{
    static const char body[] = "</a>;obs\0,</b>";
    const char *err = NULL;

    (void)state;
    /* the length, not a NUL, ends the body: a NUL is garbage */
    assert_int_equal(linkformat_parse(body, sizeof(body) - 1, links,
                                      LINKFORMAT_MAX_LINKS, &err), -1);
    assert_non_null(err);
    assert_int_equal(linkformat_parse("</a\0b>", 6, links,
                                      LINKFORMAT_MAX_LINKS, &err), -1);
    assert_int_equal(linkformat_parse("</a>;rt=\"\0\"", 11, links,
                                      LINKFORMAT_MAX_LINKS, &err), -1);
    /* and the parser never reads past 'len' */
    assert_int_equal(linkformat_parse("</a>;obs,</b>", 8, links,
                                      LINKFORMAT_MAX_LINKS, &err), 1);
    assert_true(links[0].obs);
    assert_int_equal(linkformat_parse("</a>;obs,</b>", 3, links,
                                      LINKFORMAT_MAX_LINKS, &err), -1);
}

static void
test_limits(void **state)
{
    char body[4096], *p = body;
    struct lf_link few[2];
    const char *err;
    int i;

    (void)state;
    for (i = 0; i < LINKFORMAT_MAX_LINKS; i++)
        p += sprintf(p, "%s</r%d>;obs", i ? "," : "", i);
    assert_int_equal(parse(body, &err), LINKFORMAT_MAX_LINKS);
    assert_string_equal(links[31].path, "r31");
    sprintf(p, ",</one-more>");
    rejects(body, "too many links");
    assert_int_equal(linkformat_parse("</a>,</b>", 9, few, 2, &err), 2);
    assert_int_equal(linkformat_parse("</a>,</b>,</c>", 14, few, 2, &err), -1);
    assert_string_equal(err, "too many links");
    assert_int_equal(linkformat_parse("</a>", 4, NULL, 0, &err), -1);
    /* err may be NULL */
    assert_int_equal(linkformat_parse("junk", 4, few, 2, NULL), -1);
}

static void
test_duplicates_merge(void **state)
{
    const char *err;

    (void)state;
    assert_int_equal(parse("</a>,</b>;ct=40,</a>;obs;ct=0,</b>;ct=60", &err), 2);
    assert_string_equal(links[0].path, "a");
    assert_true(links[0].obs);
    assert_int_equal(links[0].ct, 0);
    assert_int_equal(links[1].ct, 40);
}

static void
test_long_and_deep(void **state)
{
    size_t n = 64 * 1024 + 64, i;
    char *body = malloc(n), *p;
    const char *err;

    (void)state;
    assert_non_null(body);
    /* a 64 KiB target */
    p = body;
    *p++ = '<';
    *p++ = '/';
    memset(p, 'x', 64 * 1024);
    p += 64 * 1024;
    *p++ = '>';
    *p = '\0';
    rejects(body, "too long");
    /* 300 levels are too long already; 17 short ones are too deep */
    p = body;
    *p++ = '<';
    for (i = 0; i < 300; i++)
        p += sprintf(p, "/a");
    *p++ = '>';
    *p = '\0';
    rejects(body, "too long");
    p = body;
    *p++ = '<';
    for (i = 0; i < TOPIC_PATH_DEPTH + 1; i++)
        p += sprintf(p, "/a");
    sprintf(p, ">");
    rejects(body, "valid resource path");
    /* just at the limits: 16 levels, 255 bytes */
    p = body;
    p += sprintf(p, "<");
    for (i = 0; i < 15; i++)
        p += sprintf(p, "/a");
    p += sprintf(p, "/");
    memset(p, 'y', 255 - 30);
    p += 255 - 30;
    sprintf(p, ">;obs");
    assert_int_equal(parse(body, &err), 1);
    assert_int_equal(strlen(links[0].path), 255);
    /* a 64 KiB quoted attribute is fine, and still one link */
    p = body;
    p += sprintf(p, "</a>;title=\"");
    memset(p, ',', 64 * 1024);
    p += 64 * 1024;
    sprintf(p, "\";obs");
    assert_int_equal(parse(body, &err), 1);
    assert_true(links[0].obs);
    free(body);
}

/* rt= and if= are kept as written (the first of each, lists as lists);
 * a value too long or with odd bytes is dropped without failing the link. */
static void
test_rt_and_if(void **state)
{
    const char *err;
    char body[256];

    (void)state;
    assert_int_equal(parse("</t>;rt=\"temperature oic.r.temperature\";if=core.s;"
                           "rt=ignored,</s>;IF=\"core.a\",</x>", &err), 3);
    assert_string_equal(links[0].rt, "temperature oic.r.temperature");
    assert_string_equal(links[0].iface, "core.s");
    assert_string_equal(links[1].rt, "");
    assert_string_equal(links[1].iface, "core.a");
    assert_string_equal(links[2].rt, "");
    assert_string_equal(links[2].iface, "");
    /* A second link to the same target fills in what the first lacked. */
    assert_int_equal(parse("</t>;obs,</t>;rt=humidity", &err), 1);
    assert_string_equal(links[0].rt, "humidity");
    /* Too long (64 bytes), an escape, bytes outside ASCII: left out. */
    snprintf(body, sizeof(body), "</a>;rt=\"%064d\",</b>;rt=\"a\\\"b\",</c>;rt=\"\xc3\xa9\"", 0);
    assert_int_equal(parse(body, &err), 3);
    assert_string_equal(links[0].rt, "");
    assert_string_equal(links[1].rt, "");
    assert_string_equal(links[2].rt, "");
    snprintf(body, sizeof(body), "</a>;rt=\"%063d\"", 0);
    assert_int_equal(parse(body, &err), 1);
    assert_int_equal(strlen(links[0].rt), 63);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_empty_body),
        cmocka_unit_test(test_quoted_values),
        cmocka_unit_test(test_whitespace),
        cmocka_unit_test(test_ct),
        cmocka_unit_test(test_obs_forms),
        cmocka_unit_test(test_percent_and_utf8),
        cmocka_unit_test(test_bad_targets),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_nul_inside),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_duplicates_merge),
        cmocka_unit_test(test_long_and_deep),
        cmocka_unit_test(test_rt_and_if),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
