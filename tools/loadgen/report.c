/*
 * report.c - turns one run's counters into figures: rates over the
 * measurement window, round-trip and end-to-end latency quantiles, CPU time
 * of the watched process per 1,000 readings, VmRSS per session.
 */
#include <stdio.h>
#include <stdlib.h>
#include <jansson.h>

#include "coap2mqtt/log.h"
#include "report.h"

static json_t *
latency_json(const struct lg_latency *l)
{
    json_t *j = json_pack("{s:f, s:f, s:f, s:f, s:I}", "p50_ms", l->p50_ms,
                          "p99_ms", l->p99_ms, "p999_ms", l->p999_ms,
                          "max_ms", l->max_ms, "samples", (json_int_t)l->samples);
    json_t *cdf = json_array();

    /* [quantile, ms] pairs: enough for a CDF picture, not the samples. */
    for (size_t i = 0; l->samples && i < LG_CDF_POINTS; i++)
        json_array_append_new(cdf, json_pack("[f, f]", lg_cdf_q[i], l->cdf_ms[i]));
    json_object_set_new(j, "cdf", cdf);
    return j;
}

static json_t *
sub_json(struct lg_sub *sub, double dur, unsigned long sent, struct sub_result *r)
{
    json_t *j;

    sub_result(sub, r);
    j = json_pack("{s:I, s:I, s:f, s:I, s:I, s:I, s:I}",
                  "received", (json_int_t)r->received,
                  "in_window", (json_int_t)r->in_window,
                  "per_s", (double)r->in_window / dur,
                  "lost", (json_int_t)(sent > r->received ? sent - r->received : 0),
                  "duplicates", (json_int_t)r->dup,
                  "reordered", (json_int_t)r->reordered,
                  "unparsable", (json_int_t)r->bad);
    json_object_set_new(j, "latency", latency_json(&r->lat));
    printf("  subscriber: %lu received, %lu sent in window -> %.0f/s, lost %lu,"
           " dup %lu, reordered %lu; latency p50 %.2f p99 %.2f p99.9 %.2f ms\n",
           r->received, r->in_window, (double)r->in_window / dur,
           sent > r->received ? sent - r->received : 0, r->dup, r->reordered,
           r->lat.p50_ms, r->lat.p99_ms, r->lat.p999_ms);
    return j;
}

static json_t *
handshake_json(const struct fleet *f, const struct run_figures *rf)
{
    double secs = (double)(f->hs_last_us - f->hs_first_us) / 1e6;
    double per_s = secs > 0 ? (double)f->cnt.hs_ok / secs : 0;
    json_t *j = json_pack("{s:I, s:I, s:I, s:f, s:f}",
                          "ok", (json_int_t)f->cnt.hs_ok,
                          "failed", (json_int_t)f->cnt.hs_failed,
                          "retries", (json_int_t)f->cnt.hs_retries,
                          "seconds", secs, "per_s", per_s);

    printf("  handshakes: %lu ok, %lu failed (%lu retries) in %.2f s -> %.0f/s\n",
           f->cnt.hs_ok, f->cnt.hs_failed, f->cnt.hs_retries, secs, per_s);
    if (rf->before.ok && rf->connected.ok && f->cnt.hs_ok) {
        double per = (double)(rf->connected.rss_kib - rf->before.rss_kib) /
                     (double)f->cnt.hs_ok;
        json_object_set_new(j, "rss_before_kib", json_integer(rf->before.rss_kib));
        json_object_set_new(j, "rss_after_kib", json_integer(rf->connected.rss_kib));
        json_object_set_new(j, "rss_per_session_kib", json_real(per));
        printf("  server VmRSS %ld -> %ld KiB: %.1f KiB per session\n",
               rf->before.rss_kib, rf->connected.rss_kib, per);
    }
    return j;
}

static json_t *
coap_side_json(const struct lg_opts *o, struct fleet *f, double dur)
{
    json_t *j = json_pack("{s:I, s:I, s:I, s:f, s:I, s:I, s:I, s:I}",
                          "sent", (json_int_t)f->cnt.sent,
                          "sent_window", (json_int_t)f->cnt.sent_window,
                          "acked_window", (json_int_t)f->cnt.acked_window,
                          "acked_per_s", (double)f->cnt.acked_window / dur,
                          "errors", (json_int_t)f->cnt.errors,
                          "skipped", (json_int_t)f->cnt.skipped,
                          "registered", (json_int_t)f->cnt.reg_ok,
                          "observed", (json_int_t)f->cnt.observed);

    printf("  coap: %lu sent (%lu in window, %.0f/s offered), %lu answered in window"
           " -> %.0f/s, %lu errors, %lu skipped\n", f->cnt.sent, f->cnt.sent_window,
           (double)f->cnt.sent_window / dur, f->cnt.acked_window,
           (double)f->cnt.acked_window / dur, f->cnt.errors, f->cnt.skipped);
    if (o->con && !o->observe && f->rtt.n) {
        struct lg_latency rtt;
        samples_latency(&f->rtt, &rtt);
        json_object_set_new(j, "rtt", latency_json(&rtt));
        printf("  coap round trip p50 %.2f p99 %.2f ms\n", rtt.p50_ms, rtt.p99_ms);
    }
    return j;
}

