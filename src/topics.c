/*
 * topics.c - (device id, resource path) <-> MQTT topic, and the validation
 * that keeps hostile names off the broker.  Device ids come from DTLS
 * identities and paths from packets, so every byte is checked: valid UTF-8
 * (no overlong forms, surrogates or noncharacters), no control characters,
 * no MQTT wildcards, no empty or dot levels, bounded length and depth (a
 * topic deeper than 200 levels makes mosquitto drop the whole connection).
 *
 * Layer: base (pure)
 */
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "coap2mqtt/topics.h"

/* Length of the valid UTF-8 sequence at s (at most 'len' bytes) and its
 * code point, or 0 if it is malformed, overlong, a surrogate or too big. */
static size_t
utf8_decode(const unsigned char *s, size_t len, uint32_t *cp)
{
    static const uint32_t min_cp[] = { 0, 0, 0x80, 0x800, 0x10000 };
    size_t n, i;
    uint32_t c;

    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        n = 2;
        c = s[0] & 0x1f;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        n = 3;
        c = s[0] & 0x0f;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        n = 4;
        c = s[0] & 0x07;
    } else {
        return 0;   /* continuation byte, 0xc0/0xc1 (overlong), 0xf5.. */
    }
    if (len < n)
        return 0;   /* truncated */
    for (i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3f);
    }
    if (c < min_cp[n] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return n;
}

/* MQTT (3.1.1 section 1.5.3) says topic names should not hold control
 * characters or Unicode noncharacters; brokers and dashboards disagree
 * about them, so none get through. */
static bool
cp_allowed(uint32_t c)
{
    if (c < 0x20 || (c >= 0x7f && c <= 0x9f))
        return false;
    if (c >= 0xfdd0 && c <= 0xfdef)
        return false;
    if ((c & 0xfffe) == 0xfffe)
        return false;
    return c != '/' && c != '+' && c != '#';
}

/* One topic level: non-empty, not "." or "..", allowed characters only. */
static bool
level_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, n;
    uint32_t c;

    if (len == 0)
        return false;
    if ((len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
        return false;
    while (i < len) {
        n = utf8_decode(p + i, len - i, &c);
        if (n == 0 || !cp_allowed(c))
            return false;
        i += n;
    }
    return true;
}

static bool
is_word(const char *s, size_t len, const char *word)
{
    return len == strlen(word) && memcmp(s, word, len) == 0;
}

/* Splits s on '/' into at most 'depth' valid levels; reports the last. */
static bool
levels_valid(const char *s, size_t len, size_t depth,
             const char **last, size_t *last_len)
{
    size_t start = 0, n = 0, i;

    for (i = 0; i <= len; i++) {
        if (i < len && s[i] != '/')
            continue;
        if (++n > depth || !level_valid(s + start, i - start))
            return false;
        *last = s + start;
        *last_len = i - start;
        start = i + 1;
    }
    return true;
}

bool
topic_id_valid(const char *id, size_t len)
{
    if (id == NULL || len == 0 || len > TOPIC_ID_MAX)
        return false;
    return level_valid(id, len) && !is_word(id, len, "bridge");
}

bool
topic_path_valid(const char *path, size_t len)
{
    const char *last = NULL;
    size_t last_len = 0;

    if (path == NULL || len == 0 || len > TOPIC_PATH_MAX)
        return false;
    if (!levels_valid(path, len, TOPIC_PATH_DEPTH, &last, &last_len))
        return false;
    /* These would read as the gateway's own command/result topics. */
    if (is_word(last, last_len, "set") || is_word(last, last_len, "get") ||
        is_word(last, last_len, "result"))
        return false;
    return !is_word(path, len, "availability");
}

bool
topic_base_valid(const char *base)
{
    const char *last = NULL;
    size_t len, last_len = 0;

    if (base == NULL)
        return false;
    len = strnlen(base, TOPIC_BASE_MAX + 1);
    if (len == 0 || len > TOPIC_BASE_MAX)
        return false;
    /* "$..." topics belong to the broker ($SYS) and are not matched by '#'
     * subscriptions, so a base there would hide everything we publish. */
    if (base[0] == '$')
        return false;
    return levels_valid(base, len, TOPIC_PATH_DEPTH, &last, &last_len);
}

/* Appends sep and s to buf at *pos; false once it no longer fits. */
static bool
append(char *buf, size_t cap, size_t *pos, const char *sep, const char *s)
{
    size_t a = strlen(sep), b = strlen(s);

    if (cap - *pos <= a + b)    /* keep room for the NUL */
        return false;
    memcpy(buf + *pos, sep, a);
    memcpy(buf + *pos + a, s, b);
    *pos += a + b;
    buf[*pos] = '\0';
    return true;
}

int
topic_build(char *buf, size_t cap, const char *base, const char *id,
            const char *path, const char *suffix)
{
    size_t pos = 0;

    if (buf == NULL || cap == 0 || base == NULL || id == NULL)
        return -1;
    buf[0] = '\0';
    if (!append(buf, cap, &pos, "", base) ||
        !append(buf, cap, &pos, "/", id) ||
        (path && !append(buf, cap, &pos, "/", path)) ||
        (suffix && !append(buf, cap, &pos, "/", suffix))) {
        buf[0] = '\0';
        return -1;
    }
    return pos > INT_MAX ? -1 : (int)pos;
}

int
topic_bridge(char *buf, size_t cap, const char *base, const char *instance,
             const char *leaf)
{
    return instance ? topic_build(buf, cap, base, "bridge", instance, leaf)
                    : topic_build(buf, cap, base, "bridge", leaf, NULL);
}

/* Copies len bytes and a NUL into dst if they fit. */
static bool
copy_out(char *dst, size_t cap, const char *src, size_t len)
{
    if (dst == NULL || len >= cap)
        return false;
    memcpy(dst, src, len);
    dst[len] = '\0';
    return true;
}

int
topic_parse_command(const char *base, const char *topic,
                    char *id, size_t id_cap, char *path, size_t path_cap,
                    enum topic_kind *kind)
{
    enum topic_kind k;
    size_t blen, tlen;
    const char *p, *slash, *end;

    if (base == NULL || topic == NULL)
        return -1;
    blen = strlen(base);
    tlen = strnlen(topic, TOPIC_MAX + 1);
    if (tlen > TOPIC_MAX || tlen < blen + 1 + 1 + 1 + 1 + 4 ||
        memcmp(topic, base, blen) != 0 || topic[blen] != '/')
        return -1;
    end = topic + tlen - 4;     /* "/set" or "/get" */
    if (memcmp(end, "/set", 4) == 0)
        k = TOPIC_KIND_SET;
    else if (memcmp(end, "/get", 4) == 0)
        k = TOPIC_KIND_GET;
    else
        return -1;
    p = topic + blen + 1;
    slash = memchr(p, '/', (size_t)(end - p));
    if (slash == NULL || slash == end)
        return -1;
    if (!topic_id_valid(p, (size_t)(slash - p)) ||
        !topic_path_valid(slash + 1, (size_t)(end - slash - 1)))
        return -1;
    if (!copy_out(id, id_cap, p, (size_t)(slash - p)) ||
        !copy_out(path, path_cap, slash + 1, (size_t)(end - slash - 1)))
        return -1;
    if (kind)
        *kind = k;
    return 0;
}
