"""Several gateway instances on one broker (mqtt.instance, issue 16): each
subscribes only to the command topics of the devices it holds, claims them
on the retained <base>/bridge/owner/<id>, hands a device (and the commands
waiting for it) over when it re-appears on another instance, and marks the
devices of an instance that died offline.  The two-node RabbitMQ cluster
test with a UDP balancer is test_cluster.py; these run on the conftest's
mosquitto, and again on MQTT 3.1.1 (make test's second pass)."""

import json
import signal

import pytest

import c2m


def start_instance(make_gateway, mqtt, name, overrides=None):
    over = {"mqtt": {"instance": name}}
    for key, val in (overrides or {}).items():
        over.setdefault(key, {}).update(val)
    state = "%s/bridge/%s/state" % (c2m.BASE, name)
    mark = mqtt.mark()
    mqtt.subscribe(state)
    gw = make_gateway(overrides=over, wait=False)
    mqtt.wait_for(state, lambda m: m.payload == b"online", timeout=15, start=mark)
    return gw


def owner_of(mqtt, gw, dev, instance, start=0, timeout=15):
    topic = gw.topic("bridge", "owner", dev)
    return mqtt.wait_for(topic, lambda m: m.payload and
                         json.loads(m.payload)["instance"] == instance,
                         timeout=timeout, start=start)


def results(mqtt, topic, start, n, timeout=10):
    """The JSON of the results on 'topic' since 'start', once there are n;
    then 2 s more must bring no other (a second result for one command)."""
    mqtt._wait_cv(lambda: len(mqtt.received(topic, start)) >= n, timeout,
                  "%d results on %s" % (n, topic))
    with pytest.raises(c2m.Timeout):
        mqtt._wait_cv(lambda: len(mqtt.received(topic, start)) > n, 2,
                      "more than %d results on %s" % (n, topic))
    return [m.json() for m in mqtt.received(topic, start)]


def test_instance_config_names(tmp_path, c2m_bin):
    """Bad instance names and commands.offline values are refused by -t
    with file:line: setting: reason."""
    import subprocess
    for text, needle in (('mqtt = { instance = "a b"; };', "mqtt.instance"),
                         ('mqtt = { instance = "owner"; };', "mqtt.instance"),
                         ('commands = { offline = "drop"; };', "commands.offline")):
        conf = tmp_path / "bad.conf"
        conf.write_text('coap = { plain_listen = [ "127.0.0.1:5683" ]; };\n'
                        'state_dir = "%s";\n%s\n' % (tmp_path, text))
        r = subprocess.run([c2m_bin, "-t", "-c", str(conf)], capture_output=True, text=True)
        assert r.returncode == 78, (text, r.stderr)
        assert "bad.conf:3: %s:" % needle in r.stderr, (text, r.stderr)


def test_commands_reach_only_the_holding_instance(make_gateway, sim, mqtt):
    a = start_instance(make_gateway, mqtt, "gw-a")
    b = start_instance(make_gateway, mqtt, "gw-b")
    mark = mqtt.mark()
    mqtt.subscribe(a.topic("bridge", "owner", "+"))
    sa = sim("hvac", gw=a)
    sb = sim("hvac", gw=b, extra_args=["--first", "2"])
    sa.wait_for(r"^OBSERVED hvac-1 setpoint$", timeout=15)
    sb.wait_for(r"^OBSERVED hvac-2 setpoint$", timeout=15)
    owner_of(mqtt, a, "hvac-1", "gw-a", mark)
    owner_of(mqtt, a, "hvac-2", "gw-b", mark)
    for dev, s in (("hvac-1", sa), ("hvac-2", sb)):
        topic = a.topic(dev, "setpoint")
        mqtt.subscribe(topic + "/set/result")
        m, sm = mqtt.mark(), s.mark()
        mqtt.publish(topic + "/set", b"21.5")
        s.wait_for(r"^PUT %s setpoint 4 21\.5$" % dev, timeout=10, start=sm)
        # A second result (from the instance that does not hold the device:
        # "unknown device") would come right after the first.
        got = results(mqtt, topic + "/set/result", m, 1)
        assert [r.get("code") for r in got] == ["2.04"], got
    with pytest.raises(c2m.Timeout):
        sb.wait_for(r"^PUT hvac-1 ", timeout=0.5)
    # Each instance took the command of its own device only.
    stats = {}
    for gw, name in ((a, "gw-a"), (b, "gw-b")):
        m = mqtt.mark()
        mqtt.subscribe(gw.topic("bridge", name, "stats"))
        stats[name] = mqtt.wait_for(gw.topic("bridge", name, "stats"), timeout=5,
                                    start=m).json()
    assert stats["gw-a"]["commands_in"] == 1, stats
    assert stats["gw-b"]["commands_in"] == 1, stats
    assert stats["gw-a"]["devices_claimed"] == 1 and stats["gw-b"]["devices_claimed"] == 1


