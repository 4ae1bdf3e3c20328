/*
 * payload_json_buf.c - the JSON mode's output: a growing buffer with a cap
 * (the first failure sticks, later puts are no-ops, so a caller checks once
 * at the end) and the JSON forms of what CBOR carries: strings checked as
 * UTF-8 and escaped, byte strings in base64url, base64 or base16, integers
 * beyond int64 as decimal strings, floats as the shortest decimal that
 * reads back as the same value.
 *
 * Layer: base (pure)
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "payload_json_internal.h"

int
payload_json__jb_fail(struct jbuf *b, const char *why)
{
    if (!b->err)
        b->err = why;
    return -1;
}

static int
jb_put(struct jbuf *b, const void *s, size_t n)
{
    if (b->err)
        return -1;
    if (n > b->max - b->len)
        return payload_json__jb_fail(b, "JSON text too large");
    if (n + 1 > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 256;
        char *p;

        while (cap < b->len + n + 1)
            cap *= 2;
        if (!(p = realloc(b->p, cap)))
            return payload_json__jb_fail(b, "out of memory");
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int
payload_json__jb_puts(struct jbuf *b, const char *s)
{
    return jb_put(b, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at s (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF), or 0. */
static size_t
utf8_seq(const uint8_t *s, size_t n)
{
    size_t need, i;
    uint32_t cp, min;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        need = 2, cp = s[0] & 0x1f, min = 0x80;
    } else if ((s[0] & 0xf0) == 0xe0) {
        need = 3, cp = s[0] & 0x0f, min = 0x800;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        need = 4, cp = s[0] & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < need)
        return 0;
    for (i = 1; i < need; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return need;
}

/* The inside of a JSON string: UTF-8 checked, quote, backslash and control
 * characters escaped, everything else copied. */
int
payload_json__jb_escaped(struct jbuf *b, const uint8_t *s, size_t n)
{
    size_t i = 0, run = 0, k;
    char esc[8];

    while (i < n) {
        if (s[i] >= 0x20 && s[i] != '"' && s[i] != '\\') {
            if (!(k = utf8_seq(s + i, n - i)))
                return payload_json__jb_fail(b, "invalid UTF-8 in text string");
            i += k;
            continue;
        }
        if (jb_put(b, s + run, i - run) < 0)
            return -1;
        switch (s[i]) {
        case '"': strcpy(esc, "\\\""); break;
        case '\\': strcpy(esc, "\\\\"); break;
        case '\n': strcpy(esc, "\\n"); break;
        case '\r': strcpy(esc, "\\r"); break;
        case '\t': strcpy(esc, "\\t"); break;
        default: snprintf(esc, sizeof(esc), "\\u%04x", s[i]); break;
        }
        if (payload_json__jb_puts(b, esc) < 0)
            return -1;
        run = ++i;
    }
    return jb_put(b, s + run, n - run);
}

/* A byte string as a JSON string: base64url without padding unless an
 * encoding hint (tags 21..23) said otherwise; 'prefix' goes inside the
 * quotes (RFC 8949 6.1 writes a negative bignum as "~" + base64url). */
