/*
 * options.c - the simulator's command line.  Every number is range-checked;
 * addresses are numeric (a host name for the gateway is resolved once).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coap2mqtt/hostport.h"
#include "sim.h"

enum {
    OPT_PUSH = 256, OPT_CON, OPT_NON, OPT_RATE, OPT_COUNT_READINGS,
    OPT_SLEEP_AFTER, OPT_SLEEP_FOR, OPT_REBOOT_AFTER, OPT_ROAM_AFTER, OPT_NO_REGISTER, OPT_EP, OPT_MAX_RETRANSMIT,
    OPT_LIFETIME, OPT_PAYLOAD_SIZE, OPT_PSK_FILE, OPT_FIRST, OPT_PREFIX,
};

static const struct option longopts[] = {
    { "gateway", required_argument, NULL, 'g' },
    { "kind", required_argument, NULL, 'k' },
    { "count", required_argument, NULL, 'n' },
    { "first", required_argument, NULL, OPT_FIRST },
    { "prefix", required_argument, NULL, OPT_PREFIX },
    { "bind", required_argument, NULL, 'b' },
    { "port", required_argument, NULL, 'p' },
    { "psk-file", required_argument, NULL, OPT_PSK_FILE },
    { "key", required_argument, NULL, 'K' },
    { "lifetime", required_argument, NULL, OPT_LIFETIME },
    { "interval", required_argument, NULL, 'i' },
    { "payload-size", required_argument, NULL, OPT_PAYLOAD_SIZE },
    { "push", no_argument, NULL, OPT_PUSH },
    { "con", no_argument, NULL, OPT_CON },
    { "non", no_argument, NULL, OPT_NON },
    { "rate", required_argument, NULL, OPT_RATE },
    { "count-readings", required_argument, NULL, OPT_COUNT_READINGS },
    { "duration", required_argument, NULL, 'd' },
    { "sleep-after", required_argument, NULL, OPT_SLEEP_AFTER },
    { "sleep-for", required_argument, NULL, OPT_SLEEP_FOR },
    { "reboot-after", required_argument, NULL, OPT_REBOOT_AFTER },
    { "roam-after", required_argument, NULL, OPT_ROAM_AFTER },
    { "no-register", no_argument, NULL, OPT_NO_REGISTER },
    { "ep", required_argument, NULL, OPT_EP },
    { "max-retransmit", required_argument, NULL, OPT_MAX_RETRANSMIT },
    { "quiet", no_argument, NULL, 'q' },
    { "verbose", no_argument, NULL, 'v' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
};

static void
usage(FILE *f)
{
    fprintf(f,
"usage: coap2mqtt-sim [options]\n"
"  -g, --gateway HOST:PORT   gateway, IPv4 or [v6]:port (127.0.0.1:5684)\n"
"  -k, --kind KIND           %s (meter)\n"
"  -n, --count N             sensors in this process (1)\n"
"      --first N             index of the first sensor (1)\n"
"      --prefix STR          identity prefix (\"<kind>-\"); identity = prefix+index\n"
"  -b, --bind ADDR           source address of the first sensor, +1 per sensor\n"
"                            (127.0.1.1)\n"
"  -p, --port P              fixed source port for every sensor (ephemeral)\n"
"      --psk-file FILE       IDENTITY:SECRET lines; each sensor looks up its own\n"
"  -K, --key SECRET          the same key for every sensor (\"hex:...\" for hex)\n"
"      --lifetime S          registration lifetime (300); refresh at 80%%\n"
"  -i, --interval MS         between readings of a resource (1000)\n"
"      --rate R              readings per second per sensor (overrides -i)\n"
"      --payload-size N      pad the first resource to N bytes\n"
"      --push                POST /ps/<resource> each reading instead of Observe\n"
"      --con, --non          force the message type of pushes and notifications\n"
"                            (else the kind's; a NON resource's every fifth\n"
"                            notification is CON, libcoap's COAP_OBS_MAX_NON)\n"
"      --count-readings K    stop after K readings per resource\n"
"  -d, --duration S          exit 0 after S seconds\n"
"      --sleep-after S --sleep-for S   one deep sleep, then a new session\n"
"      --reboot-after S      reboot: drop state, reconnect from the same port\n"
"      --roam-after S        once: a new session from a new source port (a NAT\n"
"                            rebinding), same identity, no registration\n"
"      --no-register         do not register with /rd\n"
"      --ep ID               ep= to register instead of the identity\n"
"      --max-retransmit N    CON retransmissions (libcoap's 4); with it, an\n"
"                            unanswered CON push also ends the session (a new\n"
"                            handshake and registration), as an unanswered\n"
"                            notification does: a gateway behind a balancer\n"
"                            that moved the flow knows no session of ours\n"
"  -q, --quiet               no per-reading lines\n"
"  -v, --verbose             debug logging, with libcoap's packet dumps\n",
            kind_names());
}

static int
parse_ulong(const char *name, const char *s, unsigned long min,
            unsigned long max, unsigned long *out)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno || end == s || *end || *s == '-' || v < min || v > max) {
        fprintf(stderr, "--%s: expected an integer in %lu..%lu, got \"%s\"\n",
                name, min, max, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int
parse_double(const char *name, const char *s, double min, double max,
             double *out)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= min && v <= max)) {
        fprintf(stderr, "--%s: expected a number in %g..%g, got \"%s\"\n",
                name, min, max, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* "HOST:PORT", "[V6]:PORT", "HOST" (port 5684). */
