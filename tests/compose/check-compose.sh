#!/bin/bash
# The compose check (issue 17, item 4), run by "make test" through
# "make compose-check".
#
# Builds the gateway image (docker/Dockerfile) and the broker image
# (docker/broker.Dockerfile) with "podman build --format docker" (so the
# HEALTHCHECK is kept), then runs docker/compose.yaml with podman-compose
# under a project name of its own, with free host ports, and checks:
#   1. readings of all three simulated sensors reach MQTT, seen by a
#      subscriber on the host through the broker's published port;
#   2. the image carries a HEALTHCHECK and the gateway turns healthy
#      ("podman healthcheck run": no systemd timer runs it on this box);
#   3. the health check can fail: the broker stopped, the gateway turns
#      unhealthy; the broker started again, healthy again;
#   4. the broker persists: a retained message survives its restart.
# Everything the run made (containers, network, volumes) is removed at the
# end; the images are kept (a rebuild only redoes what changed).
# Prints "SKIP: ..." and exits 0 only where podman or podman-compose cannot
# run; any other failure exits 1.  Log: build/compose/run.log.
#
# Environment:
#   COMPOSE_TIMEOUT   bound on each image build, seconds (default 1500)
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
fresh=$(cd "$here/../fresh" && pwd)
build_timeout=${COMPOSE_TIMEOUT:-1500}
CHECK_NAME=compose CHECK_TITLE="compose check"
. "$fresh/common.sh"

root=$(cd "$here/../.." && pwd)
compose_file=$root/docker/compose.yaml
mkdir -p "$root/build/compose"
log=$root/build/compose/run.log
: > "$log"

[ "$(id -u)" -eq 0 ] || skip "needs root (rootful podman, as the fresh-box check)"
t_start=$(now_ms)

# --- podman, the base image, podman-compose ---------------------------------
ensure_base_image
if ! command -v podman-compose >/dev/null 2>&1; then
    say "installing podman-compose (apt-get)"
    DEBIAN_FRONTEND=noninteractive timeout 1200 apt-get -o DPkg::Lock::Timeout=600 install -y -q podman-compose >> "$log" 2>&1 \
        || skip "podman-compose is not installed and apt-get could not install it"
fi
for tool in mosquitto_sub mosquitto_pub; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is missing ('make deps' installs mosquitto-clients)"
done

# --- the images ------------------------------------------------------------
t0=$(now_ms)
say "podman build --format docker: docker/Dockerfile, docker/broker.Dockerfile (log: build/compose/run.log)"
# The gateway's build stage gets a tag of its own (coap2mqtt-build), so that
# every image this check makes has a name: when a rebuild moves a tag, the
# image it named before is removed, and repeated runs keep one set of images
# (about 0.8 GB) instead of piling up untagged ones.  The layers a rebuild
# can reuse (the apt-get steps) stay.
old_ids=()
for spec in "coap2mqtt-build docker/Dockerfile build" "coap2mqtt docker/Dockerfile" \
            "coap2mqtt-broker docker/broker.Dockerfile"; do
    set -- $spec
    old_ids+=("$(podman image inspect --format '{{.Id}}' "localhost/$1:latest" 2>/dev/null)")
    if ! timeout -k 10 "$build_timeout" podman build --format docker --network=host \
            ${3:+--target "$3"} -f "$root/$2" -t "localhost/$1:latest" "$root" >> "$log" 2>&1 < /dev/null; then
        show_tail; fail "podman build of $2${3:+ (stage $3)} failed"
    fi
done
for id in "${old_ids[@]}"; do
    [ -n "$id" ] || continue
    podman image inspect --format '{{.RepoTags}}' "$id" 2>/dev/null | grep -q localhost/ && continue
    podman rmi "$id" >> "$log" 2>&1 || true
done
t_build=$(( $(now_ms) - t0 ))
hc=$(podman image inspect --format '{{json .Config.Healthcheck}}' localhost/coap2mqtt:latest 2>/dev/null)
case $hc in
    *coap2mqtt-healthcheck*) say "ok: the image's HEALTHCHECK: $hc" ;;
    *) fail "the image has no HEALTHCHECK (got: ${hc:-nothing})" ;;
esac

