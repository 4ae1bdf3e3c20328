/*
 * opts.c - coap2mqtt-loadgen's command line.  Numbers are range-checked,
 * addresses are numeric.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lg.h"

enum {
    OPT_PSK_FILE = 256, OPT_KEY, OPT_CERT, OPT_CERTKEY, OPT_CA, OPT_OBSERVE,
    OPT_PUSH, OPT_CON, OPT_NON, OPT_RATE, OPT_WINDOW, OPT_WARMUP, OPT_DRAIN,
    OPT_HOLD, OPT_RAMP, OPT_HS_ONLY, OPT_LIFETIME, OPT_PAYLOAD, OPT_PATH,
    OPT_MQTT_HOST, OPT_MQTT_PORT, OPT_BASE, OPT_MQTT, OPT_PUBLISHERS,
    OPT_PUB_INFLIGHT, OPT_SUB_QOS, OPT_WATCH, OPT_JSON, OPT_LABEL, OPT_SELFTEST, OPT_ACTIVE,
    OPT_PREFIX,
};

static const struct option longopts[] = {
    { "target", required_argument, NULL, 'g' },
    { "bind", required_argument, NULL, 'b' },
    { "sensors", required_argument, NULL, 'n' },
    { "active", required_argument, NULL, OPT_ACTIVE },
    { "prefix", required_argument, NULL, OPT_PREFIX },
    { "psk-file", required_argument, NULL, OPT_PSK_FILE },
    { "key", required_argument, NULL, OPT_KEY },
    { "cert", required_argument, NULL, OPT_CERT },
    { "cert-key", required_argument, NULL, OPT_CERTKEY },
    { "ca", required_argument, NULL, OPT_CA },
    { "observe", no_argument, NULL, OPT_OBSERVE },
    { "push", no_argument, NULL, OPT_PUSH },
    { "con", no_argument, NULL, OPT_CON },
    { "non", no_argument, NULL, OPT_NON },
    { "rate", required_argument, NULL, OPT_RATE },
    { "window", required_argument, NULL, OPT_WINDOW },
    { "warmup", required_argument, NULL, OPT_WARMUP },
    { "duration", required_argument, NULL, 'd' },
    { "drain", required_argument, NULL, OPT_DRAIN },
    { "hold", required_argument, NULL, OPT_HOLD },
    { "ramp", required_argument, NULL, OPT_RAMP },
    { "handshake-only", no_argument, NULL, OPT_HS_ONLY },
    { "lifetime", required_argument, NULL, OPT_LIFETIME },
    { "payload-size", required_argument, NULL, OPT_PAYLOAD },
    { "path", required_argument, NULL, OPT_PATH },
    { "mqtt-host", required_argument, NULL, OPT_MQTT_HOST },
    { "mqtt-port", required_argument, NULL, OPT_MQTT_PORT },
    { "base", required_argument, NULL, OPT_BASE },
    { "mqtt", no_argument, NULL, OPT_MQTT },
    { "publishers", required_argument, NULL, OPT_PUBLISHERS },
    { "sub-qos", required_argument, NULL, OPT_SUB_QOS },
    { "pub-inflight", required_argument, NULL, OPT_PUB_INFLIGHT },
    { "watch-pid", required_argument, NULL, OPT_WATCH },
    { "json", required_argument, NULL, OPT_JSON },
    { "label", required_argument, NULL, OPT_LABEL },
    { "selftest", no_argument, NULL, OPT_SELFTEST },
    { "verbose", no_argument, NULL, 'v' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
};

static void
usage(FILE *f)
{
    fprintf(f,
"usage: coap2mqtt-loadgen [options]           CoAP sensors (default)\n"
"       coap2mqtt-loadgen --mqtt [options]    MQTT QoS 1 publishers (ceiling)\n"
"       coap2mqtt-loadgen --selftest          2 s functional check, own bare peer\n"
"  -g, --target HOST:PORT  gateway or bare server (IPv4, [v6]:port)\n"
"  -b, --bind ADDR         source address of sensor 0, +1 per sensor (127.1.0.1)\n"
"  -n, --sensors N         DTLS sessions to open (100)\n"
"      --active N          of which register and emit (all)\n"
"      --prefix STR        identity = prefix + index (\"lg-\")\n"
"      --psk-file FILE     IDENTITY:SECRET lines (each sensor its own key)\n"
"      --key SECRET        one key for all (\"hex:..\" allowed)\n"
"      --cert F --cert-key F --ca F   ECDSA certificate instead of PSK\n"
"      --push | --observe  POST /ps/<path> (default) or notifications\n"
"      --con | --non       message type (CON)\n"
"      --rate R            total readings/s over all sensors; 0 = closed loop\n"
"                          (CON pushes only: --window in flight per sensor)\n"
"      --window W          closed loop: pushes in flight per sensor (1)\n"
"      --warmup S --duration S --drain S   phases of the emission (2, 10, 2)\n"
"      --ramp N            handshakes in progress at once (100)\n"
"      --handshake-only    connect all, measure handshakes/s and RSS, --hold S\n"
"      --lifetime S        registration lifetime (3600)\n"
"      --payload-size N    pad each reading to N bytes (32..%d)\n"
"      --path P            resource path (temperature)\n"
"      --mqtt-host H --mqtt-port P --base B   subscriber on B/+/<path> (off)\n"
"      --sub-qos Q         the subscriber's QoS, 0 or 1 (0: the lightest)\n"
"      --publishers N --pub-inflight W        --mqtt mode (1, 256)\n"
"      --watch-pid PID     CPU time and VmRSS of PID (the server under test)\n"
"      --json FILE --label NAME               write the figures as JSON\n"
"  -v, --verbose\n", LG_PAYLOAD_MAX);
}

static int
num(const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);

    if (end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int
decode_key(const char *s, struct lg_opts *o)
{
    int n = tool_psk_decode(s, o->key, sizeof(o->key));

    if (n < 0)
        return -1;
    o->key_len = (size_t)n;
    return 0;
}

static void
defaults(struct lg_opts *o)
{
    memset(o, 0, sizeof(*o));
    tool_parse_addr("127.1.0.1", &o->bind, 0);
    o->sensors = 100;
    snprintf(o->prefix, sizeof(o->prefix), "lg-");
    o->con = true;
    o->window = 1;
    o->warmup_s = 2;
    o->duration_s = 10;
    o->drain_s = 2;
    o->ramp = 100;
    o->lifetime = 3600;
    o->payload_size = 48;
    o->path = "temperature";
    o->mqtt_host = "127.0.0.1";
    o->base = "coap2mqtt";
    o->publishers = 1;
    o->pub_inflight = 256;
}

/* One option; returns 0, or -1 on a bad value. */
static int
apply(struct lg_opts *o, int c, const char *arg)
{
    double v;

    switch (c) {
    case 'g': o->have_target = true; return tool_parse_addr(arg, &o->target, 5684);
    case 'b': return tool_parse_addr(arg, &o->bind, 0);
    case 'n': if (num(arg, 1, 100000, &v)) return -1; o->sensors = (unsigned)v; return 0;
    case OPT_ACTIVE: if (num(arg, 0, 100000, &v)) return -1; o->active = (unsigned)v; return 0;
    case OPT_PREFIX:
        if (strlen(arg) >= sizeof(o->prefix) || strpbrk(arg, "+#/"))
            return -1;
        snprintf(o->prefix, sizeof(o->prefix), "%s", arg);
        return 0;
    case OPT_PSK_FILE: o->psk_file = arg; return 0;
    case OPT_KEY: return decode_key(arg, o);
    case OPT_CERT: o->cert = arg; return 0;
    case OPT_CERTKEY: o->certkey = arg; return 0;
    case OPT_CA: o->ca = arg; return 0;
    case OPT_OBSERVE: o->observe = true; return 0;
    case OPT_PUSH: o->observe = false; return 0;
    case OPT_CON: o->con = true; return 0;
    case OPT_NON: o->con = false; return 0;
    case OPT_RATE: return num(arg, 0, 1e7, &o->rate);
    case OPT_WINDOW: if (num(arg, 1, LG_INFLIGHT_CAP, &v)) return -1; o->window = (unsigned)v; return 0;
    case OPT_WARMUP: return num(arg, 0, 600, &o->warmup_s);
    case 'd': return num(arg, 0.1, 3600, &o->duration_s);
    case OPT_DRAIN: return num(arg, 0, 600, &o->drain_s);
    case OPT_HOLD: return num(arg, 0, 3600, &o->hold_s);
    case OPT_RAMP: if (num(arg, 1, 100000, &v)) return -1; o->ramp = (unsigned)v; return 0;
    case OPT_HS_ONLY: o->handshake_only = true; return 0;
    case OPT_LIFETIME: if (num(arg, 1, 31536000, &v)) return -1; o->lifetime = (unsigned)v; return 0;
    case OPT_PAYLOAD: if (num(arg, 32, LG_PAYLOAD_MAX, &v)) return -1; o->payload_size = (size_t)v; return 0;
    case OPT_PATH: if (!*arg || strlen(arg) > 64 || strpbrk(arg, "+#/")) return -1; o->path = arg; return 0;
    case OPT_MQTT_HOST: o->mqtt_host = arg; return 0;
    case OPT_MQTT_PORT: if (num(arg, 1, 65535, &v)) return -1; o->mqtt_port = (int)v; return 0;
    case OPT_BASE: o->base = arg; return 0;
    case OPT_MQTT: o->mqtt_mode = true; return 0;
    case OPT_PUBLISHERS: if (num(arg, 1, 64, &v)) return -1; o->publishers = (unsigned)v; return 0;
    case OPT_PUB_INFLIGHT: if (num(arg, 1, 65535, &v)) return -1; o->pub_inflight = (unsigned)v; return 0;
    case OPT_SUB_QOS: if (num(arg, 0, 1, &v)) return -1; o->sub_qos = (int)v; return 0;
    case OPT_WATCH: if (num(arg, 1, 1 << 30, &v)) return -1; o->watch_pid = (int)v; return 0;
    case OPT_JSON: o->json = arg; return 0;
    case OPT_LABEL: o->label = arg; return 0;
    case OPT_SELFTEST: o->selftest = true; return 0;
    case 'v': o->verbose++; return 0;
    }
    return -1;
}

