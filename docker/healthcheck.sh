#!/bin/sh
# coap2mqtt-healthcheck [STATE_DIR] - the container image's HEALTHCHECK.
#
# Reads STATE_DIR/health (default /var/lib/coap2mqtt/health), which the
# gateway itself rewrites every 10 s from its event loop (src/health.c):
# healthy (exit 0) only if the file is fresh - the loop is turning - and
# says mqtt=connected - readings can reach the broker.  Exit 1 otherwise,
# with the reason on stdout (podman/docker inspect shows it).
#   C2M_HEALTH_MAX_AGE   seconds the file may be old (default 30)
f=${1:-/var/lib/coap2mqtt}/health
max_age=${C2M_HEALTH_MAX_AGE:-30}
if [ ! -r "$f" ]; then
    echo "unhealthy: no $f (the gateway is not running, or not yet)"
    exit 1
fi
updated=$(sed -n 's/^updated=//p' "$f")
mqtt=$(sed -n 's/^mqtt=//p' "$f")
devices=$(sed -n 's/^devices=//p' "$f")
case $updated in
    ''|*[!0-9]*) echo "unhealthy: $f has no updated= line"; exit 1 ;;
esac
age=$(( $(date +%s) - updated ))
if [ "$age" -gt "$max_age" ]; then
    echo "unhealthy: $f was last written ${age} s ago (the gateway's loop is stuck)"
    exit 1
fi
if [ "$mqtt" != connected ]; then
    echo "unhealthy: broker ${mqtt:-unknown} (readings wait in the spool)"
    exit 1
fi
echo "healthy: broker connected, ${devices:-0} devices, state written ${age} s ago"
