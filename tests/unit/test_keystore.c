/*
 * test_keystore.c - the PSK file: format, errors with their lines, file
 * permissions, and lookups at fleet size.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "coap2mqtt/keystore.h"

#define MAX_LINES 32

struct errs {
    int n;
    char *line[MAX_LINES];
};

static void
collect(void *arg, const char *line)
{
    struct errs *e = arg;

    assert_null(strchr(line, '\n'));
    if (e->n < MAX_LINES)
        e->line[e->n] = strdup(line);
    e->n++;
}

static void
errs_free(struct errs *e)
{
    int i;

    for (i = 0; i < e->n && i < MAX_LINES; i++)
        free(e->line[i]);
    e->n = 0;
}

/* A temporary file with exactly 'len' bytes and 'mode'. */
static char *
tmpfile_with(const char *text, size_t len, mode_t mode)
{
    char *path = strdup("/tmp/c2m-ks-XXXXXX");
    int fd;

    assert_non_null(path);
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
    return path;
}

static char *
keyfile(const char *text)
{
    return tmpfile_with(text, strlen(text), 0600);
}

static void
drop(char *path)
{
    unlink(path);
    free(path);
}

static void
assert_key(const keystore_t *ks, const char *id, size_t id_len,
           const void *key, size_t key_len)
{
    size_t got_len = 999;
    const uint8_t *got = keystore_lookup(ks, (const uint8_t *)id, id_len, &got_len);

    assert_non_null(got);
    assert_int_equal(got_len, key_len);
    assert_memory_equal(got, key, key_len);
}

/* Loads text expecting failure with exactly the given lines (":N: reason"
 * after the path, or ": reason" for file-level errors). */
static void
expect_errors(const char *text, size_t len, mode_t mode, int n, ...)
{
    char *path = tmpfile_with(text, len, mode), want[512];
    struct errs e = { 0 };
    va_list ap;
    int i;

    assert_null(keystore_load(path, collect, &e));
    if (e.n != n) {
        for (i = 0; i < e.n && i < MAX_LINES; i++)
            print_message("got: %s\n", e.line[i]);
        fail_msg("%d errors, expected %d", e.n, n);
    }
    va_start(ap, n);
    for (i = 0; i < n; i++) {
        snprintf(want, sizeof(want), "%s%s", path, va_arg(ap, const char *));
        assert_string_equal(e.line[i], want);
    }
    va_end(ap);
    errs_free(&e);
    drop(path);
}

#define EXPECT(text, ...) \
    expect_errors(text, sizeof(text) - 1, 0600, __VA_ARGS__)

static void
test_basic(void **state)
{
    char *path = keyfile("# devices of hall 3\n"
                         "\n"
                         "meter-0001:secretkey\n"
                         "meter-0002:hex:00ff10AB\n"
                         "   \t\n"
                         "  # indented comment\n"
                         "meter-0003:a:b:c\n"
                         "last-line-no-newline:x");
    struct errs e = { 0 };
    keystore_t *ks = keystore_load(path, collect, &e);

    (void)state;
    assert_non_null(ks);
    assert_int_equal(e.n, 0);
    assert_int_equal(keystore_count(ks), 4);
    assert_key(ks, "meter-0001", 10, "secretkey", 9);
    assert_key(ks, "meter-0002", 10, "\x00\xff\x10\xab", 4);
    assert_key(ks, "meter-0003", 10, "a:b:c", 5);   /* first ':' splits */
    assert_key(ks, "last-line-no-newline", 20, "x", 1);
    assert_null(keystore_lookup(ks, (const uint8_t *)"meter-000", 9, NULL));
    assert_null(keystore_lookup(ks, (const uint8_t *)"meter-00011", 11, NULL));
    assert_null(keystore_lookup(ks, (const uint8_t *)"METER-0001", 10, NULL));
    assert_null(keystore_lookup(ks, (const uint8_t *)"", 0, NULL));
    assert_null(keystore_lookup(ks, NULL, 3, NULL));
    assert_non_null(keystore_lookup(ks, (const uint8_t *)"meter-0001", 10, NULL));
    keystore_free(ks);
    drop(path);
}

