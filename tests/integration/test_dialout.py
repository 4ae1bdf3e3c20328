"""The gateway dials out (issue 15, item 1): devices of the devices list are
observed by the gateway as a CoAP client.  Peers the project did not write:
libcoap's coap-server-openssl (plain CoAP and DTLS-PSK) and node's own CoAP
stack (the npm "coap" package, tests/peers/node-coap/).  Every wait is for
an MQTT message or a peer's output line, with a timeout."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

import c2m
from test_cli import EX_CONFIG, run, write_conf

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
NODE_PEER = os.path.join(ROOT, "tests", "peers", "node-coap")
COAP_SERVER = shutil.which("coap-server-openssl")
TIME_RE = re.compile(rb"^[A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d$")


def free_udp_pair():
    """A UDP port p with p+1 free too, and TCP p and p+1 (coap-server
    listens on UDP and TCP p, and DTLS/TLS on p+1)."""
    for _ in range(100):
        p = c2m.free_port(socket.SOCK_DGRAM)
        socks = []
        try:
            for port, kind in ((p, socket.SOCK_DGRAM), (p + 1, socket.SOCK_DGRAM),
                               (p, socket.SOCK_STREAM), (p + 1, socket.SOCK_STREAM)):
                s = socket.socket(socket.AF_INET, kind)
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return p
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no free port pair")


class Peer:
    """A CoAP server process with its stdout in a LineLog."""

    def __init__(self, tmpdir, name, argv, cwd=None):
        self.name, self.argv, self.cwd, self.dir = name, argv, cwd, tmpdir
        self.runs = 0
        self.proc = None

    def start(self):
        self.runs += 1
        self.proc = subprocess.Popen(self.argv, cwd=self.cwd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     close_fds=True)
        self.log = c2m.LineLog(self.proc.stdout,
                               os.path.join(self.dir, "%s.%d.out" % (self.name, self.runs)),
                               self.name)
        return self

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.log.join()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            c2m.stop_process(self.proc, signal.SIGTERM, 5)
            self.log.join()


@pytest.fixture
def peers(tmp_path):
    started = []

    def make(name, argv, cwd=None):
        p = Peer(str(tmp_path), name, argv, cwd)
        started.append(p)
        return p

    yield make
    for p in started:
        p.stop()


def node_ready():
    """Why the node peer cannot run, or None."""
    if not shutil.which("node"):
        return "node is not installed (scripts/install-deps.sh --test)"
    if not os.path.isdir(os.path.join(NODE_PEER, "node_modules", "coap")):
        return ("the npm coap package is not installed in %s (npm ci there; "
                "scripts/install-deps.sh --test does it when a registry is reachable)"
                % NODE_PEER)
    return None


def node_peer(peers, port, name="node", wkc_pad=0):
    why = node_ready()
    if why:
        pytest.skip(why)
    argv = ["node", "server.js", "127.0.0.1", str(port)]
    if wkc_pad:
        argv = ["env", "WKC_PAD=%d" % wkc_pad] + argv
    p = peers(name, argv, cwd=NODE_PEER).start()
    p.log.wait_for(r"^LISTENING %d$" % port, timeout=15)
    return p


def coap_server(peers, port, key=None, name="coap-server"):
    if not COAP_SERVER:
        pytest.skip("coap-server-openssl is not installed (Debian libcoap3-bin)")
    argv = [COAP_SERVER, "-A", "127.0.0.1", "-p", str(port), "-v", "4"]
    if key:
        argv += ["-k", key]
    return peers(name, argv).start()


def dialout_gateway(make_gateway, devices):
    return make_gateway(overrides={"devices": devices})


def online(gw, mqtt, dev, timeout=15, start=0):
    return mqtt.wait_for(gw.topic(dev, "availability"), lambda m: m.payload == b"online",
                         timeout=timeout, start=start)


def listed_online(gw, mqtt, ids, timeout=15):
    """bridge/devices lists every one of 'ids', online."""
    def ok(m):
        try:
            doc = m.json()
        except ValueError:
            return False
        entries = {e.get("id"): e for e in doc if isinstance(e, dict)}
        return all(i in entries and entries[i].get("online") for i in ids)
    return mqtt.wait_for(gw.topic("bridge", "devices"), ok, timeout=timeout)


# --------------------------------------------------------------------------
# libcoap's coap-server: plain CoAP and DTLS-PSK

def test_coap_server_plain_and_psk(make_gateway, mqtt, psk_file, peers):
    port = free_udp_pair()
    key = psk_file.add("gw-dial")
    coap_server(peers, port, key=key)
    mqtt.subscribe(c2m.BASE + "/#")
    gw = dialout_gateway(make_gateway, [
        {"id": "lab-1", "uri": "coap://127.0.0.1:%d" % port},
        {"id": "meter-d", "uri": "coaps://127.0.0.1:%d" % (port + 1),
         "psk_identity": "gw-dial"},
    ])
    for dev in ("lab-1", "meter-d"):
        online(gw, mqtt, dev)
        first = mqtt.wait_for(gw.topic(dev, "time"), lambda m: TIME_RE.match(m.payload),
                              timeout=10)
        # /time notifies every second: a second reading, newer than the first
        pos = mqtt.mark()
        second = mqtt.wait_for(gw.topic(dev, "time"), timeout=5, start=pos)
        assert second.payload != first.payload, (first, second)
        assert TIME_RE.match(second.payload), second
    listed_online(gw, mqtt, ["lab-1", "meter-d"])
    assert gw.log.find(r"device meter-d dialled at coaps://")
    assert not gw.log.find(r"device lab-1 .*: .*(refused|failed)")


# --------------------------------------------------------------------------
# node's CoAP stack: discovery, order, commands

def test_node_peer_discovery_order_and_set(make_gateway, mqtt, peers):
    port = c2m.free_port(socket.SOCK_DGRAM)
    node = node_peer(peers, port)
    mqtt.subscribe(c2m.BASE + "/#")
    # a host name: resolved (getaddrinfo) at every attempt
    gw = dialout_gateway(make_gateway, [{"id": "node-1", "uri": "coap://localhost:%d" % port}])
    node.log.wait_for(r"^WKC$", timeout=10)
    online(gw, mqtt, "node-1")

    # discovery: both links of its /.well-known/core, only /temperature observed
    def described(m):
        try:
            res = {r["path"]: r for r in m.json().get("resources", [])}
        except (ValueError, AttributeError):
            return False
        return (res.get("temperature", {}).get("obs") is True and res.get("temperature", {}).get("ct") == 0
                and "setpoint" in res and res["setpoint"].get("obs") is False)
    mqtt.wait_for(gw.topic("bridge", "devices", "node-1"), described, timeout=10)
    node.log.wait_for(r"^OBSERVE /temperature$", timeout=10)

    # notifications in order, every one of a run of 20
    first = mqtt.wait_for(gw.topic("node-1", "temperature"), timeout=10)
    start = int(first.payload)
    pos = mqtt.mark()
    mqtt.wait_payload(gw.topic("node-1", "temperature"), str(start + 20), timeout=10)
    got = [int(m.payload) for m in mqtt.received(gw.topic("node-1", "temperature"), pos)]
    assert got == list(range(start + 1, start + 21)), got
    # node notifies with the type of the observe GET, which the gateway
    # sends CON: CON readings go out at QoS 1 (mqtt.qos_con)
    assert first.qos == 1, first.qos

    # a command: PUT reaches the device, 2.04 comes back, a GET reads it back
    pos = mqtt.mark()
    mqtt.publish(gw.topic("node-1", "setpoint", "set"), b"23.5", qos=1)
    node.log.wait_for(r"^PUT /setpoint 23\.5$", timeout=10)
    res = mqtt.wait_for(gw.topic("node-1", "setpoint", "set", "result"), timeout=10, start=pos)
    assert res.json().get("code") == "2.04", res.payload
    mqtt.publish(gw.topic("node-1", "setpoint", "get"), b"", qos=1)
    mqtt.wait_payload(gw.topic("node-1", "setpoint"), "23.5", timeout=10, start=pos)


def test_node_peer_blockwise_discovery(make_gateway, mqtt, peers):
    """A /.well-known/core of 2 KiB comes in three Block2 blocks; the
    links are kept up to the registry's 32 a device."""
    port = c2m.free_port(socket.SOCK_DGRAM)
    node_peer(peers, port, wkc_pad=40)
    mqtt.subscribe(c2m.BASE + "/#")
    gw = dialout_gateway(make_gateway, [{"id": "node-b", "uri": "coap://127.0.0.1:%d" % port}])
    online(gw, mqtt, "node-b")

    def described(m):
        try:
            paths = [r["path"] for r in m.json().get("resources", [])]
        except (ValueError, AttributeError):
            return False
        return paths == ["temperature", "setpoint"] + ["pad/%d" % i for i in range(30)]
    mqtt.wait_for(gw.topic("bridge", "devices", "node-b"), described, timeout=10)
    mqtt.wait_for(gw.topic("node-b", "temperature"), timeout=10)


