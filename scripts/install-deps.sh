#!/bin/sh
# Installs the Debian packages coap2mqtt needs to build, test and run the demo,
# but only those missing, so a second run costs nothing.
set -eu
PKGS="build-essential pkg-config git
      libcoap3-dev libcoap3-bin libssl-dev openssl
      libmosquitto-dev mosquitto mosquitto-clients
      libconfig-dev libsystemd-dev libjansson-dev libcbor-dev
      libcmocka-dev uthash-dev zlib1g-dev python3 python3-pytest python3-paho-mqtt
      nftables iproute2 procps systemd groff-base man-db
      clang libclang-rt-14-dev"
# Only the tests need these: a 3.1.1-only broker (RabbitMQ 3.10 refuses
# MQTT v5) and a cluster of it, and conntrack to move a UDP balancer's flows
# off a dead gateway (test_cluster.py); 'make run' can do without.
[ "${1:-}" = "--test" ] && PKGS="$PKGS rabbitmq-server conntrack"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
n=$(echo $missing | wc -w)
# A fresh box needs all of them: say what is happening, apt's own progress
# follows, so no minute passes in silence.
echo "coap2mqtt: $n Debian packages missing, installing them with apt-get"
echo "coap2mqtt: (about 1-3 minutes on a fresh Debian 12):$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
echo "coap2mqtt: apt-get update"
$SUDO apt-get update -q
echo "coap2mqtt: apt-get install"
$SUDO apt-get install -y -q --no-install-recommends $missing
echo "coap2mqtt: packages installed"