def test_device_moves_with_its_commands(make_gateway, sim, mqtt):
    """hvac-1 on gw-a goes silent with a command on the wire and one
    queued; it re-appears on gw-b: gw-b claims it, gw-a answers the one on
    the wire "device moved" and forwards the queued one, which gw-b
    delivers.  Every command has exactly one result."""
    a = start_instance(make_gateway, mqtt, "gw-a")
    b = start_instance(make_gateway, mqtt, "gw-b")
    topic = a.topic("hvac-1", "setpoint")
    mqtt.subscribe(topic + "/set/result")
    mqtt.subscribe(a.topic("bridge", "owner", "+"))
    mqtt.subscribe(a.topic("hvac-1", "availability"))
    first = sim("hvac", gw=a, extra_args=["--lifetime", "600"])
    first.wait_for(r"^OBSERVED hvac-1 setpoint$", timeout=15)
    owner_of(mqtt, a, "hvac-1", "gw-a")
    first.expect_death = True
    first.stop(signal.SIGKILL)          # gone without a word (moved, lost power)
    m = mqtt.mark()
    mqtt.publish(topic + "/set", b"17.0")     # on the wire to a dead session
    mqtt.publish(topic + "/set", b"18.0")     # queued behind it
    second = sim("hvac", gw=b, extra_args=["--lifetime", "600"])
    owner_of(mqtt, a, "hvac-1", "gw-b", m)
    second.wait_for(r"^PUT hvac-1 setpoint 4 18\.0$", timeout=15)
    a.log.wait_for(r"device hvac-1: instance gw-b holds it now", timeout=5)
    got = results(mqtt, topic + "/set/result", m, 2)
    assert sorted(json.dumps(r, sort_keys=True) for r in got if "error" in r) == \
        [json.dumps({"error": "device moved"})], got
    assert sum(1 for r in got if r.get("code") == "2.04") == 1, got
    with pytest.raises(c2m.Timeout):
        second.wait_for(r"^PUT hvac-1 setpoint 4 17\.0$", timeout=0.5)
    avail = mqtt.received(a.topic("hvac-1", "availability"), m)
    assert avail and avail[-1].payload == b"online", avail


def test_killed_instance_devices_marked_offline(make_gateway, sim, mqtt):
    a = start_instance(make_gateway, mqtt, "gw-a", {"mqtt": {"keepalive": 5}})
    b = start_instance(make_gateway, mqtt, "gw-b")
    mqtt.subscribe(a.topic("bridge", "owner", "+"))
    avail = a.topic("hvac-1", "availability")
    mqtt.subscribe(avail)
    s = sim("hvac", gw=a)
    s.wait_for(r"^OBSERVED hvac-1 setpoint$", timeout=15)
    owner_of(mqtt, a, "hvac-1", "gw-a")
    mqtt.wait_for(avail, lambda m: m.payload == b"online", timeout=10)
    m = mqtt.mark()
    a.expect_death = True
    a.stop(signal.SIGKILL)
    # The broker sends gw-a's will within 1.5 keepalives; gw-b marks hvac-1.
    mqtt.wait_for(avail, lambda msg: msg.payload == b"offline", timeout=20, start=m)
    b.log.wait_for(r"instance gw-a is offline: 1 of its devices marked offline", timeout=5)


