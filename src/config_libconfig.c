/*
 * config_libconfig.c - what libconfig 1.5 (Debian 12) gets wrong, made
 * right for the config loader.
 *
 * It stores an integer literal that does not fit an int truncated, silently
 * ("port = 4294967297;" reads as 1).  A small scan of the source finds such
 * literals (not names, strings, comments or floats), each with the name
 * written before it, so that the walk reports them instead of believing
 * them; an @include'd file is scanned the first time one of its settings
 * is checked.
 *
 * Its parser leaks a string token on some syntax errors: the sanitized
 * build tells LeakSanitizer so (below).
 *
 * Its scanner opens an @include'd name with fopen() and nothing else: a
 * directory (@include "" names the config's own) opens, its first read
 * fails, and flex's fatal-error path calls exit(2) -- the daemon gone
 * without a word (found by tests/fuzz/fuzz_config.c).  A FIFO or a device
 * would be read without end.  So the @include lines are looked at first
 * (config__check_includes) and anything but a regular file is refused
 * with its file and line.
 *
 * Layer: base (calls libconfig only)
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_internal.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer) && !defined(__SANITIZE_ADDRESS__)
#define __SANITIZE_ADDRESS__ 1      /* clang < 15 spells it this way */
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
/*
 * libconfig 1.5's parser leaks a string token that appears where the
 * grammar has no place for it ('host "x";', a typo an operator makes), and
 * in the sanitized build LeakSanitizer would turn "-t" exit 78 into 23.
 * The leak is in the library, bounded by the file size, and happens once
 * per load, so it is suppressed rather than allowed to mask real ones.
 */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_options(void);

const char *
__lsan_default_suppressions(void)
{
    return "leak:libconfig.so\n";
}

/* ...and quietly: "-t" output is the error lines, nothing else. */
const char *
__lsan_default_options(void)
{
    return "print_suppressions=0";
}
#endif

/* --- integer literals libconfig 1.5 truncates ----------------------------- */

static const char *
skip_string(const char *p, const char *end, unsigned *line)
{
    for (p++; p < end && *p != '"'; p++) {
        if (*p == '\n')
            (*line)++;
        if (*p == '\\' && p + 1 < end)
            p++;
    }
    return p < end ? p + 1 : end;
}

static const char *
skip_comment(const char *p, const char *end, unsigned *line)
{
    if (*p == '/' && p + 1 < end && p[1] == '*') {
        for (p += 2; p + 1 < end && !(p[0] == '*' && p[1] == '/'); p++)
            if (*p == '\n')
                (*line)++;
        return p + 1 < end ? p + 2 : end;
    }
    while (p < end && *p != '\n')
        p++;
    return p;
}

static void
note_big(struct ctx *c, const char *file, unsigned line, const char *name,
         size_t name_len, const char *tok, size_t len)
{
    char text[32];
    long long v;
    bool hex;
    struct bigint *nb;

    if (len >= sizeof(text) || tok[len - 1] == 'L' ||
        name_len >= sizeof(nb->name))
        return;     /* int64 literals keep their value; long names are unknown */
    memcpy(text, tok, len);
    text[len] = '\0';
    hex = len > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X');
    errno = 0;
    v = hex ? (long long)strtoull(text, NULL, 16) : strtoll(text, NULL, 10);
    if (errno == 0 && v >= INT_MIN && v <= INT_MAX)
        return;
    if ((nb = realloc(c->big, (c->n_big + 1) * sizeof(*nb))) == NULL)
        return;
    c->big = nb;
    nb += c->n_big;
    if ((nb->file = strdup(file)) == NULL)
        return;
    c->n_big++;
    nb->line = line;
    memcpy(nb->name, name, name_len);
    nb->name[name_len] = '\0';
    nb->used = false;
    /* what libconfig 1.5 stores: atoi() resp. (int)strtoul() */
    nb->as_int = hex ? (int)(uint32_t)strtoul(text, NULL, 16)
                     : (int)(uint32_t)(unsigned long)strtol(text, NULL, 10);
    memcpy(nb->text, text, len + 1);
}

static bool
is_num_start(const char *p, const char *end)
{
    if (*p >= '0' && *p <= '9')
        return true;
    return (*p == '-' || *p == '+') && p + 1 < end && p[1] >= '0' && p[1] <= '9';
}

/* Finds integer literals (not names, strings, comments or floats), each
 * with the name last written before it. */
