/*
 * linkformat.c - RFC 6690 link-format, just enough for registrations: the
 * targets, "obs", the first "ct", and the first "rt" and "if" (what Home
 * Assistant discovery makes of a resource).  Other attributes are parsed
 * (so that quoted values holding ',' or ';' do not split links) and
 * ignored.
 * Whitespace around ',', ';' and '=' is tolerated because real devices emit
 * it; everything else off the grammar is rejected with a reason.
 *
 * Layer: base (pure)
 */
#include <string.h>
#include <strings.h>

#include "coap2mqtt/linkformat.h"

struct cursor {
    const char *s;
    size_t len;
    size_t pos;
    const char *err;
};

/* A value as it appeared: the span inside the quotes, or the bare token. */
struct span {
    const char *p;
    size_t len;
    bool quoted;
};

static bool
fail(struct cursor *c, const char *why)
{
    c->err = why;
    return false;
}

static bool
at(const struct cursor *c, char ch)
{
    return c->pos < c->len && c->s[c->pos] == ch;
}

static void
skip_ws(struct cursor *c)
{
    while (c->pos < c->len && strchr(" \t\r\n", c->s[c->pos]) && c->s[c->pos])
        c->pos++;
}

static int
hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Percent-decodes the target (after its leading '/') into out.  Devices
 * send Uri-Path options unencoded, so the decoded form is what notifications
 * and the topic use; an encoded '/' could not be told apart and is refused. */
static bool
decode_target(struct cursor *c, const char *t, size_t tlen, char *out,
              size_t *outlen)
{
    size_t i, n = 0;
    int hi, lo;
    char ch;

    for (i = 0; i < tlen; i++) {
        ch = t[i];
        if (ch == '?' || ch == '#')
            return fail(c, "target has a query or fragment");
        if (ch == '%') {
            if (tlen - i < 3 || (hi = hexval(t[i + 1])) < 0 ||
                (lo = hexval(t[i + 2])) < 0)
                return fail(c, "bad percent-encoding in target");
            ch = (char)(hi << 4 | lo);
            if (ch == '/')
                return fail(c, "encoded '/' in target");
            i += 2;
        }
        if (n == TOPIC_PATH_MAX)
            return fail(c, "target path too long");
        out[n++] = ch;
    }
    out[n] = '\0';
    *outlen = n;
    return true;
}

/* "<" "/" path ">" */
static bool
parse_target(struct cursor *c, struct lf_link *l)
{
    size_t start, n;
    unsigned char ch;

    if (!at(c, '<'))
        return fail(c, "expected '<' to start a link");
    start = ++c->pos;
    for (; c->pos < c->len && c->s[c->pos] != '>'; c->pos++) {
        ch = (unsigned char)c->s[c->pos];
        if (ch <= 0x20 || ch == 0x7f || ch == '<' || ch == '"' || ch == '\\')
            return fail(c, "bad character in target");
    }
    if (c->pos == c->len)
        return fail(c, "unterminated target, expected '>'");
    n = c->pos++ - start;
    if (n == 0 || c->s[start] != '/')
        return fail(c, "target is not a path starting with '/'");
    if (!decode_target(c, c->s + start + 1, n - 1, l->path, &n))
        return false;
    if (!topic_path_valid(l->path, n))
        return fail(c, "target is not a valid resource path");
    return true;
}

/* RFC 5987 attr-char, plus '*' for extended names such as "title*". */
static bool
is_namechar(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch >= '0' && ch <= '9') || (ch && strchr("!#$&+-.^_`|~*", ch));
}

/* RFC 6690 ptokenchar. */
static bool
is_ptokenchar(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'()*+-./:<=>?@[]^_`{|}~", ch));
}

static bool
parse_quoted(struct cursor *c, struct span *v)
{
    unsigned char ch;

    v->p = c->s + ++c->pos;
    v->quoted = true;
    for (; c->pos < c->len; c->pos++) {
        ch = (unsigned char)c->s[c->pos];
        if (ch == '"') {
            v->len = (size_t)(c->s + c->pos++ - v->p);
            return true;
        }
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return fail(c, "control character in quoted value");
        if (ch == '\\' && ++c->pos == c->len)
            break;
    }
    return fail(c, "unterminated quoted value");
}

static bool
parse_value(struct cursor *c, struct span *v)
{
    if (at(c, '"'))
        return parse_quoted(c, v);
    v->p = c->s + c->pos;
    v->quoted = false;
    while (c->pos < c->len && is_ptokenchar(c->s[c->pos]))
        c->pos++;
    v->len = (size_t)(c->s + c->pos - v->p);
    if (v->len == 0)
        return fail(c, "missing attribute value after '='");
    return true;
}

