/*
 * resources.c - a sensor's CoAP resources, served to the gateway over the
 * sensor's own client session (libcoap dispatches requests that arrive on
 * a client session to the context's resources).
 *
 * Readings: every payload sent to an observer - the response to the
 * Observe registration and each notification - is a new reading with the
 * next seq and one NOTIFY line; RFC 7641 counts the registration response
 * as the first notification.  A plain GET returns the current reading.
 * Writable resources keep the last PUT value and get a new seq only when
 * they notify; a PUT goes up to sensor.c through the sensor's events
 * (s->ev->written), which pushes it in --push mode.  This file calls
 * nothing in session.c or sensor.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

int64_t
resources_period_ms(const struct res_state *r)
{
    return r->def->writable ? SIM_KEEPFRESH_MS
                            : (int64_t)r->sensor->sim->opts.interval_ms;
}

/*
 * Max-Age tells the gateway how long a notification stays fresh (RFC 7641
 * 3.4).  The default 60 s covers fast readings and the writable resources'
 * keep-fresh notifications; slow periodic ones announce two periods.
 */
static int
max_age(const struct res_state *r)
{
    double period_s = (double)resources_period_ms(r) / 1000.0;

    return period_s > 30.0 ? (int)(2 * period_s + 1) : -1;
}

/* Sends the current value; libcoap goes block-wise when it is large. */
static void
reply_value(struct res_state *r, coap_resource_t *resource,
            coap_session_t *session, const coap_pdu_t *request,
            coap_pdu_t *response, const coap_string_t *query)
{
    uint8_t *copy = malloc(r->value_len ? r->value_len : 1);

    if (!copy) {
        coap_pdu_set_code(response, COAP_RESPONSE_CODE_INTERNAL_ERROR);
        return;
    }
    memcpy(copy, r->value, r->value_len);
    coap_pdu_set_code(response, COAP_RESPONSE_CODE_CONTENT);
    /* libcoap leaves Content-Format out for 0; the gateway wants it. */
    if (r->def->ct == 0)
        coap_add_option(response, COAP_OPTION_CONTENT_FORMAT, 0, NULL);
    coap_add_data_large_response(resource, session, request, response, query,
                                 r->def->ct, max_age(r), 0, r->value_len, copy,
                                 tool_release_body, copy);
}

static bool
limit_reached(const struct res_state *r)
{
    unsigned long k = r->sensor->sim->opts.count_readings;

    return !r->def->writable && k && r->readings >= k;
}

int
resources_new_reading(struct res_state *r)
{
    const struct sim_opts *o = &r->sensor->sim->opts;
    size_t pad = r->idx == 0 ? o->payload_size : 0;
    size_t len = 0;
    uint8_t *buf;

    r->seq++;
    r->readings++;
    if (r->def->writable)
        return 0;
    buf = payload_encode(r, kind_next_value(r->def->gen, &r->level,
                                            &r->sensor->rng,
                                            o->interval_ms / 1000.0),
                         pad, &len);
    if (!buf)
        return -1;
    free(r->value);
    r->value = buf;
    r->value_len = len;
    return 0;
}

static bool
observe_registration(const coap_pdu_t *request)
{
    coap_opt_iterator_t it;
    coap_opt_t *opt = coap_check_option(request, COAP_OPTION_OBSERVE, &it);

    return opt && coap_decode_var_bytes(coap_opt_value(opt),
                                        coap_opt_length(opt)) == 0;
}

/* "OBSERVE_GET <id> <path> <CON|NON> <token hex>": how the gateway
 * (re-)registers, for the tests. */
static void
print_registration(const struct sensor *s, const struct res_state *r,
                   const coap_pdu_t *request)
{
    coap_bin_const_t tok = coap_pdu_get_token(request);
    char hex[2 * 8 + 1] = "-";

    for (size_t i = 0; i < tok.length && i < 8; i++)
        snprintf(hex + 2 * i, 3, "%02x", tok.s[i]);
    out_event(s->sim, false, "OBSERVE_GET %s %s %s %s", s->id, r->def->path,
              coap_pdu_get_type(request) == COAP_MESSAGE_CON ? "CON" : "NON", hex);
}

static void
hnd_get(coap_resource_t *resource, coap_session_t *session,
        const coap_pdu_t *request, const coap_string_t *query,
        coap_pdu_t *response)
{
    struct res_state *r = coap_resource_get_userdata(resource);
    struct sensor *s = r->sensor;
    bool notify = r->notify_pending;

    /* A notification comes through here too, with the registration as
     * 'request' but notify_pending set. */
    if (!notify && observe_registration(request)) {
        print_registration(s, r, request);
        if (r->observed_gen != s->gen) {
            r->observed_gen = s->gen;
            out_event(s->sim, true, "OBSERVED %s %s", s->id, r->def->path);
        }
        notify = true;
        /* The next notification is one period after this one. */
        r->next_ms = tool_now_ms() + resources_period_ms(r);
    }
    r->notify_pending = false;
    if (notify && !limit_reached(r)) {
        if (resources_new_reading(r) < 0) {
            coap_pdu_set_code(response, COAP_RESPONSE_CODE_INTERNAL_ERROR);
            return;
        }
        s->sim->cnt.notifications++;
        out_event(s->sim, false, "NOTIFY %s %s %u", s->id, r->def->path, r->seq);
    }
    reply_value(r, resource, session, request, response, query);
}

