/*
 * stats.c - latency samples and their quantiles (the CoAP round trips and
 * the subscriber's end-to-end figures alike), and the /proc figures of the
 * process under test (utime + stime from /proc/PID/stat, VmRSS from
 * /proc/PID/status).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lg.h"

#define SAMPLES_MAX (20u * 1000 * 1000)

const double lg_cdf_q[LG_CDF_POINTS] = {
    0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9,
    0.95, 0.97, 0.98, 0.99, 0.995, 0.997, 0.998, 0.999, 0.9995, 0.9998, 0.9999, 1.0,
};

void
samples_add(struct lg_samples *s, uint64_t us)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 65536;
        uint64_t *p;
        if (cap > SAMPLES_MAX)
            return;
        p = realloc(s->v, cap * sizeof(*p));
        if (!p)
            return;
        s->v = p;
        s->cap = cap;
    }
    s->v[s->n++] = us;
}

void
samples_free(struct lg_samples *s)
{
    free(s->v);
    memset(s, 0, sizeof(*s));
}

/* qsort's ascending order of samples. */
static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* The q-quantile (0..1) of n > 0 sorted samples, in ms. */
static double
quantile_ms(const uint64_t *v, size_t n, double q)
{
    size_t i = (size_t)(q * (double)n);

    return (double)v[i < n ? i : n - 1] / 1000.0;
}

void
samples_latency(struct lg_samples *s, struct lg_latency *l)
{
    double sum = 0;

    memset(l, 0, sizeof(*l));
    l->samples = s->n;
    if (!s->n)
        return;
    qsort(s->v, s->n, sizeof(*s->v), cmp_u64);
    for (size_t i = 0; i < s->n; i++)
        sum += (double)s->v[i];
    l->mean_ms = sum / (double)s->n / 1000.0;
    l->p50_ms = quantile_ms(s->v, s->n, 0.50);
    l->p99_ms = quantile_ms(s->v, s->n, 0.99);
    l->p999_ms = quantile_ms(s->v, s->n, 0.999);
    l->max_ms = (double)s->v[s->n - 1] / 1000.0;
    for (size_t i = 0; i < LG_CDF_POINTS; i++)
        l->cdf_ms[i] = quantile_ms(s->v, s->n, lg_cdf_q[i]);
}

/* utime and stime are fields 14 and 15, counted after the ")" of comm. */
static double
proc_cpu(int pid)
{
    char path[64], buf[1024], *p;
    unsigned long ut, st;
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    if (!(f = fopen(path, "re")))
        return -1;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')');
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
                     &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static long
proc_rss(int pid)
{
    char path[64], line[256];
    long kib = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    if (!(f = fopen(path, "re")))
        return -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

void
proc_sample(int pid, struct proc_sample *p)
{
    memset(p, 0, sizeof(*p));
    if (pid <= 0)
        return;
    p->cpu_s = proc_cpu(pid);
    p->rss_kib = proc_rss(pid);
    p->ok = p->cpu_s >= 0 && p->rss_kib >= 0;
}
