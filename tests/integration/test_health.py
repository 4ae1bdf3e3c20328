"""state_dir/health: the file the gateway rewrites every 10 s from its
event loop, which the container image's HEALTHCHECK (docker/healthcheck.sh)
reads.  It must say what the daemon itself knows: broker connected or not,
devices registered, which process wrote it and when; and it must go away
with a clean stop, so a stopped gateway never looks healthy."""

import os
import time

import c2m

INTERVAL = 10                    # HEALTH_INTERVAL_MS in src/health.c
HEALTHCHECK = os.path.join(os.path.dirname(__file__), "..", "..", "docker", "healthcheck.sh")


def read_health(gw):
    try:
        with open(os.path.join(gw.state_dir, "health")) as f:
            return dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
    except FileNotFoundError:
        return None


def wait_health(gw, pred, what, timeout=INTERVAL + 8):
    """Polls the file (it changes only when the gateway rewrites it) until
    pred(fields) holds."""
    end = time.monotonic() + timeout
    doc = None
    while time.monotonic() < end:
        doc = read_health(gw)
        if doc is not None and pred(doc):
            return doc
        time.sleep(0.2)
    raise c2m.Timeout("state_dir/health never said %s; last: %r" % (what, doc))


def run_check(gw):
    import subprocess
    p = subprocess.run(["sh", HEALTHCHECK, gw.state_dir], capture_output=True, text=True)
    return p.returncode, p.stdout.strip()


def test_health_file_says_connected_and_counts_devices(gateway, sim):
    # The gateway fixture waited for bridge/state online: the file is
    # rewritten on connecting, not only at the next 10 s tick.
    doc = wait_health(gateway, lambda d: d.get("mqtt") == "connected", "mqtt=connected",
                      timeout=3)
    assert int(doc["pid"]) == gateway.proc.pid
    assert abs(int(doc["updated"]) - time.time()) <= INTERVAL + 2
    assert run_check(gateway)[0] == 0
    sim("meter")
    wait_health(gateway, lambda d: d.get("devices") == "1", "devices=1")
    rc, out = run_check(gateway)
    assert rc == 0 and out.startswith("healthy: broker connected, 1 devices"), out


def test_health_follows_the_broker(gateway, broker):
    wait_health(gateway, lambda d: d.get("mqtt") == "connected", "mqtt=connected")
    broker.stop()
    wait_health(gateway, lambda d: d.get("mqtt") == "disconnected", "mqtt=disconnected")
    rc, out = run_check(gateway)
    assert rc == 1 and "broker disconnected" in out, out
    broker.start()
    wait_health(gateway, lambda d: d.get("mqtt") == "connected", "mqtt=connected again")
    assert run_check(gateway)[0] == 0


def test_stale_health_file_is_unhealthy(gateway):
    """A loop that stopped turning stops rewriting the file: the check goes
    by its age (SIGSTOP stands in for a hung loop)."""
    import signal
    wait_health(gateway, lambda d: d.get("mqtt") == "connected", "mqtt=connected")
    os.kill(gateway.proc.pid, signal.SIGSTOP)
    try:
        env = dict(os.environ, C2M_HEALTH_MAX_AGE="0")
        import subprocess
        time.sleep(1.1)   # the file's age must exceed 0 s: time, not synchronisation
        p = subprocess.run(["sh", HEALTHCHECK, gateway.state_dir], capture_output=True,
                           text=True, env=env)
        assert p.returncode == 1 and "loop is stuck" in p.stdout, p.stdout
    finally:
        os.kill(gateway.proc.pid, signal.SIGCONT)


def test_clean_stop_removes_the_health_file(gateway):
    wait_health(gateway, lambda d: True, "anything")
    assert gateway.stop() == 0
    assert read_health(gateway) is None
    rc, out = run_check(gateway)
    assert rc == 1 and "no " in out, out
