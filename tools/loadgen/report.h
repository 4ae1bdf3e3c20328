/*
 * report.h - the figures of one loadgen run: a summary on stdout and, with
 * --json, one JSON object (bench/run.sh collects them into results.json).
 */
#ifndef COAP2MQTT_LOADGEN_REPORT_H
#define COAP2MQTT_LOADGEN_REPORT_H

#include "lg.h"

struct run_figures {
    struct proc_sample before;      /* --watch-pid before the first handshake */
    struct proc_sample connected;   /* after all handshakes (+1 s) */
    struct proc_sample win_start, win_end;
    struct proc_sample self_start, self_end;    /* this load generator */
};

/* Returns 0, or 1 if the run saw no traffic at all or the JSON failed. */
int report_coap(const struct lg_opts *o, struct fleet *f, struct lg_sub *sub,
                const struct run_figures *rf);
int report_mqtt(const struct lg_opts *o, struct lg_sub *sub,
                const struct pub_result *pr);

/* --selftest: a short run against coap2mqtt-bareserver next to argv0. */
int selftest(const char *argv0);

#endif
