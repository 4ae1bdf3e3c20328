/*
 * test_cmdjournal.c - the command journal (src/cmdjournal.c): records
 * round-trip; a record cut short or with any byte changed is never taken
 * for an intact one, nor is a record whose fields do not hold together
 * even with a matching CRC; at open, answered commands are dropped and
 * the rest handed back in order; damaged stretches and a torn tail are
 * skipped and counted, never fatal; the file is rewritten when it grows.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <cmocka.h>

#include "coap2mqtt/cmdjournal.h"
#include "coap2mqtt/loop.h"

/* --- helpers -------------------------------------------------------------- */

static struct cj_command
sample(const char *id, const char *path, const char *payload)
{
    struct cj_command c = {
        .seq = 7, .kind = 0, .ct = 0, .expiry_ms = 1700000000123LL, .ttl_ms = 300000,
        .id = id, .id_len = strlen(id), .path = path, .path_len = strlen(path),
        .rt = "replies/x", .rt_len = 9,
        .corr = (const uint8_t *)"\x00\x01\x02", .corr_len = 3,
        .payload = (const uint8_t *)payload, .len = strlen(payload),
    };
    return c;
}

static void
assert_same(const struct cj_command *a, const struct cj_command *b)
{
    assert_int_equal(a->seq, b->seq);
    assert_int_equal(a->kind, b->kind);
    assert_int_equal(a->ct, b->ct);
    assert_int_equal(a->expiry_ms, b->expiry_ms);
    assert_int_equal(a->ttl_ms, b->ttl_ms);
    assert_int_equal(a->id_len, b->id_len);
    assert_memory_equal(a->id, b->id, a->id_len);
    assert_int_equal(a->path_len, b->path_len);
    assert_memory_equal(a->path, b->path, a->path_len);
    assert_true((a->rt == NULL) == (b->rt == NULL));
    assert_int_equal(a->rt_len, b->rt_len);
    if (a->rt_len)
        assert_memory_equal(a->rt, b->rt, a->rt_len);
    assert_true((a->corr == NULL) == (b->corr == NULL));
    assert_int_equal(a->corr_len, b->corr_len);
    if (a->corr_len)
        assert_memory_equal(a->corr, b->corr, a->corr_len);
    assert_int_equal(a->len, b->len);
    if (a->len)
        assert_memory_equal(a->payload, b->payload, a->len);
}

/* Re-seals a record whose body the test changed (a valid CRC on bad
 * fields). */
static void
reseal(uint8_t *rec, size_t len)
{
    uint32_t crc = (uint32_t)crc32(0, rec + CJ_HDR, (uInt)(len - CJ_HDR));

    for (int i = 0; i < 4; i++)
        rec[8 + i] = (uint8_t)(crc >> (8 * i));
}

static char *
temp_path(void)
{
    char dir[] = "/tmp/c2m-cj-XXXXXX";
    char *path;

    assert_non_null(mkdtemp(dir));
    assert_true(asprintf(&path, "%s/commands.journal", dir) > 0);
    return path;
}

static void
remove_path(char *path)
{
    char *slash = strrchr(path, '/');

    unlink(path);
    *slash = '\0';
    rmdir(path);
    free(path);
}

