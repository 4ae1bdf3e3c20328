"""The audit trail of commands (issue 17, item 7): every command, its
origin, device and path, each attempt and its one result, as structured
journal records (one MESSAGE_ID, fields C2M_*) and, with audit.mqtt, as
JSON on the non-retained <base>/bridge/audit.

systemd is not PID 1 here and journald does not run: the daemon runs in a
mount namespace of its own (unshare -m) whose /run is a tmpfs with the
test's directory bound on /run/systemd/journal, where the test listens on
"socket" and parses libsystemd's native journal protocol (KEY=VALUE lines,
or KEY, a little-endian 64-bit length and the bytes, for values with a
newline; a memfd passed with SCM_RIGHTS for large records).  That is the
path sd_journal_sendv writes to, fixed in libsystemd, so nothing in the
daemon is bent for the test."""

import array
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

import c2m

MESSAGE_ID = "7c7ee3153fea4ec895b90fcc2c6422bc"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("unshare"),
    reason="needs root for a private mount namespace (unshare -m)")


def parse_native(data):
    """One datagram of the native journal protocol -> {KEY: value}."""
    fields, i = {}, 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            key, value = line.split(b"=", 1)
            i = nl + 1
        else:
            key = line
            (n,) = struct.unpack("<Q", data[nl + 1:nl + 9])
            value = data[nl + 9:nl + 9 + n]
            assert data[nl + 9 + n:nl + 10 + n] == b"\n", "bad binary field %r" % key
            i = nl + 10 + n
        fields[key.decode()] = value.decode()
    return fields


class Journal:
    """A stand-in for journald's native socket; keeps every record."""

    def __init__(self, directory):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(os.path.join(directory, "socket"))
        self.records = []
        self.cv = threading.Condition()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        fds = array.array("i")
        while True:
            try:
                data, anc, _, _ = self.sock.recvmsg(1 << 20, socket.CMSG_SPACE(4))
            except OSError:
                return
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(payload[:4])
                    fd = fds.pop()
                    data = os.pread(fd, os.fstat(fd).st_size, 0)
                    os.close(fd)
            rec = parse_native(data)
            with self.cv:
                self.records.append(rec)
                self.cv.notify_all()

    def wait_for(self, pred, timeout=10, what="a journal record"):
        with self.cv:
            if not self.cv.wait_for(lambda: any(pred(r) for r in self.records), timeout):
                raise c2m.Timeout("no %s in %d s; have %r" % (what, timeout, self.records[-6:]))
            return [r for r in self.records if pred(r)][0]

    def audit(self, **match):
        with self.cv:
            return [r for r in self.records if r.get("MESSAGE_ID") == MESSAGE_ID and
                    all(r.get(k) == v for k, v in match.items())]

    def close(self):
        self.sock.close()


def namespace_wrapper(journal_dir):
    """argv that runs the daemon with journal_dir as /run/systemd/journal."""
    script = ('mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal && '
              'mount --bind "$0" /run/systemd/journal && exec "$@"')
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", script, journal_dir]


@pytest.fixture
def journal(tmp_path):
    j = Journal(str(tmp_path / "journal"))
    yield j
    j.close()


def audited_gateway(make_gateway, journal, **overrides):
    cfg = {"audit": {"mqtt": True}}
    cfg.update(overrides)
    return make_gateway(overrides=cfg, wrapper=namespace_wrapper(journal.dir))


def mqtt_audit(mqtt, gw, command):
    return [m.json() for m in mqtt.received(gw.topic("bridge", "audit"))
            if m.json().get("command") == command]


def check_origin(rec, gw, device, path, resp=None, corr=None):
    assert rec["C2M_DEVICE"] == device and rec["C2M_PATH"] == path, rec
    assert rec["C2M_ORIGIN_TOPIC"] == gw.topic(device, path, "set"), rec
    assert rec["C2M_METHOD"] == "PUT", rec
    assert rec.get("C2M_RESPONSE_TOPIC") == resp, rec
    assert rec.get("C2M_CORRELATION") == corr, rec
    assert rec["SYSLOG_IDENTIFIER"] == "coap2mqtt" and rec["MESSAGE"], rec


