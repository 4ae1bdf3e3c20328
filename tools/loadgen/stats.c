/*
 * stats.c - quantiles and the /proc figures of the process under test
 * (utime + stime from /proc/PID/stat, VmRSS from /proc/PID/status).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lg.h"

int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

double
quantile_sorted(const uint64_t *v, size_t n, double q)
{
    size_t i;

    if (!n)
        return 0;
    i = (size_t)(q * (double)n);
    return (double)v[i < n ? i : n - 1];
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
