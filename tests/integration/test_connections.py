"""
mqtt.connections (issue 14, item 2): readings sharded by device over
several broker connections, each with its own Receive Maximum.  Real
mosquitto (its log shows which client published what), the real daemon,
real simulated sensors; the per-device order and the no-loss promise are
judged as in test_faults.py (faults.Verdict).

Runs on MQTT 3.1.1 too (Makefile MQTT311_SUITES, C2M_MQTT_PROTOCOL=3.1.1).
"""

import collections
import re
import signal
import socket
import struct

import pytest

import c2m
import faults
from test_cli import EX_CONFIG, run, write_conf
from test_commands import ready_hvac
from test_instances import start_instance
from test_faults import PUSH_ACKED, await_all_pushing, await_lines, fleet, push_fleet, \
    subscriber

N = 4
# mosquitto (log_type all): who published on which topic.
BROKER_PUBLISH = re.compile(r"Received PUBLISH from (\S+) \(d\d, q\d, r\d, m\d+, '([^']*)'")
BROKER_SENDS = re.compile(r"Sending PUBLISH to (\S+) \(d\d, q\d, r\d, m\d+, '([^']*)'")


def client_ids(gw, n=N):
    return [gw.client_id] + ["%s-%d" % (gw.client_id, i) for i in range(2, n + 1)]


def await_connections(broker, gw, n=N, start=0, timeout=20):
    """Every one of the gateway's client ids connected to this broker run
    (mosquitto logs "New client connected from ... as <id>")."""
    for cid in client_ids(gw, n):
        broker.log.wait_for(r"New client connected from \S+ as %s " % re.escape(cid),
                            timeout=timeout, start=start)


def start_fleet(make_gateway, sim, mqtt_factory, psk_file, prefix, sensors, rate,
                overrides=None):
    fleet(psk_file, prefix, sensors)
    gw = make_gateway(overrides=dict({"mqtt": {"connections": N}}, **(overrides or {})))
    watch = subscriber(mqtt_factory, gw, "energy")
    s = push_fleet(sim, prefix, sensors, rate)
    await_all_pushing(s, prefix, sensors)
    return gw, watch, s


def publishers_by_device(broker_logs, gw):
    """{device: {client id}} of the readings the broker received."""
    by_dev = collections.defaultdict(set)
    prefix = gw.base + "/"
    for log in broker_logs:
        for m in BROKER_PUBLISH.finditer(log.text()):
            cid, topic = m.group(1), m.group(2)
            if topic.startswith(prefix) and topic.endswith("/energy"):
                by_dev[topic[len(prefix):].split("/")[0]].add(cid)
    return by_dev


def check_sharding(by_dev, gw, devices):
    """Each device on exactly one of the gateway's connections, and every
    connection carrying some."""
    ids = set(client_ids(gw))
    assert set(by_dev) >= set(devices), "no reading seen for %s" % sorted(set(devices) - set(by_dev))
    split = {d: sorted(c) for d, c in by_dev.items() if len(c) != 1}
    assert not split, "devices published over more than one connection: %s" % split
    used = set().union(*by_dev.values())
    assert used <= ids, "readings from unknown clients: %s" % sorted(used - ids)
    assert used == ids, "connections that carried no reading: %s" % sorted(ids - used)


# --------------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_four_connections_readings_complete_in_order(make_gateway, sim, broker,
                                                     mqtt_factory, psk_file):
    """connections = 4: the broker sees four clients; 32 sensors' CON
    pushes all arrive, in order per device, each device always through
    the same one of the four, and all four carry readings."""
    prefix, sensors = "cn-", 32
    gw, watch, s = start_fleet(make_gateway, sim, mqtt_factory, psk_file, prefix,
                               sensors, 10)
    await_connections(broker, gw)
    await_lines(s, PUSH_ACKED, 10 * sensors)
    assert s.stop() == 0
    v = faults.wait_delivered(watch, gw, s, timeout=60)
    v.report("connections-4", sensors=sensors)
    v.check()
    assert len(v.acked) >= 4 * sensors     # the meter pushes other resources too
    check_sharding(publishers_by_device([broker.log], gw), gw,
                   ["%s%d" % (prefix, i) for i in range(1, sensors + 1)])
    # No Local spares only a connection's own publications: the readings
    # of the other three must not come back to the primary's subscriptions.
    echoed = [m.group(2) for m in BROKER_SENDS.finditer(broker.log.text())
              if m.group(1) in client_ids(gw) and m.group(2).endswith("/energy")]
    assert not echoed, "readings sent back to the gateway: %d, e.g. %s" % (len(echoed),
                                                                        echoed[:5])
    stats = faults.fresh_stats(watch, gw)
    assert stats["mqtt_connections"] == N and stats["mqtt_connections_up"] == N
    assert stats["mqtt_connected"] is True
    peaks = stats["mqtt_inflight_peak_per_connection"]
    assert len(peaks) == N and all(p > 0 for p in peaks), peaks


