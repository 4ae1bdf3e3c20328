/*
 * config_internal.h - the config loader's state, shared by its files and by
 * nobody else (as transport_internal.h does for the transport):
 *
 *   config.c            defaults and ownership, the walk over the settings,
 *                       cross-field checks, loading, the files a config names
 *   config_errors.c     the error lines: "file:line: setting: reason"
 *   config_libconfig.c  what libconfig 1.5 gets wrong: the integer literals
 *                       it truncates, the token its parser leaks
 *   config_schema.c     the value checks and the tables of the settings
 *   config_devices.c    the devices list (dial-out)
 *   config_oscore.c     the oscore list (OSCORE security contexts)
 *
 * Internal calls between these files are named config__verb.
 *
 * Layer: base
 */
#ifndef COAP2MQTT_CONFIG_INTERNAL_H
#define COAP2MQTT_CONFIG_INTERNAL_H

#include <libconfig.h>
#include <stdbool.h>
#include <stddef.h>

#include "coap2mqtt/config.h"
#include "coap2mqtt/keystore.h"

#define CONF_MAX_BYTES   (1024 * 1024)  /* a config is text, not a dump */
#define CONF_MAX_ADDRS   16             /* endpoints per listen list */
#define LINE_MAX_OUT     8192

/* A setting of the schema (config_schema.c): a K_GROUP's 'sub' is the
 * table of its settings, and a table ends with a NULL name. */
enum kind { K_INT, K_BOOL, K_STR, K_ADDRS, K_GROUP,
             K_DEVICES /* the devices list, config_devices.c */,
             K_OSCORE /* the oscore list, config_oscore.c */ };

struct item {
    const char *name;
    enum kind kind;
    size_t off;                     /* field in struct config */
    size_t off_n;                   /* K_ADDRS: the count field */
    long long min, max;             /* K_INT */
    const char *(*check)(const char *);     /* K_STR */
    const struct item *sub;         /* K_GROUP */
};

/* An integer literal libconfig 1.5 would have truncated to 'as_int'. */
struct bigint {
    char *file;             /* libconfig's name for the file, "" = main */
    unsigned line;
    char name[64];          /* the setting name written before it */
    int as_int;
    bool used;
    char text[32];
};

struct ctx {
    const char *path;
    config_report_fn report;
    void *arg;
    int errors;
    config_t lc;
    struct config *cfg;
    struct bigint *big;
    size_t n_big;
    char **scanned;         /* files already scanned for big literals */
    size_t n_scanned;
};

/* config_errors.c */
/* Counts an error and reports 'line' (control bytes in it become '?'). */
void config__emit(struct ctx *c, char *line);
/* The file setting s came from (the main file when s is NULL). */
const char *config__setting_file(const struct ctx *c, const config_setting_t *s,
                                 char *buf, size_t cap);
/* Reports "file:line: name: reason" for setting s (no line when s is NULL
 * or the root, which has none). */
__attribute__((format(printf, 4, 5)))
void config__serr(struct ctx *c, const config_setting_t *s, const char *name,
                  const char *fmt, ...);
/* A user's string for an error line: quoted, escaped, cut when long. */
const char *config__quote(const char *s, char *buf, size_t cap);
/* "an integer", "a string", ... for a CONFIG_TYPE_*. */
const char *config__type_name(int type);

/* config_libconfig.c */
/* Notes the integer literals in 'p' (the text of 'file', "" for the main
 * one) that libconfig 1.5 truncates. */
void config__scan_big(struct ctx *c, const char *file, const char *p,
                      size_t len);
/* The @include lines of 'text' (the file 'path') and of the files they
 * name: -1, each offender reported, if one names something other than a
 * regular file, which libconfig 1.5's scanner would read with exit(2). */
int config__check_includes(struct ctx *c, const char *path, const char *text,
                           size_t len, int depth);
/* Reads a whole (small) file; NULL and errno on failure. */
char *config__slurp(const char *path, size_t *len);
/* The source text of an int setting if libconfig truncated it, else NULL. */
const char *config__truncated_literal(struct ctx *c, const config_setting_t *s,
                                      int value);

/* config_devices.c */
void config__load_devices(struct ctx *c, const config_setting_t *s, const char *name);
/* Across settings: coaps credentials, psk_identity with a psk_file. */
void config__check_devices(struct ctx *c);
/* -t: every psk_identity is in the PSK file 'ks'. */
void config__check_device_keys(struct ctx *c, const struct config *cfg,
                               const keystore_t *ks);
void config__free_devices(struct config *cfg);
bool config__same_devices(const struct config *a, const struct config *b);
void config__devices_text(const struct config *cfg, char *buf, size_t cap);

/* config_oscore.c */
void config__load_oscore(struct ctx *c, const config_setting_t *s, const char *name);
/* A devices entry's "oscore" member (d->oscore set when it is usable). */
void config__load_device_oscore(struct ctx *c, const config_setting_t *m,
                                const char *name, char **to);
/* Across settings: names exist, each used once, recipient ids distinct. */
void config__check_oscore(struct ctx *c);
void config__free_oscore(struct config *cfg);
void config__oscore_text(const struct config *cfg, char *buf, size_t cap);

/* config_schema.c */
/* The settings at the top of the file (the groups hold the rest). */
extern const struct item config__root_items[];
/* NULL if 'v' is "a.b.c.d:port" or "[v6]:port" (port 1..65535), else why. */
const char *config__check_addr(const char *v);

#endif