int
opts_parse(struct lg_opts *o, int argc, char **argv)
{
    int c;

    defaults(o);
    while ((c = getopt_long(argc, argv, "g:b:n:d:vh", longopts, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return 1;
        }
        if (c == '?' || apply(o, c, optarg) < 0) {
            if (c != '?')
                fprintf(stderr, "coap2mqtt-loadgen: bad value for -%c/--%s: %s\n",
                        c < 256 ? c : '-', c < 256 ? "" : "option", optarg);
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "coap2mqtt-loadgen: unexpected argument %s\n", argv[optind]);
        return -1;
    }
    if (o->active == 0 || o->active > o->sensors)
        o->active = o->sensors;
    if (o->selftest)
        return 0;
    if (!o->mqtt_mode && !o->have_target) {
        fprintf(stderr, "coap2mqtt-loadgen: --target is required\n");
        return -1;
    }
    if (!o->mqtt_mode && !o->cert && !o->psk_file && !o->key_len) {
        fprintf(stderr, "coap2mqtt-loadgen: --psk-file, --key or --cert is required\n");
        return -1;
    }
    if (o->cert && (!o->certkey || !o->ca)) {
        fprintf(stderr, "coap2mqtt-loadgen: --cert needs --cert-key and --ca\n");
        return -1;
    }
    if (o->mqtt_mode && !o->mqtt_port) {
        fprintf(stderr, "coap2mqtt-loadgen: --mqtt needs --mqtt-port\n");
        return -1;
    }
    if (o->rate == 0 && !o->mqtt_mode && (o->observe || !o->con) && !o->handshake_only) {
        fprintf(stderr, "coap2mqtt-loadgen: closed loop (--rate 0) needs CON pushes;"
                        " give --rate for NON or notifications\n");
        return -1;
    }
    return 0;
}
