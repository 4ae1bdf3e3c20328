#!/usr/bin/env python3
"""bench/report.py DIR OUT SESSIONS RMEM - collects the raw JSON of one
bench/run.sh run into OUT (bench/results.json): every figure next to the
baseline measured in the same run, the ratio, and the goals of issue 6."""
import json, os, platform, subprocess, sys, time

ONLY_DURABILITY = sys.argv[1] == "--durability"
ONLY_FIELD = sys.argv[1] == "--field"
if ONLY_DURABILITY:
    d = sys.argv[2]
elif ONLY_FIELD:
    d, field_sensors = sys.argv[2], sys.argv[3].split()
    field_notify = sys.argv[4].split() if len(sys.argv) > 4 else []
else:
    d, out, sessions, rmem = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4]

def load(name):
    try:
        with open(os.path.join(d, name + ".json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

def get(j, *path):
    for k in path:
        if not isinstance(j, dict) or k not in j:
            return None
        j = j[k]
    return j


def fmt(v, p=0):
    return "-" if v is None else ("%.*f" % (p, v))


def ratio(a, b):
    return round(a / b, 3) if a is not None and b else None

def durability():
    """queue.durability side by side: the median of two closed-loop CON
    push runs per mode (throughput on the broker, CoAP round trip)."""
    out = {}
    for mode in ("process", "power"):
        runs = [load("dur_%s_r%d" % (mode, r)) for r in (1, 2)]
        runs = [j for j in runs if j]
        def med(*path):
            xs = sorted(x for x in (get(j, *path) for j in runs) if x is not None)
            return xs[len(xs) // 2] if xs else None
        out[mode] = {"con_pushes_per_s": med("mqtt", "per_s"),
                     "acked_per_s": med("coap", "acked_per_s"),
                     "rtt_p50_ms": med("coap", "rtt", "p50_ms"),
                     "rtt_p99_ms": med("coap", "rtt", "p99_ms"),
                     "lost": med("mqtt", "lost"),
                     "runs": [get(j, "mqtt", "per_s") for j in runs]}
    out["power_over_process"] = ratio(out["power"]["con_pushes_per_s"],
                                      out["process"]["con_pushes_per_s"])
    return out


def print_durability(D):
    f = fmt
    print("\n| queue.durability | CON pushes/s (broker) | 2.04/s | round trip p50 / p99 ms | runs |")
    print("|---|---:|---:|---:|---|")
    for mode in ("process", "power"):
        m = D[mode]
        print("| %s | %s | %s | %s / %s | %s |" % (mode, f(m["con_pushes_per_s"]), f(m["acked_per_s"]),
              f(m["rtt_p50_ms"], 2), f(m["rtt_p99_ms"], 2), ", ".join(f(x) for x in m["runs"])))
    print("| power / process | %s | | | |" % f(D["power_over_process"], 2))


def field(ns, notify_ns=()):
    """Issue 14's headline: NSTART = 1 sensors (closed loop, one CON in
    flight each), Debian's mosquitto defaults plus the README's
    persistence, a QoS 1 subscriber.  (b) the bare libcoap server with the
    same sensors; (c) the better of one and eight libmosquitto QoS 1
    publishers with a window of 20 (what the broker announces)."""
    c_runs = {p: get(load("field_c_p%d" % p), "mqtt", "per_s") for p in (1, 8)}
    c_best = max((v for v in c_runs.values() if v), default=None)
    out = {"c_mqtt": c_best, "c_runs_by_publishers": c_runs, "sensors": {}}
    for n in ns:
        a = load("field_a_%s" % n)
        b = load("field_b_%s" % n)
        av, bv = get(a, "mqtt", "per_s"), get(b, "coap", "acked_per_s")
        floor = min((x for x in (bv, c_best) if x), default=None)
        out["sensors"][n] = {
            "a_gateway": av, "a_acked_per_s": get(a, "coap", "acked_per_s"),
            "a_rtt_p50_ms": get(a, "coap", "rtt", "p50_ms"),
            "a_rtt_p99_ms": get(a, "coap", "rtt", "p99_ms"),
            "a_lost": get(a, "mqtt", "lost"), "a_reordered": get(a, "mqtt", "reordered"),
            "b_bare_coap": bv, "ratio_a_min_bc": ratio(av, floor),
            "gateway_cpu_ms_per_1000": get(a, "server_cpu_ms_per_1000")}
    d1 = load("field_a1_1000")
    if d1 and "1000" in out["sensors"]:
        av = get(d1, "mqtt", "per_s")
        floor = min((x for x in (out["sensors"]["1000"]["b_bare_coap"], c_best) if x), default=None)
        out["defaults_1000"] = {"mqtt_connections": 1, "a_gateway": av,
                                "a_rtt_p50_ms": get(d1, "coap", "rtt", "p50_ms"),
                                "a_rtt_p99_ms": get(d1, "coap", "rtt", "p99_ms"),
                                "a_lost": get(d1, "mqtt", "lost"),
                                "ratio_a_min_bc": ratio(av, floor)}
    out["mqtt_connections"] = int(os.environ.get("FIELD_CONNECTIONS") or 1)
    out["latency_half_load"] = {}
    for f in sorted(os.listdir(d)):
        if not (f.startswith("field_lat_") and f.endswith(".json")):
            continue
        j = load(f[:-5])
        kind, n = f[len("field_lat_"):-5].split("_")
        out["latency_half_load"]["%s_%s" % (kind, n)] = {
            "kind": {"con": "CON pushes", "non": "NON notifications",
                     "nondelack": "NON notifications, subscriber with delayed ACK (labelled)"}.get(kind, kind),
            "sensors": int(n),
            "offered_per_s": get(j, "rate"), "delivered_per_s": get(j, "mqtt", "per_s"),
            "lost": get(j, "mqtt", "lost"),
            "p50_ms": get(j, "mqtt", "latency", "p50_ms"),
            "p99_ms": get(j, "mqtt", "latency", "p99_ms"),
            "p999_ms": get(j, "mqtt", "latency", "p999_ms"),
            "cdf": get(j, "mqtt", "latency", "cdf")}
    out["con_notifications"] = {}
    for n in notify_ns:
        a = load("field_a_obs_%s" % n)
        if not a:
            continue
        av, dur = get(a, "mqtt", "per_s"), get(a, "duration_s")
        offered = get(a, "coap", "sent_window") / dur if dur else None
        out["con_notifications"][n] = {
            "offered_per_s": offered, "a_gateway": av, "delivered_over_offered": ratio(av, offered),
            "a_lost": get(a, "mqtt", "lost"), "a_reordered": get(a, "mqtt", "reordered"),
            "a_latency_p50_ms": get(a, "mqtt", "latency", "p50_ms"),
            "a_latency_p99_ms": get(a, "mqtt", "latency", "p99_ms"),
            "gateway_cpu_ms_per_1000": get(a, "server_cpu_ms_per_1000")}
    return out


def print_field(F):
    f = fmt
    print("\n| field: NSTART = 1, Debian mosquitto + persistence, QoS 1 subscriber, mqtt.connections = %s | (a) gateway pushes/s | round trip p50 / p99 ms | (b) bare libcoap | (c) MQTT QoS 1 (best of 1, 8 publishers) | a / min(b, c) |" % F.get("mqtt_connections", "?"))
    print("|---|---:|---:|---:|---:|---:|")
    for n, r in F["sensors"].items():
        print("| %s sensors | %s | %s / %s | %s | %s | %s |" % (
            n, f(r["a_gateway"]), f(r["a_rtt_p50_ms"], 2), f(r["a_rtt_p99_ms"], 2),
            f(r["b_bare_coap"]), f(F["c_mqtt"]), f(r["ratio_a_min_bc"], 2)))
    if F.get("defaults_1000"):
        r = F["defaults_1000"]
        print("| 1000 sensors, gateway defaults (mqtt.connections = 1) | %s | %s / %s | | | %s |" % (
            f(r["a_gateway"]), f(r["a_rtt_p50_ms"], 2), f(r["a_rtt_p99_ms"], 2),
            f(r["ratio_a_min_bc"], 2)))
    print("| (c) by publishers | %s |" % ", ".join("%s: %s" % (k, f(v)) for k, v in F["c_runs_by_publishers"].items()))
    if F.get("latency_half_load"):
        print("\n| field: latency at 50 % load, open loop, one outstanding per sensor | offered/s | delivered/s | lost | sensor -> subscriber p50 / p99 / p99.9 ms |")
        print("|---|---:|---:|---:|---:|")
        for r in F["latency_half_load"].values():
            print("| %s, %d sensors | %s | %s | %s | %s / %s / %s |" % (
                r["kind"], r["sensors"], f(r["offered_per_s"]), f(r["delivered_per_s"]), f(r["lost"]),
                f(r["p50_ms"], 2), f(r["p99_ms"], 2), f(r["p999_ms"], 2)))
    if F.get("con_notifications"):
        print("\n| field: CON notifications, NSTART = 1, offered open loop | offered/s | (a) gateway delivered/s | delivered / offered | lost | sensor -> subscriber p50 / p99 ms | gateway CPU ms per 1,000 |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for n, r in F["con_notifications"].items():
            print("| %s sensors | %s | %s | %s | %s | %s / %s | %s |" % (
                n, f(r["offered_per_s"]), f(r["a_gateway"]), f(r["delivered_over_offered"], 2),
                f(r["a_lost"]), f(r["a_latency_p50_ms"], 2), f(r["a_latency_p99_ms"], 2),
                f(r["gateway_cpu_ms_per_1000"])))

if ONLY_DURABILITY:
    print_durability(durability())
    sys.exit(0)
if ONLY_FIELD:
    F = field(field_sensors, field_notify)
    print_field(F)
    # Kept for bench/plot.py: bench/field.json, one file per --field run
    # (the settings it ran with named), beside bench/results.json.
    F["date"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    F["settings"] = {k: os.environ.get(k) for k in ("DURABILITY", "SPOOL")}
    F["settings"]["CONNECTIONS"] = str(F["mqtt_connections"])
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "field.json"), "w") as f:
        json.dump(F, f, indent=1)
        f.write("\n")
    sys.exit(0)


def pkg(name):
    r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", name],
                       capture_output=True, text=True)
    return r.stdout.strip() or None

def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()

R = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
     "host": {"cpu": cpu_model(), "cpus": os.cpu_count(), "kernel": platform.release(),
              "udp_rmem": rmem},
     "versions": {"libcoap3": pkg("libcoap3"), "mosquitto": pkg("mosquitto"),
                  "libmosquitto1": pkg("libmosquitto1"), "openssl": pkg("libssl3"),
                  "coap2mqtt": subprocess.run(["git", "-C", os.path.dirname(out), "describe",
                                               "--always", "--dirty"], capture_output=True,
                                              text=True).stdout.strip()}}

# Throughput: (a) delivered to the subscriber, (b) answered / counted by the
# bare server, (c) delivered to the subscriber.
def median(xs):
    xs = sorted(x for x in xs if x is not None)
    return xs[len(xs) // 2] if xs else None

# (a) CON pushes and (c) alternate three times: the median of each.
a_push_runs = [get(load("a_push_con" + s), "mqtt", "per_s") for s in ("", "_r2", "_r3")]
c_runs = [get(load("c_mqtt" + s), "mqtt", "per_s") for s in ("", "_r2", "_r3")]
a_push = median(a_push_runs)
b_push = get(load("b_push_con"), "coap", "acked_per_s")
a_obs = get(load("a_obs_non"), "mqtt", "per_s")
b_obs = get(load("bare-obs_non"), "per_s")
c = median(c_runs)
T = R["throughput"] = {
    "push_con": {"a_gateway": a_push, "b_bare_coap": b_push, "c_mqtt": c,
                 "a_runs": a_push_runs, "c_runs": c_runs,
                 "ratio_a_min_bc": ratio(a_push, min(x for x in (b_push, c) if x) if (b_push or c) else None)},
    "observe_non": {"a_gateway": a_obs, "b_bare_coap": b_obs, "c_mqtt": c,
                    "ratio_a_min_bc": ratio(a_obs, min(x for x in (b_obs, c) if x) if (b_obs or c) else None)},
}
for k in ("a_push_con", "a_obs_non"):
    j = load(k)
    T[k.split("_", 1)[1].replace("obs_non", "observe_non")]["a_lost"] = get(j, "mqtt", "lost")
    T[k.split("_", 1)[1].replace("obs_non", "observe_non")]["a_reordered"] = get(j, "mqtt", "reordered")

# Latency at 50 % and 80 % of (a)'s maximum.
L = R["latency"] = {}
for kind in ("push_con", "obs_non"):
    for pct in (50, 80):
        j = load("lat_%s_%d" % (kind, pct))
        m = load("lat_mqtt_%s_%d" % (kind, pct))
        L["%s_%d" % (kind, pct)] = {"offered_per_s": get(j, "rate"),
                                    "delivered_per_s": get(j, "mqtt", "per_s"),
                                    "end_to_end": get(j, "mqtt", "latency"),
                                    "coap_rtt": get(j, "coap", "rtt"),
                                    "lost": get(j, "mqtt", "lost"),
                                    # the same rate through (c) alone
                                    "c_mqtt_end_to_end": get(m, "mqtt", "latency"),
                                    "p99_over_c_p99": ratio(get(j, "mqtt", "latency", "p99_ms"),
                                                            get(m, "mqtt", "latency", "p99_ms"))}

# CPU per 1,000 readings: the gateway (a) against the bare server (b); the
# broker's own in (c) for scale.
gw_cpu = get(load("a_push_con"), "server_cpu_ms_per_1000")
bare_cpu = get(load("b_push_con"), "server_cpu_ms_per_1000")
gw_cpu_obs = get(load("a_obs_non"), "server_cpu_ms_per_1000")
bare_cpu_obs = get(load("bare-obs_non"), "cpu_ms_per_1000")
R["cpu_ms_per_1000"] = {
    "push_con": {"gateway": gw_cpu, "bare": bare_cpu, "ratio": ratio(gw_cpu, bare_cpu)},
    "observe_non": {"gateway": gw_cpu_obs, "bare": bare_cpu_obs, "ratio": ratio(gw_cpu_obs, bare_cpu_obs)},
    "mosquitto_in_c": get(load("c_mqtt"), "server_cpu_ms_per_1000"),
    # What the load generator itself burnt per 1,000 readings: in (a) the
    # DTLS sensors and the subscriber, in (c) the publisher and the
    # subscriber.  On two shared cores this is CPU the path under test lacks.
    "loadgen_in_a_push_con": median([get(load("a_push_con" + s), "loadgen_cpu_ms_per_1000")
                                     for s in ("", "_r2", "_r3")]),
    "loadgen_in_c": median([get(load("c_mqtt" + s), "loadgen_cpu_ms_per_1000")
                            for s in ("", "_r2", "_r3")]),
    "gateway_in_a_push_con": median([get(load("a_push_con" + s), "server_cpu_ms_per_1000")
                                     for s in ("", "_r2", "_r3")]),
}

hp = get(load("hs_bare_psk"), "handshakes", "per_s")
he = get(load("hs_bare_ecdsa"), "handshakes", "per_s")
hg = get(load("hs_gw_psk"), "handshakes", "per_s")
hge = get(load("hs_gw_ecdsa"), "handshakes", "per_s")
R["handshakes_per_s"] = {"bare_psk": hp, "bare_ecdsa": he, "gateway_psk": hg,
                         "gateway_ecdsa": hge,
                         "gateway_psk_over_bare_psk": ratio(hg, hp),
                         "gateway_ecdsa_over_bare_ecdsa": ratio(hge, he),
                         "bare_ecdsa_over_bare_psk": ratio(he, hp),
                         "sessions": {k: get(load(k), "handshakes", "ok")
                                      for k in ("hs_bare_psk", "hs_bare_ecdsa", "hs_gw_psk",
                                                "hs_gw_ecdsa")}}

S = R["sessions"] = {}
base = get(load("sess_gw_100"), "mqtt", "per_s")
for n in ["100"] + sessions:
    j = load("sess_gw_" + n)
    S[n] = {"rss_per_session_kib": get(j, "handshakes", "rss_per_session_kib"),
            "handshakes_per_s": get(j, "handshakes", "per_s"),
            "throughput_per_s": get(j, "mqtt", "per_s"),
            "throughput_vs_100": ratio(get(j, "mqtt", "per_s"), base),
            "gateway_cpu_ms_per_1000": get(j, "server_cpu_ms_per_1000")}
top = sessions[-1]
bare_rss = get(load("sess_bare_" + top), "handshakes", "rss_per_session_kib")
R["sessions_bare_rss_per_session_kib"] = {top: bare_rss}

def goal(name, value, target, ok):
    return {"goal": name, "value": value, "target": target,
            "met": None if value is None else bool(ok(value))}

gw_rss_top = S[top]["rss_per_session_kib"]
R["goals"] = [
    goal("tuned broker, window 4 (issue 6): a / min(b, c), CON pushes", T["push_con"]["ratio_a_min_bc"], ">= 0.8", lambda v: v >= 0.8),
    goal("tuned broker, window 4 (issue 6): a / min(b, c), NON notifications", T["observe_non"]["ratio_a_min_bc"], ">= 0.8", lambda v: v >= 0.8),
    goal("tuned broker, Nagle off (issue 6): p99 at 50 % load, CON pushes (ms)", get(L, "push_con_50", "end_to_end", "p99_ms"), "<= 5", lambda v: v <= 5),
    goal("tuned broker, Nagle off (issue 6): p99 at 50 % load, NON notifications (ms)", get(L, "obs_non_50", "end_to_end", "p99_ms"), "<= 5", lambda v: v <= 5),
    goal("RSS per idle session at %s (KiB)" % top, gw_rss_top, "<= 64", lambda v: v <= 64),
    goal("throughput %s sessions / 100" % top, S[top]["throughput_vs_100"], ">= 0.8", lambda v: v >= 0.8),
    goal("gateway PSK handshakes / bare", R["handshakes_per_s"]["gateway_psk_over_bare_psk"], ">= 0.8", lambda v: v >= 0.8),
    goal("gateway ECDSA handshakes / bare", R["handshakes_per_s"]["gateway_ecdsa_over_bare_ecdsa"], ">= 0.8", lambda v: v >= 0.8),
]
R["durability"] = durability()
# Item 4 at scale (bench/sessions100k.sh, bench/reconnect.sh 10000), run by
# bench/run.sh after the rest into DIR; absent with SCALE=0 or --quick.
R["scale"] = {"sessions_100k": load("sessions100k"), "reconnect": load("reconnect")}
s100k, rec = R["scale"]["sessions_100k"] or {}, R["scale"]["reconnect"] or {}
R["field"] = field(["100", "1000", "10000"], ["100", "1000", "10000"])
R["goals"].append(goal("field (NSTART = 1, stock broker): a / min(b, c) at 1,000 sensors",
                       get(R["field"], "sensors", "1000", "ratio_a_min_bc"), ">= 0.8",
                       lambda v: v >= 0.8))
for kind, name in (("con", "CON pushes"), ("non", "NON notifications")):
    R["goals"].append(goal("field p99 at 50 %% load, %s (ms)" % name,
                           get(R["field"], "latency_half_load", "%s_1000" % kind, "p99_ms"),
                           "<= 5", lambda v: v <= 5))
if s100k:
    R["goals"] += [
        goal("100,000 sessions: all handshaken", s100k.get("idle_sessions"),
             ">= %d" % (s100k["settings"]["IDLE_PROCS"] * s100k["settings"]["PER_PROC"]),
             lambda v: v >= s100k["settings"]["IDLE_PROCS"] * s100k["settings"]["PER_PROC"]),
        goal("RSS per idle session at 100,000 (KiB)", s100k.get("rss_kib_per_idle_session"),
             "<= 48", lambda v: v <= 48),
        goal("100 busy among 100,000 / alone", s100k.get("ratio"), ">= 0.8", lambda v: v >= 0.8)]
if rec:
    g = goal("mass reconnect of %s units after a restart (s)" % rec.get("units"),
             rec.get("after_restart_s"), "<= 30", lambda v: v <= 30)
    if g["met"] is None:
        g["met"] = False        # not all observed again within the script's bound
    R["goals"].append(g)
with open(out, "w") as f:
    json.dump(R, f, indent=1)
    f.write("\n")


print("\ncoap2mqtt bench, %s, %s (%d CPUs)" % (R["date"], R["host"]["cpu"], R["host"]["cpus"]))
print("libcoap3 %(libcoap3)s, mosquitto %(mosquitto)s, OpenSSL %(openssl)s, coap2mqtt %(coap2mqtt)s" % R["versions"])
print("\n| figure | gateway (a) | baseline | ratio |\n|---|---:|---:|---:|")
for k, name in (("push_con", "CON pushes/s (closed loop)"), ("observe_non", "NON notifications/s (open loop)")):
    t = T[k]
    print("| %s | %s | b %s, c %s | %s |" % (name, fmt(t["a_gateway"]), fmt(t["b_bare_coap"]),
                                              fmt(t["c_mqtt"]), fmt(t["ratio_a_min_bc"], 2)))
print("| (CON pushes/s, each run: a %s; c %s) | | | |" % (
    ", ".join(fmt(x) for x in T["push_con"]["a_runs"]),
    ", ".join(fmt(x) for x in T["push_con"]["c_runs"])))
for k in ("push_con", "obs_non"):
    for pct in (50, 80):
        e = L["%s_%d" % (k, pct)]["end_to_end"] or {}
        ce = L["%s_%d" % (k, pct)]["c_mqtt_end_to_end"] or {}
        print("| latency %s at %d %% (%s/s): p50 / p99 / p99.9 ms | %s / %s / %s | c %s / %s / %s | p99 %s |" % (
            k, pct, fmt(L["%s_%d" % (k, pct)]["offered_per_s"]), fmt(e.get("p50_ms"), 2),
            fmt(e.get("p99_ms"), 2), fmt(e.get("p999_ms"), 2), fmt(ce.get("p50_ms"), 2),
            fmt(ce.get("p99_ms"), 2), fmt(ce.get("p999_ms"), 2),
            fmt(L["%s_%d" % (k, pct)]["p99_over_c_p99"], 2)))
for k in ("push_con", "observe_non"):
    cc = R["cpu_ms_per_1000"][k]
    print("| CPU ms per 1,000, %s | %s | bare %s | %s |" % (k, fmt(cc["gateway"], 1), fmt(cc["bare"], 1), fmt(cc["ratio"], 2)))
cb = R["cpu_ms_per_1000"]
print("| CPU ms per 1,000 CON pushes, whole path: gateway + load generator (a) | %s + %s | c: broker %s + load generator %s | |" % (
    fmt(cb["gateway_in_a_push_con"], 1), fmt(cb["loadgen_in_a_push_con"], 1),
    fmt(cb["mosquitto_in_c"], 1), fmt(cb["loadgen_in_c"], 1)))
h = R["handshakes_per_s"]
print("| PSK handshakes/s | %s | bare %s | %s |" % (fmt(h["gateway_psk"]), fmt(h["bare_psk"]), fmt(h["gateway_psk_over_bare_psk"], 2)))
print("| ECDSA handshakes/s | %s | bare %s | %s |" % (fmt(h["gateway_ecdsa"]), fmt(h["bare_ecdsa"]), fmt(h["gateway_ecdsa_over_bare_ecdsa"], 2)))
for n in sessions:
    s = S[n]
    print("| %s sessions: RSS KiB/session, CON pushes/s | %s, %s | 100 sessions: %s/s | %s |" % (
        n, fmt(s["rss_per_session_kib"], 1), fmt(s["throughput_per_s"]), fmt(base), fmt(s["throughput_vs_100"], 2)))
print("| bare server RSS KiB/session at %s | | %s | %s |" % (top, fmt(bare_rss, 1), fmt(ratio(gw_rss_top, bare_rss), 2)))
print_durability(R["durability"])
print_field(R["field"])
if s100k:
    print("\n100,000 sessions (bench/sessions100k.sh): %d idle + %d busy held, %.1f KiB per idle "
          "session, busy %s/s alone, %s/s among them: %s" % (
              s100k.get("idle_sessions") or 0, s100k["settings"]["ACTIVE"],
              s100k.get("rss_kib_per_idle_session") or 0, fmt(s100k.get("busy_alone_per_s")),
              fmt(s100k.get("busy_among_per_s")), fmt(s100k.get("ratio"), 2)))
    for st in s100k.get("steps") or []:
        print("  %7d sessions: %s pushes/s" % (st.get("sessions_total") or 0, fmt(st.get("busy_per_s"))))
if rec:
    print("\nmass reconnect (bench/reconnect.sh %s): first start %s s, after a kill -9 and "
          "restart %s s (reached: %s)" % (rec.get("units"), fmt(rec.get("first_start_s"), 1),
                                           fmt(rec.get("after_restart_s"), 1), rec.get("reached")))
print("\n| goal | value | target | met |\n|---|---:|---|---|")
for g in R["goals"]:
    print("| %s | %s | %s | %s |" % (g["goal"], fmt(g["value"], 2), g["target"],
                                     {True: "yes", False: "NO", None: "-"}[g["met"]]))
