/*
 * main.c - coap2mqtt-bareserver: command line, the loop (tools/common's,
 * which drains libcoap in the same batches as the gateway's transport_io.c)
 * and the figures written at exit.
 *
 *   coap2mqtt-bareserver --listen 127.0.0.1:PORT (--psk-file F | --key K)
 *       [--cert F --cert-key F --ca F] [--observe] [--warmup S --window S]
 *       [--duration S] [--json FILE]
 *
 * It stops on TERM/INT or after --duration, then writes --json.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <sys/resource.h>

#include "coap2mqtt/log.h"
#include "bare.h"

double
bare_cpu_s(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* "A.B.C.D:PORT": IPv4 only, the port required (1..65535). */
static int
parse_listen(const char *spec, coap_address_t *a)
{
    if (tool_parse_addr(spec, a, 0) < 0)
        return -1;
    return a->addr.sa.sa_family == AF_INET && coap_address_get_port(a) != 0 ? 0 : -1;
}

static int
parse_key(const char *s, struct bare_opts *o)
{
    size_t n = strlen(s);

    if (n == 0 || n > sizeof(o->key) || !strncmp(s, "hex:", 4))
        return -1;   /* raw keys only: the bench generates printable ones */
    memcpy(o->key, s, n);
    o->key_len = n;
    return 0;
}

static int
parse_opts(struct bare_opts *o, int argc, char **argv)
{
    static const struct option lo[] = {
        { "listen", 1, NULL, 'l' }, { "psk-file", 1, NULL, 'p' },
        { "key", 1, NULL, 'k' }, { "cert", 1, NULL, 'c' },
        { "cert-key", 1, NULL, 'K' }, { "ca", 1, NULL, 'C' },
        { "observe", 0, NULL, 'o' }, { "max-handshakes", 1, NULL, 'm' },
        { "warmup", 1, NULL, 'w' }, { "window", 1, NULL, 'W' },
        { "duration", 1, NULL, 'd' }, { "json", 1, NULL, 'j' },
        { "verbose", 0, NULL, 'v' }, { NULL, 0, NULL, 0 },
    };
    bool have_listen = false;
    int c;

    memset(o, 0, sizeof(*o));
    o->max_handshakes = 1000;
    o->warmup_s = 2;
    o->window_s = 10;
    o->duration_s = 600;
    while ((c = getopt_long(argc, argv, "l:p:k:c:K:C:om:w:W:d:j:v", lo, NULL)) != -1) {
        switch (c) {
        case 'l': if (parse_listen(optarg, &o->listen)) return -1; have_listen = true; break;
        case 'p': o->psk_file = optarg; break;
        case 'k': if (parse_key(optarg, o)) return -1; break;
        case 'c': o->cert = optarg; break;
        case 'K': o->certkey = optarg; break;
        case 'C': o->ca = optarg; break;
        case 'o': o->observe = true; break;
        case 'm': o->max_handshakes = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'w': o->warmup_s = strtod(optarg, NULL); break;
        case 'W': o->window_s = strtod(optarg, NULL); break;
        case 'd': o->duration_s = strtod(optarg, NULL); break;
        case 'j': o->json = optarg; break;
        case 'v': o->verbose++; break;
        default: return -1;
        }
    }
    if (!have_listen || (!o->psk_file && !o->key_len && !o->cert) ||
        (o->cert && (!o->certkey || !o->ca)) || o->max_handshakes < 1 ||
        o->warmup_s < 0 || o->window_s <= 0 || o->duration_s <= 0)
        return -1;
    return 0;
}

/* Opens and closes the measurement window as time passes. */
static void
window_tick(struct bare *b, int64_t now)
{
    int64_t start, end;

    if (!b->first_us)
        return;
    start = b->first_us + (int64_t)(b->o->warmup_s * 1e6);
    end = start + (int64_t)(b->o->window_s * 1e6);
    if (!b->win_started && now >= start) {
        b->win_started = true;
        b->count_at_start = bare_readings(b);
        b->cpu_at_start = bare_cpu_s();
    }
    if (b->win_started && !b->win_ended && now >= end) {
        b->win_ended = true;
        b->count_at_end = bare_readings(b);
        b->cpu_at_end = bare_cpu_s();
    }
}

/* Until TERM/INT or --duration. */
static void
run(struct bare *b, tool_loop_t *loop)
{
    int64_t end = tool_now_us() + (int64_t)(b->o->duration_s * 1e6);

    while (tool_now_us() < end) {
        int rc = tool_loop_wait(loop, 100);
        if (rc < 0)
            break;
        window_tick(b, tool_now_us());
        if (rc > 0)
            break;
    }
}

static void
write_json(const struct bare *b)
{
    double win = b->o->window_s;
    unsigned long count = b->win_ended ? b->count_at_end - b->count_at_start : 0;
    double cpu = b->win_ended ? b->cpu_at_end - b->cpu_at_start : 0;
    json_t *j = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:I, s:f, s:f, s:f}",
                          "registrations", (json_int_t)b->registrations,
                          "pushes", (json_int_t)b->pushes,
                          "notifications", (json_int_t)b->notifications,
                          "handshakes_ok", (json_int_t)b->hs_ok,
                          "handshakes_failed", (json_int_t)b->hs_failed,
                          "sessions_max", (json_int_t)b->sessions_max,
                          "observes_sent", (json_int_t)b->observes_sent,
                          "window_complete", b->win_ended,
                          "window_count", (json_int_t)count,
                          "per_s", (double)count / win,
                          "cpu_s", cpu,
                          "cpu_ms_per_1000", count ? cpu * 1e6 / (double)count : 0.0);

    printf("bareserver: %lu registrations, %lu pushes, %lu notifications; window %s:"
           " %lu -> %.0f/s, CPU %.1f ms per 1,000\n", b->registrations, b->pushes,
           b->notifications, b->win_ended ? "complete" : "INCOMPLETE", count,
           (double)count / win, count ? cpu * 1e6 / (double)count : 0.0);
    if (b->o->json && json_dump_file(j, b->o->json, JSON_INDENT(1)) < 0)
        log_warnx("%s: cannot write", b->o->json);
    json_decref(j);
}

int
main(int argc, char **argv)
{
    struct bare_opts o;
    struct bare b;
    tool_loop_t *loop;
    int rc = 1;

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (parse_opts(&o, argc, argv) < 0) {
        fprintf(stderr, "usage: coap2mqtt-bareserver --listen A.B.C.D:PORT"
                " (--psk-file F | --key K | --cert F --cert-key F --ca F)\n"
                "  [--observe] [--max-handshakes N] [--warmup S] [--window S]"
                " [--duration S] [--json FILE] [-v]\n");
        return 2;
    }
    memset(&b, 0, sizeof(b));
    b.o = &o;
    log_init(o.verbose ? LOG_LVL_DEBUG : LOG_LVL_NOTICE);
    coap_startup();
    log_hook_libraries();
    loop = tool_loop_new();
    if (loop && bare_setup(&b, loop) == 0) {
        printf("bareserver: listening\n");
        run(&b, loop);
        write_json(&b);
        rc = 0;
    }
    tool_ctx_free(b.ctx);
    tool_loop_free(loop);
    keystore_free(b.keys);
    coap_cleanup();
    return rc;
}
