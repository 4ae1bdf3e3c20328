"""Gateway instances on a real broker cluster behind a UDP balancer (issue
16, item 5).

A private network namespace holds everything: a two-node RabbitMQ cluster
(MQTT 3.1.1; or one mosquitto, the same test on MQTT v5), three gateway
instances on their own 127/8 addresses and one common port, each connected
to a node of its own where there are two, and an nftables balancer: sensors
send to one virtual address, and a DNAT rule in the output hook spreads the
flows over the instances by a hash of source address and port (the source
affinity an IPVS or keepalived balancer gives).  200 sensors: 160 meters
pushing confirmable readings (a 2.04 means "taken"), 40 HVAC units observed
by the gateway and taking setpoint commands.

Then one instance is killed (-9) with commands queued for its devices; the
balancer sends its flows elsewhere (its slots re-mapped, its conntrack
entries deleted, as a health check would), the sensors notice the silence
and handshake again with the others, which claim the devices.  The killed
instance is restarted, as systemd would: its spool drains and the commands
its broker session kept for devices now held elsewhere are forwarded.

Checked: every device is held (claimed on bridge/owner/<id>) again within
one registration lifetime, commands published on one node reach devices
held by instances on the other, every command gets exactly one result (and
one PUT, or none with an error result), no reading acknowledged to a device
(before or after the kill) is missing at the broker, duplicates bounded.
The figures go to stdout ("CLUSTER ...") and to $C2M_FAULTS_REPORT."""

import collections
import json
import os
import re
import signal
import socket
import subprocess
import time
import types

import pytest

import c2m
import faults
import rabbitmq

VIP = "127.77.0.100"
BACKENDS = ["127.77.0.1", "127.77.0.2", "127.77.0.3"]
INSTANCES = ["gw-a", "gw-b", "gw-c"]
# Killed in turn: gw-b first (on the second node where there are two).
VICTIMS = [1, 0, 2]
SLOTS = 6                       # hash buckets; the victim's go to the others
LIFETIME = 60                   # the sensors' registration lifetime (s)
METERS_PER_SIM, METER_SIMS, HVACS = 40, 4, 40
PUT_LINE = re.compile(r"^PUT (\S+) setpoint \d+ (\S+)$")


class Balancer:
    """nftables DNAT of VIP:port to the backends, chosen by a hash of the
    source address and port; conntrack keeps each flow where it started."""

    def __init__(self, ns, port):
        self.ns, self.port = ns, port
        self.initial = [BACKENDS[i % len(BACKENDS)] for i in range(SLOTS)]
        self.restore()

    def restore(self):
        """Every backend back in; flows keep their backend (conntrack), new
        ones (a sensor's new session comes from a new port) spread again."""
        self.slots = list(self.initial)
        self.apply()

    def apply(self):
        mapping = ", ".join("%d : %s" % (i, b) for i, b in enumerate(self.slots))
        # "table" then "delete table": one transaction that replaces the
        # rule whether or not it existed.
        self.ns.nft("table ip c2m_lb\ndelete table ip c2m_lb\n"
                    "table ip c2m_lb {\n  chain out {\n"
                    "    type nat hook output priority -100; policy accept;\n"
                    "    ip daddr %s udp dport %d dnat to jhash ip saddr . udp sport "
                    "mod %d map { %s }\n  }\n}\n" % (VIP, self.port, SLOTS, mapping))

    def remove(self, dead):
        """What a health check does when 'dead' stops answering: its
        buckets to the survivors, its flows forgotten."""
        alive = [b for b in BACKENDS if b != dead]
        n = 0
        for i, b in enumerate(self.slots):
            if b == dead:
                self.slots[i] = alive[n % len(alive)]
                n += 1
        self.apply()
        subprocess.run(["conntrack", "-D", "-p", "udp", "--orig-dst", VIP,
                        "--reply-src", dead], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=20)


@pytest.fixture
def netns():
    reason = faults.netns_available()
    if reason is None and subprocess.run(["which", "conntrack"],
                                         stdout=subprocess.DEVNULL).returncode != 0:
        reason = "conntrack is not installed (make deps installs it)"
    if reason:
        pytest.skip("SKIP: " + reason)
    ns = faults.Netns("c2m-cluster-%d" % os.getpid())
    yield ns
    ns.leave()


