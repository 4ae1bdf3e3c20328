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

import collections
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


def await_all_pushing(s, prefix, n, timeout=60):
    t0 = time.monotonic()
    for i in range(1, n + 1):
        left = max(1, timeout - (time.monotonic() - t0))
        s.wait_for(r"^PUSH %s%d energy \d+ 2\.04$" % (prefix, i), timeout=left)


def await_lines(s, regex, count, timeout=60):
    """Waits for 'count' more simulator lines matching 'regex' (from now):
    the load before a fault, counted in readings rather than seconds, so a
    slow box gets as much of it as a fast one."""
    deadline = time.monotonic() + timeout
    pos = s.mark()
    for _ in range(count):
        _, pos = s.out.wait_line(regex, timeout=max(0.1, deadline - time.monotonic()),
                                 start=pos)


PUSH_ACKED = r"^PUSH \S+ \S+ \d+ 2\.04$"

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
    time.sleep(before_s)    # load before the outage: time under test

    t_down = time.monotonic()
    assert broker.stop() == 0
    time.sleep(outage_s)
    broker.start()
    t_up = time.monotonic()
    watch.wait_connected(15)
    time.sleep(after_s)     # load after it: time under test
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


# --------------------------------------------------------------------------
# b. kill -9 of the gateway during a broker outage

def kill_during_outage(make_gateway, sim, broker, mqtt_factory, psk_file, *, sensors,
                       rate, spooled_s, name):
    prefix = "fb-"
    fleet(psk_file, prefix, sensors)
    faults.unlimit_broker(broker)
    gw = make_gateway()
    watch = subscriber(mqtt_factory, gw, "energy")
    s = push_fleet(sim, prefix, sensors, rate)
    await_all_pushing(s, prefix, sensors)
    await_lines(s, PUSH_ACKED, 2 * sensors * rate)     # about 2 s of load

    assert broker.stop() == 0
    mark = s.mark()
    time.sleep(spooled_s)   # pushes taken in with the broker away: time under test
    # Readings were acknowledged while the broker was away (the spool).
    during = [m for m in s.out.find(r"^PUSH \S+ energy \d+ 2\.04$", mark)]
    assert during, "no push acknowledged during the outage"
    gw.expect_death = True
    assert gw.stop(signal.SIGKILL) == -signal.SIGKILL
    t_kill = time.monotonic()
    # The devices' view is now final: what they were told is acknowledged.
    assert s.stop() == 0
    acked, failed = faults.device_acks(s)

    gw.respawn()
    broker.start()
    gw.log.wait_for(r"ready:", timeout=30)
    v = faults.wait_delivered(watch, gw, s, timeout=90)
    took = time.monotonic() - t_kill
    v.report(name, sensors=sensors, rate_per_sensor=rate,
             acked_during_outage=len(during), push_failures=dict(failed),
             recovered_s=round(took, 1))
    v.check()
    replay = gw.log.find(r"spool: (\d+) messages from before the restart")
    assert replay, "the restarted gateway replayed nothing from its spool"


@pytest.mark.timeout(150)
def test_kill9_during_broker_outage_short(make_gateway, sim, broker, mqtt_factory, psk_file):
    kill_during_outage(make_gateway, sim, broker, mqtt_factory, psk_file,
                       sensors=10, rate=10, spooled_s=5, name="b-kill9-short")


@SOAK
@pytest.mark.timeout(600)
def test_kill9_during_broker_outage_soak(make_gateway, sim, broker, mqtt_factory, psk_file):
    kill_during_outage(make_gateway, sim, broker, mqtt_factory, psk_file,
                       sensors=100, rate=10, spooled_s=30, name="b-kill9-soak")


@pytest.mark.timeout(120)
def test_kill9_under_load_broker_up(make_gateway, sim, broker, mqtt_factory, psk_file):
    """kill -9 while QoS 1 publishes are in flight (no PUBACK yet)."""
    prefix = "fk-"
    fleet(psk_file, prefix, 10)
    faults.unlimit_broker(broker)
    gw = make_gateway()
    watch = subscriber(mqtt_factory, gw, "energy")
    s = push_fleet(sim, prefix, 10, 20)
    await_all_pushing(s, prefix, 10)
    await_lines(s, PUSH_ACKED, 4 * 10 * 20)              # about 4 s of load
    gw.expect_death = True
    assert gw.stop(signal.SIGKILL) == -signal.SIGKILL
    assert s.stop() == 0
    gw.respawn()
    gw.log.wait_for(r"ready:", timeout=30)
    v = faults.wait_delivered(watch, gw, s, timeout=60)
    v.report("b-kill9-broker-up", sensors=10, rate_per_sensor=20)
    v.check()


