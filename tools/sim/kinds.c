/*
 * kinds.c - the sensor kinds the simulator knows and how their readings
 * move.  Values are a mean-reverting random walk (no libm needed) from a
 * per-sensor xorshift generator, so runs are reproducible per index.
 */
#include <string.h>

#include "sim.h"

static const struct kind_res meter_res[] = {
    { "energy", 50, true, false, GEN_ENERGY, "kwh", 4, NULL },
    { "power", 0, true, false, GEN_POWER, NULL, 1, NULL },
};

static const struct kind_res hvac_res[] = {
    { "temperature", 0, false, false, GEN_TEMPERATURE, NULL, 2, NULL },
    { "humidity", 0, false, false, GEN_HUMIDITY, NULL, 1, NULL },
    { "setpoint", 0, true, true, GEN_STORED, NULL, 0, "21.0" },
};

static const struct kind_res industrial_res[] = {
    { "vibration", 60, false, false, GEN_VIBRATION, "rms", 4, NULL },
    { "config", 50, true, true, GEN_STORED, NULL, 0, "{\"rate_hz\":10}" },
};

#define KIND(n, r) { n, r, sizeof(r) / sizeof((r)[0]) }

static const struct kind kinds[] = {
    KIND("meter", meter_res),
    KIND("hvac", hvac_res),
    KIND("industrial", industrial_res),
};

const struct kind *
kind_find(const char *name)
{
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (strcmp(kinds[i].name, name) == 0)
            return &kinds[i];
    return NULL;
}

const char *
kind_names(void)
{
    return "meter, hvac, industrial";
}

double
kind_initial_level(enum gen_kind gen, unsigned n)
{
    switch (gen) {
    case GEN_ENERGY:      return 1000.0 + 10.0 * (n % 1000);
    case GEN_POWER:       return 1200.0;
    case GEN_TEMPERATURE: return 21.0;
    case GEN_HUMIDITY:    return 45.0;
    case GEN_VIBRATION:   return 0.5;
    case GEN_STORED:      break;
    }
    return 0.0;
}

/* xorshift64*: uniform in [-1, 1). */
static double
noise(uint64_t *rng)
{
    uint64_t x = *rng;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *rng = x;
    return (double)((x * 2685821657736338717ULL) >> 11) / (double)(1ULL << 52) - 1.0;
}

/* Walks *level towards 'mean' with steps of at most 'step'. */
static double
walk(double *level, double mean, double step, uint64_t *rng)
{
    *level += (mean - *level) * 0.1 + step * noise(rng);
    return *level;
}

double
kind_next_value(enum gen_kind gen, double *level, uint64_t *rng, double dt_s)
{
    double kw;

    switch (gen) {
    case GEN_ENERGY:
        /* Energy integrates a ~3.6 kW load (1 Wh a second): strictly increasing. */
        kw = 3.6 + 0.9 * noise(rng);
        *level += kw * dt_s / 3600.0;
        return *level;
    case GEN_POWER:       return walk(level, 1200.0, 50.0, rng);
    case GEN_TEMPERATURE: return walk(level, 21.0, 0.2, rng);
    case GEN_HUMIDITY:    return walk(level, 45.0, 1.0, rng);
    case GEN_VIBRATION: {
        double v = walk(level, 0.5, 0.05, rng);
        return v < 0 ? -v : v;
    }
    case GEN_STORED:
        break;
    }
    return 0.0;
}