def test_command_life_in_journal_and_on_mqtt(make_gateway, journal, sim, mqtt):
    gw = audited_gateway(make_gateway, journal)
    mqtt.subscribe(gw.topic("bridge", "audit"))
    setpoint = gw.topic("hvac-1", "setpoint")
    s = sim("hvac")
    s.wait_for(r"^OBSERVED hvac-1 setpoint$", timeout=15)
    resp = "replies/audit-1"
    mqtt.subscribe(resp)
    mqtt.publish(setpoint + "/set", b"23.5", response_topic=resp,
                 correlation_data=b"\x01\xab\xff")
    assert mqtt.wait_for(resp, timeout=10).json()["code"] == "2.04"
    res = journal.wait_for(lambda r: r.get("MESSAGE_ID") == MESSAGE_ID and
                           r.get("C2M_EVENT") == "result", what="result record")
    cmd = res["C2M_COMMAND"]
    assert len(cmd) == 32 and int(cmd, 16) >= 0, res
    life = journal.audit(C2M_COMMAND=cmd)
    assert [r["C2M_EVENT"] for r in life] == ["accepted", "attempt", "result"], life
    for r in life:
        check_origin(r, gw, "hvac-1", "setpoint", resp, "01abff")
    accepted, attempt, result = life
    assert accepted["C2M_PAYLOAD_BYTES"] == "4" and accepted["PRIORITY"] == "6", accepted
    assert accepted["C2M_TTL_MS"] == "300000", accepted
    assert attempt["C2M_ATTEMPT"] == "1" and 0 <= int(attempt["C2M_COAP_MID"]) <= 65535
    assert len(attempt["C2M_COAP_TOKEN"]) == 16, attempt
    assert s.wait_for(r"^PUT hvac-1 setpoint 4 23\.5$", timeout=5)
    assert result["C2M_RESULT"] == "2.04" and result["C2M_ATTEMPTS"] == "1", result
    assert int(result["C2M_RTT_MS"]) >= 0 and result["PRIORITY"] == "6", result
    # The same life on bridge/audit, never retained.
    stream = mqtt.wait_for(gw.topic("bridge", "audit"),
                           lambda m: len(mqtt_audit(mqtt, gw, cmd)) >= 3, timeout=10)
    assert not stream.retain
    events = mqtt_audit(mqtt, gw, cmd)
    assert [e["event"] for e in events] == ["accepted", "attempt", "result"], events
    assert events[2]["result"] == "2.04" and events[2]["attempts"] == 1, events
    assert events[1]["coap_mid"] == int(attempt["C2M_COAP_MID"]), events
    assert events[0]["correlation"] == "01abff" and events[0]["response_topic"] == resp
    assert events[0]["origin_topic"] == gw.topic("hvac-1", "setpoint", "set")
    assert isinstance(events[0]["time_ms"], int)


def test_unanswered_command_expires_and_rejections(make_gateway, journal, sim, mqtt):
    """A device asleep on its session: the command goes out (one attempt)
    and gets no answer within its time to live: result "expired".  A
    command for an unknown device is audited as rejected."""
    gw = audited_gateway(make_gateway, journal, commands={"ttl": 3})
    mqtt.subscribe(gw.topic("bridge", "audit"))
    setpoint = gw.topic("hvac-1", "setpoint")
    mqtt.subscribe(setpoint + "/set/result")
    s = sim("hvac", extra_args=["--sleep-after", "1", "--sleep-for", "120"])
    s.wait_for(r"^SLEEP hvac-1$", timeout=20)
    mqtt.publish(setpoint + "/set", b"19")
    assert mqtt.wait_for(setpoint + "/set/result", timeout=10).json() == {"error": "expired"}
    res = journal.wait_for(lambda r: r.get("MESSAGE_ID") == MESSAGE_ID and
                           r.get("C2M_RESULT") == "expired")
    life = journal.audit(C2M_COMMAND=res["C2M_COMMAND"])
    assert [r["C2M_EVENT"] for r in life] == ["accepted", "attempt", "result"], life
    assert res["C2M_ATTEMPTS"] == "1" and res["PRIORITY"] == "4" and "C2M_RTT_MS" not in res
    mqtt.publish(gw.topic("nobody", "x", "set"), b"1")
    rej = journal.wait_for(lambda r: r.get("MESSAGE_ID") == MESSAGE_ID and
                           r.get("C2M_EVENT") == "rejected")
    assert rej["C2M_DEVICE"] == "nobody" and rej["C2M_RESULT"] == "unknown device", rej
    assert rej["C2M_ORIGIN_TOPIC"] == gw.topic("nobody", "x", "set"), rej
    mqtt.wait_for(gw.topic("bridge", "audit"),
                  lambda m: m.json().get("event") == "rejected", timeout=10)


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_timeout_after_retransmissions(make_gateway, journal, sim, mqtt):
    """A device gone without a word: libcoap retransmits the CON PUT by the
    RFC 7252 backoff (up to ~93 s) and gives up: result "timeout", with all
    4 retransmissions."""
    gw = audited_gateway(make_gateway, journal)
    mqtt.subscribe(gw.topic("bridge", "audit"))
    setpoint = gw.topic("hvac-1", "setpoint")
    s = sim("hvac", extra_args=["--interval", "60000"])
    s.wait_for(r"^OBSERVED hvac-1 setpoint$", timeout=15)
    s.expect_death = True
    s.stop(c2m.signal.SIGKILL)
    mqtt.publish(setpoint + "/set", b"25.0", correlation_data=b"t-1")
    res = journal.wait_for(lambda r: r.get("MESSAGE_ID") == MESSAGE_ID and
                           r.get("C2M_EVENT") == "result", timeout=150)
    assert res["C2M_RESULT"] == "timeout" and res["C2M_RETRANSMISSIONS"] == "4", res
    assert res["C2M_CORRELATION"] == "742d31" and res["PRIORITY"] == "4", res
    life = journal.audit(C2M_COMMAND=res["C2M_COMMAND"])
    assert [r["C2M_EVENT"] for r in life] == ["accepted", "attempt", "result"], life
    mqtt.wait_for(gw.topic("bridge", "audit"),
                  lambda m: m.json().get("result") == "timeout" and
                  m.json().get("retransmissions") == 4, timeout=10)