static void
write_file(const char *path, const uint8_t *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static size_t
file_size(const char *path)
{
    struct stat sb;

    assert_int_equal(stat(path, &sb), 0);
    return (size_t)sb.st_size;
}

/* What the open callback was handed, copied. */
struct seen {
    size_t n;
    uint64_t seq[64];
    char payload[64][32];
    char id[64][80];
};

static void
collect(void *arg, const struct cj_command *c)
{
    struct seen *s = arg;

    assert_true(s->n < 64);
    s->seq[s->n] = c->seq;
    assert_true(c->len < sizeof(s->payload[0]));
    memcpy(s->payload[s->n], c->payload, c->len);
    s->payload[s->n][c->len] = '\0';
    assert_true(c->id_len < sizeof(s->id[0]));
    memcpy(s->id[s->n], c->id, c->id_len);
    s->id[s->n][c->id_len] = '\0';
    s->n++;
}

static uint64_t
accept_one(cmdjournal_t *j, const char *id, const char *payload)
{
    struct cj_command c = sample(id, "setpoint", payload);
    uint64_t seq = cmdjournal_accept(j, &c);

    assert_true(seq > 0);
    return seq;
}

/* --- records ---------------------------------------------------------------- */

static void
test_accepted_round_trip(void **state)
{
    struct cj_command c = sample("hvac-1", "a/b", "23.5"), d;
    enum cj_type type;
    size_t len;
    uint8_t *rec;

    (void)state;
    rec = cj_encode_accepted(&c, &len);
    assert_non_null(rec);
    assert_int_equal(cj_decode(rec, len, &type, &d), (ssize_t)len);
    assert_int_equal(type, CJ_ACCEPTED);
    assert_same(&c, &d);
    free(rec);

    /* No Response Topic, Correlation Data present but empty, no payload. */
    c.rt = NULL;
    c.rt_len = 0;
    c.corr_len = 0;
    c.len = 0;
    c.kind = 1;
    c.ct = -1;
    rec = cj_encode_accepted(&c, &len);
    assert_non_null(rec);
    assert_int_equal(cj_decode(rec, len, &type, &d), (ssize_t)len);
    assert_same(&c, &d);
    assert_null(d.rt);
    assert_non_null(d.corr);
    free(rec);

    /* Neither. */
    c.corr = NULL;
    rec = cj_encode_accepted(&c, &len);
    assert_non_null(rec);
    assert_int_equal(cj_decode(rec, len, &type, &d), (ssize_t)len);
    assert_null(d.corr);
    free(rec);
}

static void
test_encode_refuses_out_of_range(void **state)
{
    char long_id[200];
    struct cj_command c = sample("hvac-1", "setpoint", "1");
    size_t len;

    (void)state;
    c.kind = 2;
    assert_null(cj_encode_accepted(&c, &len));
    c = sample("", "setpoint", "1");
    assert_null(cj_encode_accepted(&c, &len));
    memset(long_id, 'a', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    c = sample(long_id, "setpoint", "1");
    assert_null(cj_encode_accepted(&c, &len));
    c = sample("hvac-1", "setpoint", "1");
    c.corr_len = 70000;
    assert_null(cj_encode_accepted(&c, &len));
}

static void
test_done_round_trip(void **state)
{
    uint8_t rec[CJ_HDR + CJ_DONE_BODY];
    struct cj_command d;
    enum cj_type type;
    size_t len = cj_encode_done(0x0102030405060708ULL, rec);

    (void)state;
    assert_int_equal(len, CJ_HDR + CJ_DONE_BODY);
    assert_int_equal(cj_decode(rec, len, &type, &d), (ssize_t)len);
    assert_int_equal(type, CJ_DONE);
    assert_int_equal(d.seq, 0x0102030405060708ULL);
    /* Number 0 is never given out: such a record is damage. */
    cj_encode_done(0, rec);
    assert_int_equal(cj_decode(rec, len, &type, &d), -1);
}

static void
test_prefix_is_torn_not_intact(void **state)
{
    struct cj_command c = sample("hvac-1", "setpoint", "hello"), d;
    enum cj_type type;
    size_t len;
    uint8_t *rec = cj_encode_accepted(&c, &len);

    (void)state;
    for (size_t cut = 0; cut < len; cut++)
        assert_int_equal(cj_decode(rec, cut, &type, &d), 0);
    /* Followed by more bytes it decodes to its own size only. */
    rec = realloc(rec, len + 5);
    memset(rec + len, 0xee, 5);
    assert_int_equal(cj_decode(rec, len + 5, &type, &d), (ssize_t)len);
    free(rec);
}

static void
test_any_changed_byte_is_detected(void **state)
{
    struct cj_command c = sample("hvac-1", "setpoint", "hello"), d;
    enum cj_type type;
    size_t len;
    uint8_t *rec = cj_encode_accepted(&c, &len);

    (void)state;
    for (size_t i = 0; i < len; i++) {
        for (unsigned bit = 0; bit < 8; bit++) {
            rec[i] ^= (uint8_t)(1u << bit);
            /* -1 (damage) or 0 (the length now reaches past the end):
             * never an intact record. */
            assert_true(cj_decode(rec, len, &type, &d) <= 0);
            rec[i] ^= (uint8_t)(1u << bit);
        }
    }
    assert_int_equal(cj_decode(rec, len, &type, &d), (ssize_t)len);
    free(rec);
}

/* Fields that do not hold together are refused even with a good CRC. */
static void
test_bad_fields_with_good_crc(void **state)
{
    struct cj_command c = sample("hvac-1", "setpoint", "hello"), d;
    enum cj_type type;
    size_t len;
    uint8_t *rec = cj_encode_accepted(&c, &len), *b = rec + CJ_HDR;
    uint8_t saved[8];

    (void)state;
#define TRY(off, n, ...) do {                                   \
        uint8_t v[] = { __VA_ARGS__ };                          \
        memcpy(saved, b + (off), (n));                          \
        memcpy(b + (off), v, (n));                              \
        reseal(rec, len);                                       \
        assert_int_equal(cj_decode(rec, len, &type, &d), -1);   \
        memcpy(b + (off), saved, (n));                          \
        reseal(rec, len);                                       \
        assert_int_equal(cj_decode(rec, len, &type, &d), (ssize_t)len); \
    } while (0)
    TRY(0, 1, 3);                               /* unknown type */
    TRY(0, 1, CJ_DONE);                         /* DONE of the wrong size */
    TRY(1, 8, 0, 0, 0, 0, 0, 0, 0, 0);          /* number 0 */
    TRY(9, 1, 2);                               /* kind */
    TRY(10, 1, 4);                              /* unknown flag */
    TRY(10, 1, 2);                              /* Response Topic bytes, no flag */
    TRY(31, 2, 0, 0);                           /* empty id */
    TRY(31, 2, 7, 0);                           /* lengths do not add up */
    TRY(33, 2, 0, 1);                           /* path too long (and no sum) */
    TRY(39, 4, 0xff, 0xff, 0xff, 0xff);         /* payload length */
    TRY(CJ_ACCEPTED_FIXED + 2, 1, 0);           /* NUL in the id */
    TRY(CJ_ACCEPTED_FIXED + 6 + 3, 1, 0);       /* NUL in the path */
    TRY(CJ_ACCEPTED_FIXED + 6 + 8 + 1, 1, 0);   /* NUL in the Response Topic */
#undef TRY
    /* A body length below the smallest record. */
    rec[4] = 3;
    rec[5] = rec[6] = rec[7] = 0;
    assert_int_equal(cj_decode(rec, len, &type, &d), -1);
    free(rec);
}

static void
test_garbage_never_decodes(void **state)
{
    uint8_t buf[4096];
    struct cj_command d;
    enum cj_type type;

    (void)state;
    srand(12);
    for (int round = 0; round < 200; round++) {
        for (size_t i = 0; i < sizeof(buf); i++)
            buf[i] = (uint8_t)rand();
        if (round % 2)          /* with the magic in front */
            memcpy(buf, "C2MJ", 4);
        for (size_t off = 0; off < sizeof(buf); off += 97)
            assert_true(cj_decode(buf + off, sizeof(buf) - off, &type, &d) <= 0);
    }
}

/* --- the file ----------------------------------------------------------------- */

static void
test_reopen_hands_back_unanswered_in_order(void **state)
{
    char *path = temp_path();
    struct cj_load_stats st;
    struct seen seen = { 0 };
    cmdjournal_t *j;
    uint64_t a, b, c, d;

    (void)state;
    j = cmdjournal_open(path, NULL, 0, CJ_COMPACT_MIN, collect, &seen, &st);
    assert_non_null(j);
    assert_int_equal(seen.n, 0);
    assert_int_equal(st.pending + st.answered + st.damaged, 0);
    a = accept_one(j, "dev-a", "1");
    b = accept_one(j, "dev-b", "2");
    c = accept_one(j, "dev-a", "3");
    assert_true(a < b && b < c);
    assert_int_equal(cmdjournal_done(j, b), 0);
    assert_int_equal(cmdjournal_open_count(j), 2);
    cmdjournal_close(j);

    j = cmdjournal_open(path, NULL, 0, CJ_COMPACT_MIN, collect, &seen, &st);
    assert_non_null(j);
    assert_int_equal(st.pending, 2);
    assert_int_equal(st.answered, 1);
    assert_int_equal(st.damaged, 0);
    assert_false(st.torn_tail);
    assert_int_equal(seen.n, 2);
    assert_int_equal(seen.seq[0], a);
    assert_string_equal(seen.payload[0], "1");
    assert_string_equal(seen.id[0], "dev-a");
    assert_int_equal(seen.seq[1], c);
    assert_string_equal(seen.payload[1], "3");
    /* Rewritten with the two only; numbers go on above them. */
    assert_int_equal(cmdjournal_open_count(j), 2);
    assert_int_equal(cmdjournal_bytes(j), file_size(path));
    d = accept_one(j, "dev-c", "4");
    assert_true(d > c);
    assert_int_equal(cmdjournal_done(j, a), 0);
    assert_int_equal(cmdjournal_done(j, c), 0);
    assert_int_equal(cmdjournal_done(j, d), 0);
    cmdjournal_close(j);

    memset(&seen, 0, sizeof(seen));
    j = cmdjournal_open(path, NULL, 0, CJ_COMPACT_MIN, collect, &seen, &st);
    assert_non_null(j);
    assert_int_equal(seen.n, 0);
    assert_int_equal(st.answered, 3);
    assert_int_equal(file_size(path), 0);
    cmdjournal_close(j);
    remove_path(path);
}

/* Damage in the middle, a torn record at the end: the intact records on
 * either side are found, the rest counted; a second open sees a clean file. */
static void
test_damage_is_skipped_and_counted(void **state)
{
    char *path = temp_path();
    struct cj_command c1 = sample("dev-a", "setpoint", "one");
    struct cj_command c2 = sample("dev-b", "setpoint", "two");
    struct cj_command c3 = sample("dev-c", "setpoint", "three");
    uint8_t file[4096], done[CJ_HDR + CJ_DONE_BODY];
    size_t l1, l2, l3, n = 0, ld;
    uint8_t *r1, *r2, *r3;
    struct cj_load_stats st;
    struct seen seen = { 0 };
    cmdjournal_t *j;

    (void)state;
    c1.seq = 1;
    c2.seq = 2;
    c3.seq = 3;
    r1 = cj_encode_accepted(&c1, &l1);
    r2 = cj_encode_accepted(&c2, &l2);
    r3 = cj_encode_accepted(&c3, &l3);
    memcpy(file + n, r1, l1);
    n += l1;
    memcpy(file + n, "garbage!", 8);                /* damage */
    n += 8;
    memcpy(file + n, r2, l2);
    file[n + CJ_HDR + 20] ^= 0x40;                  /* r2 damaged: lost */
    n += l2;
    ld = cj_encode_done(1, done);                   /* c1 answered */
    memcpy(file + n, done, ld);
    n += ld;
    memcpy(file + n, r3, l3);
    n += l3;
    memcpy(file + n, r1, l1 - 3);                   /* torn tail */
    n += l1 - 3;
    write_file(path, file, n);

    j = cmdjournal_open(path, NULL, 0, CJ_COMPACT_MIN, collect, &seen, &st);
    assert_non_null(j);
    assert_int_equal(seen.n, 1);
    assert_string_equal(seen.payload[0], "three");
    assert_int_equal(st.pending, 1);
    assert_int_equal(st.answered, 1);
    /* "garbage!" and the damaged r2 are one stretch (no intact record
     * between them). */
    assert_int_equal(st.damaged, 1);
    assert_int_equal(st.damaged_bytes, 8 + l2);
    assert_true(st.torn_tail);
    assert_int_equal(file_size(path), l3);
    /* New records go after the highest number seen. */
    assert_true(accept_one(j, "dev-d", "four") > 3);
    cmdjournal_close(j);

    memset(&seen, 0, sizeof(seen));
    j = cmdjournal_open(path, NULL, 0, CJ_COMPACT_MIN, collect, &seen, &st);
    assert_non_null(j);
    assert_int_equal(seen.n, 2);
    assert_int_equal(st.damaged, 0);
    assert_false(st.torn_tail);
    cmdjournal_close(j);
    free(r1);
    free(r2);
    free(r3);
    remove_path(path);
}

static void
test_file_of_garbage_opens_empty(void **state)
{
    char *path = temp_path();
    uint8_t junk[1000];
    struct cj_load_stats st;
    struct seen seen = { 0 };
    cmdjournal_t *j;

    (void)state;
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (uint8_t)(i * 31 + 7);
    write_file(path, junk, sizeof(junk));
    j = cmdjournal_open(path, NULL, 0, CJ_COMPACT_MIN, collect, &seen, &st);
    assert_non_null(j);
    assert_int_equal(seen.n, 0);
    assert_int_equal(st.damaged, 1);
    assert_int_equal(st.damaged_bytes, sizeof(junk));
    assert_int_equal(file_size(path), 0);
    cmdjournal_close(j);
    remove_path(path);
}

/* Past its bound the file is rewritten: it stays small while commands
 * come and go, and what waits is kept. */
static void
test_compaction_bounds_the_file(void **state)
{
    char *path = temp_path();
    struct seen seen = { 0 };
    struct cj_load_stats st;
    loop_t *loop = loop_new();
    cmdjournal_t *j;
    uint64_t keep1, keep2;
    size_t biggest = 0;

    (void)state;
    assert_non_null(loop);
    /* With a loop and an interval: the syncer thread path. */
    j = cmdjournal_open(path, loop, 100, 2048, NULL, NULL, &st);
    assert_non_null(j);
    keep1 = accept_one(j, "dev-keep", "k1");
    for (int i = 0; i < 500; i++) {
        uint64_t seq = accept_one(j, "dev-x", "value");

        assert_int_equal(cmdjournal_done(j, seq), 0);
        if (file_size(path) > biggest)
            biggest = file_size(path);
    }
    keep2 = accept_one(j, "dev-keep", "k2");
    assert_true(biggest <= 2048 + 200);
    assert_int_equal(cmdjournal_open_count(j), 2);
    cmdjournal_close(j);

    j = cmdjournal_open(path, NULL, 0, 2048, collect, &seen, &st);
    assert_non_null(j);
    assert_int_equal(seen.n, 2);
    assert_int_equal(seen.seq[0], keep1);
    assert_string_equal(seen.payload[0], "k1");
    assert_int_equal(seen.seq[1], keep2);
    assert_string_equal(seen.payload[1], "k2");
    cmdjournal_close(j);
    loop_free(loop);
    remove_path(path);
}

static void
test_unusable_path_fails_cleanly(void **state)
{
    (void)state;
    assert_null(cmdjournal_open("/nonexistent-dir-c2m/commands.journal", NULL, 0,
                                CJ_COMPACT_MIN, NULL, NULL, NULL));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepted_round_trip),
        cmocka_unit_test(test_encode_refuses_out_of_range),
        cmocka_unit_test(test_done_round_trip),
        cmocka_unit_test(test_prefix_is_torn_not_intact),
        cmocka_unit_test(test_any_changed_byte_is_detected),
        cmocka_unit_test(test_bad_fields_with_good_crc),
        cmocka_unit_test(test_garbage_never_decodes),
        cmocka_unit_test(test_reopen_hands_back_unanswered_in_order),
        cmocka_unit_test(test_damage_is_skipped_and_counted),
        cmocka_unit_test(test_file_of_garbage_opens_empty),
        cmocka_unit_test(test_compaction_bounds_the_file),
        cmocka_unit_test(test_unusable_path_fails_cleanly),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
