/*
 * peer.c - an OSCORE device that dials in, for tests/integration/test_oscore.py:
 * libcoap's own client and server code (4.3.2 or later, with OSCORE), none
 * of the gateway's.  It opens an OSCORE-protected session to the gateway,
 * registers (POST /rd?ep=ID&lt=60 with </moisture>;obs;ct=0,</setpoint>),
 * then serves on that same session: an observable /moisture that changes
 * every second, and /setpoint that takes PUTs.  Prints, one per line:
 *
 *   REGISTERED <code>      the answer to the registration
 *   OBSERVED               the gateway's observe GET arrived
 *   PUT /setpoint <text>   a command arrived
 *
 * Usage: peer OSCORE_CONF SEQ_FILE GW_HOST GW_PORT ID
 */
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <coap3/coap.h>

static coap_resource_t *moisture;
static int value = 40;
static volatile sig_atomic_t quit;
static FILE *seq_out;
static const char *seq_path;

static int
save_seq(uint64_t seq, void *param)
{
    (void)param;
    if (!(seq_out = fopen(seq_path, "w")))
        return 0;
    fprintf(seq_out, "%llu\n", (unsigned long long)seq);
    fclose(seq_out);
    return 1;
}

static uint64_t
load_seq(void)
{
    FILE *f = fopen(seq_path, "r");
    unsigned long long v = 0;

    if (f) {
        if (fscanf(f, "%llu", &v) != 1)
            v = 0;
        fclose(f);
    }
    return v;
}

static void
get_moisture(coap_resource_t *r, coap_session_t *s, const coap_pdu_t *req,
             const coap_string_t *q, coap_pdu_t *resp)
{
    char buf[16];
    coap_opt_iterator_t it;

    (void)s;
    (void)q;
    if (coap_check_option(req, COAP_OPTION_OBSERVE, &it)) {
        printf("OBSERVED\n");
        fflush(stdout);
    }
    snprintf(buf, sizeof(buf), "%d", value);
    coap_pdu_set_code(resp, COAP_RESPONSE_CODE_CONTENT);
    coap_add_data_large_response(r, s, req, resp, q, COAP_MEDIATYPE_TEXT_PLAIN, 2, 0,
                                 strlen(buf), (const uint8_t *)buf, NULL, NULL);
}

static void
put_setpoint(coap_resource_t *r, coap_session_t *s, const coap_pdu_t *req,
             const coap_string_t *q, coap_pdu_t *resp)
{
    size_t len = 0;
    const uint8_t *data = NULL;

    (void)r;
    (void)s;
    (void)q;
    coap_get_data(req, &len, &data);
    printf("PUT /setpoint %.*s\n", (int)len, data ? (const char *)data : "");
    fflush(stdout);
    coap_pdu_set_code(resp, COAP_RESPONSE_CODE_CHANGED);
}

static coap_response_t
on_response(coap_session_t *s, const coap_pdu_t *sent, const coap_pdu_t *rcvd,
            const coap_mid_t mid)
{
    coap_pdu_code_t c = coap_pdu_get_code(rcvd);

    (void)s;
    (void)sent;
    (void)mid;
    printf("REGISTERED %d.%02d\n", COAP_RESPONSE_CLASS(c), c & 0x1f);
    fflush(stdout);
    return COAP_RESPONSE_OK;
}

static void
on_signal(int sig)
{
    (void)sig;
    quit = 1;
}

static char *
slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "r");
    static char buf[4096];

    if (!f)
        return NULL;
    *len = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[*len] = '\0';
    return buf;
}

int
main(int argc, char **argv)
{
    coap_context_t *ctx;
    coap_session_t *s;
    coap_address_t gw;
    coap_oscore_conf_t *conf;
    coap_str_const_t text;
    coap_resource_t *r;
    coap_pdu_t *pdu;
    char query[128];
    const char *links = "</moisture>;obs;ct=0,</setpoint>";
    size_t len;
    uint8_t token[8];
    char *t;
    int ticks = 0;

    if (argc != 6) {
        fprintf(stderr, "usage: peer OSCORE_CONF SEQ_FILE GW_HOST GW_PORT ID\n");
        return 2;
    }
    seq_path = argv[2];
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    coap_startup();
    coap_set_log_level(COAP_LOG_WARN);
    if (!coap_oscore_is_supported() || !(t = slurp(argv[1], &len)))
        return 3;
    text.s = (const uint8_t *)t;
    text.length = len;
    coap_address_init(&gw);
    gw.addr.sin.sin_family = AF_INET;
    gw.addr.sin.sin_port = htons((uint16_t)atoi(argv[4]));
    inet_pton(AF_INET, argv[3], &gw.addr.sin.sin_addr);
    gw.size = sizeof(gw.addr.sin);
    ctx = coap_new_context(NULL);
    if (!ctx || !(conf = coap_new_oscore_conf(text, save_seq, NULL, load_seq())))
        return 4;
    coap_context_set_block_mode(ctx, COAP_BLOCK_USE_LIBCOAP);
    coap_register_response_handler(ctx, on_response);
    moisture = r = coap_resource_init(coap_make_str_const("moisture"), 0);
    coap_register_request_handler(r, COAP_REQUEST_GET, get_moisture);
    coap_resource_set_get_observable(r, 1);
    coap_add_resource(ctx, r);
    r = coap_resource_init(coap_make_str_const("setpoint"), 0);
    coap_register_request_handler(r, COAP_REQUEST_PUT, put_setpoint);
    coap_add_resource(ctx, r);
    if (!(s = coap_new_client_session_oscore(ctx, NULL, &gw, COAP_PROTO_UDP, conf)))
        return 5;
    pdu = coap_new_pdu(COAP_MESSAGE_CON, COAP_REQUEST_CODE_POST, s);
    /* A token: libcoap 4.3.4 cannot protect a message without one
     * ("coap_pdu_resize: pdu too big": coap_oscore_new_pdu_encrypted sizes
     * the inner PDU one byte short; 4.3.5 has the fix, commit ae4c5c7a). */
    coap_session_new_token(s, &len, token);
    coap_add_token(pdu, len, token);
    snprintf(query, sizeof(query), "ep=%s", argv[5]);
    coap_add_option(pdu, COAP_OPTION_URI_PATH, 2, (const uint8_t *)"rd");
    coap_add_option(pdu, COAP_OPTION_CONTENT_FORMAT, 1, (const uint8_t *)"\x28");
    coap_add_option(pdu, COAP_OPTION_URI_QUERY, strlen(query), (const uint8_t *)query);
    coap_add_option(pdu, COAP_OPTION_URI_QUERY, 5, (const uint8_t *)"lt=60");
    coap_add_data(pdu, strlen(links), (const uint8_t *)links);
    if (coap_send(s, pdu) == COAP_INVALID_MID)
        return 6;
    while (!quit) {
        coap_io_process(ctx, 100);
        if (++ticks % 10 == 0) {
            value++;
            coap_resource_notify_observers(moisture, NULL);
        }
    }
    coap_session_release(s);
    coap_free_context(ctx);
    coap_cleanup();
    return 0;
}
