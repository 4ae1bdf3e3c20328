/*
 * test_payload_json.c - the JSON mode: RFC 8949 appendix A vectors, the
 * RFC 8428 SenML CBOR example, hostile CBOR (truncation, huge declared
 * lengths, deep nesting, bad UTF-8, trailing bytes) and JSON pass-through.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "coap2mqtt/payload_json.h"

struct vec {
    const char *hex;            /* CBOR, spaces allowed */
    const char *json;           /* expected output, NULL: must fail */
};

static uint8_t *
unhex(const char *hex, size_t *len)
{
    uint8_t *b = malloc(strlen(hex) / 2 + 1);
    size_t n = 0;
    unsigned v;

    assert_non_null(b);
    while (*hex) {
        if (*hex == ' ') {
            hex++;
            continue;
        }
        assert_int_equal(sscanf(hex, "%2x", &v), 1);
        b[n++] = (uint8_t)v;
        hex += 2;
    }
    *len = n;
    return b;
}

/* Converts; returns the JSON (caller frees) or NULL with *err set. */
static char *
conv(int ct, const uint8_t *d, size_t len, const char **err)
{
    char *out = NULL;
    int rc;

    *err = NULL;
    rc = payload_to_json(ct, d, len, &out, err);
    if (rc == 0) {
        assert_non_null(out);
        return out;
    }
    assert_int_equal(rc, -1);
    assert_null(out);
    assert_non_null(*err);
    return NULL;
}

static void
check_vecs(int ct, const struct vec *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t len;
        uint8_t *d = unhex(v[i].hex, &len);
        const char *err;
        char *out = conv(ct, d, len, &err);

        if (v[i].json && !out)
            fail_msg("%s: failed (%s), want %s", v[i].hex, err, v[i].json);
        if (!v[i].json && out)
            fail_msg("%s: gave %s, want an error", v[i].hex, out);
        if (out && strcmp(out, v[i].json) != 0)
            fail_msg("%s: got %s, want %s", v[i].hex, out, v[i].json);
        free(out);
        free(d);
    }
}

#define CHECK(ct, tab) check_vecs((ct), (tab), sizeof(tab) / sizeof((tab)[0]))

/* RFC 8949 appendix A, diagnostic notation in the comments. */
static void
test_rfc8949_numbers(void **state)
{
    static const struct vec v[] = {
        { "00", "0" },
        { "01", "1" },
        { "0a", "10" },
        { "17", "23" },
        { "1818", "24" },
        { "1819", "25" },
        { "1864", "100" },
        { "1903e8", "1000" },
        { "1a000f4240", "1000000" },
        { "1b000000e8d4a51000", "1000000000000" },
        /* 18446744073709551615: beyond int64, a string */
        { "1bffffffffffffffff", "\"18446744073709551615\"" },
        /* 2(h'010000000000000000') = 18446744073709551616 */
        { "c249010000000000000000", "\"18446744073709551616\"" },
        /* -18446744073709551616 */
        { "3bffffffffffffffff", "\"-18446744073709551616\"" },
        /* 3(h'010000000000000000') = -18446744073709551617 */
        { "c349010000000000000000", "\"-18446744073709551617\"" },
        { "20", "-1" },
        { "29", "-10" },
        { "3863", "-100" },
        { "3903e7", "-1000" },
        { "f90000", "0.0" },
        { "f98000", "-0.0" },
        { "f93c00", "1.0" },
        { "fb3ff199999999999a", "1.1" },
        { "f93e00", "1.5" },
        { "f97bff", "65504.0" },
        { "fa47c35000", "100000.0" },
        /* 3.4028234663852886e+38, shortest at single precision */
        { "fa7f7fffff", "3.4028235e+38" },
        { "fb7e37e43c8800759c", "1e+300" },
        /* 5.960464477539063e-8, 0.00006103515625 (half, single digits) */
        { "f90001", "5.9604645e-08" },
        { "f90400", "6.1035156e-05" },
        { "f9c400", "-4.0" },
        { "fbc010666666666666", "-4.1" },
        /* Infinity, NaN, -Infinity in all three widths */
        { "f97c00", "null" },
        { "f97e00", "null" },
        { "f9fc00", "null" },
        { "fa7f800000", "null" },
        { "fa7fc00000", "null" },
        { "faff800000", "null" },
        { "fb7ff0000000000000", "null" },
        { "fb7ff8000000000000", "null" },
        { "fbfff0000000000000", "null" },
    };

    (void)state;
    CHECK(60, v);
}