@pytest.fixture
def parts(netns):
    """Everything the test starts, stopped in reverse order at teardown."""
    started = []
    yield started
    problems = []
    for kind, obj in reversed(started):
        if kind == "sim":
            obj.stop(signal.SIGTERM)
        elif kind == "gateway":
            rc = obj.stop(signal.SIGTERM, timeout=10)
            if rc != 0 and not obj.expect_death:
                problems.append("%s exited %s" % (obj.name, rc))
            reports = obj.sanitizer_reports()
            if reports:
                problems.append("%s sanitizer report:\n%s" % (obj.name, "\n".join(reports[:20])))
        elif kind == "mqtt":
            obj.close()
        elif kind == "cluster":
            obj.stop()
        elif kind == "broker":
            obj.kill()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def start_brokers(kind, tmp_path, parts):
    """[(host, port) per instance], the MQTT protocol, and two client
    endpoints (on different nodes where there are two)."""
    if kind == "rabbitmq":
        if not rabbitmq.available():
            pytest.skip("SKIP: rabbitmq-server not installed (make deps installs it)")
        cluster = rabbitmq.Cluster(str(tmp_path / "rabbitmq"), n=2)
        parts.append(("cluster", cluster))
        cluster.start()
        nodes = cluster.nodes
        # gw-a and gw-c on the first node, the victim gw-b on the second.
        per_instance = [nodes[0], nodes[1], nodes[0]]
        return per_instance, "3.1.1", nodes
    d = tmp_path / "mosquitto"
    d.mkdir()
    broker = c2m.Broker(str(d))
    parts.append(("broker", broker))
    faults.unlimit_broker(broker)
    broker.stop()
    broker.start()
    return [broker] * 3, "5", [broker, broker]


def write_psk(psk):
    for k in range(1, METERS_PER_SIM * METER_SIMS + 1):
        psk.keys["clm-%d" % k] = "k-clm-%d-%s" % (k, os.urandom(4).hex())
    for k in range(1, HVACS + 1):
        psk.keys["clh-%d" % k] = "k-clh-%d-%s" % (k, os.urandom(4).hex())
    psk.write()


def latest_owners(client, start=0):
    owners = {}
    for m in client.received("%s/bridge/owner/+" % c2m.BASE, start):
        if m.payload:
            owners[m.topic.rsplit("/", 1)[1]] = json.loads(m.payload)["instance"]
    return owners


def command_value(phase, n):
    return "%d.%03d" % (20 + phase, n)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("kind", ["rabbitmq", "mosquitto"])
def test_cluster_failover(kind, tmp_path, netns, parts, c2m_bin, c2m_sim):
    """One instance killed and restarted (make test)."""
    run_cluster(kind, 1, tmp_path, netns, parts, c2m_bin, c2m_sim)


@pytest.mark.soak
@pytest.mark.timeout(900)
@pytest.mark.parametrize("kind", ["rabbitmq", "mosquitto"])
def test_cluster_failover_soak(kind, tmp_path, netns, parts, c2m_bin, c2m_sim):
    """Each of the three instances killed and restarted in turn (make soak)."""
    run_cluster(kind, 3, tmp_path, netns, parts, c2m_bin, c2m_sim)


