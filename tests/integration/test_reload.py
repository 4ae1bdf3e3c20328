"""SIGHUP (systemctl reload) re-reads the whole configuration: what can
change live changes, what needs a restart is named in the log and keeps its
old value, and a broken file is refused whole while devices carry on.
systemd hears RELOADING=1 (with MONOTONIC_USEC) and then READY=1."""

import copy
import json
import re
import signal
import time

import c2m
from test_systemd import notifications


def rewrite(gw, change):
    """Writes gw's config again with 'change' ({"group": {...}} merged)."""
    cfg = copy.deepcopy(gw.cfg)
    for key, val in change.items():
        if isinstance(val, dict):
            cfg.setdefault(key, {}).update(val)
        else:
            cfg[key] = val
    with open(gw.conf, "w") as f:
        f.write(c2m.libconfig_text(cfg))
    return cfg


def hup(gw, notes):
    """SIGHUP; returns (log mark, index of RELOADING=1 in notes.seen) once
    the reload is over and READY=1 followed RELOADING=1."""
    notes._drain()
    first = len(notes.seen)
    mark = gw.log.mark()
    before_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    gw.proc.send_signal(signal.SIGHUP)
    gw.log.wait_for(r"reload: (done|.*refused)", timeout=10, start=mark)
    after_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    deadline = time.monotonic() + 5
    while True:
        notes._drain()
        new = notes.seen[first:]
        if "RELOADING=1" in new and "READY=1" in new[new.index("RELOADING=1"):]:
            break
        assert time.monotonic() < deadline, "no RELOADING=1 then READY=1: %r" % new
    i = first + new.index("RELOADING=1")
    stamp = notes.seen[i + 1]
    assert re.fullmatch(r"MONOTONIC_USEC=\d+", stamp), notes.seen[i:]
    assert before_us <= int(stamp.split("=")[1]) <= after_us, (before_us, stamp, after_us)
    return mark, i


def stats_after(mqtt, gw, start, pred=lambda s: True, timeout=10, later_than=0):
    """The first bridge/stats from 'start' on whose counters pass 'pred' and
    which arrived after 'later_than' (monotonic); (counters, arrival)."""
    m = mqtt.wait_for(gw.topic("bridge", "stats"),
                      lambda m: m.received > later_than and pred(json.loads(m.payload)),
                      timeout=timeout, start=start)
    return json.loads(m.payload), m.received


def test_live_settings_apply_and_systemd_hears(make_gateway, mqtt, tmp_path, monkeypatch):
    notes = notifications(tmp_path, monkeypatch)
    try:
        gw = make_gateway()
        notes.wait_for("READY=1", timeout=10)
        mqtt.subscribe(gw.topic("bridge", "stats"))
        stats, _ = stats_after(mqtt, gw, mqtt.mark())
        assert stats["queue_max"] == 100000
        assert not gw.log.find(r"^<7>")      # -v: info, no debug yet
        rewrite(gw, {"queue": {"max_messages": 777},
                     "mqtt": {"stats_interval": 3}, "log_level": "debug"})
        mark, i = hup(gw, notes)
        assert "STATUS=serving devices, configuration reloaded" in notes.seen[i:]
        gw.log.wait_for(r'reload: log_level changed: \(unset\) -> "debug"', timeout=1,
                        start=mark)
        gw.log.wait_for(r"reload: queue\.max_messages changed: 100000 -> 777",
                        timeout=1, start=mark)
        gw.log.wait_for(r"reload: mqtt\.stats_interval changed: 1 -> 3", timeout=1,
                        start=mark)
        assert not gw.log.find(r"needs a restart", start=mark)
        # The queue bound is in force, and bridge/stats now comes every 3 s.
        start = mqtt.mark()
        _, t1 = stats_after(mqtt, gw, start, lambda s: s["queue_max"] == 777)
        _, t2 = stats_after(mqtt, gw, start, later_than=t1)
        assert t2 - t1 > 2.2, "stats interval still %.1f s" % (t2 - t1)
        # log_level = "debug": libmosquitto's own lines (each publish) now show.
        gw.log.wait_for(r"^<7>libmosquitto: .*sending PUBLISH", timeout=5, start=mark)
        assert gw.running()
    finally:
        notes.close()