static void
test_rfc8949_simple_tags(void **state)
{
    static const struct vec v[] = {
        { "f4", "false" },
        { "f5", "true" },
        { "f6", "null" },
        { "f7", "null" },                       /* undefined */
        { "f0", "null" },                       /* simple(16) */
        { "f8ff", "null" },                     /* simple(255) */
        /* 0("2013-03-21T20:04:00Z") */
        { "c074323031332d30332d32315432303a30343a30305a",
          "\"2013-03-21T20:04:00Z\"" },
        { "c11a514b67b0", "1363896240" },       /* 1(1363896240) */
        { "c1fb41d452d9ec200000", "1363896240.5" },
        { "d74401020304", "\"01020304\"" },     /* 23(h'01020304') */
        { "d818456449455446", "\"ZElFVEY\"" },  /* 24(h'6449455446') */
        /* 32("http://www.example.com") */
        { "d82076687474703a2f2f7777772e6578616d706c652e636f6d",
          "\"http://www.example.com\"" },
    };

    (void)state;
    CHECK(60, v);
}

static void
test_rfc8949_strings(void **state)
{
    static const struct vec v[] = {
        { "40", "\"\"" },                       /* h'' */
        { "4401020304", "\"AQIDBA\"" },         /* h'01020304' */
        { "60", "\"\"" },
        { "6161", "\"a\"" },
        { "6449455446", "\"IETF\"" },
        { "62225c", "\"\\\"\\\\\"" },           /* "\"\\" */
        { "62c3bc", "\"\xc3\xbc\"" },           /* "ü" */
        { "63e6b0b4", "\"\xe6\xb0\xb4\"" },     /* "水" */
        { "64f0908591", "\"\xf0\x90\x85\x91\"" }, /* "𐅑" */
        /* (_ h'0102', h'030405') */
        { "5f42010243030405ff", "\"AQIDBAU\"" },
        /* (_ "strea", "ming") */
        { "7f657374726561646d696e67ff", "\"streaming\"" },
        { "5fff", "\"\"" },
        { "7fff", "\"\"" },
        /* control characters escaped */
        { "630a011f", "\"\\n\\u0001\\u001f\"" },
        { "630d097f", "\"\\r\\t\x7f\"" },
    };

    (void)state;
    CHECK(60, v);
}

static void
test_rfc8949_containers(void **state)
{
    static const struct vec v[] = {
        { "80", "[]" },
        { "83010203", "[1,2,3]" },
        { "8301820203820405", "[1,[2,3],[4,5]]" },
        { "98190102030405060708090a0b0c0d0e0f101112131415161718181819",
          "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25]" },
        { "a0", "{}" },
        { "a201020304", "{\"1\":2,\"3\":4}" },  /* {1: 2, 3: 4} */
        { "a26161016162820203", "{\"a\":1,\"b\":[2,3]}" },
        { "826161a161626163", "[\"a\",{\"b\":\"c\"}]" },
        { "a56161614161626142616361436164614461656145",
          "{\"a\":\"A\",\"b\":\"B\",\"c\":\"C\",\"d\":\"D\",\"e\":\"E\"}" },
        { "9fff", "[]" },
        { "9f018202039f0405ffff", "[1,[2,3],[4,5]]" },
        { "9f01820203820405ff", "[1,[2,3],[4,5]]" },
        { "83018202039f0405ff", "[1,[2,3],[4,5]]" },
        { "83019f0203ff820405", "[1,[2,3],[4,5]]" },
        { "9f0102030405060708090a0b0c0d0e0f101112131415161718181819ff",
          "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25]" },
        { "bf61610161629f0203ffff", "{\"a\":1,\"b\":[2,3]}" },
        { "826161bf61626163ff", "[\"a\",{\"b\":\"c\"}]" },
        { "bf6346756ef563416d7421ff", "{\"Fun\":true,\"Amt\":-2}" },
    };

    (void)state;
    CHECK(60, v);
}

