#!/usr/bin/env bash
# bench/sessions100k.sh - issue 14 item 4: 100,000 DTLS-PSK sessions on one
# gateway.  The fd limit is 20,000 per process here, so the idle sessions
# come from several load-generator processes (IDLE_PROCS x PER_PROC), each
# holding its sessions open; 100 more sensors push CON readings (closed
# loop, 4 in flight each) once alone, briefly after each generator has
# connected, and once among all the others.
#
#   bench/sessions100k.sh            (about 7 minutes; root for the limits)
#   IDLE_PROCS=6 PER_PROC=16650 ACTIVE=100 OUT=/tmp/s.json bench/sessions100k.sh
#
# Prints: handshakes/s of the whole fleet, the gateway's VmRSS per idle
# session, CON pushes/s of the 100 busy sensors alone and among 100,000,
# their ratio (the goal: >= 0.8), and one line per step.  Writes the result
# document to bench/sessions100k.json (or OUT) with a "steps" list - busy
# pushes/s, handshakes/s of that generator, VmRSS against sessions held -
# and bench/plot.py draws bench/sessions-throughput.png from it.  Raw
# loadgen JSON in the directory it names.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=$ROOT/build
IDLE_PROCS=${IDLE_PROCS:-6}
PER_PROC=${PER_PROC:-16650}
ACTIVE=${ACTIVE:-100}
HOLD=${HOLD:-900}
OUT=${OUT:-$ROOT/bench/sessions100k.json}
DIR=$(mktemp -d /tmp/c2m-100k.XXXXXX)
PIDS=()
KEY=hex:000102030405060708090a0b0c0d0e0f

cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "files in $DIR" >&2
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ulimit -n 20000 2>/dev/null || true
# Debian's python3 has Debian's matplotlib (bench/plot.py); another python3
# first in PATH (pyenv, say) may not.
PLOT_PY=/usr/bin/python3
[ -x "$PLOT_PY" ] || PLOT_PY=python3
. "$ROOT/bench/lib.sh"     # free_port
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }

COAP_PORT=$(free_port udp)
MQTT_PORT=$(free_port tcp)
python3 - "$DIR/psk.keys" "$IDLE_PROCS" "$PER_PROC" "$ACTIVE" "$KEY" <<'EOF'
import sys
path, procs, per, active, key = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
with open(path, "w") as f:
    for p in range(procs):
        for i in range(per):
            f.write("i%d-%d:%s\n" % (p, i, key))
    for i in range(active):
        f.write("act-%d:%s\n" % (i, key))
EOF
chmod 600 "$DIR/psk.keys"
cat >"$DIR/gateway.conf" <<EOF
coap = {
  listen = [ "127.0.0.1:$COAP_PORT" ];
  psk_file = "$DIR/psk.keys";
  max_handshakes = 2000;
  listen_sockets = 8;     # several sockets on the port: each new handshake walks 1/8 of the sessions
  max_request_rate = 0;
  session_timeout = 1800;
};
state_dir = "$DIR/state";
rd = { max_devices = 200000; };
mqtt = { host = "127.0.0.1"; port = $MQTT_PORT; client_id = "c2m-100k"; stats_interval = 0;
         devices_interval = 0; };
EOF
mosquitto -p "$MQTT_PORT" >"$DIR/mosquitto.log" 2>&1 & PIDS+=($!)
sleep 0.5
"$B/coap2mqtt" -c "$DIR/gateway.conf" >"$DIR/gateway.log" 2>&1 & GW=$!; PIDS+=($GW)
for _ in $(seq 50); do grep -q "ready:" "$DIR/gateway.log" && break; sleep 0.2; done

busy() {   # label [loadgen phases]
  log "busy: $ACTIVE sensors, CON pushes, closed loop, 4 in flight ($1)"
  timeout 120 "$B/coap2mqtt-loadgen" --label "$1" --json "$DIR/$1.json" \
    --target "127.0.0.1:$COAP_PORT" --key "$KEY" --prefix act- -n "$ACTIVE" \
    --bind 127.30.0.1 --mqtt-port "$MQTT_PORT" --push --con --rate 0 --window 4 \
    --watch-pid "$GW" "${@:2}" >>"$DIR/loadgen.log" 2>&1
}
connected() { cat "$DIR"/idle*.log | awk '/^connected/ { n += $2 } END { print n + 0 }'; }

