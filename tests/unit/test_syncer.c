/*
 * test_syncer.c - the background fdatasync() thread (src/syncer.c): a sync
 * of a file, the caller closing its descriptor at once, errors reported
 * once, refusal of a bad descriptor, and no descriptor left behind by a
 * request still pending when the syncer is freed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <cmocka.h>

#include "coap2mqtt/syncer.h"

static int
open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;

    assert_non_null(d);
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static int
temp_file(void)
{
    char path[] = "/tmp/c2m-syncer-XXXXXX";
    int fd = mkstemp(path);

    assert_true(fd >= 0);
    unlink(path);
    assert_int_equal(write(fd, "reading", 7), 7);
    return fd;
}

static void
test_sync_of_a_file(void **state)
{
    syncer_t *s = syncer_new();
    int fd = temp_file();

    (void)state;
    assert_non_null(s);
    assert_true(syncer_request(s, fd));
    syncer_drain(s);
    assert_int_equal(syncer_take_error(s), 0);
    /* Idle again: the next request is taken. */
    assert_true(syncer_request(s, fd));
    syncer_drain(s);
    close(fd);
    syncer_free(s);
}

static void
test_caller_may_close_at_once(void **state)
{
    syncer_t *s = syncer_new();
    int before = open_fds();
    int fd = temp_file();

    (void)state;
    assert_true(syncer_request(s, fd));
    close(fd);                      /* rotation closes the tail segment */
    syncer_drain(s);
    assert_int_equal(syncer_take_error(s), 0);
    assert_int_equal(open_fds(), before);   /* the duplicate is closed */
    syncer_free(s);
}

static void
test_error_reported_once(void **state)
{
    syncer_t *s = syncer_new();
    int p[2];

    (void)state;
    assert_int_equal(pipe(p), 0);
    assert_true(syncer_request(s, p[1]));  /* fdatasync() of a pipe: EINVAL */
    syncer_drain(s);
    assert_int_equal(syncer_take_error(s), EINVAL);
    assert_int_equal(syncer_take_error(s), 0);
    close(p[0]);
    close(p[1]);
    syncer_free(s);
}

static void
test_bad_descriptor_refused(void **state)
{
    syncer_t *s = syncer_new();
    int fd = temp_file();

    (void)state;
    close(fd);
    assert_false(syncer_request(s, fd));
    assert_int_equal(syncer_take_error(s), EBADF);
    syncer_free(s);
}

/* syncer_idle() turns true by itself once the sync is done, and the
 * error is there for the taking by then. */
static void
test_idle_when_done(void **state)
{
    syncer_t *s = syncer_new();
    int p[2];

    (void)state;
    assert_true(syncer_idle(s));
    assert_int_equal(pipe(p), 0);
    assert_true(syncer_request(s, p[1]));  /* EINVAL, as above */
    for (int i = 0; i < 5000 && !syncer_idle(s); i++)
        usleep(1000);
    assert_true(syncer_idle(s));
    assert_int_equal(syncer_take_error(s), EINVAL);
    close(p[0]);
    close(p[1]);
    syncer_free(s);
}

static void
test_free_finishes_pending_request(void **state)
{
    int before = open_fds();
    syncer_t *s = syncer_new();
    int fd = temp_file();

    (void)state;
    assert_true(syncer_request(s, fd));
    syncer_free(s);                 /* no drain: free must sync and close it */
    close(fd);
    assert_int_equal(open_fds(), before);
}

/*
 * A job of several files (a segment, the directory, acked): one request,
 * each synced, the eventfd readable once the job is done, no descriptor
 * left; a bad one among them refuses the whole job.
 */
static void
test_job_of_several_files_notifies(void **state)
{
    syncer_t *s = syncer_new();
    int a = temp_file(), b = temp_file(), dir = open("/tmp", O_RDONLY | O_DIRECTORY);
    struct syncer_file files[3] = { { a, false }, { dir, true }, { b, false } };
    struct syncer_file bad[2] = { { a, false }, { -1, false } };
    int before, nfd;
    uint64_t n;

    (void)state;
    assert_non_null(s);
    nfd = syncer_notify_fd(s);
    assert_true(nfd >= 0);
    assert_int_equal(syncer_notify_fd(s), nfd);         /* one, kept */
    before = open_fds();
    assert_true(syncer_request_set(s, files, 3));
    syncer_drain(s);
    assert_int_equal(syncer_take_error(s), 0);
    assert_int_equal(read(nfd, &n, sizeof(n)), (ssize_t)sizeof(n));
    assert_int_equal(n, 1);
    assert_int_equal(open_fds(), before);
    assert_false(syncer_request_set(s, bad, 2));
    assert_int_equal(open_fds(), before);
    assert_int_equal(syncer_take_error(s), EBADF);
    syncer_free(s);
    close(a);
    close(b);
    close(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sync_of_a_file),
        cmocka_unit_test(test_caller_may_close_at_once),
        cmocka_unit_test(test_error_reported_once),
        cmocka_unit_test(test_bad_descriptor_refused),
        cmocka_unit_test(test_free_finishes_pending_request),
        cmocka_unit_test(test_idle_when_done),
        cmocka_unit_test(test_job_of_several_files_notifies),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