# --------------------------------------------------------------------------
# the peer goes away and comes back

BACKOFF_FIRST_S = 5.0       # the contract: the first retry within 5 s


@pytest.mark.timeout(90)
def test_node_peer_restart_resumes(make_gateway, mqtt, peers):
    port = c2m.free_port(socket.SOCK_DGRAM)
    node = node_peer(peers, port)
    mqtt.subscribe(c2m.BASE + "/#")
    gw = dialout_gateway(make_gateway, [{"id": "node-r", "uri": "coap://127.0.0.1:%d" % port,
                                         "keepalive": 1}])
    online(gw, mqtt, "node-r")
    mqtt.wait_for(gw.topic("node-r", "temperature"), timeout=10)
    pid = gw.proc.pid

    pos = mqtt.mark()
    mark = gw.log.mark()
    killed = time.monotonic()
    node.kill()
    mqtt.wait_for(gw.topic("node-r", "availability"), lambda m: m.payload == b"offline",
                  timeout=10, start=pos)
    detected = time.monotonic() - killed

    # Down for three retries: each delay between half and all of
    # min(60 s, 1 s << n), n counting the failures so far.
    delays = []
    at = mark
    for n in range(3):
        m, at = gw.log.wait_line(r"device node-r: dialling again in (\d+) ms", timeout=15,
                                 start=at)
        delays.append(int(m.group(1)))
    last_announced = time.monotonic()
    for n, ms in enumerate(delays):
        nominal = min(60000, 1000 << n)
        assert nominal // 2 <= ms <= nominal, (n, delays)

    pos = mqtt.mark()
    node.start()
    node.log.wait_for(r"^LISTENING %d$" % port, timeout=15)
    restarted = time.monotonic()
    online(gw, mqtt, "node-r", timeout=15, start=pos)
    reading = mqtt.wait_for(gw.topic("node-r", "temperature"), timeout=15, start=pos)
    resumed = time.monotonic() - restarted
    # the new process counts from 1 again: these are its readings
    assert int(reading.payload) < 50, reading.payload
    assert gw.proc.pid == pid and gw.running()
    # The pending retry fires at most delays[-1] after it was announced;
    # had it come before the peer listened, the next is at most 8 s later.
    due = max(0.0, last_announced + delays[-1] / 1000.0 - restarted)
    bound = due + 1.5 if due > 0 else 8.0 + 1.5
    print("offline %.2f s after the kill; retries after %s ms; readings %.2f s after "
          "the restart (bound %.2f s)" % (detected, delays, resumed, bound))
    # keepalive 1 s: silence noticed within two ticks and a probe
    assert detected < 4.0, detected
    assert resumed < bound, (resumed, bound)


