#!/bin/sh
# The "keys" service of docker/compose.yaml, run once as root before the
# gateway: puts the configuration into the coap2mqtt-etc volume and, the
# first time only, makes psk.keys with a random key for each simulated
# sensor, owned by the image's coap2mqtt user (uid 10001) and mode 0600,
# since the gateway refuses a key file others can read (and a key in the
# repository would protect nothing).  Later starts keep the keys.
set -eu
etc=/etc/coap2mqtt
install -m 0644 /seed/coap2mqtt.conf "$etc/coap2mqtt.conf"
if [ ! -s "$etc/psk.keys" ]; then
    umask 077
    for id in meter-1 hvac-1 industrial-1; do
        printf '%s:hex:%s\n' "$id" "$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
    done > "$etc/psk.keys.new"
    chown 10001:10001 "$etc/psk.keys.new"
    mv "$etc/psk.keys.new" "$etc/psk.keys"
    echo "init-keys: made $etc/psk.keys for meter-1 hvac-1 industrial-1"
fi
