"""
Fault injection (issue 4, part 6): the promise that a reading a device was
told was accepted (CON ACK, or 2.04 to a push) reaches the broker, in
per-device order, whatever happens to the broker, the links or the gateway
process.  Real mosquitto (persistence on), the real daemon, real simulated
sensors.

Every test has a short version in the normal run and a long one marked
`soak` (make soak).  Figures are printed as "FAULTS <name> {json}" lines
(pytest -s shows them) and appended to $C2M_FAULTS_REPORT when set;
docs/RELIABILITY.md quotes them.
"""

import os
import signal
import time

import pytest

import c2m
import faults

SOAK = pytest.mark.soak


def fleet(psk_file, prefix, n):
    for i in range(1, n + 1):
        psk_file.add("%s%d" % (prefix, i))


def subscriber(mqtt_factory, gw, *paths):
    """A persistent-session subscriber: the broker keeps what arrives for
    it while it reconnects after a broker restart."""
    watch = mqtt_factory(clean_start=False, session_expiry=3600)
    for p in paths:
        watch.subscribe(gw.topic("+", p))
    return watch


def push_fleet(sim, prefix, n, rate, extra=()):
    return sim("meter", count=n,
               extra_args=["--prefix", prefix, "--push", "--con", "--rate", str(rate),
                           "--lifetime", "3600"] + list(extra))


def await_all_pushing(s, prefix, n, timeout=30):
    t0 = time.monotonic()
    for i in range(1, n + 1):
        left = max(1, timeout - (time.monotonic() - t0))
        s.wait_for(r"^PUSH %s%d energy \d+ 2\.04$" % (prefix, i), timeout=left)


# --------------------------------------------------------------------------
# a. broker outage under load

def broker_outage(make_gateway, sim, broker, mqtt_factory, psk_file, *, sensors, rate,
                  outage_s, before_s=3, after_s=5, name):
    prefix = "fa-"
    fleet(psk_file, prefix, sensors)
    faults.unlimit_broker(broker)
    gw = make_gateway()
    watch = subscriber(mqtt_factory, gw, "energy")
    s = push_fleet(sim, prefix, sensors, rate)
    await_all_pushing(s, prefix, sensors)
    time.sleep(before_s)

    t_down = time.monotonic()
    assert broker.stop() == 0
    time.sleep(outage_s)
    broker.start()
    t_up = time.monotonic()
    watch.wait_connected(15)
    time.sleep(after_s)
    # The devices stop; then everything they were told about must arrive.
    assert s.stop() == 0
    v = faults.wait_delivered(watch, gw, s, timeout=60)
    drained = time.monotonic() - t_up
    _, failed = faults.device_acks(s)
    doc = v.report(name, sensors=sensors, rate_per_sensor=rate, outage_s=outage_s,
                   push_failures=dict(failed), drain_s=round(drained, 1),
                   outage_measured_s=round(t_up - t_down, 1))
    v.check()
    assert doc["acknowledged"] >= sensors * rate / 2 * (before_s + after_s) * 0.5
    return v


@pytest.mark.timeout(150)
def test_broker_outage_short(make_gateway, sim, broker, mqtt_factory, psk_file):
    """10 sensors x 10 CON pushes/s, broker away 10 s: nothing lost."""
    broker_outage(make_gateway, sim, broker, mqtt_factory, psk_file,
                  sensors=10, rate=10, outage_s=10, name="a-broker-outage-short")


@SOAK
@pytest.mark.timeout(600)
def test_broker_outage_soak(make_gateway, sim, broker, mqtt_factory, psk_file):
    """100 sensors x 10 CON pushes/s, broker away 60 s: nothing lost."""
    broker_outage(make_gateway, sim, broker, mqtt_factory, psk_file,
                  sensors=100, rate=10, outage_s=60, after_s=15, name="a-broker-outage-soak")