@pytest.mark.timeout(150)
def test_broker_restart_order_and_no_loss(make_gateway, sim, broker, mqtt_factory,
                                          psk_file):
    """connections = 4, the broker away under load and back: every
    acknowledged reading arrives, per device in order, and all four
    connections come back."""
    prefix, sensors, rate = "cr-", 16, 10
    faults.unlimit_broker(broker)
    gw, watch, s = start_fleet(make_gateway, sim, mqtt_factory, psk_file, prefix,
                               sensors, rate)
    await_lines(s, PUSH_ACKED, 2 * sensors * rate)
    before = broker.log
    assert broker.stop() == 0
    # Readings acknowledged while the broker is away (the spool).
    await_lines(s, PUSH_ACKED, 2 * sensors * rate)
    broker.start()
    await_connections(broker, gw)
    watch.wait_connected(15)
    await_lines(s, PUSH_ACKED, 2 * sensors * rate)
    assert s.stop() == 0
    v = faults.wait_delivered(watch, gw, s, timeout=60)
    v.report("connections-4-broker-restart", sensors=sensors, rate_per_sensor=rate)
    v.check()
    check_sharding(publishers_by_device([before, broker.log], gw), gw,
                   ["%s%d" % (prefix, i) for i in range(1, sensors + 1)])


@pytest.mark.timeout(150)
def test_kill9_during_outage_replays_in_order(make_gateway, sim, broker, mqtt_factory,
                                              psk_file):
    """connections = 4: kill -9 of the gateway during a broker outage; the
    restarted gateway replays its spool over its four connections with
    nothing lost and per-device order kept."""
    prefix, sensors, rate = "ck-", 16, 10
    faults.unlimit_broker(broker)
    gw, watch, s = start_fleet(make_gateway, sim, mqtt_factory, psk_file, prefix,
                               sensors, rate)
    await_lines(s, PUSH_ACKED, 2 * sensors * rate)
    assert broker.stop() == 0
    await_lines(s, PUSH_ACKED, 2 * sensors * rate)
    gw.expect_death = True
    assert gw.stop(signal.SIGKILL) == -signal.SIGKILL
    assert s.stop() == 0
    gw.respawn()
    broker.start()
    gw.log.wait_for(r"spool: \d+ messages from before the restart", timeout=30)
    v = faults.wait_delivered(watch, gw, s, timeout=90)
    v.report("connections-4-kill9", sensors=sensors, rate_per_sensor=rate)
    v.check()


def take_over(broker, client_id):
    """Connects with 'client_id' (MQTT 3.1.1, clean session) and leaves:
    the broker closes the gateway's connection of that id (a session
    takeover), as a network fault on that one connection would."""
    cid = client_id.encode()
    var = b"\x00\x04MQTT\x04\x02\x00\x3c"
    payload = struct.pack("!H", len(cid)) + cid
    body = var + payload
    assert len(body) < 128
    with socket.create_connection(broker.address, timeout=5) as sock:
        sock.sendall(bytes([0x10, len(body)]) + body)
        ack = sock.recv(4)
        assert ack[:1] == b"\x20", ack
        sock.sendall(b"\xe0\x00")       # DISCONNECT


@pytest.mark.timeout(150)
def test_one_connection_lost_under_load(make_gateway, sim, broker, mqtt_factory, psk_file):
    """connections = 4: one publish-only connection is cut twice under load
    (its client id taken over) and reconnects; the other connections go
    on, and nothing is lost or reordered."""
    prefix, sensors, rate = "cl-", 16, 10
    gw, watch, s = start_fleet(make_gateway, sim, mqtt_factory, psk_file, prefix,
                               sensors, rate)
    victim = client_ids(gw)[2]
    for _ in range(2):
        await_lines(s, PUSH_ACKED, sensors * rate)
        mark = gw.log.mark()
        take_over(broker, victim)
        gw.log.wait_for(r"mqtt\[3\]: connection lost", timeout=10, start=mark)
        gw.log.wait_for(r"mqtt\[3\]: connected to", timeout=15, start=mark)
    await_lines(s, PUSH_ACKED, sensors * rate)
    assert s.stop() == 0
    v = faults.wait_delivered(watch, gw, s, timeout=60)
    v.report("connections-4-one-lost", sensors=sensors, rate_per_sensor=rate)
    v.check()
    assert not gw.log.find(r"^.*mqtt: connection lost"), "the primary was cut too"


