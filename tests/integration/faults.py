"""
Helpers of the fault-injection tests (test_faults.py): what the simulated
devices were told (their stdout), what reached the broker (a persistent
MQTT subscriber), the comparison of both, network namespaces with
nftables packet loss and tc rate limits, and the gateway's memory.

Nothing here changes the shared framework (conftest.py, c2m.py); it only
uses its public objects.
"""

import collections
import ctypes
import json
import os
import re
import subprocess
import time

import c2m

# --------------------------------------------------------------------------
# The broker

# mosquitto's default max_queued_messages (1000) drops silently what a
# subscriber's session cannot hold while it reconnects: the tests would
# blame the gateway for the broker's loss.  0 = no limit.
BROKER_EXTRA = "max_queued_messages 0\nmax_queued_bytes 0\n"


def unlimit_broker(broker):
    """Adds BROKER_EXTRA to the broker's config; it applies at the next
    broker.start()."""
    with open(broker.conf) as f:
        text = f.read()
    if BROKER_EXTRA not in text:
        with open(broker.conf, "a") as f:
            f.write(BROKER_EXTRA)


def restart_broker(broker):
    unlimit_broker(broker)
    assert broker.stop() == 0
    broker.start()


# --------------------------------------------------------------------------
# What the devices were told, what the broker got

PUSH_LINE = re.compile(r"^PUSH (\S+) (\S+) (\d+) (\S+)$")


def device_acks(sim, path="energy"):
    """{(id, path, seq)} of pushes the simulator got a 2.04 for, and the
    failures by outcome (timeout, 5.03, ...)."""
    acked, failed = set(), collections.Counter()
    for m in sim.out.find(PUSH_LINE):
        if m.group(2) != path:
            continue
        if m.group(4) == "2.04":
            acked.add((m.group(1), path, int(m.group(3))))
        elif m.group(4) != "NON":
            failed[m.group(4)] += 1
    return acked, failed


def broker_readings(client, gw, path="energy"):
    """[(id, path, seq)] of readings on <base>/+/<path>, in arrival order."""
    out = []
    for m in client.received(gw.topic("+", path)):
        dev = m.topic.split("/")[-2]
        try:
            out.append((dev, path, int(m.json()["seq"])))
        except (ValueError, KeyError, TypeError):
            out.append((dev, path, None))
    return out


class Verdict:
    """The comparison of what devices were told with what the broker got."""

    def __init__(self, acked, received):
        self.acked = acked
        self.received = len(received)
        seen = set()
        self.duplicates = collections.Counter()
        self.disorder = []
        last = {}
        for key in received:
            if key in seen:
                self.duplicates[key] += 1
                continue
            seen.add(key)
            stream = key[:2]
            if key[2] is None or (stream in last and key[2] <= last[stream]):
                self.disorder.append((stream, last.get(stream), key[2]))
            last[stream] = key[2] if key[2] is not None else last.get(stream)
        self.unique = len(seen)
        self.lost = sorted(acked - seen)
        self.streams = len({k[:2] for k in acked})

    @property
    def n_duplicates(self):
        return sum(self.duplicates.values())

    def summary(self):
        return {"acknowledged": len(self.acked), "received": self.received,
                "unique": self.unique, "lost": len(self.lost),
                "duplicates": self.n_duplicates, "out_of_order": len(self.disorder),
                "streams": self.streams}

    def report(self, name, **extra):
        doc = dict(self.summary(), **extra)
        line = "FAULTS %s %s" % (name, json.dumps(doc, sort_keys=True))
        print(line)
        if self.duplicates:
            print("FAULTS %s duplicates (device, path, seq: extra copies): %s"
                  % (name, sorted(self.duplicates.items())[:50]))
        record(name, doc)
        return doc

    def check(self):
        assert not self.lost, "acknowledged but never published (%d): %s" % (
            len(self.lost), self.lost[:40])
        assert not self.disorder, "per-device order broken (%d): %s" % (
            len(self.disorder), self.disorder[:20])