def test_offline_reject(make_gateway, sim, mqtt):
    """commands.offline = "reject": a device whose availability is offline
    gets {"error":"offline"} at once."""
    gw = make_gateway(overrides={"commands": {"offline": "reject"}})
    s = sim("hvac", extra_args=["--lifetime", "2"])
    s.wait_for(r"^OBSERVED hvac-1 setpoint$", timeout=15)
    avail = gw.topic("hvac-1", "availability")
    mqtt.subscribe(avail)
    s.expect_death = True
    s.stop(signal.SIGKILL)
    mqtt.wait_for(avail, lambda m: m.payload == b"offline", timeout=15)
    topic = gw.topic("hvac-1", "setpoint")
    mqtt.subscribe(topic + "/set/result")
    m = mqtt.mark()
    mqtt.publish(topic + "/set", b"20.0")
    r = mqtt.wait_for(topic + "/set/result", timeout=5, start=m)
    assert r.json() == {"error": "offline"}, r


def instance_stats(mqtt, gw, name, predicate, timeout=10):
    topic = gw.topic("bridge", name, "stats")
    return mqtt.wait_for(topic, lambda m: predicate(m.json()), timeout=timeout).json()


def test_restarted_instance_runs_no_command_twice(make_gateway, sim, mqtt):
    """gw-a stops; its broker session keeps hvac-1's command subscription.
    hvac-1 re-appears on gw-b, and a command for it reaches gw-b and, queued
    in the session, gw-a when it comes back.  gw-a must leave it to gw-b
    (or forward it, and gw-b drop the copy): one PUT, one result."""
    a = start_instance(make_gateway, mqtt, "gw-a")
    b = start_instance(make_gateway, mqtt, "gw-b")
    mqtt.subscribe(a.topic("bridge", "owner", "+"))
    topic = a.topic("hvac-1", "setpoint")
    mqtt.subscribe(topic + "/set/result")
    first = sim("hvac", gw=a, extra_args=["--lifetime", "600"])
    first.wait_for(r"^OBSERVED hvac-1 setpoint$", timeout=15)
    owner_of(mqtt, a, "hvac-1", "gw-a")
    assert a.stop(signal.SIGTERM) == 0
    first.expect_death = True
    first.stop(signal.SIGKILL)
    m = mqtt.mark()
    second = sim("hvac", gw=b, extra_args=["--lifetime", "600"])
    owner_of(mqtt, a, "hvac-1", "gw-b", m)
    second.wait_for(r"^OBSERVED hvac-1 setpoint$", timeout=15)
    m = mqtt.mark()
    mqtt.publish(topic + "/set", b"16.5")
    second.wait_for(r"^PUT hvac-1 setpoint 4 16\.5$", timeout=10)
    mqtt.subscribe(a.topic("bridge", "gw-a", "stats"))
    a.respawn()
    st = instance_stats(mqtt, a, "gw-a",
                        lambda s: s["commands_not_ours"] + s["commands_forwarded"] >= 1,
                        timeout=15)
    got = results(mqtt, topic + "/set/result", m, 1)
    assert [r.get("code") for r in got] == ["2.04"], (got, st)
    assert len(second.out.find(r"^PUT hvac-1 setpoint 4 16\.5$")) == 1
    # gw-a dropped the subscription its old session left: the next command
    # reaches gw-b only (3.1.1: one filter per depth, all of them dropped).
    before = instance_stats(mqtt, a, "gw-a", lambda s: True)["commands_not_ours"]
    m = mqtt.mark()
    mqtt.publish(topic + "/set", b"17.5")
    second.wait_for(r"^PUT hvac-1 setpoint 4 17\.5$", timeout=10)
    results(mqtt, topic + "/set/result", m, 1)
    mark = mqtt.mark()
    later = mqtt.wait_for(a.topic("bridge", "gw-a", "stats"), timeout=5, start=mark).json()
    assert later["commands_not_ours"] == before, (before, later)


