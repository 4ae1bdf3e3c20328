/*
 * config_errors.c - the config loader's error lines.  Every problem is one
 * line "file:line: setting: reason", naming the file a setting came from
 * (an @include'd one by its path next to the config), with the user's
 * strings quoted and escaped so that a line stays one line.
 *
 * Layer: base (calls libconfig only)
 */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>

#include "config_internal.h"

/* Error lines are exactly one line: control bytes from names become '?'. */
void
config__emit(struct ctx *c, char *line)
{
    char *p;

    c->errors++;
    if (c->report == NULL)
        return;
    for (p = line; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    c->report(c->arg, line);
}

/* The file a setting came from: libconfig names included files as written,
 * relative to the include directory, and the main file not at all. */
const char *
config__setting_file(const struct ctx *c, const config_setting_t *s,
                     char *buf, size_t cap)
{
    const char *f = s ? config_setting_source_file(s) : NULL;
    const char *dir = config_get_include_dir(&c->lc);

    if (f == NULL || *f == '\0')
        return c->path;
    if (f[0] == '/' || dir == NULL)
        return f;
    snprintf(buf, cap, "%s/%s", dir, f);
    return buf;
}

/* Reports "file:line: name: reason" for setting s (no line when s is NULL
 * or the root, which has none). */
void
config__serr(struct ctx *c, const config_setting_t *s, const char *name,
             const char *fmt, ...)
{
    char file[PATH_MAX + 64], msg[1024], line[LINE_MAX_OUT];
    const char *f = config__setting_file(c, s, file, sizeof(file));
    unsigned ln = s ? config_setting_source_line(s) : 0;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (ln > 0)
        snprintf(line, sizeof(line), "%s:%u: %s: %s", f, ln, name, msg);
    else
        snprintf(line, sizeof(line), "%s: %s: %s", f, name, msg);
    config__emit(c, line);
}

/* A user's string for an error line: quoted, escaped, cut when long. */
const char *
config__quote(const char *s, char *buf, size_t cap)
{
    size_t n = 0;
    unsigned char ch;

    buf[n++] = '"';
    for (; *s && n + 8 < cap; s++) {
        ch = (unsigned char)*s;
        if (ch < 0x20 || ch == 0x7f || ch == '"' || ch == '\\')
            n += (size_t)snprintf(buf + n, cap - n, "\\x%02x", ch);
        else
            buf[n++] = (char)ch;
    }
    if (*s)
        n += (size_t)snprintf(buf + n, cap - n, "...");
    snprintf(buf + n, cap - n, "\"");
    return buf;
}

const char *
config__type_name(int type)
{
    switch (type) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:  return "an integer";
    case CONFIG_TYPE_FLOAT:  return "a float";
    case CONFIG_TYPE_STRING: return "a string";
    case CONFIG_TYPE_BOOL:   return "a boolean";
    case CONFIG_TYPE_ARRAY:  return "an array";
    case CONFIG_TYPE_LIST:   return "a list";
    case CONFIG_TYPE_GROUP:  return "a group";
    default:                 return "nothing";
    }
}