/*
 * CPU of the watched process (the server under test) and of this load
 * generator over the window, per 1,000 delivered readings: on two shared
 * cores, what the instrument costs is CPU the server does not get.
 */
static void
cpu_json(json_t *root, const struct proc_sample *s0, const struct proc_sample *s1,
         const struct proc_sample *me0, const struct proc_sample *me1,
         unsigned long delivered)
{
    double cpu;

    if (me0->ok && me1->ok && delivered) {
        cpu = me1->cpu_s - me0->cpu_s;
        json_object_set_new(root, "loadgen_cpu_s", json_real(cpu));
        json_object_set_new(root, "loadgen_cpu_ms_per_1000",
                            json_real(cpu * 1e6 / (double)delivered));
    }
    if (!s0->ok || !s1->ok)
        return;
    cpu = s1->cpu_s - s0->cpu_s;
    json_object_set_new(root, "server_cpu_s", json_real(cpu));
    json_object_set_new(root, "server_rss_kib", json_integer(s1->rss_kib));
    if (delivered) {
        json_object_set_new(root, "server_cpu_ms_per_1000",
                            json_real(cpu * 1e6 / (double)delivered));
        printf("  server CPU %.2f s in window: %.1f ms per 1,000\n", cpu,
               cpu * 1e6 / (double)delivered);
    }
}

static int
write_json(const char *path, json_t *root)
{
    int rc = 0;

    if (path && json_dump_file(root, path, JSON_INDENT(1) | JSON_REAL_PRECISION(6)) < 0) {
        log_warnx("%s: cannot write the JSON", path);
        rc = 1;
    }
    json_decref(root);
    return rc;
}

int
report_coap(const struct lg_opts *o, struct fleet *f, struct lg_sub *sub,
            const struct run_figures *rf)
{
    double dur = o->duration_s;
    json_t *root = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:f, s:I, s:f}",
                             "label", o->label ? o->label : "",
                             "kind", o->observe ? "observe" : "push",
                             "type", o->con ? "CON" : "NON",
                             "security", o->cert ? "ecdsa" : "psk",
                             "sensors", (json_int_t)o->sensors,
                             "active", (json_int_t)o->active,
                             "rate", o->rate, "window", (json_int_t)o->window,
                             "duration_s", dur);
    struct sub_result sr = { 0 };
    unsigned long delivered;

    printf("%s: %u sensors (%u active), %s %s, rate %s\n", o->label ? o->label : "run",
           o->sensors, o->active, o->observe ? "observe" : "push",
           o->con ? "CON" : "NON", o->rate ? "open loop" : "closed loop");
    json_object_set_new(root, "handshakes", handshake_json(f, rf));
    if (!o->handshake_only) {
        json_object_set_new(root, "coap", coap_side_json(o, f, dur));
        if (sub)
            json_object_set_new(root, "mqtt", sub_json(sub, dur, f->cnt.sent, &sr));
        delivered = sub ? sr.in_window : f->cnt.acked_window;
        cpu_json(root, &rf->win_start, &rf->win_end, &rf->self_start, &rf->self_end,
                 delivered);
    }
    if (write_json(o->json, root))
        return 1;
    return f->cnt.hs_ok ? 0 : 1;
}

int
report_mqtt(const struct lg_opts *o, struct lg_sub *sub, const struct pub_result *pr)
{
    double dur = o->duration_s;
    struct sub_result sr;
    json_t *root = json_pack("{s:s, s:s, s:I, s:I, s:f, s:f}",
                             "label", o->label ? o->label : "", "kind", "mqtt",
                             "publishers", (json_int_t)o->publishers,
                             "inflight", (json_int_t)o->pub_inflight,
                             "rate", o->rate, "duration_s", dur);

    printf("%s: %u QoS 1 publisher(s), %u in flight each\n",
           o->label ? o->label : "mqtt", o->publishers, o->pub_inflight);
    printf("  published %lu (%lu in window), PUBACKed in window %lu -> %.0f/s\n",
           pr->sent, pr->sent_window, pr->acked_window, (double)pr->acked_window / dur);
    json_object_set_new(root, "publish", json_pack("{s:I, s:I, s:I, s:f}",
                        "sent", (json_int_t)pr->sent,
                        "sent_window", (json_int_t)pr->sent_window,
                        "acked_window", (json_int_t)pr->acked_window,
                        "acked_per_s", (double)pr->acked_window / dur));
    json_object_set_new(root, "mqtt", sub_json(sub, dur, pr->sent, &sr));
    cpu_json(root, &pr->srv_start, &pr->srv_end, &pr->self_start, &pr->self_end,
             sr.in_window);
    if (write_json(o->json, root))
        return 1;
    return pr->sent ? 0 : 1;
}