static void
test_crlf_and_odd_identities(void **state)
{
    static const char text[] = "dos:key\r\n"
                               "with space:k1\n"
                               "caf\xc3\xa9:k2\n"
                               "nul\0inside:k3\n"
                               "trailing-space:k4 \n"
                               "\xff\xfe:k5\n"
                               "hexcase:HEX:00\n"
                               "cr-only-once:k6\r\r\n";
    char *path = tmpfile_with(text, sizeof(text) - 1, 0400);
    keystore_t *ks = keystore_load(path, NULL, NULL);

    (void)state;
    assert_non_null(ks);
    assert_int_equal(keystore_count(ks), 8);
    assert_key(ks, "dos", 3, "key", 3);                 /* \r stripped */
    assert_key(ks, "with space", 10, "k1", 2);
    assert_key(ks, "caf\xc3\xa9", 5, "k2", 2);
    assert_key(ks, "nul\0inside", 10, "k3", 2);         /* length, not NUL */
    assert_null(keystore_lookup(ks, (const uint8_t *)"nul", 3, NULL));
    assert_key(ks, "trailing-space", 14, "k4 ", 3);     /* taken literally */
    assert_key(ks, "\xff\xfe", 2, "k5", 2);
    assert_key(ks, "hexcase", 7, "HEX:00", 6);          /* only "hex:" is hex */
    assert_key(ks, "cr-only-once", 12, "k6\r", 3);
    keystore_free(ks);
    drop(path);
}

static void
test_limits(void **state)
{
    char id[KEYSTORE_ID_MAX + 2], key[KEYSTORE_KEY_MAX * 2 + 2];
    char line[600], *path;
    keystore_t *ks;

    (void)state;
    memset(id, 'i', sizeof(id));
    memset(key, 'k', sizeof(key));
    snprintf(line, sizeof(line), "%.*s:%.*s\n", KEYSTORE_ID_MAX, id,
             KEYSTORE_KEY_MAX, key);
    path = keyfile(line);
    assert_non_null(ks = keystore_load(path, NULL, NULL));
    assert_key(ks, id, KEYSTORE_ID_MAX, key, KEYSTORE_KEY_MAX);
    keystore_free(ks);
    drop(path);

    /* 64 bytes written as 128 hex digits */
    memset(key, 'a', sizeof(key));
    snprintf(line, sizeof(line), "x:hex:%.*s\n", KEYSTORE_KEY_MAX * 2, key);
    path = keyfile(line);
    assert_non_null(ks = keystore_load(path, NULL, NULL));
    keystore_free(ks);
    drop(path);
    snprintf(line, sizeof(line), "x:hex:%.*s\n", KEYSTORE_KEY_MAX * 2 + 2, key);
    expect_errors(line, strlen(line), 0600, 1, ":1: key longer than 64 bytes");

    snprintf(line, sizeof(line), "%.*s:k\n", KEYSTORE_ID_MAX + 1, id);
    expect_errors(line, strlen(line), 0600, 1,
                  ":1: identity longer than 128 bytes");
    snprintf(line, sizeof(line), "i:%.*s\n", KEYSTORE_KEY_MAX + 1, key);
    expect_errors(line, strlen(line), 0600, 1, ":1: key longer than 64 bytes");
}

static void
test_line_errors(void **state)
{
    (void)state;
    EXPECT("a:1\n# c\nno colon here\n", 1, ":3: missing ':'");
    EXPECT(":key\n", 1, ":1: empty identity");
    EXPECT("id:\n", 1, ":1: empty key");
    EXPECT("id:\r\n", 1, ":1: empty key");
    EXPECT("id:hex:\n", 1, ":1: empty hex key");
    EXPECT("id:hex:abc\n", 1, ":1: odd number of hex digits");
    EXPECT("id:hex:zz\n", 1, ":1: bad hex digit in key");
    EXPECT("id:hex:0g\n", 1, ":1: bad hex digit in key");
    EXPECT("id:hex:00 \n", 1, ":1: odd number of hex digits");
    EXPECT("id:hex: 00\n", 1, ":1: odd number of hex digits");
    EXPECT("id:hex:0x00\n", 1, ":1: bad hex digit in key");
    EXPECT("dev:a\nother:b\n\ndev:c\n", 1,
           ":4: duplicate identity (first on line 1)");
    /* every problem in one pass, in file order */
    EXPECT("ok:1\nbad\n:x\nok:2\nfine:3\nz:hex:1\n", 4,
           ":2: missing ':'", ":3: empty identity",
           ":4: duplicate identity (first on line 1)",
           ":6: odd number of hex digits");
}

