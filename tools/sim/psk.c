/*
 * psk.c - a sensor's own key from an stunnel-style PSK file (the same file
 * format the gateway reads): "IDENTITY:SECRET" a line, '#' comments, blank
 * lines, "hex:00ff..." secrets.  The identity is everything before the first
 * ':'.  The file is read once into a sorted table, so a hundred thousand
 * sensors find their keys in O(log n) each.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

/* Strips surrounding white space in place; returns the start. */
static char *
trim(char *s)
{
    size_t n;

    while (isspace((unsigned char)*s))
        s++;
    n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

struct psk_entry {
    char *id;
    char *secret;
    unsigned line;
};

struct psk_table {
    char *path;
    struct psk_entry *e;
    size_t n, cap;
};

static int
entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct psk_entry *)a)->id, ((const struct psk_entry *)b)->id);
}

static int
table_add(struct psk_table *t, const char *id, const char *secret, unsigned line)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        struct psk_entry *e = realloc(t->e, cap * sizeof(*e));
        if (!e)
            return -1;
        t->e = e;
        t->cap = cap;
    }
    t->e[t->n].id = strdup(id);
    t->e[t->n].secret = strdup(secret);
    t->e[t->n].line = line;
    if (!t->e[t->n].id || !t->e[t->n].secret) {
        free(t->e[t->n].id);
        free(t->e[t->n].secret);
        return -1;
    }
    t->n++;
    return 0;
}

/* Reads every "IDENTITY:SECRET" line; lines without ':' are skipped. */
static int
table_read(struct psk_table *t, FILE *f)
{
    char line[1024];
    unsigned lineno = 0;

    while (fgets(line, sizeof(line), f)) {
        char *s, *colon;

        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            int c;
            while ((c = getc(f)) != EOF && c != '\n')
                ;
            fprintf(stderr, "%s:%u: line too long, ignored\n", t->path, lineno);
            continue;
        }
        s = trim(line);
        if (*s == '\0' || *s == '#' || !(colon = strchr(s, ':')))
            continue;
        *colon = '\0';
        if (table_add(t, s, colon + 1, lineno) < 0)
            return -1;
    }
    return 0;
}

struct psk_table *
psk_table_load(const char *path)
{
    struct psk_table *t = calloc(1, sizeof(*t));
    FILE *f;
    int rc;

    if (!t || !(t->path = strdup(path))) {
        free(t);
        return NULL;
    }
    f = fopen(path, "re");
    if (!f) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        psk_table_free(t);
        return NULL;
    }
    rc = table_read(t, f);
    fclose(f);
    if (rc < 0) {
        fprintf(stderr, "%s: out of memory\n", path);
        psk_table_free(t);
        return NULL;
    }
    /* Stable for duplicates is not needed: the gateway refuses them. */
    qsort(t->e, t->n, sizeof(*t->e), entry_cmp);
    return t;
}

int
psk_table_lookup(const struct psk_table *t, const char *identity,
                 uint8_t *key, size_t cap)
{
    struct psk_entry k = { .id = (char *)identity };
    const struct psk_entry *e = bsearch(&k, t->e, t->n, sizeof(*t->e), entry_cmp);
    int n;

    if (!e) {
        fprintf(stderr, "%s: no key for identity %s\n", t->path, identity);
        return -1;
    }
    n = tool_psk_decode(e->secret, key, cap);
    if (n < 0)
        fprintf(stderr, "%s:%u: bad secret for %s\n", t->path, e->line, identity);
    return n;
}

void
psk_table_free(struct psk_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++) {
        explicit_bzero(t->e[i].secret, strlen(t->e[i].secret));
        free(t->e[i].id);
        free(t->e[i].secret);
    }
    free(t->e);
    free(t->path);
    free(t);
}
