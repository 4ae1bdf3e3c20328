/*
 * textfile.h - the stats counters for Prometheus without an HTTP server of
 * our own: a node_exporter textfile-collector file (*.prom) in the text
 * exposition format, replaced atomically (temporary file in the same
 * directory, then rename()), so the collector never reads half a file.
 *
 * Layer: base (pure: JSON in, a file out)
 */
#ifndef COAP2MQTT_TEXTFILE_H
#define COAP2MQTT_TEXTFILE_H

#include <stdio.h>
#include <jansson.h>

/*
 * Writes the bridge/stats document 'stats' (a JSON object) as exposition
 * text to 'out': each member of struct stats (stats.h) is a counter
 * coap2mqtt_<name>_total, every other number or boolean a gauge
 * coap2mqtt_<name> (booleans 0/1); "time" is left out (the collector
 * exports the file's mtime).  0, or -1 on a write error.
 */
int textfile_format(FILE *out, json_t *stats);
/* textfile_format into 'path' atomically.  0, or -1 with errno set (the
 * old file, if any, stays as it was). */
int textfile_write(const char *path, json_t *stats);

#endif
