#!/usr/bin/env bash
# bench/reconnect.sh - issue 14 item 4: a mass reconnect.  N simulated HVAC
# units (DTLS-PSK, registered, two resources observed) on one gateway; the
# gateway is killed (-9) and started again on its state; how long until
# every unit is registered and observed again.  The units notice the loss
# themselves, at an unanswered CON notification: their two resources
# notify NON, and libcoap makes every fifth notification CON
# (COAP_OBS_MAX_NON), so a unit notices within 5 intervals plus its
# retransmission (--max-retransmit 1: 2-9 s; RFC 7252's 4: 45-93 s), up
# to 24 s at the default 3 s interval, 59 s at 10 s.
#   bench/reconnect.sh [N]        (default 10000; bounded to 10 minutes)
#   OUT=path bench/reconnect.sh   (the result document; default
#                                   bench/reconnect.json, also on failure)
#   INTERVAL=ms                   (each unit's notification interval per
#                                   resource, default 3000)
#   CONNECTIONS=N                 (mqtt.connections of the gateway, default 1)
#   NOTIFY=con                    (every notification CON: the units notice
#                                   within one interval plus 2-9 s)
#   SIM_NICE=n                    (the simulators' niceness, default 10)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=$ROOT/build
N=${1:-10000}
INTERVAL=${INTERVAL:-3000}
OUT=${OUT:-$ROOT/bench/reconnect.json}
DIR=$(mktemp -d /tmp/c2m-reconnect.XXXXXX)
PIDS=()
KEY=hex:00112233445566778899aabbccddeeff
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true
            echo "files in $DIR" >&2; }
trap cleanup EXIT
trap 'exit 130' INT TERM
ulimit -n 20000 2>/dev/null || true
. "$ROOT/bench/lib.sh"     # free_port
log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }
COAP_PORT=$(free_port udp); MQTT_PORT=$(free_port tcp)
python3 -c "import sys; print('\n'.join('hvac-%d:$KEY' % i for i in range(1, $N + 1)))" >"$DIR/psk.keys"
chmod 600 "$DIR/psk.keys"
cat >"$DIR/gateway.conf" <<CONF
coap = { listen = [ "127.0.0.1:$COAP_PORT" ]; psk_file = "$DIR/psk.keys"; max_handshakes = 2000; listen_sockets = 8;
         max_request_rate = 0; };
state_dir = "$DIR/state";
rd = { max_devices = $((N * 2)); };
mqtt = { host = "127.0.0.1"; port = $MQTT_PORT; client_id = "c2m-reconnect"; stats_interval = 0;
         devices_interval = 0; connections = ${CONNECTIONS:-1}; };