# --------------------------------------------------------------------------
# d. a device reboots onto the same source port

def observed_all(s, ident, paths, start, timeout):
    for p in paths:
        s.wait_for(r"^OBSERVED %s %s$" % (ident, p), timeout=timeout, start=start)


def observed_times(s, idents, paths, mark, t0, timeout):
    """{id: seconds from t0 until every path of it was observed again},
    polled so that each device gets its own time."""
    back = {}
    deadline = t0 + timeout
    while len(back) < len(idents):
        seen = {(m.group(1), m.group(2)) for m in s.out.find(r"^OBSERVED (\S+) (\S+)$", mark)}
        now = time.monotonic()
        for ident in idents:
            if ident not in back and all((ident, p) in seen for p in paths):
                back[ident] = now - t0
        if now > deadline:
            missing = sorted(set(idents) - set(back))
            raise c2m.Timeout("observations not back after %.0fs: %s" % (timeout, missing))
        time.sleep(0.1)
    return back


def reboot_times(s, idents, paths, timeout):
    """{id: seconds from its REBOOT line until all its paths were OBSERVED
    after it}, polled so that each device gets its own time."""
    rebooted, back = {}, {}
    seen = {i: set() for i in idents}
    pos = 0
    deadline = time.monotonic() + timeout
    while len(back) < len(idents):
        now = time.monotonic()
        lines = s.out.lines[pos:]
        pos += len(lines)
        for line in lines:
            f = line.split()
            if len(f) >= 2 and f[1] in seen:
                if f[0] == "REBOOT":
                    rebooted[f[1]] = now
                elif f[0] == "OBSERVED" and f[1] in rebooted and len(f) == 3:
                    seen[f[1]].add(f[2])
        for ident in rebooted:
            if ident not in back and seen[ident] >= set(paths):
                back[ident] = now - rebooted[ident]
        if now > deadline:
            raise c2m.Timeout("not back after a reboot: %s" % sorted(set(idents) - set(back)))
        time.sleep(0.1)
    return back


