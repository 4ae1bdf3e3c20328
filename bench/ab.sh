#!/usr/bin/env bash
# bench/ab.sh - an A/B of gateway builds or settings on the field row that
# matters (1,000 NSTART = 1 sensors pushing CON, closed loop, a QoS 1
# subscriber, the field broker: Debian's defaults plus the README's
# persistence), the variants alternating round by round so that the box's
# drift (the MQTT ceiling moved 14-20k/s between runs on one afternoon)
# falls on all of them alike.
#
#   bench/ab.sh ROUNDS LABEL:BINARY:CONNECTIONS[:ENV=VALUE ...] ...
#   e.g. bench/ab.sh 3 old:/tmp/coap2mqtt-old:4 new:build/coap2mqtt:4 \
#                      c8:build/coap2mqtt:8 nagle:build/coap2mqtt:8:LG_SUB_NAGLE=1
#   AB_ARGS="--push --con --rate 7500 --window 1" bench/ab.sh ...  (latency)
#
# The environment of a variant is given to the gateway and the load
# generator; AB_ARGS are added to the load generator's arguments.  A
# variant's AB_DURABILITY=process|power sets queue.durability (default:
# the gateway's, "power").  Prints
# one line per run: round, label, pushes/s at the subscriber in the 8 s
# window, latency p50 / p99 / p99.9, gateway CPU ms per 1,000.  Nothing is
# written to bench/.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib.sh"      # free_port
[ $# -ge 2 ] || { sed -n 2,14p "$0" >&2; exit 2; }
ROUNDS=$1; shift
D=$(mktemp -d /tmp/c2m-ab.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
ulimit -n 20000 2>/dev/null || true
python3 -c "import os; print('\n'.join('lg-%d:hex:%s' % (i, os.urandom(16).hex()) for i in range(1100)))" >"$D/psk.keys"
chmod 600 "$D/psk.keys"
MP=$(free_port tcp)
mkdir -p "$D/mq"
cat >"$D/mq.conf" <<EOF
listener $MP 127.0.0.1
allow_anonymous true
persistence true
persistence_location $D/mq/
autosave_on_changes true
autosave_interval 1
max_queued_messages 0
EOF
mosquitto -c "$D/mq.conf" >/dev/null 2>&1 & PIDS+=($!)
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$MP") 2>/dev/null && break; sleep 0.1; done
for r in $(seq "$ROUNDS"); do
  for spec in "$@"; do
    IFS=: read -r label bin conns envs <<<"$spec"
    CP=$(free_port udp)
    rm -rf "$D/state"
    cat >"$D/gw.conf" <<EOF
coap = { listen = [ "127.0.0.1:$CP" ]; psk_file = "$D/psk.keys"; max_sessions = 20000;
         max_handshakes = 1000; max_request_rate = 0; session_timeout = 600; };
state_dir = "$D/state";
rd = { max_devices = 20000; };
mqtt = { host = "127.0.0.1"; port = $MP; base_topic = "coap2mqtt"; client_id = "c2m-ab";
         stats_interval = 0; connections = $conns; };
EOF
    dur=$(echo "$envs" | grep -o 'AB_DURABILITY=[a-z]*' | cut -d= -f2 || true)
    [ -z "$dur" ] || echo "queue = { durability = \"$dur\"; };" >>"$D/gw.conf"
    env $envs "$bin" -c "$D/gw.conf" >"$D/gw-$label.log" 2>&1 & GW=$!
    for _ in $(seq 50); do grep -q "listening on" "$D/gw-$label.log" && break; sleep 0.1; done
    res=$(env $envs "$ROOT/build/coap2mqtt-loadgen" --label "$label" --json "$D/$label.json" --warmup 2 \
          --duration 8 --drain 2 --target "127.0.0.1:$CP" --psk-file "$D/psk.keys" \
          --mqtt-port "$MP" --sub-qos 1 -n 1000 --bind 127.13.0.1 --ramp 200 ${AB_ARGS:-} \
          --watch-pid "$GW" 2>&1 | grep -E 'subscriber:|server CPU' || true)
    kill "$GW"; wait "$GW" 2>/dev/null || true
    echo "$r $label $(echo "$res" | grep -o 'window -> [0-9]*/s' | head -1 | cut -d' ' -f3)" \
         "$(echo "$res" | grep -o 'latency p50 [0-9.]* p99 [0-9.]* p99.9 [0-9.]*' | head -1)" \
         "$(echo "$res" | grep -o '[0-9.]* ms per 1,000' || echo '?')"
  done
done