static int
parse_gateway(const char *arg, coap_address_t *a)
{
    char host[256];
    const char *port;
    bool v6;
    struct addrinfo hints = { .ai_socktype = SOCK_DGRAM,
                              .ai_flags = AI_NUMERICSERV };
    struct addrinfo *res;
    int rc;

    /* Strict: nothing but ":PORT" after ']', no empty host or port. */
    if (hostport_split(arg, host, sizeof(host), &port, &v6) != 0 || !*host ||
        (port && !*port))
        goto bad;
    if (!port)
        port = "5684";
    rc = getaddrinfo(host, port, &hints, &res);
    if (rc) {
        fprintf(stderr, "--gateway %s: %s\n", host, gai_strerror(rc));
        return -1;
    }
    coap_address_init(a);
    memcpy(&a->addr.sa, res->ai_addr, res->ai_addrlen);
    a->size = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
bad:
    fprintf(stderr, "--gateway: expected HOST:PORT or [V6]:PORT\n");
    return -1;
}

static int
parse_bind(const char *arg, coap_address_t *a)
{
    if (tool_addr_ip(arg, 0, a) == 0)
        return 0;
    fprintf(stderr, "--bind: not a numeric IPv4/IPv6 address: %s\n", arg);
    return -1;
}

static void
set_defaults(struct sim_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->kind = kind_find("meter");
    o->count = 1;
    o->first = 1;
    o->lifetime_s = 300;
    o->max_retransmit = -1;
    o->interval_ms = 1000;
    coap_address_init(&o->gateway);
    o->gateway.addr.sin.sin_family = AF_INET;
    o->gateway.addr.sin.sin_port = htons(5684);
    o->gateway.addr.sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    o->gateway.size = sizeof(o->gateway.addr.sin);
}