def test_command_waits_for_a_lost_device(make_gateway, mqtt, peers):
    """A /set for a dialled device that is gone waits in its queue and is
    delivered once the gateway has dialled it again."""
    port = c2m.free_port(socket.SOCK_DGRAM)
    node = node_peer(peers, port)
    mqtt.subscribe(c2m.BASE + "/#")
    gw = dialout_gateway(make_gateway, [{"id": "node-c", "uri": "coap://127.0.0.1:%d" % port,
                                         "keepalive": 1}])
    online(gw, mqtt, "node-c")
    pos = mqtt.mark()
    node.kill()
    mqtt.wait_for(gw.topic("node-c", "availability"), lambda m: m.payload == b"offline",
                  timeout=10, start=pos)
    mqtt.publish(gw.topic("node-c", "setpoint", "set"), b"19", qos=1)
    node.start()
    node.log.wait_for(r"^LISTENING %d$" % port, timeout=15)
    node.log.wait_for(r"^PUT /setpoint 19$", timeout=15)
    res = mqtt.wait_for(gw.topic("node-c", "setpoint", "set", "result"), timeout=10, start=pos)
    assert res.json().get("code") == "2.04", res.payload
    assert len(mqtt.received(gw.topic("node-c", "setpoint", "set", "result"), pos)) == 1


