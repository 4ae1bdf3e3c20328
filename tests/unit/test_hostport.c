/*
 * test_hostport.c - "host:port" and "[v6]:port", as the configuration, the
 * endpoints and the tools read them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "coap2mqtt/hostport.h"

static void
split_ok(const char *spec, const char *host, const char *port, bool v6)
{
    char h[64];
    const char *p = "unset";
    bool b = !v6;

    assert_int_equal(hostport_split(spec, h, sizeof(h), &p, &b), 0);
    assert_string_equal(h, host);
    if (port)
        assert_string_equal(p, port);
    else
        assert_null(p);
    assert_int_equal(b, v6);
}

static void
test_forms(void **state)
{
    (void)state;
    split_ok("127.0.0.1:5684", "127.0.0.1", "5684", false);
    split_ok("[::1]:5684", "::1", "5684", true);
    split_ok("[::]:0", "::", "0", true);
    split_ok("localhost", "localhost", NULL, false);
    split_ok("[fe80::1]", "fe80::1", NULL, true);
    split_ok("host:", "host", "", false);
    /* The last colon separates the port: an unbracketed v6 address has
     * its last group taken as the port (the caller's check refuses it). */
    split_ok("::1:5684", "::1", "5684", false);
}

static void
test_malformed(void **state)
{
    char h[8];
    const char *p;
    bool b;

    (void)state;
    assert_int_equal(hostport_split("[::1:5684", h, sizeof(h), &p, &b), -1);
    assert_int_equal(hostport_split("[::1]x5684", h, sizeof(h), &p, &b), -1);
    assert_int_equal(hostport_split("a-long-host:1", h, sizeof(h), &p, &b), -1);
    assert_int_equal(hostport_split("1234567:1", h, sizeof(h), &p, &b), 0);
}

static void
test_port(void **state)
{
    (void)state;
    assert_int_equal(hostport_port("5684", 1), 5684);
    assert_int_equal(hostport_port("0", 0), 0);
    assert_int_equal(hostport_port("0", 1), -1);
    assert_int_equal(hostport_port("65535", 1), 65535);
    assert_int_equal(hostport_port("65536", 1), -1);
    assert_int_equal(hostport_port("", 1), -1);
    assert_int_equal(hostport_port("-1", 0), -1);
    assert_int_equal(hostport_port("+1", 0), -1);
    assert_int_equal(hostport_port("12a", 0), -1);
    assert_int_equal(hostport_port("99999999999999999999", 0), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forms),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_port),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
