#!/bin/bash
# coap2mqtt demo - what "make run" runs.
#
# Starts, all on loopback and inside one private temporary directory:
#   a mosquitto broker (persistent, nothing dropped) on a free TCP port,
#   the gateway (build/coap2mqtt) with DTLS-PSK on a free UDP port,
#   three simulated sensors: meter-1, hvac-1 and industrial-1,
# then shows everything published under coap2mqtt/# until Ctrl-C, which stops
# what it started and removes the directory.
#
# Environment:
#   C2M_BIN, C2M_SIM     gateway and simulator binaries (default build/...)
#   DEMO_DURATION=N      run N seconds without a terminal, then stop; exit 0
#                        only if the gateway stayed up, stopped cleanly, and
#                        every sensor's readings reached the broker
#   DEMO_INTERVAL=MS     sensor reporting interval (default 2000)
#   DEMO_KEEP=1          keep the temporary directory (logs, spool) at exit
#   DEMO_VERBOSE=1       run the gateway with -v (devices coming and going
#                        are logged to gateway.log)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${C2M_BIN:-$root/build/coap2mqtt}
sim=${C2M_SIM:-$root/build/coap2mqtt-sim}
template=$root/conf/demo.conf
duration=${DEMO_DURATION:-}
interval=${DEMO_INTERVAL:-2000}
base=coap2mqtt
sensors="meter:127.0.1.1 hvac:127.0.2.1 industrial:127.0.3.1"

say() { printf 'demo: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

for tool in mosquitto mosquitto_sub mosquitto_pub python3; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found: run 'make deps'"
done
[ -x "$bin" ] || die "$bin missing: run 'make' first (or set C2M_BIN)"
[ -x "$sim" ] || die "$sim missing: run 'make' first (or set C2M_SIM)"
[ -r "$template" ] || die "$template missing"
case $duration in
    ''|[1-9]|[1-9][0-9]|[1-9][0-9][0-9]|[1-9][0-9][0-9][0-9]) ;;
    *) die "DEMO_DURATION must be a number of seconds (1-9999)" ;;
esac
[[ $interval =~ ^[1-9][0-9]{0,7}$ ]] || die "DEMO_INTERVAL must be a number of milliseconds"

# --- cleanup: stop in reverse start order (sensors, gateway, subscriber, broker)

dir=""
pids=()        # everything started, in start order
gw_pid=""
sub_pid=""
gw_status=""   # the gateway's exit status once reaped
cleaning=0

reap() {
    local st=0
    wait "$1" 2>/dev/null || st=$?
    if [ "$1" = "$gw_pid" ] && [ -z "$gw_status" ]; then gw_status=$st; fi
}

# TERM, up to 10 s of grace, then KILL: a stuck process must not make Ctrl-C
# hang.  The gateway's exit status is kept (a sanitizer report shows there).
stop_pid() {
    local pid=$1 i
    if kill -TERM "$pid" 2>/dev/null; then
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "pid $pid ignored SIGTERM for 10 s, killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    reap "$pid"
}

stop_all() {
    local i
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        # Let the gateway's last words (availability, bridge/state offline)
        # reach the screen before the subscriber goes.
        [ "${pids[i]}" = "$sub_pid" ] && sleep 0.3
        stop_pid "${pids[i]}"
    done
    pids=()
}

# shellcheck disable=SC2317  # reached through the EXIT trap
cleanup() {
    local rc=$?
    [ "$cleaning" = 1 ] && return
    cleaning=1
    trap '' INT TERM HUP
    stop_all
    if [ -n "$gw_status" ] && [ "$gw_status" != 0 ]; then
        say "the gateway exited with status $gw_status; see $dir/gateway.log"
        [ "$rc" != 0 ] || rc=1
        DEMO_KEEP=1
    fi
    if [ -n "$dir" ]; then
        if [ "${DEMO_KEEP:-0}" = 1 ]; then say "kept $dir"; else rm -rf -- "$dir"; fi
    fi
    exit "$rc"
}
trap cleanup EXIT
# Ctrl-C is how an interactive demo ends: not an error.
if [ -n "$duration" ]; then
    trap 'exit 130' INT; trap 'exit 143' TERM; trap 'exit 129' HUP
