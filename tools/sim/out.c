/*
 * out.c - the stdout protocol: one event per line, fields separated by one
 * space, flushed per line (stdout is line-buffered from main) so a test
 * reading the pipe sees each event as it happens.
 */
#include <stdarg.h>
#include <stdio.h>

#include "sim.h"

void
out_event(const struct sim *sim, bool always, const char *fmt, ...)
{
    va_list ap;

    if (sim->opts.quiet && !always)
        return;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

void
out_code(char buf[8], coap_pdu_code_t code)
{
    snprintf(buf, 8, "%u.%02u", ((unsigned)code >> 5) & 7, (unsigned)code & 31);
}

void
out_summary(const struct sim *sim)
{
    const struct sim_counters *c = &sim->cnt;

    printf("SUMMARY {\"sensors\":%zu,\"registered\":%lu,\"notifications\":%lu,"
           "\"pushes\":%lu,\"push_errors\":%lu,\"puts\":%lu,\"errors\":%lu,"
           "\"sleeps\":%lu,\"reboots\":%lu}\n",
           sim->nsensors, c->registered, c->notifications, c->pushes,
           c->push_errors, c->puts, c->errors, c->sleeps, c->reboots);
    fflush(stdout);
}