# One line per step of the curve: label, idle sessions held, seconds the
# last generator took to connect, gateway VmRSS.
busy alone
RSS0=$(rss_kib "$GW")
echo "alone 0 - $RSS0" >"$DIR/steps.txt"
log "idle: $IDLE_PROCS processes x $PER_PROC sessions, held ${HOLD} s"
# One process after the other: each gets the gateway's whole handshake
# rate (the load generator gives up on handshakes after 60 s + 2 ms per
# session; six at once on two cores ran out of it).
for p in $(seq 0 $((IDLE_PROCS - 1))); do
  t0=$(date +%s.%N)
  "$B/coap2mqtt-loadgen" --label "idle$p" --target "127.0.0.1:$COAP_PORT" --key "$KEY" \
    --prefix "i$p-" -n "$PER_PROC" --bind "127.$((40 + p)).0.1" --ramp 200 \
    --handshake-only --hold "$HOLD" >"$DIR/idle$p.log" 2>&1 &
  PIDS+=($!)
  deadline=$(( $(date +%s) + 300 ))
  until grep -q "^connected" "$DIR/idle$p.log" 2>/dev/null; do
    if [ "$(date +%s)" -gt "$deadline" ]; then log "idle$p: not connected in 300 s"; exit 1; fi
    sleep 0.5
  done
  secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
  log "idle$p: $(head -1 "$DIR/idle$p.log")"
  sleep 2
  if [ "$p" = $((IDLE_PROCS - 1)) ]; then
    label=among
  else
    # A short window between generators (6 s instead of 14): the curve's
    # shape, while the idle sessions' hold keeps running.
    label=step$((p + 1))
  fi
  echo "$label $(connected) $secs $(rss_kib "$GW")" >>"$DIR/steps.txt"
  if [ $label = among ]; then busy among; else busy "$label" --warmup 1 --duration 4 --drain 1; fi
done
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
python3 - "$DIR" "$OUT" "$COMMIT" "$IDLE_PROCS" "$PER_PROC" "$ACTIVE" <<'EOF'
import json, sys, time
d, out, commit = sys.argv[1:4]
procs, per, active = (int(v) for v in sys.argv[4:7])
steps = []
for line in open(d + "/steps.txt"):
    label, n, secs, rss = line.split()
    j = json.load(open("%s/%s.json" % (d, label)))
    prev = steps[-1]["idle_sessions"] if steps else 0
    secs = None if secs == "-" else float(secs)
    steps.append({"label": label, "idle_sessions": int(n), "sessions_total": int(n) + active,
                  "connect_s": round(secs, 1) if secs else None,
                  "handshakes_per_s": round((int(n) - prev) / secs, 1) if secs else None,
                  "rss_kib": int(rss), "window_s": j.get("duration_s"),
                  "busy_per_s": j["mqtt"]["per_s"],
                  "cpu_ms_per_1000": j.get("server_cpu_ms_per_1000")})
a, b = steps[0], steps[-1]
n, rss0, rss1 = b["idle_sessions"], a["rss_kib"], b["rss_kib"]
pa, pb = a["busy_per_s"], b["busy_per_s"]
hs_s = sum(s["connect_s"] or 0 for s in steps)
doc = {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "commit": commit,
       "settings": {"IDLE_PROCS": procs, "PER_PROC": per, "ACTIVE": active},
       "idle_sessions": n, "sessions_total": n + active,
       "handshakes_per_s": round(n / hs_s, 1) if hs_s else None,
       "rss_kib_before": rss0, "rss_kib_after": rss1,
       "rss_kib_per_idle_session": round((rss1 - rss0) / n, 1) if n else None,
       "busy_alone_per_s": pa, "busy_among_per_s": pb,
       "ratio": round(pb / pa, 3) if pa else None,
       "cpu_ms_per_1000_alone": a["cpu_ms_per_1000"],
       "cpu_ms_per_1000_among": b["cpu_ms_per_1000"],
       "steps": steps}
with open(out, "w") as f:
    json.dump(doc, f, indent=1)
    f.write("\n")
print("sessions held: %d idle + %d busy = %d" % (n, active, n + active))
print("handshakes: %.0f/s over the whole fleet" % (doc["handshakes_per_s"] or 0))
print("gateway VmRSS %d -> %d KiB: %.1f KiB per idle session" % (rss0, rss1, doc["rss_kib_per_idle_session"] or 0))
print("CON pushes/s of %d busy sensors: alone %.0f, among %d sessions %.0f -> ratio %.2f" % (active, pa, n + active, pb, doc["ratio"] or 0))
print("gateway CPU ms per 1,000 pushes: alone %s, among %s" % (doc["cpu_ms_per_1000_alone"], doc["cpu_ms_per_1000_among"]))
for s in steps:
    print("  %-6s %7d sessions: %6.0f pushes/s (%.2f of alone), handshakes %s/s, VmRSS %d KiB, CPU %s ms per 1,000"
          % (s["label"], s["sessions_total"], s["busy_per_s"], s["busy_per_s"] / pa if pa else 0,
             "-" if s["handshakes_per_s"] is None else "%.0f" % s["handshakes_per_s"],
             s["rss_kib"], "-" if s["cpu_ms_per_1000"] is None else "%.1f" % s["cpu_ms_per_1000"]))
print("written: %s" % out)
EOF
# The picture goes next to the JSON: a test run with OUT=/tmp/... leaves
# bench/ alone.
"$PLOT_PY" "$ROOT/bench/plot.py" -o "$(dirname "$OUT")" "$OUT" ||
  echo "sessions100k: no pictures (bench/plot.py needs python3-matplotlib)"