/* Our own choices: integer bounds, bignums, hints, keys, libcbor gaps. */
static void
test_choices(void **state)
{
    static const struct vec v[] = {
        { "1b7fffffffffffffff", "9223372036854775807" },
        { "1b8000000000000000", "\"9223372036854775808\"" },
        { "3b7fffffffffffffff", "-9223372036854775808" },
        { "3b8000000000000000", "\"-9223372036854775809\"" },
        { "c240", "0" },
        { "c3 40", "-1" },
        { "c2420100", "256" },
        { "c24a00000000000000000001", "1" },    /* leading zeros */
        { "c2487fffffffffffffff", "9223372036854775807" },
        { "c2488000000000000000", "\"9223372036854775808\"" },
        { "c3487fffffffffffffff", "-9223372036854775808" },
        { "c348ffffffffffffffff", "\"-18446744073709551616\"" },
        { "c35f4101410aff", "-267" },           /* chunked magnitude */
        { "c201", "1" },                        /* not a byte string: content */
        { "fa41ad999a", "21.7" },               /* single 21.7f */
        { "fb4035b33333333333", "21.7" },
        { "fb0000000000000001", "5e-324" },
        { "fb7fefffffffffffff", "1.7976931348623157e+308" },
        { "d6420102", "\"AQI=\"" },             /* 22: base64, padded */
        { "d641ff", "\"/w==\"" },
        { "d5 41ff", "\"_w\"" },                /* 21: base64url */
        { "d7824401020304a141ab41cd", "[\"01020304\",{\"\\\"AB\\\"\":\"CD\"}]" },
        { "d6 d7 41ab", "\"AB\"" },             /* innermost hint wins */
        { "c601", "1" },                        /* one-byte tag heads 6..20 */
        { "d402", "2" },
        { "c6c6c600", "0" },
        { "d80681c6f5", "[true]" },
        { "db ffffffffffffffff 00", "0" },
        /* keys that are not text: their JSON text */
        { "a1820102 03", "{\"[1,2]\":3}" },
        { "a14101 02", "{\"\\\"AQ\\\"\":2}" },
        { "a1f6 01", "{\"null\":1}" },
        { "a1f5 01", "{\"true\":1}" },
        { "a1f93e00 01", "{\"1.5\":1}" },
        { "a1a16161f5 00", "{\"{\\\"a\\\":true}\":0}" },
        { "a162225c01", "{\"\\\"\\\\\":1}" },
        { "a1 3bffffffffffffffff 00", "{\"\\\"-18446744073709551616\\\"\":0}" },
        /* duplicates, in the CBOR or made by the key mapping */
        { "a2616101616102", NULL },
        { "a201006131 00", NULL },
        { "a2 f6 00 64 6e756c6c 00", NULL },
        { "bf 01 00 01 00 ff", NULL },
        { "a2 616101 616202", "{\"a\":1,\"b\":2}" },
    };

    (void)state;
    CHECK(60, v);
}

static void
test_bad_utf8(void **state)
{
    static const struct vec v[] = {
        { "61ff", NULL },
        { "61c3", NULL },                       /* cut sequence */
        { "62c080", NULL },                     /* overlong NUL */
        { "63e08080", NULL },                   /* overlong */
        { "63eda080", NULL },                   /* surrogate D800 */
        { "64f4908080", NULL },                 /* above U+10FFFF */
        { "62c328", NULL },                     /* bad continuation */
        { "7f61c361bcff", NULL },               /* split over two chunks */
        { "a161ff00", NULL },                   /* in a key */
        { "8161ff", NULL },
        { "6100", "\"\\u0000\"" },              /* NUL is valid text */
        { "a1610000", NULL },                   /* ... but not in a key */
        { "a17f6100ff00", NULL },
        { "a18201610000", "{\"[1,\\\"\\\\u0000\\\"]\":0}" },
        { "63efbfbf", "\"\xef\xbf\xbf\"" },     /* U+FFFF */
        { "64f48fbfbf", "\"\xf4\x8f\xbf\xbf\"" }, /* U+10FFFF */
    };

    (void)state;
    CHECK(60, v);
}