JOURNALD = "/lib/systemd/systemd-journald"

# The daemon's namespace gets a real journald of its own, writing its
# journal files into the test's directory: the host's journal (if any) is
# never touched, and the files are read back with the real journalctl.
JOURNALD_SCRIPT = """set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/systemd/journal /run/log/journal
mount --bind "$0" /run/log/journal
if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
%s </dev/null >/dev/null 2>&1 &
echo $! > "$1"
n=0
while [ ! -S /run/systemd/journal/socket ]; do
    n=$((n + 1)); [ $n -lt 200 ] || exit 1; sleep 0.05
done
shift
exec "$@"
""" % JOURNALD


@pytest.fixture
def journald(tmp_path):
    """(wrapper argv, journal directory); journald is stopped at the end."""
    d, pidfile = tmp_path / "journal-files", tmp_path / "journald.pid"
    d.mkdir()
    yield (["unshare", "-m", "--propagation", "private", "sh", "-c", JOURNALD_SCRIPT,
            str(d), str(pidfile)], str(d))
    if pidfile.exists():
        try:
            os.kill(int(pidfile.read_text()), signal.SIGTERM)
        except (ProcessLookupError, ValueError):
            pass


def journalctl(directory, *matches):
    r = subprocess.run(["journalctl", "-D", directory, "--no-pager", "-o", "json"]
                       + list(matches), capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def journalctl_until(directory, count, *matches, timeout=10):
    """journalctl until it shows 'count' records (journald writes the
    datagrams it gets asynchronously; its files have no event to wait on)."""
    deadline = time.monotonic() + timeout
    while True:
        recs = journalctl(directory, *matches)
        if len(recs) >= count or time.monotonic() > deadline:
            return recs
        time.sleep(0.1)


@pytest.mark.skipif(not os.access(JOURNALD, os.X_OK) or not shutil.which("journalctl"),
                    reason="needs systemd-journald and journalctl (Debian: systemd)")
def test_documented_journalctl_queries(make_gateway, journald, sim, mqtt):
    """docs/AUDIT.md's queries, run by the real journalctl on what a real
    journald stored."""
    wrapper, directory = journald
    gw = make_gateway(wrapper=wrapper)
    setpoint = gw.topic("hvac-1", "setpoint")
    mqtt.subscribe(setpoint + "/set/result")
    mqtt.subscribe(gw.topic("hvac-1", "temperature", "set", "result"))
    s = sim("hvac")
    s.wait_for(r"^OBSERVED hvac-1 setpoint$", timeout=15)
    mqtt.publish(setpoint + "/set", b"22", correlation_data=b"\x01\xab\xff")
    assert mqtt.wait_for(setpoint + "/set/result", timeout=10).json()["code"] == "2.04"
    # temperature is read-only on the simulated hvac: 4.05, a warning.
    mqtt.publish(gw.topic("hvac-1", "temperature", "set"), b"1")
    assert mqtt.wait_for(gw.topic("hvac-1", "temperature", "set", "result"),
                         timeout=10).json()["code"] == "4.05"
    mid = "MESSAGE_ID=" + MESSAGE_ID
    dev = journalctl_until(directory, 6, mid, "C2M_DEVICE=hvac-1")
    assert [r["C2M_EVENT"] for r in dev] == ["accepted", "attempt", "result"] * 2, dev
    assert all(r["SYSLOG_IDENTIFIER"] == "coap2mqtt" for r in dev)
    one = journalctl(directory, mid, "C2M_COMMAND=" + dev[0]["C2M_COMMAND"])
    assert [r["C2M_PATH"] for r in one] == ["setpoint"] * 3, one
    corr = journalctl(directory, mid, "C2M_CORRELATION=01abff")
    assert len(corr) == 3 and corr[2]["C2M_RESULT"] == "2.04", corr
    failed = journalctl(directory, mid, "C2M_EVENT=result", "-p", "warning")
    assert [(r["C2M_PATH"], r["C2M_RESULT"]) for r in failed] == [("temperature", "4.05")]
    assert journalctl(directory, mid, "C2M_DEVICE=nobody") == []


def test_audit_off(make_gateway, journal, sim, mqtt):
    """audit.journal = false and no audit.mqtt: nothing is written."""
    gw = make_gateway(overrides={"audit": {"journal": False}},
                      wrapper=namespace_wrapper(journal.dir))
    mqtt.subscribe(gw.topic("bridge", "audit"))
    setpoint = gw.topic("hvac-1", "setpoint")
    mqtt.subscribe(setpoint + "/set/result")
    s = sim("hvac")
    s.wait_for(r"^OBSERVED hvac-1 setpoint$", timeout=15)
    mqtt.publish(setpoint + "/set", b"21")
    assert mqtt.wait_for(setpoint + "/set/result", timeout=10).json()["code"] == "2.04"
    assert journal.audit() == [] and mqtt.received(gw.topic("bridge", "audit")) == []