/* ct=N or ct="N M ...": all numbers must be 0..65535, the first is kept. */
static bool
parse_ct(struct cursor *c, const struct span *v, int *ct)
{
    size_t i = 0, digits;
    long val;
    int first = -1;

    while (i < v->len) {
        while (v->quoted && i < v->len && v->p[i] == ' ')
            i++;
        if (i == v->len)
            break;
        for (val = 0, digits = 0; i < v->len && v->p[i] >= '0' &&
             v->p[i] <= '9'; i++, digits++) {
            val = val * 10 + (v->p[i] - '0');
            if (val > 65535)
                return fail(c, "ct value out of range 0..65535");
        }
        if (digits == 0 || (i < v->len && v->p[i] != ' '))
            return fail(c, "ct is not a list of integers");
        if (first < 0)
            first = (int)val;
    }
    if (first < 0)
        return fail(c, "empty ct value");
    if (*ct < 0)
        *ct = first;
    return true;
}

/* Keeps the first rt= or if= value when it is short, printable ASCII and
 * free of escapes; anything else is dropped (these attributes only
 * describe the resource, they never decide whether a link is valid). */
static void
keep_attr(char *out, const struct span *v)
{
    size_t i;

    if (*out || v->len == 0 || v->len > LINKFORMAT_ATTR_MAX)
        return;
    for (i = 0; i < v->len; i++)
        if (v->p[i] < 0x20 || v->p[i] > 0x7e || v->p[i] == '\\' || v->p[i] == '"')
            return;
    memcpy(out, v->p, v->len);
    out[v->len] = '\0';
}

/* name [ "=" value ], after the ';' */
static bool
parse_param(struct cursor *c, struct lf_link *l)
{
    struct span v = { NULL, 0, false };
    const char *name = c->s + c->pos;
    size_t nlen;
    bool has_value = false;

    while (c->pos < c->len && is_namechar(c->s[c->pos]))
        c->pos++;
    nlen = (size_t)(c->s + c->pos - name);
    if (nlen == 0)
        return fail(c, "expected an attribute name after ';'");
    skip_ws(c);
    if (at(c, '=')) {
        c->pos++;
        skip_ws(c);
        if (!parse_value(c, &v))
            return false;
        has_value = true;
    }
    if (nlen == 3 && strncasecmp(name, "obs", 3) == 0)
        l->obs = true;
    else if (nlen == 2 && strncasecmp(name, "ct", 2) == 0) {
        if (!has_value)
            return fail(c, "ct without a value");
        return parse_ct(c, &v, &l->ct);
    } else if (has_value && nlen == 2 && strncasecmp(name, "rt", 2) == 0) {
        keep_attr(l->rt, &v);
    } else if (has_value && nlen == 2 && strncasecmp(name, "if", 2) == 0) {
        keep_attr(l->iface, &v);
    }
    return true;
}

static bool
parse_link(struct cursor *c, struct lf_link *l)
{
    l->obs = false;
    l->ct = -1;
    l->rt[0] = l->iface[0] = '\0';
    if (!parse_target(c, l))
        return false;
    for (;;) {
        skip_ws(c);
        if (!at(c, ';'))
            return true;
        c->pos++;
        skip_ws(c);
        if (!parse_param(c, l))
            return false;
    }
}

/* Adds l, or merges it into an earlier link to the same target (a target
 * may be listed twice, e.g. with different anchors). */
static bool
add_link(struct cursor *c, const struct lf_link *l, struct lf_link *links,
         size_t max, size_t *n)
{
    size_t i;

    for (i = 0; i < *n; i++) {
        if (strcmp(links[i].path, l->path) == 0) {
            links[i].obs = links[i].obs || l->obs;
            if (links[i].ct < 0)
                links[i].ct = l->ct;
            if (!links[i].rt[0])
                memcpy(links[i].rt, l->rt, sizeof(l->rt));
            if (!links[i].iface[0])
                memcpy(links[i].iface, l->iface, sizeof(l->iface));
            return true;
        }
    }
    if (*n >= max)
        return fail(c, "too many links");
    links[(*n)++] = *l;
    return true;
}

int
linkformat_parse(const char *body, size_t len, struct lf_link *links,
                 size_t max, const char **err)
{
    struct cursor c = { body, len, 0, NULL };
    struct lf_link l;
    size_t n = 0;

    if (body == NULL) {
        c.len = 0;
        if (len > 0)
            fail(&c, "no body");
    }
    skip_ws(&c);
    while (c.pos < c.len) {
        if (!parse_link(&c, &l) || !add_link(&c, &l, links, max, &n))
            break;
        skip_ws(&c);
        if (c.pos == c.len)
            return (int)n;
        if (!at(&c, ',')) {
            fail(&c, "expected ',' or ';' after a link");
            break;
        }
        c.pos++;
        skip_ws(&c);
        if (c.pos == c.len)
            fail(&c, "nothing after the last ','");
    }
    if (c.err == NULL)
        return (int)n;
    if (err)
        *err = c.err;
    return -1;
}
