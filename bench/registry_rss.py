#!/usr/bin/python3
"""Memory of the device registry (issue 12, item 11): RSS of the gateway
while plain-CoAP devices register, are forgotten, and others take their
place.

    bench/registry_rss.py [--bin build/coap2mqtt] [-n 10000] [--old]

Starts a broker and the gateway (plain CoAP only, rd.forget_after = 2,
coap.session_timeout = 10), registers N plain-CoAP ids (lt = 1, each from a
socket of its own), waits until bridge/stats says they are forgotten
(devices = 0), then registers N other ids.  Prints VmRSS at each step and
the growth per registration.  --old: for a gateway without forgetting (no
rd.forget_after): waits for the sessions to idle out instead.
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import c2m      # noqa: E402
import rawcoap  # noqa: E402


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def register_all(port, prefix, n, net):
    """Each from an address of its own (127.<net>.x.y): a plain-CoAP session
    is bound to the id it registered."""
    ok = 0
    for i in range(n):
        c = rawcoap.Client("127.0.0.1", port, local="127.%d.%d.%d" % (
            net + i // 62500, i // 250 % 250, i % 250 + 1))
        try:
            r = c.register("%s-%d" % (prefix, i), lifetime=1)
            ok += bool(r and r.code == "2.01")
        finally:
            c.close()
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "build", "coap2mqtt"))
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("--old", action="store_true")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="registry-rss-")
    broker = c2m.Broker(tmp)
    port = c2m.free_port(socket.SOCK_DGRAM)
    rd = {"min_lifetime": 1, "max_devices": 100000}
    if not a.old:
        rd["forget_after"] = 2
    cfg = {"coap": {"plain_listen": ["127.0.0.1:%d" % port], "session_timeout": 10,
                    "max_request_rate": 0},
           "state_dir": os.path.join(tmp, "state"),
           "mqtt": {"host": broker.host, "port": broker.port, "base_topic": "rss",
                    "client_id": "rss-gw", "stats_interval": 1},
           "rd": rd}
    conf = os.path.join(tmp, "gw.conf")
    with open(conf, "w") as f:
        f.write(c2m.libconfig_text(cfg))
    mq = c2m.Mqtt(broker.host, broker.port)
    mq.subscribe("rss/bridge/stats")
    gw = subprocess.Popen([a.bin, "-c", conf], stdout=subprocess.DEVNULL,
                          stderr=open(os.path.join(tmp, "gw.stderr"), "w"))
    try:
        mq.wait_for("rss/bridge/stats", timeout=10)
        r0 = rss_kib(gw.pid)
        t = time.monotonic()
        ok = register_all(port, "a", a.n, 200)
        r1 = rss_kib(gw.pid)
        print("start %d KiB; %d/%d registered in %.1f s: %d KiB (+%.0f B each, "
              "records and sessions)" % (r0, ok, a.n, time.monotonic() - t, r1,
                                         (r1 - r0) * 1024.0 / a.n))
        if a.old:
            time.sleep(15)
        else:
            mark = mq.mark()
            try:
                mq.wait_for("rss/bridge/stats", lambda m: m.json()["devices"] == 0 and
                            m.json()["sessions"] == 0, timeout=60, start=mark)
            except c2m.Timeout:
                for m in mq.received("rss/bridge/stats", mark)[::5]:
                    print({k: v for k, v in m.json().items() if k in (
                        "devices", "sessions", "devices_forgotten", "sessions_closed", "time")})
                doc = mq.received("rss/bridge/stats")[-1].json()
                sys.exit("not forgotten: %r" % {k: v for k, v in doc.items()
                                                 if k in ("devices", "sessions",
                                                          "devices_forgotten",
                                                          "expirations")})
        r2 = rss_kib(gw.pid)
        doc = mq.wait_for("rss/bridge/stats", start=mq.mark(), timeout=5).json()
        print("after forget_after and session_timeout: %d KiB (devices %d, sessions %d, "
              "devices_forgotten %d)" % (r2, doc["devices"], doc["sessions"],
                                         doc.get("devices_forgotten", 0)))
        ok = register_all(port, "b", a.n, 220)
        r3 = rss_kib(gw.pid)
        print("%d/%d other ids registered: %d KiB (+%.0f B each over the previous step)" % (
            ok, a.n, r3, (r3 - r2) * 1024.0 / a.n))
    finally:
        gw.send_signal(signal.SIGTERM)
        gw.wait(10)
        mq.close()
        broker.stop()


if __name__ == "__main__":
    main()
