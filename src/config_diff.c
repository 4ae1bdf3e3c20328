/*
 * config_diff.c - two configurations compared setting by setting, for a
 * reload: which settings changed, a value moved from the new configuration
 * into the running one, a value written out for a log line.  It follows
 * the same schema tables as the loader (config_schema.c), so a setting
 * added there is compared here without a line of its own.
 *
 * Layer: base (pure)
 */
#include <stdio.h>
#include <string.h>

#include "coap2mqtt/config.h"
#include "coap2mqtt/log.h"
#include "config_internal.h"

static const void *
cfield(const struct config *cfg, size_t off)
{
    return (const char *)cfg + off;
}

static void *
field(struct config *cfg, size_t off)
{
    return (char *)cfg + off;
}

static bool
str_equal(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

static bool
same(const struct config *a, const struct config *b, const struct item *it)
{
    char *const *la, *const *lb;
    int n;

    switch (it->kind) {
    case K_INT:
        return *(const int *)cfield(a, it->off) == *(const int *)cfield(b, it->off);
    case K_BOOL:
        return *(const bool *)cfield(a, it->off) == *(const bool *)cfield(b, it->off);
    case K_STR:
        return str_equal(*(char *const *)cfield(a, it->off),
                         *(char *const *)cfield(b, it->off));
    case K_ADDRS:
        n = *(const int *)cfield(a, it->off_n);
        if (n != *(const int *)cfield(b, it->off_n))
            return false;
        la = *(char **const *)cfield(a, it->off);
        lb = *(char **const *)cfield(b, it->off);
        for (int i = 0; i < n; i++)
            if (!str_equal(la[i], lb[i]))
                return false;
        return true;
    case K_DEVICES:
        return config__same_devices(a, b);
    case K_OSCORE:
        return config_oscore_same(a, b);
    case K_GROUP:
        break;
    }
    return true;
}

static void
walk(const struct config *a, const struct config *b, const struct item *items,
     const char *prefix, config_diff_fn fn, void *arg)
{
    char name[128];

    for (const struct item *it = items; it->name; it++) {
        snprintf(name, sizeof(name), "%s%s%s", prefix, *prefix ? "." : "",
                 it->name);
        if (it->kind == K_GROUP)
            walk(a, b, it->sub, name, fn, arg);
        else if (!same(a, b, it))
            fn(arg, name);
    }
}

void
config_diff(const struct config *a, const struct config *b,
            config_diff_fn fn, void *arg)
{
    walk(a, b, config__root_items, "", fn, arg);
}

/* The schema entry of a dotted name, or NULL. */
static const struct item *
lookup(const char *name)
{
    const struct item *items = config__root_items, *it;
    size_t n;

    for (;;) {
        n = strcspn(name, ".");
        for (it = items; it->name; it++)
            if (strlen(it->name) == n && strncmp(it->name, name, n) == 0)
                break;
        if (!it->name)
            return NULL;
        if (name[n] == '\0')
            return it->kind == K_GROUP ? NULL : it;
        if (it->kind != K_GROUP)
            return NULL;
        items = it->sub;
        name += n + 1;
    }
}

#define SWAP(type, p, q) do { type t_ = *(type *)(p); \
    *(type *)(p) = *(type *)(q); *(type *)(q) = t_; } while (0)

int
config_take(struct config *to, struct config *from, const char *name)
{
    const struct item *it = lookup(name);

    if (!it)
        return -1;
    switch (it->kind) {
    case K_INT:
        *(int *)field(to, it->off) = *(int *)field(from, it->off);
        break;
    case K_BOOL:
        *(bool *)field(to, it->off) = *(bool *)field(from, it->off);
        break;
    case K_STR:
        SWAP(char *, field(to, it->off), field(from, it->off));
        break;
    case K_ADDRS:
        SWAP(char **, field(to, it->off), field(from, it->off));
        SWAP(int, field(to, it->off_n), field(from, it->off_n));
        break;
    case K_DEVICES:
        SWAP(struct config_device *, &to->devices, &from->devices);
        SWAP(int, &to->n_devices, &from->n_devices);
        break;
    case K_OSCORE:
        SWAP(struct config_oscore *, &to->oscore, &from->oscore);
        SWAP(int, &to->n_oscore, &from->n_oscore);
        break;
    case K_GROUP:
        return -1;
    }
    return 0;
}

/* [ "a:1", "b:2" ], cut short with "..." when it does not fit. */
static void
addrs_text(char *const *list, int n, char *buf, size_t cap)
{
    size_t len = (size_t)snprintf(buf, cap, "[");

    for (int i = 0; i < n && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s\"%s\"", i ? ", " : " ",
                                list[i]);
    if (len < cap)
        snprintf(buf + len, cap - len, " ]");
    if (len + 3 >= cap && cap > 4)
        memcpy(buf + cap - 4, "...", 4);
}

const char *
config_value_text(const struct config *cfg, const char *name, char *buf,
                  size_t cap)
{
    const struct item *it = lookup(name);
    const char *s;

    if (!it)
        return "?";
    switch (it->kind) {
    case K_INT:
        snprintf(buf, cap, "%d", *(const int *)cfield(cfg, it->off));
        break;
    case K_BOOL:
        snprintf(buf, cap, "%s", *(const bool *)cfield(cfg, it->off) ? "true" : "false");
        break;
    case K_STR:
        s = *(char *const *)cfield(cfg, it->off);
        if (s)
            config__quote(s, buf, cap);
        else
            snprintf(buf, cap, "(unset)");
        break;
    case K_ADDRS:
        addrs_text(*(char **const *)cfield(cfg, it->off),
                   *(const int *)cfield(cfg, it->off_n), buf, cap);
        break;
    case K_DEVICES:
        config__devices_text(cfg, buf, cap);
        break;
    case K_OSCORE:
        config__oscore_text(cfg, buf, cap);
        break;
    case K_GROUP:
        return "?";
    }
    return buf;
}

int
config_log_level(const char *name)
{
    static const struct { const char *name; enum log_level lvl; } levels[] = {
        { "error", LOG_LVL_ERR }, { "warning", LOG_LVL_WARNING },
        { "notice", LOG_LVL_NOTICE }, { "info", LOG_LVL_INFO },
        { "debug", LOG_LVL_DEBUG },
    };

    for (size_t i = 0; name && i < sizeof(levels) / sizeof(levels[0]); i++)
        if (strcmp(levels[i].name, name) == 0)
            return (int)levels[i].lvl;
    return -1;
}