@pytest.mark.timeout(90)
def test_coap_server_psk_restart_resumes(make_gateway, mqtt, psk_file, peers):
    port = free_udp_pair()
    key = psk_file.add("gw-dial")
    srv = coap_server(peers, port, key=key)
    mqtt.subscribe(c2m.BASE + "/#")
    gw = dialout_gateway(make_gateway, [{"id": "meter-r", "psk_identity": "gw-dial",
                                         "uri": "coaps://127.0.0.1:%d" % (port + 1),
                                         "keepalive": 1}])
    online(gw, mqtt, "meter-r")
    mqtt.wait_for(gw.topic("meter-r", "time"), timeout=10)
    pos = mqtt.mark()
    srv.kill()      # no close_notify: only silence tells
    mqtt.wait_for(gw.topic("meter-r", "availability"), lambda m: m.payload == b"offline",
                  timeout=10, start=pos)
    pos = mqtt.mark()
    srv.start()
    restarted = time.monotonic()
    online(gw, mqtt, "meter-r", timeout=15, start=pos)
    mqtt.wait_for(gw.topic("meter-r", "time"), timeout=10, start=pos)
    resumed = time.monotonic() - restarted
    print("DTLS-PSK readings %.2f s after the restart" % resumed)
    assert resumed < BACKOFF_FIRST_S + 1.0, resumed


# --------------------------------------------------------------------------
# ids: a dial-in device may not take one

def test_dialin_under_a_dialout_id_refused(make_gateway, mqtt, psk_file, coap):
    psk_file.add("lab-x")
    gw = dialout_gateway(make_gateway, [{"id": "lab-x", "uri": "coap://127.0.0.1:9"}])
    r = coap(gw, "lab-x", "rd?ep=lab-x&lt=60", method="post", ct=40, payload="</t>;obs")
    assert r.code == "4.03", r
    r = coap(gw, "lab-x", "ps/t", method="post", payload="1")
    assert r.code == "4.03", r
    mqtt.wait_for(gw.topic("bridge", "stats"),
                  lambda m: m.json().get("rejected_dialout_id", 0) >= 2, timeout=10)


# --------------------------------------------------------------------------
# -t: every bad entry with file:line, exit 78

BAD_ENTRIES = [
    ('{ id = "a"; uri = "http://127.0.0.1:5683"; }', r"devices\[0\]\.uri: must start with coap:// or coaps://"),
    ('{ id = "a"; uri = "coap://127.0.0.1:70000"; }', r"devices\[0\]\.uri: has a port outside"),
    ('{ id = "a"; uri = "coap://127.0.0.1/x"; }', r"devices\[0\]\.uri: must name only a host and a port"),
    ('{ id = "a/b"; uri = "coap://127.0.0.1"; }', r"devices\[0\]\.id: must be a device id"),
    ('{ id = "bridge"; uri = "coap://127.0.0.1"; }', r"devices\[0\]\.id: must be a device id"),
    ('{ id = "a"; uri = "coaps://127.0.0.1"; }', r"devices\[0\]: coaps needs psk_identity"),
    ('{ id = "a"; uri = "coaps://127.0.0.1"; psk_identity = "nobody"; }',
     r"devices\[0\]\.psk_identity: \"nobody\" is not in coap\.psk_file"),
    ('{ id = "a"; uri = "coap://127.0.0.1"; observe = [ "/t" ]; }', r"devices\[0\]\.observe\[0\]: must be a resource path"),
    ('{ id = "a"; uri = "coap://127.0.0.1"; observe = [ "t/set" ]; }', r"devices\[0\]\.observe\[0\]: must be a resource path"),
    ('{ id = "a"; uri = "coap://127.0.0.1"; colour = "red"; }', r"devices\[0\]\.colour: unknown setting"),
    ('{ uri = "coap://127.0.0.1"; }', r"devices\[0\]: needs both id and uri"),
    ('{ id = "a"; uri = "coap://127.0.0.1"; },\n  { id = "a"; uri = "coap://127.0.0.2"; }',
     r"devices\[1\]\.id: id \"a\" is listed twice"),
]


@pytest.mark.parametrize("entry,reason", BAD_ENTRIES,
                         ids=["scheme", "port", "path", "id-slash", "id-bridge", "coaps-nocreds",
                              "psk-unknown", "observe-slash", "observe-set", "unknown", "no-id",
                              "duplicate"])