static void
test_malformed(void **state)
{
    static const struct vec v[] = {
        { "18", NULL },                         /* argument missing */
        { "1901", NULL },
        { "1b00000000", NULL },
        { "6261", NULL },                       /* string cut */
        { "830102", NULL },                     /* array cut */
        { "a101", NULL },                       /* map cut */
        { "9f01", NULL },                       /* no break */
        { "bf01ff", NULL },                     /* key without value */
        { "5f01ff", NULL },                     /* chunk not a byte string */
        { "5f5fffff", NULL },                   /* nested indefinite */
        { "7f4100ff", NULL },                   /* byte chunk in text */
        { "5f6100ff", NULL },
        { "ff", NULL },                         /* lone break */
        { "8101ff", NULL },
        { "c1ff", NULL },                       /* break as tag content */
        { "1c", NULL },                         /* reserved 28..30 */
        { "1d", NULL },
        { "5e", NULL },
        { "fc", NULL },
        { "fd", NULL },
        { "fe", NULL },
        { "1f", NULL },                         /* indefinite int */
        { "3f", NULL },
        { "df00", NULL },                       /* indefinite tag */
        { "f800", NULL },                       /* two-byte simple < 32 */
        { "f81f", NULL },
        { "c1", NULL },                         /* tag without content */
        { "0102", NULL },                       /* trailing bytes */
        { "8000", NULL },
        { "a0a0", NULL },
        { "f9", NULL },
        { "fa0000", NULL },
        { "fb00000000000000", NULL },
        /* huge declared lengths */
        { "5bffffffffffffffff", NULL },
        { "5bffffffffffffffff00", NULL },
        { "7bffffffffffffffff", NULL },
        { "5affffffff00", NULL },
        { "9b0000000100000000", NULL },
        { "9bffffffffffffffff", NULL },
        { "9a7fffffff00", NULL },
        { "bb0000000100000000", NULL },
        { "bb8000000000000000 0000", NULL },
        { "a30102", NULL },                     /* 3 pairs, 2 bytes */
        { "99ffff 00", NULL },
    };
    const char *err;
    uint8_t one = 0;

    (void)state;
    CHECK(60, v);
    assert_null(conv(60, &one, 0, &err));       /* empty */
    assert_null(conv(60, NULL, 0, &err));
}

/* n heads of byte 'open', then 'leaf', then 'close' n times (if set). */
static uint8_t *
nest(size_t n, uint8_t open, uint8_t leaf, int close, size_t *len)
{
    uint8_t *b = malloc(2 * n + 1);
    size_t i, k = 0;

    assert_non_null(b);
    for (i = 0; i < n; i++)
        b[k++] = open;
    b[k++] = leaf;
    for (i = 0; close && i < n; i++)
        b[k++] = 0xff;
    *len = k;
    return b;
}

static void
expect_nest(size_t n, uint8_t open, int close, int ok)
{
    size_t len;
    uint8_t *b = nest(n, open, 0x00, close, &len);
    const char *err;
    char *out = conv(60, b, len, &err);

    if (ok && !out)
        fail_msg("depth %zu of %02x: %s", n, open, err);
    if (!ok && out)
        fail_msg("depth %zu of %02x accepted", n, open);
    free(out);
    free(b);
}

