"""bridge/state (retained, LWT), graceful stop, bridge/stats, and broker
restarts: the gateway's own presence on the broker."""

import re
import signal
import time

import c2m


def state(gw):
    return gw.topic("bridge", "state")


def test_state_is_retained_online(gateway, mqtt_factory):
    late = mqtt_factory()          # subscribes after the gateway came up
    m = late.wait_for(state(gateway), timeout=5)
    assert m.payload == b"online"
    assert m.retain, "bridge/state must be retained"


def test_graceful_stop_publishes_offline(gateway, sim, mqtt, mqtt_factory):
    s = sim("meter")
    avail = gateway.topic("meter-1", "availability")
    mqtt.wait_payload(avail, "online", timeout=15)
    mark = mqtt.mark()

    t0 = time.monotonic()
    rc = gateway.stop(signal.SIGTERM, timeout=5)
    took = time.monotonic() - t0
    assert rc == 0, "exit code %s after SIGTERM" % rc
    assert took < 2.0, "graceful stop took %.2fs (want < 2 s)" % took

    mqtt.wait_payload(state(gateway), "offline", timeout=5, start=mark)
    mqtt.wait_payload(avail, "offline", timeout=5, start=mark)
    # ...and that is what a newcomer finds, retained.
    late = mqtt_factory()
    assert late.wait_for(state(gateway), timeout=5).payload == b"offline"
    m = late.wait_for(avail, timeout=5)
    assert (m.payload, m.retain) == (b"offline", True)
    s.stop()


def test_stop_answers_queued_commands(gateway, sim, mqtt):
    """A command waiting for a sleeping device gets an error result at
    shutdown instead of vanishing."""
    setpoint = gateway.topic("hvac-1", "setpoint")
    mqtt.subscribe(setpoint + "/set/result")
    s = sim("hvac", extra_args=["--sleep-after", "1", "--sleep-for", "30",
                                "--interval", "60000"])
    s.wait_for(r"^OBSERVED hvac-1 setpoint$", timeout=15)
    s.wait_for(r"^SLEEP hvac-1$", timeout=10)
    mark = mqtt.mark()
    mqtt.publish(setpoint + "/set", b"25.5")
    assert gateway.stop(signal.SIGTERM, timeout=5) == 0
    doc = mqtt.wait_for(setpoint + "/set/result", timeout=5, start=mark).json()
    assert "error" in doc and "code" not in doc, doc
    assert not s.out.find(r"^PUT ")


def test_will_after_sigkill(make_gateway, mqtt):
    gw = make_gateway(overrides={"mqtt": {"keepalive": 5}})
    mark = mqtt.mark()
    gw.expect_death = True
    assert gw.stop(signal.SIGKILL) == -signal.SIGKILL
    # The broker sends the will at the latest 1.5 keepalives after the loss.
    m = mqtt.wait_for(state(gw), lambda m: m.payload == b"offline",
                      timeout=1.5 * 5 + 2, start=mark)
    assert m.payload == b"offline"


