/*
 * reload.h - SIGHUP: the configuration file and the credential files read
 * again, and what can change under a running gateway applied.  The
 * settings that need a restart are logged by name and keep their value;
 * docs/CONFIG.md says which is which.
 *
 * Layer: wiring
 */
#ifndef COAP2MQTT_RELOAD_H
#define COAP2MQTT_RELOAD_H

#include "coap2mqtt/context.h"

/*
 * Reads gw->cfg->path again.  A file with errors (the same checks as -t,
 * the files it names included) is refused: each "file:line: setting:
 * reason" is logged and -1 returned, with nothing changed.  Otherwise 0:
 * the settings that can change live are in gw->cfg and their rooms told,
 * and the credentials are read again (sessions they no longer admit are
 * closed).  'verbose' is the number of -v on the command line, a floor
 * under log_level.
 */
int reload_run(struct gw *gw, int verbose);

/* The log level from cfg->log_level, raised by -v ('verbose' times). */
void reload_apply_log_level(const struct config *cfg, int verbose);

#endif