static void
test_depth(void **state)
{
    static const uint8_t opens[] = { 0x81, 0x9f, 0xc6, 0xd8 };
    size_t len;
    uint8_t *b;
    const char *err;
    char *out;

    (void)state;
    expect_nest(PAYLOAD_JSON_MAX_DEPTH, 0x81, 0, 1);
    expect_nest(PAYLOAD_JSON_MAX_DEPTH + 1, 0x81, 0, 0);
    expect_nest(PAYLOAD_JSON_MAX_DEPTH, 0x9f, 1, 1);
    expect_nest(PAYLOAD_JSON_MAX_DEPTH + 1, 0x9f, 1, 0);
    expect_nest(PAYLOAD_JSON_MAX_DEPTH, 0xc6, 0, 1);
    expect_nest(PAYLOAD_JSON_MAX_DEPTH + 1, 0xc6, 0, 0);
    /* 10,000 and 1,000,000 deep: refused, no crash, no deep recursion. */
    for (size_t i = 0; i < sizeof(opens); i++) {
        expect_nest(10000, opens[i], opens[i] == 0x9f, 0);
        expect_nest(1000000, opens[i], opens[i] == 0x9f, 0);
    }
    /* maps nested in keys: {{{...}: 0}: 0} */
    b = nest(10000, 0xa1, 0x00, 0, &len);
    assert_null(conv(60, b, len, &err));
    free(b);

    /* 32 deep gives exactly 32 brackets */
    b = nest(PAYLOAD_JSON_MAX_DEPTH, 0x81, 0x07, 0, &len);
    out = conv(60, b, len, &err);
    assert_non_null(out);
    assert_int_equal(strlen(out), 2 * PAYLOAD_JSON_MAX_DEPTH + 1);
    assert_int_equal(out[PAYLOAD_JSON_MAX_DEPTH], '7');
    free(out);
    free(b);
}

/* Maps used as keys of maps: every level escapes the one inside, doubling
 * the backslashes; the output cap must stop it, quickly. */
static void
test_key_blowup(void **state)
{
    uint8_t b[200];
    size_t k = 0, i, depth = 30;
    const char *err;
    char *out;

    (void)state;
    for (i = 0; i < depth; i++)
        b[k++] = 0xa1;                  /* {key: ...} with key the next map */
    b[k++] = 0x61;
    b[k++] = '"';
    for (i = 0; i < depth; i++)
        b[k++] = 0x00;                  /* every value is 0 */
    out = conv(60, b, k, &err);
    assert_null(out);
    assert_string_equal(err, "JSON text too large");
}

static void
test_item_limit(void **state)
{
    size_t n = PAYLOAD_JSON_MAX_ITEMS + 10, len = n + 2;
    uint8_t *b = calloc(len, 1);
    const char *err;

    (void)state;
    assert_non_null(b);
    b[0] = 0x9f;                        /* [_ 0, 0, ..., 0] */
    b[len - 1] = 0xff;
    assert_null(conv(60, b, len, &err));
    assert_string_equal(err, "too many CBOR items");
    b[0] = 0x9a;                        /* [0, 0, ...] definite, 2^16+4 */
    b[1] = 0x00, b[2] = 0x01, b[3] = 0x00, b[4] = 0x04;
    assert_null(conv(60, b, 0x10004 + 5, &err));
    free(b);
}

/* RFC 8428 section 6: the CBOR of the section 5.1.2 example. */
static const char senml_rfc8428[] =
    "87a721781b75726e3a6465763a6f773a3130653230373361303130383030"
    "363a22fb41d303a15b00106223614120050067766f6c7461676501615602"
    "fb405e066666666666a3006763757272656e74062402fb3ff33333333333"
    "33a3006763757272656e74062302fb3ff4cccccccccccda3006763757272"
    "656e74062202fb3ff6666666666666a3006763757272656e74062102f93e"
    "00a3006763757272656e74062002fb3ff999999999999aa3006763757272"
    "656e74060002fb3ffb333333333333";