def test_restart_only_settings_are_named_and_kept(make_gateway, mqtt, coap, tmp_path,
                                                   monkeypatch):
    notes = notifications(tmp_path, monkeypatch)
    try:
        gw = make_gateway()
        notes.wait_for("READY=1", timeout=10)
        rewrite(gw, {"coap": {"listen": ["127.0.0.1:%d" % c2m.free_port(
                                  c2m.socket.SOCK_DGRAM)]},
                     "mqtt": {"base_topic": "elsewhere", "qos_non": 1}})
        mark, _ = hup(gw, notes)
        gw.log.wait_for(r"reload: coap\.listen changed .*; needs a restart, keeping the "
                        r"old value", timeout=1, start=mark)
        gw.log.wait_for(r"reload: mqtt\.base_topic changed \(\"%s\" -> \"elsewhere\"\); "
                        r"needs a restart" % gw.base, timeout=1, start=mark)
        gw.log.wait_for(r"reload: mqtt\.qos_non changed: 0 -> 1", timeout=1, start=mark)
        gw.log.wait_for(r"reload: done, 1 setting applied, 2 waiting for a restart",
                        timeout=1, start=mark)
        # The old endpoint and the old base topic are still the ones in use.
        mqtt.subscribe(gw.topic("dev-3", "t"))
        r = coap(gw, "dev-3", "ps/t", method="post", payload="20.5", ct=0, wait=3)
        assert r.code == "2.04", r
        m = mqtt.wait_for(gw.topic("dev-3", "t"), timeout=10)
        assert m.payload == b"20.5"
    finally:
        notes.close()


def test_broken_config_is_refused_and_sessions_stay(make_gateway, sim, mqtt, tmp_path,
                                                    monkeypatch):
    notes = notifications(tmp_path, monkeypatch)
    try:
        gw = make_gateway()
        notes.wait_for("READY=1", timeout=10)
        topic = gw.topic("meter-1", "energy")
        mqtt.subscribe(topic)
        mqtt.subscribe(gw.topic("bridge", "stats"))
        s = sim("meter", extra_args=["--interval", "200"])
        s.wait_for(r"^OBSERVED meter-1 energy$", timeout=15)
        mqtt.wait_for(topic, timeout=10)
        before, _ = stats_after(mqtt, gw, mqtt.mark(), lambda st: st["handshakes_ok"] >= 1)
        # A live setting changed too, in the same broken file: it must not apply.
        rewrite(gw, {"mqtt": {"qos_con": 7, "stats_interval": 5},
                     "commands": {"no_such_setting": 1}})
        mark, i = hup(gw, notes)
        assert "STATUS=configuration reload refused, see the log" in notes.seen[i:]
        conf = re.escape(gw.conf)
        gw.log.wait_for(r"reload: %s:\d+: mqtt\.qos_con: must be 0\.\.1, got 7" % conf,
                        timeout=1, start=mark)
        gw.log.wait_for(r"reload: %s:\d+: commands\.no_such_setting: unknown setting" % conf,
                        timeout=1, start=mark)
        gw.log.wait_for(r"refused \(2 errors\); the running configuration stays in force",
                        timeout=1, start=mark)
        assert not gw.log.find(r"reload: mqtt\.stats_interval changed", start=mark)
        # The sensor keeps publishing on the session it had: no new handshake,
        # no session closed; stats still every second (the old interval).
        start = mqtt.mark()
        mqtt.wait_for(topic, lambda m: len(mqtt.received(topic, start)) >= 5, timeout=10,
                      start=start)
        start = mqtt.mark()
        _, t1 = stats_after(mqtt, gw, start)
        after, t2 = stats_after(mqtt, gw, start, later_than=t1)
        assert t2 - t1 < 1.8
        assert after["handshakes_ok"] == before["handshakes_ok"], (before, after)
        assert after["sessions_closed"] == before["sessions_closed"], (before, after)
        assert not s.out.find(r"^(REGISTERED|REBOOT)", start=0)[1:], s.out.tail(20)
        for m in mqtt.received(topic, start):
            assert m.qos == 1           # qos_con stayed 1
    finally:
        notes.close()
