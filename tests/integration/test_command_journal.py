"""Commands queued for a sleeping device across a gateway crash.

libmosquitto acknowledges a command (PUBACK) before the gateway sees it, so
the broker will never send it again: once accepted, a command must get its
one result even if the gateway is killed with kill -9 while it waits for
its device.  The command journal (state_dir/commands.journal) keeps it: a
restarted gateway queues it again for its device, with what is left of its
time to live."""

import re
import signal
import time
import uuid

import pytest

import c2m


def stats_with(gw, mqtt, field, at_least, timeout=10):
    """The first bridge/stats (published every second in the tests) whose
    counter 'field' is at least 'at_least'."""
    return mqtt.wait_for(gw.topic("bridge", "stats"),
                         lambda m: m.json().get(field, 0) >= at_least,
                         timeout=timeout).json()


def no_more(mqtt, topic, seconds):
    """Waits 'seconds' for one more message on 'topic' than it has now (a
    second result): it must not come, and the test fails as soon as it does."""
    n = len(mqtt.received(topic))
    with pytest.raises(c2m.Timeout):
        mqtt._wait_cv(lambda: len(mqtt.received(topic)) > n, seconds,
                      "a message on %s after the %d there were" % (topic, n))


def crash_and_restart(gw, mqtt):
    gw.expect_death = True
    assert gw.stop(signal.SIGKILL) == -signal.SIGKILL
    mark = mqtt.mark()
    gw.respawn()
    mqtt.wait_for(gw.topic("bridge", "state"), lambda m: m.payload == b"online",
                  timeout=15, start=mark)


@pytest.mark.mqtt5("Response Topic")
def test_queued_commands_survive_kill9(make_gateway, sim, mqtt):
    gw = make_gateway()
    setpoint = gw.topic("hvac-1", "setpoint")
    replies = "test-replies/%s" % uuid.uuid4().hex
    mqtt.subscribe(replies)
    s = sim("hvac", extra_args=["--lifetime", "60", "--sleep-after", "3",
                                "--sleep-for", "12", "--interval", "60000"])
    s.wait_for(r"^OBSERVED hvac-1 setpoint$", timeout=15)
    # One command answered before the crash: it must not be sent again.
    mqtt.publish(setpoint + "/set", b"10.5", response_topic=replies,
                 correlation_data=b"before")
    r = mqtt.wait_for(replies, lambda m: m.prop("CorrelationData") == b"before", timeout=10)
    assert r.json().get("code") == "2.04", r
    _, pos = s.out.wait_line(r"^SLEEP hvac-1$", timeout=10)
    values = ["11.5", "12.5", "13.5"]
    for i, v in enumerate(values):
        mqtt.publish(setpoint + "/set", v.encode(), response_topic=replies,
                     correlation_data=b"c%d" % i)
    # All three are in the gateway's queue (and acknowledged to the broker).
    stats_with(gw, mqtt, "commands_in", 4)
    assert not [m for m in mqtt.received(replies) if m.prop("CorrelationData") != b"before"]
    crash_and_restart(gw, mqtt)
    assert not s.out.find(r"^WAKE ", pos), "the device woke before the restart"
    assert stats_with(gw, mqtt, "commands_restored", 3)["commands_restored"] == 3

    # Once the device is back (new session, new registration), each queued
    # command reaches it once, in order, and gets exactly one result.
    s.wait_for(r"^WAKE hvac-1$", timeout=20, start=pos)
    want = {b"c%d" % i for i in range(len(values))}
    mqtt.wait_for(replies, lambda m: want <= {x.prop("CorrelationData")
                                              for x in mqtt.received(replies)},
                  timeout=30)
    s.out.wait_for(r"^PUT hvac-1 setpoint \d+ %s$" % re.escape(values[-1]),
                   timeout=5, start=pos)
    no_more(mqtt, replies, 2)       # a second result, if there were one
    results = [m for m in mqtt.received(replies) if m.prop("CorrelationData") != b"before"]
    corrs = sorted(m.prop("CorrelationData") for m in results)
    assert corrs == sorted(want), [(m.prop("CorrelationData"), m.payload) for m in results]
    for m in results:
        assert m.json().get("code") == "2.04", (m.prop("CorrelationData"), m.payload)
    put = [m.group(1) for m in s.out.find(r"^PUT hvac-1 setpoint \d+ (\S+)$")]
    assert put == ["10.5"] + values, put
    assert len([m for m in mqtt.received(replies)
                if m.prop("CorrelationData") == b"before"]) == 1


def test_queued_command_expires_after_kill9(make_gateway, sim, mqtt):
    """A device that does not come back: the command restored after the
    crash still gets its one result, "expired", when its time to live (not
    a fresh one) runs out."""
    ttl = 8
    gw = make_gateway(overrides={"commands": {"ttl": ttl}})
    setpoint = gw.topic("hvac-1", "setpoint")
    result = setpoint + "/set/result"
    mqtt.subscribe(result)
    s = sim("hvac", extra_args=["--lifetime", "60", "--sleep-after", "1",
                                "--sleep-for", "120", "--interval", "60000"])
    s.wait_for(r"^OBSERVED hvac-1 setpoint$", timeout=15)
    s.wait_for(r"^SLEEP hvac-1$", timeout=10)
    t0 = time.monotonic()
    mqtt.publish(setpoint + "/set", b"21.5")
    stats_with(gw, mqtt, "commands_in", 1)
    crash_and_restart(gw, mqtt)
    doc = mqtt.wait_for(result, timeout=ttl + 10).json()
    took = time.monotonic() - t0
    assert doc == {"error": "expired"}, doc
    assert ttl - 1 < took < ttl + 4, "expired after %.1fs, ttl %ds" % (took, ttl)
    no_more(mqtt, result, 2)
    assert len(mqtt.received(result)) == 1, [m.payload for m in mqtt.received(result)]
    assert not s.out.find(r"^PUT hvac-1 setpoint \d+ 21\.5$")


def test_restored_command_answered_at_graceful_stop(make_gateway, sim, mqtt):
    """A restored command whose device has not come back yet is answered
    "gateway stopping" at SIGTERM, like every queued command, and only
    once: the next start does not restore it again."""
    gw = make_gateway()
    setpoint = gw.topic("hvac-1", "setpoint")
    result = setpoint + "/set/result"
    mqtt.subscribe(result)
    s = sim("hvac", extra_args=["--lifetime", "60", "--sleep-after", "1",
                                "--sleep-for", "120", "--interval", "60000"])
    s.wait_for(r"^OBSERVED hvac-1 setpoint$", timeout=15)
    s.wait_for(r"^SLEEP hvac-1$", timeout=10)
    mqtt.publish(setpoint + "/set", b"22.5")
    stats_with(gw, mqtt, "commands_in", 1)
    crash_and_restart(gw, mqtt)
    assert gw.stop(signal.SIGTERM, timeout=5) == 0
    doc = mqtt.wait_for(result, timeout=5).json()
    assert doc == {"error": "gateway stopping"}, doc
    mark = mqtt.mark()
    gw.respawn()
    mqtt.wait_for(gw.topic("bridge", "state"), lambda m: m.payload == b"online",
                  timeout=15, start=mark)
    stats = mqtt.wait_for(gw.topic("bridge", "stats"), timeout=5, start=mark).json()
    assert stats["commands_restored"] == 0, stats
    assert stats["commands_journal_skipped"] == 0, stats
    no_more(mqtt, result, 1)
    assert len(mqtt.received(result)) == 1, [m.payload for m in mqtt.received(result)]
