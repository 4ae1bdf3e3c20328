"""stats.textfile: the bridge/stats counters as a node_exporter
textfile-collector file (Prometheus text exposition format), replaced
atomically every mqtt.stats_interval (issue 17, item 8).

The file is read with a strict parser of the exposition format written
here (every sample announced by its own # HELP and # TYPE, names and
values well-formed, counters named *_total, nothing twice, a final
newline), while a reader thread reads it as fast as it can: no read may
ever see a file that does not parse, and successive generations must be
different inodes (written elsewhere, then renamed over)."""

import os
import re
import subprocess
import threading
import time

import pytest

import c2m

NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
VALUE = re.compile(r"^-?(\d+(\.\d*)?([eE][-+]?\d+)?|\+Inf|-Inf|NaN)$")


def parse_exposition(text):
    """Strict parser for what we write: {name: (type, help, value)}.
    Raises AssertionError on anything malformed."""
    assert text.endswith("\n"), "no final newline (torn file?): %r" % text[-80:]
    families, helps, types = {}, {}, {}
    for n, line in enumerate(text.split("\n")[:-1], 1):
        where = "line %d %r" % (n, line)
        if line.startswith("# HELP "):
            name, _, doc = line[7:].partition(" ")
            assert NAME.match(name) and doc and name not in helps, where
            helps[name] = doc
        elif line.startswith("# TYPE "):
            parts = line[7:].split(" ")
            assert len(parts) == 2 and parts[1] in ("counter", "gauge"), where
            assert parts[0] in helps and parts[0] not in types, where
            types[parts[0]] = parts[1]
        else:
            assert not line.startswith("#") and line, where
            parts = line.split(" ")
            assert len(parts) == 2, where
            name, value = parts
            assert NAME.match(name) and VALUE.match(value), where
            assert name in types, "sample before its # TYPE: " + where
            assert name not in families, "sample twice: " + where
            if types[name] == "counter":
                assert name.endswith("_total") and float(value) >= 0, where
            families[name] = (types[name], helps[name], float(value))
    assert set(families) == set(types), "announced without a sample"
    return families