static void
test_senml_cbor(void **state)
{
    static const struct vec v[] = {
        { senml_rfc8428,
          "[{\"bn\":\"urn:dev:ow:10e2073a0108006:\",\"bt\":1276020076.001,"
          "\"bu\":\"A\",\"bver\":5,\"n\":\"voltage\",\"u\":\"V\",\"v\":120.1},"
          "{\"n\":\"current\",\"t\":-5,\"v\":1.2},"
          "{\"n\":\"current\",\"t\":-4,\"v\":1.3},"
          "{\"n\":\"current\",\"t\":-3,\"v\":1.4},"
          "{\"n\":\"current\",\"t\":-2,\"v\":1.5},"
          "{\"n\":\"current\",\"t\":-1,\"v\":1.6},"
          "{\"n\":\"current\",\"t\":0,\"v\":1.7}]" },
        /* every label: bver bn bt bu bv bs n u v vs vb s t ut vd */
        { "81af 2001 216162 2202 23616d 2403 2504 00616e 016175 0203"
          "036173 04f5 0505 0606 0707 084201ff",
          "[{\"bver\":1,\"bn\":\"b\",\"bt\":2,\"bu\":\"m\",\"bv\":3,\"bs\":4,"
          "\"n\":\"n\",\"u\":\"u\",\"v\":3,\"vs\":\"s\",\"vb\":true,\"s\":5,"
          "\"t\":6,\"ut\":7,\"vd\":\"Af8\"}]" },
        /* unknown labels as numbers, string labels as they are */
        { "81a3 0901 2602 6462615f5f03", "[{\"9\":1,\"-7\":2,\"ba__\":3}]" },
        /* labels apply to records only, not to maps inside them */
        { "81a100a10001", "[{\"n\":{\"0\":1}}]" },
        { "80", "[]" },
        { "9fbf0061 78ffff", "[{\"n\":\"x\"}]" },
        /* "n" twice, once as 0 and once as "n" */
        { "81a2006178616e6179", NULL },
        { "a0", NULL },                         /* not an array */
        { "8101", NULL },                       /* record not a map */
        { "82a080", NULL },
        { "81a1", NULL },
    };

    (void)state;
    CHECK(112, v);
}

struct jvec {
    const char *in;
    const char *out;            /* NULL: must fail */
};

static void
check_json(int ct, const struct jvec *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *err;
        char *out = conv(ct, (const uint8_t *)v[i].in, strlen(v[i].in), &err);

        if (v[i].out && !out)
            fail_msg("ct %d %s: failed (%s)", ct, v[i].in, err);
        if (!v[i].out && out)
            fail_msg("ct %d %s: gave %s, want an error", ct, v[i].in, out);
        if (out && strcmp(out, v[i].out) != 0)
            fail_msg("ct %d %s: got %s, want %s", ct, v[i].in, out, v[i].out);
        free(out);
    }
}

static void
test_json(void **state)
{
    static const struct jvec v[] = {
        { " { \"a\" : [ 1 , 2.50 ] }\n", "{\"a\":[1,2.50]}" },
        { "21.7", "21.7" },
        { "\"a b\\\" \\\\ c\"", "\"a b\\\" \\\\ c\"" },
        { "[\"\\u0000\", \"\xc3\xbc\"]", "[\"\\u0000\",\"\xc3\xbc\"]" },
        { "18446744073709551616", "18446744073709551616" },
        { "{\"a\":1,\"a\":2}", "{\"a\":1,\"a\":2}" },   /* as sent */
        { "{\"a\\u0000\":1}", NULL },      /* jansson: no NUL in keys */
        { "\t[true,false,null]\r\n", "[true,false,null]" },
        { "", NULL },
        { "{", NULL },
        { "{\"a\":1,}", NULL },
        { "[1] x", NULL },
        { "[1][2]", NULL },
        { "NaN", NULL },
        { "[Infinity]", NULL },
        { "\"\xff\"", NULL },
        { "\"\xed\xa0\x80\"", NULL },
        { "'a'", NULL },
        { "[1e400]", NULL },
        { "\"a\nb\"", NULL },
        { "[01]", NULL },
    };
    /* raw NUL bytes: jansson 2.14 alone skips them between tokens */
    static const struct { const char *in; size_t len; } nul[] = {
        { "[5\0]", 4 }, { "[5\0,1]", 6 }, { "\0", 1 }, { "1\0", 2 },
        { "\"a\0b\"", 5 },
    };
    const char *err;

    (void)state;
    check_json(50, v, sizeof(v) / sizeof(v[0]));
    for (size_t i = 0; i < sizeof(nul) / sizeof(nul[0]); i++) {
        assert_null(conv(50, (const uint8_t *)nul[i].in, nul[i].len, &err));
        assert_null(conv(110, (const uint8_t *)nul[i].in, nul[i].len, &err));
    }
}

