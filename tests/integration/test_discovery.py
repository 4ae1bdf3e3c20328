"""Multicast discovery (issue 15, item 3): the gateway sends GET
/.well-known/core to 224.0.1.187 and FF02::FD on discovery.interface, and
every server that answers becomes device mc-<address>-<port>, observed like
a dial-out device.

The lab is a veth pair: the gateway's end (in the test's own namespace,
where the broker runs on 127.0.0.1) and the device's end inside a network
namespace of its own, where libcoap's coap-server-openssl (a server the
project did not write) joins the group with -g.  Needs root and ip; skipped
otherwise.  The namespace and the links are removed at teardown, also when
a test fails.  Every wait is for an MQTT message, a log line or a process
output line, with a timeout."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid

import pytest

import c2m
from test_cli import EX_CONFIG, run

COAP_SERVER = shutil.which("coap-server-openssl")
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
NODE_PEER = os.path.join(ROOT, "tests", "peers", "node-coap")
TIME_RE = re.compile(rb"^[A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d$")

# Joins 224.0.1.187 port 5683 on an interface (inside the device's
# namespace) and prints one line per datagram: who sent it, and whether it
# is a GET of /.well-known/core.  Used to see that nothing is probed.
LISTENER = r"""
import socket, struct, sys
ifname = sys.argv[1]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("224.0.1.187", 5683))
mreq = struct.pack("4s4si", socket.inet_aton("224.0.1.187"), b"\0" * 4,
                   socket.if_nametoindex(ifname))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
print("LISTENING", flush=True)
while True:
    data, addr = s.recvfrom(2048)
    wkc = len(data) > 4 and data[1] == 1 and b".well-known" in data and b"core" in data
    print("DATAGRAM %s %s" % (addr[0], "GET-WKC" if wkc else "OTHER"), flush=True)