@pytest.mark.parametrize("instance", [None, "gw-a"])
@pytest.mark.timeout(90)
def test_commands_with_four_connections(make_gateway, sim, broker, mqtt, instance):
    """connections = 4, alone and as an mqtt.instance: a /set reaches the
    device and its result comes back (the primary subscribes to the command
    topics), and none of the gateway's readings, published over all four
    connections, is sent back to it."""
    over = {"mqtt": {"connections": N}}
    if instance:
        gw = start_instance(make_gateway, mqtt, instance, over)
    else:
        gw = make_gateway(overrides=over)
    await_connections(broker, gw)
    s, setpoint = ready_hvac(gw, sim, mqtt, ["--interval", "200"])
    for value in ("21.5", "22.5"):
        mark, smark = mqtt.mark(), s.mark()
        mqtt.publish(setpoint + "/set", value.encode())
        s.wait_for(r"^PUT hvac-1 setpoint \d+ %s$" % re.escape(value), timeout=10,
                   start=smark)
        res = mqtt.wait_for(setpoint + "/set/result", timeout=10, start=mark)
        assert res.json()["code"] == "2.04", res.json()
    ids = client_ids(gw)
    echoed = [m.group(2) for m in BROKER_SENDS.finditer(broker.log.text())
              if m.group(1) in ids and m.group(2).startswith(gw.topic("hvac-1"))
              and "/set" not in m.group(2)]
    assert not echoed, "readings sent back to the gateway: %s" % echoed[:5]


# --------------------------------------------------------------------------
# Receive Maximum 20 per connection (Debian's mosquitto default)

def textfile_value(path, name):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("coap2mqtt_%s " % name):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return None


@pytest.fixture
def broker_rm20(broker):
    """The broker restarted with Debian's max_inflight_messages 20 (before
    any client of the test connects)."""
    with open(broker.conf, "a") as f:
        f.write("max_inflight_messages 20\n")
    faults.unlimit_broker(broker)
    assert broker.stop() == 0
    broker.start()
    return broker


@pytest.mark.parametrize("connections", [1, N])
@pytest.mark.timeout(150)
def test_receive_maximum_is_per_connection(broker_rm20, make_gateway, sim, mqtt_factory,
                                           psk_file, tmp_path, connections):
    """mosquitto with max_inflight_messages 20 (Receive Maximum 20).  The
    broker is frozen (SIGSTOP) under load, so no PUBACK comes back: the
    readings in flight (stats.textfile, written every second) rise to the
    window and stay there.  One connection: exactly 20, never more.  Four:
    more than 20 (up to 80).  Then the broker thaws and everything
    acknowledged arrives in order."""
    prefix, sensors, rate = "cm%d-" % connections, 32, 10
    broker = broker_rm20
    prom = str(tmp_path / "c2m.prom")
    mqtt = {"connections": connections}
    if not c2m.GATEWAY_V5:
        # 3.1.1 has no Receive Maximum: the gateway's own window per
        # connection stands in for it.
        mqtt["max_inflight"] = 20
    fleet(psk_file, prefix, sensors)
    gw = make_gateway(overrides={"mqtt": mqtt, "stats": {"textfile": prom}})
    if c2m.GATEWAY_V5:
        gw.log.wait_for(r"broker takes 20 QoS 1 messages in flight", timeout=10)
    watch = subscriber(mqtt_factory, gw, "energy")
    s = push_fleet(sim, prefix, sensors, rate)
    await_all_pushing(s, prefix, sensors)
    await_lines(s, PUSH_ACKED, sensors * rate)

    broker.proc.send_signal(signal.SIGSTOP)
    seen = []
    try:
        def sample():
            v = textfile_value(prom, "mqtt_inflight")
            if v is not None:
                seen.append(v)
            return v

        if connections > 1:
            faults.wait_until(lambda: (sample() or 0) > 20, timeout=30, step=0.1,
                              what="more than 20 in flight")
        else:
            # Saturated: the file rewritten (every second) three times in a
            # row with the same level, most of the window (state publishes
            # take from it too).  Never above 20.
            def steady():
                v = sample()
                return v is not None and v >= 15 and seen[-3:] == [v] * 3
            faults.wait_until(steady, timeout=30, step=1.0, what="a full window")
        assert (max(seen) > 20) == (connections > 1), seen
        assert max(seen) <= 20 * connections, seen
    finally:
        broker.proc.send_signal(signal.SIGCONT)
    assert s.stop() == 0
    v = faults.wait_delivered(watch, gw, s, timeout=60)
    v.report("connections-%d-receive-maximum-20" % connections, sensors=sensors,
             inflight_max=max(seen))
    v.check()


# --------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["0", "17", "\"4\""])
def test_check_refuses_bad_connections(c2m_bin, tmp_path, psk_file, value):
    """-t: file:line: mqtt.connections: reason, for a value out of 1..16."""
    conf = write_conf(str(tmp_path / "bad.conf"), psk_file.path,
                      "  connections = %s;\n" % value)
    with open(conf) as f:
        line = [i for i, l in enumerate(f, 1) if "connections" in l][0]
    rc, out, err = run([c2m_bin, "-t", "-c", conf])
    assert rc == EX_CONFIG, (rc, out, err)
    assert re.search(r"%s:%d: mqtt\.connections: \S" % (re.escape(conf), line),
                     out + err), out + err


def test_check_accepts_connections(c2m_bin, tmp_path, psk_file):
    conf = write_conf(str(tmp_path / "ok.conf"), psk_file.path, "  connections = 16;\n")
    rc, out, err = run([c2m_bin, "-t", "-c", conf])
    assert rc == 0, out + err