def reboot_same_port(make_gateway, sim, mqtt, psk_file, *, sensors, name):
    prefix = "fd-"
    fleet(psk_file, prefix, sensors)
    gw = make_gateway()
    port = c2m.free_port(c2m.socket.SOCK_DGRAM)
    paths = ("temperature", "humidity", "setpoint")
    s = sim("hvac", count=sensors,
            extra_args=["--prefix", prefix, "--port", str(port), "--reboot-after", "4",
                        "--interval", "500"])
    mqtt.subscribe(gw.topic("bridge", "stats"))
    # Timed from each REBOOT line as it appears, so polling starts at once.
    back = reboot_times(s, [prefix + str(i) for i in range(1, sensors + 1)], paths, 60)
    worst = max(back.values())
    for i in range(1, sensors + 1):     # each was observed before it rebooted too
        assert len(s.out.find(r"^OBSERVED %s%d " % (prefix, i))) >= 2 * len(paths)
    mark = mqtt.mark()
    mqtt.wait_for(gw.topic(prefix + "1", "temperature"), timeout=10, start=mark)
    # Every reboot is behind us: the next stats the gateway makes count them.
    resets = c2m.find_counters(faults.fresh_stats(mqtt, gw), r"sessions_reset")
    doc = {"sensors": sensors, "worst_back_s": round(worst, 2),
           "median_back_s": round(sorted(back.values())[len(back) // 2], 2), "stats": resets}
    print("FAULTS %s %s" % (name, faults.json.dumps(doc)))
    faults.record(name, doc)
    assert worst < 10, "observations back after %.1fs" % worst


@pytest.mark.timeout(90)
def test_reboot_same_port_short(make_gateway, sim, mqtt, psk_file):
    reboot_same_port(make_gateway, sim, mqtt, psk_file, sensors=3, name="d-reboot-short")


@SOAK
@pytest.mark.timeout(300)
def test_reboot_same_port_soak(make_gateway, sim, mqtt, psk_file):
    reboot_same_port(make_gateway, sim, mqtt, psk_file, sensors=50, name="d-reboot-soak")


# --------------------------------------------------------------------------
# e. the gateway restarts: every device's observations come back

def gateway_restart(make_gateway, sim, mqtt, psk_file, *, sensors, sig, lifetime, limit, name):
    prefix = "fe-"
    fleet(psk_file, prefix, sensors)
    gw = make_gateway()
    paths = ("energy", "power")
    s = sim("meter", count=sensors,
            extra_args=["--prefix", prefix, "--interval", "1000", "--lifetime", str(lifetime)])
    for i in range(1, sensors + 1):
        observed_all(s, prefix + str(i), paths, 0, 30)
    # Notifications flowing (about 2 s of them) before the stop.
    await_lines(s, r"^NOTIFY %s\d+ (energy|power) \d+$" % prefix, 2 * sensors * len(paths))
    if sig == signal.SIGKILL:
        gw.expect_death = True
        assert gw.stop(sig) == -sig
    else:
        assert gw.stop(sig) == 0
    mark = s.mark()
    t0 = time.monotonic()
    gw.respawn()
    back = observed_times(s, [prefix + str(i) for i in range(1, sensors + 1)], paths,
                          mark, t0, limit + 30)
    worst = max(back.values())
    # And readings flow again, through the new process.
    mm = mqtt.mark()
    mqtt.wait_for(gw.topic(prefix + "1", "energy"), timeout=10, start=mm)
    errors = [m.group(0) for m in s.out.find(r"^ERROR \S+ .*$", mark)][:5]
    doc = {"sensors": sensors, "signal": signal.Signals(sig).name, "lifetime_s": lifetime,
           "worst_back_s": round(worst, 1),
           "median_back_s": round(sorted(back.values())[len(back) // 2], 1),
           "how_devices_noticed": errors}
    print("FAULTS %s %s" % (name, faults.json.dumps(doc)))
    faults.record(name, doc)
    assert worst < limit, "observations back after %.1fs (want < %ds)" % (worst, limit)


@pytest.mark.timeout(120)
def test_gateway_restart_short(make_gateway, sim, mqtt, psk_file):
    """Graceful restart (systemctl restart): DTLS close_notify tells the
    devices at once."""
    gateway_restart(make_gateway, sim, mqtt, psk_file, sensors=10, sig=signal.SIGTERM,
                    lifetime=300, limit=60, name="e-restart-short")


# After kill -9 nothing tells the devices: the new process silently drops
# DTLS records of sessions it never had.  A device notices only when a CON
# message of its own goes unacknowledged through the whole RFC 7252 backoff
# (MAX_TRANSMIT_WAIT: 2 s x 1..1.5 x 31 = 62..93 s), then re-handshakes,
# re-registers and is observed again.  The limit is that bound plus the
# reading interval and a reconnect, not the 60 s of a graceful restart.
CRASH_LIMIT = 93 + 1 + 6


@pytest.mark.timeout(240)
def test_gateway_crash_restart_short(make_gateway, sim, mqtt, psk_file):
    """kill -9 and restart: the devices learn it only from their own CON
    timeouts (RFC 7252 backoff) - this measures that path."""
    gateway_restart(make_gateway, sim, mqtt, psk_file, sensors=10, sig=signal.SIGKILL,
                    lifetime=60, limit=CRASH_LIMIT, name="e-crash-restart-short")


@SOAK
@pytest.mark.timeout(400)
def test_gateway_restart_soak(make_gateway, sim, mqtt, psk_file):
    gateway_restart(make_gateway, sim, mqtt, psk_file, sensors=100, sig=signal.SIGTERM,
                    lifetime=300, limit=60, name="e-restart-soak")


# --------------------------------------------------------------------------
# c and f run inside a private network namespace (nftables loss, tc tbf).
# The fixture must come first in a test's arguments: the broker, gateway
# and simulators started after it live in the namespace.

@pytest.fixture
def netns():
    why = faults.netns_available()
    if why:
        pytest.skip(why)
    try:
        ns = faults.Netns("c2m-%d-%d" % (os.getpid(), int(time.monotonic() * 1000) % 100000))
    except (OSError, RuntimeError) as e:
        pytest.skip("cannot create a network namespace: %s" % e)
    yield ns
    ns.leave()


# --------------------------------------------------------------------------
# c. 20 % packet loss both ways

ALIVE_WINDOW_S = 45


def lossy_commands(netns, make_gateway, sim, mqtt, psk_file, *, devices, per_device,
                   alive_s, min_success, name):
    prefix = "fc-"
    fleet(psk_file, prefix, devices)
    gw = make_gateway()
    netns.udp_loss(gw.port, 20)
    s = sim("hvac", count=devices,
            extra_args=["--prefix", prefix, "--interval", "1000", "--lifetime", "3600"])
    paths = ("temperature", "humidity", "setpoint")
    for i in range(1, devices + 1):
        observed_all(s, prefix + str(i), paths, 0, 60)

    mqtt.subscribe(gw.topic("bridge", "stats"))
    replies = "c2m-test-replies"     # outside the base: allowed as Response Topic
    mqtt.subscribe(replies + "/#")
    sent = {}          # correlation -> (device, value, time)
    results = {}       # correlation -> [result documents]
    pending = {i: 0 for i in range(1, devices + 1)}   # commands sent per device
    waiting = {}       # device -> correlation awaiting its result
    t0 = time.monotonic()
    pos = 0
    deadline = t0 + per_device * 60 + 120
    while (pending and any(n < per_device for n in pending.values())) or waiting:
        for i in list(pending):
            if i in waiting or pending[i] >= per_device:
                continue
            k = pending[i]
            pending[i] += 1
            corr = "%s%d/%d" % (prefix, i, k)
            value = "%d.%02d" % (k, i % 100)
            mqtt.publish(gw.topic(prefix + str(i), "setpoint", "set"), value.encode(),
                         response_topic="%s/%s%d" % (replies, prefix, i),
                         correlation_data=corr.encode())
            sent[corr] = (prefix + str(i), value, time.monotonic())
            waiting[i] = corr
        end = mqtt.mark()
        new = [m for m in mqtt.messages[pos:end]
               if m.topic.startswith(replies + "/")]
        pos = end
        for m in new:
            corr = (m.prop("CorrelationData") or b"").decode()
            results.setdefault(corr, []).append(m.json())
            dev = int(corr[len(prefix):].split("/")[0]) if corr.startswith(prefix) else None
            if dev in waiting and waiting[dev] == corr:
                del waiting[dev]
        assert time.monotonic() < deadline, "commands still without result: %s" % waiting
        time.sleep(0.05)
    commands_s = time.monotonic() - t0

    # A late duplicate result would show up here: a window for something
    # that must not happen has no event to wait for.
    time.sleep(3)
    for m in [m for m in mqtt.messages[pos:mqtt.mark()] if m.topic.startswith(replies + "/")]:
        corr = (m.prop("CorrelationData") or b"").decode()
        results.setdefault(corr, []).append(m.json())
    n = len(sent)
    ok = sum(1 for c in sent if results.get(c) and results[c][0].get("code", "").startswith("2."))
    errors = [results[c][0] for c in sent if results.get(c) and "code" not in results[c][0]]
    multi = {c: r for c, r in results.items() if len(r) != 1}
    missing = [c for c in sent if c not in results]
    unknown = [c for c in results if c not in sent]
    puts = collections.Counter(m.group(1) + " " + m.group(2)
                               for m in s.out.find(r"^PUT (\S+) setpoint \d+ (\S+)$"))

    # Observations still alive: every resource notifies again after alive_s.
    time.sleep(alive_s)     # loss goes on: time under test
    mark = mqtt.mark()
    want = {gw.topic(prefix + str(i), p) for i in range(1, devices + 1)
            for p in ("temperature", "humidity")}
    for t in want:
        mqtt.subscribe(t)
    # Alive, not prompt: the device itself holds every notification while
    # one of its CON notifications is unacknowledged (NSTART = 1), and the
    # gateway's NON re-registration (8 s of silence, then tries after 2,
    # 4, 8, 8 ... s, each failing 36 % of the time at this loss) brings
    # one reading per success.  Five failures in a row (0.6 %) make a
    # 38-52 s gap; a window of 20 s failed 2 runs in 21 that way
    # (docs/RELIABILITY.md).  A dead observation never notifies, and the
    # stalls the fixes removed were 60-93 s long.
    try:
        faults.wait_until(lambda: want <= {m.topic for m in mqtt.received("#", mark)},
                          ALIVE_WINDOW_S, what="a notification of every observed resource")
    except AssertionError:
        pass
    dead = sorted(want - {m.topic for m in mqtt.received("#", mark)})
    stats = faults.last_stats(mqtt, gw) or {}
    doc = {"commands": n, "succeeded": ok, "success_pct": round(100.0 * ok / n, 2),
           "errors": errors[:10], "results_not_one": len(multi), "no_result": len(missing),
           "commands_s": round(commands_s, 1), "alive_after_s": alive_s,
           "dead_observations": dead, "loss_drops": netns.loss_counters(),
           "device_notification_timeouts": len(s.out.find(r"^ERROR \S+ notification timeout")),
           "max_puts_of_one_value": max(puts.values()) if puts else 0,
           "gw_stats": c2m.find_counters(stats, r"command|reregist|stale|dup|retrans|acks_repeated")}
    print("FAULTS %s %s" % (name, faults.json.dumps(doc, sort_keys=True)))
    faults.record(name, doc)
    assert not missing, "commands without a result: %s" % missing[:20]
    assert not multi, "commands with more than one result: %s" % list(multi.items())[:10]
    assert not unknown, "results for commands never sent: %s" % unknown[:10]
    assert ok >= min_success * n, "%d of %d commands succeeded" % (ok, n)
    assert not dead, "observations dead after %ds of loss: %s" % (alive_s, dead)
    # Devices repeated CON notifications whose ACK was lost, and the
    # gateway sent those ACKs again (devices.c, device_con_response_seen).
    assert stats.get("acks_repeated", 0) > 0, \
        "no ACK sent again under loss: %s" % c2m.find_counters(stats, r"acks|stale")


# 100 commands: at 20 % loss each way one exchange succeeds with p = 0.64,
# so a command times out after 5 transmissions with p = 0.36^5 = 0.6 %.  The
# issue's 99 % is a statistical figure for 1,000 commands (soak); a sample of
# 100 allows 3 timeouts (P(more) < 2 %), so the short run is not flaky.
@pytest.mark.timeout(400)
def test_packet_loss_short(netns, make_gateway, sim, mqtt, psk_file):
    lossy_commands(netns, make_gateway, sim, mqtt, psk_file, devices=10, per_device=10,
                   alive_s=30, min_success=0.97, name="c-loss-short")


@SOAK
@pytest.mark.timeout(1500)
def test_packet_loss_soak(netns, make_gateway, sim, mqtt, psk_file):
    lossy_commands(netns, make_gateway, sim, mqtt, psk_file, devices=20, per_device=50,
                   alive_s=300, min_success=0.99, name="c-loss-soak")


# --------------------------------------------------------------------------
# f. broker throttled under full load: memory stays bounded

def quiet_asan(monkeypatch):
    """ASan keeps freed memory in a quarantine (256 MiB by default) that
    would count as RSS and hide the gateway's own bound: shrink it."""
    env = c2m.gateway_env

    def patched():
        e = env()
        e["ASAN_OPTIONS"] = e.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=1"
        return e
    monkeypatch.setattr(c2m, "gateway_env", patched)


def spool_disk_bytes(gw):
    d = os.path.join(gw.state_dir, "spool")
    total = 0
    for n in os.listdir(d) if os.path.isdir(d) else ():
        if n.endswith(".seg"):
            try:
                total += os.path.getsize(os.path.join(d, n))
            except OSError:
                pass
    return total


def throttled_broker(netns, monkeypatch, make_gateway, sim, broker, mqtt_factory, psk_file, *,
                     sensors, rate, payload, load_s, max_messages, name):
    quiet_asan(monkeypatch)
    prefix = "ff-"
    fleet(psk_file, prefix, sensors)
    faults.unlimit_broker(broker)
    gw = make_gateway(overrides={"queue": {"max_messages": max_messages}})
    watch = subscriber(mqtt_factory, gw, "energy")
    pid = gw.proc.pid
    s = push_fleet(sim, prefix, sensors, rate, ["--payload-size", str(payload)])
    await_all_pushing(s, prefix, sensors)
    await_lines(s, PUSH_ACKED, 2 * sensors * rate)     # about 2 s of load
    rss_before = faults.rss_kib(pid)
    netns.throttle_tcp_port(broker.port)
    samples = []            # (t, rss KiB, spool bytes on disk)
    t0 = time.monotonic()
    while time.monotonic() - t0 < load_s:
        assert gw.running(), "gateway died under load"
        samples.append((time.monotonic() - t0, faults.rss_kib(pid), spool_disk_bytes(gw)))
        time.sleep(1)
    netns.unthrottle()
    t_free = time.monotonic()
    assert s.stop() == 0
    v = faults.wait_delivered(watch, gw, s, timeout=600)
    drain = time.monotonic() - t_free
    # The memory queue is full once the spool starts to grow on disk; from
    # there on RSS must stay flat while the disk backlog keeps growing.
    growth = [x for x in samples if x[2] > samples[0][2] + 4 * payload * max_messages]
    base = growth[0] if growth else samples[-1]
    rss_peak = max(x[1] for x in samples)
    rss_late = max(x[1] for x in samples if x[0] >= base[0])
    disk_peak = max(x[2] for x in samples)
    _, failed = faults.device_acks(s)
    doc = v.report(name, sensors=sensors, rate_per_sensor=rate, payload=payload,
                   max_messages=max_messages, load_s=load_s,
                   rss_before_kib=rss_before, rss_at_backlog_kib=base[1],
                   rss_peak_kib=rss_peak, rss_growth_during_backlog_kib=rss_late - base[1],
                   spool_peak_bytes=disk_peak, drain_s=round(drain, 1),
                   push_failures=dict(failed),
                   samples=[(round(t), r, d) for t, r, d in samples[::max(1, len(samples) // 20)]])
    v.check()
    assert growth, "the throttle never built a disk backlog (spool peak %d bytes)" % disk_peak
    backlog_growth = disk_peak - base[2]
    # Holding the disk backlog in memory would cost at least its size.
    assert (rss_late - base[1]) * 1024 < max(8 << 20, backlog_growth // 4), (
        "RSS grew %d KiB while the disk backlog grew %d KiB"
        % (rss_late - base[1], backlog_growth // 1024))
    return doc


@pytest.mark.timeout(300)
def test_throttled_broker_memory_short(netns, monkeypatch, make_gateway, sim, broker,
                                       mqtt_factory, psk_file):
    throttled_broker(netns, monkeypatch, make_gateway, sim, broker, mqtt_factory, psk_file,
                     sensors=20, rate=20, payload=2000, load_s=30, max_messages=1000,
                     name="f-throttle-short")


@SOAK
@pytest.mark.timeout(1200)
def test_throttled_broker_memory_soak(netns, monkeypatch, make_gateway, sim, broker,
                                      mqtt_factory, psk_file):
    throttled_broker(netns, monkeypatch, make_gateway, sim, broker, mqtt_factory, psk_file,
                     sensors=100, rate=10, payload=2000, load_s=180, max_messages=1000,
                     name="f-throttle-soak")


# --------------------------------------------------------------------------
# c, narrowed down: only the gateway's datagrams are lost (its ACKs).  A
# device whose CON notification was not acknowledged retransmits it with
# the same message id; the gateway must acknowledge the duplicate.  While
# it does not, libcoap on the device holds back every further CON (and
# every fifth NON) notification of that session (NSTART = 1) for the whole
# RFC 7252 backoff, 62..93 s, then drops the observer.

@pytest.mark.timeout(150)
def test_lost_acks_do_not_stall_observations(netns, make_gateway, sim, mqtt, psk_file):
    prefix = "fs-"
    devices, run_s, max_gap = 5, 40, 20
    fleet(psk_file, prefix, devices)
    gw = make_gateway()
    netns.udp_loss(gw.port, 20, directions=("sport",))
    topic = gw.topic("+", "temperature")
    mqtt.subscribe(topic)
    s = sim("hvac", count=devices,
            extra_args=["--prefix", prefix, "--interval", "500", "--lifetime", "3600"])
    for i in range(1, devices + 1):
        observed_all(s, prefix + str(i), ("temperature",), 0, 60)
    mark = mqtt.mark()
    t0 = time.monotonic()
    time.sleep(run_s)       # notifications under loss: time under test
    t1 = time.monotonic()
    gaps = {}
    for i in range(1, devices + 1):
        times = [t0] + [m.received for m in mqtt.received(gw.topic(prefix + str(i), "temperature"),
                                                          mark)] + [t1]
        gaps[prefix + str(i)] = round(max(b - a for a, b in zip(times, times[1:])), 1)
    doc = {"devices": devices, "seconds": run_s, "loss": "20 % gateway->device only",
           "longest_silence_s": gaps,
           "device_notification_timeouts": len(s.out.find(r"^ERROR \S+ notification timeout"))}
    print("FAULTS c-lost-acks %s" % faults.json.dumps(doc, sort_keys=True))
    faults.record("c-lost-acks", doc)
    stalled = {d: g for d, g in gaps.items() if g > max_gap}
    assert not stalled, ("temperature notifications (every 500 ms) silent for more than "
                         "%d s: %s" % (max_gap, stalled))
