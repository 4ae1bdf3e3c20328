#!/usr/bin/env python3
"""bench/plot.py [-o DIR] [JSON] - draws the bench rows (issue 14) as pictures
into bench/, next to the JSON they come from (or into DIR):

  bench/field-throughput.png   CON pushes/s against the number of NSTART = 1
                               sensors: (a) the gateway, (b) the bare libcoap
                               server, (c) the broker's best QoS 1 ingestion
  bench/field-latency-cdf.png  sensor -> subscriber latency at half load, as
                               a CDF (CON pushes, NON notifications)
  bench/sessions-throughput.png
                               busy CON pushes/s against sessions held
                               (bench/sessions100k.sh)

Without JSON: the field pictures from bench/field.json (written by
bench/run.sh --field) and, when bench/sessions100k.json exists, the sessions
picture.  A JSON with "steps" (bench/sessions100k.sh) draws only the sessions
picture; any other the field ones - the "field" member of bench/results.json
(make bench) works too.  Needs matplotlib (Debian: python3-matplotlib;
`make bench` installs it)."""
import argparse
import json
import os
import sys

try:
    import matplotlib
    matplotlib.use("Agg")           # no display: files only
    import matplotlib.pyplot as plt
    import matplotlib.ticker as ticker
except ImportError:
    sys.exit("plot: matplotlib is missing (apt-get install python3-matplotlib)")

HERE = os.path.dirname(os.path.abspath(__file__))


def load(path):
    with open(path) as f:
        return json.load(f)


def subtitle(F):
    s = F.get("settings") or {}
    parts = ["mqtt.connections = %s" % (F.get("mqtt_connections") or s.get("CONNECTIONS") or 1),
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


def sessions(S, out):
    steps = S["steps"]
    x = [s["sessions_total"] for s in steps]
    y = [s["busy_per_s"] or 0 for s in steps]
    alone = S.get("busy_alone_per_s") or 0
    st = S.get("settings") or {}
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.axhline(alone, color="grey", linestyle="--", linewidth=1,
               label="alone: {:,.0f}/s".format(alone))
    ax.axhline(0.8 * alone, color="tab:red", linestyle=":", linewidth=1,
               label="goal: 0.8 x alone")
    ax.plot(x, y, "o-", linewidth=2,
            label="%s busy sensors, closed loop, 4 in flight" % st.get("ACTIVE", ""))
    for xi, yi in zip(x, y):
        if alone:
            ax.annotate("%.2f" % (yi / alone), (xi, yi), textcoords="offset points",
                        xytext=(0, -14), ha="center", fontsize=8)
    thousands = ticker.FuncFormatter(lambda v, _: "{:,.0f}".format(v))
    ax.xaxis.set_major_formatter(thousands)
    ax.yaxis.set_major_formatter(thousands)
    # Room for the first point's label and above the alone line.
    ax.set_xlim(left=-0.03 * max(x))
    ax.set_ylim(0, 1.1 * max(y + [alone]))
    ax.set_xlabel("DTLS-PSK sessions held by the gateway (idle + busy)")
    ax.set_ylabel("CON pushes/s of the busy sensors")
    ax.set_title("Busy throughput against sessions held (labels: ratio to alone)\n"
                 "%s, commit %s; idle: %s generators x %s sessions"
                 % (S.get("date", ""), S.get("commit", ""), st.get("IDLE_PROCS", "?"),
                    st.get("PER_PROC", "?")), fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def said(out):
    name = os.path.basename(out)
    print("plot: %s" % ("bench/" + name if os.path.dirname(out) == HERE else out))


def field(j, outdir):
    F = j.get("field", j) if "sensors" not in j else j
    if "date" not in F:     # inside results.json: the run's date is the document's
        F = dict(F, date=j.get("date", ""))
    throughput(F, os.path.join(outdir, "field-throughput.png"))
    said(os.path.join(outdir, "field-throughput.png"))
    if latency(F, os.path.join(outdir, "field-latency-cdf.png")):
        said(os.path.join(outdir, "field-latency-cdf.png"))


def main():
    ap = argparse.ArgumentParser(description="draws the bench JSON as pictures")
    ap.add_argument("-o", dest="outdir", default=HERE, help="directory for the pictures (bench/)")
    ap.add_argument("json", nargs="?", help="field or sessions100k JSON (bench/field.json)")
    args = ap.parse_args()
    if args.json is None:
        field(load(os.path.join(HERE, "field.json")), args.outdir)
        path = os.path.join(HERE, "sessions100k.json")
        if not os.path.exists(path):
            return
        j = load(path)
    else:
        j = load(args.json)
        if "steps" not in j:
            field(j, args.outdir)
            return
    out = os.path.join(args.outdir, "sessions-throughput.png")
    sessions(j, out)
    said(out)


if __name__ == "__main__":
    main()
