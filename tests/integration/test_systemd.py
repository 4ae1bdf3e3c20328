"""systemd notification without systemd as PID 1: the test binds its own
NOTIFY_SOCKET and reads what the daemon tells it (sd_notify(3))."""

import signal
import socket
import time


class Notifications:
    """An AF_UNIX datagram socket collecting sd_notify messages."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.1)
        self.seen = []

    def _drain(self):
        try:
            while True:
                self.seen.extend(self.sock.recv(4096).decode().split("\n"))
        except socket.timeout:
            pass

    def wait_for(self, line, timeout):
        deadline = time.monotonic() + timeout
        while True:
            if line in self.seen:
                return self.seen.index(line)
            if time.monotonic() > deadline:
                raise AssertionError("no %r within %.0f s; got %r" % (line, timeout, self.seen))
            self._drain()

    def close(self):
        self.sock.close()


def notifications(tmp_path, monkeypatch, watchdog_usec=None):
    n = Notifications(str(tmp_path / "notify.sock"))
    monkeypatch.setenv("NOTIFY_SOCKET", n.path)
    if watchdog_usec:
        monkeypatch.setenv("WATCHDOG_USEC", str(watchdog_usec))
    return n


def test_ready_watchdog_and_stopping(make_gateway, tmp_path, monkeypatch):
    n = notifications(tmp_path, monkeypatch, watchdog_usec=1000000)
    try:
        gw = make_gateway()             # returns once bridge/state is online
        ready = n.wait_for("READY=1", timeout=10)
        # The watchdog (1 s) is fed at half its period, after READY.
        n.wait_for("WATCHDOG=1", timeout=5)
        assert n.seen.index("WATCHDOG=1") != ready
        assert gw.stop(signal.SIGTERM, timeout=5) == 0
        n.wait_for("STOPPING=1", timeout=2)
        assert n.seen.index("STOPPING=1") > ready
    finally:
        n.close()


def test_broker_down_at_start_then_ready_when_it_comes(make_gateway, broker,
                                                       mqtt_factory, tmp_path,
                                                       monkeypatch):
    n = notifications(tmp_path, monkeypatch)
    try:
        gw = make_gateway()
        n.wait_for("READY=1", timeout=10)
        assert gw.stop(signal.SIGTERM, timeout=5) == 0
        n._drain()
        n.seen.clear()
        # Start again with the broker away.
        assert broker.stop() == 0
        gw.respawn()
        # It keeps running and retrying; it does not claim to be ready.
        gw.log.wait_for(r"mqtt: cannot reach", timeout=10)
        assert gw.running()
        n._drain()
        assert "READY=1" not in n.seen
        broker.start()
        n.wait_for("READY=1", timeout=30)   # reconnect backoff, then READY
        watcher = mqtt_factory()
        watcher.subscribe(gw.topic("bridge", "state"))
        watcher.wait_for(gw.topic("bridge", "state"), lambda m: m.payload == b"online",
                         timeout=10)
        assert gw.running()
    finally:
        n.close()
