/*
 * keystore.c - PSK identities and keys from an stunnel-style file, held in
 * an open-addressing hash table (linear probing, load <= 1/2) so a lookup
 * during a handshake costs one hash and a probe or two, whatever the fleet
 * size.  The table's contents come from the operator, so an attacker
 * choosing identities cannot lengthen probe runs.  Keys are wiped from
 * memory (explicit_bzero) before it is freed, including the line buffer.
 *
 * Layer: base
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "coap2mqtt/keystore.h"

struct entry {
    size_t hash;
    unsigned line;          /* where it was defined, for duplicate errors */
    uint8_t id_len;
    uint8_t key_len;
    uint8_t data[];         /* identity, then key */
};

struct keystore {
    struct entry **slots;
    size_t cap;             /* power of two */
    size_t count;
};

/* While loading: where errors go and how many there were. */
struct loader {
    const char *path;
    keystore_report_fn report;
    void *arg;
    unsigned line;
    int errors;
};

__attribute__((format(printf, 2, 3)))
static void
lerror(struct loader *ld, const char *fmt, ...)
{
    char msg[512], line[4096 + 600];
    va_list ap;

    ld->errors++;
    if (ld->report == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (ld->line > 0)
        snprintf(line, sizeof(line), "%s:%u: %s", ld->path, ld->line, msg);
    else
        snprintf(line, sizeof(line), "%s: %s", ld->path, msg);
    ld->report(ld->arg, line);
}

/* FNV-1a: identities are short, and the set is the operator's. */
static size_t
hash_bytes(const uint8_t *p, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;

    while (len--) {
        h ^= *p++;
        h *= 0x100000001b3ULL;
    }
    return (size_t)h;
}

static struct entry **
find_slot(struct entry **slots, size_t cap, const uint8_t *id, size_t len,
          size_t hash)
{
    size_t i = hash & (cap - 1);
    struct entry *e;

    while ((e = slots[i]) != NULL) {
        if (e->hash == hash && e->id_len == len && memcmp(e->data, id, len) == 0)
            break;
        i = (i + 1) & (cap - 1);
    }
    return &slots[i];
}

static bool
grow(keystore_t *ks)
{
    size_t ncap = ks->cap ? ks->cap * 2 : 16, i;
    struct entry **ns = calloc(ncap, sizeof(*ns));

    if (ns == NULL)
        return false;
    for (i = 0; i < ks->cap; i++) {
        struct entry *e = ks->slots[i];

        if (e)
            *find_slot(ns, ncap, e->data, e->id_len, e->hash) = e;
    }
    free(ks->slots);
    ks->slots = ns;
    ks->cap = ncap;
    return true;
}

static void
insert(keystore_t *ks, struct loader *ld, const uint8_t *id, size_t id_len,
       const uint8_t *key, size_t key_len)
{
    size_t hash = hash_bytes(id, id_len);
    struct entry **slot, *e;

    if ((ks->count + 1) * 2 > ks->cap && !grow(ks)) {
        lerror(ld, "out of memory");
        return;
    }
    slot = find_slot(ks->slots, ks->cap, id, id_len, hash);
    if (*slot) {
        lerror(ld, "duplicate identity (first on line %u)", (*slot)->line);
        return;
    }
    if ((e = malloc(sizeof(*e) + id_len + key_len)) == NULL) {
        lerror(ld, "out of memory");
        return;
    }
    e->hash = hash;
    e->line = ld->line;
    e->id_len = (uint8_t)id_len;
    e->key_len = (uint8_t)key_len;
    memcpy(e->data, id, id_len);
    memcpy(e->data + id_len, key, key_len);
    *slot = e;
    ks->count++;
}

static int
hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes the secret after the ':' into key; 0 and an error if it is bad. */
static size_t
decode_secret(struct loader *ld, const uint8_t *s, size_t len, uint8_t *key)
{
    size_t i;
    int hi, lo;

    if (len < 4 || memcmp(s, "hex:", 4) != 0) {
        if (len == 0 || len > KEYSTORE_KEY_MAX) {
            lerror(ld, len ? "key longer than %d bytes" : "empty key",
                   KEYSTORE_KEY_MAX);
            return 0;
        }
        memcpy(key, s, len);
        return len;
    }
    s += 4;
    len -= 4;
    if (len == 0 || len % 2 || len / 2 > KEYSTORE_KEY_MAX) {
        lerror(ld, len == 0 ? "empty hex key" : len % 2 ?
               "odd number of hex digits" : "key longer than %d bytes",
               KEYSTORE_KEY_MAX);
        return 0;
    }
    for (i = 0; i < len / 2; i++) {
        if ((hi = hexval(s[2 * i])) < 0 || (lo = hexval(s[2 * i + 1])) < 0) {
            lerror(ld, "bad hex digit in key");
            return 0;
        }
        key[i] = (uint8_t)(hi << 4 | lo);
    }
    return len / 2;
}

static bool
is_blank_or_comment(const uint8_t *s, size_t len)
{
    size_t i = 0;

    while (i < len && (s[i] == ' ' || s[i] == '\t'))
        i++;
    return i == len || s[i] == '#';
}

static void
parse_line(keystore_t *ks, struct loader *ld, const uint8_t *s, size_t len)
{
    uint8_t key[KEYSTORE_KEY_MAX];
    const uint8_t *colon;
    size_t id_len, key_len;

    if (len > 0 && s[len - 1] == '\n')
        len--;
    if (len > 0 && s[len - 1] == '\r')
        len--;
    if (is_blank_or_comment(s, len))
        return;
    if ((colon = memchr(s, ':', len)) == NULL) {
        lerror(ld, "missing ':'");
        return;
    }
    id_len = (size_t)(colon - s);
    if (id_len == 0 || id_len > KEYSTORE_ID_MAX) {
        lerror(ld, id_len ? "identity longer than %d bytes" : "empty identity",
               KEYSTORE_ID_MAX);
        return;
    }
    key_len = decode_secret(ld, colon + 1, len - id_len - 1, key);
    if (key_len > 0)
        insert(ks, ld, s, id_len, key, key_len);
    explicit_bzero(key, sizeof(key));
}

/* Opens without blocking on a FIFO and checks what was opened, not the
 * name (no race between a stat() and the open()). */
static FILE *
open_private(struct loader *ld)
{
    struct stat st;
    FILE *f;
    int fd;

    fd = open(ld->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        lerror(ld, "%s", strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        lerror(ld, "not a regular file");
        close(fd);
        return NULL;
    }
    /* Write access would let them add identities: refused as well. */
    if (st.st_mode & (S_IRWXG | S_IRWXO))
        lerror(ld, "%s by group or others (mode %04o); chmod 600 it",
               st.st_mode & (S_IRGRP | S_IROTH) ? "readable" : "accessible",
               (unsigned)(st.st_mode & 07777));
    if ((f = fdopen(fd, "r")) == NULL) {
        lerror(ld, "%s", strerror(errno));
        close(fd);
    }
    return f;
}

keystore_t *
keystore_load(const char *path, keystore_report_fn report, void *arg)
{
    struct loader ld = { path, report, arg, 0, 0 };
    keystore_t *ks;
    char *buf = NULL;
    size_t bufcap = 0;
    ssize_t n;
    FILE *f;

    if ((f = open_private(&ld)) == NULL)
        return NULL;
    if ((ks = calloc(1, sizeof(*ks))) == NULL || !grow(ks)) {
        lerror(&ld, "out of memory");
        free(ks);
        fclose(f);
        return NULL;
    }
    while ((n = getline(&buf, &bufcap, f)) >= 0) {
        ld.line++;
        parse_line(ks, &ld, (const uint8_t *)buf, (size_t)n);
    }
    if (ferror(f)) {
        ld.line = 0;
        lerror(&ld, "read error: %s", strerror(errno));
    }
    if (buf)
        explicit_bzero(buf, bufcap);
    free(buf);
    fclose(f);
    if (ld.errors > 0) {
        keystore_free(ks);
        return NULL;
    }
    return ks;
}

void
keystore_free(keystore_t *ks)
{
    size_t i;

    if (ks == NULL)
        return;
    for (i = 0; i < ks->cap; i++) {
        struct entry *e = ks->slots[i];

        if (e) {
            explicit_bzero(e->data, (size_t)e->id_len + e->key_len);
            free(e);
        }
    }
    free(ks->slots);
    free(ks);
}

const uint8_t *
keystore_lookup(const keystore_t *ks, const uint8_t *id, size_t id_len,
                size_t *key_len)
{
    struct entry *e;

    if (ks == NULL || id == NULL || id_len == 0 || id_len > KEYSTORE_ID_MAX)
        return NULL;
    e = *find_slot(ks->slots, ks->cap, id, id_len, hash_bytes(id, id_len));
    if (e == NULL)
        return NULL;
    if (key_len)
        *key_len = e->key_len;
    return e->data + e->id_len;
}

size_t
keystore_count(const keystore_t *ks)
{
    return ks ? ks->count : 0;
}