# --- up ----------------------------------------------------------------------
free_port() { /usr/bin/python3 -c 'import socket,sys
s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM if sys.argv[1]=="udp" else socket.SOCK_STREAM)
s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' "$1"; }
mqtt_port=$(free_port tcp)
coap_port=$(free_port udp)
proj=c2mcheck$$
export C2M_MQTT_PORT=$mqtt_port C2M_COAP_PORT=$coap_port
pc() { podman-compose -p "$proj" -f "$compose_file" "$@"; }
cleanup() {
    pc down -v -t 5 >> "$log" 2>&1 < /dev/null
    # down -v of podman-compose 1.0.3 leaves the named volumes behind
    podman volume ls -q --filter "label=io.podman.compose.project=$proj" 2>/dev/null |
        xargs -r podman volume rm -f >> "$log" 2>&1
    [ -n "${sub_pid:-}" ] && kill "$sub_pid" 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT; trap 'exit 143' TERM

t0=$(now_ms)
say "podman-compose up -d (project $proj, MQTT on host port $mqtt_port)"
pc up -d --no-build >> "$log" 2>&1 < /dev/null || { show_tail; fail "podman-compose up failed"; }
cname() {   # the container of a service, by podman-compose's labels
    podman ps -a --filter "label=io.podman.compose.project=$proj" \
        --filter "label=com.docker.compose.service=$1" --format '{{.Names}}' | head -n 1
}
gw=$(cname gateway); broker=$(cname broker)
[ -n "$gw" ] && [ -n "$broker" ] || { show_tail; fail "no gateway or broker container"; }

# --- 1. readings of every sensor on MQTT --------------------------------------
sensors="meter-1 hvac-1 industrial-1"
seen_all() {  # file: did every sensor publish a reading (not availability)?
    local id
    for id in $sensors; do
        grep -a "^coap2mqtt/$id/" "$1" | grep -aqv "^coap2mqtt/$id/availability " || return 1
    done
}
subs=$root/build/compose/readings.txt
: > "$subs"
mosquitto_sub -h 127.0.0.1 -p "$mqtt_port" -v -t 'coap2mqtt/#' -W 180 > "$subs" 2>> "$log" &
sub_pid=$!
t_up=""
deadline=$(( $(now_ms) + 180000 ))
until seen_all "$subs"; do
    if [ "$(now_ms)" -gt "$deadline" ] || ! kill -0 "$sub_pid" 2>/dev/null; then
        pc ps >> "$log" 2>&1; pc logs >> "$log" 2>&1
        show_tail
        fail "not every sensor's readings reached MQTT within 180 s ($(grep -c . "$subs") messages seen)"
    fi
    sleep 0.5   # polling the subscriber's output, not synchronising
done
t_up=$(( $(now_ms) - t0 ))
kill "$sub_pid" 2>/dev/null; wait "$sub_pid" 2>/dev/null; sub_pid=""
for id in $sensors; do
    say "ok: $id: $(grep -a "^coap2mqtt/$id/" "$subs" | grep -acv '/availability ') readings, e.g. $(grep -a "^coap2mqtt/$id/" "$subs" | grep -av "/availability " | head -n 1 | cut -c1-80 | tr -cd '[:print:]')"
done

# --- 2. healthy ----------------------------------------------------------------
# wait_health want seconds: run the check until it says $want.
wait_health() {
    local want=$1 end=$(( $(now_ms) + $2 * 1000 )) out rc
    while :; do
        out=$(podman healthcheck run "$gw" 2>&1); rc=$?
        case $want:$rc in healthy:0) return 0 ;; unhealthy:[1-9]*) return 0 ;; esac
        [ "$(now_ms)" -lt "$end" ] || { echo "$out"; return 1; }
        sleep 1
    done
}
health_says() {   # the check's own words, the last it gave
    podman inspect --format '{{range .State.Health.Log}}{{.Output}}{{end}}' "$gw" 2>/dev/null | tail -n 1
}
t0=$(now_ms)
wait_health healthy 60 || fail "the gateway did not turn healthy within 60 s: $(health_says)"
status=$(podman inspect --format '{{.State.Health.Status}}' "$gw")
[ "$status" = healthy ] || fail "podman says the gateway is '$status', not healthy"
say "ok: gateway healthy after $(secs $(( $(now_ms) - t0 ))) s more: $(health_says)"

# --- 3. unhealthy without the broker; 4. the broker's persistence ----------------
mosquitto_pub -h 127.0.0.1 -p "$mqtt_port" -q 1 -r -t "c2mcheck/persist" -m "kept-$$" \
    || fail "mosquitto_pub to the broker failed"
t0=$(now_ms)
podman stop -t 10 "$broker" >> "$log" 2>&1 || fail "podman stop $broker failed"
wait_health unhealthy 45 || fail "the gateway stayed healthy 45 s after the broker stopped"
say "ok: broker stopped: unhealthy after $(secs $(( $(now_ms) - t0 ))) s: $(health_says)"
podman start "$broker" >> "$log" 2>&1 || fail "podman start $broker failed"
t0=$(now_ms)
wait_health healthy 60 || fail "the gateway did not turn healthy again within 60 s of the broker's return: $(health_says)"
say "ok: broker back: healthy again after $(secs $(( $(now_ms) - t0 ))) s"
kept=$(mosquitto_sub -h 127.0.0.1 -p "$mqtt_port" -C 1 -W 10 -t "c2mcheck/persist" 2>> "$log")
[ "$kept" = "kept-$$" ] || fail "the broker lost a retained message over its restart (got '${kept}')"
say "ok: the broker's retained message survived its restart (persistence volume)"

say "timings: image builds $(secs "$t_build") s, up to readings of all sensors $(secs "$t_up") s; total $(secs $(( $(now_ms) - t_start ))) s"
