/*
 * keystore.h - PSK identities and their keys, from an stunnel-style file:
 * one "IDENTITY:SECRET" a line, '#' starts a comment line, blank lines
 * ignored, a secret written "hex:00ff..." is hex-decoded.  The identity is
 * everything before the first ':'.  Lookups are O(1) (hash table) so a fleet
 * of 100,000 identities costs nothing per handshake.
 *
 * Layer: base
 */
#ifndef COAP2MQTT_KEYSTORE_H
#define COAP2MQTT_KEYSTORE_H

#include <stddef.h>
#include <stdint.h>

#define KEYSTORE_ID_MAX  128   /* bytes in an identity */
#define KEYSTORE_KEY_MAX 64    /* bytes in a decoded key */

typedef struct keystore keystore_t;
/* Receives one "path:line: reason" line (the same shape as
 * config_report_fn, so the configuration check can pass its own). */
typedef void (*keystore_report_fn)(void *arg, const char *line);

/*
 * Reads 'path'.  Errors - file readable by group or others, a line without
 * ':', an empty or too long identity or key, bad hex, a duplicate identity -
 * are reported as "path:line: reason" through 'report' (may be NULL).
 * Returns NULL if anything was wrong; the caller owns the result.
 */
keystore_t *keystore_load(const char *path, keystore_report_fn report, void *arg);

void keystore_free(keystore_t *ks);

/* Returns the key for an identity and sets *key_len, or NULL if unknown. */
const uint8_t *keystore_lookup(const keystore_t *ks, const uint8_t *id,
                               size_t id_len, size_t *key_len);

size_t keystore_count(const keystore_t *ks);

#endif