"""


def sh(*argv, check=True):
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=20)
    if check and p.returncode != 0:
        raise AssertionError("%s: %s" % (" ".join(argv), p.stderr.decode(errors="replace")))
    return p.stdout.decode(errors="replace")


def lab_unavailable():
    if os.geteuid() != 0:
        return "needs root (ip netns, veth)"
    if not shutil.which("ip"):
        return "ip (iproute2) is not installed"
    if not COAP_SERVER:
        return "coap-server-openssl is not installed (Debian libcoap3-bin)"
    return None


class Lab:
    """One device namespace: a veth pair, 'gw_if' here and 'dev_if' in
    namespace 'ns'.  Several (devices > 1): a bridge 'gw_if' here, and a veth
    pair per namespace, its host end enslaved to the bridge.  IPv4
    10.231.N.1 here, .2, .3, ... in the namespaces; IPv6 link-local
    addresses (DAD off, so they are usable at once)."""

    def __init__(self, devices=1):
        tag = uuid.uuid4().hex[:6]
        self.tag = tag
        self.net = 1 + int(tag[:2], 16) % 250
        self.gw_if = ("c2mg" if devices == 1 else "c2mb") + tag    # <= 15 characters
        self.gw_addr = "10.231.%d.1" % self.net
        self.devs = [{"ns": "c2m-mc-%s-%d" % (tag, i),
                      "if": "c2md%s%d" % (tag, i) if devices > 1 else "c2md" + tag,
                      "host_if": "c2mh%s%d" % (tag, i),
                      "addr": "10.231.%d.%d" % (self.net, 2 + i)} for i in range(devices)]
        self.ns, self.dev_if, self.dev_addr = (self.devs[0]["ns"], self.devs[0]["if"],
                                               self.devs[0]["addr"])
        self.procs = []
        self.made = []          # (kind, name) to remove at the end

    def up(self):
        if len(self.devs) > 1:
            sh("ip", "link", "add", self.gw_if, "type", "bridge")
            self.made.append(("link", self.gw_if))
        for dev in self.devs:
            sh("ip", "netns", "add", dev["ns"])
            self.made.append(("netns", dev["ns"]))
            here = self.gw_if if len(self.devs) == 1 else dev["host_if"]
            sh("ip", "link", "add", here, "type", "veth", "peer", "name", dev["if"])
            self.made.append(("link", here))
            sh("ip", "link", "set", dev["if"], "netns", dev["ns"])
            self.sysctl_dad_off(None, here)
            self.sysctl_dad_off(dev["ns"], dev["if"])
            if len(self.devs) > 1:
                sh("ip", "link", "set", here, "master", self.gw_if)
                sh("ip", "link", "set", here, "up")
            self.in_ns("ip", "addr", "add", dev["addr"] + "/24", "dev", dev["if"], dev=dev)
            self.in_ns("ip", "link", "set", "lo", "up", dev=dev)
            self.in_ns("ip", "link", "set", dev["if"], "multicast", "on", "up", dev=dev)
        self.sysctl_dad_off(None, self.gw_if)
        sh("ip", "addr", "add", self.gw_addr + "/24", "dev", self.gw_if)
        sh("ip", "link", "set", self.gw_if, "multicast", "on", "up")
        return self

    def sysctl_dad_off(self, ns, ifname):
        path = "/proc/sys/net/ipv6/conf/%s/accept_dad" % ifname
        argv = ["sh", "-c", "[ ! -e %s ] || echo 0 > %s" % (path, path)]
        if ns:
            argv = ["ip", "netns", "exec", ns] + argv
        sh(*argv, check=False)

    def in_ns(self, *argv, check=True, dev=None):
        return sh("ip", "netns", "exec", (dev or self.devs[0])["ns"], *argv, check=check)

    def link_local(self, ns, ifname, timeout=10):
        """The interface's fe80:: address, once it has one (None: no IPv6)."""
        deadline = time.monotonic() + timeout
        while True:
            argv = ["ip", "-6", "-o", "addr", "show", "dev", ifname, "scope", "link"]
            out = sh("ip", "netns", "exec", ns, *argv, check=False) if ns else sh(*argv, check=False)
            m = re.search(r"inet6 (fe80::[0-9a-f:]+)/64 scope link", out)
            if m and "tentative" not in out:
                return m.group(1)
            if time.monotonic() > deadline:
                return None
            time.sleep(0.1)

    def spawn(self, tmpdir, name, argv, dev=None, cwd=None):
        ns = (dev or self.devs[0])["ns"]
        proc = subprocess.Popen(["ip", "netns", "exec", ns] + argv, cwd=cwd,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, close_fds=True)
        proc.log = c2m.LineLog(proc.stdout, os.path.join(tmpdir, "%s.%d.out"
                                                         % (name, len(self.procs))), name)
        self.procs.append(proc)
        return proc

    def coap_server(self, tmpdir, group="224.0.1.187", dev=None):
        dev = dev or self.devs[0]
        return self.spawn(tmpdir, "coap-server",
                          [COAP_SERVER, "-g", group, "-G", dev["if"], "-v", "7"], dev=dev)

    def node_server(self, tmpdir, dev=None):
        """node's CoAP stack on 0.0.0.0:5683, joined to 224.0.1.187 on the
        namespace's interface."""
        dev = dev or self.devs[0]
        return self.spawn(tmpdir, "node", ["env", "MCAST_GROUP=224.0.1.187",
                                           "MCAST_IF=" + dev["addr"], "node", "server.js",
                                           "0.0.0.0", "5683"], dev=dev, cwd=NODE_PEER)

    def kill(self, proc):
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        proc.log.join()

    def down(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        for kind, name in reversed(self.made):
            if kind == "link":
                sh("ip", "link", "del", name, check=False)
            else:
                sh("ip", "netns", "del", name, check=False)


def make_lab(devices):
    why = lab_unavailable()
    if why:
        pytest.skip("SKIP: " + why)
    return Lab(devices)


@pytest.fixture
def lab():
    lab = make_lab(1)
    try:
        yield lab.up()
    finally:
        lab.down()


@pytest.fixture
def lab2():
    """Two device namespaces on one bridge."""
    lab = make_lab(2)
    try:
        yield lab.up()
    finally:
        lab.down()


def server_ready(srv):
    """coap-server at -v 7 logs its endpoint once it is bound."""
    srv.log.wait_for(r"created UDP\s+endpoint", timeout=10)


def discovery_gateway(make_gateway, lab, multicast=True, interval=10, extra=None):
    overrides = {
        "coap": {"plain_listen": ["127.0.0.1:%d" % c2m.free_port(c2m.socket.SOCK_DGRAM)]},
        "discovery": {"multicast": multicast, "interface": lab.gw_if, "interval": interval},
    }
    overrides.update(extra or {})
    return make_gateway(overrides=overrides)


def entry_online(gw, mqtt, dev, timeout=20, start=0):
    return mqtt.wait_for(gw.topic("bridge", "devices", dev),
                         lambda m: bool(m.payload) and m.json().get("online") is True,
                         timeout=timeout, start=start)


def availability(gw, mqtt, dev, state, timeout, start=0):
    return mqtt.wait_for(gw.topic(dev, "availability"),
                         lambda m: m.payload == state.encode(), timeout=timeout, start=start)


# --------------------------------------------------------------------------

@pytest.mark.timeout(300)
def test_ipv4_discovered_observed_commanded_lost_and_found(make_gateway, mqtt, lab, tmp_path):
    srv = lab.coap_server(str(tmp_path))
    server_ready(srv)
    mqtt.subscribe(c2m.BASE + "/#")
    gw = discovery_gateway(make_gateway, lab)
    dev = "mc-10-231-%d-2-5683" % lab.net
    gw.log.wait_for(r"discovery: probing 224\.0\.1\.187 .*on %s every 10 s" % lab.gw_if,
                    timeout=10)

    # the documented id, on bridge/devices/<id> and in the list
    entry = entry_online(gw, mqtt, dev)
    assert entry.json().get("id") == dev, entry
    mqtt.wait_for(gw.topic("bridge", "devices"),
                  lambda m: any(isinstance(e, dict) and e.get("id") == dev and e.get("online")
                                for e in m.json()), timeout=10)
    assert gw.log.find(r"device %s: found by multicast at coap://%s:5683"
                       % (dev, re.escape(lab.dev_addr)))

    # its obs links are observed: /time notifies every second
    first = mqtt.wait_for(gw.topic(dev, "time"), lambda m: TIME_RE.match(m.payload), timeout=15)
    pos = mqtt.mark()
    second = mqtt.wait_for(gw.topic(dev, "time"), lambda m: m.payload != first.payload,
                           timeout=5, start=pos)
    assert TIME_RE.match(second.payload), second

    # /set reaches it: coap-server's /example_data takes the PUT and
    # notifies its observers (us) with the new value
    value = ("v-" + uuid.uuid4().hex[:8]).encode()
    pos = mqtt.mark()
    mqtt.publish(gw.topic(dev, "example_data", "set"), value, qos=1)
    res = mqtt.wait_for(gw.topic(dev, "example_data", "set", "result"), timeout=15, start=pos)
    assert res.json().get("code") == "2.04", res
    mqtt.wait_for(gw.topic(dev, "example_data"), lambda m: m.payload == value,
                  timeout=10, start=pos)

    # the next probe (10 s on) finds it again: not added twice
    pos_log = gw.log.mark()
    gw.log.wait_for(r"discovery: GET /\.well-known/core to 224\.0\.1\.187", timeout=15,
                    start=pos_log)
    gw.log.wait_for(r"discovery: %s answered" % dev, timeout=10, start=pos_log)
    assert len(gw.log.find(r"device %s: found by multicast" % dev)) == 1

    # killed: offline (silence, the keepalive probe unanswered), then
    # dialled again and again with a growing delay
    pos = mqtt.mark()
    pos_log = gw.log.mark()
    lab.kill(srv)
    availability(gw, mqtt, dev, "offline", timeout=40, start=pos)
    # (the backoff doubles, jittered 0.5-1x: 1, 2, 4, 8, 16, 32 s nominal)
    gw.log.wait_for(r"device %s: dialling again in (1[5-9]|[2-9]\d)\d{3} ms" % dev,
                    timeout=120, start=pos_log)

    # restarted while the next attempt is 15 s or more away: the next
    # multicast probe (every 10 s) finds it and it is dialled at once.
    # (Waiting for 10 s or more raced: a redial 11.3 s away came first.)
    pos = mqtt.mark()
    pos_log = gw.log.mark()
    srv = lab.coap_server(str(tmp_path))
    server_ready(srv)
    gw.log.wait_for(r"device %s: answered the multicast probe, dialling now" % dev,
                    timeout=15, start=pos_log)
    availability(gw, mqtt, dev, "online", timeout=15, start=pos)
    mqtt.wait_for(gw.topic(dev, "time"), lambda m: TIME_RE.match(m.payload),
                  timeout=15, start=pos)
    assert len(gw.log.find(r"device %s: found by multicast" % dev)) == 1
    for m in mqtt.received(gw.topic("bridge", "devices")):
        assert sum(1 for e in m.json() if isinstance(e, dict) and e.get("id") == dev) <= 1, m


@pytest.mark.timeout(90)
def test_ipv6_link_local_id(make_gateway, mqtt, lab, tmp_path):
    dev_ll = lab.link_local(lab.ns, lab.dev_if)
    if not dev_ll or not lab.link_local(None, lab.gw_if):
        pytest.skip("SKIP: no IPv6 link-local addresses on the veth pair")
    srv = lab.coap_server(str(tmp_path), group="ff02::fd")
    server_ready(srv)
    mqtt.subscribe(c2m.BASE + "/#")
    gw = discovery_gateway(make_gateway, lab)
    dev = "mc-%s-5683" % dev_ll.replace(":", "-")
    entry = entry_online(gw, mqtt, dev)
    assert entry.json().get("id") == dev
    assert gw.log.find(r"device %s: found by multicast at coap://\[%s%%%s\]:5683"
                       % (dev, re.escape(dev_ll), lab.gw_if))
    mqtt.wait_for(gw.topic(dev, "time"), lambda m: TIME_RE.match(m.payload), timeout=15)


def node_ready():
    from test_dialout import node_ready as why_not
    why = why_not()
    if why:
        pytest.skip("SKIP: " + why)


@pytest.mark.timeout(150)
def test_node_peer_discovered_commanded_lost_and_found(make_gateway, mqtt, lab, tmp_path):
    """node's own CoAP stack (npm coap) as the server found by multicast."""
    node_ready()
    node = lab.node_server(str(tmp_path))
    node.log.wait_for(r"^LISTENING 5683$", timeout=15)
    mqtt.subscribe(c2m.BASE + "/#")
    gw = discovery_gateway(make_gateway, lab)
    dev = "mc-10-231-%d-2-5683" % lab.net

    def described(m):
        try:
            res = {r["path"]: r for r in m.json().get("resources", [])}
        except (ValueError, AttributeError):
            return False
        return (m.json().get("online") is True and res.get("temperature", {}).get("obs") is True
                and "setpoint" in res)
    mqtt.wait_for(gw.topic("bridge", "devices", dev), described, timeout=20)
    node.log.wait_for(r"^OBSERVE /temperature$", timeout=10)
    first = mqtt.wait_for(gw.topic(dev, "temperature"), timeout=10)
    mqtt.wait_payload(gw.topic(dev, "temperature"), str(int(first.payload) + 5), timeout=10)

    pos = mqtt.mark()
    mqtt.publish(gw.topic(dev, "setpoint", "set"), b"21.5", qos=1)
    node.log.wait_for(r"^PUT /setpoint 21\.5$", timeout=10)
    res = mqtt.wait_for(gw.topic(dev, "setpoint", "set", "result"), timeout=10, start=pos)
    assert res.json().get("code") == "2.04", res
    pos = mqtt.mark()
    mqtt.publish(gw.topic(dev, "setpoint", "get"), b"", qos=1)
    mqtt.wait_payload(gw.topic(dev, "setpoint"), "21.5", timeout=10, start=pos)

    pos = mqtt.mark()
    lab.kill(node)
    availability(gw, mqtt, dev, "offline", timeout=40, start=pos)
    pos = mqtt.mark()
    node = lab.node_server(str(tmp_path))
    availability(gw, mqtt, dev, "online", timeout=40, start=pos)
    mqtt.wait_for(gw.topic(dev, "temperature"), timeout=10, start=pos)
    assert len(gw.log.find(r"device %s: found by multicast" % dev)) == 1


@pytest.mark.timeout(90)
def test_two_servers_two_devices(make_gateway, mqtt, lab2, tmp_path):
    """Every server that answers is a device: libcoap's coap-server and
    node's stack, each in its own namespace on one bridge."""
    node_ready()
    a, b = lab2.devs
    srv = lab2.coap_server(str(tmp_path), dev=a)
    server_ready(srv)
    node = lab2.node_server(str(tmp_path), dev=b)
    node.log.wait_for(r"^LISTENING 5683$", timeout=15)
    mqtt.subscribe(c2m.BASE + "/#")
    gw = discovery_gateway(make_gateway, lab2)
    id_a = "mc-10-231-%d-2-5683" % lab2.net
    id_b = "mc-10-231-%d-3-5683" % lab2.net
    entry_online(gw, mqtt, id_a)
    entry_online(gw, mqtt, id_b)
    mqtt.wait_for(gw.topic(id_a, "time"), lambda m: TIME_RE.match(m.payload), timeout=15)
    mqtt.wait_for(gw.topic(id_b, "temperature"), timeout=15)
    mqtt.wait_for(gw.topic("bridge", "devices"),
                  lambda m: {e.get("id") for e in m.json() if isinstance(e, dict)
                             and e.get("online")} >= {id_a, id_b}, timeout=10)


@pytest.mark.timeout(90)
def test_discovery_off_probes_nothing(make_gateway, mqtt, lab, tmp_path):
    listener = lab.spawn(str(tmp_path), "listener", [sys.executable, "-c", LISTENER, lab.dev_if])
    listener.log.wait_for(r"^LISTENING$", timeout=10)
    # off: the gateway comes up and dials nothing
    off = discovery_gateway(make_gateway, lab, multicast=False)
    assert not off.log.find(r"discovery")
    # on (the control): its first probe arrives at once, and is the only
    # one the listener ever got (the first gateway, off, sent none; a
    # gateway probes as soon as it starts)
    on = discovery_gateway(make_gateway, lab, multicast=True)
    listener.log.wait_for(r"^DATAGRAM %s GET-WKC$" % re.escape(lab.gw_addr), timeout=10)
    assert on.log.find(r"discovery: probing")
    got = listener.log.find(r"^DATAGRAM")
    assert len(got) == 1, listener.log.text()


@pytest.mark.timeout(90)
def test_reload_keeps_discovered_devices(make_gateway, mqtt, lab, tmp_path):
    """discovery.* wait for a restart; a reload of the devices list leaves
    the devices found by multicast alone."""
    srv = lab.coap_server(str(tmp_path))
    server_ready(srv)
    mqtt.subscribe(c2m.BASE + "/#")
    gw = discovery_gateway(make_gateway, lab)
    dev = "mc-10-231-%d-2-5683" % lab.net
    entry_online(gw, mqtt, dev)
    pos = mqtt.mark()
    gw.cfg["discovery"]["interval"] = 20
    gw.cfg["devices"] = [{"id": "lab-listed", "uri": "coap://127.0.0.1:%d"
                          % c2m.free_port(c2m.socket.SOCK_DGRAM)}]
    with open(gw.conf, "w") as f:
        f.write(c2m.libconfig_text(gw.cfg))
    mark = gw.log.mark()
    gw.proc.send_signal(signal.SIGHUP)
    gw.log.wait_for(r"reload: done", timeout=10, start=mark)
    assert gw.log.find(r"reload: discovery\.interval changed \(10 -> 20\); needs a restart",
                       start=mark)
    assert gw.log.find(r'reload: devices changed: \( \) -> \( "lab-listed" \)', start=mark)
    # the old interval holds: the next probe 10 s after the last, and the
    # discovered device answers it without being dialled anew
    gw.log.wait_for(r"discovery: %s answered" % dev, timeout=20, start=mark)
    assert not gw.log.find(r"device %s: (no longer|changed)" % dev, start=mark)
    assert not mqtt.received(gw.topic(dev, "availability"), pos)
    mqtt.wait_for(gw.topic(dev, "time"), lambda m: TIME_RE.match(m.payload), timeout=5, start=pos)


# --------------------------------------------------------------------------
# -t

def conf(tmp_path, psk_file, coap, discovery):
    path = os.path.join(str(tmp_path), "gw.conf")
    text = ('coap = {\n%s};\n'
            'state_dir = "%s";\n'
            'mqtt = { host = "127.0.0.1"; };\n'
            'discovery = {\n%s};\n') % (coap, str(tmp_path), discovery)
    with open(path, "w") as f:
        f.write(text)
    return path


PLAIN = '  plain_listen = [ "127.0.0.1:5683" ];\n'
DTLS_ONLY = '  listen = [ "127.0.0.1:5684" ];\n  psk_file = "%s";\n'


@pytest.mark.parametrize("name", ["no-plain", "no-interface", "missing-interface",
                                  "interval-low", "interval-high", "interval-type",
                                  "bad-ifname", "unknown"])
def test_check_refuses(c2m_bin, tmp_path, psk_file, name):
    coap = PLAIN
    disc = {
        "no-plain": '  multicast = true;\n  interface = "lo";\n',
        "no-interface": '  multicast = true;\n',
        "missing-interface": '  multicast = true;\n  interface = "c2mnosuch0";\n',
        "interval-low": '  multicast = true;\n  interface = "lo";\n  interval = 9;\n',
        "interval-high": '  multicast = true;\n  interface = "lo";\n  interval = 86401;\n',
        "interval-type": '  multicast = true;\n  interface = "lo";\n  interval = "60";\n',
        "bad-ifname": '  multicast = true;\n  interface = "a/b";\n',
        "unknown": '  multicast = true;\n  interface = "lo";\n  group = "x";\n',
    }[name]
    # (the line the error must name: the one of this setting, in discovery)
    where, want = {
        "no-plain": ("multicast", r"discovery\.multicast: needs plain CoAP \(coap\.plain_listen\)"),
        "no-interface": ("multicast", r"discovery\.interface: required with discovery\.multicast = true"),
        "missing-interface": ("interface", r"discovery\.interface: c2mnosuch0: no such network interface"),
        "interval-low": ("interval", r"discovery\.interval: must be 10\.\.86400, got 9"),
        "interval-high": ("interval", r"discovery\.interval: must be 10\.\.86400, got 86401"),
        "interval-type": ("interval", r"discovery\.interval: must be an integer"),
        "bad-ifname": ("interface", r"discovery\.interface: must be a network interface name"),
        "unknown": ("group", r"discovery\.group: unknown setting"),
    }[name]
    if name == "no-plain":
        coap = DTLS_ONLY % psk_file.path
    path = conf(tmp_path, psk_file, coap, disc)
    with open(path) as f:
        lines = f.read().splitlines()
    first = lines.index("discovery = {")
    line = next(i + 1 for i, l in enumerate(lines) if i > first and l.strip().startswith(where))
    rc, out, err = run([c2m_bin, "-t", "-c", path])
    assert rc == EX_CONFIG, (rc, out, err)
    assert re.search("^%s:%d: %s" % (re.escape(path), line, want), err, re.M), (line, err)
    assert not any(s in err for s in c2m.SANITIZER_MARKERS), err


def test_check_accepts(c2m_bin, tmp_path, psk_file):
    for disc in ('  multicast = true;\n  interface = "lo";\n  interval = 10;\n',
                 '  multicast = false;\n',     # off: nothing else needed
                 '  multicast = false;\n  interface = "c2mnosuch0";\n'):
        path = conf(tmp_path, psk_file, PLAIN, disc)
        rc, out, err = run([c2m_bin, "-t", "-c", path])
        assert rc == 0, (disc, rc, out, err)