def test_check_refuses_bad_device(c2m_bin, tmp_path, psk_file, entry, reason):
    conf = write_conf(str(tmp_path / "dial.conf"), psk_file.path)
    with open(conf, "a") as f:
        f.write("devices = (\n  %s\n);\n" % entry)
    with open(conf) as f:
        lines = f.read().splitlines()
    rc, out, err = run([c2m_bin, "-t", "-c", conf])
    assert rc == EX_CONFIG, (rc, out, err)
    m = re.search(r"^%s:(\d+): %s" % (re.escape(conf), reason), out + err, re.M)
    assert m, out + err
    # the line named is the entry's (the last entry for a repeat)
    assert lines[int(m.group(1)) - 1].lstrip().startswith("{"), (m.group(0), lines)


def test_check_accepts_devices(c2m_bin, tmp_path, psk_file):
    psk_file.add("gw-a")
    conf = write_conf(str(tmp_path / "dial.conf"), psk_file.path)
    with open(conf, "a") as f:
        f.write('devices = (\n'
                '  { id = "lab-1"; uri = "coap://192.0.2.10:5683"; },\n'
                '  { id = "meter-7"; uri = "coaps://[2001:db8::7]:5684"; psk_identity = "gw-a"; },\n'
                '  { id = "pump-3"; uri = "coap://pump-3.example"; observe = [ "flow", "a/b" ]; keepalive = 30; }\n'
                ');\n')
    rc, out, err = run([c2m_bin, "-t", "-c", conf])
    assert rc == 0, out + err


# --------------------------------------------------------------------------
# reload: devices added, removed, changed; restart-only with new credential names

def reload_with(gw, devices, **coap):
    gw.cfg["devices"] = devices
    gw.cfg["coap"].update(coap)
    with open(gw.conf, "w") as f:
        f.write(c2m.libconfig_text(gw.cfg))
    mark = gw.log.mark()
    gw.proc.send_signal(signal.SIGHUP)
    gw.log.wait_for(r"reload: done", timeout=10, start=mark)
    return mark


def test_reload_adds_and_removes_devices(make_gateway, mqtt, peers, psk_file, coap):
    port1, port2 = c2m.free_port(socket.SOCK_DGRAM), c2m.free_port(socket.SOCK_DGRAM)
    node_peer(peers, port1, name="node1")
    node_peer(peers, port2, name="node2")
    mqtt.subscribe(c2m.BASE + "/#")
    one = {"id": "node-h", "uri": "coap://127.0.0.1:%d" % port1}
    two = {"id": "node-new", "uri": "coap://127.0.0.1:%d" % port2}
    gw = dialout_gateway(make_gateway, [one])
    online(gw, mqtt, "node-h")

    # added: dialled at once; the one that stays is not touched
    pos = mqtt.mark()
    mark = reload_with(gw, [one, two])
    gw.log.wait_for(r'reload: devices changed: \( "node-h" \) -> \( "node-h", "node-new" \)',
                    timeout=1, start=mark)
    online(gw, mqtt, "node-new", start=pos)
    mqtt.wait_for(gw.topic("node-new", "temperature"), timeout=10, start=pos)
    assert not mqtt.received(gw.topic("node-h", "availability"), pos)

    # removed: offline, and its id is free for a device that dials in
    pos = mqtt.mark()
    mark = reload_with(gw, [two])
    gw.log.wait_for(r"device node-h: no longer in the devices list", timeout=5, start=mark)
    mqtt.wait_for(gw.topic("node-h", "availability"), lambda m: m.payload == b"offline",
                  timeout=5, start=pos)
    psk_file.add("node-h")
    mark = reload_with(gw, [two])      # the PSK file is read again too
    r = coap(gw, "node-h", "rd?ep=node-h&lt=60", method="post", ct=40, payload="</t>")
    assert r.code == "2.01", r
    pos = mqtt.mark()
    mqtt.wait_for(gw.topic("node-new", "temperature"), timeout=5, start=pos)


