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
# node and npm run an independent CoAP device, node's own stack (the npm
# coap package), for the dial-out tests (tests/peers/node-coap/).
# A node of another origin (NodeSource's nodejs bundles npm and conflicts
# with Debian's npm) is taken as it is.
# The bench draws its pictures with matplotlib (bench/plot.py).
if [ "${1:-}" = "--bench" ]; then
    PKGS="$PKGS python3-matplotlib"
fi
if [ "${1:-}" = "--test" ]; then
    PKGS="$PKGS rabbitmq-server conntrack"
    command -v node >/dev/null 2>&1 || PKGS="$PKGS nodejs"
    command -v npm >/dev/null 2>&1 || PKGS="$PKGS npm"
fi

# The node peer's packages, as pinned by its package-lock.json.  Without a
# reachable npm registry this says so and goes on: the tests that need the
# peer skip with the reason.
node_peer() {
    dir=$(cd "$(dirname "$0")/.." && pwd)/tests/peers/node-coap
    [ -f "$dir/package-lock.json" ] || return 0
    if [ -f "$dir/node_modules/.package-lock.json" ] &&
       [ ! "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
        return 0
    fi
    echo "coap2mqtt: npm ci in tests/peers/node-coap (the node CoAP peer)"
    if ! (cd "$dir" && timeout 300 npm ci --no-audit --no-fund --loglevel=error --fetch-retries=1 --fetch-retry-maxtimeout=10000); then
        echo "coap2mqtt: npm could not install the node peer (no registry?);"
        echo "coap2mqtt: the tests that need it will skip"
    fi
}
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
    [ "${1:-}" = "--test" ] && node_peer
    exit 0
fi
n=$(echo $missing | wc -w)
# A fresh box needs all of them: say what is happening, apt's own progress
# follows, so no minute passes in silence.
echo "coap2mqtt: $n Debian packages missing, installing them with apt-get"
echo "coap2mqtt: (about 1-3 minutes on a fresh Debian 12):$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
# A fresh box often runs apt itself at first (unattended-upgrades, cloud-init):
# wait for its lock rather than fail.
APT_WAIT="-o DPkg::Lock::Timeout=600"
echo "coap2mqtt: apt-get update"
$SUDO apt-get $APT_WAIT update -q
echo "coap2mqtt: apt-get install"
$SUDO apt-get $APT_WAIT install -y -q --no-install-recommends $missing
echo "coap2mqtt: packages installed"
[ "${1:-}" = "--test" ] && node_peer
exit 0