def test_will_on_keepalive_timeout_then_recovery(make_gateway, mqtt):
    """A frozen gateway keeps its TCP connection open: only the keepalive
    tells the broker it is gone (after 1.5 x keepalive).  Thawed, it finds
    the connection closed, reconnects and is online again."""
    gw = make_gateway(overrides={"mqtt": {"keepalive": 5}})
    mark = mqtt.mark()
    gw.proc.send_signal(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        # mosquitto 2.0 checks keepalives in its main loop, a few seconds
        # past the 1.5 x keepalive deadline at worst.
        mqtt.wait_for(state(gw), lambda m: m.payload == b"offline",
                      timeout=1.5 * 5 + 8, start=mark)
        took = time.monotonic() - t0
    finally:
        gw.proc.send_signal(signal.SIGCONT)
    assert took > 5, "will after %.1fs, before the keepalive could expire" % took
    mqtt.wait_for(state(gw), lambda m: m.payload == b"online", timeout=15,
                  start=mqtt.mark())


def test_stats_published_every_interval(gateway, mqtt):
    topic = gateway.topic("bridge", "stats")
    first = mqtt.wait_for(topic, timeout=5)
    second = mqtt.wait_for(topic, timeout=5, start=mqtt.mark())
    gap = second.received - first.received
    assert 0.4 < gap < 2.5, "stats_interval = 1 but messages %.2fs apart" % gap
    doc = second.json()
    assert isinstance(doc, dict)
    for name in ("handshakes_failed", "notifications_in", "published"):
        assert c2m.find_counters(doc, r"(^|\.)%s$" % name), \
            "counter %s missing in %s" % (name, doc)
    assert not first.retain


def test_stats_count_activity(gateway, sim, mqtt):
    topic = gateway.topic("meter-1", "energy")
    mqtt.subscribe(topic)
    s = sim("meter", extra_args=["--interval", "200"])
    s.wait_for(r"^OBSERVED meter-1 power$", timeout=15)
    mqtt.wait_for(topic, lambda m: len(mqtt.received(topic)) >= 5, timeout=10)

    def counted(m):
        d = m.json()
        return (d["handshakes_ok"] >= 1 and d["registrations"] >= 1 and
                d["observations_started"] >= 2 and d["notifications_in"] >= 5 and
                d["published"] >= 5)
    d = mqtt.wait_for(gateway.topic("bridge", "stats"), counted, timeout=5,
                      start=mqtt.mark()).json()
    assert d["handshakes_failed"] == 0 and d["rejected_identity"] == 0, d
    assert d["registrations"] == 1, d


def test_reconnects_after_broker_restart(gateway, sim, broker, mqtt_factory):
    # A persistent session: its subscriptions survive the broker restart,
    # so messages the gateway publishes right after reconnecting are kept.
    watch = mqtt_factory(clean_start=False, session_expiry=600)
    for t in (state(gateway), gateway.topic("hvac-1", "#")):
        watch.subscribe(t)
    s = sim("hvac", extra_args=["--interval", "300"])
    s.wait_for(r"^OBSERVED hvac-1 setpoint\b", timeout=15)
    watch.wait_for(gateway.topic("hvac-1", "temperature"), timeout=10)

    assert broker.stop() == 0
    mark = watch.mark()
    broker.start()
    broker.log.wait_for(r"New client connected from .* as %s\b" % re.escape(gateway.client_id),
                        timeout=15)
    # A live "online" (not the retained one from before the restart).
    watch.wait_payload(state(gateway), "online", timeout=15, start=mark)
    assert gateway.running()

    # Resubscribed: a command after the restart goes through.
    cmd = mqtt_factory()
    result = gateway.topic("hvac-1", "setpoint", "set", "result")
    cmd.subscribe(result)
    smark = s.mark()
    cmd.publish(gateway.topic("hvac-1", "setpoint", "set"), b"19.5")
    s.wait_for(r"^PUT hvac-1 setpoint 4 19\.5$", timeout=10, start=smark)
    assert cmd.wait_for(result, timeout=10).json()["code"] == "2.04"
    # Readings flow again.
    watch.wait_for(gateway.topic("hvac-1", "temperature"), timeout=10, start=mark)


def energy_seq(m):
    return m.json()["seq"]


def test_no_reading_lost_across_broker_restart(gateway, sim, broker, mqtt_factory):
    """CON readings are ACKed by the gateway only once safe (PUBACK or
    spool), so a broker outage loses none: meter energy seqs stay gapless."""
    topic = gateway.topic("meter-1", "energy")
    watch = mqtt_factory(clean_start=False, session_expiry=600)
    watch.subscribe(topic, qos=1)
    s = sim("meter", extra_args=["--interval", "200"])
    first = watch.wait_for(topic, timeout=15)

    assert broker.stop() == 0
    # The outage lasts while the sensor sends five more energy readings.
    last = int(s.wait_for(r"^NOTIFY meter-1 energy (\d+)$", timeout=10,
                          start=s.mark()).group(1))
    for _ in range(4):
        last = int(s.wait_for(r"^NOTIFY meter-1 energy (\d+)$", timeout=10,
                              start=s.mark()).group(1))
    broker.start()
    watch.wait_connected(timeout=15)
    watch.wait_for(topic, lambda m: energy_seq(m) >= last + 2, timeout=20)

    seqs = [energy_seq(m) for m in watch.received(topic)]
    unique = []
    for q in seqs:
        if q not in unique:
            unique.append(q)
    assert unique == sorted(unique), "out of order: %s" % seqs
    want = list(range(energy_seq(first), max(unique) + 1))
    missing = sorted(set(want) - set(unique))
    assert not missing, "readings lost across the broker restart: %s (got %s)" % (missing, seqs)