CONF
mosquitto -p "$MQTT_PORT" >"$DIR/mosquitto.log" 2>&1 & PIDS+=($!)
sleep 0.5
start_gw() { "$B/coap2mqtt" -c "$DIR/gateway.conf" >>"$DIR/gateway.log" 2>&1 & GW=$!; PIDS+=($GW); }
start_gw
# The simulator keeps a libcoap context (an epoll fd and a socket) per unit;
# PER units a process (at most 5,000: the 20,000 open files allowed here).
PER=${PER:-1000}
# The simulators run niced: ten of them against one gateway process get ten
# shares of the two cores under the kernel's fair scheduler, and in a
# reconnect storm (each retry a new DTLS context) they left the gateway 9 %
# of a core while its sockets held 24 MB of unread handshakes; real units
# bring their own CPUs.
start_sims() {   # first unit, count
  nice -n "${SIM_NICE:-10}" "$B/coap2mqtt-sim" --gateway "127.0.0.1:$COAP_PORT" --kind hvac --first "$1" \
    --count "$2" --key "$KEY" --bind "127.60.$(( ($1 - 1) / PER )).1" --quiet \
    --interval "$INTERVAL" --max-retransmit 1 --lifetime 3600 ${NOTIFY:+--$NOTIFY} \
    >"$DIR/sim$1.out" 2>"$DIR/sim$1.err" & PIDS+=($!)
}
observed_since() {   # mark (lines per file): units with both resources observed after it
  local f total=0
  for f in "$DIR"/sim*.out; do
    tail -n +"$(marked "$1" "$f")" "$f"
  done | awk '/^OBSERVED/ { seen[$2 " " $3] = 1 }
    END { for (k in seen) { split(k, a, " "); n[a[1]]++ } c = 0; for (u in n) if (n[u] >= 2) c++; print c }'
}
marked() {   # mark, file: the line of the file to start from
  [ -n "$1" ] || { echo 1; return; }
  echo "$1" | awk -v f="$2" '$1 == f { print $2 }'
}
wait_all() {   # mark, bound s[, units]; prints seconds taken
  local from="$1" bound=$2 want=${3:-$N} t0 now
  t0=$(date +%s.%N)
  while :; do
    [ "$(observed_since "$from")" -ge "$want" ] && break
    now=$(date +%s.%N)
    if python3 -c "import sys; sys.exit(0 if $now - $t0 > $bound else 1)"; then
      log "only $(observed_since "$from") of $N observed after ${bound} s"; return 1
    fi
    sleep 0.5
  done
  python3 -c "print('%.1f' % ($(date +%s.%N) - $t0))"
}
# The result document, written at every exit: a run that missed its
# bound says how far it got (seconds "null", the units observed).
FIRST=null AFTER=null PHASE=first
result() {
  local mark="${MARK:-}"
  PER=$PER INTERVAL=$INTERVAL CONNECTIONS=${CONNECTIONS:-1} NOTIFY=${NOTIFY:-} SIM_NICE=${SIM_NICE:-10} python3 - "$OUT" "$N" "$FIRST" "$AFTER" "$PHASE" "$(observed_since "$mark")" \
    "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    "$(cat "$DIR"/sim*.out 2>/dev/null | grep -c '^ERROR' || true)" <<'EOF2'
import json, os, sys, time
out, n, first, after, phase, seen, commit, errors = sys.argv[1:9]
num = lambda s: None if s == "null" else float(s)
doc = {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "commit": commit,
       "units": int(n), "first_start_s": num(first), "after_restart_s": num(after),
       "goal_s": 30, "reached": phase, "observed_in_last_phase": int(seen),
       "unit_errors": int(errors),
       "settings": {"units_per_simulator": int(os.environ["PER"]), "interval_ms": int(os.environ["INTERVAL"]), "mqtt_connections": int(os.environ["CONNECTIONS"]), "notifications": os.environ["NOTIFY"] or "kind (NON, every fifth CON)", "max_retransmit": 1, "simulators_nice": int(os.environ["SIM_NICE"])}}
json.dump(doc, open(out, "w"), indent=1)
print("written: %s" % out)
EOF2
}
trap 'result; cleanup' EXIT
# The fleet comes up PER units at a time, each batch once the ones before
# are observed: the first start is set-up, the restart is the measurement
# (10,000 simulated units starting in one instant, each giving up a
# handshake after 3 s, mostly measure the simulators' own backoff waves).
log "$N units connecting, $PER at a time"
T0=$(date +%s.%N) UP=0
for first in $(seq 1 "$PER" "$N"); do
  count=$(( N - first + 1 < PER ? N - first + 1 : PER ))
  start_sims "$first" "$count"
  UP=$((UP + count))
  wait_all "" 120 "$UP" >/dev/null || exit 1
done
T=$(python3 -c "print('%.1f' % ($(date +%s.%N) - $T0))")
FIRST=$T PHASE=restart
log "all $N registered and observed after $T s (first start, $PER at a time)"
sleep 5
MARK=$(for f in "$DIR"/sim*.out; do echo "$f $(( $(wc -l <"$f") + 1 ))"; done)
log "kill -9 of the gateway, started again at once"
kill -9 "$GW"; wait "$GW" 2>/dev/null || true
start_gw
T=$(wait_all "$MARK" 300) || exit 1
AFTER=$T PHASE=done
log "after the restart: all $N registered and observed again in $T s (goal: 30 s)"
echo "reconnect: $N units, all observed again $T s after the gateway restarted"