class Reader(threading.Thread):
    """Reads the file in a tight loop and parses every read."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path = path
        self.stop = threading.Event()
        self.reads = 0
        self.inodes = set()
        self.errors = []
        self.last = None

    def run(self):
        while not self.stop.is_set():
            try:
                with open(self.path) as f:
                    ino = os.fstat(f.fileno()).st_ino
                    text = f.read()
            except FileNotFoundError:
                continue
            try:
                self.last = parse_exposition(text)
                self.reads += 1
                self.inodes.add(ino)
            except AssertionError as e:
                self.errors.append(str(e))
                return


def test_textfile_parses_moves_and_is_never_torn(make_gateway, sim, tmp_path, mqtt):
    coll = tmp_path / "textfile"
    coll.mkdir()
    path = str(coll / "coap2mqtt.prom")
    gw = make_gateway(overrides={"stats": {"textfile": path}})
    reader = Reader(path)
    reader.start()
    try:
        s = sim("meter", extra_args=["--interval", "200"])
        s.wait_for(r"^OBSERVED meter-1 power$", timeout=15)
        deadline = time.monotonic() + 15

        def enough():
            m = reader.last or {}
            return (len(reader.inodes) >= 4 and
                    m.get("coap2mqtt_notifications_in_total", ("", "", 0))[2] >= 5)
        while not enough() and not reader.errors and time.monotonic() < deadline:
            reader.stop.wait(0.05)  # polling a file: there is no event for it
    finally:
        reader.stop.set()
        reader.join(5)
    assert not reader.errors, "a read saw a malformed file: %s" % reader.errors[0]
    assert enough(), ("file not rewritten 4 times or counters still: %d reads, "
                      "%d inodes, last %s" % (reader.reads, len(reader.inodes), reader.last))
    m = reader.last
    assert m["coap2mqtt_registrations_total"][0] == "counter"
    assert m["coap2mqtt_registrations_total"][2] == 1
    assert m["coap2mqtt_handshakes_ok_total"][2] >= 1
    assert m["coap2mqtt_devices"][0] == "gauge" and m["coap2mqtt_devices"][2] == 1
    assert m["coap2mqtt_sessions"][0] == "gauge"
    assert m["coap2mqtt_mqtt_connected"] == ("gauge", m["coap2mqtt_mqtt_connected"][1], 1.0)
    assert "coap2mqtt_time" not in m
    # Readable by node_exporter's user, and no temporary file left behind
    # that the collector would read (it reads *.prom only).
    assert os.stat(path).st_mode & 0o777 == 0o644
    assert [p for p in os.listdir(coll) if p.endswith(".prom")] == ["coap2mqtt.prom"]
    # The same numbers as bridge/stats.
    mqtt.subscribe(gw.topic("bridge", "stats"))
    stats = mqtt.wait_for(gw.topic("bridge", "stats"), timeout=5).json()
    assert stats["registrations"] == m["coap2mqtt_registrations_total"][2]


def test_textfile_needs_stats_interval(c2m_bin, tmp_path, psk_file):
    conf = tmp_path / "bad.conf"
    conf.write_text('coap = { listen = [ "127.0.0.1:5684" ]; psk_file = "%s"; };\n'
                    'mqtt = { stats_interval = 0; };\n'
                    'stats = {\n  textfile = "%s/x.prom";\n};\n' % (psk_file.path, tmp_path))
    r = subprocess.run([c2m_bin, "-t", "-c", str(conf)], capture_output=True, text=True)
    assert r.returncode == 78, r
    assert re.search(r"bad\.conf:4: stats\.textfile: needs mqtt\.stats_interval > 0",
                     r.stderr), r.stderr


@pytest.mark.parametrize("value", ["relative.prom", "/tmp/x.txt", "/tmp/.prom"])
def test_textfile_path_checked(c2m_bin, tmp_path, psk_file, value):
    conf = tmp_path / "bad.conf"
    conf.write_text('coap = { listen = [ "127.0.0.1:5684" ]; psk_file = "%s"; };\n'
                    'stats = { textfile = "%s"; };\n' % (psk_file.path, value))
    r = subprocess.run([c2m_bin, "-t", "-c", str(conf)], capture_output=True, text=True)
    assert r.returncode == 78, r
    assert re.search(r"bad\.conf:2: stats\.textfile: must be an absolute path ending in "
                     r"\"\.prom\"", r.stderr), r.stderr


def test_textfile_directory_must_exist(c2m_bin, tmp_path, psk_file):
    conf = tmp_path / "bad.conf"
    conf.write_text('coap = { listen = [ "127.0.0.1:5684" ]; psk_file = "%s"; };\n'
                    'state_dir = "%s";\n'
                    'stats = {\n  textfile = "%s/no-such-dir/x.prom";\n};\n'
                    % (psk_file.path, tmp_path, tmp_path))
    r = subprocess.run([c2m_bin, "-t", "-c", str(conf)], capture_output=True, text=True)
    assert r.returncode == 78, r
    assert re.search(r"bad\.conf:4: stats\.textfile: .*/no-such-dir: No such file or directory",
                     r.stderr), r.stderr
    (tmp_path / "no-such-dir").write_text("")
    r = subprocess.run([c2m_bin, "-t", "-c", str(conf)], capture_output=True, text=True)
    assert re.search(r"bad\.conf:4: stats\.textfile: .*/no-such-dir: not a directory",
                     r.stderr), r.stderr
    (tmp_path / "no-such-dir").unlink()
    (tmp_path / "no-such-dir").mkdir()
    r = subprocess.run([c2m_bin, "-t", "-c", str(conf)], capture_output=True, text=True)
    assert r.returncode == 0, r