def record(name, doc):
    """Appends a figure to $C2M_FAULTS_REPORT (JSON lines) when set."""
    path = os.environ.get("C2M_FAULTS_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(dict(doc, test=name, time=time.time()), sort_keys=True) + "\n")


def wait_until(pred, timeout, step=0.2, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise c2m.Timeout("timed out after %.0fs waiting for %s" % (timeout, what))
        time.sleep(step)


def wait_delivered(client, gw, sim, timeout, path="energy", idle=30):
    """Waits until every reading the devices were told about is on the
    broker; gives up after 'timeout' s, or earlier when nothing new has
    arrived for 'idle' s (a backlog still draining is not a loss).
    Returns the Verdict."""
    deadline = time.monotonic() + timeout
    last_n, last_t = -1, time.monotonic()
    while True:
        acked, _ = device_acks(sim, path)
        got = broker_readings(client, gw, path)
        v = Verdict(acked, got)
        now = time.monotonic()
        if len(got) != last_n:
            last_n, last_t = len(got), now
        if not v.lost or now > deadline or now - last_t > idle:
            return v
        time.sleep(0.5)


# --------------------------------------------------------------------------
# gateway statistics and memory

def last_stats(client, gw, start=0):
    msgs = client.received(gw.topic("bridge", "stats"), start)
    return msgs[-1].json() if msgs else None


def fresh_stats(client, gw, timeout=10):
    """The first bridge/stats document the gateway made after this call,
    so its counters include everything that happened before it.  A document
    received later may have been made earlier (on its way already), so the
    one awaited carries a "time" (the gateway's wall clock, whole seconds)
    past the current second: up to two stats intervals."""
    now = int(time.time())
    return client.wait_for(gw.topic("bridge", "stats"),
                           lambda m: m.json().get("time", 0) > now,
                           timeout=timeout, start=client.mark()).json()


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


# --------------------------------------------------------------------------
# Network namespaces (packet loss with nftables, rate limits with tc)

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def run(argv, check=True):
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=20)
    if check and p.returncode != 0:
        raise RuntimeError("%s -> %d: %s" % (" ".join(argv), p.returncode,
                                             p.stdout.decode(errors="replace")))
    return p


class Netns:
    """A private network namespace with only 'lo', which the calling
    (main) thread enters: every process the fixtures start afterwards
    (broker, gateway, simulators) and every thread (paho) runs inside it.
    leave() returns the thread to where it was and deletes the namespace."""

    def __init__(self, name):
        self.name = name
        self.entered = False
        run(["ip", "netns", "add", name])
        try:
            # An Ethernet-sized MTU: lo's 64 KiB segments would not fit a
            # tbf bucket of a few KiB.
            run(["ip", "-n", name, "link", "set", "lo", "mtu", "1500", "up"])
            self._home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            fd = os.open("/run/netns/" + name, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(fd)
            finally:
                os.close(fd)
            self.entered = True
        except Exception:
            run(["ip", "netns", "del", name], check=False)
            raise

    def nft(self, ruleset):
        p = subprocess.run(["nft", "-f", "-"], input=ruleset.encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
        if p.returncode != 0:
            raise RuntimeError("nft: %s\n%s" % (p.stdout.decode(errors="replace"), ruleset))

    def udp_loss(self, port, percent, directions=("dport", "sport")):
        """Drops 'percent' % of UDP datagrams to ("dport") and from
        ("sport") 'port', each way on its own: on loopback each datagram
        passes 'input' once."""
        rules = "".join("    udp %s %d numgen random mod 100 < %d counter drop\n"
                        % (d, port, percent) for d in directions)
        self.nft("table inet c2m_loss {\n  chain input {\n"
                 "    type filter hook input priority 0; policy accept;\n"
                 + rules + "  }\n}\n")

    def loss_counters(self):
        p = run(["nft", "list", "table", "inet", "c2m_loss"], check=False)
        return [int(x) for x in re.findall(rb"packets (\d+)", p.stdout)]

    def throttle_tcp_port(self, port, rate="256kbit", burst="16kb", latency="2s"):
        """tc tbf on lo for TCP traffic *to* 'port' (clients -> broker)
        only; the other direction and everything else keep their speed."""
        # sch_prio is not built into every kernel (it is not here): htb
        # with an unlimited default class does the classifying.
        run(["tc", "qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb",
             "default", "10", "r2q", "100000"])
        run(["tc", "class", "add", "dev", "lo", "parent", "1:", "classid", "1:10",
             "htb", "rate", "10gbit"])
        run(["tc", "class", "add", "dev", "lo", "parent", "1:", "classid", "1:30",
             "htb", "rate", "10gbit"])
        run(["tc", "qdisc", "add", "dev", "lo", "parent", "1:30", "handle", "30:",
             "tbf", "rate", rate, "burst", burst, "latency", latency])
        run(["tc", "filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip",
             "prio", "1", "u32", "match", "ip", "protocol", "6", "0xff",
             "match", "ip", "dport", str(port), "0xffff", "flowid", "1:30"])

    def unthrottle(self):
        run(["tc", "qdisc", "del", "dev", "lo", "root"], check=False)

    def leave(self):
        if self.entered:
            _setns(self._home)
            os.close(self._home)
            self.entered = False
        run(["ip", "netns", "del", self.name], check=False)


def netns_available():
    """None if namespaces, nftables and tc can be used, else the reason."""
    if os.geteuid() != 0:
        return "needs root (ip netns, nft, tc)"
    for tool in ("ip", "nft", "tc"):
        if subprocess.run(["which", tool], stdout=subprocess.DEVNULL).returncode != 0:
            return "%s is not installed" % tool
    return None