def hvac_on_instance(make_gateway, sim, mqtt):
    """gw-b holding hvac-1: (gateway, simulator, setpoint topic, gw-b's
    inbox for it), results subscribed."""
    b = start_instance(make_gateway, mqtt, "gw-b")
    s = sim("hvac", gw=b)
    s.wait_for(r"^OBSERVED hvac-1 setpoint$", timeout=15)
    topic = b.topic("hvac-1", "setpoint")
    mqtt.subscribe(topic + "/set/result")
    return b, s, topic, b.topic("bridge", "gw-b", "forward", "hvac-1", "setpoint", "set")


def test_forwarded_copy_of_a_command_taken_is_dropped(make_gateway, sim, mqtt):
    """The inbox <base>/bridge/<instance>/forward/...: a forwarded command is
    carried out, unless it is a copy of one the instance took itself (both
    holders got it around a hand-over)."""
    b, s, topic, inbox = hvac_on_instance(make_gateway, sim, mqtt)
    m = mqtt.mark()
    mqtt.publish(topic + "/set", b"22.0")
    s.wait_for(r"^PUT hvac-1 setpoint 4 22\.0$", timeout=10)
    mqtt.publish(inbox, b"22.0")            # the old holder's copy
    mqtt.publish(inbox, b"23.0")            # one only the old holder had
    s.wait_for(r"^PUT hvac-1 setpoint 4 23\.0$", timeout=10)
    got = results(mqtt, topic + "/set/result", m, 2)
    assert [r.get("code") for r in got] == ["2.04", "2.04"], got
    assert len(s.out.find(r"^PUT hvac-1 setpoint 4 22\.0$")) == 1
    mqtt.subscribe(b.topic("bridge", "gw-b", "stats"))
    instance_stats(mqtt, b, "gw-b", lambda st: st["commands_duplicate_handover"] == 1)


def test_forwarded_copy_after_a_restart_is_dropped(make_gateway, sim, mqtt):
    """The copy can come after the instance that took the command
    restarted: it waited in its broker session (the old holder forwarded it
    while this one was down).  The ring of commands taken is in state_dir,
    so the copy is still recognised; and a second copy of one command (two
    instances had it in their sessions) is dropped as well (cluster soak:
    such copies ran twice)."""
    b, s, topic, inbox = hvac_on_instance(make_gateway, sim, mqtt)
    m = mqtt.mark()
    for value in (b"21.0", b"22.0"):
        mqtt.publish(topic + "/set", value)
        s.wait_for(r"^PUT hvac-1 setpoint 4 %s$" % value.decode().replace(".", r"\."),
                   timeout=10)
    mqtt.publish(inbox, b"21.0")            # a copy
    mqtt.subscribe(b.topic("bridge", "gw-b", "stats"))
    instance_stats(mqtt, b, "gw-b", lambda st: st["commands_duplicate_handover"] == 1)
    mqtt._wait_cv(lambda: len(mqtt.received(topic + "/set/result", m)) == 2, 5, "2 results")
    # A graceful stop: after kill -9 the spool may publish a result again
    # (at least once), which this test would count.
    assert b.stop(signal.SIGTERM) == 0
    s.expect_death = True
    s.stop(signal.SIGKILL)
    mqtt.publish(inbox, b"23.0")            # waits in gw-b's session
    b.respawn()
    s2 = sim("hvac", gw=b)
    s2.wait_for(r"^PUT hvac-1 setpoint 4 23\.0$", timeout=15)
    mqtt.publish(topic + "/set", b"24.0")   # a new entry after the restart
    s2.wait_for(r"^PUT hvac-1 setpoint 4 24\.0$", timeout=10)
    mqtt.publish(inbox, b"22.0")            # copies: from before the restart,
    mqtt.publish(inbox, b"24.0")            # after it,
    mqtt.publish(inbox, b"21.0")            # and a second one
    got = results(mqtt, topic + "/set/result", m, 4)
    assert [r.get("code") for r in got] == ["2.04"] * 4, got
    assert not s2.out.find(r"^PUT hvac-1 setpoint 4 2[12]\.0$")
    assert len(s2.out.find(r"^PUT hvac-1 setpoint 4 24\.0$")) == 1
    instance_stats(mqtt, b, "gw-b", lambda st: st["commands_duplicate_handover"] == 3)