/* Applies one option; rate is returned separately (it needs the kind). */
static int
apply(struct sim_opts *o, int c, const char *arg, double *rate,
      const char **prefix)
{
    unsigned long u;
    int n;

    switch (c) {
    case 'g': return parse_gateway(arg, &o->gateway);
    case 'k':
        o->kind = kind_find(arg);
        if (!o->kind)
            fprintf(stderr, "--kind: one of %s\n", kind_names());
        return o->kind ? 0 : -1;
    case 'n':
        if (parse_ulong("count", arg, 1, 100000, &u)) return -1;
        o->count = (unsigned)u; return 0;
    case OPT_FIRST:
        if (parse_ulong("first", arg, 0, 100000000, &u)) return -1;
        o->first = (unsigned)u; return 0;
    case OPT_PREFIX: *prefix = arg; return 0;
    case 'b':
        o->have_bind = true;
        return parse_bind(arg, &o->bind);
    case 'p':
        if (parse_ulong("port", arg, 1, 65535, &u)) return -1;
        o->port = (int)u; return 0;
    case OPT_PSK_FILE: o->psk_file = arg; return 0;
    case 'K':
        n = tool_psk_decode(arg, o->key, sizeof(o->key));
        if (n < 0) {
            fprintf(stderr, "--key: empty, bad hex or longer than %d bytes\n",
                    SIM_KEY_MAX);
            return -1;
        }
        o->key_len = (size_t)n;
        o->have_key = true;
        return 0;
    case OPT_LIFETIME:
        if (parse_ulong("lifetime", arg, 1, 86400 * 365, &u)) return -1;
        o->lifetime_s = (unsigned)u; return 0;
    case 'i': return parse_double("interval", arg, 1, 86400e3, &o->interval_ms);
    case OPT_RATE: return parse_double("rate", arg, 0.001, 100000, rate);
    case OPT_PAYLOAD_SIZE:
        if (parse_ulong("payload-size", arg, 0, SIM_PAYLOAD_MAX, &u)) return -1;
        o->payload_size = u; return 0;
    case OPT_PUSH: o->push = true; return 0;
    case OPT_CON: o->force = FORCE_CON; return 0;
    case OPT_NON: o->force = FORCE_NON; return 0;
    case OPT_COUNT_READINGS:
        return parse_ulong("count-readings", arg, 1, 1UL << 31, &o->count_readings);
    case 'd': return parse_double("duration", arg, 0.001, 1e9, &o->duration_s);
    case OPT_SLEEP_AFTER:
        return parse_double("sleep-after", arg, 0.001, 1e9, &o->sleep_after_s);
    case OPT_SLEEP_FOR:
        return parse_double("sleep-for", arg, 0.001, 1e9, &o->sleep_for_s);
    case OPT_ROAM_AFTER:
        return parse_double("roam-after", arg, 0.001, 1e9, &o->roam_after_s);
    case OPT_REBOOT_AFTER:
        return parse_double("reboot-after", arg, 0.001, 1e9, &o->reboot_after_s);
    case OPT_NO_REGISTER: o->no_register = true; return 0;
    case OPT_EP: o->ep = arg; return 0;
    case OPT_MAX_RETRANSMIT:
        if (parse_ulong("max-retransmit", arg, 0, 20, &u))
            return -1;
        o->max_retransmit = (int)u;
        return 0;
    case 'q': o->quiet = true; return 0;
    case 'v': o->verbose++; return 0;
    default: return -1;
    }
}

/* Cross-option checks and derived values. */
static int
finish(struct sim_opts *o, double rate, const char *prefix)
{
    size_t periodic = 0;

    if (!o->psk_file && !o->have_key) {
        fprintf(stderr, "one of --psk-file or --key is required\n");
        return -1;
    }
    if ((o->sleep_after_s > 0) != (o->sleep_for_s > 0)) {
        fprintf(stderr, "--sleep-after and --sleep-for go together\n");
        return -1;
    }
    if (!prefix) {
        snprintf(o->prefix, sizeof(o->prefix), "%s-", o->kind->name);
    } else if (strlen(prefix) + 10 > TOPIC_ID_MAX) {
        fprintf(stderr, "--prefix: at most %d bytes\n", TOPIC_ID_MAX - 10);
        return -1;
    } else {
        snprintf(o->prefix, sizeof(o->prefix), "%s", prefix);
    }
    if (o->ep && (!*o->ep || strlen(o->ep) > 255)) {
        fprintf(stderr, "--ep: 1..255 bytes\n");
        return -1;
    }
    if (!o->have_bind && o->gateway.addr.sa.sa_family == AF_INET) {
        parse_bind("127.0.1.1", &o->bind);
        o->have_bind = true;
    }
    if (o->have_bind && o->bind.addr.sa.sa_family != o->gateway.addr.sa.sa_family) {
        fprintf(stderr, "--bind and --gateway must be the same address family\n");
        return -1;
    }
    /* --rate counts readings of the whole sensor: spread over its resources. */
    for (size_t i = 0; i < o->kind->nres; i++)
        periodic += !o->kind->res[i].writable;
    if (rate > 0)
        o->interval_ms = 1000.0 * (double)periodic / rate;
    return 0;
}

int
options_parse(struct sim_opts *o, int argc, char **argv)
{
    const char *prefix = NULL;
    double rate = 0;
    int c;

    set_defaults(o);
    while ((c = getopt_long(argc, argv, "g:k:n:b:p:K:i:d:qvh", longopts,
                            NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return 1;
        }
        if (apply(o, c, optarg, &rate, &prefix)) {
            if (c == '?' || c == ':')
                usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "unexpected argument: %s\n", argv[optind]);
        return -1;
    }
    return finish(o, rate, prefix);
}
