/*
 * test_config_diff.c - two configurations compared for a reload: every
 * changed setting named once by its dotted name, values moved between
 * configurations without a leak or a double free, values written out for
 * the log, and the log_level names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "coap2mqtt/config.h"
#include "coap2mqtt/log.h"

#define BASE "coap = {\n" \
             "  listen = [ \"0.0.0.0:5684\" ];\n" \
             "  plain_listen = [ \"127.0.0.1:5683\" ];\n" \
             "  psk_file = \"/k\";\n" \
             "};\n"

static void
no_errors(void *arg, const char *line)
{
    (void)arg;
    fail_msg("unexpected error: %s", line);
}

static void
load(struct config *cfg, const char *text)
{
    char path[] = "/tmp/c2m-diff-XXXXXX";
    int fd = mkstemp(path);
    size_t len = strlen(text);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    assert_int_equal(config_load(path, cfg, no_errors, NULL), 0);
    unlink(path);
}

struct seen {
    char names[16][64];
    int n;
};

static void
collect(void *arg, const char *name)
{
    struct seen *s = arg;

    assert_true(s->n < 16);
    snprintf(s->names[s->n++], sizeof(s->names[0]), "%s", name);
}

static void
test_same_file_no_difference(void **state)
{
    struct config a, b;
    struct seen s = { .n = 0 };

    (void)state;
    load(&a, BASE "mqtt = { qos_con = 0; };\n");
    load(&b, BASE "mqtt = { qos_con = 0; };\n");
    config_diff(&a, &b, collect, &s);
    assert_int_equal(s.n, 0);
    config_free(&a);
    config_free(&b);
}

static void
test_changes_named_in_schema_order(void **state)
{
    struct config a, b;
    struct seen s = { .n = 0 };

    (void)state;
    load(&a, BASE "mqtt = { stats_interval = 5; };\n");
    load(&b, "coap = { listen = [ \"0.0.0.0:5685\" ]; psk_file = \"/k\";\n"
             "  plain_listen = [ \"127.0.0.1:5683\" ]; };\n"
             "log_level = \"debug\";\n"
             "mqtt = { stats_interval = 9; json = true; base_topic = \"x\"; };\n"
             "homeassistant = { enabled = true; };\n");
    config_diff(&a, &b, collect, &s);
    assert_int_equal(s.n, 6);
    assert_string_equal(s.names[0], "log_level");
    assert_string_equal(s.names[1], "coap.listen");
    assert_string_equal(s.names[2], "mqtt.base_topic");
    assert_string_equal(s.names[3], "mqtt.stats_interval");
    assert_string_equal(s.names[4], "mqtt.json");
    assert_string_equal(s.names[5], "homeassistant.enabled");
    config_free(&a);
    config_free(&b);
}

static void
test_take_moves_values(void **state)
{
    struct config a, b;
    struct seen s = { .n = 0 };
    char buf[128];

    (void)state;
    load(&a, BASE);
    load(&b, "coap = { listen = [ \"0.0.0.0:1\", \"[::]:2\" ]; psk_file = \"/k\"; };\n"
             "mqtt = { stats_interval = 7; response_topic_prefix = \"r\"; };\n");
    assert_int_equal(config_take(&a, &b, "mqtt.stats_interval"), 0);
    assert_int_equal(config_take(&a, &b, "mqtt.response_topic_prefix"), 0);
    assert_int_equal(config_take(&a, &b, "coap.listen"), 0);
    assert_int_equal(config_take(&a, &b, "mqtt.nope"), -1);
    assert_int_equal(config_take(&a, &b, "mqtt"), -1);
    assert_int_equal(a.mqtt.stats_interval, 7);
    assert_string_equal(a.mqtt.response_topic_prefix, "r");
    assert_null(b.mqtt.response_topic_prefix);
    assert_int_equal(a.coap.n_listen, 2);
    assert_string_equal(config_value_text(&a, "coap.listen", buf, sizeof(buf)),
                        "[ \"0.0.0.0:1\", \"[::]:2\" ]");
    assert_string_equal(config_value_text(&a, "mqtt.stats_interval", buf, sizeof(buf)), "7");
    assert_string_equal(config_value_text(&a, "mqtt.json", buf, sizeof(buf)), "false");
    assert_string_equal(config_value_text(&a, "mqtt.base_topic", buf, sizeof(buf)),
                        "\"coap2mqtt\"");
    assert_string_equal(config_value_text(&a, "mqtt.username", buf, sizeof(buf)), "(unset)");
    assert_string_equal(config_value_text(&a, "nope", buf, sizeof(buf)), "?");
    /* What is left differs only where b still holds a's old values. */
    config_diff(&a, &b, collect, &s);
    assert_int_equal(s.n, 3);
    config_free(&a);
    config_free(&b);
}

static void
test_log_level_names(void **state)
{
    (void)state;
    assert_int_equal(config_log_level("error"), LOG_LVL_ERR);
    assert_int_equal(config_log_level("debug"), LOG_LVL_DEBUG);
    assert_int_equal(config_log_level("notice"), LOG_LVL_NOTICE);
    assert_int_equal(config_log_level("verbose"), -1);
    assert_int_equal(config_log_level(NULL), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_file_no_difference),
        cmocka_unit_test(test_changes_named_in_schema_order),
        cmocka_unit_test(test_take_moves_values),
        cmocka_unit_test(test_log_level_names),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