int
payload_json__jb_bytes(struct jbuf *b, const uint8_t *s, size_t n,
                       enum hint hint, const char *prefix)
{
    static const char url[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    static const char std[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *abc = hint == HINT_B64 ? std : url;
    char q[4];
    size_t i;

    payload_json__jb_puts(b, "\"");
    payload_json__jb_puts(b, prefix);
    for (i = 0; hint == HINT_B16 && i < n; i++) {
        q[0] = "0123456789ABCDEF"[s[i] >> 4];
        q[1] = "0123456789ABCDEF"[s[i] & 15];
        jb_put(b, q, 2);
    }
    for (i = 0; hint != HINT_B16 && i < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;
        size_t have = n - i < 3 ? n - i : 3;

        if (have > 1)
            v |= (uint32_t)s[i + 1] << 8;
        if (have > 2)
            v |= s[i + 2];
        q[0] = abc[v >> 18 & 63];
        q[1] = abc[v >> 12 & 63];
        q[2] = have > 1 ? abc[v >> 6 & 63] : '=';
        q[3] = have > 2 ? abc[v & 63] : '=';
        /* base64url goes without padding (RFC 8949 6.1), base64 with. */
        jb_put(b, q, hint == HINT_B64 ? 4 : have + 1);
    }
    return payload_json__jb_puts(b, "\"");
}

/* An integer that is 'v' (neg: -1 - v). Inside int64 it is a JSON number;
 * outside, a string of decimal digits, because many JSON parsers (jansson
 * among them) reject or round integers beyond int64. */
int
payload_json__jb_int(struct jbuf *b, uint64_t v, int neg)
{
    char t[32];

    if (!neg && v <= INT64_MAX)
        snprintf(t, sizeof(t), "%" PRIu64, v);
    else if (!neg)
        snprintf(t, sizeof(t), "\"%" PRIu64 "\"", v);
    else if (v <= INT64_MAX)
        snprintf(t, sizeof(t), "%" PRId64, -1 - (int64_t)v);
    else if (v == UINT64_MAX)
        snprintf(t, sizeof(t), "\"-18446744073709551616\"");
    else
        snprintf(t, sizeof(t), "\"-%" PRIu64 "\"", v + 1);
    return payload_json__jb_puts(b, t);
}

/* Fewest significant digits (into dig, returns how many) and the decimal
 * exponent of d that read back as d at the precision it was sent with. */
static int
float_digits(double d, int single, char dig[20], int *exp)
{
    char e[48], *c;
    int prec, n = 0;

    for (prec = 1; prec <= 17; prec++) {
        double r;

        snprintf(e, sizeof(e), "%.*e", prec - 1, d);
        r = strtod(e, NULL);
        if (single ? (float)r == (float)d : r == d)
            break;
    }
    for (c = e; *c && *c != 'e' && n < 19; c++)
        if (*c >= '0' && *c <= '9')
            dig[n++] = *c;
    *exp = *c == 'e' ? atoi(c + 1) : 0;
    while (n > 1 && dig[n - 1] == '0')
        n--;
    return n;
}

/* A float as the shortest decimal that reads back as the same value at the
 * precision it was sent with (a single 21.7f is "21.7", not
 * "21.700000762939453"); half floats use single precision. Plain notation
 * from 1e-4 up to 1e17 and always with a fraction ("65504.0"), so typed
 * consumers still see a float; exponent notation outside. NaN and the
 * infinities have no JSON form: null (RFC 8949 6.1). Built by hand, so no
 * locale's decimal comma gets in. */
int
payload_json__jb_float(struct jbuf *b, double d, int single)
{
    char dig[20], t[64];
    int n, exp, i, k = 0;

    if (!isfinite(d))
        return payload_json__jb_puts(b, "null");
    n = float_digits(d, single, dig, &exp);
    if (signbit(d))
        t[k++] = '-';
    if (exp < -4 || exp >= 17) {
        t[k++] = dig[0];
        if (n > 1)
            t[k++] = '.';
        for (i = 1; i < n; i++)
            t[k++] = dig[i];
        snprintf(t + k, sizeof(t) - (size_t)k, "e%c%02d", exp < 0 ? '-' : '+',
                 exp < 0 ? -exp : exp);
        return payload_json__jb_puts(b, t);
    }
    if (exp < 0) {
        t[k++] = '0', t[k++] = '.';
        for (i = -1; i > exp; i--)
            t[k++] = '0';
        for (i = 0; i < n; i++)
            t[k++] = dig[i];
    } else {
        for (i = 0; i <= exp; i++)
            t[k++] = i < n ? dig[i] : '0';
        t[k++] = '.';
        for (i = exp + 1; i < n; i++)
            t[k++] = dig[i];
        if (n <= exp + 1)
            t[k++] = '0';
    }
    return jb_put(b, t, (size_t)k);
}

/* Magnitude m (big-endian, no leading zeros, n <= 64 bytes) as a quoted
 * decimal: m, or -1 - m when neg. */
int
payload_json__jb_bigdec(struct jbuf *b, const uint8_t *m, size_t n,
                        int neg)
{
    uint8_t w[72];
    char dig[200];
    size_t wn = n + 1, d = sizeof(dig), i, lead = 0;

    w[0] = 0;
    memcpy(w + 1, m, n);
    for (i = wn; neg && i-- > 0;) {     /* -1 - m = -(m + 1) */
        w[i] = (uint8_t)(w[i] + 1);     /* 0xff wraps and carries on */
        if (w[i] != 0)
            break;
    }
    dig[--d] = '\0';
    dig[--d] = '"';
    while (lead < wn) {
        unsigned rem = 0;

        for (i = lead; i < wn; i++) {
            unsigned cur = rem << 8 | w[i];

            w[i] = (uint8_t)(cur / 10);
            rem = cur % 10;
        }
        dig[--d] = (char)('0' + rem);
        while (lead < wn && w[lead] == 0)
            lead++;
    }
    if (neg)
        dig[--d] = '-';
    dig[--d] = '"';
    return payload_json__jb_puts(b, dig + d);
}