def test_reload_with_new_credential_names_needs_restart(make_gateway, mqtt, peers, psk_file,
                                                         tmp_path):
    port = c2m.free_port(socket.SOCK_DGRAM)
    node_peer(peers, port)
    mqtt.subscribe(c2m.BASE + "/#")
    devices = [{"id": "node-h", "uri": "coap://127.0.0.1:%d" % port}]
    gw = dialout_gateway(make_gateway, devices)
    online(gw, mqtt, "node-h")
    other = str(tmp_path / "other.keys")
    with open(psk_file.path) as f, open(other, "w") as g:
        g.write(f.read())
    os.chmod(other, 0o600)
    mark = reload_with(gw, devices + [{"id": "node-new", "uri": "coap://127.0.0.1:9"}],
                       psk_file=other)
    gw.log.wait_for(r'reload: devices changed \(\( "node-h" \) -> \( "node-h", "node-new" \)\); '
                    r'needs a restart, keeping the old value', timeout=1, start=mark)
    pos = mqtt.mark()
    mqtt.wait_for(gw.topic("node-h", "temperature"), timeout=5, start=pos)
    assert not gw.log.find(r"device node-new")
    assert not mqtt.received(gw.topic("node-new", "#"))


# --------------------------------------------------------------------------
# X.509: the gateway's certificate, the device's checked against ca_file

@pytest.mark.parametrize("cn,ok", [("pki-1", True), ("127.0.0.1", True), ("someone-else", False)],
                         ids=["cn-is-id", "cn-is-host", "cn-wrong"])
def test_coap_server_x509(make_gateway, mqtt, peers, tmp_path, cn, ok):
    import sec
    pki = sec.Pki(str(tmp_path / "pki"))
    gwcert = pki.issue("gateway", "/CN=coap2mqtt-gateway")
    dev = pki.issue("device", "/CN=%s" % cn)
    port = free_udp_pair()
    if not COAP_SERVER:
        pytest.skip("coap-server-openssl is not installed (Debian libcoap3-bin)")
    peers("coap-server", [COAP_SERVER, "-A", "127.0.0.1", "-p", str(port), "-v", "4",
                          "-c", dev.cert, "-j", dev.key, "-C", pki.ca_crt]).start()
    mqtt.subscribe(c2m.BASE + "/#")
    # no PSK anywhere: libcoap 4.3 would offer only PSK cipher suites
    gw = make_gateway(overrides={
        "coap": {"ca_file": pki.ca_crt, "cert_file": gwcert.cert, "key_file": gwcert.key,
                 "psk_file": None},
        "devices": [{"id": "pki-1", "uri": "coaps://127.0.0.1:%d" % (port + 1)}]})
    if ok:
        online(gw, mqtt, "pki-1")
        mqtt.wait_for(gw.topic("pki-1", "time"), lambda m: TIME_RE.match(m.payload), timeout=10)
    else:
        gw.log.wait_for(r'its certificate names "someone-else", expected "pki-1" or "127\.0\.0\.1"',
                        timeout=15)
        # and it is dialled again, refused again: never online
        gw.log.wait_for(r"device pki-1: dialling again", timeout=10)
        assert not mqtt.received(gw.topic("pki-1", "availability"))


@pytest.mark.parametrize("coap_extra,reason", [
    ('ca_file = "{d}/ca.crt"; cert_file = "{d}/gw.crt"; key_file = "{d}/gw.key"; '
     'psk_file = "{psk}";', r"coaps with a certificate cannot be used together with PSK"),
    ('cert_file = "{d}/gw.crt"; key_file = "{d}/gw.key";', r"coaps with a certificate needs coap\.ca_file"),
], ids=["with-psk", "no-ca"])
def test_check_refuses_x509_device_it_cannot_serve(c2m_bin, tmp_path, psk_file, coap_extra, reason):
    d = str(tmp_path)
    for name in ("ca.crt", "gw.crt", "gw.key"):
        open(os.path.join(d, name), "w").close()
    conf = os.path.join(d, "x.conf")
    with open(conf, "w") as f:
        f.write('coap = { listen = [ "127.0.0.1:%d" ]; %s };\n'
                'state_dir = "%s";\n'
                'devices = (\n'
                '  { id = "pump-3"; uri = "coaps://pump-3.example"; }\n'
                ');\n' % (c2m.free_port(socket.SOCK_DGRAM),
                          coap_extra.format(d=d, psk=psk_file.path), d))
    rc, out, err = run([c2m_bin, "-t", "-c", conf])
    assert rc == EX_CONFIG, (rc, out, err)
    assert re.search(r"^%s:4: devices\[0\]: %s" % (re.escape(conf), reason), out + err, re.M), out + err
