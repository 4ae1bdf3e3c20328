#!/usr/bin/env python3
"""bench/plot.py [FIELD_JSON] - draws the field rows (issue 14) as pictures,
next to the JSON they come from:

  bench/field-throughput.png   CON pushes/s against the number of NSTART = 1
                               sensors: (a) the gateway, (b) the bare libcoap
                               server, (c) the broker's best QoS 1 ingestion
  bench/field-latency-cdf.png  sensor -> subscriber latency at half load, as
                               a CDF (CON pushes, NON notifications)

FIELD_JSON defaults to bench/field.json (written by bench/run.sh --field);
the "field" member of bench/results.json (make bench) works too.  Needs
matplotlib (Debian: python3-matplotlib; `make bench` installs it)."""
import json
import os
import sys

try:
    import matplotlib
    matplotlib.use("Agg")           # no display: files only
    import matplotlib.pyplot as plt
except ImportError:
    sys.exit("plot: matplotlib is missing (apt-get install python3-matplotlib)")

HERE = os.path.dirname(os.path.abspath(__file__))


def load(path):
    with open(path) as f:
        j = json.load(f)
    return j.get("field", j) if "sensors" not in j else j


def subtitle(F):
    s = F.get("settings") or {}
    parts = ["mqtt.connections = %s" % (s.get("CONNECTIONS") or 1),
             "queue.durability = %s" % (s.get("DURABILITY") or "power")]
    if s.get("SPOOL"):
        parts.append("queue.spool = %s" % s["SPOOL"])
    return "%s; %s" % (F.get("date", ""), ", ".join(parts))


def throughput(F, out):
    ns = sorted(F["sensors"], key=int)
    x = [int(n) for n in ns]
    a = [F["sensors"][n]["a_gateway"] or 0 for n in ns]
    b = [F["sensors"][n]["b_bare_coap"] or 0 for n in ns]
    c = F.get("c_mqtt") or 0
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(x, b, "s--", label="(b) bare libcoap server, same sensors")
    ax.plot(x, [c] * len(x), ":", label="(c) mosquitto, best QoS 1 ingestion")
    ax.plot(x, a, "o-", linewidth=2, label="(a) coap2mqtt -> mosquitto -> subscriber")
    for xi, n in zip(x, ns):
        r = F["sensors"][n].get("ratio_a_min_bc")
        if r is not None:
            ax.annotate("%.2f" % r, (xi, F["sensors"][n]["a_gateway"] or 0),
                        textcoords="offset points", xytext=(0, -14), ha="center", fontsize=8)
    ax.set_xscale("log")
    ax.set_xticks(x)
    ax.set_xticklabels([str(v) for v in x])
    ax.set_xlabel("sensors (DTLS-PSK, one CON outstanding each)")
    ax.set_ylabel("CON pushes/s")
    ax.set_ylim(bottom=0)
    ax.set_title("Field throughput (labels: a / min(b, c))\n" + subtitle(F), fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def latency(F, out):
    rows = F.get("latency_half_load") or {}
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for key in sorted(rows):
        r = rows[key]
        cdf = r.get("cdf")
        if not cdf:
            continue
        ms = [max(p[1], 0.01) for p in cdf]
        q = [p[0] for p in cdf]
        ax.step(ms, q, where="post",
                label="%s, %d sensors, %.0f/s (p99 %.2f ms)" % (
                    r["kind"], r["sensors"], r["offered_per_s"] or 0, r["p99_ms"] or 0))
    ax.axvline(5, color="grey", linestyle=":", label="goal: p99 <= 5 ms")
    ax.axhline(0.99, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("sensor -> subscriber latency, ms")
    ax.set_ylabel("fraction of readings")
    ax.set_title("Latency at half load, open loop (CDF)\n" + subtitle(F), fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return True


def main():
    F = load(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "field.json"))
    throughput(F, os.path.join(HERE, "field-throughput.png"))
    print("plot: bench/field-throughput.png")
    if latency(F, os.path.join(HERE, "field-latency-cdf.png")):
        print("plot: bench/field-latency-cdf.png")


if __name__ == "__main__":
    main()