/* A CON retransmitted because our ACK got lost must not apply twice. */
static bool
mid_seen(struct sensor *s, coap_mid_t mid)
{
    for (unsigned i = 0; i < s->mid_n; i++)
        if (s->mids[i] == (uint16_t)mid)
            return true;
    s->mids[s->mid_pos] = (uint16_t)mid;
    s->mid_pos = (s->mid_pos + 1) % SIM_MID_RING;
    if (s->mid_n < SIM_MID_RING)
        s->mid_n++;
    return false;
}

static bool
printable(const uint8_t *p, size_t n)
{
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (p[i] < 0x20 || p[i] > 0x7e)
            return false;
    return true;
}

static int
store_value(struct res_state *r, const uint8_t *data, size_t len)
{
    uint8_t *copy = malloc(len);

    if (!copy)
        return -1;
    memcpy(copy, data, len);
    free(r->value);
    r->value = copy;
    r->value_len = len;
    return 0;
}

static void
hnd_put(coap_resource_t *resource, coap_session_t *session,
        const coap_pdu_t *request, const coap_string_t *query,
        coap_pdu_t *response)
{
    struct res_state *r = coap_resource_get_userdata(resource);
    struct sensor *s = r->sensor;
    const uint8_t *data = NULL;
    size_t len = 0, offset = 0, total = 0;

    (void)session;
    (void)query;
    if (!coap_get_data_large(request, &len, &data, &offset, &total))
        len = total = 0;
    if (offset != 0 || len != total || len == 0) {
        coap_pdu_set_code(response, COAP_RESPONSE_CODE_BAD_REQUEST);
        return;
    }
    if (len > SIM_PUT_MAX) {
        coap_pdu_set_code(response, COAP_RESPONSE_CODE_REQUEST_TOO_LARGE);
        return;
    }
    coap_pdu_set_code(response, COAP_RESPONSE_CODE_CHANGED);
    if (coap_pdu_get_type(request) == COAP_MESSAGE_CON && mid_seen(s, coap_pdu_get_mid(request)))
        return;
    if (store_value(r, data, len) < 0) {
        coap_pdu_set_code(response, COAP_RESPONSE_CODE_INTERNAL_ERROR);
        return;
    }
    s->sim->cnt.puts++;
    out_event(s->sim, true, "PUT %s %s %zu %.*s", s->id, r->def->path, len,
              printable(data, len) ? (int)len : 1,
              printable(data, len) ? (const char *)data : "-");
    if (coap_resource_notify_observers(resource, NULL)) {
        r->notify_pending = true;
        r->next_ms = tool_now_ms() + resources_period_ms(r);
    }
    s->ev->written(r);
}

/* The value a resource has before its first reading (seq 0). */
static int
initial_value(struct res_state *r)
{
    const struct kind_res *d = r->def;
    size_t pad = r->idx == 0 ? r->sensor->sim->opts.payload_size : 0;

    r->seq = 0;
    r->readings = 0;
    r->notify_pending = false;
    if (d->writable)
        return store_value(r, (const uint8_t *)d->initial, strlen(d->initial));
    r->level = kind_initial_level(d->gen, r->sensor->index);
    free(r->value);
    r->value = payload_encode(r, r->level, pad, &r->value_len);
    return r->value ? 0 : -1;
}

int
resources_reset(struct sensor *s)
{
    for (size_t i = 0; i < s->nres; i++)
        if (initial_value(&s->res[i]) < 0)
            return -1;
    return 0;
}

bool
resources_con(const struct res_state *r)
{
    enum msg_type_force force = r->sensor->sim->opts.force;

    return force == FORCE_CON || (force == FORCE_NONE && r->def->con);
}

/* Creates the libcoap resources of a (new) context; values are kept. */
int
resources_add(struct sensor *s)
{
    s->mid_n = s->mid_pos = 0;   /* a new session: new Message IDs */
    for (size_t i = 0; i < s->nres; i++) {
        struct res_state *r = &s->res[i];
        int flags = resources_con(r) ? COAP_RESOURCE_FLAGS_NOTIFY_CON
                                     : COAP_RESOURCE_FLAGS_NOTIFY_NON;
        coap_resource_t *res = coap_resource_init(coap_make_str_const(r->def->path),
                                                  flags);
        if (!res)
            return -1;
        coap_register_request_handler(res, COAP_REQUEST_GET, hnd_get);
        if (r->def->writable)
            coap_register_request_handler(res, COAP_REQUEST_PUT, hnd_put);
        coap_resource_set_get_observable(res, 1);
        coap_resource_set_userdata(res, r);
        coap_add_resource(tool_ctx_coap(s->ctx), res);
        r->resource = res;
        r->notify_pending = false;
    }
    return 0;
}

size_t
resources_linkformat(const struct sensor *s, char *buf, size_t cap)
{
    size_t n = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < s->nres; i++) {
        const struct kind_res *d = s->res[i].def;
        int w = snprintf(buf + n, cap - n, "%s</%s>%s;ct=%u", i ? "," : "",
                         d->path, s->sim->opts.push ? "" : ";obs", d->ct);
        if (w < 0 || (size_t)w >= cap - n)
            return n;
        n += (size_t)w;
    }
    return n;
}

void
resources_detach(struct sensor *s)
{
    for (size_t i = 0; i < s->nres; i++) {
        s->res[i].resource = NULL;
        s->res[i].notify_pending = false;
    }
}

void
resources_free(struct sensor *s)
{
    for (size_t i = 0; i < s->nres; i++) {
        free(s->res[i].value);
        s->res[i].value = NULL;
        s->res[i].resource = NULL;
    }
}
