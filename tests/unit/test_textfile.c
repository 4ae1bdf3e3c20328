/*
 * test_textfile.c - the stats as a node_exporter textfile (src/textfile.c):
 * counters (members of struct stats) typed counter and named *_total,
 * the other numbers and booleans gauges, "time" and non-numbers left out;
 * the file replaced by rename (no temporary file left, mode 0644), and a
 * failed write leaves the old file as it was.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>

#include "coap2mqtt/textfile.h"

static char *
format(json_t *doc)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    assert_non_null(f);
    assert_int_equal(textfile_format(f, doc), 0);
    fclose(f);
    return buf;
}

static void
test_types_and_names(void **state)
{
    json_t *doc = json_pack("{sIsIsbsIss}", "registrations", (json_int_t)3,
                            "devices", (json_int_t)2, "mqtt_connected", 1,
                            "time", (json_int_t)1700000000, "note", "x");
    char *text = format(doc);

    (void)state;
    assert_non_null(strstr(text, "# HELP coap2mqtt_registrations_total "));
    assert_non_null(strstr(text, "\n# TYPE coap2mqtt_registrations_total counter\n"
                                 "coap2mqtt_registrations_total 3\n"));
    assert_non_null(strstr(text, "# TYPE coap2mqtt_devices gauge\ncoap2mqtt_devices 2\n"));
    assert_non_null(strstr(text, "coap2mqtt_mqtt_connected 1\n"));
    assert_null(strstr(text, "time"));
    assert_null(strstr(text, "note"));
    free(text);
    json_decref(doc);
}

static void
test_bad_names_left_out(void **state)
{
    json_t *doc = json_pack("{sIsIsI}", "a-b", (json_int_t)1, "", (json_int_t)1,
                            "x\ny", (json_int_t)1);
    char *text = format(doc);

    (void)state;
    assert_string_equal(text, "");
    free(text);
    json_decref(doc);
}

static int
count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void
test_atomic_replace(void **state)
{
    char dir[] = "/tmp/c2m-textfile-XXXXXX", path[128], *text = NULL;
    json_t *doc = json_pack("{sI}", "published", (json_int_t)7), *bad = json_array();
    struct stat st;
    FILE *f;
    size_t n = 0;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/c.prom", dir);
    assert_int_equal(textfile_write(path, doc), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
    assert_int_equal(count_entries(dir), 1);
    /* A document that cannot be written: -1, the old file unchanged. */
    assert_int_equal(textfile_write(path, bad), -1);
    assert_int_equal(count_entries(dir), 1);
    assert_non_null(f = fopen(path, "r"));
    assert_true(getdelim(&text, &n, '\0', f) > 0);
    fclose(f);
    assert_non_null(strstr(text, "coap2mqtt_published_total 7\n"));
    free(text);
    unlink(path);
    rmdir(dir);
    /* A directory that does not exist: -1 with errno. */
    assert_int_equal(textfile_write("/nonexistent-c2m/x.prom", doc), -1);
    assert_int_equal(errno, ENOENT);
    json_decref(doc);
    json_decref(bad);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_types_and_names),
        cmocka_unit_test(test_bad_names_left_out),
        cmocka_unit_test(test_atomic_replace),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
