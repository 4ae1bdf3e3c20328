/*
 * test_parked.c - readings the broker refused for good (src/parked.c):
 * RFC 4648 base64, one JSON line per reading that parses back to the
 * message, lines appended, and -1 (the caller keeps the reading) when the
 * file cannot be written.
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
#include <jansson.h>

#include "../../src/parked.c"

static void
test_base64_vectors(void **state)
{
    static const char *in[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
    static const char *out[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy" };

    (void)state;
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
        char *b = base64((const uint8_t *)in[i], strlen(in[i]));

        assert_non_null(b);
        assert_string_equal(b, out[i]);
        free(b);
    }
}

static char *
temp_dir(void)
{
    char tmpl[] = "/tmp/c2m-parked-XXXXXX";
    char *d = mkdtemp(tmpl);

    assert_non_null(d);
    return strdup(d);
}

static json_t *
line_at(const char *dir, int n)
{
    char path[256], buf[4096];
    FILE *f;
    json_t *j = NULL;

    snprintf(path, sizeof(path), "%s/%s", dir, PARKED_FILE);
    f = fopen(path, "r");
    assert_non_null(f);
    for (int i = 0; i <= n; i++)
        assert_non_null(fgets(buf, sizeof(buf), f));
    fclose(f);
    assert_true(buf[strlen(buf) - 1] == '\n');
    j = json_loads(buf, 0, NULL);
    assert_non_null(j);
    return j;
}

static void
test_lines_are_appended_and_parse_back(void **state)
{
    char *dir = temp_dir(), path[256];
    const uint8_t bin[] = { 0, 1, 2, 0xff };
    outmsg_t *a = outmsg_new("base/dev/a", bin, sizeof(bin), 1, false, 42);
    outmsg_t *b = outmsg_new("base/dev/b", "x", 1, 0, true, -1);
    json_t *j;

    (void)state;
    assert_int_equal(outmsg_set_correlation(a, "id-7", 4), 0);
    assert_int_equal(parked_write(dir, a, "Not authorized", 6), 0);
    assert_int_equal(parked_write(dir, b, "Packet too large", 1), 0);
    j = line_at(dir, 0);
    assert_string_equal(json_string_value(json_object_get(j, "topic")), "base/dev/a");
    assert_string_equal(json_string_value(json_object_get(j, "payload")), "AAEC/w==");
    assert_string_equal(json_string_value(json_object_get(j, "correlation")), "aWQtNw==");
    assert_int_equal(json_integer_value(json_object_get(j, "qos")), 1);
    assert_int_equal(json_integer_value(json_object_get(j, "ct")), 42);
    assert_int_equal(json_integer_value(json_object_get(j, "refusals")), 6);
    assert_string_equal(json_string_value(json_object_get(j, "reason")), "Not authorized");
    json_decref(j);
    j = line_at(dir, 1);
    assert_string_equal(json_string_value(json_object_get(j, "topic")), "base/dev/b");
    assert_null(json_object_get(j, "ct"));
    assert_null(json_object_get(j, "correlation"));
    assert_true(json_is_true(json_object_get(j, "retain")));
    json_decref(j);
    outmsg_finish(a, false);
    outmsg_finish(b, false);
    snprintf(path, sizeof(path), "%s/%s", dir, PARKED_FILE);
    unlink(path);
    rmdir(dir);
    free(dir);
}

/* state_dir is missing: it is made. */
static void
test_state_dir_is_created(void **state)
{
    char *dir = temp_dir(), sub[256], path[300];
    outmsg_t *m = outmsg_new("t", "1", 1, 1, false, 0);

    (void)state;
    snprintf(sub, sizeof(sub), "%s/state", dir);
    assert_int_equal(parked_write(sub, m, "r", 1), 0);
    snprintf(path, sizeof(path), "%s/%s", sub, PARKED_FILE);
    assert_int_equal(access(path, R_OK), 0);
    outmsg_finish(m, false);
    unlink(path);
    rmdir(sub);
    rmdir(dir);
    free(dir);
}

/* Cannot be written: -1, and the caller keeps the reading. */
static void
test_unwritable_is_refused(void **state)
{
    char *dir = temp_dir(), file[256];
    outmsg_t *m = outmsg_new("t", "1", 1, 1, false, 0);
    FILE *f;

    (void)state;
    snprintf(file, sizeof(file), "%s/not-a-dir", dir);
    f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(parked_write(file, m, "r", 1), -1);
    outmsg_finish(m, false);
    unlink(file);
    rmdir(dir);
    free(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base64_vectors),
        cmocka_unit_test(test_lines_are_appended_and_parse_back),
        cmocka_unit_test(test_state_dir_is_created),
        cmocka_unit_test(test_unwritable_is_refused),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