else
    trap 'exit 0' INT TERM HUP
fi

# --- private state ----------------------------------------------------------

dir=$(mktemp -d "${TMPDIR:-/tmp}/coap2mqtt-demo.XXXXXX")
chmod 0700 "$dir"
mkdir -m 0700 "$dir/state" "$dir/mosquitto"

# Two free loopback ports: TCP for MQTT, UDP for CoAP/DTLS.  The kernel picks
# them; there is a small window before the daemons bind them again.
read -r mqtt_port coap_port < <(python3 -c '
import socket
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM); t.bind(("127.0.0.1", 0))
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM);  u.bind(("127.0.0.1", 0))
print(t.getsockname()[1], u.getsockname()[1])')

secret() { od -An -N12 -tx1 /dev/urandom | tr -d ' \n'; }
psk=$dir/psk.keys
(
    umask 077
    echo "# demo identities: IDENTITY:SECRET, one a line"
    for s in $sensors; do echo "${s%%:*}-1:$(secret)"; done
    echo "lab-1:$(secret)"     # for your own coap-client experiments
) > "$psk"
chmod 0600 "$psk"
key_of() { sed -n "s/^$1://p" "$psk"; }

cat > "$dir/mosquitto.conf" <<EOF
# Written by scripts/demo.sh.  Loses nothing: persistent, unbounded queue,
# database saved on every change (mosquitto's defaults drop and lose data).
listener $mqtt_port 127.0.0.1
allow_anonymous true
persistence true
persistence_location $dir/mosquitto/
autosave_on_changes true
autosave_interval 1
max_queued_messages 0
log_dest file $dir/mosquitto.log
log_type error
log_type warning
log_type notice
log_type information
user $(id -un)
EOF

conf=$dir/coap2mqtt.conf
sed -e "s|@COAP_PORT@|$coap_port|g" -e "s|@PSK_FILE@|$psk|g" \
    -e "s|@STATE_DIR@|$dir/state|g" -e "s|@MQTT_HOST@|127.0.0.1|g" \
    -e "s|@MQTT_PORT@|$mqtt_port|g" "$template" > "$conf"

# The gateway checks its config and the files it names; stop here if not.
if ! "$bin" -t -c "$conf" > "$dir/check.log" 2>&1; then
    cat "$dir/check.log" >&2
    die "the generated config does not pass '$bin -t' (see above)"
fi

# --- broker -----------------------------------------------------------------

sub() { mosquitto_sub -h 127.0.0.1 -p "$mqtt_port" "$@"; }
alive() { kill -0 "$1" 2>/dev/null; }

# The daemons run in sessions of their own (setsid), so Ctrl-C on the
# terminal reaches only this script, which then stops them in order: the
# sensors, the gateway (while its broker is still up), the broker.
setsid mosquitto -c "$dir/mosquitto.conf" > "$dir/mosquitto.out" 2>&1 &
mq_pid=$!
pids+=("$mq_pid")
up=0
for ((i = 0; i < 50; i++)); do
    alive "$mq_pid" || break
    # shellcheck disable=SC2016  # a topic, not an expansion
    if sub -C 1 -W 1 -t '$SYS/broker/version' > /dev/null 2>&1; then up=1; break; fi
    sleep 0.1
done
if [ $up = 0 ]; then
    cat "$dir/mosquitto.out" "$dir/mosquitto.log" >&2 2>/dev/null || true
    die "mosquitto did not come up on 127.0.0.1:$mqtt_port"
fi

# --- banner, then the subscriber, so the stream starts with the gateway -----

