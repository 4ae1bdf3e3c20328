/*
 * clock.c - the tools' monotonic clock: every deadline, rate and latency
 * they measure is a difference of these, never of wall-clock time.
 */
#include <time.h>

#include "tool_common.h"

int64_t
tool_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t
tool_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