void
config__scan_big(struct ctx *c, const char *file, const char *p,
                 size_t len)
{
    const char *end = p + len, *tok, *name = "";
    size_t name_len = 0;
    unsigned line = 1;

    while (p < end) {
        if (*p == '\n') {
            line++;
            p++;
        } else if (*p == '"') {
            p = skip_string(p, end, &line);
        } else if (*p == '#' || (*p == '/' && p + 1 < end &&
                                 (p[1] == '/' || p[1] == '*'))) {
            p = skip_comment(p, end, &line);
        } else if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                   *p == '*' || *p == '@') {
            name = p;
            while (p < end && (strchr("-_*@", *p) || (*p >= '0' && *p <= '9') ||
                   (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')))
                p++;
            name_len = (size_t)(p - name);
        } else if (is_num_start(p, end)) {
            tok = p++;
            while (p < end && (strchr(".+-_xX", *p) || (*p >= '0' && *p <= '9') ||
                   (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')))
                p++;
            if (!memchr(tok, '.', (size_t)(p - tok)) &&
                (memchr(tok, 'x', (size_t)(p - tok)) || memchr(tok, 'X', (size_t)(p - tok)) ||
                 (!memchr(tok, 'e', (size_t)(p - tok)) && !memchr(tok, 'E', (size_t)(p - tok)))))
                note_big(c, file, line, name, name_len, tok, (size_t)(p - tok));
        } else {
            p++;
        }
    }
}

/* Reads a whole (small) file; NULL and errno on failure. */
char *
config__slurp(const char *path, size_t *len)
{
    struct stat st;
    char *buf = NULL;
    ssize_t n;
    int fd;

    if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) < 0)
        return NULL;
    if (fstat(fd, &st) < 0)
        goto fail;
    if (!S_ISREG(st.st_mode)) {
        errno = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
        goto fail;
    }
    if (st.st_size > CONF_MAX_BYTES) {
        errno = EFBIG;
        goto fail;
    }
    if ((buf = malloc((size_t)st.st_size + 1)) == NULL)
        goto fail;
    *len = 0;
    while ((n = read(fd, buf + *len, (size_t)st.st_size - *len)) > 0)
        *len += (size_t)n;
    if (n < 0)
        goto fail;
    buf[*len] = '\0';
    close(fd);
    return buf;
fail:
    n = errno;
    free(buf);
    close(fd);
    errno = (int)n;
    return NULL;
}

/* --- @include of what is not a regular file ----------------------------- */

#define INCLUDE_DEPTH_MAX 10        /* libconfig's own limit */

/* The name of an '@include "..."' at p (a line's start), or NULL. */
static const char *
include_name(const char *p, const char *end, char *name, size_t cap)
{
    static const char kw[] = "@include";
    size_t n = 0;

    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    if ((size_t)(end - p) < sizeof(kw) - 1 || memcmp(p, kw, sizeof(kw) - 1) != 0)
        return NULL;
    p += sizeof(kw) - 1;
    if (p >= end || (*p != ' ' && *p != '\t'))
        return NULL;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    if (p >= end || *p != '"')
        return NULL;
    for (p++; p < end && *p != '"' && *p != '\n'; p++) {
        if (*p == '\\' && p + 1 < end)
            p++;
        if (n + 1 < cap)
            name[n++] = *p;
    }
    name[n] = '\0';
    return name;
}

int
config__check_includes(struct ctx *c, const char *path, const char *text,
                       size_t len, int depth)
{
    const char *p = text, *end = text + len, *dir = config_get_include_dir(&c->lc);
    char name[PATH_MAX], full[PATH_MAX], line[LINE_MAX_OUT];
    unsigned ln = 1;
    int bad = 0;

    for (; p < end; ln++) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        struct stat st;

        if (!eol)
            eol = end;
        if (include_name(p, eol, name, sizeof(name))) {
            int n = snprintf(full, sizeof(full), "%s%s%s", name[0] == '/' || !dir ? "" : dir,
                             name[0] == '/' || !dir ? "" : "/", name);

            /* Longer than a path, or not there: libconfig's fopen() fails
             * and it reports that itself. */
            if (n < 0 || (size_t)n >= sizeof(full) || stat(full, &st) < 0) {
                /* nothing to add */
            } else if (!S_ISREG(st.st_mode)) {
                snprintf(line, sizeof(line), "%s:%u: @include: %s is not a regular file",
                         path, ln, full);
                config__emit(c, line);
                bad = -1;
            } else if (depth < INCLUDE_DEPTH_MAX) {
                size_t inc_len;
                char *inc = config__slurp(full, &inc_len);

                if (inc && config__check_includes(c, full, inc, inc_len, depth + 1) < 0)
                    bad = -1;
                free(inc);
            }
        }
        p = eol + 1;
    }
    return bad;
}

/* Scans an included file the first time one of its settings is checked. */
static void
scan_include(struct ctx *c, const config_setting_t *s, const char *label)
{
    char buf[PATH_MAX + 64], *text, **ns;
    size_t i, len;

    for (i = 0; i < c->n_scanned; i++)
        if (strcmp(c->scanned[i], label) == 0)
            return;
    if ((ns = realloc(c->scanned, (c->n_scanned + 1) * sizeof(*ns))) == NULL)
        return;
    c->scanned = ns;
    if ((ns[c->n_scanned] = strdup(label)) == NULL)
        return;
    c->n_scanned++;
    if ((text = config__slurp(config__setting_file(c, s, buf, sizeof(buf)),
                              &len)) != NULL)
        config__scan_big(c, label, text, len);
    free(text);
}

/* The source text of an int setting if libconfig truncated it, else NULL. */
const char *
config__truncated_literal(struct ctx *c, const config_setting_t *s,
                          int value)
{
    const char *label = config_setting_source_file(s);
    const char *name = config_setting_name(s);
    unsigned line = config_setting_source_line(s);
    size_t i;

    if (label == NULL)
        label = "";
    if (*label)
        scan_include(c, s, label);
    for (i = 0; i < c->n_big; i++) {
        struct bigint *b = &c->big[i];

        if (!b->used && b->line == line && b->as_int == value &&
            name && strcmp(b->name, name) == 0 && strcmp(b->file, label) == 0) {
            b->used = true;
            return b->text;
        }
    }
    return NULL;
}
