/*
 * psk.c - a sensor's own key from an stunnel-style PSK file (the same file
 * format the gateway reads): "IDENTITY:SECRET" a line, '#' comments, blank
 * lines, "hex:00ff..." secrets.  The identity is everything before the first
 * ':'.  The file is read once per sensor at start-up; fleets of simulated
 * sensors are small enough that a linear scan costs nothing.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "sim.h"

static int
hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int
psk_decode(const char *secret, uint8_t *key, size_t cap)
{
    size_t n;

    if (strncmp(secret, "hex:", 4) != 0) {
        n = strlen(secret);
        if (n == 0 || n > cap)
            return -1;
        memcpy(key, secret, n);
        return (int)n;
    }
    secret += 4;
    n = strlen(secret);
    if (n == 0 || n % 2 || n / 2 > cap)
        return -1;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hexval((unsigned char)secret[2 * i]);
        int lo = hexval((unsigned char)secret[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        key[i] = (uint8_t)(hi << 4 | lo);
    }
    return (int)(n / 2);
}

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

int
psk_lookup(const char *path, const char *identity, uint8_t *key, size_t cap)
{
    FILE *f = fopen(path, "re");
    char line[1024];
    unsigned lineno = 0;
    int ret = -2;

    if (!f) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    while (ret == -2 && fgets(line, sizeof(line), f)) {
        char *s, *colon;

        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            int c;
            while ((c = getc(f)) != EOF && c != '\n')
                ;
            fprintf(stderr, "%s:%u: line too long, ignored\n", path, lineno);
            continue;
        }
        s = trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        colon = strchr(s, ':');
        if (!colon || (size_t)(colon - s) != strlen(identity) ||
            strncmp(s, identity, (size_t)(colon - s)) != 0)
            continue;
        ret = psk_decode(colon + 1, key, cap);
        if (ret < 0)
            fprintf(stderr, "%s:%u: bad secret for %s\n", path, lineno, identity);
    }
    fclose(f);
    if (ret == -2) {
        fprintf(stderr, "%s: no key for identity %s\n", path, identity);
        ret = -1;
    }
    return ret;
}