cat <<EOF

  coap2mqtt demo -- all on loopback, state in $dir
    mosquitto   127.0.0.1:$mqtt_port/tcp           log $dir/mosquitto.log
    coap2mqtt   127.0.0.1:$coap_port/udp DTLS-PSK  log $dir/gateway.log
    sensors     meter-1 (127.0.1.1), hvac-1 (127.0.2.1), industrial-1 (127.0.3.1)
    PSK file    $psk

  Try, in another terminal:
    mosquitto_sub -p $mqtt_port -v -t '$base/hvac-1/#'
    mosquitto_pub -p $mqtt_port -t $base/hvac-1/setpoint/set -m 23.5
    mosquitto_sub -p $mqtt_port -C 1 -t $base/hvac-1/setpoint/set/result
    mosquitto_sub -p $mqtt_port -C 1 -t $base/bridge/devices
    coap-client-openssl -m post -u lab-1 -k $(key_of lab-1) -e 21.5 \\
        'coaps://127.0.0.1:$coap_port/ps/temperature'
    tail -f $dir/gateway.log

  $base/# as it arrives: time, topic, [content type], payload (CBOR decoded).
EOF
if [ -n "$duration" ]; then
    echo "  Stopping after $duration s."
else
    echo "  Ctrl-C stops everything."
fi
echo

# mosquitto_sub prints one line per message with the payload in hex, so that
# binary cannot wreck the terminal; demo-format.py shows text as text and
# CBOR (ct 60) in diagnostic notation, and keeps a copy for the summary.
fifo=$dir/sub.fifo
mkfifo "$fifo"
python3 -u "$root/scripts/demo-format.py" "$dir/readings.log" < "$fifo" &
pids+=("$!")
# (Not through sub(): a backgrounded function is a subshell, and killing it
# would leave mosquitto_sub behind.)
setsid mosquitto_sub -h 127.0.0.1 -p "$mqtt_port" -V mqttv5 -t "$base/#" \
    -F '%t\t%C\t%r\t%x' > "$fifo" 2> "$dir/sub.err" &
sub_pid=$!
pids+=("$sub_pid")

# --- gateway and sensors ----------------------------------------------------

gw_args=(-c "$conf")
[ "${DEMO_VERBOSE:-0}" = 1 ] && gw_args+=(-v)
setsid "$bin" "${gw_args[@]}" > "$dir/gateway.log" 2>&1 &
gw_pid=$!
pids+=("$gw_pid")

gateway_failed() {
    reap "$gw_pid"
    say "the gateway is not running (status $gw_status); last lines of $dir/gateway.log:"
    tail -n 20 "$dir/gateway.log" >&2 || true
    DEMO_KEEP=1
    exit 1
}

# bridge/state is retained: "online" once the gateway has its broker session.
state=""
for ((i = 0; i < 20; i++)); do
    alive "$gw_pid" || gateway_failed
    state=$(sub -C 1 -W 1 -t "$base/bridge/state" 2>/dev/null || true)
    [ "$state" = online ] && break
    sleep 0.2
done
[ "$state" = online ] || say "warning: $base/bridge/state is '${state:-unset}', going on"

for s in $sensors; do
    kind=${s%%:*} addr=${s#*:}
    setsid "$sim" --kind "$kind" --count 1 --bind "$addr" --psk-file "$psk" \
        --gateway "127.0.0.1:$coap_port" --interval "$interval" -q \
        > "$dir/sim-$kind.log" 2>&1 &
    pids+=("$!")
done

# --- watch the daemons once a second; DEMO_DURATION bounds the run ---------

elapsed=0
while :; do
    sleep 1
    elapsed=$((elapsed + 1))
    alive "$gw_pid" || gateway_failed
    alive "$mq_pid" || die "mosquitto exited; see $dir/mosquitto.log"
    alive "$sub_pid" || die "mosquitto_sub exited: $(cat "$dir/sub.err")"
    [ -n "$duration" ] && [ "$elapsed" -ge "$duration" ] && break
done

# --- non-interactive end: stop everything, then judge the run --------------

trap '' INT TERM HUP
stop_all
rc=0
[ "$gw_status" = 0 ] || rc=1     # cleanup says why
for s in $sensors; do
    id=${s%%:*}-1
    n=$(grep " $base/$id/" "$dir/readings.log" | grep -vc " $base/$id/availability " || true)
    say "$id: $n readings"
    [ "$n" -gt 0 ] || rc=1
done
if [ $rc = 0 ]; then say "ok"; else say "FAILED"; DEMO_KEEP=1; fi
exit $rc