static void
test_permissions(void **state)
{
    static const char ok[] = "dev:key\n";
    char *path;
    keystore_t *ks;

    (void)state;
    expect_errors(ok, sizeof(ok) - 1, 0644, 1,
                  ": readable by group or others (mode 0644); chmod 600 it");
    expect_errors(ok, sizeof(ok) - 1, 0640, 1,
                  ": readable by group or others (mode 0640); chmod 600 it");
    expect_errors(ok, sizeof(ok) - 1, 0604, 1,
                  ": readable by group or others (mode 0604); chmod 600 it");
    expect_errors(ok, sizeof(ok) - 1, 0602, 1,
                  ": accessible by group or others (mode 0602); chmod 600 it");
    /* the mode error does not hide the line errors */
    expect_errors("x\n", 2, 0660, 2,
                  ": readable by group or others (mode 0660); chmod 600 it",
                  ":1: missing ':'");
    path = tmpfile_with(ok, sizeof(ok) - 1, 0400);
    assert_non_null(ks = keystore_load(path, NULL, NULL));
    keystore_free(ks);
    drop(path);
}

static void
test_not_a_file(void **state)
{
    char dir[] = "/tmp/c2m-ks-dir-XXXXXX", fifo[64], want[128];
    struct errs e = { 0 };

    (void)state;
    assert_null(keystore_load("/nonexistent/psk.keys", collect, &e));
    assert_int_equal(e.n, 1);
    assert_string_equal(e.line[0], "/nonexistent/psk.keys: No such file or directory");
    errs_free(&e);

    assert_non_null(mkdtemp(dir));
    assert_null(keystore_load(dir, collect, &e));
    assert_int_equal(e.n, 1);
    snprintf(want, sizeof(want), "%s: not a regular file", dir);
    assert_string_equal(e.line[0], want);
    errs_free(&e);

    /* a FIFO must not hang the loader (nor "coap2mqtt -t") */
    snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_null(keystore_load(fifo, collect, &e));
    assert_int_equal(e.n, 1);
    snprintf(want, sizeof(want), "%s: not a regular file", fifo);
    assert_string_equal(e.line[0], want);
    errs_free(&e);
    unlink(fifo);
    rmdir(dir);
}

static void
test_empty_file(void **state)
{
    char *path = keyfile("# nothing yet\n\n");
    keystore_t *ks = keystore_load(path, NULL, NULL);

    (void)state;
    assert_non_null(ks);
    assert_int_equal(keystore_count(ks), 0);
    assert_null(keystore_lookup(ks, (const uint8_t *)"x", 1, NULL));
    keystore_free(ks);
    drop(path);
}

static void
test_null_safety(void **state)
{
    (void)state;
    keystore_free(NULL);
    assert_int_equal(keystore_count(NULL), 0);
    assert_null(keystore_lookup(NULL, (const uint8_t *)"x", 1, NULL));
}

/* 100,000 identities: every one found with its own key, and others not. */
static void
test_fleet(void **state)
{
    enum { N = 100000 };
    size_t cap = (size_t)N * 48, len = 0, kl;
    char *text = malloc(cap), id[32], key[32], *path;
    const uint8_t *k;
    keystore_t *ks;
    int i;

    (void)state;
    assert_non_null(text);
    for (i = 0; i < N; i++)
        len += (size_t)snprintf(text + len, cap - len,
                                "meter-%06d:hex:%08x%08x\n", i, (unsigned)i,
                                (unsigned)~i);
    path = tmpfile_with(text, len, 0600);
    free(text);
    ks = keystore_load(path, NULL, NULL);
    assert_non_null(ks);
    assert_int_equal(keystore_count(ks), N);
    for (i = 0; i < N; i++) {
        snprintf(id, sizeof(id), "meter-%06d", i);
        k = keystore_lookup(ks, (const uint8_t *)id, strlen(id), &kl);
        assert_non_null(k);
        assert_int_equal(kl, 8);
        snprintf(key, sizeof(key), "%02x%02x%02x%02x", k[0], k[1], k[2], k[3]);
        snprintf(id, sizeof(id), "%08x", i);
        assert_string_equal(key, id);
        snprintf(id, sizeof(id), "meter-%06dx", i);
        assert_null(keystore_lookup(ks, (const uint8_t *)id, strlen(id), NULL));
    }
    keystore_free(ks);
    drop(path);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_crlf_and_odd_identities),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_line_errors),
        cmocka_unit_test(test_permissions),
        cmocka_unit_test(test_not_a_file),
        cmocka_unit_test(test_empty_file),
        cmocka_unit_test(test_null_safety),
        cmocka_unit_test(test_fleet),
    };

    umask(077);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