static void
test_senml_json(void **state)
{
    static const struct jvec v[] = {
        /* RFC 8428 5.1.1 */
        { "[\n  {\"n\":\"urn:dev:ow:10e2073a01080063\",\"u\":\"Cel\",\"v\":23.1}\n]\n",
          "[{\"n\":\"urn:dev:ow:10e2073a01080063\",\"u\":\"Cel\",\"v\":23.1}]" },
        /* base values are not resolved */
        { "[{\"bn\":\"d/\",\"bt\":1.276020076001e+09,\"n\":\"t\",\"v\":1},{\"n\":\"h\",\"t\":-5,\"v\":2}]",
          "[{\"bn\":\"d/\",\"bt\":1.276020076001e+09,\"n\":\"t\",\"v\":1},{\"n\":\"h\",\"t\":-5,\"v\":2}]" },
        { "[]", "[]" },
        { "{\"n\":\"x\"}", NULL },
        { "[1]", NULL },
        { "[{}, []]", NULL },
        { "\"x\"", NULL },
        { "[{\"n\":}]", NULL },
    };

    (void)state;
    check_json(110, v, sizeof(v) / sizeof(v[0]));
}

static void
test_json_depth(void **state)
{
    char in[2 * (PAYLOAD_JSON_MAX_DEPTH + 1) + 2];
    const char *err;
    char *out;
    size_t n;

    (void)state;
    for (n = PAYLOAD_JSON_MAX_DEPTH; n <= PAYLOAD_JSON_MAX_DEPTH + 1; n++) {
        memset(in, '[', n);
        memset(in + n, ']', n);
        in[2 * n] = '\0';
        out = conv(50, (const uint8_t *)in, 2 * n, &err);
        if (n == PAYLOAD_JSON_MAX_DEPTH) {
            assert_non_null(out);
            assert_string_equal(out, in);
        } else {
            assert_null(out);
        }
        free(out);
    }
    /* 100,000 deep: jansson's own limit, then ours */
    {
        size_t big = 100000;
        char *deep = malloc(2 * big);

        assert_non_null(deep);
        memset(deep, '[', big);
        memset(deep + big, ']', big);
        assert_null(conv(50, (const uint8_t *)deep, 2 * big, &err));
        free(deep);
    }
}

static void
test_other_ct(void **state)
{
    static const int cts[] = { 0, 40, 42, 51, 61, 111, 113, -1, 11542 };
    char *out = (char *)"untouched";
    const char *err = "untouched";

    (void)state;
    for (size_t i = 0; i < sizeof(cts) / sizeof(cts[0]); i++) {
        assert_int_equal(payload_to_json(cts[i], (const uint8_t *)"{}", 2,
                                         &out, &err), 1);
        assert_string_equal(out, "untouched");
        assert_string_equal(err, "untouched");
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc8949_numbers),
        cmocka_unit_test(test_rfc8949_simple_tags),
        cmocka_unit_test(test_rfc8949_strings),
        cmocka_unit_test(test_rfc8949_containers),
        cmocka_unit_test(test_choices),
        cmocka_unit_test(test_bad_utf8),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_key_blowup),
        cmocka_unit_test(test_item_limit),
        cmocka_unit_test(test_senml_cbor),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_senml_json),
        cmocka_unit_test(test_json_depth),
        cmocka_unit_test(test_other_ct),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
