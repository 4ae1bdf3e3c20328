"""
Helpers for the coap2mqtt integration tests: real processes (mosquitto, the
gateway, the sensor simulator, coap-client-openssl) and a paho MQTT v5
client, each with a way to *await* an event (a log line, a stdout line, an
MQTT message, process exit) under a timeout.  Nothing here sleeps to
synchronise; the only fixed delays are poll intervals inside bounded waits.
"""

import itertools
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

BASE = "c2m-test"

# CoAP Content-Format -> MQTT v5 content type (DESIGN.md, "Broker side").
CONTENT_TYPES = {
    0: "text/plain;charset=utf-8",
    40: "application/link-format",
    42: "application/octet-stream",
    50: "application/json",
    60: "application/cbor",
    110: "application/senml+json",
    112: "application/senml+cbor",
}

SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")


class Timeout(AssertionError):
    """An awaited event did not happen in time (a test failure, not an error)."""


def free_port(kind=socket.SOCK_STREAM, host="127.0.0.1"):
    """A port the kernel just handed out for 'kind' on 'host' (then released)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def ipv6_loopback_available():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


_addr_counter = itertools.count(1)


def addr_block():
    """A fresh 127.a.b.0 base address: every simulated peer gets its own
    source address (the simulator adds the sensor index to the last byte).
    The second byte depends on the pid so parallel test runs differ."""
    n = next(_addr_counter)
    return "127.%d.%d.0" % (100 + os.getpid() % 100, n % 250 + 1)


def peer_addr():
    """One fresh loopback address for a single peer (coap-client)."""
    base = addr_block().rsplit(".", 1)[0]
    return base + ".1"


# --------------------------------------------------------------------------
# Line streams: stdout/stderr of a child, kept and awaitable.

class LineLog:
    """Reads a byte stream line by line in a thread, keeps every line, mirrors
    it to a file with its arrival time (the daemon and the simulator print
    none, and a failure in CI is read from that file), and lets tests await
    a regex from a given position."""

    def __init__(self, stream, path, name):
        self.name = name
        self.path = path
        self.lines = []
        self.stamps = []
        self.closed = False
        self._cv = threading.Condition()
        self._file = open(path, "w", encoding="utf-8", errors="replace")
        self._thread = threading.Thread(target=self._run, args=(stream,),
                                        name="reader-" + name, daemon=True)
        self._thread.start()

    def _run(self, stream):
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            now = time.time()
            stamp = "%s.%03d" % (time.strftime("%H:%M:%S", time.gmtime(now)),
                                 int(now * 1000) % 1000)
            with self._cv:
                self.lines.append(line)
                self.stamps.append(stamp)
                self._file.write(stamp + " " + line + "\n")
                self._file.flush()
                self._cv.notify_all()
        with self._cv:
            self.closed = True
            self._file.close()
            self._cv.notify_all()

    def mark(self):
        """Position to search from, to await only lines that come later."""
        with self._cv:
            return len(self.lines)

    def tail(self, n):
        """The last n lines, each with its arrival time (for reports)."""
        with self._cv:
            return ["%s %s" % (t, l) for t, l in zip(self.stamps[-n:], self.lines[-n:])]

    def text(self):
        with self._cv:
            return "\n".join(self.lines)

    def find(self, regex, start=0):
        rx = re.compile(regex)
        with self._cv:
            return [m for m in (rx.search(l) for l in self.lines[start:]) if m]

    def wait_for(self, regex, timeout=10, start=0):
        """Returns the re.Match of the first line at or after 'start' that
        matches; raises Timeout (with the tail of the stream) otherwise."""
        return self.wait_line(regex, timeout, start)[0]

    def wait_line(self, regex, timeout=10, start=0):
        """Like wait_for, and also the position after the matching line."""
        rx = re.compile(regex)
        deadline = time.monotonic() + timeout
        pos = start
        with self._cv:
            while True:
                while pos < len(self.lines):
                    m = rx.search(self.lines[pos])
                    pos += 1
                    if m:
                        return m, pos
                left = deadline - time.monotonic()
                if self.closed or left <= 0:
                    tail = "\n".join(self.lines[-30:])
                    why = "stream closed" if self.closed else "timed out after %.1fs" % timeout
                    raise Timeout("%s: %s waiting for /%s/; last lines:\n%s"
                                  % (self.name, why, regex, tail))
                self._cv.wait(left)

    def join(self, timeout=5):
        self._thread.join(timeout)


def stop_process(proc, sig=signal.SIGTERM, timeout=5):
    """Sends 'sig' and waits; returns the exit code, or None if it is still
    running after 'timeout' (then it is killed, so nothing outlives a test)."""
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        return None


# --------------------------------------------------------------------------
# mosquitto

class Broker:
    """A real mosquitto on a free TCP port with persistence in 'tmpdir'."""

    def __init__(self, tmpdir):
        self.dir = tmpdir
        self.host = "127.0.0.1"
        self.port = free_port()
        self.conf = os.path.join(tmpdir, "mosquitto.conf")
        self.proc = None
        self.log = None
        self.generation = 0
        with open(self.conf, "w") as f:
            f.write("listener %d %s\n" % (self.port, self.host))
            f.write("allow_anonymous true\n")
            f.write("persistence true\n")
            f.write("persistence_location %s/\n" % tmpdir)
            f.write("autosave_on_changes true\n")
            f.write("autosave_interval 1\n")
            f.write("log_dest stderr\n")
            f.write("log_type all\n")
            f.write("connection_messages true\n")
            if os.geteuid() == 0:
                # As root mosquitto would switch to its own user, which
                # cannot write into pytest's private (0700) tmp dirs.
                f.write("user root\n")
        self.start()

    @property
    def address(self):
        return (self.host, self.port)

    def start(self, timeout=10):
        assert self.proc is None or self.proc.poll() is not None
        self.generation += 1
        self.proc = subprocess.Popen(
            ["mosquitto", "-c", self.conf], stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, close_fds=True)
        self.log = LineLog(self.proc.stdout,
                           os.path.join(self.dir, "mosquitto.%d.log" % self.generation),
                           "mosquitto")
        # The listener is up once it accepts a TCP connection.
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("mosquitto exited %s:\n%s"
                                   % (self.proc.returncode, self.log.text()))
            try:
                with socket.create_connection(self.address, timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise Timeout("mosquitto did not listen on %d" % self.port)
                time.sleep(0.05)

    def stop(self, timeout=10):
        """Graceful stop (SIGTERM: it saves its persistence file)."""
        if self.proc is None:
            return None
        rc = stop_process(self.proc, signal.SIGTERM, timeout)
        self.log.join()
        return rc

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            stop_process(self.proc, signal.SIGKILL, 5)


# --------------------------------------------------------------------------
# MQTT v5 client

class Message:
    def __init__(self, msg):
        self.topic = msg.topic
        self.payload = bytes(msg.payload)
        self.qos = msg.qos
        self.retain = bool(msg.retain)
        self.properties = getattr(msg, "properties", None)   # none on 3.1.1
        self.received = time.monotonic()

    def prop(self, name, default=None):
        return getattr(self.properties, name, default) if self.properties else default

    @property
    def content_type(self):
        return self.prop("ContentType")

    def tail(self, n):
        """The last n lines, each with its arrival time (for reports)."""
        with self._cv:
            return ["%s %s" % (t, l) for t, l in zip(self.stamps[-n:], self.lines[-n:])]

    def text(self):
        return self.payload.decode("utf-8")

    def json(self):
        return json.loads(self.payload)

    def __repr__(self):
        p = self.payload if len(self.payload) <= 80 else self.payload[:80] + b"..."
        return "<%s q%d%s %r ct=%s>" % (self.topic, self.qos,
                                        " R" if self.retain else "", p,
                                        self.content_type)


# The gateway under test speaks MQTT 3.1.1 (C2M_MQTT_PROTOCOL): its
# publishes carry no properties, so no content type reaches the subscriber.
GATEWAY_V5 = os.environ.get("C2M_MQTT_PROTOCOL", "5") != "3.1.1"


def ct(expected):
    """The content type a subscriber sees for a reading the gateway sent as
    'expected': none when the gateway speaks 3.1.1."""
    return expected if GATEWAY_V5 else None


def ct_any(*expected):
    return expected if GATEWAY_V5 else (None,)


class Mqtt:
    """paho MQTT v5 client on its own network thread.  Every message on any
    subscribed filter is kept in arrival order; wait_for() awaits one."""

    def __init__(self, host, port, client_id=None, clean_start=True,
                 session_expiry=0, protocol="5"):
        self.client_id = client_id or "t-" + uuid.uuid4().hex[:12]
        self.messages = []
        self.subs = {}          # filter -> qos
        self._cv = threading.Condition()
        self._connected = False
        self._acks = {}         # mid -> True once SUBACK/PUBACK is in
        if protocol == "3.1.1":     # e.g. RabbitMQ, which refuses v5
            c = paho.Client(client_id=self.client_id, clean_session=clean_start,
                            protocol=paho.MQTTv311)
        else:
            c = paho.Client(client_id=self.client_id, protocol=paho.MQTTv5)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_ack
        c.on_publish = self._on_ack
        c.reconnect_delay_set(1, 2)
        self.client = c
        if protocol == "3.1.1":
            c.connect(host, port, keepalive=30)
        else:
            props = Properties(PacketTypes.CONNECT)
            if session_expiry:
                props.SessionExpiryInterval = session_expiry
            c.connect(host, port, keepalive=30, clean_start=clean_start,
                      properties=props)
        c.loop_start()
        self.wait_connected()

    # -- paho callbacks (network thread)
    def _on_connect(self, client, userdata, flags, rc, properties=None):
        with self._cv:
            self._connected = rc == 0
            self.session_present = bool(flags.get("session present"))
            self._cv.notify_all()
        if rc == 0 and not self.session_present:
            for filt, qos in list(self.subs.items()):
                client.subscribe(filt, qos)

    def _on_disconnect(self, client, userdata, rc, properties=None):
        with self._cv:
            self._connected = False
            self._cv.notify_all()

    def _on_message(self, client, userdata, msg):
        m = Message(msg)
        with self._cv:
            self.messages.append(m)
            self._cv.notify_all()

    def _on_ack(self, client, userdata, mid, *args):
        with self._cv:
            self._acks[mid] = True
            self._cv.notify_all()

    def _wait_cv(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        with self._cv:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Timeout("mqtt %s: timed out after %.1fs waiting for %s"
                                  % (self.client_id, timeout, what))
                self._cv.wait(left)

    def wait_connected(self, timeout=10):
        self._wait_cv(lambda: self._connected, timeout, "CONNACK")

    def _wait_mid(self, rc, mid, timeout, what):
        assert rc == paho.MQTT_ERR_SUCCESS, "%s: rc %s" % (what, rc)
        self._wait_cv(lambda: self._acks.get(mid), timeout, what)

    # -- API
    def subscribe(self, topic_filter, qos=1, timeout=10):
        """Subscribes (once per filter) and waits for the SUBACK, so that
        anything triggered afterwards is seen."""
        if topic_filter in self.subs:
            return
        self.subs[topic_filter] = qos
        rc, mid = self.client.subscribe(topic_filter, qos)
        self._wait_mid(rc, mid, timeout, "SUBACK for " + topic_filter)

    def publish(self, topic, payload=b"", qos=1, retain=False, timeout=10,
                response_topic=None, correlation_data=None, content_type=None):
        props = Properties(PacketTypes.PUBLISH)
        if response_topic is not None:
            props.ResponseTopic = response_topic
        if correlation_data is not None:
            props.CorrelationData = correlation_data
        if content_type is not None:
            props.ContentType = content_type
        info = self.client.publish(topic, payload, qos=qos, retain=retain,
                                   properties=props)
        if qos > 0:
            self._wait_mid(info.rc, info.mid, timeout, "PUBACK for " + topic)
        return info

    def mark(self):
        """Position in the message list, to await only later messages."""
        with self._cv:
            return len(self.messages)

    def received(self, topic_filter, start=0):
        """All messages so far matching 'topic_filter', in arrival order."""
        with self._cv:
            return [m for m in self.messages[start:]
                    if paho.topic_matches_sub(topic_filter, m.topic)]

    def wait_for(self, topic_filter, predicate=None, timeout=10, start=0):
        """Subscribes if needed, then returns the first message (at or after
        position 'start') on 'topic_filter' for which predicate(msg) holds.
        A topic an existing subscription covers is not subscribed again: the
        broker would deliver each message once per matching subscription."""
        covered = "+" not in topic_filter and "#" not in topic_filter and any(
            paho.topic_matches_sub(f, topic_filter) for f in list(self.subs))
        if not covered:
            self.subscribe(topic_filter)
        found = []
        pos = [start]

        def check():
            while pos[0] < len(self.messages):
                m = self.messages[pos[0]]
                pos[0] += 1
                if paho.topic_matches_sub(topic_filter, m.topic) and \
                        (predicate is None or predicate(m)):
                    found.append(m)
                    return True
            return False

        try:
            self._wait_cv(check, timeout, "a message on %s" % topic_filter)
        except Timeout as e:
            seen = self.received(topic_filter, start)[-10:]
            raise Timeout("%s; seen on that filter: %r" % (e, seen)) from None
        return found[0]

    def wait_payload(self, topic, payload, timeout=10, start=0):
        if isinstance(payload, str):
            payload = payload.encode()
        return self.wait_for(topic, lambda m: m.payload == payload, timeout, start)

    def close(self):
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()


# --------------------------------------------------------------------------
# PSK file

class PskFile:
    """IDENTITY:SECRET lines, mode 0600; every identity gets its own secret."""

    def __init__(self, path, identities=()):
        self.path = path
        self.keys = {}
        for ident in identities:
            self.keys[ident] = "k-%s-%s" % (ident, uuid.uuid4().hex[:10])
        self.write()

    def add(self, identity, secret=None):
        self.keys[identity] = secret or "k-%s-%s" % (identity, uuid.uuid4().hex[:10])
        self.write()
        return self.keys[identity]

    def write(self):
        fd = os.open(self.path + ".new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("# written by the integration tests\n")
            for ident, key in self.keys.items():
                f.write("%s:%s\n" % (ident, key))
        os.chmod(self.path + ".new", 0o600)
        os.replace(self.path + ".new", self.path)

    def __getitem__(self, identity):
        return self.keys[identity]


# --------------------------------------------------------------------------
# The gateway

def libconfig_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[ " + ", ".join(libconfig_value(x) for x in v) + " ]"
    return '"%s"' % str(v).replace("\\", "\\\\").replace('"', '\\"')


def libconfig_text(cfg):
    """Renders {"coap": {...}, "state_dir": "..."} as libconfig text."""
    out = []
    for key, val in cfg.items():
        if isinstance(val, (list, tuple)) and val and all(isinstance(x, dict) for x in val):
            # a list of groups: the devices list
            out.append("%s = (" % key)
            out.append(",\n".join(
                "  { " + " ".join("%s = %s;" % (k, libconfig_value(v)) for k, v in x.items()) + " }"
                for x in val))
            out.append(");")
        elif isinstance(val, dict):
            out.append("%s = {" % key)
            for k, v in val.items():
                if v is not None:       # None: the setting left out
                    out.append("  %s = %s;" % (k, libconfig_value(v)))
            out.append("};")
        else:
            out.append("%s = %s;" % (key, libconfig_value(val)))
    return "\n".join(out) + "\n"


def gateway_env():
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0:exitcode=23"
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
    return env


class Gateway:
    """The real daemon: C2M_BIN -c conf -v, stderr kept in a LineLog."""

    def __init__(self, binary, tmpdir, broker, psk, listen_host="127.0.0.1",
                 overrides=None, name="gw"):
        self.binary = binary
        self.dir = tmpdir
        self.name = name
        self.base = BASE
        self.listen_host = listen_host
        self.port = free_port(socket.SOCK_DGRAM, listen_host)
        self.client_id = "c2m-%s-%s" % (name, uuid.uuid4().hex[:8])
        self.state_dir = os.path.join(tmpdir, name + "-state")
        os.makedirs(self.state_dir, exist_ok=True)
        hostpart = "[%s]" % listen_host if ":" in listen_host else listen_host
        self.cfg = {
            "coap": {"listen": ["%s:%d" % (hostpart, self.port)],
                     "psk_file": psk.path},
            "state_dir": self.state_dir,
            "mqtt": {"host": broker.host, "port": broker.port,
                     "base_topic": self.base, "client_id": self.client_id,
                     "stats_interval": 1,
                     # The list soon after every change (the default is
                     # once per 30 s); test_registry.py tests the default.
                     "devices_interval": 1},
            "rd": {"min_lifetime": 1},
        }
        # C2M_MQTT_PROTOCOL=3.1.1 runs a suite again with the gateway on
        # MQTT 3.1.1 (make test does, for the files that matter most).
        if os.environ.get("C2M_MQTT_PROTOCOL"):
            self.cfg["mqtt"]["protocol"] = os.environ["C2M_MQTT_PROTOCOL"]
        for key, val in (overrides or {}).items():
            if isinstance(val, dict):
                self.cfg.setdefault(key, {}).update(val)
            else:
                self.cfg[key] = val
        self.conf = os.path.join(tmpdir, name + ".conf")
        with open(self.conf, "w") as f:
            f.write(libconfig_text(self.cfg))
        self.proc = None
        self.log = None
        self.exit_code = None
        self.expect_death = False   # set when a test kills it on purpose
        self.wrapper = []           # argv run before the daemon's (exec'ing it)
        self.extra_env = {}         # more environment for the next start (power cuts)

    @property
    def uri(self):
        host = "[%s]" % self.listen_host if ":" in self.listen_host else self.listen_host
        return "coaps://%s:%d" % (host, self.port)

    def start(self):
        self.runs = getattr(self, "runs", 0) + 1
        suffix = "" if self.runs == 1 else ".%d" % self.runs
        self.proc = subprocess.Popen(
            self.wrapper + [self.binary, "-c", self.conf] + GATEWAY_FLAGS,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=dict(gateway_env(), **self.extra_env), close_fds=True)
        self.log = LineLog(self.proc.stderr,
                           os.path.join(self.dir, self.name + suffix + ".stderr"),
                           "gateway " + self.name + suffix)
        return self

    def respawn(self):
        """A new process on the same config, port and state_dir (after the
        old one exited: a restart, or recovery after kill -9)."""
        assert not self.running()
        self.old_logs = getattr(self, "old_logs", []) + [self.log]
        self.exit_code = None
        self.expect_death = False
        return self.start()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=5):
        """Signals the daemon and returns its exit code (None: it hung and
        was killed)."""
        if self.proc is None:
            return None
        if self.exit_code is None:
            self.exit_code = stop_process(self.proc, sig, timeout)
            self.log.join()
        return self.exit_code

    def sanitizer_reports(self):
        logs = getattr(self, "old_logs", []) + ([self.log] if self.log else [])
        text = "\n".join(log.text() for log in logs)
        return [l for l in text.splitlines() if any(s in l for s in SANITIZER_MARKERS)]

    def topic(self, *levels):
        return "/".join((self.base,) + levels)


# --------------------------------------------------------------------------
# The simulator

# For chasing a failure: C2M_GW_FLAGS=-vvv dumps every CoAP PDU the gateway
# sends and receives, C2M_SIM_FLAGS=-v every PDU of the simulators; each
# line in the logs carries its arrival time.
GATEWAY_FLAGS = os.environ.get("C2M_GW_FLAGS", "-v").split()
SIM_FLAGS = os.environ.get("C2M_SIM_FLAGS", "").split()

SIM_LINE = re.compile(r"^(REGISTERED|OBSERVED|OBSERVE_GET|NOTIFY|PUT|PUSH|SLEEP|WAKE|REBOOT|ERROR|SUMMARY)\b")


class Sim:
    """C2M_SIM talking to a gateway; its stdout protocol lines are awaitable."""

    def __init__(self, binary, tmpdir, gateway, psk, kind, count=1, bind=None,
                 extra_args=(), name=None):
        self.kind = kind
        self.count = count
        self.bind = bind or addr_block()
        self.name = name or "sim-%s-%s" % (kind, uuid.uuid4().hex[:6])
        gwhost = gateway.listen_host
        gw = "[%s]:%d" % (gwhost, gateway.port) if ":" in gwhost else "%s:%d" % (gwhost, gateway.port)
        self.argv = [binary, "--gateway", gw, "--kind", kind, "--count", str(count),
                     "--psk-file", psk.path]
        if bind is not False:
            self.argv += ["--bind", self.bind]
        self.argv += [str(a) for a in extra_args] + SIM_FLAGS
        self.stderr_path = os.path.join(tmpdir, self.name + ".stderr")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=gateway_env(), close_fds=True)
        self.out = LineLog(self.proc.stdout, os.path.join(tmpdir, self.name + ".stdout"),
                           self.name)
        self.err = LineLog(self.proc.stderr, self.stderr_path, self.name + " stderr")
        self.exit_code = None
        self.expect_death = False   # set when a test kills it on purpose

    def wait_for(self, regex, timeout=10, start=0):
        return self.out.wait_for(regex, timeout, start)

    def mark(self):
        return self.out.mark()

    def stop(self, sig=signal.SIGTERM, timeout=5):
        if self.exit_code is None:
            self.exit_code = stop_process(self.proc, sig, timeout)
            self.out.join()
            self.err.join()
        return self.exit_code

    def summary(self):
        for m in self.out.find(r"^SUMMARY (.*)$"):
            return json.loads(m.group(1))
        return None


# --------------------------------------------------------------------------
# coap-client-openssl as an independent device

RESPONSE_CODE = re.compile(r"\bc:(\d\.\d\d)\b")
ERROR_CODE = re.compile(r"^(\d\.\d\d)(?: |$)", re.M)


class CoapResult:
    def __init__(self, argv, rc, out, elapsed):
        self.argv = argv
        self.rc = rc
        self.out = out
        self.elapsed = elapsed

    @property
    def codes(self):
        """Response codes of every PDU the client received (-v 6 prints them)."""
        return [m.group(1) for m in RESPONSE_CODE.finditer(self.received_pdus())]

    def received_pdus(self):
        # With -v 6 libcoap shows sent and received PDUs alike; requests are
        # 0.xx, so responses are told apart by their class.
        return "\n".join(l for l in self.out.splitlines()
                         if RESPONSE_CODE.search(l) and not RESPONSE_CODE.search(l).group(1).startswith("0."))

    @property
    def code(self):
        codes = self.codes
        return codes[-1] if codes else None

    def options(self, name):
        """Values of option 'name' (e.g. Location-Path) in the last response."""
        pdus = [l for l in self.received_pdus().splitlines()]
        if not pdus:
            return []
        return re.findall(r"\b%s:([^, \]]*)" % re.escape(name), pdus[-1])

    def __repr__(self):
        return "coap-client %s -> rc %s:\n%s" % (" ".join(self.argv), self.rc, self.out)


def coap_argv(uri, identity, key, method="get", payload=None, ct=None,
              options=(), local=None, wait=5, block=None, non=False,
              file=None, observe=None, verbosity=6, local_port=None):
    argv = ["coap-client-openssl", "-m", method, "-v", str(verbosity), "-B", str(wait)]
    if identity is not None:
        argv += ["-u", identity]
    if key is not None:
        argv += ["-k", key]
    if ct is not None:
        argv += ["-t", str(ct)]
    if payload is not None:
        argv += ["-e", payload]
    if file is not None:
        argv += ["-f", file]
    if block is not None:
        argv += ["-b", str(block)]
    if non:
        argv.append("-N")
    if observe is not None:
        argv += ["-s", str(observe)]
    if local is not None:
        argv += ["-a", local]
    if local_port is not None:
        argv += ["-p", str(local_port)]     # a device with a fixed source port
    for num, text in options:
        argv += ["-O", "%d,%s" % (num, text)]
    argv.append(uri)
    return argv


def coap_client(uri, identity, key, timeout=20, **kw):
    """Runs one coap-client-openssl exchange and returns what it printed
    (stdout and stderr together; it exits 0 even on failure)."""
    argv = coap_argv(uri, identity, key, **kw)
    t0 = time.monotonic()
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=timeout)
    return CoapResult(argv, p.returncode, p.stdout.decode("utf-8", "replace"),
                      time.monotonic() - t0)


class CoapClientRun:
    """coap-client-openssl running in the background, its output awaitable
    line by line (-v 7 shows every PDU it receives, empty ACKs included)."""

    def __init__(self, tmpdir, uri, identity, key, **kw):
        kw.setdefault("verbosity", 7)
        self.argv = coap_argv(uri, identity, key, **kw)
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.log = LineLog(self.proc.stdout,
                           os.path.join(tmpdir, "coap-client-%d.log" % self.proc.pid),
                           "coap-client")

    def wait(self, timeout):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            stop_process(self.proc, signal.SIGKILL)
            raise Timeout("coap-client still running after %ss:\n%s"
                          % (timeout, self.log.text()))
        self.log.join()
        return CoapResult(self.argv, rc, self.log.text(), time.monotonic() - self.t0)

    def kill(self):
        stop_process(self.proc, signal.SIGKILL)


def find_counters(obj, regex, prefix=""):
    """{dotted.name: value} for numeric leaves of a stats JSON whose dotted
    name matches 'regex' (the counter names are the daemon's to choose)."""
    rx = re.compile(regex)
    out = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            name = prefix + "." + k if prefix else k
            if isinstance(v, (dict, list)):
                out.update(find_counters(v, regex, name))
            elif isinstance(v, (int, float)) and not isinstance(v, bool) and rx.search(name):
                out[name] = v
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.update(find_counters(v, regex, "%s[%d]" % (prefix, i)))
    return out