def run_cluster(kind, rounds, tmp_path, netns, parts, c2m_bin, c2m_sim):
    brokers, protocol, client_nodes = start_brokers(kind, tmp_path, parts)

    def client(node, **kw):
        c = c2m.Mqtt(node.host, node.port, protocol=protocol, **kw)
        parts.append(("mqtt", c))
        return c

    # Watchers on both nodes: what reaches a node from the other is what
    # this test is about.
    watch = client(client_nodes[0])
    watch.subscribe("%s/bridge/owner/+" % c2m.BASE)
    watch.subscribe("%s/bridge/+/state" % c2m.BASE)
    watch.subscribe("%s/+/energy" % c2m.BASE)
    far = client(client_nodes[1])
    far.subscribe("%s/+/setpoint/set/result" % c2m.BASE)

    psk = c2m.PskFile(str(tmp_path / "psk.keys"))
    write_psk(psk)
    port = c2m.free_port(socket.SOCK_DGRAM, BACKENDS[0])
    gateways = []
    for name, host, broker in zip(INSTANCES, BACKENDS, brokers):
        gw = c2m.Gateway(c2m_bin, str(tmp_path), broker, psk, listen_host=host, name=name,
                         overrides={"mqtt": {"instance": name, "protocol": protocol,
                                             "keepalive": 5, "client_id": "c2m-" + name}})
        gw.port = port
        gw.cfg["coap"]["listen"] = ["%s:%d" % (host, port)]
        with open(gw.conf, "w") as f:
            f.write(c2m.libconfig_text(gw.cfg))
        m = watch.mark()
        gw.start()
        parts.append(("gateway", gw))
        gateways.append(gw)
        watch.wait_for("%s/bridge/%s/state" % (c2m.BASE, name),
                       lambda msg: msg.payload == b"online", timeout=20, start=m)
    balancer = Balancer(netns, port)
    vip = types.SimpleNamespace(listen_host=VIP, port=port)

    common = ["--lifetime", LIFETIME, "--max-retransmit", 1]
    meters = []
    for i in range(METER_SIMS):
        s = c2m.Sim(c2m_sim, str(tmp_path), vip, psk, "meter", METERS_PER_SIM,
                    extra_args=common + ["--push", "--con", "--prefix", "clm-",
                                         "--first", 1 + i * METERS_PER_SIM],
                    name="meters%d" % i)
        parts.append(("sim", s))
        meters.append(s)
    hvac = c2m.Sim(c2m_sim, str(tmp_path), vip, psk, "hvac", HVACS,
                   extra_args=common + ["--prefix", "clh-", "--quiet"], name="hvacs")
    parts.append(("sim", hvac))
    devices = (["clm-%d" % k for k in range(1, METERS_PER_SIM * METER_SIMS + 1)] +
               ["clh-%d" % k for k in range(1, HVACS + 1)])

    faults.wait_until(lambda: len(latest_owners(watch)) == len(devices), 60,
                      what="every device claimed by an instance")
    owners = latest_owners(watch)
    spread = collections.Counter(owners.values())
    assert set(spread) == set(INSTANCES), spread      # the balancer spreads
    hv = ["clh-%d" % k for k in range(1, HVACS + 1)]
    faults.wait_until(lambda: all(hvac.out.find(r"^OBSERVED %s setpoint$" % d) for d in hv),
                      30, what="every HVAC unit observed")

    sent = collections.defaultdict(list)        # device -> [values]

    def command(via, phase, dev):
        value = command_value(phase, int(dev.split("-")[1]))
        sent[dev].append(value)
        via.publish("%s/%s/setpoint/set" % (c2m.BASE, dev), value.encode())

    def results_of(dev):
        return [m.json() for m in far.received("%s/%s/setpoint/set/result" % (c2m.BASE, dev))]

    def fail_over(rnd, victim_index):
        """Kills one instance with commands queued for its devices, waits
        for its devices to be held elsewhere, restarts it."""
        name = INSTANCES[victim_index]
        victim = gateways[victim_index]
        owners = latest_owners(watch)
        theirs = sorted(d for d, o in owners.items() if o == name)
        their_hvac = [d for d in theirs if d.startswith("clh-")]
        their_meters = [d for d in theirs if d.startswith("clm-")]
        assert their_meters and their_hvac, collections.Counter(owners.values())

        def taken_by_victim(start_marks, end_marks=None):
            got = set()
            for i, s in enumerate(meters):
                end = end_marks[i] if end_marks else None
                for line in s.out.lines[start_marks[i]:end]:
                    m = faults.PUSH_LINE.match(line)
                    if m and m.group(4) == "2.04" and m.group(1) in theirs:
                        got.add((m.group(1), m.group(2), int(m.group(3))))
            return got
        # Readings flowing through the victim: each of its meters has had
        # one taken since now.
        start = [s.mark() for s in meters]
        faults.wait_until(lambda: {k[0] for k in taken_by_victim(start)} >= set(their_meters),
                          20, what="a reading of each of %s's meters taken" % name)
        mark = watch.mark()
        hvac_mark = hvac.mark()
        kill_marks = [s.mark() for s in meters]
        killed_at = time.monotonic()
        victim.expect_death = True
        victim.stop(signal.SIGKILL)
        balancer.remove(BACKENDS[victim_index])
        acked_before = taken_by_victim([0] * len(meters), kill_marks)
        # Phase 2, while the victim is dead: its devices' commands reach
        # only its broker session (nobody else subscribed to them yet).
        for dev in their_hvac:
            command(pub1, 3 * rnd + 2, dev)

        def rehomed():
            now = latest_owners(watch, mark)
            return all(now.get(d) not in (None, name) for d in theirs)
        faults.wait_until(rehomed, LIFETIME, what="every device of %s claimed by another "
                          "instance within one registration lifetime" % name)
        rehome_s = time.monotonic() - killed_at
        faults.wait_until(lambda: all(hvac.out.find(r"^OBSERVED %s setpoint$" % d, hvac_mark)
                                      for d in their_hvac), 30,
                          what="%s's HVAC units observed again" % name)
        observed_s = time.monotonic() - killed_at
        will = watch.received("%s/bridge/%s/state" % (c2m.BASE, name), mark)
        assert any(m.payload == b"offline" for m in will), will

        # Phase 3: every HVAC unit, published on the second node.
        for dev in hv:
            command(pub1, 3 * rnd + 3, dev)
        # The phase-2 commands still wait in the victim's session.
        faults.wait_until(lambda: all(len(results_of(d)) >= len(sent[d]) - (d in their_hvac)
                                      for d in hv), 30, what="results of phase-3 commands")

        # The victim comes back (systemd would restart it): its spool
        # drains, its session hands over the phase-2 commands, which it
        # forwards to the holders; the balancer takes it back.
        m = watch.mark()
        victim.respawn()
        watch.wait_for("%s/bridge/%s/state" % (c2m.BASE, name),
                       lambda msg: msg.payload == b"online", timeout=20, start=m)
        faults.wait_until(lambda: all(len(results_of(d)) >= len(sent[d]) for d in hv), 60,
                          what="results of the commands queued while %s was dead" % name)
        balancer.restore()
        return {"victim": name, "devices": len(theirs), "hvac": len(their_hvac),
                "rehome_s": round(rehome_s, 1), "observed_again_s": round(observed_s, 1),
                "acked_before": acked_before}

    # Phase 1: commands published on the first node; the victim's devices
    # are held by an instance on the second.
    pub0, pub1 = client(client_nodes[0]), client(client_nodes[1])
    for dev in hv:
        command(pub0, 1, dev)
    faults.wait_until(lambda: all(len(results_of(d)) >= 1 for d in hv), 30,
                      what="a result for every phase-1 command")

    rounds_done = []
    before = set()
    for rnd, victim_index in enumerate(VICTIMS[:rounds]):
        rounds_done.append(fail_over(rnd, victim_index))
        before |= rounds_done[-1].pop("acked_before")

    # Settled: one more command for every HVAC unit, published on the first
    # node, reaches only the instance holding it (a restarted instance
    # dropped the subscriptions its broker session kept from before).
    watch.subscribe("%s/bridge/+/stats" % c2m.BASE)

    def fresh_stats():
        now = int(time.time())
        return {name: watch.wait_for("%s/bridge/%s/stats" % (c2m.BASE, name),
                                     lambda msg: msg.json().get("time", 0) > now,
                                     timeout=10, start=watch.mark()).json()
                for name in INSTANCES}
    faults.wait_until(lambda: all(len(results_of(d)) >= len(sent[d]) for d in hv), 60,
                      what="one result for every command before the last round")
    settled = fresh_stats()
    for dev in hv:
        command(pub0, 3 * rounds + 1, dev)

    # Exactly one result per command, and at most one PUT.
    def all_answered():
        return all(len(results_of(d)) >= len(sent[d]) for d in hv)
    faults.wait_until(all_answered, 60, what="one result for every command")
    try:                                    # a second result would come now
        far._wait_cv(lambda: any(len(results_of(d)) > len(sent[d]) for d in hv), 3,
                     "a second result for a command")
    except c2m.Timeout:
        pass
    final = fresh_stats()
    stray = {n: final[n]["commands_not_ours"] - settled[n]["commands_not_ours"]
             for n in INSTANCES}
    assert not any(stray.values()), "commands reaching an instance that does not " \
        "hold the device, after recovery: %s" % stray
    per_device = {d: results_of(d) for d in hv}
    extra = {d: (sent[d], r) for d, r in per_device.items() if len(r) != len(sent[d])}
    assert not extra, "not exactly one result per command: %s" % extra
    puts = collections.Counter((m.group(1), m.group(2)) for m in hvac.out.find(PUT_LINE))
    twice = {k: n for k, n in puts.items() if n > 1}
    assert not twice, "commands carried out more than once: %s" % twice
    errors = collections.Counter(json.dumps(r, sort_keys=True)
                                 for rs in per_device.values() for r in rs if "error" in r)
    executed = sum(puts.values())
    assert executed + sum(errors.values()) == sum(len(v) for v in sent.values()), (puts, errors)

    # Readings: every one acknowledged to a meter is at the broker.
    for s in meters:
        s.stop(signal.SIGTERM)
    acked = set()
    failed = collections.Counter()      # every resource's pushes not taken
    for s in meters:
        acked |= faults.device_acks(s)[0]
        failed.update(m.group(4) for m in s.out.find(faults.PUSH_LINE)
                      if m.group(4) not in ("2.04", "NON"))

    def verdict():
        return faults.Verdict(acked, faults.broker_readings(watch, gateways[0]))
    faults.wait_until(lambda: not verdict().lost, 60, what="every acknowledged reading")
    v = verdict()
    figures = dict(v.summary(), broker=kind, sensors=len(devices), rounds=rounds_done,
                   victims_acked_before_kill=len(before),
                   commands_sent=sum(len(x) for x in sent.values()),
                   commands_executed=executed, command_errors=dict(errors),
                   instances={n: {k: final[n][k] for k in (
                       "commands_in", "commands_not_ours", "commands_forwarded",
                       "commands_duplicate_handover", "devices_claimed",
                       "devices_handed_over")} for n in INSTANCES},
                   push_failures=dict(failed))
    print("CLUSTER %s" % json.dumps(figures, sort_keys=True))
    faults.record("cluster-failover-%s" % kind, figures)
    assert not v.lost
    # Duplicates: only readings a victim published whose PUBACK it had not
    # yet made durable when it died.
    moved = sum(r["devices"] for r in rounds_done)
    assert v.n_duplicates <= 5 * moved, figures
